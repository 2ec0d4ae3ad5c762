"""A seeded fuzzer for the IPC socket: hostile inputs and the checks that must hold.

Used by the test suite (a short run against an in-process node) and by
``scripts/fuzz_ipc.py`` (a longer run against any node's local socket). It never talks
to anything but the Unix socket it is given.

Theory of operation
-------------------
:class:`InputMaker` turns a seed into hostile inputs (pure: ``random.Random(seed)``, no
clock), given the methods the node serves and their param names:

* requests for every method with wrong types, huge, deep or empty values, unknown or
  missing params, positional params, broken envelopes (ids, versions, methods);
* batches (empty, mixed, over the batch limit);
* raw bytes that are not JSON (bad UTF-8, ``NaN``, deep nesting, huge numbers, unbalanced
  brackets, stray closers).

Two rules keep a fuzz run harmless on a real node: no generated string is a valid
base58 peer id (so ``admin_banPeer`` can never ban anyone) and no generated string is a
usable absolute path (so ``admin_backup`` can never write anywhere); every ``timeout_ms``
is a few milliseconds or invalid, so nothing long-polls for long.

:func:`run` drives a node with them and checks, after every input, that the node still
answers (a sentinel ``rpc_modules`` on the same connection), that no reply anywhere is
``-32603``, and it adds connections that never read and connections that stop halfway
through a request, which the node must close. Whether the node's *state* is unchanged
is the caller's check (it knows the node).
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import socket
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import codec

__all__ = ["FuzzReport", "InputMaker", "run"]

INTERNAL_ERROR = -32603
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
#: Strings a hostile client likes; none is a usable path or a valid peer id.
_NASTY_STRINGS = [
    "", " ", "0", "0x", "0x0", "0X00", "0xzz", "0x" + "ab" * 31 + "a", "0x 00", "null", "true",
    "\x00", "a\x00b", "\ud800", "\udcff", "\udfff\ud800", "\u202e\u200b", "\ufeff", "é" * 40,
    "\u0661\u0662\u0663", "Ⅻ", "🩺" * 10, "../../etc/passwd", "%s%n", "${jndi:x}", "'; DROP",
    "/\x00", "/tmp/\ud800x", "/" + "a" * 300, "/nonexistent-fuzz-parent-7f3a/b", "/", "//",
    "/.", "/..", "/proc/self", "/dev/null", "0x" + "00" * 32, "0x" + "ff" * 33,
]
_NASTY_INTS = [0, -1, 1, 2, 255, 256, 2**31 - 1, 2**31, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]
_RAW_INPUTS = [
    b"\n", b"   \t\r\n", b"}\n", b"]\n", b"[}\n", b'{"a":[1}\n', b"nul\n", b"NaN\n", b"-Infinity\n",
    b'{"jsonrpc":"2.0","id":1,"method":"node_info","params":{"x":NaN}}\n',
    b"\xff\xfe\xfd\n", b'"\xc3\x28"\n', b'{"a":"\xed\xa0\x80"}\n', b"[" * 300 + b"\n", b"{" * 129 + b"\n",
    b"1" * 5000 + b"\n", b'"unterminated\n', b'{"jsonrpc":"2.0",\n"id":2,\n"method":"node_health"}\n',
    b'{"a":1}{"b":2}[3]\n', b"\x00\x00\x00\n", b'{"jsonrpc":"2.0","id":1,"method":"node_info"' + b" " * 1000 + b"\n",
]


def _poison(s: str) -> str:
    """Make sure ``s`` is neither a base58 peer id nor an absolute path."""
    if _BASE58.fullmatch(s):
        s += "0"
    if s.startswith("/") and s not in _NASTY_STRINGS:
        s = "." + s
    return s


class InputMaker:
    """Hostile IPC inputs from a seed. ``methods`` maps method -> param names; ``topics``
    are the subscription topics the node offers."""

    def __init__(self, seed: int, methods: Mapping[str, Sequence[str]], topics: Sequence[str] = ()) -> None:
        self.rng = random.Random(seed)
        self.methods = {m: tuple(p) for m, p in sorted(methods.items())}
        self.names = sorted({p for ps in self.methods.values() for p in ps} | {"topic", "subscription"})
        self.topics = list(topics)

    # ------------------------------------------------------------------ values

    def string(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            return _poison(rng.choice(_NASTY_STRINGS))
        if r < 0.6:
            return "0x" + rng.randbytes(rng.choice([0, 1, 20, 31, 32, 33, 64, 500])).hex()
        if r < 0.7:
            return _poison("".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(1, 60))))
        if r < 0.75:
            return _poison("x" * rng.choice([1000, 70_000]))
        return _poison("".join(rng.choice("abcXYZ019_-.:@ é") for _ in range(rng.randrange(1, 20))))

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        kind = rng.randrange(10 if depth < 4 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.choice(_NASTY_INTS) * rng.choice([1, -1])
        if kind == 3:
            return rng.choice([0.5, -0.0, 1e308, 1.0, 3.0, 2.5e-300])
        if kind in (4, 5):
            return self.string()
        if kind in (6, 7):
            return [self.value(depth + 1) for _ in range(rng.choice([0, 1, 2, 5]))]
        if kind == 8:
            return {self._key(): self.value(depth + 1) for _ in range(rng.choice([0, 1, 3]))}
        return rng.choice([[[[[[[]]]]]], {"a": {"b": {"c": {}}}}, list(range(2000)), ["x"] * 500])

    def _key(self) -> str:
        return self.rng.choice(self.names) if self.rng.random() < 0.7 else self.string()

    def _plausible(self, name: str) -> Any:
        """A value of the right shape for ``name``, as a real client would send."""
        rng = self.rng
        if name == "timeout_ms":
            return rng.choice([0, 1, 5])
        if name in ("height", "limit", "nonce", "time_ms", "since", "offset"):
            return rng.choice([0, 1, 2, 100, 2**62])
        if name in ("full", "include_expired"):
            return rng.choice([True, False])
        if name == "topic":
            return rng.choice(self.topics) if self.topics else "newHeads"
        if name in ("path", "peer_id"):
            return self.string()
        if name in ("txs", "blobs"):  # tx_submitBatch: base64 of (hostile) CBOR
            return self._b64_cbor()
        return "0x" + rng.randbytes(rng.choice([32, 32, 16, 64])).hex()

    def _b64_cbor(self) -> str:
        """Base64 of a CBOR array of byte strings that are not txs, of a non-array, of
        random bytes or of an oversized array: shapes ``tx_submitBatch`` must refuse."""
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0:
            raw = codec.encode([rng.randbytes(rng.choice([0, 1, 40, 300])) for _ in range(rng.choice([1, 2, 30]))])
        elif kind == 1:
            raw = codec.encode(rng.choice([0, {"a": 1}, [1, 2], [None], [[b"x"]]]))
        elif kind == 2:
            raw = rng.randbytes(rng.choice([0, 1, 9, 200]))
        elif kind == 3:
            raw = codec.encode([b"\xa0"] * 1001)
        else:
            raw = codec.encode([None] * rng.choice([1, 3]))  # a blobs shape; as txs, not bytes
        return base64.b64encode(raw).decode()

    def params(self, method: str) -> Any:
        rng = self.rng
        names = self.methods.get(method, ())
        r = rng.random()
        if r < 0.05:
            return None
        if r < 0.12:
            return [self.value(1) for _ in range(rng.randrange(0, 4))]
        if r < 0.15:
            return self.value(1)  # not an object nor an array: invalid request
        out: dict[str, Any] = {}
        for name in names:
            if rng.random() < 0.75:
                out[name] = self._plausible(name) if rng.random() < 0.4 else self.value(1)
        if rng.random() < 0.2:
            out[self._key()] = self.value(1)
        if "timeout_ms" in names:  # never a long poll of the default 30 s
            v = out.get("timeout_ms")
            if type(v) is int and not 0 <= v <= 5:
                out["timeout_ms"] = rng.choice([0, 1, 5, -1, 600_001])
            elif "timeout_ms" not in out:
                out["timeout_ms"] = 0
        return out

    # ------------------------------------------------------------------ requests

    def request(self, req_id: Any = None) -> dict[str, Any]:
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            method: Any = rng.choice(["subscribe", "unsubscribe"])
        elif r < 0.12:
            method = rng.choice([self.string(), "rpc.call", "admin_", "_", "records_"])
        else:
            method = rng.choice(list(self.methods) or ["rpc_modules"])
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if method == "subscribe":
            topic = rng.choice([*self.topics, "nope", 5]) if rng.random() < 0.8 else None
            msg["params"] = {"topic": topic, self._key(): self.value(2)} if rng.random() < 0.5 else [topic]
        elif method == "unsubscribe":
            msg["params"] = {"subscription": self.value(1)}
        else:
            params = self.params(method)
            if params is not None or rng.random() < 0.5:
                msg["params"] = params
        if req_id is not None:
            msg["id"] = req_id
        e = rng.random()
        if e < 0.03:
            msg["jsonrpc"] = rng.choice(["1.0", 2.0, None, "2.0 "])
        elif e < 0.06:
            msg["id"] = rng.choice([1.5, [], {}, True])
        elif e < 0.08:
            msg["method"] = rng.choice([None, 7, ["node_info"]])
        elif e < 0.1:
            msg["id"] = "x" * 50_000
        return msg

    def batch(self, first_id: int) -> list[Any]:
        rng = self.rng
        n = rng.choice([0, 1, 2, 10, 50, 200])
        out: list[Any] = []
        for i in range(n):
            r = rng.random()
            if r < 0.1:
                out.append(self.value(1))  # not a request at all
            elif r < 0.25:
                out.append(self.request())  # a notification
            else:
                out.append(self.request(first_id + i))
        return out

    def raw(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.5:
            return rng.choice(_RAW_INPUTS)
        data = rng.randbytes(rng.randrange(1, 300))
        return data.replace(b"\n", b" ") + b"\n"


@dataclass
class FuzzReport:
    """What a run did and found."""

    seed: int
    inputs: int = 0
    replies: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    #: (input, reply) pairs with -32603, or a node that stopped answering
    failures: list[str] = field(default_factory=list)
    slow_closed: int = 0
    half_closed: int = 0

    def summary(self) -> str:
        codes = ", ".join(f"{c}:{n}" for c, n in sorted(self.codes.items()))
        return (
            f"seed={self.seed} inputs={self.inputs} replies={self.replies} "
            f"non_reading_closed={self.slow_closed} half_written_closed={self.half_closed} "
            f"failures={len(self.failures)} error_codes={{{codes}}}"
        )


def _errors(msg: Any) -> list[int]:
    items = msg if isinstance(msg, list) else [msg]
    return [i["error"]["code"] for i in items if isinstance(i, dict) and isinstance(i.get("error"), dict)]


class _Conn:
    """A line-oriented client connection (trio)."""

    def __init__(self, stream: trio.SocketStream, max_line: int) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.max_line = max_line

    @classmethod
    async def open(cls, path: str, max_line: int = 256 << 20) -> _Conn:
        return cls(await trio.open_unix_socket(path), max_line)

    async def line(self) -> bytes | None:
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return out
            try:
                chunk = await self.stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > self.max_line:
                raise AssertionError("the node sent a line over the client's limit")


def _dumps(obj: Any) -> bytes:
    # allow_nan: a hostile client sends NaN too; surrogates are escaped, not encoded
    return json.dumps(obj, allow_nan=True).encode() + b"\n"


def _closes(msg: Any) -> bool:
    """Whether ``msg`` is the node's last word before it closes the connection on purpose
    (a request over its size limit, or a timeout)."""
    return (
        isinstance(msg, dict)
        and msg.get("id") is None
        and isinstance(msg.get("error"), dict)
        and "connection closed" in str(msg["error"].get("message", ""))
    )


async def _check_reply_lines(conn: _Conn, report: FuzzReport, sentinel: str, sent: bytes) -> bool:
    """Read until the sentinel's reply; record every error code; flag -32603. False if
    the connection ended (on purpose or not) and a new one is needed."""
    while True:
        line = await conn.line()
        if line is None:
            report.failures.append(f"connection closed without a reason after input {sent[:300]!r}")
            return False
        msg = json.loads(line)
        if isinstance(msg, dict) and msg.get("id") == sentinel:
            if "result" not in msg:
                report.failures.append(f"sentinel failed after input {sent[:300]!r}: {line[:300]!r}")
            return True
        if isinstance(msg, dict) and "method" in msg and "id" not in msg:
            continue  # a subscription notification
        report.replies += 1
        for code in _errors(msg):
            report.codes[code] += 1
            if code == INTERNAL_ERROR:
                report.failures.append(f"-32603 for input {sent[:300]!r}: {line[:300]!r}")
        if _closes(msg):
            return False


async def _raw_exchange(path: str, data: bytes, report: FuzzReport) -> None:
    """Send raw bytes on a fresh connection, half-close, read every reply until EOF."""
    conn = await _Conn.open(path)
    with conn.stream.socket:
        try:
            await conn.stream.send_all(data)
            await conn.stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        while (line := await conn.line()) is not None:
            report.replies += 1
            for code in _errors(json.loads(line)):
                report.codes[code] += 1
                if code == INTERNAL_ERROR:
                    report.failures.append(f"-32603 for raw input {data[:300]!r}: {line[:300]!r}")


async def _non_reading(path: str, requests: int, report: FuzzReport, wait: float) -> None:
    """Pipeline up to ``requests`` requests and never read: the node must close us
    (its send queue bound), which the next send sees as EPIPE or ECONNRESET."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(path)
    req = _dumps({"jsonrpc": "2.0", "id": 1, "method": "node_info"})
    with sock, trio.move_on_after(wait):  # a node that stops reading us holds our sends
        for _ in range(requests):
            try:
                await sock.send(req)
            except OSError:
                report.slow_closed += 1
                return
    report.failures.append(f"a client that sent requests and never read was not closed within {wait} s")


