"""Real ``medchaind`` processes for end-to-end tests and benchmarks.

Every wait is on a condition (the socket answers, the process exits) with a deadline
(:func:`medchaind.testing.wait.wait_until`); nothing sleeps for a fixed time to synchronise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import Client
from ..crypto import KeyPair
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
        """Start the process; return once its socket answers."""
        return self.spawn().wait_ready(timeout)

    def spawn(self) -> NodeProcess:
        """Start the process without waiting for it (:meth:`wait_ready` does), so that
        several nodes can start side by side."""
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            _cmd("medchaind") + [self.command, "--datadir", str(self.datadir)],
            # the web console (on by default in `dev`) only where a test asks for it
            stdout=log, stderr=subprocess.STDOUT,
            env={"MEDCHAIND_CONSOLE_LISTEN": "", **os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> NodeProcess:
        """Return once the :meth:`spawn`-ed process answers ``node_info`` on its socket."""
        proc = self.proc
        assert proc is not None, "spawn() first"

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
PORT_BANDS_START: int = 20000
PORT_BAND_SIZE: int = 6000
_cursor: dict[int, int] = {}


def free_port_range(n: int, start: int | None = None) -> int:
    """A base port such that ``base .. base+n-1`` are free on 127.0.0.1 right now.

    Ranges are handed out in order, a fresh one per call within a process (a node of the
    previous test may still be closing its listener), from this process's band: each
    pytest-xdist worker has its own, all below the ephemeral port range. Each process
    starts at its own place in its band (from its pid), so two suites run at once on one
    machine do not walk the same ports in step: a node restarted by a test rebinds its
    ports later, and the other suite must not have taken them meanwhile. ``start`` is
    accepted for old callers and ignored.
    """
    import socket

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    k = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    lo = PORT_BANDS_START + (k % 2) * PORT_BAND_SIZE
    hi = lo + PORT_BAND_SIZE
    first = _cursor.get(lo, lo + (os.getpid() * 7919) % (PORT_BAND_SIZE // 2))
    candidates: list[int] = [*range(first, hi - n, 7), *range(lo, first, 7)]
    for base in candidates:
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


#: argon2id at libsodium's minimum cost (OPSLIMIT_MIN, MEMLIMIT_MIN), which
#: :func:`medchaind.crypto.decrypt_keystore` accepts: a test's keystores open in
#: microseconds instead of ~0.25 s of CPU and 64 MiB each (every ``medchain --key``
#: command and every node start opens one)
TEST_KDF = {"opslimit": 1, "memlimit": 8192}


def cheapen_keystore(path: Path, passphrase: str, keys: KeyPair | None = None) -> None:
    """Re-encrypt the keystore file ``path`` (same keys, label and passphrase) at
    :data:`TEST_KDF` cost. ``keys``: the keys inside, if known (else the file is opened)."""
    from ..files import load_keystore, read_keystore_public, save_keystore

    label = read_keystore_public(path)["label"]
    kp = keys if keys is not None else load_keystore(path, passphrase)
    save_keystore(path, kp, passphrase, label=label, **TEST_KDF)


def call(node: NodeProcess, method: str, params: dict[str, Any] | None = None) -> Any:
    """One JSON-RPC call on ``node``'s socket (a connection of its own)."""
    with Client(node.ipc, timeout=30) as c:
        return c.call(method, params)


@dataclass
class Testnet:
    """The nodes of :func:`start_testnet`: ``nodes[:validators]`` are the authorities,
    the rest observers; ``root`` is a scratch directory (removed with the network)."""

    nodes: list[NodeProcess]
    root: Path
    validators: int


