"""Compact proposals in a cluster (docs/protocol.md §12.3, §13.5): authorities whose
mempools lack a proposal's txs fetch them and still decide; a proposal whose txs cannot
be obtained is as if it never came (nil prevote, no "invalid"), and the chain goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from test_cluster import register_tx, wait_committed

from medchaind import codec
from medchaind.consensus.compact import TXS_PROTOCOL
from medchaind.net.api import PeerId
from medchaind.testing.cluster import Cluster
from medchaind.types import Tx


def hold_only(c: Cluster, holder: int, txs: list[Tx]) -> None:
    """Put ``txs`` in one node's mempool, without gossiping them to anyone."""
    for tx in txs:
        assert c.nodes[holder].mempool.add(tx)


async def run_until_committed(c: Cluster, txs: list[Tx]) -> None:
    """Run the cluster until every node committed ``txs``; then no fork anywhere."""
    async with trio.open_nursery() as n:
        await c.start(n)
        with trio.fail_after(120):
            for node in c.nodes:
                await wait_committed(node, txs)
        n.cancel_scope.cancel()
    c.check_agreement()


async def test_authorities_lacking_every_tx_fetch_them_and_decide(autojump_clock: trio.abc.Clock,
                                                                 tmp_path: Path) -> None:
    c = Cluster(4, seed=7, wal_dir=tmp_path)
    chain = c.genesis.chain_id
    txs = [register_tx(chain) for _ in range(30)]
    hold_only(c, 0, txs)
    await run_until_committed(c, txs)
    for node in c.nodes[1:]:
        assert len(node.mempool) == 0  # nothing came by tx gossip: each block was rebuilt from a fetch
    fetched = sum(node.engine.proposals_stats["txs_fetched"] for node in c.nodes[1:])
    assert fetched >= len(txs)  # every tx reached every other authority through txs/1 at least once
    assert all(node.engine.proposals_stats["fetch_failed"] == 0 for node in c.nodes)


async def test_partly_held_txs_are_reused_and_only_the_rest_fetched(autojump_clock: trio.abc.Clock,
                                                                  tmp_path: Path) -> None:
    c = Cluster(4, seed=3, wal_dir=tmp_path)
    chain = c.genesis.chain_id
    txs = [register_tx(chain) for _ in range(20)]
    for node in c.nodes:  # everyone holds the first half; only node 0 the second
        hold_only(c, c.nodes.index(node), txs[:10])
    hold_only(c, 0, txs[10:])
    await run_until_committed(c, txs)
    for node in c.nodes[1:]:
        assert node.engine.proposals_stats["txs_fetched"] <= 10 * max(1, node.engine.proposals_stats["fetched"])


async def test_a_proposal_whose_txs_cannot_be_fetched_is_as_if_never_received(
        autojump_clock: trio.abc.Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Node 0 holds txs nobody else has and answers txs/1 with the wrong bytes: its
    proposals time out at the others (nil prevotes), no block is judged invalid, the
    liar is reported to sync, and the other authorities keep the chain going."""
    c = Cluster(4, seed=11, wal_dir=tmp_path)
    chain = c.genesis.chain_id
    hold_only(c, 0, [register_tx(chain) for _ in range(5)])
    wrong = register_tx(chain).encoded

    async def lie(peer: PeerId, data: bytes) -> bytes:
        return codec.encode({"txs": [wrong]})

    c.nodes[0].net.set_handler(TXS_PROTOCOL, lie)
    caplog.set_level(logging.INFO, logger="medchaind.consensus")
    async with trio.open_nursery() as n:
        await c.start(n)
        with trio.fail_after(300):
            while not any(node.engine.proposals_stats["fetch_failed"] for node in c.nodes[1:]):
                await c.nodes[1].ledger.wait_height(c.nodes[1].height + 1)
            # the honest three decide further heights without node 0's txs
            top = max(node.height for node in c.nodes)
            await c.wait_height(top + 2, which=[1, 2, 3])
        n.cancel_scope.cancel()
    c.check_agreement()
    assert not [r for r in caplog.records if "invalid proposal" in r.getMessage()]
    assert any("treated as not received" in r.getMessage() for r in caplog.records)
    assert any(node.sync.banned(c.nodes[0].net.peer_id) for node in c.nodes[1:])
    for node in c.nodes[1:]:
        for h in range(1, node.height + 1):
            block = node.ledger.store.get_block(h)
            assert block is not None and not block.txs  # node 0's txs never made it to a block
