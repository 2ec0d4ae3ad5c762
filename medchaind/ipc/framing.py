"""Incremental framing of a stream of JSON values (pure: no I/O, no trio).

Theory of operation
-------------------
A client may send newline-delimited JSON (``nc -U``, ``socat``), back-to-back values
with no delimiter at all (geth's and web3.py's encoders), or pretty-printed values that
span several lines (``jq . req.json | socat ...``). :class:`JSONStreamDecoder` accepts all
three: it finds where each top-level value ends with a byte scanner, then hands exactly
those bytes to :func:`json.loads`.

The scanner keeps its position between :meth:`~JSONStreamDecoder.feed` calls, so each
input byte is scanned once (no quadratic re-parsing of a large request that arrives in
many chunks); it jumps with regular expressions from one structural byte to the next, so
long strings (hex payloads) are skipped at C speed. It tracks:

* outside strings: a stack of expected closing brackets (``}`` / ``]``); a value is
  delimited when the stack empties, and a closer that does not match the stack top ends
  the value as malformed at once (so ``{"a": [1}`` does not wait for more input);
* inside strings: backslash escapes, the closing quote, and a raw newline, which JSON
  forbids inside a string, so it ends the value as malformed (an unterminated string
  does not swallow the following lines);
* top-level scalars (``42``, ``true``, garbage): delimited by whitespace or a structural
  byte. These are never valid requests, but they must be delimited to be rejected.

Invariants:

* Events come out in input order; :class:`Message` values are exactly what
  ``json.loads`` returns for the delimited bytes, which must be strict UTF-8.
* After :class:`Malformed`, input is discarded up to and including the next newline
  (resynchronisation); if more than ``max_bytes`` are discarded without finding one, the
  stream is :class:`Unsynchronisable` and the decoder stops.
* No value, pending or complete, larger than ``max_bytes`` is ever parsed: the decoder
  reports :class:`TooLarge` and stops. Memory held is at most ``max_bytes`` plus one fed
  chunk.
* Nesting deeper than ``max_depth`` is :class:`Malformed` (protects ``json.loads`` from
  deep recursion). A value still open at end of input is :class:`Malformed`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = [
    "Event",
    "JSONStreamDecoder",
    "Malformed",
    "Message",
    "TooLarge",
    "Unsynchronisable",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One complete, well-formed JSON value."""

    value: Any


@dataclass(frozen=True, slots=True)
class Malformed:
    """Bytes that are not JSON; ``reason`` never quotes the input (it may carry PHI)."""

    reason: str


@dataclass(frozen=True, slots=True)
class TooLarge:
    """A value exceeded ``max_bytes`` (fatal: the decoder stops)."""

    size: int


@dataclass(frozen=True, slots=True)
class Unsynchronisable:
    """No newline found within ``max_bytes`` after malformed input (fatal)."""


Event = Message | Malformed | TooLarge | Unsynchronisable


class _Kind(Enum):
    NONE = 0
    CONTAINER = 1
    STRING = 2
    SCALAR = 3


_OPEN_TO_CLOSE = {0x7B: 0x7D, 0x5B: 0x5D}  # { -> }, [ -> ]
_NON_WS = re.compile(rb"[^ \t\r\n]")
_STRUCTURAL = re.compile(rb'[\[\]{}"]')
_STRING_SPECIAL = re.compile(rb'["\\\n]')
_SCALAR_END = re.compile(rb'[ \t\r\n\[\]{}"]')
_QUOTE, _BACKSLASH, _NEWLINE = 0x22, 0x5C, 0x0A


