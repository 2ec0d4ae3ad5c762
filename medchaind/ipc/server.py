"""JSON-RPC 2.0 server on a Unix-domain socket (DESIGN.md §7).

Theory of operation
-------------------
:class:`IPCServer` owns one listening ``AF_UNIX`` stream socket and one nursery. Each
accepted client is a :class:`Connection` served by two tasks in its own nursery:

* the **reader** receives bytes, frames them into JSON values with
  :class:`~medchaind.ipc.framing.JSONStreamDecoder` (newline-delimited, back-to-back or
  pretty-printed input all work), and hands each value to the :class:`Dispatcher`,
  **one request (or batch) at a time**, in order -- except a single request for a
  *long-poll* method (``register(..., long_poll=True)``: ``tx_wait``,
  ``chain_waitHeight``), which runs in its own task so that later requests on the
  connection are not held up behind it; its reply is written when it is ready (replies
  are matched by ``id``, as JSON-RPC allows). At most ``_MAX_LONG_POLLS`` run at once
  per connection; more run in line. Requests of different connections are fully
  independent.
* the **writer** is the only task that writes to the socket. Everything outgoing
  (responses and notifications) goes through one channel, so bytes of two messages
  never interleave and a handler that is waiting never holds up notifications.
  Messages already queued are coalesced into one write.

When the client sends EOF (``socat`` and ``nc -q`` half-close after their request), the
reader stops, notifications stop, and queued replies are flushed for at most
``_DRAIN_TIMEOUT`` seconds before the socket is closed.

Output is one compact JSON object (or batch array) plus ``\\n`` per message.

Memory bounds (every reply and every queue is bounded in bytes; issue 9, defects 3-4):

* A reply is at most ``max_reply_bytes`` (a batch's reply in total). A single reply over
  it becomes a ``-32005`` error; in a batch, the entry that would cross it gets that
  error (it *was* executed, its result is dropped) and the entries after it are not
  executed and get ``-32005`` too (``data.executed`` says which). The dispatcher yields
  to the event loop between the entries of a batch, so one batch never freezes the node.
* Output waiting for a client's writer task is at most ``send_queue_bytes`` and
  ``send_queue`` messages per connection (the writer itself holds one write at a time),
  and all unsent output (waiting or being written) at most ``send_queue_total_bytes``
  for the whole server. Nothing ever waits for room: a connection whose output would go
  over its bound is not reading and is closed at once (responses and notifications
  alike; :meth:`SubscriptionHub.publish` is a plain ``def``); when the server-wide bound
  would be crossed, the connection holding the most unsent bytes is closed. Closing a
  connection releases its queued output at once. A client may pipeline requests, but it
  must read its replies as they come.
* Input: a value over ``max_line_bytes`` gets ``-32600 request too large`` and the
  connection is closed.

Slow and idle clients (defect 7): a request that has started to arrive must be complete
within ``read_timeout`` seconds, and a connection that sends no request for
``idle_timeout`` seconds is closed, unless it holds a subscription or a running long poll
(it is then waiting for the node, not idle). Both send a last ``-32005`` error with
``id: null`` that says why. Of ``max_connections``, ``reserved_connections`` can only be
taken by owners (the node's own uid and root, see :mod:`medchaind.ipc.access`), so
operator tools still get in when other users have filled the socket.

Access control: each connection gets a :class:`~medchaind.ipc.access.Grant` from the
server's :class:`~medchaind.ipc.access.AccessPolicy` and the peer's ``SO_PEERCRED`` uid and
``SO_PEERGROUPS`` gids when it is accepted; a call to a namespace it may not use is
``-32004 access denied`` naming the namespace, and ``rpc_modules`` lists only what the
caller may call.

Failure isolation: malformed JSON gets a ``-32700`` response with ``id: null`` and the
reader resynchronises at the next newline (see :mod:`medchaind.ipc.framing`). Bad bytes,
abrupt disconnects and handler exceptions only ever end their own connection (or
request); nothing a client sends can raise out of :meth:`IPCServer.serve`.

Errors: a handler raises :class:`RPCError` to pick the error; any other
:class:`~medchaind.errors.MedchainError` maps to ``{"code": exc.rpc_code, "message":
str(exc)}`` (:class:`~medchaind.errors.TxRejected` adds ``data: {code, reason}``); anything else
is ``-32603 internal error``, logged with its traceback and the method name. Params are
never logged (they may carry PHI). Mutating methods (``register(..., mutating=True)``)
are logged at INFO with the caller's uid and pid (``SO_PEERCRED``) and the outcome.

Subscriptions: see :class:`SubscriptionHub` (every :class:`Dispatcher` has one as
``dispatcher.hub``).

Socket file: created owner-only (0600) under ``umask(0o177)``; with ``group`` it is then
``chown``-ed to that group and widened to 0660 (it never exists with a wider mode or a
wrong group). A stale socket is replaced, a live one is refused, a non-socket file is
never touched, and the file is unlinked on exit if it is still ours.
"""

from __future__ import annotations

import errno
import grp
import itertools
import json
import logging
import os
import secrets
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

from ..errors import MedchainError, NotFound, TxRejected
from .access import FULL_GRANT, AccessPolicy, Grant, grant_for, namespace_of
from .errors import (
    ACCESS_DENIED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    IPCBindError,
    RPCError,
)
from .framing import JSONStreamDecoder, Malformed, Message, TooLarge, Unsynchronisable

__all__ = [
    "ACCESS_DENIED",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_EXCEEDED",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "Connection",
    "ConnectionLimits",
    "Dispatcher",
    "Handler",
    "IPCServer",
    "IPCServerStatistics",
    "Params",
    "RPCError",
    "SubscriptionHub",
    "TopicSubscription",
    "bind_params",
]

log = logging.getLogger(__name__)

Params: TypeAlias = dict[str, Any] | list[Any]
Handler: TypeAlias = Callable[[Params, "Connection"], Awaitable[Any]]
TopicValidator: TypeAlias = Callable[[dict[str, Any]], Any]
SubscriptionFilter: TypeAlias = Callable[[Any], bool]

#: Longest socket path: ``sun_path`` is 108 bytes on Linux, including the NUL.
MAX_SOCKET_PATH_BYTES = 107
_RECV_CHUNK = 65536
_WRITE_COALESCE_BYTES = 256 * 1024
#: After a client stops sending (EOF), how long queued responses may take to drain.
_DRAIN_TIMEOUT = 10.0
#: long-poll requests one connection may have running at once (more run in line)
_MAX_LONG_POLLS = 16
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_INTERNAL_MESSAGE = "internal error (see the node log)"
_JSON_SEPARATORS = (",", ":")
#: ``SO_PEERGROUPS`` (Linux >= 4.13; not in the socket module): the peer's supplementary groups
_SO_PEERGROUPS = 59
_MAX_PEER_GROUPS = 256  # getsockopt() buffers are at most 1024 bytes

