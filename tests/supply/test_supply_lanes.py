"""Recalls first: the mempool's priority lane, over the supply chain's real state.

A pool full of bulk event captures (more than several blocks' worth) takes a recall
anyway, proposes it first, and the block it goes into commits it.
"""

from __future__ import annotations

import pytest
from supply_kit import GTIN_A, LOT1, SupplyChain, commission, observe, pub, sgtin

from medchaind.app import App
from medchaind.chain import SigCache
from medchaind.errors import TxRejected
from medchaind.mempool import Mempool, MempoolConfig
from medchaind.types import Tx

SENDERS = ("M", "N", "D", "E", "P", "Q")


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool_for(c: SupplyChain, **cfg: int) -> Mempool:
    return Mempool(c.app, lambda: c.state, SigCache(), committed=lambda h: False,
                   config=MempoolConfig(**cfg), clock=Clock())


def bulk(c: SupplyChain, n_per_sender: int) -> list[Tx]:
    """Captures from every trading partner, nonces counting up from each one's committed."""
    out = []
    for name in SENDERS:
        base = c.nonce(name)
        out += [c.tx(name, "supply.capture", {"events": [observe(sgtin(f"{name}{i}"))]}, nonce=base + i)
                for i in range(n_per_sender)]
    return out


def recall(c: SupplyChain, by: str = "F") -> Tx:
    return c.tx(by, "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "I", "reason": "sterility"})


@pytest.fixture
def c() -> SupplyChain:
    chain = SupplyChain.cast()
    chain.captured("M", commission(sgtin("u1")))
    return chain


def test_a_recall_behind_a_full_mempool_commits_in_the_next_block(c: SupplyChain) -> None:
    # room for 1,000 txs, 100 of them reserved for the priority lane; blocks of 50
    pool = pool_for(c, max_txs=1_000, priority_reserve_txs=100)
    txs = bulk(c, 200)  # 1,200 captures: 900 fit, then the default lane is full
    refused = 0
    for tx in txs:
        try:
            pool.add(tx)
        except TxRejected as exc:
            assert exc.code == "mempool_full"
            refused += 1
    assert len(pool) == 900 and refused > 0
    r = recall(c)
    assert pool.add(r)  # the reserve takes it
    block = pool.reap(50, 1 << 30)
    assert block[0] == r and len(block) == 50
    ex = c.commit(block)
    assert ex.receipts[0].ok and ex.receipts[0].events[0]["type"] == "supply.recalled"
    assert c.query("supply.lot", {"gtin": GTIN_A, "lot_id": LOT1})["recall"]["cls"] == "I"


def test_with_the_reserve_used_up_a_priority_tx_evicts_bulk_and_never_the_reverse(c: SupplyChain) -> None:
    pool = pool_for(c, max_txs=30, priority_reserve_txs=0)
    for tx in bulk(c, 5):
        pool.add(tx)
    assert len(pool) == 30
    r = recall(c)
    assert pool.add(r)
    assert len(pool) == 30 and pool.statistics().evicted == 1 and r.hash in pool
    # a default newcomer makes room by evicting bulk, never the recall
    for name in ("X", "A"):
        if name == "A":
            c.register("A", "provider")
        assert pool.add(c.tx(name, "identity.update", {"enc_key": bytes(32)}))
    assert r.hash in pool and len(pool) == 30


def test_priority_after_a_default_tx_of_the_same_sender_waits_for_it(c: SupplyChain) -> None:
    pool = pool_for(c)
    first = c.tx("M", "supply.capture", {"events": [observe(sgtin("u1"))]})
    second = c.tx("M", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "II", "reason": "x"},
                  nonce=c.nonce("M") + 1)
    other = c.tx("D", "supply.capture", {"events": [observe(sgtin("u1"))]})
    for tx in (first, other, second):
        pool.add(tx)
    assert pool.reap(10, 1 << 30) == [first, other, second]
    assert pool.reap(1, 1 << 30) == [first]


def test_one_sender_cannot_hog_the_priority_lane(c: SupplyChain) -> None:
    pool = pool_for(c, max_priority_per_sender=2)
    base = c.nonce("F")
    def notice(i: int) -> Tx:
        return c.tx("F", "supply.case_open", {"kind": "suspect", "reason": "counterfeit", "oids": [sgtin(f"s{i}")]},
                    nonce=base + i)

    for i in range(2):
        pool.add(notice(i))
    with pytest.raises(TxRejected) as err:
        pool.add(notice(2))
    assert err.value.code == "sender_limit"
    # admission only: nothing was committed
    assert App.nonce(c.state, pub("F")) == base
