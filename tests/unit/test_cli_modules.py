"""`medchain` takes each module's commands from the registry (medchaind/cli/client.py):
`<package>.cli` gives `commands` (as `medchain <module>`) and optional `top_level`
commands; `watch` offers the modules' subscription topics; a clash is a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from medchaind.cli.client import add_module_commands, main, module_topics
from medchaind.errors import ConfigError
from medchaind.modules import MODULES
from medchaind.modules.identity import IdentityModule
from medchaind.modules.records import RecordsModule
from medchaind.modules.records import cli as records_cli


def test_every_module_with_a_cli_py_has_its_group_and_top_level_commands() -> None:
    assert main.load_error is None
    for cls in MODULES:
        has_cli = (Path(sys.modules[cls.__module__].__file__ or "").parent / "cli.py").exists()
        assert (cls.name in main.commands) == has_cli, cls.name
    assert main.commands["records"] is records_cli.commands
    assert main.commands["audit"] is records_cli.audit
    assert "anchor" not in main.commands  # anchor has no commands (yet)


def test_identity_register_offers_the_roles_of_the_state_machine() -> None:
    from medchaind.modules.identity.machine import ROLES

    group = main.commands["identity"]
    assert isinstance(group, click.Group)
    role = next(p for p in group.commands["register"].params if p.name == "role")
    assert isinstance(role.type, click.Choice) and tuple(role.type.choices) == ROLES


def test_two_modules_adding_one_command_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"module 'identity' .* adds `medchain identity`, which module 'identity'"):
        add_module_commands(click.Group("medchain"), [IdentityModule, IdentityModule])


def test_a_top_level_command_named_like_a_node_command_is_refused() -> None:
    group = click.Group("medchain", commands={"audit": click.Command("audit")})
    with pytest.raises(ConfigError, match="adds `medchain audit`, which the client itself already has"):
        add_module_commands(group, [RecordsModule])


def test_two_modules_declaring_one_topic_are_refused() -> None:
    declared = [t for cls in MODULES for t in cls().topics]
    assert list(module_topics(MODULES)) == declared and "patient" in declared
    with pytest.raises(ConfigError, match="subscription topic 'patient', which module 'records' already has"):
        module_topics([RecordsModule, RecordsModule])


def test_watch_offers_the_node_topics_and_the_modules_topics() -> None:
    topic = next(p for p in main.commands["watch"].params if p.name == "topic")
    module_topics_ = [t for cls in MODULES for t in cls().topics]
    assert isinstance(topic.type, click.Choice) and list(topic.type.choices) == ["heads", "tx", *module_topics_]
    result = CliRunner().invoke(main, ["watch", "patient"])
    assert result.exit_code == 1
    assert "medchain: error: the patient topic needs --patient" in result.output


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> Iterator[Path]:
    """A package `clidemo` outside medchaind/ with a module and its cli.py."""
    pkg = tmp_path / "clidemo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "machine.py").write_text(textwrap.dedent("""
        from medchaind.app.module import Module, TopicSpec

        class DemoModule(Module):
            name = "demo"

            def __init__(self) -> None:
                super().__init__()
                self.topics = {"demo": TopicSpec("item", doc="one item's events")}
    """))
    (pkg / "cli.py").write_text(textwrap.dedent("""
        import click
        from medchaind.clikit import Group, out

        @click.group("demo", cls=Group)
        def commands() -> None:
            \"\"\"Demo commands.\"\"\"

        @commands.command("hello")
        def hello() -> None:
            out({"hello": "demo"})

        @click.command("info")
        def info() -> None:
            pass

        top_level = [info]
    """))
    yield tmp_path


def test_an_extra_module_brings_its_commands_and_topic(plugin_on_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_on_path), os.environ.get("PYTHONPATH", "")]),
           "MEDCHAIND_EXTRA_MODULES": "clidemo.machine:DemoModule"}
    # its top-level `info` clashes with the node's `info`: every command says so
    cli = [sys.executable, "-m", "medchaind.cli.client"]
    r = subprocess.run([*cli, "keys", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("medchain: error: module 'demo' (clidemo.cli) adds `medchain info`, "
                                "which the client itself already has")
    (plugin_on_path / "clidemo" / "cli.py").write_text(
        (plugin_on_path / "clidemo" / "cli.py").read_text().replace("top_level = [info]", "top_level = []"))
    r = subprocess.run([*cli, "demo", "hello"], env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, '{\n  "hello": "demo"\n}\n', "")
    r = subprocess.run([*cli, "watch", "--help"], env=env, capture_output=True, text=True, timeout=60)
    choices = "|".join(["heads", "tx", *(t for cls in MODULES for t in cls().topics), "demo"])
    assert f"[{choices}]" in "".join(r.stdout.split()) and "--item TEXT" in r.stdout  # help wraps lines


def test_a_bad_extra_module_is_a_clear_error() -> None:
    env = {**os.environ, "MEDCHAIND_EXTRA_MODULES": "no_such_package.machine:Nothing"}
    r = subprocess.run([sys.executable, "-m", "medchaind.cli.client", "keys", "list"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith(
        "medchain: error: MEDCHAIND_EXTRA_MODULES: cannot load 'no_such_package.machine:Nothing'")
