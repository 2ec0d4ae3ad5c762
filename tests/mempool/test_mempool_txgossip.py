"""Tx gossip between two mempools over a MemoryNetwork (node/txgossip.py): batches are
admitted on the other side, each newly admitted tx is announced once (the node turns
that into a ``pending`` notification), and refused or malformed input is only counted.
"""

from __future__ import annotations

from typing import Any

import trio
from mempool_kit import Harness, forge

from medchaind.consensus.wire import encode_tx_batch, tx_topic
from medchaind.net import MemoryNetwork
from medchaind.node.txgossip import TxGossip
from medchaind.testing.wait import Changes
from medchaind.types import Tx


class WatchedGossip(TxGossip):
    """TxGossip that notifies after each batch it takes in: its counters have no event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches = Changes()

    async def _admit(self, data: bytes) -> None:
        try:
            await super()._admit(data)
        finally:
            self.batches.notify()


async def test_gossiped_txs_are_admitted_and_announced_once() -> None:
    a, b = Harness(), Harness()
    hub = MemoryNetwork(seed=3)
    net_a, net_b = hub.endpoint("a"), hub.endpoint("b")
    announced: list[Tx] = []
    gossip_a = TxGossip(net_a, a.pool, a.genesis.chain_id)
    gossip_b = WatchedGossip(net_b, b.pool, b.genesis.chain_id, on_admitted=announced.append)
    txs = [a.update("P", tag="1"), a.update("Q", tag="2")]
    bad = forge(a.update("R", tag="3"))
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for net in (net_a, net_b):
                await nursery.start(net.run)
            await nursery.start(gossip_a.run)
            await nursery.start(gossip_b.run)
            await net_a.wait_topic_peers(tx_topic(a.genesis.chain_id), 1)
            for tx in txs:
                assert a.pool.add(tx)
                gossip_a.queue(tx)
            gossip_a.queue(bad)  # a peer may relay garbage: refused on admission, counted
            await gossip_b.batches.wait_for(lambda: gossip_b.received + gossip_b.refused >= 3)
            # the same batch again (a re-gossip): admitted already, not announced again
            await net_a.publish(tx_topic(a.genesis.chain_id), encode_tx_batch([t.encoded for t in txs]))
            await gossip_b.batches.wait_for(lambda: gossip_b.received >= 4)
            nursery.cancel_scope.cancel()
    assert [t.hash for t in announced] == [t.hash for t in txs]
    assert all(t.hash in b.pool for t in txs) and bad.hash not in b.pool
    assert gossip_b.refused == 1
