"""The fast decoding paths accept exactly what the straightforward decoders accepted
(issue 14): :func:`codec.decode` with tags refused while parsing, :func:`decode_tx`
with its cheaper validation and ``Tx`` construction, and the head-only readers of
arrays of byte strings (:func:`codec.split_bytes_array`: the ``tx/1`` batch envelope,
``tx_submitBatch``'s arrays).

The oracles below are the pre-change implementations, kept here verbatim in substance
(cbor2 with the strict options, the data-model walk and a canonical re-encoding
compared with the input), so a later change to the package cannot move them. Every
property feeds both sides arbitrary bytes and mutations of valid encodings, and
requires: both refuse (with a typed error), or both return equal values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec, crypto
from medchaind.consensus.wire import MAX_TX_BATCH, decode_tx_batch, encode_tx_batch
from medchaind.errors import DecodeError, MedchainError, ValidationError
from medchaind.node.rpc import InvalidParams, _cbor_array
from medchaind.node.txgossip import TxGossip
from medchaind.types import Tx, decode_tx, sign_tx
from medchaind.types.tx import MAX_BODY_BYTES, MAX_TX_BYTES, validate_tx_map

# ------------------------------------------------------------------------ oracles


def ref_decode(data: bytes, max_size: int = codec.DEFAULT_MAX_SIZE) -> Any:
    """codec.decode before issue 14's changes (tags were refused only after decoding)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError("too long")
    if not data:
        raise DecodeError("empty input")
    try:
        obj = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False,
                          max_depth=codec.MAX_DEPTH + 1, semantic_decoders={})
    except Exception as exc:
        raise DecodeError(f"malformed CBOR: {exc}") from None
    if codec.encode(obj) != data:  # the data-model walk, then the canonical encoding
        raise DecodeError("not canonical")
    return obj


def ref_decode_tx(data: bytes) -> Tx:
    m = ref_decode(data, MAX_TX_BYTES)
    try:
        validate_tx_map(m)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None
    if len(codec.encode(m["body"])) > MAX_BODY_BYTES:
        raise DecodeError("body too long")
    return Tx(chain=m["chain"], type=m["type"], sender=m["sender"], nonce=m["nonce"], body=m["body"],
              sig=m["sig"], v=m["v"], encoded=bytes(data), hash=crypto.sha256(bytes(data)))


def ref_decode_tx_batch(data: bytes) -> list[bytes]:
    d = ref_decode(data, max_size=MAX_TX_BATCH * 70_000)
    if not isinstance(d, dict) or set(d) != {"txs"} or not isinstance(d["txs"], list):
        raise DecodeError("tx batch: expected {txs: [...]}")
    if len(d["txs"]) > MAX_TX_BATCH or not all(isinstance(t, bytes) for t in d["txs"]):
        raise DecodeError("tx batch: at most 1024 byte strings")
    return list(d["txs"])


def same(a: Any, b: Any) -> bool:
    """Equal values (both decoded, so in the data model): equal canonical encodings,
    which also tell bool from int and bytes from None."""
    return codec.encode(a) == codec.encode(b)


def outcome(fn: Any, data: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(data)
    except MedchainError as exc:  # a typed refusal; anything else fails the test
        return "refused", type(exc)


def tx_fields(tx: Tx) -> tuple[Any, ...]:
    return tuple(getattr(tx, f.name) for f in dataclasses.fields(Tx))


# ---------------------------------------------------------------- mutations

#: initial bytes worth planting: long/short heads, indefinite lengths, floats, simple
#: values, null, and tags (0, 2 bignum, 24-byte tag head, 25 stringref, 28/29 sharing)
PLANTS = [0x18, 0x19, 0x1A, 0x1B, 0x40, 0x41, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x5F, 0x60, 0x7F, 0x80,
          0x81, 0x9F, 0xA0, 0xA1, 0xBF, 0xC0, 0xC2, 0xD8, 0xD9, 0xF4, 0xF6, 0xF7, 0xF9, 0xFB, 0xFF]


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    b = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "plant", "insert", "delete", "truncate", "append", "tag"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "plant" and b:
            b[i] = draw(st.sampled_from(PLANTS))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and b:
            del b[i : i + draw(st.integers(1, 3))]
        elif op == "truncate":
            del b[i:]
        elif op == "append":
            b += draw(st.binary(min_size=1, max_size=3))
        elif op == "tag":  # wrap the item at i in a tag (sharing, stringref, bignum, other)
            b[i:i] = draw(st.sampled_from([b"\xd8\x1c", b"\xd8\x1d", b"\xd8\x19", b"\xd9\x01\x00", b"\xc2", b"\xc6"]))
    return bytes(b)


KEY = crypto.SigningKey(bytes(range(32)))
CHAIN = "medchain-test"
BODIES = st.one_of(
    st.builds(lambda d, m: {"digest": d, "kind": "bench", "meta": m},
              st.binary(min_size=32, max_size=32), st.binary(max_size=300)),
    st.builds(lambda k: {"role": "patient", "enc_key": k}, st.binary(min_size=32, max_size=32)),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=8),
                                                   st.lists(st.integers(0, 300), max_size=3), st.none(),
                                                   st.booleans()), max_size=5),
)
TXS = st.builds(lambda n, body, t: sign_tx(KEY, CHAIN, t, n, body),
                st.integers(0, 2**63 - 1), BODIES, st.sampled_from(["anchor.commit", "identity.register", "a.b"]))


