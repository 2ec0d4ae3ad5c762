"""Transaction gossip: txs this node admitted, batched onto the tx topic.

A node publishes at most one batch every ``BATCH_INTERVAL`` (50 ms), of up to
``MAX_TX_BATCH`` txs or ``BATCH_BYTES``: under load the batches grow instead of the
message count, because py-libp2p costs ~2 ms of CPU per message per node (DESIGN.md
§5) and gossipsub forwards each one. The tx topic is marked as bulk traffic, so on
every peer connection votes and proposals are sent ahead of queued tx batches.

Under light load the interval alone would still send one message per interval with a
tx or two in it: at 200 tx/s offered over 4 authorities that was 80 messages a second
(~10 ms of CPU each over the 4 nodes), half of all the CPU the network spent per
committed tx (docs/benchmarks.md, "Issue 14, session 4"). So a batch smaller than
``MIN_BATCH_TXS`` txs and ``MIN_BATCH_BYTES`` waits for company until its oldest tx
has been queued ``MAX_BATCH_DELAY``: a tx reaches its peers at most that late, while
the message rate falls to one per ``MAX_BATCH_DELAY`` (or one per ``MIN_BATCH_TXS``
txs) per node. A block takes about a second here, so the delay costs a tx a fraction
of a height on average, and what the nodes save makes the heights shorter. This is a
node's sending policy: nothing on the wire or in any block changes.

Received batches go through the mempool's normal admission; a refusal (duplicate,
already committed, invalid) is counted and dropped. The batch's signatures are checked
first in worker threads (:class:`~medchaind.consensus.verify.Verifier`), and admission
yields to the scheduler every ``ADMIT_SLICE`` txs, so a 1,000-tx batch never holds the
event loop for more than a few milliseconds at a time (consensus messages wait behind
it otherwise). Txs learned from peers are not re-queued: gossipsub itself forwards the
batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..consensus.wire import MAX_TX_BATCH, decode_tx_batch, encode_tx_batch, tx_topic
from ..errors import MedchainError, TxRejected
from ..types import Tx, decode_tx

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..consensus.verify import Verifier
    from ..mempool import Mempool
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

#: at most one published batch per interval (seconds); txs queued meanwhile join it
BATCH_INTERVAL = 0.05
#: the encoded txs of one batch at most (MAX_TX_BATCH txs at most, too)
BATCH_BYTES = 1024 * 1024
#: a batch smaller than both of these waits for more txs (see the module docstring) ...
MIN_BATCH_TXS = 32
MIN_BATCH_BYTES = 64 * 1024
#: ... until its oldest tx has been queued this long (seconds)
MAX_BATCH_DELAY = 0.2
#: a publish waits at most this long for the bulk queues to peers to drain (seconds)
MAX_WIRE_WAIT = 2.0
#: txs admitted between two checkpoints
ADMIT_SLICE = 32


class TxGossip:
    def __init__(
        self, net: NetworkAPI, mempool: Mempool, chain_id: str, on_admitted: Callable[[Tx], None] | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.net = net
        self.verifier = verifier
        self.mempool = mempool
        self._on_admitted = on_admitted
        self.topic = tx_topic(chain_id)
        self._queue: list[bytes] = []
        #: the encoded bytes in _queue, and when its oldest entry was queued (trio time)
        self._queued_bytes = 0
        self._since = 0.0
        self._wake = trio.Event()
        self.received = 0
        self.refused = 0
        #: admitted txs not published because no peer was connected (statistics)
        self.unsent = 0

    def queue(self, tx: Tx) -> None:
        if not self._queue:
            self._queued_bytes, self._since = 0, trio.current_time()
        self._queue.append(tx.encoded)
        self._queued_bytes += len(tx.encoded)
        self._wake.set()

    def _batch_ready(self) -> bool:
        return len(self._queue) >= MIN_BATCH_TXS or self._queued_bytes >= MIN_BATCH_BYTES

    @staticmethod
    def validate(peer: PeerId, data: bytes) -> bool:
        """Gossip validator: the batch must be well-formed (§12.4). Only its envelope is
        read, from the heads alone (:func:`decode_tx_batch`, a fraction of a
        microsecond per tx); each tx is decoded once, on admission."""
        try:
            decode_tx_batch(data)
        except MedchainError:
            return False
        return True

    async def _admit(self, data: bytes) -> None:
        txs: list[Tx] = []
        for raw in decode_tx_batch(data):
            try:
                txs.append(decode_tx(raw))
            except MedchainError:
                self.refused += 1
        if self.verifier is not None:
            await self.verifier.preverify([t for t in txs if t.hash not in self.mempool])
        for i, tx in enumerate(txs):
            if i and i % ADMIT_SLICE == 0:
                await trio.lowlevel.checkpoint()
            try:
                if self.mempool.add(tx) and self._on_admitted is not None:
                    self._on_admitted(tx)
                self.received += 1
            except TxRejected:
                self.refused += 1
            except MedchainError:
                self.refused += 1

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        set_bulk = getattr(self.net, "set_bulk_topic", None)  # libp2p: tx batches queue behind consensus
        if set_bulk is not None:
            set_bulk(self.topic)
        inbox = self.net.subscribe(self.topic, self.validate)
        with inbox:
            await self._serve(inbox, task_status)

    async def _serve(self, inbox: trio.MemoryReceiveChannel[tuple[PeerId, bytes]], task_status: Any) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publisher)
            task_status.started()
            async for _peer, data in inbox:
                try:
                    await self._admit(data)
                except MedchainError:
                    log.debug("dropping a malformed tx batch")

    def _take_batch(self) -> list[bytes]:
        n = size = 0
        for raw in self._queue:
            if n == MAX_TX_BATCH or (n and size + len(raw) > BATCH_BYTES):
                break
            n += 1
            size += len(raw)
        batch, self._queue = self._queue[:n], self._queue[n:]
        self._queued_bytes -= size
        if self._queue:  # the batch was full: what is left goes out next, without waiting for company
            self._since = trio.current_time() - MAX_BATCH_DELAY
        return batch

    async def _wait_company(self) -> None:
        """While the queue is smaller than a batch worth a message, wait for more txs,
        until its oldest tx has been queued ``MAX_BATCH_DELAY``."""
        with trio.move_on_at(self._since + MAX_BATCH_DELAY):
            while not self._batch_ready():
                self._wake = trio.Event()
                await self._wake.wait()

    async def _wait_wire(self) -> None:
        """Wait (up to ``MAX_WIRE_WAIT``) until no peer connection has a bulk message queued.

        A peer link that falls behind would otherwise collect batch after batch, and every
        vote to that peer waits behind the one being written; meanwhile txs accumulate
        here and go out as one larger batch (py-libp2p's cost is per message).
        """
        backlog = getattr(self.net, "bulk_backlog", None)
        if backlog is None:
            return
        deadline = trio.current_time() + MAX_WIRE_WAIT
        # py-libp2p's queues have no "drained" event to wait on, so poll (as publish does)
        while backlog() > 0 and trio.current_time() < deadline:  # noqa: ASYNC110
            await trio.sleep(BATCH_INTERVAL)

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            # the first tx waits one interval for company; under load each publish is
            # followed by an interval, so the message rate stays at 1 / BATCH_INTERVAL
            await trio.sleep(BATCH_INTERVAL)
            while self._queue:
                await self._wait_company()
                await self._wait_wire()
                if not self.net.connected_peers():
                    # nobody to send to (a lone authority): publishing would only sign,
                    # validate and cache the batch (~1 ms each); a peer that connects
                    # later learns these txs from the blocks that carry them
                    while self._queue:
                        self.unsent += len(self._take_batch())
                    break
                try:
                    await self.net.publish(self.topic, encode_tx_batch(self._take_batch()))
                except MedchainError as exc:
                    log.warning("tx gossip publish failed: %s", exc)
                if self._queue:
                    await trio.sleep(BATCH_INTERVAL)
