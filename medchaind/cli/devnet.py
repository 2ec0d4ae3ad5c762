"""``medchaind dev --validators N``: a local N-authority network, one process per node."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from ..client import Client
from ..errors import MedchainError
from ..node.init import init_testnet


def start_nodes(
    datadirs: list[Path], *, log_level: str = "info", settings: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start ``medchaind run`` per datadir; ``settings`` are dotted config overrides for
    every node (``metrics.listen`` is a base: node i listens on port + i)."""
    procs = []
    for i, d in enumerate(datadirs):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for dotted, value in (settings or {}).items():
            if dotted in ("metrics.listen", "console.listen") and value:
                host, _, port = value.rpartition(":")
                value = f"{host}:{int(port) + i if int(port) else 0}"
            section, _, key = dotted.partition(".")
            env[f"MEDCHAIND_{section.upper()}_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else value
        log = open(d / "node.log", "ab")  # noqa: SIM115 (handed to the child)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "medchaind.cli.daemon", "run", "--datadir", str(d), "--log-level", log_level],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        ))
        log.close()
    return procs


def wait_ready(datadirs: list[Path], procs: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(range(len(datadirs)))
    while pending and time.monotonic() < deadline:
        for i in list(pending):
            if procs[i].poll() is not None:
                raise MedchainError(f"node{i} exited with {procs[i].returncode}; see {datadirs[i] / 'node.log'}")
            try:
                with Client(datadirs[i] / "medchaind.ipc", timeout=5) as c:
                    c.node_info()
                pending.discard(i)
            except (OSError, MedchainError):
                pass
        time.sleep(0.05)
    if pending:
        raise MedchainError(f"nodes {sorted(pending)} did not open their IPC socket within {timeout:.0f} s")


def stop_nodes(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


class _Stop(Exception):
    """SIGINT or SIGTERM reached ``dev --validators N``: stop every node, exit as the signal says."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise _Stop(signum)


def run_devnet(validators: int, datadir: Path | None, base_port: int, settings: dict[str, Any] | None = None) -> int:
    """``settings``: the run options given to ``dev`` (dotted names), applied to every node.

    Returns the exit status: 130 after SIGINT (Ctrl-C), 0 after SIGTERM, both once every
    node has stopped. SIGHUP is passed on to every node (each reloads its settings)."""
    settings = dict(settings or {})
    if settings.pop("ipc.path", None):
        raise MedchainError("--ipc-path names one socket; with --validators N each node uses "
                            "<datadir>/nodeI/medchaind.ipc")
    log_level = str(settings.pop("log.level", "info"))
    # Ctrl-C and SIGTERM both stop every node (even when started with SIGINT ignored,
    # as a shell does for background jobs)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    tmp = None
    if datadir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mcnet-"))
        datadir = tmp
    datadir = datadir.absolute()
    procs: list[subprocess.Popen[bytes]] = []

    def forward_hup(signum: int, frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGHUP, forward_hup)
    status = 0
    try:
        if not (datadir / "node0" / "config.toml").exists():
            init_testnet(datadir, validators, chain_id="medchain-dev", base_port=base_port)
        dirs = sorted((p for p in datadir.iterdir() if (p / "config.toml").exists()), key=lambda p: p.name)
        procs = start_nodes(dirs, log_level=log_level, settings=settings)
        wait_ready(dirs, procs)
        lines = [f"medchaind dev network: {len(dirs)} authorities, one process each{' (temporary)' if tmp else ''}"]
        for d in dirs:
            lines.append(f"  {d.name}: ipc {d / 'medchaind.ipc'}  log {d / 'node.log'}")
        lines.append(f"try: export MEDCHAIN_IPC={dirs[0] / 'medchaind.ipc'}; medchain info; medchain watch heads")
        lines.append("Ctrl-C stops every node; SIGHUP makes every node reload its settings.")
        click.echo("\n".join(lines), err=True)
        while True:
            for i, p in enumerate(procs):
                if p.poll() is not None:
                    raise MedchainError(f"{dirs[i].name} exited with {p.returncode}; see {dirs[i] / 'node.log'}")
            time.sleep(0.5)
    except _Stop as stop:
        status = 128 + stop.signum if stop.signum == signal.SIGINT else 0
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    finally:
        stop_nodes(procs)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return status
