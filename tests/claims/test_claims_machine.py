"""The claims state machine, rule by rule: pre-state, one tx, post-state or error.

Every refusal goes through ``fails``, which also checks that nothing but the sender's
nonce changed. Detections are committed and read back through the queries.
"""

from __future__ import annotations

from typing import Any

import pytest
from claims_kit import (
    BILLING,
    BILLING2,
    DOS,
    DOS2,
    PAIR,
    RENDERING2,
    ClaimsChain,
    adjudication,
    claim,
    digest,
    event,
    icn,
    line,
    pay_body,
    sealed,
    submit_body,
)

from medchaind import codec
from medchaind.modules.claims import canonical
from medchaind.modules.claims.machine import get_claim
from medchaind.testing.appkit import DAY_MS, pub


@pytest.fixture
def c() -> ClaimsChain:
    return ClaimsChain.setup()


def accepted(c: ClaimsChain, cl: dict[str, Any], **kw: Any) -> bytes:
    enc = kw.pop("encounters", None)
    cid = c.submit(cl, encounters=enc, **kw)
    c.ack(cid, icn_value="ICN-" + cl["pcn"], payer=kw.get("payer", "PAY"), provider=kw.get("provider", "PRV"))
    return cid


def line_flags(c: ClaimsChain, cid: bytes, n: int = 1) -> list[dict[str, Any]]:
    return next(ln for ln in c.get(cid)["lines"] if ln["n"] == n)["flags"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ enrollment


def test_enrollment_is_visible_with_both_sealed_keys(c: ClaimsChain) -> None:
    e = c.query("claims.enrollment", {"payer": pub("PAY"), "provider": pub("PRV")})
    assert e["npis"] == [BILLING] and e["epoch"] == 0
    assert {x["recipient"] for x in e["envelopes"]} == {"0x" + pub("PAY").hex(), "0x" + pub("PRV").hex()}


@pytest.mark.parametrize("sender,provider,npis,recipients,code", [
    ("PRV", "PRV", [BILLING], ("PRV", "PRV2"), "not_payer"),             # a provider cannot enroll anyone
    ("PAY", "X", [BILLING], ("PAY", "X"), "unknown_provider"),            # X is not accredited
    ("PAY", "PRV", [BILLING], ("PAY", "PRV2"), "bad_envelopes"),          # pair key sealed to a third party
    ("PAY", "PRV", [BILLING2], ("PAY", "PRV"), "npi_taken"),              # PAY enrolled BILLING2 for PRV2
    ("PAY", "PRV", ["1234567890"], ("PAY", "PRV"), "invalid_body"),       # check digit
])
def test_enroll_refusals(c: ClaimsChain, sender: str, provider: str, npis: list[str], recipients: tuple[str, str],
                         code: str) -> None:
    envelopes = [{"recipient": pub(r), "sealed_key": sealed(r)} for r in recipients]
    c.fails(sender, "claims.enroll", {"provider": pub(provider), "npis": npis, "envelopes": envelopes}, code=code)


def test_reenrollment_replaces_the_npis_and_frees_the_old_ones(c: ClaimsChain) -> None:
    c.enroll("PAY", "PRV2", [RENDERING2])  # BILLING2 no longer PRV2's with PAY
    assert c.query("claims.enrollment", {"payer": pub("PAY"), "provider": pub("PRV2")})["epoch"] == 1
    c.enroll("PAY", "PRV", [BILLING, BILLING2])  # now free for PRV
    c.fails("PRV2", "claims.submit", submit_body(claim(billing=BILLING2), provider="PRV2"), code="npi_not_enrolled")


# ------------------------------------------------------------------ submit


def test_submit_commits_blind_values_only(c: ClaimsChain) -> None:
    enc = c.encounter()
    cl = claim(member="QXM90011234", pcn="PCNQX0001")
    cid = c.submit(cl, encounters={1: enc})
    got = c.get(cid)
    assert (got["status"], got["flags"], got["holds"]) == ("submitted", [], [])
    assert got["pcn"] == "0x" + canonical.pcn_key(PAIR[("PAY", "PRV")], "PCNQX0001").hex()
    assert got["commitment"] == "0x" + canonical.commitment(PAIR[("PAY", "PRV")], cl).hex()
    assert got["month"] == 202511 and got["lines"][0]["encounter"] == "0x" + enc.hex()
    # nothing of the member id, the PCN or the name is in the claims namespace
    blob = b"".join(k + v for (m, k), v in c.state.data.items() if m == "claims")
    for needle in (b"QXM90011234", b"PCNQX0001", b"DOE", b"19800214", b"20251124", b"J069"):
        assert needle not in blob


@pytest.mark.parametrize("provider,payer,cl,code", [
    ("X", "PAY", claim(), "not_provider"),                      # not accredited
    ("PRV2", "PAY2", claim(billing=BILLING2), "not_enrolled"),  # PRV2 never enrolled with PAY2
    ("PRV", "PAY", claim(billing=BILLING2), "npi_not_enrolled"),
])
def test_submit_refusals(c: ClaimsChain, provider: str, payer: str, cl: dict[str, Any], code: str) -> None:
    pair = (payer, provider) if (payer, provider) in PAIR else ("PAY", "PRV")
    body = canonical.submit_body(cl, PAIR[pair], payer=pub(payer), content_hash=digest("d"), size=10,
                                 envelopes=[{"recipient": pub(payer), "sealed_key": sealed("a")},
                                            {"recipient": pub(provider), "sealed_key": sealed("b")}])
    c.fails(provider, "claims.submit", body, code=code)


def test_submit_to_a_party_that_is_not_a_payer(c: ClaimsChain) -> None:
    body = submit_body(claim())
    body["payer"] = pub("PRV2")
    c.fails("PRV", "claims.submit", body, code="unknown_payer")


def test_document_must_be_sealed_to_the_payer(c: ClaimsChain) -> None:
    body = submit_body(claim())
    body["envelopes"] = [{"recipient": pub("PRV"), "sealed_key": sealed("x")}]
    c.fails("PRV", "claims.submit", body, code="bad_envelopes")


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(total=b["total"] + 1),                          # CLM02 != sum of lines
    lambda b: b.update(billing_npi="1234567890"),                      # NPI check digit
    lambda b: b.update(member_id="QXM90011234"),                       # a PHI field has no place on chain
    lambda b: b["lines"][0].update(code="9921"),                       # not a CPT/HCPCS code
    lambda b: b["lines"][0].update(days=[b["lines"][0]["days"][0]] * 2),  # duplicate day keys
    lambda b: b.update(frequency=7),                                   # replacement without its original
    lambda b: b.update(month=202512),                                  # month is the earliest line's
    lambda b: b["lines"][0].update(revenue="0450"),                    # revenue codes are institutional
    lambda b: b["lines"][0].update(units=0),
])
def test_submit_bodies_are_checked_before_any_state(c: ClaimsChain, mutate: Any) -> None:
    body = submit_body(claim())
    mutate(body)
    c.fails("PRV", "claims.submit", body, code="invalid_body")


