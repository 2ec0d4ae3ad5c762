"""Online backup of a running node (``admin_backup``, ``medchaind backup``).

A copy of ``chaindata/`` taken file by file while the node writes is not a database.
Instead the node itself copies every key of its LevelDB from one consistent scan (a
LevelDB snapshot: a block is committed in one write batch, so the copy holds whole
blocks only) into a fresh LevelDB under ``<dest>/chaindata``, in a worker thread while
it keeps running. It then adds what a datadir needs to start:

* ``genesis.json``, ``config.toml``, ``keys/node.json`` (the *encrypted* keystore; never
  the passphrase file: keep the passphrase in a secret manager),
* ``consensus.wal`` (the last-signed guard of the height in progress), copied *before*
  the database so that it is never ahead of the copied chain (a torn tail is cut when
  it is read),
* ``blobs/``: every record ciphertext on disk (one that is no longer referenced is
  shredded by the restored node's reconciliation),
* ``BACKUP.json``: chain id, genesis hash, the height/hash/app hash the copy holds.

Restore = ``medchaind run --datadir <dest>`` with the passphrase, **after** the
original node is stopped for good: two running copies of one authority key would
sign twice. Everything written is 0600 in 0700 directories (LevelDB creates its files
with the process umask, so they are narrowed before the copy is published).

**A copy that did not finish never looks like a datadir.** A backup can be cut off at
any moment (the node is killed, the machine loses power), and the database copy is
written in key order over many batches: cut short, it can hold blocks without the
genesis record, or a head without its state. A node started on that would re-create
genesis at height 0 beside the blocks and sign a second block 1. Hence:

1. everything is written into a staging directory next to ``dest``
   (``.<name>.partial-<random>``), and renamed to ``dest`` only once ``BACKUP.json`` is
   written and every file is synced: ``dest`` is absent, empty or complete;
2. the copied database carries meta ``incomplete`` (:data:`~medchaind.store.INCOMPLETE_KEY`)
   from before its first batch until its last, so even the staging directory, if someone
   points a node at it, is refused when opened (``IncompleteStoreError``);
3. independently, the ledger refuses a database with chain data but no genesis record.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MedchainError
from ..store import INCOMPLETE_KEY, LevelDBKV
from ..store.chain_store import ChainStore
from ..store.kv import KVStore
from .config import Config

BATCH_BYTES = 4 << 20


class BackupError(MedchainError):
    rpc_code = -32602


def check_destination(dest: Path) -> None:
    try:  # a NUL or a lone surrogate would make every os call below raise ValueError
        if "\0" in str(dest):
            raise ValueError("NUL")
        os.fsencode(dest)
    except ValueError:
        raise BackupError("the backup path contains a NUL or text that is not a valid file name") from None
    if not dest.is_absolute():
        raise BackupError("the backup path must be absolute (it is resolved by the node)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} is not a directory")
    if dest.exists() and os.path.ismount(dest):
        # the copy is staged beside dest and renamed onto it, which a mount point refuses
        raise BackupError(f"{dest} is a mount point; give a new directory inside it")


def _copy_private(src: Path, dst: Path) -> int:
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    return dst.stat().st_size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_private(root: Path) -> None:
    """0700 for ``root`` and every directory below it, 0600 for every file (LevelDB's too)."""
    root.chmod(0o700)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o700)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o600)


def staging_path(dest: Path) -> Path:
    """A fresh name beside ``dest`` to build the copy under (same filesystem: rename works)."""
    return dest.parent / f".{dest.name}.partial-{secrets.token_hex(4)}"


def write_backup(kv: KVStore, config: Config, dest: Path) -> dict[str, Any]:
    """Copy the node's database (consistent scan) and files to ``dest``; the manifest.

    The copy is built under :func:`staging_path` and renamed to ``dest`` when complete
    (see the module docstring). On any failure (disk full, permissions) the staging
    directory is removed and :class:`BackupError` says why; ``dest`` and the node are
    not affected.
    """
    check_destination(dest)
    staging = staging_path(dest)
    try:
        staging.mkdir(mode=0o700)
        manifest = _write_backup(kv, config, staging, dest)
        _make_private(staging)
        _fsync_dir(staging)
        # rename(2) replaces an empty directory atomically; the copy appears whole or not at all
        os.rename(staging, dest)
        _fsync_dir(dest.parent)
        return manifest
    except (OSError, MedchainError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise BackupError(f"backup to {dest} failed: {exc}") from None


def _write_backup(kv: KVStore, config: Config, staging: Path, dest: Path) -> dict[str, Any]:
    size = 0
    # The copied database is marked incomplete before anything else is written (the WAL
    # included), and the mark goes with its last batch: whatever this function leaves
    # behind when it is cut off is refused by ChainStore.
    (staging / "chaindata").mkdir(mode=0o700)
    out = LevelDBKV.open(staging / "chaindata")
    keys = 0
    try:
        out.write([(INCOMPLETE_KEY, f"backup to {dest} in progress".encode())], sync=True)
        # The WAL first, the database after: the copy's WAL is then never *ahead* of its
        # chain. A WAL taken later could hold votes this node signed for heights the copied
        # database lacks, and its last-signed guard would (rightly) stop the restored node
        # from signing those heights again: a single authority would halt. Taken first, its
        # records are for the height after the copied head (replayed) or older (ignored).
        wal = config.datadir / "consensus.wal"
        if wal.exists():
            size += _copy_private(wal, staging / "consensus.wal")
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        for k, v in kv.iterate(b""):
            if k == INCOMPLETE_KEY:
                continue
            batch.append((k, v))
            batch_bytes += len(k) + len(v)
            keys += 1
            if batch_bytes >= BATCH_BYTES:
                out.write(batch, sync=False)
                size += batch_bytes
                batch, batch_bytes = [], 0
        # one sync'd write: the rest, and the end of the incomplete mark (LevelDB's log is
        # sequential, so this also makes the unsynced batches before it durable)
        out.write(batch, [INCOMPLETE_KEY], sync=True)
        size += batch_bytes
        head = ChainStore(out).head()
    finally:
        out.close()

    files = 0
    for name in ("genesis.json", "config.toml"):
        if (config.datadir / name).exists():
            size += _copy_private(config.datadir / name, staging / name)
            files += 1
    key_path = config.resolve(config.key.path)
    if key_path.exists():
        size += _copy_private(key_path, staging / "keys" / "node.json")
        files += 1
    blobs = 0
    src_blobs = config.datadir / "blobs"
    (staging / "blobs").mkdir(mode=0o700)
    if src_blobs.is_dir():
        for entry in os.scandir(src_blobs):
            if len(entry.name) == 64 and entry.is_file(follow_symlinks=False):
                try:
                    size += _copy_private(Path(entry.path), staging / "blobs" / entry.name)
                    blobs += 1
                except FileNotFoundError:  # erased while we copied
                    continue

    from ..files import load_genesis

    genesis = load_genesis(config.genesis_path)
    manifest = {
        "version": __version__,
        "chain_id": genesis.chain_id,
        "genesis_hash": "0x" + genesis.hash().hex(),
        "height": 0 if head is None else head.height,
        "head_hash": None if head is None else "0x" + head.hash().hex(),
        "app_hash": None if head is None else "0x" + head.app_hash.hex(),
        "keys": keys,
        "blobs": blobs,
        "bytes": size,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "path": str(dest),
    }
    manifest_path = staging / "BACKUP.json"
    fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return manifest
