"""Gossip and sync encodings (medchaind/consensus/wire.py).

Each decoder is the boundary for one message kind from an untrusted peer: it returns a
validated value or raises a MedchainError (DecodeError / ValidationError), which the
gossip validator turns into a reject. Nothing a peer sends may raise anything else, so
besides the round trips and the limits, every decoder is fuzzed with random bytes and
with random well-formed CBOR shaped like the real messages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
import pytest
from consensus_kit import build_chain, proposal, value, vote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medchaind import codec, core
from medchaind.consensus import wire
from medchaind.consensus.compact import CompactBlock
from medchaind.consensus.wire import MAX_SYNC_BLOCKS, MAX_TX_BATCH, ConsensusMsg
from medchaind.errors import DecodeError, MedchainError, ValidationError

CHAIN = build_chain(3)  # three real blocks of a one-authority chain, with commits


def raw(obj: Any) -> bytes:
    """Canonical CBOR of ``obj`` (what a peer could send, well-formed or not)."""
    return codec.encode(obj)


# ------------------------------------------------------------------ consensus topic


@pytest.mark.parametrize(
    "v",
    [
        vote("A", "x"),
        vote("B", None, height=2**62, round_=9, kind=core.VoteKind.PRECOMMIT),
        vote("A", "x", signed=False),
    ],
    ids=["prevote", "nil precommit", "unsigned"],
)
def test_a_vote_round_trips(v: core.Vote) -> None:
    data = wire.encode_consensus(v)
    assert wire.decode_consensus(data) == ConsensusMsg(v, None)
    assert wire.encode_consensus(wire.decode_consensus(data).message) == data


@pytest.mark.parametrize("resend", [1, 2, 2**40])
def test_a_resent_message_decodes_to_the_same_message_with_other_bytes(resend: int) -> None:
    # a re-broadcast must get past gossip deduplication by content, and mean the same
    v = vote("A", "x")
    first, again = wire.encode_consensus(v), wire.encode_consensus(v, resend=resend)
    assert first != again
    assert wire.decode_consensus(again) == wire.decode_consensus(first) == ConsensusMsg(v, None)
    block = CHAIN[0].block
    p = proposal("A", block.hash(), height=1)
    assert wire.decode_consensus(wire.encode_consensus(p, block, resend=resend)).message == p
    assert wire.encode_consensus(p, block, resend=resend) != wire.encode_consensus(p, block)


@pytest.mark.parametrize("resend", [-1, True, "1", None, b"\x01"], ids=["negative", "bool", "text", "null", "bytes"])
def test_a_malformed_resend_counter_is_rejected(resend: Any) -> None:
    with pytest.raises(DecodeError, match="resend"):
        wire.decode_consensus(raw({"t": "vote", **vote("A", "x").to_map(), "resend": resend}))


@pytest.mark.parametrize("index", [0, 1], ids=["block 1 with a tx", "block 2 with a last_commit"])
def test_a_proposal_round_trips_with_its_block(index: int) -> None:
    """A proposal carries its block compactly (§12.3): the receiver gets the block back
    from the txs it holds, and without them the hashes of the missing ones."""
    block = CHAIN[index].block
    p = proposal("A", block.hash(), height=block.height)
    data = wire.encode_consensus(p, block)
    assert not any(t.encoded in data for t in block.txs)  # hashes only, never the txs
    held = {t.hash: t for t in block.txs}
    msg = wire.decode_consensus(data, held.get)
    assert msg.message == p
    assert msg.block is not None and msg.compact is not None
    assert all(a is b for a, b in zip(msg.block.txs, block.txs, strict=True))  # the held objects, reused
    lacking = wire.decode_consensus(data)
    assert lacking.message == p and (lacking.block is None) == bool(block.txs)
    assert lacking.compact is not None and lacking.compact.tx_hashes == tuple(held)
    assert msg.block.hash() == block.hash()
    assert msg.block.encode() == block.encode()
    assert msg.block.txs == block.txs and msg.block.last_commit == block.last_commit


def test_a_re_proposal_with_a_pol_round_round_trips() -> None:
    block = CHAIN[1].block
    p = proposal("A", block.hash(), height=block.height, round_=3, pol_round=1)
    assert wire.decode_consensus(wire.encode_consensus(p, block)).message == p


def test_a_proposal_whose_block_has_another_hash_is_rejected() -> None:
    block = CHAIN[1].block
    p = proposal("A", value("something else"), height=block.height)
    with pytest.raises(ValidationError, match="does not match"):
        wire.decode_consensus(wire.encode_consensus(p, block))


def test_a_proposal_whose_block_is_at_another_height_is_rejected() -> None:
    block = CHAIN[1].block
    p = proposal("A", block.hash(), height=block.height + 1)
    with pytest.raises(ValidationError, match="does not match"):
        wire.decode_consensus(wire.encode_consensus(p, block))


def test_a_proposal_without_its_compact_block_is_rejected() -> None:
    block = CHAIN[0].block
    p = proposal("A", block.hash(), height=1)
    with pytest.raises(DecodeError, match="without its compact block"):
        wire.decode_consensus(raw({"t": "proposal", **p.to_map()}))  # just the proposal
    with pytest.raises(DecodeError, match="without its compact block"):
        wire.decode_consensus(raw({"t": "proposal", **p.to_map(), "body": block.encode()}))  # protocol 3's form
    fields = CompactBlock.of(block).to_fields()
    with pytest.raises((DecodeError, ValidationError), match="wrong fields"):  # and the old body: unknown key
        wire.decode_consensus(raw({"t": "proposal", **p.to_map(), **fields, "body": block.encode()}))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tx_hashes": [b"\x01" * 32]}, "tx_root"),
        ({"tx_hashes": "not a list"}, "tx_hashes"),
        ({"tx_hashes": [b"\x01" * 31]}, "32 bytes"),
        ({"header": {"chain": "x"}}, "header"),
        ({"last_commit": None}, "last_commit"),
        ({"last_commit": {"height": 1}}, "commit"),
    ],
    ids=["hashes not under tx_root", "hashes not a list", "short hash", "bad header", "no last_commit",
         "bad last_commit"],
)
def test_a_proposal_whose_compact_block_is_not_consistent_is_rejected(change: dict[str, Any], match: str) -> None:
    block = CHAIN[1].block  # height 2: it has a tx and a last_commit
    p = proposal("A", block.hash(), height=block.height)
    fields = {**CompactBlock.of(block).to_fields(), **change}
    with pytest.raises((DecodeError, ValidationError), match=match):
        wire.decode_consensus(raw({"t": "proposal", **p.to_map(), **fields}))


def test_a_proposal_whose_header_is_not_the_signed_block_is_rejected() -> None:
    block = CHAIN[1].block
    p = proposal("A", block.hash(), height=block.height)
    bad = dataclasses.replace(block, header=dataclasses.replace(block.header, time_ms=block.header.time_ms + 1),
                              _hash=b"")
    with pytest.raises(ValidationError, match="does not match"):
        wire.decode_consensus(wire.encode_consensus(p, bad))


@pytest.mark.parametrize(
    "obj",
    [
        [1, 2],
        {"t": "commit"},
        {"t": "vote"},
        {**vote("A", "x").to_map()},  # no type
        {"t": "vote", **vote("A", "x").to_map(), "extra": 1},
        {"t": "vote", **vote("A", "x").to_map(), "kind": 3},
        {"t": "vote", **vote("A", "x").to_map(), "height": 0},
        {"t": "vote", **vote("A", "x").to_map(), "block": b"\x01" * 31},
        {"t": "vote", **vote("A", "x").to_map(), "signature": b"\x01" * 63},
        {"t": "vote", **vote("A", "x").to_map(), "validator": b"\x01" * 33},
        {"t": "vote", **vote("A", "x").to_map(), "body": CHAIN[0].block.encode()},
    ],
    ids=["list", "unknown type", "empty vote", "no type", "extra field", "kind 3", "height 0",
         "short hash", "short signature", "long key", "vote with a block"],
)
def test_malformed_consensus_messages_are_rejected(obj: Any) -> None:
    with pytest.raises((DecodeError, ValidationError)):
        wire.decode_consensus(raw(obj))


def test_non_canonical_consensus_bytes_are_rejected() -> None:
    data = wire.encode_consensus(vote("A", "x"))
    m = cbor2.loads(data)
    # same content, keys in insertion order instead of canonical order
    shuffled = cbor2.dumps(dict(reversed(list(m.items()))))
    assert shuffled != data
    with pytest.raises(DecodeError, match="canonical"):
        wire.decode_consensus(shuffled)
    with pytest.raises(DecodeError):
        wire.decode_consensus(data + b"\x00")


# ------------------------------------------------------------------ tx topic


def test_a_tx_batch_round_trips_up_to_the_limit() -> None:
    txs = [bytes([i % 256]) * (1 + i % 7) for i in range(MAX_TX_BATCH)]
    assert wire.decode_tx_batch(wire.encode_tx_batch(txs)) == txs
    assert wire.decode_tx_batch(wire.encode_tx_batch([])) == []
    real = [t.encoded for t in CHAIN[0].block.txs]
    assert wire.decode_tx_batch(wire.encode_tx_batch(real)) == real


def test_a_tx_batch_over_the_limit_is_rejected() -> None:
    with pytest.raises(DecodeError, match="at most 1024"):
        wire.decode_tx_batch(wire.encode_tx_batch([b"t"] * (MAX_TX_BATCH + 1)))


@pytest.mark.parametrize(
    "obj",
    [
        {"txs": [b"ok", "text"]},
        {"txs": [b"ok", 5]},
        {"txs": [[b"nested"]]},
        {"txs": b"not a list"},
        {"txs": [], "extra": 1},
        {"tx": []},
        [b"a"],
    ],
    ids=["text entry", "int entry", "list entry", "bytes not list", "extra field", "wrong key", "bare list"],
)
def test_malformed_tx_batches_are_rejected(obj: Any) -> None:
    with pytest.raises(DecodeError):
        wire.decode_tx_batch(raw(obj))


# ------------------------------------------------------------------ block topic


def test_an_announcement_round_trips() -> None:
    b = CHAIN[2].block
    assert wire.decode_announce(wire.encode_announce(b.height, b.hash())) == (b.height, b.hash())


@pytest.mark.parametrize(
    "obj",
    [
        {"height": 0, "hash": b"\x01" * 32},
        {"height": -1, "hash": b"\x01" * 32},
        {"height": True, "hash": b"\x01" * 32},
        {"height": 3, "hash": b"\x01" * 31},
        {"height": 3, "hash": "0x" + "01" * 32},
        {"height": 3},
        {"height": 3, "hash": b"\x01" * 32, "round": 0},
    ],
    ids=["height 0", "negative height", "bool height", "short hash", "hash as text", "no hash", "extra field"],
)
def test_malformed_announcements_are_rejected(obj: Any) -> None:
    with pytest.raises(DecodeError):
        wire.decode_announce(raw(obj))


# ------------------------------------------------------------------ sync protocol


def test_sync_requests_round_trip() -> None:
    assert wire.decode_sync_request(wire.encode_sync_request("status")) == {"op": "status"}
    req = wire.encode_sync_request("blocks", **{"from": 3, "to": 3 + MAX_SYNC_BLOCKS})
    assert wire.decode_sync_request(req) == {"op": "blocks", "from": 3, "to": 3 + MAX_SYNC_BLOCKS}
    assert wire.decode_sync_request(wire.encode_sync_request("blocks", **{"from": 1, "to": 1}))["to"] == 1


@pytest.mark.parametrize(
    "obj",
    [
        {"op": "blocks", "from": 5, "to": 4},  # from > to
        {"op": "blocks", "from": 0, "to": 4},  # heights start at 1
        {"op": "blocks", "from": -3, "to": 4},
        {"op": "blocks", "from": 1},
        {"op": "blocks", "to": 4},
        {"op": "blocks", "from": "1", "to": 4},
        {"op": "blocks", "from": True, "to": 4},
        {"op": "blocks", "from": 1, "to": 4, "limit": 9},
        {"op": "status", "height": 1},
        {"op": "commit"},
        {"op": ["status"]},
        {"from": 1, "to": 2},
        ["status"],
    ],
    ids=["from after to", "from 0", "negative from", "no to", "no from", "from as text", "bool from",
         "extra field", "status with field", "unknown op", "op a list", "no op", "bare list"],
)
def test_malformed_sync_requests_are_rejected(obj: Any) -> None:
    with pytest.raises(DecodeError):
        wire.decode_sync_request(raw(obj))


def test_status_round_trips() -> None:
    b = CHAIN[2].block
    assert wire.decode_status(wire.encode_status(b.height, b.hash())) == (b.height, b.hash())
    assert wire.decode_status(wire.encode_status(0, b"\x07" * 32)) == (0, b"\x07" * 32)  # at genesis


@pytest.mark.parametrize(
    "obj",
    [
        {"height": -1, "hash": b"\x01" * 32},
        {"height": "1", "hash": b"\x01" * 32},
        {"height": 1, "hash": "0x01"},
        {"height": 1},
        {"height": 1, "hash": b"\x01" * 32, "x": 0},
    ],
    ids=["negative height", "height as text", "hash as text", "no hash", "extra field"],
)
def test_malformed_status_is_rejected(obj: Any) -> None:
    with pytest.raises(DecodeError):
        wire.decode_status(raw(obj))


def test_a_blocks_response_round_trips() -> None:
    items = [(b.block.encode(), b.commit.encode()) for b in CHAIN]
    got = wire.decode_blocks(wire.encode_blocks(items))
    assert [(blk.hash(), c) for blk, c in got] == [(b.block.hash(), b.commit) for b in CHAIN]
    assert [blk.encode() for blk, _ in got] == [b for b, _ in items]
    assert wire.decode_blocks(wire.encode_blocks([])) == []


def test_a_blocks_response_over_the_sync_limit_is_rejected() -> None:
    one = (CHAIN[0].block.encode(), CHAIN[0].commit.encode())
    assert len(wire.decode_blocks(wire.encode_blocks([one] * MAX_SYNC_BLOCKS))) == MAX_SYNC_BLOCKS
    with pytest.raises(DecodeError):
        wire.decode_blocks(wire.encode_blocks([one] * (MAX_SYNC_BLOCKS + 1)))


@pytest.mark.parametrize(
    "obj",
    [
        {"blocks": [[CHAIN[0].block.encode()]]},
        {"blocks": [[CHAIN[0].block.encode(), CHAIN[0].commit.encode(), b""]]},
        {"blocks": [[CHAIN[0].block.encode(), CHAIN[0].commit.to_map()]]},
        {"blocks": [[CHAIN[0].commit.encode(), CHAIN[0].block.encode()]]},  # swapped
        {"blocks": [[b"\x00", CHAIN[0].commit.encode()]]},
        {"blocks": b""},
        {"blocks": [], "more": True},
        {"block": []},
    ],
    ids=["one element", "three elements", "commit as a map", "swapped", "block not CBOR",
         "blocks not a list", "extra field", "wrong key"],
)
def test_malformed_blocks_responses_are_rejected(obj: Any) -> None:
    with pytest.raises(DecodeError):
        wire.decode_blocks(raw(obj))


# ------------------------------------------------------------------ fuzz

DECODERS = [
    wire.decode_consensus,
    wire.decode_tx_batch,
    wire.decode_announce,
    wire.decode_sync_request,
    wire.decode_status,
    wire.decode_blocks,
]
IDS = [d.__name__ for d in DECODERS]


def _decodes_or_rejects(decoder: Any, data: bytes) -> None:
    try:
        decoder(data)
    except MedchainError:
        pass


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_decode_or_raise_a_medchain_error(decoder: Any, data: bytes) -> None:
    _decodes_or_rejects(decoder, data)


# Well-formed canonical CBOR built from the field names and value shapes the real
# messages use, so the fuzz gets past the CBOR layer into the field checks.
FIELDS = ["t", "op", "from", "to", "height", "hash", "txs", "blocks", "kind", "round", "block",
          "validator", "signature", "pol_round", "proposer", "body", "resend", "x"]
_leaf = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.integers(-2, 3),
    st.binary(max_size=70),
    st.sampled_from([b"\x01" * 32, b"\x02" * 64, CHAIN[0].block.encode(), CHAIN[0].commit.encode()]),
    st.text(max_size=8),
    st.sampled_from(["vote", "proposal", "status", "blocks"]),
    st.booleans(),
    st.none(),
)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=6)),
    max_leaves=12,
)
_messages = st.one_of(
    _value,
    st.dictionaries(st.sampled_from(FIELDS), _value, max_size=7),
    # a valid vote or proposal map with a few fields replaced
    st.builds(
        lambda base, t, changes: {**base, "t": t, **changes},
        st.sampled_from([
            vote("A", "x").to_map(),
            vote("A", None).to_map(),
            proposal("A", CHAIN[0].block.hash(), height=1).to_map(),
        ]),
        st.sampled_from(["vote", "proposal"]),
        st.dictionaries(st.sampled_from(FIELDS), _value, max_size=2),
    ),
)


@pytest.mark.parametrize("decoder", DECODERS, ids=IDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_messages)
def test_random_well_formed_cbor_decodes_or_raises_a_medchain_error(decoder: Any, obj: Any) -> None:
    _decodes_or_rejects(decoder, cbor2.dumps(obj, canonical=True))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_real_messages_decode_or_raise_a_medchain_error(data: st.DataObject) -> None:
    originals = [
        (wire.decode_consensus, wire.encode_consensus(vote("A", "x"), resend=3)),
        (wire.decode_consensus,
         wire.encode_consensus(proposal("A", CHAIN[1].block.hash(), height=2), CHAIN[1].block)),
        (wire.decode_tx_batch, wire.encode_tx_batch([t.encoded for t in CHAIN[0].block.txs])),
        (wire.decode_announce, wire.encode_announce(3, CHAIN[2].block.hash())),
        (wire.decode_sync_request, wire.encode_sync_request("blocks", **{"from": 1, "to": 9})),
        (wire.decode_status, wire.encode_status(3, CHAIN[2].block.hash())),
        (wire.decode_blocks, wire.encode_blocks([(CHAIN[1].block.encode(), CHAIN[1].commit.encode())])),
    ]
    decoder, msg = data.draw(st.sampled_from(originals))
    buf = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    _decodes_or_rejects(decoder, bytes(buf))
