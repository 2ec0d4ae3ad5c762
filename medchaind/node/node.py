"""The composition root: config -> components -> one nursery (DESIGN.md §2 ``node/``).

Startup: open the store (fails fast if another process holds the datadir), load and
check genesis, build app, ledger, signature cache, mempool and consensus engine, then
start the IPC server and the engine in one nursery. Shutdown (SIGINT/SIGTERM or
cancellation): stop accepting IPC, cancel the engine between blocks or mid-block (an
unfinished block was never written, so nothing committed is lost), then close the
store. A second signal exits at once.
"""

from __future__ import annotations

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

from .. import crypto
from ..app import App, BlockInfo
from ..app.records import live_content_hashes
from ..chain import SigCache
from ..chain.executor import next_time_ms
from ..consensus.bft import BftConfig, BftEngine, evidence_tx, wall_clock_ms
from ..consensus.wal import WAL
from ..consensus.wire import block_topic, consensus_topic
from ..core import TimeoutConfig
from ..crypto import KeyPair, load_keystore
from ..errors import ConfigError, MedchainError, TxRejected
from ..ipc import Dispatcher, IPCServer
from ..mempool import Mempool, MempoolConfig
from ..store import LevelDBKV, open_store
from ..store.blobs import FileBlobStore
from ..sync import SyncService
from ..types import Genesis, Tx, to_jsonable
from .blobs import MAX_BLOB, BlobService
from .config import Config
from .ledger import Committed, Ledger
from .rpc import LONG_POLL_METHODS, RPC, receipt_json, tx_event
from .sdnotify import SdNotifier
from .txgossip import TxGossip

