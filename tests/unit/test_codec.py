"""Canonical CBOR (docs/protocol.md §1): round trip, one encoding per value, and
rejection of every non-canonical or out-of-model form.

The encoder is checked byte for byte against ``ref_encode``, an independent
straightforward implementation of RFC 8949 §4.2.1 written here from the RFC, so a
change of cbor2's behaviour cannot silently change what we hash and sign.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec
from medchaind.errors import DecodeError

# ----------------------------------------------------------------- reference encoder


def _head(major: int, arg: int) -> bytes:
    """RFC 8949 §4.2.1: the shortest head for ``arg``."""
    if arg < 24:
        return bytes([major << 5 | arg])
    if arg < 2**8:
        return bytes([major << 5 | 24]) + struct.pack(">B", arg)
    if arg < 2**16:
        return bytes([major << 5 | 25]) + struct.pack(">H", arg)
    if arg < 2**32:
        return bytes([major << 5 | 26]) + struct.pack(">I", arg)
    return bytes([major << 5 | 27]) + struct.pack(">Q", arg)


def ref_encode(v: Any) -> bytes:
    if v is False:
        return b"\xf4"
    if v is True:
        return b"\xf5"
    if v is None:
        return b"\xf6"
    if type(v) is int:
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if type(v) is bytes:
        return _head(2, len(v)) + v
    if type(v) is str:
        b = v.encode("utf-8")
        return _head(3, len(b)) + b
    if type(v) is list:
        return _head(4, len(v)) + b"".join(ref_encode(x) for x in v)
    if type(v) is dict:
        items = sorted((ref_encode(k), ref_encode(x)) for k, x in v.items())  # bytewise key order
        return _head(5, len(v)) + b"".join(k + x for k, x in items)
    raise TypeError(type(v))


def same(a: Any, b: Any) -> bool:
    """Equality that also distinguishes bool from int (``True == 1`` in Python)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def reorder(v: Any, rnd: random.Random) -> Any:
    """A copy of ``v`` whose dicts (recursively) have a different insertion order."""
    if type(v) is list:
        return [reorder(x, rnd) for x in v]
    if type(v) is dict:
        keys = list(v)
        rnd.shuffle(keys)
        return {k: reorder(v[k], rnd) for k in keys}
    return v


# -------------------------------------------------------------------- strategies

ints = st.integers(min_value=codec.INT_MIN, max_value=codec.INT_MAX)
# Values near every head-size boundary are where shortest-form bugs live.
boundary_ints = st.sampled_from(
    [b + d for b in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32) for d in (-1, 0, 1)]
    + [-x - 1 for x in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32)]
    + [codec.INT_MIN, codec.INT_MAX]
)
scalars = st.one_of(
    st.none(), st.booleans(), ints, boundary_ints, st.binary(max_size=300), st.text(max_size=40)
)


def values(depth: int = 5) -> st.SearchStrategy[Any]:
    if depth == 0:
        return scalars
    child = values(depth - 1)
    return st.one_of(
        scalars,
        st.lists(child, max_size=6),
        st.dictionaries(st.text(max_size=10), child, max_size=6),
    )


VALUES = values()

# ------------------------------------------------------------------ round trip


@given(VALUES)
def test_round_trip(v: Any) -> None:
    enc = codec.encode(v)
    assert same(codec.decode(enc), v)


@given(VALUES)
def test_decode_stored_reads_what_encode_wrote(v: Any) -> None:
    """State reads skip the canonical re-check: same value as decode for every encoding."""
    enc = codec.encode(v)
    got = codec.decode_stored(enc)
    assert same(got, v) and same(got, codec.decode(enc)) and codec.encode(got) == enc


@given(VALUES)
def test_encoding_matches_independent_reference(v: Any) -> None:
    assert codec.encode(v) == ref_encode(v)


@given(VALUES, st.randoms(use_true_random=False))
def test_encoding_independent_of_dict_insertion_order(v: Any, rnd: random.Random) -> None:
    enc = codec.encode(v)
    assert codec.encode(reorder(v, rnd)) == enc
    assert codec.encode(codec.decode(enc)) == enc


@given(VALUES, VALUES)
def test_distinct_values_have_distinct_encodings(a: Any, b: Any) -> None:
    if not same(a, b):
        assert codec.encode(a) != codec.encode(b)


def test_encode_unchecked_matches_encode() -> None:
    v = {"b": [1, -2, b"x"], "a": {"z": None, "y": True}, "": "é"}
    assert codec.encode_unchecked(v) == codec.encode(v) == ref_encode(v)


