"""The blocking Client (run in a worker thread) and the anyio AsyncClient (under trio and
under asyncio) against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
from ipc_harness import WAIT, Harness

from medchaind.errors import MedchainError
from medchaind.ipc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    AsyncClient,
    Client,
    RPCError,
    SubscriptionOverflowError,
)
from medchaind.ipc import server as server_module

# ====================================================================== blocking Client


async def test_client_calls_and_errors(ipc: Harness) -> None:
    def work() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with Client(ipc.path, timeout=WAIT) as c:
            out["modules"] = c.call("rpc_modules")
            out["named"] = c.call("test_add", {"a": 1, "b": 2})
            out["positional"] = c.call("test_add", [1, 2, 3])
            out["none"] = c.call("test_echo")
            with pytest.raises(RPCError) as e1:
                c.call("test_failRpc")
            out["rpc_error"] = (e1.value.code, e1.value.message, e1.value.data)
            with pytest.raises(RPCError) as e2:
                c.call("test_failRejected")
            out["rejected"] = (e2.value.code, e2.value.data)
            with pytest.raises(RPCError) as e3:
                c.call("nope_nope")
            out["unknown"] = e3.value.code
            c.notify("test_echo", ["fire and forget"])
            out["after_notify"] = c.call("test_echo", ["x"])
        assert c.closed
        return out

    out = await trio.to_thread.run_sync(work)
    assert out["modules"] == {"rpc": "1.0", "test": "1.0", "tx": "1.0"}
    assert out["named"] == 3 and out["positional"] == 6 and out["none"] == {}
    assert out["rpc_error"] == (INVALID_PARAMS, "x must be positive", {"field": "x"})
    assert out["rejected"] == (
        -32010,
        {"code": "nonce_too_low", "reason": "nonce 3 is below the account nonce 5"},
    )
    assert out["unknown"] == -32601
    assert out["after_notify"] == ["x"]
    assert ipc.state.calls.count("test_echo") == 3


async def test_client_timeout_leaves_connection_usable(ipc: Harness) -> None:
    def work() -> Any:
        with Client(ipc.path, timeout=WAIT) as c:
            with pytest.raises(TimeoutError, match="no reply to test_wait"):
                c.call("test_wait", timeout=0.05)
            trio.from_thread.run_sync(ipc.state.gate.set)
            # The late "released" reply is skipped; this call gets its own reply.
            return c.call("test_echo", ["mine"])

    assert await trio.to_thread.run_sync(work) == ["mine"]


async def test_client_subscription_interleaved_with_calls(ipc: Harness) -> None:
    def work() -> tuple[list[Any], Any, int]:
        with Client(ipc.path, timeout=WAIT) as c:
            with c.subscribe("ticks") as sub:
                assert sub.id.startswith("0x")
                # Notifications published by a call arrive before its reply: they are
                # queued for the subscription while the call waits for its own id.
                assert c.call("test_publish", {"topic": "ticks", "payload": 1}) == 1
                assert c.call("test_publish", {"topic": "ticks", "payload": 2}) == 1
                echoed = c.call("test_echo", ["between"])
                first_two = [next(sub), sub.get(timeout=WAIT)]
                c.call("test_publish", ["ticks", {"n": 3}])
                first_two.append(next(iter(sub)))
                with pytest.raises(TimeoutError):
                    sub.get(timeout=0.01)
            assert sub.closed
            remaining = trio.from_thread.run_sync(ipc.hub.subscriber_count)
            return first_two, echoed, remaining

    notes, echoed, remaining = await trio.to_thread.run_sync(work)
    assert notes == [1, 2, {"n": 3}]
    assert echoed == ["between"]
    assert remaining == 0


async def test_client_subscription_ends_when_server_closes(ipc: Harness) -> None:
    def work() -> list[Any]:
        with Client(ipc.path, timeout=WAIT) as c:
            sub = c.subscribe({"topic": "ticks"})
            c.call("test_publish", ["ticks", "last"])
            for conn in trio.from_thread.run_sync(ipc.server.connections):
                trio.from_thread.run_sync(conn.close)
            got = list(sub)  # buffered "last", then end of iteration
            with pytest.raises(ConnectionError, match="closed by the node"):
                c.call("test_echo")
            return got

    assert await trio.to_thread.run_sync(work) == ["last"]


async def test_client_overflow_is_reported(ipc: Harness) -> None:
    def work() -> list[Any]:
        with Client(ipc.path, timeout=WAIT) as c:
            sub = c.subscribe("ticks", max_buffered=2)
            for i in range(4):
                c.call("test_publish", ["ticks", i])
            got = [next(sub), next(sub)]
            with pytest.raises(SubscriptionOverflowError, match="buffered more than 2"):
                next(sub)
            return got

    assert await trio.to_thread.run_sync(work) == [0, 1]


async def test_client_connect_failure_is_clear(short_dir: Path) -> None:
    with pytest.raises(ConnectionError, match="is the node running"):
        Client(short_dir / "absent.ipc")


async def test_client_request_too_large(start_server: Any) -> None:
    ipc = await start_server(max_line_bytes=512)

    def work() -> None:
        with Client(ipc.path, timeout=WAIT) as c:
            with pytest.raises(RPCError) as exc:
                c.call("test_echo", ["z" * 1000])
            assert exc.value.code == INVALID_REQUEST
            assert "request too large" in exc.value.message
            with pytest.raises(ConnectionError):
                c.call("test_echo")

    await trio.to_thread.run_sync(work)


# ====================================================================== AsyncClient


async def test_async_client_concurrent_calls(ipc: Harness) -> None:
    results: dict[int, Any] = {}
    async with AsyncClient(ipc.path, timeout=WAIT) as c:

        async def one(i: int) -> None:
            results[i] = await c.call("test_echo", {"i": i, "pad": "p" * (i * 1000)})

        async with trio.open_nursery() as nursery:
            for i in range(30):
                nursery.start_soon(one, i)
        assert results == {i: {"i": i, "pad": "p" * (i * 1000)} for i in range(30)}
        assert await c.call("rpc_modules") == {"rpc": "1.0", "test": "1.0", "tx": "1.0"}
        with pytest.raises(RPCError) as exc:
            await c.call("test_failNotFound")
        assert (exc.value.code, exc.value.message) == (-32020, "record 7 not found")


async def test_async_client_cancelled_call_does_not_disturb_others(ipc: Harness) -> None:
    c = await AsyncClient.connect(ipc.path)
    try:
        with trio.move_on_after(0.05) as scope:
            await c.call("test_wait")  # the server holds this one
        assert scope.cancelled_caught
        ipc.state.gate.set()  # its late reply must be discarded, not given to the next call
        assert await c.call("test_add", [20, 22]) == 42
        with trio.fail_after(WAIT):
            assert await c.call("test_echo", ["ok"]) == ["ok"]
    finally:
        await c.aclose()
    assert c.closed
    with pytest.raises(ConnectionError):
        await c.call("test_echo")


async def test_async_client_default_timeout(ipc: Harness) -> None:
    async with AsyncClient(ipc.path, timeout=0.05) as c:
        with pytest.raises(TimeoutError, match="no reply to test_wait"):
            await c.call("test_wait")


async def test_async_subscription(ipc: Harness) -> None:
    async with AsyncClient(ipc.path, timeout=WAIT) as c:
        async with c.subscription({"topic": "filtered", "min": 2}) as sub:
            assert ipc.hub.subscriber_count("filtered") == 1
            ipc.hub.publish("filtered", "a", lambda m: m <= 2)
            ipc.hub.publish("filtered", "skipped", lambda m: m > 2)
            # A call in another task reads the socket too; the notification it meets is
            # queued for the subscription rather than lost.
            assert await c.call("test_publish", ["filtered", "b"]) == 1
            got = []
            with trio.fail_after(WAIT):
                async for note in sub:
                    got.append(note)
                    if len(got) == 2:
                        break
            assert got == ["a", "b"]
        assert ipc.hub.subscriber_count() == 0  # leaving the block unsubscribed


async def test_async_subscription_with_concurrent_reader_tasks(ipc: Harness) -> None:
    async with AsyncClient(ipc.path, timeout=WAIT) as c:
        async with c.subscription("ticks") as sub:
            got: list[Any] = []

            async def consume() -> None:
                async for note in sub:
                    got.append(note)
                    if len(got) == 20:
                        return

            with trio.fail_after(WAIT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(consume)
                    for i in range(20):
                        nursery.start_soon(c.call, "test_publish", ["ticks", i])
            assert sorted(got) == list(range(20))


async def test_async_client_sees_server_side_close(ipc: Harness) -> None:
    async with AsyncClient(ipc.path) as c:
        async with c.subscription("ticks") as sub:
            async with trio.open_nursery() as nursery:
                failures: list[BaseException] = []

                async def pending_call() -> None:
                    try:
                        await c.call("test_wait")
                    except ConnectionError as exc:
                        failures.append(exc)

                nursery.start_soon(pending_call)
                with trio.fail_after(WAIT):
                    await ipc.state.waiting.wait()
                for conn in ipc.server.connections():
                    conn.close()
            assert len(failures) == 1 and "closed" in str(failures[0])
            with trio.fail_after(WAIT):
                assert [n async for n in sub] == []  # iteration just ends


async def test_async_client_reports_why_the_node_closed(start_server: Any) -> None:
    ipc = await start_server(max_line_bytes=512)
    async with AsyncClient(ipc.path, timeout=WAIT) as c:
        with pytest.raises(ConnectionError, match="node said: request too large"):
            await c.call("test_echo", ["z" * 1000])


async def test_async_client_connect_failure(short_dir: Path) -> None:
    with pytest.raises(ConnectionError, match="is the node running"):
        await AsyncClient.connect(short_dir / "absent.ipc")


async def test_async_client_under_asyncio(ipc: Harness) -> None:
    """anyio lets the same client run in an asyncio application."""

    async def app() -> tuple[Any, list[Any]]:
        async with AsyncClient(ipc.path, timeout=WAIT) as c:
            results = await asyncio.gather(*(c.call("test_add", [i, i]) for i in range(10)))
            async with c.subscription("ticks") as sub:
                await c.call("test_publish", ["ticks", "from asyncio"])
                with anyio.fail_after(WAIT):
                    note = await sub.get()
            return results, [note]

    results, notes = await trio.to_thread.run_sync(lambda: asyncio.run(app()))
    assert results == [2 * i for i in range(10)]
    assert notes == ["from asyncio"]
    assert ipc.hub.subscriber_count() == 0  # the unsubscribe call completed


def test_one_rpc_error_class_for_server_and_clients() -> None:
    assert server_module.RPCError is RPCError
    assert issubclass(RPCError, MedchainError)
    assert RPCError(-32602, "bad", {"f": 1}).to_json() == {
        "code": -32602,
        "message": "bad",
        "data": {"f": 1},
    }
