"""Mempool admission (medchaind/mempool/__init__.py ``Mempool.add``).

A tx is admitted (True), recognised as already pending (False), or refused with a
TxRejected whose ``code`` is stable; a refusal changes nothing in the pool.
Harness: P, Q, R (patients) and X (provider) are registered, so their next nonce is 1;
A is the only authority; Z is unknown.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mempool_kit import CHAIN_ID, Harness, enc, forge, key, names, pub

from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig
from medchaind.types import Tx, sign_tx


def test_admit() -> None:
    h = Harness()
    tx = h.update("P")
    assert h.pool.add(tx) is True
    assert tx.hash in h.pool
    assert h.pool.get(tx.hash) is tx
    assert h.pool.has_nonce(pub("P"), 1)
    assert not h.pool.has_nonce(pub("P"), 2)
    st = h.pool.statistics()
    assert (st.size, st.bytes, st.admitted, st.rejected, st.evicted) == (
        1,
        len(tx.encoded),
        1,
        0,
        0,
    )
    assert len(h.pool) == 1


def test_duplicate_returns_false_and_changes_nothing() -> None:
    h = Harness()
    tx = h.update("P")
    h.pool.add(tx)
    before = h.snapshot()
    assert h.pool.add(tx) is False
    assert h.snapshot() == before
    assert h.pool.statistics().admitted == 1


# Each case: (setup run before the snapshot, the tx to add, expected code). The pool
# holds one pending tx of Q first, so "unchanged" is checked on a non-empty pool.
Setup = Callable[[Harness], None]
Make = Callable[[Harness], Tx]


def _nothing(h: Harness) -> None:
    pass


def _pending_p1(h: Harness) -> None:
    h.pool.add(h.update("P", nonce=1, tag="first"))


REJECTIONS: list[tuple[str, Setup, Make, str]] = [
    ("bad signature", _nothing, lambda h: forge(h.update("P")), "bad_signature"),
    (
        "signed for another chain",
        _nothing,
        lambda h: h.tx("P", "identity.update", {"enc_key": enc("x")}, chain="other-chain"),
        "wrong_chain",
    ),
    ("nonce already used", _nothing, lambda h: h.update("P", nonce=0), "nonce_too_low"),
    (
        "another tx with the same nonce is pending",
        _pending_p1,
        lambda h: h.update("P", nonce=1, tag="second"),
        "nonce_pending",
    ),
    (
        "nonce beyond the window (next 1, window 4)",
        _nothing,
        lambda h: h.update("P", nonce=6),
        "nonce_too_high",
    ),
    (
        "update from an unknown key",
        _nothing,
        lambda h: h.update("Z", nonce=0),
        "unregistered_sender",
    ),
    (
        "registering an already registered key (handler dry-run)",
        _nothing,
        lambda h: h.register("P"),
        "already_registered",
    ),
    (
        "governance vote by a non-authority (handler dry-run)",
        _nothing,
        lambda h: h.tx("P", "governance.accredit", {"subject": pub("X"), "role": "provider"}),
        "unauthorized",
    ),
    (
        "body fails validation",
        _nothing,
        lambda h: h.tx("P", "identity.update", {"enc_key": b"short"}),
        "invalid_body",
    ),
    ("unknown tx type", _nothing, lambda h: h.tx("P", "records.grant", {}), "unknown_type"),
    ("exact tx already in a block", _nothing, lambda h: h.prelude[0], "already_committed"),
]


@pytest.mark.parametrize(
    ("setup", "make", "code"), [pytest.param(s, m, c, id=i) for i, s, m, c in REJECTIONS]
)
def test_rejection_changes_nothing(setup: Setup, make: Make, code: str) -> None:
    h = Harness(MempoolConfig(max_nonce_ahead=4))
    h.pool.add(h.update("Q"))
    setup(h)
    tx = make(h)
    before = h.snapshot()
    rejected = h.pool.statistics().rejected
    with pytest.raises(TxRejected) as err:
        h.pool.add(tx)
    assert err.value.code == code
    assert err.value.reason
    assert h.snapshot() == before
    assert h.pool.statistics().rejected == rejected + 1


def test_nonce_window_edge_is_admitted() -> None:
    h = Harness(MempoolConfig(max_nonce_ahead=4))
    assert h.pool.add(h.update("P", nonce=5))  # next nonce 1 + 4


def test_next_tx_of_a_sender_is_dry_run_but_later_ones_are_not() -> None:
    # Only the tx with the committed nonce can be dry-run against committed state.
    h = Harness()
    assert h.pool.add(h.register("P", nonce=2))  # would fail its dry-run (already registered)
    with pytest.raises(TxRejected, match="already_registered"):
        h.pool.add(h.register("P", nonce=1))


def test_signature_is_verified_after_the_cheap_checks() -> None:
    h = Harness()
    forged = forge(h.update("P", nonce=0))
    with pytest.raises(TxRejected) as err:
        h.pool.add(forged)
    assert err.value.code == "bad_signature"  # not nonce_too_low: signature comes first
    assert forged.hash not in h.sigs


def test_rate_limit_burst_then_refill() -> None:
    h = Harness(MempoolConfig(sender_rate=2.0, sender_burst=3))
    burst = [h.update("P", nonce=n) for n in (1, 2, 3)]
    for tx in burst:
        assert h.pool.add(tx)
    p4 = h.update("P", nonce=4)
    before = h.snapshot()
    with pytest.raises(TxRejected) as err:
        h.pool.add(p4)
    assert err.value.code == "rate_limited"
    assert h.snapshot() == before
    assert h.pool.add(h.update("Q"))  # other senders have their own bucket
    assert h.pool.add(burst[0]) is False  # a duplicate is answered before the rate limit

    h.clock.now += 0.25  # half a token
    with pytest.raises(TxRejected, match="rate_limited"):
        h.pool.add(p4)
    h.clock.now += 0.25  # a whole token
    assert h.pool.add(p4)
    with pytest.raises(TxRejected, match="rate_limited"):
        h.pool.add(h.update("P", nonce=5))

    h.clock.now += 3600  # refills to the burst, not beyond
    for n in (5, 6, 7):
        assert h.pool.add(h.update("P", nonce=n))
    with pytest.raises(TxRejected, match="rate_limited"):
        h.pool.add(h.update("P", nonce=8))
    assert names(h.pool._txs.values()) == [
        ("P", 1),
        ("P", 2),
        ("P", 3),
        ("Q", 1),
        ("P", 4),
        ("P", 5),
        ("P", 6),
        ("P", 7),
    ]


def test_sender_limit() -> None:
    h = Harness(MempoolConfig(max_per_sender=2))
    h.pool.add(h.update("P", nonce=1))
    h.pool.add(h.update("P", nonce=2))
    before = h.snapshot()
    with pytest.raises(TxRejected) as err:
        h.pool.add(h.update("P", nonce=3))
    assert err.value.code == "sender_limit"
    assert h.snapshot() == before
    assert h.pool.add(h.update("Q"))


def test_after_admission_the_signature_is_cached() -> None:
    h = Harness()
    tx = h.update("P")
    misses = h.sigs.misses
    h.pool.add(tx)
    assert tx.hash in h.sigs
    assert h.sigs.misses == misses + 1


def test_forged_txs_do_not_spend_the_claimed_senders_rate_budget() -> None:
    h = Harness(MempoolConfig(sender_rate=0.001, sender_burst=2))
    for n in (1, 2):  # an attacker, without P's key, sends txs claiming to be from P
        with pytest.raises(TxRejected, match="bad_signature"):
            h.pool.add(forge(h.update("P", nonce=n, tag="spoof")))
    assert h.pool.add(h.update("P"))  # today: TxRejected rate_limited


def test_idle_rate_limit_buckets_are_pruned() -> None:
    h = Harness(MempoolConfig(max_txs=2, sender_rate=1.0, sender_burst=2))
    for i in range(20):  # 20 one-off senders (genuine registrations; most find the pool full)
        try:
            h.pool.add(
                sign_tx(
                    key(f"S{i}"),
                    CHAIN_ID,
                    "identity.register",
                    0,
                    {"role": "patient", "enc_key": enc(str(i))},
                )
            )
        except TxRejected as exc:
            assert exc.code == "mempool_full"
    h.clock.now += 3600  # every bucket has long refilled: all are prunable
    with pytest.raises(TxRejected, match="mempool_full"):
        h.pool.add(h.update("Q"))
    assert len(h.pool._buckets) <= 4 * h.pool.config.max_txs + 1


def test_busy_refuses_client_txs_with_a_retry_hint_and_changes_nothing() -> None:
    """Backpressure (issue 14): above busy_txs pending txs a client's tx is refused
    ``busy`` with a retry hint; nothing is evicted, the refused tx is admitted once the
    pool has room again, and a tx already pending is never refused for load."""
    h = Harness(MempoolConfig(busy_txs=2, busy_retry_ms=250))
    first, second = h.update("P", nonce=1, tag="a"), h.update("Q", nonce=1, tag="b")
    for tx in (first, second):
        h.pool.refuse_if_busy(tx)
        assert h.pool.add(tx)
    assert h.pool.busy()
    third = h.update("R", nonce=1, tag="c")
    before = h.pool.statistics()
    with pytest.raises(TxRejected) as exc:
        h.pool.refuse_if_busy(third)
    assert exc.value.code == "busy" and exc.value.retry_after_ms == 250
    assert h.pool.statistics() == before and third.hash not in h.pool
    h.pool.refuse_if_busy(first)  # already pending: a resubmission is not refused
    h.commit([first])
    h.pool.update([first])
    assert not h.pool.busy()
    h.pool.refuse_if_busy(third)
    assert h.pool.add(third)
