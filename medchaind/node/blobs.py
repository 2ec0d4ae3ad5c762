"""Record ciphertexts ("blobs"): kept apart from blocks, fetched from peers, erased.

A ``records.add`` tx commits to its ciphertext by ``content_hash`` (SHA-256 of the
ciphertext); the ciphertext itself travels as a sidecar of ``tx_submit`` and lives in
``<datadir>/blobs`` (:class:`~medchaind.store.blobs.FileBlobStore`), never in a block. A node that learns of a
record without its blob (the tx reached it by gossip, or it synced the block) asks its
peers for the blobs it lacks, up to :data:`BATCH` at a time, over
``/medchain/<chain>/blobs/1``: request = the concatenated 32-byte hashes, response = a
canonical CBOR array with one byte string per hash (empty when the peer lacks it, or
when the response would pass :data:`MAX_BATCH_RESPONSE`). Whatever a peer answers is
accepted only if it hashes to the commitment. (``blob/1``, one hash per request, is
still served; one request per blob made replicating 10,000 records take minutes.) When
a ``records.erased`` event commits, every node deletes the blob
(unless another live record commits to the same ciphertext); the chain keeps the hash
and a tombstone, so it still verifies from genesis.

:meth:`BlobService.reconcile` runs at start and every :data:`GC_INTERVAL_S`: it compares
the store with the chain's live content hashes and asks peers for every missing blob (a
node restarted while a fetch was pending, or whose disk lost a file, or one that started
from a state snapshot: the node starts this service after the restore, so the records
of the snapshot's state, whose blocks it never executed, are wanted here; tested by
``tests/sync/test_snapshot_fetch.py`` and ``tests/e2e/test_e2e_snapshot_sync.py``). The periodic runs
also shred every orphan -- a ciphertext whose ``records.add`` never committed (rejected,
expired, or its node crashed) -- once it is older than :data:`GC_GRACE_S` and no pending
tx needs it, but never while the node is catching up (its state may predate records
whose blobs it already holds, e.g. after restoring an old ``chaindata``).

Writes never block the event loop: :meth:`BlobService.save` queues blobs for the
service's writer task, which files each queued group with one
:meth:`~medchaind.store.blobs.FileBlobStore.put_blobs` call in a worker thread (group
commit: the fsyncs of a group overlap), and returns once the caller's blobs are durable.
A client's ``tx_submit`` and a peer's answer both go through it; before, each blob was an
fsync'd write on the event loop (~2.6 ms), which at a few hundred records per block held
consensus messages back long enough for rounds to time out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .. import codec, crypto
from ..errors import MedchainError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..net.api import NetworkAPI, PeerId
    from ..store.blobs import FileBlobStore
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

BLOB_PROTOCOL = "blob/1"
BATCH_PROTOCOL = "blobs/1"
MAX_BLOB = 4 * 1024 * 1024
#: hashes per batch request
BATCH = 64
#: a batch response stays below this (blobs past it come back empty: ask again)
MAX_BATCH_RESPONSE = 32 * 1024 * 1024
RETRY_S = 2.0
GC_INTERVAL_S = 600.0
#: an unreferenced blob younger than this is kept: its tx may still be on its way into a block
GC_GRACE_S = 3600.0


class _Group:
    """Blobs queued for one write, and how the write ended."""

    __slots__ = ("items", "done", "error")

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes]] = []
        self.done = trio.Event()
        self.error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Reconciled:
    kept: int
    missing: int
    shredded: int


class BlobService:
    def __init__(
        self,
        store: FileBlobStore,
        net: NetworkAPI,
        *,
        live: Callable[[], set[bytes]] = set,
        pending: Callable[[], set[bytes]] = set,
        clock: Callable[[], float] = time.time,
        may_collect: Callable[[], bool] = lambda: True,
    ) -> None:
        self._may_collect = may_collect
        self.store = store
        self.net = net
        self._live = live
        self._pending = pending
        self._clock = clock
        self._wanted: set[bytes] = set()
        self._erased: set[bytes] = set()
        self._wake = trio.Event()
        self._group = _Group()
        self._write_wake = trio.Event()
        self.fetched = 0
        net.set_handler(BLOB_PROTOCOL, self._serve)
        net.set_handler(BATCH_PROTOCOL, self._serve_batch)

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        if len(data) != 32:
            raise MedchainError("blob request: expected a 32-byte hash")
        return self.store.get_blob(data) or b""

    async def _serve_batch(self, peer: PeerId, data: bytes) -> bytes:
        if not data or len(data) % 32 or len(data) // 32 > BATCH:
            raise MedchainError(f"blobs request: expected 1..{BATCH} concatenated 32-byte hashes")
        out: list[bytes] = []
        size = 0
        for i in range(0, len(data), 32):
            blob = self.store.get_blob(data[i : i + 32]) or b""
            if size + len(blob) > MAX_BATCH_RESPONSE:
                blob = b""
            size += len(blob)
            out.append(blob)
        return codec.encode(out)

    @property
    def wanted(self) -> frozenset[bytes]:
        return frozenset(self._wanted)

    def want(self, content_hash: bytes) -> None:
        # a record committed after an erasure of the same ciphertext makes it live again
        self._erased.discard(content_hash)
        if not self.store.has_blob(content_hash):
            self._wanted.add(content_hash)
            self._wake.set()

    def reconcile(self, *, collect: bool = True) -> Reconciled:
        """Want every live blob this node lacks; with ``collect``, shred old blobs nothing references."""
        live = self._live()
        pending = self._pending()
        cutoff = self._clock() - GC_GRACE_S
        kept = shredded = 0
        present: set[bytes] = set()
        for path, h, mtime in list(self.store.entries()):
            if h is not None and (h in live or h in pending):
                present.add(h)
                kept += 1
            elif collect and mtime < cutoff:
                self.store.shred(path)
                shredded += 1
            else:
                kept += 1
        missing = live - present
        for h in missing:
            self.want(h)
        if missing or shredded:
            log.info("blobs reconciled kept=%d missing=%d shredded=%d", kept, len(missing), shredded)
        return Reconciled(kept, len(missing), shredded)

    def erase(self, content_hash: bytes) -> None:
        self._erased.add(content_hash)
        self._wanted.discard(content_hash)
        self.store.delete_blob(content_hash)


    async def save(self, items: list[tuple[bytes, bytes]]) -> None:
        """File ``(content_hash, data)`` pairs (hashes already checked by the caller);
        return once they are durable. Needs :meth:`run` running. Raises the store's
        error if the write failed (nothing of the group is then under its name)."""
        if not items:
            return
        group = self._group
        group.items.extend(items)
        self._write_wake.set()
        await group.done.wait()
        if group.error is not None:
            raise MedchainError(f"blob store: {group.error}") from group.error

    async def _writer(self) -> None:
        while True:
            await self._write_wake.wait()
            self._write_wake = trio.Event()
            group, self._group = self._group, _Group()
            try:
                await trio.to_thread.run_sync(self.store.put_blobs, group.items)
            except Exception as exc:  # disk full, permissions: each waiter gets the error
                log.error("blob write failed blobs=%d error=%s", len(group.items), exc)
                group.error = exc
            finally:
                group.done.set()
            for h, _ in group.items:
                if h in self._erased:  # erased while its write was in flight
                    self.store.delete_blob(h)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer)
            await self._fetch_loop(task_status)

    async def _fetch_loop(self, task_status: TaskStatus[None]) -> None:
        self.reconcile(collect=False)
        next_gc = self._clock() + GC_INTERVAL_S
        task_status.started()
        while True:
            if self._clock() >= next_gc:
                self.reconcile(collect=self._may_collect())
                next_gc = self._clock() + GC_INTERVAL_S
            with trio.move_on_after(RETRY_S):
                await self._wake.wait()
            self._wake = trio.Event()
            wanted = list(self._wanted)
            for i in range(0, len(wanted), BATCH):
                await self._fetch_batch(wanted[i : i + BATCH])

    async def _fetch_batch(self, hashes: list[bytes]) -> None:
        """Ask each peer in turn for the blobs of ``hashes`` still missing; keep valid ones."""
        missing = [h for h in hashes if h in self._wanted]
        for peer in self.net.connected_peers():
            if not missing:
                return
            try:
                data = await self.net.request(peer, BATCH_PROTOCOL, b"".join(missing), timeout=30)
                blobs = codec.decode(data, max_size=MAX_BATCH_RESPONSE + 64 * BATCH)
            except MedchainError:
                continue
            if not isinstance(blobs, list) or len(blobs) != len(missing):
                continue  # a peer that answers something else is ignored
            still = []
            good: list[tuple[bytes, bytes]] = []
            for h, blob in zip(missing, blobs, strict=True):
                if isinstance(blob, bytes) and blob and len(blob) <= MAX_BLOB and crypto.sha256(blob) == h:
                    if h not in self._erased and h in self._wanted:
                        good.append((h, blob))
                else:
                    still.append(h)
            try:
                await self.save(good)
            except MedchainError:
                return  # still wanted: the next round asks again
            self.fetched += len(good)
            self._wanted.difference_update(h for h in missing if h not in still)
            missing = still