@contextmanager
def start_testnet(
    validators: int = 4,
    *,
    observers: int = 0,
    chain_id: str,
    prefix: str = "mcnet-",
    connect: bool = True,
    env: Callable[[int], dict[str, str] | None] | None = None,
    log_lines: int = 30,
    cheap_keys: bool = True,
) -> Iterator[Testnet]:
    """A network of ``medchaind run`` processes from ``init_testnet`` on 127.0.0.1.

    The nodes start side by side; with ``connect`` (the default) the context is entered
    once every authority is connected to every other one. ``env(i)`` is node ``i``'s
    extra environment. With ``cheap_keys`` the authorities' keystores are re-encrypted at
    :data:`TEST_KDF` cost (the node and ``medchain --key <datadir>/keys/node.json`` open
    them as any keystore). On exit every node still running is killed (SIGKILL), the tail of
    each node's log is printed (pytest shows it when the test failed), the whole tree is
    copied to ``$MEDCHAIND_KEEP_TEST_LOGS`` if that is set, and the tree is removed.
    """
    import shutil
    import tempfile

    from ..node.init import init_testnet

    root = Path(tempfile.mkdtemp(prefix=prefix))
    nodes: list[NodeProcess] = []
    try:
        base = free_port_range(validators + observers)
        cfgs = init_testnet(root / "net", validators, observers=observers, chain_id=chain_id, base_port=base)
        nodes = [NodeProcess(cfg.datadir, cfg.datadir / "node.log", command="run", env=env(i) if env else None)
                 for i, (cfg, _) in enumerate(cfgs)]
        if cheap_keys:
            for n, (_, kp) in zip(nodes, cfgs, strict=True):
                cheapen_keystore(n.authority_key, n.authority_passphrase, kp)
        for n in nodes:
            n.spawn()
        for n in nodes:
            n.wait_ready()
        if connect:
            wait_until(lambda: all(len(call(n, "node_peers")) >= validators - 1 for n in nodes[:validators]),
                       timeout=60, what="the authorities to connect to each other")
        yield Testnet(nodes, root, validators)
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.stop(signal.SIGKILL)
        for i, n in enumerate(nodes):  # shown by pytest only when the test failed
            print(f"---- node{i} log (tail) ----")
            print("\n".join(n.log().splitlines()[-log_lines:]))
        if os.environ.get("MEDCHAIND_KEEP_TEST_LOGS"):
            shutil.copytree(root, os.environ["MEDCHAIND_KEEP_TEST_LOGS"], dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.ipc"))
        shutil.rmtree(root, ignore_errors=True)


class Medchain:
    """``medchain`` as a user runs it: a client home with keystores under ``home``, the
    socket of one node of ``nodes`` per command."""

    def __init__(self, nodes: list[NodeProcess], home: Path, passphrase: str, *, cheap_keys: bool = True) -> None:
        self.nodes = nodes
        self.home = home
        self.cheap_keys = cheap_keys
        self.env = {"MEDCHAIN_HOME": str(home), "MEDCHAIN_PASSPHRASE": passphrase}
        #: what the last command wrote to stderr
        self.stderr = ""

    def run(self, node: int, *args: str, code: int = 0) -> Any:
        """The command's JSON output (its stderr if it wrote nothing); it must exit with ``code``."""
        res = run_cli("--ipc", str(self.nodes[node].ipc), *args, env=self.env, check=False)
        assert res.returncode == code, f"medchain {' '.join(args)} -> {res.returncode}:\n{res.stdout}\n{res.stderr}"
        self.stderr = res.stderr
        return json.loads(res.stdout) if res.stdout.strip() else res.stderr

    def tx(self, node: int, *args: str) -> dict[str, Any]:
        """A tx command that must commit successfully. Returns once every node has the
        block (the next command may go to another node)."""
        st = self.run(node, *args)
        assert st["status"] == "committed" and st["receipt"]["ok"], st
        self.settle(st["height"])
        return st  # type: ignore[no-any-return]

    def refused(self, node: int, *args: str, code: str) -> None:
        """A tx command the node refuses at admission (its dry run fails with ``code``): exit 1."""
        err = self.run(node, *args, code=1)
        assert "medchain: error: node refused" in err and code in err, err

    def settle(self, height: int) -> None:
        """Every node has the block at ``height``."""
        for n in self.nodes:
            with Client(n.ipc, timeout=60) as c:
                head = c.wait_height(height, timeout_ms=60_000)
                assert head is not None and head["height"] >= height, f"{n.datadir.name} stuck below {height}"

    def settle_all(self) -> None:
        """Every node has every block any node has now."""
        self.settle(max(int(call(n, "node_info")["height"]) for n in self.nodes))

    def key(self, name: str) -> str:
        """A new key ``name`` in the client home (``medchain keys new``); its public key.
        With ``cheap_keys``, its keystore is then re-encrypted at :data:`TEST_KDF` cost."""
        made = self.run(0, "keys", "new", name)
        if self.cheap_keys:
            cheapen_keystore(Path(made["file"]), self.env["MEDCHAIN_PASSPHRASE"])
        return str(made["public_key"])
