"""One default layout that ``medchaind`` and ``medchain`` both follow (issue 13, item 4).

``run`` and ``init`` used to require ``--datadir``, the node's socket was
``<datadir>/medchaind.ipc`` while ``medchain`` looked only in ``/run/medchaind``, so after
the README's persistent-node steps ``medchain head`` failed; the dev banner printed
relative paths. The rules (the layout section of :mod:`medchaind.clikit`) as a table,
then the README's steps through the real entry points with a fresh ``$HOME`` and nothing
exported.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from medchaind.clikit import SYSTEM_IPC, datadir_socket, default_datadir, find_client_socket, no_socket_message
from medchaind.testing.nodeproc import _cmd
from medchaind.testing.wait import wait_until


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HOME": "/home/ann"}, "/home/ann/.medchaind"),
        ({"HOME": "/home/ann", "MEDCHAIND_HOME": "/srv/chain"}, "/srv/chain"),
        # the systemd unit (StateDirectory=medchaind): its own directory
        ({"HOME": "/", "STATE_DIRECTORY": "/var/lib/medchaind"}, "/var/lib/medchaind"),
        ({"HOME": "/", "STATE_DIRECTORY": "/var/lib/medchaind:/var/lib/other"}, "/var/lib/medchaind"),
        # MEDCHAIND_HOME wins over systemd's
        ({"HOME": "/", "STATE_DIRECTORY": "/var/lib/medchaind", "MEDCHAIND_HOME": "/x"}, "/x"),
    ],
)
def test_default_datadir(env: dict[str, str], expected: str) -> None:
    assert default_datadir(env) == Path(expected)


def test_socket_of_a_datadir_follows_its_config(tmp_path: Path) -> None:
    assert datadir_socket(tmp_path, {}) == tmp_path / "medchaind.ipc"
    (tmp_path / "config.toml").write_text('[ipc]\npath = "/run/x/node.ipc"\n')
    assert datadir_socket(tmp_path, {}) == Path("/run/x/node.ipc")
    (tmp_path / "config.toml").write_text('[ipc]\npath = "sock/node.ipc"\n')
    assert datadir_socket(tmp_path, {}) == tmp_path / "sock/node.ipc"  # relative to the datadir
    assert datadir_socket(tmp_path, {"MEDCHAIND_IPC_PATH": "/e.ipc"}) == Path("/e.ipc")
    (tmp_path / "config.toml").write_text("not toml [")
    assert datadir_socket(tmp_path, {}) == tmp_path / "medchaind.ipc"


def test_client_socket_lookup_order(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert find_client_socket({**home, "MEDCHAIN_IPC": "/given.ipc"}) == Path("/given.ipc")
    if not SYSTEM_IPC.exists():
        assert find_client_socket(home) is None
        msg = no_socket_message(home)
        assert str(tmp_path / ".medchaind" / "medchaind.ipc") in msg and str(SYSTEM_IPC) in msg
    (tmp_path / ".medchaind").mkdir()
    (tmp_path / ".medchaind" / "medchaind.ipc").touch()
    assert find_client_socket(home) == tmp_path / ".medchaind" / "medchaind.ipc"


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEDCHAIND_HOME", "MEDCHAIN_IPC", "STATE_DIRECTORY", "MEDCHAIND_IPC_PATH", "MEDCHAIN_HOME")}
    return {**env, "HOME": str(home), "MEDCHAIN_PASSPHRASE": "correct horse battery staple"}


def _run(prog: str, *args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cmd(prog) + list(args), capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


@pytest.mark.e2e
def test_persistent_node_steps_need_no_datadir_and_no_export(short_tmp: Path) -> None:
    """The README: `medchaind init`, `medchaind run`, then `medchain` in the same shell."""
    env = _env(short_tmp)
    if not SYSTEM_IPC.exists():
        res = _run("medchain", "head", env=env)
        assert res.returncode == 1 and "no node socket: looked for" in res.stderr and "medchaind run" in res.stderr
    init = _run("medchaind", "init", env=env)
    assert init.returncode == 0, init.stderr
    summary = json.loads(init.stdout)
    datadir = short_tmp / ".medchaind"
    assert summary["datadir"] == str(datadir) and summary["ipc"] == str(datadir / "medchaind.ipc")
    node = subprocess.Popen(_cmd("medchaind") + ["run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(short_tmp / "node.log", "wb"))  # noqa: SIM115
    try:
        status = _run("medchaind", "status", "--wait-sync", "--timeout", "60", env=env)
        assert status.returncode == 0, status.stderr
        assert _run("medchain", "keys", "new", "alice", env=env).returncode == 0
        reg = _run("medchain", "identity", "register", "--key", "alice", "--role", "patient", env=env)
        assert reg.returncode == 0, reg.stderr
        head = _run("medchain", "head", env=env)
        assert head.returncode == 0, head.stderr
        assert json.loads(head.stdout)["height"] >= 1
        # the operator commands find the same socket
        assert _run("medchaind", "backup", "--out", str(short_tmp / "bk"), env=env).returncode == 0
    finally:
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0


@pytest.mark.e2e
def test_dev_banner_prints_absolute_paths_and_ctrl_c_exits_130(short_tmp: Path) -> None:
    env = _env(short_tmp)
    proc = subprocess.Popen(_cmd("medchaind") + ["dev", "--datadir", "devchain"], cwd=short_tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=open(short_tmp / "dev.log", "wb"))  # noqa: SIM115
    try:
        wait_until(lambda: "node ready" in (short_tmp / "dev.log").read_text(), timeout=60, what="the dev node")
        banner = (short_tmp / "dev.log").read_text().split("\nts=")[0]
        datadir = short_tmp / "devchain"
        assert f"datadir : {datadir}\n" in banner
        assert f"ipc     : {datadir / 'medchaind.ipc'}\n" in banner
        assert f"export MEDCHAIN_IPC={datadir / 'medchaind.ipc'}\n" in banner  # not the default socket
        assert f"authority key: {datadir / 'keys' / 'node.json'} " in banner
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