@pytest.mark.parametrize(
    ("value", "hexstr"),
    [
        (0, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65536, "1a00010000"),
        (2**32, "1b0000000100000000"),
        (2**64 - 1, "1bffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "3818"),
        (-(2**63), "3b7fffffffffffffff"),
        (False, "f4"),
        (True, "f5"),
        (None, "f6"),
        (b"", "40"),
        ("", "60"),
        ("a", "6161"),
        ("ü", "62c3bc"),
        ([], "80"),
        ({}, "a0"),
        # keys sort by their encodings: shorter first, then bytewise ("B" 0x42 < "a" 0x61)
        ({"bb": 1, "b": 2, "a": 3, "B": 4}, "a461420461610361620262626201"),
    ],
)
def test_known_encodings(value: Any, hexstr: str) -> None:
    assert codec.encode(value).hex() == hexstr
    assert same(codec.decode(bytes.fromhex(hexstr)), value)


def test_integer_range_edges() -> None:
    for ok in (codec.INT_MIN, codec.INT_MAX):
        assert codec.decode(codec.encode(ok)) == ok
    for bad in (codec.INT_MIN - 1, codec.INT_MAX + 1, 2**100, -(2**100)):
        with pytest.raises(DecodeError, match="64-bit range"):
            codec.encode(bad)


@pytest.mark.parametrize(
    "bad",
    [
        1.0,
        float("nan"),
        {1: "int key"},
        {b"k": 1},
        (1, 2),
        {1, 2},
        bytearray(b"x"),
        object(),
        [1.5],
        {"a": {"b": [0.0]}},
    ],
)
def test_encode_rejects_values_outside_the_model(bad: Any) -> None:
    with pytest.raises(DecodeError):
        codec.encode(bad)


def test_encode_rejects_lone_surrogate_with_decode_error() -> None:
    with pytest.raises(DecodeError):
        codec.encode({"name": "\ud800"})


def test_decode_accepts_bytes_like() -> None:
    enc = codec.encode([1, "x"])
    assert codec.decode(bytearray(enc)) == [1, "x"]
    assert codec.decode(memoryview(enc)) == [1, "x"]
    with pytest.raises(DecodeError, match="expected bytes"):
        codec.decode("a1")  # type: ignore[arg-type]


# --------------------------------------------------------------- rejection table

# One hand-built byte string per rule of docs/protocol.md §1.3. Each must raise
# DecodeError; the second column is a fragment of the expected message ("" = any).
NON_CANONICAL = [
    # non-shortest integer heads
    ("1817", "canonical", "uint 23 in 1-byte argument"),
    ("1800", "canonical", "uint 0 in 1-byte argument"),
    ("190001", "canonical", "uint 1 in 2-byte argument"),
    ("1900ff", "canonical", "uint 255 in 2-byte argument"),
    ("1a00000001", "canonical", "uint 1 in 4-byte argument"),
    ("1a0000ffff", "canonical", "uint 65535 in 4-byte argument"),
    ("1b0000000000000001", "canonical", "uint 1 in 8-byte argument"),
    ("1b00000000ffffffff", "canonical", "uint 2**32-1 in 8-byte argument"),
    ("3817", "canonical", "nint -24 in 1-byte argument"),
    ("390000", "canonical", "nint -1 in 2-byte argument"),
    ("3a000000ff", "canonical", "nint -256 in 4-byte argument"),
    ("3b0000000000000000", "canonical", "nint -1 in 8-byte argument"),
    # non-shortest length heads
    ("5800", "canonical", "empty bytes, 1-byte length"),
    ("580161", "canonical", "bytes(1), 1-byte length"),
    ("59000161", "canonical", "bytes(1), 2-byte length"),
    ("5a0000000161", "canonical", "bytes(1), 4-byte length"),
    ("5b000000000000000161", "canonical", "bytes(1), 8-byte length"),
    ("780161", "canonical", "text(1), 1-byte length"),
    ("79000161", "canonical", "text(1), 2-byte length"),
    ("7a0000000161", "canonical", "text(1), 4-byte length"),
    ("7b000000000000000161", "canonical", "text(1), 8-byte length"),
    ("9800", "canonical", "array(0), 1-byte length"),
    ("99000100", "canonical", "array(1), 2-byte length"),
    ("9a0000000100", "canonical", "array(1), 4-byte length"),
    ("9b000000000000000100", "canonical", "array(1), 8-byte length"),
    ("b800", "canonical", "map(0), 1-byte length"),
    ("b90001616100", "canonical", "map(1), 2-byte length"),
    ("ba00000001616100", "canonical", "map(1), 4-byte length"),
    ("bb0000000000000001616100", "canonical", "map(1), 8-byte length"),
    # map key order and duplicates
    ("a2616202616101", "canonical", "keys 'b','a' unsorted"),
    ("a262616101616202", "canonical", "longer key 'aa' before shorter 'b'"),
    ("a2616101614102", "canonical", "'a' (0x61) before 'A' (0x41)"),
    ("a2616101616102", "uplicate", "duplicate key 'a'"),
    ("a3616101616202616103", "uplicate", "duplicate key 'a' not adjacent"),
    # indefinite lengths
    ("5f4161ff", "indefinite", "indefinite bytes"),
    ("5fff", "indefinite", "empty indefinite bytes"),
    ("7f6161ff", "indefinite", "indefinite text"),
    ("9f01ff", "indefinite", "indefinite array"),
    ("9fff", "indefinite", "empty indefinite array"),
    ("bf616101ff", "indefinite", "indefinite map"),
    ("bfff", "indefinite", "empty indefinite map"),
    ("819f01ff", "indefinite", "nested indefinite array"),
    # floats
    ("f93c00", "float", "half 1.0"),
    ("f90000", "float", "half 0.0"),
    ("f97e00", "float", "half NaN"),
    ("fa3f800000", "float", "single 1.0"),
    ("fb3ff0000000000000", "float", "double 1.0"),
    ("a16161fb0000000000000000", "float", "double 0.0 as a map value"),
    # tags
    ("c074323031332d30332d32315432303a30343a30305a", "", "tag 0 datetime string"),
    ("c11a514b67b0", "", "tag 1 epoch datetime"),
    ("c24101", "", "tag 2 bignum 1"),
    ("c240", "", "tag 2 empty bignum (0)"),
    ("c249010000000000000000", "", "tag 2 bignum 2**64"),
    ("c34100", "", "tag 3 negative bignum -1"),
    ("c349010000000000000000", "", "tag 3 negative bignum -2**64-1"),
    ("c400", "", "tag 4 decimal fraction"),
    ("d82a4100", "", "tag 42 (CID)"),
    ("d820656869212121", "", "tag 32 URI"),
    ("d9010280", "", "tag 258 set"),
    ("d9d9f700", "", "tag 55799 self-describe"),
    ("db000000000000000000", "", "tag 0 with 8-byte argument"),
    # simple values
    ("f7", "", "undefined"),
    ("e0", "", "simple 0"),
    ("f3", "", "simple 19"),
    ("f820", "", "simple 32"),
    ("f8ff", "", "simple 255"),
    ("f814", "", "false in two-byte form"),
    # non-text map keys
    ("a10102", "text strings", "int key"),
    ("a1200102", "", "nint key then garbage"),
    ("a1416101", "text strings", "bytes key"),
    ("a1f601", "text strings", "null key"),
    ("a1f501", "text strings", "true key"),
    ("a1800102", "", "array key"),
    ("a1a00102", "", "map key"),
    # trailing bytes
    ("0000", "trailing", "two items"),
    ("8001", "trailing", "empty array then an int"),
    ("a0a0", "trailing", "two maps"),
    ("6161ff", "trailing", "text then break"),
    # truncated input
    ("18", "", "missing 1-byte argument"),
    ("19ff", "", "short 2-byte argument"),
    ("1a0000", "", "short 4-byte argument"),
    ("1b00000000", "", "short 8-byte argument"),
    ("430102", "", "bytes shorter than length"),
    ("6261", "", "text shorter than length"),
    ("8201", "", "array missing an item"),
    ("a16161", "", "map key without value"),
    ("a1", "", "map without entries"),
    ("5bffffffffffffffff", "", "bytes claiming 2**64-1 length"),
    ("9bffffffffffffffff", "", "array claiming 2**64-1 items"),
    # invalid UTF-8
    ("62c328", "", "bad continuation byte"),
    ("61ff", "", "0xff"),
    ("61c3", "", "truncated sequence"),
    ("63eda080", "", "encoded surrogate U+D800"),
    ("62c0af", "", "overlong '/'"),
    ("64f4900000", "", "code point above U+10FFFF"),
    # reserved / break
    ("1c", "", "reserved additional info 28"),
    ("1f", "", "additional info 31 on an integer"),
    ("3c00", "", "reserved additional info 28 on a negative integer"),
    ("5d00", "", "reserved additional info 29 on bytes"),
    ("7e00", "", "reserved additional info 30 on text"),
    ("dc00", "", "reserved additional info 28 on a tag"),
    ("df00", "", "additional info 31 on a tag"),
    ("fc", "", "reserved simple/float encoding 28"),
    ("ff", "", "lone break"),
    # integers beyond the data model
    ("3bffffffffffffffff", "64-bit range", "nint -2**64"),
    ("3b8000000000000000", "64-bit range", "nint -2**63-1"),
]


@pytest.mark.parametrize(
    ("hexstr", "msg", "why"), NON_CANONICAL, ids=[w for _, _, w in NON_CANONICAL]
)
def test_decode_rejects(hexstr: str, msg: str, why: str) -> None:
    with pytest.raises(DecodeError, match=msg or None):
        codec.decode(bytes.fromhex(hexstr))


def test_rejection_table_covers_values_cbor_would_otherwise_accept() -> None:
    # Guard the table itself: each "canonical" row decodes under a lax decoder, so the
    # rejection really comes from the canonical check and not from malformed bytes.
    import cbor2

    for hexstr, msg, _why in NON_CANONICAL:
        if msg == "canonical":
            cbor2.loads(bytes.fromhex(hexstr))


def test_decode_rejects_empty_input() -> None:
    with pytest.raises(DecodeError, match="empty"):
        codec.decode(b"")


def _nested(n: int, inner: bytes) -> bytes:
    return b"\x81" * n + inner


def test_depth_limit_boundary() -> None:
    d = codec.MAX_DEPTH
    # The top-level item is at depth 0; items inside a container at depth k are at k+1.
    # d+1 nested arrays: the innermost (empty) array is at depth d -> accepted.
    v = codec.decode(_nested(d, b"\x80"))
    for _ in range(d):
        v = v[0]
    assert v == []
    # an integer at depth d (inside d arrays) -> accepted
    assert codec.decode(_nested(d, b"\x00")) is not None
    # one level more -> rejected, for arrays, scalars and maps alike
    for bad in (_nested(d + 1, b"\x80"), _nested(d, b"\x81\x00"), _nested(d + 5, b"\x80")):
        with pytest.raises(DecodeError, match="nesting|depth"):
            codec.decode(bad)
    deep_map = b"\xa1\x61k" * d + b"\x00"  # scalar at depth d inside d maps
    assert codec.decode(deep_map) is not None
    with pytest.raises(DecodeError, match="nesting|depth"):
        codec.decode(b"\xa1\x61k" * (d + 1) + b"\x00")


def test_encode_enforces_the_same_depth_limit() -> None:
    ok: Any = []
    for _ in range(codec.MAX_DEPTH):
        ok = [ok]
    assert codec.decode(codec.encode(ok)) == ok
    with pytest.raises(DecodeError, match="nesting"):
        codec.encode([ok])


def test_very_deep_input_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError):
        codec.decode(b"\x81" * 100_000 + b"\x80")


