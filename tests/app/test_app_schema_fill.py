"""The generated fill step of typed-body decoding decides exactly as the plan's loop did
(medchaind/app/schema.py ``_filler``: per field an inline shortcut for exact field types,
bounded accept-memos for text and memo'd custom fields, the field's own ``native`` otherwise).

The oracle is the same decoder on its ``__init__`` path (every class treated as one with a
``__post_init__``: the plan's loop, each field through its ``native``, no shortcut, no
memo). Inputs: real bodies of every module tx type that the bench measures (claims.submit,
supply.capture, identity.register, trials.enroll) and of a few more, each mutated by
hypothesis (a field's value replaced by a value of another type or size, a field dropped,
one added, at the top level or inside a nested struct): both paths must give equal
instances or the same error message. Values are drawn twice, so a memo filled by the
first decode answers the second.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_app_schema_slots import submit_body as claims_body

from medchaind.app import schema
from medchaind.app.schema import Custom, FieldError, Text, body, decode_body
from medchaind.modules.claims.machine import Adjudicate, Submit
from medchaind.modules.identity.machine import Register
from medchaind.modules.supply.machine import Capture, RegisterProduct
from medchaind.modules.trials.machine import Enroll as TrialsEnroll


class _Everything:
    def __contains__(self, cls: object) -> bool:
        return True


def oracle(cls: type, value: Any) -> tuple[str, Any]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(schema, "_BY_INIT", _Everything())
        return outcome(cls, value)


def outcome(cls: type, value: Any) -> tuple[str, Any]:
    try:
        return "ok", decode_body(cls, value)
    except FieldError as exc:
        return "error", str(exc)


def deep_fields(obj: Any) -> Any:
    """Every field of an instance, nested instances included (type names kept)."""
    if dataclasses.is_dataclass(obj):
        return (type(obj).__name__, {f.name: deep_fields(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    if isinstance(obj, tuple):
        return tuple(deep_fields(x) for x in obj)
    return (type(obj).__name__, obj)


def supply_body(seed: int) -> dict[str, Any]:
    ev = {"hash": hashlib.sha256(b"ev/%d" % seed).digest(), "type": "ObjectEvent", "action": "ADD",
          "biz_step": "commissioning", "disposition": "active", "time_ms": 1_700_000_000_000 + seed,
          "epcs": [b"\x01" + hashlib.sha256(b"o/%d" % seed).digest()], "gtin": "00300012345675",
          "lot_id": hashlib.sha256(b"lot").digest(), "expiry": 20301231}
    if seed % 3 == 0:
        ev = {"hash": ev["hash"], "type": "ObjectEvent", "action": "OBSERVE", "biz_step": "shipping",
              "time_ms": ev["time_ms"], "epcs": ev["epcs"], "source": "0614141000005", "dest": "0614141000012"}
    return {"events": [ev]}


@body
class Mixed:
    """Field types the module bodies above do not use at the top level."""

    flag: Annotated[bool, schema.Bool()]
    kind: Annotated[int, schema.OneOf(1, 7, 8)]
    blob: Annotated[bytes, schema.Bytes(min=2, max=5)]
    maybe: Annotated[bool | None, schema.Nullable(schema.Bool())] = None
    count: Annotated[int | None, schema.Nullable(schema.Int(0, 3))] = None
    note: Annotated[str | None, Text(4, min=2)] = None


BODIES: list[tuple[type, Any]] = [
    (Mixed, lambda s: {"flag": bool(s % 2), "kind": 7, "blob": b"abc", "maybe": None, "count": 2, "note": "ab"}),
    (Submit, claims_body),
    (Capture, supply_body),
    (Register, lambda s: {"role": "patient", "enc_key": bytes(32), **({"label": f"L{s}"} if s % 2 else {})}),
    (TrialsEnroll, lambda s: {"trial": "NCT01234567", "participant": bytes(32), "consent_grant": bytes(32)}),
    (RegisterProduct, lambda s: {"gtin": "00300012345675", "key_check": bytes(32), "ndc": "0001-2345-67"}),
    (Adjudicate, lambda s: {"claim_id": bytes(32), "clp_status": 1, "charge": 100, "paid": 80, "patient_resp": 20,
                            "adjustments": [{"group": "CO", "reason": "45", "amount": 0}], "lines": []}),
]

#: values of every kind a field might be sent instead of the right one
ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-2**64, 2**64), st.sampled_from([0, 1, 7, 999, 1000, 202511, 20301231]),
    st.binary(max_size=40), st.sampled_from([bytes(31), bytes(32), bytes(33), b"\x01" + bytes(32), bytes(80)]),
    st.text(max_size=16), st.sampled_from(["99213", "1234567893", "1234567890", "11", "P", "A2", "ObjectEvent",
                                           "0614141000005", "00300012345675", "9921\x00", "NCT01234567"]),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every map inside ``value`` (the body itself first)."""
    out = []
    if isinstance(value, dict):
        out.append(path)
        for k, v in value.items():
            out += containers(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += containers(v, (*path, i))
    return out


def at(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


@settings(max_examples=400, deadline=None)
@given(which=st.integers(0, len(BODIES) - 1), seed=st.integers(0, 10_000), data=st.data())
def test_generated_fill_decides_as_the_plan_loop(which: int, seed: int, data: st.DataObject) -> None:
    cls, make = BODIES[which]
    value = copy.deepcopy(make(seed))
    for _ in range(data.draw(st.integers(0, 2))):
        target = at(value, data.draw(st.sampled_from(containers(value))))
        how = data.draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "add":
            target[data.draw(st.sampled_from(["extra", "n", "code", "hash"]))] = data.draw(ODD)
        elif target:
            key = data.draw(st.sampled_from(sorted(target)))
            if how == "drop":
                del target[key]
            else:
                target[key] = data.draw(ODD)
    want = oracle(cls, value)
    for _ in range(2):  # the second decode meets the memos the first one filled
        got = outcome(cls, value)
        assert got[0] == want[0]
        if got[0] == "ok":
            assert got[1] == want[1] and deep_fields(got[1]) == deep_fields(want[1])
        else:
            assert got[1] == want[1]


def boundary_values(ft: Any, seen: set[int]) -> list[Any]:
    """Values at and just past the bounds of a field type (and of the types nested in it)."""
    if id(ft) in seen:
        return []
    seen.add(id(ft))
    out: list[Any] = [None, True, False, 0, 1, -1, "", b"", [], {}, bytearray(b"x"), "x\x00"]
    if isinstance(ft, schema.Bytes):
        for n in {ft.size, ft.min, ft.max} - {None}:
            out += [bytes(n), bytes(max(n - 1, 0)), bytes(n + 1), b"\x01" + bytes(max(n - 1, 0)), bytearray(n)]
    if isinstance(ft, schema.Int):
        out += [ft.lo - 1, ft.lo, ft.hi, ft.hi + 1, float(ft.lo)]
    if isinstance(ft, (schema.Enum, schema.OneOf)):
        vals = sorted(ft._set if isinstance(ft, schema.Enum) else ft.values)
        out += vals + [v.lower() if isinstance(v, str) else v + 1 for v in vals]
    if isinstance(ft, Text):
        out += ["0" * ft.min, "0" * ft.max, "0" * (ft.max + 1), "9" * max(ft.min - 1, 0), "A" * ft.max]
    if isinstance(ft, (schema.Nullable, schema.ListOf)):
        inner = ft.inner if isinstance(ft, schema.Nullable) else ft.item
        out += boundary_values(inner, seen)
        if isinstance(ft, schema.ListOf):
            out += [[v] for v in boundary_values(inner, set())[:40]]
    if isinstance(ft, schema.Struct):
        for s in schema.fields_of(ft.cls):
            out += boundary_values(s.type, seen)
    return out


def all_boundaries() -> list[Any]:
    seen: set[int] = set()
    out: list[Any] = ["99213", "1234567893", "1234567890", "11", "202511", "00300012345675", "0614141000005"]
    for cls, _ in BODIES:
        for s in schema.fields_of(cls):
            out += boundary_values(s.type, seen)
    distinct: dict[tuple[str, str], Any] = {}
    for v in out:
        distinct.setdefault((type(v).__name__, repr(v)), v)
    return list(distinct.values())


def test_every_field_at_its_bounds_decides_as_the_plan_loop() -> None:
    """Each map of each body, each of its keys (and an extra one) set to each boundary value of
    every field type the bodies use, twice over (memos filled): the same outcome both ways."""
    values = all_boundaries()
    cases = []
    for seed, (cls, make) in enumerate(BODIES):
        base = make(seed)
        for path in containers(base):
            for key in [*sorted(at(base, path)), "extra"]:
                for v in values:
                    value = copy.deepcopy(base)
                    at(value, path)[key] = v
                    cases.append((cls, value))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(schema, "_BY_INIT", _Everything())
        wants = [outcome(cls, value) for cls, value in cases]
    for _ in range(2):  # the second round meets the memos the first one filled
        for (cls, value), want in zip(cases, wants, strict=True):
            got = outcome(cls, value)
            assert got[0] == want[0], (cls, value, got, want)
            if got[0] == "ok":
                assert deep_fields(got[1]) == deep_fields(want[1])
            else:
                assert got[1] == want[1]
    tried = len(cases)
    assert tried > 3000


@body
class Coded:
    code: Annotated[str, Text(8, pattern=r"[A-Z0-9]+", what="a code")]


#: what ``upper`` was asked to check
CALLS: list[Any] = []


def upper(v: Any, name: str) -> str:
    CALLS.append(v)
    if not isinstance(v, str) or not v.isupper():
        raise FieldError(f"{name} must be upper case")
    return v


@body
class Plain:
    x: Annotated[str, Custom(upper, "upper")]


@body
class Memo:
    x: Annotated[str, Custom(upper, "upper", memo=True)]


def test_text_memo_is_bounded_and_remembers_only_accepted_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MEMO_MAX", 50)
    fill = schema._filler(Coded, None)
    ok = next(v for k, v in fill.__globals__.items() if k.startswith("ok_"))
    for i in range(120):
        assert decode_body(Coded, {"code": f"C{i}"}).code == f"C{i}"
        assert len(ok) <= 50
    for bad in ("c1", "C\x001", "TOOLONG123", 5):
        with pytest.raises(FieldError):
            decode_body(Coded, {"code": bad})
        assert bad not in ok
    assert "C119" in ok


def test_custom_memo_only_when_asked() -> None:
    for cls, expected in ((Plain, 3), (Memo, 1)):
        CALLS.clear()
        for _ in range(3):
            assert decode_body(cls, {"x": "AB"}).x == "AB"
        assert len(CALLS) == expected
        with pytest.raises(FieldError, match="x must be upper case"):
            decode_body(cls, {"x": "ab"})
