"""``consensus.min_block_interval_ms``: fewer, fuller blocks under a steady trickle of
txs, never a held-back block that is half full or more (BftEngine._hold_for_a_fuller_block). Full nodes over
the MemoryNetwork under autojump_clock: commit times are virtual, so the spacing is
exact and nothing depends on the machine's speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from medchaind import crypto
from medchaind.testing.cluster import Cluster
from medchaind.types import Params, Tx, sign_tx


def register_tx(chain: str) -> Tx:
    kp = crypto.KeyPair.generate()
    return sign_tx(kp.signing, chain, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key})


async def trickle(c: Cluster, n: int, every_s: float) -> list[float]:
    """Submit ``n`` txs, one every ``every_s`` (round robin over the nodes), until node0 has
    committed them all; returns node0's commit times (virtual) of the heights they took."""
    txs = [register_tx(c.genesis.chain_id) for _ in range(n)]
    node0 = c.nodes[0]
    start = node0.height
    times: list[float] = []

    async def watch() -> None:
        h = start
        while True:
            await node0.ledger.wait_height(h + 1)
            h = node0.height
            times.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for i, tx in enumerate(txs):
            c.nodes[i % len(c.nodes)].submit(tx)
            await trio.sleep(every_s)
        with trio.fail_after(60):
            while not all(node0.ledger.is_committed(t.hash) for t in txs):
                await node0.ledger.wait_height(node0.height + 1)
        nursery.cancel_scope.cancel()
    return times


async def run_trickle(tmp_path: Path, hold_ms: int) -> list[float]:
    (tmp_path / str(hold_ms)).mkdir()
    c = Cluster(4, wal_dir=tmp_path / str(hold_ms), seed=21, min_block_interval_ms=hold_ms)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        times = await trickle(c, 80, 0.05)
        c.check_agreement()
        nursery.cancel_scope.cancel()
    return times


async def test_a_trickle_makes_fewer_blocks_spaced_by_the_interval(autojump_clock: trio.abc.Clock,
                                                                   tmp_path: Path) -> None:
    at_once = await run_trickle(tmp_path, 0)
    held = await run_trickle(tmp_path, 400)
    gaps = [b - a for a, b in zip(held, held[1:], strict=False)]
    # each proposer waits 400 ms after its own commit; node0 commits within a message
    # latency (5-30 ms here) of it
    assert gaps and min(gaps) >= 0.35, gaps
    # the same 80 txs over 4 s: without the hold a height as soon as one is done
    assert len(held) * 2 <= len(at_once), (len(held), len(at_once))


async def test_a_full_block_is_not_held(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=22, min_block_interval_ms=450, params=Params(max_block_txs=10))
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await trickle(c, 1, 0)  # a first commit, so that the next heights follow one
        txs = [register_tx(c.genesis.chain_id) for _ in range(40)]
        for i, tx in enumerate(txs):
            c.nodes[i % 4].submit(tx)
        t0 = trio.current_time()
        node0 = c.nodes[0]
        with trio.fail_after(60):
            while not all(node0.ledger.is_committed(t.hash) for t in txs):
                await node0.ledger.wait_height(node0.height + 1)
        # four blocks of 10: held, they would take at least 3 x 450 ms
        assert trio.current_time() - t0 < 1.2
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_half_a_block_is_not_held(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=23, min_block_interval_ms=450, params=Params(max_block_txs=10))
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        node0 = c.nodes[0]
        await trickle(c, 1, 0)  # a first commit, so that the next height follows one
        # each batch arrives right after the commit before it: 5 txs (half a block of 10)
        # start the height at once, 4 wait for the hold
        for n, held in ((5, False), (4, True)):
            submitted = trio.current_time()
            txs = [register_tx(c.genesis.chain_id) for _ in range(n)]
            for tx in txs:
                node0.submit(tx)
            with trio.fail_after(60):
                while not all(node0.ledger.is_committed(t.hash) for t in txs):
                    await node0.ledger.wait_height(node0.height + 1)
            took = trio.current_time() - submitted
            assert (took >= 0.4) is held, (n, took)
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_the_hold_ends_quietly_when_the_clock_passes_its_deadline_between_two_reads(
        autojump_clock: trio.abc.Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves 0.3 s per read, so the deadline passes between any two reads of
    one poll: the hold returns. (It used to compute its sleep from a second read, got a
    negative duration, and trio.sleep raised: the node died.)"""
    c = Cluster(1, wal_dir=tmp_path, seed=24, min_block_interval_ms=450)
    engine = c.nodes[0].engine
    start = trio.current_time()
    reads = iter(range(1, 100))

    def jumpy() -> float:
        return start + 0.3 * next(reads)

    monkeypatch.setattr(trio, "current_time", jumpy)
    with trio.fail_after(5):
        await engine._hold_for_a_fuller_block(start)
