"""FHIR R4 Claim -> the canonical claim (the same one an 837 gives; :mod:`.canonical`).

The resource is validated with ``fhir.resources.R4B`` (R4B's Claim is R4's) and then
read by these conventions, which follow the X12 <-> FHIR mapping of the CARIN and Da
Vinci guides where they say something and are written down here where they do not:

=====================  ===============================================================
837 element            FHIR Claim
=====================  ===============================================================
CLM01 patient control  ``identifier[0].value``
CLM02 total charge     ``total.value``
CLM05-1 POS            ``item[0].locationCodeableConcept`` (CMS place-of-service); a
                       line whose POS differs keeps its own
837I CLM05-1/-3        ``subType`` (NUBC type of bill, e.g. ``0131``: facility 13, frequency 1)
CLM05-3 frequency 7/8  ``related[0]`` with relationship ``prior`` (its ``claim.identifier``
+ REF*F8               is the payer's claim control number); ``status`` ``cancelled`` = void (8)
SBR01                  the focal ``insurance[].sequence`` (1 P, 2 S, 3 T)
2010AA NM1*85 NPI      ``provider.identifier`` (``http://hl7.org/fhir/sid/us-npi``)
2310B NM1*82 NPI       ``careTeam`` member with role ``primary`` (per line: ``careTeamSequence``)
2010BA NM1*IL MI       the contained Coverage's ``subscriberId``
2010BB NM1*PR          ``insurer.identifier.value``
patient name, DMG      the contained Patient (``name[0]``, ``birthDate``, ``gender``)
HI ABK / ABF           ``diagnosis`` in ``sequence`` order (ICD-10-CM, dot removed)
LX / SV1 / SV2         ``item``: ``sequence``, ``productOrService`` (CPT / HCPCS),
                       ``modifier``, ``quantity``, ``net``, ``revenue`` (837I)
DTP*472                ``servicedDate`` or ``servicedPeriod``
=====================  ===============================================================

``item[].encounter`` (a Reference whose identifier has system :data:`RECORD_SYSTEM` and
the record id as value) names the encounter record of a line; it is not part of the
canonical claim (an 837 has no element for it) but is returned beside it.

Pure: works on the document it is given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from . import codes
from .canonical import ClaimError, check_claim, norm_id

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT_SYSTEMS = ("http://www.ama-assn.org/go/cpt", "https://bluebutton.cms.gov/resources/codesystem/hcpcs",
               "urn:oid:2.16.840.1.113883.6.285")
POS_SYSTEM = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
TOB_SYSTEM = "https://www.nubc.org/CodeSystem/TypeOfBill"
REVENUE_SYSTEM = "https://www.nubc.org/CodeSystem/RevenueCodes"
RECORD_SYSTEM = "urn:medchain:record"
GENDERS = {"female": "F", "male": "M", "unknown": "U", "other": "U"}
SEQUENCE = {1: "P", 2: "S", 3: "T"}


class FhirClaimError(ClaimError):
    """A FHIR Claim that is invalid or does not map to a claim; the message names the path."""


def _strict_json(data: str | bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise FhirClaimError(f"duplicate JSON key {k!r}")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise FhirClaimError(f"{name} is not valid JSON")

    try:
        return json.loads(data, object_pairs_hook=pairs, parse_float=Decimal, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise FhirClaimError(f"not JSON: {exc}") from None


def validate(doc: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    """The Claim as a plain dict, after fhir.resources' R4B model accepted it."""
    import pydantic
    from fhir.resources.R4B.claim import Claim

    raw = _strict_json(doc) if isinstance(doc, str | bytes) else json.loads(json.dumps(doc), parse_float=Decimal)
    if not isinstance(raw, dict) or raw.get("resourceType") != "Claim":
        raise FhirClaimError("resourceType must be Claim")
    try:
        Claim.model_validate(json.loads(json.dumps(raw, default=str)))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise FhirClaimError(f"Claim.{where}: {first['msg']}") from None
    return raw


