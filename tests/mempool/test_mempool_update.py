"""After a block: ``Mempool.update`` drops what was committed and what the new state made
invalid; ``wait_for_txs`` wakes the proposer when a tx arrives; a tx's signature is
verified once, at admission, and block validation reuses the SigCache entry.
Harness: P, Q, R (patients), X (provider) registered; Z unknown.
"""

from __future__ import annotations

import trio
import trio.testing
from mempool_kit import CHAIN_ID, Harness, key, pub

from medchaind.chain import build_block, validate_block
from medchaind.types import Commit, sign_commit_vote


def test_committed_txs_are_removed() -> None:
    h = Harness()
    txs = [h.update("P"), h.update("Q"), h.update("R")]
    for t in txs:
        h.pool.add(t)
    h.commit(txs[:2])
    assert h.pending() == [("R", 1)]
    assert h.pool.statistics().bytes == len(txs[2].encoded)
    assert not h.pool.has_nonce(pub("P"), 1)


def test_stale_nonce_from_a_block_of_another_node_is_dropped() -> None:
    h = Harness()
    h.pool.add(h.update("P", 1, tag="here"))
    h.pool.add(h.update("P", 2, tag="here"))
    h.pool.add(h.update("Q", 1))
    h.commit([h.update("P", 1, tag="there")])  # the same nonce, another tx, from elsewhere
    assert h.pending() == [("P", 2), ("Q", 1)]
    assert [(t.sender, t.nonce) for t in h.pool.reap(10, 1 << 20)] == [(pub("P"), 2), (pub("Q"), 1)]


def test_register_made_invalid_by_the_block_is_dropped() -> None:
    # Z queued two registrations; only the first can be dry-run at admission. Once a
    # block commits Z's registration, the second is sure to fail and leaves the pool.
    h = Harness()
    first, second = h.register("Z", nonce=0), h.register("Z", nonce=1, role="payer")
    h.pool.add(first)
    h.pool.add(second)
    h.pool.add(h.update("P"))
    h.commit([first])
    assert h.pending() == [("P", 1)]


def test_vote_made_invalid_by_the_block_is_dropped() -> None:
    # Four authorities: B's vote for X waits in this pool while a block from elsewhere
    # carries A's, C's and D's votes, which accredit X. B's vote would now fail.
    h = Harness(authorities={"A": 1, "B": 1, "C": 1, "D": 1})
    body = {"subject": pub("X"), "role": "provider"}
    h.pool.add(h.tx("B", "governance.accredit", body))
    h.pool.add(h.update("P"))
    ex = h.commit([h.tx(a, "governance.accredit", body) for a in "ACD"])
    assert [r.code for r in ex.receipts] == ["ok", "ok", "ok"]
    assert h.pending() == [("P", 1)]


def test_update_of_a_revoked_identity_is_dropped() -> None:
    h = Harness()
    h.commit([h.tx("A", "governance.accredit", {"subject": pub("X"), "role": "provider"})])
    h.pool.add(h.update("X"))
    h.commit([h.tx("A", "governance.revoke", {"subject": pub("X"), "reason": "fraud"})])
    assert len(h.pool) == 0


def test_later_nonces_survive_when_still_valid() -> None:
    h = Harness()
    txs = [h.update("P", n) for n in (1, 2, 3)]
    for t in txs:
        h.pool.add(t)
    h.commit(txs[:1])
    assert h.pending() == [("P", 2), ("P", 3)]


async def test_wait_for_txs_wakes_when_a_tx_arrives() -> None:
    h = Harness()
    woke = trio.Event()

    async def proposer() -> None:
        await h.pool.wait_for_txs()
        woke.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(proposer)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            h.pool.add(h.update("P"))
            await woke.wait()


async def test_wait_for_txs_returns_at_once_when_not_empty() -> None:
    h = Harness()
    h.pool.add(h.update("P"))
    with trio.fail_after(10):
        await h.pool.wait_for_txs()


# The two tests below run trio themselves (trio.run) rather than as pytest-trio tests,
# so a failing assertion is not wrapped in an ExceptionGroup.


def test_wait_for_txs_is_always_a_checkpoint() -> None:
    h = Harness()
    h.pool.add(h.update("P"))

    async def main() -> None:
        with trio.testing.assert_checkpoints():
            await h.pool.wait_for_txs()

    trio.run(main)


