"""The NetworkAPI contract (medchaind/net/api.py), checked against both backends.

Every test takes ``backend`` (memory, libp2p) through the ``backend_clock`` fixture, so
the memory run uses an autojumping mock clock and the libp2p run real sockets.
"""

from __future__ import annotations

import pytest
import trio
from net_kit import TIMEOUT, Backend, cluster, receive_n, unknown_peer

from medchaind.net import (
    MessageTooLarge,
    NetLimits,
    NotRunning,
    PeerId,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
)
from medchaind.testing.wait import poll_until

TOPIC = "tx/1"
SMALL = NetLimits(max_gossip_size=64 * 1024, max_request_size=256 * 1024)


async def echo(peer: PeerId, data: bytes) -> bytes:
    return b"echo:" + data


async def test_publish_reaches_every_other_node(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 4) as c:
        channels = c.subscribe_all(TOPIC)
        await c.wait_topic(TOPIC)
        for i, node in enumerate(c.nodes):
            await node.publish(TOPIC, f"from-{i}".encode())
        with trio.fail_after(TIMEOUT):
            for i, channel in enumerate(channels):
                got = sorted(await receive_n(channel, 3))
                expected = sorted((c.ids[j], f"from-{j}".encode()) for j in range(4) if j != i)
                assert got == expected
        for node in c.nodes:
            stats = node.statistics()
            assert (stats.published, stats.received) == (1, 3)
            assert stats.topics[TOPIC].received == 3


async def test_no_loopback_to_publisher(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 2) as c:
        a, b = c.subscribe_all(TOPIC)
        await c.wait_topic(TOPIC)
        await c[0].publish(TOPIC, b"ping")
        with trio.fail_after(TIMEOUT):
            assert await b.receive() == (c.ids[0], b"ping")
            await c[1].publish(TOPIC, b"pong")
            # Anything looped back to node 0 would have been queued before "pong" arrived.
            assert await a.receive() == (c.ids[1], b"pong")
        with pytest.raises(trio.WouldBlock):
            a.receive_nowait()
        assert c[0].statistics().received == 1


async def test_identical_bytes_are_one_message(backend: Backend, backend_clock: object) -> None:
    """Message ids are SHA-256 of the data: re-publishing or a second publisher is a no-op."""
    async with cluster(backend, 3) as c:
        channels = c.subscribe_all(TOPIC)
        await c.wait_topic(TOPIC)
        await c[0].publish(TOPIC, b"same")
        with trio.fail_after(TIMEOUT):
            assert await channels[2].receive() == (c.ids[0], b"same")
            assert await channels[1].receive() == (c.ids[0], b"same")
        await c[0].publish(TOPIC, b"same")
        await c[1].publish(TOPIC, b"same")
        await c[1].publish(TOPIC, b"fence")
        with trio.fail_after(TIMEOUT):
            assert await channels[2].receive() == (c.ids[1], b"fence")
            assert await channels[0].receive() == (c.ids[1], b"fence")
        with pytest.raises(trio.WouldBlock):
            channels[2].receive_nowait()
        assert c[0].statistics().published == 1 and c[1].statistics().published == 1


async def test_validator_rejects_before_delivery(backend: Backend, backend_clock: object) -> None:
    seen: list[tuple[PeerId, bytes]] = []

    def validator(origin: PeerId, data: bytes) -> bool:
        seen.append((origin, data))
        if data == b"explode":
            raise ValueError("validator bug")
        return not data.startswith(b"bad")

    async with cluster(backend, 3) as c:
        channels = c.subscribe_all(TOPIC, validator)
        await c.wait_topic(TOPIC)
        for data in (b"bad-1", b"explode", b"good-1"):
            await c[0].publish(TOPIC, data)
        with trio.fail_after(TIMEOUT):
            for channel in channels[1:]:
                assert await channel.receive() == (c.ids[0], b"good-1")
        for node in c.nodes[1:]:
            stats = node.statistics()
            assert stats.rejected_by_validator == 2
            assert stats.topics[TOPIC].rejected_by_validator == 2
            assert stats.received == 1
        assert c[0].statistics().rejected_by_validator == 0  # own publications skip our validator
        assert all(origin == c.ids[0] for origin, _ in seen)


async def test_request_round_trip(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 3) as c:
        for node in c.nodes:
            node.set_handler("echo/1", echo)
        big = bytes(range(256)) * 4096  # 1 MiB: several yamux windows
        with trio.fail_after(TIMEOUT):
            assert await c[1].request(c.ids[0], "echo/1", b"hi") == b"echo:hi"
            assert await c[2].request(c.ids[1], "echo/1", big) == b"echo:" + big
            assert await c[0].request(c.ids[2], "echo/1", b"") == b"echo:"
        assert c[0].statistics().requests_served == 1
        assert c[1].statistics().requests_sent == 1


async def test_handler_exception_is_a_remote_error_and_server_keeps_serving(
    backend: Backend, backend_clock: object
) -> None:
    async def flaky(peer: PeerId, data: bytes) -> bytes:
        if data == b"boom":
            raise ValueError("no such block")
        return data.upper()

    async with cluster(backend, 2) as c:
        c[0].set_handler("sync/1", flaky)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(RemoteError, match="ValueError: no such block"):
                await c[1].request(c.ids[0], "sync/1", b"boom")
            assert await c[1].request(c.ids[0], "sync/1", b"ok") == b"OK"
            with pytest.raises(RemoteError, match="no handler|does not serve"):
                await c[1].request(c.ids[0], "blob/1", b"x")
        server, client = c[0].statistics(), c[1].statistics()
        assert server.requests_served == 1
        assert server.requests_errored >= 1
        assert (client.requests_sent, client.requests_failed) == (3, 2)


