"""Compact proposals (medchaind/consensus/compact.py, docs/protocol.md §12.3, §13.5).

The pure part is driven by tables and a hypothesis property: a block rebuilt from any
split between txs held and txs supplied is exactly the proposed block, and every wrong
supply is refused. The fetch is driven against a scripted network of peers (honest,
silent, lying, oversize), so every bad answer is exercised without sockets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
import trio
from consensus_kit import CHAIN_ID, key
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec
from medchaind.consensus import compact
from medchaind.consensus.compact import (
    MAX_TXS_ANSWER_BYTES,
    MAX_TXS_PER_REQUEST,
    TXS_PROTOCOL,
    Assembly,
    CompactBlock,
    decode_block_answer,
    decode_txs_answer,
    decode_txs_request,
    encode_block_request,
    encode_txs_request,
    fetch_missing,
    serve_txs,
)
from medchaind.errors import DecodeError, ValidationError
from medchaind.net.api import PeerId, RemoteError, RequestTimeout
from medchaind.types import EMPTY_HASH, Block, Header, Tx, sign_tx, tx_root


def make_txs(n: int, *, size: int = 64, chain: str = CHAIN_ID) -> list[Tx]:
    k = key("sender")
    return [sign_tx(k, chain, "anchor.commit", i, {"root": hashlib.sha256(b"%d" % i).digest(), "pad": b"x" * size})
            for i in range(n)]


def make_block(txs: list[Tx]) -> Block:
    z = hashlib.sha256(b"z").digest()
    header = Header(CHAIN_ID, 1, 0, 1_764_000_000_000, z, tx_root(txs), z, z, z, key("A").public_key, EMPTY_HASH)
    return Block(header, tuple(txs), None, header.hash())


TXS = make_txs(40)
BLOCK = make_block(TXS)
HELD = {t.hash: t for t in TXS}


def lookup(held: list[Tx]) -> Callable[[bytes], Tx | None]:
    return {t.hash: t for t in held}.get


# ------------------------------------------------------------------ rebuilding


@pytest.mark.parametrize(
    ("held", "missing"),
    [
        (TXS, []),
        ([], TXS),
        (TXS[::2], TXS[1::2]),
        (TXS[:-1], TXS[-1:]),
    ],
    ids=["all held", "none held", "every other", "all but the last"],
)
def test_an_assembly_misses_exactly_what_is_not_held(held: list[Tx], missing: list[Tx]) -> None:
    asm = Assembly(CompactBlock.of(BLOCK), lookup(held))
    assert asm.missing() == [t.hash for t in missing]  # block order
    assert asm.complete == (not missing)
    for t in missing:
        asm.add_tx(t.encoded)
    rebuilt = asm.block()
    assert rebuilt.hash() == BLOCK.hash() and rebuilt.encode() == BLOCK.encode()
    assert all(rebuilt.txs[i] is t for i, t in enumerate(TXS) if t in held)  # held objects reused


def test_a_hash_listed_twice_is_missed_once_and_filled_at_both_places() -> None:
    txs = [TXS[0], TXS[1], TXS[0]]  # invalid as a block (§6: no tx twice), judged later
    block = make_block(txs)
    asm = Assembly(CompactBlock.of(block), lookup([]))
    assert asm.missing() == [TXS[0].hash, TXS[1].hash]
    asm.add_tx(TXS[0].encoded)
    asm.add_tx(TXS[1].encoded)
    assert asm.block().txs == tuple(txs)


@pytest.mark.parametrize(
    ("supply", "match"),
    [
        (lambda: TXS[0].encoded, "does not miss"),  # held already
        (lambda: make_txs(1, size=9)[0].encoded, "does not miss"),  # another tx
        (lambda: b"\xa0", "does not miss"),  # not a tx at all
    ],
    ids=["a tx already held", "a tx the block does not name", "junk"],
)
def test_a_wrong_tx_is_refused_and_changes_nothing(supply: Callable[[], bytes], match: str) -> None:
    asm = Assembly(CompactBlock.of(BLOCK), lookup(TXS[:1]))
    before = asm.missing()
    with pytest.raises(DecodeError, match=match):
        asm.add_tx(supply())
    assert asm.missing() == before


def test_bytes_under_a_listed_hash_that_are_not_a_tx_are_refused() -> None:
    junk = b"not a transaction"
    z = hashlib.sha256(b"z").digest()
    header = Header(CHAIN_ID, 1, 0, 1, z, compact.merkle_root([hashlib.sha256(junk).digest()]), z, z, z,
                    key("A").public_key, EMPTY_HASH)
    c = CompactBlock(header, (hashlib.sha256(junk).digest(),), None)
    asm = Assembly(c, lookup([]))
    with pytest.raises(DecodeError):
        asm.add_tx(junk)
    assert not asm.complete


def test_a_whole_block_fills_an_assembly_only_if_it_is_the_proposed_one() -> None:
    asm = Assembly(CompactBlock.of(BLOCK), lookup([]))
    with pytest.raises(DecodeError, match="not the proposed block"):
        asm.add_block(make_block(TXS[:-1]))
    assert not asm.complete
    asm.add_block(BLOCK)
    assert asm.block().encode() == BLOCK.encode()


def test_a_tx_of_another_chain_makes_the_rebuilt_block_invalid() -> None:
    other = make_txs(1, chain="other-chain")
    block = Block(make_block(other).header, tuple(other), None)
    asm = Assembly(CompactBlock.of(block), lookup(other))
    with pytest.raises(ValidationError, match="another chain"):
        asm.block()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=40, max_size=40))
def test_any_split_between_held_and_served_rebuilds_the_proposed_block(held_mask: list[bool]) -> None:
    held = [t for t, h in zip(TXS, held_mask, strict=True) if h]
    asm = Assembly(CompactBlock.of(BLOCK), lookup(held))
    asked = asm.missing()
    if asked:
        answer = serve_txs(encode_txs_request(asked), HELD.get, lambda h: None)
        for raw in decode_txs_answer(answer, asked):
            assert raw is not None
            asm.add_tx(raw)
    assert asm.complete and asm.block().encode() == BLOCK.encode()


# ------------------------------------------------------------------ txs/1 wire (§13.5)


def test_a_txs_answer_is_a_prefix_aligned_with_the_request_with_nulls_for_unknown_txs() -> None:
    unknown = bytes(32)
    asked = [TXS[0].hash, unknown, TXS[1].hash]
    got = decode_txs_answer(serve_txs(encode_txs_request(asked), HELD.get, lambda h: None), asked)
    assert got == [TXS[0].encoded, None, TXS[1].encoded]


def test_a_server_stops_a_txs_answer_at_its_byte_limit_and_always_sends_the_first_tx() -> None:
    big = make_txs(3, size=60_000)
    per = len(big[0].encoded)
    many = [t.hash for t in big] * (MAX_TXS_ANSWER_BYTES // per // 3 + 2)
    held = {t.hash: t for t in big}
    got = decode_txs_answer(serve_txs(encode_txs_request(many[:MAX_TXS_PER_REQUEST]), held.get, lambda h: None),
                            many)
    assert 0 < len(got) < len(many) and sum(len(t) for t in got if t) <= MAX_TXS_ANSWER_BYTES


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"txs": [TXS[1].encoded]}, "not the tx asked"),
        ({"txs": [TXS[0].encoded, None, None]}, "more entries"),
        ({"txs": [5]}, "not the tx asked"),
        ({"txs": b"x"}, "expected"),
        ({"txs": [], "more": 1}, "expected"),
        ([TXS[0].encoded], "expected"),
    ],
    ids=["wrong tx", "longer than asked", "not bytes", "not a list", "extra key", "bare list"],
)
def test_a_bad_txs_answer_is_refused(answer: Any, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_txs_answer(codec.encode(answer), [TXS[0].hash, TXS[2].hash])


def test_an_oversize_txs_answer_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(DecodeError):
        decode_txs_answer(b"\x00" * (compact.MAX_TXS_RESPONSE + 1), [TXS[0].hash])


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "txs", "hashes": []},
        {"op": "txs", "hashes": [bytes(32)] * (MAX_TXS_PER_REQUEST + 1)},
        {"op": "txs", "hashes": [bytes(31)]},
        {"op": "txs", "hashes": [bytes(32)], "extra": 1},
        {"op": "block", "hash": bytes(31)},
        {"op": "blocks", "from": 1, "to": 2},
        [bytes(32)],
    ],
    ids=["no hashes", "too many hashes", "short hash", "extra key", "short block hash", "a sync op", "bare list"],
)
def test_a_malformed_txs_request_is_refused(request_: Any) -> None:
    with pytest.raises(DecodeError):
        decode_txs_request(codec.encode(request_))


def test_a_request_of_the_most_hashes_fits_the_request_limit() -> None:
    assert len(encode_txs_request([bytes(32)] * MAX_TXS_PER_REQUEST)) <= compact.TXS_REQUEST_LIMIT
    assert decode_txs_request(encode_block_request(BLOCK.hash())) == ("block", [BLOCK.hash()])


def test_a_block_answer_is_the_block_or_null() -> None:
    found = serve_txs(encode_block_request(BLOCK.hash()), HELD.get, {BLOCK.hash(): BLOCK}.get)
    assert decode_block_answer(found).encode() == BLOCK.encode()  # type: ignore[union-attr]
    assert decode_block_answer(serve_txs(encode_block_request(bytes(32)), HELD.get, lambda h: None)) is None
    with pytest.raises(DecodeError):
        decode_block_answer(codec.encode({"block": 5}))


# ------------------------------------------------------------------ fetching


class ScriptedNet:
    """Peers answering txs/1 by a script: each name maps to a behaviour."""

    def __init__(self, peers: dict[str, Callable[[bytes], bytes]]) -> None:
        self.peers = peers
        self.asked: list[tuple[str, str]] = []

    async def request(self, peer: PeerId, protocol: str, data: bytes, *, timeout: float = 10.0) -> bytes:  # noqa: ASYNC109
        assert protocol == TXS_PROTOCOL
        self.asked.append((peer, decode_txs_request(data)[0]))
        await trio.lowlevel.checkpoint()
        return self.peers[peer](data)


def honest(data: bytes) -> bytes:
    return serve_txs(data, HELD.get, {BLOCK.hash(): BLOCK}.get)


def empty(data: bytes) -> bytes:
    return serve_txs(data, lambda h: None, lambda h: None)


def lying(data: bytes) -> bytes:
    op, hashes = decode_txs_request(data)
    return codec.encode({"txs": [TXS[-1].encoded] * len(hashes)})


def oversize(data: bytes) -> bytes:
    return b"\x00" * (compact.MAX_BLOCK_RESPONSE + 1)


def silent(data: bytes) -> bytes:
    raise RequestTimeout("no answer")


def busy(data: bytes) -> bytes:
    raise RemoteError("busy")


async def run_fetch(held: list[Tx], order: list[str], behaviours: dict[str, Callable[[bytes], bytes]]
                    ) -> tuple[bool, Assembly, ScriptedNet, list[tuple[str, str]]]:
    net = ScriptedNet(behaviours)
    faults: list[tuple[str, str]] = []
    asm = Assembly(CompactBlock.of(BLOCK), lookup(held))
    ok = await fetch_missing(net, asm, [PeerId(p) for p in order],  # type: ignore[arg-type]
                             on_fault=lambda p, why: faults.append((p, why)))
    return ok, asm, net, faults


@pytest.mark.parametrize(
    ("held", "order", "ops", "faulty"),
    [
        (TXS[1:], ["good"], [("good", "txs")], []),
        ([], ["good"], [("good", "block")], []),
        (TXS[5:], ["liar", "good"], [("liar", "txs"), ("good", "txs")], ["liar"]),
        ([], ["huge", "good"], [("huge", "block"), ("good", "block")], ["huge"]),
        (TXS[1:], ["mute", "busy", "empty", "good"],
         [("mute", "txs"), ("busy", "txs"), ("empty", "txs"), ("good", "txs")], []),
    ],
    ids=["one missing: by hash from the proposer", "all missing: the whole block", "a wrong tx, then another peer",
         "an oversize answer, then another peer", "timeout, busy and lacking peers are passed over"],
)
async def test_missing_txs_are_fetched_from_the_first_peer_that_has_them(
        held: list[Tx], order: list[str], ops: list[tuple[str, str]], faulty: list[str]) -> None:
    behaviours = {"good": honest, "liar": lying, "huge": oversize, "mute": silent, "busy": busy, "empty": empty}
    ok, asm, net, faults = await run_fetch(held, order, behaviours)
    assert ok and asm.block().encode() == BLOCK.encode()
    assert net.asked == ops
    assert [p for p, _ in faults] == faulty  # only bytes no honest peer sends are faults


async def test_a_fetch_that_no_peer_can_serve_fails_and_leaves_the_proposal_incomplete() -> None:
    ok, asm, _, faults = await run_fetch(TXS[1:], ["mute", "empty"], {"mute": silent, "empty": empty})
    assert not ok and asm.missing() == [TXS[0].hash] and faults == []


async def test_a_fetch_is_bounded_by_its_callers_deadline(autojump_clock: trio.abc.Clock) -> None:
    async def never(peer: PeerId, protocol: str, data: bytes, *, timeout: float = 10.0) -> bytes:  # noqa: ASYNC109
        await trio.sleep_forever()
        raise AssertionError

    net = ScriptedNet({})
    net.request = never  # type: ignore[method-assign]
    asm = Assembly(CompactBlock.of(BLOCK), lookup([]))
    with trio.move_on_after(1.5) as scope:
        await fetch_missing(net, asm, [PeerId("a"), PeerId("b")])  # type: ignore[arg-type]
    assert scope.cancelled_caught and not asm.complete
