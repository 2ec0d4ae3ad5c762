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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

from ..app import App
from ..chain import SigCache
from ..consensus.solo import EngineConfig, SoloEngine
from ..crypto import KeyPair, load_keystore
from ..errors import ConfigError
from ..ipc import Dispatcher, IPCServer
from ..mempool import Mempool, MempoolConfig
from ..store import LevelDBKV, open_store
from ..types import Genesis, Tx
from .config import Config
from .ledger import Committed, Ledger
from .rpc import RPC, receipt_json, tx_event

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


class Node:
    def __init__(self, config: Config, genesis: Genesis, keys: KeyPair) -> None:
        self.config = config
        self.genesis = genesis
        self.keys = keys
        self.app = App(genesis)
        self._kv: LevelDBKV | None = None
        self.ledger: Ledger
        self.mempool: Mempool
        self.sigs = SigCache()
        self._tx_waiters: dict[bytes, trio.Event] = {}
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
        )
        self.ledger.add_listener(self._on_commit)

    def close(self) -> None:
        if self._kv is not None:
            self._kv.close()
            self._kv = None

    async def run(self, *, task_status: TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        self._open()
        try:
            log.info(
                "node starting chain_id=%s height=%d public_key=%s datadir=%s",
                self.genesis.chain_id, self.ledger.height, self.keys.public_key.hex()[:16], self.config.datadir,
            )
            dispatcher = Dispatcher()
            self.rpc = RPC(self)
            for name, (handler, mutating) in self.rpc.methods().items():
                dispatcher.register(name, handler, mutating=mutating)
            self.hub = dispatcher.hub
            self.hub.register_topic("newHeads")
            self.hub.register_topic("tx", _validate_tx_topic)
            group = self.config.ipc.group or None
            self.ipc_server = IPCServer(self.config.ipc_path, dispatcher, group=group)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.ipc_server.serve)
                engine = SoloEngine(
                    self.ledger, self.mempool, self.keys.signing,
                    EngineConfig(self.config.consensus.create_empty_blocks,
                                 self.config.consensus.empty_block_interval_ms),
                )
                if engine.is_authority():
                    await nursery.start(engine.run)
                else:
                    log.warning(
                        "this node's key is not the single authority of this chain; it serves "
                        "its store read-only (multi-authority consensus and sync are not built yet)"
                    )
                log.info("node ready ipc=%s height=%d", self.config.ipc_path, self.ledger.height)
                self.started.set()
                task_status.started(self.config.ipc_path)
        finally:
            self.close()
            log.info("node stopped")

    # ------------------------------------------------------------------ txs

    def submit(self, tx: Tx) -> bool:
        new = self.mempool.add(tx)
        if new and hasattr(self, "hub"):
            self.hub.publish("tx", tx_event(tx, "pending"), _tx_filter(tx))
        return new

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
        header = c.block.header.to_json()
        for i, (tx, r) in enumerate(zip(c.block.txs, c.receipts, strict=True)):
            ev = self._tx_waiters.pop(tx.hash, None)
            if ev is not None:
                ev.set()
            if hasattr(self, "hub"):
                self.hub.publish(
                    "tx",
                    tx_event(tx, "committed", height=c.block.height, index=i, receipt=receipt_json(r)),
                    _tx_filter(tx),
                )
        if hasattr(self, "hub"):
            self.hub.publish("newHeads", header, None)


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