log = logging.getLogger(__name__)


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
    def __init__(self, config: Config, genesis: Genesis, keys: KeyPair) -> None:
        self.config = config
        self.genesis = genesis
        self.keys = keys
        self.app = App(genesis)
        self._kv: LevelDBKV | None = None
        self.wal: WAL | None = None
        self.banned: set[Any] = set()
        self._powers_seen: dict[bytes, int] = {}
        self.ledger: Ledger
        self.mempool: Mempool
        self.sigs = SigCache()
        self._tx_waiters: dict[bytes, trio.Event] = {}
        self._head_changed = trio.Event()
        self._sd = SdNotifier()
        self.counters = NodeCounters(last_commit_monotonic=time.monotonic())
        self.started = trio.Event()
        self.ipc_server: IPCServer | None = None

    @classmethod
    def from_config(cls, config: Config) -> Node:
        return cls(config, Genesis.load(config.genesis_path), load_node_keys(config))

    # ------------------------------------------------------------------ lifecycle

    def _open(self) -> None:
        kv, store = open_store(self.config.datadir)
        self._kv = kv
        try:
            self.ledger = Ledger(store, self.app, self.genesis)
        except BaseException:
            kv.close()
            raise
        mc = self.config.mempool
        self.mempool = Mempool(
            self.app, lambda: self.ledger.state, self.sigs, self.ledger.is_committed,
            MempoolConfig(max_txs=mc.max_txs, max_bytes=mc.max_bytes, max_per_sender=mc.max_per_sender,
                          sender_rate=float(mc.sender_rate), sender_burst=mc.sender_burst),
            # admission dry-runs txs at the time the next block would have if this node
            # proposed it now: on an idle chain the last block's time can be hours old,
            # and a consent that started since then must not be refused at the door
            block_info=lambda: BlockInfo(self.genesis.chain_id, self.ledger.height + 1,
                                         next_time_ms(self.ledger.tip, wall_clock_ms()), b""),
        )
        self.ledger.add_listener(self._on_commit)
        self.wal = WAL(self.config.datadir / "consensus.wal")
        self.blob_store = FileBlobStore(self.config.datadir / "blobs")

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
        # a proposal carries its block: gossip must fit the largest valid block
        limits = NetLimits(max_gossip_size=max(4 << 20, self.genesis.params.max_block_bytes + (64 << 10)))
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
        allow = self._allowlist()
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
        )

    def _allowlist(self) -> set[Any]:
        """Who may connect: the current authorities, configured observers, minus bans."""
        from ..net.libp2p_net import peer_id_from_public_key

        allow: set[Any] = {peer_id_from_public_key(pk) for pk in self.ledger.tip.powers}
        allow |= {x.strip() for x in self.config.p2p.observers.split(",") if x.strip()}
        return allow - self.banned

    def refresh_allowlist(self) -> None:
        set_allowlist = getattr(self.net, "set_allowlist", None)
        if set_allowlist is not None:
            set_allowlist(self._allowlist())

    async def run(self, *, task_status: TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        self._open()
        try:
            log.info(
                "node starting chain_id=%s height=%d public_key=%s datadir=%s",
                self.genesis.chain_id, self.ledger.height, self.keys.public_key.hex()[:16], self.config.datadir,
            )
            self.net = self._make_network()
            c = self.config.consensus
            self.engine = BftEngine(
                self.ledger, self.mempool, self.keys.signing, self.net, self.wal,
                BftConfig(
                    timeouts=TimeoutConfig(c.timeout_propose_ms, c.timeout_propose_delta_ms, c.timeout_prevote_ms,
                                           c.timeout_prevote_delta_ms, c.timeout_precommit_ms,
                                           c.timeout_precommit_delta_ms),
                    create_empty_blocks=c.create_empty_blocks,
                    empty_block_interval_ms=c.empty_block_interval_ms,
                ),
                on_evidence=self._submit_evidence,
            )
            self.sync = SyncService(self.ledger, self.engine, self.net)
            self.txgossip = TxGossip(self.net, self.mempool, self.genesis.chain_id, on_admitted=self._pending_from_peer)
            self.blobs = BlobService(
                self.blob_store, self.net,
                live=lambda: live_content_hashes(self.ledger.state), pending=self._pending_blobs,
                may_collect=lambda: not self.sync.syncing,
            )
            dispatcher = Dispatcher()
            self.rpc = RPC(self)
            for name, (handler, mutating) in self.rpc.methods().items():
                dispatcher.register(name, handler, mutating=mutating, long_poll=name in LONG_POLL_METHODS)
            self.hub = dispatcher.hub
            self.hub.register_topic("newHeads")
            self.hub.register_topic("tx", _validate_tx_topic)
            self.hub.register_topic("patient", _validate_patient_topic)
            group = self.config.ipc.group or None
            self.ipc_server = IPCServer(self.config.ipc_path, dispatcher, group=group)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.net.run)
                consensus_in = self.net.subscribe(consensus_topic(self.genesis.chain_id),
                                                  self.engine.on_consensus_gossip)
                blocks_in = self.net.subscribe(block_topic(self.genesis.chain_id), self.sync.on_announce)
                nursery.start_soon(drain_subscription, consensus_in)
                nursery.start_soon(drain_subscription, blocks_in)
                await nursery.start(self.txgossip.run)
                await nursery.start(self.engine.run)
                await nursery.start(self.sync.run)
                await nursery.start(self.blobs.run)
                await nursery.start(self.ipc_server.serve)
                if self.config.metrics.listen:
                    from .metrics import MetricsServer

                    await nursery.start(MetricsServer(self, self.config.metrics.listen).serve)
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

    # ------------------------------------------------------------------ txs

    def submit(self, tx: Tx, blob: bytes | None = None) -> bool:
        """Admit a tx (and its ciphertext sidecar, for ``records.add``)."""
        if tx.type == "records.add":
            body = tx.body
            if blob is None:
                raise TxRejected("blob_required", "records.add needs its ciphertext as the blob parameter")
            if len(blob) > MAX_BLOB or crypto.sha256(blob) != body.get("content_hash") or len(blob) != body.get("size"):
                raise TxRejected("blob_mismatch", "the blob does not match the tx's content_hash and size")
        elif blob is not None:
            raise TxRejected("unexpected_blob", f"{tx.type} takes no blob")
        new = self.mempool.add(tx)
        if new and blob is not None:
            # stored at admission so this node can serve it; if the tx never commits,
            # BlobService.reconcile shreds the orphan after its grace period
            self.blob_store.put_blob(crypto.sha256(blob), blob)
        if new and hasattr(self, "hub"):
            if self.hub.has_subscribers("tx"):
                self.hub.publish("tx", tx_event(tx, "pending"), _tx_filter(tx))
            self.txgossip.queue(tx)
        return new

    def _pending_from_peer(self, tx: Tx) -> None:
        if tx.type == "records.add" and hasattr(self, "blobs"):
            # fetch the ciphertext while the tx waits for its block, so the record is
            # readable here as soon as it commits (an orphan, if it never does, is
            # shredded by BlobService.reconcile)
            self.blobs.want(tx.body["content_hash"])
        if hasattr(self, "hub") and self.hub.has_subscribers("tx"):
            self.hub.publish("tx", tx_event(tx, "pending"), _tx_filter(tx))

    def _pending_blobs(self) -> set[bytes]:
        return {tx.body["content_hash"] for tx in self.mempool.txs() if tx.type == "records.add"}

    async def wait_height(self, height: int) -> None:
        while self.ledger.height < height:
            await self._head_changed.wait()

    def _submit_evidence(self, ev: Any) -> None:
        """Put an equivocation on chain: a governance.evidence tx signed by this node."""
        _, nonce = self.next_nonce(self.keys.public_key)
        self.submit(evidence_tx(self.keys.signing, self.genesis.chain_id, nonce, ev))

    def next_nonce(self, sender: bytes) -> tuple[int, int]:
        committed = self.app.nonce(self.ledger.state, sender)
        n = committed
        while self.mempool.has_nonce(sender, n):
            n += 1
        return committed, n

    async def wait_tx(self, tx_hash: bytes) -> None:
        while not self.ledger.is_committed(tx_hash):
            ev = self._tx_waiters.get(tx_hash)
            if ev is None:
                ev = self._tx_waiters[tx_hash] = trio.Event()
            await ev.wait()

    def _on_commit(self, c: Committed) -> None:
        self.counters.blocks += 1
        self.counters.txs += len(c.block.txs)
        self.counters.txs_failed += sum(1 for r in c.receipts if not r.ok)
        self.counters.last_commit_monotonic = time.monotonic()
        if self.ledger.tip.powers != self._powers_seen:
            # governance changed the authority set: the allowlist follows it
            self._powers_seen = dict(self.ledger.tip.powers)
            if hasattr(self, "net"):
                self.refresh_allowlist()
        header = c.block.header.to_json()
        tx_subscribers = hasattr(self, "hub") and self.hub.has_subscribers("tx")
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
        patient_subscribers = hasattr(self, "hub") and self.hub.has_subscribers("patient")
        for r in c.receipts:
            for event in r.events:
                kind = event.get("type")
                if kind == "records.added" and hasattr(self, "blobs"):
                    self.blobs.want(event["content_hash"])
                elif kind == "records.erased" and hasattr(self, "blobs") and not event["content_in_use"]:
                    self.blobs.erase(event["content_hash"])
                if patient_subscribers and "patient" in event:
                    self.hub.publish("patient", {"height": c.block.height, **to_jsonable(event)},
                                     _patient_filter(event["patient"]))
        if hasattr(self, "hub"):
            self.hub.publish("newHeads", header, None)
        self._head_changed.set()
        self._head_changed = trio.Event()


