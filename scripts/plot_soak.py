"""Plot a soak CSV: RSS, database size and query latency against committed txs (issue 14).

    .venv/bin/medchaind bench --soak --validators 1 --txs 200000 --sample-every 20000 --csv docs/img/soak.csv
    .venv/bin/python scripts/plot_soak.py [--csv docs/img/soak.csv] [--png docs/img/soak.png]

The CSV is what ``medchaind bench --soak`` writes (:mod:`medchaind.cli.benchmodes`): one
row per (sample, node), sampled after every ``--sample-every`` committed txs on an idle
network. Three panels: RSS per node (MiB), bytes on disk per node (``chaindata/`` +
``blobs/``, MiB), and the median latency of ``identity_get``, ``records_list`` (a page of
the soak patient's records) and ``audit_log`` over node0's IPC socket (ms; every node's
figure is in the CSV).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from plotkit import finish, pyplot  # scripts/, this script's directory

ROOT = Path(__file__).resolve().parent.parent

QUERIES = (("identity_get_ms", "identity_get"), ("records_list_ms", "records_list"), ("audit_log_ms", "audit_log"))


def plot(rows: list[dict[str, str]], path: Path, note: str) -> None:
    plt = pyplot()
    nodes = sorted({int(r["node"]) for r in rows})

    def series(node: int, key: str) -> tuple[list[int], list[float]]:
        mine = sorted((r for r in rows if int(r["node"]) == node), key=lambda r: int(r["committed_txs"]))
        return [int(r["committed_txs"]) for r in mine], [float(r[key]) for r in mine]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for node in nodes:
        axes[0].plot(*series(node, "rss_mib"), "o-", ms=3, label=f"node{node} RSS")
        if rows[0].get("rss_anon_mib"):  # CSVs since issue 14 session 3 split it
            axes[0].plot(*series(node, "rss_anon_mib"), "^--", ms=3, label=f"node{node} anonymous")
            axes[0].plot(*series(node, "rss_file_mib"), "s:", ms=3, label=f"node{node} file-backed (LevelDB mmap)")
        axes[1].plot(*series(node, "db_mib"), "o-", ms=3, label=f"node{node} chaindata + blobs")
    axes[0].set_ylabel("MiB")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title("resident memory per node")
    axes[1].set_ylabel("MiB on disk")
    axes[1].set_title("database size per node")
    for (key, name), style in zip(QUERIES, ("o-", "s-", "^-"), strict=True):
        axes[2].plot(*series(nodes[0], key), style, ms=3, label=f"{name} (node{nodes[0]})")
    axes[2].set_ylabel("ms, median of the calls (log)")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.xaxis.set_major_formatter(lambda x, _pos: f"{x / 1000:g}k" if x else "0")
    axes[2].set_title("query latency (idle network, IPC)")
    finish(fig, axes, "committed txs", f"medchaind bench --soak ({note})", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "docs" / "img" / "soak.csv")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "soak.png")
    args = ap.parse_args(argv)
    with args.csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        ap.error(f"{args.csv}: no rows")
    loads = [float(r["load_1m"]) for r in rows if r.get("load_1m")]
    top = max(int(r["committed_txs"]) for r in rows)
    n = len({r["node"] for r in rows})
    note = (f"{n} {'authority' if n == 1 else 'authorities'}, {top:,} committed txs; "
            f"load {min(loads):.1f}-{max(loads):.1f}" if loads else f"{top:,} committed txs")
    plot(rows, args.png, note)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
