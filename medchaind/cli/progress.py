"""Sync progress for CLI commands that wait on it (``medchaind status --wait-sync``).

A ``rich`` progress bar on a terminal; plain ``sync ...`` lines otherwise (logs, CI,
pipes). The daemon itself never draws: it logs progress and answers ``node_syncing``.

When is a node caught up? Rolling-restart scripts run ``status --wait-sync`` right
after starting a node, and it once returned at ``height=0 target=0 peers=2`` while the
network was at height 3 (issue 13): the peers had connected, but sync had not asked
them for their heads yet, so the target was still the node's own height. The rule
(:func:`assess_sync`) therefore waits for the *reports*, not only for the target:

1. the node answers on its socket (it may still be starting);
2. it has peers, unless it holds more than 2/3 of the voting power itself (a
   single-authority chain needs no network, and an observer or a member of a larger
   set cannot be caught up alone);
3. enough connected peers have reported their head: ``claims_needed`` of them (the
   f+1 agreeing claims sync needs for a target), or all connected peers if fewer;
4. the node is not syncing and its height is at least its sync target and at least
   the ``claims_needed``-th highest reported head (so one peer that claims 2^62 cannot
   hold the wait until its deadline when others report).

The deadline (``--timeout``) ends the wait with the reason it was still waiting.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import MedchainError

#: seconds between polls of the node
POLL_S = 0.25


@dataclass(frozen=True, slots=True)
class SyncView:
    """What the node says about itself: ``node_info``, ``consensus_status``, ``node_syncing``."""

    height: int
    target: int
    syncing: bool
    peers: int
    #: heads reported by connected peers
    reported: tuple[int, ...]
    claims_needed: int
    own_power: int
    total_power: int


def view_of(info: dict[str, Any], consensus: dict[str, Any], syncing: dict[str, Any]) -> SyncView:
    powers = {a["public_key"]: int(a["power"]) for a in consensus.get("authorities", [])}
    return SyncView(
        height=int(syncing["height"]),
        target=int(syncing["target_height"]),
        syncing=bool(syncing["syncing"]),
        peers=int(info.get("peers", 0)),
        reported=tuple(int(p["height"]) for p in syncing.get("peers", [])),
        claims_needed=max(1, int(syncing.get("claims_needed", 1))),
        own_power=powers.get(info.get("public_key", ""), 0),
        total_power=sum(powers.values()),
    )


def assess_sync(v: SyncView) -> tuple[bool, str]:
    """``(caught_up, why not)`` by the rule of the module docstring."""
    alone = v.total_power > 0 and 3 * v.own_power > 2 * v.total_power
    if v.peers == 0:
        if alone:
            return True, "caught up (this node decides the chain alone)"
        return False, "no peers yet"
    need = min(v.peers, v.claims_needed)
    if len(v.reported) < need:
        return False, f"waiting for peers to report their heads ({len(v.reported)} of {need})"
    ranked = sorted(v.reported, reverse=True)
    reference = ranked[min(len(ranked), v.claims_needed) - 1] if ranked and not alone else 0
    if v.syncing:
        return False, "syncing"
    goal = max(v.target, reference)
    if v.height < goal:
        return False, f"behind: height {v.height}, peers report {goal}"
    return True, "caught up"


def _poll(c: Client) -> SyncView:
    return view_of(c.call("node_info"), c.call("consensus_status"), c.call("node_syncing"))


def wait_synced(ipc: Path, timeout_s: float) -> SyncView:
    """Wait until the node at ``ipc`` is caught up (:func:`assess_sync`); raises
    :class:`MedchainError` with the last reason when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    bar = _Bar() if sys.stderr.isatty() else _Lines()
    reason = f"the node at {ipc} is not answering"
    with bar:
        while True:
            try:
                with Client(ipc, timeout=10) as c:
                    while True:
                        v = _poll(c)
                        ok, reason = assess_sync(v)
                        bar.show(v, reason)
                        if ok:
                            return v
                        if time.monotonic() > deadline:
                            break
                        time.sleep(POLL_S)
            except (OSError, MedchainError) as exc:
                # not started yet, or restarting: the socket answers again soon
                reason = f"the node at {ipc} is not answering ({exc})"
                bar.waiting(reason)
            if time.monotonic() > deadline:
                raise MedchainError(f"not caught up after {timeout_s:g} s: {reason}")
            time.sleep(POLL_S)


class _Lines:
    """``sync height=… target=… peers=… reported=…`` lines, one per change."""

    def __init__(self) -> None:
        self.last = ""

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _print(self, line: str) -> None:
        if line != self.last:
            print(line, file=sys.stderr, flush=True)
            self.last = line

    def show(self, v: SyncView, reason: str) -> None:
        top = max(v.reported, default=0)
        self._print(f"sync height={v.height} target={max(v.target, top)} peers={v.peers} "
                    f"reported={len(v.reported)} ({reason})")

    def waiting(self, reason: str) -> None:
        self._print(f"sync {reason}")


class _Bar:
    """A transient rich progress bar (terminals only)."""

    def __enter__(self) -> _Bar:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("sync"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.description}"), transient=True)
        self.progress.__enter__()
        self.task = self.progress.add_task("", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def show(self, v: SyncView, reason: str) -> None:
        goal = max(v.target, v.height, max(v.reported, default=0), 1)
        self.progress.update(self.task, completed=v.height, total=goal, description=reason)

    def waiting(self, reason: str) -> None:
        self.progress.update(self.task, description=reason)
