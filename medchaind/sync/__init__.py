"""Block sync: a node that is behind fetches committed blocks from its peers.

Request/response protocol ``/medchain/<chain>/sync/1`` (``docs/protocol.md`` §13):
``{"op": "status"}`` -> ``{"height", "hash"}``; ``{"op": "blocks", "from", "to"}`` ->
``{"blocks": [[block, commit], ...]}`` (at most 64 blocks and 48 MiB per answer).

The catch-up loop runs every ``interval`` and at once when a block announcement or a
consensus message shows a peer ahead of us. It asks every connected peer for its
status, then pulls blocks from the highest peer in ranges and hands each to the
consensus engine (:meth:`BftEngine.submit_synced`), which verifies the commit against
the authority set of that height and re-executes the block before the ledger takes it.
A peer that serves an invalid block is skipped for a while. Nothing here trusts a peer:
the worst a lying peer can do is waste our time.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from ..consensus.wire import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_BYTES,
    SYNC_PROTOCOL,
    decode_announce,
    decode_blocks,
    decode_status,
    decode_sync_request,
    encode_blocks,
    encode_status,
    encode_sync_request,
)
from ..errors import MedchainError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..consensus.bft import BftEngine
    from ..net.api import NetworkAPI, PeerId
    from ..node.ledger import Ledger
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

BAN_SECONDS = 30.0


class SyncService:
    def __init__(self, ledger: Ledger, engine: BftEngine, net: NetworkAPI, *, interval: float = 1.0) -> None:
        self.ledger = ledger
        self.engine = engine
        self.net = net
        self.interval = interval
        self.target_height = 0
        self.syncing = False
        self.blocks_synced = 0
        self._poke = trio.Event()
        self._banned: dict[str, float] = {}
        net.set_handler(SYNC_PROTOCOL, self._serve)

    def status(self) -> dict[str, Any]:
        return {
            "syncing": self.syncing,
            "height": self.ledger.height,
            "target_height": max(self.target_height, self.ledger.height),
            "blocks_synced": self.blocks_synced,
        }

    # ------------------------------------------------------------ serving

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        req = decode_sync_request(data)
        store = self.ledger.store
        if req["op"] == "status":
            return encode_status(self.ledger.height, self.ledger.tip.block_hash)
        items: list[tuple[bytes, bytes]] = []
        size = 0
        top = min(req["to"], self.ledger.height, req["from"] + MAX_SYNC_BLOCKS - 1)
        for h in range(req["from"], top + 1):
            block, commit = store.get_block(h), store.get_commit(h)
            if block is None or commit is None:
                break
            b, c = block.encode(), commit.encode()
            if items and size + len(b) + len(c) > MAX_SYNC_BYTES - 1024:
                break
            items.append((b, c))
            size += len(b) + len(c)
        return encode_blocks(items)

    def on_announce(self, peer: PeerId, data: bytes) -> bool:
        """Gossip validator of the block topic: note heights ahead of ours."""
        try:
            height, _ = decode_announce(data)
        except MedchainError:
            return False
        if height > self.ledger.height + 1:
            self.target_height = max(self.target_height, height)
            self._poke.set()
        return True

    def poke(self) -> None:
        self._poke.set()

    # ------------------------------------------------------------ catching up

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self.interval):
                await self._poke.wait()
            self._poke = trio.Event()
            try:
                await self.catch_up()
            except MedchainError as exc:
                log.warning("sync round failed: %s", exc)

    async def _peer_status(self, peer: PeerId, out: dict[PeerId, int]) -> None:
        try:
            raw = await self.net.request(peer, SYNC_PROTOCOL, encode_sync_request("status"), timeout=5)
            out[peer] = decode_status(raw)[0]
        except MedchainError:
            pass

    async def catch_up(self) -> None:
        now = time.monotonic()
        peers = [p for p in self.net.connected_peers() if self._banned.get(p, 0) < now]
        if not peers:
            return
        heights: dict[PeerId, int] = {}
        async with trio.open_nursery() as n:
            for p in peers:
                n.start_soon(self._peer_status, p, heights)
        if not heights:
            return
        best_peer = max(heights, key=lambda p: heights[p])
        best = heights[best_peer]
        self.target_height = max(self.target_height, best)
        # One block behind is normal while a height is being decided; consensus will
        # deliver it. Further behind, or stuck, we fetch.
        if best <= self.ledger.height:
            return
        self.syncing = True
        try:
            while self.ledger.height < best:
                start = self.ledger.height + 1
                end = min(best, start + MAX_SYNC_BLOCKS - 1)
                raw = await self.net.request(best_peer, SYNC_PROTOCOL,
                                             encode_sync_request("blocks", **{"from": start, "to": end}),
                                             timeout=30)
                items = decode_blocks(raw)
                if not items:
                    return
                for block, commit in items:
                    if block.height != self.ledger.height + 1:
                        continue
                    try:
                        await self.engine.submit_synced(block, commit)
                    except MedchainError:
                        self._banned[best_peer] = time.monotonic() + BAN_SECONDS
                        log.warning("sync: peer served an invalid block; skipping it peer=%s", best_peer)
                        return
                    self.blocks_synced += 1
                if self.ledger.height < start:
                    return
                log.info("sync progress height=%d target=%d", self.ledger.height, best)
        finally:
            self.syncing = False
