"""Maps built in canonical key order (medchaind/app/module.py ``canonical_order``).

``codec.encode`` skips cbor2's canonical sort when every map of a value already has its
keys in canonical order (codec.py). Events (hashed into ``results_hash``), receipts
(stored) and the records of the bench's tx types are built in that order so that they
take the plain path; the bytes are the same either way, which these tests pin down:
the order ``canonical_order`` gives is the order of the canonical encoding, and the maps
the hot paths build are in it.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec
from medchaind.app.module import TxContext, canonical_order
from medchaind.testing.appkit import AppChain, digest, enc_key
from medchaind.types import Receipt

names_st = st.lists(st.text(min_size=0, max_size=8), min_size=1, max_size=12, unique=True)


def _ordered(obj: Any) -> bool:
    """Whether every map in ``obj`` has its keys in canonical order."""
    if isinstance(obj, dict):
        return list(obj) == list(canonical_order(tuple(obj))) and all(_ordered(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(_ordered(v) for v in obj)
    return True


@settings(max_examples=300, deadline=None)
@given(names=names_st)
def test_canonical_order_is_the_key_order_of_the_canonical_encoding(names: list[str]) -> None:
    m = {n: i for i, n in enumerate(names)}
    decoded = codec.decode(codec.encode(m))  # decode keeps the encoding's key order
    assert list(decoded) == list(canonical_order(tuple(names)))
    assert decoded == m


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.text(min_size=1, max_size=10).filter(str.isidentifier), st.integers(0, 9),
                              max_size=8))
def test_emit_builds_the_event_of_before_in_canonical_order(fields: dict[str, int]) -> None:
    ctx = TxContext(module="anchor", state=None, block=None, sender=b"", tx_hash=b"")  # type: ignore[arg-type]
    ctx.emit("anchored", **fields)
    (event,) = ctx.events
    assert event == {"type": "anchor.anchored", **fields}
    assert _ordered(event)


def test_receipt_map_is_in_canonical_order_and_encodes_the_same() -> None:
    r = Receipt("ok", "a reason", ({"type": "x.y", "digest": b"d", "kind": "k"},))
    assert list(r.to_map()) == ["code", "events", "reason"] == list(canonical_order(("code", "reason", "events")))
    assert codec.decode(r.encode()) == {"code": "ok", "reason": "a reason", "events": [dict(r.events[0])]}


@pytest.mark.parametrize("tx_type", ["identity.register", "anchor.commit"])
def test_bench_txs_write_and_emit_maps_in_canonical_order(tx_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records the handlers put and the events they emit take codec.encode's plain path."""
    c = AppChain.of({"A": 1})
    if tx_type == "anchor.commit":
        c.register("P", "patient")
        body: dict[str, Any] = {"digest": digest("doc"), "kind": "audit-head", "meta": b"m" * 750}
    else:
        body = {"role": "provider", "enc_key": enc_key("P"), "label": "Clinic"}
    put_values: list[Any] = []
    real_put = TxContext.put

    def recording_put(self: TxContext, key: bytes, value: Any) -> None:
        put_values.append(value)
        real_put(self, key, value)

    monkeypatch.setattr(TxContext, "put", recording_put)
    ex = c.commit([c.tx("P", tx_type, body)])
    assert [r.code for r in ex.receipts] == ["ok"]
    assert put_values and all(isinstance(v, dict) and _ordered(v) for v in put_values)
    assert all(_ordered(r.to_map()) and _ordered(r.result_map()) for r in ex.receipts)
