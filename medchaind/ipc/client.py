"""Transport-level JSON-RPC clients for the node's IPC socket (DESIGN.md §7).

* :class:`Client` is blocking (stdlib ``socket``), for CLIs and sync applications. One
  thread at a time.
* :class:`AsyncClient` is built on anyio, so it runs under trio and asyncio. Any number of
  tasks may call it concurrently over its one connection.

Both raise :class:`~medchaind.ipc.errors.RPCError` (the same class handlers raise on the
server) for error replies, ``ConnectionError`` when the connection cannot be opened or is
lost (including a node that closes it after a connection-level error such as ``request
too large``; the message then says so), and ``TimeoutError`` when a ``timeout`` expires.
A call that timed out leaves the connection usable: its late reply is discarded.

Wire protocol: requests are one compact JSON object plus ``\\n``; replies and
notifications arrive one per line. Replies are matched to calls by ``id``;
notifications ``{"method": "subscription", "params": {"subscription": id, "result": …}}``
are queued per subscription, so notifications interleaved with replies are never lost or
mistaken for replies. Notifications for a subscription id this client does not hold
(e.g. in flight while unsubscribing) are dropped. The server never sends a subscription's
notifications before its ``subscribe`` reply (see :class:`~medchaind.ipc.server.SubscriptionHub`).

Each subscription buffers at most ``max_buffered`` notifications that the application
has not consumed yet; past that, further ones are dropped and the iterator raises
:class:`~medchaind.ipc.errors.SubscriptionOverflowError` once the buffered ones are
consumed. Consume promptly; note that the *node* drops a connection whose notifications
are not read from the socket at all.

:class:`AsyncClient` has no background task (so ``await AsyncClient.connect(path)``
works without a task group): whichever waiting task finds no reader becomes the reader,
reads one chunk, routes every complete message in it (replies by id, notifications to
their subscription queues) and wakes the other waiters. Cancelling a waiter never loses
bytes: unread data stays in the socket, partial lines stay in the buffer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeAlias

import anyio
import anyio.abc
import anyio.lowlevel

from .errors import INTERNAL_ERROR, RPCError, SubscriptionOverflowError

__all__ = ["AsyncClient", "AsyncSubscription", "Client", "Subscription"]

Params: TypeAlias = dict[str, Any] | list[Any]
PathLike: TypeAlias = "str | os.PathLike[str]"

#: Largest reply line a client accepts (blocks can be larger than requests).
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_BUFFERED = 10_000
NOTIFICATION_METHOD = "subscription"
_RECV_CHUNK = 65536
#: How long an interrupted write may take to finish (writes are shielded: a half-written
#: request would corrupt the stream for every other caller).
_SEND_GRACE = 30.0


def _encode_request(req_id: int | None, method: str, params: Params | None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        if not isinstance(params, dict | list):
            raise TypeError("params must be a dict, a list or None")
        msg["params"] = params
    if req_id is not None:
        msg["id"] = req_id
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode("ascii") + b"\n"


def _error_from(err: Any) -> RPCError:
    if (
        isinstance(err, dict)
        and type(err.get("code")) is int
        and isinstance(err.get("message"), str)
    ):
        return RPCError(err["code"], err["message"], err.get("data"))
    return RPCError(INTERNAL_ERROR, "malformed error object from node", err)


def _unwrap(msg: dict[str, Any]) -> Any:
    if "error" in msg:
        raise _error_from(msg["error"])
    return msg.get("result")


def _is_reply(msg: Any) -> bool:
    return isinstance(msg, dict) and "id" in msg and ("result" in msg or "error" in msg)


def _notification_target(msg: Any) -> tuple[str, Any] | None:
    """(subscription id, result) of a subscription notification, else None."""
    if not isinstance(msg, dict) or msg.get("method") != NOTIFICATION_METHOD or "id" in msg:
        return None
    params = msg.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("subscription"), str):
        return None
    return params["subscription"], params.get("result")


def _normalise_subscribe_params(params: Params | str) -> Params:
    return {"topic": params} if isinstance(params, str) else params


class _LineBuffer:
    """Bytes to complete lines; each byte scanned once; bounded."""

    def __init__(self, max_bytes: int) -> None:
        self._buf = bytearray()
        self._scan = 0
        self._max = max_bytes

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop(self) -> bytes | None:
        """Next non-blank line (without ``\\n``), or None. ValueError if over the limit."""
        while True:
            i = self._buf.find(b"\n", self._scan)
            if i < 0:
                self._scan = len(self._buf)
                if len(self._buf) > self._max:
                    raise ValueError(f"node sent a line over {self._max} bytes")
                return None
            line = bytes(self._buf[:i])
            del self._buf[: i + 1]
            self._scan = 0
            if line.strip():
                return line


class _NoteQueue:
    """Notifications of one subscription not yet consumed by the application."""

    def __init__(self, max_buffered: int) -> None:
        self.items: deque[Any] = deque()
        self.max_buffered = max_buffered
        self.overflowed = False
        self.closed = False

    def push(self, item: Any) -> None:
        if self.closed or self.overflowed:
            return
        if len(self.items) >= self.max_buffered:
            self.overflowed = True
            return
        self.items.append(item)

    def ready(self) -> bool:
        return bool(self.items) or self.overflowed or self.closed

    def take(self, sid: str) -> Any:
        """Next item; raise if only the overflow marker or closure is left."""
        if self.items:
            return self.items.popleft()
        if self.overflowed:
            raise SubscriptionOverflowError(
                f"subscription {sid} buffered more than {self.max_buffered} notifications; "
                f"later ones were dropped. Re-subscribe and re-read state."
            )
        raise ConnectionError(f"subscription {sid} is closed")


# ====================================================================== blocking


class Client:
    """Blocking client: ``with Client(path) as c: c.call("chain_head")``.

    ``timeout`` (seconds, None = wait forever) is the default for connect and every call.
    Not thread-safe: use one client per thread.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        timeout: float | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lines = _LineBuffer(max_line_bytes)
        self._notes: dict[str, _NoteQueue] = {}
        self._broken: str | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.settimeout(timeout)
            self._sock.connect(os.fspath(path))
        except OSError as exc:
            self._sock.close()
            raise ConnectionError(
                f"cannot connect to medchaind IPC at {path}: {exc.strerror or exc} "
                f"(is the node running?)"
            ) from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._broken is not None

    def close(self) -> None:
        """Close the connection; open subscriptions end."""
        if self._broken is None:
            self._broken = "client closed"
        self._end_subscriptions()
        self._sock.close()

    def call(self, method: str, params: Params | None = None, timeout: float | None = None) -> Any:
        """Call ``method`` and return its result; raise RPCError for an error reply.

        ``timeout`` None means the client's default.
        """
        deadline = self._deadline(timeout)
        rid = next(self._ids)
        self._send(_encode_request(rid, method, params), deadline)
        while True:
            msg = self._read_message(deadline, f"no reply to {method}")
            if _is_reply(msg):
                mid = msg["id"]
                if type(mid) is int and mid == rid:
                    return _unwrap(msg)
                if mid is None and "error" in msg:
                    # Connection-level error (request too large, too many connections):
                    # with one call in flight it can only concern this call.
                    raise _error_from(msg["error"])
                continue  # late reply to a call that timed out
            self._route_notification(msg)

    def notify(self, method: str, params: Params | None = None) -> None:
        """Send a JSON-RPC notification (no reply, errors are not reported)."""
        self._send(_encode_request(None, method, params), self._deadline(None))

    def subscribe(
        self,
        params: Params | str,
        *,
        method: str = "subscribe",
        unsubscribe_method: str = "unsubscribe",
        timeout: float | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> Subscription:
        """Subscribe (``params`` like ``{"topic": "newHeads"}``; a bare string is the topic)
        and return an iterator over the notification results."""
        sid = self.call(method, _normalise_subscribe_params(params), timeout)
        if not isinstance(sid, str):
            raise RPCError(INTERNAL_ERROR, f"{method} returned no subscription id", sid)
        queue = _NoteQueue(max_buffered)
        self._notes[sid] = queue
        return Subscription(self, sid, queue, unsubscribe_method)

    # ------------------------------------------------------------------ internals

    def _deadline(self, timeout: float | None) -> float | None:
        t = self.timeout if timeout is None else timeout
        return None if t is None else time.monotonic() + t

    def _check_open(self) -> None:
        if self._broken is not None:
            raise ConnectionError(f"IPC connection to {self.path} is closed: {self._broken}")

    def _fail(self, reason: str) -> ConnectionError:
        if self._broken is None:
            self._broken = reason
        self._end_subscriptions()
        self._sock.close()
        return ConnectionError(f"IPC connection to {self.path} lost: {reason}")

    def _end_subscriptions(self) -> None:
        for queue in self._notes.values():
            queue.closed = True
        self._notes.clear()

    def _send(self, data: bytes, deadline: float | None) -> None:
        self._check_open()
        try:
            self._sock.settimeout(
                None if deadline is None else max(deadline - time.monotonic(), 0.001)
            )
            self._sock.sendall(data)
        except TimeoutError:
            # Part of the request may be on the wire: the stream is unusable.
            raise self._fail("timed out while sending a request") from None
        except OSError as exc:
            raise self._fail(exc.strerror or str(exc)) from exc

    def _read_message(self, deadline: float | None, what: str) -> Any:
        self._check_open()
        while True:
            try:
                line = self._lines.pop()
            except ValueError as exc:
                raise self._fail(str(exc)) from None
            if line is not None:
                try:
                    return json.loads(line)
                except ValueError:
                    raise self._fail("node sent invalid JSON") from None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{what} within the timeout")
            try:
                self._sock.settimeout(remaining)
                data = self._sock.recv(_RECV_CHUNK)
            except TimeoutError:
                raise TimeoutError(f"{what} within the timeout") from None
            except OSError as exc:
                raise self._fail(exc.strerror or str(exc)) from exc
            if not data:
                raise self._fail("closed by the node")
            self._lines.feed(data)

    def _route_notification(self, msg: Any) -> None:
        target = _notification_target(msg)
        if target is not None:
            queue = self._notes.get(target[0])
            if queue is not None:
                queue.push(target[1])

    def _next_note(self, sid: str, queue: _NoteQueue, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not queue.ready():
            msg = self._read_message(deadline, "no notification")
            if not _is_reply(msg):
                self._route_notification(msg)
        return queue.take(sid)

    def _unsubscribe(self, sid: str, method: str) -> None:
        queue = self._notes.pop(sid, None)
        if queue is not None:
            queue.closed = True
        if self._broken is None:
            with contextlib.suppress(RPCError, ConnectionError, TimeoutError):
                self.call(method, {"subscription": sid})


class Subscription:
    """Blocking iterator over one subscription's notification results.

    Iteration ends when the subscription or the connection is closed; it raises
    :class:`SubscriptionOverflowError` after a gap. ``close()`` (or leaving the ``with``
    block) unsubscribes.
    """

    def __init__(
        self, client: Client, sid: str, queue: _NoteQueue, unsubscribe_method: str
    ) -> None:
        self.id = sid
        self._client = client
        self._queue = queue
        self._unsubscribe_method = unsubscribe_method

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self.get()
        except ConnectionError:
            raise StopIteration from None

    @property
    def closed(self) -> bool:
        return self._queue.closed

    def get(self, timeout: float | None = None) -> Any:
        """Next notification result; ``TimeoutError`` after ``timeout`` s (None: forever);
        ``ConnectionError`` once closed (after buffered results are consumed)."""
        return self._client._next_note(self.id, self._queue, timeout)

    def close(self) -> None:
        """Unsubscribe (best effort) and end iteration."""
        if not self._queue.closed:
            self._client._unsubscribe(self.id, self._unsubscribe_method)


# ====================================================================== async (anyio)


class AsyncClient:
    """anyio client: ``async with AsyncClient(path) as c`` or ``await AsyncClient.connect(path)``.

    Safe for concurrent use by many tasks of one event loop. Same surface as
    :class:`Client`, ``async``: ``timeout`` (seconds, None = none) is the default for
    every call, and the caller's cancel scopes (``anyio.fail_after``) work as usual.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        timeout: float | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._lines = _LineBuffer(max_line_bytes)
        self._stream: anyio.abc.ByteStream | None = None
        self._send_lock: anyio.Lock | None = None
        self._progress: anyio.Event | None = None
        self._reading = False
        self._waiting: set[int] = set()  # ids of calls awaiting a reply
        self._results: dict[int, dict[str, Any]] = {}  # replies not yet picked up
        self._subscribe_calls: set[int] = set()
        self._sub_rids: dict[int, str] = {}  # subscribe call id -> subscription id
        self._notes: dict[str, _NoteQueue] = {}
        self._max_buffered: dict[int, int] = {}
        self._broken: str | None = None
        self._server_error: str | None = None

    @classmethod
    async def connect(
        cls,
        path: PathLike,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the default for calls, as in Client
    ) -> AsyncClient:
        """Open a connection; close it with :meth:`aclose`."""
        client = cls(path, timeout=timeout)
        await client._open()
        return client

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._broken is not None

    async def aclose(self) -> None:
        """Close the connection; pending calls raise ConnectionError, subscriptions end."""
        self._mark_broken("client closed")
        stream = self._stream
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def call(
        self,
        method: str,
        params: Params | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - same signature as Client.call
    ) -> Any:
        """Call ``method`` and return its result; raise RPCError for an error reply.

        ``timeout`` None means the client's default; ``TimeoutError`` when it expires.
        The caller's cancel scopes (``anyio.fail_after``) work too: cancelling a call
        never disturbs other calls on the connection.
        """
        return _unwrap(await self._request(method, params, timeout))

    async def notify(self, method: str, params: Params | None = None) -> None:
        """Send a JSON-RPC notification (no reply, errors are not reported)."""
        await self._send(_encode_request(None, method, params))

    @contextlib.asynccontextmanager
    async def subscription(
        self,
        params: Params | str,
        *,
        method: str = "subscribe",
        unsubscribe_method: str = "unsubscribe",
        timeout: float | None = None,  # noqa: ASYNC109 - bounds the subscribe call only
        max_buffered: int = DEFAULT_MAX_BUFFERED,
    ) -> AsyncIterator[AsyncSubscription]:
        """``async with c.subscription({"topic": "newHeads"}) as sub: async for head in sub``.

        Leaving the block unsubscribes (best effort, shielded, at most 5 s).
        """
        msg = await self._request(
            method, _normalise_subscribe_params(params), timeout, max_buffered=max_buffered
        )
        sid = _unwrap(msg)
        if not isinstance(sid, str):
            raise RPCError(INTERNAL_ERROR, f"{method} returned no subscription id", sid)
        queue = self._notes.get(sid)  # registered by _route when the reply was read
        if queue is None:
            raise ConnectionError(self._broken_message())
        try:
            yield AsyncSubscription(self, sid, queue)
        finally:
            queue.closed = True
            self._notes.pop(sid, None)
            if self._broken is None:
                with anyio.move_on_after(5, shield=True):
                    with contextlib.suppress(RPCError, ConnectionError, TimeoutError):
                        await self.call(unsubscribe_method, {"subscription": sid})

    # ------------------------------------------------------------------ internals

    async def _open(self) -> None:
        if self._stream is not None or self._broken is not None:
            raise RuntimeError("AsyncClient is already connected or closed; create a new one")
        self._send_lock = anyio.Lock()
        self._progress = anyio.Event()
        try:
            self._stream = await anyio.connect_unix(os.fspath(self.path))
        except OSError as exc:
            self._broken = "connect failed"
            raise ConnectionError(
                f"cannot connect to medchaind IPC at {self.path}: {exc.strerror or exc} "
                f"(is the node running?)"
            ) from exc

    def _check_open(self) -> tuple[anyio.abc.ByteStream, anyio.Lock]:
        if self._broken is not None:
            raise ConnectionError(self._broken_message())
        if self._stream is None or self._send_lock is None:
            raise RuntimeError("AsyncClient is not connected: use 'async with' or connect()")
        return self._stream, self._send_lock

    def _broken_message(self) -> str:
        msg = f"IPC connection to {self.path} is closed: {self._broken}"
        if self._server_error is not None:
            msg += f" (node said: {self._server_error})"
        return msg

    def _mark_broken(self, reason: str) -> None:
        if self._broken is None:
            self._broken = reason
        for queue in self._notes.values():
            queue.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._progress is not None:
            event, self._progress = self._progress, anyio.Event()
            event.set()

    async def _request(
        self,
        method: str,
        params: Params | None,
        timeout: float | None,  # noqa: ASYNC109
        *,
        max_buffered: int | None = None,
    ) -> dict[str, Any]:
        self._check_open()
        rid = next(self._ids)
        self._waiting.add(rid)
        if max_buffered is not None:
            self._subscribe_calls.add(rid)
            self._max_buffered[rid] = max_buffered
        limit = self.timeout if timeout is None else timeout
        done = False
        try:
            try:
                with anyio.fail_after(limit):
                    await self._send(_encode_request(rid, method, params))
                    await self._wait_until(lambda: rid in self._results)
            except TimeoutError:
                raise TimeoutError(f"no reply to {method} within {limit} s") from None
            msg = self._results.pop(rid, None)
            if msg is None:
                raise ConnectionError(self._broken_message())
            done = True
            return msg
        finally:
            self._waiting.discard(rid)
            self._subscribe_calls.discard(rid)
            self._max_buffered.pop(rid, None)
            self._results.pop(rid, None)
            sid = self._sub_rids.pop(rid, None)
            if sid is not None and not done:
                self._notes.pop(sid, None)  # caller never learns this id

    async def _send(self, data: bytes) -> None:
        stream, lock = self._check_open()
        async with lock:
            self._check_open()
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(_SEND_GRACE) as scope:
                    try:
                        await stream.send(data)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                        self._mark_broken(f"write failed: {exc!r}")
                        raise ConnectionError(self._broken_message()) from exc
                if scope.cancelled_caught:
                    self._mark_broken("a request could not be written (node not reading)")
                    await stream.aclose()
                    raise ConnectionError(self._broken_message())

    async def _wait_until(self, ready: Callable[[], bool]) -> bool:
        """Drive reading until ``ready()``; False if the connection ended first."""
        while True:
            if ready():
                return True
            if self._broken is not None:
                return False
            if self._reading:
                assert self._progress is not None
                await self._progress.wait()
                continue
            self._reading = True
            try:
                await self._pump()
            finally:
                self._reading = False
                self._wake()

    async def _pump(self) -> None:
        """Receive one chunk (if no complete line is buffered) and route all complete lines."""
        stream = self._stream
        assert stream is not None
        if not self._route_buffered():
            try:
                data = await stream.receive(_RECV_CHUNK)
            except anyio.EndOfStream:
                self._mark_broken("closed by the node")
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._mark_broken(f"read failed: {exc!r}")
                return
            self._lines.feed(data)
            self._route_buffered()

    def _route_buffered(self) -> bool:
        routed = False
        while True:
            try:
                line = self._lines.pop()
            except ValueError as exc:
                self._mark_broken(str(exc))
                return True
            if line is None:
                return routed
            try:
                msg = json.loads(line)
            except ValueError:
                self._mark_broken("node sent invalid JSON")
                return True
            self._route(msg)
            routed = True

    def _route(self, msg: Any) -> None:
        if _is_reply(msg):
            rid = msg["id"]
            if type(rid) is int and rid in self._waiting:
                self._results[rid] = msg
                sid = msg.get("result")
                if rid in self._subscribe_calls and isinstance(sid, str):
                    # Register before routing anything else: the next line may already
                    # be a notification for this subscription.
                    self._notes[sid] = _NoteQueue(self._max_buffered[rid])
                    self._sub_rids[rid] = sid
            elif rid is None and "error" in msg:
                self._server_error = str(_error_from(msg["error"]).message)
            return
        target = _notification_target(msg)
        if target is not None:
            queue = self._notes.get(target[0])
            if queue is not None:
                queue.push(target[1])


class AsyncSubscription:
    """Async iterator over one subscription's notification results (from
    :meth:`AsyncClient.subscription`). Ends when the subscription or the connection is
    closed; raises :class:`SubscriptionOverflowError` after a gap."""

    def __init__(self, client: AsyncClient, sid: str, queue: _NoteQueue) -> None:
        self.id = sid
        self._client = client
        self._queue = queue

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except ConnectionError:
            raise StopAsyncIteration from None

    @property
    def closed(self) -> bool:
        return self._queue.closed

    async def get(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - same signature as Subscription.get
    ) -> Any:
        """Next notification result; ``TimeoutError`` after ``timeout`` s (None: wait
        forever); ``ConnectionError`` once closed (after buffered results are consumed)."""
        await anyio.lowlevel.checkpoint()
        try:
            with anyio.fail_after(timeout):
                await self._client._wait_until(self._queue.ready)
        except TimeoutError:
            raise TimeoutError(f"no notification for {self.id} within {timeout} s") from None
        return self._queue.take(self.id)
