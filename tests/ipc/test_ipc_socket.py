"""The socket file: permissions, stale and live sockets, path limits, cleanup."""

from __future__ import annotations

import grp
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import trio
from ipc_harness import HandlerState, Harness, make_dispatcher, req

from medchaind.ipc import IPCBindError, IPCServer


def _mode(path: Path) -> int:
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    return stat.S_IMODE(st.st_mode)


async def test_socket_is_owner_only(start_server: Any) -> None:
    old = os.umask(0o022)  # a permissive umask must not leak into the socket mode
    try:
        ipc = await start_server()
        assert os.umask(0o022) == 0o022  # the server restored the process umask
    finally:
        os.umask(old)
    assert _mode(ipc.path) == 0o600
    assert os.stat(ipc.path).st_uid == os.getuid()


async def test_socket_with_group_is_0660(start_server: Any) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    ipc = await start_server(group=group)
    assert _mode(ipc.path) == 0o660
    assert os.stat(ipc.path).st_gid == os.getgid()
    c = await ipc.connect()
    assert (await c.call(req("test_echo", [1])))["result"] == [1]


async def test_unknown_group_is_a_clear_error(short_dir: Path) -> None:
    server = IPCServer(short_dir / "g.ipc", make_dispatcher(HandlerState()), group="no-such-grp-x")
    with pytest.raises(IPCBindError, match="ipc.group 'no-such-grp-x' is not a group"):
        await server.serve()
    assert not (short_dir / "g.ipc").exists()


async def test_stale_socket_is_replaced(short_dir: Path, start_server: Any) -> None:
    path = short_dir / "n.ipc"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))  # bound, never listening, then closed: a crashed daemon
    stale.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    ipc = await start_server("n.ipc")
    c = await ipc.connect()
    assert (await c.call(req("test_add", [1, 2])))["result"] == 3


async def test_live_socket_is_refused(ipc: Harness, nursery: trio.Nursery) -> None:
    second = IPCServer(ipc.path, make_dispatcher(HandlerState()))
    with pytest.raises(IPCBindError, match=f"another process is serving IPC at {ipc.path}"):
        await nursery.start(second.serve)
    # The first server and its socket are untouched.
    c = await ipc.connect()
    assert (await c.call(req("test_echo", ["first"])))["result"] == ["first"]


async def test_non_socket_file_is_never_replaced(short_dir: Path) -> None:
    path = short_dir / "n.ipc"
    path.write_text("precious")
    server = IPCServer(path, make_dispatcher(HandlerState()))
    with pytest.raises(IPCBindError, match="exists and is not a socket"):
        await server.serve()
    assert path.read_text() == "precious"


async def test_path_over_sun_path_limit(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    long_dir = short_dir / ("d" * 100)
    long_dir.mkdir()
    path = long_dir / "medchaind.ipc"
    assert len(os.fsencode(path)) > 107
    server = IPCServer(path, make_dispatcher(HandlerState()))
    with caplog.at_level(logging.WARNING, logger="medchaind.ipc"):
        with pytest.raises(IPCBindError, match="allows at most 107"):
            await server.serve()
    assert "ipc socket path too long" in caplog.text
    assert not path.exists()


async def test_socket_is_removed_on_exit(short_dir: Path) -> None:
    path = short_dir / "n.ipc"
    server = IPCServer(path, make_dispatcher(HandlerState()))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        assert path.exists()
        # Exit with a client connected: it is closed too.
        stream = await trio.open_unix_socket(os.fspath(path))
        nursery.cancel_scope.cancel()
    assert not path.exists()
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""
    await stream.aclose()


async def test_socket_replaced_by_someone_else_is_left_alone(short_dir: Path) -> None:
    path = short_dir / "n.ipc"
    server = IPCServer(path, make_dispatcher(HandlerState()))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        os.unlink(path)
        path.write_text("someone else's")
        nursery.cancel_scope.cancel()
    assert path.read_text() == "someone else's"
