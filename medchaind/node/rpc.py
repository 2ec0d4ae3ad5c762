"""The node's own JSON-RPC methods (DESIGN.md §7): node, chain, tx, mempool, admin.

Module queries are not here: every module declares its own and
:mod:`medchaind.node.queries` serves them; this file names no application module.
Each namespace is a small class that gets only the collaborators it uses, so none of
them reaches through the whole node.

Every handler takes ``(params, conn)`` and returns a JSON-able result; bad params raise
:class:`InvalidParams` (JSON-RPC -32602) naming the parameter. Bytes travel as
``0x``-hex. Nothing here logs params: they may carry personal data.

Subscriptions (``subscribe`` / ``unsubscribe``), topics:

* ``newHeads``: every committed header.
* ``tx``: status changes of txs; ``{"topic": "tx", "hash": "0x…"}`` for one tx, or
  ``{"topic": "tx", "sender": "0x…"}`` for one sender's txs. A notification carries
  ``{"hash", "status": "pending" | "committed" | "dropped", "height"?, "receipt"?,
  "reason"?}`` (``dropped``: the mempool let the tx go uncommitted; ``reason`` is the code).
* the topics modules declare (e.g. ``patient``), fed by committed events.
"""

from __future__ import annotations

import binascii
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from .. import codec
from ..errors import DecodeError, NotFound, TxRejected
from ..ipc import RPCError
from ..types import Block, Receipt, Tx, decode_tx, to_jsonable
from ..types.merkle import merkle_proof

if TYPE_CHECKING:
    from ..app import App
    from ..ipc.server import Connection
    from ..ledger import Ledger
    from ..mempool import Mempool

log = logging.getLogger(__name__)

INVALID_PARAMS = -32602
MAX_WAIT_MS = 600_000
#: one IPC batch's calls at most (Dispatcher max_batch): what prepare_submits may hold
MAX_PREDECODED = 1000
#: ``tx_submitBatch``: txs in one call, and the decoded size of its ``txs`` and ``blobs``
MAX_BATCH_TXS = 1000
MAX_BATCH_TX_BYTES = 8 * 1024 * 1024
MAX_BATCH_BLOB_BYTES = 12 * 1024 * 1024
#: one sidecar at most (as ``tx_submit``'s ``blob``)
MAX_BLOB_BYTES = 4 * 1024 * 1024
#: txs a batch admits between two checkpoints (consensus and other clients run between)
ADMIT_SLICE = 32
#: the newest committed blocks ``chain_getBlock`` serves from memory: a client following
#: the chain asks for each new block once, and decoding it back from the store cost ~15 us
#: per tx on the node's event loop; two bound the memory held (a full block is a few MiB)
RECENT_BLOCKS = 2

Handler = Callable[[Any, "Connection"], Awaitable[Any]]


class InvalidParams(RPCError):
    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, message)


# ------------------------------------------------------------------ param helpers


def _shown(names: list[str]) -> str:
    """Client-chosen names for an error message: a few, each cut short."""
    out = [n if len(n) <= 40 else n[:40] + "…" for n in names[:5]]
    return repr(out)[:-1] + (", …]" if len(names) > 5 else "]")


