"""File I/O of the pure types: keystore files, genesis files, private atomic writes.

The pure layers (``crypto``, ``types``) never touch the disk (DESIGN.md §2); the node,
the CLIs and the tools read and write their files through here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .crypto import KeyPair, check_keystore, decrypt_keystore, encrypt_keystore
from .errors import ConfigError, KeystoreError
from .types.genesis import Genesis


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, created 0600, fsync'd before the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ---------------------------------------------------------------------- keystore files


def save_keystore(path: Path, keys: KeyPair, passphrase: str, *, label: str = "", **kdf: int) -> None:
    """Encrypt ``keys`` under ``passphrase`` into a 0600 JSON keystore file."""
    doc = encrypt_keystore(keys, passphrase, label=label, **kdf)
    write_private_file(path, (json.dumps(doc, indent=2) + "\n").encode())


def _read_doc(path: Path) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise KeystoreError(f"{path}: no such keystore file") from None
    except (OSError, ValueError) as exc:
        raise KeystoreError(f"{path}: not a readable keystore ({exc})") from None
    return check_keystore(doc, str(path))


def read_keystore_public(path: Path) -> dict[str, str]:
    """The clear-text fields of a keystore file (label and public keys)."""
    doc = _read_doc(path)
    return {
        "label": str(doc.get("label", "")),
        "public_key": str(doc["public_key"]),
        "encryption_public_key": str(doc["encryption_public_key"]),
    }


def load_keystore(path: Path, passphrase: str) -> KeyPair:
    return decrypt_keystore(_read_doc(path), passphrase, str(path))


# ---------------------------------------------------------------------- genesis files


def load_genesis(path: Path) -> Genesis:
    """Read and validate a genesis.json file; ConfigError names the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read genesis ({exc.strerror})") from None
    return Genesis.from_json(text, source=str(path))