def test_max_size() -> None:
    enc = codec.encode({"data": bytes(1000)})
    assert codec.decode(enc, max_size=len(enc)) == {"data": bytes(1000)}
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode(enc, max_size=len(enc) - 1)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode(b"\x00" * (codec.DEFAULT_MAX_SIZE + 1))


# ------------------------------------------------------------------------- fuzz


def _check_decode(data: bytes) -> None:
    try:
        v = codec.decode(data)
    except DecodeError:
        return
    assert codec.encode(v) == data


@given(st.binary(max_size=64))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _check_decode(data)


@settings(max_examples=300)
@given(VALUES, st.data())
def test_fuzz_mutated_valid_encodings(v: Any, data: st.DataObject) -> None:
    enc = bytearray(codec.encode(v))
    op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
    i = data.draw(st.integers(0, len(enc) - 1))
    if op == "flip":
        enc[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "set":
        enc[i] = data.draw(st.integers(0, 255))
    elif op == "insert":
        enc.insert(i, data.draw(st.integers(0, 255)))
    elif op == "delete":
        del enc[i]
    elif op == "truncate":
        del enc[i:]
    else:
        enc += data.draw(st.binary(min_size=1, max_size=4))
    _check_decode(bytes(enc))


@given(st.binary(max_size=32), st.integers(0, 0x1F), st.integers(0, 7))
def test_fuzz_item_heads(tail: bytes, info: int, major: int) -> None:
    # every initial byte, followed by arbitrary bytes
    _check_decode(bytes([major << 5 | info]) + tail)
