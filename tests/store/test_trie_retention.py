"""Which state-trie records a store keeps under a retention policy (docs/protocol.md §23.8).

The model: a version of the trie is a set of records (content addressed, so a record
that leaves can come back, as a key added and deleted again restores its parent's
record). Each block commits the difference from the previous version with ``retain``;
after it, ``ChainStore.prune_trie`` runs with what :class:`medchaind.ledger.Retention`
says is kept: every height from the horizon to the head, and the kept snapshots. The
store must then hold every record of every kept version (and the value of every kept
leaf), and nothing else but records *pinned* to a kept snapshot: a record that came
back is pinned to the newest kept snapshot below its departure, since the store no
longer knows where its older life began (a conservative, bounded extra).

Before issue 14's session 10 the store kept every version from the oldest kept snapshot
to the head; the last test shows the difference on a longer chain.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_factories import make_chain

from medchaind import crypto
from medchaind.ledger import Retention
from medchaind.store import ChainStore, MemoryKV, schema

#: records: a leaf's record starts with 0x00, an inner record with 0x01 (medchaind.app.trie)
RECORDS = [bytes((i % 2,)) + b"record %d" % i for i in range(8)]
HASHES = [crypto.sha256(r) for r in RECORDS]


def stored(store: ChainStore) -> set[bytes]:
    return {k[len(schema.TRIE_PREFIX):] for k, _ in store.kv.iterate(schema.TRIE_PREFIX)}


def pins(store: ChainStore) -> dict[bytes, int]:
    prefix = schema.TRIE_PIN_PREFIX
    return {k[len(prefix):]: schema.decode_height(v) for k, v in store.kv.iterate(prefix)}


def run(versions: list[frozenset[int]], retention: Retention, *, reopen: int = 0,
        limit: int = 50_000) -> tuple[ChainStore, int]:
    """Commit ``versions[1:]`` on an empty store (version 0 is empty), pruning after each
    block as the ledger does, and check the store after every block. Returns the store
    and the largest number of records it held beyond the kept versions. ``reopen``: a
    new ChainStore over the same database after that height (a restart); ``limit``:
    prune at most so many entries per call, and call until none is left."""
    store = ChainStore(MemoryKV())
    extra_peak = 0
    for fx, (before, after) in zip(make_chain(len(versions) - 1, n_txs=1),
                                   zip(versions, versions[1:], strict=False), strict=True):
        h = fx.block.height
        if h == reopen + 1 and reopen:
            store = ChainStore(store.kv)
        gone = before - after
        store.commit_block(
            fx.block, fx.commit, fx.state_writes, fx.receipts,
            trie_puts={HASHES[i]: RECORDS[i] for i in after - before},
            trie_deletes=[HASHES[i] for i in gone],
            trie_values={HASHES[i]: b"value %d" % i for i in after - before if i % 2 == 0},
            trie_deleted_leaves=frozenset(HASHES[i] for i in gone if i % 2 == 0),
            retain=True,
        )
        while store.prune_trie(retention.horizon(h), snapshots=retention.snapshot_releases(h), limit=limit) == limit:
            pass
        kept_heights = [v for v in range(h + 1) if retention.keeps(v, h)]
        needed = {HASHES[i] for v in kept_heights for i in versions[v]}
        have = stored(store)
        assert needed <= have, f"height {h}: a kept version lost a record"
        for i in {i for v in kept_heights for i in versions[v]}:
            assert store.trie_node(HASHES[i]) == RECORDS[i]
            if i % 2 == 0:
                assert store.trie_value(HASHES[i]) == b"value %d" % i
        kept_snaps = set(retention.snapshot_heights(h))
        pinned = pins(store)
        for x in have - needed:
            assert pinned.get(x) in kept_snaps, f"height {h}: a record no kept version holds, unpinned"
        extra_peak = max(extra_peak, len(have - needed))
    return store, extra_peak


versions_st = st.lists(st.frozensets(st.integers(0, len(RECORDS) - 1)), min_size=1, max_size=40).map(
    lambda vs: [frozenset(), *vs])


@settings(max_examples=300, deadline=None)
@given(versions=versions_st, recent=st.integers(0, 4), interval=st.integers(0, 5), keep=st.integers(0, 3),
       reopen=st.integers(0, 40), limit=st.sampled_from([1, 2, 50_000]))
def test_the_store_keeps_every_kept_version_and_only_pinned_extras(
        versions: list[frozenset[int]], recent: int, interval: int, keep: int, reopen: int, limit: int) -> None:
    """Also across a restart (the pruning's floor is in memory) and with the work split
    over calls of at most ``limit`` entries."""
    retention = Retention(recent=recent, snapshot_interval=interval, snapshot_keep=keep)
    if not retention.enabled:
        retention = Retention(recent=1)
    store, _ = run(versions, retention, reopen=reopen, limit=limit)
    # switching retention off (the ledger's path) leaves the head's records only
    store.drop_retained_trie()
    assert stored(store) == {HASHES[i] for i in versions[-1]}
    assert not store.has_stale_trie() and not pins(store)


@pytest.mark.parametrize(("recent", "interval", "keep"), [(0, 3, 1), (1, 2, 2), (2, 4, 2)])
def test_without_records_coming_back_nothing_beyond_the_kept_versions_stays(recent: int, interval: int,
                                                                            keep: int) -> None:
    """Each record lives once (no record comes back): then no pin is needed beyond the
    kept snapshots' own records, and the store holds exactly the kept versions."""
    lives = [frozenset({(h + j) % 8 for j in range(3)}) for h in range(1, 6)]  # a sliding window
    versions = [frozenset(), *lives]
    _, extra = run(versions, Retention(recent=recent, snapshot_interval=interval, snapshot_keep=keep))
    assert extra == 0


@pytest.mark.parametrize(("recent", "lives", "until"), [
    (0, [(1, 3), (5, 6)], 10),  # its first departure comes due before it is back: re-filed, pinned
    (2, [(1, 4), (5, 6)], 10),  # back before that entry is due: it is pinned when the entry comes due
])
def test_a_snapshot_holds_a_record_through_a_later_life_that_ends_early(
        recent: int, lives: list[tuple[int, int]], until: int) -> None:
    """X is in snapshot 2 (its first life), comes back, and leaves again; no kept
    version is in its second life, but snapshot 2 is kept until the head reaches
    2 + 2 * 4 = 10: X must stay until then, and go then, wherever its first departure's
    entry stood when it came back."""
    x = 0
    versions = [frozenset({x}) if any(b <= h < s for b, s in lives) else frozenset() for h in range(13)]
    retention = Retention(recent=recent, snapshot_interval=2, snapshot_keep=4)
    store = ChainStore(MemoryKV())
    for fx, (before, after) in zip(make_chain(len(versions) - 1, n_txs=1),
                                   zip(versions, versions[1:], strict=False), strict=True):
        h = fx.block.height
        store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts,
                           trie_puts={HASHES[i]: RECORDS[i] for i in after - before},
                           trie_deletes=[HASHES[i] for i in before - after], retain=True)
        store.prune_trie(retention.horizon(h), snapshots=retention.snapshot_releases(h))
        assert (store.trie_node(HASHES[x]) is not None) == (h < until), h
    assert not pins(store)


