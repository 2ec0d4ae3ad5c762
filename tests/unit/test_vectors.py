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
        # receipts -> results_hash: each receipt's {code, events}, without the reason (§7)
        receipts = [decode_receipt(h(r)) for r in b["receipts"]]
        results = [{"code": r.code, "events": list(r.events)} for r in receipts]
        assert sha(codec.encode(results)).hex() == hdr["results_hash"]
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


# ---------------------------------------------------------------- proposer (§5.2)


def _proposer_from_spec(powers: dict[bytes, int], height: int, round_: int) -> bytes:
    """docs/protocol.md §5.2 written out from the text: smooth weighted round-robin."""
    import math

    keys = sorted(powers)
    g = 0
    for k in keys:
        g = math.gcd(g, powers[k])
    w = [powers[k] // g for k in keys]
    total = sum(w)
    c = [0] * len(w)
    cycle = []
    for _ in range(total):
        c = [ci + wi for ci, wi in zip(c, w, strict=True)]
        j = c.index(max(c))  # the lowest index with the largest value
        c[j] -= total
        cycle.append(j)
    return keys[cycle[(height + round_) % total]]


def test_block_vectors_follow_the_proposer_rule() -> None:
    """Issue 15, item 5: block.json's proposers are §5.2's (the live network's) rule."""
    doc = load("block.json")
    powers = {h(a["public_key"]): a["power"] for a in doc["authorities"]}
    for b in doc["blocks"]:
        hdr = b["header"]
        assert h(hdr["proposer"]) == _proposer_from_spec(powers, hdr["height"], hdr["round"])
        # with equal powers: sorted_keys[(h + r) mod n]
        assert h(hdr["proposer"]) == sorted(powers)[(hdr["height"] + hdr["round"]) % len(powers)]
    for height, round_, key in doc["proposers"]["equal_powers"]:
        assert _proposer_from_spec(powers, height, round_).hex() == key
    weighted = doc["proposers"]["weighted"]
    wpowers = {h(k): p for k, p in weighted["powers"]}
    assert [_proposer_from_spec(wpowers, 0, j).hex() for j in range(len(weighted["cycle"]))] == weighted["cycle"]
    for height, round_, key in weighted["schedule"]:
        assert _proposer_from_spec(wpowers, height, round_).hex() == key
    # each authority proposes power/gcd times per cycle
    assert sorted(weighted["cycle"].count(k) for k, _ in weighted["powers"]) == [1, 2, 3, 4]


# ------------------------------------------------------------------------ ed25519 (§2.2)


def test_ed25519_edge_cases_follow_libsodium() -> None:
    """Issue 15, item 8: the verdicts are libsodium's crypto_sign_verify_detached, and the
    node's verify (crypto.verify) agrees with every one of them."""
    import nacl.bindings
    import nacl.exceptions

    doc = load("ed25519.json")
    chain, domain = doc["chain_id"], doc["domain"]
    for c in doc["cases"]:
        pk, sig, payload, msg = h(c["public_key"]), h(c["signature"]), h(c["payload"]), h(c["message"])
        assert msg == domain.encode() + b"\x00" + chain.encode() + b"\x00" + payload
        assert crypto.verify(pk, sig, domain, chain, payload) is c["valid"], c["name"]
        try:
            nacl.bindings.crypto_sign_open(sig + msg, pk)
            sodium = True
        except (nacl.exceptions.BadSignatureError, ValueError):
            sodium = False
        assert sodium is c["valid"], c["name"]
    names = " ".join(c["name"] for c in doc["cases"])
    for needed in ("S + L", "small-order A", "small-order R", "mixed-order A", "mixed-order R",
                   "non-canonical A", "non-canonical R"):
        assert needed in names
    # the point of the file: rules that disagree with libsodium exist and are caught
    assert sum(c["valid"] != c["zip215"] for c in doc["cases"]) >= 8
    assert any(c["valid"] and "mixed-order A" in c["name"] for c in doc["cases"])


# ------------------------------------------------------------------------ gossip (§12.2)


def test_gossip_vectors() -> None:
    """Issue 15, item 12: message id = SHA-256 of the message data; every message decodes."""
    from medchaind.consensus.compact import decode_block_answer, decode_txs_answer, decode_txs_request
    from medchaind.consensus.wire import decode_consensus, decode_tx_batch
    from medchaind.core.messages import Proposal, Vote
    from medchaind.sync.wire import decode_announce

    doc = load("gossip.json")
    block2 = load("block.json")["blocks"][1]
    held = {t.hash: t for t in decode_block(h(block2["encoded"])).txs}
    ids = set()
    for c in doc["cases"]:
        data = h(c["data"])
        assert c["message_id"] == sha(data).hex()
        ids.add(c["message_id"])
        name = c["topic"].split("/", 3)[3]
        assert c["topic"] == f"/medchain/{doc['chain_id']}/{name}"
        if name == "consensus/1":
            m = decode_consensus(data, held.get)
            assert isinstance(m.message, (Vote, Proposal))
            assert m.message.block_hash.hex() == block2["header_hash"]
            if isinstance(m.message, Proposal):  # compact (§12.3): rebuilt from the txs held
                assert m.block is not None and m.block.encode().hex() == block2["encoded"]
                assert m.compact is not None and [x.hex() for x in m.compact.tx_hashes] == block2["tx_hashes"]
        elif name == "tx/1":
            assert [decode_tx(t).hash.hex() for t in decode_tx_batch(data)] == [
                v["hash"] for v in load("tx.json")["valid"]]
        else:
            assert name == "block/1"
            assert decode_announce(data) == (2, h(block2["header_hash"]))
    assert len(ids) == len(doc["cases"])  # a re-broadcast (resend) has its own id
    # §13.5 txs/1: each answer names exactly the txs asked for, or the block, or null
    txs_req, block_req, unknown_req = doc["txs_requests"]
    asked = decode_txs_request(h(txs_req["request"]))[1]
    got = decode_txs_answer(h(txs_req["response"]), asked)
    assert [sha(t).hex() for t in got if t is not None] == block2["tx_hashes"] and got[-1] is None
    assert decode_block_answer(h(block_req["response"])).encode().hex() == block2["encoded"]  # type: ignore[union-attr]
    assert decode_block_answer(h(unknown_req["response"])) is None


def test_libp2p_adapter_uses_the_specified_message_id() -> None:
    """The reference's gossipsub msg_id_constructor is §12.2's function, whatever the envelope."""
    from libp2p.pubsub.pb import rpc_pb2

    from medchaind.net.libp2p_net import content_message_id

    for c in load("gossip.json")["cases"]:
        msg = rpc_pb2.Message(data=h(c["data"]), from_id=b"\x00\x01", seqno=b"\x00" * 8, topicIDs=[c["topic"]])
        assert content_message_id(msg).hex() == c["message_id"]


def test_peer_id_vectors() -> None:
    """§12.1: an authority's peer id follows from its public key (item 13: `medchaind peer-id`)."""
    from medchaind.net.libp2p_net import peer_id_from_public_key

    doc = load("gossip.json")
    keys = sorted(a["public_key"] for a in load("block.json")["authorities"])
    assert [k for k, _ in doc["peer_ids"]] == keys
    for k, pid in doc["peer_ids"]:
        assert pid.startswith("12D3KooW") and str(peer_id_from_public_key(h(k))) == pid


def test_state_block_results_hash_follows_section_7() -> None:
    """state.json's block was executed by the reference state machine; its results_hash is
    H(enc([{code, events}, ...])) of its receipts, reasons left out (protocol 3)."""
    b = load("state.json")["block"]
    receipts = [codec.decode(h(r)) for r in b["receipts"]]
    assert [r["code"] for r in receipts] == ["ok", "ok", "ok", "already_registered"]
    assert any(r["reason"] for r in receipts)  # a failed one has a reason, which is not hashed
    results = [{"code": r["code"], "events": r["events"]} for r in receipts]
    assert sha(codec.encode(results)).hex() == b["header"]["results_hash"]
    assert all(r["events"] == [] for r in receipts if r["code"] != "ok")
