"""A short, seeded decoder fuzzer (issue 9): every decoder at a trust boundary (gossip,
sync, WAL, tx submission, proofs, trie records) is fed valid encodings, their
mutations (bit flips, truncations, splices, byte insertions) and random bytes, and may
only return a value or raise a typed :class:`medchaind.errors.MedchainError`, never an
untyped exception (an ``IndexError`` from a decoder would kill a gossip handler or end
as an internal error). The long version of this is an external campaign of millions of
inputs; this one runs a few thousand in a second or two, the same every run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medchaind import codec, core
from medchaind.app.trie import decode_node
from medchaind.consensus.wire import (
    decode_consensus,
    decode_consensus_head,
    decode_tx_batch,
    encode_consensus,
    encode_tx_batch,
)
from medchaind.errors import MedchainError
from medchaind.sync.wire import (
    decode_announce,
    decode_blocks,
    decode_status,
    decode_sync_request,
    encode_announce,
    encode_blocks,
    encode_status,
    encode_sync_request,
)
from medchaind.testing.appkit import key
from medchaind.types import decode_tx
from medchaind.types.block import decode_block, decode_commit
from medchaind.types.receipt import decode_receipt

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SEED = 20261206
PER_DECODER = 400
#: CBOR initial bytes worth planting: long lengths, bools, floats, indefinite lengths
CBOR_HEADS = [0x18, 0x19, 0x1a, 0x1b, 0x5b, 0x7b, 0x9b, 0xbb, 0xf5, 0xf9, 0xfb, 0x5f, 0x9f, 0xbf]


def _block_vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "block.json").read_text())  # type: ignore[no-any-return]


def _samples() -> dict[str, tuple[Callable[[bytes], Any], list[bytes]]]:
    blocks = _block_vectors()
    txs = [bytes.fromhex(t["encoded"]) for t in json.loads((VECTORS / "tx.json").read_text())["valid"]]
    block_bytes = [bytes.fromhex(b["encoded"]) for b in blocks["blocks"]]
    commits = [bytes.fromhex(b["commit_encoding"]) for b in blocks["blocks"]]
    receipts = [bytes.fromhex(r) for b in blocks["blocks"] for r in b["receipts"]]
    vote = core.sign_vote(key("A"), blocks["chain_id"], core.Vote(
        core.VoteKind.PRECOMMIT, core.Height(3), core.Round(1), core.BlockHash(b"\x07" * 32),
        core.ValidatorId(key("A").public_key)))
    block = decode_block(block_bytes[0])
    proposal = core.sign_proposal(key("A"), blocks["chain_id"], core.Proposal(
        core.Height(block.height), core.Round(0), core.BlockHash(block.hash()), core.Round(-1),
        core.ValidatorId(key("A").public_key)))
    gossip = [encode_consensus(vote), encode_consensus(proposal, block)]
    trie_nodes = [bytes.fromhex(r) for case in json.loads((VECTORS / "state.json").read_text())["trie"]
                  for r in case["records"]]
    return {
        "tx": (decode_tx, txs),
        "block": (decode_block, block_bytes),
        "commit": (decode_commit, commits),
        "receipt": (decode_receipt, receipts),
        "vote": (core.decode_vote, [vote.encode()]),
        "proposal": (core.decode_proposal, [proposal.encode()]),
        "consensus gossip": (decode_consensus, gossip),
        "consensus gossip head": (decode_consensus_head, gossip),
        "tx batch": (decode_tx_batch, [encode_tx_batch(txs)]),
        "block announce": (decode_announce, [encode_announce(5, b"\x01" * 32)]),
        "sync request": (decode_sync_request, [encode_sync_request("blocks", **{"from": 1, "to": 10}),
                                               encode_sync_request("status")]),
        "sync status": (decode_status, [encode_status(9, b"\x02" * 32)]),
        "sync blocks": (decode_blocks, [encode_blocks(list(zip(block_bytes, commits, strict=True)))]),
        "canonical CBOR": (codec.decode, [*txs, *commits]),
        "trie node": (decode_node, trie_nodes),
    }


def _mutations(rng: random.Random, seeds: list[bytes], n: int) -> list[bytes]:
    out: list[bytes] = [b"", b"\x00", b"\xff" * 9, b"\xa0", b"\x80", b"\xbf\xff", b"\x9f\xff"]
    while len(out) < n:
        base = bytearray(rng.choice(seeds))
        op = rng.randrange(6)
        if op == 0 and base:  # flip bits
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(base))
                base[i] ^= 1 << rng.randrange(8)
        elif op == 1 and base:  # truncate
            base = base[: rng.randrange(len(base))]
        elif op == 2:  # insert bytes
            i = rng.randrange(len(base) + 1)
            base[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and len(seeds) > 1:  # splice two samples
            other = rng.choice(seeds)
            base = base[: rng.randrange(len(base) + 1)] + other[rng.randrange(len(other) + 1):]
        elif op == 4 and base:  # overwrite a byte with a CBOR header byte
            base[rng.randrange(len(base))] = rng.choice(CBOR_HEADS)
        else:  # random bytes
            base = bytearray(rng.randbytes(rng.randint(0, 64)))
        out.append(bytes(base))
    return out


@pytest.mark.parametrize("name", sorted(_samples()))
def test_decoder_raises_only_typed_errors(name: str) -> None:
    decode, seeds = _samples()[name]
    for s in seeds:
        decode(s)  # the valid samples decode
    rng = random.Random(f"{SEED}/{name}")
    untyped: list[tuple[bytes, BaseException]] = []
    for data in _mutations(rng, seeds, PER_DECODER):
        try:
            decode(data)
        except MedchainError:
            pass
        except Exception as exc:  # noqa: BLE001 - exactly what this test looks for
            untyped.append((data, exc))
    assert not untyped, f"{name}: {len(untyped)} untyped errors, first: {untyped[0][0].hex()} -> {untyped[0][1]!r}"
