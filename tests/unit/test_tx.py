"""Transactions (docs/protocol.md §3): signing, decoding and every stateless rejection."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind import codec, crypto
from medchaind.errors import DecodeError, SignatureError, ValidationError
from medchaind.types import Tx, decode_tx, sign_tx, to_jsonable
from medchaind.types.tx import MAX_BODY_BYTES, MAX_NONCE, MAX_TX_BYTES, tx_from_map

KEY = crypto.SigningKey(bytes(range(32)))
CHAIN = "medchain-test"
BODY = {"content_hash": bytes(range(32)), "kind": "lab-result", "size": 1234}


def make(nonce: int = 0, body: dict[str, Any] | None = None, chain: str = CHAIN) -> Tx:
    return sign_tx(KEY, chain, "record.put", nonce, BODY if body is None else body)


def mutate(tx: Tx, **changes: Any) -> bytes:
    m = tx.to_map()
    for k, v in changes.items():
        if v is DELETE:
            del m[k]
        else:
            m[k] = v
    return codec.encode(m)


DELETE = object()


def test_sign_and_decode_round_trip() -> None:
    tx = make()
    assert tx.v == 1 and tx.chain == CHAIN and tx.type == "record.put"
    assert tx.sender == KEY.public_key and tx.nonce == 0 and tx.body == BODY
    tx.verify_signature()
    back = decode_tx(tx.encoded)
    assert back == tx
    assert back.encoded == tx.encoded and back.hash == tx.hash
    assert back.to_map() == tx.to_map()
    back.verify_signature()
    assert tx.module == "record"


def test_encoding_is_the_canonical_map() -> None:
    tx = make()
    assert tx.encoded == codec.encode(tx.to_map())
    assert codec.decode(tx.encoded) == tx.to_map()
    assert set(codec.decode(tx.encoded)) == {"v", "chain", "type", "sender", "nonce", "body", "sig"}


def test_hash_is_sha256_of_the_encoding_and_stable() -> None:
    tx = make()
    assert tx.hash == crypto.sha256(tx.encoded)
    # re-signing gives the same bytes (deterministic Ed25519) and so the same hash
    assert make().hash == tx.hash
    # body insertion order does not matter
    reordered = dict(reversed(list(BODY.items())))
    assert make(body=reordered).hash == tx.hash
    assert make(nonce=1).hash != tx.hash
    assert hash(tx) == hash(decode_tx(tx.encoded))


def test_signing_payload_is_the_map_without_sig() -> None:
    tx = make()
    m = tx.to_map()
    del m["sig"]
    assert tx.signing_payload() == codec.encode(m)
    assert crypto.verify(tx.sender, tx.sig, crypto.DOMAIN_TX, CHAIN, codec.encode(m))
    assert not crypto.verify(tx.sender, tx.sig, crypto.DOMAIN_VOTE, CHAIN, codec.encode(m))


@given(
    st.integers(0, MAX_NONCE),
    st.dictionaries(
        st.text(max_size=8),
        st.one_of(
            st.integers(-(2**63), 2**64 - 1),
            st.binary(max_size=40),
            st.text(max_size=20),
            st.booleans(),
            st.none(),
            st.lists(st.integers(0, 9), max_size=4),
        ),
        max_size=6,
    ),
)
def test_round_trip_property(nonce: int, body: dict[str, Any]) -> None:
    tx = make(nonce, body)
    back = decode_tx(tx.encoded)
    assert back == tx and back.hash == tx.hash
    back.verify_signature()


def test_to_json() -> None:
    tx = make()
    j = tx.to_json()
    assert j["hash"] == "0x" + tx.hash.hex()
    assert j["sender"] == "0x" + KEY.public_key.hex()
    assert j["body"]["content_hash"] == "0x" + bytes(range(32)).hex()
    assert to_jsonable({"a": [b"\x01", (b"\x02",)], "b": 1}) == {"a": ["0x01", ["0x02"]], "b": 1}


# ------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("changes", "msg"),
    [
        ({"sig": DELETE}, "wrong fields"),
        ({"body": DELETE}, "wrong fields"),
        ({"blob": b"x"}, "wrong fields"),
        ({"v": 2}, "unsupported version"),
        ({"v": 0}, "unsupported version"),
        ({"v": True}, "unsupported version"),
        ({"v": "1"}, "unsupported version"),
        ({"chain": ""}, "chain id"),
        ({"chain": "Medchain"}, "chain id"),
        ({"chain": "-medchain"}, "chain id"),
        ({"chain": "med chain"}, "chain id"),
        ({"chain": "a" * 65}, "chain id"),
        ({"chain": b"medchain"}, "chain id"),
        ({"chain": 7}, "chain id"),
        ({"type": "put"}, "type"),
        ({"type": "Record.put"}, "type"),
        ({"type": "record.put.x"}, "type"),
        ({"type": "record."}, "type"),
        ({"type": ".put"}, "type"),
        ({"type": "record-x.put"}, "type"),
        ({"type": "record.p1"}, "type"),
        ({"type": "a" * 33 + ".put"}, "type"),
        ({"type": 5}, "type"),
        ({"sender": bytes(31)}, "sender"),
        ({"sender": bytes(33)}, "sender"),
        ({"sender": b""}, "sender"),
        ({"sender": "00" * 32}, "sender"),
        ({"nonce": -1}, "nonce"),
        ({"nonce": MAX_NONCE + 1}, "nonce"),
        ({"nonce": 2**64 - 1}, "nonce"),
        ({"nonce": True}, "nonce"),
        ({"nonce": "0"}, "nonce"),
        ({"body": []}, "body must be a map"),
        ({"body": b""}, "body must be a map"),
        ({"body": None}, "body must be a map"),
        ({"sig": bytes(63)}, "sig must be 64 bytes"),
        ({"sig": bytes(65)}, "sig must be 64 bytes"),
        ({"sig": "00" * 64}, "sig must be 64 bytes"),
    ],
)
def test_decode_rejects_malformed_fields(changes: dict[str, Any], msg: str) -> None:
    data = mutate(make(), **changes)
    with pytest.raises(DecodeError, match=msg):
        decode_tx(data)
    with pytest.raises(ValidationError, match=msg):
        tx_from_map(codec.decode(data))


@pytest.mark.parametrize("data", [codec.encode([1]), codec.encode(b"x"), codec.encode(None)])
def test_decode_rejects_non_map(data: bytes) -> None:
    with pytest.raises(DecodeError, match="expected a map"):
        decode_tx(data)


def test_decode_accepts_limits_exactly() -> None:
    tx = make(nonce=MAX_NONCE, body={"k": "a" * 30})
    assert decode_tx(tx.encoded).nonce == MAX_NONCE
    assert decode_tx(make(nonce=0, body={}).encoded).body == {}


def test_oversize_body() -> None:
    # body just over the limit while the whole tx stays under MAX_TX_BYTES
    body = {"x": bytes(MAX_BODY_BYTES)}
    m = make().to_map()
    m["body"] = body
    data = codec.encode(m)
    assert len(data) <= MAX_TX_BYTES
    with pytest.raises(DecodeError, match="body exceeds"):
        decode_tx(data)
    with pytest.raises(ValidationError, match="body exceeds"):
        tx_from_map(m)
    with pytest.raises(ValidationError, match="body exceeds"):
        make(body=body)
    # the largest acceptable body
    ok = {"x": bytes(MAX_BODY_BYTES - len(codec.encode({"x": b""})) - 2)}
    assert len(codec.encode(ok)) <= MAX_BODY_BYTES
    assert decode_tx(make(body=ok).encoded).body == ok


def test_oversize_tx() -> None:
    m = make().to_map()
    m["body"] = {"x": bytes(MAX_TX_BYTES)}
    data = codec.encode(m)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_tx(data)
    with pytest.raises(ValidationError, match="exceeds"):
        tx_from_map(m)


def test_decode_rejects_non_canonical_and_trailing() -> None:
    tx = make()
    with pytest.raises(DecodeError):
        decode_tx(tx.encoded + b"\x00")
    with pytest.raises(DecodeError):
        decode_tx(tx.encoded[:-1])
    # nonce 0 with a 1-byte argument: same value, different bytes, must not decode
    i = tx.encoded.index(b"enonce\x00")
    bad = tx.encoded[: i + 6] + b"\x18\x00" + tx.encoded[i + 7 :]
    with pytest.raises(DecodeError, match="canonical"):
        decode_tx(bad)


# -------------------------------------------------------------------- signatures


def test_signature_fails_for_another_chain_id() -> None:
    tx = make(chain="a")
    tx.verify_signature()
    m = tx.to_map()
    m["chain"] = "b"
    moved = tx_from_map(m)
    assert moved.sig == tx.sig
    with pytest.raises(SignatureError, match="chain 'b'"):
        moved.verify_signature()
    # and the same through the wire decoder
    with pytest.raises(SignatureError):
        decode_tx(moved.encoded).verify_signature()


@pytest.mark.parametrize(
    "changes",
    [
        {"nonce": 1},
        {"type": "record.del"},
        {"body": {**BODY, "size": 1235}},
        {"body": {}},
        {"sender": crypto.SigningKey(bytes(32)).public_key},
    ],
)
def test_signature_covers_every_field(changes: dict[str, Any]) -> None:
    tx = decode_tx(mutate(make(), **changes))
    with pytest.raises(SignatureError):
        tx.verify_signature()


def test_tampered_signature() -> None:
    tx = make()
    sig = bytearray(tx.sig)
    sig[10] ^= 0x80
    with pytest.raises(SignatureError):
        decode_tx(mutate(tx, sig=bytes(sig))).verify_signature()


def test_sign_tx_validates_its_inputs() -> None:
    with pytest.raises(ValidationError, match="type"):
        sign_tx(KEY, CHAIN, "Bad", 0, {})
    with pytest.raises(ValidationError, match="chain"):
        sign_tx(KEY, "Bad Chain", "a.b", 0, {})
    with pytest.raises(ValidationError, match="nonce"):
        sign_tx(KEY, CHAIN, "a.b", -1, {})
    with pytest.raises(DecodeError):
        sign_tx(KEY, CHAIN, "a.b", 0, {"f": 1.5})


@pytest.mark.parametrize(
    "changes", [{"chain": CHAIN + "\n"}, {"type": "record.put\n"}], ids=["chain", "type"]
)
def test_trailing_newline_in_identifiers_is_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_tx(mutate(make(), **changes))