# ------------------------------------------------------------------ exact duplicates


def test_exact_duplicate_is_committed_and_auto_denied_with_carc_18(c: ClaimsChain) -> None:
    enc = c.encounter()
    first = c.submit(claim("PCN1"), encounters={1: enc})
    dup = c.submit(claim("PCN2"), encounters={1: enc})  # same patient, DOS, code, charge...: another CLM01
    got = c.get(dup)
    assert (got["status"], got["chain_denied"], got["flags"]) == ("denied", True, ["exact_duplicate"])
    assert got["lines"][0]["denied"] == "exact_duplicate"
    assert got["lines"][0]["flags"][0]["of"] == {"claim_id": "0x" + first.hex(), "line": 1}
    (adj,) = got["adjudications"]
    assert adj["source"] == "chain" and adj["clp_status"] == 4
    assert adj["lines"][0]["adjustments"] == [{"group": "OA", "reason": "18", "amount_cents": 12500}]
    assert adj["lines"][0]["remarks"] == ["N522"]
    report = c.query("claims.duplicates", {"payer": pub("PAY")})
    assert [x["claim_id"] for x in report["claims"]] == ["0x" + dup.hex()]
    assert report["stats"][0]["exact_duplicate"] == 1 and report["stats"][0]["claims"] == 2
    # the payer's 277CA for it is recorded without changing the denial
    c.ack(dup)
    assert c.status(dup) == "denied"
    c.fails("PAY", "claims.adjudicate", adjudication(c.get(dup), 0, status=4), code="not_adjudicable")


