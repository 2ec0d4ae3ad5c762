"""Sync progress for CLI commands that wait on it (``medchaind status --wait-sync``).

A ``rich`` progress bar on a terminal; plain ``height/target`` lines otherwise (logs,
CI, pipes). The daemon itself never draws: it logs progress and answers ``node_syncing``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..client import Client
from ..errors import MedchainError


def _synced(s: dict[str, object], peers: int) -> bool:
    height, target = int(s["height"]), int(s["target_height"])  # type: ignore[call-overload]
    return not s["syncing"] and height >= target and (peers > 0 or target == 0)


def wait_synced(ipc: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with Client(ipc, timeout=10) as c:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(TextColumn("sync"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                          transient=True) as bar:
                task = bar.add_task("sync", total=None)
                while True:
                    s = c.call("node_syncing")
                    peers = len(c.call("node_peers"))
                    bar.update(task, completed=s["height"], total=max(s["target_height"], s["height"], 1))
                    if _synced(s, peers):
                        return
                    if time.monotonic() > deadline:
                        raise MedchainError(f"still syncing after {timeout_s:.0f} s")
                    time.sleep(0.5)
        last = None
        while True:
            s = c.call("node_syncing")
            peers = len(c.call("node_peers"))
            line = f"sync height={s['height']} target={s['target_height']} peers={peers}"
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
            if _synced(s, peers):
                return
            if time.monotonic() > deadline:
                raise MedchainError(f"still syncing after {timeout_s:.0f} s")
            time.sleep(0.5)
