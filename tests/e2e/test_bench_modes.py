"""``medchaind bench`` long-run modes at tiny sizes: soak, ``--validators`` sweep, the plots.

Real processes and sockets on 127.0.0.1, as ``test_bench.py``; figures are never
asserted, only that each mode produces what a plotting script needs (the right rows and
columns, values that make sense: every segment committed, the setup's records and audit
entries visible on every node, the database growing).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from medchaind.cli.bench import register_senders
from medchaind.cli.benchmodes import SOAK_FIELDS, SWEEP_FIELDS, _committed_soak_txs, _segment
from medchaind.client import Client
from medchaind.testing.nodeproc import NodeProcess, _cmd, free_port_range

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_soak_samples_every_node_after_each_segment_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "soak.csv"
    res = subprocess.run(
        _cmd("medchaind") + ["bench", "--soak", "--validators", "2", "--txs", "600", "--sample-every", "200",
                             "--soak-records", "12", "--soak-reads", "3", "--connections", "2", "--csv", str(out),
                             "--base-port", str(free_port_range(2))],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert (summary["txs_committed"], summary["stalled"], summary["rejected"]) == (600, False, 0)
    fields, rows = read_csv(out)
    assert fields == SOAK_FIELDS
    # a baseline before the load, then one sample per 200 committed txs; one row per node each
    assert [(int(r["committed_txs"]), int(r["node"])) for r in rows] == [
        (c, n) for c in (0, 200, 400, 600) for n in (0, 1)]
    for r in rows:
        assert float(r["rss_mib"]) > 0 and float(r["peak_rss_mib"]) >= float(r["rss_mib"])
        # RSS = anonymous + file-backed (+ shared memory, none here), each read from /proc/PID/status in
        # one pass; 0.1 MiB of rounding per column, plus shmem pages
        anon, file = float(r["rss_anon_mib"]), float(r["rss_file_mib"])
        assert anon > 0 and file > 0 and abs(anon + file - float(r["rss_mib"])) <= 1.0
        assert float(r["chaindata_mib"]) > 0 and float(r["blobs_mib"]) > 0  # the records' ciphertexts
        assert all(float(r[k]) > 0 for k in ("identity_get_ms", "records_list_ms", "audit_log_ms"))
        assert (int(r["records_listed"]), int(r["audit_entries"])) == (12, 3)  # set up through the client
    for n in (0, 1):
        mine = [r for r in rows if r["node"] == str(n)]
        heights = [int(r["height"]) for r in mine]
        assert heights == sorted(heights) and heights[-1] > heights[0]
        assert float(mine[-1]["chaindata_mib"]) > float(mine[0]["chaindata_mib"])  # 600 x 1 KiB landed on disk
        assert mine[0]["segment_tx_per_s"] == "" and all(float(r["segment_tx_per_s"]) > 0 for r in mine[1:])
    # the table printed beside the CSV: a header and one line per row
    table = res.stdout[: res.stdout.index("{")].strip().splitlines()
    assert table[0].split()[:2] == ["committed_txs", "node"] and len(table) == 1 + len(rows)

    png = tmp_path / "soak.png"
    plot = run_script("scripts/plot_soak.py", "--csv", str(out), "--png", str(png))
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_validators_sweep_prints_and_writes_one_row_per_size(tmp_path: Path) -> None:
    out = tmp_path / "sweep.csv"
    res = subprocess.run(
        _cmd("medchaind") + ["bench", "--validators", "1,2", "--txs", "200", "--connections", "2",
                             "--csv", str(out), "--base-port", str(free_port_range(3))],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    fields, rows = read_csv(out)
    assert fields == SWEEP_FIELDS
    assert [int(r["validators"]) for r in rows] == [1, 2]
    for r in rows:
        assert (r["txs_committed"], r["txs_submitted"], r["stalled"], r["rejected"]) == ("200", "200", "False", "0")
        assert float(r["committed_tx_per_s"]) > 0 and float(r["latency_p99_s"]) >= float(r["latency_p50_s"]) > 0
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[0] == "validators"
    assert [ln.split()[:2] for ln in lines[1:3]] == [["1", "200"], ["2", "200"]]


def test_offered_load_script_runs_each_rate_and_plots(tmp_path: Path) -> None:
    out, png = tmp_path / "ol.csv", tmp_path / "ol.png"
    res = run_script("scripts/offered_load.py", "--validators", "1", "--txs", "200", "--rates", "400,0",
                     "--connections", "2", "--base-port", str(free_port_range(2)), "--csv", str(out), "--png", str(png))
    assert res.returncode == 0, res.stderr
    _, rows = read_csv(out)
    assert [float(r["offered_tx_per_s"]) for r in rows] == [400.0, 0.0]
    assert all(r["txs_committed"] == "200" and float(r["committed_tx_per_s"]) > 0 for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # re-plotting from the CSV alone
    png2 = tmp_path / "again.png"
    again = run_script("scripts/offered_load.py", "--from-csv", str(out), "--png", str(png2))
    assert again.returncode == 0, again.stderr
    assert png2.stat().st_size > 10_000


def test_a_stalled_soak_counts_what_the_chain_holds(node: NodeProcess) -> None:
    """After a stall the soak's summary counts its txs from the senders' committed nonces
    (the unfinished segment included), not only the segments it finished: a soak that
    stopped at 95,126 committed txs once printed 0."""
    with Client(node.ipc) as c:
        chain = c.node_info()["chain_id"]
    senders = register_senders([node.ipc], chain, 3)
    assert _committed_soak_txs(node.ipc, senders) == 0  # registrations are not soak txs
    nonces = [1, 1, 1]
    per_conn, lasts = _segment(senders, nonces, chain, 7, 16, 1)
    with Client(node.ipc) as c:
        for tx in per_conn[0]:
            c.submit(tx)
        for tx in lasts:
            assert c.wait(tx.hash, timeout_ms=30000)["status"] == "committed"
    assert _committed_soak_txs(node.ipc, senders) == 7
