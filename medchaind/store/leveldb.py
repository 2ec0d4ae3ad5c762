"""LevelDB :class:`~medchaind.store.kv.KVStore` (plyvel). The only module that imports plyvel.

LevelDB already gives us everything the contract asks for: keys sorted bytewise,
iterators over an implicit snapshot taken when they are created, and write batches
that are applied atomically (one log record; recovery drops a torn one). What this
module adds is the mapping from plyvel's errors to ours, so a user sees
"the database is in use by another process" rather than ``plyvel._plyvel.IOError``:

* the LOCK file held by another process (or by another handle in this process)
  -> :class:`~medchaind.errors.DatadirLockedError`;
* ``CorruptionError`` -> :class:`~medchaind.errors.StoreError` saying the database is
  damaged and what to do;
* anything else plyvel raises -> :class:`~medchaind.errors.StoreError` with plyvel's text.

LevelDB handles are thread-safe, but medchaind still gives each store one owner.

Options (:data:`BLOOM_FILTER_BITS`): every table LevelDB writes carries a bloom filter
of 10 bits per key, so a point read of an absent key (the already-committed check of
every new tx, the nonce of a new sender, a new identity) is answered from the filter
(~1% false positives) instead of by reading a data block. Filters are per table file:
a database written without them stays readable (its old tables are searched as before
until compaction rewrites them), and one written with them opens without the option
(the filter is then ignored). It changes no stored byte of medchaind's (keys and
values are the same), only LevelDB's own table format. Block cache and open-files
limit stay LevelDB's defaults (8 MiB, 1,000 tables).

Compression (:data:`COMPRESSION`): off. LevelDB compresses each table block with
Snappy by default, which pays where values are text; medchaind's bytes are mostly
signatures, hashes, public keys, ciphertexts and client payloads (random to Snappy),
and LevelDB rewrites every byte several times as it compacts level into level (a
4-authority run of 150,000 1 KiB txs: 313 MiB flushed, 2.9 GiB rewritten by compaction
per node). With Snappy on, its compression was ~31% of a node's CPU under sustained load
(``perf``: ``snappy::internal::CompressFragment``, in LevelDB's compaction thread) for
~19% less disk; off, the same run committed 794 instead of 725 tx/s with p99 3.6
instead of 14.9 s (docs/benchmarks.md, issue 14 session 6). Like the filter, it is per
block of each table: tables written either way stay readable with the other setting,
and compaction rewrites them uncompressed.

Write buffer (:data:`WRITE_BUFFER_BYTES`): 16 MiB instead of LevelDB's 4 MiB. Writes
collect in a memtable of this size before they are flushed as a level-0 table, and four
level-0 tables trigger a compaction that merges them with every overlapping level-1
table. A block's batch touches the whole key space (blocks, receipts, state, trie
records), so every level-0 table overlaps all of level 1, and small tables meant level 1
was rewritten every few blocks: with 16 MiB the same run rewrote 3.4 instead of 6.5 GiB
per node and committed 796 tx/s with p99 2.2 s (docs/benchmarks.md, issue 14 session 6).
The price is memory: up to two memtables (one being flushed) of this size per node.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import plyvel  # type: ignore[import-untyped]

from ..errors import DatadirLockedError, StoreError
from .kv import KVStore, Puts, prefix_upper_bound, prepare_write

#: bits per key of the bloom filter in each table LevelDB writes (LevelDB's recommended 10)
BLOOM_FILTER_BITS = 10
#: LevelDB's block compression: None (off) or "snappy" (see the module docstring)
COMPRESSION: str | None = None
#: LevelDB's memtable size in bytes (see the module docstring)
WRITE_BUFFER_BYTES = 16 << 20


def _plyvel_message(exc: BaseException) -> str:
    """plyvel errors carry LevelDB's status as bytes; make it readable text."""
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):
        return arg.decode("utf-8", errors="replace")
    return str(arg)


def _is_lock_error(exc: BaseException) -> bool:
    # LevelDB's status text for the LOCK file: cross-process it is
    # "IO error: lock <path>/LOCK: Resource temporarily unavailable", in-process
    # "IO error: lock <path>/LOCK: already held by process".
    return isinstance(exc, plyvel.IOError) and "/LOCK" in _plyvel_message(exc)


