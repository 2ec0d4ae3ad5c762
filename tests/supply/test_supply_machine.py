"""The supply state machine on the shared app harness: pre-state, tx, post-state or error.

One test (or one table row) per detection, with the reason it is flagged or refused in
its comment; the lifecycle tests check custody and the lot holder counters after every
step. See the module docstring of :mod:`medchaind.modules.supply.machine` for the rules.
"""

from __future__ import annotations

from typing import Any

import pytest
from supply_kit import (
    EXP,
    EXP_SOON,
    GLNS,
    GTIN_A,
    GTIN_B,
    LOT1,
    LOT2,
    SupplyChain,
    check_agg,
    commission,
    decommission,
    destroy,
    dispense,
    event,
    flags,
    h,
    observe,
    pack,
    receive,
    sgtin,
    ship,
    sscc,
    unpack,
    void,
    with_check,
)

from medchaind.modules.supply.machine import expiry_end_ms
from medchaind.testing.appkit import DAY_MS, HOUR_MS, pub

U1, U2, U3, U4 = (sgtin(f"u{i}") for i in range(1, 5))
CASE, PALLET = sscc("case"), sscc("pallet")


@pytest.fixture
def c() -> SupplyChain:
    return SupplyChain.cast()


# ------------------------------------------------------------------ the happy path


def test_full_lifecycle_custody_and_holders(c: SupplyChain) -> None:
    # manufacturer commissions four units, packs them into a case and the case onto a pallet
    assert c.captured("M", commission(U1, U2, U3, U4)) == {}
    assert c.holders() == {GLNS["M"]: (4, 0)}
    assert c.captured("M", pack(CASE, U1, U2, U3), pack(PALLET, CASE)) == {}
    pallet = c.unit(PALLET)
    assert pallet is not None and pallet["contents"] == {(GTIN_A.encode() + LOT1).hex(): 3}
    assert c.unit(U1)["parent"] == "0x" + CASE.hex()  # type: ignore[index]
    # ships the pallet to the distributor: the units inside are in transit with it
    assert c.captured("M", ship(PALLET, to="D", frm="M")) == {}
    assert c.holders() == {GLNS["M"]: (4, 0), GLNS["D"]: (0, 3)}
    assert c.unit(U1)["in_transit_to"]["gln"] == GLNS["D"]  # type: ignore[index]
    # the distributor receives the pallet: it owns and holds everything in it
    assert c.captured("D", receive(PALLET, at="D")) == {}
    assert (c.owner(U1), c.custodian(U1)) == (GLNS["D"], GLNS["D"])
    assert c.holders() == {GLNS["M"]: (1, 0), GLNS["D"]: (3, 0)}
    # breaks the pallet down, ships the case to the pharmacy, which receives and unpacks it
    assert c.captured("D", unpack(PALLET)) == {}
    assert c.unit(CASE)["parent"] is None  # type: ignore[index]
    c.delivered([CASE], "D", "P")
    assert c.captured("P", unpack(CASE, U1, U2)) == {}
    assert c.holders() == {GLNS["M"]: (1, 0), GLNS["P"]: (3, 0)}
    # dispenses U1 (loose) and U3 (still in the case: an implicit unpack, no flag)
    assert c.captured("P", dispense(U1), dispense(U3)) == {}
    assert c.unit(U1)["status"] == c.unit(U3)["status"] == "dispensed"  # type: ignore[index]
    assert c.unit(CASE)["contents"] == {}  # type: ignore[index]
    assert c.holders() == {GLNS["M"]: (1, 0), GLNS["P"]: (1, 0)}


def test_capture_receipt_and_event_record(c: SupplyChain) -> None:
    ev = commission(U1)
    r = c.capture("M", ev)
    assert r.ok
    captured = [e for e in r.events if e["type"] == "supply.captured"]
    assert captured == [{"type": "supply.captured", "reporter": pub("M"), "events": 1, "duplicates": 0,
                         "flags": 0, "content_hash": None}]
    rec = c.query("supply.event", {"hash": ev["hash"]})
    assert rec["type"] == "ObjectEvent" and rec["biz_step"] == "commissioning"
    assert rec["reporter"]["gln"] == GLNS["M"] and rec["epcs"] == 1 and rec["flags"] == [] and rec["error"] is None
    assert c.unit(U1)["last_event"] == "0x" + ev["hash"].hex()  # type: ignore[index]


