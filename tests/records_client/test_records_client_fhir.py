"""medchaind.modules.records.fhir: strict JSON, R4B structural validation, binding checks, canonical JSON."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records_client_kit import MARKER, MINIMAL, resource

from medchaind.errors import MedchainError
from medchaind.modules.records.fhir import (
    CODE_BINDINGS,
    CONCEPT_BINDINGS,
    MAX_RESOURCE_BYTES,
    SUPPORTED_TYPES,
    FHIRValidationError,
    canonical_json,
    validate_and_canonicalize,
    validate_resource,
)

# ------------------------------------------------------------------ valid resources


@pytest.mark.parametrize("resource_type", sorted(MINIMAL))
def test_minimal_resources_are_valid_and_round_trip(resource_type: str) -> None:
    doc = resource(resource_type)
    assert validate_resource(doc) == doc
    text = json.dumps(doc, indent=2)
    assert validate_resource(text) == doc
    assert validate_resource(text.encode()) == doc


def test_supported_types_cover_the_brief() -> None:
    assert set(MINIMAL) == SUPPORTED_TYPES


def test_canonical_form_is_normalised_and_stable() -> None:
    # key order, whitespace and explicit nulls in the input do not change the output
    doc = resource("Observation", note=[{"text": MARKER}])
    shuffled = json.dumps(dict(reversed(list(doc.items()))), indent=4)
    a = validate_resource(doc)
    b = validate_resource(shuffled)
    assert a == b
    assert canonical_json(a) == canonical_json(b)
    raw = canonical_json(a)
    assert b" " not in raw.replace(b"Body weight", b"")
    assert json.loads(raw) == a
    assert raw.startswith(b'{"code":')  # keys sorted


def test_validate_and_canonicalize_returns_type_and_bytes() -> None:
    rt, raw = validate_and_canonicalize(resource("Patient"))
    assert rt == "Patient"
    assert raw == b'{"birthDate":"1980-02-28","gender":"female","resourceType":"Patient"}'


# ------------------------------------------------------------------ structural errors


def _reject(doc: Any) -> str:
    with pytest.raises(FHIRValidationError) as info:
        validate_resource(doc)
    assert isinstance(info.value, MedchainError)
    return str(info.value)


def test_bad_date_rejected_with_field_name() -> None:
    msg = _reject(resource("Patient", birthDate="1980-02-30"))
    assert "birthDate" in msg and "day value is outside expected range" in msg


def test_unknown_element_rejected() -> None:
    msg = _reject(resource("Observation", favouriteColour="blue"))
    assert "favouriteColour" in msg and "Extra inputs are not permitted" in msg


def test_missing_required_field_rejected() -> None:
    doc = resource("Observation")
    del doc["code"]
    msg = _reject(doc)
    assert "code" in msg and "required" in msg


def test_wrong_shape_rejected() -> None:
    msg = _reject(resource("Observation", code="not-a-codeable-concept"))
    assert "code" in msg


def test_unsupported_type_rejected() -> None:
    msg = _reject({"resourceType": "Bundle", "type": "collection"})
    assert "'Bundle' is not supported" in msg


def test_unknown_resource_type_rejected() -> None:
    assert "not supported" in _reject({"resourceType": "NotAThing"})


@pytest.mark.parametrize("doc", [{}, {"resourceType": 3}, {"resourceType": None}])
def test_missing_resource_type_rejected(doc: dict[str, Any]) -> None:
    assert "resourceType" in _reject(doc)


@pytest.mark.parametrize("doc", ["[]", "3", '"Patient"', b"null", 42, ["x"]])
def test_non_object_rejected(doc: Any) -> None:
    _reject(doc)


# ------------------------------------------------------------------ strict JSON


def test_duplicate_keys_rejected() -> None:
    assert "duplicate key 'status'" in _reject('{"resourceType":"Observation","status":"final","status":"bogus"}')


def test_nested_duplicate_keys_rejected() -> None:
    text = '{"resourceType":"Patient","name":[{"family":"A","family":"B"}]}'
    assert "duplicate key 'family'" in _reject(text)


@pytest.mark.parametrize("const", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_rejected_in_text(const: str) -> None:
    obs = json.dumps(resource("Observation")).replace("72.5", const)
    assert const in _reject(obs)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_rejected_in_dict(value: float) -> None:
    doc = resource("Observation")
    doc["valueQuantity"]["value"] = value
    assert "NaN and Infinity" in _reject(doc)


def test_invalid_json_rejected() -> None:
    assert "invalid JSON" in _reject('{"resourceType": "Patient",}')


def test_non_utf8_rejected() -> None:
    assert "not UTF-8" in _reject(b'{"resourceType":"Patient","id":"\xff"}')


def test_bom_rejected() -> None:
    assert "byte order mark" in _reject('\ufeff{"resourceType":"Patient"}')


@pytest.mark.parametrize(
    "doc", ['{"resourceType":"Patient","id":"\\ud800"}', {"resourceType": "Patient", "id": "\ud800"}]
)
def test_lone_surrogate_rejected(doc: Any) -> None:
    assert "lone surrogate" in _reject(doc)


def test_huge_integer_literal_rejected() -> None:
    _reject('{"resourceType":"Patient","x":' + "9" * 5000 + "}")


def test_deep_nesting_rejected() -> None:
    _reject('{"resourceType":"Patient","x":' + "[" * 100_000 + "]" * 100_000 + "}")


def _oversize_patient() -> dict[str, Any]:
    return resource("Patient", name=[{"text": "x" * (MAX_RESOURCE_BYTES + 1)}])


@pytest.mark.parametrize("form", ["dict", "str", "bytes"])
def test_oversize_rejected(form: str) -> None:
    doc: Any = _oversize_patient()
    if form != "dict":
        doc = json.dumps(doc)
        if form == "bytes":
            doc = doc.encode()
    assert "limit" in _reject(doc)


def test_just_under_the_limit_accepted() -> None:
    base = len(json.dumps(resource("Patient", name=[{"text": ""}]), separators=(",", ":")))
    doc = resource("Patient", name=[{"text": "x" * (MAX_RESOURCE_BYTES - base)}])
    assert validate_resource(doc)["name"][0]["text"].startswith("xxx")


# ------------------------------------------------------------------ bindings

_CODE_CASES = [(rt, el, code) for (rt, el), codes in sorted(CODE_BINDINGS.items()) for code in sorted(codes)]


def _set_code(rt: str, element: str, code: str) -> dict[str, Any]:
    value: Any = [code] if element == "category" else code
    return resource(rt, **{element: value})


def test_observation_status_bogus_rejected() -> None:
    # the headline gap in fhir.resources: it accepts this on its own
    msg = _reject(resource("Observation", status="bogus"))
    assert "status" in msg and "'bogus'" in msg and "required value set" in msg


@pytest.mark.parametrize(("rt", "element", "code"), _CODE_CASES)
def test_code_binding_accepts_every_allowed_code(rt: str, element: str, code: str) -> None:
    validate_resource(_set_code(rt, element, code))


@pytest.mark.parametrize(("rt", "element"), sorted(CODE_BINDINGS))
def test_code_binding_rejects_bogus(rt: str, element: str) -> None:
    msg = _reject(_set_code(rt, element, "bogus"))
    assert element in msg and "bogus" in msg


def test_code_binding_rejects_one_bad_entry_in_a_list() -> None:
    msg = _reject(resource("AllergyIntolerance", category=["food", "bogus"]))
    assert "category" in msg and "'bogus'" in msg


def test_minimum_bindings_from_the_brief_are_checked() -> None:
    for key in [
        ("Observation", "status"),
        ("MedicationRequest", "status"),
        ("MedicationRequest", "intent"),
        ("Immunization", "status"),
        ("DiagnosticReport", "status"),
        ("Procedure", "status"),
        ("Encounter", "status"),
    ]:
        assert key in CODE_BINDINGS
    for key in [
        ("Condition", "clinicalStatus"),
        ("AllergyIntolerance", "clinicalStatus"),
        ("AllergyIntolerance", "verificationStatus"),
    ]:
        assert key in CONCEPT_BINDINGS


def test_encounter_status_is_r4b_not_r5() -> None:
    validate_resource(resource("Encounter", status="finished"))
    # "completed" is an R5 Encounter.status, not R4/R4B
    assert "'completed'" in _reject(resource("Encounter", status="completed"))


_CONCEPT_CASES = [(rt, el, code) for (rt, el), (_, codes) in sorted(CONCEPT_BINDINGS.items()) for code in sorted(codes)]


def _concept(system: str, *codes: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": c} for c in codes]}


@pytest.mark.parametrize(("rt", "element", "code"), _CONCEPT_CASES)
def test_concept_binding_accepts_every_allowed_code(rt: str, element: str, code: str) -> None:
    system = CONCEPT_BINDINGS[(rt, element)][0]
    validate_resource(resource(rt, **{element: _concept(system, code)}))


@pytest.mark.parametrize(("rt", "element"), sorted(CONCEPT_BINDINGS))
def test_concept_binding_rejects_bogus_code(rt: str, element: str) -> None:
    system = CONCEPT_BINDINGS[(rt, element)][0]
    msg = _reject(resource(rt, **{element: _concept(system, "bogus")}))
    assert element in msg and "'bogus'" in msg


@pytest.mark.parametrize(("rt", "element"), sorted(CONCEPT_BINDINGS))
def test_concept_binding_needs_a_coding_from_the_system(rt: str, element: str) -> None:
    msg = _reject(resource(rt, **{element: {"text": "active"}}))
    assert element in msg and "required system" in msg
    msg = _reject(resource(rt, **{element: _concept("http://example.org/other", "active")}))
    assert "required system" in msg


def test_concept_binding_allows_extra_codings_from_other_systems() -> None:
    system = CONCEPT_BINDINGS[("Condition", "clinicalStatus")][0]
    concept = {
        "coding": [{"system": "http://snomed.info/sct", "code": "55561003"}, {"system": system, "code": "active"}]
    }
    validate_resource(resource("Condition", clinicalStatus=concept))


def test_concept_binding_rejects_a_bad_code_next_to_a_good_one() -> None:
    system = CONCEPT_BINDINGS[("Condition", "clinicalStatus")][0]
    _reject(resource("Condition", clinicalStatus=_concept(system, "active", "bogus")))


# ------------------------------------------------------------------ canonical JSON (RFC 8785)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e30, "1e+30"),
        (1e-27, "1e-27"),
        (333333333.33333329, "333333333.3333333"),
        (-1.5e-10, "-1.5e-10"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
    ],
)
def test_canonical_numbers_follow_ecmascript(value: float, expected: str) -> None:
    assert canonical_json({"n": value}) == b'{"n":' + expected.encode() + b"}"


def test_canonical_key_order_is_utf16() -> None:
    # RFC 8785 §3.2.3: U+1F600 (surrogates D83D..) sorts before U+E000 in UTF-16
    doc = {"\ue000": 1, "\U0001f600": 2, "a": 3, "B": 4}
    assert canonical_json(doc).decode() == '{"B":4,"a":3,"\U0001f600":2,"\ue000":1}'


def test_canonical_string_escaping_is_minimal() -> None:
    raw = canonical_json({"s": 'é"\\\n\x01\u2028/'})
    assert raw.decode() == '{"s":"é\\"\\\\\\n\\u0001\u2028/"}'


@pytest.mark.parametrize("bad", [{"x": math.nan}, {"x": math.inf}, {1: "x"}, {"x": object()}, {"x": "\ud800"}])
def test_canonical_json_refuses_non_json(bad: dict[Any, Any]) -> None:
    with pytest.raises(FHIRValidationError):
        canonical_json(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_canonical_json_parses_back_and_is_idempotent(doc: dict[str, Any]) -> None:
    raw = canonical_json(doc)
    parsed = json.loads(raw)
    # an integral float is printed as an integer (RFC 8785), so compare numbers as floats
    assert _as_floats(parsed) == _as_floats(doc)
    assert canonical_json(parsed) == raw


def _as_floats(obj: Any) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int | float):
        return float(obj)
    if isinstance(obj, list):
        return [_as_floats(x) for x in obj]
    return {k: _as_floats(v) for k, v in obj.items()}


@settings(max_examples=100, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_canonical_float_round_trips_exactly(x: float) -> None:
    text = canonical_json({"x": x})[5:-1]
    assert float(text) == x