def _obj(params: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The params object of a method that takes ``names`` (each optional here; the
    handler says which it needs). Positional params and unknown names are -32602."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams("params must be an object with named fields")
    unknown = sorted(k for k in params if k not in names)
    if unknown:
        expected = f"expected {list(names)}" if names else "this method takes no params"
        raise InvalidParams(f"unknown param(s) {_shown(unknown)}; {expected}")
    return params


ParamsHandler = Callable[[Any, dict[str, Any], "Connection"], Awaitable[Any]]
MethodHandler = Callable[[Any, Any, "Connection"], Awaitable[Any]]


def takes(*names: str) -> Callable[[ParamsHandler], MethodHandler]:
    """Declare a handler's param names: the handler gets a checked params object, and
    the names are on the handler as ``rpc_params`` (docs, fuzzers)."""

    def decorate(fn: ParamsHandler) -> MethodHandler:
        @functools.wraps(fn)
        async def handler(self: Any, params: Any, conn: Connection) -> Any:
            return await fn(self, _obj(params, names), conn)

        handler.rpc_params = names  # type: ignore[attr-defined]
        return handler

    return decorate


def hex_bytes(params: dict[str, Any], name: str, size: int | None = None, *, max_size: int = 1 << 24) -> bytes:
    v = params.get(name)
    if not isinstance(v, str) or not v.startswith("0x"):
        raise InvalidParams(f"{name} must be a 0x-prefixed hex string")
    if len(v) > 2 + 2 * max_size:
        raise InvalidParams(f"{name} is longer than {max_size} bytes")
    try:  # strict (unlike bytes.fromhex, no whitespace), ~10x cheaper than a regex check first
        b = binascii.a2b_hex(v[2:])
    except (binascii.Error, ValueError):
        raise InvalidParams(f"{name} is not valid hex (an even number of 0-9a-f digits after 0x)") from None
    if size is not None and len(b) != size:
        raise InvalidParams(f"{name} must be {size} bytes")
    return b


def b64_bytes(params: dict[str, Any], name: str, max_size: int) -> bytes:
    """A base64 param (RFC 4648 §4 alphabet, ``=`` padding, no whitespace), at most
    ``max_size`` bytes decoded. Used where bulk bytes cross IPC (``tx_submitBatch``):
    a third larger than the bytes, where ``0x``-hex is twice as large, and the framing,
    JSON and decoding cost of a request grows with its length (client guide, ``tx_submitBatch``)."""
    v = params.get(name)
    if not isinstance(v, str):
        raise InvalidParams(f"{name} must be a base64 string (RFC 4648 §4, with '=' padding)")
    if len(v) > 4 * ((max_size + 2) // 3):
        raise InvalidParams(f"{name} is longer than {max_size} bytes decoded")
    try:
        return binascii.a2b_base64(v, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: a non-ASCII character
        raise InvalidParams(
            f"{name} is not valid base64 (RFC 4648 §4 alphabet, '=' padding, no whitespace or line breaks)"
        ) from None


def decode_submit_batch(txs_raw: bytes, blobs_raw: bytes | None) -> list[tuple[Tx, bytes | None]]:
    """The one decoder of ``tx_submitBatch``'s payload: ``txs`` is the canonical CBOR
    array (1..MAX_BATCH_TXS items) of the txs' canonical encodings, each a byte string;
    ``blobs``, if given, an array of the same length of a sidecar (byte string) or null
    per tx. Returns (tx, sidecar) pairs in order, or raises for the whole batch: -32602
    naming what is wrong, or -32001 for an item that is not a well-formed tx (``data``
    has its ``index``), so a malformed batch admits nothing."""
    items = _cbor_array(txs_raw, "txs", MAX_BATCH_TX_BYTES, nulls=False)
    if len(items) > MAX_BATCH_TXS:
        raise InvalidParams(f"txs holds {len(items)} txs; at most {MAX_BATCH_TXS} per call")
    txs: list[Tx] = []
    for i, item in enumerate(items):
        if not isinstance(item, bytes):
            raise InvalidParams(f"txs[{i}] must be a byte string (one tx's canonical encoding)")
        try:
            txs.append(decode_tx(item))
        except DecodeError as exc:
            raise RPCError(exc.rpc_code, f"malformed tx at txs[{i}]: {exc}",
                           {"code": "malformed", "reason": str(exc), "index": i}) from None
    if blobs_raw is None:
        return [(tx, None) for tx in txs]
    blobs = _cbor_array(blobs_raw, "blobs", MAX_BATCH_BLOB_BYTES)
    if len(blobs) != len(txs):
        raise InvalidParams(f"blobs holds {len(blobs)} entries for {len(txs)} txs; give one per tx (null for none)")
    for i, b in enumerate(blobs):
        if b is not None and (not isinstance(b, bytes) or len(b) > MAX_BLOB_BYTES):
            raise InvalidParams(f"blobs[{i}] must be null or a byte string of at most {MAX_BLOB_BYTES} bytes")
    return list(zip(txs, blobs, strict=True))


def _cbor_array(raw: bytes, name: str, max_size: int, *, nulls: bool = True) -> list[Any]:
    # the usual shape (byte strings, or nulls where allowed) is read from its heads alone;
    # anything else is decoded in full, for its items or for the error
    items = codec.split_bytes_array(raw, nulls=nulls) if len(raw) <= max_size else None
    if items is None:
        try:
            items = codec.decode(raw, max_size=max_size, max_depth=2)
        except DecodeError as exc:
            raise InvalidParams(f"{name} is not one canonical CBOR array: {exc}") from None
    if not isinstance(items, list) or not items:
        raise InvalidParams(f"{name} must be a non-empty CBOR array")
    return items


def refusal_data(exc: TxRejected) -> dict[str, Any]:
    """The JSON form of a refusal: ``{code, reason, retry_after_ms?}``."""
    data: dict[str, Any] = {"code": exc.code, "reason": exc.reason}
    if exc.retry_after_ms is not None:
        data["retry_after_ms"] = exc.retry_after_ms
    return data


def opt_int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = params.get(name, default)
    if type(v) is not int or not lo <= v <= hi:
        raise InvalidParams(f"{name} must be an integer in {lo}..{hi}")
    return v


#: methods that wait for the chain; they do not hold up the connection's next requests
LONG_POLL_METHODS = frozenset({"tx_wait", "chain_waitHeight", "admin_backup"})


def receipt_json(r: Receipt) -> dict[str, Any]:
    """The IPC form of a receipt. ``ok`` and the hex of ``events`` are conveniences;
    ``encoded`` is the receipt's canonical CBOR (docs/protocol.md §7), from which a client
    computes the tx's result for ``results_hash`` without guessing types."""
    return {"code": r.code, "ok": r.ok, "reason": r.reason, "events": to_jsonable(list(r.events)),
            "encoded": "0x" + r.encode().hex()}


def block_json(block: Block, *, full: bool) -> dict[str, Any]:
    return {
        "header": block.header.to_json(),
        "txs": [t.to_json() for t in block.txs] if full else ["0x" + t.hash.hex() for t in block.txs],
        "last_commit": None if block.last_commit is None else block.last_commit.to_json(),
    }


def tx_event(tx: Tx, status: str, **extra: Any) -> dict[str, Any]:
    return {"hash": "0x" + tx.hash.hex(), "sender": "0x" + tx.sender.hex(), "status": status, **extra}


# ------------------------------------------------------------------ collaborators


class Waits(Protocol):
    async def wait_height(self, height: int) -> None: ...

    async def wait_tx(self, tx_hash: bytes) -> None: ...


class Submitter(Protocol):
    async def submit_async(self, tx: Tx, blob: bytes | None = None) -> bool: ...

    async def submit_many(self, pairs: list[tuple[Tx, bytes | None]]) -> list[bool | TxRejected]: ...

    def next_nonce(self, sender: bytes) -> tuple[int, int]: ...


class PeerControl(Protocol):
    def ban(self, peer: str) -> None: ...

    def unban(self, peer: str) -> None: ...


# ------------------------------------------------------------------ chain_* and tx_*


class ChainAPI:
    """``chain_*``, ``tx_*`` and ``mempool_*``: the committed chain, pending txs, submission."""

    def __init__(self, ledger: Ledger, mempool: Mempool, waits: Waits, submitter: Submitter,
                 prove_key: Callable[..., tuple[bytes | None, dict[str, Any]]] | None = None,
                 verifier: Any = None) -> None:
        self.ledger = ledger
        #: :class:`~medchaind.consensus.verify.Verifier`: tx_submitBatch pre-verifies with it
        self.verifier = verifier
        self.mempool = mempool
        self.waits = waits
        self.submitter = submitter
        #: ``(module, key, height) -> (value, proof)`` (ModuleQueries.prove_key): nonce proofs
        self.prove_key = prove_key
        #: txs a batch hook decoded and pre-verified (prepare_submits), by their hex param
        self._decoded: dict[str, Tx] = {}
        #: the last RECENT_BLOCKS committed blocks by height (:meth:`remember_block`)
        self._recent: dict[int, Block] = {}

    def remember_block(self, block: Block) -> None:
        """Keep a block just committed, so ``chain_getBlock`` of a new height does not
        read and decode it back from the store. A committed block never changes (BFT
        finality), so the copy in memory is the one the store holds; only the newest
        RECENT_BLOCKS are kept, far above any pruning horizon."""
        recent = self._recent
        recent[block.height] = block
        while len(recent) > RECENT_BLOCKS:
            del recent[min(recent)]

    async def prepare_submits(self, verifier: Any, params: list[Any]) -> None:
        """Batch hook of ``tx_submit``: decode the batch's txs once and verify their
        signatures in worker threads (:class:`~medchaind.consensus.verify.Verifier`), so
        each call finds its tx decoded and its signature in the cache. A param that does
        not decode is left for its call to refuse as usual. While the mempool refuses
        client txs as ``busy`` nothing is prepared (a refusal must stay cheap)."""
        if self.mempool.busy():
            return
        txs = []
        for p in params:
            if not isinstance(p, dict) or not isinstance(p.get("tx"), str):
                continue
            try:
                tx = decode_tx(hex_bytes(p, "tx", max_size=128 * 1024))
            except (DecodeError, InvalidParams):
                continue
            txs.append(tx)
            self._decoded[p["tx"]] = tx
        if len(self._decoded) > 4 * MAX_PREDECODED:  # calls that never ran (a reply limit)
            self._decoded.clear()
        await verifier.preverify(txs)

    def methods(self) -> dict[str, tuple[Handler, bool]]:
        """name -> (handler, mutating)."""
        return {
            "chain_head": (self.chain_head, False),
            "chain_getBlock": (self.chain_get_block, False),
            "chain_getCommit": (self.chain_get_commit, False),
            "chain_getTx": (self.chain_get_tx, False),
            "chain_waitHeight": (self.chain_wait_height, False),
            "tx_submit": (self.tx_submit, True),
            "tx_submitBatch": (self.tx_submit_batch, True),
            "tx_wait": (self.tx_wait, False),
            "tx_nonce": (self.tx_nonce, False),
            "mempool_status": (self.mempool_status, False),
        }

    @takes()
    async def chain_head(self, p: dict[str, Any], conn: Connection) -> Any:
        head = self.ledger.store.head()
        tip = self.ledger.height
        if head is not None and head.height > tip:  # the next block's write is in flight
            block = self._recent.get(tip) or self.ledger.store.get_block(tip)
            head = None if block is None else block.header
        return None if head is None else head.to_json()

    def _block_from(self, p: dict[str, Any]) -> Block:
        store = self.ledger.store
        if "height" in p:
            h = opt_int(p, "height", 0, 1, 2**62)
            block = None if h > self.ledger.height else self._recent.get(h) or store.get_block(h)
        elif "hash" in p:
            block = store.get_block_by_hash(hex_bytes(p, "hash", 32))
        else:
            raise InvalidParams("give height or hash")
        if block is None or block.height > self.ledger.height:  # above the tip: its write is in flight
            raise NotFound("no such block")
        return block

    @takes("height", "hash", "full")
    async def chain_get_block(self, p: dict[str, Any], conn: Connection) -> Any:
        full = p.get("full", False)
        if not isinstance(full, bool):
            raise InvalidParams("full must be a boolean")
        block = self._block_from(p)
        out = block_json(block, full=full)
        commit = self.ledger.store.get_commit(block.height)
        out["commit"] = None if commit is None else commit.to_json()
        return out

    @takes("height")
    async def chain_get_commit(self, p: dict[str, Any], conn: Connection) -> Any:
        h = opt_int(p, "height", 0, 1, 2**62)
        commit = self.ledger.store.get_commit(h) if h <= self.ledger.height else None
        if commit is None:
            raise NotFound("no commit at that height")
        return commit.to_json()

    def tx_status(self, tx_hash: bytes) -> dict[str, Any]:
        store = self.ledger.store
        loc = self.ledger.tx_location(tx_hash)  # as of the tip, like every other answer
        if loc is None:
            if tx_hash in self.mempool:
                return {"hash": "0x" + tx_hash.hex(), "status": "pending"}
            reason = self.mempool.dropped_reason(tx_hash)
            if reason is not None:
                return {"hash": "0x" + tx_hash.hex(), "status": "dropped", "reason": reason}
            return {"hash": "0x" + tx_hash.hex(), "status": "unknown"}
        height, index = loc
        receipt = store.get_receipt(tx_hash)
        assert receipt is not None
        return {
            "hash": "0x" + tx_hash.hex(), "status": "committed", "height": height, "index": index,
            "receipt": receipt_json(receipt),
        }

    @takes("hash")
    async def chain_get_tx(self, p: dict[str, Any], conn: Connection) -> Any:
        h = hex_bytes(p, "hash", 32)
        status = self.tx_status(h)
        if status["status"] == "unknown":
            raise NotFound("unknown tx")
        if status["status"] == "dropped":
            return status  # the pool let it go: its bytes are not kept
        if status["status"] == "pending":
            tx = self.mempool.get(h)
            assert tx is not None
            status["tx"] = tx.to_json()
            return status
        block = self.ledger.store.get_block(status["height"])
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

    @takes("height", "timeout_ms")
    async def chain_wait_height(self, p: dict[str, Any], conn: Connection) -> Any:
        """Long poll: return the head once it reaches ``height`` (or at ``timeout_ms``)."""
        height = opt_int(p, "height", 0, 0, 2**63 - 1)
        timeout_ms = opt_int(p, "timeout_ms", 30_000, 0, MAX_WAIT_MS)
        with trio.move_on_after(timeout_ms / 1000):
            await self.waits.wait_height(height)
        return await self.chain_head(None, conn)

    @takes("tx", "blob")
    async def tx_submit(self, p: dict[str, Any], conn: Connection) -> Any:
        tx = self._decoded.pop(p["tx"], None) if isinstance(p.get("tx"), str) else None
        if tx is None:
            raw = hex_bytes(p, "tx", max_size=128 * 1024)
        blob = hex_bytes(p, "blob", max_size=4 * 1024 * 1024) if p.get("blob") is not None else None
        try:
            if tx is None:
                tx = decode_tx(raw)
        except DecodeError as exc:
            raise RPCError(exc.rpc_code, f"malformed tx: {exc}", {"code": "malformed", "reason": str(exc)}) from None
        try:
            await self.submitter.submit_async(tx, blob)
        except TxRejected as exc:
            raise RPCError(exc.rpc_code, str(exc), refusal_data(exc)) from None
        return "0x" + tx.hash.hex()

    @takes("txs", "blobs")
    async def tx_submit_batch(self, p: dict[str, Any], conn: Connection) -> Any:
        """Bulk submission: one call, one base64 param holding a canonical CBOR array of
        encoded txs (:func:`decode_submit_batch`), decoded in one pass; signatures are
        verified in worker threads (unless the pool refuses client txs as ``busy``
        anyway), then each tx goes through the same admission as ``tx_submit``
        (backpressure included), in order, yielding every few dozen txs, and the
        admitted txs' sidecars are written as one group (``Node.submit_many``). The
        result lists, per tx in order, ``{hash, ok: true}`` or ``{hash, ok: false,
        code, reason, retry_after_ms?}``."""
        blobs = b64_bytes(p, "blobs", MAX_BATCH_BLOB_BYTES) if p.get("blobs") is not None else None
        pairs = decode_submit_batch(b64_bytes(p, "txs", MAX_BATCH_TX_BYTES), blobs)
        if not self.mempool.busy() and self.verifier is not None:  # while busy, refusals stay cheap
            await self.verifier.preverify([tx for tx, _ in pairs])
        out: list[dict[str, Any]] = []
        for (tx, _), result in zip(pairs, await self.submitter.submit_many(pairs), strict=True):
            item: dict[str, Any] = {"hash": "0x" + tx.hash.hex(), "ok": True}
            if isinstance(result, TxRejected):
                item["ok"] = False
                item.update(refusal_data(result))
            out.append(item)
        return out

    @takes("hash", "timeout_ms")
    async def tx_wait(self, p: dict[str, Any], conn: Connection) -> Any:
        h = hex_bytes(p, "hash", 32)
        timeout_ms = opt_int(p, "timeout_ms", 30_000, 0, MAX_WAIT_MS)
        with trio.move_on_after(timeout_ms / 1000):
            await self.waits.wait_tx(h)
        return self.tx_status(h)

    @takes("sender", "prove", "height")
    async def tx_nonce(self, p: dict[str, Any], conn: Connection) -> Any:
        """The sender's committed nonce and next free one (pending txs counted). With
        ``"prove": true`` (and optionally ``"height"``, a kept older height) ``committed``
        is read from the state trie and comes with the proof of ``auth/n/<sender>``
        (membership, or absence for a sender with no tx: nonce 0; docs/protocol.md §23.4)."""
        sender = hex_bytes(p, "sender", 32)
        prove = p.get("prove", False)
        if not isinstance(prove, bool):
            raise InvalidParams("prove must be a boolean")
        if not prove and p.get("height") is None:
            committed, pending_next = self.submitter.next_nonce(sender)
            return {"committed": committed, "next": pending_next}
        if self.prove_key is None:
            raise InvalidParams("this node does not answer nonces with proofs")
        from ..app.app import NONCE_NS, nonce_key

        raw, proof = self.prove_key(NONCE_NS, nonce_key(sender), p.get("height"))
        committed = 0 if raw is None else int.from_bytes(raw, "big")
        pending_next = max(committed, self.submitter.next_nonce(sender)[1]) if proof["height"] == self.ledger.height \
            else committed
        out: dict[str, Any] = {"committed": committed, "next": pending_next}
        if prove:
            out["proof"] = proof
        return out

    @takes()
    async def mempool_status(self, p: dict[str, Any], conn: Connection) -> Any:
        s = self.mempool.statistics()
        return {"size": s.size, "bytes": s.bytes, "admitted": s.admitted, "rejected": s.rejected,
                "evicted": s.evicted, "dropped": s.dropped}


# ------------------------------------------------------------------ node_* and consensus_*


class NodeAPI:
    """``node_*`` and ``consensus_status``: what this node is and how it is doing."""

    def __init__(self, info: Callable[[], dict[str, Any]], network: Callable[[], dict[str, Any]],
                 peers: Callable[[], list[str]], syncing: Callable[[], dict[str, Any]],
                 consensus: Callable[[], dict[str, Any]], height: Callable[[], int]) -> None:
        self._info = info
        self._network = network
        self._peers = peers
        self._syncing = syncing
        self._consensus = consensus
        self._height = height

    def methods(self) -> dict[str, tuple[Handler, bool]]:
        return {
            "node_info": (self.node_info, False),
            "node_health": (self.node_health, False),
            "node_peers": (self.node_peers, False),
            "node_syncing": (self.node_syncing, False),
            "node_network": (self.node_network, False),
            "consensus_status": (self.consensus_status, False),
        }

    @takes()
    async def node_info(self, p: dict[str, Any], conn: Connection) -> Any:
        return self._info()

    @takes()
    async def node_health(self, p: dict[str, Any], conn: Connection) -> Any:
        return {"ok": True, "height": self._height()}

    @takes()
    async def node_peers(self, p: dict[str, Any], conn: Connection) -> Any:
        return [{"peer_id": peer} for peer in self._peers()]

    @takes()
    async def node_syncing(self, p: dict[str, Any], conn: Connection) -> Any:
        return self._syncing()

    @takes()
    async def node_network(self, p: dict[str, Any], conn: Connection) -> Any:
        return self._network()

    @takes()
    async def consensus_status(self, p: dict[str, Any], conn: Connection) -> Any:
        return self._consensus()


# ------------------------------------------------------------------ admin_*

#: base58btc (Bitcoin alphabet), as libp2p writes peer ids
_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{1,128}")
_MAX_PATH_CHARS = 4096


def backup_path(p: dict[str, Any]) -> Path:
    """The ``path`` param of ``admin_backup``: an absolute path the OS can take.

    NUL cannot be in a path, and a lone surrogate (valid in JSON's ``\\udXXX`` escapes,
    not in UTF-8) cannot be encoded for the file system: both are -32602 here, before
    any file-system call sees them.
    """
    path = p.get("path")
    if not isinstance(path, str) or not 1 <= len(path) <= _MAX_PATH_CHARS:
        raise InvalidParams(
            f"path must be an absolute directory path (a string of 1..{_MAX_PATH_CHARS} characters)"
        )
    if "\0" in path:
        raise InvalidParams("path must not contain a NUL character")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams("path must be valid Unicode (it has a lone surrogate escape)") from None
    if not path.startswith("/"):
        raise InvalidParams("path must be absolute (it is resolved by the node, not by the client)")
    return Path(path)


class AdminAPI:
    """``admin_*``: peer bans and online backups."""

    _backup_running = False

    def __init__(self, peers: PeerControl, backup: Callable[[Path], dict[str, Any]]) -> None:
        self.peers = peers
        self.backup = backup

    def methods(self) -> dict[str, tuple[Handler, bool]]:
        return {
            "admin_banPeer": (self.admin_ban_peer, True),
            "admin_unbanPeer": (self.admin_unban_peer, True),
            "admin_backup": (self.admin_backup, True),
        }

    @staticmethod
    def _peer_param(p: dict[str, Any]) -> str:
        peer = p.get("peer_id")
        if not isinstance(peer, str) or not _PEER_ID.fullmatch(peer):
            raise InvalidParams(
                "peer_id must be a base58 libp2p peer id (1..128 characters of 1-9, A-Z, a-z "
                "without 0, O, I and l; e.g. 12D3KooW…)"
            )
        return peer

    @takes("peer_id")
    async def admin_ban_peer(self, p: dict[str, Any], conn: Connection) -> Any:
        """Refuse and drop a peer until unbanned (operators; also how tests partition)."""
        self.peers.ban(self._peer_param(p))
        return True

    @takes("peer_id")
    async def admin_unban_peer(self, p: dict[str, Any], conn: Connection) -> Any:
        self.peers.unban(self._peer_param(p))
        return True

    @takes("path")
    async def admin_backup(self, p: dict[str, Any], conn: Connection) -> Any:
        """Write a consistent backup of this node to ``path`` (node/backup.py); the manifest."""
        from .backup import BackupError, check_destination

        dest = backup_path(p)
        try:
            check_destination(dest)
        except BackupError as exc:
            raise InvalidParams(f"path: {exc}") from None
        except (OSError, ValueError) as exc:  # e.g. a name over NAME_MAX: ENAMETOOLONG
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise InvalidParams(f"path cannot be used as a backup directory ({reason})") from None
        if self._backup_running:
            raise BackupError("a backup is already running")
        self._backup_running = True
        try:
            return await trio.to_thread.run_sync(self.backup, dest)
        finally:
            self._backup_running = False


# ------------------------------------------------------------------ all of them


def method_params(app: App) -> dict[str, tuple[str, ...]]:
    """Every IPC method a node running ``app`` serves and its param names (the node's own
    from their ``@takes``, the modules' from their query declarations): for fuzzers and
    reference checks. ``rpc_modules``, ``subscribe`` and ``unsubscribe`` are the IPC
    layer's."""
    from .queries import param_docs, query_methods

    out: dict[str, tuple[str, ...]] = {}
    # unbound instances: only the methods' declarations are read, nothing runs
    apis: tuple[NodeAPI | ChainAPI | AdminAPI, ...] = (
        NodeAPI.__new__(NodeAPI), ChainAPI.__new__(ChainAPI), AdminAPI.__new__(AdminAPI)
    )
    for api in apis:
        for name, (handler, _) in api.methods().items():
            out[name] = tuple(getattr(handler, "rpc_params", ()))
    for m in query_methods(app):
        out[m.name] = tuple(p["name"] for p in param_docs(m.spec))
    out["rpc_modules"] = ()
    return out
