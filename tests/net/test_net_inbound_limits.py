"""Inbound requests are admitted before they are read, and read only up to their protocol's
limit (issue 9, defect 6).

The defect: the libp2p server read a request up to ``max_request_size`` (64 MiB, the
bound for *responses*, which carry blocks) before the sync handler's own 256-byte check,
and took its inbound slot only after reading; streams per peer were unbounded. Eight
60 MiB "sync requests" raised a node's RSS by 557 MiB.

The libp2p tests count the bytes the server actually reads from each request stream (a
wrapper around the stream ``_serve_stream`` gets), not RSS: real sockets on 127.0.0.1,
every wait a condition inside ``trio.fail_after``. The contract tests run on both
backends, so the memory network used by simulations refuses the same requests.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from net_kit import CHAIN, TIMEOUT, Backend, Cluster, cluster, node_seed

from medchaind.errors import DecodeError
from medchaind.net import (
    MAX_ERROR_MESSAGE,
    MalformedResponse,
    MessageTooLarge,
    NetLimits,
    NetworkError,
    PeerId,
    RemoteError,
)
from medchaind.net.libp2p_net import Libp2pNetwork
from medchaind.net.shared import STATUS_ERROR
from medchaind.testing.wait import Changes

LOCAL = ["/ip4/127.0.0.1/tcp/0"]
MiB = 1024 * 1024


class CountingStream:
    """Passes everything to ``inner``; counts what the server reads from it."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.bytes_read = 0

    async def read(self, n: int | None = None) -> bytes:
        data: bytes = await self._inner.read(n)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountingNetwork(Libp2pNetwork):
    """A Libp2pNetwork whose inbound request streams record the bytes read from them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams: list[CountingStream] = []

    async def _serve_stream(self, protocol: str, stream: Any) -> None:
        counted = CountingStream(stream)
        self.streams.append(counted)
        await super()._serve_stream(protocol, counted)  # type: ignore[arg-type]

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.streams)


@asynccontextmanager
async def server_and_clients(
    limits: NetLimits, n_clients: int = 1
) -> AsyncIterator[tuple[CountingNetwork, list[Libp2pNetwork]]]:
    server = CountingNetwork(node_seed(1, "inbound"), LOCAL, chain_id=CHAIN, limits=limits)
    async with trio.open_nursery() as nursery:
        group = Cluster(nursery, [server])
        await group.start(0)
        clients = []
        for i in range(n_clients):
            # clients with the default (large) limits: they would send anything
            client = Libp2pNetwork(node_seed(2 + i, "inbound"), LOCAL, bootstrap=server.listen_addrs(), chain_id=CHAIN)
            group.nodes.append(client)
            clients.append(client)
            await group.start(i + 1)
        with trio.fail_after(TIMEOUT):
            for client in clients:
                await client.wait_peers(1)
            await server.wait_peers(n_clients)
        try:
            yield server, clients
        finally:
            nursery.cancel_scope.cancel()


async def test_an_oversize_request_is_cut_off_after_its_length_prefix() -> None:
    """1 MiB to a protocol whose requests are at most 256 bytes: the server reads the
    length prefix (3 bytes), answers "too large" and never reads the body."""
    seen: list[int] = []

    async def handler(peer: PeerId, data: bytes) -> bytes:
        seen.append(len(data))
        return b"ok"

    async with server_and_clients(NetLimits(request_limits={"sync/1": 256})) as (server, (client,)):
        server.set_handler("sync/1", handler)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(MessageTooLarge, match=r"sync/1 request limit \(256\)"):
                await client.request(server.peer_id, "sync/1", b"\x00" * MiB)
            assert seen == []
            oversize_read = server.bytes_read
            # the same node still serves requests within the limit, and reads exactly them
            assert await client.request(server.peer_id, "sync/1", b"\x01" * 256) == b"ok"
        assert seen == [256]
        assert oversize_read <= 10, f"the server read {oversize_read} bytes of a refused 1 MiB request"
        assert server.bytes_read - oversize_read == 2 + 256  # uvarint(256) is 2 bytes
        assert server.statistics().requests_errored == 1


async def test_a_request_is_not_read_when_no_inbound_slot_is_free() -> None:
    """Slots are taken before reading: with both slots held, a 512 KiB request is
    answered "busy" with none of it read (it used to be read whole, then refused)."""
    release = trio.Event()
    entered: list[int] = []
    changes = Changes()

    async def stuck(peer: PeerId, data: bytes) -> bytes:
        entered.append(len(data))
        changes.notify()
        await release.wait()
        return b"done"

    limits = NetLimits(max_inbound_requests=2)
    async with server_and_clients(limits, n_clients=2) as (server, (a, b)):
        server.set_handler("echo/1", stuck)
        async with trio.open_nursery() as nursery:
            for client in (a, b):  # one slot each: the per-peer bound is not what refuses
                nursery.start_soon(functools.partial(client.request, server.peer_id, "echo/1", b"small", timeout=30.0))
            with trio.fail_after(TIMEOUT):
                await changes.wait_for(lambda: len(entered) == 2)
                before = server.bytes_read
                with pytest.raises(RemoteError, match="busy"):
                    await a.request(server.peer_id, "echo/1", b"\x00" * (512 * 1024))
            refused_read = server.bytes_read - before
            release.set()
        assert refused_read == 0, f"the server read {refused_read} bytes of a request it had no slot for"
        assert entered == [5, 5]


async def test_one_peer_cannot_hold_more_than_its_share_of_concurrent_requests() -> None:
    """20 concurrent streams from one peer: 8 (the per-peer default) are served, 12 are
    refused at once; another peer is still served meanwhile."""
    release = trio.Event()
    in_handler: list[PeerId] = []
    changes = Changes()

    async def stuck(peer: PeerId, data: bytes) -> bytes:
        in_handler.append(peer)
        changes.notify()
        if data == b"flood":
            await release.wait()
        return b"served:" + data

    limits = NetLimits()
    assert limits.max_inbound_requests_per_peer == 8
    async with server_and_clients(limits, n_clients=2) as (server, (flooder, other)):
        server.set_handler("echo/1", stuck)
        results: list[bytes | str] = []

        async def one() -> None:
            try:
                results.append(await flooder.request(server.peer_id, "echo/1", b"flood", timeout=30.0))
            except NetworkError as exc:
                results.append(str(exc))
            changes.notify()

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
            with trio.fail_after(TIMEOUT):
                await changes.wait_for(lambda: len(results) == 12 and len(in_handler) == 8)
                assert all(isinstance(r, str) and "busy" in r and "from this peer" in r for r in results)
                assert in_handler.count(flooder.peer_id) == 8
                # the flooder's share is full; another peer's request is admitted at once
                assert await other.request(server.peer_id, "echo/1", b"hello") == b"served:hello"
            release.set()
        assert results[12:] == [b"served:flood"] * 8
        assert in_handler.count(flooder.peer_id) == 8


# ------------------------------------------------------------------ both backends


async def test_contract_protocol_request_limit(backend: Backend, backend_clock: object) -> None:
    calls: list[int] = []

    async def handler(peer: PeerId, data: bytes) -> bytes:
        calls.append(len(data))
        return b"ok"

    async with cluster(backend, 2, limits=NetLimits(request_limits={"small/1": 64}), salt="limit") as c:
        c[0].set_handler("small/1", handler)
        c[0].set_handler("big/1", handler)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(MessageTooLarge, match=r"small/1 request limit \(64\)"):
                await c[1].request(c.ids[0], "small/1", b"x" * 65)
            assert await c[1].request(c.ids[0], "small/1", b"x" * 64) == b"ok"
            assert await c[1].request(c.ids[0], "big/1", b"x" * 4096) == b"ok"  # other protocols unaffected
        assert calls == [64, 4096]


async def test_contract_error_messages_are_at_most_1_kib(
    backend: Backend, backend_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/protocol.md §13.1: a server cuts its status-1/2 message to 1 KiB; a requester
    refuses a longer one without reading it (MalformedResponse, a DecodeError, so sync
    penalises the peer as for any malformed answer)."""

    async def wordy(peer: PeerId, data: bytes) -> bytes:
        raise ValueError("é" * 4096)  # 8 KiB of UTF-8: cut on a character boundary

    async with cluster(backend, 2, salt="errmsg") as c:
        c[0].set_handler("wordy/1", wordy)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(RemoteError) as cut:
                await c[1].request(c.ids[0], "wordy/1", b"q")
        assert "handler error: ValueError: éé" in str(cut.value)
        assert len(str(cut.value).split(": ", 1)[1].encode()) <= MAX_ERROR_MESSAGE

        # a server that does not follow the rule (its message announces 1 KiB + 1)
        module = "medchaind.net.memory" if backend == "memory" else "medchaind.net.libp2p_net"
        sizes = iter([MAX_ERROR_MESSAGE, MAX_ERROR_MESSAGE + 1, 60 * MiB])

        async def rogue(*args: Any) -> tuple[int, bytes]:
            return STATUS_ERROR, b"e" * next(sizes)

        monkeypatch.setattr(f"{module}.serve_request", rogue)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(RemoteError):  # exactly 1 KiB: an ordinary error
                await c[1].request(c.ids[0], "wordy/1", b"q")
            for size in (MAX_ERROR_MESSAGE + 1, 60 * MiB):
                with pytest.raises(MalformedResponse, match=f"message of {size} bytes") as refused:
                    await c[1].request(c.ids[0], "wordy/1", b"q")
                assert isinstance(refused.value, DecodeError) and not isinstance(refused.value, RemoteError)
        assert c[1].statistics().requests_failed == 4


