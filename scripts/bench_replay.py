"""Replay throughput: ``medchaind import`` of an export, and block sync of a node that was down.

    .venv/bin/python scripts/bench_replay.py --txs 20000 --per-block 500
    .venv/bin/python scripts/bench_replay.py --export chain.export --genesis genesis.json --modes import

Issue 14's replay row. Builds a chain offline (:mod:`medchaind.testing.chainbuild`:
``--txs`` signed ``identity.register`` txs, ``--per-block`` to a block, a commit of every
authority per block) into the authorities' LevelDB datadirs of a ``medchaind testnet``
layout with one observer, exports it with ``medchaind export``, then measures:

* **import** (``--modes import``): ``medchaind import`` of the export into a fresh
  datadir, as a separate process (``import_process``: wall and CPU of the whole command,
  interpreter start included) and in this process (``import``: the replay alone, CPU of
  all its threads);
* **sync** (``--modes sync``): the authorities run (``medchaind run``) and the empty
  observer is started; from the moment its IPC socket answers until its height is the
  head: wall seconds and the observer's CPU (``/proc/<pid>/stat``) over that interval.
  Connection set-up is included; each block is verified and re-executed as live
  block sync does. ``main_blocked`` / ``main_critical`` as for sync-inproc (below), of
  the observer's main thread.
* **sync in process** (``--modes sync-inproc``): the same block sync code (``SyncService``
  feeding a running ``BftEngine``, LevelDB, writes in a worker thread) in this process,
  over a MemoryNetwork from a server that opens the first authority's datadir; runs
  ``--repeat`` times, alternating block sync's pipeline off and on (the serial path, and
  block N+1 checked while N is written), each into a fresh datadir: wall, CPU of all
  threads and of the main thread per mode, so that the pipeline alone is compared under
  the same machine load. ``main_blocked``: the main thread's wall time neither on a CPU
  nor waiting for one (schedstat), i.e. waiting for something (the write, the server);
  ``main_critical``: on a CPU or blocked, the wall time it would take if it never had to
  wait for a core (a proxy for an idle machine that a loaded one inflates less).

``--export`` / ``--genesis`` replay an existing export instead (e.g. of a ``medchaind
bench --datadir D`` network: ``medchaind export --datadir D/node0 --out F``); only the
import mode applies then. Prints one JSON object; no timed asserts. The machine is
shared: compare runs back to back, and read CPU beside wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medchaind import crypto  # noqa: E402
from medchaind.node.chainfile import export_chain, import_chain, read_header, read_records  # noqa: E402
from medchaind.node.init import init_testnet  # noqa: E402
from medchaind.testing.chainbuild import build_chain, write_datadirs  # noqa: E402
from medchaind.testing.nodeproc import NodeProcess, _cmd, call  # noqa: E402
from medchaind.testing.wait import wait_until  # noqa: E402
from medchaind.types import Genesis, decode_block, sign_tx  # noqa: E402

CHAIN = "medchain-replay"


def _cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _schedstat(pid: str | int = "self", tid: int | None = None) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of thread ``tid`` of
    ``pid`` (default: the calling thread; ``/proc/<pid>/task/<tid>/schedstat``; (0, 0)
    where the kernel does not keep it)."""
    tid = threading.get_native_id() if tid is None else tid
    try:
        fields = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
    except OSError:
        return 0.0, 0.0
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def _cpu_of(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a running process (all its threads), or of its thread ``tid``."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: (CPU seconds, thread id) of each ChainStore.commit_block during the in-process import
_writes: list[tuple[float, int]] = []


def _time_store_writes() -> None:
    """Record the CPU of every ``ChainStore.commit_block`` (its own thread's CPU, in
    whichever thread it runs) into :data:`_writes`."""
    from medchaind.store import ChainStore

    _writes.clear()
    real = ChainStore.commit_block
    if getattr(real, "timed", False):
        return

    def timed(self: ChainStore, *args: Any, **kw: Any) -> None:
        t = time.thread_time()
        try:
            real(self, *args, **kw)
        finally:
            _writes.append((time.thread_time() - t, threading.get_ident()))

    timed.timed = True  # type: ignore[attr-defined]
    ChainStore.commit_block = timed  # type: ignore[method-assign]


def _free_ports(n: int) -> int:
    """A base port with ``n`` free ports, away from the test suites' bands (20000-31999)."""
    for _ in range(100):
        base = random.randrange(33000, 60000 - n, 10)
        try:
            for i in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + i))
        except OSError:
            continue
        return base
    raise SystemExit("no free port range on 127.0.0.1")


