"""Partitions made of real links: four authorities in Linux network namespaces.

    sudo .venv/bin/python scripts/partition.py [--seed N] [--cut SECONDS] [--flaps N] [--flap-seconds S]

Builds the lab of ``tests/e2e/netns_kit.py`` (a namespace per node, veth pairs to two
bridges in a hub namespace; nothing outside the namespaces it creates) and runs, under
steady client load (identity txs submitted over IPC to random nodes):

1. a 2/2 cut for ``--cut`` seconds: neither half may commit; then heal;
2. a 3/1 cut: the three keep committing, the one commits nothing; then heal;
3. the proposer of the next height isolated: the other three go on; then heal;
4. ``--flaps`` link flaps within ``--flap-seconds``: a random node cut off for a random
   0.2-2 s, again and again.

After each step it prints the heights, what each side committed while cut, how long
commits took to resume after the heal, and each node's ``/readyz``; at the end, the
acknowledged txs missing anywhere (must be 0) and whether every node holds the same
chain (must be yes). Exit status 1 when an invariant failed, 2 when namespaces cannot
be used here (not root, no iproute2). The short version runs in the suite:
``tests/e2e/test_partition_netns.py``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from netns_kit import NetnsLab, NsNode, committed_on, netns_unusable, register_tx, same_chain  # noqa: E402

from medchaind.client import Client  # noqa: E402
from medchaind.testing.wait import wait_until  # noqa: E402

CHAIN = "medchain-partition"
SETTLE_S = 2.0


class Load:
    """Client threads submitting txs to random nodes; remembers what was acknowledged."""

    def __init__(self, nodes: list[NsNode], rng: random.Random) -> None:
        self.nodes = nodes
        self.rng = rng
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        while not self.stop.is_set():
            node = self.nodes[self.rng.randrange(len(self.nodes))]
            try:
                with Client(node.ipc, timeout=10) as c:
                    h = c.submit(register_tx(CHAIN))
                    if c.wait(h, timeout_ms=3000)["status"] == "committed":
                        self.acked.append(h)
            except Exception:
                time.sleep(0.1)  # a node restarting or busy: try another

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def heights(lab: NetnsLab) -> list[int]:
    return [n.height() for n in lab.nodes]


def readiness(lab: NetnsLab) -> str:
    return "; ".join(f"node{i} {code} {reason}" for i, (code, reason) in enumerate(n.readyz() for n in lab.nodes))


def cut(lab: NetnsLab, name: str, sides: list[list[int]], seconds: float, failures: list[str]) -> None:
    """Cut the lab into ``sides``, wait ``seconds``, check who committed, heal, time the resume."""
    if len(sides[0]) == 1:
        lab.isolate(sides[0][0])
    else:
        lab.partition(sides[0])
    # A height whose precommits all arrived before the cut still commits just after it,
    # on both sides; what counts is what a side commits after that.
    time.sleep(SETTLE_S)
    before = heights(lab)
    time.sleep(seconds - SETTLE_S)  # the length of the fault itself, not a synchronisation
    during = heights(lab)
    print(f"{name}: cut {sides} for {seconds:.0f}s: heights {before} -> {during}")
    print(f"  readiness while cut: {readiness(lab)}")
    for side in sides:
        # new heights only: a node that lagged may still learn blocks decided before the cut
        gained = max(0, max(during[i] for i in side) - max(before))
        has_quorum = 3 * len(side) > 2 * len(lab.nodes)
        print(f"  side {side}: {'quorum' if has_quorum else 'no quorum'}, committed {gained} new heights")
        if not has_quorum and gained > 0:
            failures.append(f"{name}: side {side} committed {gained} heights without a quorum")
        if has_quorum and gained == 0:
            failures.append(f"{name}: side {side} has a quorum but committed nothing in {seconds:.0f}s under load")
    lab.heal()
    t0 = time.monotonic()
    target = max(during) + 1
    wait_until(lambda: min(heights(lab)) >= target, timeout=180, what=f"{name}: every node past height {target - 1}")
    print(f"  healed: every node past height {target - 1} after {time.monotonic() - t0:.1f}s")


def proposer_index(lab: NetnsLab) -> int:
    status = lab.nodes[0].call("consensus_status")
    keys = [n.call("node_info")["public_key"] for n in lab.nodes]
    proposer = status.get("proposer")
    return keys.index(proposer) if proposer in keys else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cut", type=float, default=30.0, help="seconds each cut lasts (at least 5)")
    ap.add_argument("--flaps", type=int, default=40)
    ap.add_argument("--flap-seconds", type=float, default=60.0)
    args = ap.parse_args()
    why_not = netns_unusable()
    if why_not is not None:
        print(f"partition: cannot run here: {why_not}", file=sys.stderr)
        return 2
    args.cut = max(args.cut, 5.0)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="mcpartition-"))
    lab = NetnsLab(root, 4, chain_id=CHAIN)
    failures: list[str] = []
    try:
        lab.start()
        wait_until(lambda: all(len(n.call("node_peers")) >= 3 for n in lab.nodes), timeout=60, what="connections")
        with Load(lab.nodes, rng) as load:
            wait_until(lambda: min(heights(lab)) >= 2, timeout=60, what="first commits")
            cut(lab, "2/2", [[0, 1], [2, 3]], args.cut, failures)
            cut(lab, "3/1", [[0, 1, 2], [3]], args.cut, failures)
            p = proposer_index(lab)
            cut(lab, "isolated proposer", [[p], [i for i in range(4) if i != p]], args.cut, failures)
            t0 = time.monotonic()
            flaps = 0
            while flaps < args.flaps and time.monotonic() - t0 < args.flap_seconds:
                lab.isolate(rng.randrange(4))
                time.sleep(rng.uniform(0.2, 2.0))  # the fault's length
                lab.heal()
                time.sleep(rng.uniform(0.0, 0.5))
                flaps += 1
            print(f"flaps: {flaps} in {time.monotonic() - t0:.0f}s; heights {heights(lab)}")
        acked = list(load.acked)
        wait_until(lambda: committed_on(lab.nodes, acked), timeout=180, what="every acknowledged tx everywhere")
        missing = [h for h in acked if not committed_on(lab.nodes, [h])]
        same = same_chain(lab.nodes)
        print(f"acknowledged txs: {len(acked)}, missing anywhere: {len(missing)}; same chain on every node: "
              f"{'yes' if same else 'NO'}; final heights {heights(lab)}")
        if missing:
            failures.append(f"{len(missing)} acknowledged txs missing")
        if not same:
            failures.append("the nodes hold different chains")
    finally:
        lab.close()
        if failures:
            print(lab.logs(40))
        shutil.rmtree(root, ignore_errors=True)
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
