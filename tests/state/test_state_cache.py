"""The committed-state value cache of :class:`medchaind.ledger.StoreState`.

Admission, the mempool's re-check after each block and block execution read the same
keys of a tx (its sender's nonce and identity, what its handler reads); the ledger's
state reader memoises point reads, absent keys included, and takes each committed
block's write-set before the tip moves. These tests pin that a commit between two
admissions is seen (memory and LevelDB stores, the commit inline and in a worker
thread), that the cache always answers what the store holds, that a read racing a
commit cannot leave the old value behind, and that the cache stays bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.app import App
from medchaind.chain import SigCache, build_block
from medchaind.errors import TxRejected
from medchaind.ledger import Ledger, StoreState
from medchaind.mempool import Mempool
from medchaind.modules import make_app
from medchaind.store import ChainStore, LevelDBKV, MemoryKV
from medchaind.testing.appkit import enc_key, key, make_genesis, pub
from medchaind.types import Commit, Tx, sign_commit_vote, sign_tx

GENESIS = make_genesis({"A": 1})
NONCE = "auth"


def register(name: str, nonce: int = 0, enc: str | None = None) -> Tx:
    return sign_tx(key(name), GENESIS.chain_id, "identity.register", nonce,
                   {"role": "patient", "enc_key": enc_key(enc or name)})


def update(name: str, nonce: int, enc: str) -> Tx:
    return sign_tx(key(name), GENESIS.chain_id, "identity.update", nonce, {"enc_key": enc_key(enc)})


async def commit(ledger: Ledger, txs: list[Tx]) -> None:
    tip = ledger.tip
    block, ex = build_block(ledger.app, ledger.state, tip, txs, proposer=pub("A"), time_ms=tip.time_ms + 1000,
                            round_=0, last_commit=ledger.store.get_commit(tip.height))
    sig = sign_commit_vote(key("A"), GENESIS.chain_id, block.height, 0, block.hash())
    await ledger.commit(block, Commit(block.height, 0, block.hash(), (sig,)), ex)


def open_ledger(backend: str, tmp_path: Path, in_thread: bool) -> Ledger:
    kv = MemoryKV() if backend == "memory" else LevelDBKV.open(tmp_path / "chaindata")
    return Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=in_thread)


def nonce_key(name: str) -> bytes:
    return b"n/" + pub(name)


@pytest.mark.parametrize("in_thread", [False, True], ids=["inline", "thread"])
@pytest.mark.parametrize("backend", ["memory", "leveldb"])
async def test_commit_between_two_admissions_is_seen(backend: str, in_thread: bool, tmp_path: Path) -> None:
    ledger = open_ledger(backend, tmp_path, in_thread)
    pool = Mempool(ledger.app, lambda: ledger.state, SigCache(), ledger.is_committed)
    try:
        assert pool.add(register("P"))
        # Z is unknown: its update is refused, and the reads behind the refusal are cached
        with pytest.raises(TxRejected) as exc:
            pool.add(update("Z", 0, "z"))
        assert exc.value.code == "unregistered_sender"
        # a block from elsewhere registers Z and uses P's nonce 0 with another tx
        block_txs = [register("Z"), register("P", enc="other")]
        await commit(ledger, block_txs)
        pool.update(block_txs)
        assert len(pool) == 0  # P's pending register lost its nonce
        assert pool.add(update("Z", 1, "z"))  # Z is registered now
        with pytest.raises(TxRejected) as exc:
            pool.add(register("P"))
        assert exc.value.code in {"nonce_too_low", "already_committed"}
        with pytest.raises(TxRejected) as exc:
            pool.add(update("P", 0, "late"))
        assert exc.value.code == "nonce_too_low"
        assert pool.add(update("P", 1, "p2"))
        assert App.nonce(ledger.state, pub("P")) == 1
        assert ledger.store.state_get(NONCE, nonce_key("P")) == (1).to_bytes(8, "big")
    finally:
        ledger.store.kv.close()


class CountingStore:
    """A ChainStore stand-in for StoreState: state_get over a dict, counted."""

    def __init__(self, data: dict[tuple[str, bytes], bytes]) -> None:
        self.data = data
        self.reads = 0
        self.during_read: Any = None

    def state_get(self, module: str, key: bytes) -> bytes | None:
        self.reads += 1
        value = self.data.get((module, key))
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return value


def test_each_key_is_read_from_the_store_once_until_a_commit_writes_it() -> None:
    store = CountingStore({("m", b"a"): b"1"})
    state = StoreState(store)  # type: ignore[arg-type]
    assert [state.get("m", b"a"), state.get("m", b"a"), state.get("m", b"b"), state.get("m", b"b")] == \
        [b"1", b"1", None, None]
    assert store.reads == 2  # a miss is cached too
    # a commit writes b and deletes a: the cache answers the new values without reading
    store.data = {("m", b"b"): b"2"}
    state.apply_writes({("m", b"a"): None, ("m", b"b"): b"2"})
    assert (state.get("m", b"a"), state.get("m", b"b"), store.reads) == (None, b"2", 2)
    state.forget()  # the store was replaced (snapshot restore): everything is read again
    assert state.get("m", b"b") == b"2" and store.reads == 3


def test_a_read_that_races_a_commit_keeps_nothing() -> None:
    store = CountingStore({("m", b"a"): b"old"})
    state = StoreState(store)  # type: ignore[arg-type]

    def commit_meanwhile() -> None:
        # another thread's read got "old"; before it returns, a block's batch and
        # write-set land (the ledger applies the write-set before moving the tip)
        store.data[("m", b"a")] = b"new"
        state.apply_writes({("m", b"a"): b"new"})

    store.during_read = commit_meanwhile
    assert state.get("m", b"a") == b"old"  # what the store held when the read began
    assert state.get("m", b"a") == b"new"  # the racing read did not overwrite the commit's value
    assert store.reads == 1  # ... which the cache serves


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 6),
    max_bytes=st.sampled_from([0, 4, 512]),
    steps=st.lists(st.tuples(st.sampled_from(["read", "commit"]), st.integers(0, 7), st.binary(max_size=8) | st.none()),
                   max_size=60),
)
def test_the_cache_always_answers_what_the_store_holds(
    capacity: int, max_bytes: int, steps: list[tuple[str, int, bytes | None]]
) -> None:
    store = CountingStore({})
    small = type("SmallStoreState", (StoreState,),
                 {"__slots__": (), "VALUE_CACHE_ENTRIES": capacity, "VALUE_CACHE_MAX_BYTES": max_bytes})
    state = small(store)
    for op, k, value in steps:
        sk = ("m", bytes([k]))
        if op == "commit":
            if value is None:
                store.data.pop(sk, None)
            else:
                store.data[sk] = value
            state.apply_writes({sk: value})
        assert state.get(*sk) == store.data.get(sk)
        assert len(state._values) <= capacity
        assert all(v is None or len(v) <= max_bytes for v in state._values.values())


def test_the_trie_record_cache_keeps_the_newest_records_within_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records remembered past the bound push out the oldest first (FIFO), whether they
    come with a committed block (:meth:`StoreState.remember`) or from a store read."""
    monkeypatch.setattr(StoreState, "TRIE_CACHE_RECORDS", 8)
    kv = MemoryKV()
    state = StoreState(ChainStore(kv))
    first = {bytes([i]) * 32: b"r%d" % i for i in range(6)}
    state.remember(first)
    second = {bytes([i]) * 32: b"r%d" % i for i in range(6, 12)}
    state.remember(second)
    kept = list(state._trie_cache)
    assert kept == [bytes([i]) * 32 for i in range(4, 12)]  # the 4 oldest went, in order
    # a hit is answered from the cache, not the (empty) store
    assert state.trie_node(bytes([11]) * 32) == b"r11"
    assert state.trie_node(bytes([0]) * 32) is None  # dropped, and the store never had it
    assert len(state._trie_cache) == 8