def test_partial_duplicate_denies_the_line_only(c: ClaimsChain) -> None:
    c.submit(claim("PCN1"))
    cid = c.submit(claim("PCN2", lines=[line(1), line(2, "36415", 2500)]))
    got = c.get(cid)
    assert got["status"] == "submitted" and [ln["denied"] for ln in got["lines"]] == ["exact_duplicate", None]
    c.ack(cid)
    c.ok("PAY", "claims.release", {"claim_id": cid, "hold": "no_service_on_record"})
    body = adjudication(c.get(cid), 0)
    body["lines"][0].update(paid=12500, adjustments=[])
    body["lines"][1].update(paid=0, adjustments=[{"group": "CO", "reason": "45", "amount": 2500}])
    body["paid"] = 12500
    c.fails("PAY", "claims.adjudicate", body, code="pays_denied_line")


def test_identical_lines_within_one_claim(c: ClaimsChain) -> None:
    cid = c.submit(claim(lines=[line(1), line(2)]))
    assert [ln["denied"] for ln in c.get(cid)["lines"]] == [None, "exact_duplicate"]


@pytest.mark.parametrize("second,flag", [
    (line(mods=("59",)), None),                              # distinct procedural service
    (line(mods=("76",)), None),                              # repeat procedure, same physician
    (line(mods=("91",)), None),                              # repeat clinical lab test
    (line(units=2000, charge=25000), "same_service"),        # same service, other units
    (line(mods=("25",)), "same_service"),                    # 25 does not separate
    (line(charge=13000), "same_service"),
    (line(pos="22"), "same_service"),
    (line(date=DOS, to=DOS2), "overlapping_dates"),
    (line(date=DOS2), None),                                 # another day
    (line(code="99214"), None),                              # another service
])
def test_suspect_duplicates_and_the_modifiers_that_separate(c: ClaimsChain, second: dict[str, Any],
                                                           flag: str | None) -> None:
    c.submit(claim("PCN1"))
    cid = c.submit(claim("PCN2", lines=[second]))
    flags = [f for f in line_flags(c, cid) if f["code"] != "no_service_on_record"]
    if flag is None:
        assert flags == []
    else:
        assert flags[0]["code"] == "suspect_duplicate" and flags[0]["reason"] == flag
        got = c.get(cid)
        assert got["status"] == "submitted" and "suspect_duplicate" in got["holds"]


@pytest.mark.parametrize("first,second,suspect", [
    (("RT",), ("LT",), False),    # left and right: two services
    (("RT",), ("RT",), True),     # (units differ below, so not exact)
    (("RT",), (), True),          # one side unknown
])
def test_laterality(c: ClaimsChain, first: tuple[str, ...], second: tuple[str, ...], suspect: bool) -> None:
    c.submit(claim("PCN1", lines=[line(mods=first)]))
    cid = c.submit(claim("PCN2", lines=[line(mods=second, units=2000)]))
    assert any(f["code"] == "suspect_duplicate" for f in line_flags(c, cid)) is suspect


def test_other_patient_or_other_provider_is_no_duplicate(c: ClaimsChain) -> None:
    c.submit(claim("PCN1"))
    other_member = c.submit(claim("PCN2", member="MBR0002"))
    assert c.get(other_member)["flags"] == ["no_service_on_record"]
    other_provider = c.submit(claim("PCN3", billing=BILLING2), provider="PRV2")  # its own pair key
    assert c.get(other_provider)["flags"] == ["no_service_on_record"]


def test_rejected_claims_leave_the_duplicate_index(c: ClaimsChain) -> None:
    first = c.submit(claim("PCN1"))
    c.ack(first, "A7")
    assert c.status(first) == "rejected"
    again = c.submit(claim("PCN1"))  # resubmitted as an original: correct practice
    assert "exact_duplicate" not in c.get(again)["flags"]


# ------------------------------------------------------------------ no service on record


