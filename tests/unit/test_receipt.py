"""Receipts and results_hash (docs/protocol.md §7)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec, crypto
from medchaind.errors import DecodeError
from medchaind.types import Receipt, decode_receipt, results_hash
from medchaind.types.receipt import OK


def test_default_receipt() -> None:
    r = Receipt()
    assert r.ok and r.code == OK == "ok"
    assert r.encode() == codec.encode({"code": "ok", "reason": "", "events": []})
    # {"code": "ok", "events": [], "reason": ""} in canonical key order
    assert r.encode().hex() == "a364636f6465626f6b666576656e74738066726561736f6e60"


def test_round_trip() -> None:
    r = Receipt("bad_nonce", "expected nonce 3, got 5", ({"type": "x", "n": 1, "b": b"\x00"}, {}))
    back = decode_receipt(r.encode())
    assert back == r
    assert not back.ok
    assert back.encode() == r.encode()


def test_encoding_is_canonical_map() -> None:
    r = Receipt("ok", "", ({"k": [1, 2]},))
    assert codec.decode(r.encode()) == {"code": "ok", "reason": "", "events": [{"k": [1, 2]}]}


def test_results_hash() -> None:
    rs = [Receipt(), Receipt("unauthorized", "not a member", ({"who": b"\x01"},))]
    assert results_hash(rs) == crypto.sha256(codec.encode([{"code": r.code, "events": list(r.events)} for r in rs]))
    assert results_hash([]) == crypto.sha256(b"\x80")
    assert results_hash(rs[::-1]) != results_hash(rs)
    assert results_hash(rs[:1]) != results_hash(rs)


@pytest.mark.parametrize(
    "m",
    [
        {"code": "ok", "reason": ""},
        {"code": "ok", "reason": "", "events": [], "extra": 1},
        {"code": 1, "reason": "", "events": []},
        {"code": "ok", "reason": b"", "events": []},
        {"code": "ok", "reason": "", "events": {}},
        [],
        "ok",
    ],
)
def test_decode_rejects(m: Any) -> None:
    with pytest.raises(DecodeError, match="receipt"):
        decode_receipt(codec.encode(m))


def test_decode_rejects_non_canonical_and_oversize() -> None:
    with pytest.raises(DecodeError):
        decode_receipt(Receipt().encode() + b"\x00")
    big = Receipt("ok", "x" * (1024 * 1024))
    with pytest.raises(DecodeError, match="exceeds"):
        decode_receipt(big.encode())


def test_events_must_be_maps() -> None:
    with pytest.raises(DecodeError):
        decode_receipt(codec.encode({"code": "ok", "reason": "", "events": [1, "x"]}))


def test_results_hash_leaves_out_the_reason() -> None:
    """Protocol 3 (docs/protocol.md §7): the free-text reason is not hashed; code and events are."""
    a = [Receipt("bad_nonce", "nonce 5, expected 3")]
    assert results_hash(a) == results_hash([Receipt("bad_nonce", "another wording")])
    assert results_hash(a) != results_hash([Receipt("unauthorized", "nonce 5, expected 3")])
    assert results_hash([Receipt(events=({"type": "m.x"},))]) != results_hash([Receipt()])
    # [{"code": "ok", "events": []}]
    assert codec.encode([Receipt().result_map()]).hex() == "81a264636f6465626f6b666576656e747380"


def test_ipc_receipt_carries_its_exact_encoding() -> None:
    """Issue 15, item 3: the JSON form hex-encodes bytes and adds `ok`; `encoded` is enc(receipt)."""
    from medchaind.node.rpc import receipt_json

    r = Receipt("ok", "", ({"type": "m.x", "who": b"\x01", "text": "0x01"},))
    j = receipt_json(r)
    assert j["ok"] is True and j["events"][0]["who"] == j["events"][0]["text"] == "0x01"  # ambiguous
    assert decode_receipt(bytes.fromhex(j["encoded"][2:])) == r


# ------------------------------------------------ results_hash cut out of the receipts' encodings

_scalars = st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=40), st.text(max_size=12),
                     st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_receipts = st.builds(Receipt, st.text(max_size=20), st.text(max_size=60),
                      st.lists(st.dictionaries(st.text(max_size=10), _values, max_size=5), max_size=3).map(tuple))


def _direct_results_hash(rs: list[Receipt]) -> bytes:
    """The definition (docs/protocol.md §7), as results_hash computed it before issue 14."""
    return crypto.sha256(codec.encode([r.result_map() for r in rs]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_receipts, max_size=30))
def test_results_hash_equals_the_direct_encoding(rs: list[Receipt]) -> None:
    # unordered and non-ASCII event keys, unicode reasons, 0..30 receipts (array heads
    # of one and two bytes): the hash is the definition's, byte for byte
    assert results_hash(rs) == _direct_results_hash(rs)
    for r in rs:
        assert r.result_encoding() == codec.encode(r.result_map())
        assert r.encode() == codec.encode(r.to_map())  # the memo is the encoding


@pytest.mark.parametrize("n", [0, 23, 24, 255, 256, 65_536])
def test_results_hash_array_heads(n: int) -> None:
    rs = [Receipt("ok", "r" * (i % 3), ({"i": i},)) for i in range(n)]
    assert results_hash(rs) == _direct_results_hash(rs)


def test_results_hash_of_a_receipt_whose_reason_does_not_encode() -> None:
    # a lone surrogate in the reason: the receipt cannot be stored, but the result (which
    # leaves the reason out) hashes as it always did
    r = Receipt("failed", "bad \ud800", ({"k": 1},))
    with pytest.raises(DecodeError):
        r.encode()
    assert results_hash([r]) == _direct_results_hash([r])


def test_the_memo_is_not_part_of_equality_or_replace() -> None:
    r = Receipt("ok", "first", ({"k": 1},))
    enc = r.encode()
    assert r == Receipt("ok", "first", ({"k": 1},))
    other = dataclasses.replace(r, reason="second")
    assert other.encode() != enc and other.encode() == codec.encode(other.to_map())
