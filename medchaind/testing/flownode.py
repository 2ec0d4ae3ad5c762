"""Drive client flows against the app harness: a node without sockets.

:class:`FlowNode` answers the JSON-RPC calls a flow yields the way a node would:
``tx_nonce``, ``tx_submit`` (admission: the blob sidecar checked and kept, the app's
checks and dry run, refusals as RPCError with ``data.code``), ``tx_wait``,
``chain_head`` / ``chain_waitHeight``, and every module query through the node's own
query layer (:class:`medchaind.node.queries.ModuleQueries`, blobs attached from what
was submitted).

By default each submitted tx is committed at once in a block of its own. With
``batch=True``, txs queue up and commit together in one block at the first ``tx_wait``
(or query), as a node would batch them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..app import App
from ..chain import Tip
from ..crypto import KeyPair
from ..errors import MedchainError, NotFound, TxRejected
from ..flows import Call, Flow, drive
from ..ipc import RPCError
from ..node.queries import ModuleQueries, query_methods
from ..node.rpc import receipt_json
from ..types import Tx, decode_tx
from .appkit import AppChain


class FlowNode:
    """Answers a flow's calls from ``chain``; ``clock_ms`` is the queries' clock (the
    wall clock by default, as on a node)."""

    def __init__(self, chain: AppChain, *, batch: bool = False, clock_ms: Callable[[], int] | None = None) -> None:
        self.c = chain
        self.batch = batch
        self.status: dict[bytes, dict[str, Any]] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.pending: list[Tx] = []
        if clock_ms is None:
            self.queries = ModuleQueries(chain.app, chain.state, self.tip, self.blobs.get)
        else:
            self.queries = ModuleQueries(chain.app, chain.state, self.tip, self.blobs.get, clock_ms=clock_ms)
        self.methods = {m.name: m.spec for m in query_methods(chain.app)}
        self.calls: list[str] = []

    def tip(self) -> Tip:
        return Tip(self.c.height, b"\x00" * 32, self.c.app_hash, self.c.time_ms, {})

    def flush(self) -> None:
        """Commit the queued txs in one block."""
        if not self.pending:
            return
        txs, self.pending = self.pending, []
        ex = self.c.commit(txs)
        for i, (tx, r) in enumerate(zip(txs, ex.receipts, strict=True)):
            self.status[tx.hash] = {"hash": "0x" + tx.hash.hex(), "status": "committed", "height": self.c.height,
                                    "index": i, "receipt": receipt_json(r)}

    def answer(self, call: Call) -> Any:
        self.calls.append(call.method)
        p = call.params
        if call.method == "tx_nonce":
            sender = bytes.fromhex(p["sender"][2:])
            return {"next": App.nonce(self.c.state, sender) + sum(t.sender == sender for t in self.pending)}
        if call.method == "tx_submit":
            tx = decode_tx(bytes.fromhex(p["tx"][2:]))
            blob = bytes.fromhex(p["blob"][2:]) if "blob" in p else None
            try:
                self.c.app.check_blob(tx, blob)
                if not any(t.sender == tx.sender for t in self.pending):  # else its nonce is ahead of the state
                    self.c.check(tx)
            except TxRejected as exc:
                raise RPCError(exc.rpc_code, str(exc), {"code": exc.code, "reason": exc.reason}) from None
            if blob is not None:
                h = self.c.app.blob_hash(tx)
                assert h is not None
                self.blobs[h] = blob
            self.pending.append(tx)
            if not self.batch:
                self.flush()
            return "0x" + tx.hash.hex()
        if call.method == "tx_wait":
            self.flush()
            return self.status[bytes.fromhex(p["hash"][2:])]
        if call.method == "chain_head":
            self.flush()
            return {"height": self.c.height, "time_ms": self.c.time_ms}
        if call.method == "chain_waitHeight":
            self.c.commit([])
            return {"height": self.c.height, "time_ms": self.c.time_ms}
        if call.method in self.methods:
            self.flush()
            try:
                return self.queries.run(self.methods[call.method], dict(p or {}))
            except NotFound as exc:
                raise RPCError(-32020, str(exc)) from None
            except MedchainError as exc:  # pragma: no cover - surfaced as is
                raise RPCError(-32000, str(exc)) from None
        raise AssertionError(f"unexpected call {call.method}")

    def run(self, flow: Flow[Any]) -> Any:
        """Drive ``flow`` to its end; a call's failure is thrown into it, as the clients do."""
        return drive(flow, self.answer, (RPCError, TimeoutError))

    # setup helpers ------------------------------------------------------------------

    def member(self, kp: KeyPair, role: str, accredit: bool = True) -> None:
        """Register ``kp`` with ``role``; unless a patient (or ``accredit`` is false),
        accredited by every authority of the genesis."""
        from ..modules.identity.client import register_identity

        st = self.run(register_identity(self.c.app.chain_id, kp, role))
        assert st["receipt"]["ok"], st
        if accredit and role != "patient":
            for a in self.c.genesis.authorities:
                self.c.send(a.name, "governance.accredit", {"subject": kp.public_key, "role": role})
