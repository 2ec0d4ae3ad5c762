"""A chain with real headers and commits, and a node double that answers with proofs.

:class:`HeaderChain` is the app harness (:class:`medchaind.testing.appkit.AppChain`:
named keys, the registry's modules, ``register`` / ``send`` / ``query``) whose blocks
are built by :func:`medchaind.chain.build_block` and finalised by precommits of three of
the four authorities A, B, C, D, so every height has a header and a commit a light
client can check.

:class:`ProofNode` answers the JSON-RPC calls a client flow yields as a node would:
module queries through the node's own query layer (:class:`medchaind.node.queries.
ModuleQueries`, ``"prove": true`` included), ``chain_getBlock`` with the commit, and
``tx_nonce`` / ``tx_submit`` / ``tx_wait`` (a block per tx). ``lie`` rewrites the
answer of a module query before it leaves: the lying node of the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from medchaind.app import App, Execution
from medchaind.chain import Tip, build_block
from medchaind.errors import MedchainError, NotFound, TxRejected
from medchaind.flows import Call, Flow, drive
from medchaind.ipc import RPCError
from medchaind.node.queries import ModuleQueries, query_methods
from medchaind.node.rpc import block_json, receipt_json
from medchaind.testing.appkit import BLOCK_INTERVAL_MS, AppChain, key, make_genesis, pub
from medchaind.types import Block, Commit, decode_tx, sign_commit_vote

AUTHORITIES = ("A", "B", "C", "D")


class HeaderChain(AppChain):
    """AppChain whose every block has a header and a commit (signed by ``signers``)."""

    def __init__(self, authorities: Sequence[str] = AUTHORITIES, signers: Sequence[str] = ("A", "B", "C")) -> None:
        super().__init__(make_genesis({n: 1 for n in authorities}))
        self.signers = tuple(signers)
        self.blocks: dict[int, Block] = {}
        self.commits: dict[int, Commit] = {}
        #: the authority set that signed each height
        self.signed_by: dict[int, dict[bytes, int]] = {}
        self.block_hash = self.genesis.hash()
        self.powers = self.genesis.powers()

    def tip(self) -> Tip:
        return Tip(self.height, self.block_hash, self.app_hash, self.time_ms, self.powers,
                   block_powers=self.signed_by.get(self.height))

    def commit(self, txs: Any = ()) -> Execution:
        block, ex = build_block(
            self.app, self.state, self.tip(), list(txs), proposer=self.proposer,
            time_ms=self.time_ms + BLOCK_INTERVAL_MS, round_=0,
            last_commit=self.commits.get(self.height),
        )
        self.state.apply(ex.writes, ex.trie)
        h = block.height
        self.app_hash, self.height, self.time_ms = ex.app_hash, h, block.header.time_ms
        self.block_hash = block.hash()
        sigs = sorted((sign_commit_vote(key(s), self.app.chain_id, h, 0, self.block_hash) for s in self.signers),
                      key=lambda s: s.validator)
        self.blocks[h], self.commits[h] = block, Commit(h, 0, self.block_hash, tuple(sigs))
        self.signed_by[h] = self.powers
        self.powers = self.app.authority_powers(self.state)
        return ex


Lie = Callable[[str, Any], Any]


class ProofNode:
    """A node double over a HeaderChain (see the module docstring)."""

    def __init__(self, chain: HeaderChain, *, lie: Lie | None = None) -> None:
        self.c = chain
        self.lie = lie
        self.queries = ModuleQueries(chain.app, chain.state, chain.tip, lambda h: None,
                                     clock_ms=lambda: chain.time_ms + 500)
        self.methods = {m.name: m.spec for m in query_methods(chain.app)}
        self.calls: list[tuple[str, Any]] = []
        self.status: dict[bytes, dict[str, Any]] = {}

    def answer(self, call: Call) -> Any:
        self.calls.append((call.method, call.params))
        p = call.params
        if call.method in self.methods:
            try:
                result = self.queries.run(self.methods[call.method], dict(p or {}))
            except NotFound as exc:
                raise RPCError(-32020, str(exc)) from None
            return result if self.lie is None else self.lie(call.method, result)
        if call.method == "chain_getBlock":
            h = p["height"]
            out = block_json(self.c.blocks[h], full=False)
            out["commit"] = self.c.commits[h].to_json()
            return out
        if call.method == "tx_nonce":
            return {"next": App.nonce(self.c.state, bytes.fromhex(p["sender"][2:]))}
        if call.method == "tx_submit":
            tx = decode_tx(bytes.fromhex(p["tx"][2:]))
            try:
                self.c.check(tx)
            except TxRejected as exc:
                raise RPCError(exc.rpc_code, str(exc), {"code": exc.code}) from None
            ex = self.c.commit([tx])
            self.status[tx.hash] = {"hash": "0x" + tx.hash.hex(), "status": "committed", "height": self.c.height,
                                    "index": 0, "receipt": receipt_json(ex.receipts[0])}
            return "0x" + tx.hash.hex()
        if call.method == "tx_wait":
            return self.status[bytes.fromhex(p["hash"][2:])]
        raise AssertionError(f"unexpected call {call.method}")

    def run(self, flow: Flow[Any]) -> Any:
        """Drive ``flow`` to its end; a call's failure is thrown into it, as the clients do."""
        return drive(flow, self.answer, (RPCError, MedchainError))


def hexs(b: bytes) -> str:
    return "0x" + b.hex()


__all__ = ["AUTHORITIES", "HeaderChain", "ProofNode", "hexs", "pub"]
