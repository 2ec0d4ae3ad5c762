"""Record ciphertexts on disk, one file per blob, so erasure is physical.

Why not LevelDB: a deleted LevelDB value stays in its table file until a compaction
happens to merge that file with the tombstone, and ``compact_range`` does not force it
(measured: the bytes survived a full manual compaction). Erasure must remove the
ciphertext from disk on every node, so blobs live in ``<datadir>/blobs/<hash hex>``:
written atomically (temp file, fsync, rename), deleted by overwriting with zeros,
fsync, then unlink. The chain keeps only the hash.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError
from ..files import write_private_file


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, content_hash: bytes) -> Path:
        if len(content_hash) != 32:
            raise StoreError("a blob is named by its 32-byte SHA-256")
        return self.root / content_hash.hex()

    def put_blob(self, content_hash: bytes, data: bytes) -> None:
        write_private_file(self._path(content_hash), data)

    def get_blob(self, content_hash: bytes) -> bytes | None:
        try:
            return self._path(content_hash).read_bytes()
        except FileNotFoundError:
            return None

    def has_blob(self, content_hash: bytes) -> bool:
        return self._path(content_hash).exists()

    def entries(self) -> Iterator[tuple[Path, bytes | None, float]]:
        """Every file in the store: ``(path, content hash or None, mtime)``.

        The hash is None for a file that is not a finished blob (the temp file of a
        write cut short by a crash).
        """
        for entry in os.scandir(self.root):
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            name = entry.name
            h: bytes | None = None
            if len(name) == 64:
                try:
                    h = bytes.fromhex(name)
                except ValueError:
                    h = None
            yield Path(entry.path), h, mtime

    def delete_blob(self, content_hash: bytes) -> None:
        self.shred(self._path(content_hash))

    def shred(self, path: Path) -> None:
        """Overwrite ``path`` with zeros, fsync, unlink, fsync the directory."""
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            size = os.fstat(fd).st_size
            os.write(fd, b"\x00" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
