"""Backup child for ``test_torn_backup.py``: dies (``os._exit(137)``, like SIGKILL) mid-copy.

Usage: ``python torn_backup_child.py <source datadir> <dest> <keys before dying>``.
Runs the node's own online backup over the (stopped) source datadir's database; after
the given number of keys of the full scan it exits at once: no ``finally``, no cleanup,
buffered LevelDB writes left as the OS has them, exactly as a killed node leaves them.
:class:`DyingKV` is also used in-process by the test, with an exception for the kill.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import medchaind.node.backup as backup_mod
from medchaind.node.config import Config
from medchaind.store import KVStore, LevelDBKV
from medchaind.store.kv import Puts


class DyingKV(KVStore):
    """Delegates to ``inner``; its full scan calls ``die()`` after ``after`` keys."""

    def __init__(self, inner: KVStore, after: int, die: Callable[[], None]) -> None:
        self.inner = inner
        self.after = after
        self.die = die

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        for n, item in enumerate(self.inner.iterate(prefix, start=start, reverse=reverse)):
            if n == self.after:
                self.die()
            yield item

    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        raise AssertionError("a backup never writes to the node's store")

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


def main() -> None:
    source, dest, after = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    backup_mod.BATCH_BYTES = 2048  # many batches, so some are written before the end
    kv = DyingKV(LevelDBKV.open(source / "chaindata"), after, lambda: os._exit(137))
    backup_mod.write_backup(kv, Config(datadir=source), dest)
    print("backup finished: the test expected it to die", flush=True)


if __name__ == "__main__":
    main()
