"""``medchaind bench``: measure one dev node end to end, through its IPC socket.

Starts a real ``medchaind run`` process on a fresh datadir, pre-signs ``n_txs``
``identity.register`` transactions (each from a new key, so none wait on another's
nonce), submits them from ``connections`` client threads as JSON-RPC batches as fast
as the node accepts them, waits until every one is committed, then reports committed
tx/s (first submit to last commit), the node's CPU time and RSS, blocks and their
sizes, and this machine's Ed25519 verification rate for comparison (each tx costs
the node one verification). Figures, not asserts: nothing here fails on a slow machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .. import crypto
from ..client import Client
from ..errors import MedchainError
from ..node.init import init_datadir
from ..types import Tx, sign_tx

BATCH = 200


def _proc_stats(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) / 1024  # MiB
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tck
    except OSError:
        pass
    return out


def verify_rate(seconds: float = 1.0) -> float:
    """Ed25519 verifications per second on one core for a 200-byte payload."""
    key = crypto.SigningKey.generate()
    payload = b"x" * 200
    sig = key.sign(crypto.DOMAIN_TX, "bench", payload)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "bench", payload)
        n += 200
    return n / (time.perf_counter() - t0)


def _submit_batches(path: Path, txs: list[Tx], errors: list[str]) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    f = sock.makefile("rb")
    try:
        for i in range(0, len(txs), BATCH):
            chunk = txs[i : i + BATCH]
            req = [
                {"jsonrpc": "2.0", "id": j, "method": "tx_submit", "params": {"tx": "0x" + t.encoded.hex()}}
                for j, t in enumerate(chunk)
            ]
            sock.sendall(json.dumps(req, separators=(",", ":")).encode() + b"\n")
            replies = json.loads(f.readline())
            for r in replies:
                if "error" in r:
                    errors.append(str(r["error"].get("message")))
    finally:
        f.close()
        sock.close()


def _wait_ready(path: Path, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise MedchainError(f"the node exited during startup with code {proc.returncode}")
        if path.exists():
            try:
                with Client(path, timeout=5) as c:
                    c.node_info()
                return
            except (OSError, MedchainError):
                pass
        time.sleep(0.05)
    raise MedchainError("the node did not open its IPC socket within 60 s")


def run_single_node_bench(*, n_txs: int, connections: int, datadir: Path | None = None) -> dict[str, Any]:
    tmp = None
    if datadir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mcbench-"))
        datadir = tmp / "node"
    proc: subprocess.Popen[bytes] | None = None
    try:
        cfg, genesis, _ = init_datadir(datadir, chain_id="medchain-bench", moniker="bench")
        log_path = datadir / "node.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "medchaind.cli.daemon", "run", "--datadir", str(datadir),
                 "--log-level", "warning"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        _wait_ready(cfg.ipc_path, proc)
        t_sign = time.perf_counter()
        txs = []
        for _ in range(n_txs):
            k = crypto.SigningKey.generate()
            txs.append(sign_tx(k, genesis.chain_id, "identity.register", 0,
                               {"role": "patient", "enc_key": crypto.random_bytes(32)}))
        sign_s = time.perf_counter() - t_sign
        with Client(cfg.ipc_path, timeout=600) as c:
            start_height = c.node_info()["height"]
        before = _proc_stats(proc.pid)
        slices = [txs[i::connections] for i in range(connections)]
        errors: list[str] = []
        threads = [threading.Thread(target=_submit_batches, args=(cfg.ipc_path, s, errors)) for s in slices]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t_submitted = time.perf_counter() - t0
        with Client(cfg.ipc_path, timeout=600) as c:
            for s in slices:
                if s:
                    c.wait(s[-1].hash, timeout_ms=300_000)
            while c.call("mempool_status")["size"] > 0:
                c.wait(txs[-1].hash, timeout_ms=1000)
            elapsed = time.perf_counter() - t0
            end_height = c.node_info()["height"]
            committed = 0
            sizes = []
            for h in range(start_height + 1, end_height + 1):
                n = len(c.block(height=h)["txs"])
                committed += n
                sizes.append(n)
        after = _proc_stats(proc.pid)
        vrate = verify_rate()
        return {
            "txs_submitted": n_txs,
            "txs_committed": committed,
            "rejected": len(errors),
            "first_rejections": errors[:3],
            "connections": connections,
            "submit_seconds": round(t_submitted, 3),
            "commit_seconds": round(elapsed, 3),
            "committed_tx_per_s": round(committed / elapsed, 1),
            "blocks": len(sizes),
            "max_txs_per_block": max(sizes, default=0),
            "mean_txs_per_block": round(committed / len(sizes), 1) if sizes else 0,
            "node_cpu_seconds": round(after.get("cpu_s", 0) - before.get("cpu_s", 0), 2),
            "node_rss_mib": round(after.get("VmRSS", 0), 1),
            "node_peak_rss_mib": round(after.get("VmHWM", 0), 1),
            "client_sign_seconds": round(sign_s, 2),
            "ed25519_verify_per_s_one_core": round(vrate),
            "verify_bound_tx_per_s": round(vrate),
            "ratio_to_verify_bound": round(committed / elapsed / vrate, 3),
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