class JSONStreamDecoder:
    """Split a byte stream into JSON values; see the module docstring for the contract.

    Usage: ``feed(chunk)`` (or ``feed_eof()``), then call :meth:`next_event` until it
    returns ``None`` (needs more input). After a fatal event (:class:`TooLarge`,
    :class:`Unsynchronisable`) it returns ``None`` forever.
    """

    def __init__(self, max_bytes: int, *, max_depth: int = 128) -> None:
        if max_bytes < 1 or max_depth < 1:
            raise ValueError("max_bytes and max_depth must be positive")
        self._max = max_bytes
        self._max_depth = max_depth
        self._buf = bytearray()
        self._eof = False
        self._failed = False
        self._discarding = False
        self._discarded = 0
        # Scanner state for the value that starts at self._buf[0].
        self._kind = _Kind.NONE
        self._stack = bytearray()
        self._in_string = False
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return len(self._buf)

    @property
    def pending(self) -> bool:
        """True while part of a value (or of a malformed line being skipped) has arrived
        and its end has not: the server's read timeout runs only then."""
        return bool(self._buf) or self._discarding

    @property
    def failed(self) -> bool:
        """True once a fatal event was returned."""
        return self._failed

    def feed(self, data: bytes) -> None:
        """Append received bytes. Must not be called after :meth:`feed_eof`."""
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        if not self._failed:
            self._buf += data

    def feed_eof(self) -> None:
        """Mark the end of input: a pending scalar completes; a pending open value is
        reported as malformed."""
        self._eof = True

    def next_event(self) -> Event | None:
        """Return the next event, or ``None`` if more input is needed (or after EOF/failure)."""
        if self._failed:
            return None
        buf = self._buf
        if self._discarding:
            nl = buf.find(b"\n")
            if nl < 0:
                self._discarded += len(buf)
                buf.clear()
                if self._discarded > self._max:
                    return self._fail(Unsynchronisable())
                return None
            del buf[: nl + 1]
            self._discarding = False
            self._discarded = 0
        if self._kind is _Kind.NONE:
            m = _NON_WS.search(buf)
            if m is None:
                buf.clear()
                return None
            del buf[: m.start()]
        delimited = self._scan()
        if delimited is None:
            if len(buf) > self._max:
                return self._fail(TooLarge(len(buf)))
            if self._eof and buf:
                buf.clear()
                self._reset_scan()
                return Malformed("unexpected end of input inside a JSON value")
            return None
        end, structurally_ok = delimited
        if end > self._max:
            return self._fail(TooLarge(end))
        chunk = bytes(buf[:end])
        del buf[:end]
        depth_exceeded = len(self._stack) > self._max_depth
        self._reset_scan()
        if not structurally_ok:
            self._discarding = True
            if depth_exceeded:
                return Malformed(f"JSON nested deeper than {self._max_depth} levels")
            return Malformed("unbalanced brackets or unterminated string")
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._discarding = True
            return Malformed(f"invalid UTF-8 at byte {exc.start} of the value")
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            self._discarding = True
            return Malformed(f"{exc.msg} at line {exc.lineno} column {exc.colno}")
        except (ValueError, RecursionError) as exc:  # e.g. int over the digit limit
            self._discarding = True
            return Malformed(type(exc).__name__)
        return Message(value)

    # ------------------------------------------------------------------ internals

    def _fail(self, event: TooLarge | Unsynchronisable) -> Event:
        self._failed = True
        self._buf.clear()
        return event

    def _reset_scan(self) -> None:
        self._kind = _Kind.NONE
        self._stack.clear()
        self._in_string = False
        self._pos = 0

    def _scan(self) -> tuple[int, bool] | None:
        """Delimit the value at ``buf[0]`` (non-whitespace).

        Returns ``(end, ok)``: ``buf[:end]`` is the value, ``ok`` False if the scanner
        already knows it is malformed; or ``None`` if the value continues past the buffer.
        """
        buf = self._buf
        if self._kind is _Kind.NONE:
            c = buf[0]
            if c in _OPEN_TO_CLOSE:
                self._kind = _Kind.CONTAINER
                self._stack.append(_OPEN_TO_CLOSE[c])
                self._pos = 1
            elif c == _QUOTE:
                self._kind = _Kind.STRING
                self._in_string = True
                self._pos = 1
            elif c in (0x5D, 0x7D):  # a closer with nothing open
                return 1, False
            else:
                self._kind = _Kind.SCALAR
                self._pos = 1
        if self._kind is _Kind.SCALAR:
            m = _SCALAR_END.search(buf, self._pos)
            if m is not None:
                return m.start(), True
            if self._eof:
                return len(buf), True
            self._pos = len(buf)
            return None
        stack = self._stack
        while True:
            if self._in_string:
                m = _STRING_SPECIAL.search(buf, self._pos)
                if m is None:
                    self._pos = len(buf)
                    return None
                i = m.start()
                c = buf[i]
                if c == _BACKSLASH:
                    if i + 1 >= len(buf):
                        self._pos = i  # rescan the backslash once its escapee arrives
                        return None
                    self._pos = i + 2
                    continue
                if c == _NEWLINE:  # raw newline inside a string: never valid JSON
                    return i, False
                self._in_string = False
                self._pos = i + 1
                if self._kind is _Kind.STRING:
                    return self._pos, True
                continue
            m = _STRUCTURAL.search(buf, self._pos)
            if m is None:
                self._pos = len(buf)
                return None
            i = m.start()
            c = buf[i]
            self._pos = i + 1
            if c == _QUOTE:
                self._in_string = True
            elif c in _OPEN_TO_CLOSE:
                stack.append(_OPEN_TO_CLOSE[c])
                if len(stack) > self._max_depth:
                    return self._pos, False
            elif stack[-1] != c:
                return self._pos, False
            else:
                stack.pop()
                if not stack:
                    return self._pos, True