def tx_bytes() -> st.SearchStrategy[bytes]:
    return TXS.map(lambda t: t.encoded)


# byte strings around every head-size boundary of a length
ITEMS = st.one_of(st.binary(max_size=30), st.sampled_from([bytes(n) for n in (23, 24, 255, 256, 257)]))
BATCHES = st.lists(ITEMS, max_size=6).map(encode_tx_batch)

# ------------------------------------------------------------ codec.decode


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=80), tx_bytes().flatmap(mutated), BATCHES.flatmap(mutated)))
def test_decode_accepts_what_the_reference_accepted(data: bytes) -> None:
    got, want = outcome(codec.decode, data), outcome(ref_decode, data)
    assert got[0] == want[0], (data.hex(), got, want)
    if got[0] == "ok":
        assert same(got[1], want[1])


def shared_bomb(k: int, levels: int) -> bytes:
    """``levels`` nested lists of ``k`` references each to the one below (tags 28/29):
    a few hundred bytes whose decoded object graph has ``k**levels`` paths."""
    enc = b"\xd8\x1c\x80"
    for i in range(1, levels + 1):
        ref = bytes([0xD8, 29, levels - i + 1])
        enc = bytes([0xD8, 28, 0x98, k]) + enc + ref * (k - 1)
    return enc


@pytest.mark.parametrize("data", [
    shared_bomb(24, 7),  # 514 bytes, walked as a tree: 24**7 items (the old walk: hours)
    bytes.fromhex("d90100") + b"\x82\x44aaaa\xd8\x19\x00",  # stringref namespace, a reference
    bytes.fromhex("c249010000000000000000"),  # bignum
    b"\x82\x00" + bytes.fromhex("d9d9f700"),  # self-describe, inside an array
])
def test_tags_are_refused_while_parsing(data: bytes) -> None:
    """Tags never reach cbor2's own decoders (value sharing, string references): a
    few hundred bytes of shared references once decoded to a graph that took hours to
    walk. The message proves the refusal came from the parser, not the walk."""
    with pytest.raises(DecodeError, match="tags are not allowed"):
        codec.decode(data)


# --------------------------------------------------------------------- decode_tx


@settings(max_examples=300)
@given(st.one_of(tx_bytes(), tx_bytes().flatmap(mutated), st.binary(max_size=120)))
def test_decode_tx_accepts_what_the_reference_accepted(data: bytes) -> None:
    got, want = outcome(decode_tx, data), outcome(ref_decode_tx, data)
    assert got[0] == want[0], (data.hex(), got, want)
    if got[0] == "ok":
        assert tx_fields(got[1]) == tx_fields(want[1])


@given(TXS)
def test_a_decoded_tx_has_every_field_a_constructed_one_has_and_is_frozen(tx: Tx) -> None:
    """decode_tx fills a bare instance through the slots: every field must be set (a new
    field that it forgot would raise AttributeError here) and the value is as frozen."""
    back = decode_tx(tx.encoded)
    built = Tx(**{f.name: getattr(tx, f.name) for f in dataclasses.fields(Tx)})
    assert tx_fields(back) == tx_fields(built) == tx_fields(tx)
    assert back == tx and hash(back) == hash(tx) and back.hash == crypto.sha256(tx.encoded)
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.nonce = 1  # type: ignore[misc]
    assert dataclasses.replace(back, nonce=back.nonce).encoded == tx.encoded


# ------------------------------------------------------------------ tx batches


@settings(max_examples=400)
@given(st.one_of(BATCHES, BATCHES.flatmap(mutated), st.binary(max_size=40),
                 st.binary(max_size=40).map(lambda b: b"\xa1\x63txs" + b)))
