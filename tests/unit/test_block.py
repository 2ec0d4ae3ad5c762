"""Headers, votes, commits and blocks (docs/protocol.md §4-§7).

Authorities are named A, B, C, D (power 1 each unless a case says otherwise); "3 of 4"
means A, B and C signed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from medchaind import codec, crypto
from medchaind.errors import DecodeError, ValidationError
from medchaind.types import (
    EMPTY_HASH,
    PRECOMMIT,
    PREVOTE,
    Block,
    Commit,
    CommitSig,
    Header,
    decode_block,
    decode_commit,
    decode_tx,
    sign_commit_vote,
    sign_tx,
    tx_root,
    validators_hash,
    verify_commit,
    vote_payload,
)
from medchaind.types.block import block_from_map
from medchaind.types.merkle import merkle_root

CHAIN = "medchain-test"
A, B, C, D = (crypto.SigningKey(bytes([0x10 + i]) * 32) for i in range(4))
OUTSIDER = crypto.SigningKey(bytes([0x99]) * 32)
POWERS = {k.public_key: 1 for k in (A, B, C, D)}
CLIENT = crypto.SigningKey(bytes(range(32)))
GENESIS_HASH = crypto.sha256(b"genesis")


def txs_for(height: int, chain: str = CHAIN, n: int = 2) -> tuple[Any, ...]:
    return tuple(
        sign_tx(CLIENT, chain, "record.put", (height - 1) * n + i, {"i": i, "h": height})
        for i in range(n)
    )


def header(
    height: int, txs: tuple[Any, ...], prev_hash: bytes, last_commit: Commit | None, **kw: Any
) -> Header:
    fields: dict[str, Any] = dict(
        chain=CHAIN,
        height=height,
        round=0,
        time_ms=1_764_000_000_000 + height * 1000,
        prev_hash=prev_hash,
        tx_root=tx_root(txs),
        app_hash=crypto.sha256(b"app %d" % height),
        results_hash=crypto.sha256(b"results"),
        validators_hash=validators_hash(POWERS),
        proposer=A.public_key,
        last_commit_hash=EMPTY_HASH if last_commit is None else last_commit.hash(),
    )
    fields.update(kw)
    return Header(**fields)


def commit_for(
    block_hash: bytes,
    height: int,
    signers: tuple[crypto.SigningKey, ...] = (A, B, C),
    round_: int = 0,
) -> Commit:
    sigs = tuple(sign_commit_vote(k, CHAIN, height, round_, block_hash) for k in signers)
    return Commit(height, round_, block_hash, sigs)


@pytest.fixture
def chain2() -> tuple[Block, Commit, Block, Commit]:
    """Block 1 and block 2 (carrying block 1's commit), each with its own commit."""
    t1 = txs_for(1)
    b1 = Block(header(1, t1, GENESIS_HASH, None), t1, None)
    c1 = commit_for(b1.hash(), 1)
    t2 = txs_for(2)
    b2 = Block(header(2, t2, b1.hash(), c1, round=1), t2, c1)
    c2 = commit_for(b2.hash(), 2, (A, B, C, D), round_=1)
    return b1, c1, b2, c2


# ------------------------------------------------------------------ round trips


def test_block_round_trip(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    for block in (chain2[0], chain2[2]):
        block.validate_basic()
        data = block.encode()
        assert data == codec.encode(block.to_map())
        back = decode_block(data)
        assert back == block
        assert back.hash() == block.hash() == block.header.hash()
        assert back.txs == block.txs and [t.hash for t in back.txs] == [t.hash for t in block.txs]
        assert back.last_commit == block.last_commit
        assert back.encode() == data


def test_commit_round_trip(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    for commit in (chain2[1], chain2[3]):
        back = decode_commit(commit.encode())
        assert back == commit
        assert back.hash() == commit.hash() == crypto.sha256(commit.encode())
        assert commit.encode() == codec.encode(commit.to_map())


def test_header_hash_is_sha256_of_canonical_map(
    chain2: tuple[Block, Commit, Block, Commit],
) -> None:
    h = chain2[2].header
    assert h.hash() == crypto.sha256(codec.encode(h.to_map()))
    assert Header.from_map(h.to_map()) == h
    for field in ("height", "round", "time_ms"):
        assert dataclasses.replace(h, **{field: getattr(h, field) + 1}).hash() != h.hash()
    assert dataclasses.replace(h, app_hash=bytes(32)).hash() != h.hash()
    j = h.to_json()
    assert j["hash"] == "0x" + h.hash().hex() and j["height"] == 2


def test_empty_block() -> None:
    b = Block(header(1, (), GENESIS_HASH, None), (), None)
    assert b.header.tx_root == merkle_root([]) == EMPTY_HASH
    assert decode_block(b.encode()) == b


def test_vote_payload() -> None:
    h = bytes(range(32))
    assert vote_payload(PRECOMMIT, 5, 1, h) == codec.encode(
        {"type": 2, "height": 5, "round": 1, "block": h}
    )
    assert vote_payload(PREVOTE, 5, 1, None) == codec.encode(
        {"type": 1, "height": 5, "round": 1, "block": None}
    )
    # the commit signs the PRECOMMIT payload under the vote domain
    s = sign_commit_vote(A, CHAIN, 5, 1, h)
    assert s.validator == A.public_key
    assert crypto.verify(
        A.public_key, s.signature, crypto.DOMAIN_VOTE, CHAIN, vote_payload(PRECOMMIT, 5, 1, h)
    )


def test_validators_hash() -> None:
    reversed_powers = dict(reversed(list(POWERS.items())))
    assert validators_hash(reversed_powers) == validators_hash(POWERS)
    expected = codec.encode([[k, 1] for k in sorted(POWERS)])
    assert validators_hash(POWERS) == crypto.sha256(expected)
    assert validators_hash({**POWERS, A.public_key: 2}) != validators_hash(POWERS)


# --------------------------------------------------------------- validate_basic


def test_validate_basic_tx_root_mismatch(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    b1 = chain2[0]
    bad = Block(dataclasses.replace(b1.header, tx_root=bytes(32)), b1.txs, None)
    with pytest.raises(ValidationError, match="tx_root"):
        bad.validate_basic()
    with pytest.raises(DecodeError, match="tx_root"):
        decode_block(bad.encode())
    # dropping or reordering txs also breaks the root
    for txs in (b1.txs[:1], b1.txs[::-1], b1.txs + b1.txs[:1]):
        with pytest.raises(ValidationError, match="tx_root"):
            Block(b1.header, txs, None).validate_basic()


def test_validate_basic_tx_of_another_chain() -> None:
    txs = (txs_for(1)[0], txs_for(1, chain="other-chain")[1])
    b = Block(header(1, txs, GENESIS_HASH, None), txs, None)
    with pytest.raises(ValidationError, match="another chain"):
        b.validate_basic()
    with pytest.raises(DecodeError, match="another chain"):
        decode_block(b.encode())


def test_first_block_has_no_last_commit(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    b1, c1, _, _ = chain2
    with pytest.raises(ValidationError, match="first block has no last_commit"):
        Block(b1.header, b1.txs, c1).validate_basic()
    bad = Block(dataclasses.replace(b1.header, last_commit_hash=bytes(32)), b1.txs, None)
    with pytest.raises(ValidationError, match="empty hash at height 1"):
        bad.validate_basic()
    with pytest.raises(DecodeError, match="empty hash"):
        decode_block(bad.encode())


def test_later_block_last_commit_rules(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    b1, c1, b2, _ = chain2
    h = b2.header
    with pytest.raises(ValidationError, match="finalise the previous height"):
        Block(h, b2.txs, None).validate_basic()
    wrong_height = commit_for(b1.hash(), 2)
    with pytest.raises(ValidationError, match="finalise the previous height"):
        Block(
            dataclasses.replace(h, last_commit_hash=wrong_height.hash()), b2.txs, wrong_height
        ).validate_basic()
    other_sigs = commit_for(b1.hash(), 1, (A, B, D))
    with pytest.raises(ValidationError, match="last_commit_hash mismatch"):
        Block(h, b2.txs, other_sigs).validate_basic()
    wrong_block = commit_for(crypto.sha256(b"fork"), 1)
    bad = Block(dataclasses.replace(h, last_commit_hash=wrong_block.hash()), b2.txs, wrong_block)
    with pytest.raises(ValidationError, match="not for prev_hash"):
        bad.validate_basic()
    with pytest.raises(DecodeError, match="not for prev_hash"):
        decode_block(bad.encode())


# ----------------------------------------------------------------- decode errors


def _block_map(block: Block) -> dict[str, Any]:
    return codec.decode(block.encode())


@pytest.mark.parametrize(
    ("path", "value", "msg"),
    [
        (("header", "height"), 0, "height starts at 1"),
        (("header", "height"), -1, "height must be"),
        (("header", "round"), 2**63, "round must be"),
        (("header", "time_ms"), True, "time_ms must be"),
        (("header", "chain"), "Bad", "chain id"),
        (("header", "prev_hash"), bytes(31), "prev_hash must be 32 bytes"),
        (("header", "app_hash"), None, "app_hash must be 32 bytes"),
        (("header", "results_hash"), bytes(33), "results_hash must be 32 bytes"),
        (("header", "validators_hash"), "00" * 32, "validators_hash must be 32 bytes"),
        (("header", "last_commit_hash"), b"", "last_commit_hash must be 32 bytes"),
        (("header", "proposer"), bytes(31), "proposer"),
        (("header", "extra"), 1, "wrong fields"),
        (("txs",), {}, "txs must be a list"),
        (("extra",), 1, "wrong fields"),
    ],
)
def test_decode_block_rejects_bad_fields(
    chain2: tuple[Block, Commit, Block, Commit], path: tuple[str, ...], value: Any, msg: str
) -> None:
    m = _block_map(chain2[0])
    target = m
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    with pytest.raises(DecodeError, match=msg):
        decode_block(codec.encode(m))


def test_decode_block_rejects_bad_tx_and_missing_fields(
    chain2: tuple[Block, Commit, Block, Commit],
) -> None:
    m = _block_map(chain2[0])
    tx = codec.decode(m["txs"][0])
    tx["nonce"] = -1
    m["txs"][0] = codec.encode(tx)
    with pytest.raises(DecodeError, match="nonce"):
        decode_block(codec.encode(m))
    m = _block_map(chain2[0])
    m["txs"][0] = codec.decode(m["txs"][0])  # a tx map instead of its encoding
    with pytest.raises(DecodeError, match="byte string"):
        decode_block(codec.encode(m))
    m = _block_map(chain2[0])
    del m["last_commit"]
    with pytest.raises(DecodeError, match="wrong fields"):
        decode_block(codec.encode(m))
    with pytest.raises(DecodeError):
        decode_block(chain2[0].encode() + b"\x00")
    with pytest.raises(ValidationError):
        block_from_map([])


def _commit_map(c: Commit) -> dict[str, Any]:
    return codec.decode(c.encode())


@pytest.mark.parametrize(
    ("change", "msg"),
    [
        (lambda m: m.__setitem__("height", 0), "bad height"),
        (lambda m: m.__setitem__("round", -1), "bad height or round"),
        (lambda m: m.__setitem__("block_hash", bytes(31)), "block_hash"),
        (lambda m: m.__setitem__("signatures", []), "1..1024"),
        (lambda m: m.__setitem__("signatures", m["signatures"] * 400), "1..1024|duplicate"),
        (lambda m: m["signatures"].append(m["signatures"][0]), "duplicate validator"),
        (lambda m: m["signatures"].append([bytes(32)]), r"\[public_key\(32\), sig\(64\)\]"),
        (lambda m: m["signatures"].append([bytes(31), bytes(64)]), "public_key"),
        (lambda m: m["signatures"].append([bytes(32), bytes(63)]), "sig"),
        (lambda m: m["signatures"].append({"v": bytes(32)}), "public_key"),
        (lambda m: m.pop("round"), "wrong fields"),
    ],
)
def test_decode_commit_rejects(
    chain2: tuple[Block, Commit, Block, Commit], change: Any, msg: str
) -> None:
    m = _commit_map(chain2[1])
    change(m)
    with pytest.raises(DecodeError, match=msg):
        decode_commit(codec.encode(m))


def test_commit_with_1025_signatures_is_rejected() -> None:
    sigs = [[i.to_bytes(32, "big"), bytes(64)] for i in range(1025)]
    m = {"height": 1, "round": 0, "block_hash": bytes(32), "signatures": sigs}
    with pytest.raises(ValidationError, match="1..1024"):
        Commit.from_map(m)
    assert len(Commit.from_map({**m, "signatures": sigs[:1024]}).signatures) == 1024


# ------------------------------------------------------------------ verify_commit

BH = crypto.sha256(b"block 7")


def test_quorum_three_of_four() -> None:
    verify_commit(commit_for(BH, 7, (A, B, C)), CHAIN, POWERS, BH, 7)
    verify_commit(commit_for(BH, 7, (A, B, C, D)), CHAIN, POWERS, BH, 7)
    verify_commit(commit_for(BH, 7, (D, B, A)), CHAIN, POWERS, BH, 7)  # order does not matter


def test_two_of_four_is_not_a_quorum() -> None:
    with pytest.raises(ValidationError, match="only 2 of 4"):
        verify_commit(commit_for(BH, 7, (A, B)), CHAIN, POWERS, BH, 7)


def test_exactly_two_thirds_is_not_enough() -> None:
    # A:2, B:1, C:1, D:2 -> total 6; A+C = 3 and A+B+C = 4 = exactly 2/3: both fail
    powers = {A.public_key: 2, B.public_key: 1, C.public_key: 1, D.public_key: 2}
    for signers in ((A, C), (A, B, C)):
        with pytest.raises(ValidationError, match="needs > 2/3"):
            verify_commit(commit_for(BH, 7, signers), CHAIN, powers, BH, 7)
    verify_commit(commit_for(BH, 7, (A, D, B)), CHAIN, powers, BH, 7)  # 5 of 6


def test_single_authority() -> None:
    verify_commit(commit_for(BH, 1, (A,)), CHAIN, {A.public_key: 1}, BH, 1)
    with pytest.raises(ValidationError, match="non-authority"):
        verify_commit(commit_for(BH, 1, (B,)), CHAIN, {A.public_key: 1}, BH, 1)


def test_non_authority_signature_is_rejected() -> None:
    with pytest.raises(ValidationError, match="non-authority"):
        verify_commit(commit_for(BH, 7, (A, B, C, OUTSIDER)), CHAIN, POWERS, BH, 7)


def test_bad_signature_is_rejected() -> None:
    good = commit_for(BH, 7, (A, B, C, D))
    sig = bytearray(good.signatures[3].signature)
    sig[0] ^= 1
    bad = dataclasses.replace(
        good, signatures=good.signatures[:3] + (CommitSig(D.public_key, bytes(sig)),)
    )
    with pytest.raises(ValidationError, match="invalid precommit signature"):
        verify_commit(bad, CHAIN, POWERS, BH, 7)


@pytest.mark.parametrize(
    "make_sig",
    [
        lambda: sign_commit_vote(C, "other-chain", 7, 0, BH),  # another chain
        lambda: sign_commit_vote(C, CHAIN, 7, 1, BH),  # another round
        lambda: sign_commit_vote(C, CHAIN, 8, 0, BH),  # another height
        lambda: sign_commit_vote(C, CHAIN, 7, 0, crypto.sha256(b"other")),  # another block
        lambda: CommitSig(
            C.public_key, C.sign(crypto.DOMAIN_VOTE, CHAIN, vote_payload(PREVOTE, 7, 0, BH))
        ),
        lambda: CommitSig(
            C.public_key, C.sign(crypto.DOMAIN_TX, CHAIN, vote_payload(PRECOMMIT, 7, 0, BH))
        ),
        lambda: CommitSig(
            C.public_key, C.sign(crypto.DOMAIN_PROPOSAL, CHAIN, vote_payload(PRECOMMIT, 7, 0, BH))
        ),
    ],
    ids=["chain", "round", "height", "block", "prevote", "tx-domain", "proposal-domain"],
)
def test_signature_for_another_vote_is_rejected(make_sig: Any) -> None:
    sigs = commit_for(BH, 7, (A, B)).signatures + (make_sig(),)
    with pytest.raises(ValidationError, match="invalid precommit signature"):
        verify_commit(Commit(7, 0, BH, sigs), CHAIN, POWERS, BH, 7)


def test_commit_for_wrong_height_or_hash() -> None:
    c = commit_for(BH, 7)
    with pytest.raises(ValidationError, match="does not refer to this block"):
        verify_commit(c, CHAIN, POWERS, BH, 8)
    with pytest.raises(ValidationError, match="does not refer to this block"):
        verify_commit(c, CHAIN, POWERS, crypto.sha256(b"x"), 7)
    with pytest.raises(ValidationError):
        verify_commit(c, "other-chain", POWERS, BH, 7)


def test_commit_of_the_chain_fixture_verifies(chain2: tuple[Block, Commit, Block, Commit]) -> None:
    b1, c1, b2, c2 = chain2
    verify_commit(c1, CHAIN, POWERS, b1.hash(), 1)
    verify_commit(c2, CHAIN, POWERS, b2.hash(), 2)
    # block 2 carries block 1's commit
    assert decode_block(b2.encode()).last_commit == c1


def test_verify_commit_does_not_double_count_a_validator() -> None:
    c = commit_for(BH, 7, (A, B))
    doubled = Commit(7, 0, BH, c.signatures + c.signatures[:1])
    with pytest.raises(ValidationError):
        verify_commit(doubled, CHAIN, POWERS, BH, 7)


def test_every_decodable_tx_fits_in_a_decodable_block() -> None:
    body: dict[str, Any] = {"x": 0}
    for _ in range(13):
        body = {"x": body}
    tx = sign_tx(CLIENT, CHAIN, "record.put", 0, body)
    assert decode_tx(tx.encoded) == tx  # the mempool accepts it
    b = Block(header(1, (tx,), GENESIS_HASH, None), (tx,), None)
    assert decode_block(b.encode()) == b
