"""RoutedKV and the node's database layout: blocks in ``chaindata/blocks``.

The KVStore contract and the model test run against RoutedKV too (``routed-*`` backends
in store_factories); this file covers what only a store of two stores has: the order of
its writes, what a cut-off commit leaves and how ChainStore clears it, the snapshot order
of a scan over both, and moving an older datadir's blocks. The SIGKILL test
(test_crash_atomicity.py) runs on this layout as well.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest
from store_factories import (
    TEST_ROUTES,
    assert_chain_complete,
    commit_fixture,
    make_chain,
)

from medchaind import crypto
from medchaind.errors import StoreError
from medchaind.store import (
    BLOCKS_DIR,
    ROUTED_PREFIXES,
    ChainStore,
    IncompleteStoreError,
    KVStore,
    LevelDBKV,
    MemoryKV,
    RoutedKV,
    open_kv,
    open_store,
    schema,
)
from medchaind.store.kv import Puts

GENESIS = crypto.sha256(b"routed-tests/genesis")
APP = crypto.sha256(b"routed-tests/app")


class Recording(KVStore):
    """A MemoryKV that logs each write and scan, and can fail its next write."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.inner = MemoryKV()
        self.name = name
        self.log = log
        self.fail_next_write = False

    def get(self, key: bytes) -> bytes | None:
        return self.inner.get(key)

    def iterate(
        self, prefix: bytes, *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        self.log.append(f"{self.name} scan")
        return self.inner.iterate(prefix, start=start, reverse=reverse)

    def write(self, puts: Puts, deletes: Iterable[bytes] = (), *, sync: bool = True) -> None:
        if self.fail_next_write:
            self.fail_next_write = False
            raise StoreError("simulated crash")
        put_list = list(puts.items()) if isinstance(puts, Mapping) else list(puts)
        delete_list = list(deletes)
        self.log.append(f"{self.name} write puts={len(put_list)} deletes={len(delete_list)} sync={sync}")
        self.inner.write(put_list, delete_list, sync=sync)

    def close(self) -> None:
        self.inner.close()

    @property
    def closed(self) -> bool:
        return self.inner.closed


def routed(log: list[str]) -> tuple[RoutedKV, Recording, Recording]:
    main, side = Recording("main", log), Recording("side", log)
    return RoutedKV(main, side, ROUTED_PREFIXES), main, side


def test_a_commit_writes_the_block_store_first_then_the_rest() -> None:
    log: list[str] = []
    kv, main, side = routed(log)
    store = ChainStore(kv)
    store.init_genesis(GENESIS, APP, {})
    log.clear()
    fx = next(make_chain(1))
    commit_fixture(store, fx)
    assert log[0] == "side write puts=1 deletes=0 sync=True"  # the block
    assert log[1].startswith("main write") and log[1].endswith("sync=True")
    assert len(log) == 2
    assert [k for k, _ in side.inner.iterate(b"")] == [schema.block_key(1)]
    assert next(main.inner.iterate(schema.BLOCK_PREFIX), None) is None


def test_a_commit_cut_off_between_the_stores_is_removed_when_the_store_opens(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    kv, main, _ = routed(log)
    store = ChainStore(kv)
    store.init_genesis(GENESIS, APP, {})
    chain = list(make_chain(3))
    for fx in chain[:2]:
        commit_fixture(store, fx)
    main.fail_next_write = True  # the process dies after the block store's write
    with pytest.raises(StoreError, match="simulated crash"):
        commit_fixture(store, chain[2])
    assert kv.get(schema.block_key(3)) is not None  # left above the head
    with caplog.at_level(logging.WARNING, logger="medchaind.store.chain_store"):
        reopened = ChainStore(kv)
    assert "removed the block of height 3" in caplog.text
    assert_chain_complete(reopened, 2, 3, 0)
    commit_fixture(reopened, chain[2])  # and the height commits again
    assert_chain_complete(reopened, 3, 3, 0)


def test_blocks_in_a_store_without_genesis_are_still_refused() -> None:
    """An interrupted copy (keys are copied in order: blocks before meta) is not an
    interrupted commit: the store stays refused, as with a single LevelDB."""
    kv = RoutedKV(MemoryKV(), MemoryKV(), ROUTED_PREFIXES)
    fx = next(make_chain(1))
    kv.write([(schema.block_key(1), fx.block.encode()), (schema.commit_key(1), fx.commit.encode())])
    with pytest.raises(IncompleteStoreError, match="holds blocks but no head record"):
        ChainStore(kv)
    assert kv.get(schema.block_key(1)) is not None


def test_a_snapshot_restore_cut_off_between_the_stores_leaves_an_empty_chain() -> None:
    """restore_snapshot writes its block (at the snapshot's height) first, in a store still
    at height 0: cut off there, the node must start at 0 again and refetch the snapshot."""
    kv = RoutedKV(MemoryKV(), MemoryKV(), ROUTED_PREFIXES)
    store = ChainStore(kv)
    store.init_genesis(GENESIS, APP, {})
    fx = list(make_chain(7))[-1]
    kv.write([(schema.block_key(7), fx.block.encode())])  # the side store's part only
    reopened = ChainStore(kv)
    assert reopened.head_height() == 0
    assert kv.get(schema.block_key(7)) is None


def test_blocks_at_more_than_one_height_above_the_head_are_left_alone() -> None:
    kv = RoutedKV(MemoryKV(), MemoryKV(), ROUTED_PREFIXES)
    store = ChainStore(kv)
    store.init_genesis(GENESIS, APP, {})
    chain = list(make_chain(4))
    commit_fixture(store, chain[0])
    # heights 3 and 4 above head 1: not what one cut-off write leaves
    kv.write([(schema.block_key(h), chain[h - 1].block.encode()) for h in (3, 4)])
    ChainStore(kv)
    assert kv.get(schema.block_key(3)) is not None and kv.get(schema.block_key(4)) is not None


def test_a_scan_over_both_stores_takes_the_main_snapshot_first() -> None:
    """So every block the scanned head refers to is in the block store's later snapshot."""
    log: list[str] = []
    kv, _, _ = routed(log)
    kv.write([(schema.block_key(1), b"b"), (schema.meta_key("head"), b"h")])
    log.clear()
    assert [k for k, _ in kv.iterate(b"")] == [schema.block_key(1), schema.meta_key("head")]
    assert log == ["main scan", "side scan"]
    log.clear()
    list(kv.iterate(schema.BLOCK_PREFIX))
    list(kv.iterate(schema.STATE_PREFIX))
    assert log == ["side scan", "main scan"]  # single-store scans touch one store


def test_a_key_both_deleted_and_put_ends_up_present_in_the_side_store() -> None:
    kv = RoutedKV(MemoryKV(), MemoryKV(), TEST_ROUTES)
    kv.write([(b"\xff1", b"old")])
    kv.write([(b"\xff1", b"new")], [b"\xff1", b"\xff2"])
    assert kv.get(b"\xff1") == b"new"


def test_the_node_layout_keeps_blocks_in_chaindata_blocks(tmp_path: Path) -> None:
    kv, store = open_store(tmp_path)
    try:
        store.init_genesis(GENESIS, APP, {})
        for fx in make_chain(3):
            commit_fixture(store, fx)
    finally:
        kv.close()
    with LevelDBKV.open(tmp_path / "chaindata") as main:
        assert next(main.iterate(schema.BLOCK_PREFIX), None) is None
        assert [k for k, _ in main.iterate(schema.COMMIT_PREFIX)] == [schema.commit_key(h) for h in (1, 2, 3)]
        assert main.get(schema.meta_key("head")) == schema.encode_height(3)
    with LevelDBKV.open(tmp_path / "chaindata" / BLOCKS_DIR) as side:
        assert [k for k, _ in side.iterate(b"")] == [schema.block_key(h) for h in (1, 2, 3)]
    kv, store = open_store(tmp_path)
    with kv:
        assert_chain_complete(store, 3, 3, 0)


def test_an_older_datadir_has_its_blocks_moved_when_opened(tmp_path: Path) -> None:
    chaindata = tmp_path / "chaindata"
    with LevelDBKV.open(chaindata) as old:  # the layout before chaindata/blocks
        store = ChainStore(old)
        store.init_genesis(GENESIS, APP, {})
        for fx in make_chain(5):
            commit_fixture(store, fx)
        before = list(old.iterate(b""))
    with open_kv(chaindata) as kv:
        assert list(kv.iterate(b"")) == before  # the same keys and values, seen as one store
        assert next(kv.main.iterate(schema.BLOCK_PREFIX), None) is None
        assert sum(1 for _ in kv.side.iterate(b"")) == 5
        assert_chain_complete(ChainStore(kv), 5, 3, 0)


def test_a_move_cut_off_midway_finishes_at_the_next_open(tmp_path: Path) -> None:
    chaindata = tmp_path / "chaindata"
    with LevelDBKV.open(chaindata) as old:
        store = ChainStore(old)
        store.init_genesis(GENESIS, APP, {})
        for fx in make_chain(5):
            commit_fixture(store, fx)
        before = list(old.iterate(b""))
        blocks = list(old.iterate(schema.BLOCK_PREFIX))
    with LevelDBKV.open(chaindata / BLOCKS_DIR) as side:  # the move copied two blocks, then died
        side.write(blocks[:2])
    with open_kv(chaindata) as kv:
        assert list(kv.iterate(b"")) == before
        assert next(kv.main.iterate(schema.BLOCK_PREFIX), None) is None
        assert kv.move_routed_keys() == 0  # nothing left to move