def _validate_tx_topic(params: dict[str, Any]) -> dict[str, Any]:
    from .rpc import InvalidParams, hex_bytes

    out: dict[str, Any] = {}
    if "hash" in params:
        out["hash"] = hex_bytes(params, "hash", 32)
    if "sender" in params:
        out["sender"] = hex_bytes(params, "sender", 32)
    extra = set(params) - {"topic", "hash", "sender"}
    if extra:
        raise InvalidParams(f"unknown tx subscription filter(s) {sorted(extra)}")
    return out


def _validate_patient_topic(params: dict[str, Any]) -> bytes:
    from .rpc import InvalidParams, hex_bytes

    extra = set(params) - {"topic", "patient"}
    if extra:
        raise InvalidParams(f"unknown patient subscription filter(s) {sorted(extra)}")
    return hex_bytes(params, "patient", 32)


def _patient_filter(patient: bytes) -> Any:
    return lambda filt: filt == patient


def _tx_filter(tx: Tx) -> Any:
    def match(filt: dict[str, Any]) -> bool:
        return bool(filt.get("hash", tx.hash) == tx.hash and filt.get("sender", tx.sender) == tx.sender)

    return match


async def run_until_signal(node: Node) -> None:
    """Run ``node`` until SIGINT/SIGTERM; a second signal during shutdown exits at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as outer:
            node_scope = trio.CancelScope()

            async def run_node() -> None:
                with node_scope:
                    await node.run()
                outer.cancel_scope.cancel()

            outer.start_soon(run_node)
            async for signum in signals:
                if not node_scope.cancel_called:
                    log.info("signal received, shutting down signal=%s", signal.Signals(signum).name)
                    node_scope.cancel()
                else:
                    log.warning("second signal during shutdown, exiting now")
                    os._exit(130)


async def drain_subscription(channel: trio.MemoryReceiveChannel[Any]) -> None:
    """Consume a subscription whose validator already handled each message."""
    with channel:
        async for _ in channel:
            pass