def test_no_service_on_record_reasons(c: ClaimsChain) -> None:
    good = c.encounter(tag="good")
    allergy = c.encounter(resource_type="AllergyIntolerance", tag="allergy")
    erased = c.encounter(tag="erased")
    c.ok("PT", "records.erase", {"record_id": erased})
    c.ok("PT", "consent.grant", {"actor": pub("PRV2"), "actions": ["write"], "decision": "permit"})
    by_prv2 = c.encounter(author="PRV2", tag="prv2")
    cases = [
        (None, "no_encounter"),
        (digest("nothing"), "unknown_record"),
        (erased, "erased_record"),
        (by_prv2, "other_author"),
        (allergy, "not_a_service"),
    ]
    for i, (enc, reason) in enumerate(cases):
        cid = c.submit(claim(f"PCN{i}", lines=[line(code="9921" + str(i % 10))]),
                       encounters=None if enc is None else {1: enc})
        (flag,) = line_flags(c, cid)
        assert (flag["code"], flag["reason"]) == ("no_service_on_record", reason), reason
        assert c.get(cid)["holds"] == ["no_service_on_record"]
    ok = c.submit(claim("PCNOK", lines=[line(code="99205")]), encounters={1: good})
    assert c.get(ok)["flags"] == []


def test_encounter_outside_the_month_of_service_window(c: ClaimsChain) -> None:
    enc = c.encounter()  # committed in 2025-11
    late = c.submit(claim("PCN1", lines=[line(date="20250915")]), encounters={1: enc})  # 2025-09: > 30 days before
    assert line_flags(c, late)[0]["reason"] == "outside_window"
    lagging = c.submit(claim("PCN2", lines=[line(date="20251020")]), encounters={1: enc})  # documented within 30 days
    assert line_flags(c, lagging) == []
    early = c.submit(claim("PCN3", lines=[line(date="20251201")]), encounters={1: enc})  # before the service month
    assert line_flags(c, early)[0]["reason"] == "outside_window"


def test_an_encounter_of_another_patient(c: ClaimsChain) -> None:
    mine, theirs = c.encounter("PT", tag="a"), c.encounter("PT2", tag="b")
    c.submit(claim("PCN1"), encounters={1: mine})  # binds this member's token to PT
    cid = c.submit(claim("PCN2", lines=[line(code="99214")]), encounters={1: theirs})
    assert line_flags(c, cid)[0]["reason"] == "other_patient"
    # and PT's record for another member's claim in the same month
    cid2 = c.submit(claim("PCN3", member="MBR0002", lines=[line(code="99215")]), encounters={1: mine})
    assert line_flags(c, cid2)[0]["reason"] == "other_patient"


def test_same_encounter_billed_as_primary_to_two_payers(c: ClaimsChain) -> None:
    enc = c.encounter()
    c.submit(claim("PCN1"), encounters={1: enc})
    second = c.submit(claim("PCN1"), payer="PAY2", encounters={1: enc})
    (flag,) = line_flags(c, second)
    assert (flag["code"], flag["reason"]) == ("suspect_duplicate", "other_payer")
    enc2 = c.encounter(tag="second visit")
    c.submit(claim("PCN3", lines=[line(code="99214", date=DOS2)]), encounters={1: enc2})
    secondary = c.submit(claim("PCN3", sequence="S", lines=[line(code="99214", date=DOS2)]), payer="PAY2",
                         encounters={1: enc2})
    assert line_flags(c, secondary) == []  # coordination of benefits: the secondary claim is expected


# ------------------------------------------------------------------ unit limits


def test_unit_limits_are_set_by_an_authority_and_auto_deny(c: ClaimsChain) -> None:
    c.fails("PAY", "claims.set_unit_limit", {"code": "36415", "max_units": 1000}, code="unauthorized")
    c.ok("A", "claims.set_unit_limit", {"code": "36415", "max_units": 1000})
    assert c.query("claims.unit_limit", {"code": "36415"})["max_units_milli"] == 1000
    cid = c.submit(claim(lines=[line(1), line(2, "36415", 5000, units=3000)]))
    got = c.get(cid)
    assert got["lines"][1]["denied"] == "unit_limit" and got["status"] == "submitted"
    all_over = c.submit(claim("PCN9", lines=[line(1, "36415", 5000, units=2000)]))
    adj = c.get(all_over)["adjudications"][0]
    assert c.status(all_over) == "denied" and adj["lines"][0]["adjustments"][0]["reason"] == "151"
    c.ok("A", "claims.set_unit_limit", {"code": "36415", "max_units": 0})  # lifted
    assert c.query("claims.unit_limit", {"code": "36415"})["max_units_milli"] is None


# ------------------------------------------------------------------ acknowledgement