def test_void_shipping_cancels_the_shipment(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.captured("M", ship(U1, to="D"))
    assert c.captured("M", void(U1)) == {}
    assert c.unit(U1)["in_transit_to"] is None  # type: ignore[index]
    assert c.holders() == {GLNS["M"]: (1, 0)}
    # and the distributor's receipt then matches nothing
    assert c.captured("D", receive(U1)) == {"no_matching_shipment": [U1]}


def test_decommissioning_a_container_unpacks_its_contents(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2), pack(CASE, U1, U2), ship(CASE, to="D"))
    c.captured("D", receive(CASE))
    assert c.captured("D", decommission(CASE)) == {}
    assert c.unit(CASE)["status"] == "decommissioned"  # type: ignore[index]
    assert c.unit(U1)["status"] == "active" and c.unit(U1)["parent"] is None  # type: ignore[index]
    assert c.owner(U1) == GLNS["D"] and c.holders() == {GLNS["D"]: (2, 0)}


def test_destroying_a_container_destroys_its_contents(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2), pack(CASE, U1), pack(PALLET, CASE))
    assert c.captured("M", destroy(PALLET)) == {}
    assert [c.unit(x)["status"] for x in (PALLET, CASE, U1, U2)] == [  # type: ignore[index]
        "destroyed", "destroyed", "destroyed", "active"]
    assert c.holders() == {GLNS["M"]: (1, 0)}
    assert c.captured("M", observe(U1)) == {"after_destruction": [U1]}


# ------------------------------------------------------------------ detections (flagged)


def test_never_commissioned_serial_is_flagged_not_refused(c: SupplyChain) -> None:
    # a counterfeit scanned at receiving: the scan is evidence, so it is committed and flagged
    fake = sgtin("counterfeit")
    ev = receive(fake)
    r = c.capture("P", ev)
    assert r.ok and flags(r) == {"not_commissioned": [fake]}
    pushed = [e for e in r.events if e["type"] == "supply.flagged"]
    assert pushed[0]["parties"] == [pub("P")] and pushed[0]["event"] == ev["hash"]
    assert c.unit(fake) is None  # nothing was created
    assert c.query("supply.flags", {"code": "not_commissioned"})[0]["oid"] == "0x" + fake.hex()
    trace = c.query("supply.trace", {"oid": fake})
    assert trace["object"] is None and trace["events"][0]["codes"] == ["not_commissioned"]


def test_commissioned_twice_keeps_the_first_record(c: SupplyChain) -> None:
    c.captured("M", commission(U1, lot=LOT1))
    assert c.captured("M", commission(U1, lot=LOT2)) == {"commissioned_twice": [U1]}
    u = c.unit(U1)
    assert u is not None and u["lot_id"] == "0x" + LOT1.hex() and u["open_flags"] == 1
    assert c.holders() == {GLNS["M"]: (1, 0)}


