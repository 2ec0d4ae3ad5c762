"""JSON-RPC 2.0 semantics and framing over a real socket, byte for byte as a client sends."""

from __future__ import annotations

import json
import logging
import os
import random
import socket
from typing import Any

import pytest
import trio
from ipc_harness import WAIT, Harness, req

from medchaind.ipc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
)

# ---------------------------------------------------------------- basics


async def test_rpc_modules_lists_namespaces(ipc: Harness) -> None:
    c = await ipc.connect()
    assert await c.call(req("rpc_modules")) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"rpc": "1.0", "test": "1.0", "tx": "1.0"},
    }
    assert "subscribe" in ipc.dispatcher.methods()


async def test_output_is_compact_one_line_per_message(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send_json(req("test_echo", {"a": [1, 2], "b": "é"}))
    line = await c.read_line()
    assert line == b'{"jsonrpc":"2.0","id":1,"result":{"a":[1,2],"b":"\\u00e9"}}'


@pytest.mark.parametrize(
    ("params", "expected"),
    [({"a": 1, "b": 2}, 3), ([1, 2], 3), ([1, 2, 3], 6), ({"b": 2, "a": 1, "c": 3}, 6)],
)
async def test_params_by_name_and_position(ipc: Harness, params: Any, expected: int) -> None:
    c = await ipc.connect()
    assert (await c.call(req("test_add", params)))["result"] == expected


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"a": 1}, "missing required param(s) ['b']"),
        ([1], "missing required param(s) ['b']"),
        ([1, 2, 3, 4], "at most 3 positional"),
        ({"a": 1, "b": 2, "d": 4}, "unknown param(s) ['d']"),
        ({"a": 1, "b": "2"}, "b must be an integer"),
    ],
)
async def test_invalid_params(ipc: Harness, params: Any, fragment: str) -> None:
    c = await ipc.connect()
    reply = await c.call(req("test_add", params, id=7))
    assert reply["id"] == 7
    assert reply["error"]["code"] == INVALID_PARAMS
    assert fragment in reply["error"]["message"]


async def test_omitted_and_null_params_arrive_as_empty_object(ipc: Harness) -> None:
    c = await ipc.connect()
    assert (await c.call(req("test_echo")))["result"] == {}
    assert (await c.call({"jsonrpc": "2.0", "id": 2, "method": "test_echo", "params": None}))[
        "result"
    ] == {}


@pytest.mark.parametrize("req_id", ["abc", 0, -5, 2**70, None])
async def test_id_is_echoed(ipc: Harness, req_id: Any) -> None:
    c = await ipc.connect()
    reply = await c.call(req("test_echo", [1], id=req_id))
    assert reply == {"jsonrpc": "2.0", "id": req_id, "result": [1]}


# ---------------------------------------------------------------- errors


async def test_parse_error_then_connection_continues(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send(b'{"jsonrpc": "2.0", "id": 1, "method": oops}\n')
    await c.send_json(req("test_echo", ["ok"], id=2))
    err = await c.read_json()
    assert err["id"] is None and err["error"]["code"] == PARSE_ERROR
    assert err["error"]["message"].startswith("parse error")
    assert await c.read_json() == {"jsonrpc": "2.0", "id": 2, "result": ["ok"]}


@pytest.mark.parametrize(
    ("raw", "reply_id"),
    [
        (b"42", None),
        (b'"just a string"', None),
        (b"[1]", None),  # batch of one invalid request
        (b'{"id": 1, "method": "test_echo"}', 1),  # no jsonrpc member
        (b'{"jsonrpc": "1.0", "id": 1, "method": "test_echo"}', 1),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', 1),
        (b'{"jsonrpc": "2.0", "id": 1}', 1),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": "x"}', 1),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "test_echo"}', None),
        (b'{"jsonrpc": "2.0", "id": true, "method": "test_echo"}', None),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "test_echo"}', None),
        # Invalid even though it has no id: still answered (JSON-RPC 2.0 §7 example).
        (b'{"jsonrpc": "2.0", "method": 1, "params": "bar"}', None),
    ],
)
async def test_invalid_request(ipc: Harness, raw: bytes, reply_id: Any) -> None:
    c = await ipc.connect()
    await c.send(raw + b"\n")
    reply = await c.read_json()
    if isinstance(reply, list):
        (reply,) = reply
    assert reply["jsonrpc"] == "2.0"
    assert reply["id"] == reply_id
    assert reply["error"]["code"] == INVALID_REQUEST
    assert ipc.state.calls == []