#: Defaults of the limits (the node's ``[ipc]`` settings override them).
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_REPLY_BYTES = 32 * 1024 * 1024
DEFAULT_SEND_QUEUE = 1024
DEFAULT_SEND_QUEUE_BYTES = 32 * 1024 * 1024
DEFAULT_SEND_QUEUE_TOTAL_BYTES = 256 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_RESERVED_CONNECTIONS = 16


def _dumps(obj: Any) -> bytes:
    """Compact, strict JSON (``NaN`` is rejected, non-ASCII is escaped) as bytes."""
    return json.dumps(obj, separators=_JSON_SEPARATORS, allow_nan=False).encode("ascii")


#: Error messages are cut to this many characters and error data over this many bytes is
#: left out: an error may quote what the client sent, and must stay small.
_MAX_ERROR_MESSAGE = 2000
_MAX_ERROR_DATA_BYTES = 64 * 1024


def _error_response(req_id: Any, code: int, message: str, data: Any = None) -> bytes:
    if len(message) > _MAX_ERROR_MESSAGE:
        message = message[:_MAX_ERROR_MESSAGE] + "…"
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    if data is not None:
        try:
            encoded = _dumps(data)
        except (TypeError, ValueError, RecursionError):
            log.error("ipc error data not JSON-serialisable code=%d", code)
            del err["data"]
        else:
            if len(encoded) > _MAX_ERROR_DATA_BYTES:
                del err["data"]
    return _dumps({"jsonrpc": "2.0", "id": req_id, "error": err})


def _error_for(exc: Exception, method: str, conn_id: int) -> tuple[int, str, Any]:
    """(code, message, data) for an exception raised by the handler of ``method``.

    An exception group holding exactly one exception (a handler whose nursery child
    raised) is treated as that exception.
    """
    leaf: BaseException = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, RPCError):
        return leaf.code, leaf.message, leaf.data
    if isinstance(leaf, MedchainError):
        data = {"code": leaf.code, "reason": leaf.reason} if isinstance(leaf, TxRejected) else None
        return leaf.rpc_code, str(leaf), data
    log.error("ipc handler failed method=%s conn=%d", method, conn_id, exc_info=exc)
    return INTERNAL_ERROR, _INTERNAL_MESSAGE, None


def _valid_id(value: Any) -> bool:
    return value is None or type(value) is int or type(value) is str


