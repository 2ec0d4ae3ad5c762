"""The state trie: a 16-ary Merkle Patricia trie over the whole state, keys in order.

Theory of operation
-------------------
The state is a set of ``(module, key) -> value`` entries. Each entry is a leaf of one
trie keyed by its **tree key** ``ascii(module) || "/" || key`` (module names never
contain ``/``, so the modules' key spaces are disjoint and ordered by module name).
``app_hash`` is the root hash of this trie (docs/protocol.md §23,
docs/adr-state-commitment.md).

*Keys are ordered, not hashed.* Leaves are in the byte order of their tree keys (the
order LevelDB and :meth:`StateReader.iterate` use), so one proof can show every entry
under a prefix and that there is no other: a consent check reads *all* of a patient's
grants, and a lying node must not be able to leave out a deny. (A tree keyed by
``H(key)``, as Ethereum's secure trie or Diem's Jellyfish tree, proves single keys only.)

*Symbols.* Keys have different lengths and one key may be a prefix of another, so a key
``K`` of ``n`` bytes is read as the string ``s(K)`` of ``2n + 1`` symbols in ``0..16``:
per byte its high and its low nibble, each plus one, then a final ``0``. ``s`` keeps
the byte order (a shorter prefix sorts first) and no ``s(K)`` is a prefix of another,
so two different keys differ at a first position, their *crit position*
(:func:`crit_pos`). ``sym(K, i)`` is symbol ``i`` of ``s(K)`` and ``0`` past its end.

*Shape.* The trie of a set ``S`` of keys is a leaf if ``|S| = 1``; otherwise an inner
node at the first position ``p`` where the keys of ``S`` disagree, with one child per
symbol ``v`` that some key has at ``p`` (the trie of those keys), children in symbol
order, at least two of them. The shape depends only on the set, never on the order of
insertions or deletions, so an incremental update and a rebuild from scratch give the
same root (history independence; the property tests check it). Positions strictly
increase along a path, and all keys under a node agree on every position before its
own. Sixteen-way (seventeen with the end symbol) rather than binary: a path is about
``log16(n)`` nodes, so a write touches four times fewer nodes than in a binary trie,
which in Python is most of its cost (the ADR has the figures).

*Hashes* (``H`` = SHA-256)::

    leaf record  = 0x00 || H(value) || key
    inner record = 0x01 || uint32_be(p) || uint24_be(bitmap) || child_hash ...
    node hash    = H(record)
    empty trie   = H("")                                    (a state with no entry)

``bitmap`` has bit ``v`` (value ``1 << v``) set for each child symbol ``v``; the child
hashes follow in increasing ``v``. The tag byte keeps the two kinds apart; a leaf's key
is the rest of its record after the fixed 33 bytes.

*Records.* A node is stored, and sent in proofs, as its record. Records are content
addressed: a reader asks for a node by hash and MUST check the
record it gets against that hash (:func:`node_hash`), so a store or a proof can supply a
wrong node only by breaking SHA-256. Within one trie no two nodes share a hash (their
leaf sets differ), so a store may keep records by hash and delete a replaced node's
record at once.

Pure: no I/O, no clock. The store persists records (``v1/trie/<hash>``); this module
computes them.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ..errors import ProofError

__all__ = [
    "EMPTY_ROOT", "MAX_KEY_SIZE", "Inner", "Leaf", "NodeReader", "TrieDelta", "TrieReader",
    "build", "compute_root", "crit_pos", "decode_node", "inner_record", "leaf_hash",
    "leaf_record", "node_hash", "sym", "tree_key", "update", "value_hash",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_TAG = 0x00
INNER_TAG = 0x01
#: symbols per position: the end of the key (0) and the 16 nibble values (1..16)
RADIX = 17
#: a tree key's size limit (module name, "/", key); records and proofs are bounded by it
MAX_KEY_SIZE = 4096
INNER_HEAD = 1 + 4 + 3

#: ``read(node_hash) -> record`` (None when the store has no such node)
NodeReader = Callable[[bytes], "bytes | None"]


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tree_key(module: str, key: bytes) -> bytes:
    """The trie key of ``key`` in ``module``'s state: ``ascii(module) || "/" || key``."""
    return module.encode("ascii") + b"/" + key


def value_hash(value: bytes) -> bytes:
    return _h(value)


# --------------------------------------------------------------------------- symbols


def sym(key: bytes, i: int) -> int:
    """Symbol ``i`` of ``s(key)`` (see the module docstring); 0 at and past the end."""
    j = i >> 1
    if j >= len(key):
        return 0
    return ((key[j] & 15) if i & 1 else (key[j] >> 4)) + 1