async def test_request_timeout(backend: Backend, backend_clock: object) -> None:
    release = trio.Event()

    async def stuck(peer: PeerId, data: bytes) -> bytes:
        await release.wait()
        return b"late"

    async with cluster(backend, 2) as c:
        c[0].set_handler("slow/1", stuck)
        c[0].set_handler("echo/1", echo)
        with trio.fail_after(TIMEOUT):
            start = trio.current_time()
            with pytest.raises(RequestTimeout):
                await c[1].request(c.ids[0], "slow/1", b"x", timeout=0.5)
            assert trio.current_time() - start >= 0.5
            release.set()
            assert await c[1].request(c.ids[0], "echo/1", b"after") == b"echo:after"


async def test_unreachable_and_not_running(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 2) as c:
        with trio.fail_after(TIMEOUT):
            with pytest.raises(PeerUnreachable):
                await c[0].request(c.ids[0], "echo/1", b"self")
            with pytest.raises(PeerUnreachable):
                await c[0].request(unknown_peer(backend), "echo/1", b"x", timeout=2.0)
        await c.stop(1)
        with pytest.raises(NotRunning):
            await c[1].publish(TOPIC, b"x")
        with pytest.raises(NotRunning):
            await c[1].request(c.ids[0], "echo/1", b"x")


async def test_oversize_messages_are_rejected(backend: Backend, backend_clock: object) -> None:
    async def huge(peer: PeerId, data: bytes) -> bytes:
        return b"r" * (SMALL.max_request_size + 1)

    async with cluster(backend, 2, limits=SMALL) as c:
        c[0].set_handler("echo/1", echo)
        c[0].set_handler("huge/1", huge)
        with pytest.raises(MessageTooLarge):
            await c[1].publish(TOPIC, b"g" * (SMALL.max_gossip_size + 1))
        await c[1].publish(TOPIC, b"g" * SMALL.max_gossip_size)  # the limit itself is fine
        with trio.fail_after(TIMEOUT):
            with pytest.raises(MessageTooLarge):
                await c[1].request(c.ids[0], "echo/1", b"q" * (SMALL.max_request_size + 1))
            with pytest.raises(MessageTooLarge):
                await c[1].request(c.ids[0], "huge/1", b"")
            ok = b"q" * (SMALL.max_request_size - len(b"echo:"))
            assert await c[1].request(c.ids[0], "echo/1", ok) == b"echo:" + ok


async def test_burst_of_1000_is_delivered_in_full(backend: Backend, backend_clock: object) -> None:
    """DESIGN.md §5 regression: py-libp2p's defaults delivered 32 of a 1,000-message burst."""
    count = 1000
    async with cluster(backend, 3) as c:
        channels = c.subscribe_all(TOPIC)
        await c.wait_topic(TOPIC)
        received: list[list[bytes]] = [[], []]

        async def drain(k: int) -> None:
            for _ in range(count):
                received[k].append((await channels[k + 1].receive())[1])

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, 0)
                nursery.start_soon(drain, 1)
                for i in range(count):
                    await c[0].publish(TOPIC, i.to_bytes(4, "big") + b"\x00" * 196)
        expected = {i.to_bytes(4, "big") + b"\x00" * 196 for i in range(count)}
        for got in received:
            assert len(got) == count and set(got) == expected
        for node in c.nodes:
            stats = node.statistics()
            assert stats.dropped_full_buffer == 0 and stats.dropped_outbound == 0
        assert c[0].statistics().published == count


async def test_full_subscriber_buffer_drops_are_counted(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 2) as c:
        c[0].subscribe(TOPIC)
        slow = c[1].subscribe(TOPIC, buffer=10)
        await c.wait_topic(TOPIC)
        for i in range(50):
            await c[0].publish(TOPIC, b"m%d" % i)

        def accounted() -> bool:
            stats = c[1].statistics()
            return stats.received + stats.dropped_full_buffer == 50

        with trio.fail_after(TIMEOUT):
            await poll_until(accounted)
        stats = c[1].statistics()
        assert (stats.received, stats.dropped_full_buffer) == (10, 40)
        assert stats.topics[TOPIC].dropped_full_buffer == 40
        kept = {slow.receive_nowait()[1] for _ in range(10)}
        assert len(kept) == 10 and kept <= {b"m%d" % i for i in range(50)}


async def test_resubscribe_after_closing_the_channel(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 2) as c:
        c[0].subscribe(TOPIC)
        first = c[1].subscribe(TOPIC)
        with pytest.raises(ValueError, match="already subscribed"):
            c[1].subscribe(TOPIC)
        await c.wait_topic(TOPIC)
        await c[0].publish(TOPIC, b"one")
        with trio.fail_after(TIMEOUT):
            assert await first.receive() == (c.ids[0], b"one")
        await first.aclose()
        second = c[1].subscribe(TOPIC, lambda origin, data: data != b"two")
        await c.wait_topic(TOPIC)
        await c[0].publish(TOPIC, b"two")
        await c[0].publish(TOPIC, b"three")
        with trio.fail_after(TIMEOUT):
            assert await second.receive() == (c.ids[0], b"three")


async def test_peers_and_wait_peers(backend: Backend, backend_clock: object) -> None:
    async with cluster(backend, 4) as c:
        for i, node in enumerate(c.nodes):
            assert node.connected_peers() == sorted(p for j, p in enumerate(c.ids) if j != i)
        await c.stop(3)
        with trio.fail_after(TIMEOUT):
            await poll_until(lambda: all(c.ids[3] not in node.connected_peers() for node in c.nodes[:3]))
        assert c[3].connected_peers() == []
        await c.start(3)
        with trio.fail_after(TIMEOUT):
            await c[3].wait_peers(3)
            await c[0].wait_peers(3)
