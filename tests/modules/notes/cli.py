"""``medchain notes pin|show``: the example module's commands."""

from __future__ import annotations

import click

from medchaind.clikit import WAIT, Ctx, Group, finish, hash_arg, out, pass_ctx


@click.group("notes", cls=Group)
def commands() -> None:
    """Pin and read short public notes (an example plug-in module)."""


@commands.command("pin")
@click.option("--key", "key_ref", required=True, help="The author's key.")
@click.argument("tag")
@click.argument("text")
@WAIT
@pass_ctx
def notes_pin(c: Ctx, key_ref: str, tag: str, text: str, wait: bool) -> None:
    """Pin TEXT under TAG (0x + 64 hex digits)."""
    kp = c.load_key(key_ref)
    with c.client() as cl:
        finish(cl.pin_note(kp.signing, hash_arg(tag, "tag"), text, wait=wait))


@commands.command("show")
@click.argument("tag")
@pass_ctx
def notes_show(c: Ctx, tag: str) -> None:
    """Show the note pinned under TAG."""
    with c.client() as cl:
        out(cl.note(hash_arg(tag, "tag")))
