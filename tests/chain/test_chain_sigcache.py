"""SigCache (medchaind/chain/executor.py): each tx's signature is verified once per node,
in a cache bounded by ``capacity`` that drops its oldest entries first."""

from __future__ import annotations

import pytest
from chain_kit import register

from medchaind.chain import SigCache
from medchaind.errors import SignatureError
from medchaind.types.tx import tx_from_map


def test_verified_tx_is_not_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = SigCache()
    tx = register("X")
    cache.verify(tx)
    assert tx.hash in cache
    assert (cache.hits, cache.misses) == (0, 1)

    calls = []
    monkeypatch.setattr(type(tx), "verify_signature", lambda self: calls.append(self))
    cache.verify(tx)
    cache.verify(tx)
    assert calls == []
    assert (cache.hits, cache.misses) == (2, 1)


def test_bad_signature_is_not_cached() -> None:
    cache = SigCache()
    m = register("X").to_map()
    m["sig"] = bytes(64)
    forged = tx_from_map(m)
    for attempt in (1, 2):
        with pytest.raises(SignatureError):
            cache.verify(forged)
        assert forged.hash not in cache
        assert (cache.hits, cache.misses) == (0, attempt)


def test_txs_differing_only_in_signature_are_distinct_entries() -> None:
    # The cache key is the hash of the full encoding, signature included: a cached good
    # tx must not vouch for a copy carrying another signature.
    cache = SigCache()
    good = register("X")
    cache.verify(good)
    m = good.to_map()
    m["sig"] = bytes(64)
    with pytest.raises(SignatureError):
        cache.verify(tx_from_map(m))


def test_capacity_evicts_the_oldest() -> None:
    cache = SigCache(capacity=3)
    hashes = [bytes([i]) * 32 for i in range(5)]
    for h in hashes[:3]:
        cache.add(h)
    assert all(h in cache for h in hashes[:3])
    cache.add(hashes[3])
    assert hashes[0] not in cache
    assert all(h in cache for h in hashes[1:4])
    cache.add(hashes[4])
    assert [h in cache for h in hashes] == [False, False, True, True, True]
    assert len(cache._seen) == 3


def test_evicted_tx_is_verified_again() -> None:
    cache = SigCache(capacity=1)
    a, b = register("X"), register("Y")
    cache.verify(a)
    cache.verify(b)  # evicts a
    cache.verify(a)
    assert (cache.hits, cache.misses) == (0, 3)
