"""``medchain`` tx commands never report a timed-out wait as success (issue 13).

Two authorities, only one running: the chain has no quorum, admits txs and makes no
blocks. ``identity register`` must end with exit 3 and a message on stderr after its
``--timeout``, not print ``pending`` and exit 0; with ``--no-wait`` a pending tx is the
expected answer (exit 0).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchaind.node.init import init_testnet
from medchaind.testing.nodeproc import NodeProcess, free_port_range, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def lone_authority() -> Iterator[NodeProcess]:
    root = Path(tempfile.mkdtemp(prefix="mcnoq-"))
    cfgs = init_testnet(root / "net", 2, chain_id="medchain-noquorum", base_port=free_port_range(4))
    cfg, _ = cfgs[0]
    node = NodeProcess(cfg.datadir, cfg.datadir / "node.log", command="run").start()
    yield node
    node.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_wait_that_times_out_exits_3_with_a_message(lone_authority: NodeProcess, tmp_path: Path) -> None:
    env = {"MEDCHAIN_IPC": str(lone_authority.ipc), "MEDCHAIN_HOME": str(tmp_path), "MEDCHAIN_PASSPHRASE": "pw"}
    run_cli("keys", "new", "alice", env=env)
    res = run_cli("identity", "register", "--key", "alice", "--role", "patient", "--timeout", "1.5", env=env,
                  check=False)
    assert res.returncode == 3, res
    assert json.loads(res.stdout)["status"] == "pending"
    assert "not committed after 1.5 s" in res.stderr and "medchain tx 0x" in res.stderr

    run_cli("keys", "new", "bob", env=env)
    res = run_cli("identity", "register", "--key", "bob", "--role", "patient", "--no-wait", env=env, check=False)
    assert res.returncode == 0, res
    assert json.loads(res.stdout)["status"] == "pending" and res.stderr == ""
