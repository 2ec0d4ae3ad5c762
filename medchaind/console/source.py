"""What the console reads from the node it runs in, and nothing else.

:class:`NodeSource` gives the console the node's own read-only JSON-RPC methods, built
from the same classes the IPC server serves (``NodeAPI``, ``ChainAPI`` and
:class:`~medchaind.node.queries.ModuleQueries`: the query layer of every module), so a
page shows exactly what ``medchain rpc <method>`` would, with the same validation and
the same errors. It never opens the store or LevelDB itself, never serves a blob
(ciphertext stays on the blob protocol) and has no method that writes. Live updates come
from the ledger's commit listeners, the same hook that feeds the node's ``newHeads``
subscription.

The mempool's lanes and the peers' allowlist have no IPC method yet; :meth:`mempool` and
:meth:`peers` read them from the node's components (counts and ids only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MedchainError
from ..ipc import RPCError
from ..node.queries import ModuleQueries
from ..node.rpc import ChainAPI, NodeAPI
from .kit import QueryFailed

if TYPE_CHECKING:
    from ..ledger import Committed
    from ..node.node import Node

log = logging.getLogger(__name__)

#: methods of the node's own namespaces the console may call (all read-only, none waits)
NODE_METHODS = frozenset({
    "node_info", "node_peers", "node_syncing", "node_network", "consensus_status",
    "chain_head", "chain_getBlock", "chain_getCommit", "chain_getTx", "mempool_status",
})


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """What the live parts and the charts keep of each committed block."""

    height: int
    hash: str
    time_ms: int
    round: int
    proposer: str
    txs: int
    failed: int
    types: Mapping[str, int]
    signers: int
    #: wall-clock seconds when this node committed it (for "new" markers only)
    seen: float

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "hash": self.hash, "time_ms": self.time_ms, "round": self.round,
                "proposer": self.proposer, "txs": self.txs, "failed": self.failed, "types": dict(self.types),
                "signers": self.signers}


def summarize(c: Committed) -> BlockSummary:
    types: dict[str, int] = {}
    for tx in c.block.txs:
        types[tx.type] = types.get(tx.type, 0) + 1
    h = c.block.header
    return BlockSummary(
        height=h.height, hash="0x" + c.block.hash().hex(), time_ms=h.time_ms, round=h.round,
        proposer="0x" + h.proposer.hex(), txs=len(c.block.txs), failed=sum(1 for r in c.receipts if not r.ok),
        types=types, signers=len(c.commit.signatures), seen=time.time(),
    )


class NodeSource:
    """The console's narrow view of a running :class:`~medchaind.node.node.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        chain = ChainAPI(node.ledger, node.mempool, node, node)
        api = NodeAPI(
            info=node.info, network=node.network_status,
            peers=lambda: [str(p) for p in node.net.connected_peers()],
            syncing=node.sync.status, consensus=node.engine.status, height=lambda: node.ledger.height,
        )
        # no blob getter: a console page never carries a ciphertext
        queries = ModuleQueries(node.app, node.ledger.state, lambda: node.ledger.tip, lambda _h: None)
        self._methods: dict[str, Any] = {}
        for table in (api.methods(), chain.methods()):
            for name, (handler, _mutating) in table.items():
                if name in NODE_METHODS:
                    self._methods[name] = handler
        self._methods.update(queries.methods())
        self.chain_id = node.genesis.chain_id
        self.modules = list(node.app.modules)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise QueryFailed(-32601, f"the console does not call {method}")
        try:
            return await handler(dict(params or {}), None)
        except RPCError as exc:
            raise QueryFailed(exc.code, exc.message) from None
        except MedchainError as exc:
            raise QueryFailed(getattr(exc, "rpc_code", -32000), str(exc)) from None

    def on_commit(self, listener: Callable[[BlockSummary], None]) -> None:
        def relay(c: Committed) -> None:
            try:
                listener(summarize(c))
            except Exception:  # the console must never break a commit
                log.exception("console commit listener failed")

        self.node.ledger.add_listener(relay)

    def block_summary(self, height: int, *, receipts: bool = True) -> BlockSummary | None:
        """A committed block's summary; without ``receipts`` (the charts' back-fill, which
        reads up to an hour of blocks) its failed-tx count is 0 rather than read."""
        from ..ledger import Committed

        store = self.node.ledger.store
        block = store.get_block(height)
        commit = store.get_commit(height)
        if block is None or commit is None:
            return None
        got = [store.get_receipt(t.hash) for t in block.txs] if receipts else []
        return summarize(Committed(block, commit, [r for r in got if r is not None]))

    def mempool(self) -> dict[str, Any]:
        """Pending txs per lane and by type, and the oldest (hash, type, age)."""
        mp = self.node.mempool
        from ..app.module import LANES

        lanes: dict[str, int] = dict.fromkeys(LANES, 0)
        types: dict[str, int] = {}
        txs = mp.txs()
        for tx in txs:
            lane = self.node.app.lane(tx)
            lanes[lane] = lanes.get(lane, 0) + 1
            types[tx.type] = types.get(tx.type, 0) + 1
        oldest = None
        if txs:
            tx = txs[0]
            oldest = {"hash": "0x" + tx.hash.hex(), "type": tx.type, "sender": "0x" + tx.sender.hex(),
                      "age_s": mp.age_s(tx.hash)}
        return {"lanes": lanes, "types": types, "oldest": oldest}

    def peers(self) -> dict[str, Any]:
        """Allowed peers (authorities, observers, minus bans), connected ones and bans."""
        node = self.node
        connected = {str(p) for p in node.net.connected_peers()}
        try:
            allowed = {str(p) for p in node.allowlist()}
        except (ImportError, MedchainError):
            allowed = set()
        observers = {x.strip() for x in node.config.p2p.observers.split(",") if x.strip()}
        authorities: dict[str, str] = {}
        if getattr(node.net, "listen_addrs", None) is not None:
            from ..net.libp2p_net import peer_id_from_public_key

            authorities = {str(peer_id_from_public_key(pk)): "0x" + pk.hex() for pk in node.ledger.tip.powers}
        rows = []
        for peer in sorted(allowed | connected | {str(b) for b in node.banned}):
            rows.append({
                "peer_id": peer, "connected": peer in connected, "banned": peer in {str(b) for b in node.banned},
                "allowed": peer in allowed, "authority": authorities.get(peer),
                "observer": peer in observers, "self": peer == str(node.net.peer_id),
            })
        return {"peer_id": str(node.net.peer_id), "networked": bool(authorities) or bool(node.config.p2p.listen),
                "peers": rows}
