"""The bounded buffers between the gossip validator and the consensus core (buffers.py):
whatever a signer sends, what it can make a node hold stays within its quotas."""

from __future__ import annotations

from consensus_kit import proposal, pub, value, vote
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import core
from medchaind.consensus.buffers import FUTURE_PROPOSALS_PER_SIGNER, FutureBuffer, InboxQuota
from medchaind.consensus.wire import ConsensusMsg

KiB = 1024


def buf(**kw: int) -> FutureBuffer:
    limits = {"max_bytes": 1000 * KiB, "max_messages": 100, "signer_bytes": 300 * KiB, "signer_messages": 8}
    limits.update(kw)
    return FutureBuffer(**limits)


def prop(name: str, round_: int, *, height: int = 6, tag: str = "x") -> ConsensusMsg:
    # the buffer never looks into the block; None stands for it
    return ConsensusMsg(proposal(name, value(f"{tag}{round_}"), height=height, round_=round_), None)


def vmsg(name: str, round_: int, *, height: int = 6, tag: str | None = "x",
         kind: core.VoteKind = core.VoteKind.PREVOTE) -> ConsensusMsg:
    return ConsensusMsg(vote(name, tag, height=height, round_=round_, kind=kind), None)


def test_one_proposal_per_height_round_and_proposer() -> None:
    b = buf()
    assert b.add(prop("A", 0), 100 * KiB)
    assert not b.add(prop("A", 0, tag="other"), 100 * KiB)  # an equivocation is not parked
    assert not b.add(prop("A", 0), 100 * KiB)  # nor a re-broadcast
    assert len(b) == 1 and b.statistics().bytes == 100 * KiB


def test_a_signer_keeps_at_most_two_proposals_the_lowest_rounds() -> None:
    b = buf(signer_bytes=10_000 * KiB)
    for r in (9, 3, 7, 0, 5):
        b.add(prop("A", r), 100 * KiB)
    kept = sorted(m.message.round for m in b)
    assert kept == [0, 3] and FUTURE_PROPOSALS_PER_SIGNER == 2
    assert b.statistics().dropped == 3


def test_a_signer_is_bounded_in_bytes_and_messages() -> None:
    b = buf(signer_bytes=250 * KiB, signer_messages=4)
    assert b.add(prop("A", 0), 200 * KiB)
    assert not b.add(prop("A", 4), 200 * KiB)  # over its bytes: the higher round goes
    for r in range(10):
        b.add(vmsg("A", r), 1 * KiB)
    mine = list(b)
    assert len(mine) == 4 and b.statistics().largest_signer_bytes <= 250 * KiB
    # the lowest (height, round) are kept
    assert sorted(m.message.round for m in mine) == [0, 0, 1, 2]


def test_when_full_the_heaviest_signer_makes_room_for_the_others() -> None:
    b = buf(max_bytes=400 * KiB, signer_bytes=400 * KiB, signer_messages=100)
    assert b.add(prop("A", 0), 200 * KiB) and b.add(prop("A", 4), 190 * KiB)
    # an honest signer's vote still gets in: A (the heaviest) loses its highest round
    assert b.add(vmsg("B", 0), 20 * KiB)
    assert [m.message.round for m in b if isinstance(m.message, core.Proposal)] == [0]
    assert b.statistics().bytes <= 400 * KiB


def test_both_votes_of_an_equivocation_are_parked_for_evidence() -> None:
    b = buf()
    assert b.add(vmsg("C", 0, tag="x"), 300) and b.add(vmsg("C", 0, tag="y"), 300)
    assert not b.add(vmsg("C", 0, tag="y"), 300)


def test_take_returns_a_height_in_arrival_order_and_drops_lower_heights() -> None:
    b = buf()
    b.add(vmsg("A", 0, height=5), 10)
    b.add(vmsg("B", 1, height=6), 10)
    b.add(prop("C", 0, height=6), 10)
    b.add(vmsg("D", 0, height=7), 10)
    assert b.has_height(6) and not b.has_height(8)
    got = b.take(6)
    assert [m.message for m in got] == [vmsg("B", 1, height=6).message, prop("C", 0, height=6).message]
    assert [m.message.height for m in b] == [7] and b.statistics().bytes == 10


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCD"), st.integers(0, 40), st.booleans(),
                          st.integers(1, 300 * KiB), st.sampled_from(["x", "y"])), max_size=120))
def test_the_bounds_hold_for_any_sequence(ops: list[tuple[str, int, bool, int, str]]) -> None:
    b = buf(max_bytes=600 * KiB, max_messages=20, signer_bytes=250 * KiB, signer_messages=6)
    for name, r, is_proposal, size, tag in ops:
        b.add(prop(name, r, tag=tag) if is_proposal else vmsg(name, r, tag=tag), size)
        s = b.statistics()
        assert s.bytes <= 600 * KiB and s.messages <= 20 and s.largest_signer_bytes <= 250 * KiB
        assert s.bytes == sum(_sizes(b))
        for signer in {pub(n) for n in "ABCD"}:
            props = [m for m in b if isinstance(m.message, core.Proposal) and m.message.proposer == signer]
            assert len(props) <= FUTURE_PROPOSALS_PER_SIGNER
            keys = {(m.message.height, m.message.round) for m in props}
            assert len(keys) == len(props)  # one per (height, round, proposer)


def _sizes(b: FutureBuffer) -> list[int]:
    return [p.size for p in b._parked.values()]


def test_the_inbox_quota_is_per_signer_and_total_and_frees_on_release() -> None:
    q = InboxQuota(max_bytes=500, signer_bytes=300)
    assert q.try_reserve(b"a", 300)
    assert not q.try_reserve(b"a", 1)  # a's share is used up
    assert q.try_reserve(b"b", 200)
    assert not q.try_reserve(b"c", 1)  # the total is used up
    q.release(b"a", 300)
    assert q.try_reserve(b"c", 250)
    s = q.statistics()
    assert s.bytes == 450 and s.dropped == 2
