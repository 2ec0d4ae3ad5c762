"""State snapshots: the state after one block, cut into chunks that verify one by one.

Theory of operation
-------------------
The state trie (:mod:`medchaind.app.trie`) has a property that makes chunking simple:
the subtree below any node is *the trie of the entries below it* (the shape is a
function of the key set alone). So a receiver that knows a subtree's hash can check a
run of entries against it by rebuilding: ``build(entries).root == subtree hash``. No
range or edge proofs are needed, and an entry added, changed or left out changes the
rebuilt root.

A snapshot of height ``h`` (root ``R`` = the ``app_hash`` of header ``h``) is therefore:

* a **manifest**: the inner records of the top of the trie, down to a *cut* (every
  node whose entries together fit in a chunk is below the cut, its parent above), and
  the hashes of the subtrees at the cut (the *units*) grouped into **chunks**, in key
  order. The receiver checks the manifest against ``R`` alone: starting at ``R``, every
  record it names is reached by hash exactly once, and the hashes it reaches that are
  not records are exactly the units, in order (:func:`verify_manifest`);
* **chunks**: chunk ``i`` holds, for each of its units, the unit's entries ``(tree
  key, value)`` in key order; the receiver rebuilds each unit and compares its root with
  the manifest (:func:`verify_chunk`), so each chunk is checked on its own, from any
  peer, and a bad one is refetched elsewhere.

The records of the restored trie are the manifest's plus each unit's rebuilt ones; the
values are the entries'. Greedy grouping keeps chunks near ``max_chunk_bytes`` (a unit
larger than that is one leaf whose value is larger; it still travels alone).

This improves on the range-of-leaves-with-edge-proofs design first sketched in
docs/protocol.md §23.8: a chunk carries no proof nodes at all (the manifest carries the
few top records once), verification is one rebuild per unit (the work a receiver must
do anyway to store the trie), and chunk boundaries fall on subtrees, so two chunks never
share a record. Docs: protocol.md §23.8 (normative).

Pure: no I/O. Reading records and values is the caller's (through callables).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import codec
from ..errors import DecodeError, ProofError
from .trie import EMPTY_ROOT, LEAF_TAG, MAX_KEY_SIZE, Inner, Leaf, build, decode_node, leaf_hash

__all__ = [
    "MAX_CHUNKS", "MAX_MANIFEST_NODES", "Chunk", "Manifest", "SnapshotError", "chunk_entries",
    "decode_chunk", "decode_manifest", "encode_chunk", "plan_snapshot", "split_tree_key",
    "verify_chunk", "verify_manifest",
]

#: a manifest names at most this many records and this many chunks (a 48 MiB answer)
MAX_MANIFEST_NODES = 200_000
MAX_CHUNKS = 1_000_000
#: per-entry overhead counted in a chunk's size (CBOR framing)
ENTRY_OVERHEAD = 8
MAX_SNAPSHOT_MSG = 48 * 1024 * 1024

_MODULE = re.compile(rb"[a-z][a-z_]{0,31}")

#: a chunk: for each of its units, the unit's entries (tree key, value) in key order
Chunk = tuple[tuple[tuple[bytes, bytes], ...], ...]


class SnapshotError(ProofError):
    """A manifest or chunk that does not verify against the snapshot's root."""


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Manifest:
    height: int
    #: the snapshot's state root (the app_hash of header ``height``)
    root: bytes
    #: inner records above the cut, parents before children (any order verifies)
    nodes: tuple[bytes, ...]
    #: per chunk, its units' subtree hashes; units in key order across all chunks
    chunks: tuple[tuple[bytes, ...], ...]

    def encode(self) -> bytes:
        return codec.encode({"height": self.height, "root": self.root, "nodes": list(self.nodes),
                             "chunks": [list(c) for c in self.chunks]})

    def hash(self) -> bytes:
        return _h(self.encode())


