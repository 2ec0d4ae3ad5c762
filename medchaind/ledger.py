"""The committed chain as the services see it: the store, the app and the tip, one writer.

Below ``consensus/`` and ``sync/`` (DESIGN.md §2 ``ledger``): both hold a Ledger and
neither reaches up into ``node/``.

The consensus engine is the only caller of :meth:`Ledger.commit`; everything else
(IPC, mempool, sync) reads. Committing writes the block, its commit certificate, the
state changes, indexes, receipts and the new head in one ``sync=True`` LevelDB batch
(``ChainStore.commit_block``), then moves the in-memory tip and tells the listeners.
A crash at any point leaves either the old head or the new one, never a mix.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import trio

from .app import App, Execution
from .app.app import PROTOCOL_VERSION
from .chain import Tip
from .errors import ConfigError
from .store import GENESIS_APP_HASH_META, GENESIS_HASH_META, ChainStore, IncompleteStoreError
from .types import Block, Commit, Genesis, Receipt, validators_hash

log = logging.getLogger(__name__)


class StoreState:
    """Adapts the committed state in a ChainStore to the app's StateReader protocol.

    It also serves the state trie's node records (:meth:`trie_node`) through a bounded
    cache: records are content addressed, so a cached one is never stale, and the nodes
    a block rewrites (the top of the trie, the senders' nonces) are the ones the next
    block reads, so :meth:`remember` puts each committed block's new records in it.
    """

    __slots__ = ("store", "_trie_cache")

    #: records kept in memory (inner records are at most ~600 bytes, most far smaller)
    TRIE_CACHE_RECORDS = 65_536

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._trie_cache: dict[bytes, bytes] = {}

    def get(self, module: str, key: bytes) -> bytes | None:
        return self.store.state_get(module, key)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.store.state_iterate(module, prefix)

    def trie_node(self, node_hash: bytes) -> bytes | None:
        """A record of the committed state trie (medchaind.app.trie; root = the tip's app_hash)."""
        record = self._trie_cache.get(node_hash)
        if record is None:
            record = self.store.trie_node(node_hash)
            if record is not None:
                self.remember({node_hash: record})
        return record

    def remember(self, records: dict[bytes, bytes]) -> None:
        """Keep ``records`` (hash -> record) in the cache, dropping the oldest beyond its bound."""
        cache = self._trie_cache
        cache.update(records)
        excess = len(cache) - self.TRIE_CACHE_RECORDS
        if excess > 0:
            for h in list(itertools.islice(cache, excess)):
                del cache[h]


@dataclass(frozen=True, slots=True)
class Committed:
    block: Block
    commit: Commit
    receipts: list[Receipt]


CommitListener = Callable[[Committed], None]


class Ledger:
    def __init__(self, store: ChainStore, app: App, genesis: Genesis, *, commit_in_thread: bool = True) -> None:
        #: LevelDB's sync'd write releases the GIL, so it runs in a worker thread; in-memory
        #: simulations under a mock clock commit inline instead (no real I/O in flight).
        self.commit_in_thread = commit_in_thread
        self.store = store
        self.app = app
        self.genesis = genesis
        self.state = StoreState(store)
        self._listeners: list[CommitListener] = []
        self._height_changed = trio.Event()
        self._init_genesis()
        self.tip = self._load_tip()

    def _init_genesis(self) -> None:
        gh = self.genesis.hash()
        stored = self.store.get_meta(GENESIS_HASH_META)
        if stored is None:
            # "No genesis record" means a new datadir only if there is nothing else either.
            # A store with blocks or state but no genesis record is a torn copy (an online
            # backup cut off before its metadata): writing genesis over it would restart the
            # chain at height 0 beside the blocks it holds, and an authority would then sign
            # a second block 1 -- forking its own history.
            if not self.store.is_empty():
                raise IncompleteStoreError(
                    f"{self._where()} holds chain data but no genesis record, so it is not a "
                    "complete database (an interrupted backup or copy?). Do not start a node on "
                    "it: restore a complete backup (one with BACKUP.json), or move chaindata aside "
                    "and start from an empty one to resync from peers"
                )
            writes = self.app.genesis_writes()
            trie = self.app.genesis_trie(writes)
            self.store.init_genesis(gh, trie.root, writes, trie_puts=trie.puts)
            log.info("genesis initialised chain_id=%s genesis_hash=%s", self.genesis.chain_id, gh.hex())
        elif stored != gh:
            raise ConfigError(
                f"genesis.json (hash {gh.hex()[:16]}…) differs from the one this datadir was "
                f"created with ({stored.hex()[:16]}…); use the original genesis or a new datadir"
            )
        else:
            self._check_state_commitment()

    def _check_state_commitment(self) -> None:
        """A datadir of protocol 1 (app_hash a hash chain over write-sets, no state trie)
        has a genesis app hash that is not the genesis state's trie root: refuse it."""
        stored = self.store.get_meta(GENESIS_APP_HASH_META)
        root = self.app.genesis_state()[1]
        if stored is not None and stored != root:
            raise ConfigError(
                f"{self._where()} was created by an older medchaind (protocol 1: its app_hash "
                f"is not the state-trie root of protocol {PROTOCOL_VERSION}), so this node "
                "cannot extend its chain. Start the network from a new datadir (the chain's "
                "blocks cannot be re-used either: their headers commit to the old app_hash)"
            )

    def _where(self) -> str:
        path = getattr(self.store.kv, "path", None)
        return "the database" if path is None else str(path)

    def _load_tip(self) -> Tip:
        powers = self.app.authority_powers(self.state)
        head = self.store.head()
        if head is None:
            app_hash = self.store.get_meta(GENESIS_APP_HASH_META)
            if app_hash is None:  # init_genesis writes both in one batch
                raise IncompleteStoreError(
                    f"{self._where()} has a genesis hash but no genesis app hash: the database is "
                    "damaged; restore a complete backup or start from an empty chaindata to resync"
                )
            return Tip(0, self.genesis.hash(), app_hash, self.genesis.genesis_time_ms, powers)
        # the set that signed the head is the next height's unless a change took effect at
        # the end of the head block; then it is unknown until the next block
        signers = powers if validators_hash(powers) == head.validators_hash else None
        return Tip(head.height, head.hash(), head.app_hash, head.time_ms, powers, block_powers=signers)

    def _commit_block(self, block: Block, commit: Commit, ex: Execution) -> None:
        trie = ex.trie
        self.store.commit_block(
            block, commit, ex.writes, ex.receipts,
            trie_puts=None if trie is None else trie.puts, trie_deletes=() if trie is None else trie.deletes,
        )

    @property
    def height(self) -> int:
        return self.tip.height

    def add_listener(self, fn: CommitListener) -> None:
        self._listeners.append(fn)

    def is_committed(self, tx_hash: bytes) -> bool:
        return self.store.get_tx_location(tx_hash) is not None

    async def wait_height(self, height: int) -> None:
        while self.tip.height < height:
            await self._height_changed.wait()

    async def commit(self, block: Block, commit: Commit, ex: Execution) -> None:
        """Persist a decided block (atomic, fsync'd), then advance the tip and notify."""
        assert block.height == self.tip.height + 1
        if self.commit_in_thread:
            await trio.to_thread.run_sync(self._commit_block, block, commit, ex)
        else:
            self._commit_block(block, commit, ex)
            await trio.lowlevel.checkpoint()
        if ex.trie is not None:
            self.state.remember(ex.trie.puts)
        self.tip = Tip(block.height, block.hash(), block.header.app_hash, block.header.time_ms,
                       self.app.authority_powers(self.state), block_powers=self.tip.powers)
        ev, self._height_changed = self._height_changed, trio.Event()
        ev.set()
        committed = Committed(block, commit, ex.receipts)
        for fn in self._listeners:
            try:
                fn(committed)
            except Exception:  # a listener bug must not stop the chain
                log.exception("commit listener failed height=%d", block.height)
