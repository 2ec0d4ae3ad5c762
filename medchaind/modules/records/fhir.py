"""Client-side validation and canonicalisation of FHIR resources before encryption.

FHIR version: R4B
-----------------
This module validates against **FHIR R4B (4.3.0)** using ``fhir.resources.R4B``.
fhir.resources 8.x defaults to R5 and ships no plain R4 package any more (dropped in
7.0); R4B is the closest thing to R4 4.0.1, the version US Core and nearly every
production EHR deployment (Epic, Cerner/Oracle, ONC (g)(10) APIs) speak. The resources
we support are structurally identical, or nearly so, between R4 and R4B, while R5
renamed and restructured several of them (e.g. ``Encounter.class`` became a list,
``Encounter.status`` codes changed, ``MedicationRequest.medication[x]`` became a
CodeableReference). The version is a network-wide choice: every client on one chain
must use the same :data:`FHIR_VERSION`.

Pipeline (:func:`validate_resource`)
------------------------------------
1. Size cap (:data:`MAX_RESOURCE_BYTES`) on the serialised input.
2. Strict JSON: UTF-8 only, no duplicate object keys, no ``NaN``/``Infinity``.
3. ``resourceType`` must be one of :data:`SUPPORTED_TYPES`.
4. Structural validation with the fhir.resources model class (``model_validate``):
   primitives (dates, ids, ...), unknown elements, cardinality, required elements.
5. Value-set bindings that fhir.resources does **not** check (it accepts
   ``Observation.status="bogus"``): the *required* bindings of the supported types
   listed in :data:`CODE_BINDINGS` and :data:`CONCEPT_BINDINGS`. Invariants (FHIRPath
   constraints such as ``con-3``) and profiles (US Core must-support) are not checked.
6. The canonical form ``model_dump(mode="json", exclude_none=True)`` is returned;
   :func:`canonical_json` serialises it RFC 8785-style for encryption.

Known limitation -- FHIR decimals
---------------------------------
FHIR ``decimal`` carries its precision (``1.50`` is not ``1.5``). fhir.resources keeps a
``Decimal`` internally but ``model_dump(mode="json")`` emits a binary float, so trailing
zeros are lost (``1.50`` -> ``1.5``) and the canonical form is that float printed per
RFC 8785 / ECMAScript (shortest round-trip digits). Values that need more than ~15-17
significant digits are rounded. Clinical precision that matters must be carried
elsewhere (e.g. ``Quantity.comparator``/an extension) until this is fixed.

Errors are :class:`FHIRValidationError`, whose message says which element was wrong and
why (the pydantic validator's own message for structural errors). Messages name
elements and codes only; they never echo whole resources.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from ...errors import MedchainError

FHIR_VERSION: Final = "4.3.0"
#: Largest resource accepted, measured on the UTF-8 JSON input.
MAX_RESOURCE_BYTES: Final = 1024 * 1024
#: Deepest JSON nesting accepted (FHIR resources are rarely deeper than ~12).
MAX_DEPTH: Final = 64

SUPPORTED_TYPES: Final[frozenset[str]] = frozenset(
    {
        "Patient",
        "Observation",
        "Condition",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "DiagnosticReport",
        "Procedure",
        "Encounter",
        "DocumentReference",
    }
)

#: Required bindings on ``code`` elements: (resourceType, element) -> allowed codes.
#: An element may be a single code or a list of codes (``AllergyIntolerance.category``).
CODE_BINDINGS: Final[Mapping[tuple[str, str], frozenset[str]]] = {
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
    ("Observation", "status"): frozenset(
        {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
    ),
    ("MedicationRequest", "status"): frozenset(
        {"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft", "unknown"}
    ),
    ("MedicationRequest", "intent"): frozenset(
        {"proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order", "option"}
    ),
    ("MedicationRequest", "priority"): frozenset({"routine", "urgent", "asap", "stat"}),
    ("AllergyIntolerance", "type"): frozenset({"allergy", "intolerance"}),
    ("AllergyIntolerance", "category"): frozenset({"food", "medication", "environment", "biologic"}),
    ("AllergyIntolerance", "criticality"): frozenset({"low", "high", "unable-to-assess"}),
    ("Immunization", "status"): frozenset({"completed", "entered-in-error", "not-done"}),
    ("DiagnosticReport", "status"): frozenset(
        {
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("Procedure", "status"): frozenset(
        {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"}
    ),
    # R4/R4B Encounter.status (R5 replaced these with a different set)
    ("Encounter", "status"): frozenset(
        {
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        }
    ),
    ("DocumentReference", "status"): frozenset({"current", "superseded", "entered-in-error"}),
    ("DocumentReference", "docStatus"): frozenset({"preliminary", "final", "amended", "entered-in-error"}),
}

_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"

#: Required bindings on ``CodeableConcept`` elements: (resourceType, element) ->
#: (code system, allowed codes). When present, the concept must carry at least one
#: coding from that system, and every coding from that system must use an allowed code.
CONCEPT_BINDINGS: Final[Mapping[tuple[str, str], tuple[str, frozenset[str]]]] = {
    ("Condition", "clinicalStatus"): (
        _TERMINOLOGY + "condition-clinical",
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    ),
    ("Condition", "verificationStatus"): (
        _TERMINOLOGY + "condition-ver-status",
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
    ),
    ("AllergyIntolerance", "clinicalStatus"): (
        _TERMINOLOGY + "allergyintolerance-clinical",
        frozenset({"active", "inactive", "resolved"}),
    ),
    ("AllergyIntolerance", "verificationStatus"): (
        _TERMINOLOGY + "allergyintolerance-verification",
        frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
    ),
}


class FHIRValidationError(MedchainError):
    """A resource that is not valid FHIR R4B (or breaks a binding this module checks)."""

    rpc_code = -32070


# ------------------------------------------------------------------ strict JSON


def _reject_constant(name: str) -> Any:
    raise FHIRValidationError(f"invalid JSON: {name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FHIRValidationError(f"invalid JSON: duplicate key {key!r}")
        out[key] = value
    return out


def parse_strict_json(data: str | bytes) -> Any:
    """Parse JSON text strictly: UTF-8, size-capped, no duplicate keys, no NaN/Infinity."""
    if isinstance(data, bytes):
        if len(data) > MAX_RESOURCE_BYTES:
            raise FHIRValidationError(f"resource is {len(data)} bytes; the limit is {MAX_RESOURCE_BYTES}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FHIRValidationError(f"invalid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_RESOURCE_BYTES:
            raise FHIRValidationError(f"resource is {size} bytes; the limit is {MAX_RESOURCE_BYTES}")
    if text.startswith("\ufeff"):
        raise FHIRValidationError("invalid JSON: byte order mark is not allowed")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        raise FHIRValidationError("invalid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise FHIRValidationError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise FHIRValidationError(f"invalid JSON: {exc}") from None


def _check_json_value(obj: object, depth: int) -> None:
    """Reject values no JSON text could produce (non-finite floats, non-str keys, ...)."""
    if depth > MAX_DEPTH:
        raise FHIRValidationError(f"resource is nested deeper than {MAX_DEPTH}")
    if isinstance(obj, bool) or obj is None or isinstance(obj, int):
        return
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            raise FHIRValidationError("invalid JSON: text contains a lone surrogate") from None
        return
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise FHIRValidationError("invalid JSON: NaN and Infinity are not allowed")
        return
    if isinstance(obj, list):
        for item in obj:
            _check_json_value(item, depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise FHIRValidationError("invalid JSON: object keys must be strings")
            _check_json_value(value, depth + 1)
        return
    raise FHIRValidationError(f"invalid JSON: unsupported value of type {type(obj).__name__}")


# ------------------------------------------------------------------ validation


def _format_pydantic(resource_type: str, exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(resource)"
        msg = " ".join(str(err.get("msg", "invalid")).split())
        parts.append(f"{loc}: {msg}")
    return f"invalid {resource_type}: " + "; ".join(parts)


def _check_bindings(resource_type: str, doc: Mapping[str, Any]) -> None:
    for (rt, element), allowed in CODE_BINDINGS.items():
        if rt != resource_type or element not in doc:
            continue
        value = doc[element]
        for code in value if isinstance(value, list) else [value]:
            if code not in allowed:
                raise FHIRValidationError(
                    f"invalid {resource_type}: {element}: code {code!r} is not in the required value set "
                    f"({', '.join(sorted(allowed))})"
                )
    for (rt, element), (system, allowed) in CONCEPT_BINDINGS.items():
        if rt != resource_type or element not in doc:
            continue
        concept = doc[element]
        codings = [c for c in concept.get("coding", []) if c.get("system") == system]
        if not codings:
            raise FHIRValidationError(
                f"invalid {resource_type}: {element}: needs a coding from the required system {system}"
            )
        for coding in codings:
            code = coding.get("code")
            if code not in allowed:
                raise FHIRValidationError(
                    f"invalid {resource_type}: {element}: code {code!r} is not in {system} "
                    f"({', '.join(sorted(allowed))})"
                )


def validate_resource(doc: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """Validate one FHIR R4B resource and return its canonical JSON-compatible dict.

    ``doc`` is a parsed object or JSON text (``str``/``bytes``). Raises
    :class:`FHIRValidationError` saying which element is wrong and why. The result is
    ``model_dump(mode="json", exclude_none=True)`` of the validated model (so unknown
    keys are impossible, primitives are normalised) and is safe to pass to
    :func:`canonical_json`.
    """
    if isinstance(doc, str | bytes):
        obj = parse_strict_json(doc)
    elif isinstance(doc, dict):
        _check_json_value(doc, 0)
        size = len(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        if size > MAX_RESOURCE_BYTES:
            raise FHIRValidationError(f"resource is {size} bytes; the limit is {MAX_RESOURCE_BYTES}")
        obj = doc
    else:
        raise FHIRValidationError(f"a resource is a JSON object, str or bytes, not {type(doc).__name__}")
    if not isinstance(obj, dict):
        raise FHIRValidationError("a FHIR resource must be a JSON object")
    if isinstance(doc, str | bytes):
        _check_json_value(obj, 0)
    resource_type = obj.get("resourceType")
    if not isinstance(resource_type, str):
        raise FHIRValidationError("resourceType: missing or not a string")
    if resource_type not in SUPPORTED_TYPES:
        raise FHIRValidationError(
            f"resourceType: {resource_type[:64]!r} is not supported (supported: {', '.join(sorted(SUPPORTED_TYPES))})"
        )
    model_class = get_fhir_model_class(resource_type)
    try:
        model = model_class.model_validate(obj)
    except pydantic.ValidationError as exc:
        raise FHIRValidationError(_format_pydantic(resource_type, exc)) from None
    except (ValueError, TypeError) as exc:  # defensive: validators raising outside pydantic
        raise FHIRValidationError(f"invalid {resource_type}: {exc}") from None
    canonical: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    _check_bindings(resource_type, canonical)
    return canonical


# ------------------------------------------------------------------ canonical JSON


def _es_number(value: float) -> str:
    """ECMAScript ``Number.prototype.toString`` of a finite float (RFC 8785 §3.2.2.3)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len("".join(map(str, digit_tuple))) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        out = digits + "0" * (n - k)
    elif 0 < n <= 21:
        out = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        out = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        out = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + out


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _emit(obj: object, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise FHIRValidationError(f"resource is nested deeper than {MAX_DEPTH}")
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        if not math.isfinite(obj):
            raise FHIRValidationError("canonical JSON: NaN and Infinity are not allowed")
        out.append(_es_number(obj))
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, list | tuple):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _emit(item, out, depth + 1)
        out.append("]")
    elif isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                raise FHIRValidationError("canonical JSON: object keys must be strings")
        out.append("{")
        for i, key in enumerate(sorted(obj, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _emit(obj[key], out, depth + 1)
        out.append("}")
    else:
        raise FHIRValidationError(f"canonical JSON: unsupported value of type {type(obj).__name__}")


def canonical_json(resource: Mapping[str, Any] | dict[str, Any]) -> bytes:
    """RFC 8785-style canonical JSON of ``resource`` as UTF-8 bytes.

    Object keys sorted by their UTF-16 code units, no insignificant whitespace, strings
    escaped minimally (``"``, ``\\`` and control characters only), integers in decimal,
    floats in ECMAScript shortest form (``1.5``, ``1e+21``, ``1e-7``). Lone surrogates
    and non-finite floats are refused. Integers beyond 2**53 are printed exactly (RFC
    8785 would round them through a double); FHIR integers are 32-bit so this never
    arises for validated resources. See the module docstring for the decimal caveat.
    """
    out: list[str] = []
    _emit(dict(resource), out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise FHIRValidationError("canonical JSON: text contains a lone surrogate") from None


def validate_and_canonicalize(doc: dict[str, Any] | str | bytes) -> tuple[str, bytes]:
    """``(resourceType, canonical_json(validate_resource(doc)))`` -- the bytes to encrypt."""
    resource = validate_resource(doc)
    return str(resource["resourceType"]), canonical_json(resource)


__all__: list[str] = [
    "CODE_BINDINGS",
    "CONCEPT_BINDINGS",
    "FHIRValidationError",
    "FHIR_VERSION",
    "MAX_RESOURCE_BYTES",
    "SUPPORTED_TYPES",
    "canonical_json",
    "parse_strict_json",
    "validate_and_canonicalize",
    "validate_resource",
]