def test_ack_rules(c: ClaimsChain) -> None:
    cid = c.submit(claim())
    c.fails("PAY2", "claims.ack", {"claim_id": cid, "category": "A2", "status_code": "20"}, code="not_payer")
    c.fails("PAY", "claims.ack", {"claim_id": digest("x"), "category": "A2", "status_code": "20"}, code="unknown_claim")
    c.fails("PAY", "claims.ack", {"claim_id": cid, "category": "A4", "status_code": "20"}, code="invalid_body")
    r = c.ack(cid, "A1", icn_value="ICN1")
    assert event(r, "claims.status")["status"] == "accepted"
    c.fails("PAY", "claims.ack", {"claim_id": cid, "category": "A2", "status_code": "20"}, code="already_acknowledged")
    (found,) = c.query("claims.by_ref", {"icn": icn("PAY", "PRV", "ICN1")})
    assert found["claim_id"] == "0x" + cid.hex()


@pytest.mark.parametrize("category", ["A3", "A6", "A7", "A8"])
def test_rejections(c: ClaimsChain, category: str) -> None:
    cid = c.submit(claim())
    c.ack(cid, category)
    assert c.status(cid) == "rejected"
    c.fails("PAY", "claims.adjudicate", adjudication(c.get(cid), 0), code="not_adjudicable")


# ------------------------------------------------------------------ adjudication and balancing


def adjudicable(c: ClaimsChain) -> bytes:
    enc = c.encounter()
    cid = c.submit(claim(lines=[line(1), line(2, "36415", 2500)]), encounters={1: enc, 2: enc})
    c.ack(cid)
    return cid


@pytest.mark.parametrize("mutate,code", [
    (lambda b: b.update(charge=b["charge"] + 1), "charge_mismatch"),
    (lambda b: b.update(paid=b["paid"] + 1), "unbalanced"),                       # CLP04 != sum(SVC03)
    (lambda b: (b["lines"][0].update(paid=b["lines"][0]["paid"] + 1), b.update(paid=b["paid"] + 1)),
     "unbalanced_line"),                                                           # SVC02 - SVC03 != sum(CAS)
    (lambda b: b["lines"][0].update(charge=1), "line_charge_mismatch"),
    (lambda b: b["lines"][0].update(n=9), "unknown_line"),
    (lambda b: b.update(patient_resp=1), "patient_responsibility_mismatch"),
    (lambda b: b.update(clp_status=4), "denied_with_payment"),
    (lambda b: b.update(adjustments=[{"group": "CO", "reason": "45", "amount": 1}]), "unbalanced"),
    (lambda b: b["lines"][0]["adjustments"][0].update(group="CR"), "invalid_body"),  # retired in 5010
])
def test_an_835_claim_must_balance(c: ClaimsChain, mutate: Any, code: str) -> None:
    cid = adjudicable(c)
    body = adjudication(c.get(cid), 9000, pr=1000)
    mutate(body)
    c.fails("PAY", "claims.adjudicate", body, code=code)


def test_claim_level_adjustments_balance_too(c: ClaimsChain) -> None:
    cid = adjudicable(c)
    body = adjudication(c.get(cid), 9000, pr=1000)
    body["lines"][1]["adjustments"] = []
    body["lines"][1]["paid"] = 0
    body["lines"][1]["adjustments"] = [{"group": "CO", "reason": "97", "amount": 2500}]
    body["adjustments"] = [{"group": "OA", "reason": "23", "amount": 0}]
    c.ok("PAY", "claims.adjudicate", body)
    assert c.status(cid) == "adjudicated"


def test_only_the_payer_adjudicates_and_only_accepted_claims(c: ClaimsChain) -> None:
    enc = c.encounter()
    cid = c.submit(claim(), encounters={1: enc})
    c.fails("PAY", "claims.adjudicate", adjudication(c.get(cid), 0), code="not_adjudicable")  # before the 277CA
    c.ack(cid)
    c.fails("PAY2", "claims.adjudicate", adjudication(c.get(cid), 0), code="not_payer")


def test_held_claims_cannot_be_paid_until_released(c: ClaimsChain) -> None:
    cid = c.submit(claim())  # no encounter: held
    c.ack(cid)
    c.fails("PAY", "claims.adjudicate", adjudication(c.get(cid), 10000), code="held")
    c.fails("PAY", "claims.release", {"claim_id": cid, "hold": "suspect_duplicate"}, code="no_such_hold")
    c.fails("PRV", "claims.release", {"claim_id": cid, "hold": "no_service_on_record"}, code="not_payer")
    c.ok("PAY", "claims.release", {"claim_id": cid, "hold": "no_service_on_record"})
    assert c.get(cid)["holds"] == [] and c.get(cid)["flags"] == ["no_service_on_record"]  # the flag stays
    c.adjudicate(cid, 10000)


