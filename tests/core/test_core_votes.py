"""The vote keeper: tallies, duplicates, equivocation, memory bound; and a model check.

The hypothesis property replays random vote sequences (several validators with uneven
powers, rounds, both kinds, nil and a few values, duplicates and equivocations, votes
for rounds ahead of ours) into the keeper and compares every answer with a naive
recount over the full list of votes received so far, written directly from the
rules in the module docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from medchaind.core import (
    AddOutcome,
    BlockHash,
    Evidence,
    Height,
    Round,
    ValidatorId,
    ValidatorSet,
    Vote,
    VoteKeeper,
    VoteKind,
)
from medchaind.core.votes import MAX_FUTURE_ROUNDS_PER_VALIDATOR
from medchaind.testing.cast import Cast, block

PV, PC = VoteKind.PREVOTE, VoteKind.PRECOMMIT
C = Cast(4)
H = Height(1)


def keeper() -> VoteKeeper:
    return VoteKeeper.new(H, C.validators)


def vote(kind: VoteKind, who: str, r: int, value: str | None) -> Vote:
    return C.vote(kind, who, 1, r, value)


def test_quorum_needs_more_than_two_thirds() -> None:
    k = keeper()
    for who in "AB":
        k, outcome, _ = k.add(vote(PV, who, 0, "X"), Round(0))
        assert outcome is AddOutcome.ADDED
    assert k.quorum(Round(0), PV) is None and not k.has_quorum_any(Round(0), PV)
    k, _, _ = k.add(vote(PV, "C", 0, None), Round(0))
    assert k.has_quorum_any(Round(0), PV) and k.quorum(Round(0), PV) is None
    k, _, _ = k.add(vote(PV, "D", 0, "X"), Round(0))
    assert k.has_quorum_for(Round(0), PV, block("X"))
    assert [v.validator for v in k.votes_for(Round(0), PV, block("X"))] == [
        C.id("A"), C.id("B"), C.id("D")]


def test_duplicates_and_other_heights_change_nothing() -> None:
    k, _, _ = keeper().add(vote(PV, "A", 0, "X"), Round(0))
    again, outcome, _ = k.add(vote(PV, "A", 0, "X"), Round(0))
    assert outcome is AddOutcome.DUPLICATE and again is k
    other_height = C.prevote("B", 2, 0, "X")
    assert k.add(other_height, Round(0))[1] is AddOutcome.REJECTED


def test_equivocation_is_evidence_once_and_not_counted_twice() -> None:
    k, _, _ = keeper().add(vote(PC, "D", 0, "X"), Round(0))
    k, outcome, ev = k.add(vote(PC, "D", 0, "Y"), Round(0))
    assert outcome is AddOutcome.EQUIVOCATION and ev is not None
    assert ev == Evidence.of(vote(PC, "D", 0, "X"), vote(PC, "D", 0, "Y"))
    assert k.tally(Round(0), PC).power == 1  # D counts once for "anything"
    assert k.power_for(Round(0), PC, block("Y")) == 0  # Y lacks f+1 first votes
    _, outcome, ev = k.add(vote(PC, "D", 0, None), Round(0))
    assert outcome is AddOutcome.EQUIVOCATION and ev is None  # reported once


def test_conflicting_vote_counts_for_a_value_with_f_plus_one_backing() -> None:
    # A and B precommit Y; D precommitted X first. D's precommit for Y (the one the
    # rest of the network saw) counts for Y, so the commit certificate A+B+D is
    # countable here too, but D still counts once for "anything".
    k = keeper()
    k, _, _ = k.add(vote(PC, "D", 0, "X"), Round(0))
    for who in "AB":
        k, _, _ = k.add(vote(PC, who, 0, "Y"), Round(0))
    k, outcome, ev = k.add(vote(PC, "D", 0, "Y"), Round(0))
    assert outcome is AddOutcome.ADDED_CONFLICTING and ev is not None
    assert k.has_quorum_for(Round(0), PC, block("Y"))
    assert k.tally(Round(0), PC).power == 3
    assert len(k.votes_for(Round(0), PC, block("Y"))) == 3


def test_evidence_is_canonical_and_checked() -> None:
    a, b = vote(PV, "C", 0, None), vote(PV, "C", 0, "X")
    assert Evidence.of(a, b) == Evidence.of(b, a)
    assert Evidence.of(b, a).vote_a.block_hash is None


def test_future_rounds_are_capped_per_validator() -> None:
    # B may occupy two rounds above ours; a third is rejected until we move on.
    k = keeper()
    for r in (3, 5):
        k, outcome, _ = k.add(vote(PV, "B", r, "X"), Round(0))
        assert outcome is AddOutcome.ADDED
    assert k.add(vote(PV, "B", 7, "X"), Round(0))[1] is AddOutcome.REJECTED
    assert k.add(vote(PC, "B", 5, "X"), Round(0))[1] is AddOutcome.ADDED  # a known round
    assert k.add(vote(PV, "B", 7, "X"), Round(3))[1] is AddOutcome.ADDED
    assert k.add(vote(PV, "C", 9, "X"), Round(0))[1] is AddOutcome.ADDED  # C's own quota


def test_memory_bound_under_a_flood() -> None:
    # A Byzantine validator sending a vote for every (round, kind, value) it can think
    # of is held to the documented bound: per (round, kind) at most three stored votes
    # (first + two conflicting) and rounds above ours capped at two.
    k = keeper()
    for r in range(50):
        for kind in (PV, PC):
            for value in ("X", "Y", "Z", None):
                k, _, _ = k.add(vote(kind, "D", r, value), Round(0))
    assert len(k.rounds) == 1 + MAX_FUTURE_ROUNDS_PER_VALIDATOR
    assert k.vote_count() <= len(k.rounds) * 2 * 3
    assert len(k.evidence) <= len(k.rounds) * 2


# ------------------------------------------------------------------------ model check

POWERS = (1, 2, 3, 1, 5)
MODEL = Cast(len(POWERS), powers=POWERS)
VS: ValidatorSet = MODEL.validators
VALUES = (None, "X", "Y", "Z")


@dataclass(frozen=True)
class Arrival:
    vote: Vote
    current_round: int


def naive_accept(accepted: list[Vote], a: Arrival) -> AddOutcome:
    """The keeper's rules, recomputed from the plain list of votes accepted so far."""
    v = a.vote
    if v.height != H or VS.power(v.validator) == 0:
        return AddOutcome.REJECTED
    same_step = [x for x in accepted
                 if (x.validator, x.round, x.kind) == (v.validator, v.round, v.kind)]
    if not same_step:
        in_round = any(x.validator == v.validator and x.round == v.round for x in accepted)
        future = {x.round for x in accepted
                  if x.validator == v.validator and x.round > a.current_round}
        if v.round > a.current_round and not in_round and len(future) >= 2:
            return AddOutcome.REJECTED
        return AddOutcome.ADDED
    if any(x.block_hash == v.block_hash for x in same_step):
        return AddOutcome.DUPLICATE
    first_votes = _first_votes(accepted, v.round, v.kind)
    backing = sum(VS.power(x.validator) for x in first_votes if x.block_hash == v.block_hash)
    if backing >= VS.f_plus_one_power:
        return AddOutcome.ADDED_CONFLICTING
    return AddOutcome.EQUIVOCATION


