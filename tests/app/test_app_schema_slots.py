"""Typed bodies and parameters built through their slots equal those built by ``__init__``
(medchaind/app/schema.py ``_decode``: the instance is filled by its slots' descriptors).

The oracle is the same decoder forced onto the ``__init__`` path (every class treated as
one with a ``__post_init__``): both must give equal instances, every field set, absent
optional fields at their defaults, and the same errors. Inputs: real module bodies
(claims.submit from the bench generator with random lines, identity.register with and
without its optional label) and query parameters with non-None defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.app import schema
from medchaind.app.schema import FieldError, Int, body, decode_body, decode_native_params
from medchaind.modules.claims import benchkit, canonical
from medchaind.modules.claims.machine import Submit
from medchaind.modules.identity.machine import Register
from medchaind.modules.records.machine import ListParams


class _Everything:
    def __contains__(self, cls: object) -> bool:
        return True


def by_init(monkeypatch: pytest.MonkeyPatch, decode: Any, cls: type, value: Any) -> Any:
    with monkeypatch.context() as m:
        m.setattr(schema, "_BY_INIT", _Everything())
        return decode(cls, value)


def all_fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def submit_body(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    pair = SimpleNamespace(npi=benchkit.npi(1000 + seed % 50), pair_key=hashlib.sha256(b"pair/%d" % seed).digest())
    claim = benchkit.claim(pair, seed, rng)  # type: ignore[arg-type]
    return canonical.submit_body(
        claim, pair.pair_key, payer=bytes(32), content_hash=hashlib.sha256(b"doc/%d" % seed).digest(), size=700,
        envelopes=[{"recipient": bytes([1]) * 32, "sealed_key": bytes(80)},
                   {"recipient": bytes([2]) * 32, "sealed_key": bytes(80)}])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_claims_submit_bodies_equal_their_init_built_twins(seed: int) -> None:
    value = submit_body(seed)
    with pytest.MonkeyPatch.context() as mp:
        fast = decode_body(Submit, value)
        slow = by_init(mp, decode_body, Submit, value)
    assert fast == slow and repr(fast) == repr(slow)
    assert all_fields(fast) == all_fields(slow)
    assert all(all_fields(ln) == all_fields(o) for ln, o in zip(fast.lines, slow.lines, strict=True))


@pytest.mark.parametrize("value", [
    {"role": "patient", "enc_key": bytes(32)},
    {"role": "provider", "enc_key": bytes(32), "label": "Clinic"},
])
def test_optional_body_fields_default_to_none_on_both_paths(monkeypatch: pytest.MonkeyPatch,
                                                            value: dict[str, Any]) -> None:
    fast = decode_body(Register, value)
    assert fast == by_init(monkeypatch, decode_body, Register, value)
    assert fast.label == value.get("label")


@pytest.mark.parametrize("value", [{"patient": bytes(32)}, {"patient": bytes(32), "limit": 7, "offset": 3}])
def test_parameter_defaults_are_kept(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> None:
    fast = decode_native_params(ListParams, value)
    assert fast == by_init(monkeypatch, decode_native_params, ListParams, value)
    assert (fast.limit, fast.offset) == (value.get("limit", 100), value.get("offset", 0))


@pytest.mark.parametrize("value", [
    {"role": "patient"},                                       # missing field
    {"role": "patient", "enc_key": bytes(32), "extra": 1},     # unexpected field
    {"role": "patient", "enc_key": bytes(31)},                 # bad field
])
def test_errors_are_the_same(monkeypatch: pytest.MonkeyPatch, value: dict[str, Any]) -> None:
    with pytest.raises(FieldError) as fast:
        decode_body(Register, value)
    with pytest.raises(FieldError) as slow:
        by_init(monkeypatch, decode_body, Register, value)
    assert str(fast.value) == str(slow.value)


@body
class _Counted:
    n: Annotated[int, Int(0, 10)]

    def __post_init__(self) -> None:
        if self.n == 7:
            raise FieldError("n must not be 7")


def test_a_class_with_post_init_is_still_built_by_init() -> None:
    assert _Counted in schema._BY_INIT
    assert decode_body(_Counted, {"n": 3}).n == 3
    with pytest.raises(FieldError, match="must not be 7"):
        decode_body(_Counted, {"n": 7})
