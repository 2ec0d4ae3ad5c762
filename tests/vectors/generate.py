"""Generate the wire-format test vectors of ``docs/protocol.md``.

Usage::

    python tests/vectors/generate.py          # (re)write the JSON files next to this script
    python tests/vectors/generate.py --check  # exit 1 if a file differs from what would be written

Everything here is deterministic: keys come from fixed seeds, Ed25519 signatures are
deterministic (RFC 8032), and no clock or RNG is read. ``tests/unit/test_vectors.py``
regenerates the vectors in memory, compares them with the committed files and decodes
every vector with the real decoders.

CBOR values are described in JSON with one tag per data-model type, so that bytes and
text strings, and integers beyond 2**53, survive a JSON round trip::

    {"int": "-42"}  {"bytes": "00ff"}  {"text": "ü"}  {"bool": true}  {"null": null}
    {"array": [<value>, ...]}  {"map": [["key", <value>], ...]}

Map entries are listed in an arbitrary (not necessarily canonical) order: an encoder
must sort them itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # allow running the script from a checkout without installing
    sys.path.insert(0, str(HERE.parent.parent))

from medchaind import codec, crypto  # noqa: E402
from medchaind.types import (  # noqa: E402
    EMPTY_HASH,
    PRECOMMIT,
    PREVOTE,
    Block,
    Commit,
    Genesis,
    Header,
    Receipt,
    results_hash,
    sign_commit_vote,
    sign_tx,
    tx_root,
    validators_hash,
    vote_payload,
)
from medchaind.types.merkle import merkle_proof, merkle_root  # noqa: E402

FILES = ("codec.json", "tx.json", "block.json", "merkle.json", "state.json")

CHAIN_ID = "medchain-test"
#: The signer of the tx vectors.
TX_SEED = bytes(range(32))
#: Authority i (0..3) of the block vectors has seed bytes([0x10 + i]) * 32.
AUTHORITY_SEEDS = tuple(bytes([0x10 + i]) * 32 for i in range(4))
#: Senders of the block vectors' transactions.
CLIENT_SEEDS = (bytes(range(32)), bytes(range(32, 64)))
GENESIS_TIME_MS = 1_764_000_000_000


# --------------------------------------------------------------------- value description


def describe(v: Any) -> Any:
    """CBOR data-model value -> tagged JSON description (see module docstring)."""
    if v is None:
        return {"null": None}
    if type(v) is bool:
        return {"bool": v}
    if type(v) is int:
        return {"int": str(v)}
    if type(v) is bytes:
        return {"bytes": v.hex()}
    if type(v) is str:
        return {"text": v}
    if type(v) is list:
        return {"array": [describe(x) for x in v]}
    if type(v) is dict:
        return {"map": [[k, describe(x)] for k, x in v.items()]}
    raise TypeError(f"not in the data model: {type(v).__name__}")


def parse(d: Any) -> Any:
    """Inverse of :func:`describe`."""
    ((tag, x),) = d.items()
    if tag == "null":
        return None
    if tag == "bool":
        return bool(x)
    if tag == "int":
        return int(x)
    if tag == "bytes":
        return bytes.fromhex(x)
    if tag == "text":
        return str(x)
    if tag == "array":
        return [parse(y) for y in x]
    if tag == "map":
        return {k: parse(y) for k, y in x}
    raise ValueError(f"unknown value tag {tag!r}")


def _nest(n: int, inner: Any) -> Any:
    for _ in range(n):
        inner = [inner]
    return inner


# --------------------------------------------------------------------------- codec


def _valid_codec_values() -> list[tuple[str, Any]]:
    return [
        ("uint 0", 0),
        ("uint 23 (largest immediate)", 23),
        ("uint 24 (smallest 1-byte argument)", 24),
        ("uint 255", 255),
        ("uint 256 (smallest 2-byte argument)", 256),
        ("uint 65535", 65535),
        ("uint 65536 (smallest 4-byte argument)", 65536),
        ("uint 2**32-1", 2**32 - 1),
        ("uint 2**32 (smallest 8-byte argument)", 2**32),
        ("uint 2**64-1 (largest integer)", 2**64 - 1),
        ("nint -1", -1),
        ("nint -24", -24),
        ("nint -25", -25),
        ("nint -256", -256),
        ("nint -257", -257),
        ("nint -2**63 (smallest integer)", -(2**63)),
        ("false", False),
        ("true", True),
        ("null", None),
        ("empty bytes", b""),
        ("bytes", bytes.fromhex("0001ff")),
        ("bytes of length 24 (1-byte length head)", bytes(range(24))),
        ("bytes of length 256 (2-byte length head)", bytes(256)),
        ("empty text", ""),
        ("text", "medchain"),
        ("non-ASCII text (UTF-8)", "Zürich 日本"),
        ("text of length 23", "a" * 23),
        ("text of length 24 (1-byte length head)", "b" * 24),
        ("empty array", []),
        ("nested arrays", [1, [2, 3], [], [[None]]]),
        ("array of length 24 (1-byte length head)", list(range(24))),
        ("empty map", {}),
        (
            "map keys sorted by encoded bytes: shorter first, then bytewise",
            {"bb": 1, "b": 2, "a": 3, "aaa": 4, "B": 5, "ab": 6},
        ),
        ("map with non-ASCII keys (UTF-8 bytewise order)", {"é": 1, "z": 2, "ä": 3}),
        (
            "nested maps and mixed values",
            {"z": {"y": [b"\x00", "x", -5]}, "a": {"k": None, "j": True}},
        ),
        ("deepest allowed nesting: 17 arrays (innermost at depth 16)", _nest(16, [])),
        ("depth 16 scalar inside 16 arrays", _nest(16, 0)),
    ]


def _invalid_codec() -> list[tuple[str, str, str]]:
    """(hex, rule, reason): every one must be rejected by a conforming decoder."""
    deep_arrays = "81" * 17 + "80"  # 18 arrays: the innermost is at depth 17
    deep_scalar = "81" * 17 + "00"  # scalar at depth 17
    return [
        ("", "truncated", "empty input"),
        ("1817", "shortest-head", "uint 23 with a 1-byte argument"),
        ("190001", "shortest-head", "uint 1 with a 2-byte argument"),
        ("1900ff", "shortest-head", "uint 255 with a 2-byte argument"),
        ("1a00000001", "shortest-head", "uint 1 with a 4-byte argument"),
        ("1a0000ffff", "shortest-head", "uint 65535 with a 4-byte argument"),
        ("1b0000000000000001", "shortest-head", "uint 1 with an 8-byte argument"),
        ("1b00000000ffffffff", "shortest-head", "uint 2**32-1 with an 8-byte argument"),
        ("3817", "shortest-head", "nint -24 with a 1-byte argument"),
        ("3b0000000000000000", "shortest-head", "nint -1 with an 8-byte argument"),
        ("580161", "shortest-head", "bytes of length 1 with a 1-byte length argument"),
        ("59000161", "shortest-head", "bytes of length 1 with a 2-byte length argument"),
        ("780161", "shortest-head", "text of length 1 with a 1-byte length argument"),
        ("7a0000000161", "shortest-head", "text of length 1 with a 4-byte length argument"),
        ("9800", "shortest-head", "empty array with a 1-byte length argument"),
        ("990001" + "00", "shortest-head", "array of length 1 with a 2-byte length argument"),
        ("b800", "shortest-head", "empty map with a 1-byte length argument"),
        ("b90001616100", "shortest-head", "map of length 1 with a 2-byte length argument"),
        ("a2616202616101", "map-order", "map keys not sorted ('b' before 'a')"),
        ("a2626161016162" + "02", "map-order", "longer key before shorter key ('aa' before 'b')"),
        ("a2616101616102", "duplicate-key", "duplicate map key 'a'"),
        ("5f4161ff", "indefinite", "indefinite-length byte string"),
        ("5fff", "indefinite", "empty indefinite-length byte string"),
        ("7f6161ff", "indefinite", "indefinite-length text string"),
        ("9f01ff", "indefinite", "indefinite-length array"),
        ("bf616101ff", "indefinite", "indefinite-length map"),
        ("f93c00", "float", "half-precision float 1.0"),
        ("fa3f800000", "float", "single-precision float 1.0"),
        ("fb3ff0000000000000", "float", "double-precision float 1.0"),
        ("f90000", "float", "half-precision float 0.0"),
        ("c074323031332d30332d32315432303a30343a30305a", "tag", "tag 0 (date/time string)"),
        ("c11a514b67b0", "tag", "tag 1 (epoch date/time)"),
        ("c24101", "tag", "tag 2 (unsigned bignum) of a value that fits in 64 bits"),
        ("c249010000000000000000", "tag", "tag 2 (unsigned bignum) 2**64"),
        ("c34100", "tag", "tag 3 (negative bignum)"),
        ("d82a4100", "tag", "tag 42 (arbitrary tag)"),
        ("d9d9f700", "tag", "tag 55799 (self-described CBOR)"),
        ("f7", "simple", "undefined"),
        ("e0", "simple", "simple value 0"),
        ("f0", "simple", "simple value 16"),
        ("f820", "simple", "simple value 32 (two-byte form)"),
        ("f814", "simple", "false in the two-byte simple form"),
        ("a10102", "map-key", "integer map key"),
        ("a1416101", "map-key", "byte-string map key"),
        ("a1f601", "map-key", "null map key"),
        ("0000", "trailing", "trailing bytes after a complete item"),
        ("8001", "trailing", "trailing bytes after an empty array"),
        ("18", "truncated", "missing 1-byte argument"),
        ("1a0000", "truncated", "truncated 4-byte argument"),
        ("6261", "truncated", "text shorter than its length"),
        ("8201", "truncated", "array with fewer items than its length"),
        ("a16161", "truncated", "map key without a value"),
        ("62c328", "utf8", "invalid UTF-8 in a text string"),
        ("61ff", "utf8", "invalid UTF-8 byte 0xff"),
        ("63eda080", "utf8", "UTF-8-encoded surrogate U+D800"),
        ("3bffffffffffffffff", "int-range", "nint -2**64 (below -2**63)"),
        ("3b8000000000000000", "int-range", "nint -2**63-1 (below -2**63)"),
        (deep_arrays, "depth", "18 nested arrays (an item at depth 17)"),
        (deep_scalar, "depth", "integer at depth 17"),
        ("1c", "malformed", "reserved additional information 28"),
        ("df00", "malformed", "additional information 31 on a tag"),
        ("fe", "malformed", "reserved additional information 30 on major type 7"),
        ("ff", "malformed", "lone break code"),
    ]


def build_codec() -> dict[str, Any]:
    valid = [
        {"name": name, "value": describe(v), "hex": codec.encode(v).hex()}
        for name, v in _valid_codec_values()
    ]
    invalid = [{"hex": h, "rule": rule, "reason": reason} for h, rule, reason in _invalid_codec()]
    return {
        "description": "Canonical CBOR (docs/protocol.md §1). 'valid': the one encoding of each "
        "value; a decoder must accept it and return the value, an encoder must produce it. "
        "'invalid': a decoder must reject every entry.",
        "max_depth": codec.MAX_DEPTH,
        "valid": valid,
        "invalid": invalid,
    }


# ------------------------------------------------------------------------------ tx


def _tx_cases() -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (
            "record.put",
            0,
            {
                "content_hash": crypto.sha256(b"example record"),
                "kind": "lab-result",
                "size": 1234,
            },
        ),
        ("account.register", 1, {}),
        (
            "access.grant",
            2**32,
            {
                "grantee": bytes(range(32, 64)),
                "scopes": ["read", "annotate"],
                "until_ms": 1_800_000_000_000,
                "note": None,
                "renew": False,
            },
        ),
    ]


def build_tx() -> dict[str, Any]:
    key = crypto.SigningKey(TX_SEED)
    valid = []
    for type_, nonce, body in _tx_cases():
        tx = sign_tx(key, CHAIN_ID, type_, nonce, body)
        payload = tx.signing_payload()
        valid.append(
            {
                "seed": TX_SEED.hex(),
                "public_key": key.public_key.hex(),
                "fields": {
                    "v": tx.v,
                    "chain": tx.chain,
                    "type": tx.type,
                    "sender": tx.sender.hex(),
                    "nonce": tx.nonce,
                    "body": describe(tx.body),
                },
                "signing_payload": payload.hex(),
                "signing_message": crypto.signing_message(
                    crypto.DOMAIN_TX, CHAIN_ID, payload
                ).hex(),
                "sig": tx.sig.hex(),
                "encoded": tx.encoded.hex(),
                "hash": tx.hash.hex(),
            }
        )

    # Decodes (well-formed) but the signature is for another chain id.
    base = sign_tx(key, CHAIN_ID, "record.put", 7, {"n": 1})
    m = base.to_map()
    m["chain"] = "medchain-other"
    bad_sig = [
        {
            "encoded": codec.encode(m).hex(),
            "reason": "sig was made for chain 'medchain-test'; the tx says 'medchain-other'",
        }
    ]

    def mutated(reason: str, **changes: Any) -> dict[str, str]:
        mm = base.to_map()
        for k, v in changes.items():
            if v is _DELETE:
                del mm[k]
            else:
                mm[k] = v
        return {"hex": codec.encode(mm).hex(), "reason": reason}

    invalid = [
        mutated("missing field 'sig'", sig=_DELETE),
        mutated("unknown field 'blob'", blob=b"\x00"),
        mutated("version 2", v=2),
        mutated("chain id with an upper-case letter", chain="Medchain"),
        mutated("type without a module prefix", type="put"),
        mutated("sender of 31 bytes", sender=bytes(31)),
        mutated("negative nonce", nonce=-1),
        mutated("nonce 2**63", nonce=2**63),
        mutated("body is an array", body=[]),
        mutated("sig of 63 bytes", sig=bytes(63)),
        {"hex": base.encoded[:-1].hex(), "reason": "truncated encoding"},
        {"hex": _unsorted_tx(base.encoded).hex(), "reason": "non-canonical: map keys not sorted"},
    ]
    return {
        "description": "Transactions (docs/protocol.md §3). Domain 'medchain/tx/v1'. "
        "'valid': a decoder accepts 'encoded' and the signature verifies. 'bad_signature': "
        "decodes, signature does not verify. 'invalid': decoding must fail.",
        "chain_id": CHAIN_ID,
        "domain": crypto.DOMAIN_TX,
        "valid": valid,
        "bad_signature": bad_sig,
        "invalid": invalid,
    }


class _Delete:
    pass


_DELETE = _Delete()


def _unsorted_tx(encoded: bytes) -> bytes:
    """The same tx map with its first two entries swapped, so its keys are out of order."""
    m = codec.decode(encoded)
    items = sorted(m.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
    items[0], items[1] = items[1], items[0]
    out = bytes([0xA0 + len(items)])
    for k, v in items:
        out += codec.encode(k) + codec.encode(v)
    return out


# --------------------------------------------------------------------------- blocks


def _genesis_json() -> str:
    doc = {
        "chain_id": CHAIN_ID,
        "genesis_time_ms": GENESIS_TIME_MS,
        "authorities": [
            {"name": f"node{i}", "public_key": crypto.SigningKey(s).public_key.hex(), "power": 1}
            for i, s in enumerate(AUTHORITY_SEEDS)
        ],
        "params": {"max_block_txs": 5000, "max_block_bytes": 8388608},
    }
    return json.dumps(doc, indent=2) + "\n"


def _header_json(h: Header) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in h.to_map().items()}


def _commit_json(c: Commit) -> dict[str, Any]:
    return {
        "height": c.height,
        "round": c.round,
        "block_hash": c.block_hash.hex(),
        "signatures": [[s.validator.hex(), s.signature.hex()] for s in c.signatures],
    }


def build_block() -> dict[str, Any]:
    genesis_text = _genesis_json()
    genesis = Genesis.from_json(genesis_text)
    auths = [crypto.SigningKey(s) for s in AUTHORITY_SEEDS]
    powers = genesis.powers()
    vhash = validators_hash(powers)
    clients = [crypto.SigningKey(s) for s in CLIENT_SEEDS]

    def make_commit(height: int, round_: int, block_hash: bytes, signers: list[int]) -> Commit:
        sigs = [sign_commit_vote(auths[i], CHAIN_ID, height, round_, block_hash) for i in signers]
        return Commit(height, round_, block_hash, tuple(sorted(sigs, key=lambda s: s.validator)))

    blocks = []
    prev_hash = genesis.hash()
    last_commit: Commit | None = None
    specs = [
        # height, round, time, proposer, commit signers
        (1, 0, GENESIS_TIME_MS + 1000, 0, [0, 1, 2]),
        (2, 1, GENESIS_TIME_MS + 2500, 2, [0, 1, 2, 3]),
    ]
    for height, round_, time_ms, proposer, signers in specs:
        txs = (
            sign_tx(
                clients[0],
                CHAIN_ID,
                "record.put",
                height - 1,
                {"content_hash": crypto.sha256(b"record %d" % height), "size": 100 * height},
            ),
            sign_tx(
                clients[1], CHAIN_ID, "account.register", height - 1, {"name": f"client-{height}"}
            ),
        )
        receipts = [Receipt(), Receipt("bad_nonce", "expected nonce 0", ({"n": 1},))]
        header = Header(
            chain=CHAIN_ID,
            height=height,
            round=round_,
            time_ms=time_ms,
            prev_hash=prev_hash,
            tx_root=tx_root(txs),
            app_hash=crypto.sha256(b"app state %d" % height),
            results_hash=results_hash(receipts),
            validators_hash=vhash,
            proposer=auths[proposer].public_key,
            last_commit_hash=EMPTY_HASH if last_commit is None else last_commit.hash(),
        )
        block = Block(header, txs, last_commit)
        block.validate_basic()
        commit = make_commit(height, round_, block.hash(), signers)
        blocks.append(
            {
                "header": _header_json(header),
                "header_encoding": codec.encode(header.to_map()).hex(),
                "header_hash": header.hash().hex(),
                "tx_hashes": [t.hash.hex() for t in txs],
                "receipts": [r.encode().hex() for r in receipts],
                "encoded": block.encode().hex(),
                "precommit_payload": vote_payload(PRECOMMIT, height, round_, block.hash()).hex(),
                "commit": _commit_json(commit),
                "commit_encoding": commit.encode().hex(),
                "commit_hash": commit.hash().hex(),
            }
        )
        prev_hash = block.hash()
        last_commit = commit

    nil_prevote = vote_payload(PREVOTE, 3, 0, None)
    votes = [
        {
            "description": "prevote for nil at height 3, round 0, by authority 0",
            "payload": nil_prevote.hex(),
            "signing_message": crypto.signing_message(
                crypto.DOMAIN_VOTE, CHAIN_ID, nil_prevote
            ).hex(),
            "signature": auths[0].sign(crypto.DOMAIN_VOTE, CHAIN_ID, nil_prevote).hex(),
        }
    ]
    return {
        "description": "Genesis, blocks at heights 1 and 2 with their commits (docs/protocol.md "
        "§4-§7). Authority i has Ed25519 seed bytes([0x10+i])*32, power 1; block 1 is "
        "committed by authorities 0,1,2, block 2 by all four, signatures sorted by key.",
        "chain_id": CHAIN_ID,
        "genesis_json": genesis_text,
        "genesis_hash": genesis.hash().hex(),
        "authorities": [
            {"seed": s.hex(), "public_key": k.public_key.hex(), "power": 1}
            for s, k in zip(AUTHORITY_SEEDS, auths, strict=True)
        ],
        "validators_hash": vhash.hex(),
        "client_seeds": [s.hex() for s in CLIENT_SEEDS],
        "blocks": blocks,
        "votes": votes,
        "empty_results_hash": results_hash([]).hex(),
    }


# --------------------------------------------------------------------------- merkle


#: The leaves of the Certificate Transparency reference tests (RFC 6962 implementations
#: use them too), so roots for sizes 0..8 can be checked against any CT library.
CT_LEAVES = (
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)


def build_merkle() -> dict[str, Any]:
    cases = []
    sizes = list(range(9)) + [13]
    for n in sizes:
        if n <= len(CT_LEAVES):
            leaves = [bytes.fromhex(x) for x in CT_LEAVES[:n]]
        else:  # 32-byte leaves, as tx hashes are
            leaves = [crypto.sha256(bytes([i])) for i in range(n)]
        cases.append(
            {
                "leaves": [x.hex() for x in leaves],
                "root": merkle_root(leaves).hex(),
                "proofs": [
                    {"index": i, "path": [p.hex() for p in merkle_proof(leaves, i)]}
                    for i in range(n)
                ],
            }
        )
    return {
        "description": "RFC 6962 Merkle tree hash (docs/protocol.md §8). Leaves are the "
        "raw items (tx hashes in a block); leaf hash SHA-256(0x00||item), node hash "
        "SHA-256(0x01||left||right), empty tree SHA-256(''). Paths list siblings leaf-side "
        "first (RFC 9162 §2.1.3). Sizes 0..8 use the Certificate Transparency reference "
        "leaves; size 13 uses SHA-256 of the single byte i for leaf i.",
        "cases": cases,
    }


# ---------------------------------------------------------------------------- state


def _trie_witness(root: bytes, nodes: dict[bytes, bytes], read: Any) -> tuple[Any, list[str]]:
    """Run ``read(reader)`` on the trie at ``root``; its result and the records it visited."""
    from medchaind.app import trie

    seen: dict[bytes, bytes] = {}
    out = read(trie.TrieReader(root, nodes.get, seen=seen.__setitem__))
    return out, [r.hex() for r in seen.values()]


def _trie_case(name: str, items: dict[bytes, bytes], absent: list[bytes], prefixes: list[bytes]) -> dict[str, Any]:
    from medchaind.app import trie

    built = trie.build(items)
    nodes = built.puts
    by_vhash = {trie.value_hash(v): v for v in items.values()}
    proofs = []
    for k in sorted(items) + absent:
        vh, recs = _trie_witness(built.root, nodes, lambda r, k=k: r.get(k))
        assert (vh is None) == (k not in items)
        proofs.append({"key": k.hex(), "value": None if vh is None else by_vhash[vh].hex(), "nodes": recs})
    scans = []
    for p in prefixes:
        found, recs = _trie_witness(built.root, nodes, lambda r, p=p: list(r.iterate(p)))
        scans.append({"prefix": p.hex(), "entries": [[k.hex(), by_vhash[vh].hex()] for k, vh in found],
                      "nodes": recs})
    return {
        "name": name,
        "entries": [[k.hex(), v.hex()] for k, v in sorted(items.items())],
        "root": built.root.hex(),
        "records": sorted(r.hex() for r in nodes.values()),
        "proofs": proofs,
        "prefix_proofs": scans,
    }


def build_state() -> dict[str, Any]:
    """The state trie (docs/protocol.md §23) and a block whose app_hash it gives."""
    from medchaind.app import DictState
    from medchaind.app.app import PROTOCOL_VERSION
    from medchaind.chain import Tip
    from medchaind.chain import build_block as build_chain_block
    from medchaind.modules import make_app

    edge_keys = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x0f", b"\x10", b"\x7f", b"\x80", b"\xff",
                 b"\xff\xff", b"a", b"ab", b"abc", b"ac"]
    edges = {b"t/" + k: b"v" + bytes([i]) for i, k in enumerate(edge_keys)}
    hashed = {b"h/" + crypto.sha256(bytes([i])): crypto.sha256(b"value %d" % i) for i in range(40)}
    absent_edges = [b"", b"\x00" * 33, b"s", b"t", b"t/\x00\x02", b"t/\x01", b"t/\x80\x00", b"t/abd",
                    b"t/ab\x00", b"t/\xff\xff\xff", b"t0", b"u", b"\xff" * 33]
    cases = [
        _trie_case("empty", {}, [b"", b"t/a", b"\xff"], [b"", b"t/"]),
        _trie_case("one entry", {b"t/a": b"1"}, [b"", b"t/", b"t/a\x00", b"t/b", b"\xff"], [b"t/", b"t/b"]),
        _trie_case("edges of the key space: empty keys, 0x00 and 0xff runs, keys that prefix others",
                   edges, absent_edges, [b"", b"t/", b"t/\x00", b"t/a", b"t/ab", b"t/\xff", b"t/zz", b"u/"]),
        _trie_case("40 hashed keys", hashed, [b"h/" + bytes(32), b"h/" + b"\xff" * 32, b"h/"],
                   [b"h/", b"h/\x00", b"h/\x80", b"h/\xff"]),
    ]

    # a block with state changes, executed by the reference state machine
    genesis = Genesis.from_json(_genesis_json())
    app = make_app(genesis)
    writes, app_hash = app.genesis_state()
    state = DictState()
    state.apply(writes)
    auths = [crypto.SigningKey(s) for s in AUTHORITY_SEEDS]
    clients = [crypto.SigningKey(s) for s in CLIENT_SEEDS]
    txs = (
        sign_tx(clients[0], CHAIN_ID, "identity.register", 0, {"role": "patient", "enc_key": bytes(range(32))}),
        sign_tx(clients[1], CHAIN_ID, "identity.register", 0,
                {"role": "provider", "enc_key": bytes(range(1, 33)), "label": "Clinic"}),
        sign_tx(clients[0], CHAIN_ID, "anchor.commit", 1,
                {"digest": crypto.sha256(b"document"), "kind": "consent-form"}),
        sign_tx(clients[1], CHAIN_ID, "identity.register", 1, {"role": "patient", "enc_key": bytes(32)}),
    )
    powers = genesis.powers()
    tip = Tip(0, genesis.hash(), app_hash, GENESIS_TIME_MS, powers)
    proposer = sorted(powers)[1 % len(powers)]  # §5.2 with equal powers: sorted_keys[(h + r) mod n]
    block, ex = build_chain_block(app, state, tip, list(txs), proposer=proposer, time_ms=GENESIS_TIME_MS + 1000,
                                  round_=0, last_commit=None)
    sigs = [sign_commit_vote(k, CHAIN_ID, 1, 0, block.hash()) for k in auths[:3]]
    commit = Commit(1, 0, block.hash(), tuple(sorted(sigs, key=lambda s: s.validator)))

    def entries(ws: dict[Any, bytes | None]) -> list[list[Any]]:
        return [[m, k.hex(), None if v is None else v.hex()] for (m, k), v in sorted(ws.items())]

    return {
        "description": "The state trie and app_hash (docs/protocol.md §23, protocol version "
        f"{PROTOCOL_VERSION}). 'trie': sets of entries (tree key, value) with their root, every node "
        "record, and proofs: for a key, the records a reader visits looking it up (value null: "
        "absent); for a prefix, the records visited listing every entry under it. A record's hash "
        "is SHA-256 of the record; a verifier starts at the root and follows child hashes. "
        "'block': the genesis state of block.json's genesis, block 1 executed from it (its "
        "write-set, value null = delete), the header whose app_hash is the root of the state after "
        "it, and a commit by authorities 0-2.",
        "trie": cases,
        "block": {
            "genesis_hash": genesis.hash().hex(),
            "genesis_state": entries(dict(writes)),
            "genesis_app_hash": app_hash.hex(),
            "txs": [t.encoded.hex() for t in txs],
            "receipts": [r.encode().hex() for r in ex.receipts],
            "writes": entries(ex.writes),
            "header": _header_json(block.header),
            "header_hash": block.hash().hex(),
            "encoded": block.encode().hex(),
            "commit_encoding": commit.encode().hex(),
        },
    }


# ----------------------------------------------------------------------------- main


def build_all() -> dict[str, Any]:
    return {
        "codec.json": build_codec(),
        "tx.json": build_tx(),
        "block.json": build_block(),
        "merkle.json": build_merkle(),
        "state.json": build_state(),
    }


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    differ = []
    for name, doc in build_all().items():
        path = HERE / name
        text = dumps(doc)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                differ.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if differ:
        print("out of date:", ", ".join(differ))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