def test_a_held_claim_may_be_denied(c: ClaimsChain) -> None:
    cid = c.submit(claim())
    c.ack(cid)
    c.adjudicate(cid, 0, status=4, reason="16")
    c.pay([cid], total=0)
    assert c.status(cid) == "denied"


# ------------------------------------------------------------------ payment


def test_payment_before_adjudication_is_refused(c: ClaimsChain) -> None:
    cid = adjudicable(c)
    c.fails("PAY", "claims.pay", pay_body(c, [cid]), code="not_adjudicated")


def test_payment_with_provider_level_adjustments(c: ClaimsChain) -> None:
    a = adjudicable(c)
    c.adjudicate(a, 9000, pr=1000)
    c.fails("PAY", "claims.pay", pay_body(c, [a], plb=[("WO", 500)], total=9000), code="unbalanced")
    c.fails("PAY", "claims.pay", pay_body(c, [a], provider="PRV2"), code="other_provider")
    c.fails("PAY2", "claims.pay", pay_body(c, [a]), code="not_payer")
    r = c.pay([a], plb=[("WO", 500)])  # BPR02 = 9000 - 500
    assert event(r, "claims.paid")["total"] == 8500
    assert c.status(a) == "paid" and c.get(a)["paid_out_cents"] == 9000
    got = c.query("claims.payment", {"payer": pub("PAY"), "trace": digest("trace/T1")})
    assert got["total_cents"] == 8500 and got["plb"] == [{"reason": "WO", "amount_cents": 500}]
    c.fails("PAY", "claims.pay", pay_body(c, [a], trace="T9"), code="not_adjudicated")  # paid already


def test_a_trace_number_pays_once(c: ClaimsChain) -> None:
    a = adjudicable(c)
    c.adjudicate(a, 9000, pr=1000)
    c.pay([a])
    b = c.submit(claim("PCNB", lines=[line(code="99215")]), encounters={1: c.encounter(tag="b")})
    c.ack(b)
    c.adjudicate(b, 100)
    c.fails("PAY", "claims.pay", pay_body(c, [b]), code="duplicate_payment")


def test_appeal_and_readjudication_pay_the_difference(c: ClaimsChain) -> None:
    a = adjudicable(c)
    c.adjudicate(a, 5000)
    c.pay([a])
    c.fails("PAY", "claims.appeal", {"claim_id": a}, code="not_provider")
    c.ok("PRV", "claims.appeal", {"claim_id": a})
    assert c.status(a) == "appealed"
    c.fails("PRV", "claims.appeal", {"claim_id": a}, code="not_appealable")
    c.adjudicate(a, 9000)
    c.pay([a], trace="T2")
    assert c.query("claims.payment", {"payer": pub("PAY"), "trace": digest("trace/T2")})["total_cents"] == 4000
    assert c.status(a) == "paid" and len(c.get(a)["adjudications"]) == 2


def test_an_auto_denied_duplicate_may_be_appealed_and_paid(c: ClaimsChain) -> None:
    enc = c.encounter()
    c.submit(claim("PCN1"), encounters={1: enc})
    dup = c.submit(claim("PCN2"), encounters={1: enc})
    c.ok("PRV", "claims.appeal", {"claim_id": dup})
    c.adjudicate(dup, 12500)
    assert c.status(dup) == "adjudicated"


# ------------------------------------------------------------------ replacement and void


def test_replacement_lifecycle(c: ClaimsChain) -> None:
    enc = c.encounter()
    orig = accepted(c, claim("PCN1"), encounters={1: enc})
    c.adjudicate(orig, 10000)
    c.pay([orig])
    repl_claim = claim("PCN1", frequency=7, original_icn="ICN-PCN1", lines=[line(code="99214", charge=20000)])
    repl = c.submit(repl_claim, encounters={1: enc}, original=orig)
    assert c.get(orig)["pending_change"] == "0x" + repl.hex() and c.status(orig) == "paid"
    assert c.get(repl)["flags"] == []  # not a duplicate of the claim it replaces
    c.fails("PRV", "claims.submit", submit_body(claim("PCN1", frequency=8, original_icn="ICN-PCN1"), original=orig),
            code="change_pending")
    c.ack(repl)
    assert c.status(orig) == "replaced" and c.get(orig)["changed_by"] == "0x" + repl.hex()
    c.fails("PRV", "claims.submit", submit_body(repl_claim, original=orig), code="original_replaced")
    # the original's lines left the index: a new copy of it is no duplicate
    again = c.submit(claim("PCN5"), encounters={1: enc})
    assert "exact_duplicate" not in c.get(again)["flags"]


