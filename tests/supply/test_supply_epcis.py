"""EPCIS 2.0 documents on the client: schema, canonical event hash vectors, conversion,
and a whole DSCSA lifecycle document set captured on the app harness."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from medchaind.modules.supply import epcis, gs1, samples
from medchaind.modules.supply.machine import gs1_check_digit, index_key_check
from medchaind.testing.appkit import AppChain

VECTORS = Path(__file__).parent / "vectors"
KEY = bytes(range(32))


def wc(d: str) -> str:
    return d + str(gs1_check_digit(d))


PARTIES = samples.Parties(wc("061414100001"), wc("061414100002"), wc("061414100003"))
GTIN = wc("0030001234567")


@pytest.mark.parametrize("name", sorted(p.stem for p in VECTORS.glob("*.jsonld")))
def test_canonical_hash_vectors(name: str) -> None:
    doc = json.loads((VECTORS / f"{name}.jsonld").read_text())
    want = [line.strip() for line in (VECTORS / f"{name}.hashes").read_text().splitlines() if line.strip()]
    epcis.validate_document(doc)  # the generator's examples pass medchain's focused schema
    assert epcis.event_hashes(doc) == want


def _doc(*events: dict[str, Any]) -> dict[str, Any]:
    return {"@context": [epcis.OFFLINE_CONTEXTS[0]], "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": "2025-06-01T00:00:00Z", "epcisBody": {"eventList": list(events)}}


def _ev(**kw: Any) -> dict[str, Any]:
    base = {"type": "ObjectEvent", "eventTime": "2025-06-01T10:00:00.000+02:00", "eventTimeZoneOffset": "+02:00",
            "action": "OBSERVE", "epcList": [gs1.sgtin_urn(GTIN, "S1", 7)], "bizStep": "shipping"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_schema_errors_name_the_event_and_field() -> None:
    bad = _doc(_ev(), _ev(eventID="urn:uuid:2", action="MOVE"), _ev(eventTime=None),
               _ev(type="AggregationEvent", action="ADD", epcList=None, childEPCs=["x"]),
               _ev(epcList=None))
    with pytest.raises(epcis.EpcisError) as info:
        epcis.validate_document(bad)
    problems = info.value.problems
    assert any(p.startswith("event 2 (urn:uuid:2): action:") and "'MOVE'" in p for p in problems), problems
    assert any(p.startswith("event 3: event:") and "'eventTime' is a required property" in p for p in problems)
    assert any(p.startswith("event 4: event:") and "parentID" in p for p in problems), problems
    assert any(p.startswith("event 5: event:") and "epcList" in p for p in problems), problems
    with pytest.raises(epcis.EpcisError, match="document: type"):
        epcis.validate_document({**_doc(_ev()), "type": "EPCISQueryDocument"})


def test_unresolvable_context_is_refused_before_the_network() -> None:
    doc = {**_doc(_ev()), "@context": ["https://ref.gs1.org/standards/epcis/epcis-context-simple.jsonld"]}
    with pytest.raises(epcis.EpcisError, match="cannot be resolved offline"):
        epcis.validate_document(doc)


def test_conversion_of_an_object_event() -> None:
    ev = _ev(sourceList=[{"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00001"}],
             destinationList=[{"type": "https://ref.gs1.org/cbv/SDT-owning_party",
                               "destination": "urn:epc:id:pgln:0614141.00002"},
                              {"type": "location", "destination": "urn:epc:id:sgln:0614141.00002.0"}],
             bizStep="https://ref.gs1.org/cbv/BizStep-shipping", disposition="urn:epcglobal:cbv:disp:in_transit")
    [p] = epcis.prepare(_doc(ev), lambda g: KEY)
    assert p.problem is None and p.body is not None
    assert p.body["biz_step"] == "shipping" and p.body["disposition"] == "in_transit"
    assert p.body["source"] == PARTIES.manufacturer and p.body["dest"] == PARTIES.distributor
    assert p.body["epcs"] == [gs1.sgtin_oid(KEY, GTIN, "S1")]
    assert p.body["time_ms"] == epcis.event_time_ms("2025-06-01T08:00:00Z")
    assert p.hash == epcis.hash_digest(p.hash_uri)


def test_events_that_cannot_be_converted_are_reported_by_name() -> None:
    commission = _ev(action="ADD", bizStep="commissioning",
                     epcList=[gs1.sgtin_urn(GTIN, "S1", 7), gs1.sgtin_urn(wc("0030009999999"), "S2", 7)],
                     ilmd={"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2027-01-31"})
    no_ilmd = _ev(eventID="urn:uuid:e2", action="ADD", bizStep="commissioning")
    grai = _ev(epcList=["urn:epc:id:grai:0614141.12345.400"])
    no_key = _ev(epcList=[gs1.sgtin_urn(wc("0030007777777"), "S3", 7)])

    def keys(gtin: str) -> bytes:
        if gtin == wc("0030007777777"):
            raise KeyError(gtin)
        return KEY

    out = epcis.prepare(_doc(commission, no_ilmd, grai, no_key), keys)
    assert [p.problem is not None for p in out] == [True, True, True, True]
    assert "event 1: commissions units of 2 GTINs" in (out[0].problem or "")
    assert "event 2 (urn:uuid:e2): ilmd: commissioning needs cbvmda:lotNumber" in (out[1].problem or "")
    assert "event 3: epcList:" in (out[2].problem or "") and "only SGTIN and SSCC" in (out[2].problem or "")
    assert f"event 4: no index key for GTIN {wc('0030007777777')}" in (out[3].problem or "")
    with pytest.raises(epcis.EpcisError):
        epcis.prepare(_doc(grai), keys, stop_on_error=True)


def test_error_declaration_targets_the_original_hash() -> None:
    original = _ev(eventID="urn:uuid:orig")
    fix = _ev(eventID="urn:uuid:fix", epcList=[gs1.sgtin_urn(GTIN, "S9", 7)])
    declared = copy.deepcopy(original)
    declared["errorDeclaration"] = {"declarationTime": "2025-06-02T00:00:00Z",
                                    "reason": "https://ref.gs1.org/cbv/ER-incorrect_data",
                                    "correctiveEventIDs": ["urn:uuid:fix"]}
    a, b, c = epcis.prepare(_doc(original, fix, declared), lambda g: KEY)
    assert c.body is None and c.error == {"event": a.hash, "reason": "incorrect_data",
                                          "declared_ms": epcis.event_time_ms("2025-06-02T00:00:00Z"),
                                          "corrective": [b.hash]}
    # batches keep document order and put each declaration alone
    assert [[p.index for p in batch] for batch in epcis.batches([a, b, c])] == [[0, 1], [2]]


def test_batches_respect_the_chain_limits() -> None:
    docs = samples.lifecycle(PARTIES, GTIN, "L1", "2027-05-31", 250)
    prep = epcis.prepare(docs["pharmacy"], lambda g: KEY)
    got = list(epcis.batches(prep, max_events=100, max_objects=1024))
    # receiving, one aggregation check, 21 case unpacks, 250 dispensings
    assert [len(b) for b in got] == [100, 100, 73]
    assert [p.index for b in got for p in b] == list(range(len(prep)))


def _chain_for_samples() -> AppChain:
    c = AppChain.of({"A": 1})
    for name, role, gln in (("M", "manufacturer", PARTIES.manufacturer), ("D", "distributor", PARTIES.distributor),
                            ("P", "pharmacy", PARTIES.pharmacy)):
        c.register(name, role)
        c.accredit(name, role)
        c.ok(name, "supply.register_party", {"gln": gln})
    c.ok("M", "supply.register_product", {"gtin": GTIN, "key_check": index_key_check(KEY)})
    return c


def _capture_doc(c: AppChain, name: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    flagged = []
    for batch in epcis.batches(epcis.prepare(doc, lambda g: KEY, stop_on_error=True)):
        r = c.send(name, "supply.capture", {"events": [p.body for p in batch]})
        assert r.ok, r
        flagged += [e for e in r.events if e["type"] == "supply.flagged"]
    return flagged


def test_a_dscsa_lifecycle_document_set_captures_clean_and_anomalies_are_caught() -> None:
    c = _chain_for_samples()
    docs = samples.lifecycle(PARTIES, GTIN, "LOT-7", "2027-05-31", 60, per_case=12)
    assert _capture_doc(c, "M", docs["manufacturer"]) == []
    assert _capture_doc(c, "D", docs["distributor"]) == []
    assert _capture_doc(c, "P", docs["pharmacy"]) == []
    lot = gs1.lot_id(KEY, GTIN, "LOT-7")
    assert c.query("supply.lot", {"gtin": GTIN, "lot_id": lot})["units"] == 60
    assert c.query("supply.holders", {"gtin": GTIN, "lot_id": lot})["holders"] == []  # all dispensed
    unit0 = gs1.sgtin_oid(KEY, GTIN, samples.serial(0))
    assert c.query("supply.unit", {"oid": unit0})["status"] == "dispensed"
    bad = samples.anomalies(PARTIES, GTIN, "LOT-7", "2027-05-31")
    codes = {e["code"] for e in _capture_doc(c, "P", bad["pharmacy"])}
    assert codes == {"not_commissioned", "dispensed_twice"}
    codes = {e["code"] for e in _capture_doc(c, "D", bad["distributor"])}
    assert codes == {"not_owner"}
    # re-importing a document is idempotent: every event is a duplicate
    r = c.send("D", "supply.capture", {"events": [p.body for p in epcis.prepare(docs["distributor"],
                                                                                 lambda g: KEY)]})
    assert r.ok and [e["duplicates"] for e in r.events if e["type"] == "supply.captured"] == [3]
