"""The node's committed chain: the store, the app and the current tip, with one writer.

The consensus engine is the only caller of :meth:`Ledger.commit`; everything else
(IPC, mempool, sync) reads. Committing writes the block, its commit certificate, the
state changes, indexes, receipts and the new head in one ``sync=True`` LevelDB batch
(``ChainStore.commit_block``), then moves the in-memory tip and tells the listeners.
A crash at any point leaves either the old head or the new one, never a mix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import trio

from ..app import App, Execution
from ..app.governance import authority_powers
from ..chain import Tip
from ..errors import ConfigError
from ..store import ChainStore
from ..types import Block, Commit, Genesis, Receipt

log = logging.getLogger(__name__)


class StoreState:
    """Adapts the committed state in a ChainStore to the app's StateReader protocol."""

    __slots__ = ("store",)

    def __init__(self, store: ChainStore) -> None:
        self.store = store

    def get(self, module: str, key: bytes) -> bytes | None:
        return self.store.state_get(module, key)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.store.state_iterate(module, prefix)


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
        stored = self.store.get_meta("genesis_hash")
        if stored is None:
            writes, app_hash = self.app.genesis_state()
            self.store.init_genesis(gh, app_hash, {k: v for k, v in writes.items()})
            log.info("genesis initialised chain_id=%s genesis_hash=%s", self.genesis.chain_id, gh.hex())
        elif stored != gh:
            raise ConfigError(
                f"genesis.json (hash {gh.hex()[:16]}…) differs from the one this datadir was "
                f"created with ({stored.hex()[:16]}…); use the original genesis or a new datadir"
            )

    def _load_tip(self) -> Tip:
        powers = authority_powers(self.state)
        head = self.store.head()
        if head is None:
            app_hash = self.store.get_meta("genesis_app_hash")
            assert app_hash is not None
            return Tip(0, self.genesis.hash(), app_hash, self.genesis.genesis_time_ms, powers)
        return Tip(head.height, head.hash(), head.app_hash, head.time_ms, powers)

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
            await trio.to_thread.run_sync(self.store.commit_block, block, commit, ex.writes, ex.receipts)
        else:
            self.store.commit_block(block, commit, ex.writes, ex.receipts)
            await trio.lowlevel.checkpoint()
        self.tip = Tip(block.height, block.hash(), block.header.app_hash, block.header.time_ms,
                       authority_powers(self.state))
        ev, self._height_changed = self._height_changed, trio.Event()
        ev.set()
        committed = Committed(block, commit, ex.receipts)
        for fn in self._listeners:
            try:
                fn(committed)
            except Exception:  # a listener bug must not stop the chain
                log.exception("commit listener failed height=%d", block.height)
