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
sign twice. Everything written is 0600 in 0700 directories.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import MedchainError
from ..store import LevelDBKV
from ..store.chain_store import ChainStore
from ..store.kv import KVStore
from .config import Config

BATCH_BYTES = 4 << 20


class BackupError(MedchainError):
    rpc_code = -32602


def check_destination(dest: Path) -> None:
    if not dest.is_absolute():
        raise BackupError("the backup path must be absolute (it is resolved by the node)")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} exists and is not an empty directory")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} is not a directory")


def _copy_private(src: Path, dst: Path) -> int:
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    return dst.stat().st_size


def write_backup(kv: KVStore, config: Config, dest: Path) -> dict[str, Any]:
    """Copy the node's database (consistent scan) and files to ``dest``; the manifest.

    On any failure (disk full, permissions) the partial copy is removed and
    :class:`BackupError` says why; the node is not affected.
    """
    check_destination(dest)
    existed = dest.exists()
    try:
        return _write_backup(kv, config, dest)
    except (OSError, MedchainError) as exc:
        if existed:
            for child in dest.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(dest, ignore_errors=True)
        raise BackupError(f"backup to {dest} failed: {exc}") from None


def _write_backup(kv: KVStore, config: Config, dest: Path) -> dict[str, Any]:
    dest.mkdir(mode=0o700, exist_ok=True)
    dest.chmod(0o700)
    size = 0
    # The WAL first, the database after: the copy's WAL is then never *ahead* of its
    # chain. A WAL taken later could hold votes this node signed for heights the copied
    # database lacks, and its last-signed guard would (rightly) stop the restored node
    # from signing those heights again: a single authority would halt. Taken first, its
    # records are for the height after the copied head (replayed) or older (ignored).
    wal = config.datadir / "consensus.wal"
    if wal.exists():
        size += _copy_private(wal, dest / "consensus.wal")
    out = LevelDBKV.open(dest / "chaindata")
    keys = 0
    try:
        batch: list[tuple[bytes, bytes]] = []
        batch_bytes = 0
        for k, v in kv.iterate(b""):
            batch.append((k, v))
            batch_bytes += len(k) + len(v)
            keys += 1
            if batch_bytes >= BATCH_BYTES:
                out.write(batch, sync=False)
                size += batch_bytes
                batch, batch_bytes = [], 0
        out.write(batch, sync=True)
        size += batch_bytes
        head = ChainStore(out).head()
    finally:
        out.close()

    files = 0
    for name in ("genesis.json", "config.toml"):
        if (config.datadir / name).exists():
            size += _copy_private(config.datadir / name, dest / name)
            files += 1
    key_path = config.resolve(config.key.path)
    if key_path.exists():
        size += _copy_private(key_path, dest / "keys" / "node.json")
        files += 1
    blobs = 0
    src_blobs = config.datadir / "blobs"
    (dest / "blobs").mkdir(mode=0o700)
    if src_blobs.is_dir():
        for entry in os.scandir(src_blobs):
            if len(entry.name) == 64 and entry.is_file(follow_symlinks=False):
                try:
                    size += _copy_private(Path(entry.path), dest / "blobs" / entry.name)
                    blobs += 1
                except FileNotFoundError:  # erased while we copied
                    continue

    from ..types import Genesis

    genesis = Genesis.load(config.genesis_path)
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
    manifest_path = dest / "BACKUP.json"
    fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return manifest