async def _half_written(path: str, report: FuzzReport, wait: float) -> None:
    """Start a request and never finish it: the node must close us (its read timeout)."""
    conn = await _Conn.open(path)
    await conn.stream.send_all(b'{"jsonrpc":"2.0","id":1,"method":"node_in')
    with trio.move_on_after(wait):
        while await conn.line() is not None:
            pass
        report.half_closed += 1
        await conn.stream.aclose()
        return
    report.failures.append(f"a half-written request was not closed within {wait} s")
    await conn.stream.aclose()


async def run(
    path: str | os.PathLike[str],
    maker: InputMaker,
    *,
    seed: int,
    count: int,
    time_limit: float = 60.0,
    non_reading: int = 2,
    non_reading_requests: int = 50_000,
    half_written: int = 3,
    half_written_wait: float = 60.0,
    answer_timeout: float = 10.0,
) -> FuzzReport:
    """Send ``count`` hostile inputs to the node at ``path`` (stop early at ``time_limit``
    seconds), with ``non_reading`` clients that never read and ``half_written`` clients
    that stop mid-request alongside; those must be closed by the node within
    ``half_written_wait`` seconds, and every input answered within ``answer_timeout``.
    Never raises for what the node does: see the report."""
    path = os.fspath(path)
    report = FuzzReport(seed=seed)
    deadline = trio.current_time() + time_limit
    async with trio.open_nursery() as nursery:
        for _ in range(half_written):
            nursery.start_soon(_half_written, path, report, half_written_wait)
        main = await _Conn.open(path)
        next_id = 1
        for i in range(count):
            if trio.current_time() > deadline:
                break
            if non_reading and i % max(1, count // non_reading) == count // (2 * non_reading):
                nursery.start_soon(_non_reading, path, non_reading_requests, report, half_written_wait)
            r = maker.rng.random()
            if r < 0.15:
                raw = maker.raw()
                with trio.move_on_after(answer_timeout) as scope:
                    await _raw_exchange(path, raw, report)
                if scope.cancelled_caught:
                    report.failures.append(f"no answer within {answer_timeout} s to raw input {raw[:300]!r}")
                report.inputs += 1
                continue
            if r < 0.25:
                data = _dumps(maker.batch(next_id))
                next_id += 200
            else:
                req = maker.request(next_id if maker.rng.random() < 0.9 else None)
                data = _dumps(req)
                next_id += 1
            sentinel = f"sentinel-{i}"
            alive = answered = False
            with trio.move_on_after(answer_timeout):
                try:
                    probe = _dumps({"jsonrpc": "2.0", "id": sentinel, "method": "rpc_modules"})
                    await main.stream.send_all(data + probe)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    report.failures.append(f"connection lost while sending input {data[:300]!r}")
                else:
                    alive = await _check_reply_lines(main, report, sentinel, data)
                answered = True
            if not answered:
                report.failures.append(f"no answer within {answer_timeout} s to input {data[:300]!r}")
            report.inputs += 1
            if not alive:
                await main.stream.aclose()
                main = await _Conn.open(path)
        await main.stream.aclose()
    return report
