"""Records views for the web console: for a patient pseudonym, the audit log (reads,
break-glass) with the consent grants and revocations, as one timeline; and the index of
the patient's records (types, sizes, authors: never content).

The console holds no patient key: a record's content is ciphertext it cannot open, and
it never fetches it. Who may use these pages is who holds the console token (the node's
operator); docs/console.md says what that reveals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...console.kit import (
    Arg,
    Badge,
    ConsoleView,
    Entry,
    Hex,
    ModuleConsole,
    Page,
    Query,
    Row,
    Table,
    Time,
    Timeline,
    hex_arg,
)


async def audit(q: Query, args: Mapping[str, str]) -> Page:
    patient = hex_arg(args, "patient")
    reads = await q("records_audit", {"patient": patient})
    grants = await q("consent_list", {"patient": patient})
    entries: list[Entry] = []
    for r in reads:
        bg = bool(r.get("break_glass"))
        entries.append(Entry(r.get("time_ms"), "break-glass read" if bg else "read", [
            ("reader", Hex(r["reader"])), ("record", Hex(r["record_id"])), ("purpose", r.get("purpose")),
            ("reason", r.get("reason"))], height=r.get("height"), tone="bad" if bg else "info"))
    for g in grants:
        who: Any = Hex(g["actor"]) if g.get("actor") else f"role {g.get('actor_role')}"
        detail: list[tuple[str, Any]] = [("actor", who), ("actions", g.get("actions")),
                                         ("resource types", g.get("resource_types") or "all"),
                                         ("purposes", g.get("purposes") or "any")]
        entries.append(Entry(g.get("created_ms"), f"consent {g.get('decision')}", detail,
                             height=g.get("created_height"), tone="ok" if g.get("decision") == "permit" else "warn"))
        if g.get("revoked_height") is not None:
            entries.append(Entry(g.get("revoked_ms"), "consent revoked", [("actor", who)],
                                 height=g.get("revoked_height"), tone="warn"))
    entries.sort(key=lambda e: (e.time_ms or 0, e.height or 0))
    records = await q("records_list", {"patient": patient})
    index = Table("Records (index only: the content is encrypted)", [
        "record", "type", "author", "size", "created", "erased"], [
        Row([Hex(r["record_id"]), r.get("resource_type"), Hex(r["author"]), r.get("size"), Time(r.get("created_ms")),
             Badge("erased", "warn") if r.get("erased") else None]) for r in records], empty="no records")
    return Page(f"Audit log of {patient[:12]}…", [Timeline("Reads, break-glass, grants and revocations", entries,
                                                           empty="no reads and no consents"), index])


VIEWS = ModuleConsole(
    module="records",
    title="Records and consent",
    doc="For a patient pseudonym: who read which record and why, break-glass, consents granted and revoked.",
    views=(
        ConsoleView("audit", "Patient audit log", audit, (Arg("patient", "patient key (pseudonym)", "0x…"),),
                    "Reads, break-glass, grants and revocations as a timeline."),
    ),
)