def bind_params(
    params: Params, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Accept params by name or by position and return them by name.

    A list is matched positionally against ``required + optional``; a dict must contain
    every ``required`` name and nothing outside ``required + optional``. Violations raise
    ``RPCError(INVALID_PARAMS)`` naming the parameter.
    """
    names = required + optional
    if isinstance(params, list):
        if len(params) > len(names):
            raise RPCError(
                INVALID_PARAMS,
                f"expected at most {len(names)} positional params, got {len(params)}",
            )
        bound = dict(zip(names, params, strict=False))
    else:
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise RPCError(INVALID_PARAMS, f"unknown param(s) {unknown}; expected {list(names)}")
        bound = dict(params)
    missing = [n for n in required if n not in bound]
    if missing:
        raise RPCError(INVALID_PARAMS, f"missing required param(s) {missing}")
    return bound


# ====================================================================== Connection


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The per-connection limits (seconds and bytes); see the module docstring."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    send_queue: int = DEFAULT_SEND_QUEUE
    send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES
    read_timeout: float = DEFAULT_READ_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        if min(self.max_request_bytes, self.send_queue, self.send_queue_bytes) < 1:
            raise ValueError("max_request_bytes, send_queue and send_queue_bytes must be positive")
        if not (self.read_timeout > 0 and self.idle_timeout > 0):
            raise ValueError("read_timeout and idle_timeout must be positive")


class _SendBudget:
    """Unsent output of all connections of one server, bounded by ``limit`` bytes.

    When a message would cross the bound, the connection holding the most unsent bytes
    is closed (which releases them): a client that does not read pays, not the one
    that is asking. If that is the asking connection itself, :meth:`admit` says no.
    """

    def __init__(self, limit: int, connections: Callable[[], Iterable[Connection]]) -> None:
        self.limit = limit
        self.used = 0
        self._connections = connections

    def admit(self, conn: Connection, size: int) -> bool:
        while self.used + size > self.limit:
            victim = max(self._connections(), key=lambda c: c.queued_bytes, default=conn)
            if victim is conn or victim.queued_bytes <= conn.queued_bytes + size:
                return False
            victim.drop_not_reading(f"server-wide output limit {self.limit} bytes reached")
        self.used += size
        return True

    def release(self, size: int) -> None:
        self.used -= size


class Connection:
    """One client connection: identity, grant, outgoing channel, close hooks.

    Invariants:

    * Only the connection's writer task writes to the socket; everything goes through
      one channel, bounded by ``limits.send_queue`` messages and ``limits.send_queue_bytes``
      bytes waiting for the writer. The writer holds one write at a time (coalesced
      messages, or one message): memory per connection is at most about
      ``send_queue_bytes`` plus one reply. The server-wide budget counts both.
    * Queuing never blocks (:meth:`send_nowait`): a message that would cross a bound
      while the writer is stuck in a write closes the connection (the client is not
      reading) and is dropped.
    * Once closing, nothing more is queued; :meth:`close` discards the queued output at
      once and returns its bytes to the server's budget.
    * ``on_close`` callbacks run exactly once, after both tasks have stopped, from the
      connection's own task (they must not block; exceptions are logged, not raised).
    * ``after_reply`` callbacks run just before the reply to the request being handled
      is written, or right after the request if it gets no reply. Anything queued after
      they run is written after that reply (used to activate subscriptions only once the
      client has the subscription id).
    * ``grant`` (what it may call) is fixed when the connection is accepted.
    """

    def __init__(
        self,
        conn_id: int,
        stream: trio.SocketStream,
        *,
        limits: ConnectionLimits | None = None,
        grant: Grant = FULL_GRANT,
        credentials: tuple[int | None, int | None, int | None] | None = None,
        groups: tuple[int, ...] = (),
        budget: _SendBudget | None = None,
    ) -> None:
        self.id = conn_id
        self._stream = stream
        self.limits = limits or ConnectionLimits()
        self.peer_pid: int | None
        self.peer_uid: int | None
        self.peer_gid: int | None
        if credentials is None:
            credentials = _peer_credentials(stream.socket)
        self.peer_pid, self.peer_uid, self.peer_gid = credentials
        #: primary and supplementary gids of the peer (as far as the kernel tells)
        self.peer_gids: tuple[int, ...] = groups
        #: What this connection may call (:mod:`medchaind.ipc.access`).
        self.grant = grant
        #: Free-form bookkeeping for subscription owners (the hub keys it by subscription id).
        self.subscriptions: dict[str, Any] = {}
        #: True if this connection was dropped because it did not read its output.
        self.dropped_slow = False
        self._send, self._recv = trio.open_memory_channel[tuple[bytes, list[Callable[[], None]]]](
            self.limits.send_queue
        )
        self._waiting_bytes = 0  # in the channel, not yet taken by the writer
        self._writing_bytes = 0  # taken by the writer, its write not finished
        self._discarded = False  # output discarded and its bytes returned (closing)
        self._budget = budget
        self._scope = trio.CancelScope()
        self._closing = False  # no more output is queued (reader done or close() called)
        self._closed = trio.Event()  # set once fully closed and callbacks have run
        self._on_close: list[Callable[[Connection], None]] = []
        self._after_reply: list[Callable[[], None]] = []
        self._long_polls = 0  # long-poll requests running in their own task
        self._poll_done = trio.Event()
        self._refused_logged: set[str] = set()
        self._reply_limit_logged = False

    def __repr__(self) -> str:
        return f"<Connection id={self.id} uid={self.peer_uid} pid={self.peer_pid}>"

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed: notifications are not sent."""
        return self._closing or self._closed.is_set()

    @property
    def queued_bytes(self) -> int:
        """Output bytes queued or being written, not yet handed to the kernel."""
        return self._waiting_bytes + self._writing_bytes

    async def wait_closed(self) -> None:
        """Wait until the connection is fully closed and its ``on_close`` callbacks ran."""
        await self._closed.wait()

    def on_close(self, callback: Callable[[Connection], None]) -> None:
        """Call ``callback(conn)`` once when the connection closes (at once if it has)."""
        if self._closed.is_set():
            _run_callback(callback, self)
        else:
            self._on_close.append(callback)

    def after_reply(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` when the reply to the current request is about to be written."""
        self._after_reply.append(callback)

    def close(self, reason: str = "closed by server") -> None:
        """Close the connection (non-blocking): cancels its tasks; queued output is discarded."""
        if not self._closing:
            log.debug("ipc connection closing conn=%d reason=%s", self.id, reason)
        self._closing = True
        self._scope.cancel()
        self._discard_output()

    def drop_not_reading(self, why: str) -> None:
        """Close a connection whose client does not read its output (logged, counted)."""
        if self._closing:
            return
        self.dropped_slow = True
        log.warning(
            "ipc dropping connection that does not read conn=%d uid=%s pid=%s queued_bytes=%d "
            "queued_messages=%d reason=%s",
            self.id,
            self.peer_uid,
            self.peer_pid,
            self.queued_bytes,
            self._send.statistics().current_buffer_used,
            why,
        )
        self.close("not reading")

    async def notify(self, method: str, params: Any) -> bool:
        """Push a notification to this connection only; see :meth:`notify_nowait`."""
        await trio.lowlevel.checkpoint()
        return self.notify_nowait(method, params)

    def notify_nowait(self, method: str, params: Any) -> bool:
        """Queue ``{"jsonrpc":"2.0","method":method,"params":params}`` for this connection.

        Returns False if the connection is closed or was just dropped for not reading.
        Raises ``TypeError``/``ValueError`` if ``params`` is not JSON-able (a caller bug).
        """
        return self.send_nowait(_dumps({"jsonrpc": "2.0", "method": method, "params": params}))

    def send_nowait(self, data: bytes) -> bool:
        """Queue one pre-encoded JSON message (no trailing newline) without blocking.

        Output over the connection's bounds drops the connection (see the class doc).
        """
        return self._enqueue(data + b"\n", [])

    def _enqueue(self, data: bytes, hooks: list[Callable[[], None]]) -> bool:
        if self._closing:
            return False
        size = len(data)
        limit = self.limits.send_queue_bytes
        # Not reading = the writer is stuck in a write and more than the bound waits
        # behind it. (While the writer is between writes, it has just not run yet.)
        if self._writing_bytes and self._waiting_bytes + size > limit:
            self.drop_not_reading(f"over {limit} unsent bytes")
            return False
        if self._budget is not None and not self._budget.admit(self, size):
            self.drop_not_reading(f"server-wide output limit {self._budget.limit} bytes reached")
            return False
        try:
            self._send.send_nowait((data, hooks))
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            if self._budget is not None:
                self._budget.release(size)
            if isinstance(exc, trio.WouldBlock):
                self.drop_not_reading(f"over {self.limits.send_queue} unsent messages")
            return False
        self._waiting_bytes += size
        return True

    def _taken(self, size: int) -> None:
        """The writer took ``size`` bytes off the channel for its next write."""
        if not self._discarded:  # else they were returned already
            self._waiting_bytes -= size
            self._writing_bytes += size

    def _written(self) -> None:
        """The writer's write finished: its bytes are the kernel's now."""
        if self._budget is not None:
            self._budget.release(self._writing_bytes)
        self._writing_bytes = 0

    def _discard_output(self) -> None:
        """Drop everything queued (the memory channel's buffer) and return its bytes, once."""
        self._send.close()
        self._recv.close()  # the last receive handle closing clears the channel's buffer
        if not self._discarded:
            self._discarded = True
            if self._budget is not None:
                self._budget.release(self.queued_bytes)
            self._waiting_bytes = self._writing_bytes = 0

    # ------------------------------------------------------------------ tasks

    async def _run(self, dispatcher: Dispatcher) -> None:
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop)
                    await self._read_loop(dispatcher, nursery)
                    # a half-closed client (socat) still reads the replies of its long polls
                    while self._long_polls:
                        await self._poll_done.wait()
                    # The client sent EOF or was cut off: stop notifications, let the
                    # writer flush queued replies (a half-closed client such as
                    # `socat` still reads them), but not forever.
                    self._closing = True
                    self._send.close()
                    self._scope.deadline = trio.current_time() + _DRAIN_TIMEOUT
        finally:
            self._closing = True
            self._discard_output()
            self._stream.socket.close()
            callbacks, self._on_close = self._on_close, []
            for cb in callbacks:
                _run_callback(cb, self)
            self._closed.set()

    async def _long_poll(self, dispatcher: Dispatcher, message: Any) -> None:
        try:
            reply = await dispatcher.handle(message, self)
            if reply is not None:  # not via _reply: the after-reply hooks belong to in-line requests
                self._enqueue(reply + b"\n", [])
        finally:
            self._long_polls -= 1
            self._poll_done.set()
            self._poll_done = trio.Event()

    def _waiting_for_node(self) -> bool:
        """A connection with a subscription or a running long poll is not idle."""
        return bool(self.subscriptions) or self._long_polls > 0

    async def _read_loop(self, dispatcher: Dispatcher, nursery: trio.Nursery) -> None:
        limits = self.limits
        decoder = JSONStreamDecoder(limits.max_request_bytes)
        partial_since: float | None = None  # when the value now arriving began to arrive
        last_request = trio.current_time()
        while True:
            if decoder.pending:
                assert partial_since is not None
                deadline = partial_since + limits.read_timeout
            else:
                deadline = last_request + limits.idle_timeout
            data: bytes | None = None
            with trio.move_on_at(deadline):
                try:
                    data = await self._stream.receive_some(_RECV_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return  # reset by peer
            now = trio.current_time()
            if data is None:
                if decoder.pending:
                    log.info(
                        "ipc request not completed in time, closing conn=%d uid=%s pid=%s timeout_s=%g",
                        self.id, self.peer_uid, self.peer_pid, limits.read_timeout,
                    )
                    await self._reply(_error_response(
                        None, LIMIT_EXCEEDED,
                        f"request not completed within {limits.read_timeout:g} s "
                        f"(ipc.read_timeout_ms); connection closed",
                    ))
                    return
                if self._waiting_for_node():
                    last_request = now
                    continue
                log.debug("ipc idle connection closed conn=%d uid=%s", self.id, self.peer_uid)
                await self._reply(_error_response(
                    None, LIMIT_EXCEEDED,
                    f"no request for {limits.idle_timeout:g} s (ipc.idle_timeout_ms); connection closed",
                ))
                return
            if data:
                decoder.feed(data)
            else:
                decoder.feed_eof()
            while (event := decoder.next_event()) is not None:
                partial_since = None
                if isinstance(event, Message):
                    if self._long_polls < _MAX_LONG_POLLS and dispatcher.is_long_poll(event.value):
                        self._long_polls += 1
                        nursery.start_soon(self._long_poll, dispatcher, event.value)
                    else:
                        reply = await dispatcher.handle(event.value, self)
                        await self._reply(reply)
                    last_request = trio.current_time()
                elif isinstance(event, Malformed):
                    log.debug("ipc parse error conn=%d reason=%s", self.id, event.reason)
                    await self._reply(
                        _error_response(None, PARSE_ERROR, f"parse error: {event.reason}")
                    )
                    last_request = trio.current_time()
                elif isinstance(event, TooLarge):
                    log.warning(
                        "ipc request too large, closing conn=%d uid=%s size=%d limit=%d",
                        self.id,
                        self.peer_uid,
                        event.size,
                        limits.max_request_bytes,
                    )
                    await self._reply(
                        _error_response(
                            None,
                            INVALID_REQUEST,
                            f"request too large (over {limits.max_request_bytes} bytes); connection closed",
                        )
                    )
                    return
                elif isinstance(event, Unsynchronisable):
                    log.warning("ipc unparseable input without newline, closing conn=%d", self.id)
                    return
                if self._closing:
                    return  # dropped (not reading) while handling: stop reading too
            if decoder.pending and partial_since is None:
                partial_since = now
            if not data:
                return

    async def _reply(self, data: bytes | None) -> None:
        hooks, self._after_reply = self._after_reply, []
        if data is None:
            for hook in hooks:
                _run_callback(hook)
        else:
            self._enqueue(data + b"\n", hooks)
        await trio.lowlevel.checkpoint()

    async def _write_loop(self) -> None:
        # Messages already queued are coalesced into one write (fewer syscalls when a
        # client pipelines requests or a topic is busy); each message's hooks run before
        # the write that carries it. Their bytes stay counted until the write is done.
        try:
            async for data, hooks in self._recv:
                parts = [data]
                size = len(data)
                while size < _WRITE_COALESCE_BYTES:
                    for hook in hooks:
                        _run_callback(hook)
                    try:
                        data, hooks = self._recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        hooks = []
                        break
                    parts.append(data)
                    size += len(data)
                for hook in hooks:
                    _run_callback(hook)
                self._taken(size)
                out = b"".join(parts) if len(parts) > 1 else parts[0]
                del parts, data
                await self._stream.send_all(out)
                del out
                self._written()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.close("peer stopped reading")


def _run_callback(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception(
            "ipc connection callback failed callback=%s",
            getattr(callback, "__qualname__", callback),
        )


def _peer_groups(sock: trio.socket.SocketType, primary: int | None) -> tuple[int, ...]:
    """The peer's gids: its primary gid (``SO_PEERCRED``) and its supplementary groups
    (``SO_PEERGROUPS``, Linux >= 4.13), as the kernel recorded them at ``connect()``.
    A peer in more than 256 groups is known by its primary gid only."""
    gids: list[int] = [] if primary is None else [primary]
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_PEER_GROUPS)
            gids.extend(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        except (OSError, struct.error):
            pass
    return tuple(dict.fromkeys(gids))


def _peer_credentials(sock: trio.socket.SocketType) -> tuple[int | None, int | None, int | None]:
    """(pid, uid, gid) of the peer process via ``SO_PEERCRED`` (Linux), or Nones."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return None, None, None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
    except (OSError, struct.error):
        return None, None, None
    return pid, uid, gid


# ====================================================================== Dispatcher


@dataclass(frozen=True, slots=True)
class _Method:
    handler: Handler
    mutating: bool
    long_poll: bool = False


@dataclass(frozen=True, slots=True)
class _Request:
    """A structurally valid request, ready to run."""

    req_id: Any
    method: str
    params: Params
    notification: bool


class Dispatcher:
    """Method table and JSON-RPC 2.0 request semantics.

    ``handler(params, conn)`` gets ``params`` as given (object or array); omitted or
    ``null`` params arrive as ``{}``. It returns a JSON-able result or raises (see the
    module docstring for the error mapping). Built-in methods: ``rpc_modules``, and the
    hub's ``subscribe`` / ``unsubscribe``.

    Request rules: ``jsonrpc`` must be ``"2.0"``; ``method`` a string; ``id`` a string,
    an integer or null (no ``id`` member = notification: no reply, not even an error,
    unless the request is structurally invalid); ``params`` an object or array. Batches
    are processed in order, replies in one array; an empty batch, or one over
    ``max_batch`` entries, is a single ``-32600``; a batch of only notifications gets
    no reply.

    Limits: a reply (a batch's replies together) is at most ``max_reply_bytes``; see the
    module docstring for what happens over it. A method whose namespace the calling
    connection's grant does not allow is ``-32004`` (checked after the method exists).
    """

    def __init__(
        self,
        *,
        max_batch: int = 1000,
        max_subscriptions_per_connection: int = 64,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if max_batch < 1 or max_reply_bytes < 1:
            raise ValueError("max_batch and max_reply_bytes must be positive")
        self._methods: dict[str, _Method] = {}
        self._batch_hooks: dict[str, Callable[[list[Any]], Awaitable[None]]] = {}
        self._max_batch = max_batch
        self.max_reply_bytes = max_reply_bytes
        self.register("rpc_modules", self._rpc_modules)
        #: The subscription hub; it registers ``subscribe`` and ``unsubscribe``.
        self.hub = SubscriptionHub(self, max_per_connection=max_subscriptions_per_connection)

    def register(self, name: str, handler: Handler, *, mutating: bool = False, long_poll: bool = False) -> None:
        """Add method ``name``. ``mutating`` methods are audited at INFO (uid, pid, outcome);
        ``long_poll`` methods may wait long and do not hold up the connection's next requests."""
        if not isinstance(name, str) or not name or name.startswith("rpc."):
            raise ValueError(f"invalid JSON-RPC method name {name!r}")
        if name in self._methods:
            raise ValueError(f"method {name!r} is already registered")
        if not callable(handler):
            raise TypeError(f"handler for {name!r} is not callable")
        self._methods[name] = _Method(handler, mutating, long_poll)

    def register_batch_hook(self, name: str, hook: Callable[[list[Any]], Awaitable[None]]) -> None:
        """Before a batch runs, ``await hook(params)`` with the params of its calls of
        ``name`` (only when the connection may call it): work the calls can share, done
        once for the batch (``tx_submit`` verifies the batch's signatures in worker
        threads). A hook prepares, it never answers: each call still runs as usual."""
        if name not in self._methods:
            raise ValueError(f"method {name!r} is not registered")
        self._batch_hooks[name] = hook

    def methods(self) -> list[str]:
        """Registered method names, sorted."""
        return sorted(self._methods)

    def namespaces(self) -> list[str]:
        """Every namespace of a registered method or topic, sorted."""
        names = {ns for m in self._methods if (ns := namespace_of(m)) is not None}
        return sorted(names | self.hub.namespaces())

    def rpc_modules(self, grant: Grant = FULL_GRANT) -> dict[str, str]:
        """``{namespace: "1.0"}`` for every ``namespace_method`` name (``chain_head`` ->
        ``chain``) that ``grant`` allows. Names without ``_`` (``subscribe``) belong to no
        namespace."""
        names = {ns for m in self._methods if (ns := namespace_of(m)) is not None}
        return {ns: "1.0" for ns in sorted(names) if grant.allows(ns)}

    async def _rpc_modules(self, params: Params, conn: Connection) -> dict[str, str]:
        return self.rpc_modules(conn.grant)

    def is_long_poll(self, message: Any) -> bool:
        """Whether ``message`` is a single request for a long-poll method."""
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return False
        entry = self._methods.get(message["method"])
        return entry is not None and entry.long_poll

    async def handle(self, message: Any, conn: Connection) -> bytes | None:
        """Process one decoded JSON value (request or batch); return the encoded reply
        (no trailing newline) or ``None`` when no reply is due."""
        if not isinstance(message, list):
            reply, _ = await self._call(message, conn, self.max_reply_bytes)
            return reply
        if not message:
            return _error_response(None, INVALID_REQUEST, "invalid request: empty batch")
        if len(message) > self._max_batch:
            return _error_response(
                None,
                INVALID_REQUEST,
                f"invalid request: batch of {len(message)} requests (limit {self._max_batch})",
            )
        if self._batch_hooks:
            await self._prepare_batch(message, conn)
        parts: list[bytes] = []
        size = 2  # the brackets
        full = False
        for i, request in enumerate(message):
            if i:
                # One batch must not hold the event loop: consensus, other clients and
                # the writer of this very connection run between its entries.
                await trio.lowlevel.checkpoint()
            if full:
                part = self._not_run(request)
            else:
                part, full = await self._call(request, conn, self.max_reply_bytes - size - len(parts))
            if part is not None:
                parts.append(part)
                size += len(part)
        return b"[" + b",".join(parts) + b"]" if parts else None

    async def _prepare_batch(self, message: list[Any], conn: Connection) -> None:
        grouped: dict[str, list[Any]] = {}
        for request in message:
            if isinstance(request, dict):
                method = request.get("method")
                if isinstance(method, str) and method in self._batch_hooks:
                    grouped.setdefault(method, []).append(request.get("params"))
        for method, params in grouped.items():
            if conn.grant.allows(namespace_of(method)):
                await self._batch_hooks[method](params)

    def _not_run(self, request: Any) -> bytes | None:
        """The reply to a batch entry after the reply limit was reached (not executed)."""
        req = _parse_request(request)
        if isinstance(req, bytes) or req.notification:
            return req if isinstance(req, bytes) else None
        return _error_response(
            req.req_id,
            LIMIT_EXCEEDED,
            f"not run: the batch reply reached {self.max_reply_bytes} bytes (ipc.max_reply_bytes); "
            f"send the rest in smaller batches",
            {"limit": self.max_reply_bytes, "executed": False},
        )

    async def _call(self, request: Any, conn: Connection, room: int) -> tuple[bytes | None, bool]:
        """Run one request; ``(reply or None, whether its result did not fit in ``room``)``."""
        req = _parse_request(request)
        if isinstance(req, bytes):
            return req, False
        req_id, method = req.req_id, req.method
        entry = self._methods.get(method)
        if entry is None:
            if req.notification:
                return None, False
            shown = method if len(method) <= 100 else method[:100] + "…"
            return _error_response(req_id, METHOD_NOT_FOUND, f"method not found: {shown}"), False
        namespace = namespace_of(method)
        if not conn.grant.allows(namespace):
            assert namespace is not None
            _log_refused(conn, method, namespace)
            if req.notification:
                return None, False
            return _error_response(req_id, ACCESS_DENIED, _access_denied(conn, f"namespace {namespace!r}")), False

        outcome = "cancelled"
        try:
            try:
                result = await entry.handler(req.params, conn)
            except Exception as exc:
                code, message, data = _error_for(exc, method, conn.id)
                outcome = str(code)
                return (None if req.notification else _error_response(req_id, code, message, data)), False
            if req.notification:
                outcome = "ok"
                return None, False
            try:
                reply = _dumps({"jsonrpc": "2.0", "id": req_id, "result": result})
            except (TypeError, ValueError, RecursionError):
                outcome = str(INTERNAL_ERROR)
                log.exception("ipc result not JSON-serialisable method=%s conn=%d", method, conn.id)
                return _error_response(req_id, INTERNAL_ERROR, _INTERNAL_MESSAGE), False
            del result
            if len(reply) > room:
                outcome = f"{LIMIT_EXCEEDED} (reply dropped)"
                if not conn._reply_limit_logged:  # once per connection: no log flooding
                    conn._reply_limit_logged = True
                    log.info(
                        "ipc reply over the limit, dropped method=%s conn=%d uid=%s size=%d limit=%d",
                        method, conn.id, conn.peer_uid, len(reply), self.max_reply_bytes,
                    )
                return _error_response(
                    req_id,
                    LIMIT_EXCEEDED,
                    f"reply too large: {method} produced {len(reply)} bytes and the limit for one reply "
                    f"(a batch's replies together) is {self.max_reply_bytes} (ipc.max_reply_bytes); "
                    f"ask for less at a time",
                    {"limit": self.max_reply_bytes, "size": len(reply), "executed": True},
                ), True
            outcome = "ok"
            return reply, False
        finally:
            if entry.mutating:
                log.info(
                    "ipc mutating call method=%s uid=%s pid=%s conn=%d outcome=%s",
                    method,
                    conn.peer_uid,
                    conn.peer_pid,
                    conn.id,
                    outcome,
                )


def _parse_request(request: Any) -> _Request | bytes:
    """A structurally valid request, or the encoded ``-32600`` error for it."""
    if not isinstance(request, dict):
        return _error_response(None, INVALID_REQUEST, "invalid request: expected a JSON object")
    req_id = request.get("id")
    if not _valid_id(req_id):
        return _error_response(
            None, INVALID_REQUEST, "invalid request: id must be a string, an integer or null"
        )
    if request.get("jsonrpc") != "2.0":
        return _error_response(req_id, INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"')
    method = request.get("method")
    if not isinstance(method, str):
        return _error_response(req_id, INVALID_REQUEST, 'invalid request: "method" must be a string')
    params = request.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict | list):
        return _error_response(
            req_id, INVALID_REQUEST, 'invalid request: "params" must be an object or an array'
        )
    return _Request(req_id, method, params, "id" not in request)


def _access_denied(conn: Connection, what: str) -> str:
    return (
        f"access denied: uid {conn.peer_uid} may not call {what} over IPC "
        f"(it may call: {conn.grant.describe()}); the node's operator grants namespaces "
        f"per user or group in config.toml [ipc.access.<name>]"
    )


def _log_refused(conn: Connection, method: str, namespace: str) -> None:
    # once per namespace and connection: a client looping on a refused call can't flood the log
    if namespace in conn._refused_logged:
        return
    conn._refused_logged.add(namespace)
    log.info(
        "ipc call refused method=%s namespace=%s uid=%s pid=%s conn=%d",
        method if len(method) <= 64 else method[:64] + "…",
        namespace[:64],
        conn.peer_uid,
        conn.peer_pid,
        conn.id,
    )


# ====================================================================== Subscriptions


@dataclass(slots=True, eq=False)
class TopicSubscription:
    """One subscription: ``filter_value`` is what the topic's validator returned."""

    id: str
    topic: str
    filter_value: Any
    conn: Connection
    active: bool = False


@dataclass(slots=True)
class _Topic:
    name: str
    validate: TopicValidator
    subs: dict[str, TopicSubscription]
    namespace: str | None = None


def _no_options(params: dict[str, Any]) -> None:
    extra = sorted(set(params) - {"topic"})
    if extra:
        raise RPCError(
            INVALID_PARAMS, f"topic {params.get('topic')!r} takes no parameters, got {extra}"
        )


class SubscriptionHub:
    """Topic-based push notifications, delivered only to the subscribing connection.

    Protocol (mirrors ``eth_subscribe``):

    * ``subscribe`` with ``{"topic": name, ...options}`` (or ``[name, {options}]``)
      returns a subscription id (``"0x"`` + 16 hex digits, unguessable, unique per hub).
    * The node calls :meth:`publish`; each matching subscription gets
      ``{"jsonrpc":"2.0","method":"subscription","params":{"subscription": id,
      "result": payload}}``.
    * ``unsubscribe`` with ``{"subscription": id}`` (or ``[id]``) returns ``true``; an id
      not owned by the calling connection is ``NotFound`` (-32020).
    * Closing the connection drops all its subscriptions.

    A topic is registered with a validator ``validate(params) -> filter_value``: it gets
    the whole subscribe params object (including ``"topic"``), raises ``RPCError`` /
    ``MedchainError`` for bad options, and returns the normalised filter stored with the
    subscription. :meth:`publish` passes that value to its ``filter`` callable.

    Invariants:

    * A subscription receives nothing published before the client could know its id:
      it becomes active only when its ``subscribe`` reply is about to be written
      (:meth:`Connection.after_reply`), so no notification ever precedes that reply.
    * :meth:`publish` never blocks and never raises because of a client: a connection
      whose channel is full is dropped (:meth:`Connection.send_nowait`).
    * At most ``max_per_connection`` subscriptions per connection (``LIMIT_EXCEEDED``).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        max_per_connection: int = 64,
        notification_method: str = "subscription",
    ) -> None:
        self._topics: dict[str, _Topic] = {}
        self._max_per_connection = max_per_connection
        self._method = notification_method
        self._method_prefix = (
            b'{"jsonrpc":"2.0","method":'
            + _dumps(notification_method)
            + b',"params":{"subscription":'
        )
        self._watched: set[int] = set()
        dispatcher.register("subscribe", self._subscribe)
        dispatcher.register("unsubscribe", self._unsubscribe)

    def register_topic(
        self, name: str, validate: TopicValidator | None = None, *, namespace: str | None = None
    ) -> None:
        """Add a topic. Without ``validate``, subscribing with any option is INVALID_PARAMS.
        Only connections whose grant allows ``namespace`` may subscribe (None: anyone)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid topic name {name!r}")
        if name in self._topics:
            raise ValueError(f"topic {name!r} is already registered")
        self._topics[name] = _Topic(name, validate or _no_options, {}, namespace)

    def namespaces(self) -> set[str]:
        """The namespaces topics belong to."""
        return {t.namespace for t in self._topics.values() if t.namespace is not None}

    def topics(self) -> list[str]:
        """Registered topic names, sorted."""
        return sorted(self._topics)

    def subscriber_count(self, topic: str | None = None) -> int:
        """Active subscriptions on ``topic`` (or on all topics)."""
        if topic is not None and topic not in self._topics:
            raise ValueError(f"unregistered topic {topic!r}")
        topics = self._topics.values() if topic is None else [self._topics[topic]]
        return sum(1 for t in topics for s in t.subs.values() if s.active and not s.conn.closed)

    def has_subscribers(self, topic: str) -> bool:
        """Whether ``topic`` has any subscription (lets a publisher skip building payloads)."""
        t = self._topics.get(topic)
        return t is not None and bool(t.subs)

    def publish(self, topic: str, payload: Any, filter: SubscriptionFilter | None = None) -> int:
        """Queue ``payload`` for every active subscription of ``topic`` whose
        ``filter(filter_value)`` is true (all if ``filter`` is None). Returns how many
        were queued. Never blocks. ``payload`` is encoded once; a non-JSON-able payload
        or an unknown topic is a caller bug and raises ``TypeError``/``ValueError``.
        A ``filter`` that raises is logged and treated as false."""
        t = self._topics.get(topic)
        if t is None:
            raise ValueError(f"publish to unregistered topic {topic!r}")
        if not t.subs:
            return 0
        result = _dumps(payload)
        delivered = 0
        for sub in list(t.subs.values()):
            if not sub.active or sub.conn.closed:
                continue
            if filter is not None:
                try:
                    wanted = filter(sub.filter_value)
                except Exception:
                    log.exception("ipc subscription filter failed topic=%s", topic)
                    continue
                if not wanted:
                    continue
            data = self._method_prefix + _dumps(sub.id) + b',"result":' + result + b"}}"
            if sub.conn.send_nowait(data):
                delivered += 1
        return delivered

    # ------------------------------------------------------------------ methods

    async def _subscribe(self, params: Params, conn: Connection) -> str:
        if isinstance(params, list):
            if not 1 <= len(params) <= 2 or (len(params) == 2 and not isinstance(params[1], dict)):
                raise RPCError(INVALID_PARAMS, "subscribe params: [topic] or [topic, {options}]")
            options = dict(params[1]) if len(params) == 2 else {}
            options["topic"] = params[0]
        else:
            options = params
        name = options.get("topic")
        t = self._topics.get(name) if isinstance(name, str) else None
        if t is None:
            shown = repr(name) if len(repr(name)) <= 100 else repr(name)[:100] + "…"
            raise RPCError(
                INVALID_PARAMS, f"unknown subscription topic {shown}; topics: {self.topics()}"
            )
        if not conn.grant.allows(t.namespace):
            assert t.namespace is not None
            _log_refused(conn, f"subscribe:{t.name}", t.namespace)
            raise RPCError(
                ACCESS_DENIED, _access_denied(conn, f"topic {t.name!r} (namespace {t.namespace!r})")
            )
        if len(conn.subscriptions) >= self._max_per_connection:
            raise RPCError(
                LIMIT_EXCEEDED,
                f"too many subscriptions on this connection (limit {self._max_per_connection})",
            )
        filter_value = t.validate(options)
        sid = "0x" + secrets.token_hex(8)
        while sid in conn.subscriptions or sid in t.subs:
            sid = "0x" + secrets.token_hex(8)
        sub = TopicSubscription(sid, t.name, filter_value, conn)
        conn.subscriptions[sid] = sub
        t.subs[sid] = sub
        if conn.id not in self._watched:
            self._watched.add(conn.id)
            conn.on_close(self._forget_connection)

        def activate() -> None:
            if t.subs.get(sid) is sub:
                sub.active = True

        conn.after_reply(activate)
        return sid

    async def _unsubscribe(self, params: Params, conn: Connection) -> bool:
        sid = bind_params(params, ("subscription",))["subscription"]
        sub = conn.subscriptions.get(sid) if isinstance(sid, str) else None
        if not isinstance(sub, TopicSubscription):
            raise NotFound(f"no subscription {sid!r} on this connection")
        self._remove(sub)
        return True

    def _remove(self, sub: TopicSubscription) -> None:
        sub.active = False
        sub.conn.subscriptions.pop(sub.id, None)
        t = self._topics.get(sub.topic)
        if t is not None:
            t.subs.pop(sub.id, None)

    def _forget_connection(self, conn: Connection) -> None:
        self._watched.discard(conn.id)
        for sub in list(conn.subscriptions.values()):
            if isinstance(sub, TopicSubscription):
                self._remove(sub)


# ====================================================================== Server


@dataclass(frozen=True, slots=True)
class IPCServerStatistics:
    """Counters since :meth:`IPCServer.serve` started."""

    connections: int  #: open now
    accepted: int  #: accepted in total (including rejected over the limit)
    rejected: int  #: refused because ``max_connections`` (or the non-reserved slots) were open
    dropped_slow: int  #: closed because their client did not read its output
    queued_bytes: int = 0  #: output bytes waiting for clients now, all connections together


class IPCServer:
    """Serve a :class:`Dispatcher` on a Unix-domain socket at ``path``; see the module doc.

    Limits (defaults in this module; the node passes its ``[ipc]`` settings):

    * ``max_line_bytes``: largest request (JSON value);
    * ``max_connections``, of which ``reserved_connections`` only owners may take
      (default: 16, or a quarter of ``max_connections`` if that is less);
    * ``send_queue`` messages and ``send_queue_bytes`` bytes of unsent output per
      connection, ``send_queue_total_bytes`` for all of them;
    * ``read_timeout`` / ``idle_timeout`` (seconds).

    ``access`` decides what each connection may call; the default lets the server's own
    uid and root call everything and everyone else only ``rpc_modules``.
    """

    def __init__(
        self,
        path: Path | str,
        dispatcher: Dispatcher,
        *,
        group: str | None = None,
        access: AccessPolicy | None = None,
        max_line_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        reserved_connections: int | None = None,
        send_queue: int = DEFAULT_SEND_QUEUE,
        send_queue_bytes: int = DEFAULT_SEND_QUEUE_BYTES,
        send_queue_total_bytes: int = DEFAULT_SEND_QUEUE_TOTAL_BYTES,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be positive")
        if reserved_connections is None:
            reserved_connections = min(DEFAULT_RESERVED_CONNECTIONS, max_connections // 4)
        if not 0 <= reserved_connections <= max_connections:
            raise ValueError("reserved_connections must be in 0..max_connections")
        self.limits = ConnectionLimits(
            max_request_bytes=max_line_bytes,
            send_queue=send_queue,
            send_queue_bytes=send_queue_bytes,
            read_timeout=read_timeout,
            idle_timeout=idle_timeout,
        )
        if send_queue_total_bytes < send_queue_bytes:
            raise ValueError("send_queue_total_bytes must be at least send_queue_bytes")
        self.path = Path(path)
        self.dispatcher = dispatcher
        self.group = group
        self.access = access or AccessPolicy(owner_uids=frozenset({os.getuid(), 0}))
        self.max_line_bytes = max_line_bytes
        self.max_connections = max_connections
        self.reserved_connections = reserved_connections
        self.send_queue = send_queue
        self._connections: dict[int, Connection] = {}
        self._budget = _SendBudget(send_queue_total_bytes, self._connections.values)
        self._ids = itertools.count(1)
        self._accepted = 0
        self._rejected = 0
        self._dropped_slow = 0
        self._serving = False

    def statistics(self) -> IPCServerStatistics:
        return IPCServerStatistics(
            connections=len(self._connections),
            accepted=self._accepted,
            rejected=self._rejected,
            dropped_slow=self._dropped_slow,
            queued_bytes=self._budget.used,
        )

    def connections(self) -> list[Connection]:
        """Open connections, oldest first."""
        return list(self._connections.values())

    async def serve(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind, signal ``task_status.started()`` once listening, serve until cancelled.

        Raises :class:`IPCBindError` (before ``started``) if the socket cannot be created.
        On exit the listener is closed, connections are cancelled and the socket file is
        unlinked if it is still the one this server created.
        """
        if self._serving:
            raise RuntimeError("IPCServer.serve() is already running")
        self._serving = True
        try:
            sock, identity = await self._bind()
            try:
                listener = trio.SocketListener(sock)
                log.info(
                    "ipc listening path=%s mode=%s", self.path, "0660" if self.group else "0600"
                )
                task_status.started()
                async with trio.open_nursery() as nursery:
                    await self._accept_loop(listener, nursery)
            finally:
                sock.close()
                self._unlink_if_ours(identity)
        finally:
            self._serving = False

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    log.error(
                        "ipc accept failed, retrying errno=%s", errno.errorcode.get(exc.errno or 0)
                    )
                    await trio.sleep(0.1)
                    continue
                raise
            self._accepted += 1
            credentials = _peer_credentials(stream.socket)
            groups = _peer_groups(stream.socket, credentials[2])
            grant = grant_for(self.access, credentials[1], groups)
            # Owners may take every slot; everyone else leaves the reserve free, so the
            # node's operator tools still get in when other users hold the socket.
            limit = self.max_connections if grant.owner else self.max_connections - self.reserved_connections
            if len(self._connections) >= limit:
                self._rejected += 1
                nursery.start_soon(self._reject, stream, credentials[1], grant.owner)
                continue
            conn = Connection(
                next(self._ids),
                stream,
                limits=self.limits,
                grant=grant,
                credentials=credentials,
                groups=groups,
                budget=self._budget,
            )
            self._connections[conn.id] = conn
            nursery.start_soon(self._serve_connection, conn)
            del conn, stream  # a closed connection must not stay reachable from here

    async def _serve_connection(self, conn: Connection) -> None:
        log.debug(
            "ipc connection opened conn=%d uid=%s pid=%s owner=%s rules=%s",
            conn.id, conn.peer_uid, conn.peer_pid, conn.grant.owner, ",".join(conn.grant.rules),
        )
        try:
            await conn._run(self.dispatcher)
        finally:
            del self._connections[conn.id]
            if conn.dropped_slow:
                self._dropped_slow += 1
            log.debug("ipc connection closed conn=%d", conn.id)

    async def _reject(self, stream: trio.SocketStream, uid: int | None, owner: bool) -> None:
        if owner:
            log.warning("ipc connection refused: limit reached limit=%d uid=%s", self.max_connections, uid)
            message = f"too many IPC connections (limit {self.max_connections})"
        else:
            log.warning(
                "ipc connection refused: limit reached limit=%d reserved=%d uid=%s",
                self.max_connections, self.reserved_connections, uid,
            )
            message = (
                f"too many IPC connections (limit {self.max_connections}, of which "
                f"{self.reserved_connections} are reserved for the node's own user)"
            )
        msg = _error_response(None, LIMIT_EXCEEDED, message)
        with trio.move_on_after(1):
            try:
                await stream.send_all(msg + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        stream.socket.close()


    # ------------------------------------------------------------------ socket file

    async def _bind(self) -> tuple[trio.socket.SocketType, tuple[int, int]]:
        path = self.path
        encoded = os.fsencode(path)
        if len(encoded) > MAX_SOCKET_PATH_BYTES:
            log.warning("ipc socket path too long path=%s bytes=%d", path, len(encoded))
            raise IPCBindError(
                f"IPC socket path {path} is {len(encoded)} bytes; AF_UNIX allows at most "
                f"{MAX_SOCKET_PATH_BYTES}. Set a shorter ipc.path (or a shorter datadir)."
            )
        gid = _resolve_group(self.group) if self.group is not None else None
        await _remove_stale_socket(path)
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # umask is process-wide: keep the window tiny and free of checkpoints, so no
            # other trio task runs with it; the chmod below covers other threads.
            old_umask = os.umask(0o177)
            try:
                raw.bind(encoded)
            finally:
                os.umask(old_umask)
            try:
                if gid is not None:
                    os.chown(encoded, -1, gid)
                    os.chmod(encoded, 0o660)
                else:
                    os.chmod(encoded, 0o600)
                raw.listen(socket.SOMAXCONN)
                st = os.stat(encoded)
            except BaseException:
                _unlink_quietly(encoded)
                raise
        except OSError as exc:
            raw.close()
            if exc.errno == errno.EADDRINUSE:
                raise IPCBindError(f"another process is serving IPC at {path}") from exc
            if exc.errno == errno.EPERM and gid is not None:
                raise IPCBindError(
                    f"cannot give IPC socket {path} to group {self.group!r}: the daemon's user "
                    f"must be a member of that group"
                ) from exc
            raise IPCBindError(f"cannot create IPC socket at {path}: {exc.strerror}") from exc
        except BaseException:
            raw.close()
            raise
        raw.setblocking(False)
        return trio.socket.from_stdlib_socket(raw), (st.st_dev, st.st_ino)

    def _unlink_if_ours(self, identity: tuple[int, int]) -> None:
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if (st.st_dev, st.st_ino) == identity:
            _unlink_quietly(os.fsencode(self.path))
        else:
            log.warning("ipc socket path was replaced, not removing it path=%s", self.path)


def _unlink_quietly(path: bytes) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _resolve_group(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        if group.isdigit():
            return int(group)
        raise IPCBindError(f"ipc.group {group!r} is not a group on this system") from None


async def _remove_stale_socket(path: Path) -> None:
    """Unlink ``path`` if it is a socket nobody listens on; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise IPCBindError(
            f"{path} exists and is not a socket; refusing to replace it "
            f"(remove it or choose another ipc.path)"
        )
    probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with trio.move_on_after(2):
            try:
                await probe.connect(os.fspath(path))
            except (ConnectionRefusedError, FileNotFoundError):
                log.info("ipc removing stale socket path=%s", path)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
                return
            except OSError as exc:
                raise IPCBindError(
                    f"cannot check the existing IPC socket at {path}: {exc.strerror}"
                ) from exc
        # Connected, or the probe hung (a live listener with a full backlog): in use.
        raise IPCBindError(
            f"another process is serving IPC at {path}; stop it or choose another ipc.path"
        )
    finally:
        probe.close()