def test_dispensed_twice(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.delivered([U1], "M", "P")
    assert c.captured("P", dispense(U1)) == {}
    # a second dispensing anywhere (a clone at Q, or P again) is flagged on the unit
    assert c.captured("Q", dispense(U1)) == {"dispensed_twice": [U1]}
    assert c.captured("P", dispense(U1)) == {"dispensed_twice": [U1]}
    assert c.unit(U1)["open_flags"] == 2  # type: ignore[index]


@pytest.mark.parametrize(("retire", "code"), [
    (decommission, "after_decommission"),
    (destroy, "after_destruction"),
    (dispense, "after_dispense"),
])
def test_events_after_the_end_of_life(c: SupplyChain, retire: Any, code: str) -> None:
    c.captured("M", commission(U1))
    c.captured("M", retire(U1))
    before = c.unit(U1)
    # shipping a retired unit is flagged and moves nothing
    assert c.captured("M", ship(U1, to="D")) == {code: [U1]}
    after = c.unit(U1)
    assert after is not None and before is not None
    assert after["in_transit_to"] is None and after["status"] == before["status"]
    if code != "after_dispense":
        assert c.captured("M", dispense(U1)) == {code: [U1]}


def test_shipment_by_a_non_owner_moves_nothing(c: SupplyChain) -> None:
    # MediLedger's "no double transfer": D ships M's unit -> flagged, ownership unchanged
    c.captured("M", commission(U1))
    assert c.captured("D", ship(U1, to="P")) == {"not_owner": [U1]}
    assert c.unit(U1)["in_transit_to"] is None and c.owner(U1) == GLNS["M"]  # type: ignore[index]
    # the pharmacy's receipt then matches no shipment
    assert c.captured("P", receive(U1)) == {"no_matching_shipment": [U1]}
    assert c.owner(U1) == GLNS["M"] and c.custodian(U1) == GLNS["M"]


def test_flags_of_a_multi_object_event_name_the_right_objects(c: SupplyChain) -> None:
    # (the pushed event once named the last object of the event instead of the flagged one)
    c.captured("M", commission(U1, U2, U3))
    c.delivered([U2], "M", "D")
    assert c.captured("D", ship(U1, U2, U3, to="P")) == {"not_owner": [U1, U3]}
    assert c.query("supply.flags", {"code": "not_owner", "limit": 5})[0]["oid"] in ("0x" + U1.hex(), "0x" + U3.hex())


def test_dispensing_destroying_decommissioning_need_the_owner(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    for ev in (dispense(U1), destroy(U1), decommission(U1)):
        assert c.captured("P", ev) == {"not_owner": [U1]}
    # every detection that applies is raised: a stranger voiding a shipment that does not exist
    assert c.captured("P", void(U1)) == {"not_owner": [U1], "no_matching_shipment": [U1]}
    assert c.unit(U1)["status"] == "active"  # type: ignore[index]


def test_receipt_without_matching_shipment(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.captured("M", ship(U1, to="D"))
    # shipped to D, received by E: flagged; D's receipt later still matches
    assert c.captured("E", receive(U1)) == {"no_matching_shipment": [U1]}
    assert c.captured("D", receive(U1)) == {}
    assert c.owner(U1) == GLNS["D"]


def test_void_without_a_shipment(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    assert c.captured("M", void(U1)) == {"no_matching_shipment": [U1]}


def test_packed_while_inside_another_container(c: SupplyChain) -> None:
    other = sscc("other")
    c.captured("M", commission(U1), pack(CASE, U1))
    assert c.captured("M", pack(other, U1)) == {"packed_elsewhere": [U1]}
    assert c.unit(U1)["parent"] == "0x" + CASE.hex()  # type: ignore[index]
    # packing again into the same parent is a repeated report: no flag, no change
    assert c.captured("M", pack(CASE, U1)) == {}


def test_packing_needs_owner_or_custodian(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    assert c.captured("D", pack(CASE, U1)) == {"not_owner": [U1]}
    c.captured("M", commission(U2), pack(PALLET, U2))
    # D may not pack into or unpack M's pallet
    assert c.captured("D", unpack(PALLET, U2)) == {"not_owner": [PALLET]}


def test_unpacking_something_never_packed(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2), pack(CASE, U1))
    assert c.captured("M", unpack(CASE, U2)) == {"not_packed": [U2]}
    assert c.captured("M", unpack(CASE, U1)) == {}
    # an unpack-all of an empty container
    assert c.captured("M", unpack(CASE)) == {"not_packed": [CASE]}
    # and the unpack of a parent never commissioned
    assert c.captured("M", unpack(sscc("nowhere"), U1)) == {"not_commissioned": [sscc("nowhere")]}


def test_child_set_at_receiving_differs_from_what_was_packed(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2, U3), pack(CASE, U1, U2), ship(CASE, to="D"))
    c.captured("D", receive(CASE))
    assert c.captured("D", check_agg(CASE, U1, U2)) == {}
    assert c.captured("D", check_agg(CASE, U1, U3)) == {"child_set_mismatch": [CASE]}
    assert c.unit(CASE)["open_flags"] == 1  # type: ignore[index]


def test_recalled_lot_moving_is_flagged_but_moves(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2))
    c.delivered([U1, U2], "M", "D")
    r = c.send("F", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "I", "reason": "sterility"})
    assert r.ok
    # shipping onwards is a warning: the movement applies (the recall team must know where it went)
    assert c.captured("D", ship(U1, to="P")) == {"recalled_lot": [U1]}
    assert c.unit(U1)["in_transit_to"]["gln"] == GLNS["P"]  # type: ignore[index]
    # a return to the manufacturer is how a recall is executed: not flagged
    assert c.captured("D", ship(U2, to="M")) == {}
    assert c.captured("M", receive(U2)) == {}
    assert c.captured("P", receive(U1)) == {"recalled_lot": [U1]}
    assert c.captured("P", dispense(U1)) == {"recalled_lot": [U1]}
    assert c.unit(U1)["status"] == "dispensed"  # type: ignore[index]


def test_recalled_lot_inside_a_container_is_flagged_on_the_container(c: SupplyChain) -> None:
    # one recalled lot among the case's contents is enough (the case's lot counts say so)
    c.captured("M", commission(U1), commission(U2, lot=LOT2), pack(CASE, U1, U2), pack(PALLET, CASE))
    c.ok("M", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT2, "cls": "II", "reason": "label"})
    assert c.captured("M", ship(PALLET, to="D")) == {"recalled_lot": [PALLET]}
    # the movement applied: the distributor holds the recalled unit and the recall reaches it
    assert c.captured("D", receive(PALLET)) == {"recalled_lot": [PALLET]}
    assert c.holders(GTIN_A, LOT2) == {GLNS["D"]: (1, 0)}


