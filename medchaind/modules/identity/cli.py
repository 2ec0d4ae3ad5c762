"""``medchain identity ...``: register participants and look them up."""

from __future__ import annotations

from typing import Any

import click

from ...clikit import WAIT, Ctx, Group, finish, out, pass_ctx
from .machine import ROLES


@click.group("identity", cls=Group)
def commands() -> None:
    """Register and look up participants."""


@commands.command("register")
@click.option("--key", "key_ref", required=True, help="Key name or keystore file of the registrant.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--label", help="Public organisation name (not for patients).")
@WAIT
@pass_ctx
def identity_register(c: Ctx, key_ref: str, role: str, label: str | None, wait: bool) -> None:
    """Register KEY as ROLE (organisations then need accreditation)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.register_identity(kp, role, label=label, wait=wait))


@commands.command("show")
@click.argument("who")
@pass_ctx
def identity_show(c: Ctx, who: str) -> None:
    """Show the identity of WHO (key name, keystore file or 0x public key)."""
    with c.client() as cl:
        out(cl.identity(c.public_key(who)))


@commands.command("list")
@click.option("--role", type=click.Choice(ROLES))
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def identity_list(c: Ctx, role: str | None, limit: int) -> None:
    """List registered identities."""
    with c.client() as cl:
        params: dict[str, Any] = {"limit": limit}
        if role:
            params["role"] = role
        out(cl.call("identity_list", params))
