"""ChainStore over every KVStore backend: commit, read back, preconditions, corruption."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from store_factories import (
    BlockFixture,
    assert_chain_complete,
    commit_fixture,
    h8,
    make_block,
    make_chain,
)

from medchaind import codec, crypto
from medchaind.errors import StoreError
from medchaind.store import (
    GENESIS_APP_HASH_META,
    GENESIS_HASH_META,
    ChainStore,
    KVStore,
    LevelDBKV,
    MemoryKV,
    schema,
)
from medchaind.testing.layouts import to_older_layout
from medchaind.types import Commit, Receipt


def snapshot(kv: KVStore) -> list[tuple[bytes, bytes]]:
    return list(kv.iterate(b""))


def new_kv_like(kv: KVStore) -> KVStore:
    """Another empty store of the same backend as ``kv``."""
    if isinstance(kv, MemoryKV):
        return MemoryKV()
    assert isinstance(kv, LevelDBKV)
    return LevelDBKV.open(kv.path.with_name(kv.path.name + "-2"))


@pytest.fixture
def store(kv: KVStore) -> ChainStore:
    return ChainStore(kv)


@pytest.fixture
def chain5() -> list[BlockFixture]:
    return list(make_chain(5))


def test_empty_store(store: ChainStore) -> None:
    assert store.head_height() == 0
    assert store.head() is None
    assert store.get_block(1) is None
    assert store.get_commit(1) is None
    assert store.get_block_by_hash(bytes(32)) is None
    assert store.get_tx_location(bytes(32)) is None
    assert store.get_receipt(bytes(32)) is None
    assert store.state_get("identity", b"x") is None
    assert list(store.state_iterate("identity")) == []


def test_commit_and_read_back(store: ChainStore, chain5: list[BlockFixture]) -> None:
    for fx in chain5:
        commit_fixture(store, fx)
        assert store.head_height() == fx.block.height
        assert store.head() == fx.block.header
    assert_chain_complete(store, 5, n_txs=3, n_fill=0)
    third = chain5[2]
    assert store.get_block(3) == third.block
    assert store.get_block_by_hash(third.block.hash()) == third.block
    assert store.get_commit(3) == third.commit
    # the stored encodings, as block sync serves them, are the canonical ones
    assert store.get_encoded(3) == (third.block.encode(), third.commit.encode())
    assert store.get_encoded(6) is None
    # block 4 carries block 3's commit as last_commit; the stored commit is the same one here
    block4 = store.get_block(4)
    assert block4 is not None and block4.last_commit == third.commit
    tx = third.block.txs[1]
    assert store.get_tx_location(tx.hash) == (3, 1)
    assert store.get_receipt(tx.hash) == third.receipts[1]
    assert store.get_receipt(third.block.txs[0].hash) == Receipt(
        "bad_nonce", "nonce too low", ({"index": 0},))


def test_head_is_reloaded_on_construction(kv: KVStore, chain5: list[BlockFixture]) -> None:
    first = ChainStore(kv)
    for fx in chain5[:3]:
        commit_fixture(first, fx)
    again = ChainStore(kv)
    assert again.head_height() == 3
    assert again.head() == chain5[2].block.header
    commit_fixture(again, chain5[3])  # and it continues from there
    assert again.head_height() == 4


def test_block_without_txs(store: ChainStore) -> None:
    fx = make_block(1, None, None, n_txs=0)
    commit_fixture(store, fx)
    assert store.get_block(1) == fx.block
    assert store.get_block(1).txs == ()  # type: ignore[union-attr]


# -- state ------------------------------------------------------------------------------


def test_state_writes_and_deletes(store: ChainStore, chain5: list[BlockFixture]) -> None:
    commit_fixture(store, chain5[0])
    assert store.state_get("records", b"tmp/" + h8(1)) == b"tmp"
    commit_fixture(store, chain5[1])  # deletes tmp/1, puts tmp/2
    assert store.state_get("records", b"tmp/" + h8(1)) is None
    assert store.state_get("records", b"tmp/" + h8(2)) == b"tmp"
    assert store.state_get("identity", b"counter") == h8(2)


def test_state_iterate_relative_keys_and_module_isolation(store: ChainStore) -> None:
    fx = make_block(1, None, None)
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("identity", b"a/1"): b"1", ("identity", b"a/2"): b"2", ("identity", b"b"): b"3",
        ("identity", b""): b"root",
        # "identity_x" sorts right after "identity/" and must never leak into it
        ("identity_x", b"a/9"): b"x",
        ("consent", b"a/1"): b"c",
    }
    store.commit_block(fx.block, fx.commit, writes, fx.receipts)
    assert list(store.state_iterate("identity")) == [
        (b"", b"root"), (b"a/1", b"1"), (b"a/2", b"2"), (b"b", b"3")]
    assert list(store.state_iterate("identity", b"a/")) == [(b"a/1", b"1"), (b"a/2", b"2")]
    assert list(store.state_iterate("identity", b"a/", reverse=True)) == [
        (b"a/2", b"2"), (b"a/1", b"1")]
    assert list(store.state_iterate("identity", start=b"a/2")) == [(b"a/2", b"2"), (b"b", b"3")]
    assert list(store.state_iterate("identity", start=b"a/1", reverse=True)) == [
        (b"a/1", b"1"), (b"", b"root")]
    assert list(store.state_iterate("identity_x")) == [(b"a/9", b"x")]
    assert store.state_get("consent", b"a/1") == b"c"


# -- preconditions: a rejected commit writes nothing ----------------------------------------


def _reject(store: ChainStore, fx: BlockFixture, match: str, **override: object) -> None:
    args: dict[str, object] = {
        "block": fx.block, "commit": fx.commit,
        "state_writes": fx.state_writes, "receipts": fx.receipts,
    }
    args.update(override)
    before = snapshot(store.kv)
    head = store.head()
    with pytest.raises(StoreError, match=match):
        store.commit_block(**args)  # type: ignore[arg-type]
    assert snapshot(store.kv) == before
    assert store.head() == head


def test_rejects_gap_and_recommit(store: ChainStore, chain5: list[BlockFixture]) -> None:
    _reject(store, chain5[1], "height 2, expected 1")
    commit_fixture(store, chain5[0])
    _reject(store, chain5[0], "height 1, expected 2")
    _reject(store, chain5[2], "height 3, expected 2")


def test_rejects_wrong_receipt_count(store: ChainStore, chain5: list[BlockFixture]) -> None:
    fx = chain5[0]
    _reject(store, fx, "2 receipts for 3 transactions", receipts=fx.receipts[:2])
    _reject(store, fx, "4 receipts for 3", receipts=fx.receipts + (Receipt(),))


def test_rejects_commit_for_another_block(store: ChainStore, chain5: list[BlockFixture]) -> None:
    fx = chain5[0]
    _reject(store, fx, "commit is for height 2", commit=chain5[1].commit)
    wrong_hash = dataclasses.replace(fx.commit, block_hash=crypto.sha256(b"other"))
    _reject(store, fx, "commit is for height 1 block", commit=wrong_hash)


def test_rejects_block_not_extending_head(store: ChainStore, chain5: list[BlockFixture]) -> None:
    commit_fixture(store, chain5[0])
    fork = make_block(1, None, None, n_txs=1)  # another block 1
    orphan = make_block(2, fork.block, fork.commit)
    _reject(store, orphan, "does not extend the head")


def test_rejects_bad_state_write_arguments(store: ChainStore, chain5: list[BlockFixture]) -> None:
    fx = chain5[0]
    before = snapshot(store.kv)
    with pytest.raises(ValueError, match="module name"):
        store.commit_block(fx.block, fx.commit, {("Bad/Module", b"k"): b"v"}, fx.receipts)
    with pytest.raises(TypeError, match="values must be bytes"):
        store.commit_block(fx.block, fx.commit, {("identity", b"k"): "v"}, fx.receipts)  # type: ignore[dict-item]
    assert snapshot(store.kv) == before and store.head_height() == 0


def test_replayed_tx_keeps_first_inclusion(store: ChainStore, chain5: list[BlockFixture]) -> None:
    first = chain5[0]
    commit_fixture(store, first)
    replayed = first.block.txs[1]
    fx = make_block(2, first.block, first.commit, txs=(replayed, replayed))
    commit_fixture(store, fx)
    assert store.get_tx_location(replayed.hash) == (1, 1)
    assert store.get_receipt(replayed.hash) == first.receipts[1]
    assert store.get_block(2) == fx.block  # the block itself is stored unchanged


# -- genesis -------------------------------------------------------------------------------


GENESIS_HASH = crypto.sha256(b"genesis")
GENESIS_APP_HASH = crypto.sha256(b"genesis app state")


def test_init_genesis_writes_state_and_meta(store: ChainStore, chain5: list[BlockFixture]) -> None:
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("governance", b"authority/A"): b"1", ("identity", b"absent"): None}
    store.init_genesis(GENESIS_HASH, GENESIS_APP_HASH, writes)
    assert store.get_meta(GENESIS_HASH_META) == GENESIS_HASH
    assert store.get_meta(GENESIS_APP_HASH_META) == GENESIS_APP_HASH
    assert store.state_get("governance", b"authority/A") == b"1"
    assert store.head_height() == 0
    commit_fixture(store, chain5[0])  # block 1 goes on top of the genesis state
    assert store.state_get("governance", b"authority/A") == b"1"


def test_init_genesis_twice_or_after_blocks_writes_nothing(
    kv: KVStore, chain5: list[BlockFixture]
) -> None:
    store = ChainStore(kv)
    store.init_genesis(GENESIS_HASH, GENESIS_APP_HASH, {})
    before = snapshot(kv)
    with pytest.raises(StoreError, match="already has a genesis"):
        store.init_genesis(crypto.sha256(b"other"), GENESIS_APP_HASH, {("identity", b"x"): b"1"})
    assert snapshot(kv) == before

    with new_kv_like(kv) as other:
        fresh = ChainStore(other)
        commit_fixture(fresh, chain5[0])
        with pytest.raises(StoreError, match="head height 1"):
            fresh.init_genesis(GENESIS_HASH, GENESIS_APP_HASH, {})


def test_init_genesis_checks_hashes_and_reserves_meta(store: ChainStore) -> None:
    with pytest.raises(StoreError, match="genesis hash must be 32 bytes"):
        store.init_genesis(b"short", GENESIS_APP_HASH, {("identity", b"x"): b"1"})
    assert snapshot(store.kv) == []
    for name in (GENESIS_HASH_META, GENESIS_APP_HASH_META):
        with pytest.raises(StoreError, match="maintained by the chain store"):
            store.put_meta(name, GENESIS_HASH)


# -- meta and blobs ------------------------------------------------------------------------


def test_meta(store: ChainStore) -> None:
    assert store.get_meta("genesis-hash") is None
    store.put_meta("genesis-hash", b"\x01" * 32)
    assert store.get_meta("genesis-hash") == b"\x01" * 32
    with pytest.raises(StoreError, match="maintained by the chain store"):
        store.put_meta("head", h8(99))
    with pytest.raises(ValueError, match="meta name"):
        store.put_meta("no/slashes", b"")


def test_blobs(store: ChainStore) -> None:
    data = b"ciphertext" * 100
    h = crypto.sha256(data)
    assert not store.has_blob(h) and store.get_blob(h) is None
    store.put_blob(h, data)
    assert store.has_blob(h) and store.get_blob(h) == data
    store.delete_blob(h)
    assert not store.has_blob(h) and store.get_blob(h) is None
    store.delete_blob(h)  # erasing twice is fine
    with pytest.raises(ValueError, match="32 bytes"):
        store.put_blob(b"short", data)


# -- corrupt entries raise StoreError naming the namespace ---------------------------------


@pytest.fixture
def committed(store: ChainStore, chain5: list[BlockFixture]) -> BlockFixture:
    commit_fixture(store, chain5[0])
    commit_fixture(store, chain5[1])
    return chain5[1]


@pytest.mark.parametrize("garbage", [b"\xff\x00garbage", codec.encode({"x": 1}), b""])
def test_corrupt_entries(store: ChainStore, committed: BlockFixture, garbage: bytes) -> None:
    kv = store.kv
    tx = committed.block.txs[0]
    cases: list[tuple[bytes, str, Callable[[], object]]] = [
        (schema.block_key(2), "blocks", lambda: store.get_block(2)),
        (schema.commit_key(2), "commits", lambda: store.get_commit(2)),
        (schema.tx_key(tx.hash), "tx index", lambda: store.get_tx_location(tx.hash)),
        (schema.tx_key(tx.hash), "tx index", lambda: store.get_receipt(tx.hash)),
        (schema.block_hash_key(committed.block.hash()), "block-hash index",
         lambda: store.get_block_by_hash(committed.block.hash())),
        (schema.meta_key("head"), "metadata", lambda: ChainStore(kv)),
    ]
    for key, namespace, read in cases:
        good = kv.get(key)
        assert good is not None
        kv.put(key, garbage)
        with pytest.raises(StoreError, match=f"corrupt entry in the {namespace}") as info:
            read()
        assert "restore the datadir" in str(info.value)
        kv.put(key, good)


def test_block_stored_under_wrong_height(store: ChainStore, committed: BlockFixture) -> None:
    store.kv.put(schema.block_key(1), committed.block.encode())
    with pytest.raises(StoreError, match="blocks namespace .* holds height 2"):
        store.get_block(1)


def test_hash_index_pointing_at_other_block(store: ChainStore, committed: BlockFixture) -> None:
    store.kv.put(schema.block_hash_key(committed.block.hash()), h8(1))
    with pytest.raises(StoreError, match="block-hash index"):
        store.get_block_by_hash(committed.block.hash())


def test_head_pointing_at_missing_block(store: ChainStore, committed: BlockFixture) -> None:
    store.kv.put(schema.meta_key("head"), h8(7))
    with pytest.raises(StoreError, match="head is height 7 but that block is missing"):
        ChainStore(store.kv)


def test_corrupt_location_shape(store: ChainStore, committed: BlockFixture) -> None:
    tx = committed.block.txs[0]
    for bad in ([0, 1], [1], [1, -1], ["1", 0], [1, 0, "receipt"], [1, 0, b"r", b"r"]):
        store.kv.put(schema.tx_key(tx.hash), codec.encode(bad))
        with pytest.raises(StoreError, match="tx index"):
            store.get_tx_location(tx.hash)
        with pytest.raises(StoreError, match="tx index"):
            store.get_receipt(tx.hash)
    # a receipt that is not one, inside a well-formed entry
    store.kv.put(schema.tx_key(tx.hash), codec.encode([2, 0, b"\xff\x00garbage"]))
    assert store.get_tx_location(tx.hash) == (2, 0)
    with pytest.raises(StoreError, match="corrupt entry in the tx index"):
        store.get_receipt(tx.hash)


def test_receipts_of_a_store_written_before_they_moved_into_the_tx_entry(
        store: ChainStore, committed: BlockFixture) -> None:
    """An entry ``[height, index]`` with its receipt under ``v1/rcpt/`` (stores written
    before issue 14's session 8) reads as before, and a damaged one says so."""
    kv = store.kv
    for i, (tx, receipt) in enumerate(zip(committed.block.txs, committed.receipts, strict=True)):
        kv.write([(schema.tx_key(tx.hash), codec.encode([2, i])), (schema.receipt_key(tx.hash), receipt.encode())])
        assert store.get_tx_location(tx.hash) == (2, i)
        assert store.has_tx(tx.hash)
        assert store.get_receipt(tx.hash) == receipt
    tx = committed.block.txs[0]
    kv.put(schema.receipt_key(tx.hash), b"\xff\x00garbage")
    with pytest.raises(StoreError, match="corrupt entry in the receipts"):
        store.get_receipt(tx.hash)
    kv.write([], [schema.receipt_key(tx.hash)])
    assert store.get_receipt(tx.hash) is None


def test_commit_for_unknown_height_is_none(store: ChainStore, committed: BlockFixture) -> None:
    assert store.get_commit(3) is None
    assert isinstance(store.get_commit(2), Commit)


@pytest.mark.parametrize("layout", ["new", "mixed", "older"])
def test_pruning_keeps_a_trie_record_that_came_back(store: ChainStore, chain5: list[BlockFixture],
                                                    layout: str) -> None:
    """X enters at 1, leaves at 2 and comes back at 3; Y enters at 1 and leaves at 4.
    Pruning up to height 3 keeps X (its birth, 3, is after it left) and Y (still held by
    version 3); up to 4 it drops Y. In the older layout the births are ``v1/born/``
    entries, which go with their records; "mixed" is a store written in the older
    layout up to height 2 and upgraded then, so X comes back in the new one."""
    x, y = b"\x01record X", b"\x01record Y"
    hx, hy = crypto.sha256(x), crypto.sha256(y)
    trie: list[tuple[dict[bytes, bytes], frozenset[bytes]]] = [
        ({hx: x, hy: y}, frozenset()), ({}, frozenset({hx})), ({hx: x}, frozenset()), ({}, frozenset({hy})),
    ]
    for fx, (puts, deletes) in zip(chain5, trie, strict=False):
        store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts, trie_puts=puts,
                           trie_deletes=deletes, retain=True)
        if layout == "older" or (layout == "mixed" and fx.block.height <= 2):
            to_older_layout(store.kv, txs=False)
    births = {k for k, _ in store.kv.iterate(schema.TRIE_BORN_PREFIX)}
    assert births == (set() if layout == "new" else {schema.trie_born_key(hx), schema.trie_born_key(hy)})
    assert store.prune_trie(3) == 1  # (2, X): it came back
    assert store.trie_node(hx) == x and store.trie_node(hy) == y
    assert store.prune_trie(3) == 0
    assert store.prune_trie(4) == 1  # (4, Y)
    assert store.trie_node(hx) == x and store.trie_node(hy) is None
    assert not store.has_stale_trie()
    left = {k for k, _ in store.kv.iterate(schema.TRIE_BORN_PREFIX)}
    # X's birth stays with X in the older layout; in the mixed one its older birth is
    # left behind (the entry X came back with carries the newer one)
    assert left == (set() if layout == "new" else {schema.trie_born_key(hx)})
