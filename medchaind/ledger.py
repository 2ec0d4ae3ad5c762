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

import functools
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio

from .app import App, Execution
from .app.app import NONCE_UNUSED_CODES, PROTOCOL_VERSION
from .app.proofs import ProvingState
from .app.state import merge_writes
from .chain import Tip
from .errors import ConfigError
from .store import GENESIS_APP_HASH_META, GENESIS_HASH_META, PROTOCOL_META, ChainStore, IncompleteStoreError
from .types import Block, Commit, Genesis, Receipt, validators_hash

log = logging.getLogger(__name__)

_MISS = object()


class StoreState:
    """Adapts the committed state in a ChainStore to the app's StateReader protocol.

    It also serves the state trie's node records (:meth:`trie_node`) through a bounded
    cache: records are content addressed, so a cached one is never stale, and the nodes
    a block rewrites (the top of the trie, the senders' nonces) are the ones the next
    block reads, so :meth:`remember` puts each committed block's new records in it.

    And it memoises point reads of state values (:meth:`get`, absent keys included):
    a tx's keys (its sender's nonce and identity, what its handler reads) are read at
    admission, again by the mempool's re-check after each block and again when the
    block executes, each time a LevelDB get. A cached value is exact for the committed
    state because every change to that state goes through :meth:`Ledger.commit`, which
    hands the block's write-set to :meth:`apply_writes` before it moves the tip, or
    through a snapshot restore, which drops the cache (:meth:`forget`). Readers in
    worker threads (snapshot serving) may fill it too: a value read from the store
    is kept only if no write-set was applied since the read began (``_gen`` under
    ``_lock``), so a read that raced a commit cannot leave the old value behind.
    While a block's batch is being written, a cached key still answers the old value
    and an uncached one the new value, as uncached reads did before (nothing reads the
    state for consensus between the write and the tip's move).
    """

    __slots__ = ("store", "_trie_cache", "_values", "_gen", "_lock", "trie_hits", "trie_misses")

    #: records kept in memory (inner records are at most ~600 bytes, most far smaller)
    TRIE_CACHE_RECORDS = 65_536
    #: state values kept in memory (the oldest go first): a few blocks' worth of keys
    VALUE_CACHE_ENTRIES = 32_768
    #: larger values are not cached (bounds the cache to ~20 MiB; nonces, identities
    #: and most module records are far smaller)
    VALUE_CACHE_MAX_BYTES = 512

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._trie_cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._values: dict[tuple[str, bytes], bytes | None] = {}
        self._gen = 0
        self._lock = threading.Lock()
        #: record cache lookups answered from memory / from the store
        self.trie_hits = 0
        self.trie_misses = 0

    def get(self, module: str, key: bytes) -> bytes | None:
        k = (module, key)
        value = self._values.get(k, _MISS)
        if value is not _MISS:
            return value  # type: ignore[return-value]
        gen = self._gen
        stored = self.store.state_get(module, key)
        with self._lock:
            if gen == self._gen:
                self._keep(k, stored)
        return stored

    def apply_writes(self, writes: dict[tuple[str, bytes], bytes | None]) -> None:
        """The committed state just took ``writes`` (a block's write-set, None = deleted):
        make the value cache say so (the values are cached: the next block reads them)."""
        with self._lock:
            self._gen += 1
            for k, value in writes.items():
                self._values.pop(k, None)  # re-inserted as the newest
                self._keep(k, value)

    def _keep(self, k: tuple[str, bytes], value: bytes | None) -> None:
        values = self._values
        if value is not None and len(value) > self.VALUE_CACHE_MAX_BYTES:
            values.pop(k, None)  # large values are read from the store each time
            return
        values[k] = value
        excess = len(values) - self.VALUE_CACHE_ENTRIES
        if excess > 0:
            # drop the oldest eighth at once, so eviction is amortised over many reads
            for old in list(itertools.islice(values, excess + self.VALUE_CACHE_ENTRIES // 8)):
                del values[old]

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.store.state_iterate(module, prefix)

    def trie_node(self, node_hash: bytes) -> bytes | None:
        """A record of the committed state trie (medchaind.app.trie; root = the tip's app_hash)."""
        record = self._trie_cache.get(node_hash)
        if record is None:
            self.trie_misses += 1
            record = self.store.trie_node(node_hash)
            if record is not None:
                self.remember({node_hash: record})
        else:
            self.trie_hits += 1
        return record

    def trie_value(self, leaf_hash: bytes) -> bytes | None:
        """The value of a trie leaf of any version the store retains (by leaf hash)."""
        return self.store.trie_value(leaf_hash)

    def forget(self) -> None:
        """Drop the record and value caches (the store was replaced under them)."""
        self._trie_cache.clear()
        with self._lock:
            self._gen += 1
            self._values.clear()

    def remember(self, records: dict[bytes, bytes]) -> None:
        """Keep ``records`` (hash -> record) in the cache, dropping the oldest beyond its bound.

        An ``OrderedDict``: dropping a plain dict's oldest entry one at a time (as this
        did) scans the deleted slots at the front of its table, ~45 us per drop at
        65,536 entries, and once the cache was full every record read from the store
        paid it (10.8% of a node's event loop in a sustained run, the cost per tx
        growing with the chain: docs/benchmarks.md, issue 14 session 3)."""
        cache = self._trie_cache
        cache.update(records)
        pop = cache.popitem
        for _ in range(len(cache) - self.TRIE_CACHE_RECORDS):
            pop(last=False)


class PendingState:
    """The committed state as it is once one more executed block is written: that
    block's write-set and trie records over a :class:`StoreState` (a StateReader and
    TrieSource), so that replay executes block N+1 while N's write is in flight
    (``medchaind import``, node/chainfile.py).

    Exact whatever the write's progress, and whether it lands or fails: a key block N
    wrote is answered from N's write-set (None: deleted), and every other key has the
    same value before and after N's write (LevelDB applies a batch atomically to
    readers). A trie record N added is answered from N's delta; every other record
    reachable from N's root was in the store before N, and N's write deletes none of
    them (records are content addressed, and a delta deletes only the records that
    left the trie: :class:`~medchaind.app.trie.TrieDelta`). Read-only: nothing here
    moves the tip or makes anything durable; :meth:`Ledger.commit` still does both, in
    order.
    """

    __slots__ = ("base", "writes", "trie_puts", "trie_values")

    def __init__(self, base: StoreState, ex: Execution) -> None:
        self.base = base
        self.writes = ex.writes
        self.trie_puts: dict[bytes, bytes] = {} if ex.trie is None else ex.trie.puts
        self.trie_values: dict[bytes, bytes] = {} if ex.trie is None else ex.trie.values

    def get(self, module: str, key: bytes) -> bytes | None:
        k = (module, key)
        if k in self.writes:
            return self.writes[k]
        return self.base.get(module, key)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        mine = {k: v for (m, k), v in self.writes.items() if m == module and k.startswith(prefix)}
        if not mine:
            yield from self.base.iterate(module, prefix)
            return
        yield from merge_writes(self.base.iterate(module, prefix), mine)

    def trie_node(self, node_hash: bytes) -> bytes | None:
        record = self.trie_puts.get(node_hash)
        return record if record is not None else self.base.trie_node(node_hash)

    def trie_value(self, leaf_hash: bytes) -> bytes | None:
        value = self.trie_values.get(leaf_hash)
        return value if value is not None else self.base.trie_value(leaf_hash)


@dataclass(frozen=True, slots=True)
class Retention:
    """Which versions of the state trie a node keeps besides its head's (§23.8).

    ``recent``: the last so many heights (proofs at an older height); ``snapshot_interval``
    / ``snapshot_keep``: every ``interval``-th height is a state snapshot, the last
    ``keep`` of them are kept (and served). The kept versions are every height from the
    horizon (``head - recent``) to the head, and the kept snapshots' heights; a replaced
    record is pruned once none of them holds it (ChainStore.prune_trie). Until issue 14's
    session 10 every version from the oldest kept snapshot to the head was kept: up to
    ``interval * keep`` heights of replaced records.
    """

    recent: int = 0
    snapshot_interval: int = 0
    snapshot_keep: int = 0

    @property
    def enabled(self) -> bool:
        return self.recent > 0 or (self.snapshot_interval > 0 and self.snapshot_keep > 0)

    def snapshot_heights(self, head: int, base: int = 1) -> list[int]:
        """The kept snapshot heights at ``head``, newest first (``head`` itself included
        when it is one: it is served once the next block exists)."""
        n, keep = self.snapshot_interval, self.snapshot_keep
        if n <= 0 or keep <= 0:
            return []
        top = head - head % n
        return [h for h in range(top, max(base, 1) - 1, -n)][:keep]

    def horizon(self, head: int, base: int = 1) -> int:
        """The oldest version of the recent window: every version from it to ``head`` is kept."""
        return max(head - self.recent, base if base > 1 else 0)

    def snapshot_releases(self, head: int, base: int = 1) -> dict[int, int]:
        """The kept snapshots at ``head``, each with the horizon at which it is dropped:
        the one at height ``k`` is kept while the head is below ``k + interval * keep``."""
        span = self.snapshot_interval * self.snapshot_keep
        return {k: self.horizon(k + span, base) for k in self.snapshot_heights(head, base)}

    def keeps(self, height: int, head: int, base: int = 1) -> bool:
        """Whether the state after block ``height`` is kept at ``head``."""
        if not 0 <= height <= head:
            return False
        return self.horizon(head, base) <= height or height in self.snapshot_heights(head, base)


@dataclass(frozen=True, slots=True)
class Committed:
    block: Block
    commit: Commit
    receipts: list[Receipt]


CommitListener = Callable[[Committed], None]


class Ledger:
    def __init__(self, store: ChainStore, app: App, genesis: Genesis, *, commit_in_thread: bool = True,
                 retention: Retention | None = None) -> None:
        #: LevelDB's sync'd write releases the GIL, so it runs in a worker thread; in-memory
        #: simulations under a mock clock commit inline instead (no real I/O in flight).
        self.commit_in_thread = commit_in_thread
        self.store = store
        self.app = app
        self.genesis = genesis
        self.retention = retention or Retention()
        self.state = StoreState(store)
        self._listeners: list[CommitListener] = []
        self._height_changed = trio.Event()
        self._init_genesis()
        filled = self.store.ensure_trie_values()
        if filled:
            log.info("state trie values filled in from the flat state values=%d", filled)
        if not self.retention.enabled and self.store.has_stale_trie():
            # retention was switched off: drop what it kept before any record can come back
            # without a birth entry (prune_trie relies on them while entries are pending)
            self.store.drop_retained_trie()
        self.base = self.store.base_height()
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
            self.store.init_genesis(gh, trie.root, writes, trie_puts=trie.puts, trie_values=trie.values)
            log.info("genesis initialised chain_id=%s genesis_hash=%s", self.genesis.chain_id, gh.hex())
        elif stored != gh:
            raise ConfigError(
                f"genesis.json (hash {gh.hex()[:16]}…) differs from the one this datadir was "
                f"created with ({stored.hex()[:16]}…); use the original genesis or a new datadir"
            )
        else:
            self._check_state_commitment()
        self._check_protocol()

    def _check_protocol(self) -> None:
        """The datadir's chain must have been made by this protocol version (protocol.md
        Appendix B): blocks of another version hash their results differently, so this node
        could neither replay nor extend them. A datadir without the mark and without blocks
        (genesis only, or one written before the mark existed) gets it now; one with blocks
        and no mark predates protocol 3."""
        mark = self.store.get_meta(PROTOCOL_META)
        if mark is None:
            if self.store.head_height() > 0:
                raise ConfigError(
                    f"{self._where()} holds blocks made by an older medchaind (protocol 2 or "
                    f"earlier), and this one speaks protocol {PROTOCOL_VERSION} (its blocks' "
                    "results_hash differs), so it can neither replay nor extend that chain. Start "
                    "the network from a new genesis and new datadirs (protocol.md Appendix B)"
                )
            self.store.put_meta(PROTOCOL_META, str(PROTOCOL_VERSION).encode())
        elif mark != str(PROTOCOL_VERSION).encode():
            raise ConfigError(
                f"{self._where()} was made by protocol {mark.decode(errors='replace')}, and this "
                f"medchaind speaks protocol {PROTOCOL_VERSION}: use the medchaind version that made "
                "it, or start from a new genesis and new datadirs (protocol.md Appendix B)"
            )

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
        retain = self.retention.enabled
        self.store.commit_block(
            block, commit, ex.writes, ex.receipts,
            trie_puts=None if trie is None else trie.puts, trie_deletes=() if trie is None else trie.deletes,
            trie_values=None if trie is None else trie.values,
            trie_deleted_leaves=frozenset() if trie is None else trie.deleted_leaves, retain=retain,
            nonce_unused={tx.hash for tx, r in zip(block.txs, ex.receipts, strict=True)
                          if r.code in NONCE_UNUSED_CODES},
        )
        if retain:
            r = self.retention
            h = block.height
            self.store.prune_trie(r.horizon(h, self.base), snapshots=r.snapshot_releases(h, self.base))

    # ------------------------------------------------------------ older versions

    def oldest_version(self) -> int:
        """The lowest height of the recent window: this node reads and proves the state
        of every height from it to the head (only the head without retention), and of
        its kept snapshots (:meth:`kept_snapshots`)."""
        head = self.tip.height
        return self.retention.horizon(head, self.base) if self.retention.enabled else head

    def kept_snapshots(self) -> list[int]:
        """The heights below the recent window whose state this node keeps, newest first."""
        oldest = self.oldest_version()
        return [h for h in self.retention.snapshot_heights(self.tip.height, self.base) if h < oldest]

    def root_at(self, height: int) -> bytes | None:
        """The ``app_hash`` of the state after block ``height`` if this node keeps that
        version of the state trie, else None (pruned, below the base, or not yet)."""
        tip = self.tip
        if height == tip.height:
            return tip.app_hash
        if not (self.retention.enabled and self.retention.keeps(height, tip.height, self.base)):
            return None
        if height == 0:
            return self.store.get_meta(GENESIS_APP_HASH_META)
        block = self.store.get_block(height)
        return None if block is None else block.header.app_hash

    def version_reader(self, root: bytes) -> ProvingState:
        """A StateReader over a kept version of the state (its root): trie records and
        values by leaf hash, checked against ``root``, so it reads exactly that version."""
        return ProvingState(root, self.state.trie_node, self.state.get, self.state.trie_value)

    def tip_at(self, height: int) -> Tip | None:
        """The tip as it was after block ``height`` (None if that version is not kept).
        ``block_powers`` is the set that signed it when the kept versions tell it."""
        tip = self.tip
        if height == tip.height:
            return tip
        root = self.root_at(height)
        if root is None:
            return None
        powers = self.app.authority_powers(self.version_reader(root))
        if height == 0:
            return Tip(0, self.genesis.hash(), root, self.genesis.genesis_time_ms, powers)
        block = self.store.get_block(height)
        if block is None:
            return None
        header = block.header
        signers: dict[bytes, int] | None = None
        before = self.root_at(height - 1)
        if before is not None:
            signers = self.app.authority_powers(self.version_reader(before))
        elif validators_hash(powers) == header.validators_hash:
            signers = powers
        return Tip(height, block.hash(), root, header.time_ms, powers, block_powers=signers)

    def snapshot_heights(self) -> list[int]:
        """Kept state snapshots this node can serve (newest first): a snapshot is served
        once the block after it is committed (a joining node verifies that block's commit)."""
        head = self.tip.height
        return [h for h in self.retention.snapshot_heights(head, self.base) if self.base <= h < head]

    def restore_snapshot(self, block: Block, commit: Commit, state: list[tuple[str, bytes, bytes]],
                         trie_puts: dict[bytes, bytes], trie_values: dict[bytes, bytes]) -> None:
        """Replace a genesis-only store by a verified state snapshot (medchaind.sync.snapshots)
        and move the tip to its block; nothing below it will be served."""
        self.store.restore_snapshot(block, commit, state, trie_puts, trie_values)
        self.base = self.store.base_height()
        self.state.forget()
        self.tip = self._load_tip()
        ev, self._height_changed = self._height_changed, trio.Event()
        ev.set()

    @property
    def height(self) -> int:
        return self.tip.height

    def add_listener(self, fn: CommitListener) -> None:
        self._listeners.append(fn)

    def is_committed(self, tx_hash: bytes) -> bool:
        """In the store, including a block whose write is in flight: what mempool
        admission asks when the tx's nonce cannot tell (``ChainStore.used_its_nonce``).
        Readers use :meth:`tx_location`."""
        return self.store.has_tx(tx_hash)

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, index)`` of a tx committed as of the tip, else None.

        With ``commit_in_thread`` a block's batch is in the store before :meth:`commit`
        moves the tip, applies the write-set to the state cache and tells the listeners
        (``tx_wait``, the ``tx`` topic, the mempool). A tx of that block is not committed
        for a reader until then, so a client that sees ``committed`` also sees the block
        at the node's height and the state after it (issue 14, session 11: a bench
        counted a tx ``committed`` at a height ``node_info`` did not report yet)."""
        loc = self.store.get_tx_location(tx_hash)
        return loc if loc is not None and loc[0] <= self.tip.height else None

    async def wait_height(self, height: int) -> None:
        while self.tip.height < height:
            await self._height_changed.wait()

    def pending(self, block: Block, ex: Execution) -> tuple[PendingState, Tip]:
        """The state and the tip this ledger will have once ``block`` (the next block,
        executed as ``ex``) is committed: replay checks the block after it against them
        while its write is in flight (``medchaind import``, block sync)."""
        state = PendingState(self.state, ex)
        return state, self._tip_after(block, state)

    def _tip_after(self, block: Block, state: StoreState | PendingState) -> Tip:
        """The tip ``block`` makes (the next block; ``state``: the state after it)."""
        header = block.header
        return Tip(block.height, block.hash(), header.app_hash, header.time_ms, self.app.authority_powers(state),
                   block_powers=self.tip.powers)

    async def commit(self, block: Block, commit: Commit, ex: Execution, *,
                     meanwhile: Callable[[], None] | None = None) -> None:
        """Persist a decided block (atomic, fsync'd), then advance the tip and notify.

        ``meanwhile`` runs on the caller's thread while the write is in flight in its
        worker thread (inline, after it, without ``commit_in_thread``): replay decodes
        the next blocks there instead of idling through the fsync. It must not touch
        this ledger (the tip still is the previous block's)."""
        assert block.height == self.tip.height + 1
        later: BaseException | None = None  # meanwhile's error, raised once the tip is moved
        if self.commit_in_thread and meanwhile is not None:
            later = await _overlapped(functools.partial(self._commit_block, block, commit, ex), meanwhile)
        elif self.commit_in_thread:
            await trio.to_thread.run_sync(self._commit_block, block, commit, ex)
        else:
            self._commit_block(block, commit, ex)
            if meanwhile is not None:
                try:
                    meanwhile()
                except BaseException as exc:  # noqa: BLE001 - raised below, once the tip is moved
                    later = exc
            await trio.lowlevel.checkpoint()
        self.state.apply_writes(ex.writes)
        if ex.trie is not None:
            self.state.remember(ex.trie.puts)
        self.tip = self._tip_after(block, self.state)
        ev, self._height_changed = self._height_changed, trio.Event()
        ev.set()
        committed = Committed(block, commit, ex.receipts)
        for fn in self._listeners:
            try:
                fn(committed)
            except Exception:  # a listener bug must not stop the chain
                log.exception("commit listener failed height=%d", block.height)
        if later is not None:
            raise later


async def _overlapped(work: Callable[[], None], meanwhile: Callable[[], None]) -> BaseException | None:
    """Run ``work`` in a new worker thread and ``meanwhile`` on this one, then wait for
    ``work`` (uncancellable, like ``trio.to_thread.run_sync``: a write in flight is never
    abandoned). The thread starts before ``meanwhile`` runs, which a task spawned with
    ``trio.to_thread`` would not guarantee (it starts at the next checkpoint). Raises
    ``work``'s error; returns ``meanwhile``'s, for the caller to raise once it has
    accounted for the finished write."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    result: list[Any] = []  # the thread's outcome.Outcome (value or exception)

    def deliver(out: Any) -> None:
        result.append(out)
        token.run_sync_soon(done.set)

    trio.lowlevel.start_thread_soon(work, deliver)
    error: BaseException | None = None
    try:
        meanwhile()
    except BaseException as exc:  # noqa: BLE001 - handed back, raised by the caller
        error = exc
    with trio.CancelScope(shield=True):
        await done.wait()
    result[0].unwrap()
    return error
