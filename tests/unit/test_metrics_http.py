"""The metrics endpoint's HTTP side (node/metrics.py) over in-memory streams: readiness
follows the node's start and sync state; bad requests get a status, never a crash."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from medchaind.node.metrics import MetricsServer


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
    node = SimpleNamespace(started=trio.Event(), sync=SimpleNamespace(syncing=False))
    server = MetricsServer.__new__(MetricsServer)
    server.node = node  # type: ignore[assignment]
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
