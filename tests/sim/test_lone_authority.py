"""A lone authority publishes nothing while no peer is connected (issue 14: one
authority's throughput). Its proposals, votes, block announcements and tx batches had
no receiver, yet each publish signed, validated and cached a message on the event loop.
Once a peer connects, it gossips as before, and the peer catches up by block sync.
"""

from __future__ import annotations

from pathlib import Path

import trio
from test_cluster import commit_txs, register_tx

from medchaind.testing.cluster import Cluster


async def test_a_lone_authority_publishes_nothing_until_a_peer_connects(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    c = Cluster(1, observers=1, wal_dir=tmp_path, seed=5)
    lone, observer = c.nodes
    async with trio.open_nursery() as nursery:
        await c.start(nursery, which=[0])
        assert lone.net.connected_peers() == []
        await commit_txs(c, [register_tx(c.genesis.chain_id) for _ in range(3)], [0])
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0])
        assert lone.height >= 2
        await trio.sleep(1)  # mock clock: the tx publisher's batching interval (50 ms) passes
        assert lone.net.statistics().published == 0
        assert lone.txgossip.unsent == 4  # admitted and proposed, never sent to nobody

        await c.start(nursery, which=[1])
        with trio.fail_after(120):
            await observer.ledger.wait_height(lone.height)  # block sync, no gossip needed
            await lone.net.wait_peers(1)
        tx = register_tx(c.genesis.chain_id)
        await commit_txs(c, [tx], [0, 1])
        assert lone.net.statistics().published > 0
        assert observer.ledger.is_committed(tx.hash)
        c.check_agreement()
        nursery.cancel_scope.cancel()
