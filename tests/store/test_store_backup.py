"""node/backup.py below the RPC: a failed copy leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medchaind.errors import StoreError
from medchaind.node.backup import BackupError, write_backup
from medchaind.node.config import Config
from medchaind.store.memory import MemoryKV


class FailingKV(MemoryKV):
    """A store whose full scan breaks half-way (a disk error while copying)."""

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        items = super().iterate(prefix, start=start, reverse=reverse)
        yield next(items)
        raise StoreError("read failed (simulated)")


@pytest.mark.parametrize("precreate", [False, True], ids=["new dir", "empty dir"])
def test_a_failed_backup_removes_its_partial_copy(tmp_path: Path, precreate: bool) -> None:
    kv = FailingKV()
    kv.write([(b"a", b"1"), (b"b", b"2")])
    dest = tmp_path / "backup"
    if precreate:
        dest.mkdir()
    with pytest.raises(BackupError, match="simulated"):
        write_backup(kv, Config(datadir=tmp_path / "node"), dest)
    assert (list(dest.iterdir()) == []) if precreate else not dest.exists()
