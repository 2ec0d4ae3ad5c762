"""X12 in: the fixtures pass pyx12's TR3 validation; the strict reader maps them to claims,
acknowledgements and remittances; bad input is refused naming the segment and element."""

from __future__ import annotations

from pathlib import Path

import pytest

from medchaind.modules.claims import x12
from medchaind.modules.claims.client import read_837, validate_x12
from medchaind.modules.claims.x12 import X12Error

DATA = Path(__file__).parent / "data"
FIXTURES = ["837p_batch.txt", "837p_replacement.txt", "837i_claim.txt", "277ca_batch.txt", "277ca_reject.txt",
            "835_remit.txt"]


def text(name: str) -> str:
    return (DATA / name).read_text()


def edit(name: str, old: str, new: str, *, fix_count: int = 0) -> str:
    """A fixture with one segment changed (``fix_count`` adjusts SE01 for added/removed segments)."""
    t = text(name)
    assert old in t, old
    t = t.replace(old, new, 1)
    if fix_count:
        se = next(line for line in t.splitlines() if line.startswith("SE*"))
        n = int(se.split("*")[1])
        t = t.replace(se, f"SE*{n + fix_count}*" + se.split("*", 2)[2])
    return t


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_pass_pyx12_validation(name: str) -> None:
    validate_x12(text(name), kind=name)


def test_837p_batch() -> None:
    claims = read_837(text("837p_batch.txt"))
    assert [c["pcn"] for c in claims] == ["PCNQX0001", "PCNQX0002", "PCNZB0003"]
    first = claims[0]
    assert (first["billing_npi"], first["rendering_npi"], first["member_id"]) == ("1234567893", "1245319599",
                                                                                  "QXM90011234")
    assert first["patient"] == {"last": "QUIXOTE", "first": "XAVIERA", "birth_date": "19800214", "sex": "F"}
    assert (first["total_cents"], first["facility"], first["frequency"], first["sequence"]) == (15000, "11", 1, "P")
    assert first["diagnoses"] == ["J069", "R509"]
    assert [(ln["code"], ln["charge_cents"], ln["units_milli"], ln["from"]) for ln in first["lines"]] == [
        ("99213", 12500, 1000, "20240110"), ("36415", 2500, 1000, "20240110")]
    assert claims[2]["member_id"] == "ZBM70045678" and claims[2]["total_cents"] == 20000


def test_837p_replacement_and_837i() -> None:
    (repl,) = read_837(text("837p_replacement.txt"))
    assert (repl["frequency"], repl["original_icn"]) == (7, "ICNQX0001")
    (inst,) = read_837(text("837i_claim.txt"))
    assert (inst["kind"], inst["facility"], inst["billing_npi"], inst["rendering_npi"]) == (
        "institutional", "13", "1987654328", "1555123458")
    assert [(ln["revenue"], ln["code"], ln["modifiers"]) for ln in inst["lines"]] == [
        ("0450", "99284", []), ("0320", "73610", ["RT"])]


def test_277ca() -> None:
    acks = x12.parse_277ca(text("277ca_batch.txt"))
    assert [(a["pcn"], a["category"], a["status_code"], a["icn"], a["accepted"]) for a in acks] == [
        ("PCNQX0001", "A2", "20", "ICNQX0001", True), ("PCNQX0002", "A2", "20", "ICNQX0002", True),
        ("PCNZB0003", "A2", "20", "ICNZB0003", True)]
    (rej,) = x12.parse_277ca(text("277ca_reject.txt"))
    assert (rej["category"], rej["accepted"], rej["icn"]) == ("A7", False, None)


def test_835() -> None:
    (rem,) = x12.parse_835(text("835_remit.txt"))
    assert (rem["total_cents"], rem["method"], rem["trace"], rem["payee_npi"]) == (9500, "ACH", "EFTQX20240125",
                                                                                 "1234567893")
    paid, denied = rem["claims"]
    assert (paid["charge_cents"], paid["paid_cents"], paid["patient_resp_cents"], paid["icn"]) == (15000, 10000, 2000,
                                                                                                  "ICNQX0001")
    assert paid["lines"][0]["adjustments"] == [{"group": "CO", "reason": "45", "amount_cents": 2000},
                                               {"group": "PR", "reason": "2", "amount_cents": 2000}]
    assert denied["status"] == 4 and denied["lines"][0]["remarks"] == ["M127"]
    assert rem["plb"] == [{"reason": "WO", "reference": "ICNOLD0001", "amount_cents": 500}]


# ------------------------------------------------------------------ refusals