async def test_contract_per_peer_concurrency_bound(backend: Backend, backend_clock: object) -> None:
    release = trio.Event()
    inside = 0
    changes = Changes()

    async def stuck(peer: PeerId, data: bytes) -> bytes:
        nonlocal inside
        inside += 1
        changes.notify()
        await release.wait()
        return b"ok"

    limits = NetLimits(max_inbound_requests_per_peer=3)
    async with cluster(backend, 2, limits=limits, salt="perpeer") as c:
        c[0].set_handler("slow/1", stuck)
        outcomes: list[str] = []

        async def one() -> None:
            try:
                outcomes.append((await c[1].request(c.ids[0], "slow/1", b"q", timeout=60.0)).decode())
            except RemoteError as exc:
                outcomes.append("busy" if "busy" in str(exc) else str(exc))
            changes.notify()

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(one)
            with trio.fail_after(TIMEOUT):
                await changes.wait_for(lambda: len(outcomes) == 2 and inside == 3)
            release.set()
        assert sorted(outcomes) == ["busy", "busy", "ok", "ok", "ok"]
        assert c[0].statistics().requests_errored == 2


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="request limit of sync/1"):
        NetLimits(request_limits={"sync/1": 0})
    with pytest.raises(ValueError, match="protocol name"):
        NetLimits(request_limits={"/Bad": 10})
    with pytest.raises(ValueError, match="per_peer"):
        NetLimits(max_inbound_requests_per_peer=0)
    limits = NetLimits(request_limits={"sync/1": 256})
    assert limits.request_limit("sync/1") == 256 and limits.request_limit("other/1") == limits.max_request_size
    with pytest.raises(TypeError):
        limits.request_limits["sync/1"] = 1  # type: ignore[index]


