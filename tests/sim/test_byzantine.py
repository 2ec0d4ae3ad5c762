"""Byzantine peers against full nodes (issue 9): the short, seeded versions of the
scenarios that ``scripts/byzantine.py`` runs longer.

* **Sync lie** (defect 1): one authority claims height 2^62 over sync and in block
  announcements and then serves no blocks (empty answers, or no answer at all). A
  restarted observer and a lagging authority must still catch up from the honest
  peers, and no honest node may report the lie as its sync target. Before the fix, sync
  followed the highest claim only: the observer stayed where it was, and once the liar
  also stopped voting a four-authority chain halted.
* **Proposal flood** (defect 2): one authority signs proposals with distinct blocks for
  every round of the next two heights (most of them not its turn). Before the fix every
  one was parked and then executed and cached; now what it can make a node hold is
  bounded per signer.

All nodes run over the MemoryNetwork under ``autojump_clock``; every wait is a condition
with a deadline in virtual time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from byzantine_kit import (
    Held,
    announce_lies,
    consensus_seen,
    flood_messages,
    held_of,
    make_sync_liar,
    publish_all,
    silence_consensus,
    wait_until,
)
from test_cluster import commit_txs, register_tx

from medchaind.testing.cluster import Cluster

LIAR = 3


def assert_no_honest_target_is_the_lie(c: Cluster, honest: list[int]) -> None:
    top = max(n.height for n in c.nodes)
    for i in honest:
        target = c.nodes[i].sync.status()["target_height"]
        assert target <= top + 1, f"node {i} reports target {target} (chain top {top})"


@pytest.mark.parametrize("mode", ["empty", "silent"])
async def test_a_restarted_observer_catches_up_while_an_authority_lies_about_its_height(
        autojump_clock: trio.abc.Clock, tmp_path: Path, mode: str) -> None:
    OBS = 4
    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=21, create_empty_blocks=True)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        make_sync_liar(c.nodes[LIAR], mode=mode)
        nursery.start_soon(announce_lies, c.nodes[LIAR])
        with trio.fail_after(120):
            await c.wait_height(16, [OBS])
        c.nodes[OBS].crash()
        with trio.fail_after(120):
            await c.wait_height(25, [0])
            await c.nodes[OBS].wait_stopped()
        await c.restart(OBS)
        # the issue: stuck at 16 of 25 for as long as the lie lasted (60 s measured)
        with trio.fail_after(10):
            await c.nodes[OBS].ledger.wait_height(c.nodes[0].height)
        assert_no_honest_target_is_the_lie(c, [0, 1, 2, OBS])
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_honest_nodes_never_report_a_liars_height_as_their_target(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=22, create_empty_blocks=True)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        make_sync_liar(c.nodes[LIAR], mode="empty")
        nursery.start_soon(announce_lies, c.nodes[LIAR])
        for h in (3, 6, 9, 12):
            with trio.fail_after(60):
                await c.wait_height(h, [0, 1, 2])
            assert_no_honest_target_is_the_lie(c, [0, 1, 2])
        # and the liar's faults were noticed (it is banned, not followed)
        assert all(c.nodes[i].sync.book.faults_total >= 1 for i in (0, 1, 2))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", ["empty", "silent"])
async def test_a_lagging_authority_catches_up_and_the_chain_survives_when_the_liar_stops_voting(
        autojump_clock: trio.abc.Clock, tmp_path: Path, mode: str) -> None:
    LAG = 2
    c = Cluster(4, wal_dir=tmp_path, seed=23, create_empty_blocks=True)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        make_sync_liar(c.nodes[LIAR], mode=mode)
        nursery.start_soon(announce_lies, c.nodes[LIAR])
        with trio.fail_after(60):
            await c.wait_height(5, [LAG])
        c.nodes[LAG].crash()
        with trio.fail_after(120):
            await c.wait_height(20, [0])
            await c.nodes[LAG].wait_stopped()
        await c.restart(LAG)
        silence_consensus(c.nodes[LIAR])  # from now on no height can be decided without LAG
        h = c.nodes[0].height
        with trio.fail_after(60):
            await c.wait_height(h + 5, [0, 1, LAG])
        assert_no_honest_target_is_the_lie(c, [0, 1, LAG])
        c.check_agreement()
        nursery.cancel_scope.cancel()


ROUNDS = 40
BLOCK_BYTES = 128 * 1024


async def test_a_proposal_flood_from_one_authority_leaves_the_buffers_bounded(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    FLOODER, HONEST = 3, [0, 1, 2]
    c = Cluster(4, wal_dir=tmp_path, seed=24)
    flooder_key = c.keys[FLOODER].public_key
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        h = c.nodes[0].height + 1  # idle chain: nobody has started h yet
        messages = (flood_messages(c, FLOODER, h, ROUNDS, BLOCK_BYTES)
                    + flood_messages(c, FLOODER, h + 1, ROUNDS, BLOCK_BYTES))
        seen = {i: consensus_seen(c.nodes[i]) for i in HONEST}
        peak = {i: Held() for i in HONEST}

        def sample() -> bool:
            for i in HONEST:
                peak[i] = peak[i].peak(held_of(c.nodes[i], flooder_key))
            return all(consensus_seen(c.nodes[i]) >= seen[i] + len(messages)
                       and held_of(c.nodes[i], flooder_key).queued == 0 for i in HONEST)

        await publish_all(c.nodes[FLOODER], messages)
        await wait_until(sample, timeout_s=60, step_s=0.01)
        # the chain still works, and the parked flood is replayed when h + 1 starts
        await commit_txs(c, [register_tx(c.genesis.chain_id) for _ in range(2)], [0, 1, 2, 3])
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        sample()
        for i in HONEST:
            p = peak[i]
            # parked for h + 1: at most two proposals of this signer (its two lowest turns)
            assert p.parked_proposals <= 2, (i, p)
            # judged and cached: only proposals the core keeps (its turns, within the
            # core's two catch-up rounds), at h and at h + 1
            assert p.cached_blocks <= 6, (i, p)
            assert p.parked_bytes + p.cached_bytes <= 8 * (BLOCK_BYTES + 64 * 1024), (i, p)
            stats = c.nodes[i].engine.statistics()
            assert stats["future"].largest_signer_bytes <= c.nodes[i].engine._future.signer_bytes
            assert stats["inbox"].bytes == 0
        c.check_agreement()
        nursery.cancel_scope.cancel()
