"""Module queries as JSON-RPC methods: one decoder, one error shape, no module names.

Every query a module declares (:class:`medchaind.app.QuerySpec`) is served as the
method ``<module>_<camelCaseName>`` (or the name it gives), plus the aliases it keeps
for older clients. One function serves them all:

1. the JSON params are decoded against the query's parameter class (bytes as 0x-hex;
   a bad or unknown parameter is -32602 naming it);
2. a query that reads at the tip's time gets ``time_ms`` = the tip's block time unless
   the caller gave one;
3. the pure handler runs on the committed state; a query that declares ``context=True``
   also gets a :class:`medchaind.app.QueryContext`: the chain id and the node's clock
   (the time the next block would have if this node proposed it now, as mempool
   admission uses), which no parameter can override, so a signed request's freshness
   and a permission are judged at the node's "now";
4. a ``None`` answer of a query that declares ``not_found`` becomes NotFound (-32020),
   and an :class:`medchaind.app.Attach` answer gets its blob from the node's blob store.

A refusal (:class:`medchaind.app.QueryError`) is -32602 with its message, and with
``data: {"code": ...}`` when the query gave a code a client can branch on.

**Proofs.** Any query takes the reserved parameter ``"prove": true`` (no query may
declare a parameter of that name). The node then runs the query on the state trie
instead of the flat state, records the trie nodes and values it read
(:class:`medchaind.app.proofs.ProvingState`), and answers
``{"result": <the answer, null for "not found">, "proof": {"height", "app_hash",
"nodes", "values", "validators"?, "context_time_ms"?}}``: the witness of the state after
block ``height``, whose header carries ``app_hash`` (docs/protocol.md §23.4). A client
checks the header and re-runs the query on the witness (:mod:`medchaind.flows`). If a
block commits while the proof is being built the walk fails and is retried at the new
tip. Nothing here names a module: the witness is whatever the query read.

**Older heights.** Any query also takes the reserved parameter ``"height": h``: it runs
on the state after block ``h`` (read through the kept trie records and leaf values,
docs/protocol.md §23.8) if the node keeps that version, with or without a proof. The
same machinery proves single keys (:meth:`ModuleQueries.prove_key`), which ``tx_nonce``
uses for nonce proofs.

Nothing here logs params: they may carry personal data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..app import App, Attach, QueryContext, QueryError, QuerySpec, StateReader
from ..app.module import not_found
from ..app.proofs import HEIGHT_PARAM, PROVE_PARAM, ProvingState
from ..app.schema import FieldError, decode_json_params, fields_of
from ..chain import Tip, next_time_ms
from ..errors import ProofError
from ..ipc import RPCError

INVALID_PARAMS = -32602
#: attempts at building a proof while blocks commit under it
PROOF_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class QueryMethod:
    """One JSON-RPC method bound to a module query."""

    name: str
    path: str
    spec: QuerySpec
    alias_of: str | None = None


def query_methods(app: App) -> list[QueryMethod]:
    """Every module query of ``app`` as JSON-RPC methods, aliases included, in module order."""
    out: list[QueryMethod] = []
    for mod in app.modules.values():
        for qname, spec in mod.queries.items():
            name = mod.rpc_name(qname)
            path = f"{mod.name}.{qname}"
            if any(f.name in (PROVE_PARAM, HEIGHT_PARAM) for f in fields_of(spec.params)):
                raise ValueError(f"query {path}: the parameter names {PROVE_PARAM!r} and {HEIGHT_PARAM!r} "
                                 "are reserved for proofs")
            out.append(QueryMethod(name, path, spec))
            out.extend(QueryMethod(alias, path, spec, alias_of=name) for alias in spec.aliases)
    return out


def param_docs(spec: QuerySpec) -> list[dict[str, Any]]:
    """The parameters of a query, for docs and ``rpc_describe``-style listings."""
    out = []
    for f in fields_of(spec.params):
        if spec.tip_time and f.name == "time_ms":
            out.append({"name": "time_ms", "required": False, "type": f.type.describe() + " (default: the tip's time)"})
            continue
        out.append({"name": f.name, "required": f.required, "type": f.type.describe()})
    return out


class Versions(Protocol):
    """Older versions of the state a node keeps (:class:`medchaind.ledger.Ledger`)."""

    def tip_at(self, height: int) -> Tip | None: ...

    def oldest_version(self) -> int: ...

    def kept_snapshots(self) -> list[int]: ...


class ModuleQueries:
    """Serves module queries against the committed state (a narrow collaborator set)."""

    def __init__(self, app: App, state: StateReader, tip: Callable[[], Tip],
                 get_blob: Callable[[bytes], bytes | None],
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 versions: Versions | None = None) -> None:
        self.app = app
        self.state = state
        self.tip = tip
        self.get_blob = get_blob
        self.clock_ms = clock_ms
        self.versions = versions

    def version(self, height: Any) -> tuple[Tip, bool]:
        """The tip of the state after block ``height`` (None: the head) and whether it is
        an older version; RPCError if the node does not keep it."""
        tip = self.tip()
        if height is None or height == tip.height:
            return tip, False
        if type(height) is not int or height < 0:
            raise RPCError(INVALID_PARAMS, f"{HEIGHT_PARAM} must be a block height (an integer >= 0)")
        if height > tip.height:
            raise RPCError(INVALID_PARAMS, f"{HEIGHT_PARAM} {height} is above the head ({tip.height})")
        at = None if self.versions is None else self.versions.tip_at(height)
        if at is None:
            oldest = tip.height if self.versions is None else self.versions.oldest_version()
            snaps = [] if self.versions is None else self.versions.kept_snapshots()
            also = ""
            if snaps:
                also = f" and the snapshot height{'s' if len(snaps) > 1 else ''} {', '.join(map(str, snaps))}"
            raise RPCError(INVALID_PARAMS, f"this node does not keep the state of height {height} (it answers "
                                           f"heights {oldest}..{tip.height}{also}; see [sync] proof_history "
                                           "and snapshot_interval)")
        return at, True

    def proving(self, tip: Tip, old: bool) -> ProvingState:
        st: Any = self.state
        return ProvingState(tip.app_hash, st.trie_node, st.get, st.trie_value if old else None)

    def prove_key(self, module: str, key: bytes, height: Any = None) -> tuple[bytes | None, dict[str, Any]]:
        """The value of one state key and its proof (``{"height", "app_hash", "nodes",
        "values", "validators"?}``), at the head or a kept ``height``."""
        for attempt in range(PROOF_ATTEMPTS):
            tip, old = self.version(height)
            proving = self.proving(tip, old)
            try:
                value = proving.get(module, key)
            except ProofError as exc:
                if attempt == PROOF_ATTEMPTS - 1:
                    raise RPCError(ProofError.rpc_code, f"could not build a proof: {exc}") from None
                continue
            return value, self._proof(tip, proving)
        raise AssertionError("unreachable")

    @staticmethod
    def _proof(tip: Tip, proving: ProvingState) -> dict[str, Any]:
        proof: dict[str, Any] = {"height": tip.height, "app_hash": "0x" + tip.app_hash.hex(),
                                 **proving.witness().to_json()}
        if tip.block_powers is not None:
            proof["validators"] = [["0x" + k.hex(), p] for k, p in sorted(tip.block_powers.items())]
        return proof

    def context(self) -> QueryContext:
        """The chain id and the node's "now" (never before the tip's block time)."""
        return QueryContext(self.app.chain_id, next_time_ms(self.tip(), self.clock_ms()))

    def methods(self) -> dict[str, Any]:
        """name -> handler(params, conn)."""
        return {m.name: self._handler(m) for m in query_methods(self.app)}

    def _handler(self, m: QueryMethod) -> Any:
        async def handle(params: Any, conn: Any) -> Any:
            for attempt in range(PROOF_ATTEMPTS):
                try:
                    return self.run(m.spec, params)
                except ProofError as exc:  # only with "prove": the state moved, or is damaged
                    if attempt == PROOF_ATTEMPTS - 1:
                        raise RPCError(ProofError.rpc_code, f"could not build a proof: {exc}") from None
                    await trio.sleep(0.01)
            raise AssertionError("unreachable")

        handle.__doc__ = m.spec.doc
        return handle

    def run(self, spec: QuerySpec, params: Any) -> Any:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RPCError(INVALID_PARAMS, "params must be an object with named fields")
        prove = params.get(PROVE_PARAM, False)
        if PROVE_PARAM in params:
            if not isinstance(prove, bool):
                raise RPCError(INVALID_PARAMS, f"{PROVE_PARAM} must be a boolean")
            params = {k: v for k, v in params.items() if k != PROVE_PARAM}
        tip, old = self.version(params.get(HEIGHT_PARAM))
        params = {k: v for k, v in params.items() if k != HEIGHT_PARAM}
        if spec.tip_time and params.get("time_ms") is None:
            params = {**params, "time_ms": tip.time_ms}
        try:
            typed: Any = decode_json_params(spec.params, params)
        except FieldError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        context = self.context()
        state: StateReader = self.state
        proving: ProvingState | None = None
        if prove or old:  # the state trie at that version, recording what the query reads
            proving = self.proving(tip, old)
            state = proving
        try:
            answer = spec.run(state, typed, context)
        except QueryError as exc:
            raise RPCError(INVALID_PARAMS, str(exc), None if exc.code is None else {"code": exc.code}) from None
        if isinstance(answer, Attach):
            blob = self.get_blob(answer.content_hash)
            value = dict(answer.value)
            value[answer.field] = None if blob is None else "0x" + blob.hex()
            answer = value
        elif not prove:
            answer = not_found(spec, answer)
        if not prove or proving is None:
            return answer
        proof = self._proof(tip, proving)
        if spec.context:
            proof["context_time_ms"] = context.time_ms
        return {"result": answer, "proof": proof}
