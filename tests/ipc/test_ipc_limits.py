"""Memory and time bounds of the IPC server (issue 9, defects 3, 4 and 7), over real sockets.

* replies are bounded in bytes, a batch's replies together, and a batch yields to the
  event loop between its entries;
* a client that does not read is closed once its unsent output is over its bound (bytes
  or messages), the server-wide bound closes the biggest holder, and closing frees it;
* a half-written request times out, an idle connection times out (not one that waits
  for the node), and connection slots are reserved for the node's own user.

Time-dependent tests run on a ``MockClock`` that only moves when the test jumps it, after
``wait_all_tasks_blocked`` (a local socket's bytes are in the kernel by then, and trio
polls them before it counts a task as blocked): no fixed sleeps.
"""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

import trio
import trio.testing
from ipc_harness import WAIT, Harness, RawConn, req

from medchaind.ipc import LIMIT_EXCEEDED, AccessPolicy, Connection

# ---------------------------------------------------------------- replies (defect 3)


async def test_single_reply_over_the_limit_is_an_error(ipc: Harness) -> None:
    ipc.dispatcher.max_reply_bytes = 50_000
    c = await ipc.connect()
    reply = await c.call(req("test_echo", ["x" * 60_000], id=7))
    assert reply["id"] == 7
    err = reply["error"]
    assert err["code"] == LIMIT_EXCEEDED
    assert "reply too large" in err["message"] and "ipc.max_reply_bytes" in err["message"]
    assert err["data"]["executed"] is True and err["data"]["limit"] == 50_000
    # the connection keeps working, and a reply under the limit goes through
    assert (await c.call(req("test_echo", ["y" * 40_000], id=8)))["result"] == ["y" * 40_000]


async def test_batch_reply_is_bounded_in_bytes(ipc: Harness) -> None:
    ipc.dispatcher.max_reply_bytes = 100_000
    c = await ipc.connect()
    batch = [req("test_echo", ["x" * 30_000], id=i) for i in range(10)]
    batch.insert(6, {"jsonrpc": "2.0", "method": "test_echo", "params": ["note"]})  # no reply due
    await c.send_json(batch)
    line = await c.read_line()
    assert line is not None
    assert len(line) < 100_000 + 2_000  # the limit, plus small errors
    replies = json.loads(line)
    assert [r["id"] for r in replies] == list(range(10))
    assert all("result" in r for r in replies[:3])  # 3 x 30 kB fit
    over = replies[3]["error"]
    assert over["code"] == LIMIT_EXCEEDED and over["data"] == {
        "limit": 100_000, "size": over["data"]["size"], "executed": True,
    }
    for r in replies[4:]:
        assert r["error"]["code"] == LIMIT_EXCEEDED
        assert r["error"]["data"]["executed"] is False
        assert "smaller batches" in r["error"]["message"]
    # entries after the limit were not executed (the notification neither)
    assert ipc.state.calls == ["test_echo"] * 4
    assert (await c.call(req("test_add", [1, 2])))["result"] == 3


async def test_batch_yields_to_the_event_loop_between_entries(ipc: Harness) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def snapshot(params: Any, conn: Connection) -> int:
        return ticks  # never yields by itself

    ipc.dispatcher.register("test_ticks", snapshot)
    c = await ipc.connect()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        replies = await c.call([req("test_ticks", id=i) for i in range(20)])
        nursery.cancel_scope.cancel()
    seen = [r["result"] for r in replies]
    # Other tasks ran between the entries of the batch (trio runs the tasks of one
    # scheduling batch in random order, so not necessarily between every two).
    assert seen == sorted(seen) and len(set(seen)) >= len(seen) // 2, seen


# ---------------------------------------------------------------- unread output (defect 4)


async def _fill(c: RawConn, payload: int, conn: Connection, until_queued: int | None = None) -> int:
    """Pipeline echo requests of ``payload`` bytes without reading, until the server
    closed ``conn`` (or has more than ``until_queued`` bytes queued for it)."""
    sent = 0
    with trio.fail_after(WAIT):
        while not (conn.closed or (until_queued is not None and conn.queued_bytes > until_queued)):
            try:
                await c.send_json(req("test_echo", ["z" * payload], id=sent))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            sent += 1
            await trio.testing.wait_all_tasks_blocked()
    return sent


async def test_client_that_does_not_read_is_closed_and_freed(start_server: Any) -> None:
    ipc = await start_server(send_queue_bytes=300_000, send_queue_total_bytes=10_000_000)
    other = await ipc.connect()
    lazy = await ipc.connect()
    lazy_id = (await lazy.call(req("test_whoami")))["result"]["id"]
    (conn,) = [x for x in ipc.server.connections() if x.id == lazy_id]
    ref = weakref.ref(conn)
    # The kernel's socket buffer takes the first replies; then they queue in the node,
    # and once more than 300 kB wait, the connection is closed, not left to grow.
    sent = await _fill(lazy, 20_000, conn)
    assert conn.dropped_slow
    await conn.wait_closed()
    assert conn.queued_bytes == 0
    assert conn._recv.statistics().current_buffer_used == 0  # the queued replies are gone
    del conn
    await ipc.wait_connections(1)
    stats = ipc.server.statistics()
    assert stats.dropped_slow == 1 and stats.queued_bytes == 0
    gc.collect()
    assert ref() is None, "the closed connection is still referenced"
    received = await lazy.read_until_eof()  # what the kernel held, then EOF
    assert 0 < len(received) < sent
    assert (await other.call(req("test_add", [2, 2])))["result"] == 4


