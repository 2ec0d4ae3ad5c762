"""Real partitions: ``medchaind`` processes in Linux network namespaces the test creates.

Used by ``test_partition_netns.py`` (short, in the suite when it runs as root) and by
``scripts/partition.py`` (longer scenarios that print figures).

Layout, every piece created here and deleted by :meth:`NetnsLab.close`::

    <prefix>-hub        a namespace holding two bridges, br0 and br1
    <prefix>-n<i>       one namespace per node: lo, and eth0 = 10.77.0.<i+1>/24, the
                        far end of a veth pair whose hub end h<i> sits on br0 or br1

A partition moves hub ends between the two bridges: nodes on br0 reach each other and
nobody on br1, and the other way round. Nothing is dropped with an error: packets to
the other side simply go nowhere, so TCP connections linger (as on a real cut link)
until their own timeouts. No address exists outside these namespaces, and the host's
root namespace is never touched (only ``ip netns add/del`` and processes started with
``ip netns exec``). The nodes' IPC sockets are files, reachable from the test as usual;
their metrics listen on 127.0.0.1:9464 inside their own namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from medchaind import crypto
from medchaind.client import Client
from medchaind.errors import MedchainError, RPCError
from medchaind.net.libp2p_net import peer_id_from_public_key
from medchaind.node.init import init_testnet
from medchaind.types import Tx, sign_tx

SUBNET = "10.77.0"
P2P_PORT = 26656
METRICS = "127.0.0.1:9464"
BIN = Path(sys.executable).parent


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def netns_unusable() -> str | None:
    """Why this machine cannot run the namespace tests, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (the suite is not running as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"mcprobe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
        _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    except (subprocess.CalledProcessError, OSError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        return f"`ip netns` / veth / bridge do not work here: {detail}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


class NsNode:
    """One ``medchaind run`` inside a namespace (``ip netns exec``); restartable."""

    def __init__(self, ns: str, datadir: Path, env: dict[str, str]) -> None:
        self.ns = ns
        self.datadir = datadir
        self.ipc = datadir / "medchaind.ipc"
        self.log_path = datadir / "node.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        exe = BIN / "medchaind"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "medchaind.cli.daemon"]
        with open(self.log_path, "ab") as log:
            # `ip netns exec` execs the command: the pid is the node's, signals reach it
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *cmd, "run", "--datadir", str(self.datadir)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node in {self.ns} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                self.call("node_info")
                return
            except (OSError, MedchainError):
                time.sleep(0.05)  # polling interval of a condition wait
        raise AssertionError(f"node in {self.ns} did not answer within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        with Client(self.ipc, timeout=10) as c:
            return c.call(method, params)

    def height(self) -> int:
        return int(self.call("node_info")["height"])

    def readyz(self) -> tuple[int, str]:
        """``GET /readyz`` on the node's metrics port, from inside its namespace."""
        host, port = METRICS.split(":")
        code = (
            "import socket\n"
            f"s = socket.create_connection(({host!r}, {port}), timeout=5)\n"
            "s.sendall(b'GET /readyz HTTP/1.0\\r\\n\\r\\n')\n"
            "r = b''\n"
            "while c := s.recv(4096): r += c\n"
            "import sys; sys.stdout.buffer.write(r)\n"
        )
        out = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, "-c", code],
                             capture_output=True, timeout=30)
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        return (int(head.split()[1]) if head else 0), body.decode().strip()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class NetnsLab:
    """``n`` authorities, each in its own namespace, on one hub (see the module docstring)."""

    def __init__(self, root: Path, n: int = 4, *, chain_id: str = "medchain-netns",
                 create_empty_blocks: bool = False) -> None:
        self.root = root
        self.prefix = f"mcp{secrets.token_hex(3)}"
        self.hub = f"{self.prefix}-hub"
        self.namespaces: list[str] = []
        self.nodes: list[NsNode] = []
        self.side = [0] * n
        try:
            self._build(n, chain_id, create_empty_blocks)
        except BaseException:
            self.close()
            raise

    def _build(self, n: int, chain_id: str, create_empty_blocks: bool) -> None:
        _ip("netns", "add", self.hub)
        self.namespaces.append(self.hub)
        for br in ("br0", "br1"):
            _ip("-n", self.hub, "link", "add", br, "type", "bridge")
            _ip("-n", self.hub, "link", "set", br, "up")
        cfgs = init_testnet(self.root / "net", n, chain_id=chain_id, create_empty_blocks=create_empty_blocks)
        peers = [peer_id_from_public_key(keys.public_key) for _, keys in cfgs]
        addrs = [f"/ip4/{SUBNET}.{i + 1}/tcp/{P2P_PORT}" for i in range(n)]
        for i, (cfg, _) in enumerate(cfgs):
            ns = f"{self.prefix}-n{i}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.hub, "link", "add", f"h{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", f"h{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            env = {
                "MEDCHAIND_P2P_LISTEN": addrs[i],
                "MEDCHAIND_P2P_BOOTSTRAP": ",".join(
                    f"{a}/p2p/{p}" for j, (a, p) in enumerate(zip(addrs, peers, strict=True)) if j != i
                ),
                "MEDCHAIND_METRICS_LISTEN": METRICS,
            }
            self.nodes.append(NsNode(ns, cfg.datadir, env))

    # ------------------------------------------------------------------ faults

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut the network into two sides: the nodes of ``groups[0]`` and everyone else."""
        first = set(groups[0])
        for i in range(len(self.nodes)):
            self._put(i, 0 if i in first else 1)

    def isolate(self, i: int) -> None:
        self.partition([j for j in range(len(self.nodes)) if j != i])

    def heal(self) -> None:
        for i in range(len(self.nodes)):
            self._put(i, 0)

    def _put(self, i: int, side: int) -> None:
        if self.side[i] != side:
            _ip("-n", self.hub, "link", "set", f"h{i}", "master", f"br{side}")
            self.side[i] = side

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def close(self) -> None:
        """Stop every node and delete every namespace (and with them the links); idempotent."""
        for node in self.nodes:
            try:
                node.stop(signal.SIGKILL)
            except Exception:  # teardown goes on whatever happens
                pass
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(f"---- node{i} ({n.ns}) log (tail) ----\n" + "\n".join(n.log().splitlines()[-lines:])
                         for i, n in enumerate(self.nodes))


def register_tx(chain_id: str) -> Tx:
    kp = crypto.KeyPair.generate()
    body = {"role": "patient", "enc_key": kp.encryption.public_key}
    return sign_tx(kp.signing, chain_id, "identity.register", 0, body)


def submit(node: NsNode, tx: Tx) -> str:
    with Client(node.ipc, timeout=10) as c:
        return str(c.submit(tx))


def committed_on(nodes: Sequence[NsNode], hashes: Sequence[str]) -> bool:
    for n in nodes:
        for h in hashes:
            try:
                st = n.call("chain_getTx", {"hash": h})
            except RPCError as exc:
                # -32020 unknown tx: neither gossip nor a block has brought it here yet
                # (tx gossip is paced, so a node may see the tx first in its block)
                if exc.code == -32020:
                    return False
                raise
            if st is None or st.get("status") != "committed":
                return False
    return True


def same_chain(nodes: Sequence[NsNode]) -> bool:
    top = min(n.height() for n in nodes)
    for h in range(1, top + 1):
        if len({n.call("chain_getBlock", {"height": h})["header"]["hash"] for n in nodes}) != 1:
            return False
    return True
