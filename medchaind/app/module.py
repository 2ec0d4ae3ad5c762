"""The module framework of the state machine.

A module owns a state namespace (its name), registers tx types (``<module>.<action>``)
with a body validator and a handler, and read-only queries. Handlers are pure: they
read and write state only through their :class:`TxContext`, see time only as the
block's ``time_ms``, and fail by raising :class:`TxFailed`, which discards every write
of that tx (the sender's nonce is still consumed). Body validators are stateless and
run at mempool admission and again at execution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..errors import MedchainError
from .state import StateOverlay, StateReader


class TxFailed(MedchainError):
    """Deterministic failure of a tx's handler; becomes the receipt's code and reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class QueryError(MedchainError):
    rpc_code = -32602


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """What a handler may know about the block it executes in."""

    chain_id: str
    height: int
    time_ms: int
    proposer: bytes


@dataclass(slots=True)
class TxContext:
    module: str
    state: StateOverlay
    block: BlockInfo
    sender: bytes
    tx_hash: bytes
    events: list[dict[str, Any]] = field(default_factory=list)

    # own namespace
    def get(self, key: bytes) -> Any | None:
        raw = self.state.get(self.module, key)
        return None if raw is None else codec.decode(raw)

    def put(self, key: bytes, value: Any) -> None:
        self.state.set(self.module, key, codec.encode(value))

    def delete(self, key: bytes) -> None:
        self.state.delete(self.module, key)

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        for k, v in self.state.iterate(self.module, prefix):
            yield k, codec.decode(v)

    # other modules' state, read-only
    def read(self, module: str, key: bytes) -> Any | None:
        raw = self.state.get(module, key)
        return None if raw is None else codec.decode(raw)

    def emit(self, kind: str, /, **fields: Any) -> None:
        self.events.append({"type": f"{self.module}.{kind}", **fields})


BodyValidator = Callable[[dict[str, Any]], None]
Handler = Callable[[TxContext, dict[str, Any]], None]
Query = Callable[[StateReader, dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class TxSpec:
    validate: BodyValidator
    handler: Handler
    #: if False, the sender need not be a registered identity (e.g. registration itself)
    requires_identity: bool = True


class Module:
    """Base class: subclasses set ``name`` and fill ``txs`` and ``queries`` in ``__init__``."""

    name: str = ""

    def __init__(self) -> None:
        self.txs: dict[str, TxSpec] = {}
        self.queries: dict[str, Query] = {}

    def genesis_writes(self, genesis: Any) -> dict[bytes, Any]:
        """Initial state of this module's namespace (key -> CBOR value)."""
        return {}

    def end_block(self, ctx: TxContext) -> None:
        """Runs after a block's txs (e.g. scheduled changes); ``ctx.sender`` is empty."""


# ---------------------------------------------------------------- body validation helpers


def require_fields(body: dict[str, Any], required: set[str], optional: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    keys = set(body)
    missing = required - keys
    if missing:
        raise TxFailed("invalid_body", f"missing field(s) {sorted(missing)}")
    extra = keys - required - optional
    if extra:
        raise TxFailed("invalid_body", f"unexpected field(s) {sorted(extra)}")


def require_bytes(body: dict[str, Any], name: str, size: int) -> bytes:
    v = body.get(name)
    if not isinstance(v, bytes) or len(v) != size:
        raise TxFailed("invalid_body", f"{name} must be {size} bytes")
    return v


def require_text(body: dict[str, Any], name: str, max_len: int, *, min_len: int = 1) -> str:
    v = body.get(name)
    if not isinstance(v, str) or not min_len <= len(v) <= max_len:
        raise TxFailed("invalid_body", f"{name} must be text of {min_len}..{max_len} characters")
    if any(ord(c) < 0x20 for c in v):
        raise TxFailed("invalid_body", f"{name} must not contain control characters")
    return v


# ---------------------------------------------------------------- query helpers


def query_key(params: dict[str, Any], name: str) -> bytes:
    """A 32-byte key or hash parameter of a query (the IPC layer already un-hexed it)."""
    v = params.get(name)
    if not isinstance(v, bytes) or len(v) != 32:
        raise QueryError(f"{name} must be 32 bytes (0x-hex)")
    return v


def hex_or_none(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()
