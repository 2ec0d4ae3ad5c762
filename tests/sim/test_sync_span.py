"""Block sync under a link that cannot carry a full range in time (issue 14).

A node that fell behind asks its peers for 64 blocks at once. When no peer can send
that much before the deadline (a starved machine, a thin link), asking for the same
range again would keep the node behind for good; the range halves after a round in
which every answer timed out, and grows back after good answers. Here node 3's link
times out any ``blocks`` request for more than :data:`LINK_LIMIT` blocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from test_cluster import commit_txs, register_tx

from medchaind.net.api import RequestTimeout
from medchaind.sync.wire import MAX_SYNC_BLOCKS, SYNC_PROTOCOL, decode_sync_request
from medchaind.testing.cluster import Cluster

LINK_LIMIT = 3


async def test_a_node_whose_link_cannot_carry_a_full_range_still_catches_up(autojump_clock: trio.abc.Clock,
                                                                          tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=11)
    lagging = c.nodes[3]
    spans: list[int] = []
    real_request = lagging.net.request

    async def thin_link(peer: Any, protocol: str, data: bytes, *, timeout: float) -> bytes:  # noqa: ASYNC109
        if protocol == SYNC_PROTOCOL:
            req = decode_sync_request(data)
            if req["op"] == "blocks":
                spans.append(req["to"] - req["from"] + 1)
                if spans[-1] > LINK_LIMIT:
                    await trio.sleep(timeout)
                    raise RequestTimeout(f"no answer within {timeout} s")
        return await real_request(peer, protocol, data, timeout=timeout)

    lagging.net.request = thin_link  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        lagging.crash()
        for _ in range(8):  # one tx per round: at least 8 heights to catch up
            await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2])
        behind = c.nodes[0].height - lagging.height
        assert behind >= 8
        await c.restart(3)
        with trio.fail_after(600):
            await lagging.ledger.wait_height(c.nodes[0].height)
        assert spans[0] == MAX_SYNC_BLOCKS  # it asked for a full range first,
        assert min(spans) <= LINK_LIMIT  # then shrank until the link could carry an answer
        assert all(1 <= s <= MAX_SYNC_BLOCKS for s in spans)
        # after the first fit, growing back costs a timeout per few good answers at most
        first_fit = next(i for i, s in enumerate(spans) if s <= LINK_LIMIT)
        later = spans[first_fit:]
        assert sum(s > LINK_LIMIT for s in later) <= sum(s <= LINK_LIMIT for s in later)
        c.check_agreement()
        nursery.cancel_scope.cancel()
