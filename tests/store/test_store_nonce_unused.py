"""The index of committed txs whose first inclusion did not use their nonce (``v1/nnu/``,
``ChainStore.used_its_nonce``), which lets mempool admission skip the tx-index read for a
tx whose nonce already rules it out (issue 14, session 11).

A datadir made by ``init_genesis`` has the index from its first block; one made before it
existed answers False for every tx (admission reads the tx index, as before). A later
copy of a committed tx is not a first inclusion and is not indexed again."""

from __future__ import annotations

from store_factories import make_block, make_chain

from medchaind.store import ChainStore, KVStore, schema
from medchaind.store.chain_store import NONCE_UNUSED_META


def _genesis(store: ChainStore) -> None:
    store.init_genesis(b"\x01" * 32, b"\x02" * 32, {})


def _commit_all(store: ChainStore, n: int = 3) -> list[tuple[bytes, bool]]:
    """Commit ``n`` blocks; returns (tx hash, used its nonce) for every tx."""
    seen = []
    for fx in make_chain(n):
        unused = {tx.hash for tx, r in zip(fx.block.txs, fx.receipts, strict=True) if r.code == "bad_nonce"}
        store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts, nonce_unused=unused)
        seen.extend((tx.hash, tx.hash not in unused) for tx in fx.block.txs)
    return seen


def test_the_index_tells_which_committed_txs_used_their_nonce(kv: KVStore) -> None:
    store = ChainStore(kv)
    _genesis(store)
    assert store.used_its_nonce(b"\x09" * 32)  # nothing committed yet: every tx would use it
    txs = _commit_all(store)
    assert any(used for _, used in txs) and any(not used for _, used in txs)
    for h, used in txs:
        assert store.used_its_nonce(h) is used
        assert (kv.get(schema.nonce_unused_key(h)) is not None) is (not used)
    reopened = ChainStore(kv)  # loaded back from the store
    assert all(reopened.used_its_nonce(h) is used for h, used in txs)


def test_a_datadir_made_before_the_index_cannot_tell(kv: KVStore) -> None:
    store = ChainStore(kv)
    _genesis(store)
    txs = _commit_all(store)
    kv.write([], [schema.meta_key(NONCE_UNUSED_META)])  # as an older medchaind left it
    older = ChainStore(kv)
    assert not any(older.used_its_nonce(h) for h, _ in txs)
    assert not older.used_its_nonce(b"\x09" * 32)


def test_blocks_an_older_medchaind_added_switch_it_off(kv: KVStore) -> None:
    store = ChainStore(kv)
    _genesis(store)
    chain = list(make_chain(3))
    for fx in chain[:2]:
        store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts)
    assert ChainStore(kv).used_its_nonce(chain[0].block.txs[1].hash)
    # an older medchaind commits block 3 without moving the mark (nor indexing anything)
    older = ChainStore(kv)
    older._nonce_unused = None
    third = chain[2]
    older.commit_block(third.block, third.commit, third.state_writes, third.receipts)
    assert kv.get(schema.meta_key(NONCE_UNUSED_META)) == schema.encode_height(2)
    again = ChainStore(kv)
    assert not again.used_its_nonce(chain[0].block.txs[1].hash)
    assert not again.used_its_nonce(third.block.txs[1].hash)


def test_only_a_first_inclusion_is_indexed(kv: KVStore) -> None:
    store = ChainStore(kv)
    _genesis(store)
    one = make_block(1, None, None)
    used, failed = one.block.txs[1], one.block.txs[0]  # receipts: ok, bad_nonce, ...
    store.commit_block(one.block, one.commit, one.state_writes, one.receipts, nonce_unused={failed.hash})
    assert store.used_its_nonce(used.hash) and not store.used_its_nonce(failed.hash)
    # block 2 carries a copy of each (a faulty proposer's), and both copies fail bad_nonce
    two = make_block(2, one.block, one.commit, txs=(used, failed))
    store.commit_block(two.block, two.commit, two.state_writes, two.receipts,
                       nonce_unused={used.hash, failed.hash})
    assert store.used_its_nonce(used.hash)  # its first inclusion used its nonce
    assert kv.get(schema.nonce_unused_key(used.hash)) is None
    assert not store.used_its_nonce(failed.hash)
    assert store.get_tx_location(used.hash) == (1, 1)


def test_a_store_restored_from_a_snapshot_keeps_the_index(kv: KVStore) -> None:
    store = ChainStore(kv)
    _genesis(store)
    snap = list(make_chain(5))[4]
    store.restore_snapshot(snap.block, snap.commit, [], {}, {})
    assert kv.get(schema.meta_key(NONCE_UNUSED_META)) == schema.encode_height(5)
    reopened = ChainStore(kv)
    assert reopened.used_its_nonce(snap.block.txs[0].hash)  # no tx below the base is stored