def decode_manifest(data: bytes) -> Manifest:
    """A manifest from its canonical CBOR; DecodeError if malformed (not yet verified)."""
    d = codec.decode(data, max_size=MAX_SNAPSHOT_MSG, max_depth=4)
    if (not isinstance(d, dict) or set(d) != {"height", "root", "nodes", "chunks"} or type(d["height"]) is not int
            or d["height"] < 1 or not isinstance(d["root"], bytes) or len(d["root"]) != 32
            or not isinstance(d["nodes"], list) or not isinstance(d["chunks"], list)):
        raise DecodeError("snapshot manifest: expected {height, root, nodes, chunks}")
    if len(d["nodes"]) > MAX_MANIFEST_NODES or len(d["chunks"]) > MAX_CHUNKS:
        raise DecodeError("snapshot manifest: too many records or chunks")
    if not all(isinstance(n, bytes) for n in d["nodes"]):
        raise DecodeError("snapshot manifest: nodes are byte strings")
    chunks = []
    for c in d["chunks"]:
        if not isinstance(c, list) or not c or not all(isinstance(u, bytes) and len(u) == 32 for u in c):
            raise DecodeError("snapshot manifest: each chunk is a non-empty list of 32-byte hashes")
        chunks.append(tuple(c))
    return Manifest(d["height"], d["root"], tuple(d["nodes"]), tuple(chunks))


def encode_chunk(chunk: Chunk) -> bytes:
    return codec.encode_unchecked([[[k, v] for k, v in unit] for unit in chunk])


def decode_chunk(data: bytes) -> Chunk:
    """A chunk from CBOR; DecodeError if malformed (not yet verified)."""
    d = codec.decode(data, max_size=MAX_SNAPSHOT_MSG, max_depth=4)
    if not isinstance(d, list):
        raise DecodeError("snapshot chunk: expected a list of units")
    out = []
    for unit in d:
        if not isinstance(unit, list) or not unit:
            raise DecodeError("snapshot chunk: each unit is a non-empty list of [key, value]")
        entries = []
        for e in unit:
            if not isinstance(e, list) or len(e) != 2 or not isinstance(e[0], bytes) or not isinstance(e[1], bytes):
                raise DecodeError("snapshot chunk: each entry is [tree key, value]")
            entries.append((e[0], e[1]))
        out.append(tuple(entries))
    return tuple(out)


def split_tree_key(key: bytes) -> tuple[str, bytes]:
    """``(module, key)`` of a tree key; SnapshotError if it is not one."""
    module, sep, rest = key.partition(b"/")
    if not sep or not _MODULE.fullmatch(module):
        raise SnapshotError("a snapshot entry's key is not namespace/key")
    return module.decode("ascii"), rest


# --------------------------------------------------------------------- the server side


def _read(read_node: Callable[[bytes], bytes | None], ref: bytes) -> tuple[bytes, Leaf | Inner]:
    record = read_node(ref)
    if record is None or _h(record) != ref:
        raise ProofError(f"the state trie has no node {ref.hex()} (the version was pruned?)")
    return record, decode_node(record)


def plan_snapshot(height: int, root: bytes, read_node: Callable[[bytes], bytes | None],
                  value_size: Callable[[bytes], int], *, max_chunk_bytes: int) -> Manifest:
    """The manifest of the trie at ``root``: cut where a subtree's entries fit in a chunk.

    ``value_size(leaf hash)`` is the size of that leaf's value. Reads every record once
    (a post-order walk with an explicit stack: paths can be deep). ProofError if a
    record is missing (the version was pruned meanwhile).
    """
    if root == EMPTY_ROOT:
        return Manifest(height, root, (), ())
    # a frame: [hash, record, node, kids left to visit, results of the kids visited]
    # a result: (size, fits, units [(hash, size)], top records)
    Result = tuple[int, bool, list[tuple[bytes, int]], list[bytes]]
    final: Result | None = None
    record, node = _read(read_node, root)
    stack: list[tuple[bytes, bytes, Inner, list[bytes], list[Result]]] = []

    def leaf_result(ref: bytes, leaf: Leaf) -> Result:
        size = len(leaf.key) + value_size(ref) + ENTRY_OVERHEAD
        return size, True, [(ref, size)], []

    if isinstance(node, Leaf):
        final = leaf_result(root, node)
    else:
        stack.append((root, record, node, list(reversed(node.kids.values())), []))
    while stack:
        ref, rec, inner, todo, results = stack[-1]
        if todo:
            kid = todo.pop()
            krec, knode = _read(read_node, kid)
            if isinstance(knode, Leaf):
                results.append(leaf_result(kid, knode))
            else:
                stack.append((kid, krec, knode, list(reversed(knode.kids.values())), []))
            continue
        stack.pop()
        size = sum(r[0] for r in results)
        if size <= max_chunk_bytes and all(r[1] for r in results):
            res: Result = (size, True, [(ref, size)], [])
        else:
            units: list[tuple[bytes, int]] = []
            top = [rec]
            for r in results:
                units.extend(r[2])
                top.extend(r[3])
            res = (size, False, units, top)
        if stack:
            stack[-1][4].append(res)
        else:
            final = res
    assert final is not None
    _, _, units, top = final
    chunks: list[tuple[bytes, ...]] = []
    cur: list[bytes] = []
    cur_size = 0
    for u, size in units:
        if cur and cur_size + size > max_chunk_bytes:
            chunks.append(tuple(cur))
            cur, cur_size = [], 0
        cur.append(u)
        cur_size += size
    if cur:
        chunks.append(tuple(cur))
    return Manifest(height, root, tuple(top), tuple(chunks))