def count_txs(export: Path, genesis: Genesis) -> tuple[int, int]:
    """(blocks, txs) in an export file."""
    blocks = txs = 0
    with open(export, "rb") as f:
        records = read_records(f)
        read_header(records, genesis, str(export))
        for rec in records:
            blocks += 1
            txs += len(decode_block(rec["b"]).txs)
    return blocks, txs


def fresh_datadir(path: Path, genesis_file: Path) -> Path:
    subprocess.run(_cmd("medchaind") + ["init", "--datadir", str(path), "--genesis", str(genesis_file)],
                   check=True, capture_output=True)
    return path


def verify_us() -> float:
    """CPU microseconds of one Ed25519 verification on this machine now (the yardstick:
    ~57 us on a quiet one, DESIGN.md §9; a loaded machine inflates every CPU figure)."""
    key = crypto.SigningKey.generate()
    sig = key.sign(crypto.DOMAIN_TX, CHAIN, b"x" * 200)
    t = time.thread_time()
    for _ in range(2000):
        crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, CHAIN, b"x" * 200)
    return (time.thread_time() - t) / 2000 * 1e6


def bench_import(root: Path, export: Path, genesis_file: Path, txs: int, *, pipeline: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"ed25519_verify_us": round(verify_us(), 1)}
    # the command an operator runs, as a process of its own
    d = fresh_datadir(root / "import-cli", genesis_file)
    cpu0, t0 = _cpu_children(), time.perf_counter()
    res = subprocess.run(_cmd("medchaind") + ["import", "--datadir", str(d), str(export)],
                         capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if res.returncode != 0:
        raise SystemExit(f"medchaind import failed: {res.stderr}")
    head = json.loads(res.stdout)
    out["import_process"] = {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                             "tx_per_s": round(txs / wall), "height": head["height"]}
    # the replay alone, in this process
    d = fresh_datadir(root / "import-inproc", genesis_file)
    _time_store_writes()
    cpu0, main0, t0 = _cpu_self(), time.thread_time(), time.perf_counter()
    got = import_chain(d, export, pipeline=pipeline)
    wall, cpu, main = time.perf_counter() - t0, _cpu_self() - cpu0, time.thread_time() - main0
    assert got["head_hash"] == head["head_hash"], (got, head)
    # serial: the work that runs one piece after another whatever the cores: decode and
    # execution on the main thread, and the store's writes, in the main thread or in a
    # worker thread the main thread waits for (only decoding overlaps with those); the
    # rest of cpu is signature checks in worker threads and LevelDB's compactions. With
    # import_records' pipeline the write runs beside the next block's execution, but its
    # Python part holds the GIL, so it is still counted here
    writes = sum(c for c, _ in _writes)
    me = threading.get_ident()
    serial = main + sum(c for c, tid in _writes if tid != me)
    out["import"] = {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                     "main_thread_cpu_seconds": round(main, 3), "store_write_cpu_seconds": round(writes, 3),
                     "serial_cpu_seconds": round(serial, 3), "tx_per_s": round(txs / wall),
                     "cpu_us_per_tx": round(cpu * 1e6 / max(txs, 1)),
                     "serial_us_per_tx": round(serial * 1e6 / max(txs, 1)),
                     # at most, on an idle machine: the serial work, or all of it over every core
                     "idle_bound_tx_per_s": round(txs / max(serial, cpu / (os.cpu_count() or 1)))}
    return out


def bench_sync(root: Path, datadirs: list[Path], head: int, txs: int) -> dict[str, Any]:
    env = {"MEDCHAIND_LOG_LEVEL": "warning",
           # the chain was signed offline: the authorities' fresh WALs do not know those votes
           "MEDCHAIND_CONSENSUS_DOUBLE_SIGN_CHECK_HEIGHT": "0"}
    nodes = [NodeProcess(d, root / f"node{i}.log", command="run", env=env) for i, d in enumerate(datadirs)]
    authorities, observer = nodes[:-1], nodes[-1]
    try:
        for n in authorities:
            n.spawn()
        for n in authorities:
            n.wait_ready(timeout=120)
        observer.spawn().wait_ready(timeout=120)
        assert observer.proc is not None
        pid = observer.proc.pid
        cpu0, main0, t0 = _cpu_of(pid), _cpu_of(pid, pid), time.perf_counter()
        on0, queued0 = _schedstat(pid, pid)
        wait_until(lambda: int(call(observer, "node_info")["height"]) >= head, timeout=1800,
                   what="the observer to sync to the head", interval=0.05)
        wall, cpu, main = time.perf_counter() - t0, _cpu_of(pid) - cpu0, _cpu_of(pid, pid) - main0
        on, queued = _schedstat(pid, pid)
        blocked = wall - (on - on0) - (queued - queued0)
        info = call(observer, "node_info")
        top = call(authorities[0], "node_info")
        assert info["height"] >= head and top["height"] >= head
        return {"sync": {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                         "main_thread_cpu_seconds": round(main, 3), "tx_per_s": round(txs / wall),
                         "cpu_us_per_tx": round(cpu * 1e6 / max(txs, 1)),
                         "main_thread_us_per_tx": round(main * 1e6 / max(txs, 1)),
                         # see sync-inproc: blocked = neither on a CPU nor waiting for one
                         "main_blocked_s": round(blocked, 3), "main_critical_s": round(main + blocked, 3)}}
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.stop(signal.SIGTERM)


def bench_sync_inproc(root: Path, datadirs: list[Path], genesis_file: Path, head: int, txs: int,
                      repeat: int) -> dict[str, Any]:
    """Block sync of the whole chain in this process, pipeline off and on, alternating."""
    import trio

    from medchaind.chain import SigCache
    from medchaind.consensus.bft import BftEngine
    from medchaind.ledger import Ledger
    from medchaind.mempool import Mempool
    from medchaind.modules import make_app
    from medchaind.net.memory import MemoryNetwork
    from medchaind.store import open_store
    from medchaind.sync import SyncService

    genesis = Genesis.from_json(genesis_file.read_text())

    def node(kv_store: Any, net: Any, *, pipeline: bool = True) -> tuple[Ledger, BftEngine, SyncService]:
        ledger = Ledger(kv_store, make_app(genesis), genesis, commit_in_thread=True)
        mempool = Mempool(ledger.app, lambda: ledger.state, SigCache(), ledger.is_committed)
        engine = BftEngine(ledger, mempool, None, net, None)
        return ledger, engine, SyncService(ledger, engine, net, pipeline=pipeline)

    async def one(pipeline: bool, run: int) -> dict[str, Any]:
        hub = MemoryNetwork(run, latency_ms=(0, 0))
        server_kv, server_store = open_store(datadirs[0])
        d = fresh_datadir(root / f"sync-inproc-{run}", genesis_file)
        kv, store = open_store(d)
        try:
            endpoints = [hub.endpoint("server"), hub.endpoint("observer")]
            node(server_store, endpoints[0])  # serves the chain (its engine does not run)
            ledger, engine, sync = node(store, endpoints[1], pipeline=pipeline)
            async with trio.open_nursery() as n:
                for ep in endpoints:
                    await n.start(ep.run)
                await n.start(engine.run)
                await endpoints[1].wait_peers(1)
                (on0, queued0), cpu0, t0 = _schedstat(), _cpu_self(), time.perf_counter()
                while ledger.height < head:
                    await sync.catch_up()
                wall, cpu = time.perf_counter() - t0, _cpu_self() - cpu0
                on, queued = (a - b for a, b in zip(_schedstat(), (on0, queued0), strict=True))
                n.cancel_scope.cancel()
            blocked = wall - on - queued
            return {"pipeline": pipeline, "seconds": round(wall, 3), "tx_per_s": round(txs / wall),
                    "cpu_us_per_tx": round(cpu * 1e6 / txs), "main_thread_us_per_tx": round(on * 1e6 / txs),
                    "main_blocked_s": round(blocked, 3), "main_critical_s": round(on + blocked, 3),
                    "checked_ahead": engine.synced_checked_ahead}
        finally:
            kv.close()
            server_kv.close()
            shutil.rmtree(d, ignore_errors=True)

    runs = [trio.run(one, i % 2 == 1, i) for i in range(2 * repeat)]
    return {"sync_inproc": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--txs", type=int, default=20_000, help="identity.register txs in the chain")
    ap.add_argument("--per-block", type=int, default=500, help="txs per block")
    ap.add_argument("--validators", type=int, default=1, help="authorities (each signs every commit)")
    ap.add_argument("--modes", default="import,sync", help="comma-separated: import, sync, sync-inproc")
    ap.add_argument("--repeat", type=int, default=2, help="sync-inproc: pairs of runs (pipeline off, on)")
    ap.add_argument("--export", type=Path, help="replay this export instead of building a chain")
    ap.add_argument("--genesis", type=Path, help="the genesis.json of --export's chain")
    ap.add_argument("--keep", type=Path, help="build in this (new) directory and keep it")
    ap.add_argument("--net", type=Path, help="reuse the network of an earlier --keep run (DIR/net): "
                    "same chain, no build; the observer starts empty again")
    ap.add_argument("--no-pipeline", action="store_true",
                    help="in-process import: check block N+1 only after N's write (import_records' pipeline off)")
    ap.add_argument("--base-port", type=int, default=0,
                    help="first P2P port of the sync network (default: a free range from a random start)")
    a = ap.parse_args()
    modes = {m.strip() for m in a.modes.split(",") if m.strip()}
    root = a.keep or Path(tempfile.mkdtemp(prefix="mcreplay-"))
    root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    try:
        if a.export is not None:
            if a.genesis is None:
                raise SystemExit("--export needs --genesis")
            genesis_file, export = a.genesis.resolve(), a.export.resolve()
            genesis = Genesis.from_json(genesis_file.read_text())
            datadirs: list[Path] = []
            modes -= {"sync", "sync-inproc"}
        elif a.net is not None:
            shutil.copytree(a.net, root / "net", ignore=shutil.ignore_patterns("*.ipc", "*.log"))
            datadirs = sorted((p for p in (root / "net").iterdir() if p.name.startswith("node")),
                              key=lambda p: int(p.name[4:]))
            for leftover in ("chaindata", "consensus.wal", "blobs"):  # the observer starts empty
                shutil.rmtree(datadirs[-1] / leftover, ignore_errors=True)
            genesis_file = datadirs[0] / "genesis.json"
            genesis = Genesis.from_json(genesis_file.read_text())
            export = root / "chain.export"
            export_chain(datadirs[0], export)
        else:
            base = a.base_port or _free_ports(a.validators + 1)
            cfgs = init_testnet(root / "net", a.validators, observers=1, chain_id=CHAIN, base_port=base)
            datadirs = [c.datadir for c, _ in cfgs]
            genesis_file = datadirs[0] / "genesis.json"
            genesis = Genesis.from_json(genesis_file.read_text())
            t = time.perf_counter()
            blocks: dict[int, list[Any]] = {}
            for i in range(a.txs):
                kp = crypto.KeyPair.generate()
                blocks.setdefault(1 + i // a.per_block, []).append(
                    sign_tx(kp.signing, CHAIN, "identity.register", 0,
                            {"role": "patient", "enc_key": kp.encryption.public_key}))
            kv = build_chain(genesis, [k.signing for _, k in cfgs[: a.validators]], len(blocks), txs=blocks)
            write_datadirs(kv, datadirs[: a.validators])
            result["build_seconds"] = round(time.perf_counter() - t, 1)
            export = root / "chain.export"
            export_chain(datadirs[0], export)
        result["blocks"], result["txs"] = count_txs(export, genesis)
        result["export_bytes"] = export.stat().st_size
        result["load_average_1m_start"] = round(os.getloadavg()[0], 2)
        if "import" in modes:
            result.update(bench_import(root, export, genesis_file, result["txs"], pipeline=not a.no_pipeline))
        if "sync-inproc" in modes:
            result.update(bench_sync_inproc(root, datadirs, genesis_file, result["blocks"], result["txs"], a.repeat))
        if "sync" in modes:
            try:
                result.update(bench_sync(root, datadirs, result["blocks"], result["txs"]))
            except (AssertionError, OSError) as exc:  # still print the import figures
                result["sync_error"] = str(exc)[-2000:]
        result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
        result["cores"] = os.cpu_count()
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
