"""Record ciphertexts on disk (store/blobs.py) and the node's blob service (node/blobs.py):
physical erasure, fetching from a peer by hash, and reconciliation with the chain
(missing blobs re-fetched, orphans of never-committed txs shredded after a grace period).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import trio

from medchaind import crypto
from medchaind.errors import MedchainError, StoreError
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


class WatchedBlobService(BlobService):
    """A BlobService that notifies after each group it filed (it has no event of its
    own); the notification comes once the service's task resumes, so its bookkeeping
    (``fetched``, ``wanted``) is up to date when a waiter looks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored = Changes()

    async def save(self, items: list[tuple[bytes, bytes]]) -> None:
        await super().save(items)
        self.stored.notify()


async def test_fetch_from_peer_checks_the_hash_and_respects_erasure(tmp_path: Path) -> None:
    hub = MemoryNetwork(seed=1)
    a_net, b_net = hub.endpoint("a"), hub.endpoint("b")
    a_store, b_store = FileBlobStore(tmp_path / "a"), FileBlobStore(tmp_path / "b")
    h, data = blob("shared")
    a_store.put_blob(h, data)
    bad_h, _ = blob("lie")
    a_store.put_blob(bad_h, b"not what the hash commits to")  # a lying or corrupt peer
    a_svc, b_svc = BlobService(a_store, a_net), WatchedBlobService(b_store, b_net)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for net in (a_net, b_net):
                await nursery.start(net.run)
            for svc in (a_svc, b_svc):
                await nursery.start(svc.run)
            await b_net.wait_peers(1)
            b_svc.want(h)
            b_svc.want(bad_h)
            await b_svc.stored.wait_for(lambda: b_store.has_blob(h))
            assert b_store.get_blob(h) == data and b_svc.fetched == 1
            assert not b_store.has_blob(bad_h) and bad_h in b_svc._wanted  # refused, still wanted

            # many at once: batches of BATCH hashes per request, not one request per blob
            many = [blob(f"bulk{i}") for i in range(2 * BATCH + 7)]
            for mh, md in many:
                a_store.put_blob(mh, md)
            served_before = a_net.statistics().requests_served
            for mh, _ in many:
                b_svc.want(mh)
            await b_svc.stored.wait_for(lambda: all(b_store.has_blob(mh) for mh, _ in many))
            assert all(b_store.get_blob(mh) == md for mh, md in many)
            assert a_net.statistics().requests_served - served_before <= 6  # 3 batches (+ retries of bad_h)

            b_svc.erase(h)
            assert not b_store.has_blob(h)
            # a later record committing to the same ciphertext makes it wanted again
            b_svc.want(h)
            await b_svc.stored.wait_for(lambda: b_store.has_blob(h))
            nursery.cancel_scope.cancel()


def test_put_blobs_files_a_group_durably_named_and_private(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    group = [blob(f"g{i}") for i in range(20)]
    store.put_blobs(group)
    store.put_blobs([])  # nothing to do
    store.put_blobs(group[:1])  # the one-blob path
    for h, data in group:
        path = tmp_path / "blobs" / h.hex()
        assert store.get_blob(h) == data and os.stat(path).st_mode & 0o777 == 0o600
    assert {h for _, h, _ in store.entries()} == {h for h, _ in group}  # no temp file left
    store.close()


def test_put_blobs_that_fails_leaves_no_temp_file_and_no_partial_name(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileBlobStore(tmp_path)
    group = [blob(f"f{i}") for i in range(5)]

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        store.put_blobs(group)
    monkeypatch.undo()
    assert list(store.entries()) == []
    store.close()


async def test_service_save_groups_writes_off_the_event_loop_and_reports_failure(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "b")
    svc = BlobService(store, MemoryNetwork(seed=2).endpoint("b"))
    items = [blob(f"s{i}") for i in range(10)]
    writers: list[threading.Thread] = []
    real_put = store.put_blobs

    def put_and_note_thread(group: Iterable[tuple[bytes, bytes]]) -> None:
        writers.append(threading.current_thread())
        real_put(group)

    store.put_blobs = put_and_note_thread  # type: ignore[method-assign]
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(svc.run)
            async with trio.open_nursery() as savers:  # concurrent callers, each waits for its own
                for i in range(0, 10, 2):
                    savers.start_soon(svc.save, items[i : i + 2])
            assert all(store.get_blob(h) == d for h, d in items)
            # the disk is never touched from the event loop's thread; callers are grouped
            assert writers and threading.main_thread() not in writers and len(writers) <= 5
            # a blob erased while its write was in flight does not survive the write
            late = blob("late")
            svc._erased.add(late[0])
            await svc.save([late])
            assert not store.has_blob(late[0])
            real = store.put_blobs

            def full(items: Iterable[tuple[bytes, bytes]]) -> None:
                raise OSError(28, "No space left on device")

            store.put_blobs = full  # type: ignore[method-assign]
            with pytest.raises(MedchainError, match="blob store: .*No space"):
                await svc.save([blob("denied")])
            store.put_blobs = real  # type: ignore[method-assign]
            await svc.save([blob("after")])  # the writer survived the failure
            assert store.has_blob(blob("after")[0])
            nursery.cancel_scope.cancel()
