"""The client helpers, driven against the app harness (:mod:`client_kit`): index keys
sealed on chain, EPCIS import with refusals and resume, verification, recall, cases."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from client_kit import FlowNode

from medchaind.crypto import EncryptionKey, KeyPair, SigningKey
from medchaind.modules.identity.client import register_identity
from medchaind.modules.supply import client as sc
from medchaind.modules.supply import epcis, gs1, samples
from medchaind.modules.supply.machine import gs1_check_digit
from medchaind.testing.appkit import AppChain


def wc(d: str) -> str:
    return d + str(gs1_check_digit(d))


def kp(name: str) -> KeyPair:
    seed = hashlib.sha256(b"supply-client/" + name.encode()).digest()
    return KeyPair(SigningKey(seed), EncryptionKey(hashlib.sha256(seed).digest()))


M, D, P, F, Q = (kp(n) for n in "MDPFQ")
PARTIES = samples.Parties(wc("061414100001"), wc("061414100002"), wc("061414100003"))
GLN_F, GLN_Q = wc("061414100007"), wc("061414100004")
GTIN = wc("0030001234567")
LOT = "LOT-42"
EXP = "2027-05-31"


@pytest.fixture
def node() -> FlowNode:
    c = AppChain.of({"A": 1})
    n = FlowNode(c)
    chain_id = c.app.chain_id
    for who, role, gln in ((M, "manufacturer", PARTIES.manufacturer), (D, "distributor", PARTIES.distributor),
                           (P, "pharmacy", PARTIES.pharmacy), (F, "regulator", GLN_F), (Q, "pharmacy", GLN_Q)):
        assert n.run(register_identity(chain_id, who, role))["receipt"]["ok"]
        assert c.send("A", "governance.accredit", {"subject": who.public_key, "role": role}).ok
        assert n.run(sc.register_party(chain_id, who, gln))["receipt"]["ok"]
    st = n.run(sc.register_product(chain_id, M, GTIN, ndc="0001-2345-67", share_with=[D.public_key, P.public_key,
                                                                                     F.public_key]))
    assert st["receipt"]["ok"] and st["registered"]["receipt"]["ok"]
    return n


def _import(n: FlowNode, who: KeyPair, doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    report: dict[str, Any] = n.run(sc.import_epcis(n.c.app.chain_id, who, doc, **kw))
    return report


def test_index_keys_are_sealed_on_chain_to_the_chosen_members(node: FlowNode) -> None:
    k = node.run(sc.index_key(M, GTIN))
    assert node.run(sc.index_key(D, GTIN)) == k == node.run(sc.index_key(F, GTIN))
    with pytest.raises(sc.IndexKeyError, match="no index key of GTIN"):
        node.run(sc.index_key(Q, GTIN))
    assert node.run(sc.share_index_key(node.c.app.chain_id, M, GTIN, [Q.public_key]))["receipt"]["ok"]
    assert node.run(sc.index_key(Q, GTIN)) == k


def test_import_a_lifecycle_then_resume_and_reimport(node: FlowNode) -> None:
    docs = samples.lifecycle(PARTIES, GTIN, LOT, EXP, 40, per_case=10)
    progress: list[dict[str, Any]] = []
    rep = _import(node, M, docs["manufacturer"], on_progress=progress.append)
    assert (rep["captured"], rep["refused"], rep["flags"]) == (rep["events"], [], [])
    assert [p["batch"] for p in progress] == [1]
    rep = _import(node, D, docs["distributor"])
    assert rep["captured"] == 3 and rep["flags"] == []
    rep = _import(node, P, docs["pharmacy"], batch_events=16)
    assert rep["captured"] == rep["events"] == 46 and rep["flags"] == [] and len(rep["txs"]) == 3
    # resume: events already committed are skipped without a tx
    done = {h for p in progress for h in p["committed"]}
    rep = _import(node, M, docs["manufacturer"], done=done)
    assert rep["skipped"] == rep["events"] and rep["txs"] == []
    # a plain re-import is safe: the chain de-duplicates by canonical hash
    rep = _import(node, M, docs["manufacturer"])
    assert rep["captured"] == 0 and rep["duplicates"] == rep["events"]
    # and the anomalies are flagged, with the events named
    bad = samples.anomalies(PARTIES, GTIN, LOT, EXP)
    rep = _import(node, P, bad["pharmacy"])
    assert sorted(f["code"] for f in rep["flags"]) == ["dispensed_twice", "not_commissioned"]
    assert {f["event"] for f in rep["flags"]} == {"event 1", "event 2"}
    rep = _import(node, D, bad["distributor"])
    assert [f["code"] for f in rep["flags"]] == ["not_owner"]


def test_refused_events_are_reported_and_the_rest_captured(node: FlowNode) -> None:
    docs = samples.lifecycle(PARTIES, GTIN, LOT, EXP, 4, per_case=4)
    doc = copy.deepcopy(docs["manufacturer"])
    # the distributor tries to import the manufacturer's document: commissioning refused
    # (not its product), packing and shipping then concern objects it does not own
    rep = _import(node, D, doc)
    codes = [(r["event"], r["code"]) for r in rep["refused"]]
    assert codes[0] == ("event 1", "not_product_owner") and "belongs to another party" in rep["refused"][0]["reason"]
    # the shipment names M as source: refused as not D's to report
    assert codes[1:] == [("event 4", "source_not_sender")]  # commission, pack case, pack pallet, ship
    assert rep["captured"] == rep["events"] - len(rep["refused"])
    # an event that cannot be converted is reported by the client before signing
    ev = copy.deepcopy(doc["epcisBody"]["eventList"][0])
    ev["epcList"] = ["urn:epc:id:grai:0614141.12345.400"]
    rep = _import(node, M, {**doc, "epcisBody": {"eventList": [ev]}})
    assert rep["refused"][0]["code"] == "invalid_event" and "only SGTIN and SSCC" in rep["refused"][0]["reason"]
    # a schema-invalid document is refused whole, naming the event and field
    broken = copy.deepcopy(doc)
    del broken["epcisBody"]["eventList"][1]["eventTime"]
    with pytest.raises(epcis.EpcisError, match="event 2: event: 'eventTime' is a required property"):
        _import(node, M, broken)


def test_a_member_without_the_index_key_gets_a_clear_refusal(node: FlowNode) -> None:
    docs = samples.lifecycle(PARTIES, GTIN, LOT, EXP, 2, per_case=2)
    rep = _import(node, Q, docs["pharmacy"])
    # events naming only SSCCs need no key (receiving and unpacking the case); the
    # aggregation check and the two dispensings name SGTINs
    assert rep["captured"] == 2 and [r["event"] for r in rep["refused"]] == ["event 2", "event 4", "event 5"]
    assert all("no index key for GTIN" in r["reason"] for r in rep["refused"])
    assert any("ask the product's owner" in w for w in rep["warnings"])


def test_verify_recall_holders_and_cases(node: FlowNode) -> None:
    chain_id = node.c.app.chain_id
    docs = samples.lifecycle(PARTIES, GTIN, LOT, EXP, 6, per_case=3)
    _import(node, M, docs["manufacturer"])
    _import(node, D, docs["distributor"])
    exp = gs1.expiry_from_iso(EXP)
    ans = node.run(sc.verify_product(D, GTIN, samples.serial(0), lot=LOT, expiry=exp, corr_uuid="u-1",
                                     context="dscsaSaleableReturn", requester_gln=PARTIES.distributor))
    assert ans["data"] == {"verified": True} and ans["responderGLN"] == PARTIES.manufacturer
    assert ans["corrUUID"] == "u-1" and ans["request"]["reqGLN"] == PARTIES.distributor
    assert node.run(sc.verify_product(D, GTIN, samples.serial(0), lot="OTHER"))["data"]["verificationFailureReason"] \
        == "No_match_Lot"
    assert node.run(sc.verify_product(D, GTIN, "FAKE1"))["data"]["verificationFailureReason"] == "No_match_GTIN_Serial"
    # the regulator recalls the lot: the holders are the pharmacy (inbound) and the distributor
    st = node.run(sc.recall_lot(chain_id, F, GTIN, LOT, cls="I", reason="sterility"))
    assert st["receipt"]["ok"]
    pushed = st["receipt"]["events"][0]
    assert set(pushed["parties"]) >= {"0x" + D.public_key.hex(), "0x" + P.public_key.hex()}
    holders = node.run(sc.lot_holders(F, GTIN, LOT))
    assert {(h["gln"], h["held"], h["inbound"]) for h in holders["holders"]} == {
        (PARTIES.distributor, 6, 0), (PARTIES.pharmacy, 0, 6)}
    assert node.run(sc.verify_product(D, GTIN, samples.serial(1)))["data"]["additionalInfo"] == "Recalled"
    # a suspect case on one unit, then the trace shows it
    key = node.run(sc.index_key(P, GTIN))
    unit = gs1.sgtin_oid(key, GTIN, samples.serial(2))
    st = node.run(sc.open_case(chain_id, P, "suspect", "counterfeit", [unit], gtin=GTIN))
    assert st["receipt"]["ok"] and st["case_id"].startswith("0x")
    cases = node.run(sc.supply_cases())
    assert [c["status"] for c in cases] == ["suspect"]
    st = node.run(sc.update_case(chain_id, M, bytes.fromhex(st["case_id"][2:]), "investigating"))
    assert st["receipt"]["ok"]
    trace = node.run(sc.trace_unit(P, gtin=GTIN, serial=samples.serial(2)))
    assert [e["biz_step"] for e in trace["events"]][:2] == ["commissioning", "packing"]
    assert trace["cases"][0]["status"] == "investigating"