def test_expired_lot_moving(c: SupplyChain) -> None:
    c.captured("M", commission(U1, exp=EXP_SOON))
    c.time_ms = expiry_end_ms(EXP_SOON) - 500  # the next block is the expiry day's end
    assert c.captured("M", ship(U1, to="D")) == {"expired_lot": [U1]}


def test_scanned_lot_or_expiry_differs_from_commissioning(c: SupplyChain) -> None:
    c.captured("M", commission(U1, lot=LOT1, exp=EXP))
    c.delivered([U1], "M", "P")
    # a relabelled package: flagged and not dispensed (the chain keeps the legitimate unit)
    assert c.captured("P", dispense(U1, lot_id=LOT2)) == {"lot_mismatch": [U1]}
    assert c.captured("P", dispense(U1, expiry=20291231)) == {"expiry_mismatch": [U1]}
    assert c.unit(U1)["status"] == "active"  # type: ignore[index]
    assert c.captured("P", dispense(U1, lot_id=LOT1, expiry=EXP)) == {}


def test_second_expiry_for_a_lot_at_commissioning_is_a_warning(c: SupplyChain) -> None:
    c.captured("M", commission(U1, exp=EXP))
    assert c.captured("M", commission(U2, exp=20311231)) == {"expiry_mismatch": [U2]}
    u = c.unit(U2)
    assert u is not None and u["status"] == "active" and u["open_flags"] == 0 and u["expiry"] == 20311231


def test_same_event_captured_twice_is_deduplicated_not_flagged(c: SupplyChain) -> None:
    ev = commission(U1)
    c.captured("M", ev)
    before = c.snapshot()
    r = c.capture("M", ev)
    assert r.ok and flags(r) == {}
    dup = [e for e in r.events if e["type"] == "supply.duplicate"]
    assert dup == [{"type": "supply.duplicate", "code": "duplicate_event", "event": ev["hash"],
                    "first_height": c.height - 1}]
    changed = {k for k in c.snapshot().keys() ^ before.keys()} | {
        k for k in before if c.snapshot().get(k) != before[k]}
    assert {m for m, _ in changed} <= {"auth"}
    # and within one batch: the second copy is skipped
    ev2 = ship(U1, to="D")
    r = c.capture("M", ev2, ev2)
    assert r.ok and [e["events"] for e in r.events if e["type"] == "supply.captured"] == [1]


def test_another_partys_report_of_the_same_event_never_blocks_the_rightful_one(c: SupplyChain) -> None:
    # the distributor imports the manufacturer's document before the manufacturer does
    com, packing = commission(U1), pack(CASE, U1)
    c.fails("D", "supply.capture", {"events": [com]}, code="not_product_owner")
    # its packing report is kept and flagged, but claims no container label
    assert c.captured("D", packing) == {"not_commissioned": [U1]}
    assert c.unit(CASE) is None
    # the manufacturer's own reports of the same events are not duplicates
    assert c.captured("M", com, packing) == {}
    assert c.unit(U1)["parent"] == "0x" + CASE.hex() and c.owner(CASE) == GLNS["M"]  # type: ignore[index]
    rec = c.query("supply.event", {"hash": packing["hash"], "reporter": pub("M")})
    assert rec["flags"] == [] and {r["gln"] for r in rec["reports"]} == {GLNS["D"], GLNS["M"]}
    assert c.query("supply.event", {"hash": packing["hash"]})["reporter"]["gln"] == GLNS["D"]  # the first made


# ------------------------------------------------------------------ refusals (nothing changes)


