"""Throughput and latency against offered load (issue 14, "How cost grows").

    .venv/bin/python scripts/offered_load.py [--validators 4] [--txs 6000] [--rates 200,400,600,800,1000,0]
        [--csv docs/img/offered-load.csv] [--png docs/img/offered-load.png] [--base-port 29800]
        [--connections 8] [--submit cbor|json] [--append]
    .venv/bin/python scripts/offered_load.py --from-csv docs/img/offered-load.csv   # re-plot only

For each offered rate (tx/s across all client connections; ``0`` = as fast as the nodes
accept, plotted as "unlimited") it runs one :func:`medchaind.cli.bench.run_bench`: a fresh
network of ``--validators`` real ``medchaind run`` processes on 127.0.0.1, ``--txs``
anchor txs of ``--tx-size`` bytes submitted open loop (paced batches) through the IPC
sockets, latency from sending a tx's batch to seeing its block's header. One CSV row
per rate (:func:`medchaind.cli.benchmodes.summary_row` plus the offered rate), and a
PNG: committed tx/s against offered tx/s (with the ``committed = offered`` line), and
p50 / p99 submit-to-final latency against offered tx/s. Each run's network has its own
port range. The machine is shared: every row carries the 1-minute load average at the
start and end of its submits. Figures only: nothing asserts a number.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plotkit import finish, pyplot  # noqa: E402  (scripts/, this script's directory)

from medchaind.cli.bench import run_bench  # noqa: E402
from medchaind.cli.benchmodes import SWEEP_FIELDS, summary_row, write_rows  # noqa: E402

FIELDS = ["offered_tx_per_s", "txs", *[f for f in SWEEP_FIELDS if f != "offered_rate_tx_per_s"]]


def measure(validators: int, txs: int, rates: list[float], base_port: int, **bench_kw: Any) -> list[dict[str, Any]]:
    """One bench per rate (0 = unlimited); a row each, printed as it arrives."""
    rows = []
    for i, rate in enumerate(rates):
        result = run_bench(validators=validators, n_txs=txs, rate=rate, base_port=base_port + i * validators,
                           **bench_kw)
        row = {"offered_tx_per_s": rate, "txs": txs, **summary_row(result)}
        rows.append(row)
        print(", ".join(f"{k}={row.get(k)}" for k in FIELDS), flush=True)
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def plot(rows: list[dict[str, Any]], path: Path, note: str) -> None:
    """Committed tx/s and p50/p99 against offered tx/s; the unlimited run at the right edge."""
    plt = pyplot()
    paced = sorted((r for r in rows if _num(r["offered_tx_per_s"]) > 0), key=lambda r: _num(r["offered_tx_per_s"]))
    unlimited = [r for r in rows if _num(r["offered_tx_per_s"]) == 0]
    top = max([_num(r["offered_tx_per_s"]) for r in paced] + [_num(r["committed_tx_per_s"]) for r in rows] + [1.0])
    x_unl = top * 1.6  # where the unlimited run is drawn (log x: a step to the right)
    xs = [_num(r["offered_tx_per_s"]) for r in paced]
    fig, axes = plt.subplots(1, 2, figsize=(10.8, 4.4))
    ax = axes[0]
    low = min(xs, default=1.0)
    ax.plot([low, top], [low, top], ":", color="grey", lw=0.8, label="committed = offered")
    ax.plot(xs, [_num(r["committed_tx_per_s"]) for r in paced], "o-", color="tab:blue", label="committed tx/s")
    if unlimited:
        ax.plot([x_unl] * len(unlimited), [_num(r["committed_tx_per_s"]) for r in unlimited], "D", color="tab:blue",
                label="as fast as possible")
    ax.set_yscale("log")
    ax.set_ylabel("committed tx/s (log)")
    for r in rows:  # a run that stalled committed only part of its txs: say so on the point
        if str(r.get("stalled")) == "True":
            x = _num(r["offered_tx_per_s"]) or x_unl
            ax.annotate(f"stalled: {r['txs_committed']} of {r['txs_submitted']}", (x, _num(r["committed_tx_per_s"])),
                        textcoords="offset points", xytext=(6, 6), fontsize=7, color="tab:red")
    ax.set_title("throughput")
    ax = axes[1]
    for key, style, label in (("latency_p50_s", "o-", "p50"), ("latency_p99_s", "s-", "p99")):
        color = "tab:green" if key.endswith("p50_s") else "tab:red"
        ax.plot(xs, [_num(r[key]) for r in paced], style, color=color, label=f"{label} submit-to-final")
        if unlimited:
            ax.plot([x_unl] * len(unlimited), [_num(r[key]) for r in unlimited], "D", color=color)
    ax.set_yscale("log")
    ax.set_ylabel("seconds (log)")
    ax.set_title("latency")
    ticks = [*xs, *([x_unl] if unlimited else [])]
    labels = [f"{x:g}" for x in xs] + (["max"] if unlimited else [])
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ticks, labels)
        ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    finish(fig, axes, "offered tx/s (open loop, log)",
           f"medchaind bench: throughput and latency against offered load ({note})", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--validators", type=int, default=4)
    ap.add_argument("--txs", type=int, default=6000, help="txs per rate")
    ap.add_argument("--tx-size", type=int, default=1024)
    ap.add_argument("--rates", default="200,400,600,800,1000,0", help="offered tx/s, comma-separated; 0 = unlimited")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--submit", choices=["cbor", "json"], default="cbor", help="as medchaind bench --submit")
    ap.add_argument("--base-port", type=int, default=29800)
    ap.add_argument("--csv", type=Path, default=ROOT / "docs" / "img" / "offered-load.csv")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "offered-load.png")
    ap.add_argument("--from-csv", type=Path, default=None, help="plot the rows of this CSV instead of running bench")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --csv and add the new ones")
    args = ap.parse_args(argv)
    if args.from_csv is not None:
        rows = read_rows(args.from_csv)
        if not rows:
            ap.error(f"{args.from_csv}: no rows")
    else:
        try:
            rates = [float(x) for x in args.rates.split(",") if x.strip()]
        except ValueError:
            ap.error(f"--rates {args.rates!r}: give comma-separated numbers (tx/s; 0 = unlimited)")
        rows = read_rows(args.csv) if args.append and args.csv.exists() else []
        rows += measure(args.validators, args.txs, rates, args.base_port, tx_size=args.tx_size,
                        connections=args.connections, submit=args.submit)
        write_rows(args.csv, FIELDS, rows)
        print(f"wrote {args.csv}")
    loads = [_num(r.get(k)) for r in rows for k in ("load_1m_start", "load_1m_end")]
    loads = [x for x in loads if x == x]
    load = f"load {min(loads):.1f}-{max(loads):.1f}" if loads else "load n/a"
    n = int(rows[0]["validators"])
    who = "1 authority" if n == 1 else f"{n} authorities"
    note = f"{who}, {rows[0]['txs']} x 1 KiB per rate, {os.cpu_count()} cores, {load}"
    plot(rows, args.png, note)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
