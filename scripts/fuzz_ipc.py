"""Longer IPC fuzzing run: hostile inputs to a node's local Unix socket (issue 9).

    .venv/bin/python scripts/fuzz_ipc.py [--seed N] [--count N] [--minutes M]
    .venv/bin/python scripts/fuzz_ipc.py --ipc /path/to/test-node/medchaind.ipc ...

Without ``--ipc`` it starts a throwaway in-process node (single authority, no
networking, small IPC limits so hostile inputs reach them) in a temporary directory, and
after the run also checks that the node's chain, app hash, mempool, bans and datadir are
unchanged. With ``--ipc`` it fuzzes a node you started (a test node: fuzzing runs the
node's methods, admin ones included when the script runs as the node's user; no
generated input can ban a real peer id or name a usable backup path, see
medchaind/testing/ipcfuzz.py). It only ever connects to that local socket.

Bounded: at most ``--count`` inputs (<= 1,000,000) and ``--minutes`` (<= 60). Prints a
summary and every failure (an input that got -32603, a node that stopped answering, a
non-reading or half-written client that was not closed); exits 1 if there was any.
The suite runs a short version with a fixed seed (tests/ipc/test_ipc_fuzz.py); a seed
that fails here replays with the same ``--seed`` (and ``--count``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import trio

from medchaind.modules import make_app
from medchaind.node.init import init_datadir
from medchaind.node.node import Node
from medchaind.node.rpc import method_params
from medchaind.testing.appkit import make_genesis
from medchaind.testing.ipcfuzz import FuzzReport, InputMaker, run

MAX_COUNT = 1_000_000
MAX_MINUTES = 60


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=100_000, help=f"inputs, at most {MAX_COUNT}")
    p.add_argument("--minutes", type=float, default=10, help=f"time limit, at most {MAX_MINUTES}")
    p.add_argument("--ipc", type=Path, help="fuzz this node's socket instead of a throwaway node")
    p.add_argument("--non-reading", type=int, default=20, help="clients that never read")
    p.add_argument("--half-written", type=int, default=20, help="clients that stop mid-request")
    a = p.parse_args()
    if not 1 <= a.count <= MAX_COUNT or not 0 < a.minutes <= MAX_MINUTES:
        p.error(f"--count must be in 1..{MAX_COUNT} and --minutes in (0, {MAX_MINUTES}]")
    if a.ipc is not None:
        try:
            if not stat.S_ISSOCK(os.stat(a.ipc).st_mode):
                p.error(f"{a.ipc} is not a Unix socket")
        except OSError as exc:
            p.error(f"{a.ipc}: {exc.strerror}")
    return a


async def _fuzz(path: Path, a: argparse.Namespace, read_timeout_s: float) -> FuzzReport:
    # What the node serves: this checkout's own methods and every module's queries. A
    # method the node lacks is fuzzed too (it must answer -32601).
    app = make_app(make_genesis({"A": 1}))
    methods = method_params(app)
    topics = ["newHeads", "tx", *app.topics]
    return await run(
        path,
        InputMaker(a.seed, methods, topics),
        seed=a.seed,
        count=a.count,
        time_limit=a.minutes * 60,
        non_reading=a.non_reading,
        half_written=a.half_written,
        half_written_wait=read_timeout_s + 30,
    )


def _state(node: Node) -> dict[str, object]:
    """What hostile input must not change."""
    tip = node.ledger.tip
    return {"height": tip.height, "head": tip.block_hash.hex(), "app_hash": tip.app_hash.hex(),
            "mempool": len(node.mempool), "banned": sorted(map(str, node.banned)),
            "datadir": sorted(os.listdir(node.config.datadir))}


async def _main(a: argparse.Namespace) -> int:
    if a.ipc is not None:
        # the node's ipc.read_timeout_ms is not known from outside: assume the default
        report = await _fuzz(a.ipc, a, read_timeout_s=30)
        changed: list[str] = []
    else:
        base = Path(tempfile.mkdtemp(prefix="mcfuzz", dir="/tmp"))  # short: AF_UNIX paths
        try:
            cfg, genesis, keys = init_datadir(base / "node")
            # small bounds, so hostile inputs reach them quickly
            ipc = replace(cfg.ipc, max_request_bytes=1 << 20, max_reply_bytes=256 * 1024,
                          send_queue_bytes=256 * 1024, read_timeout_ms=1000)
            node = Node(replace(cfg, ipc=ipc), genesis, keys)
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                before = _state(node)
                report = await _fuzz(node.config.ipc_path, a, read_timeout_s=1)
                after = _state(node)
                nursery.cancel_scope.cancel()
            changed = [f"{k}: {before[k]!r} -> {after[k]!r}" for k in before if before[k] != after[k]]
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print(report.summary())
    for f in report.failures:
        print("FAILURE", f)
    for c in changed:
        print("STATE CHANGED", c)
    return 1 if report.failures or changed else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s %(message)s")
    sys.exit(trio.run(_main, _args()))
