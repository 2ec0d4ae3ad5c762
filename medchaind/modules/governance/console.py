"""Governance panels for the web console: the authorities' names, scheduled authority-set
changes and the proposals waiting for votes, shown on the console's Authorities page."""

from __future__ import annotations

from collections.abc import Mapping

from ...console.kit import ConsoleView, Hex, ModuleConsole, Page, Query, Row, Table, flatten


async def authorities(q: Query, args: Mapping[str, str]) -> Page:
    current = await q("governance_authorities", {})
    scheduled = await q("governance_scheduled", {})
    pending = await q("governance_pending", {})
    return Page("Governance", [
        Table("Authorities (names)", ["name", "public key", "power"],
              [Row([a.get("name"), Hex(a["public_key"]), a.get("power")]) for a in current]),
        Table("Scheduled changes", ["details"], [Row([flatten(s)]) for s in scheduled],
              empty="no authority-set change is scheduled"),
        Table("Proposals waiting for votes", ["details"], [Row([flatten(p)]) for p in pending],
              empty="nothing pending"),
    ])


VIEWS = ModuleConsole(
    module="governance",
    title="Governance",
    doc="Authority set, scheduled changes and pending proposals.",
    views=(ConsoleView("authorities", "Authorities and scheduled changes", authorities),),
    panels={"authorities": authorities},
)
