"""Clinical trial views for the web console: a trial's registration, its amendments as a
timeline, and the outcome-switching report as a table with the differences highlighted.

Registry data only (what ClinicalTrials.gov publishes too) and commitments: documents
(protocol, SAP, consent forms) are on chain as hashes, never as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...console.kit import (
    Arg,
    Badge,
    ConsoleView,
    Entry,
    Fields,
    Hex,
    Link,
    ModuleConsole,
    Page,
    Query,
    QueryFailed,
    Row,
    Table,
    Time,
    Timeline,
    text_arg,
)

CATEGORY_TONES = {"correctly_reported": "ok", "role_swapped": "bad", "omitted": "bad", "added": "bad",
                  "time_frame_changed": "warn", "metric_changed": "warn", "changed_by_amendment": "info"}


def trial_link(nct: str) -> Link:
    return Link(nct, f"/m/trials/trial?trial={nct}")


async def trial(q: Query, args: Mapping[str, str]) -> Page:
    nct = text_arg(args, "trial", 20)
    t = await q("trials_get", {"trial": nct})
    reg = Fields("Registration", [
        ("registry id", t["trial"]), ("title", t.get("title")), ("sponsor", Hex(t["sponsor"])),
        ("status", Badge(t.get("status", "?"), "info")), ("phases", t.get("phases")),
        ("allocation", t.get("allocation")), ("masking", t.get("masking")),
        ("arms", [f"{a.get('label')} ({a.get('type')})" for a in t.get("arms") or []]),
        ("sites", [Hex(s) for s in t.get("sites") or []]),
        ("protocol", f"version {t.get('protocol_version')}"), ("protocol hash", Hex(t["protocol_hash"])),
        ("consent version", t.get("consent_version")),
        ("ethics approval", (t.get("ethics") or {}).get("ref")),
        ("enrolled / target", f"{t.get('enrolled')} / {t.get('target_enrollment')}"),
        ("withdrawn", t.get("withdrawn")),
        ("flags", [Badge(f["code"], "warn") for f in t.get("flags") or []] or None),
    ])
    commitments = Table("Commitments (hashes only)", ["kind", "label", "hash", "committed"], [
        Row([kind, c.get("label"), Hex(c["hash"]), Time(c.get("time_ms"))])
        for kind, items in sorted((t.get("commitments") or {}).items()) for c in items
    ], empty="none yet")
    amendments = await q("trials_amendments", {"trial": nct})
    registered = (t.get("dates") or {}).get("registered")
    entries = [Entry(registered["time_ms"], "registered (protocol v1)", height=registered["height"], tone="ok")
               ] if registered else []
    for a in amendments:
        entries.append(Entry(a.get("time_ms"), f"amendment: protocol v{a.get('effective_version')}", [
            ("changes", a.get("changes")), ("reason", a.get("reason")),
            ("re-consent", Badge("required", "warn") if a.get("reconsent") else "no"),
            ("urgent safety", a.get("urgent_safety")), ("approval", (a.get("approval") or {}).get("ref")),
            ("after start", a.get("after_start")), ("protocol hash", Hex(a["protocol_hash"])),
        ], height=a.get("height"), tone="warn" if a.get("after_start") else "info"))
    for name, d in sorted((t.get("dates") or {}).items(), key=lambda kv: kv[1].get("time_ms") or 0):
        if name != "registered":
            entries.append(Entry(d.get("time_ms"), name.replace("_", " "), height=d.get("height")))
    entries.sort(key=lambda e: (e.time_ms or 0, e.height or 0))
    sections: list[Any] = [reg, Timeline("Amendments and milestones", entries), commitments]
    try:
        sw = await q("trials_switching", {"trial": nct})
    except QueryFailed as exc:
        sw = None
        sections.append(Table("Outcome switching", [], [], empty=f"no results report yet ({exc.message})"))
    if sw is not None:
        sections.append(switching_table(sw))
    return Page(f"{nct}", sections, subtitle=t.get("title") or "")


def _o(o: Mapping[str, Any] | None, key: str) -> Any:
    return None if not o else o.get(key)


def _cell(field: str, side: Mapping[str, Any] | None, changes: set[str]) -> Any:
    """A registered or reported value, marked when the switching report says it changed."""
    v = _o(side, field)
    return Badge(str(v), "bad") if field in changes and v is not None else v


def switching_table(sw: Mapping[str, Any]) -> Table:
    rows = []
    for o in sw.get("outcomes") or []:
        reg, rep, changes = o.get("registered"), o.get("reported"), set(o.get("changes") or [])

        rows.append(Row([
            Badge(o.get("category", "?").replace("_", " "), CATEGORY_TONES.get(o.get("category", ""), "info")),
            _o(reg, "measure") or _o(rep, "measure"),
            _cell("role", reg, changes), _cell("role", rep, changes),
            _cell("time_frame", reg, changes), _cell("time_frame", rep, changes),
        ], "bad" if o.get("switched") else None))
    return Table(f"Outcome switching (report {sw.get('report')}, against protocol v{sw.get('reference_version')})",
                 ["category", "measure", "registered role", "reported role", "registered time frame",
                  "reported time frame"], rows, empty="no outcomes")


async def trials_list(q: Query, args: Mapping[str, str]) -> Page:
    rows = await q("trials_list", {})
    return Page("Trials", [Table("Registered trials", ["trial", "title", "status", "enrolled", "sponsor"], [
        Row([trial_link(t["trial"]), t.get("title"), t.get("status"), t.get("enrolled"), Hex(t.get("sponsor") or "")])
        for t in rows], empty="no trials")])


VIEWS = ModuleConsole(
    module="trials",
    title="Clinical trials",
    doc="Registered protocols, amendments with re-consent, commitments and the outcome-switching report.",
    views=(
        ConsoleView("trial", "Trial", trial, (Arg("trial", "registry id", "NCT09000001"),),
                    "Registration, amendments timeline and outcome-switching table."),
        ConsoleView("list", "All trials", trials_list),
    ),
)
