"""Property: random EPCIS event sequences, the chain against the reference model.

Each example runs up to 30 steps on a small universe (4 parties, 2 products, 2 lots, 5
serialised units, 3 containers) so that collisions are frequent: the same serial
commissioned twice, packing into a container that sits inside the child, shipping what
another party owns, receiving what nobody shipped, recalls, expiry passing, repeated
event hashes. After every step the chain and :mod:`supply_model` must agree on

* whether the tx committed or was refused (and the refusal code),
* the flags of every event (code and object), and
* every object's status, effective owner / custodian / destination, parent, open-flag
  count, event count and commissioning data, and the holder / inbound counts of every lot.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from supply_kit import EXP, EXP_SOON, GLNS, GTIN_A, GTIN_B, LOT1, LOT2, SupplyChain, h, pub, sgtin, sscc
from supply_model import SGTIN, Model, Refused

from medchaind.app import DictState
from medchaind.testing.appkit import DAY_MS

PARTIES = ["M", "N", "D", "P"]
UNITS = [sgtin(f"m{i}") for i in range(5)]
BOXES = [sscc(f"m{i}") for i in range(3)]
OBJECTS = UNITS + BOXES
LOTS = [LOT1, LOT2]
NAME_OF_GLN = {g: n for n, g in GLNS.items()}

_BASE: SupplyChain | None = None


def fresh_chain() -> SupplyChain:
    """The registered cast, built once and copied (an example must not see another's state)."""
    global _BASE
    if _BASE is None:
        _BASE = SupplyChain.cast()
    base = _BASE
    c = SupplyChain.__new__(SupplyChain)
    c.genesis, c.app, c.app_hash = base.genesis, base.app, base.app_hash
    c.state = DictState(dict(base.state.data))
    c.height, c.time_ms, c.proposer = base.height, base.time_ms, base.proposer
    return c


objects = st.lists(st.sampled_from(OBJECTS), min_size=1, max_size=3, unique=True)
scanned = st.one_of(st.none(), st.sampled_from(LOTS))
scanned_exp = st.one_of(st.none(), st.sampled_from([EXP, EXP_SOON]))


@st.composite
def an_event(draw: Any, reporter: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["commission", "commission", "ship", "ship", "receive", "receive", "dispense",
                                 "decommission", "destroy", "void", "observe", "pack", "pack", "unpack", "check",
                                 "record"]))
    ev: dict[str, Any] = {"time_ms": 1_700_000_000_000}
    if kind == "commission":
        own = {"M": GTIN_A, "N": GTIN_B}.get(reporter, GTIN_A)
        ev.update(type="ObjectEvent", action="ADD", epcs=draw(objects), biz_step="commissioning",
                  gtin=draw(st.sampled_from([own] * 9 + [GTIN_A, GTIN_B])), lot_id=draw(st.sampled_from(LOTS)),
                  expiry=draw(st.sampled_from([EXP, EXP, EXP_SOON, 20311231])))
    elif kind in ("pack", "unpack", "check"):
        parent = draw(st.sampled_from(OBJECTS))
        kids = draw(st.lists(st.sampled_from([o for o in OBJECTS if o != parent]),
                             min_size=1 if kind == "pack" else 0, max_size=3, unique=True))
        ev.update(type="AggregationEvent", action={"pack": "ADD", "unpack": "DELETE", "check": "OBSERVE"}[kind],
                  epcs=kids, parent=parent, lot_id=draw(scanned) if kind == "pack" else None)
    elif kind == "record":
        ev.update(type="TransactionEvent", action="ADD", epcs=draw(objects))
    else:
        step = {"ship": "shipping", "receive": "receiving", "dispense": "dispensing", "decommission": "decommissioning",
                "destroy": "destroying", "void": "void_shipping", "observe": "inspecting"}[kind]
        ev.update(type="ObjectEvent", action="DELETE" if kind == "destroy" else "OBSERVE", epcs=draw(objects),
                  biz_step=step, lot_id=draw(scanned), expiry=draw(scanned_exp))
        if kind == "ship":
            ev["dest"] = GLNS[draw(st.sampled_from(PARTIES))]
            ev["source"] = draw(st.sampled_from([None] * 6 + [GLNS[reporter], GLNS["D"]]))
        if kind == "receive":
            ev["dest"] = draw(st.sampled_from([None] * 6 + [GLNS[reporter], GLNS["P"]]))
    return {k: v for k, v in ev.items() if v is not None}


@st.composite
def a_step(draw: Any) -> tuple[str, Any]:
    what = draw(st.sampled_from(["capture"] * 8 + ["recall", "time"]))
    if what == "time":
        return "time", draw(st.sampled_from([DAY_MS, 20 * DAY_MS, 60 * DAY_MS]))
    if what == "recall":
        return "recall", (draw(st.sampled_from(["M", "N"])), draw(st.sampled_from([GTIN_A, GTIN_B])),
                          draw(st.sampled_from(LOTS)))
    reporter = draw(st.sampled_from(["M", "M", "M", "N", "D", "P"]))  # M owns most after the setup
    events = draw(st.lists(an_event(reporter), min_size=1, max_size=3))
    dup = draw(st.lists(st.integers(0, 10_000), max_size=len(events)))
    return "capture", (reporter, events, dup)


