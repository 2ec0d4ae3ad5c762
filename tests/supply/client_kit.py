"""Drive client flows against the app harness: a node without sockets.

:class:`FlowNode` answers the JSON-RPC calls a flow yields the way a node would:
``tx_nonce``, ``tx_submit`` (admission: the app's checks and dry run, refusals as
RPCError with ``data.code``), ``tx_wait`` (each submitted tx is committed in a block of
its own), and every module query through the node's own query layer
(:class:`medchaind.node.queries.ModuleQueries`).
"""

from __future__ import annotations

from typing import Any

from medchaind.app import App
from medchaind.chain import Tip
from medchaind.errors import MedchainError, NotFound, TxRejected
from medchaind.flows import Call, Flow
from medchaind.ipc import RPCError
from medchaind.node.queries import ModuleQueries, query_methods
from medchaind.node.rpc import receipt_json
from medchaind.testing.appkit import AppChain
from medchaind.types import decode_tx


class FlowNode:
    def __init__(self, chain: AppChain) -> None:
        self.c = chain
        self.status: dict[bytes, dict[str, Any]] = {}
        self.queries = ModuleQueries(chain.app, chain.state, self.tip, lambda h: None)
        self.methods = {m.name: m.spec for m in query_methods(chain.app)}
        self.calls: list[str] = []

    def tip(self) -> Tip:
        return Tip(self.c.height, b"\x00" * 32, self.c.app_hash, self.c.time_ms, {})

    def answer(self, call: Call) -> Any:
        self.calls.append(call.method)
        p = call.params
        if call.method == "tx_nonce":
            return {"next": App.nonce(self.c.state, bytes.fromhex(p["sender"][2:]))}
        if call.method == "tx_submit":
            tx = decode_tx(bytes.fromhex(p["tx"][2:]))
            try:
                self.c.check(tx)
            except TxRejected as exc:
                raise RPCError(exc.rpc_code, str(exc), {"code": exc.code, "reason": exc.reason}) from None
            ex = self.c.commit([tx])
            self.status[tx.hash] = {"hash": "0x" + tx.hash.hex(), "status": "committed", "height": self.c.height,
                                    "index": 0, "receipt": receipt_json(ex.receipts[0])}
            return "0x" + tx.hash.hex()
        if call.method == "tx_wait":
            return self.status[bytes.fromhex(p["hash"][2:])]
        if call.method in self.methods:
            try:
                return self.queries.run(self.methods[call.method], p)
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