def test_refusals_change_nothing(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    rows: list[tuple[str, dict[str, Any], str]] = [
        # not an accredited party (X registered, never accredited; and no GLN)
        ("X", {"events": [observe(U1)]}, "not_a_party"),
        # regulators inspect and recall, they do not capture custody events
        ("F", {"events": [observe(U1)]}, "not_a_party"),
        # commissioning units of someone else's product
        ("N", {"events": [commission(U2, gtin=GTIN_A)]}, "not_product_owner"),
        ("M", {"events": [commission(U2, gtin=with_check("0030001111111"))]}, "unknown_product"),
        # a party ships only as itself, and receives only as itself
        ("D", {"events": [ship(U1, to="P", frm="M")]}, "source_not_sender"),
        ("P", {"events": [receive(U1, at="Q")]}, "dest_not_sender"),
        # shipping to a GLN nobody registered
        ("M", {"events": [event("ObjectEvent", "OBSERVE", [U1], biz_step="shipping",
                                dest=with_check("999999999999"))]}, "unknown_party"),
        # malformed bodies: missing lot at commissioning, shipping without destination,
        # a bad check digit, a bad kind byte, an ObjectEvent with a parent
        ("M", {"events": [event("ObjectEvent", "ADD", [U2], gtin=GTIN_A, expiry=EXP)]}, "invalid_body"),
        ("M", {"events": [event("ObjectEvent", "OBSERVE", [U1], biz_step="shipping")]}, "invalid_body"),
        ("M", {"events": [commission(U2, gtin=GTIN_A[:-1] + str((int(GTIN_A[-1]) + 1) % 10))]}, "invalid_body"),
        ("M", {"events": [observe(b"\x07" + U1[1:])]}, "invalid_body"),
        ("M", {"events": [event("ObjectEvent", "OBSERVE", [U1], parent=CASE)]}, "invalid_body"),
        ("M", {"events": []}, "invalid_body"),
        # a document sidecar needs all of content_hash, size, envelopes
        ("M", {"events": [observe(U1)], "content_hash": h("doc")}, "invalid_body"),
    ]
    # one bad event refuses the whole batch (the reason names it)
    bad = commission(U3, gtin=GTIN_B)
    r = c.fails("M", "supply.capture", {"events": [observe(U1), bad]}, code="not_product_owner")
    assert bad["hash"].hex()[:16] in r.reason
    for name, body, code in rows:
        c.fails(name, "supply.capture", body, code=code)


def test_aggregation_cycle_is_refused(c: SupplyChain) -> None:
    c.captured("M", commission(U1), pack(CASE, U1), pack(PALLET, CASE))
    c.fails("M", "supply.capture", {"events": [pack(CASE, PALLET)]}, code="aggregation_cycle")


def test_too_large_is_refused() -> None:
    from medchaind.modules.supply import machine

    c = SupplyChain.cast()
    old = machine.MAX_TOUCH
    machine.MAX_TOUCH = 5
    try:
        c.fails("M", "supply.capture", {"events": [commission(*(sgtin(f"big{i}") for i in range(10)))]},
                code="too_large")
    finally:
        machine.MAX_TOUCH = old


def test_parties_and_products_registration_rules(c: SupplyChain) -> None:
    c.fails("X", "supply.register_party", {"gln": with_check("061414100099")}, code="unauthorized")
    c.fails("D", "supply.register_party", {"gln": with_check("061414100099")}, code="already_registered")
    c.register("E2", "distributor")
    c.accredit("E2", "distributor")
    c.fails("E2", "supply.register_party", {"gln": GLNS["D"]}, code="gln_taken")
    c.fails("D", "supply.register_product", {"gtin": with_check("0030005555555"), "key_check": h("k")},
            code="not_a_party")
    c.fails("N", "supply.register_product", {"gtin": GTIN_A, "key_check": h("k")}, code="gtin_taken")
    assert c.query("supply.party", {"gln": GLNS["D"]}) == {"key": "0x" + pub("D").hex(), "gln": GLNS["D"],
                                                           "role": "distributor"}
    assert c.query("supply.product", {"gtin": GTIN_A})["owner"]["gln"] == GLNS["M"]


def test_index_key_sharing(c: SupplyChain) -> None:
    envs = [{"recipient": pub(n), "sealed_key": bytes(80)} for n in ("D", "P")]
    c.fails("N", "supply.share_key", {"gtin": GTIN_A, "envelopes": envs}, code="not_product_owner")
    r = c.ok("M", "supply.share_key", {"gtin": GTIN_A, "envelopes": envs})
    assert r.events[0]["parties"] == [pub("D"), pub("P")]
    ans = c.query("supply.index_key", {"gtin": GTIN_A, "member": pub("D")})
    assert ans["sealed_key"] == "0x" + bytes(80).hex() and ans["key_check"] == "0x" + h("key/A").hex()
    assert c.query("supply.index_key", {"gtin": GTIN_A, "member": pub("Q")}) is None


# ------------------------------------------------------------------ recalls


def test_recall_reaches_current_holders(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2, U3))
    c.delivered([U1], "M", "D")
    c.captured("M", ship(U2, to="P"))
    c.fails("D", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "I", "reason": "x"}, code="unauthorized")
    c.fails("M", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT2, "cls": "I", "reason": "x"}, code="unknown_lot")
    r = c.ok("M", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "I", "reason": "particulates"})
    ev = r.events[0]
    assert ev["type"] == "supply.recalled"
    assert {x["party"]: (x["held"], x["inbound"]) for x in ev["holders"]} == {
        pub("M"): (2, 0), pub("D"): (1, 0), pub("P"): (0, 1)}
    assert set(ev["parties"]) == {pub("M"), pub("D"), pub("P")}
    c.fails("F", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "I", "reason": "x"}, code="already_recalled")
    # holders acknowledge
    c.ok("D", "supply.recall_ack", {"gtin": GTIN_A, "lot_id": LOT1})
    c.fails("D", "supply.recall_ack", {"gtin": GTIN_A, "lot_id": LOT1}, code="already_acknowledged")
    ans = c.query("supply.holders", {"gtin": GTIN_A, "lot_id": LOT1})
    assert ans["recall"]["cls"] == "I" and ans["recall"]["by"]["gln"] == GLNS["M"]
    acks = {x["gln"]: x["acknowledged_ms"] is not None for x in ans["holders"]}
    assert acks == {GLNS["M"]: False, GLNS["D"]: True, GLNS["P"]: False}