async def test_unread_messages_are_bounded_too(start_server: Any) -> None:
    ipc = await start_server(send_queue=8)
    lazy = await ipc.connect()
    lazy_id = (await lazy.call(req("test_whoami")))["result"]["id"]
    (conn,) = [x for x in ipc.server.connections() if x.id == lazy_id]
    await _fill(lazy, 10_000, conn)
    assert conn.dropped_slow
    await ipc.wait_connections(0)
    assert ipc.server.statistics().queued_bytes == 0


async def test_server_wide_output_bound_closes_the_biggest_holder(start_server: Any) -> None:
    ipc = await start_server(send_queue_bytes=400_000, send_queue_total_bytes=500_000)
    lazy = await ipc.connect()
    lazy_id = (await lazy.call(req("test_whoami")))["result"]["id"]
    (conn,) = [x for x in ipc.server.connections() if x.id == lazy_id]
    await _fill(lazy, 20_000, conn, until_queued=350_000)
    assert not conn.closed
    reader = await ipc.connect()
    # this reply does not fit beside the lazy client's backlog: the lazy one goes
    reply = await reader.call(req("test_echo", ["r" * 200_000]))
    assert reply["result"] == ["r" * 200_000]
    assert conn.dropped_slow
    await ipc.wait_connections(1)
    assert ipc.server.statistics().queued_bytes == 0


# ---------------------------------------------------------------- slow and idle clients (defect 7)


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def test_half_written_request_times_out(start_server: Any, mock_clock: trio.testing.MockClock) -> None:
    ipc = await start_server(read_timeout=30.0, idle_timeout=600.0)
    slow = await ipc.connect()
    await slow.send(b'{"jsonrpc":"2.0","id":1,"method":"test_add","params":[1,')
    await _settle()
    mock_clock.jump(29)
    await _settle()
    assert ipc.server.statistics().connections == 1
    await slow.send(b"2]}\n")  # completed in time: answered
    assert (await slow.read_json())["result"] == 3
    await slow.send(b'{"jsonrpc":"2.0","id":2,')  # the next one never completes
    await _settle()
    mock_clock.jump(31)
    await _settle()
    (goodbye,) = await slow.read_until_eof()
    assert goodbye["id"] is None and goodbye["error"]["code"] == LIMIT_EXCEEDED
    assert "not completed within 30 s" in goodbye["error"]["message"]
    await ipc.wait_connections(0)


async def test_trickled_request_times_out_from_its_first_byte(
    start_server: Any, mock_clock: trio.testing.MockClock
) -> None:
    ipc = await start_server(read_timeout=30.0, idle_timeout=600.0)
    slow = await ipc.connect()
    start = trio.current_time()
    closed_after = None
    for byte in b'{"jsonrpc":"2.0","id":1,"method":"test_add"':  # 43 bytes, one each 2 s
        await slow.send(bytes([byte]))
        await _settle()
        mock_clock.jump(2)
        await _settle()
        if ipc.server.statistics().connections == 0:
            closed_after = trio.current_time() - start
            break
    # 30 s after the first byte, however steadily the rest trickles in
    assert closed_after is not None and 30 <= closed_after <= 32
    (goodbye,) = await slow.read_until_eof()
    assert "not completed within 30 s" in goodbye["error"]["message"]


async def test_idle_connection_times_out_unless_it_waits_for_the_node(
    start_server: Any, mock_clock: trio.testing.MockClock
) -> None:
    ipc = await start_server(read_timeout=30.0, idle_timeout=600.0)
    idle = await ipc.connect()
    subscriber = await ipc.connect()
    assert "result" in await subscriber.call(req("subscribe", {"topic": "ticks"}))
    busy = await ipc.connect()
    await busy.send_json(req("test_longPoll"))  # a long poll waits for the node
    with trio.fail_after(5):
        await ipc.state.waiting.wait()
    await idle.send(b"\n \n")  # whitespace is not a request
    await _settle()
    mock_clock.jump(599)
    await _settle()
    assert ipc.server.statistics().connections == 3
    mock_clock.jump(2)
    await _settle()
    (goodbye,) = await idle.read_until_eof()
    assert "no request for 600 s" in goodbye["error"]["message"]
    await ipc.wait_connections(2)
    mock_clock.jump(3000)
    await _settle()
    assert ipc.server.statistics().connections == 2  # subscriber and long poll stay
    ipc.state.gate.set()
    assert (await busy.read_json())["result"] == "released"
    ipc.hub.publish("ticks", 1)
    assert (await subscriber.read_json())["params"]["result"] == 1


async def test_non_owners_leave_the_reserved_slots_free(start_server: Any) -> None:
    # Nobody is an owner here, so this test's own connections count as "other users".
    ipc = await start_server(
        access=AccessPolicy(owner_uids=frozenset()), max_connections=4, reserved_connections=2
    )
    a, b = await ipc.connect(), await ipc.connect()
    assert "result" in await a.call(req("rpc_modules"))
    assert "result" in await b.call(req("rpc_modules"))
    refused = await ipc.connect()
    (msg,) = await refused.read_until_eof()
    assert msg["error"]["code"] == LIMIT_EXCEEDED
    assert "2 are reserved for the node's own user" in msg["error"]["message"]
    assert ipc.server.statistics().rejected == 1
    await a.aclose()
    await ipc.wait_connections(1)
    c = await ipc.connect()
    assert "result" in await c.call(req("rpc_modules"))


async def test_owner_may_use_the_reserved_slots(start_server: Any) -> None:
    ipc = await start_server(max_connections=3, reserved_connections=2)  # this test's uid owns the node
    conns = [await ipc.connect() for _ in range(3)]
    for c in conns:
        assert "result" in await c.call(req("rpc_modules"))
    refused = await ipc.connect()
    (msg,) = await refused.read_until_eof()
    assert msg["error"]["message"] == "too many IPC connections (limit 3)"