async def test_unknown_method(ipc: Harness) -> None:
    c = await ipc.connect()
    reply = await c.call(req("chain_nope", id="x"))
    assert reply["id"] == "x"
    assert reply["error"] == {"code": METHOD_NOT_FOUND, "message": "method not found: chain_nope"}


async def test_rpc_error_raised_by_handler(ipc: Harness) -> None:
    c = await ipc.connect()
    reply = await c.call(req("test_failRpc"))
    assert reply["error"] == {
        "code": INVALID_PARAMS,
        "message": "x must be positive",
        "data": {"field": "x"},
    }


async def test_medchain_error_maps_to_its_rpc_code(ipc: Harness) -> None:
    c = await ipc.connect()
    reply = await c.call(req("test_failNotFound"))
    assert reply["error"] == {"code": -32020, "message": "record 7 not found"}
    reply = await c.call(req("test_failRejected"))
    assert reply["error"]["code"] == -32010
    assert reply["error"]["message"] == "nonce_too_low: nonce 3 is below the account nonce 5"
    assert reply["error"]["data"] == {
        "code": "nonce_too_low",
        "reason": "nonce 3 is below the account nonce 5",
    }


async def test_error_from_a_handlers_nursery_child_is_unwrapped(ipc: Harness) -> None:
    c = await ipc.connect()
    reply = await c.call(req("test_failInChild"))
    assert reply["error"] == {"code": -32020, "message": "child says record 8 not found"}


