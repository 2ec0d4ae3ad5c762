"""A module from the test tree alone, served by a real node over IPC and by the real CLI.

``tests/modules/notes`` is a plug-in module (tx type, query, subscription topic, client
helpers, CLI commands) that no file under ``medchaind/`` names. The node and ``medchain``
load it through ``MEDCHAIND_EXTRA_MODULES``; nothing under ``node/``, ``ipc/``,
``mempool/`` or ``cli/`` knows it exists.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from notes import NotesModule

from medchaind.client import Client, add_helpers
from medchaind.crypto import KeyPair
from medchaind.testing.appkit import digest
from medchaind.testing.nodeproc import NodeProcess, run_cli

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
PLUGIN_ENV = {
    "MEDCHAIND_EXTRA_MODULES": "notes.machine:NotesModule",
    "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p),
}


@pytest.fixture
def node() -> Iterator[NodeProcess]:
    d = Path(tempfile.mkdtemp(prefix="mcplug-"))  # short: Unix socket paths are limited
    n = NodeProcess(d / "node", d / "node.log", env=PLUGIN_ENV).start()
    yield n
    n.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_example_module_is_served_over_ipc_and_the_cli(node: NodeProcess, tmp_path: Path) -> None:
    add_helpers(NotesModule)  # the client library learns the module's helpers the same way
    me = KeyPair.generate()
    tag = digest("plugin-e2e")
    with Client(node.ipc, timeout=30) as c:
        assert "notes" in c.node_info()["modules"]
        assert c.register_identity(me, "patient")["receipt"]["ok"]
        # the client helper and the declared query, through the node's generic query method
        st = c.pin_note(me.signing, tag, "hello from a plug-in")
        assert st["receipt"]["ok"], st
        assert st["receipt"]["events"][0]["type"] == "notes.pinned"
        assert c.note(tag)["text"] == "hello from a plug-in"
        assert c.call("notes_get", {"tag": "0x" + tag.hex()})["author"] == "0x" + me.public_key.hex()
        # the one error shape of every module query: bad params name the parameter
        with pytest.raises(Exception, match="tag"):
            c.call("notes_get", {"tag": "0x1234"})
        with pytest.raises(Exception, match="no note under that tag"):
            c.call("notes_get", {"tag": "0x" + "00" * 32})

    # the module's CLI commands, added to `medchain` by the registry
    env = {**PLUGIN_ENV, "MEDCHAIN_IPC": str(node.ipc), "MEDCHAIN_HOME": str(tmp_path / "home"),
           "MEDCHAIN_PASSPHRASE": "pw"}
    run_cli("keys", "new", "bob", env=env)
    run_cli("identity", "register", "--key", "bob", "--role", "patient", env=env)
    other = digest("plugin-e2e-cli")
    pinned = json.loads(run_cli("notes", "pin", "--key", "bob", "0x" + other.hex(), "from the CLI", env=env).stdout)
    assert pinned["receipt"]["ok"]
    shown = json.loads(run_cli("notes", "show", "0x" + other.hex(), env=env).stdout)
    assert shown["text"] == "from the CLI"
    # the node's admission dry-run refuses a second pin at the door, with the module's code
    again = run_cli("notes", "pin", "--key", "bob", "0x" + other.hex(), "again", env=env, check=False)
    assert again.returncode == 1 and "tag_taken" in again.stderr, again
    assert "notes" in run_cli("--help", env=env).stdout