def test_a_rejected_replacement_leaves_the_original(c: ClaimsChain) -> None:
    orig = accepted(c, claim("PCN1"))
    repl = c.submit(claim("PCN1", frequency=7, original_icn="I", lines=[line(charge=1)]), original=orig)
    c.ack(repl, "A7")
    got = c.get(orig)
    assert (got["status"], got["pending_change"]) == ("accepted", None)


def test_void_lifecycle(c: ClaimsChain) -> None:
    orig = accepted(c, claim("PCN1"))
    void = c.submit(claim("PCN1", frequency=8, original_icn="ICN-PCN1"), original=orig)
    assert c.get(void)["flags"] == []  # a void copies its original: no detection
    c.ack(void)
    assert c.status(orig) == "voided" and c.status(void) == "accepted"
    c.fails("PAY", "claims.adjudicate", adjudication(c.get(void), 0), code="void_not_adjudicated")
    c.fails("PRV", "claims.submit", submit_body(claim("PCN1", frequency=7, original_icn="X"), original=orig),
            code="original_voided")
    c.fails("PRV", "claims.submit", submit_body(claim("PCN1", frequency=7, original_icn="X"), original=void),
            code="original_is_void")


@pytest.mark.parametrize("setup,code", [
    ("unknown", "unknown_original"),
    ("submitted", "original_not_acknowledged"),
    ("rejected", "original_rejected"),
    ("other_provider", "unknown_original"),
    ("other_payer", "unknown_original"),
])
def test_replacement_refusals(c: ClaimsChain, setup: str, code: str) -> None:
    if setup == "unknown":
        orig = digest("nope")
    elif setup == "other_provider":
        orig = accepted(c, claim("PCN1", billing=BILLING2), provider="PRV2")
    elif setup == "other_payer":
        orig = accepted(c, claim("PCN1"), payer="PAY2")
    else:
        orig = c.submit(claim("PCN1"))
        if setup == "rejected":
            c.ack(orig, "A3")
    c.fails("PRV", "claims.submit", submit_body(claim("PCN1", frequency=7, original_icn="X"), original=orig), code=code)


# ------------------------------------------------------------------ queries and events


def test_lists_by_party_and_status(c: ClaimsChain) -> None:
    a = c.submit(claim("PCN1"))
    b = c.submit(claim("PCN2", lines=[line(code="99214")]))
    c.ack(a, "A7")
    ids = [x["claim_id"] for x in c.query("claims.list", {"provider": pub("PRV")})]
    assert ids == ["0x" + b.hex(), "0x" + a.hex()]  # newest first
    assert [x["claim_id"] for x in c.query("claims.list", {"payer": pub("PAY"), "status": "rejected"})] == [
        "0x" + a.hex()]
    assert c.query("claims.list", {"payer": pub("PAY2")}) == []
    (found,) = c.query("claims.by_ref", {"pcn": canonical.pcn_key(PAIR[("PAY", "PRV")], "PCN2")})
    assert found["claim_id"] == "0x" + b.hex()


def test_document_is_released_to_the_payer_and_provider_only(c: ClaimsChain) -> None:
    from medchaind.app.module import QueryError

    cid = c.submit(claim())
    doc = c.query("claims.document", {"claim_id": cid, "reader": pub("PAY")})
    assert doc["envelope"] == "0x" + sealed("PAY").hex()
    with pytest.raises(QueryError, match="not permitted"):
        c.query("claims.document", {"claim_id": cid, "reader": pub("PAY2")})
    assert c.get(cid)["content_hash"][2:] == digest("doc/PCN00011").hex()
    assert digest("doc/PCN00011") in c.app.live_blobs(c.state)


def test_status_events_name_both_parties(c: ClaimsChain) -> None:
    cid = c.submit(claim())
    r = c.ack(cid)
    ev = event(r, "claims.status")
    assert ev["parties"] == [pub("PRV"), pub("PAY")] and (ev["previous"], ev["status"]) == ("submitted", "accepted")
    assert c.app.modules["claims"].topics["claims"].field == "parties"


