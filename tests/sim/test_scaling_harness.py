"""The pieces that make large in-process clusters cheaper (scripts/scaling.py, issue 14):
the shared signature memo, the non-durable WAL of the harness, the memoised proposer
cycle. Behaviour only; nothing here is timed."""

from __future__ import annotations

import random
from math import gcd
from pathlib import Path

import pytest

from medchaind import crypto
from medchaind.consensus import wal as wal_mod
from medchaind.consensus.wal import WAL
from medchaind.core import BlockHash, Height, Round, Vote, VoteKind
from medchaind.core.validators import _swrr_cycle
from medchaind.testing.cluster import shared_signature_checks


def _reference_cycle(powers: tuple[int, ...]) -> tuple[int, ...]:
    """Smooth weighted round-robin exactly as the proposer rule defines it (no shortcut)."""
    g = 0
    for p in powers:
        g = gcd(g, p)
    weights = [p // g for p in powers]
    total = sum(weights)
    current = [0] * len(weights)
    out = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return tuple(out)


def test_proposer_cycle_is_unchanged_by_the_memo_and_the_equal_power_shortcut() -> None:
    for n in (1, 2, 4, 7, 64, 128):
        for p in (1, 5):
            assert _swrr_cycle((p,) * n) == _reference_cycle((p,) * n) == tuple(range(n))
    rng = random.Random(14)
    for _ in range(200):
        powers = tuple(rng.randint(1, 9) for _ in range(rng.randint(1, 12)))
        assert _swrr_cycle(powers) == _reference_cycle(powers)


def test_shared_signature_checks_answer_as_verify_does_and_restore_it() -> None:
    key = crypto.SigningKey.generate()
    sig = key.sign(crypto.DOMAIN_VOTE, "c", b"payload")
    real = crypto.verify
    with shared_signature_checks() as stats:
        assert crypto.verify is not real
        for _ in range(3):
            assert crypto.verify(key.public_key, sig, crypto.DOMAIN_VOTE, "c", b"payload")
            assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_VOTE, "c", b"other")
            assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_VOTE, "other-chain", b"payload")
        assert stats == {"checked": 3, "shared": 6}
    assert crypto.verify is real


def test_shared_signature_memo_is_bounded() -> None:
    key = crypto.SigningKey.generate()
    with shared_signature_checks(max_entries=4) as stats:
        for i in range(10):
            crypto.verify(key.public_key, bytes(64), crypto.DOMAIN_VOTE, "c", b"%d" % i)
        crypto.verify(key.public_key, bytes(64), crypto.DOMAIN_VOTE, "c", b"0")  # evicted: checked again
    assert stats["checked"] == 11


def _vote(h: int) -> Vote:
    return Vote(VoteKind.PREVOTE, Height(h), Round(0), BlockHash(bytes(32)), crypto.SigningKey.generate().public_key)


@pytest.mark.parametrize("durable", [True, False])
def test_wal_fsyncs_only_when_durable_and_keeps_its_entries_either_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    synced: list[int] = []
    real_fsync = wal_mod.os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(wal_mod.os, "fsync", fsync)
    path = tmp_path / "c.wal"
    w = WAL(path, durable=durable)
    w.append_block(1, b"block")
    w.append(1, _vote(1))
    w.append(2, _vote(2))
    w.prune(2)
    w.close()
    assert bool(synced) is durable
    again = WAL(path)
    assert [m.height for m in again.entries(2)] == [2] and again.entries(1) == ()
    again.close()
