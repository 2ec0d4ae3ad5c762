"""A backup cut off mid-copy never becomes a node (issue 9, defect 5), and backups are private.

The defect: the online backup copies the live database key by key, in key order, over
4 MiB batches, straight into ``dest``. Killed half-way, it left ``dest`` without
``BACKUP.json`` and with a database holding blocks but no genesis or head record (key
order: ``bhash`` < ``blk`` < ``blob`` < ``cmt`` < ``meta`` < ``rcpt`` < ``state`` < ``tx``).
The ledger took "no genesis record" for a new datadir, wrote genesis over it and the node
started at height 0 beside blocks 5-60; its authority key then signed a second block 1.
A cut after the metadata is worse still: a head without the state it implies.

These tests cut a real backup off at many points (an exception that nothing in the
backup catches, like a kill; and one real ``os._exit`` in a child process) and check that
nothing left behind can be opened as a chain, and that ``dest`` itself never appears.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from store_factories import commit_fixture, make_block
from torn_backup_child import DyingKV

import medchaind.node.backup as backup_mod
from medchaind.ledger import Ledger
from medchaind.node.backup import write_backup
from medchaind.node.config import Config
from medchaind.store import ChainStore, IncompleteStoreError, LevelDBKV, MemoryKV, schema
from medchaind.testing.appkit import make_app, make_genesis

HEIGHT = 12
HERE = Path(__file__).resolve().parent


class Killed(BaseException):
    """Stands for SIGKILL: no ``except Exception``/``except OSError`` handler sees it."""


def kill() -> None:
    raise Killed


def make_source(datadir: Path) -> tuple[LevelDBKV, int]:
    """A datadir whose chaindata has a genesis and HEIGHT blocks; (open kv, number of keys)."""
    genesis = make_genesis({"A": 1})
    datadir.mkdir(mode=0o700)
    (datadir / "genesis.json").write_text(genesis.to_json())
    kv = LevelDBKV.open(datadir / "chaindata")
    store = ChainStore(kv)
    Ledger(store, make_app(genesis), genesis, commit_in_thread=False)  # writes the genesis state
    prev = prev_commit = None
    for h in range(1, HEIGHT + 1):
        fx = make_block(h, prev, prev_commit, n_txs=3, n_fill=2)
        commit_fixture(store, fx)
        prev, prev_commit = fx.block, fx.commit
    return kv, sum(1 for _ in kv.iterate(b""))


def open_as_node(chaindata: Path) -> int:
    """What ``medchaind run`` does first: open the store and the ledger; the height."""
    genesis = make_genesis({"A": 1})
    kv = LevelDBKV.open(chaindata)
    try:
        return Ledger(ChainStore(kv), make_app(genesis), genesis, commit_in_thread=False).height
    finally:
        kv.close()


def leftovers(parent: Path, source: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir() and p != source)


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_a_backup_cut_off_mid_copy_leaves_nothing_a_node_would_start_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fraction: float
) -> None:
    source = tmp_path / "node"
    kv, n_keys = make_source(source)
    monkeypatch.setattr(backup_mod, "BATCH_BYTES", 2048)  # many batches: a cut leaves some written
    dest = tmp_path / "backup"
    cut = int(n_keys * fraction)
    try:
        with pytest.raises(Killed):
            write_backup(DyingKV(kv, cut, kill), Config(datadir=source), dest)
    finally:
        kv.close()
    left = leftovers(tmp_path, source)
    assert left, "the cut-off copy is still on disk (as it would be after a kill)"
    for d in left:
        assert not (d / "BACKUP.json").exists()
        if (d / "chaindata").exists():
            with pytest.raises(IncompleteStoreError, match="incomplete|no genesis record|no head record"):
                open_as_node(d / "chaindata")
    assert not dest.exists(), "the destination must appear only once the copy is complete"


def test_a_backup_killed_in_another_process_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """The real thing: the process doing the backup dies (os._exit) half-way through."""
    source = tmp_path / "node"
    kv, n_keys = make_source(source)
    kv.close()
    dest = tmp_path / "backup"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, str(HERE / "torn_backup_child.py"), str(source), str(dest), str(n_keys // 2)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert res.returncode == 137, res.stderr
    (left,) = leftovers(tmp_path, source)
    with pytest.raises(IncompleteStoreError) as err:
        open_as_node(left / "chaindata")
    message = str(err.value)
    assert "incomplete copy" in message and "Do not run a node on it" in message
    assert "take a new backup" in message
    assert not dest.exists()


@pytest.mark.parametrize("namespaces", [
    [schema.BLOCK_HASH_PREFIX],
    [schema.BLOCK_HASH_PREFIX, schema.BLOCK_PREFIX],
    [schema.BLOCK_HASH_PREFIX, schema.BLOCK_PREFIX, schema.COMMIT_PREFIX],
    [schema.STATE_PREFIX],
], ids=["bhash", "bhash+blk", "bhash+blk+cmt", "state only"])
def test_the_ledger_never_writes_genesis_over_existing_chain_data(tmp_path: Path, namespaces: list[bytes]) -> None:
    """A database copied without the mark (an older backup, a file copy) and cut before its
    metadata: blocks or state without a genesis record. It used to start at height 0."""
    source = tmp_path / "node"
    kv, _ = make_source(source)
    torn = MemoryKV()
    torn.write([(k, v) for k, v in kv.iterate(b"") if any(k.startswith(p) for p in namespaces)])
    kv.close()
    genesis = make_genesis({"A": 1})
    with pytest.raises(IncompleteStoreError, match="Do not"):
        Ledger(ChainStore(torn), make_app(genesis), genesis, commit_in_thread=False)
    assert torn.get(schema.meta_key("genesis_hash")) is None  # and nothing was written


def test_a_new_datadir_still_gets_its_genesis(tmp_path: Path) -> None:
    genesis = make_genesis({"A": 1})
    store = ChainStore(MemoryKV())
    assert store.is_empty()
    assert Ledger(store, make_app(genesis), genesis, commit_in_thread=False).height == 0
    assert not store.is_empty()


def test_a_complete_backup_is_private_and_opens_at_the_source_head(tmp_path: Path) -> None:
    """Docs: "Everything is 0600 in 0700 directories" -- LevelDB's own files included
    (they used to be 0644 in a 0755 chaindata/)."""
    old_umask = os.umask(0o022)  # the usual default, whatever the test runner has
    try:
        source = tmp_path / "node"
        kv, n_keys = make_source(source)
        dest = tmp_path / "backup"
        try:
            manifest = write_backup(kv, Config(datadir=source), dest)
        finally:
            kv.close()
    finally:
        os.umask(old_umask)
    assert manifest["height"] == HEIGHT and manifest["keys"] == n_keys
    assert leftovers(tmp_path, source) == [dest]  # no staging directory left behind
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    seen = 0
    for dirpath, dirnames, filenames in os.walk(dest):
        for name in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode) == 0o700, name
        for name in filenames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode) == 0o600, name
            seen += 1
    assert (dest / "chaindata" / "CURRENT").exists() and seen > 3
    assert open_as_node(dest / "chaindata") == HEIGHT


def test_a_backup_into_an_existing_empty_directory_replaces_it(tmp_path: Path) -> None:
    source = tmp_path / "node"
    kv, _ = make_source(source)
    dest = tmp_path / "backup"
    dest.mkdir(mode=0o755)
    try:
        write_backup(kv, Config(datadir=source), dest)
    finally:
        kv.close()
    assert (dest / "BACKUP.json").exists() and stat.S_IMODE(dest.stat().st_mode) == 0o700
    assert leftovers(tmp_path, source) == [dest]


def test_an_export_is_written_owner_only(tmp_path: Path) -> None:
    """``medchaind export`` used to create its file 0644 (the umask's default)."""
    from medchaind.node.chainfile import export_chain

    source = tmp_path / "node"
    kv, _ = make_source(source)
    kv.close()
    out = tmp_path / "chain.export"
    old_umask = os.umask(0o022)
    try:
        result = export_chain(source, out)
    finally:
        os.umask(old_umask)
    assert result["to"] == HEIGHT and out.stat().st_size == result["bytes"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):  # never overwrites
        export_chain(source, out)


def test_a_backup_that_fails_cleanly_leaves_no_staging_directory(tmp_path: Path) -> None:
    """A reported failure (here a read error half-way) removes the staging copy too."""
    from medchaind.errors import StoreError
    from medchaind.node.backup import BackupError

    def read_error() -> None:
        raise StoreError("read failed (simulated)")

    source = tmp_path / "node"
    kv, n_keys = make_source(source)
    try:
        with pytest.raises(BackupError, match="simulated"):
            write_backup(DyingKV(kv, n_keys // 2, read_error), Config(datadir=source), tmp_path / "backup")
    finally:
        kv.close()
    assert leftovers(tmp_path, source) == []