def crit_pos(a: bytes, b: bytes) -> int | None:
    """The first position at which ``s(a)`` and ``s(b)`` differ; None if ``a == b``."""
    n = min(len(a), len(b))
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    if x == 0:
        return None if len(a) == len(b) else 2 * n  # one ends: its 0 against a nibble
    top = x.bit_length() - 1  # the highest differing bit, counted from the right
    j = n - 1 - top // 8  # the first differing byte
    return 2 * j + (0 if top % 8 >= 4 else 1)


# --------------------------------------------------------------------------- records


def leaf_record(key: bytes, vhash: bytes) -> bytes:
    return bytes((LEAF_TAG,)) + vhash + key


def inner_record(pos: int, kids: Mapping[int, bytes]) -> bytes:
    """The record (and hash preimage) of an inner node with ``kids`` (symbol -> hash)."""
    order = sorted(kids)
    bitmap = 0
    for v in order:
        bitmap |= 1 << v
    return (bytes((INNER_TAG,)) + pos.to_bytes(4, "big") + bitmap.to_bytes(3, "big")
            + b"".join(kids[v] for v in order))


def leaf_hash(key: bytes, vhash: bytes) -> bytes:
    return _h(leaf_record(key, vhash))


def node_hash(record: bytes) -> bytes:
    """The hash of a node: SHA-256 of its record."""
    return _h(record)


@dataclass(frozen=True, slots=True)
class Leaf:
    key: bytes
    vhash: bytes


@dataclass(frozen=True, slots=True)
class Inner:
    pos: int
    #: symbol -> child hash, in increasing symbol order
    kids: dict[int, bytes]


def decode_node(record: bytes) -> Leaf | Inner:
    """A record as a node; ProofError if it is not well formed."""
    if not isinstance(record, bytes) or not record:
        raise ProofError("a trie node record is a non-empty byte string")
    tag = record[0]
    if tag == LEAF_TAG:
        if not 33 <= len(record) <= 33 + MAX_KEY_SIZE:
            raise ProofError(f"a leaf record is 33..{33 + MAX_KEY_SIZE} bytes, got {len(record)}")
        return Leaf(record[33:], record[1:33])
    if tag == INNER_TAG:
        bitmap = int.from_bytes(record[5:8], "big") if len(record) >= INNER_HEAD else 0
        symbols = [v for v in range(RADIX) if bitmap >> v & 1]
        if bitmap >> RADIX or len(symbols) < 2 or len(record) != INNER_HEAD + 32 * len(symbols):
            raise ProofError("an inner record has a bitmap of 2..17 of the 17 symbols and one hash per symbol")
        kids = {v: record[INNER_HEAD + 32 * i: INNER_HEAD + 32 * i + 32] for i, v in enumerate(symbols)}
        return Inner(int.from_bytes(record[1:5], "big"), kids)
    raise ProofError(f"unknown trie node tag 0x{tag:02x}")


# ---------------------------------------------------------------- incremental update


class _LeafN:
    __slots__ = ("key", "vhash", "hash")

    def __init__(self, key: bytes, vhash: bytes, h: bytes | None) -> None:
        self.key, self.vhash, self.hash = key, vhash, h


class _InnerN:
    __slots__ = ("pos", "kids", "hash")

    def __init__(self, pos: int, kids: list[_LeafN | _InnerN | bytes | None], h: bytes | None) -> None:
        self.pos = pos
        #: one slot per symbol: a loaded child, the hash of a child not loaded (yet), or None
        self.kids = kids
        self.hash = h


_Node = _LeafN | _InnerN


@dataclass(frozen=True, slots=True)
class TrieDelta:
    """The result of an update: the new root and the store's changes.

    ``puts`` maps node hash -> record for every node of the new trie that the old one
    did not have; ``deletes`` are the hashes of the old trie's nodes that the new one no
    longer has. Applying both to a store that holds the old trie leaves exactly the new
    one (node hashes are unique within a trie).
    """

    root: bytes
    puts: dict[bytes, bytes]
    deletes: frozenset[bytes]
    #: leaf hash -> value, for every leaf record in ``puts`` (a store that keeps older
    #: versions of the trie keeps each leaf's value beside it: docs/protocol.md §23.8)
    values: dict[bytes, bytes] = field(default_factory=dict)
    #: the hashes in ``deletes`` that are leaves
    deleted_leaves: frozenset[bytes] = frozenset()