def chunk_entries(manifest: Manifest, index: int, read_node: Callable[[bytes], bytes | None],
                  read_leaf_value: Callable[[bytes], bytes | None]) -> Chunk:
    """Chunk ``index`` of ``manifest``: each unit's entries in key order, read from the
    store's records and leaf values. ProofError if something is missing (pruned)."""
    out = []
    for unit in manifest.chunks[index]:
        entries = []
        stack = [unit]
        while stack:
            ref = stack.pop()
            _, node = _read(read_node, ref)
            if isinstance(node, Leaf):
                value = read_leaf_value(ref)
                if value is None or _h(value) != node.vhash:
                    raise ProofError(f"the store has no value for trie leaf {ref.hex()} (pruned?)")
                entries.append((node.key, value))
            else:
                stack.extend(reversed(node.kids.values()))
        out.append(tuple(entries))
    return tuple(out)


# ------------------------------------------------------------------- the receiver side


def verify_manifest(manifest: Manifest, app_hash: bytes) -> None:
    """Raise SnapshotError unless ``manifest`` describes the trie whose root is ``app_hash``."""
    if manifest.root != app_hash:
        raise SnapshotError("the manifest is for another state root")
    if app_hash == EMPTY_ROOT:
        if manifest.nodes or manifest.chunks:
            raise SnapshotError("an empty state has no records and no chunks")
        return
    records: dict[bytes, Inner] = {}
    for rec in manifest.nodes:
        node = decode_node(rec)
        if not isinstance(node, Inner):
            raise SnapshotError("a manifest record above the cut is a leaf")
        records[_h(rec)] = node
    if len(records) != len(manifest.nodes):
        raise SnapshotError("the manifest repeats a record")
    units: list[bytes] = []
    used: set[bytes] = set()
    stack = [app_hash]
    while stack:
        ref = stack.pop()
        inner = records.get(ref)
        if inner is None:
            units.append(ref)
            continue
        if ref in used:
            raise SnapshotError("the manifest's records do not form a tree")
        used.add(ref)
        stack.extend(reversed(inner.kids.values()))
    if len(used) != len(records):
        raise SnapshotError("the manifest has records that the root does not reach")
    if [u for c in manifest.chunks for u in c] != units:
        raise SnapshotError("the manifest's chunks are not the subtrees below its records")


def verify_chunk(manifest: Manifest, index: int, chunk: Chunk) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    """Check chunk ``index`` against a verified manifest; its trie records and leaf
    values (both by hash). SnapshotError if any unit does not rebuild to its hash."""
    if not 0 <= index < len(manifest.chunks):
        raise SnapshotError(f"no chunk {index}")
    expect: Sequence[bytes] = manifest.chunks[index]
    if len(chunk) != len(expect):
        raise SnapshotError(f"chunk {index} has {len(chunk)} units, the manifest {len(expect)}")
    records: dict[bytes, bytes] = {}
    values: dict[bytes, bytes] = {}
    for unit, want in zip(chunk, expect, strict=True):
        prev: bytes | None = None
        for k, _ in unit:
            if len(k) > MAX_KEY_SIZE or (prev is not None and k <= prev):
                raise SnapshotError(f"chunk {index}: entries are not in key order (or a key is too long)")
            split_tree_key(k)
            prev = k
        built = build(dict(unit))
        if built.root != want:
            raise SnapshotError(f"chunk {index}: a unit does not rebuild to the manifest's hash")
        records.update(built.puts)
        values.update(built.values)
    return records, values


def leaf_of(key: bytes, value: bytes) -> bytes:
    """The leaf hash of an entry (where its value is kept: ``v1/tval/``)."""
    return leaf_hash(key, _h(value))


assert LEAF_TAG == 0
