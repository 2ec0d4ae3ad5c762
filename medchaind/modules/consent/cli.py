"""``medchain consent ...``: a patient's consents (grant, deny, revoke, list)."""

from __future__ import annotations

import click

from ...clikit import WAIT, Ctx, Group, fail, finish, hash_arg, out, pass_ctx, public_key_hex
from .machine import ACTIONS


@click.group("consent", cls=Group)
def commands() -> None:
    """A patient's consents (FHIR Consent semantics: permit/deny, actor, scope, purpose, period)."""


def _split(x: str) -> list[str]:
    return [v.strip() for v in x.split(",") if v.strip()]


def _actions(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--actions`` is checked here, so a typo is a usage error naming the valid actions."""
    bad = [a for a in _split(value) if a not in ACTIONS]
    if bad or not _split(value):
        raise click.BadParameter(f"{', '.join(bad) or 'nothing'} is not an action; use a comma-separated "
                                 f"subset of: {', '.join(ACTIONS)}")
    return value


@commands.command("grant")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.option("--actor", help="The grantee (key name or 0x public key).")
@click.option("--actor-role", help="Or every accredited holder of this role (e.g. pharmacy).")
@click.option("--actions", default="read", show_default=True, callback=_actions,
              help="Comma-separated: read,write.")
@click.option("--deny", is_flag=True, help="A deny rule (deny wins over permit).")
@click.option("--types", "resource_types", default="", help="Comma-separated FHIR resource types (default all).")
@click.option("--purposes", default="", help="Comma-separated purpose-of-use codes (default any).")
@click.option("--start-ms", type=int, help="Valid from this block time (ms since epoch).")
@click.option("--end-ms", type=int, help="Valid until this block time (ms since epoch).")
@WAIT
@pass_ctx
def consent_grant(c: Ctx, key_ref: str, actor: str | None, actor_role: str | None, actions: str, deny: bool,
                  resource_types: str, purposes: str, start_ms: int | None, end_ms: int | None, wait: bool) -> None:
    """Grant (or deny) access; a permit for a person also shares the existing records with them."""
    if (actor is None) == (actor_role is None):
        fail("give exactly one of --actor and --actor-role")
    who = c.public_key(actor) if actor else None
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.grant(kp, actor=who, actor_role=actor_role, actions=_split(actions),
                        decision="deny" if deny else "permit", resource_types=_split(resource_types),
                        purposes=_split(purposes), start_ms=start_ms, end_ms=end_ms, wait=wait))


@commands.command("revoke")
@click.option("--key", "key_ref", required=True, help="The patient's key.")
@click.argument("grant_id")
@WAIT
@pass_ctx
def consent_revoke(c: Ctx, key_ref: str, grant_id: str, wait: bool) -> None:
    """Revoke a grant: no access from the next block on."""
    gid = hash_arg(grant_id, "grant id")
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.revoke_consent(kp, gid, wait=wait))


@commands.command("list")
@click.argument("patient")
@pass_ctx
def consent_list(c: Ctx, patient: str) -> None:
    """A patient's grants, revoked ones included."""
    with c.client() as cl:
        out(cl.call("consent_list", {"patient": public_key_hex(c, patient)}))