def _sym(key: bytes, i: int) -> int:
    j = i >> 1
    if j >= len(key):
        return 0
    return ((key[j] & 15) if i & 1 else (key[j] >> 4)) + 1


@functools.lru_cache(maxsize=4096)
def _symbols(bitmap: int) -> tuple[int, ...]:
    """The child symbols of an inner record's bitmap, in increasing order (memoised:
    loading a node was a loop over all 17 symbols)."""
    return tuple(v for v in range(RADIX) if bitmap >> v & 1)


class _Updater:
    """Mutable working copy of the top of a trie: nodes are loaded on first visit.

    A changed node is *dirty* (``hash`` None) until :meth:`finish` hashes it; the hash
    it had when loaded goes to ``removed``. Paths are lists of ``(inner node, symbol
    taken)`` from the root. (Written for few Python calls per write: the walk, the loads
    and the hashing are most of a block's state-commitment cost.)
    """

    def __init__(self, root: bytes, read: NodeReader) -> None:
        self.read = read
        self.root: _Node | bytes | None = None if root == EMPTY_ROOT else root
        self.removed: set[bytes] = set()
        self.removed_leaves: set[bytes] = set()
        #: tree key -> value of every put (the new leaves' values)
        self.values: dict[bytes, bytes] = {}

    def _load(self, ref: bytes) -> _Node:
        record = self.read(ref)
        if record is None:
            raise ProofError(f"the state trie has no node {ref.hex()} (damaged database or wrong root)")
        if _h(record) != ref:
            raise ProofError(f"trie node {ref.hex()} does not hash to its reference")
        tag = record[0]
        if tag == LEAF_TAG and len(record) >= 33:
            return _LeafN(record[33:], record[1:33], ref)
        if tag != INNER_TAG or len(record) < INNER_HEAD:
            decode_node(record)  # raises with the reason
        bitmap = int.from_bytes(record[5:8], "big")
        kids: list[_Node | bytes | None] = [None] * RADIX
        at = INNER_HEAD
        for v in _symbols(bitmap):
            kids[v] = record[at:at + 32]
            at += 32
        if at != len(record) or bitmap >> RADIX or at < INNER_HEAD + 64:
            decode_node(record)  # raises with the reason
        return _InnerN(int.from_bytes(record[1:5], "big"), kids, ref)

    def _dirty(self, path: Iterable[tuple[_InnerN, int]]) -> None:
        for node, _ in path:
            if node.hash is not None:
                self.removed.add(node.hash)
                node.hash = None

    def _set(self, path: list[tuple[_InnerN, int]], at: int, new: _Node | bytes | None) -> None:
        """Put ``new`` where the node below ``path[at-1]`` was (the root when ``at == 0``)
        and dirty the path above it."""
        if at == 0:
            self.root = new
        else:
            parent, v = path[at - 1]
            parent.kids[v] = new
        self._dirty(path[:at])

    def _walk(self, key: bytes) -> tuple[list[tuple[_InnerN, int]], _Node]:
        """Follow ``key``'s symbols from the root; stop at a leaf or at an inner node
        that has no child for the key's symbol (returned last, not in the path)."""
        node = self.root
        if isinstance(node, bytes):
            node = self.root = self._load(node)
        assert node is not None
        path: list[tuple[_InnerN, int]] = []
        n = len(key)
        while type(node) is _InnerN:
            pos = node.pos
            j = pos >> 1
            v = 0 if j >= n else ((key[j] & 15) if pos & 1 else (key[j] >> 4)) + 1
            k = node.kids[v]
            if k is None:
                break
            if type(k) is bytes:
                k = node.kids[v] = self._load(k)
            path.append((node, v))
            node = k
        return path, node  # type: ignore[return-value]

    def _any_leaf(self, node: _Node) -> _LeafN:
        """A leaf under ``node``: through children already in memory when there are
        (each load is a store read and a hash check), else the first child."""
        while type(node) is _InnerN:
            kids = node.kids
            first = -1
            for v, k in enumerate(kids):
                if k is None:
                    continue
                if type(k) is not bytes:
                    break
                if first < 0:
                    first = v
            else:  # no child in memory: load the first one
                k = kids[first] = self._load(kids[first])  # type: ignore[arg-type]
            node = k  # type: ignore[assignment]
        return node  # type: ignore[return-value]

    def put(self, key: bytes, vhash: bytes) -> None:
        if self.root is None:
            self.root = _LeafN(key, vhash, None)
            return
        path, stop = self._walk(key)
        # any leaf under ``stop`` agrees with all of them before stop's position
        some = stop if type(stop) is _LeafN else self._any_leaf(stop)
        c = crit_pos(key, some.key)
        if c is None:  # ``stop`` is the key's own leaf
            if some.vhash != vhash:
                if some.hash is not None:
                    self.removed.add(some.hash)
                    self.removed_leaves.add(some.hash)
                self._set(path, len(path), _LeafN(key, vhash, None))
            return
        new_leaf = _LeafN(key, vhash, None)
        if type(stop) is _InnerN and stop.pos == c:  # a new child of ``stop``
            stop.kids[_sym(key, c)] = new_leaf
            path.append((stop, 0))
            self._dirty(path)
            return
        # a new inner node at ``c`` above the first node of the path whose position is past c
        at = 0
        for node, _ in path:
            if node.pos > c:
                break
            at += 1
        below = path[at][0] if at < len(path) else stop
        kids: list[_Node | bytes | None] = [None] * RADIX
        kids[_sym(key, c)] = new_leaf
        kids[_sym(some.key, c)] = below
        self._set(path, at, _InnerN(c, kids, None))

    def delete(self, key: bytes) -> None:
        if self.root is None:
            return
        path, stop = self._walk(key)
        if type(stop) is not _LeafN or stop.key != key:
            return
        if stop.hash is not None:
            self.removed.add(stop.hash)
            self.removed_leaves.add(stop.hash)
        if not path:
            self.root = None
            return
        parent, v = path[-1]
        parent.kids[v] = None
        left = [k for k in parent.kids if k is not None]
        if len(left) > 1:
            self._dirty(path)
            return
        if parent.hash is not None:  # one child left: it takes the parent's place
            self.removed.add(parent.hash)
        self._set(path, len(path) - 1, left[0])

    def finish(self) -> TrieDelta:
        if self.root is None:
            return TrieDelta(EMPTY_ROOT, {}, frozenset(self.removed), {}, frozenset(self.removed_leaves))
        added: dict[bytes, bytes] = {}
        root_hash = self._hash(self.root, added)
        puts = {h: r for h, r in added.items() if h not in self.removed}
        # a dirty leaf exists only because a put wrote it, so its key has a value here
        vals = self.values
        values = {h: vals[r[33:]] for h, r in puts.items() if r[0] == LEAF_TAG}
        deletes = frozenset(self.removed - added.keys())
        return TrieDelta(root_hash, puts, deletes, values, frozenset(self.removed_leaves & deletes))

    @staticmethod
    def _hash(top: _Node | bytes, added: dict[bytes, bytes]) -> bytes:
        """Hash every dirty node under ``top`` (post-order, no recursion) into ``added``."""
        if type(top) is bytes:
            return top
        if top.hash is not None:  # type: ignore[union-attr]
            return top.hash  # type: ignore[union-attr]
        sha = hashlib.sha256
        if type(top) is _LeafN:
            record = b"\x00" + top.vhash + top.key
            top.hash = h = sha(record).digest()
            added[h] = record
            return h
        # (inner node, whether its dirty children are hashed): a node is visited twice,
        # first to hash its dirty leaves at once and queue its dirty inner children, then
        # (after them) to hash itself
        stack: list[tuple[_InnerN, bool]] = [(top, False)]  # type: ignore[list-item]
        while stack:
            node, ready = stack.pop()
            kids = node.kids
            if ready:
                bitmap = 0
                parts = [b""]
                for v, k in enumerate(kids):
                    if k is not None:
                        bitmap |= 1 << v
                        parts.append(k if type(k) is bytes else k.hash)  # type: ignore[arg-type,union-attr]
                parts[0] = b"\x01" + node.pos.to_bytes(4, "big") + bitmap.to_bytes(3, "big")
                record = b"".join(parts)
                node.hash = h = sha(record).digest()
                added[h] = record
                continue
            stack.append((node, True))
            for k in kids:
                if k is None or type(k) is bytes or k.hash is not None:  # type: ignore[union-attr]
                    continue
                if type(k) is _LeafN:
                    record = b"\x00" + k.vhash + k.key
                    k.hash = h = sha(record).digest()
                    added[h] = record
                else:
                    stack.append((k, False))  # type: ignore[arg-type]
        return top.hash  # type: ignore[union-attr,return-value]


