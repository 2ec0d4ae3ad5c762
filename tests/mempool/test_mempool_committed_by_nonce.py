"""Admission's "already committed" check reads the tx index only when the nonce cannot
tell (issue 14, session 11).

A committed tx used its nonce, so a sender whose committed nonce is at or below the tx's
has not committed it, unless its first inclusion did not use the nonce (``bad_nonce``,
``unknown_type``, ``wrong_chain``: only a faulty proposer includes such a tx). The store
keeps those few (``ChainStore.used_its_nonce``); here a model of it, beside the real
mempool and state machine. The read itself is counted: the check must not be skipped
where it decides, and must not run where the nonce already has."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from mempool_kit import Harness

from medchaind.app import Execution
from medchaind.app.app import NONCE_UNUSED_CODES
from medchaind.errors import TxRejected
from medchaind.mempool import Mempool
from medchaind.types import Tx


class IndexedHarness(Harness):
    """The harness, with the store's index of nonce-unused first inclusions and a count of
    tx-index reads."""

    def __init__(self, with_index: bool = True) -> None:
        self.unused: set[bytes] = set()
        self.reads = 0
        super().__init__()

        def committed(h: bytes) -> bool:
            self.reads += 1
            return h in self.committed

        self.pool = Mempool(self.app, lambda: self.state, self.sigs, committed=committed, clock=self.clock,
                            used_its_nonce=(lambda h: h not in self.unused) if with_index else None)

    def commit(self, txs: Iterable[Tx]) -> Execution:
        txs = list(txs)
        first = [t.hash not in self.committed for t in txs]
        ex = super().commit(txs)
        self.unused.update(t.hash for t, r, f in zip(txs, ex.receipts, first, strict=True)
                           if f and r.code in NONCE_UNUSED_CODES)
        return ex


def test_a_tx_whose_first_inclusion_did_not_use_its_nonce_is_still_refused() -> None:
    h = IndexedHarness()
    ahead = h.update("P", nonce=h.nonce("P") + 2, tag="early")
    ex = h.commit([ahead])  # a faulty proposer's block: the tx fails, its nonce unused
    assert ex.receipts[0].code == "bad_nonce"
    h.commit([h.update("P", tag="a")])
    h.commit([h.update("P", tag="b")])
    assert h.nonce("P") == ahead.nonce  # now its nonce would fit
    with pytest.raises(TxRejected) as exc:
        h.pool.add(ahead)
    assert exc.value.code == "already_committed"


def test_the_index_is_read_only_when_the_nonce_cannot_tell() -> None:
    h = IndexedHarness()
    fresh = h.update("P", tag="fresh")
    assert h.pool.add(fresh)
    assert h.reads == 0  # its nonce is the next one: it cannot have been committed
    h.commit(h.pool.reap(10, 1 << 20))
    with pytest.raises(TxRejected) as exc:
        h.pool.add(fresh)  # its nonce is used now: the read confirms and names it
    assert exc.value.code == "already_committed" and h.reads == 1


def test_without_the_index_every_tx_reads_it() -> None:
    h = IndexedHarness(with_index=False)
    for tag in ("a", "b", "c"):
        h.pool.add(h.update("Q", nonce=h.nonce("Q") + "abc".index(tag), tag=tag))
    assert h.reads == 3
