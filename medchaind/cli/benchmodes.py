"""The long-run modes of ``medchaind bench``: presets, the ``--validators`` sweep and the soak.

Issue 14 asks the bench to answer three questions a single burst cannot: does the
network hold a sustained offered load (the *presets* name those runs, so every report
uses the same command), how does a figure change with the number of authorities (the
*sweep*: one :func:`~medchaind.cli.bench.run_bench` per size, one summary row each), and
does a node stay healthy as the chain grows (the *soak*). The presets themselves are in
:mod:`.benchpresets`.

Theory of operation of the soak
-------------------------------
:func:`run_soak` starts the same real network as the burst bench, then, **through the
normal client path** (:class:`~medchaind.client.Client` helpers, as an EHR would), sets
up the data the sampled queries read: a patient, a provider the patient's consent lets
read, ``records`` encrypted FHIR Observations the patient adds (each shared with the
provider) and ``reads`` audited reads by the provider (each commits a
``records.access``, i.e. one ``audit_log`` entry). It then commits ``n_txs`` anchor txs
of ``tx_size`` bytes in **segments** of ``sample_every``: sign the segment (so the load
generator never holds more than one segment: a million pre-signed txs would be a GiB
of client memory), submit it as the burst bench does (paced when ``rate`` > 0), and
wait until every sender's last tx has committed on node0. Nonces are sequential per
sender, so that proves the whole segment committed. After each segment (and once
before the first, the baseline) it samples every node: RSS and peak RSS, CPU seconds
since the load began, the bytes on disk of ``chaindata/`` (LevelDB) and ``blobs/``, and
the latency of ``identity_get``, ``records_list`` (a page of up to 1,000 of the
patient's records) and ``audit_log``: the median of ``calls`` calls each, over the
node's IPC socket. The queries run **between segments**, on an idle network, so the
latency is the cost of the query against a growing database, not queueing behind the
load. One CSV row per (sample, node) so a script can plot each series against
``committed_txs`` (``scripts/plot_soak.py``). Figures only: nothing asserts a number.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import crypto
from ..client import Client, TxDropped
from ..errors import MedchainError
from ..node.init import init_testnet
from ..types import Tx, sign_tx
from .bench import SENDERS, _proc_stats, _submit_batches, _wait_blobs, register_senders, run_bench, wait_connected
from .devnet import start_nodes, stop_nodes, wait_ready

# ------------------------------------------------------------------------ sweep

SWEEP_FIELDS = ["validators", "txs_submitted", "txs_committed", "stalled", "rejected", "busy_retries",
                "offered_rate_tx_per_s", "submit", "committed_tx_per_s", "latency_p50_s", "latency_p99_s", "blocks",
                "mean_txs_per_block", "cpu_us_per_tx_per_node_mean", "peak_rss_mib_max",
                "ratio_to_verify_bound", "client_cpu_seconds", "load_1m_start", "load_1m_end", "error"]


def summary_row(result: dict[str, Any]) -> dict[str, Any]:
    """One flat row of a :func:`~medchaind.cli.bench.run_bench` result (per-node figures reduced)."""
    nodes = result.get("nodes", [])
    per_tx = [n["cpu_us_per_committed_tx"] for n in nodes if n.get("cpu_us_per_committed_tx") is not None]
    load = result.get("load_average_1m") or [None, None]
    row = {k: result.get(k) for k in SWEEP_FIELDS}
    row.update(
        cpu_us_per_tx_per_node_mean=round(sum(per_tx) / len(per_tx)) if per_tx else None,
        peak_rss_mib_max=max((n.get("peak_rss_mib", 0) for n in nodes), default=0),
        load_1m_start=load[0], load_1m_end=load[1],
    )
    return row


def run_sweep(sizes: Sequence[int], *, base_port: int, datadir: Path | None = None,
              on_row: Callable[[dict[str, Any]], None] | None = None, **bench_kw: Any) -> list[dict[str, Any]]:
    """One :func:`run_bench` per authority count in ``sizes``, one after the other.

    Each network gets its own port range (``base_port`` plus the sizes before it) and,
    with ``datadir``, its own ``datadir/n<size>-<i>``. Returns (and hands ``on_row``) one
    :func:`summary_row` per size; a size whose run fails (e.g. its setup did not commit on
    a starved machine) gets a row with only ``validators`` and ``error``, and the sweep
    goes on.
    """
    rows = []
    offset = 0
    for i, n in enumerate(sizes):
        d = None if datadir is None else datadir / f"n{n}-{i}"
        try:
            row = summary_row(run_bench(validators=n, base_port=base_port + offset, datadir=d, **bench_kw))
        except MedchainError as exc:
            row = {"validators": n, "error": str(exc)}
        offset += n
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# ------------------------------------------------------------------------- soak

SOAK_FIELDS = ["sample", "committed_txs", "height", "node", "rss_mib", "rss_anon_mib", "rss_file_mib", "peak_rss_mib",
               "cpu_s", "chaindata_mib", "blobs_mib", "db_mib", "identity_get_ms", "records_list_ms", "audit_log_ms",
               "records_listed", "audit_entries", "segment_tx_per_s", "busy_retries", "load_1m"]


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # LevelDB removed a table file during compaction
                pass
    return total


def median_ms(call: Callable[[], Any], n: int) -> tuple[float, Any]:
    """The median wall milliseconds of ``n`` calls, and the last answer."""
    times, answer = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        answer = call()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), answer


def _observation(i: int) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "soak glucose"},
            "valueString": f"{5 + i % 40 / 10:.1f} mmol/L"}


def _committed(st: dict[str, Any], what: str) -> dict[str, Any]:
    if st.get("status") != "committed" or not (st.get("receipt") or {}).get("ok"):
        raise MedchainError(f"soak setup: {what} did not commit: {st}")
    return st


def setup_query_data(dirs: list[Path], ipcs: list[Path], records: int, reads: int) -> crypto.KeyPair:
    """A patient with ``records`` records and ``reads`` audited reads, committed on every
    node, each node holding the records' ciphertexts (up to the first 1,000).

    Returns the patient. Everything goes through the client helpers: FHIR
    validation and encryption in this process, consent, ``records.access`` per read.
    """
    patient, reader = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    with Client(ipcs[0], timeout=120) as c:
        _committed(c.register_identity(patient, "patient"), "patient registration")
        _committed(c.register_identity(reader, "provider", label="Soak Clinic"), "provider registration")
        _committed(c.grant(patient, actor=reader.public_key, actions=["read"]), "consent grant")
        last = None
        for i in range(records):  # nonces from the node (committed + contiguous pending)
            last = c.add_record(patient, patient.public_key, _observation(i), share_with=[reader.public_key],
                                wait=False)
        if last is not None:
            _committed(c.wait(last["hash"], timeout_ms=120_000), "the last records.add")
        listed = c.call("records_list", {"patient": "0x" + patient.public_key.hex(),
                                         "limit": max(1, min(records, 1000))})
        for rec in listed[:reads]:
            c.read_record(reader, rec["record_id"])  # commits records.access: one audit entry
        head = c.head()
    height = 0 if head is None else head["height"]
    for p in ipcs[1:]:
        with Client(p, timeout=120) as c:
            c.wait_height(height, timeout_ms=120_000)
    if _wait_blobs(dirs, {r["content_hash"][2:] for r in listed}) is None:
        raise MedchainError("soak setup: the records' ciphertexts did not reach every node within 120 s")
    return patient


def _segment(senders: list[crypto.KeyPair], nonces: list[int], chain: str, n: int, meta_len: int,
             connections: int) -> tuple[list[list[Tx]], list[Tx]]:
    """``n`` signed anchor txs round-robin over ``senders``: the lists per connection (each
    connection owns whole senders, so a sender's nonces arrive in order) and every
    sender's last tx of the segment."""
    by_sender: list[list[Tx]] = [[] for _ in senders]
    for i in range(n):
        s = i % len(senders)
        by_sender[s].append(sign_tx(senders[s].signing, chain, "anchor.commit", nonces[s], {
            "digest": crypto.random_bytes(32), "kind": "soak", "meta": crypto.random_bytes(meta_len)}))
        nonces[s] += 1
    per_conn = []
    for ci in range(connections):
        mine = [by_sender[s] for s in range(ci, len(senders), connections)]
        per_conn.append([lst[i] for i in range(max(map(len, mine), default=0)) for lst in mine if i < len(lst)])
    return per_conn, [lst[-1] for lst in by_sender if lst]


def _wait_committed(ipc: Path, txs: list[Tx], stall_s: float) -> bool:
    """Wait until every tx in ``txs`` committed; False once no block came for ``stall_s``.
    A tx the node dropped (:class:`TxDropped`) ends the soak with its reason."""
    with Client(ipc, timeout=600) as c:
        last_h, last_change = c.node_info()["height"], time.monotonic()
        for tx in txs:
            while True:
                try:
                    if c.wait(tx.hash, timeout_ms=2000)["status"] == "committed":
                        break
                except TxDropped as exc:
                    raise MedchainError(f"soak: the node dropped tx 0x{tx.hash.hex()} ({exc})") from None
                h = c.node_info()["height"]
                if h != last_h:
                    last_h, last_change = h, time.monotonic()
                elif time.monotonic() - last_change > stall_s:
                    return False
    return True


def _committed_soak_txs(ipc: Path, senders: list[crypto.KeyPair]) -> int:
    """The soak's txs the chain holds: each sender's committed nonce, less the
    registration (nonce 0). After a stall, so the summary counts what committed in the
    unfinished segment too, not only the completed segments."""
    with Client(ipc, timeout=120) as c:
        return sum(max(0, int(c.call("tx_nonce", {"sender": "0x" + s.public_key.hex()})["committed"]) - 1)
                   for s in senders)


def run_soak(
    *, validators: int = 4, n_txs: int = 1_000_000, tx_size: int = 1024, sample_every: int = 100_000,
    connections: int = 8, records: int = 1000, reads: int = 20, calls: int = 5, rate: float = 0.0,
    datadir: Path | None = None, base_port: int = 27656, node_log_level: str = "warning",
    stall_s: float = 120.0, on_sample: Callable[[list[dict[str, Any]]], None] | None = None, submit: str = "cbor",
) -> dict[str, Any]:
    """Commit ``n_txs`` in segments of ``sample_every`` and sample every node after each
    (see the module doc). Returns ``{"samples": rows, ...summary}``; ``on_sample`` gets
    each sample's rows (one per node) as soon as they are taken."""
    if sample_every < 1:
        raise MedchainError("--sample-every must be at least 1")
    tmp = None
    if datadir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mcsoak-"))
        datadir = tmp / "net"
    procs = []
    chain = "medchain-bench"
    try:
        nodes = init_testnet(datadir, validators, chain_id=chain, base_port=base_port)
        dirs = [cfg.datadir for cfg, _ in nodes]
        ipcs = [cfg.ipc_path for cfg, _ in nodes]
        procs = start_nodes(dirs, log_level=node_log_level)
        wait_ready(dirs, procs)
        wait_connected(ipcs)
        t_setup = time.perf_counter()
        patient = setup_query_data(dirs, ipcs, records, reads)
        senders = register_senders(ipcs, chain, SENDERS)
        setup_s = time.perf_counter() - t_setup
        p_hex = "0x" + patient.public_key.hex()
        queries: list[tuple[str, str, dict[str, Any]]] = [
            ("identity_get_ms", "identity_get", {"public_key": p_hex}),
            ("records_list_ms", "records_list", {"patient": p_hex, "limit": max(1, min(records, 1000))}),
            ("audit_log_ms", "audit_log", {"patient": p_hex}),
        ]
        cpu0 = [_proc_stats(p.pid).get("cpu_s", 0.0) for p in procs]
        samples: list[dict[str, Any]] = []
        busy = [0]

        def sample(committed: int, seg_rate: float | None) -> None:
            rows = []
            for i, (d, ipc, proc) in enumerate(zip(dirs, ipcs, procs, strict=True)):
                st = _proc_stats(proc.pid)
                chaindata, blobs = dir_bytes(d / "chaindata"), dir_bytes(d / "blobs")
                row: dict[str, Any] = {
                    "sample": len(samples) // validators, "committed_txs": committed, "node": i,
                    "rss_mib": round(st.get("VmRSS", 0.0), 1), "peak_rss_mib": round(st.get("VmHWM", 0.0), 1),
                    # anonymous (heaps, arenas) apart from file-backed (LevelDB's mmapped tables: clean pages
                    # the kernel may drop at will), so a growing rss_mib can be told apart
                    "rss_anon_mib": round(st.get("RssAnon", 0.0), 1), "rss_file_mib": round(st.get("RssFile", 0.0), 1),
                    "cpu_s": round(st.get("cpu_s", 0.0) - cpu0[i], 2),
                    "chaindata_mib": round(chaindata / 2**20, 3), "blobs_mib": round(blobs / 2**20, 3),
                    "db_mib": round((chaindata + blobs) / 2**20, 3),
                    "segment_tx_per_s": None if seg_rate is None else round(seg_rate, 1),
                    "busy_retries": busy[0], "load_1m": round(os.getloadavg()[0], 2),
                }
                with Client(ipc, timeout=120) as c:
                    row["height"] = c.node_info()["height"]
                    answers = {}
                    for col, method, params in queries:
                        ms, answers[col] = median_ms(lambda m=method, p=params: c.call(m, p), calls)  # type: ignore[misc]
                        row[col] = round(ms, 3)
                row["records_listed"] = len(answers["records_list_ms"])
                row["audit_entries"] = len(answers["audit_log_ms"])
                rows.append(row)
            samples.extend(rows)
            if on_sample is not None:
                on_sample(rows)

        sample(0, None)
        committed, stalled = 0, False
        errors: list[str] = []
        nonces = [1] * len(senders)
        meta_len = max(0, tx_size - 250)  # ~250 bytes of tx envelope around meta
        t_load = time.perf_counter()
        while committed < n_txs and not stalled:
            k = min(sample_every, n_txs - committed)
            per_conn, lasts = _segment(senders, nonces, chain, k, meta_len, connections)
            sent_at: dict[bytes, float] = {}
            threads = [threading.Thread(target=_submit_batches,
                                        args=(ipcs[i % validators], per_conn[i], sent_at, errors,
                                              rate / connections, None, busy), kwargs={"submit": submit})
                       for i in range(connections)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            stalled = not _wait_committed(ipcs[0], lasts, stall_s)
            if stalled:
                committed = _committed_soak_txs(ipcs[0], senders)
                break
            committed += k
            sample(committed, k / (time.perf_counter() - t0))
        load_s = time.perf_counter() - t_load
        return {
            "mode": "soak", "validators": validators, "txs_requested": n_txs, "txs_committed": committed,
            "stalled": stalled, "rejected": len(errors), "first_rejections": errors[:3],
            "busy_retries": busy[0], "sample_every": sample_every, "records": records, "audited_reads": reads,
            "setup_seconds": round(setup_s, 1), "load_seconds": round(load_s, 1),
            "committed_tx_per_s": round(committed / load_s, 1) if load_s > 0 else 0.0,
            "offered_rate_tx_per_s": rate or "unlimited", "submit": submit, "samples": samples,
        }
    finally:
        stop_nodes(procs)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def write_rows(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as a CSV with the columns ``fields`` (creating the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def format_row(fields: list[str], row: dict[str, Any], widths: dict[str, int]) -> str:
    """One fixed-width table line (header when ``row`` maps each field to its name)."""
    return "  ".join(str("" if row.get(f) is None else row.get(f)).rjust(widths.get(f, len(f))) for f in fields)


# ----------------------------------------------------------------- CLI driver

#: the columns of the printed tables (the CSV has every field)
SWEEP_TABLE = ["validators", "txs_committed", "committed_tx_per_s", "latency_p50_s", "latency_p99_s", "blocks",
               "cpu_us_per_tx_per_node_mean", "peak_rss_mib_max", "busy_retries", "stalled", "load_1m_start"]
SOAK_TABLE = ["committed_txs", "node", "height", "rss_mib", "rss_anon_mib", "rss_file_mib", "db_mib", "identity_get_ms",
              "records_list_ms", "audit_log_ms", "segment_tx_per_s", "load_1m"]


def bench_mode(sizes: Sequence[int], *, soak: bool, csv_path: Path | None, echo: Callable[[str], None],
               n_txs: int, sample_every: int, records: int, reads: int, **kw: Any) -> None:
    """``medchaind bench`` with several sizes (a sweep) or ``--soak``: print a table row
    as each result arrives, write the CSV, and (soak) end with the summary as JSON."""
    if soak:
        if len(sizes) != 1:
            raise MedchainError("--soak runs one network: give one --validators size")
        if kw.pop("tx_type", "anchor") != "anchor":
            raise MedchainError("--soak commits anchor txs: leave --tx-type at anchor")
        path: Path | None = csv_path or Path("bench-soak.csv")
        fields, table = SOAK_FIELDS, SOAK_TABLE
    else:
        path, fields, table = csv_path, SWEEP_FIELDS, SWEEP_TABLE
    widths = {f: max(len(f), 8) for f in table}
    echo(format_row(table, {f: f for f in table}, widths))
    rows: list[dict[str, Any]] = []

    def emit(new: list[dict[str, Any]]) -> None:
        rows.extend(new)
        for r in new:
            echo(format_row(table, r, widths))
        if path is not None:  # rewritten after each sample: a long run that dies keeps what it measured
            write_rows(path, fields, rows)

    if soak:
        summary = run_soak(validators=sizes[0], n_txs=n_txs, sample_every=sample_every, records=records,
                           reads=reads, on_sample=emit, **kw)
        summary.pop("samples")
        echo(json.dumps({**summary, "csv": str(path)}, indent=2))
    else:
        rows_out = run_sweep(sizes, n_txs=n_txs, on_row=lambda r: emit([r]), **kw)
        if path is not None:
            echo(f"wrote {path}")
        failed = [f"{r['validators']}: {r['error']}" for r in rows_out if r.get("error")]
        if failed:
            raise MedchainError("sweep: " + "; ".join(failed))
