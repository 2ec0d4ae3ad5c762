"""Record ciphertexts ("blobs"): kept apart from blocks, fetched from peers, erased.

A ``records.add`` tx commits to its ciphertext by ``content_hash`` (SHA-256 of the
ciphertext); the ciphertext itself travels as a sidecar of ``tx_submit`` and lives in
``<datadir>/blobs`` (:class:`~medchaind.store.blobs.FileBlobStore`), never in a block. A node that learns of a
record without its blob (the tx reached it by gossip, or it synced the block) asks its
peers over ``/medchain/<chain>/blob/1``: request = the 32-byte hash, response = the
blob or empty. Whatever a peer answers is accepted only if it hashes to the
commitment. When a ``records.erased`` event commits, every node deletes the blob; the
chain keeps the hash and a tombstone, so it still verifies from genesis.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from .. import crypto
from ..errors import MedchainError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..net.api import NetworkAPI, PeerId
    from ..store.blobs import FileBlobStore
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

BLOB_PROTOCOL = "blob/1"
MAX_BLOB = 4 * 1024 * 1024
RETRY_S = 2.0


class BlobService:
    def __init__(self, store: FileBlobStore, net: NetworkAPI) -> None:
        self.store = store
        self.net = net
        self._wanted: set[bytes] = set()
        self._erased: set[bytes] = set()
        self._wake = trio.Event()
        self.fetched = 0
        net.set_handler(BLOB_PROTOCOL, self._serve)

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        if len(data) != 32:
            raise MedchainError("blob request: expected a 32-byte hash")
        return self.store.get_blob(data) or b""

    def want(self, content_hash: bytes) -> None:
        if content_hash not in self._erased and not self.store.has_blob(content_hash):
            self._wanted.add(content_hash)
            self._wake.set()

    def erase(self, content_hash: bytes) -> None:
        self._erased.add(content_hash)
        self._wanted.discard(content_hash)
        self.store.delete_blob(content_hash)


    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(RETRY_S):
                await self._wake.wait()
            self._wake = trio.Event()
            for h in list(self._wanted):
                if await self._fetch(h):
                    self._wanted.discard(h)

    async def _fetch(self, content_hash: bytes) -> bool:
        for peer in self.net.connected_peers():
            try:
                data = await self.net.request(peer, BLOB_PROTOCOL, content_hash, timeout=30)
            except MedchainError:
                continue
            if data and len(data) <= MAX_BLOB and crypto.sha256(data) == content_hash:
                if content_hash in self._erased:
                    return True
                self.store.put_blob(content_hash, data)
                self.fetched += 1
                return True
        return False
