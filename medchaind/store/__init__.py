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
from .routed import BLOCKS_DIR as BLOCKS_DIR
from .routed import RoutedKV as RoutedKV

CHAINDATA_DIR = "chaindata"

#: the namespace kept in ``chaindata/blocks/`` (medchaind.store.routed). Only blocks: with
#: commits there too, each table would span from its first block key to its last commit
#: key and overlap every older table, and LevelDB would rewrite them (measured: 1.8x)
ROUTED_PREFIXES = (schema.BLOCK_PREFIX,)

#: LevelDB memtable of the blocks store: its keys only grow, so a small table costs no
#: rewriting (each one is moved down the levels as it is)
BLOCKS_WRITE_BUFFER_BYTES = 4 << 20


def open_kv(chaindata: Path) -> RoutedKV:
    """Open (creating if needed) the chain database in directory ``chaindata``: a LevelDB
    there and one for blocks in ``chaindata/blocks`` (medchaind.store.routed).

    An older datadir's blocks are moved into the blocks store first. Raises
    DatadirLockedError if another process uses the database, StoreError if it cannot be
    opened (nothing stays open then).
    """
    main = LevelDBKV.open(chaindata)
    try:
        side = LevelDBKV.open(chaindata / BLOCKS_DIR, write_buffer_bytes=BLOCKS_WRITE_BUFFER_BYTES)
    except BaseException:
        main.close()
        raise
    kv = RoutedKV(main, side, ROUTED_PREFIXES)
    try:
        kv.move_routed_keys()
    except BaseException:
        kv.close()
        raise
    return kv


def open_store(datadir: Path) -> tuple[RoutedKV, ChainStore]:
    """Open ``<datadir>/chaindata`` (:func:`open_kv`) and the ChainStore over it.

    The caller owns the returned store and closes it on shutdown. Raises
    DatadirLockedError if another process uses the datadir, StoreError if the database
    cannot be opened or its head is damaged (the handle is closed before raising).
    """
    kv = open_kv(datadir / CHAINDATA_DIR)
    try:
        return kv, ChainStore(kv)
    except BaseException:
        kv.close()
        raise