def test_a_long_chain_keeps_its_snapshots_not_every_height_between() -> None:
    """200 heights over 8 slots, each height replacing one slot's record by a new one
    (nothing comes back); snapshots every 50 heights, 2 kept, 5 recent heights. At the
    head (200) the kept versions are 195..200 (8 + 5 records) and the snapshots 200 and
    150 (150's 8 records were all replaced since): 21 records, where keeping every height
    from 150 on, as before, held 8 + 50."""
    retention = Retention(recent=5, snapshot_interval=50, snapshot_keep=2)
    store = ChainStore(MemoryKV())
    live = [crypto.sha256(b"\x01r%d" % i) for i in range(8)]
    for fx in make_chain(200, n_txs=1):
        h = fx.block.height
        if h == 1:
            puts, deletes = {crypto.sha256(b"\x01r%d" % i): b"\x01r%d" % i for i in range(8)}, []
        else:
            new = b"\x01r%d" % (h + 7)
            puts, deletes = {crypto.sha256(new): new}, [live[h % 8]]
            live[h % 8] = crypto.sha256(new)
        store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts, trie_puts=puts,
                           trie_deletes=deletes, retain=True)
        store.prune_trie(retention.horizon(h), snapshots=retention.snapshot_releases(h))
    assert retention.snapshot_heights(200) == [200, 150]
    assert len(stored(store)) == 8 + 5 + 8
    assert set(pins(store).values()) == {150}
