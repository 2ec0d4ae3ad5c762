"""The documentation names what the code offers: every IPC method the node registers is in
the client guide's reference, every config setting in the operator guide's reference,
and every `medchaind`/`medchain` command in the guides. (Drift between the two was the
most common documentation bug in review.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from medchaind.cli.client import main as medchain_main
from medchaind.cli.daemon import main as medchaind_main
from medchaind.node.config import _SECTION_CLASSES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _node_methods() -> set[str]:
    """The node's own methods plus every query of every module in the registry."""
    from medchaind.modules import make_app
    from medchaind.node.queries import query_methods
    from medchaind.node.rpc import AdminAPI, ChainAPI, NodeAPI
    from medchaind.testing.appkit import make_genesis

    own = {name for api in (NodeAPI, ChainAPI, AdminAPI) for name in api.__new__(api).methods()}
    return own | {m.name for m in query_methods(make_app(make_genesis({"A": 1})))}


def test_every_ipc_method_is_in_the_client_guide() -> None:
    guide = (DOCS / "client-guide.md").read_text()
    missing = sorted(m for m in _node_methods() | {"subscribe", "unsubscribe", "rpc_modules"} if f"`{m}`" not in guide)
    assert missing == []


def test_every_config_setting_is_in_the_operator_guide() -> None:
    guide = (DOCS / "operator-guide.md").read_text()
    missing = []
    for section, cls in _SECTION_CLASSES.items():
        if f"[{section}]" not in guide:
            missing.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            if f"{f.name} =" not in guide:
                missing.append(f"{section}.{f.name}")
    assert missing == []


def _commands(group: click.Group, prefix: str) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        out.append(f"{prefix} {name}")
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
    return out


def test_every_command_is_in_the_guides() -> None:
    guides = ("operator-guide.md", "client-guide.md", "records-walkthrough.md")
    text = "".join((DOCS / name).read_text() for name in guides)
    commands = _commands(medchaind_main, "medchaind") + _commands(medchain_main, "medchain")
    # "medchain keys list" in prose, or "`keys list" in the CLI reference tables
    missing = [c for c in commands if c not in text and f"`{c.split(' ', 1)[1]}" not in text]
    assert missing == []
