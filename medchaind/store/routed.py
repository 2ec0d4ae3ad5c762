"""Two stores seen as one: the chain's blocks in a store of their own.

Theory of operation
-------------------
LevelDB keeps its keys sorted by merging tables level into level, and every byte it holds
is rewritten each time its table is merged into the next level. A block's batch spans the
whole key space (the block, its commit, receipts, the tx index, state, state-trie records
keyed by hash), so every table flushed from memory overlaps every table of the level below,
and each merge rewrites them all. Blocks are 45% of a node's bytes (1 KiB payloads,
signatures) and are written once and never changed, yet under sustained load LevelDB
rewrote each byte of the database 9-15 times; its compaction thread was ~30% of a node's
CPU in the eighth minute of the 800 tx/s run (docs/benchmarks.md, issue 14, sessions 6-7).

Keys that only ever grow (``v1/blk/<height>``: heights are big-endian) cost LevelDB
almost nothing *in a database of their own*: each flushed table lies above every key
already stored, so LevelDB moves it down a level without rewriting it (its "trivial
move"). Only blocks go there: commits (small) next to them would make each table span
from its first block to its last commit and overlap every older table, and LevelDB
rewrote that store 1.8 times over in a first version that held both. This is the
reasoning behind Bitcoin Core's block files next to its LevelDB indexes and geth's
freezer next to its key-value store, with less machinery: the second store is a LevelDB
too (``chaindata/blocks/``, :data:`BLOCKS_DIR`), so snapshots, iteration, corruption
checks and backups work as before.

:class:`RoutedKV` is a :class:`~medchaind.store.kv.KVStore` over a ``main`` and a
``side`` store, with the keys under ``prefixes`` in ``side``. Everything above it
(:class:`~medchaind.store.chain_store.ChainStore`, backups, exports) sees one store. It
keeps the KVStore contract except where two stores cannot be one, and says so:

* **Writes.** One :meth:`RoutedKV.write` becomes up to three writes, each atomic: the
  side's puts, then the main store's batch, then the side's deletes (the chain never
  deletes a block, so this one is empty in practice). A crash between them can leave
  side keys that the main store does not reference yet (the block of the height after
  the head), never a main key that refers to a missing side key, and never a head without
  its block. :meth:`ChainStore.__init__` removes such an interrupted commit's block when
  it opens the store. With ``sync=True`` each part is synced before
  the next starts, so this order holds across a power loss as well.
* **Readers** in other threads can see a new block a moment before the head moves to it
  (never the reverse). A scan over both stores (a prefix that covers a routed prefix, as
  backups use) takes the main store's snapshot first, so every block the copied head
  refers to is in the side's later snapshot.
* Everything else (ordering, snapshots of single-store scans, type checks, ``close``)
  is the contract's: ``tests/store/test_kv_contract.py`` runs against a RoutedKV too.

**Moving an older datadir** (:meth:`RoutedKV.move_routed_keys`): a datadir written before
this layout has its blocks in the main store. :func:`~medchaind.store.open_kv` moves them
to the side store when it opens the database (side first, synced, then deleted from the
main store); cut off, the move starts again at the next open and finishes (copying a key
twice writes the same bytes).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .kv import KVStore, Puts, prepare_write

log = logging.getLogger(__name__)

#: the side store's directory inside ``chaindata/``
BLOCKS_DIR = "blocks"

#: bytes of keys and values moved per batch when an older datadir is converted
MOVE_BATCH_BYTES = 4 << 20


def _first_key(item: tuple[bytes, bytes]) -> bytes:
    return item[0]


class RoutedKV(KVStore):
    """``main`` plus ``side``, which holds the keys under ``prefixes`` (see the module doc)."""

    __slots__ = ("_main", "_prefixes", "_side")

    def __init__(self, main: KVStore, side: KVStore, prefixes: tuple[bytes, ...]) -> None:
        if not prefixes or any(not p for p in prefixes):
            raise ValueError("RoutedKV needs non-empty prefixes")
        self._main = main
        self._side = side
        self._prefixes = prefixes

    @property
    def main(self) -> KVStore:
        return self._main

    @property
    def side(self) -> KVStore:
        return self._side

    @property
    def path(self) -> Path | None:
        """The main store's directory (LevelDB), for messages; None for memory stores."""
        path: Any = getattr(self._main, "path", None)
        return path if isinstance(path, Path) else None

    @property
    def closed(self) -> bool:
        return self._main.closed or self._side.closed

    def close(self) -> None:
        try:
            self._main.close()
        finally:
            self._side.close()

    def _routed(self, key: bytes) -> bool:
        return key.startswith(self._prefixes)

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        return (self._side if self._routed(key) else self._main).get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        if self._routed(prefix):
            return self._side.iterate(prefix, start=start, reverse=reverse)
        if not any(p.startswith(prefix) for p in self._prefixes):
            return self._main.iterate(prefix, start=start, reverse=reverse)
        # Both hold keys under this prefix. The main store's snapshot first: see "Readers".
        main = self._main.iterate(prefix, start=start, reverse=reverse)
        side = self._side.iterate(prefix, start=start, reverse=reverse)
        return heapq.merge(main, side, key=_first_key, reverse=reverse)

    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        self._check_open()
        put_list, delete_list = prepare_write(puts, deletes)  # checks everything first
        side_puts = [(k, v) for k, v in put_list if self._routed(k)]
        main_puts = [(k, v) for k, v in put_list if not self._routed(k)]
        put_keys = {k for k, _ in side_puts}
        # a key both deleted and put ends up present (the contract), so it is not deleted
        side_deletes = [k for k in delete_list if self._routed(k) and k not in put_keys]
        main_deletes = [k for k in delete_list if not self._routed(k)]
        if side_puts:
            self._side.write(side_puts, sync=sync)
        if main_puts or main_deletes or not (side_puts or side_deletes):
            self._main.write(main_puts, main_deletes, sync=sync)
        if side_deletes:
            self._side.write((), side_deletes, sync=sync)

    def move_routed_keys(self) -> int:
        """Move keys under the routed prefixes from the main store to the side store (an
        older datadir's blocks); returns how many moved. See the module doc."""
        self._check_open()
        moved: list[bytes] = []
        batch: list[tuple[bytes, bytes]] = []
        size = 0
        for prefix in self._prefixes:
            for key, value in self._main.iterate(prefix):
                batch.append((key, value))
                moved.append(key)
                size += len(key) + len(value)
                if size >= MOVE_BATCH_BYTES:
                    self._side.write(batch, sync=False)
                    batch, size = [], 0
        if not moved:
            return 0
        # synced: LevelDB's log is sequential, so this makes the unsynced batches durable too
        self._side.write(batch, sync=True)
        for at in range(0, len(moved), 50_000):
            self._main.write((), moved[at:at + 50_000], sync=True)
        log.info("moved %d block records into their own store", len(moved))
        return len(moved)

    def __repr__(self) -> str:
        return f"RoutedKV({self._main!r}, {self._side!r})"
