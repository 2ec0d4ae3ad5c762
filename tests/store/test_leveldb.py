"""LevelDB-only behaviour: persistence, the datadir lock, open errors, open_store."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_factories import commit_fixture, make_chain

from medchaind.errors import DatadirLockedError, StoreError
from medchaind.store import ChainStore, LevelDBKV, open_store

# Holds the datadir open until its stdin closes; says "locked" once it holds the lock.
HOLDER = """
import sys
from pathlib import Path
from medchaind.store import open_store
kv, store = open_store(Path(sys.argv[1]))
print("locked", flush=True)
sys.stdin.read()
kv.close()
"""


def locked_message(path: Path) -> str:
    return (
        f"{path}: the database is in use by another process "
        "(is another medchaind running with this datadir?)"
    )


@pytest.fixture
def holder(tmp_path: Path, child_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """Another process that has ``tmp_path/datadir`` open."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "datadir")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # wait on the condition, not on a timer
    if line != "locked\n":
        proc.kill()
        pytest.fail(f"lock holder did not start: {line!r} {proc.communicate()[1]}")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_second_process_gets_datadir_locked(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    datadir = tmp_path / "datadir"
    with pytest.raises(DatadirLockedError) as info:
        open_store(datadir)
    assert str(info.value) == locked_message(datadir / "chaindata")
    # The holder lets go; now the datadir opens.
    _, err = holder.communicate(input="", timeout=30)
    assert holder.returncode == 0, err
    kv, store = open_store(datadir)
    with kv:
        assert store.head_height() == 0


def test_second_open_in_same_process_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LevelDBKV.open(path):
        with pytest.raises(DatadirLockedError) as info:
            LevelDBKV.open(path)
        assert str(info.value) == locked_message(path)
    LevelDBKV.open(path).close()  # released on close


def test_data_persists_across_reopen(tmp_path: Path) -> None:
    datadir = tmp_path / "node"
    chain = list(make_chain(3))
    kv, store = open_store(datadir)
    with kv:
        for fx in chain:
            commit_fixture(store, fx)
        kv.put(b"x/unsynced", b"1", sync=False)
    assert (datadir / "chaindata" / "CURRENT").is_file()
    kv, store = open_store(datadir)
    with kv:
        assert store.head_height() == 3
        assert store.head() == chain[-1].block.header
        assert store.get_block(2) == chain[1].block
        assert kv.get(b"x/unsynced") == b"1"


def test_corrupt_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "db"
    LevelDBKV.open(path).close()
    (path / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StoreError, match="the database is corrupt .* restore the datadir") as info:
        LevelDBKV.open(path)
    assert not isinstance(info.value, DatadirLockedError)
    assert str(path) in str(info.value)


def test_unusable_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the database directory"):
        LevelDBKV.open(blocker / "db")


def test_open_store_closes_handle_when_head_is_damaged(tmp_path: Path) -> None:
    datadir = tmp_path / "node"
    kv = LevelDBKV.open(datadir / "chaindata")
    kv.put(b"v1/meta/head", b"\x00\x01")  # not 8 bytes
    kv.close()
    with pytest.raises(StoreError, match="corrupt entry in the metadata namespace"):
        open_store(datadir)
    # The failed open released the lock.
    kv = LevelDBKV.open(datadir / "chaindata")
    kv.close()


def test_chain_store_over_reopened_leveldb_continues(tmp_path: Path) -> None:
    chain = list(make_chain(4))
    path = tmp_path / "db"
    with LevelDBKV.open(path) as kv:
        store = ChainStore(kv)
        for fx in chain[:2]:
            commit_fixture(store, fx)
    with LevelDBKV.open(path) as kv:
        store = ChainStore(kv)
        for fx in chain[2:]:
            commit_fixture(store, fx)
        assert store.head_height() == 4
    assert repr(kv) == f"LevelDBKV({str(path)!r}, closed)"


@pytest.mark.parametrize("first, second", [(0, 10), (10, 0)], ids=["no-filter-then-filter", "filter-then-no-filter"])
def test_bloom_filter_option_keeps_tables_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int, second: int
) -> None:
    """A datadir whose tables were written without bloom filters (before the option)
    opens and reads the same with them, and the other way round: the filter lives in
    each table file and a reader without the policy ignores it."""
    from medchaind.store import leveldb

    path = tmp_path / "chaindata"
    present = {b"k/%05d" % i: b"v%d" % i for i in range(0, 4000, 2)}
    monkeypatch.setattr(leveldb, "BLOOM_FILTER_BITS", first)
    with LevelDBKV.open(path) as kv:
        kv.write(present)
        kv._db.compact_range()  # into table files written with the first option
    assert list(path.glob("*.ldb")), "no table file was written"
    monkeypatch.setattr(leveldb, "BLOOM_FILTER_BITS", second)
    with LevelDBKV.open(path) as kv:
        for i in range(4000):
            key = b"k/%05d" % i
            assert kv.get(key) == present.get(key)  # odd keys: absent, asked of the filter
        kv.write({b"k/new": b"n"})
        kv._db.compact_range()  # old and new tables merged under the second option
        assert kv.get(b"k/new") == b"n" and kv.get(b"k/00001") is None
        assert dict(kv.iterate(b"k/")) == {**present, b"k/new": b"n"}


@pytest.mark.parametrize("first, second", [("snappy", None), (None, "snappy")],
                         ids=["snappy-then-off", "off-then-snappy"])
def test_compression_option_keeps_tables_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str | None, second: str | None
) -> None:
    """A datadir written with Snappy-compressed tables (LevelDB's default, before
    compression was turned off) reads the same without compression, and the other way
    round, old and new tables side by side."""
    from medchaind.store import leveldb

    def table_bytes(path: Path) -> int:
        return sum(f.stat().st_size for f in path.glob("*.ldb"))

    path = tmp_path / "chaindata"
    old = {b"t/%05d" % i: (b"compressible text %d " % i) * 20 for i in range(0, 3000, 3)}
    new = {b"u/%05d" % i: (b"compressible text %d " % i) * 20 for i in range(0, 3000, 3)}
    monkeypatch.setattr(leveldb, "COMPRESSION", first)
    with LevelDBKV.open(path) as kv:
        kv.write(old)
        kv._db.compact_range()
    old_bytes = table_bytes(path)
    monkeypatch.setattr(leveldb, "COMPRESSION", second)
    with LevelDBKV.open(path) as kv:
        assert dict(kv.iterate(b"t/")) == old
        kv.write(new)
        kv._db.compact_range(start=b"u/")  # a table of its own, written under the second setting
        assert dict(kv.iterate(b"t/")) == old and dict(kv.iterate(b"u/")) == new
    new_bytes = table_bytes(path) - old_bytes
    # each setting reached LevelDB: repetitive text takes several times the room uncompressed
    compressed, plain = (old_bytes, new_bytes) if first == "snappy" else (new_bytes, old_bytes)
    assert plain > 3 * compressed > 0