def _get(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _need(obj: Any, path: str) -> Any:
    v = _get(obj, path)
    if v in (None, "", []):
        raise FhirClaimError(f"Claim.{path} is required")
    return v


def _coding(concept: Any, systems: tuple[str, ...], path: str) -> str:
    for c in (concept or {}).get("coding", []):
        if c.get("system") in systems and c.get("code"):
            return str(c["code"])
    raise FhirClaimError(f"Claim.{path} has no coding from {' or '.join(systems)}")


def _cents(value: Any, path: str) -> int:
    try:
        d = Decimal(str(value)) * 100
    except InvalidOperation:
        raise FhirClaimError(f"Claim.{path} is not a number") from None
    if d != d.to_integral_value():
        raise FhirClaimError(f"Claim.{path} has more than 2 decimals")
    return int(d)


def _units(value: Any, path: str) -> int:
    try:
        d = Decimal(str(value)) * 1000
    except InvalidOperation:
        raise FhirClaimError(f"Claim.{path} is not a number") from None
    if d != d.to_integral_value() or d <= 0:
        raise FhirClaimError(f"Claim.{path} must be positive with at most 3 decimals")
    return int(d)


def _date(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise FhirClaimError(f"Claim.{path} must be a full date YYYY-MM-DD")
    d = value.replace("-", "")
    try:
        codes.parse_date(d)
    except ValueError as exc:
        raise FhirClaimError(f"Claim.{path}: {exc}") from None
    return d


def _contained(claim: dict[str, Any], ref: Any, kind: str, path: str) -> dict[str, Any]:
    ref = (ref or {}).get("reference", "")
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise FhirClaimError(f"Claim.{path} must reference a contained {kind} (#id)")
    for r in claim.get("contained", []):
        if r.get("resourceType") == kind and r.get("id") == ref[1:]:
            return r  # type: ignore[no-any-return]
    raise FhirClaimError(f"Claim.{path}: no contained {kind} with id {ref[1:]!r}")


def _npi(ref: Any, path: str) -> str:
    ident = (ref or {}).get("identifier") or {}
    if ident.get("system") != NPI_SYSTEM or not codes.is_npi(ident.get("value")):
        raise FhirClaimError(f"Claim.{path}.identifier must be a valid NPI ({NPI_SYSTEM})")
    return str(ident["value"])


def parse_fhir_claim(doc: Mapping[str, Any] | str | bytes) -> tuple[dict[str, Any], dict[int, bytes]]:
    """``(canonical claim, {line number: encounter record id})`` of a FHIR R4 Claim."""
    c = validate(doc)
    kind = _coding(c.get("type"), ("http://terminology.hl7.org/CodeSystem/claim-type",), "type")
    if kind not in ("professional", "institutional"):
        raise FhirClaimError(f"Claim.type {kind!r}: only professional and institutional claims")
    if c.get("use") != "claim":
        raise FhirClaimError("Claim.use must be 'claim'")
    status = c.get("status")
    if status not in ("active", "cancelled"):
        raise FhirClaimError("Claim.status must be active (or cancelled, for a void)")
    patient = _contained(c, c.get("patient"), "Patient", "patient")
    name = _need(patient, "name.0")
    birth = _date(patient.get("birthDate"), "patient.birthDate")
    insurances = c.get("insurance") or []
    focal = [i for i in insurances if i.get("focal")]
    if len(focal) != 1:
        raise FhirClaimError("Claim.insurance must have exactly one focal coverage")
    coverage = _contained(c, focal[0].get("coverage"), "Coverage", "insurance.coverage")
    sequence = SEQUENCE.get(focal[0].get("sequence"))
    if sequence is None:
        raise FhirClaimError("Claim.insurance.sequence must be 1, 2 or 3")
    rendering = None
    team: dict[int, str] = {}
    for i, member in enumerate(c.get("careTeam", [])):
        npi = _npi(member.get("provider"), f"careTeam.{i}.provider")
        team[int(member["sequence"])] = npi
        if _get(member, "role.coding.0.code") == "primary":
            rendering = npi
    related = c.get("related") or []
    original_icn = None
    if related:
        if _get(related[0], "relationship.coding.0.code") != "prior":
            raise FhirClaimError("Claim.related.0.relationship must be 'prior' (the claim this one replaces or voids)")
        original_icn = str(_need(related[0], "claim.identifier.value"))
    items = _need(c, "item")
    first_pos = None
    lines: list[dict[str, Any]] = []
    encounters: dict[int, bytes] = {}
    for i, item in enumerate(items):
        path = f"item.{i}"
        n = int(item["sequence"])
        code = _coding(item.get("productOrService"), CPT_SYSTEMS, path + ".productOrService")
        mods = sorted(_need(m, "coding.0.code") for m in item.get("modifier", []))
        pos = None
        if item.get("locationCodeableConcept") is not None:
            pos = _coding(item["locationCodeableConcept"], (POS_SYSTEM,), path + ".locationCodeableConcept")
        if i == 0:
            first_pos = pos
        if "servicedDate" in item:
            start = end = _date(item["servicedDate"], path + ".servicedDate")
        else:
            start = _date(_get(item, "servicedPeriod.start"), path + ".servicedPeriod.start")
            end = _date(_get(item, "servicedPeriod.end"), path + ".servicedPeriod.end")
        revenue = None
        if kind == "institutional":
            revenue = _coding(item.get("revenue"), (REVENUE_SYSTEM,), path + ".revenue")
        seqs = item.get("careTeamSequence") or []
        line_rendering = team.get(int(seqs[0])) if seqs else None
        lines.append({
            "n": n, "code": code, "revenue": revenue, "modifiers": mods,
            "units_milli": _units(_get(item, "quantity.value") or 1, path + ".quantity.value"),
            "charge_cents": _cents(_need(item, "net.value"), path + ".net.value"),
            "from": start, "to": end, "pos": pos,
            "rendering_npi": line_rendering if line_rendering != rendering else None,
        })
        for enc in item.get("encounter", []):
            ident = enc.get("identifier") or {}
            if ident.get("system") == RECORD_SYSTEM:
                try:
                    rid = bytes.fromhex(str(ident["value"]).removeprefix("0x"))
                except ValueError:
                    rid = b""
                if len(rid) != 32:
                    raise FhirClaimError(f"Claim.{path}.encounter: a record id is 32 bytes of hex")
                encounters[n] = rid
    if kind == "institutional":
        tob = _coding(c.get("subType"), (TOB_SYSTEM,), "subType").lstrip("0")
        if len(tob) != 3:
            raise FhirClaimError("Claim.subType: a type of bill has 3 digits (facility type, care, frequency)")
        facility, freq = tob[:2], int(tob[2])
    else:
        if first_pos is None:
            raise FhirClaimError("Claim.item.0.locationCodeableConcept (place of service) is required")
        facility = first_pos
        freq = 1 if not related else (8 if status == "cancelled" else 7)
    for ln in lines:
        if ln["pos"] == facility or kind == "institutional":
            ln["pos"] = None
    dx = []
    for i, d in enumerate(sorted(c.get("diagnosis", []), key=lambda d: int(d["sequence"]))):
        code = _coding(d.get("diagnosisCodeableConcept"), (ICD10_SYSTEM,), f"diagnosis.{i}.diagnosisCodeableConcept")
        dx.append(code.replace(".", "").upper())
    claim = {
        "v": 1, "kind": kind, "payer_id": norm_id(str(_need(c, "insurer.identifier.value"))),
        "billing_npi": _npi(c.get("provider"), "provider"), "rendering_npi": rendering,
        "member_id": norm_id(str(_need(coverage, "subscriberId"))),
        "patient": {"last": str(_need(name, "family")).upper(),
                    "first": (str(name["given"][0]).upper() if name.get("given") else None),
                    "birth_date": birth, "sex": GENDERS.get(patient.get("gender", "unknown"), "U")},
        "pcn": str(_need(c, "identifier.0.value")), "total_cents": _cents(_need(c, "total.value"), "total.value"),
        "facility": facility, "frequency": freq, "original_icn": original_icn, "sequence": sequence,
        "diagnoses": dx, "lines": sorted(lines, key=lambda ln: ln["n"]),
    }
    try:
        check_claim(claim)
    except FhirClaimError:
        raise
    except ClaimError as exc:
        raise FhirClaimError(f"Claim: {exc}") from None
    return claim, encounters
