"""Transaction gossip: txs this node admitted, batched onto the tx topic.

Batches are bounded by count (256) and time (20 ms), so gossip carries few large
messages instead of many small ones (py-libp2p costs ~2 ms of CPU per message per
node, DESIGN.md §5). Received batches go through the mempool's normal admission; a
refusal (duplicate, already committed, invalid) is counted and dropped. Txs learned
from peers are not re-queued: gossipsub itself forwards the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..consensus.wire import decode_tx_batch, encode_tx_batch, tx_topic
from ..errors import MedchainError, TxRejected
from ..types import Tx, decode_tx

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..mempool import Mempool
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

BATCH_TXS = 256
BATCH_DELAY = 0.02


class TxGossip:
    def __init__(
        self, net: NetworkAPI, mempool: Mempool, chain_id: str, on_admitted: Callable[[Tx], None] | None = None
    ) -> None:
        self.net = net
        self.mempool = mempool
        self._on_admitted = on_admitted
        self.topic = tx_topic(chain_id)
        self._queue: list[bytes] = []
        self._wake = trio.Event()
        self.received = 0
        self.refused = 0

    def queue(self, tx: Tx) -> None:
        self._queue.append(tx.encoded)
        self._wake.set()

    @staticmethod
    def validate(peer: PeerId, data: bytes) -> bool:
        """Gossip validator: the batch must be well-formed (txs are checked on admission)."""
        try:
            decode_tx_batch(data)
        except MedchainError:
            return False
        return True

    def _admit(self, data: bytes) -> None:
        for raw in decode_tx_batch(data):
            try:
                tx = decode_tx(raw)
                if self.mempool.add(tx) and self._on_admitted is not None:
                    self._on_admitted(tx)
                self.received += 1
            except TxRejected:
                self.refused += 1
            except MedchainError:
                self.refused += 1

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        inbox = self.net.subscribe(self.topic, self.validate)
        with inbox:
            await self._serve(inbox, task_status)

    async def _serve(self, inbox: trio.MemoryReceiveChannel[tuple[PeerId, bytes]], task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher)
            task_status.started()
            async for _peer, data in inbox:
                try:
                    self._admit(data)
                except MedchainError:
                    log.debug("dropping a malformed tx batch")

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if len(self._queue) < BATCH_TXS:
                await trio.sleep(BATCH_DELAY)
            while self._queue:
                batch, self._queue = self._queue[:BATCH_TXS], self._queue[BATCH_TXS:]
                try:
                    await self.net.publish(self.topic, encode_tx_batch(batch))
                except MedchainError as exc:
                    log.warning("tx gossip publish failed: %s", exc)