def test_missing_loop_is_refused_with_pyx12s_reason() -> None:
    bad = edit("837p_batch.txt", "NM1*85*2*RIVERSIDE CLINIC*****XX*1234567893~\n", "", fix_count=-1)
    with pytest.raises(X12Error, match=r"TR3 validation \(pyx12\).*Billing Provider Name.*2010AA.*missing"):
        read_837(bad)


def test_bad_element_is_refused_naming_the_element() -> None:
    bad = edit("837p_batch.txt", "SV1*HC:99214*200*UN", "SV1*HC:99214*2X0*UN")
    with pytest.raises(X12Error, match=r"SV1 \(Professional Service\) element 02 \(Line Item Charge Amount\)"):
        read_837(bad)
    # and the strict reader alone (without pyx12) names it the same way
    with pytest.raises(X12Error, match=r"837 segment \d+ \(SV1\) SV102: '2X0' is not an amount"):
        x12.parse_837(bad)


@pytest.mark.parametrize("old,new,match", [
    ("XX*1234567893~\nN3", "XX*1234567890~\nN3", r"\(NM1\) NM109: '1234567890' is not a valid NPI"),
    ("HI*ABK:M545~", "HI*BK:M545~", r"\(HI\) HI01-1: ICD-9 qualifier 'BK'"),
    ("HI*ABK:M545~", "HI*ABK:5M45~", r"'5M45' is not an ICD-10-CM code"),
    ("CLM*PCNZB0003*200***", "CLM*PCNZB0003*201***", r"\(CLM\) CLM02: total charge 201.00 is not the sum"),
    ("11:B:1*Y*A*Y*Y~\nHI*ABK:M545", "11:B:5*Y*A*Y*Y~\nHI*ABK:M545", r"CLM05-3: claim frequency '5'"),
    ("SV1*HC:99214*200*UN*1", "SV1*HC:9921*200*UN*1", r"SV101-2: '9921' is not a CPT / HCPCS code"),
    ("SV1*HC:99214*200*UN*1", "SV1*HC:99214*200.001*UN*1", r"SV102: '200.001' is not an amount"),
    ("DTP*472*D8*20240111", "DTP*472*D8*20240231", r"\(DTP\) DTP03: '20240231' is not a calendar date"),
    ("SE*57*0001~", "SE*56*0001~", r"SE01 says '56' segments, the set has 57"),
    ("GE*1*101~", "GE*1*102~", r"GE02 '102' does not match GS06 '101'"),
])
def test_strict_reader_refusals(old: str, new: str, match: str) -> None:
    with pytest.raises(X12Error, match=match):
        x12.parse_837(edit("837p_batch.txt", old, new))


def test_not_an_837() -> None:
    with pytest.raises(X12Error, match="does not start with an ISA"):
        x12.parse_837("hello")
    with pytest.raises(X12Error, match=r"functional identifier 'HP': this is not a 837 group"):
        x12.parse_837(text("835_remit.txt"))
    with pytest.raises(X12Error, match=r"version '005010X222A2' is not supported"):
        x12.parse_837(text("837p_batch.txt").replace("005010X222A1", "005010X222A2"))
    with pytest.raises(X12Error, match="pyx12"):  # pyx12 has no map for the later errata either
        validate_x12(text("837p_batch.txt").replace("005010X222A1", "005010X222A2"))


@pytest.mark.parametrize("old,new,match", [
    ("CLP*PCNQX0001*1*150*100*20", "CLP*PCNQX0001*1*150*101*20", r"CLP04 is not the sum of the service line"),
    ("CAS*CO*45*20~", "CAS*CO*45*21~", r"\(SVC\): the line does not balance"),
    ("CLP*PCNQX0001*1*150*100*20", "CLP*PCNQX0001*1*150*100*21", r"CLP05 21.00 is not the sum of the PR"),
    ("BPR*I*95*", "BPR*I*100*", r"BPR02 100.00 is not the sum of the claim payments"),
    ("CAS*CO*16*200~", "CAS*CR*16*200~", r"adjustment group 'CR'"),
    ("LQ*HE*M127~", "LQ*HE*X127~", r"'X127' is not a remittance advice remark code"),
])
def test_835_must_balance(old: str, new: str, match: str) -> None:
    with pytest.raises(X12Error, match=match):
        x12.parse_835(edit("835_remit.txt", old, new))


def test_277ca_refusals() -> None:
    with pytest.raises(X12Error, match=r"status category 'A4' is not an acknowledgement"):
        x12.parse_277ca(edit("277ca_reject.txt", "STC*A7:21:PR*20240116*U", "STC*A4:21:PR*20240116*U"))
