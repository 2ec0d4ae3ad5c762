"""The key-value seam every storage backend implements.

Theory of operation
-------------------
:class:`KVStore` is an ordered map from ``bytes`` to ``bytes`` with three operations:
point reads, ordered prefix scans and *atomic* multi-key writes. It is deliberately
the smallest interface LevelDB and a Python dict can both honour exactly, so the memory
backend used by simulations cannot drift from the disk backend used by nodes: both are
checked by the one contract suite in ``tests/store/test_kv_contract.py``.

Invariants every implementation keeps:

* Keys and values are ``bytes`` (not ``bytearray``/``memoryview``/``str``). A write
  that contains anything else raises :class:`TypeError` and changes nothing.
* Ordering is plain bytewise (lexicographic, unsigned) order of keys, so big-endian
  integers in keys iterate in numeric order.
* :meth:`KVStore.write` is all-or-nothing. It first consumes and checks every input
  (if an input iterable raises, nothing is written), then applies the ``deletes`` and
  afterwards the ``puts``: a key in both ends up *present* with the put value. Among
  duplicate puts of one key the last wins.
* :meth:`KVStore.iterate` reads a consistent snapshot taken when it is *called*
  (not when the first item is pulled): writes made while an iterator is alive are not
  seen by it.
* A store may be shared between threads (the node commits from a worker thread while
  its trio thread reads): a write is atomic to concurrent readers too, never seen
  half-applied by a ``get`` or a scan.
* After :meth:`KVStore.close`, every operation, including pulling more items from an
  iterator created earlier, raises :class:`~medchaind.errors.StoreError`. ``close`` is
  idempotent.

Only the storage layer (``medchaind.store``) may depend on this seam directly; every
other component talks to :class:`~medchaind.store.chain_store.ChainStore`, which builds
its keys through :mod:`medchaind.store.schema`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Self

from ..errors import StoreError

Puts = Iterable[tuple[bytes, bytes]] | Mapping[bytes, bytes]


class KVStore(ABC):
    """An ordered, atomically-written byte map (see the module docstring for the contract)."""

    __slots__ = ()

    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None when absent."""

    @abstractmethod
    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for every key that starts with ``prefix``, in key order.

        ``reverse=True`` yields in descending order. ``start`` is the first key to
        include *in the iteration direction*: with ``reverse=False`` only keys
        ``>= start`` are yielded, with ``reverse=True`` only keys ``<= start``. ``start``
        need not itself start with ``prefix`` (it is a bound, not a key). The scan sees
        the store as it was when ``iterate`` was called.
        """

    @abstractmethod
    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        """Atomically delete ``deletes`` and then store ``puts``.

        Deletes are applied before puts, so a key in both is present afterwards with its
        put value. ``sync=True`` returns only once the write is durable on disk
        (backends without a disk ignore it). Raises TypeError, writing nothing, if any
        key or value is not ``bytes``; raises StoreError if the store is closed or the
        backend fails, writing nothing.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the backend. Idempotent; later operations raise StoreError."""

    @property
    @abstractmethod
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""

    # -- conveniences built on the abstract operations ---------------------------------

    def put(self, key: bytes, value: bytes, *, sync: bool = True) -> None:
        """Store one key (a one-entry :meth:`write`)."""
        self.write(((key, value),), sync=sync)

    def delete(self, key: bytes, *, sync: bool = True) -> None:
        """Remove one key if present (a one-entry :meth:`write`)."""
        self.write((), (key,), sync=sync)

    def __enter__(self) -> Self:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError(f"{type(self).__name__}: the store is closed")


def prepare_write(
    puts: Puts, deletes: Iterable[bytes]
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """Consume and type-check a write's inputs before anything is applied.

    Returns the puts and deletes as lists. Raises TypeError on the first key or value
    that is not ``bytes``. Backends call this first so that a bad input, or an input
    iterable that raises, leaves the store untouched.
    """
    put_list = list(puts.items()) if isinstance(puts, Mapping) else list(puts)
    delete_list = list(deletes)
    for item in put_list:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"puts must be (key, value) pairs, got {type(item).__name__}")
        key, value = item
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, got {type(key).__name__}")
        if type(value) is not bytes:
            raise TypeError(f"values must be bytes, got {type(value).__name__} for key {key!r}")
    for key in delete_list:
        if type(key) is not bytes:
            raise TypeError(f"keys must be bytes, got {type(key).__name__}")
    return put_list, delete_list


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix``.

    None when there is no such key (``prefix`` is empty or all ``0xff``): the prefix
    range then extends to the end of the key space.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))
