"""The WAL and the last-signed guard: a restarted validator never signs a conflict.

Same cast as the scenario tables: four validators A-D, B proposes round 0 at height 1.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from medchaind.core import (
    Height,
    Input,
    LastSigned,
    PolkaRecord,
    Proposal,
    ProposalReceived,
    Round,
    SignProposal,
    SignVote,
    StartHeight,
    Step,
    Vote,
    VoteKind,
    VoteReceived,
    WALAppend,
    WALEntry,
    apply,
    initial_state,
)
from medchaind.core.round_machine import sign
from medchaind.errors import ValidationError
from medchaind.testing.cast import Cast
from medchaind.testing.script import ScriptHost

C = Cast(4)


def own_vote(kind: VoteKind, round_: int, value: str | None, who: str = "A") -> Vote:
    return C.vote(kind, who, 1, round_, value).unsigned()


def test_last_signed_from_wal_is_the_highest_height_round_step() -> None:
    entries = [own_vote(VoteKind.PREVOTE, 0, "X"), own_vote(VoteKind.PRECOMMIT, 0, "X"),
               own_vote(VoteKind.PREVOTE, 1, None)]
    guard = LastSigned.from_wal(entries)
    assert guard is not None
    assert (guard.height, guard.round, guard.step) == (1, 1, Step.PREVOTE)
    assert guard.message == entries[2]
    assert LastSigned.from_wal([]) is None


def test_guard_signs_higher_resigns_identical_refuses_conflicts() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start())
    state = replace(host.state, last_signed=LastSigned.of(own_vote(VoteKind.PREVOTE, 0, None)))
    # A strictly higher (height, round, step): logged, then signed; becomes the guard.
    higher = own_vote(VoteKind.PRECOMMIT, 0, None)
    new_state, effects = sign(state, higher)
    assert effects == [WALAppend(higher), SignVote(higher)]
    assert new_state.last_signed == LastSigned.of(higher)
    # The same message again: re-signed (identical bytes), nothing new in the WAL.
    same = own_vote(VoteKind.PREVOTE, 0, None)
    assert sign(state, same) == (state, [SignVote(same)])
    # Same step, other value; or a lower step: refused, no effect at all.
    assert sign(state, own_vote(VoteKind.PREVOTE, 0, "X")) == (state, [])
    lower = Proposal(Height(1), Round(0), C.block("X"), Round(-1), C.id("A"))
    assert sign(state, lower) == (state, [])


def test_restore_after_precommit_keeps_the_lock() -> None:
    # A prevoted and precommitted X in round 0 (locked), then crashed. On restart it
    # re-signs both (no new WAL entries), resumes in the precommit step of round 0, and in
    # round 1 refuses C's fresh Y because the lock came back with it.
    wal: tuple[WALEntry, ...] = (own_vote(VoteKind.PREVOTE, 0, "X"),
                                 own_vote(VoteKind.PRECOMMIT, 0, "X"))
    host = ScriptHost(C, "A")
    assert host.feed(host.start(wal=wal)) == [
        "sign prevote r0 X", "sign precommit r0 X",
        "broadcast prevote A r0 X", "broadcast precommit A r0 X",
    ]
    s = host.state
    assert (s.round, s.step, s.locked_value, s.locked_round) == (0, Step.PRECOMMIT,
                                                                 C.block("X"), 0)
    assert host.feed(host.precommit("B", 0, None)) == []
    assert host.feed(host.precommit("C", 0, None)) == ["timeout precommit r0 1000ms"]
    assert host.feed(host.timeout("precommit", 0)) == ["timeout propose r1 3500ms"]
    assert host.feed(host.proposal("C", 1, "Y")) == [
        "wal prevote r1 nil", "sign prevote r1 nil", "broadcast prevote A r1 nil"]


def test_restore_after_nil_prevote_does_not_prevote_again() -> None:
    # A's propose timeout fired and it prevoted nil, then crashed. After the restart the
    # round-0 proposal arrives: A must not prevote X (a conflicting prevote); it only
    # re-sends its nil prevote.
    host = ScriptHost(C, "A")
    assert host.feed(host.start(wal=(own_vote(VoteKind.PREVOTE, 0, None),))) == [
        "sign prevote r0 nil", "broadcast prevote A r0 nil"]
    assert host.feed(host.proposal("B", 0, "X")) == []
    assert host.state.step == Step.PREVOTE


def test_restore_of_a_proposal_resends_it_and_prevotes() -> None:
    # B (proposer of round 0) logged its proposal and crashed before signing it.
    proposal = Proposal(Height(1), Round(0), C.block("X"), Round(-1), C.id("B"))
    host = ScriptHost(C, "B")
    assert host.feed(host.start(wal=(proposal,))) == [
        "sign proposal r0 X", "timeout propose r0 3000ms", "broadcast proposal B r0 X",
        "wal prevote r0 X", "sign prevote r0 X", "broadcast prevote B r0 X"]


def test_restore_brings_back_the_proof_of_lock() -> None:
    # A locked X in round 0 and logged the POL (B, C, D's prevotes). After a crash it
    # holds those prevotes again (so its gossip can prove the lock) and X is its valid
    # value: as proposer of round 3 it re-proposes X with validRound 0.
    polka = PolkaRecord(Height(1), Round(0), C.block("X"),
                        tuple(C.prevote(w, 1, 0, "X") for w in "BCD"))
    wal: tuple[WALEntry, ...] = (own_vote(VoteKind.PREVOTE, 0, "X"), polka,
                                 own_vote(VoteKind.PRECOMMIT, 0, "X"),
                                 own_vote(VoteKind.PREVOTE, 2, None))
    host = ScriptHost(C, "A")
    host.feed(host.start(wal=wal))
    s = host.state
    assert (s.valid_value, s.valid_round, s.round) == (C.block("X"), 0, 2)
    assert s.votes.has_quorum_for(Round(0), VoteKind.PREVOTE, C.block("X"))
    for who in "BC":
        host.feed(host.prevote(who, 2, None))
        host.feed(host.precommit(who, 2, None))
    host.feed(host.timeout("prevote", 2))
    assert host.feed(host.timeout("precommit", 2))[:2] == [
        "wal proposal r3 X pol0", "sign proposal r3 X pol0"]


def test_wal_of_another_validator_is_refused() -> None:
    state = initial_state(C.id("A"))
    with pytest.raises(ValidationError, match="another key"):
        apply(state, StartHeight(Height(1), C.validators,
                                 (own_vote(VoteKind.PREVOTE, 0, "X", who="B"),)))


def test_start_height_must_move_forward() -> None:
    host = ScriptHost(C, "A")
    host.feed(host.start(2))
    with pytest.raises(ValidationError, match="does not follow"):
        apply(host.state, StartHeight(Height(2), C.validators))
    with pytest.raises(ValidationError, match="empty"):
        apply(initial_state(C.id("A")), StartHeight(Height(1), C.validators.empty()))


# --------------------------------------------------------------- every crash point

# A long script for A: lock on X in round 0, nil in round 1, unlock via POL in round 2.
SCRIPT: list[tuple[str, tuple[object, ...]]] = [
    ("proposal", ("B", 0, "X")), ("prevote", ("B", 0, "X")), ("prevote", ("C", 0, "X")),
    ("precommit", ("B", 0, None)), ("precommit", ("C", 0, None)),
    ("timeout", ("precommit", 0)), ("proposal", ("C", 1, "Y")),
    ("prevote", ("B", 1, "Y")), ("prevote", ("C", 1, "Y")), ("timeout", ("prevote", 1)),
    ("precommit", ("B", 1, None)), ("precommit", ("C", 1, None)),
    ("timeout", ("precommit", 1)), ("prevote", ("D", 1, "Y")),
    ("proposal", ("D", 2, "Y", 1)), ("prevote", ("B", 2, "Y")), ("prevote", ("C", 2, "Y")),
    ("precommit", ("B", 2, "Y")), ("precommit", ("C", 2, "Y")),
]


class RecordingHost(ScriptHost):
    """Keeps the WAL and every signature; can stop right after a given WAL append."""

    def __init__(self, crash_after_wal: int | None = None) -> None:
        super().__init__(C, "A")
        self.wal: list[WALEntry] = []
        self.signed: list[Vote | Proposal] = []
        self.crash_after_wal = crash_after_wal
        self.crashed = False

    def run(self, inp: Input) -> None:
        if self.crashed:
            return
        queue = [inp]
        signer = C.signers["A"]
        while queue and not self.crashed:
            self.state, effects = apply(self.state, queue.pop(0))
            for e in effects:
                if isinstance(e, WALAppend):
                    self.wal.append(e.entry)
                    if self.crash_after_wal is not None and len(self.wal) > self.crash_after_wal:
                        self.crashed = True  # durable entry, signature never made
                        return
                elif isinstance(e, SignVote):
                    v = signer.sign_vote(e.vote)
                    self.signed.append(v)
                    queue.append(VoteReceived(v))
                elif isinstance(e, SignProposal):
                    p = signer.sign_proposal(e.proposal)
                    self.signed.append(p)
                    queue.append(ProposalReceived(p, True))


def _input(host: ScriptHost, name: str, args: tuple[object, ...]) -> Input:
    if name == "proposal" and len(args) == 4:
        who, r, value, pol = args
        return host.proposal(who, r, value, pol_round=pol)  # type: ignore[arg-type]
    return getattr(host, name)(*args)  # type: ignore[no-any-return]


def _signature_conflicts(signed: list[Vote | Proposal]) -> list[str]:
    seen: dict[tuple[int, int, int], Vote | Proposal] = {}
    conflicts = []
    for m in signed:
        ls = LastSigned.of(m)
        prior = seen.setdefault(ls.hrs, m)
        if prior.unsigned() != m.unsigned():
            conflicts.append(f"{prior!r} vs {m!r}")
        elif prior.signature != m.signature:
            conflicts.append(f"re-signing {m!r} gave different bytes")
    return conflicts


def _full_wal_length() -> int:
    host = RecordingHost()
    host.run(host.start())
    for name, args in SCRIPT:
        host.run(_input(host, name, args))
    assert host.state.step == Step.COMMIT  # the uninterrupted run decides Y in round 2
    return len(host.wal)


@pytest.mark.parametrize("crash_step", range(len(SCRIPT) + 1))
def test_crash_after_any_input_never_double_signs(crash_step: int) -> None:
    before = RecordingHost()
    before.run(before.start())
    for name, args in SCRIPT[:crash_step]:
        before.run(_input(before, name, args))
    after = RecordingHost()
    after.run(after.start(wal=tuple(before.wal)))
    for name, args in SCRIPT[crash_step:]:
        after.run(_input(after, name, args))
    assert _signature_conflicts(before.signed + after.signed) == []


@pytest.mark.parametrize("wal_entries", range(_full_wal_length()))
def test_crash_between_wal_append_and_signature_never_double_signs(wal_entries: int) -> None:
    before = RecordingHost(crash_after_wal=wal_entries)
    before.run(before.start())
    i = 0
    while not before.crashed and i < len(SCRIPT):
        before.run(_input(before, *SCRIPT[i]))
        i += 1
    assert before.crashed
    after = RecordingHost()
    after.run(after.start(wal=tuple(before.wal)))
    # Every own message in the WAL is signed after the restart, including the one
    # logged just before the crash, whose signature was never made.
    logged = [e for e in before.wal if not isinstance(e, PolkaRecord)]
    assert logged == [m.unsigned() for m in after.signed[:len(logged)]]
    for name, args in SCRIPT[i:]:
        after.run(_input(after, name, args))
    assert _signature_conflicts(before.signed + after.signed) == []
