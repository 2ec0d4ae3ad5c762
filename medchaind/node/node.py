"""The composition root: config -> components -> one nursery (DESIGN.md §2 ``node/``).

:meth:`Node.open` opens the store (fails fast if another process holds the datadir),
checks genesis and builds every component -- app (the modules of the registry),
ledger, signature cache, mempool, WAL, network, consensus engine, sync, tx gossip, blob
service, the IPC dispatcher with the node's own methods and every module query, the IPC
server and the metrics server -- without starting anything. :meth:`Node.run` starts
them in one nursery. Shutdown (SIGINT/SIGTERM or cancellation): stop accepting IPC,
cancel the engine between blocks or mid-block (an unfinished block was never written,
so nothing committed is lost), then close the store. A second signal exits at once.
SIGHUP reloads the settings that can change at run time (:func:`reload_settings`).

Nothing here names an application module: blob sidecars, node-side work triggered by
events and subscription topics are what the modules declare (medchaind.app.module).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus

    from ..net.api import NetworkAPI
else:
    from trio import TaskStatus

from .. import __version__, crypto
from ..app import App, BlockInfo, DropBlob, Module, TopicSpec, WantBlob
from ..app.schema import FieldError
from ..chain import SigCache
from ..chain.executor import next_time_ms
from ..consensus.bft import BftConfig, BftEngine, evidence_tx, wall_clock_ms
from ..consensus.compact import TXS_PROTOCOL, TXS_REQUEST_LIMIT
from ..consensus.wal import WAL
from ..consensus.wire import block_topic, consensus_topic
from ..core import TimeoutConfig
from ..crypto import KeyPair
from ..errors import ConfigError, MedchainError, TxRejected
from ..files import load_genesis, load_keystore
from ..ipc import Dispatcher, IPCServer
from ..ledger import Committed, Ledger, Retention
from ..mempool import Mempool, MempoolConfig
from ..modules import load_modules
from ..store import LevelDBKV, open_store
from ..store.blobs import FileBlobStore
from ..sync import SyncService
from ..sync.snapshots import MAX_SNAPSHOT_REQUEST, SNAPSHOT_PROTOCOL, SnapshotFetcher, SnapshotServer
from ..sync.wire import SYNC_PROTOCOL
from ..types import Genesis, Tx, to_jsonable
from .blobs import BATCH as BLOB_BATCH
from .blobs import BATCH_PROTOCOL, BLOB_PROTOCOL, BlobService
from .config import Config, ipc_server_options
from .memtrim import MemoryTrimmer, freeze_long_lived, load_malloc_trim, set_mmap_threshold, tune_collector
from .queries import ModuleQueries
from .rpc import (
    ADMIT_SLICE,
    LONG_POLL_METHODS,
    AdminAPI,
    ChainAPI,
    InvalidParams,
    NodeAPI,
    hex_bytes,
    receipt_json,
    tx_event,
)
from .sdnotify import SdNotifier
from .taskdump import write_task_dump
from .txgossip import TxGossip

log = logging.getLogger(__name__)

#: The largest request of each request/response protocol the node serves: the network
#: reads no more of a request than its handler can accept (issue 9: a 256-byte sync
#: request used to be read up to the 64 MiB response limit before any check). sync/1:
#: ``sync.wire.decode_sync_request``'s 256 bytes; blob/1: one hash; blobs/1: BATCH hashes;
#: txs/1: 1,024 tx hashes (a compact proposal's missing txs, consensus.compact).
REQUEST_LIMITS = {SYNC_PROTOCOL: 256, BLOB_PROTOCOL: 32, BATCH_PROTOCOL: 32 * BLOB_BATCH,
                  SNAPSHOT_PROTOCOL: MAX_SNAPSHOT_REQUEST, TXS_PROTOCOL: TXS_REQUEST_LIMIT}


def read_passphrase(cfg: Config) -> str:
    env = os.environ.get("MEDCHAIND_KEY_PASSPHRASE")
    if env is not None:
        return env
    if not cfg.key.passphrase_file:
        raise ConfigError("no passphrase: set key.passphrase_file or MEDCHAIND_KEY_PASSPHRASE")
    path = cfg.resolve(cfg.key.passphrase_file)
    try:
        return path.read_text().rstrip("\n")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: passphrase file not found; set key.passphrase_file or MEDCHAIND_KEY_PASSPHRASE"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the passphrase file ({exc.strerror})") from None


def load_node_keys(cfg: Config) -> KeyPair:
    return load_keystore(cfg.resolve(cfg.key.path), read_passphrase(cfg))


@dataclass
class NodeCounters:
    """Counters since start, for metrics (wall clock only here, never in the state machine)."""

    last_commit_monotonic: float
    blocks: int = 0
    txs: int = 0
    txs_failed: int = 0


class Node:
    def __init__(self, config: Config, genesis: Genesis, keys: KeyPair, modules: list[Module] | None = None) -> None:
        self.config = config
        self.genesis = genesis
        self.keys = keys
        self.app = App(genesis, load_modules() if modules is None else modules)
        self._kv: LevelDBKV | None = None
        self.wal: WAL | None = None
        self.banned: set[Any] = set()
        self._powers_seen: dict[bytes, int] = {}
        # what the cache serves: the pool's txs and the blocks in flight (committed
        # hashes leave it in _on_commit); the cap bounds the ones never committed
        self.sigs = SigCache(capacity=config.mempool.max_txs + 2 * genesis.params.max_block_txs)
        self.trimmer = MemoryTrimmer(load_malloc_trim(), config.node.malloc_trim_ms / 1000)
        # large buffers in their own mappings, not fragmenting the heaps (memtrim.py)
        set_mmap_threshold(config.node.malloc_mmap_threshold)
        self._tx_waiters: dict[bytes, trio.Event] = {}
        self._head_changed = trio.Event()
        self._admission_info: BlockInfo | None = None
        self._sd = SdNotifier()
        self.counters = NodeCounters(last_commit_monotonic=time.monotonic())
        self.started = trio.Event()
        self._opened = False
        #: more services to run in the node's nursery, started after its own and before
        #: it reports ready (``serve(task_status=...)``): the web console, which the CLI
        #: adds (medchaind.console.server), since node/ never imports the layers above it
        self.services: list[Any] = []

    @classmethod
    def from_config(cls, config: Config) -> Node:
        return cls(config, load_genesis(config.genesis_path), load_node_keys(config))

    # ------------------------------------------------------------------ building

    def open(self) -> None:
        """Open the store and build every component; nothing runs until :meth:`run`."""
        if self._opened:
            return
        kv, store = open_store(self.config.datadir)
        self._kv = kv
        try:
            self._build(store)
        except BaseException:
            self.close()
            raise
        self._opened = True

    def _build(self, store: Any) -> None:
        cfg = self.config
        sc = cfg.sync
        self.ledger = Ledger(store, self.app, self.genesis, retention=Retention(
            recent=sc.proof_history, snapshot_interval=sc.snapshot_interval, snapshot_keep=sc.snapshot_keep))
        mc = cfg.mempool
        self.mempool = Mempool(
            self.app, lambda: self.ledger.state, self.sigs, self.ledger.is_committed,
            MempoolConfig(max_txs=mc.max_txs, max_bytes=mc.max_bytes, max_per_sender=mc.max_per_sender,
                          sender_rate=float(mc.sender_rate), sender_burst=mc.sender_burst,
                          busy_txs=mc.busy_txs, busy_bytes=mc.busy_bytes, dropped_history=mc.dropped_history),
            block_info=self._admission_block,  # the next block, as if proposed now
            on_dropped=self._on_dropped,
            used_its_nonce=self.ledger.store.used_its_nonce,
        )
        self.wal = WAL(cfg.datadir / "consensus.wal")
        self.blob_store = FileBlobStore(cfg.datadir / "blobs")
        self._powers_seen = dict(self.ledger.tip.powers)
        self.net = self._make_network()
        c = cfg.consensus
        self.engine = BftEngine(
            self.ledger, self.mempool, self.keys.signing, self.net, self.wal,
            BftConfig(
                timeouts=TimeoutConfig(c.timeout_propose_ms, c.timeout_propose_delta_ms, c.timeout_prevote_ms,
                                       c.timeout_prevote_delta_ms, c.timeout_precommit_ms,
                                       c.timeout_precommit_delta_ms),
                create_empty_blocks=c.create_empty_blocks,
                empty_block_interval_ms=c.empty_block_interval_ms,
                min_block_interval_ms=c.min_block_interval_ms,
                double_sign_check_height=c.double_sign_check_height,
            ),
            on_evidence=self._submit_evidence,
        )
        self.sync = SyncService(self.ledger, self.engine, self.net)
        self.engine.on_peer_fault = self.sync.fault  # a wrong txs/1 answer (compact proposals)
        self.snapshots = SnapshotServer(self.ledger, self.net, chunk_bytes=sc.snapshot_chunk_bytes,
                                        corrupt_chunks=sc.fault_corrupt_snapshot_chunks)
        self.snapshot_fetcher: SnapshotFetcher | None = None
        self.sync.snapshot_status = lambda: None if self.snapshot_fetcher is None else self.snapshot_fetcher.status
        self.txgossip = TxGossip(self.net, self.mempool, self.genesis.chain_id, on_admitted=self._pending_from_peer,
                                 verifier=self.engine.verifier)
        self.blobs = BlobService(
            self.blob_store, self.net,
            live=lambda: self.app.live_blobs(self.ledger.state), pending=self._pending_blobs,
            may_collect=lambda: not self.sync.syncing,
        )
        self.dispatcher = self._make_dispatcher()
        self.hub = self.dispatcher.hub
        self.ipc_server = IPCServer(
            cfg.ipc_path, self.dispatcher, **ipc_server_options(cfg, self.dispatcher.namespaces())
        )
        self.metrics = None
        if cfg.metrics.listen:
            from .metrics import MetricsServer, NodeCollector

            self.metrics = MetricsServer(NodeCollector(self), cfg.metrics.listen, ready=self.readiness)
        self.ledger.add_listener(self._on_commit)

    def _make_dispatcher(self) -> Dispatcher:
        dispatcher = Dispatcher(max_reply_bytes=self.config.ipc.max_reply_bytes)
        queries = ModuleQueries(self.app, self.ledger.state, lambda: self.ledger.tip, self.blob_store.get_blob,
                                versions=self.ledger)
        chain = ChainAPI(self.ledger, self.mempool, self, self, prove_key=queries.prove_key,
                         verifier=self.engine.verifier)
        node = NodeAPI(
            info=self.info, network=self.network_status,
            peers=lambda: [str(p) for p in self.net.connected_peers()],
            syncing=self.sync.status, consensus=self.engine.status, height=lambda: self.ledger.height,
        )
        admin = AdminAPI(self, self._write_backup)
        for api in (node, chain, admin):
            for name, (handler, mutating) in api.methods().items():
                dispatcher.register(name, handler, mutating=mutating, long_poll=name in LONG_POLL_METHODS)
        dispatcher.register_batch_hook("tx_submit", functools.partial(chain.prepare_submits, self.engine.verifier))
        self.ledger.add_listener(lambda c: chain.remember_block(c.block))
        for name, handler in queries.methods().items():
            dispatcher.register(name, handler)
        hub = dispatcher.hub
        # a topic belongs to the namespace of its publisher: IPC access control checks it
        hub.register_topic("newHeads", namespace="chain")
        hub.register_topic("tx", _validate_tx_topic, namespace="tx")
        owners = {topic: mod.name for mod in self.app.modules.values() for topic in mod.topics}
        for topic, spec in self.app.topics.items():
            hub.register_topic(topic, _module_topic_validator(topic, spec), namespace=owners[topic])
        return dispatcher

    @property
    def kv(self) -> LevelDBKV:
        """The open key-value store (for backups)."""
        if self._kv is None:
            raise MedchainError("the node's database is not open")
        return self._kv

    def close(self) -> None:
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        if self._kv is not None:
            self._kv.close()
            self._kv = None

    def _make_network(self) -> NetworkAPI:
        from ..net.api import NetLimits

        p = self.config.p2p
        # a proposal carries its block: gossip must fit the largest valid block; a request
        # is read no further than its protocol's own limit (REQUEST_LIMITS)
        limits = NetLimits(max_gossip_size=max(4 << 20, self.genesis.params.max_block_bytes + (64 << 10)),
                           request_limits=REQUEST_LIMITS)
        if not p.listen.strip():
            # No networking configured: a chain this node decides alone.
            from ..net.memory import MemoryNetwork

            return MemoryNetwork(seed=0, limits=limits).endpoint(self.keys.public_key.hex()[:16])
        from ..net.libp2p_net import Libp2pNetwork

        psk = None
        if p.psk_file:
            try:
                psk = bytes.fromhex(self.config.resolve(p.psk_file).read_text().strip())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"p2p.psk_file: cannot read a hex key ({exc})") from None
        allow = self.allowlist()
        bootstrap = []
        for addr in (x.strip() for x in p.bootstrap.split(",") if x.strip()):
            peer = addr.rsplit("/p2p/", 1)[-1]
            if peer in allow:
                bootstrap.append(addr)
            else:  # e.g. an authority removed or rotated by governance since the config was written
                log.warning("skipping bootstrap peer that is not allowed to connect peer=%s", peer)
        return Libp2pNetwork(
            key_seed=self.keys.signing.seed,
            listen=[x.strip() for x in p.listen.split(",") if x.strip()],
            bootstrap=bootstrap,
            allowlist=allow,
            psk=psk,
            chain_id=self.genesis.chain_id,
            limits=limits,
            # another process with this node's key seen on the network: stop signing
            # (issue 9, "one key, one running authority"; the engine says why and until when)
            on_identity_conflict=lambda why: self.engine.report_key_elsewhere(why),
        )

    def allowlist(self) -> set[Any]:
        """Who may connect: the current authorities, configured observers, minus bans."""
        from ..net.libp2p_net import peer_id_from_public_key

        allow: set[Any] = {peer_id_from_public_key(pk) for pk in self.ledger.tip.powers}
        allow |= {x.strip() for x in self.config.p2p.observers.split(",") if x.strip()}
        return allow - self.banned

    def refresh_allowlist(self) -> None:
        set_allowlist = getattr(self.net, "set_allowlist", None)
        if set_allowlist is not None:
            set_allowlist(self.allowlist())

    # PeerControl (admin_banPeer / admin_unbanPeer)

    def ban(self, peer: str) -> None:
        self.banned.add(peer)
        self.refresh_allowlist()

    def unban(self, peer: str) -> None:
        self.banned.discard(peer)
        self.refresh_allowlist()

    def _write_backup(self, dest: Path) -> dict[str, Any]:
        from .backup import write_backup

        return write_backup(self.kv, self.config, dest)

    # ------------------------------------------------------------------ status

    def info(self) -> dict[str, Any]:
        tip = self.ledger.tip
        return {
            "version": __version__,
            "moniker": self.config.node.moniker,
            "chain_id": self.genesis.chain_id,
            "genesis_hash": "0x" + self.genesis.hash().hex(),
            "public_key": "0x" + self.keys.public_key.hex(),
            "is_authority": self.keys.public_key in tip.powers,
            "height": tip.height,
            "base_height": self.ledger.base,
            "head_hash": "0x" + tip.block_hash.hex(),
            "syncing": self.sync.syncing,
            "mempool_size": len(self.mempool),
            "peer_id": str(self.net.peer_id),
            "peers": len(self.net.connected_peers()),
            "modules": list(self.app.modules),
        }

    def network_status(self) -> dict[str, Any]:
        s = self.net.statistics()
        return {
            "peer_id": str(self.net.peer_id),
            "peers": [str(p) for p in self.net.connected_peers()],
            "banned": sorted(str(p) for p in self.banned),
            "published": s.published, "received": s.received,
            "rejected_by_validator": s.rejected_by_validator, "dropped_full_buffer": s.dropped_full_buffer,
            "dropped_outbound": s.dropped_outbound, "requests_sent": s.requests_sent,
            "requests_failed": s.requests_failed, "requests_served": s.requests_served,
            "connections_refused": s.connections_refused,
            "identity_conflicts": s.identity_conflicts,
            "wire_received": s.wire_received, "wire_bytes": s.wire_bytes, "duplicates": s.duplicates,
            "topics": {name: {"published": t.published, "received": t.received, "wire_received": t.wire_received,
                              "wire_bytes": t.wire_bytes, "duplicates": t.duplicates}
                       for name, t in s.topics.items()},
        }

    def readiness(self) -> tuple[bool, str]:
        """``(ready, reason)`` for ``/readyz``: the node can serve and follow the chain.

        Started, listening and with peers when networked, not syncing and, for an
        authority, a quorum seen recently: the rule and why is
        :func:`~medchaind.node.metrics.assess_readiness`. How long the current height
        has been undecided is measured from the first call that saw it in progress; the
        metrics server calls this every second, so that is when the height began (±1 s).
        """
        from .metrics import ReadinessInputs, assess_readiness, stall_after_s

        if not self.started.is_set():
            return False, "starting"
        listen_addrs = getattr(self.net, "listen_addrs", None)  # libp2p; None: no P2P network
        powers = self.ledger.tip.powers
        authority_peers: dict[bytes, str] = {}
        listening = True
        if listen_addrs is not None:
            from ..net.libp2p_net import peer_id_from_public_key

            authority_peers = {pk: peer_id_from_public_key(pk) for pk in powers}
            try:
                listening = bool(listen_addrs())
            except MedchainError:  # the network stopped (shutting down)
                listening = False
        consensus = self.engine.status()
        now = time.monotonic()
        seen: tuple[int, float] | None = getattr(self, "_undecided_since", None)
        if not consensus["started"]:
            seen = None
        elif seen is None or seen[0] != int(consensus["height"]):
            seen = (int(consensus["height"]), now)
        self._undecided_since = seen
        return assess_readiness(ReadinessInputs(
            started=True,
            syncing=self.sync.syncing,
            networked=listen_addrs is not None,
            listening=listening,
            peers=frozenset(str(p) for p in self.net.connected_peers()),
            powers=powers,
            own_key=self.keys.public_key,
            authority_peers=authority_peers,
            deciding=None if seen is None else seen[0],
            deciding_for_s=0.0 if seen is None else now - seen[1],
            stall_after_s=stall_after_s(self.config.consensus) if seen is not None else 0.0,
        ))

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        self.open()
        try:
            log.info(
                "node starting chain_id=%s height=%d public_key=%s datadir=%s modules=%s",
                self.genesis.chain_id, self.ledger.height, self.keys.public_key.hex()[:16], self.config.datadir,
                ",".join(self.app.modules),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(self.net.run)
                consensus_in = self.net.subscribe(consensus_topic(self.genesis.chain_id),
                                                  self.engine.on_consensus_gossip)
                blocks_in = self.net.subscribe(block_topic(self.genesis.chain_id), self.sync.on_announce)
                nursery.start_soon(drain_subscription, consensus_in)
                nursery.start_soon(drain_subscription, blocks_in)
                if self.config.sync.snapshot_sync and self.ledger.height == 0:
                    # before self.blobs.run: its first reconcile wants the ciphertexts of
                    # the restored records (their blocks are never executed here)
                    await self._snapshot_sync()
                await nursery.start(self.snapshots.run)
                await nursery.start(self.txgossip.run)
                await nursery.start(self.engine.run)
                await nursery.start(self.sync.run)
                await nursery.start(self.blobs.run)
                await nursery.start(self.ipc_server.serve)
                await nursery.start(self.trimmer.run)
                if self.metrics is not None:
                    await nursery.start(self.metrics.serve)
                for service in self.services:
                    await nursery.start(service)
                log.info("node ready ipc=%s height=%d peer_id=%s", self.config.ipc_path, self.ledger.height,
                         self.net.peer_id)
                self.started.set()
                self._sd.notify(f"READY=1\nSTATUS=height {self.ledger.height}, ipc {self.config.ipc_path}")
                nursery.start_soon(self._sd.watchdog)
                task_status.started(self.config.ipc_path)
        finally:
            self._sd.notify("STOPPING=1")
            self.close()
            log.info("node stopped")

    async def _snapshot_sync(self) -> None:
        """Start an empty chain from a verified state snapshot of the peers, before
        consensus and block sync run; without one, block sync starts from genesis."""
        sc = self.config.sync
        fetcher = self.snapshot_fetcher = SnapshotFetcher(
            self.net, self.genesis.chain_id, self.genesis.powers(), fault=self.sync.fault,
            banned=self.sync.banned, discovery_s=sc.snapshot_discovery_ms / 1000)
        with trio.move_on_after(sc.snapshot_discovery_ms / 1000):
            await self.net.wait_peers(1)
        # let the other bootstrap connections come up (until none is added for 1.5 s, at
        # most 5 s), so the chunks are spread over every peer that offers the snapshot
        with trio.move_on_after(5.0):
            seen = len(self.net.connected_peers())
            while True:
                await trio.sleep(1.5)
                now = len(self.net.connected_peers())
                if now == seen:
                    break
                seen = now
        restored = await fetcher.fetch()
        if restored is None:
            log.warning("snapshot sync: no usable snapshot found; block sync from genesis")
            return
        await trio.to_thread.run_sync(self.ledger.restore_snapshot, restored.block, restored.commit,
                                      restored.state, restored.records, restored.values)
        self.engine.rebase()
        self.mempool.update((), None)  # the whole state was replaced: re-check every pending sender
        self._powers_seen = dict(self.ledger.tip.powers)
        log.info("snapshot sync done height=%d entries=%d chunks=%d seconds=%s", restored.block.height,
                 len(restored.state), restored.stats.get("chunks"), restored.stats.get("seconds"))

    # ------------------------------------------------------------------ txs

    async def submit_async(self, tx: Tx, blob: bytes | None = None) -> bool:
        """:meth:`submit` for a client: :meth:`submit_many` of one tx."""
        (result,) = await self.submit_many([(tx, blob)])
        if isinstance(result, TxRejected):
            raise result
        return result

    async def submit_many(self, pairs: list[tuple[Tx, bytes | None]]) -> list[bool | TxRejected]:
        """Admit client txs in order, their sidecars written as one group; per tx, True
        (admitted), False (already pending) or the refusal.

        A tx with a sidecar is admitted *held* (every check done, not yet proposable
        nor gossiped) while the blob service's writer files the sidecars in a worker
        thread (fsync'd, grouped with other writes), then released. So the event loop
        never waits on the disk, a refused tx leaves no file behind, and no block holds
        a tx of this node's client before its sidecar is durable here. If the write
        fails, those txs are dropped (``blob_store_failed``) and refused."""
        results: list[bool | TxRejected] = []
        held: list[tuple[int, Tx]] = []
        sidecars: dict[bytes, bytes] = {}
        for i, (tx, blob) in enumerate(pairs):
            if i and i % ADMIT_SLICE == 0:  # yield to consensus during a long batch
                await trio.lowlevel.checkpoint()
            try:
                self.app.check_blob(tx, blob)
                self.mempool.refuse_if_busy(tx)
                if blob is None:
                    results.append(self._admit(tx))
                    continue
                h = crypto.sha256(blob)
                if h not in sidecars and self.blob_store.has_blob(h):
                    results.append(self._admit(tx))  # its sidecar is here already
                    continue
                new = self.mempool.add(tx, held=True)
                if new:
                    held.append((i, tx))
                    sidecars[h] = blob
                results.append(new)
            except TxRejected as exc:
                results.append(exc)
        if not held:
            return results
        try:
            await self.blobs.save(list(sidecars.items()))
        except MedchainError:
            for i, tx in held:
                self.mempool.drop(tx.hash, "blob_store_failed")
                results[i] = TxRejected("blob_store_failed", "this node could not store the sidecar; retry later")
            return results
        for _, tx in held:
            if self.mempool.release(tx.hash):
                self._announce_pending(tx)
        return results

    def submit(self, tx: Tx, *, client: bool = True) -> bool:
        """Admit a tx that carries no sidecar (a client's txs go through
        :meth:`submit_many`, which also files sidecars).

        A client's tx may be refused ``busy`` (retry hint) while the mempool holds more
        than the next blocks take (:meth:`Mempool.refuse_if_busy`); ``client=False``
        (the node's own evidence txs) skips that."""
        self.app.check_blob(tx, None)
        if client:
            self.mempool.refuse_if_busy(tx)
        return self._admit(tx)

    def _admit(self, tx: Tx) -> bool:
        new = self.mempool.add(tx)
        if new:
            self._announce_pending(tx)
        return new

    def _admission_block(self) -> BlockInfo:
        """The block a tx admitted now is dry-run in: the next height, at the time this
        node would propose it now (on an idle chain the last block's time can be hours
        old, and a consent that started since then must not be refused at the door).
        One value per tip and millisecond is built: a batch admits hundreds of txs
        within a few milliseconds (issue 14: building it per tx was ~2% of a lone
        authority's event loop)."""
        tip = self.ledger.tip
        time_ms = next_time_ms(tip, wall_clock_ms())
        info = self._admission_info
        if info is None or info.height != tip.height + 1 or info.time_ms != time_ms:
            info = self._admission_info = BlockInfo(self.genesis.chain_id, tip.height + 1, time_ms, b"")
        return info

    def _announce_pending(self, tx: Tx) -> None:
        if self.hub.has_subscribers("tx"):
            self.hub.publish("tx", tx_event(tx, "pending"), _tx_filter(tx))
        self.txgossip.queue(tx)

    def _pending_from_peer(self, tx: Tx) -> None:
        blob_hash = self.app.blob_hash(tx)
        if blob_hash is not None:
            # fetch the sidecar while the tx waits for its block, so it is here as soon
            # as the tx commits (an orphan, if it never does, is shredded by
            # BlobService.reconcile)
            self.blobs.want(blob_hash)
        if self.hub.has_subscribers("tx"):
            self.hub.publish("tx", tx_event(tx, "pending"), _tx_filter(tx))

    def _pending_blobs(self) -> set[bytes]:
        return {h for tx in self.mempool.txs() if (h := self.app.blob_hash(tx)) is not None}

    async def wait_height(self, height: int) -> None:
        while self.ledger.height < height:
            await self._head_changed.wait()

    def _submit_evidence(self, ev: Any) -> None:
        """Put an equivocation on chain: the evidence tx of the module that takes it, signed here."""
        _, nonce = self.next_nonce(self.keys.public_key)
        tx = evidence_tx(self.app, self.keys.signing, self.genesis.chain_id, nonce, ev)
        if tx is not None:
            self.submit(tx, client=False)

    def next_nonce(self, sender: bytes) -> tuple[int, int]:
        committed = self.app.nonce(self.ledger.state, sender)
        n = committed
        while self.mempool.has_nonce(sender, n):
            n += 1
        return committed, n

    async def wait_tx(self, tx_hash: bytes) -> None:
        """Return once the tx is committed, or dropped by the mempool (its status says which)."""
        while self.ledger.tx_location(tx_hash) is None and self.mempool.dropped_reason(tx_hash) is None:
            ev = self._tx_waiters.get(tx_hash)
            if ev is None:
                ev = self._tx_waiters[tx_hash] = trio.Event()
            await ev.wait()

    def _on_dropped(self, tx: Tx, reason: str) -> None:
        """The mempool let ``tx`` go uncommitted: wake its ``tx_wait`` callers and tell
        its ``tx`` subscribers, so the submitter sees ``dropped`` and why, not silence."""
        ev = self._tx_waiters.pop(tx.hash, None)
        if ev is not None:
            ev.set()
        if self.hub.has_subscribers("tx"):
            self.hub.publish("tx", tx_event(tx, "dropped", reason=reason), _tx_filter(tx))

    def _on_commit(self, c: Committed) -> None:
        self.sigs.discard(tx.hash for tx in c.block.txs)  # no one checks a committed tx again
        self.trimmer.committed()
        self.counters.blocks += 1
        self.counters.txs += len(c.block.txs)
        self.counters.txs_failed += sum(1 for r in c.receipts if not r.ok)
        self.counters.last_commit_monotonic = time.monotonic()
        if self.ledger.tip.powers != self._powers_seen:
            # governance changed the authority set: the allowlist follows it
            self._powers_seen = dict(self.ledger.tip.powers)
            self.refresh_allowlist()
        header = c.block.header.to_json()
        tx_subscribers = self.hub.has_subscribers("tx")
        for i, (tx, r) in enumerate(zip(c.block.txs, c.receipts, strict=True)):
            ev = self._tx_waiters.pop(tx.hash, None)
            if ev is not None:
                ev.set()
            if tx_subscribers:  # build the payloads only for someone
                self.hub.publish(
                    "tx",
                    tx_event(tx, "committed", height=c.block.height, index=i, receipt=receipt_json(r)),
                    _tx_filter(tx),
                )
        events = [e for r in c.receipts for e in r.events]
        for effect in self.app.host_effects(events):
            if isinstance(effect, WantBlob):
                self.blobs.want(effect.content_hash)
            elif isinstance(effect, DropBlob):
                self.blobs.erase(effect.content_hash)
        for topic, spec in self.app.topics.items():
            if not self.hub.has_subscribers(topic):
                continue  # build the payloads only for someone
            for event in events:
                if spec.field in event:
                    self.hub.publish(topic, {"height": c.block.height, **to_jsonable(event)},
                                     _field_filter(event[spec.field]))
        self.hub.publish("newHeads", header, None)
        self._head_changed.set()
        self._head_changed = trio.Event()


def _validate_tx_topic(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "hash" in params:
        out["hash"] = hex_bytes(params, "hash", 32)
    if "sender" in params:
        out["sender"] = hex_bytes(params, "sender", 32)
    extra = set(params) - {"topic", "hash", "sender"}
    if extra:
        raise InvalidParams(f"unknown tx subscription filter(s) {sorted(extra)}")
    return out


def _module_topic_validator(topic: str, spec: TopicSpec) -> Any:
    """Subscriptions to a module's topic name one value of the event field it filters on."""

    def validate(params: dict[str, Any]) -> Any:
        extra = set(params) - {"topic", spec.field}
        if extra:
            raise InvalidParams(f"unknown {topic} subscription filter(s) {sorted(extra)}")
        if spec.field not in params:
            raise InvalidParams(f"the {topic} topic needs {spec.field}")
        try:
            return spec.param.json(params[spec.field], spec.field)
        except FieldError as exc:
            raise InvalidParams(str(exc)) from None

    return validate


def _field_filter(value: Any) -> Any:
    """Match a subscriber's value against an event field (equal, or contained in a list field)."""
    if isinstance(value, list | tuple):
        members = set(value)
        return lambda filt: filt in members
    return lambda filt: filt == value


def _tx_filter(tx: Tx) -> Any:
    def match(filt: dict[str, Any]) -> bool:
        return bool(filt.get("hash", tx.hash) == tx.hash and filt.get("sender", tx.sender) == tx.sender)

    return match


#: what SIGHUP re-reads from config.toml (and the environment and flags, with the usual
#: precedence) and applies without a restart; a change to any other setting is logged
#: as needing one
RELOADABLE = ("p2p.observers", "ipc.default_namespaces", "ipc.access", "log.level", "log.format")


def reload_settings(node: Node, new: Config) -> list[str]:
    """Apply the run-time settings of ``new`` to a running ``node``; returns what changed.

    * ``p2p.observers``: the allowlist is recomputed (peers that fell off it are
      disconnected, new observers may connect);
    * ``ipc.default_namespaces`` and ``[ipc.access.<name>]``: the access policy of
      connections accepted from now on (open connections keep the grant they got);
    * ``log.level`` / ``log.format``: the root logger.

    Raises :class:`ConfigError` (nothing applied) if the new IPC access settings name a
    namespace the node does not serve. Other settings that differ are logged as needing
    a restart and left as they are.
    """
    import dataclasses
    from dataclasses import replace

    from ..logs import setup_logging

    old = node.config
    changed = []
    if new.p2p.observers != old.p2p.observers:
        changed.append("p2p.observers")
    if new.ipc.default_namespaces != old.ipc.default_namespaces:
        changed.append("ipc.default_namespaces")
    if new.ipc_access != old.ipc_access:
        changed.append("ipc.access")
    if new.log != old.log:
        changed += [f"log.{k}" for k in ("level", "format") if getattr(new.log, k) != getattr(old.log, k)]
    policy = ipc_server_options(new, node.dispatcher.namespaces())["access"]  # checks the names first
    merged = replace(
        old,
        p2p=replace(old.p2p, observers=new.p2p.observers),
        ipc=replace(old.ipc, default_namespaces=new.ipc.default_namespaces),
        ipc_access=new.ipc_access,
        log=new.log,
    )
    frozen = [
        f"{section}.{k}"
        for section in ("node", "key", "ipc", "consensus", "p2p", "mempool", "metrics", "console")
        for k in (f.name for f in dataclasses.fields(getattr(new, section)))
        if getattr(getattr(new, section), k) != getattr(getattr(merged, section), k)
    ]
    node.config = merged
    if "p2p.observers" in changed:
        node.refresh_allowlist()
    node.ipc_server.access = policy
    if "log.level" in changed or "log.format" in changed:
        setup_logging(new.log.level, new.log.format)
    if frozen:
        log.warning("settings changed that need a restart to apply settings=%s", ",".join(frozen))
    return changed


async def run_until_signal(node: Node, load_config: Any = None) -> int | None:
    """Run ``node`` until SIGINT/SIGTERM; returns the signal that stopped it (None if the
    node stopped by itself). A second SIGINT/SIGTERM during shutdown exits at once with
    128 + its number.

    SIGHUP does not stop the node: ``load_config()`` (flags > environment > config.toml,
    as at startup) is read again and :func:`reload_settings` applies what can change at
    run time. A config that no longer loads is logged and the running settings are kept.
    Logs go to stderr, so there is no log file to reopen (journald, Docker and
    Kubernetes collect stderr).

    SIGUSR1 writes what every task is waiting on to ``<datadir>/debug`` (:mod:`.taskdump`)
    and the node keeps running.
    """
    stopped_by: int | None = None
    # the daemon's process only (memtrim.py, "The cyclic collector")
    tuned = tune_collector(node.config.node.gc_threshold)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as outer:
            node_scope = trio.CancelScope()

            async def freeze_when_ready() -> None:
                await node.started.wait()
                log.info("collector tuned threshold=%d frozen=%d", node.config.node.gc_threshold,
                         freeze_long_lived())

            if tuned:
                outer.start_soon(freeze_when_ready)

            async def run_node() -> None:
                with node_scope:
                    await node.run()
                outer.cancel_scope.cancel()

            outer.start_soon(run_node)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if not node_scope.cancel_called:
                        _reload(node, load_config)
                elif signum == signal.SIGUSR1:
                    _dump_tasks(node)
                elif not node_scope.cancel_called:
                    log.info("signal received, shutting down signal=%s", signal.Signals(signum).name)
                    stopped_by = signum
                    node_scope.cancel()
                else:
                    log.warning("second signal during shutdown, exiting now signal=%s", signal.Signals(signum).name)
                    os._exit(128 + signum)
    return stopped_by


def _dump_tasks(node: Node) -> None:
    try:
        path, n = write_task_dump(node.config.datadir)
    except OSError as exc:
        log.error("task dump failed error=\"%s\"", exc)
        return
    log.warning("signal received, task dump written signal=SIGUSR1 tasks=%d path=%s", n, path)


def _reload(node: Node, load_config: Any) -> None:
    log.info("signal received, reloading settings signal=SIGHUP")
    if load_config is None or not node.started.is_set():
        log.warning("reload skipped: the node is still starting")
        return
    try:
        changed = reload_settings(node, load_config())
    except (MedchainError, OSError) as exc:
        log.error("reload failed, keeping the running settings error=\"%s\"", exc)
        return
    log.info("settings reloaded changed=%s", ",".join(changed) or "none")


async def drain_subscription(channel: trio.MemoryReceiveChannel[Any]) -> None:
    """Consume a subscription whose validator already handled each message.

    Takes everything already buffered at each wake-up: one scheduler round per burst,
    not per message (with n authorities a step delivers ~n votes at once)."""
    with channel:
        async for _ in channel:
            try:
                while True:
                    channel.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                pass