def test_two_identical_claims_in_one_block(c: ClaimsChain) -> None:
    """Both nodes of a network order a block's txs the same way: the first wins, the second is the duplicate."""
    txs = c.txs([("PRV", "claims.submit", submit_body(claim("PCN1"))),
                 ("PRV", "claims.submit", submit_body(claim("PCN2")))])
    ex = c.commit(txs)
    first, second = (bytes(event(r, "claims.submitted")["claim_id"]) for r in ex.receipts)
    assert c.status(first) == "submitted" and c.status(second) == "denied"


def test_month_window_arithmetic() -> None:
    from medchaind.modules.claims import codes

    assert codes.month_start_ms(202511) == 1_761_955_200_000  # 2025-11-01T00:00Z
    assert codes.month_end_ms(202402) - codes.month_start_ms(202402) == 29 * DAY_MS  # leap year
    assert codes.month_of_ms(codes.month_end_ms(202412)) == 202501
    assert codes.date_range("20240228", "20240301", limit=5) == ["20240228", "20240229", "20240301"]


def test_party_lists_carry_the_flag_that_the_duplicates_report_pages_over(c: ClaimsChain) -> None:
    """State layout (protocol.md §22.4): one ``lp/`` and one ``ly/`` entry ``[claim_id, flagged]``
    per claim, no separate flagged lists or document index; the report pages over the flagged
    entries only, newest first, and the pcn index's values are the documents nodes keep."""
    enc = c.encounter()
    clean = c.submit(claim("PCN1"), encounters={1: enc})          # matches its encounter: no flag
    held = c.submit(claim("PCN2", member="MBR0002"))                # no encounter: held
    dup = c.submit(claim("PCN3"), encounters={1: enc})              # exact duplicate of the first
    keys = [k for (m, k) in c.state.data if m == "claims"]
    assert not [k for k in keys if k[:3] in (b"fp/", b"fy/") or k[:2] in (b"h/", b"x/")]
    lists: dict[bytes, list[Any]] = {k[:3]: [] for k in keys if k[:3] in (b"lp/", b"ly/")}
    for (m, k), v in sorted(c.state.data.items()):
        if m == "claims" and k[:3] in lists:
            lists[k[:3]].append(codec.decode(v))
    expected = [[dup, True], [held, True], [clean, False]]  # newest first
    assert lists == {b"lp/": expected, b"ly/": expected}
    for side in ({"payer": pub("PAY")}, {"provider": pub("PRV")}):
        report = c.query("claims.duplicates", side)
        assert [x["claim_id"] for x in report["claims"]] == ["0x" + dup.hex(), "0x" + held.hex()]
        page = c.query("claims.duplicates", {**side, "offset": 1, "limit": 1})
        assert [x["claim_id"] for x in page["claims"]] == ["0x" + held.hex()]
    listed = c.query("claims.list", {"provider": pub("PRV"), "offset": 2})
    assert [x["claim_id"] for x in listed] == ["0x" + clean.hex()]
    docs = {bytes.fromhex(c.get(x)["content_hash"][2:]) for x in (clean, held, dup)}
    assert c.app.modules["claims"].live_blobs(c.state) == docs and len(docs) == 3


def test_exact_duplicate_of_a_multi_day_line_is_found_under_its_first_day(c: ClaimsChain) -> None:
    """No exact index (protocol.md §22.4): the suspect entry of the first day carries the exact key."""
    first = c.submit(claim("PCN1", lines=[line(date=DOS, to=DOS2)]))
    dup = c.submit(claim("PCN2", lines=[line(date=DOS, to=DOS2)]))
    assert c.get(dup)["lines"][0]["flags"][0] == {"code": "exact_duplicate",
                                                  "of": {"claim_id": "0x" + first.hex(), "line": 1}}
    entries = sorted((k, codec.decode(v)) for (m, k), v in c.state.data.items() if m == "claims" and k[:2] == b"s/")
    stored = get_claim(c.state, first)
    assert stored is not None and len(entries) == 2 and all(v == stored["lines"][0]["exact"] for _, v in entries)
    # the second day alone is another line: overlapping dates, not an exact duplicate
    other = c.submit(claim("PCN3", lines=[line(date=DOS2)]))
    assert [f["code"] for f in c.get(other)["lines"][0]["flags"]][:1] == ["suspect_duplicate"]
