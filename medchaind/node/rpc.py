"""The node's JSON-RPC methods (DESIGN.md §7): parameter parsing and handlers.

Every handler takes ``(params, conn)`` and returns a JSON-able result; bad params
raise :class:`InvalidParams` (JSON-RPC -32602) naming the parameter. Bytes travel as
``0x``-hex. Nothing here logs params: they may carry personal data.

Subscriptions (``subscribe`` / ``unsubscribe``), topics:

* ``newHeads``: every committed header.
* ``tx``: status changes of txs; ``{"topic": "tx", "hash": "0x…"}`` for one tx, or
  ``{"topic": "tx", "sender": "0x…"}`` for one sender's txs. A notification carries
  ``{"hash", "status": "pending" | "committed", "height"?, "receipt"?}``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .. import __version__
from ..errors import DecodeError, MedchainError, NotFound, TxRejected
from ..ipc import RPCError
from ..types import Block, Receipt, Tx, decode_tx, to_jsonable
from ..types.merkle import merkle_proof

if TYPE_CHECKING:
    from ..ipc.server import Connection
    from .node import Node

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
MAX_WAIT_MS = 600_000


class InvalidParams(RPCError):
    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, message)


# ------------------------------------------------------------------ param helpers


def _obj(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object with named fields")
    return params


def hex_bytes(params: dict[str, Any], name: str, size: int | None = None, *, max_size: int = 1 << 24) -> bytes:
    v = params.get(name)
    if not isinstance(v, str) or not v.startswith("0x"):
        raise InvalidParams(f"{name} must be a 0x-prefixed hex string")
    if len(v) > 2 + 2 * max_size:
        raise InvalidParams(f"{name} is longer than {max_size} bytes")
    try:
        b = bytes.fromhex(v[2:])
    except ValueError:
        raise InvalidParams(f"{name} is not valid hex") from None
    if size is not None and len(b) != size:
        raise InvalidParams(f"{name} must be {size} bytes")
    return b


def opt_int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = params.get(name, default)
    if type(v) is not int or not lo <= v <= hi:
        raise InvalidParams(f"{name} must be an integer in {lo}..{hi}")
    return v


#: methods that wait for the chain; they do not hold up the connection's next requests
LONG_POLL_METHODS = frozenset({"tx_wait", "chain_waitHeight", "admin_backup"})


def receipt_json(r: Receipt) -> dict[str, Any]:
    return {"code": r.code, "ok": r.ok, "reason": r.reason, "events": to_jsonable(list(r.events))}


def block_json(block: Block, *, full: bool) -> dict[str, Any]:
    return {
        "header": block.header.to_json(),
        "txs": [t.to_json() for t in block.txs] if full else ["0x" + t.hash.hex() for t in block.txs],
        "last_commit": None if block.last_commit is None else block.last_commit.to_json(),
    }


# ------------------------------------------------------------------ handlers


class RPC:
    """Handlers bound to a node; ``register`` adds them to a dispatcher."""

    _backup_running = False

    def __init__(self, node: Node) -> None:
        self.node = node

    def methods(self) -> dict[str, tuple[Any, bool]]:
        """name -> (handler, mutating)."""
        return {
            "node_info": (self.node_info, False),
            "node_health": (self.node_health, False),
            "node_peers": (self.node_peers, False),
            "node_syncing": (self.node_syncing, False),
            "consensus_status": (self.consensus_status, False),
            "node_network": (self.node_network, False),
            "admin_banPeer": (self.admin_ban_peer, True),
            "admin_unbanPeer": (self.admin_unban_peer, True),
            "admin_backup": (self.admin_backup, True),
            "chain_head": (self.chain_head, False),
            "chain_getBlock": (self.chain_get_block, False),
            "chain_getCommit": (self.chain_get_commit, False),
            "chain_getTx": (self.chain_get_tx, False),
            "chain_waitHeight": (self.chain_wait_height, False),
            "tx_submit": (self.tx_submit, True),
            "tx_wait": (self.tx_wait, False),
            "tx_nonce": (self.tx_nonce, False),
            "mempool_status": (self.mempool_status, False),
            "identity_get": (self.identity_get, False),
            "identity_list": (self.identity_list, False),
            "governance_authorities": (self.governance_authorities, False),
            "anchor_get": (self.anchor_get, False),
            "records_list": (self.records_list, False),
            "records_get": (self.records_get, False),
            "consent_list": (self.consent_list, False),
            "consent_check": (self.consent_check, False),
            "audit_log": (self.audit_log, False),
            "records_keyRequests": (self.records_key_requests, False),
            "governance_pending": (self.governance_pending, False),
            "governance_scheduled": (self.governance_scheduled, False),
            "governance_evidence": (self.governance_evidence, False),
        }

    # node_*

    async def node_info(self, params: Any, conn: Connection) -> Any:
        n = self.node
        tip = n.ledger.tip
        return {
            "version": __version__,
            "moniker": n.config.node.moniker,
            "chain_id": n.genesis.chain_id,
            "genesis_hash": "0x" + n.genesis.hash().hex(),
            "public_key": "0x" + n.keys.public_key.hex(),
            "is_authority": n.keys.public_key in tip.powers,
            "height": tip.height,
            "head_hash": "0x" + tip.block_hash.hex(),
            "syncing": n.sync.syncing,
            "mempool_size": len(n.mempool),
            "peer_id": str(n.net.peer_id),
            "peers": len(n.net.connected_peers()),
        }

    async def node_health(self, params: Any, conn: Connection) -> Any:
        return {"ok": True, "height": self.node.ledger.height}

    async def node_peers(self, params: Any, conn: Connection) -> Any:
        return [{"peer_id": str(p)} for p in self.node.net.connected_peers()]

    async def node_syncing(self, params: Any, conn: Connection) -> Any:
        return self.node.sync.status()

    async def node_network(self, params: Any, conn: Connection) -> Any:
        s = self.node.net.statistics()
        return {
            "peer_id": str(self.node.net.peer_id),
            "peers": [str(p) for p in self.node.net.connected_peers()],
            "banned": sorted(str(p) for p in self.node.banned),
            "published": s.published, "received": s.received,
            "rejected_by_validator": s.rejected_by_validator, "dropped_full_buffer": s.dropped_full_buffer,
            "dropped_outbound": s.dropped_outbound, "requests_sent": s.requests_sent,
            "requests_failed": s.requests_failed, "requests_served": s.requests_served,
            "connections_refused": s.connections_refused,
        }

    def _peer_param(self, params: Any) -> str:
        p = _obj(params)
        peer = p.get("peer_id")
        if not isinstance(peer, str) or not 1 <= len(peer) <= 128 or not peer.isalnum():
            raise InvalidParams("peer_id must be a base58 libp2p peer id")
        return peer

    async def admin_ban_peer(self, params: Any, conn: Connection) -> Any:
        """Refuse and drop a peer until unbanned (operators; also how tests partition)."""
        self.node.banned.add(self._peer_param(params))
        self.node.refresh_allowlist()
        return True

    async def admin_unban_peer(self, params: Any, conn: Connection) -> Any:
        self.node.banned.discard(self._peer_param(params))
        self.node.refresh_allowlist()
        return True

    async def admin_backup(self, params: Any, conn: Connection) -> Any:
        """Write a consistent backup of this node to ``path`` (node/backup.py); the manifest."""
        from .backup import BackupError, check_destination, write_backup

        p = _obj(params)
        path = p.get("path")
        if not isinstance(path, str) or not 1 <= len(path) <= 4096:
            raise InvalidParams("path must be an absolute directory path")
        dest = Path(path)
        check_destination(dest)
        if self._backup_running:
            raise BackupError("a backup is already running")
        self._backup_running = True
        try:
            kv = self.node.kv
            return await trio.to_thread.run_sync(write_backup, kv, self.node.config, dest)
        finally:
            self._backup_running = False

    async def consensus_status(self, params: Any, conn: Connection) -> Any:
        return self.node.engine.status()

    # chain_*

    async def chain_head(self, params: Any, conn: Connection) -> Any:
        head = self.node.ledger.store.head()
        return None if head is None else head.to_json()

    def _block_from(self, p: dict[str, Any]) -> Block:
        store = self.node.ledger.store
        if "height" in p:
            h = opt_int(p, "height", 0, 1, 2**62)
            block = store.get_block(h)
        elif "hash" in p:
            block = store.get_block_by_hash(hex_bytes(p, "hash", 32))
        else:
            raise InvalidParams("give height or hash")
        if block is None:
            raise NotFound("no such block")
        return block

    async def chain_get_block(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        full = p.get("full", False)
        if not isinstance(full, bool):
            raise InvalidParams("full must be a boolean")
        block = self._block_from(p)
        out = block_json(block, full=full)
        commit = self.node.ledger.store.get_commit(block.height)
        out["commit"] = None if commit is None else commit.to_json()
        return out

    async def chain_get_commit(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        h = opt_int(p, "height", 0, 1, 2**62)
        commit = self.node.ledger.store.get_commit(h)
        if commit is None:
            raise NotFound("no commit at that height")
        return commit.to_json()

    def tx_status(self, tx_hash: bytes) -> dict[str, Any]:
        store = self.node.ledger.store
        loc = store.get_tx_location(tx_hash)
        if loc is None:
            if tx_hash in self.node.mempool:
                return {"hash": "0x" + tx_hash.hex(), "status": "pending"}
            return {"hash": "0x" + tx_hash.hex(), "status": "unknown"}
        height, index = loc
        receipt = store.get_receipt(tx_hash)
        assert receipt is not None
        return {
            "hash": "0x" + tx_hash.hex(), "status": "committed", "height": height, "index": index,
            "receipt": receipt_json(receipt),
        }

    async def chain_get_tx(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        h = hex_bytes(p, "hash", 32)
        status = self.tx_status(h)
        if status["status"] == "unknown":
            raise NotFound("unknown tx")
        if status["status"] == "pending":
            tx = self.node.mempool.get(h)
            assert tx is not None
            status["tx"] = tx.to_json()
            return status
        block = self.node.ledger.store.get_block(status["height"])
        assert block is not None
        idx = status["index"]
        tx = block.txs[idx]
        status["tx"] = tx.to_json()
        status["block_hash"] = "0x" + block.hash().hex()
        status["proof"] = {
            "tx_root": "0x" + block.header.tx_root.hex(),
            "index": idx,
            "size": len(block.txs),
            "path": ["0x" + x.hex() for x in merkle_proof([t.hash for t in block.txs], idx)],
        }
        return status

    async def chain_wait_height(self, params: Any, conn: Connection) -> Any:
        """Long poll: return the head once it reaches ``height`` (or at ``timeout_ms``)."""
        p = _obj(params)
        height = opt_int(p, "height", 0, 0, 2**63 - 1)
        timeout_ms = opt_int(p, "timeout_ms", 30_000, 0, MAX_WAIT_MS)
        with trio.move_on_after(timeout_ms / 1000):
            await self.node.wait_height(height)
        return await self.chain_head(None, conn)

    # tx_*

    async def tx_submit(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        raw = hex_bytes(p, "tx", max_size=128 * 1024)
        blob = hex_bytes(p, "blob", max_size=4 * 1024 * 1024) if p.get("blob") is not None else None
        try:
            tx = decode_tx(raw)
        except DecodeError as exc:
            raise RPCError(exc.rpc_code, f"malformed tx: {exc}", {"code": "malformed", "reason": str(exc)}) from None
        try:
            self.node.submit(tx, blob)
        except TxRejected as exc:
            raise RPCError(exc.rpc_code, str(exc), {"code": exc.code, "reason": exc.reason}) from None
        return "0x" + tx.hash.hex()

    async def tx_wait(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        h = hex_bytes(p, "hash", 32)
        timeout_ms = opt_int(p, "timeout_ms", 30_000, 0, MAX_WAIT_MS)
        with trio.move_on_after(timeout_ms / 1000):
            await self.node.wait_tx(h)
        return self.tx_status(h)

    async def tx_nonce(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        sender = hex_bytes(p, "sender", 32)
        committed, pending_next = self.node.next_nonce(sender)
        return {"committed": committed, "next": pending_next}

    async def mempool_status(self, params: Any, conn: Connection) -> Any:
        s = self.node.mempool.statistics()
        return {"size": s.size, "bytes": s.bytes, "admitted": s.admitted, "rejected": s.rejected,
                "evicted": s.evicted, "dropped": s.dropped}

    # module queries

    def _query(self, path: str, params: dict[str, Any]) -> Any:
        try:
            return self.node.app.query(self.node.ledger.state, path, params)
        except MedchainError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParams(f"bad query params: {exc}") from None

    async def identity_get(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        ident = self._query("identity.get", {"public_key": hex_bytes(p, "public_key", 32)})
        if ident is None:
            raise NotFound("no identity registered for that key")
        return ident

    async def identity_list(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        q: dict[str, Any] = {"limit": opt_int(p, "limit", 100, 1, 1000)}
        if "role" in p:
            if not isinstance(p["role"], str):
                raise InvalidParams("role must be a string")
            q["role"] = p["role"]
        return self._query("identity.list", q)

    # records / consent / audit: keys as 0x-hex; time defaults to the last block's time

    def _module_params(self, params: Any, keys: tuple[str, ...], optional_keys: tuple[str, ...] = ()) -> dict[str, Any]:
        p = dict(_obj(params))
        for k in keys:
            p[k] = hex_bytes(p, k, 32)
        for k in optional_keys:
            if p.get(k) is not None:
                p[k] = hex_bytes(p, k, 32)
        if "time_ms" not in p:
            p["time_ms"] = self.node.ledger.tip.time_ms
        return p

    async def records_list(self, params: Any, conn: Connection) -> Any:
        p = self._module_params(params, ("patient",))
        p.pop("time_ms")
        return self._query("records.list", p)

    async def records_get(self, params: Any, conn: Connection) -> Any:
        """Metadata, the reader's sealed data key and the ciphertext, where consent allows.

        Returns the ciphertext only to a reader the chain's consent state permits; the
        data key inside ``envelope`` is sealed to ``reader``, so neither is of use to
        anyone else. Reading is audited by the client's ``records.access`` tx.
        """
        p = self._module_params(params, ("record_id", "reader"))
        rec = self._query("records.get", p)
        if rec is None:
            raise NotFound("no such record")
        if rec.get("envelope") is not None:
            blob = self.node.blob_store.get_blob(bytes.fromhex(rec["content_hash"][2:]))
            rec["ciphertext"] = None if blob is None else "0x" + blob.hex()
        return rec

    async def records_key_requests(self, params: Any, conn: Connection) -> Any:
        """Open key requests on records ``author`` wrote, or of ``patient`` (what a custodian answers)."""
        p = _obj(params)
        if ("author" in p) == ("patient" in p):
            raise InvalidParams("give exactly one of author or patient")
        return self._query("records.key_requests", self._module_params(params, (), ("author", "patient")))

    async def consent_list(self, params: Any, conn: Connection) -> Any:
        p = self._module_params(params, ("patient",))
        p.pop("time_ms")
        return self._query("consent.list", p)

    async def consent_check(self, params: Any, conn: Connection) -> Any:
        p = self._module_params(params, ("patient", "actor"), ("record_id",))
        return self._query("consent.check", p)

    async def audit_log(self, params: Any, conn: Connection) -> Any:
        p = self._module_params(params, ("patient",))
        p.pop("time_ms")
        return self._query("records.audit", p)

    async def anchor_get(self, params: Any, conn: Connection) -> Any:
        p = _obj(params)
        a = self._query("anchor.get", {"digest": hex_bytes(p, "digest", 32)})
        if a is None:
            raise NotFound("that digest is not anchored")
        return a

    async def governance_authorities(self, params: Any, conn: Connection) -> Any:
        return self._query("governance.authorities", {})

    async def governance_pending(self, params: Any, conn: Connection) -> Any:
        return self._query("governance.pending", {})

    async def governance_scheduled(self, params: Any, conn: Connection) -> Any:
        return self._query("governance.scheduled", {})

    async def governance_evidence(self, params: Any, conn: Connection) -> Any:
        return self._query("governance.evidence", {})


def tx_event(tx: Tx, status: str, **extra: Any) -> dict[str, Any]:
    return {"hash": "0x" + tx.hash.hex(), "sender": "0x" + tx.sender.hex(), "status": status, **extra}
