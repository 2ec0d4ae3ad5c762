"""MemoryNetwork only: deterministic replay and fault injection, under autojump_clock."""

from __future__ import annotations

import random

import pytest
import trio
from net_kit import TIMEOUT

from medchaind.net import MemoryNetwork, NotRunning, PeerId, RequestTimeout

TOPIC = "consensus/1"
# Per observer (a receiver's channel, or a publisher's request outcomes), in the order
# observed: (virtual time since start, origin or outcome, data). Observers are separate
# tasks, so only each one's own order is meaningful, not the interleaving between them.
Trace = dict[str, list[tuple[float, str, bytes]]]


async def echo(peer: PeerId, data: bytes) -> bytes:
    return b"echo:" + data


async def run_scenario(seed: int) -> Trace:
    """Four endpoints gossip and make requests over a lossy, jittery network; returns
    every delivery as (virtual time since start, receiver, origin, data)."""
    hub = MemoryNetwork(seed, latency_ms=(1, 40), loss=0.2)
    names = ["a", "b", "c", "d"]
    endpoints = [hub.endpoint(name) for name in names]
    trace: Trace = {}
    start = trio.current_time()

    def observe(observer: str, what: str, data: bytes) -> None:
        trace.setdefault(observer, []).append((round(trio.current_time() - start, 6), what, data))

    async def record(name: str, channel: trio.MemoryReceiveChannel[tuple[PeerId, bytes]]) -> None:
        async for origin, data in channel:
            observe(name, origin, data)

    async def publisher(index: int) -> None:
        # Each publisher's own schedule comes from its own rng: deterministic per seed.
        rng = random.Random(f"{seed}/{index}")
        me, right = endpoints[index], endpoints[(index + 1) % 4]
        for k in range(30):
            await trio.sleep(rng.randint(0, 20) / 1000)
            await me.publish(TOPIC, f"{names[index]}-{k}".encode())
            if k % 10 == 0:  # one outstanding request per link at a time
                try:
                    reply = await me.request(right.peer_id, "echo/1", b"%d" % k, timeout=0.2)
                    observe(f"{names[index]}-requests", "reply", reply)
                except RequestTimeout:
                    observe(f"{names[index]}-requests", "timeout", b"%d" % k)

    async with trio.open_nursery() as nursery:
        for ep in endpoints:
            ep.set_handler("echo/1", echo)
            nursery.start_soon(record, ep.peer_id, ep.subscribe(TOPIC))
            await nursery.start(ep.run)
        async with trio.open_nursery() as publishers:
            for i in range(4):
                publishers.start_soon(publisher, i)
        await trio.sleep(1)  # virtual: lets every in-flight message land or be lost
        nursery.cancel_scope.cancel()
    return trace


async def test_same_seed_replays_the_same_deliveries_at_the_same_times(autojump_clock: trio.abc.Clock) -> None:
    first = await run_scenario(7)
    second = await run_scenario(7)
    assert first == second
    deliveries = sum(len(first[name]) for name in "abcd")
    assert 200 < deliveries < 4 * 3 * 30  # delivered a lot, and lost some (loss=0.2)
    outcomes = [what for name in "abcd" for _, what, _ in first[f"{name}-requests"]]
    assert len(outcomes) == 12 and "timeout" in outcomes and "reply" in outcomes
    other = await run_scenario(8)
    assert other != first


