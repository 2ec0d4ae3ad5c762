"""Snapshot serving and fetching over the memory network (medchaind.sync.snapshots).

Four serving nodes hold the same chain (three authorities sign every block); a fifth,
empty, fetches a snapshot from them, chunks in parallel, and the state it writes has the
snapshot's root. Faults: a peer that serves corrupt chunks (banned, its chunks refetched
from the others), a peer that vanishes mid-download, no snapshot at all (None after the
discovery time: the node falls back to block sync), every peer corrupt, a snapshot
whose blocks a peer forged, and a peer whose error message is over 1 KiB. Then what
follows a restore: a restore cut short leaves an empty chain that is restored again,
and the ciphertexts of records in the snapshot arrive by blob reconciliation.
Everything runs under ``autojump_clock``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "state"))

from test_state_store import GENESIS, commit, register  # noqa: E402

from medchaind import crypto  # noqa: E402
from medchaind.app import trie  # noqa: E402
from medchaind.ledger import Ledger, Retention  # noqa: E402
from medchaind.modules import make_app  # noqa: E402
from medchaind.net import MemoryNetwork, memory  # noqa: E402
from medchaind.net.shared import STATUS_ERROR, serve_request  # noqa: E402
from medchaind.node.blobs import BlobService  # noqa: E402
from medchaind.store import ChainStore, MemoryKV, schema  # noqa: E402
from medchaind.store.blobs import FileBlobStore  # noqa: E402
from medchaind.sync import SyncService  # noqa: E402
from medchaind.sync.snapshots import SNAPSHOT_PROTOCOL, SnapshotFetcher, SnapshotServer  # noqa: E402
from medchaind.testing.appkit import key, pub  # noqa: E402
from medchaind.testing.wait import poll_until  # noqa: E402
from medchaind.types import sign_tx  # noqa: E402

NAMES = [f"p{i}" for i in range(30)]


async def make_ledger(blocks: int, retention: Retention) -> Ledger:
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False, retention=retention)
    for h in range(blocks):
        txs = [register(NAMES[h * 3 + i]) for i in range(3)] if h < 10 else []
        await commit(ledger, txs)
    return ledger


class Net:
    """Serving nodes s0..s3 and the joining node j on one memory hub."""

    def __init__(self, nursery: trio.Nursery, ledgers: list[Ledger], *, corrupt: set[int] = frozenset(),
                 chunk_bytes: int = 300) -> None:
        self.hub = MemoryNetwork(7)
        self.nursery = nursery
        self.servers = []
        self.eps = []
        for i, ledger in enumerate(ledgers):
            ep = self.hub.endpoint(f"s{i}")
            SyncService(ledger, None, ep)  # type: ignore[arg-type]  (serves sync/1 blocks)
            self.servers.append(SnapshotServer(ledger, ep, chunk_bytes=chunk_bytes, in_thread=False,
                                               corrupt_chunks=i in corrupt))
            self.eps.append(ep)
        self.joiner = self.hub.endpoint("j")
        self.banned: dict[str, str] = {}
        self.scopes: list[trio.CancelScope] = []

    async def start(self) -> None:
        for ep, server in zip(self.eps, self.servers, strict=True):
            scope = trio.CancelScope()
            self.scopes.append(scope)

            async def run(ep: Any = ep, scope: trio.CancelScope = scope,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    await ep.run(task_status=task_status)

            await self.nursery.start(run)
            await server.plan_due()
        await self.nursery.start(self.joiner.run)
        await self.joiner.wait_peers(len(self.eps))

    def fetcher(self, **kw: Any) -> SnapshotFetcher:
        return SnapshotFetcher(self.joiner, GENESIS.chain_id, GENESIS.powers(),
                               fault=lambda p, why: self.banned.setdefault(str(p), why),
                               banned=lambda p: str(p) in self.banned, in_thread=False,
                               discovery_s=kw.pop("discovery_s", 5.0), chunk_timeout_s=2.0, request_timeout_s=2.0,
                               **kw)


async def restore(restored: Any) -> Ledger:
    fresh = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False)
    fresh.restore_snapshot(restored.block, restored.commit, restored.state, restored.records, restored.values)
    return fresh


def flat(ledger: Ledger) -> dict[bytes, bytes]:
    cut = len(schema.STATE_PREFIX)
    return {k[cut:]: v for k, v in ledger.store.kv.iterate(schema.STATE_PREFIX)}


RET = Retention(recent=2, snapshot_interval=5, snapshot_keep=2)


async def chain(n: int = 4, blocks: int = 12, retention: Retention = RET) -> list[Ledger]:
    return [await make_ledger(blocks, retention) for _ in range(n)]


async def test_a_new_node_fetches_the_newest_snapshot_from_several_peers(autojump_clock: Any) -> None:
    ledgers = await chain()
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers)
        await net.start()
        assert [o.height for o in net.servers[0].offers()] == [10, 5]
        restored = await net.fetcher().fetch()
        assert restored is not None and restored.block.height == 10
        assert len(restored.stats["served_by"]) >= 2  # chunks came from several peers
        fresh = await restore(restored)
        assert fresh.height == 10 and fresh.base == 10
        assert fresh.tip.app_hash == ledgers[0].store.get_block(10).header.app_hash
        assert trie.compute_root(flat(fresh)) == fresh.tip.app_hash
        assert fresh.tip.powers == GENESIS.powers() and fresh.tip.block_powers == GENESIS.powers()
        # the restored node continues with block 11 of the others
        b11, c11 = ledgers[0].store.get_block(11), ledgers[0].store.get_commit(11)
        from medchaind.chain import validate_block
        from medchaind.chain.executor import SigCache

        ex = validate_block(fresh.app, fresh.state, fresh.tip, b11, SigCache(), max_txs=10_000, max_bytes=1 << 24)
        await fresh.commit(b11, c11, ex)
        assert fresh.tip.app_hash == ledgers[0].store.get_block(11).header.app_hash
        assert fresh.store.get_block(9) is None
        assert not net.banned
        nursery.cancel_scope.cancel()


async def test_corrupt_chunks_are_refetched_from_another_peer_and_the_peer_banned(autojump_clock: Any) -> None:
    ledgers = await chain()
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers, corrupt={1})
        await net.start()
        restored = await net.fetcher().fetch()
        assert restored is not None
        assert set(net.banned) == {"s1"} and "chunk" in net.banned["s1"]
        assert "s1" not in restored.stats["served_by"]
        fresh = await restore(restored)
        assert trie.compute_root(flat(fresh)) == fresh.tip.app_hash == ledgers[0].tip_at(10).app_hash
        nursery.cancel_scope.cancel()


async def test_a_peer_that_disappears_mid_download_is_replaced(autojump_clock: Any) -> None:
    ledgers = await chain(n=2)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers, chunk_bytes=200)
        await net.start()
        served = {"n": 0}
        handler = net.servers[0]._serve

        async def vanish_after_two(peer: Any, data: bytes) -> bytes:
            served["n"] += 1
            if served["n"] == 4:  # list, manifest.. then a chunk or two, then gone
                net.scopes[0].cancel()
                await trio.sleep_forever()
            return await handler(peer, data)

        net.eps[0].set_handler(SNAPSHOT_PROTOCOL, vanish_after_two)
        restored = await net.fetcher().fetch()
        assert restored is not None and restored.block.height == 10
        assert served["n"] >= 4
        assert not net.banned  # vanishing is not a fault
        fresh = await restore(restored)
        assert trie.compute_root(flat(fresh)) == fresh.tip.app_hash
        nursery.cancel_scope.cancel()


async def test_no_snapshot_anywhere_gives_none_after_the_discovery_time(autojump_clock: Any) -> None:
    ledgers = await chain(n=2, retention=Retention(recent=2))
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers)
        await net.start()
        t0 = trio.current_time()
        fetcher = net.fetcher(discovery_s=3.0)
        assert await fetcher.fetch() is None
        assert 3.0 <= trio.current_time() - t0 < 5.0
        assert fetcher.status["state"] == "fell back to block sync"
        nursery.cancel_scope.cancel()


async def test_every_peer_corrupt_gives_none_and_bans_them_all(autojump_clock: Any) -> None:
    ledgers = await chain(n=2)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers, corrupt={0, 1})
        await net.start()
        assert await net.fetcher(discovery_s=3.0).fetch() is None
        assert set(net.banned) == {"s0", "s1"}
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("lie", ["root", "validators"])
async def test_a_listed_snapshot_that_its_blocks_do_not_back_is_refused(autojump_clock: Any, lie: str) -> None:
    ledgers = await chain(n=2)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers)
        await net.start()
        from dataclasses import replace

        from medchaind.crypto import SigningKey

        p = net.servers[0].planned[10]
        if lie == "root":
            forged = replace(p.offer, root=b"\x01" * 32)
        else:  # a set of its own, which no genesis authority vouches for
            forged = replace(p.offer, validators=((SigningKey(b"\x09" * 32).public_key, 1),))
        net.servers[0].planned = {10: replace(p, offer=forged)}
        restored = await net.fetcher().fetch()
        assert restored is not None and restored.stats["served_by"].keys() == {"s1"}
        assert "s0" in net.banned
        nursery.cancel_scope.cancel()


async def test_an_offer_is_tried_again_when_a_new_peer_offers_it(autojump_clock: Any) -> None:
    ledgers = await chain(n=2)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers, corrupt={1})
        await net.start()
        net.hub.cut("j", "s0")  # at first only the corrupt peer is reachable
        fetcher = net.fetcher(discovery_s=10.0)
        got: list[Any] = []
        done = trio.Event()

        async def fetch() -> None:
            got.append(await fetcher.fetch())
            done.set()

        nursery.start_soon(fetch)
        await trio.sleep(2.0)
        assert "s1" in net.banned and not got
        net.hub.restore("j", "s0")  # an honest peer offering the same snapshot appears
        await done.wait()
        assert got[0] is not None and got[0].stats["served_by"].keys() == {"s0"}
        nursery.cancel_scope.cancel()


async def test_an_error_message_over_1_kib_is_a_fault_that_bans_its_peer(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/protocol.md §13.1: a status-1/2 message is at most 1 KiB. s0 answers every
    sync/1 and snapshot/1 request with a 2 KiB one: the requester refuses it unread and
    bans s0, as for a malformed answer (snapshot fetch and block sync alike)."""
    ledgers = await chain(n=3)  # s0, s1 serve; the third is the joiner's, at the same height
    asked: list[str] = []

    async def wordy(handler: Any, *args: Any) -> tuple[int, bytes]:
        if getattr(getattr(handler, "__self__", None), "net", None) is net.eps[0]:
            asked.append(args[1])
            return STATUS_ERROR, b"e" * 2048
        return await serve_request(handler, *args)

    monkeypatch.setattr(memory, "serve_request", wordy)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers[:2])
        await net.start()
        restored = await net.fetcher().fetch()
        assert restored is not None and restored.stats["served_by"].keys() == {"s1"}
        assert asked == ["snapshot/1"] and "message of 2048 bytes" in net.banned["s0"]

        # block sync's status round (nothing to fetch: the joiner is at the peers' height)
        sync = SyncService(ledgers[2], None, net.joiner)  # type: ignore[arg-type]
        await sync.catch_up()
        assert asked == ["snapshot/1", "sync/1"]
        assert sync.book.banned("s0", trio.current_time()) and not sync.book.banned("s1", trio.current_time())
        assert sync.book.faults_total == 1 and sync.book.claim("s1").height == 12  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


