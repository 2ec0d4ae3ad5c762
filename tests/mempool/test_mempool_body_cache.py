"""The mempool keeps the app's typed-body cache (``App.bodies``) to what it holds.

``App.check_tx`` leaves a tx's typed body for the re-checks and the execution; the pool
discards it when the tx leaves (committed, dropped after a block, evicted) and when the
pool refuses a tx after its checks passed (full). Harness: mempool_kit (P, Q, R
registered patients).
"""

from __future__ import annotations

import pytest
from mempool_kit import Harness

from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig


def test_admitted_txs_keep_their_body_until_committed() -> None:
    h = Harness()
    txs = [h.update("P"), h.update("Q"), h.update("R")]
    for t in txs:
        h.pool.add(t)
    assert all(t.hash in h.app.bodies for t in txs)
    hits = h.app.bodies.hits
    h.commit(txs[:2])
    assert h.app.bodies.hits >= hits + 2  # the block's execution reused admission's decode
    assert [t.hash in h.app.bodies for t in txs] == [False, False, True]
    assert len(h.app.bodies) == 1


def test_a_tx_dropped_after_a_block_loses_its_body() -> None:
    h = Harness()
    mine = h.update("P", 1, tag="here")
    h.pool.add(mine)
    h.commit([h.update("P", 1, tag="there")])  # the same nonce, another tx, from elsewhere
    assert mine.hash not in h.pool
    assert mine.hash not in h.app.bodies
    assert len(h.app.bodies) == 0


def test_an_evicted_tx_loses_its_body() -> None:
    h = Harness(MempoolConfig(max_txs=4))
    for n in (1, 2, 3):
        h.pool.add(h.update("P", n))
    h.pool.add(h.update("Q", 1))
    victim = h.update("P", 3)
    assert h.pool.add(h.update("R", 1))
    assert h.pool.dropped_reason(victim.hash) == "evicted"
    assert victim.hash not in h.app.bodies
    assert len(h.app.bodies) == len(h.pool) == 4


def test_a_tx_refused_for_a_full_pool_after_its_checks_leaves_no_body() -> None:
    h = Harness(MempoolConfig(max_txs=2))
    h.pool.add(h.update("P"))
    h.pool.add(h.update("Q"))
    late = h.update("R")
    with pytest.raises(TxRejected) as exc:
        h.pool.add(late)
    assert exc.value.code == "mempool_full"
    assert late.hash not in h.app.bodies
    assert len(h.app.bodies) == 2
