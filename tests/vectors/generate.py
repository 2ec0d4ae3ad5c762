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

import functools
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # allow running the script from a checkout without installing
    sys.path.insert(0, str(HERE.parent.parent))

from medchaind import codec, crypto  # noqa: E402
from medchaind.core.validators import ValidatorSet  # noqa: E402
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

FILES = ("codec.json", "tx.json", "block.json", "merkle.json", "state.json", "ed25519.json", "gossip.json")

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
    vset = ValidatorSet.from_powers(powers)
    specs = [
        # height, round, time, commit signers; the proposer is the §5.2 rule's for (height, round)
        (1, 0, GENESIS_TIME_MS + 1000, [0, 1, 2]),
        (2, 1, GENESIS_TIME_MS + 2500, [0, 1, 2, 3]),
    ]
    for height, round_, time_ms, signers in specs:
        proposer = vset.proposer(height, round_)
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
            proposer=proposer,
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
    # §5.2: the proposer of (h, r) for equal powers (this genesis) and for unequal ones
    weighted = {a.public_key: p for a, p in zip(auths, (1, 2, 3, 4), strict=True)}
    wset = ValidatorSet.from_powers(weighted)
    proposers = {
        "equal_powers": [[h_, r_, vset.proposer(h_, r_).hex()] for h_ in range(1, 4) for r_ in range(3)],
        "weighted": {
            "powers": [[k.hex(), weighted[k]] for k in sorted(weighted)],
            "cycle": [wset.proposer(0, r_).hex() for r_ in range(sum(weighted.values()))],
            "schedule": [[h_, r_, wset.proposer(h_, r_).hex()] for h_ in range(1, 4) for r_ in range(3)],
        },
    }
    return {
        "description": "Genesis, blocks at heights 1 and 2 with their commits (docs/protocol.md "
        "§4-§7). Authority i has Ed25519 seed bytes([0x10+i])*32, power 1; block 1 is "
        "committed by authorities 0,1,2, block 2 by all four, signatures sorted by key. Each "
        "block's proposer is proposer(height, round) of §5.2 (block 2 was decided in round 1). "
        "Header and commit fields are plain JSON (§14): integers as numbers, byte strings as "
        "hex, the chain id as a string. 'proposers': [height, round, proposer] by §5.2 for this "
        "authority set, and for the same keys with powers 1, 2, 3, 4 (authority i has power i+1; "
        "'cycle' is the smooth weighted round-robin cycle, entry j = proposer of h + r = j).",
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
        "proposers": proposers,
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


# ------------------------------------------------------------------ ed25519 edge cases

# Just enough edwards25519 arithmetic (RFC 8032 §5.1) to build signatures that libsodium
# and other verifiers judge differently. Affine coordinates and modular inverses: slow,
# and only ever run here, on public test data.
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Pt = tuple[int, int]
_ZERO: _Pt = (0, 1)


def _ed_add(a: _Pt, b: _Pt) -> _Pt:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return (x3, y3)


def _ed_mul(n: int, pt: _Pt) -> _Pt:
    out = _ZERO
    while n:
        if n & 1:
            out = _ed_add(out, pt)
        pt = _ed_add(pt, pt)
        n >>= 1
    return out


def _ed_x(y: int, sign: int) -> int | None:
    """The x with parity ``sign`` of the curve point with this y (None: no such point)."""
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * _SQRT_M1 % _P
    if v * x * x % _P != u:
        return None
    if x == 0 and sign:
        return None
    return x if x & 1 == sign else _P - x


_B: _Pt = (_ed_x(4 * pow(5, _P - 2, _P) % _P, 0) or 0, 4 * pow(5, _P - 2, _P) % _P)


def _ed_enc(pt: _Pt) -> bytes:
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _ed_dec_lax(s: bytes) -> _Pt | None:
    """ZIP-215 decoding: any y < 2**255 (reduced mod p), x = 0 with the sign bit set allowed."""
    v = int.from_bytes(s, "little")
    y, sign = (v & ((1 << 255) - 1)) % _P, v >> 255
    x = _ed_x(y, 0)
    if x is None:
        return None
    return (x if x == 0 or (x & 1) == sign else _P - x, y)


def _ed_k(r_enc: bytes, a_enc: bytes, msg: bytes) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha512(r_enc + a_enc + msg).digest(), "little") % _L