def test_the_node_gives_every_protocol_it_serves_its_request_limit() -> None:
    """node.REQUEST_LIMITS covers each protocol the node's services register, and each
    limit admits the largest valid request of that protocol."""
    from medchaind import codec
    from medchaind.node.blobs import BATCH, BlobService
    from medchaind.node.node import REQUEST_LIMITS
    from medchaind.sync import SyncService
    from medchaind.sync.snapshots import SnapshotServer, decode_snapshot_request, encode_snapshot_request
    from medchaind.sync.wire import decode_sync_request

    class Recorder:
        def __init__(self) -> None:
            self.protocols: list[str] = []

        def set_handler(self, protocol: str, handler: object) -> None:
            self.protocols.append(protocol)

    class Ledger:
        def add_listener(self, listener: object) -> None:
            pass

    net = Recorder()
    SyncService(None, None, net)  # type: ignore[arg-type]
    BlobService(None, net)  # type: ignore[arg-type]
    SnapshotServer(Ledger(), net)  # type: ignore[arg-type]
    # the consensus engine serves txs/1 (BftEngine.__init__, which needs a real ledger)
    from medchaind.consensus.compact import MAX_TXS_PER_REQUEST, TXS_PROTOCOL, encode_txs_request

    net.protocols.append(TXS_PROTOCOL)
    assert len(encode_txs_request([bytes(32)] * MAX_TXS_PER_REQUEST)) <= REQUEST_LIMITS[TXS_PROTOCOL]
    assert sorted(net.protocols) == sorted(REQUEST_LIMITS)
    largest_snapshot = encode_snapshot_request("chunk", height=2**64 - 1, index=2**64 - 1)
    assert decode_snapshot_request(largest_snapshot)
    assert len(largest_snapshot) <= REQUEST_LIMITS["snapshot/1"]
    largest_sync = codec.encode({"op": "blocks", "from": 2**64 - 1, "to": 2**64 - 1})
    assert decode_sync_request(largest_sync) and len(largest_sync) <= REQUEST_LIMITS["sync/1"]
    assert REQUEST_LIMITS["blobs/1"] == 32 * BATCH and REQUEST_LIMITS["blob/1"] == 32