async def test_partition_and_heal(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(1)
    a, b, c, d = (hub.endpoint(n) for n in "abcd")
    channels = {ep.peer_id: ep.subscribe(TOPIC) for ep in (a, b, c, d)}
    async with trio.open_nursery() as nursery:
        for ep in (a, b, c, d):
            await nursery.start(ep.run)
        hub.partition({"a", "b"}, {"c", "d"})
        assert a.connected_peers() == ["b"] and c.connected_peers() == ["d"]
        await a.publish(TOPIC, b"left")
        await c.publish(TOPIC, b"right")
        with trio.fail_after(TIMEOUT):
            assert await channels["b"].receive() == ("a", b"left")
            assert await channels["d"].receive() == ("c", b"right")
        hub.heal()
        with trio.fail_after(TIMEOUT):
            await a.wait_peers(3)
        await a.publish(TOPIC, b"healed")
        with trio.fail_after(TIMEOUT):
            for name in "bcd":
                assert await channels[name].receive() == ("a", b"healed")
        # Nothing crossed the partition while it stood.
        assert (c.statistics().received, d.statistics().received) == (1, 2)
        nursery.cancel_scope.cancel()


async def test_partition_swallows_messages_in_flight(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(1, latency_ms=(50, 50))
    a, b = hub.endpoint("a"), hub.endpoint("b")
    channel = b.subscribe(TOPIC)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        await a.publish(TOPIC, b"lost")
        hub.partition({"a"}, {"b"})
        await trio.sleep(0.1)  # virtual: past the 50 ms latency, so "lost" falls due while cut off
        hub.heal()
        await a.publish(TOPIC, b"after")
        with trio.fail_after(TIMEOUT):
            assert await channel.receive() == ("a", b"after")
        nursery.cancel_scope.cancel()


async def test_cut_one_link(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(1)
    a, b, c = (hub.endpoint(n) for n in "abc")
    channels = {ep.peer_id: ep.subscribe(TOPIC) for ep in (a, b, c)}
    b.set_handler("echo/1", echo)
    async with trio.open_nursery() as nursery:
        for ep in (a, b, c):
            await nursery.start(ep.run)
        hub.cut("a", "b")
        assert a.connected_peers() == ["c"] and b.connected_peers() == ["c"]
        with pytest.raises(RequestTimeout):
            await a.request(PeerId("b"), "echo/1", b"x", timeout=1.0)
        await a.publish(TOPIC, b"one")
        with trio.fail_after(TIMEOUT):
            assert await channels["c"].receive() == ("a", b"one")
        hub.restore("a", "b")
        assert await a.request(PeerId("b"), "echo/1", b"x") == b"echo:x"
        await a.publish(TOPIC, b"two")
        with trio.fail_after(TIMEOUT):
            assert await channels["b"].receive() == ("a", b"two")  # "one" never reached b
        nursery.cancel_scope.cancel()


async def test_loss(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(3, loss=1.0)
    a, b = hub.endpoint("a"), hub.endpoint("b")
    channel = b.subscribe(TOPIC, buffer=1000)
    b.set_handler("echo/1", echo)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        await a.publish(TOPIC, b"gone")
        with pytest.raises(RequestTimeout):
            await a.request(PeerId("b"), "echo/1", b"x", timeout=0.5)
        hub.set_loss(0.0)
        await a.publish(TOPIC, b"fence")
        with trio.fail_after(TIMEOUT):
            assert await channel.receive() == ("a", b"fence")
        hub.set_loss(0.3)
        for i in range(300):
            await a.publish(TOPIC, b"m%d" % i)
        await trio.sleep(1)  # virtual: past every message's latency; how many survive loss is the test
        delivered = b.statistics().received - 1
        assert 150 < delivered < 270
        nursery.cancel_scope.cancel()


async def test_latency_stays_within_bounds(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(5, latency_ms=(10, 30))
    a, b = hub.endpoint("a"), hub.endpoint("b")
    channel = b.subscribe(TOPIC, buffer=1000)
    got: list[tuple[bytes, float]] = []
    all_in = trio.Event()

    async def consume() -> None:
        async for _, data in channel:
            got.append((data, trio.current_time()))
            if len(got) == 100:
                all_in.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        nursery.start_soon(consume)
        sent: dict[bytes, float] = {}
        for i in range(100):
            data = b"m%d" % i
            sent[data] = trio.current_time()
            await a.publish(TOPIC, data)
            if i % 3 == 0:
                await trio.sleep(0.005)
        with trio.fail_after(TIMEOUT):
            await all_in.wait()
        assert sorted(data for data, _ in got) == sorted(b"m%d" % i for i in range(100))
        assert [data for data, _ in got] != [b"m%d" % i for i in range(100)]  # links may reorder
        for data, at in got:
            assert 0.010 - 1e-9 <= at - sent[data] <= 0.030 + 1e-9
        nursery.cancel_scope.cancel()


async def test_crash_and_rejoin(autojump_clock: trio.abc.Clock) -> None:
    hub = MemoryNetwork(1)
    a, c = hub.endpoint("a"), hub.endpoint("c")
    channel = c.subscribe(TOPIC)
    entered, release = trio.Event(), trio.Event()

    async def stuck(peer: PeerId, data: bytes) -> bytes:
        entered.set()
        await release.wait()
        return b"late"

    a.set_handler("slow/1", stuck)
    outcome: list[BaseException] = []
    failed = trio.Event()

    async def pending_request() -> None:
        try:
            await c.request(PeerId("a"), "slow/1", b"x", timeout=60)
        except NotRunning as exc:
            outcome.append(exc)
            failed.set()

    c_scope = trio.CancelScope()

    async def run_c(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with c_scope:
            await c.run(task_status=task_status)

    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(run_c)
        nursery.start_soon(pending_request)
        await entered.wait()
        c_scope.cancel()  # crash c while its request is in flight
        with trio.fail_after(TIMEOUT):
            await failed.wait()
        assert len(outcome) == 1 and isinstance(outcome[0], NotRunning)
        assert a.connected_peers() == []
        await a.publish(TOPIC, b"while-down")
        with pytest.raises(NotRunning):
            await c.publish(TOPIC, b"x")
        await nursery.start(c.run)
        with trio.fail_after(TIMEOUT):
            await a.wait_peers(1)
        await a.publish(TOPIC, b"after-restart")
        with trio.fail_after(TIMEOUT):
            assert await channel.receive() == ("a", b"after-restart")
        release.set()
        nursery.cancel_scope.cancel()


def test_hub_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="latency_ms"):
        MemoryNetwork(1, latency_ms=(5, 1))
    with pytest.raises(ValueError, match="loss"):
        MemoryNetwork(1, loss=1.5)
    hub = MemoryNetwork(1)
    hub.endpoint("a")
    with pytest.raises(ValueError, match="already taken"):
        hub.endpoint("a")
    with pytest.raises(ValueError, match="more than one"):
        hub.partition({"a"}, {"a"})
    with pytest.raises(ValueError, match="invalid"):
        hub.endpoint("b").subscribe("Bad Topic")
