"""Signature pre-verification in worker threads (medchaind/consensus/verify.py, issue 14): it
only adds the txs whose signatures verify to the SigCache; a forged tx stays out and is
refused by admission as before; without threads (simulations) it does nothing."""

from __future__ import annotations

import pytest
from mempool_kit import Harness, forge

from medchaind.consensus.verify import MIN_THREADED, Verifier
from medchaind.errors import TxRejected


async def test_preverify_caches_good_signatures_only() -> None:
    h = Harness()
    good = [h.update("P", nonce=1, tag="a"), h.update("Q", nonce=1, tag="b")] + [
        h.update("R", nonce=n, tag=f"r{n}") for n in range(1, 80)]  # more than one chunk
    bad = forge(h.update("X", nonce=1, tag="x"))
    v = Verifier(h.sigs, threads=True, workers=2)
    await v.preverify([*good, bad])
    assert all(t.hash in h.sigs for t in good) and bad.hash not in h.sigs
    misses = h.sigs.misses
    assert h.pool.add(good[0]) and h.sigs.misses == misses  # admission found it verified
    with pytest.raises(TxRejected) as exc:
        h.pool.add(bad)
    assert exc.value.code == "bad_signature"


async def test_preverify_without_threads_changes_nothing() -> None:
    h = Harness()
    tx = h.update("P", nonce=1, tag="a")
    await Verifier(h.sigs, threads=False).preverify([tx])
    assert tx.hash not in h.sigs


async def test_a_few_txs_are_left_to_admission() -> None:
    # fewer than MIN_THREADED: no thread hand-off (it costs as much as the checks); the
    # admission that follows verifies them and refuses the forged one just the same
    h = Harness()
    good = [h.update("P", nonce=1, tag="a"), h.update("Q", nonce=1, tag="b")]
    bad = forge(h.update("X", nonce=1, tag="x"))
    assert len(good) + 1 < MIN_THREADED
    v = Verifier(h.sigs, threads=True, workers=2)
    await v.preverify([*good, bad])
    assert v.verified == 0 and not any(t.hash in h.sigs for t in [*good, bad])
    misses = h.sigs.misses
    assert all(h.pool.add(t) for t in good)
    assert h.sigs.misses == misses + 2 and all(t.hash in h.sigs for t in good)  # verified on admission
    with pytest.raises(TxRejected) as exc:
        h.pool.add(bad)
    assert exc.value.code == "bad_signature"
    # the threshold counts what is left to verify: MIN_THREADED txs are verified ahead
    many = [h.update("R", nonce=n, tag=f"r{n}") for n in range(1, MIN_THREADED + 1)]
    await v.preverify(many)
    assert v.verified == MIN_THREADED and all(t.hash in h.sigs for t in many)
