"""``medchain governance ...``: authority decisions; each authority's tx is one vote."""

from __future__ import annotations

import click

from ...clikit import WAIT, Ctx, Group, finish, out, pass_ctx
from ..identity.machine import ACCREDITED_ROLES


@click.group("governance", cls=Group)
def commands() -> None:
    """Authority decisions (accreditation); each authority's tx is one vote."""


@commands.command("accredit")
@click.option("--key", "key_ref", required=True,
              help="The authority's key (name or keystore file, e.g. <datadir>/keys/node.json).")
@click.option("--role", required=True, type=click.Choice(sorted(ACCREDITED_ROLES)))
@click.argument("subject")
@WAIT
@pass_ctx
def governance_accredit(c: Ctx, key_ref: str, role: str, subject: str, wait: bool) -> None:
    """Vote to accredit SUBJECT (key name or 0x public key) in ROLE."""
    subj = c.public_key(subject)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.accredit(kp.signing, subj, role, wait=wait))


@commands.command("revoke")
@click.option("--key", "key_ref", required=True, help="The authority's key.")
@click.option("--reason", required=True)
@click.argument("subject")
@WAIT
@pass_ctx
def governance_revoke(c: Ctx, key_ref: str, reason: str, subject: str, wait: bool) -> None:
    """Vote to revoke SUBJECT's accreditation."""
    subj = c.public_key(subject)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.revoke(kp.signing, subj, reason, wait=wait))


@commands.command("add-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.option("--name", required=True, help="Name of the new authority.")
@click.option("--power", default=1, show_default=True)
@click.argument("public_key")
@WAIT
@pass_ctx
def governance_add_authority(c: Ctx, key_ref: str, name: str, power: int, public_key: str, wait: bool) -> None:
    """Vote to add PUBLIC_KEY as an authority (effective two blocks after 2/3+ voted)."""
    pk = c.public_key(public_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.send(kp.signing, "governance.add_authority", {"public_key": pk, "name": name, "power": power},
                       wait=wait))


@commands.command("remove-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.option("--reason", required=True)
@click.argument("public_key")
@WAIT
@pass_ctx
def governance_remove_authority(c: Ctx, key_ref: str, reason: str, public_key: str, wait: bool) -> None:
    """Vote to remove authority PUBLIC_KEY."""
    pk = c.public_key(public_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.send(kp.signing, "governance.remove_authority", {"public_key": pk, "reason": reason}, wait=wait))


@commands.command("rotate-authority")
@click.option("--key", "key_ref", required=True, help="The voting authority's key.")
@click.argument("old_key")
@click.argument("new_key")
@WAIT
@pass_ctx
def governance_rotate_authority(c: Ctx, key_ref: str, old_key: str, new_key: str, wait: bool) -> None:
    """Vote to replace authority OLD_KEY by NEW_KEY (key rotation)."""
    old, new = c.public_key(old_key), c.public_key(new_key)
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.send(kp.signing, "governance.rotate_authority", {"old_key": old, "new_key": new}, wait=wait))


@commands.command("scheduled")
@pass_ctx
def governance_scheduled(c: Ctx) -> None:
    """Authority-set changes decided and waiting for their height."""
    with c.client() as cl:
        out(cl.call("governance_scheduled"))


@commands.command("evidence")
@pass_ctx
def governance_evidence(c: Ctx) -> None:
    """Equivocation evidence on record."""
    with c.client() as cl:
        out(cl.call("governance_evidence"))


@commands.command("authorities")
@pass_ctx
def governance_authorities(c: Ctx) -> None:
    """List the current authorities."""
    with c.client() as cl:
        out(cl.call("governance_authorities"))


@commands.command("pending")
@pass_ctx
def governance_pending(c: Ctx) -> None:
    """List actions with votes but no supermajority yet."""
    with c.client() as cl:
        out(cl.call("governance_pending"))