class LevelDBKV(KVStore):
    """A LevelDB database directory behind the KVStore contract."""

    __slots__ = ("_db", "_path")

    def __init__(self, db: Any, path: Path) -> None:
        """Wrap an open ``plyvel.DB``; use :meth:`open` rather than calling this."""
        self._db = db
        self._path = path

    @classmethod
    def open(cls, path: Path) -> LevelDBKV:
        """Open (creating if needed) the LevelDB database in directory ``path``.

        Raises DatadirLockedError if another process, or another open handle in this
        process, holds the database; StoreError if the directory cannot be created or
        the database is corrupt or unreadable.
        """
        try:
            # owner-only when we create it (LevelDB then creates its files inside it)
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot create the database directory ({exc.strerror or exc})"
            ) from None
        try:
            db = plyvel.DB(str(path), create_if_missing=True, bloom_filter_bits=BLOOM_FILTER_BITS,
                            compression=COMPRESSION, write_buffer_size=WRITE_BUFFER_BYTES)
        except plyvel.Error as exc:
            if _is_lock_error(exc):
                raise DatadirLockedError(
                    f"{path}: the database is in use by another process "
                    "(is another medchaind running with this datadir?)"
                ) from None
            if isinstance(exc, plyvel.CorruptionError):
                raise StoreError(
                    f"{path}: the database is corrupt ({_plyvel_message(exc)}); "
                    "restore the datadir from a backup or resync it from peers"
                ) from None
            raise StoreError(f"{path}: cannot open the database ({_plyvel_message(exc)})") from None
        return cls(db, path)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    def _error(self, op: str, exc: BaseException) -> StoreError:
        if isinstance(exc, RuntimeError):  # plyvel: "Database or iterator is closed"
            return StoreError(f"{self._path}: the store is closed")
        if isinstance(exc, plyvel.CorruptionError):
            return StoreError(
                f"{self._path}: {op} failed, the database is corrupt ({_plyvel_message(exc)}); "
                "restore the datadir from a backup or resync it from peers"
            )
        return StoreError(f"{self._path}: {op} failed ({_plyvel_message(exc)})")

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        try:
            value: bytes | None = self._db.get(key)
        except (plyvel.Error, RuntimeError) as exc:
            raise self._error("read", exc) from None
        return value

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        lower: bytes = prefix  # inclusive
        upper = prefix_upper_bound(prefix)  # exclusive
        if start is not None:
            if reverse:
                if start < prefix:
                    return iter(())
                # "<= start" as the exclusive bound "< start + 0x00", the next key
                # after start.
                after_start = start + b"\x00"
                if upper is None or after_start < upper:
                    upper = after_start
            else:
                if upper is not None and start >= upper:
                    return iter(())
                lower = max(lower, start)
        try:
            # Created here, not lazily: LevelDB snapshots the store at iterator creation.
            if reverse:
                # plyvel 1.5 drops the whole result of a reverse scan whose highest key
                # in range equals ``start`` (its real_prev() compares ``start >= key``
                # even with include_start=True), so give it no lower bound and stop at
                # ``lower`` ourselves.
                it = self._db.iterator(stop=upper, include_stop=False, reverse=True)
                return self._drain(it, floor=lower)
            # (b"" as a lower bound means "from the first key"; say so with None.)
            it = self._db.iterator(start=lower or None, stop=upper, include_stop=False)
        except (plyvel.Error, RuntimeError) as exc:
            raise self._error("scan", exc) from None
        return self._drain(it, floor=None)

    def _drain(self, it: Any, floor: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """Yield from a plyvel iterator, translating its errors; stop below ``floor``."""
        try:
            while True:
                try:
                    item: tuple[bytes, bytes] = next(it)
                except StopIteration:
                    return
                except (plyvel.Error, RuntimeError) as exc:
                    raise self._error("scan", exc) from None
                if floor is not None and item[0] < floor:
                    return
                yield item
        finally:
            if not self._db.closed:
                it.close()

    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        self._check_open()
        put_list, delete_list = prepare_write(puts, deletes)
        try:
            # transaction=True: if anything raises inside the block the batch is dropped.
            with self._db.write_batch(transaction=True, sync=sync) as batch:
                for key in delete_list:
                    batch.delete(key)
                for key, value in put_list:
                    batch.put(key, value)
        except (plyvel.Error, RuntimeError) as exc:
            raise self._error("write", exc) from None

    def __repr__(self) -> str:
        return f"LevelDBKV({str(self._path)!r}{', closed' if self.closed else ''})"
