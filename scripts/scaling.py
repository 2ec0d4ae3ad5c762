"""How the cost of a height grows with the number of authorities (issue 14, "How cost grows").

    .venv/bin/python scripts/scaling.py [--sizes 4,7,10,16,32,64,128] [--heights 3]
        [--csv docs/img/scaling-authorities.csv] [--png docs/img/scaling-authorities.png]
        [--verify per-node|shared|both] [--durable-wal] [--json all.json]
        [--profile N --profile-out prof.txt] [--processes 4,7 --txs 2000 --bench-args "--base-port 29700"]

**In-process clusters.** For each n, :class:`medchaind.testing.cluster.Cluster` starts n
full authorities (MemoryKV store, ledger, mempool, BFT engine, sync, tx gossip; real
Ed25519 keys, every vote and proposal signed and verified) over the in-memory network,
in one process, under trio's ``MockClock(autojump_threshold=0)``: virtual time jumps
whenever every task waits, so the run costs exactly the CPU the n nodes spend and the
virtual clock measures what the protocol would take on a network with the cluster's
latency (2-10 ms per message here). Each height is driven by one ``identity.register``
tx submitted to node 0 (so every block carries one tx and goes through admission,
gossip, proposal, execution and commit). Measured:

* ``startup``: building the n nodes and starting them, wall and CPU seconds;
* per height (the mean over ``--heights`` heights after a first, warm-up height):
  wall seconds, CPU seconds of this process (``time.process_time``; the machine may be
  shared, so CPU is the steadier figure), virtual milliseconds from the submit until
  every node committed the height (the protocol's "round time" at that latency), the
  highest round a height needed (0 = decided in its first round), the messages the
  network carried (one per (message, recipient) handed to the hub; gossip split into
  consensus, tx and block topics, plus sync requests and responses), and the Ed25519
  checks (``crypto.verify`` calls);
* ``total``: wall and CPU seconds from constructing the cluster to every node holding
  the last height (the issue's "3 heights in 10 s" figure).

``--verify per-node`` checks every signature in every node, as n machines do;
``shared`` checks each distinct signature once per process
(:func:`medchaind.testing.cluster.shared_signature_checks`); ``both`` (the default) runs
each n in both modes. The WAL does not fsync unless ``--durable-wal``.

Rows go to a CSV, and a PNG shows CPU and wall seconds per height, messages and
signature checks per height, and the virtual time of a height against n (log-log, with
n, n^2 and n^3 guides).

**Real processes** (``--processes``): runs ``medchaind bench --validators N`` for each N
given (``--node-log-level info`` into a temporary ``--datadir``) and records throughput,
latency and CPU from its JSON, and block intervals and rounds from node0's log.

**Profile** (``--profile N``): one extra in-process run of N authorities under cProfile;
writes the top functions by cumulative and by internal time.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import json
import logging
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medchaind import crypto  # noqa: E402
from medchaind.net import memory  # noqa: E402
from medchaind.testing.cluster import Cluster, shared_signature_checks  # noqa: E402
from medchaind.types import Tx, sign_tx  # noqa: E402

DEFAULT_SIZES = (4, 7, 10, 16, 32, 64, 128)
LATENCY_MS = (2, 10)


@dataclass
class Row:
    n: int
    heights: int
    #: "per-node": every in-process node checks every signature itself (what n machines
    #: do); "shared": each distinct signature is checked once per process
    verify: str = "per-node"
    durable_wal: bool = False
    startup_wall_s: float = 0.0
    startup_cpu_s: float = 0.0
    warmup_wall_s: float = 0.0
    warmup_cpu_s: float = 0.0
    wall_s_per_height: float = 0.0
    cpu_s_per_height: float = 0.0
    virtual_ms_per_height: float = 0.0
    max_round: int = 0
    consensus_msgs_per_height: float = 0.0
    tx_msgs_per_height: float = 0.0
    block_msgs_per_height: float = 0.0
    request_msgs_per_height: float = 0.0
    sig_checks_per_height: float = 0.0
    total_wall_s: float = 0.0
    total_cpu_s: float = 0.0
    loadavg_1m: float = 0.0
    per_height: list[dict[str, float]] = field(default_factory=list)


class MessageCounter:
    """Counts what a MemoryNetwork hub carries: gossip deliveries by topic kind, and
    request/response messages (wraps the hub's ``_send``, the one point every message
    passes through)."""

    def __init__(self, hub: memory.MemoryNetwork) -> None:
        self.counts: dict[str, int] = {"consensus": 0, "tx": 0, "block": 0, "request": 0}
        inner = hub._send

        def send(src: str, dst: str, item: object, now: int | None = None) -> None:
            if isinstance(item, memory._Gossip):
                t = item.topic
                kind = "consensus" if "consensus" in t else "block" if "block" in t else "tx"
            else:
                kind = "request"
            self.counts[kind] += 1
            inner(src, dst, item, now)  # type: ignore[arg-type]

        hub._send = send  # type: ignore[method-assign]

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def register_tx(chain: str) -> Tx:
    kp = crypto.KeyPair.generate()
    return sign_tx(kp.signing, chain, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key})


@contextmanager
def counted_signature_checks() -> Iterator[dict[str, int]]:
    """Count :func:`medchaind.crypto.verify` calls (each one a real Ed25519 check)."""
    real = crypto.verify
    stats = {"checked": 0, "shared": 0}

    def verify(*args: Any) -> bool:
        stats["checked"] += 1
        return real(*args)

    crypto.verify = verify  # type: ignore[assignment]
    try:
        yield stats
    finally:
        crypto.verify = real  # type: ignore[assignment]


async def _run_cluster(n: int, heights: int, wal_dir: Path, row: Row, t0_wall: float, t0_cpu: float,
                       sigs: dict[str, int]) -> None:
    c = Cluster(n, wal_dir=wal_dir, seed=n, latency_ms=LATENCY_MS, durable_wal=row.durable_wal)
    counter = MessageCounter(c.hub)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        row.startup_wall_s = time.perf_counter() - t0_wall
        row.startup_cpu_s = time.process_time() - t0_cpu
        chain = c.genesis.chain_id
        for h in range(1, heights + 2):  # height 1 warms up (first proposals, caches)
            w0, c0, v0, m0 = time.perf_counter(), time.process_time(), trio.current_time(), counter.snapshot()
            s0 = sigs["checked"]
            c.nodes[0].submit(register_tx(chain))
            with trio.fail_after(600):
                await c.wait_height(h)
            w1, c1, v1, m1 = time.perf_counter(), time.process_time(), trio.current_time(), counter.snapshot()
            block = c.nodes[0].ledger.store.get_block(h)
            commit = c.nodes[0].ledger.store.get_commit(h)
            rec = {"height": h, "wall_s": w1 - w0, "cpu_s": c1 - c0, "virtual_ms": (v1 - v0) * 1000,
                   "round": commit.round if commit is not None else -1,
                   "txs": len(block.txs) if block is not None else -1, "sig_checks": sigs["checked"] - s0,
                   **{f"{k}_msgs": m1[k] - m0[k] for k in m0}}
            row.per_height.append(rec)
        c.check_agreement()
        nursery.cancel_scope.cancel()


def measure(n: int, heights: int, *, shared_verify: bool = False, durable_wal: bool = False) -> Row:
    row = Row(n, heights, verify="shared" if shared_verify else "per-node", durable_wal=durable_wal)
    row.loadavg_1m = os.getloadavg()[0]
    t0_wall, t0_cpu = time.perf_counter(), time.process_time()
    checks = shared_signature_checks() if shared_verify else counted_signature_checks()
    with tempfile.TemporaryDirectory(prefix=f"scaling-{n}-") as d, checks as sigs:
        trio.run(_run_cluster, n, heights, Path(d), row, t0_wall, t0_cpu, sigs,
                 clock=trio.testing.MockClock(autojump_threshold=0))
    row.total_wall_s = time.perf_counter() - t0_wall
    row.total_cpu_s = time.process_time() - t0_cpu
    warm, steady = row.per_height[0], row.per_height[1:]
    row.warmup_wall_s, row.warmup_cpu_s = warm["wall_s"], warm["cpu_s"]
    k = len(steady)
    row.wall_s_per_height = sum(r["wall_s"] for r in steady) / k
    row.cpu_s_per_height = sum(r["cpu_s"] for r in steady) / k
    row.virtual_ms_per_height = sum(r["virtual_ms"] for r in steady) / k
    row.max_round = max(int(r["round"]) for r in row.per_height)
    for kind in ("consensus", "tx", "block", "request"):
        setattr(row, f"{kind}_msgs_per_height", sum(r[f"{kind}_msgs"] for r in steady) / k)
    row.sig_checks_per_height = sum(r["sig_checks"] for r in steady) / k
    return row


CSV_FIELDS = ["n", "heights", "verify", "durable_wal", "startup_wall_s", "startup_cpu_s", "warmup_wall_s",
              "warmup_cpu_s",
              "wall_s_per_height", "cpu_s_per_height", "virtual_ms_per_height", "max_round",
              "consensus_msgs_per_height", "tx_msgs_per_height", "block_msgs_per_height",
              "request_msgs_per_height", "sig_checks_per_height", "total_wall_s", "total_cpu_s", "loadavg_1m"]


def write_csv(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            d = asdict(r)
            w.writerow({k: (round(d[k], 4) if isinstance(d[k], float) else d[k]) for k in CSV_FIELDS})


def plot(rows: list[Row], path: Path, title_note: str, procs: list[dict[str, object]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faithful = [r for r in rows if r.verify == "per-node"] or rows
    shared = [r for r in rows if r.verify == "shared"]
    ns = [r.n for r in faithful]
    ticks = sorted({r.n for r in rows})
    ncols = 3 if procs else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.4 * ncols, 4.6))
    ax = axes[0]
    ax.plot(ns, [r.cpu_s_per_height for r in faithful], "o-", color="tab:blue",
            label="CPU s / height, whole cluster (each node verifies)")
    ax.plot(ns, [r.wall_s_per_height for r in faithful], "o--", color="tab:blue", alpha=0.5,
            label="wall s / height (shared machine)")
    if shared:
        ax.plot([r.n for r in shared], [r.cpu_s_per_height for r in shared], "s-", color="tab:green",
                label="CPU s / height, signatures checked once per process")
    ax.plot(ns, [r.cpu_s_per_height / r.n for r in faithful], "^-", color="tab:orange",
            label="CPU s / height / node (what one machine spends)")
    base = faithful[0]
    for p, style in ((1, (0, (1, 3))), (2, ":"), (3, "-.")):
        ax.plot(ns, [base.cpu_s_per_height * (x / base.n) ** p for x in ns], linestyle=style, color="grey", lw=0.8,
                label=f"n^{p} from n={base.n}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("authorities (in-process, memory network)")
    ax.set_ylabel("seconds per height")
    ax.set_title("cost of one height (1 tx per block)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5)

    ax = axes[1]
    ax.plot(ns, [r.consensus_msgs_per_height for r in faithful], "o-", label="consensus deliveries")
    ax.plot(ns, [r.block_msgs_per_height for r in faithful], "s--", label="block announcements")
    ax.plot(ns, [r.sig_checks_per_height for r in faithful], "x-", label="Ed25519 checks (whole cluster)")
    ax.plot(ns, [2 * x * (x - 1) for x in ns], ":", color="grey", lw=0.8, label="2n(n-1)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("authorities")
    ax.set_ylabel("per height")
    ax2 = ax.twinx()
    ax2.plot(ns, [r.virtual_ms_per_height for r in faithful], "d-", color="tab:red",
             label="submit -> all committed (virtual ms)")
    ax2.set_ylabel("virtual ms per height (2-10 ms links)", color="tab:red")
    ax2.set_ylim(0, max(r.virtual_ms_per_height for r in faithful) * 1.6)
    ax.set_title("messages, signature checks and height time")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6.5, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)

    if procs:
        ax = axes[2]
        ok = [p for p in procs if "tx_per_s" in p]
        labels = [str(p["validators"]) for p in ok]
        ax.bar(labels, [float(p["tx_per_s"]) for p in ok], color="tab:blue", width=0.5,  # type: ignore[arg-type]
               label="committed tx/s")
        ax.set_xlabel("authorities (real processes, libp2p, 1 KiB txs)")
        ax.set_ylabel("committed tx/s")
        ax2 = ax.twinx()
        ax2.plot(labels, [float(p.get("block_interval_p50_s") or 0) for p in ok],  # type: ignore[arg-type]
                 "d-", color="tab:red", label="block interval p50 (s)")
        ax2.set_ylabel("block interval p50, s", color="tab:red")
        ax2.set_ylim(0, max([float(p.get("block_interval_p50_s") or 0) for p in ok] + [0.1]) * 1.6)  # type: ignore[arg-type]
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
        ax.set_title("medchaind bench (real processes)")
    fig.suptitle(f"medchaind: cost per height against the number of authorities ({title_note})", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def profile(n: int, heights: int, out: Path | None, shared_verify: bool = False) -> str:
    prof = cProfile.Profile(time.process_time)  # CPU time: the machine is shared, and fsync waits are not CPU
    prof.enable()
    row = measure(n, heights, shared_verify=shared_verify)
    prof.disable()
    if out is not None:
        prof.dump_stats(str(out.with_suffix(".pstats")))
    buf = io.StringIO()
    print(f"n={n}: {row.cpu_s_per_height:.2f} CPU s / height, total wall {row.total_wall_s:.1f} s", file=buf)
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("tottime").print_stats(40)
    st.sort_stats("cumulative").print_stats(60)
    text = buf.getvalue()
    if out is not None:
        out.write_text(text)
    return text


# ----------------------------------------------------------------- real processes

_COMMIT_LINE = re.compile(r'ts=(\S+)Z .*msg="committed block height=(\d+) round=(\d+) txs=(\d+)')


def _commit_times(log: Path) -> list[tuple[float, int, int, int]]:
    """(unix time, height, round, txs) of each block a node committed, from its node.log."""
    import calendar

    out = []
    for line in log.read_text(errors="replace").splitlines():
        m = _COMMIT_LINE.search(line)
        if m:
            ts, frac = m.group(1).split(".")
            t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1000
            out.append((t, int(m.group(2)), int(m.group(3)), int(m.group(4))))
    return out


def bench_processes(n: int, txs: int, extra: list[str]) -> dict[str, object]:
    """One ``medchaind bench --validators n`` run (n processes over libp2p on 127.0.0.1).

    Throughput, latency and CPU come from the bench's JSON; block intervals and rounds
    from node0's log (``--node-log-level info`` logs every commit with its round).
    """
    exe = ROOT / ".venv" / "bin" / "medchaind"
    with tempfile.TemporaryDirectory(prefix=f"scaling-bench-{n}-") as d:
        datadir = Path(d) / "net"
        cmd = [str(exe), "bench", "--validators", str(n), "--txs", str(txs), "--node-log-level", "info",
               "--datadir", str(datadir), *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        rec: dict[str, object] = {"validators": n, "txs": txs,
                                  "command": "medchaind bench " + " ".join(cmd[2:]).replace(str(datadir), "DIR"),
                                  "rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 1)}
        try:
            out = proc.stdout
            result = json.loads(out[out.index("{"):])
        except ValueError:
            rec["error"] = (proc.stdout + proc.stderr)[-2000:]
            return rec
        for key in ("stalled", "rejected", "first_rejections", "commit_seconds", "mean_txs_per_block"):
            rec[key] = result.get(key)
        rec["tx_per_s"] = result.get("committed_tx_per_s", 0.0)
        rec["committed"] = result.get("txs_committed")
        rec["p50_s"], rec["p99_s"] = result.get("latency_p50_s"), result.get("latency_p99_s")
        rec["blocks"] = result.get("blocks")
        rec["cpu_s_per_node"] = [nd.get("cpu_seconds") for nd in result.get("nodes", [])]
        rec["cpu_us_per_tx_per_node"] = [nd.get("cpu_us_per_committed_tx") for nd in result.get("nodes", [])]
        rec["load_average_1m"] = result.get("load_average_1m")
        logs = sorted(datadir.glob("*/node.log"))
        commits = _commit_times(logs[0]) if logs else []
        busy = [c for c in commits if c[3] > 0]
        if len(busy) >= 2:
            gaps = sorted(b[0] - a[0] for a, b in zip(busy, busy[1:], strict=False))
            rec["block_interval_p50_s"] = round(gaps[len(gaps) // 2], 3)
            rec["block_interval_max_s"] = round(gaps[-1], 3)
        rec["rounds_over_0"] = sum(1 for c in busy if c[2] > 0)
        rec["blocks_logged"] = len(busy)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--heights", type=int, default=3, help="measured heights per n (after one warm-up height)")
    ap.add_argument("--csv", type=Path, default=ROOT / "docs" / "img" / "scaling-authorities.csv")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "scaling-authorities.png")
    ap.add_argument("--json", type=Path, default=None, help="also dump every per-height record here")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--verify", choices=["per-node", "shared", "both"], default="both",
                    help="per-node: every in-process node checks every signature (faithful to n machines); "
                    "shared: each distinct signature once per process (testing.cluster.shared_signature_checks)")
    ap.add_argument("--durable-wal", action="store_true", help="fsync the WAL as a real node does (slow in-process)")
    ap.add_argument("--profile", type=int, default=0, help="profile one in-process run of this many authorities")
    ap.add_argument("--profile-out", type=Path, default=None)
    ap.add_argument("--processes", default="", help="e.g. 4,7: also run medchaind bench --validators N")
    ap.add_argument("--txs", type=int, default=2000, help="txs per real-process bench run")
    ap.add_argument("--bench-args", default="", help="extra arguments for medchaind bench")
    ap.add_argument("--processes-from", type=Path, default=None,
                    help="plot the real-process results of an earlier --json file instead of running bench")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    if args.profile:
        print(profile(args.profile, args.heights, args.profile_out, shared_verify=args.verify == "shared"))
        return 0

    rows: list[Row] = []
    modes = ["per-node", "shared"] if args.verify == "both" else [args.verify]
    for mode, n in [(m, int(x)) for m in modes for x in args.sizes.split(",") if x]:
        row = measure(n, args.heights, shared_verify=mode == "shared", durable_wal=args.durable_wal)
        rows.append(row)
        print(f"{mode:8s} n={n:4d}  startup {row.startup_wall_s:6.2f} s wall  "
              f"per height: {row.wall_s_per_height:7.3f} s wall {row.cpu_s_per_height:7.3f} s CPU  "
              f"{row.virtual_ms_per_height:6.0f} ms virtual  round<={row.max_round}  "
              f"msgs {row.consensus_msgs_per_height:8.0f} consensus {row.tx_msgs_per_height:6.0f} tx "
              f"{row.block_msgs_per_height:6.0f} block {row.request_msgs_per_height:6.0f} req  "
              f"{row.sig_checks_per_height:7.0f} sig checks  "
              f"total {row.total_wall_s:6.1f} s wall / {row.total_cpu_s:6.1f} s CPU  load {row.loadavg_1m:.1f}",
              flush=True)
    procs: list[dict[str, object]] = []
    if args.processes_from is not None:
        procs = json.loads(args.processes_from.read_text())["processes"]
    for n in [int(x) for x in args.processes.split(",") if x]:
        rec = bench_processes(n, args.txs, args.bench_args.split())
        procs.append(rec)
        print(f"processes n={n}: {json.dumps(rec)}", flush=True)
    if rows:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    if args.json is not None:
        args.json.write_text(json.dumps({"in_process": [asdict(r) for r in rows], "processes": procs}, indent=1))
    if rows and not args.no_plot:
        note = (f"one process, MockClock, {LATENCY_MS[0]}-{LATENCY_MS[1]} ms links; "
                f"load {rows[0].loadavg_1m:.0f} on 2 cores")
        plot(rows, args.png, note, procs or None)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
