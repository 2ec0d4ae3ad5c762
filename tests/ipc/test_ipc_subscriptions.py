"""SubscriptionHub: per-connection delivery, filters, unsubscribe, slow-subscriber policy.

"Connection X got nothing" is checked by ordering, not by waiting: output of a
connection is in order, so after ``publish`` a call's reply that arrives first proves no
notification was queued before it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from ipc_harness import WAIT, Harness, RawConn, req

from medchaind.ipc import INVALID_PARAMS, LIMIT_EXCEEDED, Dispatcher


async def _subscribe(c: RawConn, params: Any, id: int = 1) -> str:  # noqa: A002
    reply = await c.call(req("subscribe", params, id=id))
    sid = reply["result"]
    assert isinstance(sid, str) and sid.startswith("0x") and len(sid) == 18
    return sid


async def _assert_nothing_queued(c: RawConn) -> None:
    assert await c.call(req("test_echo", ["probe"], id=999)) == {
        "jsonrpc": "2.0",
        "id": 999,
        "result": ["probe"],
    }


def _note(sid: str, result: Any) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"subscription": sid, "result": result},
    }


async def test_delivered_only_to_the_subscribing_connection(ipc: Harness) -> None:
    sub = await ipc.connect()
    bystander = await ipc.connect()
    sid = await _subscribe(sub, {"topic": "ticks"})
    assert ipc.hub.subscriber_count("ticks") == 1
    assert ipc.hub.topics() == ["filtered", "ticks"]
    assert ipc.hub.publish("ticks", {"height": 1}) == 1
    assert ipc.hub.publish("ticks", {"height": 2}) == 1
    assert await sub.read_json() == _note(sid, {"height": 1})
    assert await sub.read_json() == _note(sid, {"height": 2})
    await _assert_nothing_queued(bystander)


async def test_positional_params_and_two_subscriptions_on_one_connection(ipc: Harness) -> None:
    c = await ipc.connect()
    s1 = await _subscribe(c, ["ticks"])
    s2 = await _subscribe(c, ["filtered", {"min": 0}], id=2)
    assert s1 != s2
    ipc.hub.publish("ticks", "t")
    ipc.hub.publish("filtered", "f")
    assert await c.read_json() == _note(s1, "t")
    assert await c.read_json() == _note(s2, "f")


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"topic": "nope"}, INVALID_PARAMS, "unknown subscription topic 'nope'"),
        ({}, INVALID_PARAMS, "unknown subscription topic None"),
        ({"topic": "ticks", "x": 1}, INVALID_PARAMS, "takes no parameters"),
        ({"topic": "filtered", "min": "a"}, INVALID_PARAMS, "filtered takes {min: int}"),
        (["ticks", 5], INVALID_PARAMS, "[topic] or [topic, {options}]"),
    ],
)
async def test_bad_subscribe_params(ipc: Harness, params: Any, code: int, fragment: str) -> None:
    c = await ipc.connect()
    reply = await c.call(req("subscribe", params))
    assert reply["error"]["code"] == code
    assert fragment in reply["error"]["message"]
    assert ipc.hub.subscriber_count() == 0


async def test_filter_selects_subscriptions(ipc: Harness) -> None:
    low = await ipc.connect()
    high = await ipc.connect()
    s_low = await _subscribe(low, {"topic": "filtered", "min": 1})
    await _subscribe(high, {"topic": "filtered", "min": 10})
    n = ipc.hub.publish("filtered", 5, lambda minimum: 5 >= minimum)
    assert n == 1
    assert await low.read_json() == _note(s_low, 5)
    await _assert_nothing_queued(high)


async def test_failing_filter_is_logged_and_skipped(ipc: Harness) -> None:
    c = await ipc.connect()
    await _subscribe(c, {"topic": "ticks"})

    def broken(_: Any) -> bool:
        raise RuntimeError("bug")

    assert ipc.hub.publish("ticks", 1, broken) == 0
    await _assert_nothing_queued(c)


async def test_unsubscribe_stops_notifications(ipc: Harness) -> None:
    c = await ipc.connect()
    sid = await _subscribe(c, {"topic": "ticks"})
    assert (await c.call(req("unsubscribe", {"subscription": sid}, id=2)))["result"] is True
    assert ipc.hub.publish("ticks", "after") == 0
    await _assert_nothing_queued(c)
    again = await c.call(req("unsubscribe", [sid], id=3))
    assert again["error"]["code"] == -32020


async def test_cannot_unsubscribe_another_connections_subscription(ipc: Harness) -> None:
    owner = await ipc.connect()
    other = await ipc.connect()
    sid = await _subscribe(owner, {"topic": "ticks"})
    reply = await other.call(req("unsubscribe", {"subscription": sid}))
    assert reply["error"]["code"] == -32020
    ipc.hub.publish("ticks", "still")
    assert await owner.read_json() == _note(sid, "still")


async def test_closing_the_connection_drops_its_subscriptions(ipc: Harness) -> None:
    c = await ipc.connect()
    await _subscribe(c, {"topic": "ticks"})
    await _subscribe(c, {"topic": "filtered", "min": 0}, id=2)
    (conn,) = ipc.server.connections()
    assert len(conn.subscriptions) == 2
    await c.aclose()
    with trio.fail_after(WAIT):
        await conn.wait_closed()
    assert conn.subscriptions == {}
    assert ipc.hub.subscriber_count() == 0
    assert ipc.hub.publish("ticks", 1) == 0


async def test_subscription_limit_per_connection(start_server: Any) -> None:
    ipc = await start_server()
    c = await ipc.connect()
    for i in range(64):
        await _subscribe(c, {"topic": "ticks"}, id=i)
    reply = await c.call(req("subscribe", {"topic": "ticks"}))
    assert reply["error"]["code"] == LIMIT_EXCEEDED


async def test_no_notification_before_the_subscribe_reply(ipc: Harness) -> None:
    """In a batch, the subscription exists before the batch reply is written; events
    published meanwhile must not reach the client ahead of the id it needs."""
    c = await ipc.connect()
    await c.send_json([req("subscribe", {"topic": "ticks"}, id=1), req("test_wait", id=2)])
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    assert ipc.hub.publish("ticks", "too early") == 0  # not active yet
    ipc.state.gate.set()
    batch = await c.read_json()
    sid = batch[0]["result"]
    assert ipc.hub.publish("ticks", "on time") == 1
    assert await c.read_json() == _note(sid, "on time")


async def test_slow_subscriber_is_dropped_without_blocking_others(start_server: Any) -> None:
    ipc = await start_server(send_queue=4)
    slow = await ipc.connect()  # subscribes, then never reads
    fast = await ipc.connect()
    await _subscribe(slow, {"topic": "ticks"})
    fast_sid = await _subscribe(fast, {"topic": "ticks"}, id=2)
    slow_id = (await slow.call(req("test_whoami", id=3)))["result"]["id"]
    (slow_conn,) = [c for c in ipc.server.connections() if c.id == slow_id]
    payload = "x" * 32_768
    published = 0
    with trio.fail_after(WAIT):
        # The socket buffer absorbs a few notifications, then the 4-slot channel fills,
        # then the slow connection is dropped; publish() itself never waits.
        while not slow_conn.closed:
            assert published < 1000, "slow subscriber was never dropped"
            ipc.hub.publish("ticks", {"i": published, "pad": payload})
            published += 1
            note = await fast.read_json()  # the fast subscriber keeps up
            assert note["params"]["subscription"] == fast_sid
            assert note["params"]["result"]["i"] == published - 1
        await slow_conn.wait_closed()
    assert slow_conn.dropped_slow
    assert ipc.server.statistics().dropped_slow == 1
    assert ipc.hub.subscriber_count("ticks") == 1
    received = await slow.read_until_eof()  # what got out before the drop, then EOF
    assert 0 < len(received) < published
    assert [m["params"]["result"]["i"] for m in received] == list(range(len(received)))
    ipc.hub.publish("ticks", {"i": "after"})
    assert (await fast.read_json())["params"]["result"]["i"] == "after"


async def test_publish_rejects_unknown_topic_and_bad_payload() -> None:
    d = Dispatcher()
    d.hub.register_topic("t")
    with pytest.raises(ValueError, match="unregistered topic"):
        d.hub.publish("nope", 1)
    with pytest.raises(ValueError, match="already registered"):
        d.hub.register_topic("t")
    assert d.hub.publish("t", object()) == 0  # no subscribers: nothing is encoded


async def test_bad_payload_with_subscribers_raises(ipc: Harness) -> None:
    c = await ipc.connect()
    await _subscribe(c, {"topic": "ticks"})
    with pytest.raises(TypeError):
        ipc.hub.publish("ticks", object())
    with pytest.raises(ValueError):
        ipc.hub.publish("ticks", float("nan"))
    await _assert_nothing_queued(c)
