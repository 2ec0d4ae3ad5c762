"""Sans-IO client flows: every client helper written once, driven by either client.

A client helper that talks to the node (register an identity, add a record, answer key
requests) is a **flow**: a generator that yields the JSON-RPC calls it needs
(:class:`Call`) and receives their results, and whose return value is the helper's
answer. It does no I/O itself, so one definition serves :class:`medchaind.client.Client`
(blocking) and :class:`medchaind.client.AsyncClient` (anyio), and a test can drive it
from a script of answers without a node. A driver sends each result back into the flow,
and *throws* each failure of a call (``RPCError``, ``TimeoutError``, ...) into it at the
``yield``, so a flow handles a refused call with an ordinary ``try``/``except``.

A module declares its client helpers with :func:`helper` in ``<package>.client`` and
lists them in ``HELPERS`` (docs/writing-a-module.md)::

    @helper
    def accredit(chain_id: str, authority: SigningKey, subject: bytes, role: str,
                 **kw: Any) -> Flow[dict[str, Any]]:
        \"\"\"``governance.accredit``: give ``subject`` a professional role.\"\"\"
        body = {"subject": subject, "role": role}
        return (yield from send_flow(chain_id, authority, "governance.accredit", body, **kw))

    @helper
    def identity(public_key: bytes | str) -> Flow[dict[str, Any]]:   # a single call is a flow too
        ident: dict[str, Any] = yield Call("identity_get", {"public_key": hexstr(public_key)})
        return ident

Both clients then have ``accredit(authority, subject, role, **kw)`` with this docstring:
a first parameter named ``chain_id`` is filled in by the client (it asks the node once),
and the method's signature is the flow's without it. ``@helper(loop=True)`` declares a
service loop whose flow is *one round* (see :class:`Helper`).

This module imports no trio, no sockets and no transport: the flows are pure apart from
the calls they yield (``read_record`` reads the monotonic clock for its deadline).
:data:`RPCError` (from :mod:`medchaind.errors`) is what a failed call raises into a flow.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .crypto import SigningKey
from .errors import RPCError as RPCError
from .types import sign_tx

__all__ = [
    "Call",
    "Flow",
    "Helper",
    "RPCError",
    "helper",
    "hexstr",
    "ok",
    "send_flow",
    "unhex",
    "wait_height_flow",
    "wait_tx_flow",
]

T = TypeVar("T")
P = ParamSpec("P")


def hexstr(b: bytes | str) -> str:
    """Bytes as the 0x-hex the JSON-RPC API takes (a str is passed through)."""
    return b if isinstance(b, str) else "0x" + b.hex()


def unhex(s: str) -> bytes:
    """0x-hex (or bare hex) from a JSON-RPC answer as bytes."""
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def ok(status: dict[str, Any]) -> bool:
    """Whether a tx status (from ``tx_wait``) carries a successful receipt."""
    return bool((status.get("receipt") or {}).get("ok"))


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC call a flow needs; ``wait_s`` is how long the node may hold it."""

    method: str
    params: Any = None
    wait_s: float = 0.0

    def timeout(self, default: float | None) -> float | None:
        """The transport timeout: the client's default, stretched for a long poll."""
        if not self.wait_s:
            return None  # the client's default applies
        return None if default is None else max(default, self.wait_s + 5)


#: A flow: yields :class:`Call` requests, is sent their results, returns a ``T``.
Flow = Generator[Call, Any, T]


# ---------------------------------------------------------------------- transport flows


