"""Test harness for the IPC layer: a dispatcher of test methods, a running server, and a
raw line-oriented client that talks to the socket as ``nc -U`` / ``socat`` would.

Everything waits on conditions under ``trio.fail_after``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from medchaind.errors import NotFound, TxRejected
from medchaind.ipc import (
    INVALID_PARAMS,
    Connection,
    Dispatcher,
    IPCServer,
    RPCError,
    SubscriptionHub,
    bind_params,
)
from medchaind.testing.wait import wait_for

#: Upper bound for any single wait in these tests (seconds).
WAIT = 5.0


@dataclass
class HandlerState:
    """Shared between the test and the test handlers."""

    gate: trio.Event = field(default_factory=trio.Event)  # test_wait returns once set
    waiting: trio.Event = field(default_factory=trio.Event)  # set when test_wait starts
    calls: list[str] = field(default_factory=list)


def make_dispatcher(state: HandlerState) -> Dispatcher:
    """A dispatcher with one method per behaviour under test, and two topics."""
    d = Dispatcher(max_batch=50)

    async def echo(params: Any, conn: Connection) -> Any:
        state.calls.append("test_echo")
        return params

    async def add(params: Any, conn: Connection) -> Any:
        p = bind_params(params, ("a", "b"), ("c",))
        for name, value in p.items():
            if type(value) is not int:
                raise RPCError(INVALID_PARAMS, f"{name} must be an integer")
        return p["a"] + p["b"] + p.get("c", 0)

    async def wait(params: Any, conn: Connection) -> Any:
        state.waiting.set()
        await state.gate.wait()
        return "released"

    async def fail_rpc(params: Any, conn: Connection) -> Any:
        raise RPCError(INVALID_PARAMS, "x must be positive", {"field": "x"})

    async def fail_notfound(params: Any, conn: Connection) -> Any:
        raise NotFound("record 7 not found")

    async def fail_rejected(params: Any, conn: Connection) -> Any:
        raise TxRejected("nonce_too_low", "nonce 3 is below the account nonce 5")

    async def crash(params: Any, conn: Connection) -> Any:
        raise ValueError("boom")

    async def fail_in_child(params: Any, conn: Connection) -> Any:
        async def child() -> None:
            raise NotFound("child says record 8 not found")

        async with trio.open_nursery() as nursery:  # strict exception groups
            nursery.start_soon(child)

    async def bad_result(params: Any, conn: Connection) -> Any:
        return {"not json": object()}

    async def whoami(params: Any, conn: Connection) -> Any:
        return {"uid": conn.peer_uid, "pid": conn.peer_pid, "gid": conn.peer_gid, "id": conn.id}

    async def notify_me(params: Any, conn: Connection) -> Any:
        await conn.notify("test_note", {"n": 1})
        return "after-note"

    async def publish(params: Any, conn: Connection) -> Any:
        p = bind_params(params, ("topic", "payload"))
        return d.hub.publish(p["topic"], p["payload"])

    async def send(params: Any, conn: Connection) -> Any:
        return "accepted"

    for name, handler in {
        "test_echo": echo,
        "test_add": add,
        "test_wait": wait,
        "test_failRpc": fail_rpc,
        "test_failNotFound": fail_notfound,
        "test_failRejected": fail_rejected,
        "test_crash": crash,
        "test_failInChild": fail_in_child,
        "test_badResult": bad_result,
        "test_whoami": whoami,
        "test_notifyMe": notify_me,
        "test_publish": publish,
    }.items():
        d.register(name, handler)
    d.register("tx_send", send, mutating=True)
    d.register("test_longPoll", wait, long_poll=True)

    def validate_filtered(params: dict[str, Any]) -> int:
        extra = set(params) - {"topic", "min"}
        if extra or type(params.get("min")) is not int:
            raise RPCError(INVALID_PARAMS, "filtered takes {min: int}")
        return int(params["min"])

    d.hub.register_topic("ticks")
    d.hub.register_topic("filtered", validate_filtered)
    return d


@dataclass
class Harness:
    path: Path
    server: IPCServer
    dispatcher: Dispatcher
    state: HandlerState
    clients: list[RawConn] = field(default_factory=list)

    @property
    def hub(self) -> SubscriptionHub:
        return self.dispatcher.hub

    async def connect(self) -> RawConn:
        """A raw client connection; closed at the end of the test if still open."""
        conn = RawConn(await trio.open_unix_socket(os.fspath(self.path)))
        self.clients.append(conn)
        return conn

    def close_clients(self) -> None:
        for conn in self.clients:
            conn.stream.socket.close()

    async def wait_connections(self, n: int) -> None:
        """Wait until the server is down to ``n`` open connections (clients closed theirs).

        Re-checked each time one of the server's connections has fully closed
        (``Connection.wait_closed``), bounded by ``WAIT``. The server has no event for a
        new connection, and these tests only ever wait for closures.
        """
        with trio.fail_after(WAIT):
            await wait_for(lambda: self.server.statistics().connections == n, self._one_closed)

    async def _one_closed(self) -> None:
        """Until one of the server's open connections has fully closed."""
        open_now = self.server.connections()
        if not open_now:
            raise AssertionError("waiting for a closure, but the server has no connection open")
        async with trio.open_nursery() as nursery:

            async def closed(conn: Connection) -> None:
                await conn.wait_closed()
                nursery.cancel_scope.cancel()

            for conn in open_now:
                nursery.start_soon(closed, conn)


class RawConn:
    """A byte-level client: writes what it is told, reads newline-terminated lines."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_json(self, obj: Any) -> None:
        await self.send(json.dumps(obj).encode() + b"\n")

    async def read_line(self) -> bytes | None:
        """Next line without ``\\n``; None at EOF."""
        with trio.fail_after(WAIT):
            while True:
                i = self.buf.find(b"\n")
                if i >= 0:
                    line = bytes(self.buf[:i])
                    del self.buf[: i + 1]
                    return line
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    return None
                self.buf += data

    async def read_json(self) -> Any:
        line = await self.read_line()
        assert line is not None, "connection closed, expected a message"
        assert line.endswith((b"}", b"]")) and b"\n" not in line
        return json.loads(line)

    async def call(self, obj: Any) -> Any:
        await self.send_json(obj)
        return await self.read_json()

    async def read_until_eof(self) -> list[Any]:
        out = []
        while (line := await self.read_line()) is not None:
            out.append(json.loads(line))
        return out

    async def aclose(self) -> None:
        await self.stream.aclose()


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:  # noqa: A002
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg
