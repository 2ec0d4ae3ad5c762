"""JSONStreamDecoder in isolation: any chunking of any mix of framings gives the same values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.ipc.framing import (
    Event,
    JSONStreamDecoder,
    Malformed,
    Message,
    TooLarge,
    Unsynchronisable,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)
documents = st.dictionaries(st.text(max_size=8), json_values, max_size=5) | st.lists(
    json_values, min_size=1, max_size=4
)


def drain(dec: JSONStreamDecoder) -> list[Event]:
    out = []
    while (ev := dec.next_event()) is not None:
        out.append(ev)
    return out


def decode_chunks(chunks: list[bytes], max_bytes: int = 1 << 20) -> list[Event]:
    dec = JSONStreamDecoder(max_bytes)
    events: list[Event] = []
    for chunk in chunks:
        dec.feed(chunk)
        events += drain(dec)
    dec.feed_eof()
    return events + drain(dec)


@settings(max_examples=150, deadline=None)
@given(
    docs=st.lists(documents, min_size=1, max_size=5),
    seps=st.lists(st.sampled_from(["", "\n", " ", "\r\n", "\n\n\t"]), min_size=5, max_size=5),
    indent=st.sampled_from([None, 2]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    ensure_ascii=st.booleans(),
)
def test_any_framing_and_chunking_round_trips(
    docs: list[Any], seps: list[str], indent: int | None, cuts: list[int], ensure_ascii: bool
) -> None:
    text = "".join(
        json.dumps(d, indent=indent, ensure_ascii=ensure_ascii) + seps[i]
        for i, d in enumerate(docs)
    )
    data = text.encode("utf-8")  # st.text() never yields lone surrogates
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert decode_chunks(chunks) == [Message(d) for d in docs]


def test_malformed_then_resync_at_newline() -> None:
    events = decode_chunks([b'{"a": x} {"lost": 1}\n{"b": 2}'])
    assert isinstance(events[0], Malformed)
    assert events[1:] == [Message({"b": 2})]


def test_unterminated_string_ends_at_newline() -> None:
    events = decode_chunks([b'{"a": "no end\n', b'{"b": 1}\n'])
    assert isinstance(events[0], Malformed)
    assert events[1] == Message({"b": 1})


def test_invalid_utf8_is_malformed() -> None:
    events = decode_chunks([b'["\xc3\x28"]\n[1]\n'])
    assert isinstance(events[0], Malformed) and "UTF-8" in events[0].reason
    assert events[1] == Message([1])


def test_depth_limit() -> None:
    dec = JSONStreamDecoder(1 << 20, max_depth=3)
    dec.feed(b"[[[1]]]\n[[[[1]]]]\n[2]\n")
    events = drain(dec)
    assert events[0] == Message([[[1]]])
    assert isinstance(events[1], Malformed) and "deeper than 3" in events[1].reason
    assert events[2] == Message([2])


def test_too_large_pending_and_complete() -> None:
    dec = JSONStreamDecoder(10)
    dec.feed(b'["0123456789')
    assert drain(dec) == [TooLarge(12)]
    dec.feed(b"more")
    assert drain(dec) == []  # fatal: stays stopped
    assert dec.failed
    assert decode_chunks([b"[1,2,3,4,5,6,7]\n"], max_bytes=10) == [TooLarge(15)]
    assert decode_chunks([b"[1]\n[2]\n[3]\n"], max_bytes=4) == [
        Message([1]),
        Message([2]),
        Message([3]),
    ]


def test_unsynchronisable_after_malformed() -> None:
    dec = JSONStreamDecoder(8)
    dec.feed(b"}")
    assert isinstance(dec.next_event(), Malformed)
    dec.feed(b"x" * 20)
    assert drain(dec) == [Unsynchronisable()]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"4", b"2", b"\n"], [Message(42)]),
        ([b"42"], [Message(42)]),  # scalar completed by EOF
        ([b'"a\\', b'"b"'], [Message('a"b')]),  # escape split across chunks
        ([b"  \n\t "], []),
        ([b'{"a": 1'], "malformed"),  # open at EOF
    ],
)
def test_edges(chunks: list[bytes], expected: Any) -> None:
    events = decode_chunks(chunks)
    if expected == "malformed":
        assert len(events) == 1 and isinstance(events[0], Malformed)
    else:
        assert events == expected


def test_each_byte_scanned_once_for_large_chunked_values() -> None:
    """A 4 MiB string value arriving in 4 KiB chunks decodes quickly (no rescans)."""
    payload = json.dumps({"blob": "ab" * (2 << 20)}).encode()
    chunks = [payload[i : i + 4096] for i in range(0, len(payload), 4096)]
    assert decode_chunks(chunks, max_bytes=8 << 20) == [Message({"blob": "ab" * (2 << 20)})]
