"""Supply chain views for the web console (medchaind.console.kit): a unit's custody
timeline, custody chain and container tree, a lot's recall status and current holders,
and the open suspect / illegitimate product cases with their deadlines.

Only what the chain holds: blind object ids (the console has no product index key, so a
unit is looked up by its oid, which traces and cases link to), GLNs, event steps, states.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...console.kit import (
    Arg,
    Badge,
    ConsoleView,
    Edge,
    Entry,
    Fields,
    Graph,
    Hex,
    Link,
    ModuleConsole,
    Node,
    Note,
    Page,
    Query,
    QueryFailed,
    Row,
    Table,
    Time,
    Timeline,
    hex_arg,
    party,
    short,
    text_arg,
)

STATUS_TONES = {"active": "ok", "dispensed": "info", "recalled": "bad", "destroyed": "bad", "suspect": "warn"}


def unit_link(oid: str | None) -> Any:
    return None if not oid else Hex(oid, f"/m/supply/unit?oid={oid}")


def _party_label(p: Mapping[str, Any] | None) -> str:
    if not p:
        return "?"
    return str(p.get("gln") or short(p.get("key")))


async def unit(q: Query, args: Mapping[str, str]) -> Page:
    oid = hex_arg(args, "oid", None)
    trace = await q("supply_trace", {"oid": oid})
    o = trace.get("object") or {}
    events = trace.get("events") or []
    facts = Fields("Now", [
        ("object id", Hex(oid)), ("kind", o.get("kind")), ("GTIN", o.get("gtin")),
        ("lot", Hex(o["lot_id"], f"/m/supply/lot?gtin={o.get('gtin')}&lot_id={o['lot_id']}") if o.get("lot_id")
         else None),
        ("expiry", o.get("expiry")),
        ("status", Badge(o.get("status", "?"), STATUS_TONES.get(o.get("status", ""), "info"))),
        ("owner", party(o.get("owner"))), ("custodian", party(o.get("custodian"))),
        ("in transit to", party(o.get("in_transit_to"))), ("inside", unit_link(o.get("parent"))),
        ("open detections", Badge(str(o.get("open_flags", 0)), "bad" if o.get("open_flags") else "ok")),
    ])
    timeline = Timeline("Custody timeline", [
        Entry(e.get("event_time_ms"), f"{e.get('biz_step') or e.get('type')} ({e.get('action')})",
              [("reported by", party(e.get("reporter"))), ("disposition", e.get("disposition")),
               ("out of" if e.get("action") == "DELETE" else "into", unit_link(e.get("parent"))),
               ("via container", unit_link(e.get("via"))),
               ("detections", [Badge(f["code"], "bad") for f in e.get("flags", [])] or None),
               ("withdrawn", Badge("declared in error", "warn") if e.get("error") else None),
               ("tx", Hex(e["tx"], f"/tx/{e['tx']}") if e.get("tx") else None)],
              height=e.get("height"), tone="bad" if e.get("flags") else ("warn" if e.get("error") else "ok"))
        for e in events
    ])
    # custody chain: each party that reported an event, in order (shipping / receiving on the edges)
    chain_nodes: list[Node] = []
    chain_edges: list[Edge] = []
    last: str | None = None
    for e in events:
        p = e.get("reporter") or {}
        pid = str(p.get("key"))
        if pid != last:
            if pid not in {n.id for n in chain_nodes}:
                chain_nodes.append(Node(pid, _party_label(p), str(p.get("role") or "")))
            if last is not None:
                chain_edges.append(Edge(last, pid, e.get("biz_step") or ""))
            last = pid
    custody = Graph("Custody chain", chain_nodes, chain_edges, layout="chain")
    # container tree: the containers this unit travelled in (from the trace) and what the
    # containers hold now
    parents: dict[str, str] = {}
    for e in events:
        child = e.get("via") or oid
        if e.get("type") == "AggregationEvent" and e.get("action") == "ADD" and e.get("parent"):
            parents[child] = e["parent"]
    ids = [oid, *parents.values()]
    for cid in list(parents.values()):
        try:
            c = await q("supply_unit", {"oid": cid})
        except QueryFailed:
            continue
        for k in c.get("contents") or {}:
            kid = "0x" + k
            if kid not in parents:
                parents[kid] = cid
                ids.append(kid)
    tree_nodes = [Node(i, "this unit" if i == oid else ("container" if i in parents.values() else "unit"),
                       short(i, 10), "warn" if i == oid else "info", f"/m/supply/unit?oid={i}")
                  for i in dict.fromkeys(ids)]
    tree = Graph("Container tree", tree_nodes, [Edge(p, c) for c, p in parents.items()], layout="tree",
                 empty="never aggregated")
    cases = Table("Cases about this unit", ["kind", "status", "reason", "opened", "deadline"], [
        Row([c.get("kind"), Badge(c.get("status", "?"), "bad"), c.get("reason"), Time(c.get("opened_ms")),
             Time(c.get("deadline_ms"))], "bad") for c in trace.get("cases") or []
    ], empty="no cases")
    return Page(f"Unit {short(oid, 12)}", [facts, custody, tree, timeline, cases])


async def lot(q: Query, args: Mapping[str, str]) -> Page:
    gtin = text_arg(args, "gtin", 14)
    lot_id = hex_arg(args, "lot_id")
    h = await q("supply_holders", {"gtin": gtin, "lot_id": lot_id})
    r = h.get("recall")
    recall: Any = Badge("not recalled", "ok")
    if r:
        recall = Badge(f"recalled, class {r['cls']}", "bad")
    sections: list[Any] = [Fields("Lot", [
        ("GTIN", gtin), ("lot id", Hex(lot_id)), ("expiry", h.get("expiry")), ("units commissioned", h.get("units")),
        ("recall", recall), ("reason", r and r.get("reason")), ("recalled by", r and party(r.get("by"))),
        ("recalled at", r and Time(r.get("time_ms"))),
    ])]
    sections.append(Table("Current holders", ["party", "held", "inbound", "acknowledged recall"], [
        Row([party(x), x.get("held"), x.get("inbound"),
             Time(x["acknowledged_ms"]) if x.get("acknowledged_ms") else Badge("not yet", "warn" if r else "info")],
            "warn" if r and not x.get("acknowledged_ms") else None)
        for x in h.get("holders") or []
    ], empty="no one holds units of this lot any more"))
    return Page(f"Lot {gtin} / {short(lot_id)}", sections)


async def cases(q: Query, args: Mapping[str, str]) -> Page:
    status = "all" if args.get("status") == "all" else "open"
    rows = await q("supply_cases", {"status": status})
    table = Table("Suspect and illegitimate product cases", [
        "case", "kind", "status", "reason", "GTIN", "objects", "opened by", "opened", "deadline", "remaining"], [
        Row([Hex(c["case_id"]), c.get("kind"), Badge(c.get("status", "?"), "bad" if c.get("overdue") else "warn"),
             c.get("reason"), c.get("gtin"), [unit_link(o) for o in c.get("oids") or []],
             party(c.get("opener")), Time(c.get("opened_ms")), Time(c.get("deadline_ms")),
             Badge("overdue", "bad") if c.get("overdue") else
             (f"{c['remaining_ms'] // 3_600_000} h" if c.get("remaining_ms") is not None else None)],
            "bad" if c.get("overdue") else None)
        for c in rows
    ], empty="no open cases")
    other = "all" if status == "open" else "open"
    return Page("Product cases", [table, Note(f"Showing {status} cases; add ?status={other} for {other}.")],
                subtitle=f"{len(rows)} {status} case(s)")


async def detections(q: Query, args: Mapping[str, str]) -> Page:
    rows = await q("supply_flags", {"limit": 100})
    return Page("Detections", [Table("Newest first", ["code", "kind", "object", "reported by", "block", "withdrawn"], [
        Row([Badge(f["code"], "bad" if f.get("kind") == "anomaly" else "warn"), f.get("kind"), unit_link(f.get("oid")),
             party(f.get("reporter")), Link(str(f.get("height")), f"/block/{f.get('height')}"), f.get("withdrawn")],
            "bad" if f.get("kind") == "anomaly" and not f.get("withdrawn") else None)
        for f in rows], empty="no detections")])


VIEWS = ModuleConsole(
    module="supply",
    title="Supply chain",
    doc="Custody of serialised units (DSCSA), recalls, suspect product cases and detections.",
    views=(
        ConsoleView("unit", "Unit: custody and containers", unit,
                    (Arg("oid", "object id", "0x01…"),),
                    "An object's custody timeline, custody chain and container tree (by its blind object id)."),
        ConsoleView("lot", "Lot: recall and holders", lot,
                    (Arg("gtin", "GTIN", "00300012345671"), Arg("lot_id", "lot id", "0x…")),
                    "A lot's recall status and who holds its units now."),
        ConsoleView("cases", "Open cases", cases, (), "Suspect / illegitimate product cases and their deadlines."),
        ConsoleView("detections", "Detections", detections, (), "Counterfeit, double dispense, custody breaks."),
    ),
)