def test_recall_and_cases_are_priority_lane(c: SupplyChain) -> None:
    for t in ("recall", "recall_ack", "case_open", "case_update"):
        assert c.app.specs[f"supply.{t}"].lane == "priority"
    assert c.app.specs["supply.capture"].lane == "default"


# ------------------------------------------------------------------ cases and the 24-hour clock


def _open(c: SupplyChain, name: str, kind: str, *oids: bytes, **kw: Any) -> bytes:
    r = c.ok(name, "supply.case_open", {"kind": kind, "reason": "counterfeit", "oids": list(oids), **kw})
    cid: bytes = r.events[0]["case_id"]
    return cid


def test_case_workflow_with_the_notification_clock(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.delivered([U1], "M", "P")
    cid = _open(c, "P", "suspect", U1)
    assert c.query("supply.verify", {"oid": U1})["data"]["additionalInfo"] == "Suspect"
    c.fails("D", "supply.case_update", {"case_id": cid, "status": "investigating"}, code="unauthorized")
    c.fails("P", "supply.case_update", {"case_id": cid, "status": "closed"}, code="bad_transition")
    c.ok("M", "supply.case_update", {"case_id": cid, "status": "investigating"})
    r = c.ok("M", "supply.case_update", {"case_id": cid, "status": "illegitimate"})
    determined = c.time_ms
    ev = r.events[0]
    assert ev["status"] == "illegitimate" and ev["deadline_ms"] == determined + DAY_MS
    assert pub("F") in ev["parties"]  # regulators are told once the product is illegitimate
    assert c.query("supply.verify", {"oid": U1})["data"]["additionalInfo"] == "Illegitimate"
    open_cases = c.query("supply.cases", {})
    assert [x["status"] for x in open_cases] == ["illegitimate"]
    assert open_cases[0]["overdue"] is False and 0 < open_cases[0]["remaining_ms"] <= DAY_MS
    # 25 hours later, without notification: overdue at the tip
    c.advance(25 * HOUR_MS)
    assert c.query("supply.cases", {})[0]["overdue"] is True
    c.fails("P", "supply.case_update", {"case_id": cid, "status": "notified"}, code="invalid_body")
    r = c.ok("P", "supply.case_update", {"case_id": cid, "status": "notified", "form3911": h("3911"),
                                         "fda_incident": "MW5001234"})
    assert r.events[0]["code"] == "notification_late"
    case = c.query("supply.case", {"case_id": cid})
    assert case["late"] is True and case["form3911"] == "0x" + h("3911").hex() and case["overdue"] is False
    c.ok("F", "supply.case_update", {"case_id": cid, "status": "closed"})
    assert c.query("supply.cases", {}) == []
    assert c.query("supply.cases", {"status": "all"})[0]["status"] == "closed"
    # the unit stays illegitimate after the case is closed
    assert c.query("supply.verify", {"oid": U1})["data"]["additionalInfo"] == "Illegitimate"


def test_notified_within_the_deadline_is_not_late(c: SupplyChain) -> None:
    cid = _open(c, "P", "illegitimate", sgtin("fake"), gtin=GTIN_A)
    c.advance(23 * HOUR_MS)
    r = c.ok("M", "supply.case_update", {"case_id": cid, "status": "notified", "form3911": h("f")})
    assert "code" not in r.events[0]


def test_cleared_case_withdraws_the_flags(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.delivered([U1], "M", "P")
    c.captured("P", dispense(U1))
    c.captured("Q", dispense(U1))  # dispensed_twice
    assert c.query("supply.verify", {"oid": U1})["data"]["additionalInfo"] == "Suspect"
    cid = _open(c, "Q", "suspect", U1)
    c.ok("Q", "supply.case_update", {"case_id": cid, "status": "cleared"})
    assert c.unit(U1)["open_flags"] == 0  # type: ignore[index]
    assert "additionalInfo" not in c.query("supply.verify", {"oid": U1})["data"]


# ------------------------------------------------------------------ error declarations


def test_error_declaration_marks_and_withdraws_never_deletes(c: SupplyChain) -> None:
    c.captured("M", commission(U1))
    c.delivered([U1], "M", "P")
    wrong = dispense(U1)
    c.captured("P", dispense(U1))
    assert c.captured("P", wrong) == {"dispensed_twice": [U1]}
    c.fails("Q", "supply.declare_error", {"event": wrong["hash"], "reason": "did_not_occur"}, code="unknown_event")
    c.fails("Q", "supply.declare_error", {"event": wrong["hash"], "reason": "did_not_occur", "reporter": pub("P")},
            code="unauthorized")
    c.fails("P", "supply.declare_error", {"event": h("nope"), "reason": "did_not_occur"}, code="unknown_event")
    r = c.ok("P", "supply.declare_error", {"event": wrong["hash"], "reason": "did_not_occur",
                                          "corrective": [h("fix")]})
    assert r.events[0]["type"] == "supply.error_declared"
    rec = c.query("supply.event", {"hash": wrong["hash"]})
    assert rec["error"]["reason"] == "did_not_occur" and rec["flags"] == [{"code": "dispensed_twice",
                                                                           "oid": "0x" + U1.hex()}]
    assert c.unit(U1)["open_flags"] == 0  # type: ignore[index]
    assert c.query("supply.flags", {})[0]["withdrawn"] is True
    c.fails("P", "supply.declare_error", {"event": wrong["hash"], "reason": "other"}, code="already_declared")


# ------------------------------------------------------------------ queries


def test_verify_answers_in_lms_shape(c: SupplyChain) -> None:
    c.captured("M", commission(U1, exp=EXP))
    base = {"oid": U1, "gtin": GTIN_A, "corr_uuid": "c0ffee", "context": "dscsaSaleableReturn"}
    ans = c.query("supply.verify", {**base, "lot_id": LOT1, "expiry": EXP})
    assert ans["data"] == {"verified": True} and ans["responderGLN"] == GLNS["M"] and ans["corrUUID"] == "c0ffee"
    assert ans["verificationTimestamp"].endswith("Z")
    cases = [
        ({"lot_id": LOT2}, "No_match_Lot"),
        ({"expiry": 20300101}, "No_match_Expiry"),
        ({"lot_id": LOT2, "expiry": 20300101}, "No_match_Lot_Expiry"),
        ({"oid": sgtin("unknown")}, "No_match_GTIN_Serial"),
        ({"gtin": GTIN_B}, "No_match_GTIN_Serial"),
    ]
    for extra, reason in cases:
        data = c.query("supply.verify", {**base, **extra})["data"]
        assert data["verified"] is False and data["verificationFailureReason"] == reason, (extra, data)
    c.ok("M", "supply.recall", {"gtin": GTIN_A, "lot_id": LOT1, "cls": "II", "reason": "x"})
    assert c.query("supply.verify", base)["data"] == {"verified": True, "additionalInfo": "Recalled"}
    c.captured("M", dispense(U1))
    assert c.query("supply.verify", base)["data"]["verificationFailureReason"] == "Not_for_re-distribution"


def test_verify_says_expired_at_the_tip(c: SupplyChain) -> None:
    c.captured("M", commission(U1, exp=EXP_SOON))
    assert c.query("supply.verify", {"oid": U1}, time_ms=expiry_end_ms(EXP_SOON))["data"] == {
        "verified": True, "additionalInfo": "Expired"}


def test_trace_follows_containers(c: SupplyChain) -> None:
    c.captured("M", commission(U1), pack(CASE, U1), pack(PALLET, CASE))
    c.captured("M", ship(PALLET, to="D"))
    c.captured("D", receive(PALLET), unpack(PALLET))
    c.captured("D", unpack(CASE, U1), ship(U1, to="P"))
    c.captured("P", receive(U1), dispense(U1))
    c.captured("D", ship(PALLET, to="E"))  # after U1 left it: not part of U1's trace
    t = c.query("supply.trace", {"oid": U1})
    steps = [(e["biz_step"], None if e["via"] is None else e["via"][:6]) for e in t["events"]]
    via_case, via_pallet = "0x" + CASE.hex()[:4], "0x" + PALLET.hex()[:4]
    assert steps == [
        ("commissioning", None), ("packing", None), ("packing", via_case), ("shipping", via_pallet),
        # the pallet's unpack-all names the case (it left the pallet), so it shows via the case
        ("receiving", via_pallet), ("unpacking", via_case), ("unpacking", None), ("shipping", None),
        ("receiving", None), ("dispensing", None),
    ]
    assert t["object"]["status"] == "dispensed"


def test_events_by_party_newest_first(c: SupplyChain) -> None:
    a, b = commission(U1), ship(U1, to="D")
    c.captured("M", a)
    c.captured("M", b)
    got = [e["hash"] for e in c.query("supply.events", {"party": pub("M")})]
    assert got == ["0x" + b["hash"].hex(), "0x" + a["hash"].hex()]
    # the destination sees the shipment too
    assert [e["hash"] for e in c.query("supply.events", {"party": pub("D")})] == ["0x" + b["hash"].hex()]


def test_document_sidecar_is_bound_and_served(c: SupplyChain) -> None:
    from medchaind.crypto import sha256

    blob = b"ciphertext of an EPCIS document"
    body = {"events": [commission(U1)], "content_hash": sha256(blob), "size": len(blob),
            "envelopes": [{"recipient": pub("D"), "sealed_key": bytes(80)}]}
    tx = c.tx("M", "supply.capture", body)
    c.app.check_blob(tx, blob)
    assert c.app.host_effects(c.commit([tx]).receipts[0].events)[0].content_hash == sha256(blob)
    ans = c.query("supply.document", {"content_hash": sha256(blob), "reader": pub("D")})
    assert ans["envelope"] == "0x" + bytes(80).hex()
    assert c.app.live_blobs(c.state) >= {sha256(blob)}


def test_pure_and_deterministic_under_reexecution(c: SupplyChain) -> None:
    c.captured("M", commission(U1, U2), pack(CASE, U1, U2))
    txs = [c.tx("M", "supply.capture", {"events": [ship(CASE, to="D")]})]
    a, b = c.execute(txs), c.execute(txs)
    assert a.app_hash == b.app_hash and a.writes == b.writes


def test_a_non_canonical_capture_tx_is_refused_before_any_handler(c: SupplyChain) -> None:
    import cbor2

    from medchaind.errors import DecodeError
    from medchaind.types import decode_tx

    tx = c.tx("M", "supply.capture", {"events": [commission(U1)]})
    assert decode_tx(tx.encoded).hash == tx.hash
    # the same map with its keys in a non-canonical order; an event time as a float
    m = tx.to_map()
    with pytest.raises(DecodeError, match="canonical"):
        decode_tx(cbor2.dumps(dict(reversed(list(m.items())))))
    event = {**m["body"]["events"][0], "time_ms": 1.7e12}
    with pytest.raises(DecodeError, match="float"):
        decode_tx(cbor2.dumps({**m, "body": {"events": [event]}}, canonical=True))
