"""Real ``medchaind`` processes for end-to-end tests and benchmarks.

Every wait is on a condition (the socket answers, the process exits) with a deadline
(:func:`medchaind.testing.wait.wait_until`); nothing sleeps for a fixed time to synchronise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ..client import Client
from ..errors import MedchainError
from .wait import WaitTimeout, wait_until

BIN = Path(sys.executable).parent


def _cmd(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    module = "medchaind.cli.daemon" if name == "medchaind" else "medchaind.cli.client"
    return [sys.executable, "-m", module]


class NodeProcess:
    """A ``medchaind dev --datadir D`` process; restartable on the same datadir."""

    def __init__(
        self, datadir: Path, log_path: Path, *, command: str = "dev", env: dict[str, str] | None = None
    ) -> None:
        self.command = command
        self.env = env or {}
        self.datadir = datadir
        self.log_path = log_path
        self.ipc = datadir / "medchaind.ipc"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> NodeProcess:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            _cmd("medchaind") + [self.command, "--datadir", str(self.datadir)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        log.close()
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"node exited with {proc.returncode}:\n{self.log()}")
            if not self.ipc.exists():
                return False
            try:
                with Client(self.ipc, timeout=5) as c:
                    c.node_info()
            except (OSError, MedchainError):
                return False
            return True

        try:
            wait_until(answers, timeout=timeout, what=f"the node to answer on {self.ipc}", interval=0.02)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}:\n{self.log()}") from None
        return self

    def client(self, timeout: float = 30.0) -> Client:
        return Client(self.ipc, timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        return rc

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def authority_key(self) -> Path:
        return self.datadir / "keys" / "node.json"

    @property
    def authority_passphrase(self) -> str:
        return (self.datadir / "keys" / "node.passphrase").read_text().strip()


def run_cli(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        _cmd("medchain") + list(args), capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )
    if check and res.returncode != 0:
        raise AssertionError(f"medchain {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


#: where test ports come from: below Linux's ephemeral range (32768-60999 by default), so
#: an outgoing connection's source port can never take a port between the check here and
#: the node's bind; one band per pytest-xdist worker
PORT_BANDS_START, PORT_BAND_SIZE = 20000, 6000
_cursor: dict[int, int] = {}


def free_port_range(n: int, start: int | None = None) -> int:
    """A base port such that ``base .. base+n-1`` are free on 127.0.0.1 right now.

    Ranges are handed out in order, a fresh one per call within a process (a node of the
    previous test may still be closing its listener), from this process's band: each
    pytest-xdist worker has its own, all below the ephemeral port range. ``start`` is
    accepted for old callers and ignored.
    """
    import socket

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    k = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    lo = PORT_BANDS_START + (k % 2) * PORT_BAND_SIZE
    hi = lo + PORT_BAND_SIZE
    first = _cursor.get(lo, lo)
    for base in [*range(first, hi - n, 7), *range(lo, first, 7)]:
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            nxt = base + n + 7
            _cursor[lo] = nxt if nxt < hi - n else lo
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range on 127.0.0.1")
