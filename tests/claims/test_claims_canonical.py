"""One claim, one canonical form: X12 and FHIR give the same bytes and commitment; NPI check
digits; money without floats; blind values keyed by the pair."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchaind.modules.claims import canonical, codes, x12
from medchaind.modules.claims.fhir_claim import FhirClaimError, parse_fhir_claim

DATA = Path(__file__).parent / "data"
KEY = b"\x07" * 32


def fhir_doc() -> dict:
    return json.loads((DATA / "fhir_claim_qx0001.json").read_text())


def test_x12_and_fhir_forms_canonicalise_to_one_claim_and_one_commitment() -> None:
    from_x12 = x12.parse_837((DATA / "837p_batch.txt").read_text())[0]
    from_fhir, encounters = parse_fhir_claim((DATA / "fhir_claim_qx0001.json").read_text())
    assert from_fhir == from_x12 and encounters == {}
    assert canonical.canonical_bytes(from_fhir) == canonical.canonical_bytes(from_x12)
    assert canonical.commitment(KEY, from_fhir) == canonical.commitment(KEY, from_x12)
    # the same claim under another pair key commits differently: nobody else can test a guess
    assert canonical.commitment(b"\x08" * 32, from_x12) != canonical.commitment(KEY, from_x12)


def test_fhir_encounter_references_and_replacement() -> None:
    doc = fhir_doc()
    doc["item"][0]["encounter"] = [{"identifier": {"system": "urn:medchain:record", "value": "0x" + "ab" * 32}}]
    doc["related"] = [{"claim": {"identifier": {"value": "ICNQX0001"}},
                       "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                    "ex-relatedclaimrelationship", "code": "prior"}]}}]
    claim, enc = parse_fhir_claim(json.dumps(doc))
    assert enc == {1: bytes.fromhex("ab" * 32)}
    assert (claim["frequency"], claim["original_icn"]) == (7, "ICNQX0001")
    doc["status"] = "cancelled"
    assert parse_fhir_claim(json.dumps(doc))[0]["frequency"] == 8


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(resourceType="Patient"), "resourceType must be Claim"),
    (lambda d: d["provider"]["identifier"].update(value="1234567890"),
     r"Claim.provider.identifier must be a valid NPI"),
    (lambda d: d["total"].update(value=151), "total_cents must equal the sum"),
    (lambda d: d["item"][0]["net"].update(value=125.001), r"item.0.net.value has more than 2 decimals"),
    (lambda d: d["item"][0].update(servicedDate="2024-02-30"), r"Claim.item.0.servicedDate"),
    (lambda d: d.update(status="draft"), "Claim.status must be active"),
    (lambda d: d.update(created="yesterday"), r"Claim.created"),  # fhir.resources' own check
    (lambda d: d["contained"].pop(1), "no contained Coverage"),
])
def test_fhir_refusals_name_the_path(mutate: object, match: str) -> None:
    doc = fhir_doc()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(FhirClaimError, match=match):
        parse_fhir_claim(json.dumps(doc))


def test_fhir_duplicate_keys_are_refused() -> None:
    with pytest.raises(FhirClaimError, match="duplicate JSON key"):
        parse_fhir_claim('{"resourceType": "Claim", "resourceType": "Claim"}')


@pytest.mark.parametrize("npi,valid", [
    ("1234567893", True),   # the CMS NPI standard's worked example
    ("1245319599", True),
    ("1234567890", False),
    ("123456789", False),
    ("12345678931", False),
    ("123456789X", False),
    ("１２３４５６７８９３", False),  # full-width digits are digits to str.isdigit, not to X12
])
def test_npi_check_digit(npi: str, valid: bool) -> None:
    assert codes.is_npi(npi) is valid


def test_npi_check_digit_generator() -> None:
    assert codes.npi_check_digit("123456789") == "3"


@pytest.mark.parametrize("text,cents", [("125", 12500), ("125.5", 12550), ("125.05", 12505), ("-10.00", -1000),
                                        ("0", 0), (".5", None), ("1.234", None), ("1e3", None), ("", None)])
def test_amounts_are_integer_cents(text: str, cents: int | None) -> None:
    if cents is None:
        with pytest.raises(ValueError):
            codes.cents(text)
    else:
        assert codes.cents(text) == cents


def test_blind_values_are_keyed_and_domain_separated() -> None:
    a = canonical.pcn_key(KEY, "PCN1")
    assert a == canonical.pcn_key(KEY, " pcn1 ")  # normalised as X12 carries it
    assert a != canonical.icn_key(KEY, "PCN1")  # another label
    assert a != canonical.pcn_key(b"\x09" * 32, "PCN1")  # another pair
    day = canonical.day_key(KEY, "M1", "19800214", "20240110")
    assert day != canonical.day_key(KEY, "M1", "19800215", "20240110")  # a twin with another birth date
    assert canonical.patient_token(KEY, "M1", "19800214", 202401) != canonical.patient_token(KEY, "M1", "19800214",
                                                                                             202402)


def test_submit_body_puts_no_identifier_on_chain() -> None:
    claim = x12.parse_837((DATA / "837p_batch.txt").read_text())[0]
    body = canonical.submit_body(claim, KEY, payer=b"\x01" * 32, content_hash=b"\x02" * 32, size=10,
                                 envelopes=[{"recipient": b"\x01" * 32, "sealed_key": b"\x03" * 80}])
    flat = repr(body).encode()
    for needle in (b"QXM90011234", b"PCNQX0001", b"QUIXOTE", b"XAVIERA", b"19800214", b"20240110", b"J069",
                   b"ACME01"):
        assert needle not in flat
    assert body["month"] == 202401 and body["total"] == 15000 and body["billing_npi"] == "1234567893"


def test_verify_submission_catches_a_tampered_value() -> None:
    claim = x12.parse_837((DATA / "837p_batch.txt").read_text())[0]
    body = canonical.submit_body(claim, KEY, payer=b"\x01" * 32, content_hash=b"\x02" * 32, size=10,
                                 envelopes=[{"recipient": b"\x01" * 32, "sealed_key": b"\x03" * 80}])

    def onchain(b: dict) -> dict:
        return {"commitment": "0x" + b["claim"].hex(), "pcn": "0x" + b["pcn"].hex(), "total_cents": b["total"],
                "billing_npi": b["billing_npi"], "patient": "0x" + b["patient"].hex(),
                "lines": [{"n": ln["n"], "code": ln["code"], "modifiers": ln.get("modifiers", []),
                           "units_milli": ln["units"], "charge_cents": ln["charge"], "month": ln["month"],
                           "days": ["0x" + d.hex() for d in ln["days"]]} for ln in b["lines"]]}

    assert canonical.verify_submission(claim, KEY, onchain(body)) == []
    body["lines"][0]["days"] = [b"\x00" * 32]  # a provider dodging duplicate detection
    assert canonical.verify_submission(claim, KEY, onchain(body)) == ["line 1"]
