"""Module queries as JSON-RPC methods: one decoder, one error shape, no module names.

Every query a module declares (:class:`medchaind.app.QuerySpec`) is served as the
method ``<module>_<camelCaseName>`` (or the name it gives), plus the aliases it keeps
for older clients. One function serves them all:

1. the JSON params are decoded against the query's parameter class (bytes as 0x-hex;
   a bad or unknown parameter is -32602 naming it);
2. a query that reads at the tip's time gets ``time_ms`` = the tip's block time unless
   the caller gave one;
3. the pure handler runs on the committed state;
4. a ``None`` answer of a query that declares ``not_found`` becomes NotFound (-32020),
   and an :class:`medchaind.app.Attach` answer gets its blob from the node's blob store.

Nothing here logs params: they may carry personal data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..app import App, Attach, QueryError, QuerySpec, StateReader
from ..app.module import not_found
from ..app.schema import FieldError, decode_json_params, fields_of
from ..chain import Tip
from ..ipc import RPCError

INVALID_PARAMS = -32602


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


class ModuleQueries:
    """Serves module queries against the committed state (a narrow collaborator set)."""

    def __init__(self, app: App, state: StateReader, tip: Callable[[], Tip],
                 get_blob: Callable[[bytes], bytes | None]) -> None:
        self.app = app
        self.state = state
        self.tip = tip
        self.get_blob = get_blob

    def methods(self) -> dict[str, Any]:
        """name -> handler(params, conn)."""
        return {m.name: self._handler(m) for m in query_methods(self.app)}

    def _handler(self, m: QueryMethod) -> Any:
        async def handle(params: Any, conn: Any) -> Any:
            return self.run(m.spec, params)

        handle.__doc__ = m.spec.doc
        return handle

    def run(self, spec: QuerySpec, params: Any) -> Any:
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise RPCError(INVALID_PARAMS, "params must be an object with named fields")
        if spec.tip_time and params.get("time_ms") is None:
            params = {**params, "time_ms": self.tip().time_ms}
        try:
            typed = decode_json_params(spec.params, params)
        except FieldError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        try:
            answer = spec.handler(self.state, typed)
        except QueryError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        if isinstance(answer, Attach):
            blob = self.get_blob(answer.content_hash)
            value = dict(answer.value)
            value[answer.field] = None if blob is None else "0x" + blob.hex()
            return value
        return not_found(spec, answer)
