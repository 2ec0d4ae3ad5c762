"""The committed wire-format vectors (tests/vectors/*.json) are current and decode.

1. Regenerating them in memory gives exactly the committed files, so a change of an
   encoding, hash or signature shows up here as a vector diff to review.
2. Every vector is checked with the real decoders and with plain hashlib/nacl, the way
   another implementation would use the files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import nacl.signing
import pytest

from medchaind import codec, crypto
from medchaind.errors import DecodeError, SignatureError
from medchaind.types import (
    Genesis,
    decode_block,
    decode_commit,
    decode_receipt,
    decode_tx,
    verify_commit,
)
from medchaind.types.merkle import merkle_proof, merkle_root, verify_merkle_proof

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "medchaind_vector_generator", VECTORS / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


@pytest.mark.parametrize("name", gen.FILES)
def test_committed_vectors_are_current(name: str) -> None:
    fresh = gen.build_all()[name]
    assert (VECTORS / name).read_text(encoding="utf-8") == gen.dumps(fresh), (
        f"tests/vectors/{name} is out of date: run `python tests/vectors/generate.py` and "
        "review the diff (a changed vector is a wire-format change)"
    )


def test_generation_is_deterministic() -> None:
    assert gen.dumps(gen.build_all()) == gen.dumps(gen.build_all())


def test_describe_parse_round_trip() -> None:
    v = {"b": [1, -(2**63), 2**64 - 1, b"\x00", "ü", None, True, False, {}], "a": []}
    assert gen.parse(gen.describe(v)) == v
    assert json.loads(json.dumps(gen.describe(v))) == gen.describe(v)


# --------------------------------------------------------------------------- codec


def test_codec_valid_vectors() -> None:
    doc = load("codec.json")
    assert doc["max_depth"] == codec.MAX_DEPTH
    assert len(doc["valid"]) >= 30
    for v in doc["valid"]:
        value = gen.parse(v["value"])
        data = h(v["hex"])
        assert codec.encode(value) == data, v["name"]
        decoded = codec.decode(data)
        assert codec.encode(decoded) == data and decoded == value, v["name"]


def test_codec_invalid_vectors() -> None:
    doc = load("codec.json")
    rules = {v["rule"] for v in doc["invalid"]}
    assert rules >= {
        "shortest-head",
        "map-order",
        "duplicate-key",
        "indefinite",
        "float",
        "tag",
        "simple",
        "map-key",
        "trailing",
        "truncated",
        "utf8",
        "int-range",
        "depth",
    }
    for v in doc["invalid"]:
        with pytest.raises(DecodeError):
            codec.decode(h(v["hex"]))


# ------------------------------------------------------------------------------ tx


def test_tx_vectors() -> None:
    doc = load("tx.json")
    chain = doc["chain_id"]
    assert doc["domain"] == crypto.DOMAIN_TX
    for v in doc["valid"]:
        key = crypto.SigningKey(h(v["seed"]))
        assert key.public_key.hex() == v["public_key"]
        tx = decode_tx(h(v["encoded"]))
        f = v["fields"]
        assert (tx.v, tx.chain, tx.type, tx.sender.hex(), tx.nonce) == (
            f["v"],
            f["chain"],
            f["type"],
            f["sender"],
            f["nonce"],
        )
        assert tx.body == gen.parse(f["body"])
        assert tx.sig.hex() == v["sig"]
        assert tx.hash.hex() == v["hash"] == sha(h(v["encoded"])).hex()
        assert tx.signing_payload().hex() == v["signing_payload"]
        # the signing message, rebuilt by hand from the spec
        msg = doc["domain"].encode() + b"\x00" + chain.encode() + b"\x00" + h(v["signing_payload"])
        assert msg.hex() == v["signing_message"]
        nacl.signing.VerifyKey(h(v["public_key"])).verify(msg, h(v["sig"]))
        tx.verify_signature()
        # the signing payload is the encoded map without "sig"
        unsigned = codec.decode(h(v["encoded"]))
        del unsigned["sig"]
        assert codec.encode(unsigned).hex() == v["signing_payload"]


def test_tx_bad_signature_and_invalid_vectors() -> None:
    doc = load("tx.json")
    for v in doc["bad_signature"]:
        tx = decode_tx(h(v["encoded"]))
        with pytest.raises(SignatureError):
            tx.verify_signature()
    assert len(doc["invalid"]) >= 10
    for v in doc["invalid"]:
        with pytest.raises(DecodeError):
            decode_tx(h(v["hex"]))


# --------------------------------------------------------------------------- block


def test_genesis_vector() -> None:
    doc = load("block.json")
    g = Genesis.from_json(doc["genesis_json"])
    assert g.hash().hex() == doc["genesis_hash"]
    assert g.chain_id == doc["chain_id"]
    assert [a.public_key.hex() for a in g.authorities] == [
        a["public_key"] for a in doc["authorities"]
    ]
    for a in doc["authorities"]:
        assert crypto.SigningKey(h(a["seed"])).public_key.hex() == a["public_key"]


def test_block_vectors() -> None:
    doc = load("block.json")
    chain = doc["chain_id"]
    powers = {h(a["public_key"]): a["power"] for a in doc["authorities"]}
    vset = codec.encode([[k, powers[k]] for k in sorted(powers)])
    assert sha(vset).hex() == doc["validators_hash"]
    assert sha(b"\x80").hex() == doc["empty_results_hash"]
    prev_hash = doc["genesis_hash"]
    prev_commit_hash = sha(b"").hex()
    assert [b["header"]["height"] for b in doc["blocks"]] == [1, 2]
    for b in doc["blocks"]:
        block = decode_block(h(b["encoded"]))
        hdr = b["header"]
        assert hdr["prev_hash"] == prev_hash
        assert hdr["last_commit_hash"] == prev_commit_hash
        assert hdr["validators_hash"] == doc["validators_hash"]
        # header fields -> encoding -> hash, by hand
        hmap = {k: (h(x) if isinstance(x, str) and k != "chain" else x) for k, x in hdr.items()}
        assert codec.encode(hmap).hex() == b["header_encoding"]
        assert sha(h(b["header_encoding"])).hex() == b["header_hash"]
        assert block.header.to_map() == hmap
        assert block.hash().hex() == b["header_hash"]
        assert len(block.txs) == 2
        assert [t.hash.hex() for t in block.txs] == b["tx_hashes"]
        assert merkle_root([h(x) for x in b["tx_hashes"]]).hex() == hdr["tx_root"]
        for t in block.txs:
            t.verify_signature()
        # receipts -> results_hash
        receipts = [decode_receipt(h(r)) for r in b["receipts"]]
        assert sha(codec.encode([r.to_map() for r in receipts])).hex() == hdr["results_hash"]
        # commit
        commit = decode_commit(h(b["commit_encoding"]))
        assert commit.hash().hex() == b["commit_hash"] == sha(h(b["commit_encoding"])).hex()
        assert commit.block_hash.hex() == b["header_hash"]
        assert commit.to_json()["signatures"] == [
            {"validator": "0x" + v, "signature": "0x" + s} for v, s in b["commit"]["signatures"]
        ]
        verify_commit(commit, chain, powers, h(b["header_hash"]), hdr["height"])
        payload = h(b["precommit_payload"])
        assert codec.decode(payload) == {
            "type": 2,
            "height": hdr["height"],
            "round": hdr["round"],
            "block": h(b["header_hash"]),
        }
        msg = b"medchain/vote/v1\x00" + chain.encode() + b"\x00" + payload
        for v, s in b["commit"]["signatures"]:
            nacl.signing.VerifyKey(h(v)).verify(msg, h(s))
        prev_hash = b["header_hash"]
        prev_commit_hash = b["commit_hash"]
        if block.last_commit is not None:
            assert block.last_commit.hash().hex() == hdr["last_commit_hash"]


def test_vote_vectors() -> None:
    doc = load("block.json")
    for v in doc["votes"]:
        payload = h(v["payload"])
        assert codec.decode(payload) == {"type": 1, "height": 3, "round": 0, "block": None}
        msg = h(v["signing_message"])
        assert msg == b"medchain/vote/v1\x00" + doc["chain_id"].encode() + b"\x00" + payload
        nacl.signing.VerifyKey(h(doc["authorities"][0]["public_key"])).verify(
            msg, h(v["signature"])
        )


# -------------------------------------------------------------------------- merkle


def test_merkle_vectors() -> None:
    doc = load("merkle.json")
    sizes = [len(c["leaves"]) for c in doc["cases"]]
    assert sizes[:9] == list(range(9))
    for c in doc["cases"]:
        items = [h(x) for x in c["leaves"]]
        assert merkle_root(items).hex() == c["root"]
        assert [p["index"] for p in c["proofs"]] == list(range(len(items)))
        for p in c["proofs"]:
            path = [h(x) for x in p["path"]]
            assert merkle_proof(items, p["index"]) == path
            assert verify_merkle_proof(
                items[p["index"]], p["index"], len(items), path, h(c["root"])
            )
