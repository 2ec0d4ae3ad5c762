"""SigCache (medchaind/chain/executor.py): each tx's signature is verified once per node,
in a cache bounded by ``capacity`` that drops its oldest entries first; committed hashes
are discarded, and a hash that left the cache is verified again, never trusted."""

from __future__ import annotations

import pytest
from chain_kit import register
from hypothesis import given
from hypothesis import strategies as st

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


def test_discard_forgets_committed_hashes_and_ignores_unknown_ones() -> None:
    cache = SigCache(capacity=10)
    hashes = [bytes([i]) * 32 for i in range(4)]
    for h in hashes:
        cache.add(h)
    cache.discard([hashes[1], hashes[3], b"\xff" * 32])  # never added
    assert [h in cache for h in hashes] == [True, False, True, False]
    assert len(cache) == 2


def test_a_discarded_tx_is_verified_again_not_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Discarding (after a commit) or evicting costs a verification, never a check: a
    # tx whose hash left the cache is verified again, and a forged one is refused.
    cache = SigCache()
    tx = register("X")
    cache.verify(tx)
    cache.discard([tx.hash])
    cache.verify(tx)
    assert (cache.hits, cache.misses) == (0, 2)
    m = tx.to_map()
    m["sig"] = bytes(64)
    forged = tx_from_map(m)
    cache.discard([forged.hash])
    with pytest.raises(SignatureError):
        cache.verify(forged)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SigCache(capacity=0)


@given(capacity=st.integers(1, 8),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=80))
def test_the_cache_never_exceeds_its_capacity_and_keeps_the_newest(capacity: int, ops: list[tuple[bool, int]]) -> None:
    # model: the hashes added and not discarded since, newest last; the cache holds the
    # newest ``capacity`` of them (a re-add does not refresh an entry's age: FIFO, not LRU)
    cache = SigCache(capacity=capacity)
    model: list[bytes] = []
    for add, i in ops:
        h = bytes([i]) * 32
        if add:
            if h not in model:
                model.append(h)
            cache.add(h)
            del model[:-capacity]
        else:
            if h in model:
                model.remove(h)
            cache.discard([h])
        assert len(cache) <= capacity
        assert sorted(h for h in (bytes([j]) * 32 for j in range(16)) if h in cache) == sorted(model)
