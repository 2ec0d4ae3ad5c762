"""A tx once admitted is never silently lost (issue 14): every tx that leaves the pool
without being committed is remembered with its reason code (``Mempool.dropped_reason``,
bounded by ``dropped_history``) and reported to ``on_dropped``. Committed txs and
refused newcomers are not "dropped". Harness: P, Q, R (patients), X (provider)
registered; Z unknown.
"""

from __future__ import annotations

import pytest
from mempool_kit import Harness, names, pub

from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig
from medchaind.types import Tx


def _heard() -> tuple[list[tuple[Tx, str]], Harness]:
    heard: list[tuple[Tx, str]] = []
    return heard, Harness(on_dropped=lambda tx, reason: heard.append((tx, reason)))


# (case, how the tx leaves the pool, expected reason code)
def _nonce_used(h: Harness) -> Tx:
    mine = h.update("P", 1, tag="here")
    h.pool.add(mine)
    h.commit([h.update("P", 1, tag="there")])  # the same nonce, another tx, from elsewhere
    return mine


def _reregistration(h: Harness) -> Tx:
    first, second = h.register("Z", nonce=0), h.register("Z", nonce=1, role="payer")
    h.pool.add(first)
    h.pool.add(second)
    h.commit([first])  # now Z is registered: the second registration can only fail
    return second


def _gap_expired(h: Harness) -> Tx:
    gapped = h.update("P", nonce=h.nonce("P") + 5)
    h.pool.add(gapped)
    h.clock.now += h.pool.config.gap_ttl_s + 1
    h.commit([])
    return gapped


CASES = [
    ("nonce used by another tx in a block", _nonce_used, "nonce_used"),
    ("re-check against the new state fails", _reregistration, "already_registered"),
    ("stuck behind a nonce gap past gap_ttl_s", _gap_expired, "nonce_gap_expired"),
]


@pytest.mark.parametrize(("case", "leave", "reason"), CASES, ids=[c[0] for c in CASES])
def test_a_tx_dropped_after_a_block_is_remembered_with_its_reason(case: str, leave: object, reason: str) -> None:
    heard, h = _heard()
    tx = leave(h)  # type: ignore[operator]
    assert tx.hash not in h.pool
    assert h.pool.dropped_reason(tx.hash) == reason
    assert heard == [(tx, reason)]
    assert h.pool.statistics().dropped == 1


def test_an_evicted_tx_is_remembered_as_evicted() -> None:
    heard: list[tuple[Tx, str]] = []
    h = Harness(MempoolConfig(max_txs=4), on_dropped=lambda tx, reason: heard.append((tx, reason)))
    for n in (1, 2, 3):
        h.pool.add(h.update("P", n))
    h.pool.add(h.update("Q", 1))
    victim = h.update("P", 3)
    assert h.pool.add(h.update("R", 1))  # a full pool: P's highest nonce makes room
    assert names(h.pool.txs()) == [("P", 1), ("P", 2), ("Q", 1), ("R", 1)]
    assert h.pool.dropped_reason(victim.hash) == "evicted"
    assert heard == [(victim, "evicted")]
    assert h.pool.statistics().evicted == 1


def test_committed_and_refused_txs_are_not_dropped() -> None:
    heard, h = _heard()
    tx = h.update("P")
    h.pool.add(tx)
    h.commit([tx])
    with pytest.raises(TxRejected):
        h.pool.add(h.update("Q", nonce=0))  # nonce already used: refused at the door
    assert h.pool.dropped_reason(tx.hash) is None
    assert heard == []
    assert h.pool.statistics().dropped == 0


def test_a_dropped_tx_admitted_again_is_pending_not_dropped() -> None:
    heard, h = _heard()
    gapped = _gap_expired(h)
    assert h.pool.dropped_reason(gapped.hash) == "nonce_gap_expired"
    assert h.pool.add(gapped)  # the client sends it again (the pool had forgotten it)
    assert gapped.hash in h.pool
    assert h.pool.dropped_reason(gapped.hash) is None


def test_the_record_is_bounded_and_forgets_the_oldest_first() -> None:
    heard: list[tuple[Tx, str]] = []
    h = Harness(MempoolConfig(dropped_history=2), on_dropped=lambda tx, r: heard.append((tx, r)))
    gapped = [h.update(n, nonce=h.nonce(n) + 5) for n in ("P", "Q", "R")]
    for i, tx in enumerate(gapped):
        h.pool.add(tx)
        h.clock.now += h.pool.config.gap_ttl_s + 1
        h.commit([])
        assert h.pool.dropped_reason(tx.hash) == "nonce_gap_expired", i
    assert h.pool.dropped_reason(gapped[0].hash) is None  # the oldest is forgotten
    assert [h.pool.dropped_reason(t.hash) for t in gapped[1:]] == ["nonce_gap_expired"] * 2
    assert len(heard) == 3  # the callback heard every drop, bounded record or not
    assert [t.sender for t, _ in heard] == [pub("P"), pub("Q"), pub("R")]
