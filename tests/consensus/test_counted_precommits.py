"""A proposal's last_commit: the precommits this node's own core counted are not checked
twice (consensus.bft.counted_precommits), and everything else still is."""

from __future__ import annotations

import pytest
from consensus_kit import CHAIN_ID, key, pub, value, vote

from medchaind import core, crypto
from medchaind.consensus.bft import counted_precommits
from medchaind.errors import ValidationError
from medchaind.types import Commit, CommitSig, verify_commit

NAMES = ("A", "B", "C", "D")
POWERS = {pub(n): 1 for n in NAMES}
X = value("X")
PC = core.VoteKind.PRECOMMIT


def keeper_with(*names: str, height: int = 5) -> core.VoteKeeper:
    """The keeper of a decided height holding the signed precommits of ``names`` for X."""
    k = core.VoteKeeper.new(core.Height(height), core.ValidatorSet.from_powers(POWERS))
    for n in names:
        k, outcome, _ = k.add(vote(n, "X", height=height, kind=PC), core.Round(0))
        assert outcome is core.AddOutcome.ADDED
    return k


def commit_of(sigs: dict[str, bytes], height: int = 5) -> Commit:
    return Commit(height, 0, X, tuple(CommitSig(pub(n), s) for n, s in sorted(sigs.items(), key=lambda i: pub(i[0]))))


def sig(name: str, height: int = 5) -> bytes:
    return vote(name, "X", height=height, kind=PC).signature


@pytest.mark.parametrize(
    ("counted", "commit_sigs", "known"),
    [
        # the node counted A, B, C; the proposer's commit carries the same three: all known
        (("A", "B", "C"), {"A": sig("A"), "B": sig("B"), "C": sig("C")}, {"A", "B", "C"}),
        # D's precommit reached the proposer but not this node: D is checked here
        (("A", "B", "C"), {"A": sig("A"), "B": sig("B"), "D": sig("D")}, {"A", "B"}),
        # a different signature under B's name is not the vote this node counted
        (("A", "B", "C"), {"A": sig("A"), "B": b"\x01" * 64, "C": sig("C")}, {"A", "C"}),
        # nothing counted (a node that joined by sync): everything is checked
        ((), {"A": sig("A"), "B": sig("B"), "C": sig("C")}, set()),
    ],
    ids=["all counted", "one uncounted", "other signature", "empty keeper"],
)
def test_only_the_votes_this_node_counted_are_known(
    counted: tuple[str, ...], commit_sigs: dict[str, bytes], known: set[str]
) -> None:
    commit = commit_of(commit_sigs)
    got = counted_precommits(CHAIN_ID, keeper_with(*counted), commit)
    assert {k[1] for k in got} == {pub(n) for n in known}
    assert all(k[0] == CHAIN_ID and k[3] == core.Vote(PC, core.Height(5), core.Round(0), X,
                                                      core.ValidatorId(pub("A"))).payload() for k in got)


def test_a_keeper_of_another_height_knows_nothing() -> None:
    assert counted_precommits(CHAIN_ID, keeper_with("A", "B", "C", height=4), commit_of(
        {"A": sig("A"), "B": sig("B"), "C": sig("C")})) == set()


def test_a_bad_signature_is_still_refused_and_good_ones_are_not_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    k = keeper_with("A", "B", "C")
    checked: list[bytes] = []
    real = crypto.verify

    def counting(public_key: bytes, *args: object) -> bool:
        checked.append(public_key)
        return real(public_key, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(crypto, "verify", counting)
    good = commit_of({"A": sig("A"), "B": sig("B"), "D": sig("D")})
    verify_commit(good, CHAIN_ID, POWERS, X, 5, verified=counted_precommits(CHAIN_ID, k, good))
    assert checked == [pub("D")]  # only the precommit this node never counted
    forged = commit_of({"A": sig("A"), "B": sig("B"), "D": key("A").sign(crypto.DOMAIN_VOTE, CHAIN_ID, b"x")})
    with pytest.raises(ValidationError, match="invalid precommit signature"):
        verify_commit(forged, CHAIN_ID, POWERS, X, 5, verified=counted_precommits(CHAIN_ID, k, forged))