def _check_state(c: SupplyChain, m: Model) -> None:
    for oid in OBJECTS:
        u = c.unit(oid)
        o = m.objs.get(oid)
        assert (u is None) == (o is None), oid.hex()
        if u is None or o is None:
            continue
        r = m.root(oid)
        contents: dict[str, int] = {}
        for d in m.descendants(oid):
            x = m.objs[d]
            if x.kind == SGTIN and x.st == "active":
                key = (x.gtin.encode() + x.lot).hex()  # type: ignore[union-attr,operator]
                contents[key] = contents.get(key, 0) + 1
        want = {
            "contents": contents,
            "status": o.st, "owner": r.own, "custodian": r.cus, "to": r.to,
            "parent": None if o.par is None else "0x" + o.par.hex(), "open_flags": o.fl, "events": o.n,
            "gtin": o.gtin, "lot_id": None if o.lot is None else "0x" + o.lot.hex(), "expiry": o.exp,
        }
        got = {
            "contents": u["contents"],
            "status": u["status"], "owner": NAME_OF_GLN[u["owner"]["gln"]],
            "custodian": NAME_OF_GLN[u["custodian"]["gln"]],
            "to": None if u["in_transit_to"] is None else NAME_OF_GLN[u["in_transit_to"]["gln"]],
            "parent": u["parent"], "open_flags": u["open_flags"], "events": u["events"],
            "gtin": u["gtin"], "lot_id": u["lot_id"], "expiry": u["expiry"],
        }
        assert got == want, oid.hex()
    model_holders = m.holders()
    for gtin, lot in itertools.product([GTIN_A, GTIN_B], LOTS):
        ans = c.query("supply.holders", {"gtin": gtin, "lot_id": lot})
        if ans is None:
            assert (gtin, lot) not in m.lots
            continue
        got = {NAME_OF_GLN[x["gln"]]: (x["held"], x["inbound"]) for x in ans["holders"]}
        assert got == model_holders.get((gtin, lot), {}), (gtin, lot)


@st.composite
def a_setup(draw: Any) -> list[tuple[str, Any]]:
    """Commission most of the universe first (by the right owners), so later steps collide."""
    steps = []
    for name, gtin in (("M", GTIN_A), ("N", GTIN_B)):
        oids = draw(st.lists(st.sampled_from(OBJECTS), min_size=1, max_size=4, unique=True))
        ev = {"type": "ObjectEvent", "action": "ADD", "epcs": oids, "biz_step": "commissioning", "gtin": gtin,
              "lot_id": draw(st.sampled_from(LOTS)), "expiry": draw(st.sampled_from([EXP, EXP_SOON])),
              "time_ms": 1}
        steps.append(("capture", (name, [ev], [])))
    return steps


@settings(max_examples=int(os.environ.get("SUPPLY_MODEL_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(a_setup(), st.lists(a_step(), min_size=1, max_size=30))
def test_chain_agrees_with_the_reference_model(setup: list[tuple[str, Any]], steps: list[tuple[str, Any]]) -> None:
    steps = setup + steps
    c = fresh_chain()
    m = Model(owners={GTIN_A: "M", GTIN_B: "N"}, glns=NAME_OF_GLN.copy())
    m.glns = {g: n for g, n in m.glns.items() if n in ("M", "N", "D", "E", "P", "Q", "F")}
    hashes: list[bytes] = []
    counter = itertools.count()
    for what, arg in steps:
        if what == "time":
            c.advance(arg)
            continue
        now = c.next_block().time_ms
        if what == "recall":
            name, gtin, lot = arg
            r = c.send(name, "supply.recall", {"gtin": gtin, "lot_id": lot, "cls": "II", "reason": "test"})
            try:
                m.recall(name, gtin, lot)
                assert r.ok, r
            except Refused as exc:
                assert r.code == exc.code, (r, exc.code)
            continue
        reporter, events, dup = arg
        for i, ev in enumerate(events):
            if i < len(dup) and hashes and dup[i] % 4 == 0:
                ev["hash"] = hashes[dup[i] % len(hashes)]
            else:
                ev["hash"] = h(f"model-event/{next(counter)}")
        r = c.send(reporter, "supply.capture", {"events": events})
        try:
            want = m.capture(reporter, events, now)
        except Refused as exc:
            assert r.code == exc.code, (r, exc.code)
            event(f"refused {exc.code}")
            continue
        assert r.ok, r
        seen: set[bytes] = set()
        for ev, flags in zip(events, want, strict=True):
            hashes.append(ev["hash"])
            if flags is None or ev["hash"] in seen:
                continue
            seen.add(ev["hash"])
            for code, _ in flags:
                event(f"flag {code}")
            rec = c.query("supply.event", {"hash": ev["hash"], "reporter": pub(reporter)})
            got = sorted((f["code"], f["oid"]) for f in rec["flags"])
            assert got == sorted((code, None if oid is None else "0x" + oid.hex()) for code, oid in flags), ev
        _check_state(c, m)