async def test_internal_error_is_generic_and_logged_without_params(
    ipc: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await ipc.connect()
    with caplog.at_level(logging.DEBUG, logger="medchaind.ipc"):
        reply = await c.call(req("test_crash", {"patient": "Jane Roe"}))
        bad = await c.call(req("test_badResult", id=2))
    assert reply["error"] == {
        "code": INTERNAL_ERROR,
        "message": "internal error (see the node log)",
    }
    assert bad["error"]["code"] == INTERNAL_ERROR
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("method=test_crash" in r.getMessage() and r.exc_info for r in errors)
    assert any("method=test_badResult" in r.getMessage() for r in errors)
    assert "Jane Roe" not in caplog.text


async def test_mutating_call_is_audited_with_peer_credentials(
    ipc: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    c = await ipc.connect()
    with caplog.at_level(logging.INFO, logger="medchaind.ipc"):
        assert (await c.call(req("tx_send", {"tx": "0xdeadbeef"})))["result"] == "accepted"
        await c.call(req("test_echo", {"tx": "0xfeed"}, id=2))
    audit = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    expected = f"method=tx_send uid={os.getuid()} pid={os.getpid()}"
    assert any(expected in m and "outcome=ok" in m for m in audit), audit
    assert not any("test_echo" in m for m in audit)
    assert "deadbeef" not in caplog.text and "feed" not in caplog.text


async def test_peer_credentials(ipc: Harness) -> None:
    c = await ipc.connect()
    who = (await c.call(req("test_whoami")))["result"]
    assert (who["uid"], who["pid"], who["gid"]) == (os.getuid(), os.getpid(), os.getgid())


# ---------------------------------------------------------------- batches, notifications


async def test_batch_mixed(ipc: Harness) -> None:
    c = await ipc.connect()
    batch = [
        req("test_add", [1, 2], id=1),
        {"jsonrpc": "2.0", "method": "test_echo", "params": ["note"]},  # notification
        1,
        req("nope_method", id="3"),
        req("test_failNotFound", id=4),
    ]
    await c.send_json(batch)
    replies = await c.read_json()
    assert [r["id"] for r in replies] == [1, None, "3", 4]
    assert replies[0]["result"] == 3
    assert replies[1]["error"]["code"] == INVALID_REQUEST
    assert replies[2]["error"]["code"] == METHOD_NOT_FOUND
    assert replies[3]["error"]["code"] == -32020
    assert ipc.state.calls == ["test_echo"]  # the notification was executed


async def test_empty_and_oversized_batch(ipc: Harness) -> None:
    c = await ipc.connect()
    assert (await c.call([]))["error"]["code"] == INVALID_REQUEST
    too_many = [req("test_echo", id=i) for i in range(51)]
    reply = await c.call(too_many)
    assert reply["error"]["code"] == INVALID_REQUEST and "limit 50" in reply["error"]["message"]


async def test_notifications_get_no_reply(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send_json({"jsonrpc": "2.0", "method": "test_echo", "params": [1]})
    await c.send_json({"jsonrpc": "2.0", "method": "test_crash"})
    await c.send_json({"jsonrpc": "2.0", "method": "no_such"})
    await c.send_json([{"jsonrpc": "2.0", "method": "test_echo"}])  # batch of notifications
    # Replies are in order, so if any of the above had produced one it would come first.
    assert await c.call(req("test_add", [2, 2], id=9)) == {"jsonrpc": "2.0", "id": 9, "result": 4}
    assert ipc.state.calls == ["test_echo", "test_echo"]


async def test_null_id_is_a_request_not_a_notification(ipc: Harness) -> None:
    c = await ipc.connect()
    assert await c.call(req("test_add", [1, 1], id=None)) == {
        "jsonrpc": "2.0",
        "id": None,
        "result": 2,
    }


# ---------------------------------------------------------------- framing


async def test_back_to_back_objects_without_newline(ipc: Harness) -> None:
    c = await ipc.connect()
    data = b"".join(json.dumps(req("test_echo", [i], id=i)).encode() for i in range(3))
    await c.send(data)  # no trailing newline at all
    for i in range(3):
        assert await c.read_json() == {"jsonrpc": "2.0", "id": i, "result": [i]}


async def test_request_split_into_single_bytes_and_pretty_printed(ipc: Harness) -> None:
    c = await ipc.connect()
    for b in json.dumps(req("test_echo", {"s": 'a "q" \\ }]'}, id=1)).encode():
        await c.send(bytes([b]))
    assert (await c.read_json())["result"] == {"s": 'a "q" \\ }]'}
    await c.send(json.dumps(req("test_add", [3, 4], id=2), indent=2).encode() + b"\n")
    assert (await c.read_json())["result"] == 7


async def test_oversized_line_gets_error_and_close_server_keeps_serving(
    start_server: Any,
) -> None:
    ipc = await start_server(max_line_bytes=1024)
    c = await ipc.connect()
    await c.send_json(req("test_echo", ["x" * 2000]))
    messages = await c.read_until_eof()
    assert len(messages) == 1
    assert messages[0]["id"] is None
    assert messages[0]["error"]["code"] == INVALID_REQUEST
    assert "request too large" in messages[0]["error"]["message"]
    # A value that never ends is cut off the same way.
    c2 = await ipc.connect()
    await c2.send(b'{"jsonrpc": "2.0", "params": ["' + b"y" * 5000)
    (only,) = await c2.read_until_eof()
    assert "request too large" in only["error"]["message"]
    c3 = await ipc.connect()
    assert (await c3.call(req("test_add", [1, 2])))["result"] == 3


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xfe\x00\x01binary",
        b'{"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": ["\xff\xfe"]}',  # bad UTF-8
        b'{"jsonrpc": "2.0", "id": 1, "method": "test_echo", "params": ["\xed\xa0\x80"]}',
        b"[" * 5000 + b"]" * 5000,  # nesting
        b'{"a": [1, 2}',  # mismatched brackets
        b"}}}",
        b'{"unterminated": "string',  # the newline ends it
        b"nul",
        b"1" * 5000,  # int over Python's digit limit
    ],
)
async def test_garbage_gets_parse_error_and_connection_resyncs(
    ipc: Harness, garbage: bytes
) -> None:
    c = await ipc.connect()
    await c.send(garbage + b"\n")
    await c.send_json(req("test_add", [20, 22], id=2))
    err = await c.read_json()
    assert err["id"] is None and err["error"]["code"] == PARSE_ERROR
    assert await c.read_json() == {"jsonrpc": "2.0", "id": 2, "result": 42}
    assert ipc.state.calls == []


async def test_random_binary_noise_never_affects_other_connections(ipc: Harness) -> None:
    rng = random.Random(1234)  # deterministic noise
    bystander = await ipc.connect()
    for _ in range(5):
        noisy = await ipc.connect()
        await noisy.send(rng.randbytes(50_000))
        await noisy.aclose()
        assert (await bystander.call(req("test_add", [1, 1])))["result"] == 2
    await ipc.wait_connections(1)


async def test_abrupt_disconnect_mid_request(ipc: Harness) -> None:
    other = await ipc.connect()
    for cut in (b'{"jsonrpc": "2.0", "id": 1, "meth', b'{"jsonrpc": "2.0", "params": ["\xe2\x82'):
        c = await ipc.connect()
        await c.send(cut)
        await c.aclose()
    await ipc.wait_connections(1)
    assert (await other.call(req("test_echo", ["still here"])))["result"] == ["still here"]


async def test_disconnect_while_handler_runs(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send_json(req("test_wait"))
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    await c.aclose()  # the peer is gone; the reply has nowhere to go
    ipc.state.gate.set()
    await ipc.wait_connections(0)
    c2 = await ipc.connect()
    assert (await c2.call(req("test_wait")))["result"] == "released"


async def test_half_close_still_gets_replies(ipc: Harness) -> None:
    """``socat``/``nc -q1`` send, shut down their write side, then read to EOF."""
    c = await ipc.connect()
    await c.send(json.dumps(req("test_add", [1, 2], id=1)).encode())  # no newline either
    await c.send(b"\n" + json.dumps(req("test_echo", ["b"], id=2)).encode())
    await c.stream.send_eof()
    assert await c.read_until_eof() == [
        {"jsonrpc": "2.0", "id": 1, "result": 3},
        {"jsonrpc": "2.0", "id": 2, "result": ["b"]},
    ]


async def test_truncated_value_at_eof_gets_parse_error(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send(b'{"jsonrpc": "2.0", "id": 1, "method": "test_echo"')
    await c.stream.send_eof()
    (err,) = await c.read_until_eof()
    assert err["error"]["code"] == PARSE_ERROR


async def test_long_handler_does_not_block_notifications(ipc: Harness) -> None:
    """A connection waiting on its own call still receives its notifications."""
    c = await ipc.connect()
    sid = (await c.call(req("subscribe", {"topic": "ticks"})))["result"]
    await c.send_json(req("test_wait", id=2))
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    assert ipc.hub.publish("ticks", {"n": 1}) == 1
    note = await c.read_json()
    assert note == {
        "jsonrpc": "2.0",
        "method": "subscription",
        "params": {"subscription": sid, "result": {"n": 1}},
    }
    ipc.state.gate.set()
    assert (await c.read_json())["result"] == "released"


async def test_long_poll_does_not_hold_up_later_requests(ipc: Harness) -> None:
    """``tx_wait``/``chain_waitHeight`` are long polls: the same connection keeps working."""
    c = await ipc.connect()
    await c.send_json(req("test_longPoll", id="poll"))
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    assert await c.call(req("test_add", [2, 3], id=2)) == {"jsonrpc": "2.0", "id": 2, "result": 5}
    ipc.state.gate.set()
    assert await c.read_json() == {"jsonrpc": "2.0", "id": "poll", "result": "released"}


async def test_in_line_wait_still_holds_up_the_connection(ipc: Harness) -> None:
    """A method not registered as a long poll keeps the in-order semantics."""
    c = await ipc.connect()
    await c.send_json(req("test_wait", id=1))
    await c.send_json(req("test_add", [1, 1], id=2))
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    ipc.state.gate.set()
    assert [(await c.read_json())["id"], (await c.read_json())["id"]] == [1, 2]


async def test_half_closed_client_gets_its_long_poll_reply(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send_json(req("test_longPoll", id=7))
    await c.stream.send_eof()
    with trio.fail_after(WAIT):
        await ipc.state.waiting.wait()
    ipc.state.gate.set()
    assert await c.read_until_eof() == [{"jsonrpc": "2.0", "id": 7, "result": "released"}]


async def test_handler_can_notify_its_connection(ipc: Harness) -> None:
    c = await ipc.connect()
    await c.send_json(req("test_notifyMe"))
    assert await c.read_json() == {"jsonrpc": "2.0", "method": "test_note", "params": {"n": 1}}
    assert (await c.read_json())["result"] == "after-note"


async def test_nc_style_raw_socket_in_a_thread(ipc: Harness) -> None:
    """What ``echo '{...}' | nc -U path`` does: blocking socket, write a line, read a line."""

    def nc() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(WAIT)
            s.connect(os.fspath(ipc.path))
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"rpc_modules"}\n')
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                assert chunk
                data += chunk
            return data

    line = await trio.to_thread.run_sync(nc)
    assert json.loads(line)["result"]["rpc"] == "1.0"
    assert line.count(b"\n") == 1


async def test_max_connections(start_server: Any) -> None:
    ipc = await start_server(max_connections=2)
    a = await ipc.connect()
    b = await ipc.connect()
    assert (await a.call(req("test_echo")))["result"] == {}
    assert (await b.call(req("test_echo")))["result"] == {}
    refused = await ipc.connect()
    (msg,) = await refused.read_until_eof()
    assert "too many IPC connections" in msg["error"]["message"]
    await a.aclose()
    await ipc.wait_connections(1)
    c = await ipc.connect()
    assert (await c.call(req("test_add", [1, 2])))["result"] == 3
    assert ipc.server.statistics().rejected == 1
