"""Storage: the KVStore seam, its LevelDB and memory backends, the key schema, ChainStore.

The only package that imports plyvel (DESIGN.md §2) and the only one that builds
storage keys (:mod:`medchaind.store.schema`). Synchronous by design: callers in trio
code decide whether a call is cheap enough to make inline.
"""

from __future__ import annotations

from pathlib import Path

from . import schema as schema
from .chain_store import GENESIS_APP_HASH_META as GENESIS_APP_HASH_META
from .chain_store import GENESIS_HASH_META as GENESIS_HASH_META
from .chain_store import HEAD_META as HEAD_META
from .chain_store import INCOMPLETE_KEY as INCOMPLETE_KEY
from .chain_store import PROTOCOL_META as PROTOCOL_META
from .chain_store import RESERVED_META as RESERVED_META
from .chain_store import ChainStore as ChainStore
from .chain_store import IncompleteStoreError as IncompleteStoreError
from .chain_store import StateWrites as StateWrites
from .kv import KVStore as KVStore
from .leveldb import LevelDBKV as LevelDBKV
from .memory import MemoryKV as MemoryKV

CHAINDATA_DIR = "chaindata"


def open_store(datadir: Path) -> tuple[LevelDBKV, ChainStore]:
    """Open ``<datadir>/chaindata`` (created if missing) and the ChainStore over it.

    The caller owns the returned LevelDBKV and closes it on shutdown. Raises
    DatadirLockedError if another process uses the datadir, StoreError if the database
    cannot be opened or its head is damaged (the handle is closed before raising).
    """
    kv = LevelDBKV.open(datadir / CHAINDATA_DIR)
    try:
        return kv, ChainStore(kv)
    except BaseException:
        kv.close()
        raise
