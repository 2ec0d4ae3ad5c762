"""Record ciphertexts on disk (store/blobs.py) and the node's blob service (node/blobs.py):
physical erasure, fetching from a peer by hash, and reconciliation with the chain
(missing blobs re-fetched, orphans of never-committed txs shredded after a grace period).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from medchaind import crypto
from medchaind.errors import StoreError
from medchaind.net import MemoryNetwork
from medchaind.node.blobs import BATCH, GC_GRACE_S, BlobService
from medchaind.store.blobs import FileBlobStore
from medchaind.testing.wait import Changes


def blob(tag: str) -> tuple[bytes, bytes]:
    data = (b"ciphertext " + tag.encode()) * 50
    return crypto.sha256(data), data


def test_put_get_and_physical_delete(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    h, data = blob("a")
    store.put_blob(h, data)
    path = tmp_path / "blobs" / h.hex()
    assert store.get_blob(h) == data and store.has_blob(h)
    assert os.stat(path).st_mode & 0o777 == 0o600
    witness = tmp_path / "witness"
    os.link(path, witness)  # a second name for the same inode shows what shredding left on disk
    store.delete_blob(h)
    assert not path.exists() and store.get_blob(h) is None and not store.has_blob(h)
    assert witness.read_bytes() == b"\x00" * len(data)  # overwritten before the unlink
    store.delete_blob(h)  # idempotent
    with pytest.raises(StoreError):
        store.get_blob(b"short")


def test_entries_name_finished_blobs_and_leave_temp_files_unnamed(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    h, data = blob("a")
    store.put_blob(h, data)
    (tmp_path / f".{h.hex()}.xyz").write_bytes(b"half written")
    (tmp_path / ("zz" * 32)).write_bytes(b"not hex")
    got = {p.name: name for p, name, _ in store.entries()}
    assert got == {h.hex(): h, f".{h.hex()}.xyz": None, "zz" * 32: None}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _age(path: Path, seconds: float, clock: Clock) -> None:
    t = clock.now - seconds
    os.utime(path, (t, t))


def test_reconcile_keeps_referenced_wants_missing_and_shreds_old_orphans(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    clock = Clock()
    (live_h, live), (pend_h, pend), (young_h, young), (old_h, old), (gone_h, _) = (
        blob(t) for t in ("live", "pending", "young", "old", "missing")
    )
    for h, d in ((live_h, live), (pend_h, pend), (young_h, young), (old_h, old)):
        store.put_blob(h, d)
        _age(tmp_path / h.hex(), GC_GRACE_S * 2, clock)
    _age(tmp_path / young_h.hex(), GC_GRACE_S / 2, clock)
    stale_tmp = tmp_path / ".stale.tmp"
    stale_tmp.write_bytes(b"x")
    _age(stale_tmp, GC_GRACE_S * 2, clock)

    net = MemoryNetwork(seed=0).endpoint("a")
    svc = BlobService(store, net, live=lambda: {live_h, gone_h}, pending=lambda: {pend_h}, clock=clock)
    assert svc.reconcile(collect=False).shredded == 0  # at start, or while catching up: nothing goes
    assert len(list(store.entries())) == 5
    report = svc.reconcile()

    assert (report.kept, report.missing, report.shredded) == (3, 1, 2)
    assert {h for _, h, _ in store.entries()} == {live_h, pend_h, young_h}
    assert not stale_tmp.exists()
    assert svc._wanted == {gone_h}
    # time passes: the young orphan is now old, and goes too
    clock.now += GC_GRACE_S
    assert svc.reconcile().shredded == 1 and not store.has_blob(young_h)


class WatchedBlobStore(FileBlobStore):
    """A FileBlobStore that notifies after each stored blob (the service has no event)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.stored = Changes()

    def put_blob(self, content_hash: bytes, data: bytes) -> None:
        super().put_blob(content_hash, data)
        self.stored.notify()


async def test_fetch_from_peer_checks_the_hash_and_respects_erasure(tmp_path: Path) -> None:
    hub = MemoryNetwork(seed=1)
    a_net, b_net = hub.endpoint("a"), hub.endpoint("b")
    a_store, b_store = FileBlobStore(tmp_path / "a"), WatchedBlobStore(tmp_path / "b")
    h, data = blob("shared")
    a_store.put_blob(h, data)
    bad_h, _ = blob("lie")
    a_store.put_blob(bad_h, b"not what the hash commits to")  # a lying or corrupt peer
    a_svc, b_svc = BlobService(a_store, a_net), BlobService(b_store, b_net)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for net in (a_net, b_net):
                await nursery.start(net.run)
            for svc in (a_svc, b_svc):
                await nursery.start(svc.run)
            await b_net.wait_peers(1)
            b_svc.want(h)
            b_svc.want(bad_h)
            await b_store.stored.wait_for(lambda: b_store.has_blob(h))
            assert b_store.get_blob(h) == data and b_svc.fetched == 1
            assert not b_store.has_blob(bad_h) and bad_h in b_svc._wanted  # refused, still wanted

            # many at once: batches of BATCH hashes per request, not one request per blob
            many = [blob(f"bulk{i}") for i in range(2 * BATCH + 7)]
            for mh, md in many:
                a_store.put_blob(mh, md)
            served_before = a_net.statistics().requests_served
            for mh, _ in many:
                b_svc.want(mh)
            await b_store.stored.wait_for(lambda: all(b_store.has_blob(mh) for mh, _ in many))
            assert all(b_store.get_blob(mh) == md for mh, md in many)
            assert a_net.statistics().requests_served - served_before <= 6  # 3 batches (+ retries of bad_h)

            b_svc.erase(h)
            assert not b_store.has_blob(h)
            # a later record committing to the same ciphertext makes it wanted again
            b_svc.want(h)
            await b_store.stored.wait_for(lambda: b_store.has_blob(h))
            nursery.cancel_scope.cancel()
