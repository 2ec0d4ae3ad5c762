"""The metrics endpoint's HTTP side (node/metrics.py) over in-memory streams: readiness
follows the node's start and sync state; bad requests get a status, never a crash."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from medchaind.node.metrics import MetricsServer
from medchaind.node.node import Node


async def ask(server: MetricsServer, raw: bytes) -> bytes:
    client, srv = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._handle, srv)
        await client.send_all(raw)
        out = b""
        while chunk := await client.receive_some(65536):
            out += chunk
    return out


async def test_readyz_follows_start_and_sync() -> None:
    node = SimpleNamespace(  # a lone authority without a P2P network (tests/unit/test_readiness.py: the rest)
        started=trio.Event(), sync=SimpleNamespace(syncing=False), net=SimpleNamespace(connected_peers=lambda: []),
        ledger=SimpleNamespace(tip=SimpleNamespace(powers={b"k": 1})), keys=SimpleNamespace(public_key=b"k"),
        engine=SimpleNamespace(status=lambda: {"started": False, "height": 1, "round": 0}),
    )
    server = MetricsServer.__new__(MetricsServer)
    server.ready = lambda: Node.readiness(node)  # type: ignore[arg-type]  # the node's own rule
    get = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert (await ask(server, get)).startswith(b"HTTP/1.0 503") and (await ask(server, get)).endswith(b"starting\n")
    node.started.set()
    node.sync.syncing = True
    assert (await ask(server, get)).endswith(b"syncing\n")
    node.sync.syncing = False
    reply = await ask(server, get)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"ready\n")
    assert (await ask(server, b"\x00\xff garbage\r\n\r\n")).startswith(b"HTTP/1.0 400")
    assert (await ask(server, b"DELETE /readyz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.0 405")
