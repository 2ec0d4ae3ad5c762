"""Client library for applications that talk to a local medchaind node.

Two flavours with the same methods: :class:`Client` (blocking) and
:class:`AsyncClient` (anyio: works under trio and asyncio). Transactions are built and
signed here with the caller's key; the node never sees a client's private key::

    from medchaind.client import Client
    from medchaind.crypto import KeyPair

    me = KeyPair.generate()
    with Client("/run/medchaind/medchaind.ipc") as node:
        result = node.register_identity(me, "patient")      # waits for commit
        assert result["receipt"]["ok"]
        print(node.identity(me.public_key))

Verified answers: a pharmacy or an auditor reading from a node it does not run gives
the client what it trusts, and every module query (every helper's reads) is then
answered with a proof and checked: the header's commit against the trusted authority
set, the answer against the proven state (docs/protocol.md §23)::

    from medchaind.flows import LightVerifier
    from medchaind.types import Genesis

    trust = LightVerifier.from_genesis(Genesis.from_json(open("genesis.json").read()))
    with Client(path, verifier=trust) as node:
        node.consent_check(patient, me, "read", "Observation")   # ProofError if the node lies

or ask once: ``node.query("identity_get", {...}, verify=True)``.

Nonces: by default each send asks the node for the sender's next nonce (committed
plus contiguous pending). A client that submits many txs quickly can keep the nonces
itself and pass ``nonce=`` (see :meth:`Client.build_tx`).

This module holds the transport-level methods (node, chain, txs, subscriptions). The
application helpers (``register_identity``, ``add_record``, ``grant``, ...) belong to
their modules: each module's ``<package>.client`` declares them once, as sans-IO flows
(:func:`medchaind.flows.helper`, listed in ``HELPERS``), and :func:`add_helpers` turns
every helper into a method of both clients: ``Client`` drives the flow over its socket,
``AsyncClient`` awaits the same flow. Every module of the registry
(:func:`medchaind.modules.module_classes`) is added when this module is imported; a
module from elsewhere (a test's example module) calls :func:`add_helpers` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .app import Module
from .crypto import SigningKey
from .errors import TxDropped as TxDropped
from .flows import (
    Call,
    Flow,
    Helper,
    LightVerifier,
    helper,
    hexstr,
    send_flow,
    submit_batches,
    verified_nonce_flow,
    verified_query_flow,
    verifying,
    wait_height_flow,
    wait_tx_flow,
)
from .ipc import AsyncClient as _AsyncTransport
from .ipc import Client as _Transport
from .ipc import RPCError as RPCError
from .modules import module_classes
from .types import Tx, sign_tx

__all__ = ["AsyncClient", "Client", "RPCError", "TxDropped", "add_helpers", "helper", "helpers_of", "hexstr"]

T = TypeVar("T")


def _block_params(height: int | None, hash: bytes | str | None, full: bool) -> dict[str, Any]:
    if (height is None) == (hash is None):
        raise ValueError("give exactly one of height or hash")
    p: dict[str, Any] = {"full": full}
    if height is not None:
        p["height"] = height
    else:
        assert hash is not None
        p["hash"] = hexstr(hash)
    return p


class Client(_Transport):
    """Blocking client with typed helpers over the JSON-RPC methods.

    Two knobs for interactive tools (the ``medchain`` CLI sets both):

    * ``tx_wait_ms``: when set, every wait of a helper for its tx to commit
      (``tx_wait``) lasts this long instead of the helper's default;
    * ``on_wait``: called with the :class:`~medchaind.flows.Call` around every call the
      node may hold (a long poll: a tx wait, a wait for the next block); it returns a
      context manager, e.g. a spinner on a terminal.

    ``verifier`` (a :class:`~medchaind.flows.LightVerifier`): every module query, the
    helpers' included, is answered with a proof and checked; a wrong answer raises
    :class:`~medchaind.errors.ProofError`.
    """

    _chain_id: str | None = None
    tx_wait_ms: int | None = None
    on_wait: Callable[[Call], contextlib.AbstractContextManager[Any]] | None = None
    verifier: LightVerifier | None = None

    def __init__(self, path: Any, *, verifier: LightVerifier | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.verifier = verifier

    if TYPE_CHECKING:
        # the module helpers are attached at import (add_helpers), unknown to a checker
        def __getattr__(self, name: str) -> Any: ...

    def _drive(self, flow: Flow[T]) -> T:
        """Run a sans-IO flow over this connection; a failed call is thrown into it."""
        if self.verifier is not None:
            flow = verifying(flow, self.verifier)
        try:
            call = next(flow)
            while True:
                call = self._adjust(call)
                waiting = self.on_wait(call) if call.wait_s and self.on_wait is not None else contextlib.nullcontext()
                try:
                    with waiting:
                        result = self.call(call.method, call.params, timeout=call.timeout(self.timeout))
                except Exception as exc:  # RPCError, TimeoutError, ConnectionError: the flow decides
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _adjust(self, call: Call) -> Call:
        """Apply ``tx_wait_ms`` to a helper's wait for its tx."""
        if self.tx_wait_ms is None or call.method != "tx_wait" or not isinstance(call.params, dict):
            return call
        return dataclasses.replace(call, params={**call.params, "timeout_ms": self.tx_wait_ms},
                                   wait_s=self.tx_wait_ms / 1000)

    # --------------------------------------------------------------- node / chain

    def query(self, method: str, params: dict[str, Any] | None = None, *, verify: bool | None = None) -> Any:
        """Call module query ``method``; with ``verify`` (default: when the client has a
        verifier) the answer is proven and checked (ProofError if it does not hold)."""
        if verify is None:
            verify = self.verifier is not None
        if not verify:
            return self.call(method, params)
        if self.verifier is None:
            raise ValueError("verify=True needs a client with a verifier (Client(path, verifier=...))")
        return self._drive(verified_query_flow(self.verifier, method, params))

    def node_info(self) -> dict[str, Any]:
        return self.call("node_info")  # type: ignore[no-any-return]

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self.node_info()["chain_id"]
        assert self._chain_id is not None
        return self._chain_id

    def head(self) -> dict[str, Any] | None:
        return self.call("chain_head")  # type: ignore[no-any-return]

    def wait_height(self, height: int, *, timeout_ms: int = 30_000) -> dict[str, Any] | None:
        """Block until the chain reaches ``height`` (or the timeout passes); the head."""
        return self._drive(wait_height_flow(height, timeout_ms))

    def block(
        self, *, height: int | None = None, hash: bytes | str | None = None, full: bool = False
    ) -> dict[str, Any]:
        return self.call("chain_getBlock", _block_params(height, hash, full))  # type: ignore[no-any-return]

    def tx(self, tx_hash: bytes | str) -> dict[str, Any]:
        return self.call("chain_getTx", {"hash": hexstr(tx_hash)})  # type: ignore[no-any-return]

    # --------------------------------------------------------------- transactions

    def next_nonce(self, sender: bytes) -> int:
        return int(self.call("tx_nonce", {"sender": hexstr(sender)})["next"])

    def proven_nonce(self, sender: bytes | str, *, height: int | None = None) -> int:
        """The sender's committed nonce at the node's head (or a kept ``height``), proven
        against a header this client's verifier accepts (ProofError otherwise)."""
        if self.verifier is None:
            raise ValueError("proven_nonce needs a client with a verifier (Client(path, verifier=...))")
        return self._drive(verified_nonce_flow(self.verifier, sender, height))

    def build_tx(self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Tx:
        if nonce is None:
            nonce = self.next_nonce(key.public_key)
        return sign_tx(key, self.chain_id, type_, nonce, body)

    def submit(self, tx: Tx | bytes) -> str:
        raw = tx.encoded if isinstance(tx, Tx) else tx
        return self.call("tx_submit", {"tx": hexstr(raw)})  # type: ignore[no-any-return]

    def submit_many(self, txs: Sequence[Tx | bytes],
                    blobs: Sequence[bytes | None] | None = None) -> list[dict[str, Any]]:
        """Submit many txs in as few ``tx_submitBatch`` calls as the limits allow; per tx,
        in order, ``{hash, ok: True}`` or ``{hash, ok: False, code, reason,
        retry_after_ms?}`` (``busy``: resend those after the hint). A malformed batch
        raises RPCError and admits nothing of that call."""
        return [r for params in submit_batches(txs, blobs) for r in self.call("tx_submitBatch", params)]

    def wait(self, tx_hash: bytes | str, *, timeout_ms: int = 30_000) -> dict[str, Any]:
        """Wait until the tx is committed (or the timeout passes); returns its status.
        Raises :class:`TxDropped` (with its ``reason``) if the node dropped it."""
        return self._drive(wait_tx_flow(tx_hash, timeout_ms))

    def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        """Build, sign, submit; with ``wait`` return the committed status and receipt."""
        return self._drive(send_flow(self.chain_id, key, type_, body, nonce=nonce, wait=wait, timeout_ms=timeout_ms))

    # --------------------------------------------------------------- subscriptions

    def watch(self, topic: str, **filters: Any) -> Iterator[Any]:
        """Yield notifications of ``topic`` (``newHeads``, ``tx``, ``patient``) until closed."""
        with self.subscribe({"topic": topic, **filters}) as sub:
            yield from sub


class AsyncClient(_AsyncTransport):
    """anyio client with the same helpers as :class:`Client` (all ``async``), and the
    same ``verifier``."""

    _chain_id: str | None = None
    verifier: LightVerifier | None = None

    def __init__(self, path: Any, *, verifier: LightVerifier | None = None, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.verifier = verifier

    @classmethod
    async def connect(cls, path: Any, *, timeout: float | None = None,  # noqa: ASYNC109
                      verifier: LightVerifier | None = None) -> AsyncClient:
        """Open a connection; close it with :meth:`aclose`."""
        client = cls(path, timeout=timeout, verifier=verifier)
        await client._open()
        return client

    if TYPE_CHECKING:
        # the module helpers are attached at import (add_helpers), unknown to a checker
        def __getattr__(self, name: str) -> Any: ...

    async def _drive(self, flow: Flow[T]) -> T:
        """Run a sans-IO flow over this connection; a failed call is thrown into it."""
        if self.verifier is not None:
            flow = verifying(flow, self.verifier)
        try:
            call = next(flow)
            while True:
                try:
                    result = await self.call(call.method, call.params, timeout=call.timeout(self.timeout))
                except Exception as exc:  # RPCError, TimeoutError, ConnectionError: the flow decides
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def query(self, method: str, params: dict[str, Any] | None = None, *, verify: bool | None = None) -> Any:
        """Call module query ``method``, proven and checked as :meth:`Client.query` does."""
        if verify is None:
            verify = self.verifier is not None
        if not verify:
            return await self.call(method, params)
        if self.verifier is None:
            raise ValueError("verify=True needs a client with a verifier (AsyncClient(path, verifier=...))")
        return await self._drive(verified_query_flow(self.verifier, method, params))

    async def node_info(self) -> dict[str, Any]:
        return await self.call("node_info")  # type: ignore[no-any-return]

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = (await self.node_info())["chain_id"]
        assert self._chain_id is not None
        return self._chain_id

    async def head(self) -> dict[str, Any] | None:
        return await self.call("chain_head")  # type: ignore[no-any-return]

    async def wait_height(self, height: int, *, timeout_ms: int = 30_000) -> dict[str, Any] | None:
        """Wait until the chain reaches ``height`` (or the timeout passes); the head."""
        return await self._drive(wait_height_flow(height, timeout_ms))

    async def block(
        self, *, height: int | None = None, hash: bytes | str | None = None, full: bool = False
    ) -> dict[str, Any]:
        return await self.call("chain_getBlock", _block_params(height, hash, full))  # type: ignore[no-any-return]

    async def tx(self, tx_hash: bytes | str) -> dict[str, Any]:
        return await self.call("chain_getTx", {"hash": hexstr(tx_hash)})  # type: ignore[no-any-return]

    async def next_nonce(self, sender: bytes) -> int:
        return int((await self.call("tx_nonce", {"sender": hexstr(sender)}))["next"])

    async def proven_nonce(self, sender: bytes | str, *, height: int | None = None) -> int:
        """:meth:`Client.proven_nonce`, asynchronously."""
        if self.verifier is None:
            raise ValueError("proven_nonce needs a client with a verifier (AsyncClient(path, verifier=...))")
        return await self._drive(verified_nonce_flow(self.verifier, sender, height))

    async def build_tx(self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Tx:
        if nonce is None:
            nonce = await self.next_nonce(key.public_key)
        return sign_tx(key, await self.chain_id(), type_, nonce, body)

    async def submit(self, tx: Tx | bytes) -> str:
        raw = tx.encoded if isinstance(tx, Tx) else tx
        return await self.call("tx_submit", {"tx": hexstr(raw)})  # type: ignore[no-any-return]

    async def submit_many(self, txs: Sequence[Tx | bytes],
                          blobs: Sequence[bytes | None] | None = None) -> list[dict[str, Any]]:
        """:meth:`Client.submit_many`, awaited."""
        return [r for params in submit_batches(txs, blobs) for r in await self.call("tx_submitBatch", params)]

    async def wait(self, tx_hash: bytes | str, *, timeout_ms: int = 30_000) -> dict[str, Any]:
        """Wait until the tx is committed (or the timeout passes); returns its status.
        Raises :class:`TxDropped` (with its ``reason``) if the node dropped it."""
        return await self._drive(wait_tx_flow(tx_hash, timeout_ms))

    async def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        """Build, sign, submit; with ``wait`` return the committed status and receipt."""
        flow = send_flow(await self.chain_id(), key, type_, body, nonce=nonce, wait=wait, timeout_ms=timeout_ms)
        return await self._drive(flow)


# ---------------------------------------------------------------------- module helpers
#
# One flow, two methods. The blocking method drives the flow with Client._drive, the
# async one awaits AsyncClient._drive; both pass the client's chain id when the flow asks
# for it, and a loop helper's round is repeated (see medchaind.flows.Helper). Each method
# carries the flow's name, docstring and public signature (no chain_id; returns X for
# Flow[X]), so help(), inspect.signature and the docs show what a caller types.


def _never() -> bool:
    return False


def _sync_method(h: Helper[..., Any]) -> Callable[..., Any]:
    def method(self: Client, /, *args: Any, **kwargs: Any) -> Any:
        return self._drive(h.flow(self.chain_id if h.needs_chain_id else None, args, kwargs))

    return method


def _sync_loop(h: Helper[..., Any]) -> Callable[..., Any]:
    def method(self: Client, /, *args: Any, stop: Callable[[], bool] = _never, **kwargs: Any) -> None:
        chain_id = self.chain_id if h.needs_chain_id else None
        while not stop():
            self._drive(h.flow(chain_id, args, kwargs))

    return method


def _async_method(h: Helper[..., Any]) -> Callable[..., Any]:
    async def method(self: AsyncClient, /, *args: Any, **kwargs: Any) -> Any:
        chain_id = await self.chain_id() if h.needs_chain_id else None
        return await self._drive(h.flow(chain_id, args, kwargs))

    return method


def _async_loop(h: Helper[..., Any]) -> Callable[..., Any]:
    async def method(self: AsyncClient, /, *args: Any, **kwargs: Any) -> None:
        chain_id = await self.chain_id() if h.needs_chain_id else None
        while True:  # until cancelled
            await self._drive(h.flow(chain_id, args, kwargs))

    return method


def _with_stop(sig: inspect.Signature) -> inspect.Signature:
    """A loop's blocking signature: ``stop`` after the keyword-only parameters."""
    stop = inspect.Parameter("stop", inspect.Parameter.KEYWORD_ONLY, default=_never, annotation="Callable[[], bool]")
    params = list(sig.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    return sig.replace(parameters=[*params[:at], stop, *params[at:]])


def _finish(method: Callable[..., Any], h: Helper[..., Any], owner: type, sig: inspect.Signature) -> Callable[..., Any]:
    functools.update_wrapper(method, h.fn)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    full = sig.replace(parameters=[self_param, *sig.parameters.values()])
    method.__name__ = h.name
    method.__qualname__ = f"{owner.__name__}.{h.name}"
    method.__signature__ = full  # type: ignore[attr-defined]
    method.__annotations__ = {
        **{p.name: p.annotation for p in sig.parameters.values() if p.annotation is not inspect.Parameter.empty},
        "return": sig.return_annotation,
    }
    method.__medchain_helper__ = h  # type: ignore[attr-defined]
    return method


#: attributes a transport sets on each instance (not visible on the class)
_INSTANCE_ATTRS = frozenset({"path", "timeout"})


def helpers_of(module_cls: type[Module]) -> list[Helper[..., Any]]:
    """The helpers a module declares in ``<package>.client`` (``HELPERS``); none if absent."""
    name = f"{module_cls.package()}.client"
    try:
        mod = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return []
        raise
    declared = list(getattr(mod, "HELPERS", ()))
    for h in declared:
        if not isinstance(h, Helper):
            raise TypeError(f"{name}.HELPERS: {h!r} is not declared with medchaind.flows.helper")
    return declared


def add_helpers(module_cls: type[Module] | Sequence[Helper[..., Any]]) -> None:
    """Give :class:`Client` and :class:`AsyncClient` a method per helper of a module.

    ``module_cls``: a :class:`~medchaind.app.Module` subclass (its ``<package>.client``
    ``HELPERS``) or the helpers themselves. Adding the same helper again does nothing; a
    name that a client already has (a transport method, another module's helper) is an
    error, raised before anything is added.
    """
    declared = helpers_of(module_cls) if isinstance(module_cls, type) else list(module_cls)
    new: list[Helper[..., Any]] = []
    seen: set[str] = set()
    for h in declared:
        existing = [getattr(c, h.name, None) for c in (Client, AsyncClient)]
        if all(getattr(e, "__medchain_helper__", None) is h for e in existing):
            continue  # added before
        taken = [e for e in existing if e is not None]
        if taken or h.name in _INSTANCE_ATTRS or h.name in seen:
            what = getattr(taken[0], "__medchain_helper__", None) if taken else None
            by = f"helper {what.fn.__module__}.{what.fn.__qualname__}" if what else "the client"
            raise ValueError(
                f"client helper {h.name!r} of {h.fn.__module__}: the name is taken by {by}; rename the helper"
            )
        seen.add(h.name)
        new.append(h)
    for h in new:
        sig = h.signature()
        if h.loop:
            setattr(Client, h.name, _finish(_sync_loop(h), h, Client, _with_stop(sig)))
            setattr(AsyncClient, h.name, _finish(_async_loop(h), h, AsyncClient, sig))
        else:
            setattr(Client, h.name, _finish(_sync_method(h), h, Client, sig))
            setattr(AsyncClient, h.name, _finish(_async_method(h), h, AsyncClient, sig))


for _cls in module_classes():
    add_helpers(_cls)
del _cls
