"""State access for the pure state machine.

State is a key-value space partitioned by module: ``(module, key) -> value``. The
state machine reads committed state through a :class:`StateReader` and writes into a
:class:`StateOverlay` per block over committed state; each tx writes into the block's
under an undo log (:meth:`StateOverlay.begin`), and a failed tx's writes are undone
(:meth:`StateOverlay.rollback`). A finished block hands its write-set (value ``None`` =
delete) to the store, which commits it atomically with the block.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from . import trie

if TYPE_CHECKING:
    from .trie import TrieDelta

StateKey = tuple[str, bytes]


class StateReader(Protocol):
    def get(self, module: str, key: bytes) -> bytes | None: ...

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs of ``module`` whose key starts with ``prefix``, key-sorted."""
        ...


class TrieSource(Protocol):
    def trie_node(self, node_hash: bytes) -> bytes | None:
        """The record of the state trie's node with this hash (None if there is none)."""
        ...


class DictState:
    """A committed state held in a dict (tests, simulations, genesis), with its state trie.

    The trie's records are built from ``data`` the first time they are asked for (so a
    copy made with ``DictState(other.data)`` works) and kept up to date by :meth:`apply`.
    """

    def __init__(self, data: dict[StateKey, bytes] | None = None) -> None:
        self.data: dict[StateKey, bytes] = dict(data or {})
        self._nodes: dict[bytes, bytes] | None = None
        self._root = trie.EMPTY_ROOT

    def _trie(self) -> dict[bytes, bytes]:
        if self._nodes is None:
            built = trie.build({trie.tree_key(m, k): v for (m, k), v in self.data.items()})
            self._nodes, self._root = dict(built.puts), built.root
        return self._nodes

    @property
    def root(self) -> bytes:
        """The root of this state's trie (its ``app_hash``)."""
        self._trie()
        return self._root

    def trie_node(self, node_hash: bytes) -> bytes | None:
        return self._trie().get(node_hash)

    def get(self, module: str, key: bytes) -> bytes | None:
        return self.data.get((module, key))

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        items = sorted((k, v) for (m, k), v in self.data.items() if m == module and k.startswith(prefix))
        yield from items

    def apply(self, writes: dict[StateKey, bytes | None], trie_delta: TrieDelta | None = None) -> None:
        """Apply a write-set; ``trie_delta`` is its trie update (from
        :class:`~medchaind.app.Execution`), computed here when not given."""
        if self._nodes is not None:
            if trie_delta is None:
                changes = sorted((trie.tree_key(m, k), v) for (m, k), v in writes.items())
                trie_delta = trie.update(self._root, self._nodes.get, changes)
            for h in trie_delta.deletes:
                self._nodes.pop(h, None)
            self._nodes.update(trie_delta.puts)
            self._root = trie_delta.root
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v


#: an undo-log entry's "the key had no write before" (distinct from None, a delete)
_ABSENT = object()


class StateOverlay:
    """Buffered writes over a parent reader; reads see the buffer first.

    ``writes`` is the write-set (value ``None`` = delete). Beside it, each module's
    written keys are kept sorted (:attr:`_keys`), so a prefix scan costs
    O(log W + matches) instead of a pass over every write of the block: a block of
    thousands of txs that each scan a few keys (records, audit entries) would otherwise
    be quadratic, and too slow to validate within a consensus round.

    A tx runs directly on the block's overlay between :meth:`begin` and :meth:`commit`;
    :meth:`rollback` (its handler failed) undoes every write since :meth:`begin` from an
    undo log. That is the view and the write-set (same keys, values and insertion order)
    of a tx layer stacked on the block's and merged into it on success
    (:meth:`merge_into`), without a second layer to read through and copy from.
    """

    __slots__ = ("parent", "writes", "_keys", "_undo")

    def __init__(self, parent: StateReader) -> None:
        self.parent = parent
        self.writes: dict[StateKey, bytes | None] = {}
        self._keys: dict[str, list[bytes]] = {}
        #: while a tx is open: (key, its write before the tx's first write, or _ABSENT)
        self._undo: list[tuple[StateKey, object]] | None = None

    def get(self, module: str, key: bytes) -> bytes | None:
        k = (module, key)
        if k in self.writes:
            return self.writes[k]
        return self.parent.get(module, key)

    def _put(self, module: str, key: bytes, value: bytes | None) -> None:
        k = (module, key)
        writes = self.writes
        undo = self._undo
        if k not in writes:
            bisect.insort(self._keys.setdefault(module, []), key)
            if undo is not None:
                undo.append((k, _ABSENT))
        elif undo is not None:
            undo.append((k, writes[k]))
        writes[k] = value

    def begin(self) -> None:
        """Open a tx: from now on each write is undoable by :meth:`rollback`."""
        if self._undo is not None:
            raise RuntimeError("a tx is already open on this overlay")
        self._undo = []

    def commit(self) -> None:
        """Close the open tx, keeping its writes."""
        self._undo = None

    def rollback(self) -> None:
        """Close the open tx, undoing its writes (latest first)."""
        undo = self._undo
        if undo is None:
            raise RuntimeError("no tx is open on this overlay")
        self._undo = None
        writes = self.writes
        for k, old in reversed(undo):
            if old is _ABSENT:
                del writes[k]
                keys = self._keys[k[0]]
                del keys[bisect.bisect_left(keys, k[1])]
            else:
                writes[k] = old  # type: ignore[assignment]

    def set(self, module: str, key: bytes, value: bytes) -> None:
        self._put(module, key, value)

    def delete(self, module: str, key: bytes) -> None:
        self._put(module, key, None)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        keys = self._keys.get(module, ())
        lo = bisect.bisect_left(keys, prefix)
        upper = _prefix_upper_bound(prefix)
        hi = len(keys) if upper is None else bisect.bisect_left(keys, upper, lo)
        if lo >= hi:
            yield from self.parent.iterate(module, prefix)
            return
        yield from merge_writes(self.parent.iterate(module, prefix),
                                {k: self.writes[(module, k)] for k in keys[lo:hi]})

    def merge_into(self, other: StateOverlay) -> None:
        for (module, key), value in self.writes.items():
            other._put(module, key, value)


def merge_writes(items: Iterable[tuple[bytes, bytes]], writes: dict[bytes, bytes | None]
                 ) -> Iterator[tuple[bytes, bytes]]:
    """Key-sorted ``items`` (a state range) with ``writes`` over them (None: deleted)."""
    merged: dict[bytes, bytes | None] = dict(items)
    merged.update(writes)
    for k in sorted(merged):
        v = merged[k]
        if v is not None:
            yield k, v


def _prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)