def test_tx_batch_accepts_what_the_reference_accepted(data: bytes) -> None:
    got, want = outcome(decode_tx_batch, data), outcome(ref_decode_tx_batch, data)
    assert got[0] == want[0], (data.hex(), got, want)
    if got[0] == "ok":
        assert same(got[1], want[1])
    # the gossip validator forwards exactly the batches that decode
    assert TxGossip.validate(None, data) is (want[0] == "ok")  # type: ignore[arg-type]


def test_tx_batch_limits_and_non_canonical_envelopes() -> None:
    full = [bytes([i % 256]) * 3 for i in range(MAX_TX_BATCH)]
    assert decode_tx_batch(encode_tx_batch(full)) == full
    over = encode_tx_batch([*full, b"x"])
    bad = [
        over,  # 1025 items
        b"\xa1\x63txs\x99\x00\x01\x41x",  # array length in a 2-byte head
        b"\xa1\x63txs\x81\x58\x01x",  # item length in a 1-byte head
        b"\xa1\x63txs\x9f\x41x\xff",  # indefinite array
        b"\xa1\x63txs\x81\x5f\x41x\xff",  # indefinite byte string
        b"\xa1\x63txs\x81\x41x\x00",  # trailing byte
        b"\xa1\x63txs\x82\x41x",  # missing item
        b"\xa1\x63txs\x81\xf6",  # null item
        b"\xa1\x63txs\x81\xd8\x18\x41x",  # tagged item
        b"\xa2\x63txs\x80\x63txs\x80",  # duplicate key
        b"\xa1\x63tXs\x80",  # another key
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            decode_tx_batch(data)
        assert not TxGossip.validate(None, data)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="expected bytes"):
        decode_tx_batch(None)  # type: ignore[arg-type]


# ---------------------------------------------------------- split_bytes_array


ARRAYS = st.lists(st.one_of(ITEMS, st.none()), max_size=6).map(codec.encode)


@settings(max_examples=400)
@given(st.one_of(ARRAYS, ARRAYS.flatmap(mutated), st.binary(max_size=30)), st.booleans())
def test_split_bytes_array_is_decode_restricted_to_arrays_of_bytes(data: bytes, nulls: bool) -> None:
    """Sound (what it returns, decode returns) and complete (an array of byte strings,
    or of nulls too when asked, that decodes is never left to the slow path)."""
    got = codec.split_bytes_array(data, nulls=nulls)
    kind, want = outcome(codec.decode, data)
    allowed = (bytes, type(None)) if nulls else (bytes,)
    fits = kind == "ok" and type(want) is list and all(type(x) in allowed for x in want)
    if fits:
        assert got is not None and same(got, want)
    else:
        assert got is None
    if fits and len(want) > 2:
        assert codec.split_bytes_array(data, nulls=nulls, max_items=len(want) - 1) is None


@settings(max_examples=200)
@given(st.one_of(ARRAYS, ARRAYS.flatmap(mutated), st.binary(max_size=30)), st.booleans())
def test_submit_batch_arrays_decode_as_before(data: bytes, nulls: bool) -> None:
    def ref(raw: bytes) -> Any:
        try:
            items = codec.decode(raw, max_size=1 << 20, max_depth=2)
        except DecodeError:
            raise InvalidParams("x") from None
        if not isinstance(items, list) or not items:
            raise InvalidParams("x")
        return items

    got, want = outcome(lambda d: _cbor_array(d, "txs", 1 << 20, nulls=nulls), data), outcome(ref, data)
    assert got[0] == want[0] and (got[0] != "ok" or same(got[1], want[1])), (data.hex(), got, want)


# ------------------------------------------------------------- signing payload


@given(TXS)
def test_the_signing_payload_cut_from_the_encoding_is_the_encoded_unsigned_map(tx: Tx) -> None:
    """docs/protocol.md §3: enc(tx without "sig"), here sliced out of the canonical
    encoding; the same bytes as encoding the six fields, for decoded and built txs."""
    want = codec.encode(tx.unsigned_map())
    assert tx.signing_payload() == want
    assert decode_tx(tx.encoded).signing_payload() == want
    decode_tx(tx.encoded).verify_signature()
    # a Tx assembled by hand without its encoding is encoded, as before
    bare = Tx(chain=tx.chain, type=tx.type, sender=tx.sender, nonce=tx.nonce, body=tx.body, sig=tx.sig)
    assert bare.signing_payload() == want