def _first_votes(accepted: list[Vote], r: int, kind: VoteKind) -> list[Vote]:
    first: dict[bytes, Vote] = {}
    for x in accepted:
        if x.round == r and x.kind == kind:
            first.setdefault(x.validator, x)
    return list(first.values())


arrivals = st.lists(
    st.builds(
        lambda who, r, kind, value, cur: Arrival(
            MODEL.vote(kind, MODEL.names[who], 1, r, value), cur),
        # Few rounds and a favourite value, so that quorums, conflicting votes that
        # count and catch-up-round rejections all happen often.
        st.integers(0, len(POWERS) - 1),
        st.sampled_from((0, 0, 1, 2, 3, 4)),
        st.sampled_from((PV, PC)),
        st.sampled_from((None, "X", "X", "X", "Y")),
        st.sampled_from((0, 0, 1, 2))),
    min_size=10, max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(arrivals)
def test_keeper_matches_a_naive_recount(seq: list[Arrival]) -> None:
    k = VoteKeeper.new(H, VS)
    accepted: list[Vote] = []
    for a in seq:
        expected = naive_accept(accepted, a)
        k, outcome, _ = k.add(a.vote, Round(a.current_round))
        assert outcome is expected
        event(f"outcome {outcome.value}")
        if expected in (AddOutcome.ADDED, AddOutcome.ADDED_CONFLICTING):
            accepted.append(a.vote)
    for r in range(5):
        for kind in (PV, PC):
            first = _first_votes(accepted, r, kind)
            counted = [x for x in accepted if x.round == r and x.kind == kind]
            by_value: dict[BlockHash | None, int] = {}
            for x in counted:
                by_value[x.block_hash] = by_value.get(x.block_hash, 0) + VS.power(x.validator)
            any_power = sum(VS.power(x.validator) for x in first)
            rnd = Round(r)
            assert k.tally(rnd, kind).power == any_power
            assert k.has_quorum_any(rnd, kind) == (3 * any_power > 2 * VS.total_power)
            for value in VALUES:
                h = None if value is None else block(value)
                assert k.power_for(rnd, kind, h) == by_value.get(h, 0)
            quorums = [val for val, p in by_value.items() if 3 * p > 2 * VS.total_power]
            q = k.quorum(rnd, kind)
            event("quorum" if quorums else "no quorum")
            if quorums:
                assert q is not None and q.value in quorums
            else:
                assert q is None
        voters = {x.validator for x in accepted if x.round == r}
        assert k.participant_power(Round(r)) == sum(VS.power(x) for x in voters)


def _naive_tallies(accepted: list[Vote]) -> dict[tuple[int, VoteKind], tuple[int, dict[BlockHash | None, int]]]:
    """(round, kind) -> (power of first votes, power per value), recounted from scratch."""
    out: dict[tuple[int, VoteKind], tuple[int, dict[BlockHash | None, int]]] = {}
    for r in {x.round for x in accepted}:
        for kind in (PV, PC):
            by_value: dict[BlockHash | None, int] = {}
            for x in accepted:
                if x.round == r and x.kind == kind:
                    by_value[x.block_hash] = by_value.get(x.block_hash, 0) + VS.power(x.validator)
            out[(r, kind)] = (sum(VS.power(x.validator) for x in _first_votes(accepted, r, kind)), by_value)
    return out


def _assert_matches(k: VoteKeeper, accepted: list[Vote]) -> None:
    for (r, kind), (any_power, by_value) in _naive_tallies(accepted).items():
        assert k.tally(Round(r), kind).power == any_power
        for value in VALUES:
            h = None if value is None else block(value)
            assert k.power_for(Round(r), kind, h) == by_value.get(h, 0)
    assert k.vote_count() == len(accepted)
    assert sorted(k.all_votes(), key=lambda v: (v.round, v.kind, v.validator, v.block_hash or b"")) == sorted(
        accepted, key=lambda v: (v.round, v.kind, v.validator, v.block_hash or b""))


@settings(max_examples=150, deadline=None)
@given(arrivals)
def test_every_older_keeper_still_answers_for_its_prefix(seq: list[Arrival]) -> None:
    # The tallies are persistent maps updated in place of copies (O(log n) per vote): a
    # keeper must still answer as the naive recount of the votes it had, after any number
    # of later adds (the core's apply() is pure: callers keep old states).
    history: list[tuple[VoteKeeper, list[Vote]]] = []
    k = VoteKeeper.new(H, VS)
    accepted: list[Vote] = []
    for a in seq:
        k, outcome, _ = k.add(a.vote, Round(a.current_round))
        if outcome in (AddOutcome.ADDED, AddOutcome.ADDED_CONFLICTING):
            accepted = [*accepted, a.vote]
        history.append((k, accepted))
    for old, prefix in history:
        _assert_matches(old, prefix)


def test_a_large_set_counts_each_vote_once_and_finds_the_quorum_at_the_bar() -> None:
    # 128 equal authorities (the scaling benchmark's largest cluster): the quorum is 86.
    # The keeper checks no signature, so unsigned votes by synthetic keys will do.
    ids = sorted(ValidatorId(bytes([i]) * 32) for i in range(128))
    big = ValidatorSet.from_powers({i: 1 for i in ids})
    k = VoteKeeper.new(H, big)
    assert big.quorum_power == 86
    x = block("X")
    for i, who in enumerate(ids):
        k, outcome, _ = k.add(Vote(PC, H, Round(0), x, who), Round(0))
        assert outcome is AddOutcome.ADDED
        again, dup, _ = k.add(Vote(PC, H, Round(0), x, who), Round(0))
        assert dup is AddOutcome.DUPLICATE and again is k
        assert k.power_for(Round(0), PC, x) == i + 1 == k.participant_power(Round(0))
        assert k.has_quorum_for(Round(0), PC, x) == (i + 1 >= 86)
    assert [v.validator for v in k.votes_for(Round(0), PC, x)] == ids


def test_state_with_votes_is_replace_of_the_keeper_alone() -> None:
    # The driver's per-vote copy of the state (State.with_votes) must be exactly
    # dataclasses.replace(state, votes=...): every other field kept, the old state intact.
    from dataclasses import fields, replace

    from medchaind.core import StartHeight, apply, initial_state

    state, _ = apply(initial_state(C.id("A")), StartHeight(H, C.validators))
    k, _, _ = state.votes.add(vote(PV, "B", 0, "X"), Round(0))
    new = state.with_votes(k)
    assert new == replace(state, votes=k) and new is not state
    assert new.votes is k and state.votes is not k
    assert all(getattr(new, f.name) is getattr(state, f.name) for f in fields(state) if f.name != "votes")
