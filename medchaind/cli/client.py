"""``medchain``: the command-line client for local medchaind nodes.

Talks to a node over its IPC socket (``--ipc`` or ``MEDCHAIN_IPC``); keeps client keys
in encrypted keystore files under ``--home`` (``MEDCHAIN_HOME``, default
``~/.medchain``). The passphrase comes from ``--passphrase-file``, ``MEDCHAIN_PASSPHRASE``
or a prompt. Output is JSON, for people and scripts alike. Transactions are signed
here, never by the node.

This file holds the node and chain commands (keys, info, head, block, tx, watch,
consensus, peers). The application commands come from the module registry
(:func:`medchaind.modules.module_classes`, DESIGN.md §2): a module whose package has a
``cli.py`` gets its ``commands`` group as ``medchain <module> ...`` and its optional
``top_level`` commands (e.g. ``medchain audit``) beside the node's; ``watch`` offers the
subscription topics the modules declare. This file names no module.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..app.module import Module, TopicSpec
from ..app.schema import Bytes, Int
from ..clikit import Ctx, Group, fail, out, pass_ctx, public_key_hex, version_text
from ..crypto import KeyPair
from ..errors import ConfigError, MedchainError
from ..files import read_keystore_public, save_keystore
from ..modules import module_classes


class _Main(Group):
    """The top-level group: refuses every command if the modules' commands could not be added."""

    #: why not (a bad MEDCHAIND_EXTRA_MODULES entry, two commands with one name, ...)
    load_error: str | None = None

    def invoke(self, ctx: click.Context) -> Any:
        if self.load_error is not None:
            fail(self.load_error)
        return super().invoke(ctx)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medchain", message=version_text())
@click.option("--ipc", type=click.Path(path_type=Path), envvar="MEDCHAIN_IPC",
              help="Node IPC socket (env MEDCHAIN_IPC).")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="MEDCHAIN_HOME",
              default=lambda: str(Path.home() / ".medchain"), help="Client home with keys/ (env MEDCHAIN_HOME).")
@click.option("--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Keystore passphrase file (else env MEDCHAIN_PASSPHRASE, else a prompt).")
@click.pass_context
def main(ctx: click.Context, ipc: Path | None, home: Path, passphrase_file: Path | None) -> None:
    """medchain: client for a local medchaind node."""
    ctx.obj = Ctx(ipc, home, passphrase_file)


# ------------------------------------------------------------------ keys


def passphrase_weakness(passphrase: str) -> str | None:
    """Why a keystore passphrase is weak, or None. A coarse bound, not a strength meter:
    fewer than 12 characters, or fewer than 5 distinct ones (``aaaaaaaaaaaa``)."""
    if not passphrase:
        return "empty"
    if len(passphrase) < 12:
        return f"{len(passphrase)} characters"
    if len(set(passphrase)) < 5:
        return "too few distinct characters"
    return None


@main.group(cls=Group)
def keys() -> None:
    """Create and list client keys (Ed25519 signing + X25519 encryption)."""


@keys.command("new")
@click.argument("name")
@pass_ctx
def keys_new(c: Ctx, name: str) -> None:
    """Create key NAME in the keystore (encrypted, 0600)."""
    path = c.key_path(name)
    if path.exists():
        fail(f"key {name!r} already exists at {path}")
    c.keydir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kp = KeyPair.generate()
    passphrase = c.passphrase(confirm=True)
    weak = passphrase_weakness(passphrase)
    if weak is not None:
        click.echo(f"medchain: warning: weak passphrase ({weak}); anyone who copies {path} can try "
                   "passphrases offline. Use 12 or more characters, or a passphrase file from a password manager.",
                   err=True)
    save_keystore(path, kp, passphrase, label=name)
    out({"name": name, "public_key": "0x" + kp.public_key.hex(),
         "encryption_public_key": "0x" + kp.encryption.public_key.hex(), "file": str(path)})


@keys.command("list")
@pass_ctx
def keys_list(c: Ctx) -> None:
    """List keys (no passphrase needed)."""
    rows = []
    for p in sorted(c.keydir.glob("*.json")) if c.keydir.exists() else []:
        try:
            pub = read_keystore_public(p)
        except MedchainError:
            continue
        rows.append({"name": p.stem, "public_key": "0x" + pub["public_key"],
                     "encryption_public_key": "0x" + pub["encryption_public_key"]})
    out(rows)


@keys.command("show")
@click.argument("name")
@pass_ctx
def keys_show(c: Ctx, name: str) -> None:
    """Show a key's public parts."""
    path = c.key_path(name)
    if not path.exists():
        fail(f"no key named {name!r}")
    pub = read_keystore_public(path)
    out({"name": name, "public_key": "0x" + pub["public_key"],
         "encryption_public_key": "0x" + pub["encryption_public_key"], "file": str(path)})


