"""Signals and exit codes of ``medchaind run`` on a real process (issue 13, item 8).

SIGHUP (logrotate, ``systemctl reload``) used to stop the node. Now it re-reads the
settings that can change at run time -- ``p2p.observers``, ``ipc.default_namespaces``,
``[ipc.access.<name>]``, ``log.level``/``log.format`` -- applies them, logs what changed,
warns about changes that need a restart, and keeps running (and keeps the old settings
when the new file is wrong). SIGTERM exits 0 after a clean shutdown; SIGINT (Ctrl-C)
exits 130, as shells report an interrupted command.

The IPC access part is checked as another user sees it: a client forked as ``nobody``
(root only, like tests/ipc) asks ``rpc_modules`` before and after the reload.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest

from medchaind.testing.nodeproc import NodeProcess
from medchaind.testing.wait import wait_until

pytestmark = pytest.mark.e2e

NOBODY = NOGROUP = 65534
PEER = "12D3KooWMNViDdDTJu4EGNHDDgXTXV4HEV24CZUhWNLELypLeusp"


def _rpc_modules_as_nobody(path: Path) -> dict[str, object]:
    """``rpc_modules`` on a new connection from uid/gid 65534 (a forked child)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no trio, just a socket
        try:
            os.setgroups([])
            os.setgid(NOGROUP)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(path))
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"rpc_modules"}\n')
                line = s.makefile().readline()
            os.write(w, line.encode())
        except BaseException as exc:  # noqa: BLE001 (reported to the parent)
            os.write(w, json.dumps({"child_error": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        reply = json.loads(f.read())
    os.waitpid(pid, 0)
    assert "child_error" not in reply, reply
    return reply["result"]  # type: ignore[no-any-return]


def _wait_log(node: NodeProcess, pattern: str, after: int) -> re.Match[str]:
    found: list[re.Match[str]] = []

    def seen() -> bool:
        m = re.search(pattern, node.log()[after:])
        if m:
            found.append(m)
        return m is not None

    wait_until(seen, timeout=30, what=f"the log line {pattern!r}")
    return found[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a client runs as uid nobody")
def test_sighup_reloads_access_rules_observers_and_log_level(short_tmp: Path) -> None:
    short_tmp.chmod(0o711)
    sockdir = short_tmp / "sock"
    sockdir.mkdir(mode=0o710)
    os.chown(sockdir, -1, NOGROUP)
    datadir = short_tmp / "node"
    env = {"MEDCHAIND_IPC_PATH": str(sockdir / "medchaind.ipc"), "MEDCHAIND_IPC_GROUP": str(NOGROUP)}
    node = NodeProcess(datadir, short_tmp / "node.log", env=env)
    node.ipc = sockdir / "medchaind.ipc"
    node.start()
    try:
        before = _rpc_modules_as_nobody(node.ipc)
        assert "records" not in before and "admin" not in before and "chain" in before

        config = datadir / "config.toml"
        original = config.read_text()
        edited = (original
                  .replace('observers = ""', f'observers = "{PEER}"')
                  .replace('level = "info"', 'level = "debug"')
                  .replace("max_txs = 100000", "max_txs = 50000"))
        edited += '\n[ipc.access.nobody]\nusers = [65534]\nnamespaces = ["records"]\n'
        config.write_text(edited)
        mark = len(node.log())
        node.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        m = _wait_log(node, r"settings reloaded changed=(\S+)", mark)
        assert set(m.group(1).strip('"').split(",")) == {"p2p.observers", "ipc.access", "log.level"}
        assert "need a restart to apply settings=mempool.max_txs" in node.log()[mark:]
        assert node.proc.poll() is None, "SIGHUP must not stop the node"  # type: ignore[union-attr]
        after = _rpc_modules_as_nobody(node.ipc)
        assert "records" in after and "admin" not in after

        # a config that no longer loads: logged, and the running settings stay
        config.write_text(edited.replace('namespaces = ["records"]', 'namespaces = ["recrods"]'))
        mark = len(node.log())
        node.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        _wait_log(node, r"reload failed, keeping the running settings", mark)
        assert "records" in _rpc_modules_as_nobody(node.ipc)
        assert node.proc.poll() is None  # type: ignore[union-attr]
        assert node.stop(signal.SIGTERM) == 0
        assert "node stopped" in node.log()
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.stop(signal.SIGKILL)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "sigint"])
def test_exit_status_after_a_signal(short_tmp: Path, sig: int, status: int) -> None:
    node = NodeProcess(short_tmp / "node", short_tmp / "node.log", command="dev")
    node.start()
    try:
        assert node.stop(sig) == status
        assert "node stopped" in node.log()  # a clean shutdown in both cases
        assert not node.ipc.exists()
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.stop(signal.SIGKILL)


def test_sigusr1_writes_a_task_dump_and_the_node_keeps_running(short_tmp: Path) -> None:
    """An operator's ``kill -USR1``: what every task waits on, in <datadir>/debug, logged."""
    node = NodeProcess(short_tmp / "node", short_tmp / "node.log", command="dev")
    node.start()
    try:
        mark = len(node.log())
        node.proc.send_signal(signal.SIGUSR1)  # type: ignore[union-attr]
        m = _wait_log(node, r"task dump written signal=SIGUSR1 tasks=(\d+) path=\"?([^\"\s]+)", mark)
        path = Path(m.group(2))
        assert path.parent == short_tmp / "node" / "debug"
        text = path.read_text()
        assert int(m.group(1)) == len(re.findall(r"^ *- ", text, re.M)) > 10
        # the node's long-lived loops are there, each with where it waits
        for task in ("BftEngine.run", "IPCServer", "SyncService.run"):
            assert task in text, task
        assert node.proc.poll() is None, "SIGUSR1 must not stop the node"  # type: ignore[union-attr]
        assert node.stop(signal.SIGTERM) == 0
    finally:
        if node.proc is not None and node.proc.poll() is None:
            node.stop(signal.SIGKILL)