class Killed(Exception):
    """The process died here (its write never reached the disk)."""


class DyingKV(MemoryKV):
    """A store whose writes die while ``dying`` (a node killed while restoring)."""

    dying = False

    def write(self, puts: Any, deletes: Any = (), *, sync: bool = True) -> None:
        if self.dying:
            raise Killed
        super().write(puts, deletes, sync=sync)


async def test_a_restore_cut_short_leaves_an_empty_chain_that_the_next_start_restores(autojump_clock: Any) -> None:
    """The restore is one sync'd write batch (docs/operator-guide.md §5.7): a node killed
    before the batch is durable restarts on the untouched genesis store at height 0, so
    snapshot sync runs again and restores cleanly. (That a SIGKILL in the middle of a
    LevelDB batch leaves all of it or none is what tests/store/test_crash_atomicity.py
    checks with real processes, for the block commits that use the same write.)"""
    ledgers = await chain(n=2)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers)
        await net.start()
        restored = await net.fetcher().fetch()
        nursery.cancel_scope.cancel()
    assert restored is not None
    args = (restored.block, restored.commit, restored.state, restored.records, restored.values)
    kv = DyingKV()
    Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    genesis_store = dict(kv.iterate(b""))
    kv.dying = True
    with pytest.raises(Killed):
        Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False).restore_snapshot(*args)
    kv.dying = False
    assert dict(kv.iterate(b"")) == genesis_store
    restarted = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    assert (restarted.height, restarted.base) == (0, 1)  # an empty chain: the node snapshot-syncs again
    restarted.restore_snapshot(*args)
    assert (restarted.height, restarted.base) == (10, 10)
    assert trie.compute_root(flat(restarted)) == restarted.tip.app_hash == ledgers[0].tip_at(10).app_hash


