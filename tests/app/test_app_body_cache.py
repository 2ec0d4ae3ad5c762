"""The typed-body cache between admission and execution (medchaind/app/module.py
``BodyCache``, ``App.check_tx`` / ``App.deliver_tx``).

What must hold: admission's decode is reused by the re-check and the execution (one
decode per tx); only a tx that passed every check leaves a body, and a failed check
removes it; a hit needs the very body object and tx type the entry came from; the
cache never holds more than its capacity; txs with the same body but different
senders stay apart and execute as their own. Harness: AppChain (A is the authority).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from app_kit import AppChain, enc_key, pub, register_body

from medchaind.app import module as module_mod
from medchaind.app.module import BodyCache
from medchaind.errors import TxRejected
from medchaind.modules.identity.machine import get_identity


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every typed-body decode a TxSpec makes (the raw body each time)."""
    seen: list[Any] = []
    real = module_mod.decode_body

    def counting(cls: type, value: Any) -> Any:
        seen.append(value)
        return real(cls, value)

    monkeypatch.setattr(module_mod, "decode_body", counting)
    return seen


# ------------------------------------------------------------------ the cache alone


def test_bounded_oldest_first_out() -> None:
    c = BodyCache(capacity=3)
    raws = [{"i": i} for i in range(5)]
    for i, raw in enumerate(raws):
        c.put(b"h%d" % i, "m.t", raw, ("typed", i))
    assert len(c) == 3
    assert [h in c for h in (b"h0", b"h1", b"h2", b"h3", b"h4")] == [False, False, True, True, True]
    assert c.get(b"h4", "m.t", raws[4]) == ("typed", 4)
    # re-storing an entry makes it the youngest
    c.put(b"h2", "m.t", raws[2], ("typed", 2))
    c.put(b"h5", "m.t", {"i": 5}, ("typed", 5))
    assert b"h3" not in c and b"h2" in c and len(c) == 3


def test_hit_needs_the_same_body_object_and_type() -> None:
    c = BodyCache()
    raw = {"a": 1}
    c.put(b"h", "m.t", raw, "typed")
    assert c.get(b"h", "m.t", raw) == "typed"
    assert c.get(b"h", "m.t", {"a": 1}) is None  # equal, but not the body the entry came from
    assert c.get(b"h", "m.other", raw) is None
    assert c.get(b"other", "m.t", raw) is None
    assert (c.hits, c.misses) == (1, 3)


def test_discard_ignores_absent_and_capacity_is_positive() -> None:
    c = BodyCache()
    c.put(b"h", "m.t", {}, "typed")
    c.discard([b"absent", b"h"])
    assert len(c) == 0
    with pytest.raises(ValueError, match="at least 1"):
        BodyCache(0)


# ------------------------------------------------------------------ through the app


def test_admission_decode_is_reused_by_recheck_and_execution(decodes: list[Any]) -> None:
    c = AppChain.of({"A": 1})
    tx = c.tx("P", "identity.register", register_body("patient", "P"))
    c.check(tx)            # admission: decodes and stores
    c.check(tx)            # the mempool's re-check: reuses
    ex = c.commit([tx])    # execution: reuses
    assert ex.receipts[0].ok
    assert decodes == [tx.body]
    assert c.app.bodies.hits == 2


def test_a_body_that_fails_decoding_is_not_cached(decodes: list[Any]) -> None:
    c = AppChain.of({"A": 1})
    tx = c.tx("P", "identity.register", {"role": "patient", "enc_key": b"short"})
    with pytest.raises(TxRejected) as exc:
        c.check(tx)
    assert exc.value.code == "invalid_body"
    assert tx.hash not in c.app.bodies
    assert c.commit([tx]).receipts[0].code == "invalid_body"  # decoded again at execution
    assert len(decodes) == 2


def test_a_tx_that_fails_its_dry_run_leaves_nothing() -> None:
    c = AppChain.of({"A": 1})
    c.ok("P", "identity.register", register_body("patient", "P"))
    again = c.tx("P", "identity.register", register_body("patient", "P2"))
    with pytest.raises(TxRejected) as exc:
        c.check(again)
    assert exc.value.code == "already_registered"
    assert again.hash not in c.app.bodies


def test_a_failed_recheck_forgets_the_stored_body() -> None:
    c = AppChain.of({"A": 1})
    tx = c.tx("P", "identity.register", register_body("patient", "P"))
    c.check(tx)
    assert tx.hash in c.app.bodies
    # another tx registers the same key first: the re-check of ``tx`` now fails
    c.commit([c.tx("P", "identity.register", register_body("patient", "other"))])
    with pytest.raises(TxRejected):
        c.check(tx)
    assert tx.hash not in c.app.bodies


def test_same_body_different_senders_stay_apart_and_execute_as_their_own(decodes: list[Any]) -> None:
    c = AppChain.of({"A": 1})
    body = register_body("patient", "shared")
    p, q = c.tx("P", "identity.register", body), c.tx("Q", "identity.register", body)
    assert p.body is q.body and p.hash != q.hash
    c.check(p)
    c.check(q)
    assert p.hash in c.app.bodies and q.hash in c.app.bodies
    ex = c.commit([p, q])
    assert [r.ok for r in ex.receipts] == [True, True]
    registered = [get_identity(c.state, pub(n)) for n in ("P", "Q")]
    assert all(r is not None and r["enc_key"] == enc_key("shared") for r in registered)
    assert c.nonce("P") == c.nonce("Q") == 1
    assert len(decodes) == 2  # one per tx, at admission


def test_a_tx_rebuilt_with_another_body_under_the_same_hash_is_decoded_afresh() -> None:
    c = AppChain.of({"A": 1})
    tx = c.tx("P", "identity.register", register_body("patient", "P"))
    c.check(tx)
    forged = dataclasses.replace(tx, body={"role": "patient", "enc_key": b"short"})
    assert forged.hash == tx.hash
    assert c.commit([forged]).receipts[0].code == "invalid_body"
