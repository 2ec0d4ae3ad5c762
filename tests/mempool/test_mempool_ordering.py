"""Reaping and caps (medchaind/mempool/__init__.py ``reap``, ``_evict_for``).

Reap order is arrival order, but each sender's txs only as a contiguous nonce run from
its committed nonce (a tx whose predecessor is missing waits). When the pool is full a
newcomer may evict the highest-nonce tx of the sender holding the most txs, if that
sender holds more than one tx more than the newcomer's sender.
Harness: P, Q, R, X registered (next nonce 1).
"""

from __future__ import annotations

import pytest
from mempool_kit import Harness, names, pub

from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig

BIG = 1 << 30


def test_reap_in_arrival_order() -> None:
    h = Harness()
    for name, nonce in [("P", 1), ("Q", 1), ("P", 2), ("R", 1), ("Q", 2)]:
        h.pool.add(h.update(name, nonce))
    assert names(h.pool.reap(100, BIG)) == [("P", 1), ("Q", 1), ("P", 2), ("R", 1), ("Q", 2)]
    assert len(h.pool) == 5  # reaping does not remove


def test_tx_after_a_nonce_gap_waits_for_the_gap() -> None:
    h = Harness()
    h.pool.add(h.update("P", 3))
    h.pool.add(h.update("Q", 1))
    assert names(h.pool.reap(100, BIG)) == [("Q", 1)]  # P's next nonce is 1, not 3
    h.pool.add(h.update("P", 1))
    assert names(h.pool.reap(100, BIG)) == [("Q", 1), ("P", 1)]  # 3 still waits for 2
    h.pool.add(h.update("P", 2))
    reaped = names(h.pool.reap(100, BIG))
    assert ("P", 1) in reaped and ("P", 2) in reaped
    # P's run is contiguous from 1 (3, which arrived before 1 and 2, may wait a block)
    p = [n for s, n in reaped if s == "P"]
    assert p == list(range(1, 1 + len(p)))

    h.commit(h.pool.reap(100, BIG))
    assert names(h.pool.reap(100, BIG)) == [("P", n) for n in range(h.nonce("P"), 4)]


def test_reap_respects_max_txs() -> None:
    h = Harness()
    for name in "PQR":
        h.pool.add(h.update(name))
    assert names(h.pool.reap(2, BIG)) == [("P", 1), ("Q", 1)]
    assert h.pool.reap(0, BIG) == []


def test_reap_respects_max_bytes() -> None:
    h = Harness()
    txs = [h.update(name) for name in "PQR"]
    for t in txs:
        h.pool.add(t)
    two = len(txs[0].encoded) + len(txs[1].encoded)
    assert names(h.pool.reap(100, two)) == [("P", 1), ("Q", 1)]
    assert names(h.pool.reap(100, two - 1)) == [("P", 1)]
    assert h.pool.reap(100, len(txs[0].encoded) - 1) == []


def _fill(h: Harness) -> None:
    """P holds three txs, Q one: a pool of max_txs=4 is full."""
    for n in (1, 2, 3):
        h.pool.add(h.update("P", n))
    h.pool.add(h.update("Q", 1))


def test_full_pool_newcomer_from_a_small_sender_evicts_the_biggest_senders_highest_nonce() -> None:
    h = Harness(MempoolConfig(max_txs=4))
    _fill(h)
    evicted = h.pool.get(h.pool._by_sender[pub("P")][3])
    assert h.pool.add(h.update("R", 1))
    assert h.pending() == [("P", 1), ("P", 2), ("Q", 1), ("R", 1)]
    assert evicted is not None and evicted.hash not in h.pool
    st = h.pool.statistics()
    assert (st.size, st.evicted) == (4, 1)
    assert st.bytes == sum(len(t.encoded) for t in h.pool._txs.values())


def test_full_pool_newcomer_from_the_biggest_sender_is_refused() -> None:
    h = Harness(MempoolConfig(max_txs=4))
    _fill(h)
    before = h.snapshot()
    with pytest.raises(TxRejected) as err:
        h.pool.add(h.update("P", 4))
    assert err.value.code == "mempool_full"
    assert h.snapshot() == before


def test_full_pool_does_not_evict_between_near_equal_senders() -> None:
    # P holds 2, Q holds 1: evicting P for Q would just swap who holds more.
    h = Harness(MempoolConfig(max_txs=3))
    h.pool.add(h.update("P", 1))
    h.pool.add(h.update("P", 2))
    h.pool.add(h.update("Q", 1))
    before = h.snapshot()
    with pytest.raises(TxRejected, match="mempool_full"):
        h.pool.add(h.update("Q", 2))
    assert h.snapshot() == before
    assert h.pool.add(h.update("R", 1))  # R holds 0: P (2) > 0 + 1, so P's nonce 2 goes
    assert h.pending() == [("P", 1), ("Q", 1), ("R", 1)]


def test_byte_budget_evicts_like_the_count() -> None:
    h = Harness()
    txs = [h.update("P", n) for n in (1, 2, 3)]
    size = len(txs[0].encoded)
    h = Harness(MempoolConfig(max_bytes=3 * size))
    for n in (1, 2, 3):
        h.pool.add(h.update("P", n))
    assert h.pool.add(h.update("Q", 1))
    assert h.pending() == [("P", 1), ("P", 2), ("Q", 1)]
    assert h.pool.statistics().bytes == 3 * size


def test_refused_newcomer_evicts_nothing() -> None:
    # Txs differ in size (a label of 128 four-byte characters is ~500 bytes), so making
    # room under the byte budget can take several evictions, more than are allowed.
    probe = Harness()
    small = len(probe.update("P", 1).encoded)
    big_tx = probe.register("Z", role="provider", nonce=0, label="\U0001d11e" * 128)
    assert len(big_tx.encoded) > 2 * small  # needs more than two evictions of P's txs

    h = Harness(MempoolConfig(max_bytes=3 * small))
    for n in (1, 2, 3):
        h.pool.add(h.update("P", n))
    before = h.snapshot()
    with pytest.raises(TxRejected) as err:
        h.pool.add(big_tx)
    assert err.value.code == "mempool_full"
    assert h.snapshot() == before  # today: P's nonces 3 and 2 are gone
