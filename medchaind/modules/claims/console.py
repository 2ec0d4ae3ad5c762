"""Claims views for the web console: a claim's lifecycle with its flags and holds, and a
provider's or payer's claims.

What the chain holds of a claim: states, amounts, procedure codes, NPIs, blind indexes
and the commitment to its encrypted document (never the document: names, member ids and
diagnoses stay in the ciphertext only the payer and the provider can open).
"""

from __future__ import annotations

from collections.abc import Mapping

from ...console.kit import (
    Arg,
    Badge,
    ConsoleView,
    Entry,
    Fields,
    Hex,
    ModuleConsole,
    Page,
    Query,
    Row,
    Table,
    Timeline,
    hex_arg,
)

STATUS_TONES = {"paid": "ok", "accepted": "ok", "submitted": "info", "denied": "bad", "rejected": "bad",
                "held": "warn", "adjudicated": "info"}


def money(cents: int | None) -> str | None:
    return None if cents is None else f"${cents / 100:,.2f}"


def claim_link(cid: str) -> Hex:
    return Hex(cid, f"/m/claims/claim?claim_id={cid}")


async def claim(q: Query, args: Mapping[str, str]) -> Page:
    cid = hex_arg(args, "claim_id")
    c = await q("claims_get", {"claim_id": cid})
    status = c.get("status", "?")
    facts = Fields("Claim", [
        ("claim id", Hex(cid)), ("status", Badge(status, STATUS_TONES.get(status, "info"))),
        ("kind", c.get("kind")), ("frequency", c.get("frequency")), ("original", c["original"] and claim_link(
            c["original"])),
        ("provider", Hex(c["provider"])), ("payer", Hex(c["payer"])), ("billing NPI", c.get("billing_npi")),
        ("rendering NPI", c.get("rendering_npi")), ("place of service", c.get("pos")),
        ("total", money(c.get("total_cents"))), ("paid", money(c.get("paid_cents"))),
        ("patient responsibility", money(c.get("patient_resp_cents"))),
        ("flags", [Badge(f, "bad") for f in c.get("flags") or []] or None),
        ("holds", [Badge(h, "warn") for h in c.get("holds") or []] or None),
        ("patient (blind index)", Hex(c["patient"])), ("document commitment", Hex(c["commitment"])),
    ])
    entries = [Entry(c.get("submitted_ms"), "submitted", [
        ("flags", [Badge(f, "bad") for f in c.get("flags") or []] or None)], height=c.get("submitted_height"),
        tone="bad" if c.get("flags") else "ok")]
    ack = c.get("ack")
    if ack:
        entries.append(Entry(ack.get("time_ms"), f"acknowledged ({'accepted' if ack.get('accepted') else 'rejected'})",
                             [(k, v) for k, v in ack.items() if k not in ("time_ms", "height")],
                             height=ack.get("height"), tone="ok" if ack.get("accepted") else "bad"))
    for a in c.get("adjudications") or []:
        entries.append(Entry(a.get("time_ms"), f"adjudicated by {a.get('source')} (CLP status {a.get('clp_status')})", [
            ("charge", money(a.get("charge_cents"))), ("paid", money(a.get("paid_cents"))),
            ("remarks", sorted({r for ln in a.get("lines") or [] for r in ln.get("remarks") or []}) or None),
        ], height=a.get("height"), tone="bad" if not a.get("paid_cents") else "ok"))
    if c.get("pending_change"):
        entries.append(Entry(None, "change pending", [("change", str(c["pending_change"]))], tone="warn"))
    lines = Table("Service lines", ["#", "code", "modifiers", "units", "charge", "denied", "flags"], [
        Row([ln.get("n"), ln.get("code"), ln.get("modifiers") or None, f"{(ln.get('units_milli') or 0) / 1000:g}",
             money(ln.get("charge_cents")), ln.get("denied") and Badge(ln["denied"], "bad"),
             [Badge(f["code"], "bad") for f in ln.get("flags") or []] or None],
            "bad" if ln.get("denied") else ("warn" if ln.get("flags") else None))
        for ln in c.get("lines") or []
    ])
    return Page(f"Claim {cid[:12]}…", [facts, Timeline("Lifecycle", entries), lines])


async def claims_of(q: Query, args: Mapping[str, str]) -> Page:
    who = hex_arg(args, "party")
    side = "payer" if args.get("side") == "payer" else "provider"
    rows = await q("claims_list", {side: who})
    return Page(f"Claims of {side} {who[:12]}…", [Table("Newest first", [
        "claim", "status", "kind", "total", "flags", "holds", "submitted"], [
        Row([claim_link(c["claim_id"]), Badge(c.get("status", "?"), STATUS_TONES.get(c.get("status", ""), "info")),
             c.get("kind"), money(c.get("total_cents")), [Badge(f, "bad") for f in c.get("flags") or []] or None,
             c.get("holds") or None, c.get("submitted_height")], "bad" if c.get("flags") else None)
        for c in rows], empty="no claims")])


VIEWS = ModuleConsole(
    module="claims",
    title="Claims",
    doc="Claim lifecycles (submitted, acknowledged, adjudicated, paid) with duplicate and no-service detections.",
    views=(
        ConsoleView("claim", "Claim lifecycle", claim, (Arg("claim_id", "claim id", "0x…"),),
                    "A claim's states, amounts, lines, flags and holds."),
        ConsoleView("list", "Claims of a provider or payer", claims_of,
                    (Arg("party", "provider or payer key", "0x…"), Arg("side", "side (provider or payer)",
                                                                        "provider", required=False))),
    ),
)