def test_wait_for_txs_ignores_txs_that_cannot_be_proposed_yet() -> None:
    h = Harness()
    h.pool.add(h.update("P", 2))  # P's next nonce is 1: nothing to propose
    assert h.pool.reap(100, 1 << 20) == []
    woke = trio.Event()
    woke_before_the_gap_filled = []

    async def proposer() -> None:
        await h.pool.wait_for_txs()
        woke.set()

    async def main() -> None:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proposer)
                await trio.testing.wait_all_tasks_blocked()
                woke_before_the_gap_filled.append(woke.is_set())
                h.pool.add(h.update("P", 1))  # the gap is filled
                await woke.wait()
        assert woke_before_the_gap_filled == [False]  # today: it returned at once

    trio.run(main)


def test_signature_verified_once_between_admission_and_block_validation() -> None:
    h = Harness()
    txs = [h.update("P"), h.update("Q"), h.update("P", 2)]
    for t in txs:
        h.pool.add(t)
    assert all(t.hash in h.sigs for t in txs)
    misses, hits = h.sigs.misses, h.sigs.hits

    tip = h.tip()
    parent = Commit(
        tip.height,
        0,
        tip.block_hash,
        (sign_commit_vote(key("A"), CHAIN_ID, tip.height, 0, tip.block_hash),),
    )
    block, ex = build_block(
        h.app,
        h.state,
        tip,
        h.pool.reap(100, 1 << 20),
        proposer=pub("A"),
        time_ms=tip.time_ms + 1000,
        round_=0,
        last_commit=parent,
    )
    got = validate_block(h.app, h.state, tip, block, h.sigs, max_txs=100, max_bytes=1 << 20)
    assert got == ex
    assert all(r.ok for r in ex.receipts)
    assert h.sigs.misses == misses  # nothing verified again
    assert h.sigs.hits == hits + len(txs)


def test_txs_stuck_behind_a_nonce_gap_expire() -> None:
    h = Harness()
    gapped = h.update("P", nonce=h.nonce("P") + 5)  # nonces +0..+4 never arrive
    assert h.pool.add(gapped)
    h.commit([])
    assert gapped.hash in h.pool, "a young gapped tx waits for its predecessors"
    h.clock.now += h.pool.config.gap_ttl_s + 1
    h.commit([])
    assert gapped.hash not in h.pool
    assert h.pool.statistics().dropped == 1


def test_age_of_a_pending_tx_follows_the_pool_clock_and_ends_with_the_tx() -> None:
    h = Harness()
    tx = h.update("P", 1, tag="aging")
    assert h.pool.age_s(tx.hash) is None  # not pending yet
    h.pool.add(tx)
    assert h.pool.age_s(tx.hash) == 0.0
    h.clock.now += 2.5
    assert h.pool.age_s(tx.hash) == 2.5
    h.commit([tx])
    assert h.pool.age_s(tx.hash) is None


async def test_a_held_tx_is_not_proposed_until_released_and_its_release_wakes_the_proposer() -> None:
    h = Harness()
    first, second = h.update("P", 1, tag="held"), h.update("P", 2, tag="behind it")
    assert h.pool.add(first, held=True) and h.pool.add(second)
    assert first.hash in h.pool and h.pool.reap(10, 1 << 20) == []  # the sender's later tx waits too
    woke = False

    async def proposer() -> None:
        nonlocal woke
        await h.pool.wait_for_txs()
        woke = True

    async with trio.open_nursery() as n:
        n.start_soon(proposer)
        await trio.testing.wait_all_tasks_blocked()
        assert not woke  # held: nothing proposable yet
        assert h.pool.release(first.hash)
        await trio.testing.wait_all_tasks_blocked()
        assert woke
    assert h.pool.reap(10, 1 << 20) == [first, second]


def test_a_held_tx_dropped_meanwhile_is_not_released_and_reports_its_reason() -> None:
    h = Harness()
    tx = h.update("P", 1, tag="held")
    h.pool.add(tx, held=True)
    h.pool.drop(tx.hash, "blob_store_failed")
    assert tx.hash not in h.pool and not h.pool.release(tx.hash)
    assert h.pool.dropped_reason(tx.hash) == "blob_store_failed"
    assert h.pool.reap(10, 1 << 20) == []
