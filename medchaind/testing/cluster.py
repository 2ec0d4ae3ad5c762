"""In-process clusters of full nodes over a MemoryNetwork, for service-level simulations.

Each :class:`ClusterNode` is a real node minus the sockets and the disk: MemoryKV store,
ledger, mempool, BFT engine, sync and tx gossip, wired exactly as ``node/node.py``
wires them, over a :class:`~medchaind.net.memory.MemoryEndpoint`. Under pytest-trio's
``autojump_clock`` a cluster of 4 to 32 nodes runs minutes of virtual time in seconds.
Crash and restart keep the store and the WAL, like a process restart on the same datadir.

One process plays n machines, so two costs that n machines would pay in parallel are
serialised here: the WAL's fsyncs (off unless ``durable_wal=True``: a simulated crash
cancels tasks and loses nothing the page cache holds) and every node's Ed25519 check of
every vote, 2n(n-1) per height (:func:`shared_signature_checks` answers a repeated check
from memory; opt-in, for large clusters). How a height's cost grows with n:
``scripts/scaling.py`` and docs/benchmarks.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

from .. import crypto
from ..chain import SigCache
from ..consensus.bft import BftConfig, BftEngine, evidence_tx
from ..consensus.wal import WAL
from ..consensus.wire import block_topic, consensus_topic
from ..core import TimeoutConfig
from ..crypto import KeyPair
from ..ledger import Ledger
from ..mempool import Mempool
from ..modules import make_app
from ..net.memory import MemoryNetwork
from ..node.node import drain_subscription
from ..node.txgossip import TxGossip
from ..store import ChainStore, MemoryKV
from ..sync import SyncService
from ..types import Authority, Genesis, Params, Tx

FAST_TIMEOUTS = TimeoutConfig(propose_ms=1000, propose_delta_ms=500, prevote_ms=500, prevote_delta_ms=250,
                              precommit_ms=500, precommit_delta_ms=250)


class ClusterNode:
    def __init__(self, name: str, keys: KeyPair | None, genesis: Genesis, hub: MemoryNetwork, wal_path: Path,
                 config: BftConfig, *, durable_wal: bool = False) -> None:
        self.name = name
        #: fsync the WAL (see WAL.durable): off by default, one process plays n machines
        self.durable_wal = durable_wal
        self.keys = keys
        self.genesis = genesis
        self.kv = MemoryKV()
        self.net = hub.endpoint(name)
        self.wal_path = wal_path
        self.config = config
        self._scope: trio.CancelScope | None = None
        self.running = False
        self._stopped = trio.Event()
        self._build()

    def _build(self) -> None:
        app = make_app(self.genesis)
        self.ledger = Ledger(ChainStore(self.kv), app, self.genesis, commit_in_thread=False)
        self.mempool = Mempool(app, lambda: self.ledger.state, SigCache(), self.ledger.is_committed)
        self.wal = WAL(self.wal_path, durable=self.durable_wal)
        self.engine = BftEngine(
            self.ledger, self.mempool, self.keys.signing if self.keys else None, self.net, self.wal, self.config,
            clock_ms=lambda: self.genesis.genesis_time_ms + int(trio.current_time() * 1000),
            on_evidence=self._submit_evidence,
        )
        self.sync = SyncService(self.ledger, self.engine, self.net, interval=0.5)
        self.engine.on_peer_fault = self.sync.fault
        self.txgossip = TxGossip(self.net, self.mempool, self.genesis.chain_id)

    @property
    def height(self) -> int:
        return self.ledger.height

    def submit(self, tx: Tx) -> None:
        if self.mempool.add(tx):
            self.txgossip.queue(tx)

    def _submit_evidence(self, ev: Any) -> None:
        assert self.keys is not None
        pk = self.keys.public_key
        nonce = self.ledger.app.nonce(self.ledger.state, pk)
        while self.mempool.has_nonce(pk, nonce):
            nonce += 1
        tx = evidence_tx(self.ledger.app, self.keys.signing, self.genesis.chain_id, nonce, ev)
        if tx is not None:
            self.submit(tx)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            self.running = True
            self._stopped = trio.Event()
            try:
                async with trio.open_nursery() as n:
                    await n.start(self.net.run)
                    chain = self.genesis.chain_id
                    cin = self.net.subscribe(consensus_topic(chain), self.engine.on_consensus_gossip)
                    bin_ = self.net.subscribe(block_topic(chain), self.sync.on_announce)
                    n.start_soon(drain_subscription, cin)
                    n.start_soon(drain_subscription, bin_)
                    await n.start(self.txgossip.run)
                    await n.start(self.engine.run)
                    await n.start(self.sync.run)
                    task_status.started()
            finally:
                self.running = False
                self._stopped.set()

    def crash(self) -> None:
        """Cancel every task of the node at once (its endpoint goes down with it)."""
        assert self._scope is not None
        self._scope.cancel()

    async def wait_stopped(self) -> None:
        """Until every task of the node has exited (after :meth:`crash`), its endpoint included."""
        if self.running:
            await self._stopped.wait()
        else:
            await trio.lowlevel.checkpoint()

    def restart_state(self) -> None:
        """After a crash: rebuild the in-memory parts from the persisted store and WAL."""
        self.wal.close()
        self._build()



class Cluster:
    def __init__(self, n_validators: int, *, seed: int = 0, observers: int = 0, wal_dir: Path,
                 latency_ms: tuple[int, int] = (5, 30), timeouts: TimeoutConfig = FAST_TIMEOUTS,
                 create_empty_blocks: bool = False, durable_wal: bool = False,
                 min_block_interval_ms: int = 0, params: Params | None = None) -> None:
        self.hub = MemoryNetwork(seed, latency_ms=latency_ms)
        self.keys = [KeyPair.generate() for _ in range(n_validators + observers)]
        self.genesis = Genesis(
            "sim-chain", 1_700_000_000_000,
            tuple(Authority(f"v{i}", self.keys[i].public_key, 1) for i in range(n_validators)),
            params or Params(),
        )
        # min_block_interval_ms 0 by default here (a node's default is 250): simulations
        # decide heights as soon as they can; tests/sim/test_block_interval.py sets it
        cfg = BftConfig(timeouts=timeouts, create_empty_blocks=create_empty_blocks,
                        min_block_interval_ms=min_block_interval_ms)
        self.nodes = [
            ClusterNode(f"n{i}", self.keys[i], self.genesis, self.hub, wal_dir / f"n{i}.wal", cfg,
                        durable_wal=durable_wal)
            for i in range(n_validators + observers)
        ]
        self._nursery: trio.Nursery | None = None

    async def start(self, nursery: trio.Nursery, which: Sequence[int] | None = None) -> None:
        self._nursery = nursery
        for i in which if which is not None else range(len(self.nodes)):
            await nursery.start(self.nodes[i].run)

    async def restart(self, i: int) -> None:
        assert self._nursery is not None
        node = self.nodes[i]
        node.restart_state()
        await self._nursery.start(node.run)

    async def wait_height(self, height: int, which: Sequence[int] | None = None) -> None:
        for i in which if which is not None else range(len(self.nodes)):
            await self.nodes[i].ledger.wait_height(height)

    def check_agreement(self) -> None:
        """At most one block per height across all nodes (compare every stored block hash)."""
        top = max(n.height for n in self.nodes)
        for h in range(1, top + 1):
            hashes = {n.ledger.store.get_block(h).hash() for n in self.nodes if n.height >= h}  # type: ignore[union-attr]
            assert len(hashes) == 1, f"fork at height {h}: {len(hashes)} different blocks"


@contextmanager
def shared_signature_checks(max_entries: int = 1 << 18) -> Iterator[dict[str, int]]:
    """Within the block, :func:`medchaind.crypto.verify` remembers its answers process-wide.

    For simulations only (``scripts/scaling.py --shared-verify``). One process plays n
    machines, and every one of them checks every vote and proposal: 2n(n-1) Ed25519
    verifications per height, the O(n^2) that dominates a large cluster's CPU, where n
    real machines would each do their 2(n-1) in parallel. With this, a (key, signature,
    message) checked by one in-process node is answered from memory for the others; a
    bad signature is remembered as bad, so no outcome changes. The memo is cleared when
    it reaches ``max_entries``. Yields counters: ``checked`` (real verifications) and
    ``shared`` (answers from the memo).
    """
    real = crypto.verify
    memo: dict[tuple[bytes, bytes, str, str, bytes], bool] = {}
    stats = {"checked": 0, "shared": 0}

    def verify(public_key: bytes, signature: bytes, domain: str, chain_id: str, payload: bytes) -> bool:
        key = (bytes(public_key), bytes(signature), domain, chain_id, bytes(payload))
        ok = memo.get(key)
        if ok is None:
            if len(memo) >= max_entries:
                memo.clear()
            ok = memo[key] = real(public_key, signature, domain, chain_id, payload)
            stats["checked"] += 1
        else:
            stats["shared"] += 1
        return ok

    crypto.verify = verify
    try:
        yield stats
    finally:
        crypto.verify = real


def wall_ms() -> int:
    return time.time_ns() // 1_000_000