def _zip215_verify(a_enc: bytes, sig: bytes, msg: bytes) -> bool:
    """ZIP 215: non-canonical A and R accepted, S < L, cofactored equation [8]SB = [8]R + [8]kA."""
    a, r = _ed_dec_lax(a_enc), _ed_dec_lax(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    left = _ed_mul(8 * s, _B)
    right = _ed_add(_ed_mul(8, r), _ed_mul(8 * _ed_k(sig[:32], a_enc, msg), a))
    return left == right


def _torsion8() -> _Pt:
    """A point of order 8: L times the first curve point found from y = 2, 3, ..."""
    y = 2
    while True:
        x = _ed_x(y, 0)
        if x is not None:
            t = _ed_mul(_L, (x, y))
            if _ed_mul(4, t) != _ZERO:
                return t
        y += 1


@functools.cache
def _ed25519_cases() -> list[dict[str, Any]]:
    """(name, public key, signature, message) of the edge cases; verdicts are computed."""
    t8 = _torsion8()
    t4 = _ed_mul(2, t8)  # order 4: (x, 0)
    a_scalar = int.from_bytes(crypto.sha256(b"medchain ed25519 vectors: a"), "little") % _L
    r_scalar = int.from_bytes(crypto.sha256(b"medchain ed25519 vectors: r"), "little") % _L
    a_pt = _ed_mul(a_scalar, _B)
    r_pt = _ed_mul(r_scalar, _B)
    ident_noncanon_y = (_P + 1).to_bytes(32, "little")  # the identity with y = p + 1
    ident_neg_zero = bytes([1]) + bytes(30) + bytes([0x80])  # the identity with x "negative"

    def msg_for(i: int) -> tuple[bytes, bytes]:
        payload = codec.encode({"edge": i})
        return payload, crypto.signing_message(crypto.DOMAIN_TX, CHAIN_ID, payload)

    def search(r_enc: bytes, a_enc: bytes, want: Any) -> tuple[bytes, bytes, int]:
        """A payload whose challenge k = H(R || A || M) mod L satisfies ``want(k)``."""
        i = 0
        while True:
            payload, msg = msg_for(i)
            k = _ed_k(r_enc, a_enc, msg)
            if want(k):
                return payload, msg, k
            i += 1

    def sig(r_enc: bytes, s: int) -> bytes:
        return r_enc + s.to_bytes(32, "little")

    any_k = lambda k: True  # noqa: E731
    out: list[tuple[str, bytes, bytes, bytes]] = []

    # 1. an ordinary signature, and its S made non-canonical
    key = crypto.SigningKey(TX_SEED)
    payload, msg = msg_for(0)
    good = key.sign(crypto.DOMAIN_TX, CHAIN_ID, payload)
    s = int.from_bytes(good[32:], "little")
    out.append(("ordinary signature (RFC 8032, from seed 00..1f)", key.public_key, good, payload))
    out.append(("S + L: non-canonical S (S >= L), otherwise the signature above", key.public_key,
                sig(good[:32], s + _L), payload))
    out.append(("S + 15L: S >= L with the top bits of the last byte set", key.public_key,
                sig(good[:32], s + 15 * _L), payload))

    a_enc, r_enc = _ed_enc(a_pt), _ed_enc(r_pt)
    # 2. small-order public keys (identity; order 8), R = rB, S = r
    for name, small in (("the identity (order 1)", _ZERO), ("a point of order 8", t8), ("a point of order 4", t4)):
        se = _ed_enc(small)
        payload, msg, k = search(r_enc, se, lambda k: k % 8 != 0)
        out.append((f"small-order A: {name}; R = rB, S = r (cofactored equation holds"
                    + (", cofactorless too)" if small == _ZERO else ", cofactorless does not)"), se,
                    sig(r_enc, r_scalar), payload))
    # 3. small-order R with an ordinary A: R = identity or order 4, S = k*a
    for name, small in (("the identity", _ZERO), ("a point of order 4", t4)):
        se = _ed_enc(small)
        payload, msg, k = search(se, a_enc, any_k)
        out.append((f"small-order R: {name}; A = aB, S = k*a (cofactored holds"
                    + (", cofactorless too)" if small == _ZERO else ", cofactorless does not)"), a_enc,
                    sig(se, k * a_scalar % _L), payload))
    # 4. mixed-order A = aB + T8 (not small order, not in the prime-order subgroup)
    mixed_a = _ed_enc(_ed_add(a_pt, t8))
    for holds in (True, False):
        payload, msg, k = search(r_enc, mixed_a, (lambda k: k % 8 == 0) if holds else (lambda k: k % 8 != 0))
        out.append(("mixed-order A = aB + T8, R = rB, S = r + k*a, "
                    + ("k = 0 mod 8: the cofactorless equation holds" if holds
                       else "k != 0 mod 8: only the cofactored equation holds"),
                    mixed_a, sig(r_enc, (r_scalar + k * a_scalar) % _L), payload))
    # 5. mixed-order R = rB + T8
    mixed_r = _ed_enc(_ed_add(r_pt, t8))
    payload, msg, k = search(mixed_r, a_enc, any_k)
    out.append(("mixed-order R = rB + T8, S = r + k*a: only the cofactored equation holds", a_enc,
                sig(mixed_r, (r_scalar + k * a_scalar) % _L), payload))
    # 6. non-canonical encodings (only small-order points have them with a known discrete log)
    for name, enc_ in (("y = p + 1", ident_noncanon_y), ("x = 0 with the sign bit set", ident_neg_zero)):
        payload, msg, k = search(r_enc, enc_, any_k)
        out.append((f"non-canonical A: the identity encoded with {name}; R = rB, S = r", enc_,
                    sig(r_enc, r_scalar), payload))
        payload, msg, k = search(enc_, a_enc, any_k)
        out.append((f"non-canonical R: the identity encoded with {name}; S = k*a", a_enc,
                    sig(enc_, k * a_scalar % _L), payload))
    # 7. an A that is not a curve point
    y = 2
    while _ed_x(y, 0) is not None:
        y += 1
    off = y.to_bytes(32, "little")
    payload, msg = msg_for(0)
    out.append((f"A is not a curve point (y = {y})", off, sig(r_enc, r_scalar), payload))

    cases = []
    for name, pk, sg, payload in out:
        msg = crypto.signing_message(crypto.DOMAIN_TX, CHAIN_ID, payload)
        cases.append({
            "name": name,
            "public_key": pk.hex(),
            "signature": sg.hex(),
            "payload": payload.hex(),
            "message": msg.hex(),
            "valid": crypto.verify(pk, sg, crypto.DOMAIN_TX, CHAIN_ID, payload),
            "zip215": _zip215_verify(pk, sg, msg),
        })
    return cases


def build_ed25519() -> dict[str, Any]:
    return {
        "description": "Ed25519 verification edge cases (docs/protocol.md §2.2). Each case is a "
        "signature under domain 'medchain/tx/v1' and chain 'medchain-test' of 'payload'; "
        "'message' is the signing message that libsodium's crypto_sign_verify_detached checks. "
        "'valid' is libsodium's verdict and THE RULE: an implementation MUST return exactly "
        "'valid'. 'zip215' is informative: what a ZIP-215 verifier (cofactored equation, "
        "non-canonical point encodings allowed, S < L) returns; where it differs from 'valid', "
        "so do ed25519-zebra, and the default verifiers of several libraries. "
        "A, R are point encodings, S the scalar half of the signature, B the base point, "
        "L the group order, T8 a point of order 8, k = SHA-512(R || A || message) mod L.",
        "libsodium_rules": [
            "S must be canonical (S < L)",
            "R must not be a small-order point (orders 1, 2, 4, 8), in any encoding",
            "A must be canonical (y < p) and must not be a small-order point",
            "cofactorless equation, compared as bytes: encode(S*B - k*A) == R",
        ],
        "domain": crypto.DOMAIN_TX,
        "chain_id": CHAIN_ID,
        "cases": _ed25519_cases(),
    }


# --------------------------------------------------------------------------- gossip


def build_gossip() -> dict[str, Any]:
    """Gossip messages of §12 with their topics and message ids (SHA-256 of the data)."""
    from medchaind.consensus.wire import encode_consensus, encode_tx_batch
    from medchaind.core.messages import Proposal, Vote, VoteKind, sign_proposal, sign_vote
    from medchaind.sync.wire import encode_announce
    from medchaind.types import decode_block

    blocks = build_block()["blocks"]
    block2 = decode_block(bytes.fromhex(blocks[1]["encoded"]))
    auths = {k.public_key: k for k in (crypto.SigningKey(s) for s in AUTHORITY_SEEDS)}
    vote = sign_vote(auths[block2.header.proposer], CHAIN_ID,
                     Vote(VoteKind.PREVOTE, 2, 1, block2.hash(), block2.header.proposer))  # type: ignore[arg-type]
    proposal = sign_proposal(auths[block2.header.proposer], CHAIN_ID,
                             Proposal(2, 1, block2.hash(), -1, block2.header.proposer))  # type: ignore[arg-type]
    key = crypto.SigningKey(TX_SEED)
    txs = [sign_tx(key, CHAIN_ID, t, n, b).encoded for t, n, b in _tx_cases()]

    def topic(name: str) -> str:
        return f"/medchain/{CHAIN_ID}/{name}"

    def peer_id(public_key: bytes) -> str:
        """§12.1: base58btc(identity multihash(protobuf PublicKey{Type: Ed25519, Data: key}))."""
        raw = b"\x00\x24" + b"\x08\x01\x12\x20" + public_key
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        n, out = int.from_bytes(raw, "big"), ""
        while n:
            n, r = divmod(n, 58)
            out = alphabet[r] + out
        return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out

    def case(name: str, topic_name: str, data: bytes) -> dict[str, Any]:
        return {"name": name, "topic": topic(topic_name), "data": data.hex(),
                "message_id": crypto.sha256(data).hex()}

    return {
        "description": "Gossip messages (docs/protocol.md §12) on chain 'medchain-test': the "
        "libp2p topic, the message data (the 'data' field of the gossipsub message, nothing "
        "else) and its message id, SHA-256(data). Topic, origin, seqno and signature of the "
        "gossipsub envelope are not part of the id. The vote and the proposal are block.json's "
        "block 2 (height 2, round 1), signed by its proposer; the proposal is compact (protocol 4, "
        "§12.3): block 2's header, its tx hashes in block order and its last_commit, not its txs. "
        "The re-broadcast differs from the "
        "first publication only by 'resend', and so has another id. The tx batch holds the "
        "three transactions of tx.json. 'peer_ids': the libp2p peer id (§12.1) of each "
        "authority public key of block.json, as `medchaind peer-id` prints it. 'txs_requests': "
        "§13.5 txs/1 requests (the request bytes after the length prefix) with the status-0 "
        "response bytes of a server that holds block 2 and its txs.",
        "chain_id": CHAIN_ID,
        "peer_ids": [[k.hex(), peer_id(k)] for k in sorted(auths)],
        "txs_requests": _txs_requests(block2),
        "cases": [
            case("prevote for block 2 (height 2, round 1)", "consensus/1", encode_consensus(vote)),
            case("the same prevote, re-broadcast with resend = 1", "consensus/1", encode_consensus(vote, resend=1)),
            case("compact proposal of block 2: header, tx hashes, last_commit (pol_round -1)", "consensus/1",
                 encode_consensus(proposal, block2)),
            case("tx batch of tx.json's three transactions", "tx/1", encode_tx_batch(txs)),
            case("announcement of block 2", "block/1", encode_announce(2, block2.hash())),
        ],
    }


def _txs_requests(block: Any) -> list[dict[str, Any]]:
    """§13.5 ``txs/1``: requests for block 2's txs and the answers of a server holding them."""
    from medchaind.consensus.compact import encode_block_request, encode_txs_request, serve_txs

    held = {t.hash: t for t in block.txs}
    hashes = [t.hash for t in block.txs]
    unknown = bytes(32)

    def pair(name: str, request: bytes) -> dict[str, Any]:
        answer = serve_txs(request, held.get, lambda h: block if h == block.hash() else None)
        return {"name": name, "request": request.hex(), "response": answer.hex()}

    return [
        pair("block 2's txs by hash, then a hash the server does not hold (null)",
             encode_txs_request(hashes + [unknown])),
        pair("block 2 by its hash", encode_block_request(block.hash())),
        pair("a block the server does not hold", encode_block_request(unknown)),
    ]


# ----------------------------------------------------------------------------- main


def build_all() -> dict[str, Any]:
    return {
        "codec.json": build_codec(),
        "tx.json": build_tx(),
        "block.json": build_block(),
        "merkle.json": build_merkle(),
        "state.json": build_state(),
        "ed25519.json": build_ed25519(),
        "gossip.json": build_gossip(),
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