def update(root: bytes, read: NodeReader, changes: Iterable[tuple[bytes, bytes | None]]) -> TrieDelta:
    """Apply ``changes`` (tree key -> new value, None = delete) to the trie at ``root``.

    Only the nodes on the changed keys' paths are read (through ``read``) and rehashed,
    each once per call however many changes share it. Raises ProofError if a node is
    missing or does not match its hash (a damaged store, or a ``root`` it does not hold).
    """
    up = _Updater(root, read)
    put, delete, values, sha = up.put, up.delete, up.values, hashlib.sha256
    for key, value in changes:
        if len(key) > MAX_KEY_SIZE:
            raise ProofError(f"a state key is at most {MAX_KEY_SIZE} bytes with its module name")
        if value is None:
            delete(key)
            values.pop(key, None)
        else:
            put(key, sha(value).digest())  # value_hash(value)
            values[key] = value
    return up.finish()


def build(items: Mapping[bytes, bytes]) -> TrieDelta:
    """The trie of ``items`` (tree key -> value) from nothing: every record in ``puts``."""
    return update(EMPTY_ROOT, lambda h: None, sorted(items.items()))


def compute_root(items: Mapping[bytes, bytes]) -> bytes:
    """The root of ``items`` straight from the definition (reference, for tests and specs).

    Over the sorted keys: the first position where a sorted run disagrees is the crit
    position of its first and last key, and the run splits into consecutive groups by
    the symbol at that position.
    """
    keys = sorted(items)

    def root(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            k = keys[lo]
            return leaf_hash(k, _h(items[k]))
        p = crit_pos(keys[lo], keys[hi - 1])
        assert p is not None
        kids: dict[int, bytes] = {}
        start = lo
        for i in range(lo + 1, hi + 1):
            if i == hi or sym(keys[i], p) != sym(keys[start], p):
                kids[sym(keys[start], p)] = root(start, i)
                start = i
        return _h(inner_record(p, kids))

    return EMPTY_ROOT if not keys else root(0, len(keys))


# ------------------------------------------------------------------------- reading


class TrieReader:
    """Point reads and prefix scans on the trie at ``root``, through a node reader.

    Every node is fetched by hash and checked against it, so the answers are those the
    root commits to, whoever supplied the records. ``seen`` (optional) is called with
    ``(hash, record)`` for every node visited, the first time it is visited: the node's
    answer to a query with a proof is exactly the records seen while running it.
    """

    __slots__ = ("root", "read", "seen", "_cache")

    def __init__(self, root: bytes, read: NodeReader,
                 seen: Callable[[bytes, bytes], None] | None = None) -> None:
        self.root = root
        self.read = read
        self.seen = seen
        self._cache: dict[bytes, Leaf | Inner] = {}

    def node(self, ref: bytes) -> Leaf | Inner:
        found = self._cache.get(ref)
        if found is not None:
            return found
        record = self.read(ref)
        if record is None:
            raise ProofError(f"missing trie node {ref.hex()}")
        node = decode_node(record)
        if node_hash(record) != ref:
            raise ProofError(f"trie node {ref.hex()} does not hash to its reference")
        self._cache[ref] = node
        if self.seen is not None:
            self.seen(ref, record)
        return node

    def get(self, key: bytes) -> bytes | None:
        """The value hash under ``key``, None if the trie has no such key.

        Follows the key's symbols; the key is absent if a node has no child for its
        symbol, or if the leaf reached holds another key.
        """
        if self.root == EMPTY_ROOT:
            return None
        node = self.node(self.root)
        while isinstance(node, Inner):
            ref = node.kids.get(sym(key, node.pos))
            if ref is None:
                return None
            node = self.node(ref)
        return node.vhash if node.key == key else None

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value hash)`` of every key starting with ``prefix``, in key order (lazy).

        Follows the prefix's symbols while the nodes' positions lie inside it (below
        ``2·len(prefix)``); below that node every key agrees on all of the prefix's
        symbols, so either all of them start with ``prefix`` or none does, and its
        leftmost leaf says which. Then an in-order walk, one node at a time, so a caller
        that stops early reads (and proves) only what it consumed.
        """
        if self.root == EMPTY_ROOT:
            return
        limit = 2 * len(prefix)
        ref = self.root
        node = self.node(ref)
        while isinstance(node, Inner) and node.pos < limit:
            nxt = node.kids.get(sym(prefix, node.pos))
            if nxt is None:
                return
            ref = nxt
            node = self.node(ref)
        first = node
        while isinstance(first, Inner):
            first = self.node(next(iter(first.kids.values())))
        if not first.key.startswith(prefix):
            return
        stack = [ref]
        while stack:
            n = self.node(stack.pop())
            if isinstance(n, Leaf):
                yield n.key, n.vhash
            else:
                stack.extend(reversed(n.kids.values()))
