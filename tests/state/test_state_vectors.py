"""tests/vectors/state.json, checked the way a second implementation would check it.

The trie is rebuilt here from docs/protocol.md §23 alone, with hashlib and nothing of
medchaind.app.trie: roots, the set of node records, every proof (membership, absence,
prefix) walked from the root by hash. Then the block vector: its genesis state gives the
genesis app_hash, its write-set on top gives the header's app_hash, and the reference
state machine re-executing its txs yields exactly that write-set. (That the file is
current is checked by tests/unit/test_vectors.py with the other vector files.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medchaind.app import DictState
from medchaind.chain import SigCache, Tip, validate_block
from medchaind.modules import make_app
from medchaind.types import Genesis, decode_block, decode_commit, results_hash, verify_commit

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
DOC = json.loads((VECTORS / "state.json").read_text(encoding="utf-8"))
BLOCK_DOC = json.loads((VECTORS / "block.json").read_text(encoding="utf-8"))


def H(b: bytes) -> bytes:  # noqa: N802 - the spec's name
    return hashlib.sha256(b).digest()


# ------------------------------------------------------------- the spec, literally


def sym(k: bytes, i: int) -> int:
    """§23.2: per byte its high nibble + 1 and its low nibble + 1, then 0."""
    j = i // 2
    if j >= len(k):
        return 0
    return (k[j] >> 4) + 1 if i % 2 == 0 else (k[j] & 15) + 1


def spec_root(entries: dict[bytes, bytes]) -> tuple[bytes, set[bytes]]:
    """The root and every node record of the trie of ``entries`` (§23.3)."""
    records: set[bytes] = set()

    def node(keys: list[bytes]) -> bytes:
        if len(keys) == 1:
            rec = b"\x00" + H(entries[keys[0]]) + keys[0]
            records.add(rec)
            return H(rec)
        p = 0
        while len({sym(k, p) for k in keys}) == 1:
            p += 1
        groups: dict[int, list[bytes]] = {}
        for k in keys:
            groups.setdefault(sym(k, p), []).append(k)
        bitmap = sum(1 << v for v in groups)
        rec = b"\x01" + p.to_bytes(4, "big") + bitmap.to_bytes(3, "big") + b"".join(
            node(groups[v]) for v in sorted(groups))
        records.add(rec)
        return H(rec)

    if not entries:
        return H(b""), records
    return node(sorted(entries)), records


def parse_inner(rec: bytes) -> tuple[int, dict[int, bytes]]:
    pos, bitmap = int.from_bytes(rec[1:5], "big"), int.from_bytes(rec[5:8], "big")
    syms = [v for v in range(17) if bitmap >> v & 1]
    assert len(rec) == 8 + 32 * len(syms) and len(syms) >= 2
    return pos, {v: rec[8 + 32 * i: 40 + 32 * i] for i, v in enumerate(syms)}


def spec_get(root: bytes, records: list[bytes], key: bytes) -> bytes | None:
    """The value hash a proof gives for ``key`` (§23.4); KeyError if the proof lacks a node."""
    by_hash = {H(r): r for r in records}
    if root == H(b""):
        return None
    rec = by_hash[root]
    while rec[0] == 1:
        pos, kids = parse_inner(rec)
        if sym(key, pos) not in kids:
            return None
        rec = by_hash[kids[sym(key, pos)]]
    return rec[1:33] if rec[33:] == key else None


def spec_scan(root: bytes, records: list[bytes], prefix: bytes) -> list[tuple[bytes, bytes]]:
    by_hash = {H(r): r for r in records}
    if root == H(b""):
        return []
    ref = root
    rec = by_hash[ref]
    while rec[0] == 1:
        pos, kids = parse_inner(rec)
        if pos >= 2 * len(prefix):
            break
        if sym(prefix, pos) not in kids:
            return []
        ref = kids[sym(prefix, pos)]
        rec = by_hash[ref]
    first = rec
    while first[0] == 1:  # the leftmost leaf says whether the node's keys have the prefix
        first = by_hash[next(iter(parse_inner(first)[1].values()))]
    if not first[33:].startswith(prefix):
        return []
    out: list[tuple[bytes, bytes]] = []

    def walk(r: bytes) -> None:
        rec = by_hash[r]
        if rec[0] == 0:
            out.append((rec[33:], rec[1:33]))
        else:
            for child in parse_inner(rec)[1].values():
                walk(child)

    walk(ref)
    return out


def h(x: str) -> bytes:
    return bytes.fromhex(x)


# ------------------------------------------------------------------ the vectors


def test_trie_roots_and_records_follow_the_spec() -> None:
    assert len(DOC["trie"]) >= 4
    for case in DOC["trie"]:
        entries = {h(k): h(v) for k, v in case["entries"]}
        root, records = spec_root(entries)
        assert root.hex() == case["root"], case["name"]
        assert sorted(r.hex() for r in records) == case["records"], case["name"]


def test_trie_proofs_verify_with_the_spec_walk() -> None:
    kinds = set()
    for case in DOC["trie"]:
        root = h(case["root"])
        entries = {h(k): h(v) for k, v in case["entries"]}
        for p in case["proofs"]:
            key = h(p["key"])
            got = spec_get(root, [h(r) for r in p["nodes"]], key)
            assert got == (None if p["value"] is None else H(h(p["value"])))
            assert (p["value"] is None) == (key not in entries)
            kinds.add("absent" if p["value"] is None else "present")
            if p["nodes"]:  # each record of a point proof is needed
                for i in range(len(p["nodes"])):
                    short = [h(r) for j, r in enumerate(p["nodes"]) if j != i]
                    try:
                        spec_get(root, short, key)
                    except KeyError:
                        continue
                    raise AssertionError(f"{case['name']}: record {i} of the proof of {p['key']} is not needed")
        for s in case["prefix_proofs"]:
            prefix = h(s["prefix"])
            expected = sorted((k, v) for k, v in entries.items() if k.startswith(prefix))
            assert [(h(k), h(v)) for k, v in s["entries"]] == expected
            got = spec_scan(root, [h(r) for r in s["nodes"]], prefix)
            assert got == [(k, H(v)) for k, v in expected]
    assert kinds == {"absent", "present"}


def test_the_block_vector_app_hash_follows_from_its_state() -> None:
    b = DOC["block"]
    genesis = Genesis.from_json(BLOCK_DOC["genesis_json"])
    assert genesis.hash().hex() == b["genesis_hash"]

    def tree(entries: list[list[Any]]) -> dict[bytes, bytes | None]:
        return {m.encode() + b"/" + h(k): (None if v is None else h(v)) for m, k, v in entries}

    state = {k: v for k, v in tree(b["genesis_state"]).items() if v is not None}
    assert spec_root(state)[0].hex() == b["genesis_app_hash"]
    for k, v in tree(b["writes"]).items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    header = b["header"]
    assert spec_root(state)[0].hex() == header["app_hash"]

    # the reference node agrees: decoding, commit and re-execution from the genesis state
    block = decode_block(h(b["encoded"]))
    assert block.hash().hex() == b["header_hash"] and [t.encoded.hex() for t in block.txs] == b["txs"]
    commit = decode_commit(h(b["commit_encoding"]))
    verify_commit(commit, genesis.chain_id, genesis.powers(), block.hash(), 1)
    app = make_app(genesis)
    dict_state = DictState({(m, h(k)): h(v) for m, k, v in b["genesis_state"]})
    tip = Tip(0, genesis.hash(), h(b["genesis_app_hash"]), genesis.genesis_time_ms, genesis.powers())
    ex = validate_block(app, dict_state, tip, block, SigCache(), max_txs=10, max_bytes=1 << 20)
    assert [[m, k.hex(), None if v is None else v.hex()] for (m, k), v in sorted(ex.writes.items())] == b["writes"]
    assert [r.encode().hex() for r in ex.receipts] == b["receipts"]
    assert results_hash(ex.receipts).hex() == header["results_hash"]
    codes = [r.code for r in ex.receipts]
    assert "ok" in codes and any(c != "ok" for c in codes)  # a failed tx still writes its nonce
