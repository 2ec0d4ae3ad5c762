"""Fixtures for the IPC tests: a real IPCServer on a short socket path under /tmp.

``tmp_path`` can exceed the 107-byte ``sun_path`` limit, so sockets live in a
``tempfile.mkdtemp(prefix="mc")`` directory instead.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from ipc_harness import HandlerState, Harness, make_dispatcher

from medchaind.ipc import IPCServer

StartServer = Callable[..., Awaitable[Harness]]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mc", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_server(nursery: trio.Nursery, short_dir: Path) -> Iterator[StartServer]:
    """``await start_server(**IPCServer kwargs)`` -> a Harness with a listening server.

    The server runs in the test's nursery and is cancelled when the test ends; raw
    client connections are closed then too.
    """
    harnesses: list[Harness] = []

    async def start(name: str = "n.ipc", **kwargs: Any) -> Harness:
        state = HandlerState()
        dispatcher = make_dispatcher(state)
        path = short_dir / name
        server = IPCServer(path, dispatcher, **kwargs)
        await nursery.start(server.serve)
        harness = Harness(path=path, server=server, dispatcher=dispatcher, state=state)
        harnesses.append(harness)
        return harness

    yield start
    for harness in harnesses:
        harness.close_clients()


@pytest.fixture
async def ipc(start_server: StartServer) -> Harness:
    return await start_server()