# ------------------------------------------------------------------ node and chain


@main.command()
@pass_ctx
def consensus(c: Ctx) -> None:
    """Consensus status: height, round, step, authorities, who voted."""
    with c.client() as cl:
        out(cl.call("consensus_status"))


@main.command()
@pass_ctx
def peers(c: Ctx) -> None:
    """Connected peers."""
    with c.client() as cl:
        out(cl.call("node_peers"))


@main.command()
@pass_ctx
def info(c: Ctx) -> None:
    """Node information."""
    with c.client() as cl:
        out(cl.node_info())


@main.command()
@pass_ctx
def head(c: Ctx) -> None:
    """The latest committed header."""
    with c.client() as cl:
        out(cl.head())


@main.command()
@click.argument("ref")
@click.option("--full", is_flag=True, help="Include full transactions.")
@pass_ctx
def block(c: Ctx, ref: str, full: bool) -> None:
    """A block by height or 0x hash, with its commit."""
    with c.client() as cl:
        if ref.startswith("0x"):
            out(cl.block(hash=ref, full=full))
        elif ref.isdigit():
            out(cl.block(height=int(ref), full=full))
        else:
            fail("give a height or a 0x block hash")


@main.command()
@click.argument("tx_hash")
@pass_ctx
def tx(c: Ctx, tx_hash: str) -> None:
    """A transaction with its status, receipt and inclusion proof."""
    with c.client() as cl:
        out(cl.tx(tx_hash))


@main.command("rpc")
@click.argument("method")
@click.argument("params", required=False)
@pass_ctx
def rpc(c: Ctx, method: str, params: str | None) -> None:
    """Call any JSON-RPC METHOD with PARAMS (a JSON object or array); print the result.

    For scripts on machines without ``nc``/``socat``: ``medchain rpc node_health``,
    ``medchain rpc chain_getBlock '{"height": 1}'``.
    """
    value: Any = None
    if params is not None:
        try:
            value = json.loads(params)
        except ValueError as exc:
            fail(f"PARAMS is not JSON ({exc})")
        if not isinstance(value, dict | list):
            fail("PARAMS must be a JSON object or array")
    with c.client() as cl:
        out(cl.call(method, value))


@main.group(cls=Group)
def admin() -> None:
    """Operator actions on the node (need the node's admin access on the socket)."""


@admin.command("ban-peer")
@click.argument("peer_id")
@pass_ctx
def admin_ban_peer(c: Ctx, peer_id: str) -> None:
    """Refuse and drop PEER_ID (a libp2p peer id) until unbanned."""
    with c.client() as cl:
        out(cl.call("admin_banPeer", {"peer_id": peer_id}))


@admin.command("unban-peer")
@click.argument("peer_id")
@pass_ctx
def admin_unban_peer(c: Ctx, peer_id: str) -> None:
    """Let PEER_ID connect again."""
    with c.client() as cl:
        out(cl.call("admin_unbanPeer", {"peer_id": peer_id}))


@admin.command("backup")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@pass_ctx
def admin_backup(c: Ctx, path: Path) -> None:
    """Write a consistent backup of the running node to PATH (a new directory on its host)."""
    with c.client() as cl:
        out(cl.call("admin_backup", {"path": str(path.resolve())}, timeout=3600))


# ------------------------------------------------------------------ watch

#: the node's own subscription topics (CLI name -> subscription name)
NODE_TOPICS = {"heads": "newHeads", "tx": "tx"}
#: options of ``watch`` that a module topic's field may not take
_WATCH_OPTIONS = ("sender", "hash", "count")


def module_topics(classes: Iterable[type[Module]]) -> dict[str, TopicSpec]:
    """The subscription topics the modules declare, in registry order; ConfigError on a clash."""
    topics: dict[str, TopicSpec] = {}
    owner: dict[str, str] = dict.fromkeys(NODE_TOPICS, "the node")
    for cls in classes:
        for name, spec in cls().topics.items():
            if name in owner:
                raise ConfigError(f"module {cls.name!r} declares subscription topic {name!r}, "
                                  f"which {owner[name]} already has")
            owner[name] = f"module {cls.name!r}"
            topics[name] = spec
    return topics


def _option_name(field: str) -> str:
    return field.replace("_", "-")