async def test_a_restored_node_fetches_the_ciphertexts_its_snapshot_commits_to(
    autojump_clock: Any, tmp_path: Path
) -> None:
    """Issue 15: "record ciphertexts are fetched afterwards by the existing blob
    reconciliation". Three records added in block 2 are in the snapshot of height 10, so
    the joiner never executes the block that announces them; its BlobService, started on
    the restored state as the node starts it after a snapshot sync (node.Node.run),
    finds their ciphertexts missing and fetches them from s0, each checked against the
    record's content_hash. (tests/e2e/test_e2e_snapshot_sync.py: the same with processes.)"""
    blobs = {name: crypto.sha256(name.encode()) * 40 for name in ("q0", "q1", "q2")}  # opaque to the chain

    def add(name: str) -> Any:
        body = {"patient": pub(name), "resource_type": "Observation", "content_hash": crypto.sha256(blobs[name]),
                "size": len(blobs[name]), "envelopes": [{"recipient": pub(name), "sealed_key": b"\x01" * 80}]}
        return sign_tx(key(name), GENESIS.chain_id, "records.add", 1, body)

    ledgers = []
    for _ in range(2):
        ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False, retention=RET)
        await commit(ledger, [register(n) for n in blobs])
        await commit(ledger, [add(n) for n in blobs])
        for _ in range(10):
            await commit(ledger, [])
        ledgers.append(ledger)
    wanted = {crypto.sha256(b): b for b in blobs.values()}
    assert ledgers[0].app.live_blobs(ledgers[0].state) == set(wanted)
    async with trio.open_nursery() as nursery:
        net = Net(nursery, ledgers)
        await net.start()
        holder = BlobService(FileBlobStore(tmp_path / "s0"), net.eps[0])  # serves blobs/1
        for h, b in wanted.items():
            holder.store.put_blob(h, b)
        restored = await net.fetcher().fetch()
        assert restored is not None and restored.block.height == 10
        fresh = await restore(restored)
        assert fresh.base == 10 and fresh.store.get_block(2) is None
        joiner = BlobService(FileBlobStore(tmp_path / "j"), net.joiner,
                             live=lambda: fresh.app.live_blobs(fresh.state))
        await nursery.start(joiner.run)
        with trio.fail_after(60):
            await poll_until(lambda: joiner.fetched == len(wanted) and not joiner.wanted)
        for h, b in wanted.items():
            got = joiner.store.get_blob(h)
            assert got == b and crypto.sha256(got) == h
        nursery.cancel_scope.cancel()
