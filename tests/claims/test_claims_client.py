"""Claims' client flows end to end on the app harness (:class:`flow_node.FlowNode`): the
fixture files go through the real helpers -- enrollment, an 837 with a duplicate and a
claim without an encounter, the 277CA, the 835, a replacement -- and bad files change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flow_node import FlowNode

from medchaind.crypto import KeyPair
from medchaind.errors import ValidationError
from medchaind.modules.claims import canonical, x12
from medchaind.modules.claims import client as cc
from medchaind.modules.records import client as rc
from medchaind.testing.appkit import AppChain

DATA = Path(__file__).parent / "data"
BILLING = "1234567893"


def dated(name: str) -> str:
    """A fixture with its dates of service moved into the harness's month (2025-11)."""
    return (DATA / name).read_text().replace("20240110", "20251124").replace("20240111", "20251125")


class World:
    def __init__(self) -> None:
        self.c = AppChain.of()
        self.n = FlowNode(self.c)
        self.cid = self.c.app.chain_id
        self.prv, self.pay, self.pt = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
        self.n.member(self.prv, "provider")
        self.n.member(self.pay, "payer")
        self.n.member(self.pt, "patient")
        assert self.n.run(cc.enroll_provider(self.cid, self.pay, self.prv.public_key, [BILLING]))["receipt"]["ok"]
        self.n.run(rc.grant(self.cid, self.pt, actor=self.prv.public_key, actions=["read", "write"]))
        st = self.n.run(rc.add_record(self.cid, self.prv, self.pt.public_key, {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}))
        self.encounter = st["record_id"]

    def submit(self, name: str, encounters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        claims = cc.read_837(dated(name))
        enc = cc.read_encounters(encounters or {}, claims)
        return self.n.run(cc.submit_claims(self.cid, self.prv, self.pay.public_key, claims, encounters=enc))

    def status(self, claim_id: str) -> dict[str, Any]:
        return self.n.run(cc.claim_status(claim_id))  # type: ignore[no-any-return]


@pytest.fixture
def w() -> World:
    return World()


def test_enrollment_gives_both_parties_the_same_pair_key(w: World) -> None:
    k1 = w.n.run(cc.pair_key(w.pay, w.pay.public_key, w.prv.public_key))
    k2 = w.n.run(cc.pair_key(w.prv, w.pay.public_key, w.prv.public_key))
    assert k1 == k2 and len(k1) == 32
    # enrolling again (another NPI) keeps the key: blind values stay comparable
    w.n.run(cc.enroll_provider(w.cid, w.pay, w.prv.public_key, [BILLING, "1987654328"]))
    assert w.n.run(cc.pair_key(w.prv, w.pay.public_key, w.prv.public_key)) == k1
    stranger = KeyPair.generate()
    with pytest.raises(ValidationError, match="no envelope of the pair key"):
        w.n.run(cc.pair_key(stranger, w.pay.public_key, w.prv.public_key))


def test_837_to_835(w: World) -> None:
    enc = {"PCNQX0001": w.encounter, "PCNQX0002": w.encounter}
    reports = w.submit("837p_batch.txt", enc)
    assert [(r["pcn"], r["ok"], r["flags"], r["holds"]) for r in reports] == [
        ("PCNQX0001", True, [], []),
        ("PCNQX0002", True, ["exact_duplicate"], []),                     # auto-denied, CARC 18 / N522
        ("PCNZB0003", True, ["no_service_on_record"], ["no_service_on_record"]),
    ]
    first, dup, nsor = (r["claim_id"] for r in reports)
    assert w.status(dup)["status"] == "denied"
    # the payer opens each document, recomputes the blind values and acknowledges
    acks = w.n.run(cc.ack_claims(w.cid, w.pay, x12.parse_277ca(dated("277ca_batch.txt")), npi=BILLING))
    assert [(a["pcn"], a["ok"]) for a in acks] == [("PCNQX0001", True), ("PCNQX0002", True), ("PCNZB0003", True)]
    assert w.status(first)["status"] == "accepted" and w.status(dup)["status"] == "denied"
    (rem,) = x12.parse_835(dated("835_remit.txt"))
    out = w.n.run(cc.remit(w.cid, w.pay, rem))
    assert [(r["pcn"], r["ok"]) for r in out["claims"]] == [("PCNQX0001", True), ("PCNZB0003", True)]
    assert out["payment"]["ok"]
    paid = w.status(first)
    assert (paid["status"], paid["paid_cents"], paid["patient_resp_cents"]) == ("paid", 10000, 2000)
    line1 = paid["adjudications"][0]["lines"][0]
    assert line1["adjustments"] == [{"group": "CO", "reason": "45", "amount_cents": 2000},
                                    {"group": "PR", "reason": "2", "amount_cents": 2000}]
    denied = w.status(nsor)
    assert denied["status"] == "denied" and denied["adjudications"][0]["lines"][0]["remarks"] == ["M127"]
    # a replacement (frequency 7, REF*F8 = the payer's claim control number) finds its original
    (repl,) = w.submit("837p_replacement.txt", {"PCNQX0001": w.encounter})
    assert repl["ok"] and w.status(repl["claim_id"])["original"] == first
    assert w.status(first)["pending_change"] == repl["claim_id"]
    # the duplicates report, from the payer's side
    report = w.n.run(cc.claims_duplicates(payer=w.pay.public_key))
    assert {c["claim_id"] for c in report["claims"]} == {dup, nsor}
    assert report["stats"][0]["exact_duplicate"] == 2 and report["stats"][0]["no_service_on_record"] == 1
    # the provider reads its own document back
    doc = w.n.run(cc.claim_document(w.prv, first))
    assert doc["member_id"] == "QXM90011234"


def test_835_for_a_chain_denied_duplicate_is_consistent(w: World) -> None:
    reports = w.submit("837p_batch.txt", {"PCNQX0001": w.encounter, "PCNQX0002": w.encounter})
    w.n.run(cc.ack_claims(w.cid, w.pay, x12.parse_277ca(dated("277ca_batch.txt")), npi=BILLING))
    rem = x12.parse_835(dated("835_remit.txt"))[0]
    dup_clp = {"pcn": "PCNQX0002", "status": 4, "charge_cents": 15000, "paid_cents": 0, "patient_resp_cents": 0,
               "icn": "ICNQX0002", "frequency": 1, "member_id": None, "remarks": [],
               "adjustments": [{"group": "OA", "reason": "18", "amount_cents": 15000}], "lines": []}
    rem["claims"].append(dup_clp)
    out = w.n.run(cc.remit(w.cid, w.pay, rem))
    assert out["claims"][-1]["code"] == "chain_denied" and out["payment"]["ok"]
    assert w.status(reports[1]["claim_id"])["status"] == "denied"


def test_a_provider_lying_about_a_blind_value_is_caught_at_acknowledgement(w: World) -> None:
    claims = cc.read_837(dated("837p_batch.txt"))[:1]
    real = canonical.submit_body

    def lying(*a: Any, **kw: Any) -> dict[str, Any]:
        body = real(*a, **kw)
        body["lines"][0]["days"] = [b"\x00" * 32]  # dodge duplicate detection
        return body

    canonical.submit_body = lying  # type: ignore[assignment]
    try:
        (r,) = w.n.run(cc.submit_claims(w.cid, w.prv, w.pay.public_key, claims,
                                        encounters={"PCNQX0001": {1: bytes.fromhex(w.encounter[2:])}}))
    finally:
        canonical.submit_body = real  # type: ignore[assignment]
    assert r["ok"]
    (a,) = w.n.run(cc.ack_claims(w.cid, w.pay, x12.parse_277ca(dated("277ca_batch.txt"))[:1], npi=BILLING))
    assert (a["ok"], a["code"], a["reason"]) == (False, "onchain_mismatch", "line 1")
    assert w.status(r["claim_id"])["status"] == "submitted"


def test_rejected_by_the_277ca(w: World) -> None:
    text = dated("837p_batch.txt")
    claims = cc.read_837(text)
    (r,) = w.n.run(cc.submit_claims(w.cid, w.prv, w.pay.public_key, [{**claims[0], "pcn": "PCNQX0007"}]))
    (a,) = w.n.run(cc.ack_claims(w.cid, w.pay, x12.parse_277ca(dated("277ca_reject.txt")), npi=BILLING))
    assert a["ok"] and w.status(r["claim_id"])["status"] == "rejected"


def test_an_invalid_837_is_refused_before_anything_is_sent(w: World) -> None:
    bad = dated("837p_batch.txt").replace("NM1*85*2*RIVERSIDE CLINIC*****XX*1234567893~\n", "")
    before = len(w.n.calls)
    with pytest.raises(x12.X12Error, match="Billing Provider Name"):
        cc.read_837(bad)
    assert len(w.n.calls) == before


def test_a_claim_the_chain_refuses_is_reported(w: World) -> None:
    claims = cc.read_837(dated("837p_batch.txt"))
    other = {**claims[0], "billing_npi": "1987654328", "pcn": "PCNOTHER"}  # not enrolled with this payer
    reports = w.n.run(cc.submit_claims(w.cid, w.prv, w.pay.public_key, [other, claims[2]]))
    assert [(r["pcn"], r["ok"], r["code"]) for r in reports] == [("PCNOTHER", False, "npi_not_enrolled"),
                                                                ("PCNZB0003", True, "ok")]


def test_replacement_of_an_unknown_claim_is_refused_in_the_client(w: World) -> None:
    (r,) = w.submit("837p_replacement.txt")
    assert (r["ok"], r["code"]) == (False, "invalid") and "REF*F8" in r["reason"]


def test_encounters_map_is_checked() -> None:
    claims = x12.parse_837((DATA / "837p_batch.txt").read_text())
    with pytest.raises(ValidationError, match="no claim with patient control number"):
        cc.read_encounters({"NOPE": "0x" + "00" * 32}, claims)
    with pytest.raises(ValidationError, match="a line number of the claim"):
        cc.read_encounters({"PCNQX0001": {"9": "0x" + "00" * 32}}, claims)
    assert cc.read_encounters({"PCNQX0001": "0x" + "11" * 32}, claims) == {
        "PCNQX0001": {1: b"\x11" * 32, 2: b"\x11" * 32}}