def watch_command(topics: Mapping[str, TopicSpec]) -> click.Command:
    """``medchain watch``: the node's topics plus ``topics``, each with a ``--<field>`` filter."""
    by_field: dict[str, list[str]] = {}
    for name, spec in topics.items():
        if _option_name(spec.field) in _WATCH_OPTIONS:
            raise ConfigError(f"subscription topic {name!r}: its field {spec.field!r} would be "
                              f"`medchain watch --{_option_name(spec.field)}`, which watch already has")
        by_field.setdefault(spec.field, []).append(name)

    def filter_help(names: list[str]) -> str:
        return "; ".join(f"{n} topic: {topics[n].doc or f'only events with this {topics[n].field}'}"
                         for n in names) + "."

    @pass_ctx
    def watch(c: Ctx, /, topic: str, sender: str | None, tx_hash: str | None, count: int | None,
              **values: str | None) -> None:
        """Stream new heads or tx status changes, one JSON object per line."""
        filters: dict[str, Any] = {}
        if sender:
            filters["sender"] = public_key_hex(c, sender)
        if tx_hash:
            filters["hash"] = tx_hash
        spec = topics.get(topic)
        if spec is not None:
            value = values[f"topic_{spec.field}"]
            if not value:
                fail(f"the {topic} topic needs --{_option_name(spec.field)}")
            filters[spec.field] = _filter_value(c, spec, value)
        with c.client() as cl:
            n = 0
            try:
                for event in cl.watch(NODE_TOPICS.get(topic, topic), **filters):
                    click.echo(json.dumps(event), nl=True)
                    sys.stdout.flush()
                    n += 1
                    if count is not None and n >= count:
                        break
            except KeyboardInterrupt:
                pass

    params: list[click.Parameter] = [
        click.Argument(["topic"], type=click.Choice([*NODE_TOPICS, *topics]), default="heads"),
        click.Option(["--sender"], help="tx topic: only this sender (key name or 0x public key)."),
        click.Option(["--hash", "tx_hash"], help="tx topic: only this tx."),
        *(click.Option([f"--{_option_name(f)}", f"topic_{f}"], help=filter_help(names))
          for f, names in by_field.items()),
        click.Option(["--count"], type=int, help="Stop after this many events."),
    ]
    return click.Command("watch", callback=watch, params=params, help=inspect.getdoc(watch))


def _filter_value(c: Ctx, spec: TopicSpec, value: str) -> Any:
    """A topic filter as the node takes it: a 32-byte key may be given as a key name."""
    if isinstance(spec.param, Bytes) and spec.param.size == 32:
        return public_key_hex(c, value)
    if isinstance(spec.param, Int):
        try:
            return int(value)
        except ValueError:
            fail(f"--{_option_name(spec.field)} must be an integer")
    return value


# ------------------------------------------------------------------ the modules' commands


def module_cli(cls: type[Module]) -> Any | None:
    """The module's ``<package>.cli``, or None if it has no commands."""
    name = f"{cls.package()}.cli"
    try:
        found = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # the module's package is a plain module: no cli beside it
        return None
    if found is None:
        return None
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"module {cls.name!r}: cannot load its commands from {name} ({exc})") from None


def add_module_commands(group: click.Group, classes: Iterable[type[Module]]) -> None:
    """Add each module's ``commands`` (as ``<group> <module>``) and ``top_level`` commands.

    Raises ConfigError if a module's cli.py lacks a ``commands`` group or if two commands
    would share a name (with each other or with the node's own commands).
    """
    owner = dict.fromkeys(group.commands, "the client itself")
    for cls in classes:
        cli = module_cli(cls)
        if cli is None:
            continue
        commands = getattr(cli, "commands", None)
        if not isinstance(commands, click.Group):
            raise ConfigError(f"module {cls.name!r}: {cli.__name__} has no click group named `commands`")
        extra = list(getattr(cli, "top_level", ()))
        for cmd_name, cmd in [(cls.name, commands), *((c.name, c) for c in extra)]:
            if not isinstance(cmd, click.Command) or not cmd_name:
                raise ConfigError(f"module {cls.name!r}: {cli.__name__}.top_level holds {cmd!r}, "
                                  "not a named click command")
            if cmd_name in owner:
                raise ConfigError(f"module {cls.name!r} ({cli.__name__}) adds `medchain {cmd_name}`, "
                                  f"which {owner[cmd_name]} already has")
            owner[cmd_name] = f"module {cls.name!r}"
            group.add_command(cmd, cmd_name)


def _install(group: _Main) -> None:
    classes = module_classes()
    group.add_command(watch_command(module_topics(classes)))
    add_module_commands(group, classes)


try:
    _install(main)
except ConfigError as exc:  # reported when medchain runs, as `medchain: error: ...`
    main.load_error = str(exc)


if __name__ == "__main__":
    main()