def wait_tx_flow(tx_hash: bytes | str, timeout_ms: int) -> Flow[dict[str, Any]]:
    """Wait until the tx is committed (or the timeout passes); its status."""
    status: dict[str, Any] = yield Call(
        "tx_wait", {"hash": hexstr(tx_hash), "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    return status


def wait_height_flow(height: int, timeout_ms: int) -> Flow[dict[str, Any] | None]:
    """Wait until the chain reaches ``height`` (or the timeout passes); the head."""
    head: dict[str, Any] | None = yield Call(
        "chain_waitHeight", {"height": height, "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    return head


def send_flow(
    chain_id: str, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
    wait: bool = True, timeout_ms: int = 30_000, blob: bytes | None = None,
) -> Flow[dict[str, Any]]:
    """Build, sign and submit a tx; with ``wait`` its committed status and receipt.

    Without ``nonce`` the node is asked for the sender's next one (committed plus
    contiguous pending). ``blob`` is the tx's sidecar (e.g. a record's ciphertext).
    """
    if nonce is None:
        nonce = int((yield Call("tx_nonce", {"sender": hexstr(key.public_key)}))["next"])
    tx = sign_tx(key, chain_id, type_, nonce, body)
    params = {"tx": hexstr(tx.encoded)}
    if blob is not None:
        params["blob"] = hexstr(blob)
    h = yield Call("tx_submit", params)
    if not wait:
        return {"hash": h, "status": "pending"}
    return (yield from wait_tx_flow(h, timeout_ms))


# ---------------------------------------------------------------------- helpers


def _public_return(annotation: Any) -> Any:
    """``Flow[X]`` -> ``X`` (the annotation of what the client method returns)."""
    if isinstance(annotation, str):  # postponed annotations: the source text
        if annotation.startswith("Flow[") and annotation.endswith("]"):
            return annotation[len("Flow[") : -1]
        return inspect.Signature.empty
    args = typing.get_args(annotation)
    return args[2] if typing.get_origin(annotation) is Generator and len(args) == 3 else inspect.Signature.empty


@dataclass(frozen=True, slots=True)
class Helper(Generic[P, T]):
    """One client helper: a flow function that both clients turn into a method.

    ``needs_chain_id``: the flow's first parameter is ``chain_id``; the client passes its
    chain id and the method does not show the parameter.

    ``loop``: a service loop (a custodian, a watcher). The flow is **one round** and must
    end by waiting for something on the node (e.g. the next block); :class:`~medchaind.
    client.Client` repeats rounds until its extra keyword argument ``stop()`` returns
    true (default: forever), :class:`~medchaind.client.AsyncClient` until cancelled.
    The round's return value is dropped.

    Calling a ``Helper`` calls the flow function itself (e.g. to drive it in a test).
    """

    fn: Callable[P, Flow[T]]
    name: str
    needs_chain_id: bool
    loop: bool = False

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Flow[T]:
        return self.fn(*args, **kwargs)

    def flow(self, chain_id: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Flow[T]:
        """The flow of one method call (or one round of a loop)."""
        if self.needs_chain_id:
            return self.fn(chain_id, *args, **kwargs)  # type: ignore[arg-type]
        return self.fn(*args, **kwargs)

    def signature(self) -> inspect.Signature:
        """The client method's signature, without ``self``: no ``chain_id``, returns ``X``
        for ``Flow[X]`` (``None`` for a loop)."""
        sig = inspect.signature(self.fn)
        params = list(sig.parameters.values())[1 if self.needs_chain_id else 0 :]
        ret = None if self.loop else _public_return(sig.return_annotation)
        return sig.replace(parameters=params, return_annotation=ret)


@overload
def helper(fn: Callable[P, Flow[T]], /) -> Helper[P, T]: ...
@overload
def helper(*, loop: bool = False, name: str | None = None) -> Callable[[Callable[P, Flow[T]]], Helper[P, T]]: ...
def helper(
    fn: Callable[P, Flow[T]] | None = None, /, *, loop: bool = False, name: str | None = None
) -> Helper[P, T] | Callable[[Callable[P, Flow[T]]], Helper[P, T]]:
    """Declare a client helper: ``@helper`` or ``@helper(loop=True, name=...)``.

    The function must be a generator (a helper that is one call is ``yield Call(...)``
    once); its name (or ``name``) is the client method's name.
    """

    def declare(f: Callable[P, Flow[T]]) -> Helper[P, T]:
        method = name or f.__name__
        if not inspect.isgeneratorfunction(f):
            raise TypeError(f"client helper {method!r}: {f.__qualname__} must be a generator (yield Call(...))")
        if not method.isidentifier() or method.startswith("_"):
            raise ValueError(f"client helper {method!r}: the name must be a public identifier")
        params = inspect.signature(f).parameters
        if loop and "stop" in params:
            raise ValueError(f"client helper {method!r}: a loop's 'stop' parameter belongs to the blocking client")
        needs_chain_id = next(iter(params), None) == "chain_id"
        return Helper(fn=f, name=method, needs_chain_id=needs_chain_id, loop=loop)

    return declare if fn is None else declare(fn)
