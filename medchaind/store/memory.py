"""In-memory :class:`~medchaind.store.kv.KVStore` for simulations and tests.

A dict holds the values and a sorted list of its keys (kept sorted on every write with
:mod:`bisect`) gives ordered prefix scans in O(log n + k). Writes check every input
before touching either structure, so a rejected write changes nothing; after the checks
nothing in the apply loop can raise, which is what makes the write atomic.

Like a LevelDB handle it may be shared by threads (the node commits blocks from a
worker thread while the trio thread reads): one lock makes every write atomic to
readers, and a scan copies its range under that lock (its snapshot).
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator

from ..errors import StoreError
from .kv import KVStore, Puts, prefix_upper_bound, prepare_write


class MemoryKV(KVStore):
    """A dict plus a sorted key list; the reference model of the KVStore contract."""

    __slots__ = ("_data", "_keys", "_closed", "_lock")

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        #: Invariant (whenever ``_lock`` is free): ``_keys == sorted(_data)``.
        self._keys: list[bytes] = []
        self._closed = False
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        with self._lock:
            return self._data.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        upper = prefix_upper_bound(prefix)
        with self._lock:
            keys = self._keys
            lo = bisect_left(keys, prefix)
            hi = len(keys) if upper is None else bisect_left(keys, upper, lo)
            if start is not None:
                if reverse:
                    hi = min(hi, bisect_right(keys, start))
                else:
                    lo = max(lo, bisect_left(keys, start))
            # Snapshot now (the contract: the scan sees the store as of this call).
            data = self._data
            items = [(k, data[k]) for k in keys[lo:hi]] if lo < hi else []
        if reverse:
            items.reverse()
        return self._yield_while_open(items)

    def _yield_while_open(self, items: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
        for item in items:
            if self._closed:
                raise StoreError("MemoryKV: the store was closed during iteration")
            yield item

    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        self._check_open()
        put_list, delete_list = prepare_write(puts, deletes)
        with self._lock:
            data, keys = self._data, self._keys
            for key in delete_list:
                if key in data:
                    del data[key]
                    del keys[bisect_left(keys, key)]
            for key, value in put_list:
                if key not in data:
                    insort(keys, key)
                data[key] = value

    def __len__(self) -> int:
        return len(self._data)
