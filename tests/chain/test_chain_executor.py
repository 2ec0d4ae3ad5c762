"""Block building and validation (medchaind/chain/executor.py).

A proposer's ``build_block`` and every other node's ``validate_block`` run the same
execution; a block whose header disagrees with the parent (tip) or with re-execution
is refused with :class:`InvalidBlock` and a message naming what was wrong, and
validation never touches the committed state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from chain_kit import GENESIS_TIME_MS, Node, make_genesis, pub, register, signed

from medchaind.chain import SigCache, Tip, next_time_ms
from medchaind.errors import InvalidBlock
from medchaind.types import Block, Commit
from medchaind.types.tx import tx_from_map

AUTHS = {"A": 1, "B": 1}


def _node() -> Node:
    return Node(make_genesis(AUTHS))


def _txs() -> list[Any]:
    return [
        register("X", role="provider"),
        register("P"),
        signed("P", "identity.update", 1, {"enc_key": b"\x02" * 32}),
        signed("A", "governance.accredit", 0, {"subject": pub("X"), "role": "provider"}),
        register("P", nonce=5),  # bad_nonce: a failed receipt is still a valid block
    ]


def test_validate_on_a_fresh_node_reproduces_the_proposers_execution() -> None:
    proposer, validator = _node(), _node()
    block, ex = proposer.build(_txs())
    assert [r.code for r in ex.receipts] == ["ok", "ok", "ok", "ok", "bad_nonce"]
    before = dict(validator.state.data)

    assert validator.validate(block) == ex
    assert validator.state.data == before  # validation is pure


def test_a_chain_of_blocks_with_last_commits_validates() -> None:
    proposer, validator = _node(), _node()
    for height, txs in enumerate([_txs()[:2], _txs()[2:4], []], start=1):
        block, ex = proposer.build(txs, proposer="AB"[height % 2])
        assert block.height == height
        assert (block.last_commit is None) == (height == 1)
        assert validator.validate(block) == ex
        proposer.commit(block, ex, signers=("A", "B"))
        validator.commit(block, ex, signers=("A", "B"))
    assert proposer.state.data == validator.state.data
    assert proposer.tip == validator.tip


def _tampered(block: Block, **changes: Any) -> Block:
    return Block(dataclasses.replace(block.header, **changes), block.txs, block.last_commit)


BAD = b"\xee" * 32

HEADER_TAMPERING = [
    # (field changes, expected message)
    pytest.param({"app_hash": BAD}, "app_hash differs from re-execution", id="app_hash"),
    pytest.param(
        {"results_hash": BAD}, "results_hash differs from re-execution", id="results_hash"
    ),
    pytest.param({"tx_root": BAD}, "tx_root does not match the transactions", id="tx_root"),
    pytest.param(
        {"prev_hash": BAD}, "prev_hash does not match the last committed block", id="prev_hash"
    ),
    pytest.param(
        {"time_ms": GENESIS_TIME_MS}, "block time does not advance", id="time equal to parent"
    ),
    pytest.param(
        {"time_ms": GENESIS_TIME_MS - 1}, "block time does not advance", id="time before parent"
    ),
    pytest.param(
        {"validators_hash": BAD},
        "validators_hash does not match the authority set",
        id="validators_hash",
    ),
    pytest.param(
        {"proposer": pub("X")}, "proposer is not an authority", id="proposer not an authority"
    ),
    pytest.param({"chain": "medchain-other"}, "tx for another chain", id="chain id"),
    pytest.param(
        {"last_commit_hash": BAD}, "last_commit_hash must be the empty hash", id="last_commit_hash"
    ),
    pytest.param({"height": 2}, "last_commit must finalise the previous height", id="height"),
]


@pytest.mark.parametrize(("changes", "message"), HEADER_TAMPERING)
def test_tampered_header_is_refused(changes: dict[str, Any], message: str) -> None:
    proposer, validator = _node(), _node()
    block, _ = proposer.build(_txs())
    before = dict(validator.state.data)
    with pytest.raises(InvalidBlock, match=message):
        validator.validate(_tampered(block, **changes))
    assert validator.state.data == before


def test_empty_block_for_another_chain() -> None:
    block, _ = _node().build([])
    with pytest.raises(InvalidBlock, match="block for chain 'medchain-other'"):
        _node().validate(_tampered(block, chain="medchain-other"))


def test_block_at_the_wrong_height_for_the_tip() -> None:
    proposer, validator = _node(), _node()
    block, _ = proposer.build([])
    t = validator.tip
    validator.tip = Tip(1, t.block_hash, t.app_hash, t.time_ms, t.powers)  # tip already at 1
    with pytest.raises(InvalidBlock, match="height 1, expected 2"):
        validator.validate(block)


def test_execution_under_another_authority_set_is_refused() -> None:
    block, _ = _node().build([])
    other = Node(make_genesis({"A": 1, "B": 2}))
    other.tip = dataclasses.replace(other.tip, block_hash=_node().tip.block_hash)
    with pytest.raises(InvalidBlock, match="validators_hash"):
        other.validate(block)


def test_block_at_height_two_needs_a_matching_last_commit() -> None:
    proposer, validator = _node(), _node()
    b1, ex1 = proposer.build([])
    for n in (proposer, validator):
        n.commit(b1, ex1)
    b2, _ = proposer.build([register("X")])
    validator.validate(b2)

    wrong_height = dataclasses.replace(b2.last_commit, height=2)  # type: ignore[type-var]
    with pytest.raises(InvalidBlock, match="last_commit must finalise the previous height"):
        validator.validate(Block(b2.header, b2.txs, wrong_height))
    with pytest.raises(InvalidBlock, match="last_commit must finalise the previous height"):
        validator.validate(Block(b2.header, b2.txs, None))
    with pytest.raises(InvalidBlock, match="last_commit_hash mismatch"):
        validator.validate(_tampered(b2, last_commit_hash=BAD))
    other = Commit(1, 0, BAD, b2.last_commit.signatures)  # type: ignore[union-attr]
    with pytest.raises(InvalidBlock, match="last_commit_hash mismatch"):
        validator.validate(Block(b2.header, b2.txs, other))


def _bad_sig(tx: Any) -> Any:
    m = tx.to_map()
    m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    return tx_from_map(m)


def test_tx_with_a_bad_signature_makes_the_block_invalid() -> None:
    proposer, validator = _node(), _node()
    txs = _txs()
    forged = _bad_sig(txs[1])
    block, _ = proposer.build([txs[0], forged, *txs[2:]])  # build_block does not verify
    with pytest.raises(InvalidBlock, match=f"tx 0x{forged.hash.hex()} has an invalid signature"):
        validator.validate(block)
    assert forged.hash not in validator.sigs


def test_duplicate_tx_makes_the_block_invalid() -> None:
    proposer, validator = _node(), _node()
    tx = register("X")
    block, ex = proposer.build([tx, register("P"), tx])
    assert ex.receipts[2].code == "bad_nonce"  # executing it would be harmless, but still refused
    with pytest.raises(InvalidBlock, match="duplicate tx in block"):
        validator.validate(block)


def test_block_size_limits() -> None:
    proposer, validator = _node(), _node()
    txs = [register("X"), register("P")]
    block, ex = proposer.build(txs)
    size = sum(len(t.encoded) for t in txs)
    assert validator.validate(block, max_txs=2, max_bytes=size) == ex
    with pytest.raises(InvalidBlock, match="block exceeds the size limits"):
        validator.validate(block, max_txs=1)
    with pytest.raises(InvalidBlock, match="block exceeds the size limits"):
        validator.validate(block, max_bytes=size - 1)


def test_validation_verifies_each_signature_once_per_node() -> None:
    sigs = SigCache()
    proposer, validator = _node(), Node(make_genesis(AUTHS), sigs)
    block, _ = proposer.build(_txs())
    validator.validate(block)
    assert (sigs.hits, sigs.misses) == (0, len(block.txs))
    validator.validate(block)  # e.g. the same proposal seen again in a later round
    assert (sigs.hits, sigs.misses) == (len(block.txs), len(block.txs))


@pytest.mark.parametrize(
    ("now", "expected"), [(5_000, 5_000), (1_000, 1_001), (999, 1_001), (1_001, 1_001)]
)
def test_next_time_is_strictly_after_the_parent(now: int, expected: int) -> None:
    tip = Tip(3, b"\x00" * 32, b"\x00" * 32, 1_000, {})
    assert next_time_ms(tip, now) == expected
