"""Drive client flows against the app harness: a node without sockets.

:class:`FlowNode` answers the JSON-RPC calls a flow yields as a node would:
``tx_nonce``, ``tx_submit`` (admission with the app's dry run; refusals as RPCError with
``data.code``; the blob sidecar checked and kept), ``tx_wait``, ``chain_head`` /
``chain_waitHeight``, and every module query through the node's own query layer
(:class:`medchaind.node.queries.ModuleQueries`, blobs attached from what was submitted).
Txs submitted without waiting queue up and commit together in one block at the first
``tx_wait``, as a node would batch them.
"""

from __future__ import annotations

from typing import Any

from medchaind.app import App
from medchaind.chain import Tip
from medchaind.crypto import KeyPair
from medchaind.errors import MedchainError, NotFound, TxRejected
from medchaind.flows import Call, Flow
from medchaind.ipc import RPCError
from medchaind.node.queries import ModuleQueries, query_methods
from medchaind.node.rpc import receipt_json
from medchaind.testing.appkit import AppChain
from medchaind.types import Tx, decode_tx


class FlowNode:
    def __init__(self, chain: AppChain) -> None:
        self.c = chain
        self.status: dict[bytes, dict[str, Any]] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.pending: list[Tx] = []
        self.queries = ModuleQueries(chain.app, chain.state, self.tip, self.blobs.get,
                                     clock_ms=lambda: self.c.time_ms + 1000)
        self.methods = {m.name: m.spec for m in query_methods(chain.app)}
        self.calls: list[str] = []

    def tip(self) -> Tip:
        return Tip(self.c.height, b"\x00" * 32, self.c.app_hash, self.c.time_ms, {})

    def flush(self) -> None:
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
                if not any(t.sender == tx.sender for t in self.pending):
                    self.c.check(tx)
            except TxRejected as exc:
                raise RPCError(exc.rpc_code, str(exc), {"code": exc.code, "reason": exc.reason}) from None
            if blob is not None:
                h = self.c.app.blob_hash(tx)
                assert h is not None
                self.blobs[h] = blob
            self.pending.append(tx)
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
        try:
            call = next(flow)
            while True:
                try:
                    result = self.answer(call)
                except (RPCError, TimeoutError) as exc:
                    call = flow.throw(exc)
                    continue
                call = flow.send(result)
        except StopIteration as stop:
            return stop.value

    # setup helpers ------------------------------------------------------------------

    def member(self, kp: KeyPair, role: str, accredit: bool = True) -> None:
        from medchaind.modules.identity.client import register_identity

        st = self.run(register_identity(self.c.app.chain_id, kp, role))
        assert st["receipt"]["ok"], st
        if accredit and role != "patient":
            for a in self.c.genesis.authorities:
                self.c.send(a.name, "governance.accredit", {"subject": kp.public_key, "role": role})
