"""``medchaind bench``: measure a local network end to end, through its IPC sockets.

Starts ``validators`` real ``medchaind run`` processes (a fresh ``medchaind testnet``
on 127.0.0.1), registers a pool of sender identities, pre-signs ``n_txs`` transactions
of about ``tx_size`` bytes (``anchor.commit`` with an opaque ``meta`` field;
``identity.register`` with ``--tx-type identity``; or, with ``--tx-type records``,
``records.add`` of an encrypted FHIR Observation of about ``tx_size`` bytes whose
ciphertext travels as the blob sidecar, each patient writing its own records; or, with
``--tx-type supply``, ``supply.capture`` of one EPCIS commissioning event by one of 16
accredited manufacturers; or, with ``--tx-type claims``, ``claims.submit`` of a generated
de-identified claim by one of 16 providers enrolled with 4 payers, its encrypted
document as the blob sidecar), and submits them from
``connections`` client threads, spread over the nodes, as fast as the nodes accept
them: each batch of 200 as one ``tx_submitBatch`` call (``--submit cbor``, the default)
or as a JSON-RPC batch of ``tx_submit`` calls (``--submit json``, the per-tx path). A
watcher subscribed to ``newHeads`` on node0 timestamps every
committed block; submit-to-final latency of a tx is the time from sending its batch to
seeing its block's header. Reports committed tx/s (first submit to last commit), p50 /
p99 latency, CPU seconds and RSS per node, and, measured in the same run, the
machine's Ed25519 verification rate and the bound it sets when every node verifies
every tx once: ``verify_rate * cores / nodes``. For records it also reports how long
after the last commit every node held every ciphertext (fetched from peers over
``blob/1``). Figures only: nothing here asserts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .. import crypto
from ..client import Client
from ..errors import MedchainError, RPCError
from ..flows import submit_batches
from ..node.init import init_testnet
from ..types import Tx, sign_tx
from .devnet import start_nodes, stop_nodes, wait_ready

BATCH = 200
#: a batch of which nothing was admitted for this long, every tx refused ``busy``, is
#: given up (the network stalled: no block drains the pool), so the run ends and reports
#: ``stalled`` and the txs as ``rejected`` instead of retrying forever
BUSY_GIVE_UP_S = 120.0
#: after the submits, the run is ``stalled`` when no block comes for this long (it was
#: 30 s; with tx_submitBatch the submits end within seconds, while a loaded machine may
#: still spend a minute on the first large height's rounds)
STALL_S = 120.0
SENDERS = 64
#: manufacturers of ``--tx-type supply`` (each accredited by a 2/3+ vote: setup costs ~4 txs each)
SUPPLY_SENDERS = 16
#: providers and payers of ``--tx-type claims`` (setup: register, accredit, enroll)
CLAIMS_PROVIDERS, CLAIMS_PAYERS = 16, 4


def _proc_stats(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) / 1024  # MiB
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tck
    except OSError:
        pass
    return out


#: seconds between two samples of the nodes' anonymous memory during a run
ANON_SAMPLE_S = 1.0


def _sample_anon(pids: list[int], peaks: list[float], stop: threading.Event) -> None:
    """Keep in ``peaks`` each node's highest anonymous resident memory (``RssAnon``, MiB)
    seen until ``stop``. The kernel keeps a peak of the whole resident set only
    (``VmHWM``), and its file-backed part is LevelDB's mapped tables, which grow with the
    database and are clean page cache: the memory rows of issue 14 need the other part."""
    while True:
        for i, pid in enumerate(pids):
            peaks[i] = max(peaks[i], _proc_stats(pid).get("RssAnon", 0.0))
        if stop.wait(ANON_SAMPLE_S):
            return


def verify_rate(seconds: float = 1.0) -> float:
    """Ed25519 verifications per second on one core for a 1 KiB payload."""
    key = crypto.SigningKey.generate()
    payload = b"x" * 1024
    sig = key.sign(crypto.DOMAIN_TX, "bench", payload)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "bench", payload)
        n += 200
    return n / (time.perf_counter() - t0)


def _submit_batches(path: Path, txs: list[Tx], sent_at: dict[bytes, float], errors: list[str],
                    rate: float = 0.0, blobs: dict[bytes, bytes] | None = None,
                    busy: list[int] | None = None, submit: str = "cbor") -> None:
    """Submit in batches; with ``rate`` > 0 (tx/s for this connection) pace the batches
    (open loop), so latency is measured below saturation rather than as queueing. A tx
    refused ``busy`` (the node's backpressure) is sent again after its ``retry_after_ms``;
    ``busy[0]`` counts those refusals. ``submit``: ``cbor`` sends each batch as one
    ``tx_submitBatch`` call (base64 of a CBOR array), ``json`` as a JSON-RPC batch of
    ``tx_submit`` calls with hex params (the per-tx path, for comparison)."""
    busy = busy if busy is not None else [0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    f = sock.makefile("rb")
    batch = BATCH if rate <= 0 else max(1, min(BATCH, int(rate / 10)))
    start = time.perf_counter()
    try:
        for i in range(0, len(txs), batch):
            if rate > 0:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            chunk = txs[i : i + batch]
            first_busy: float | None = None
            while chunk:
                req = _submit_request(chunk, blobs, submit)
                now = time.perf_counter()
                for t in chunk:
                    sent_at.setdefault(t.hash, now)  # latency counts from the first attempt
                sock.sendall(req)
                retry, wait_ms = [], 0
                for j, data in _refusals(json.loads(f.readline()), len(chunk)):
                    if data.get("code") == "busy":  # backpressure: send it again after the hint
                        retry.append(chunk[j])
                        wait_ms = max(wait_ms, int(data.get("retry_after_ms", 100)))
                    else:
                        errors.append(str(data.get("message") or data.get("reason")))
                if len(retry) < len(chunk):
                    first_busy = None  # some got in: the network makes progress
                if retry:
                    busy[0] += len(retry)
                    first_busy = first_busy or time.perf_counter()
                    if time.perf_counter() - first_busy > BUSY_GIVE_UP_S:  # the network stalled
                        errors.extend(f"busy for over {BUSY_GIVE_UP_S:g} s; not sent" for _ in retry)
                        retry = []
                    time.sleep(wait_ms / 1000)
                chunk = retry
    finally:
        f.close()
        sock.close()


def _submit_request(chunk: list[Tx], blobs: dict[bytes, bytes] | None, submit: str) -> bytes:
    """One request line for ``chunk``: a ``tx_submitBatch`` call or a batch of ``tx_submit``s."""
    if submit == "cbor":
        side = None if blobs is None else [blobs.get(t.hash) for t in chunk]
        [params] = submit_batches(chunk, side)  # a bench batch is within one call's limits
        req: Any = {"jsonrpc": "2.0", "id": 0, "method": "tx_submitBatch", "params": params}
    else:
        req = [{"jsonrpc": "2.0", "id": j, "method": "tx_submit", "params": _submit_params(t, blobs)}
               for j, t in enumerate(chunk)]
    return json.dumps(req, separators=(",", ":")).encode() + b"\n"


def _refusals(reply: Any, n: int) -> list[tuple[int, dict[str, Any]]]:
    """(index in the chunk, ``{code, reason | message, retry_after_ms?}``) of each refused tx."""
    if isinstance(reply, list):  # tx_submit batch: one reply per call, its id the index
        return [(r["id"], {"message": r["error"].get("message"), **(r["error"].get("data") or {})})
                for r in reply if r.get("error") is not None]
    if reply.get("error") is not None:  # the whole tx_submitBatch call was refused
        return [(j, {"message": reply["error"].get("message")}) for j in range(n)]
    return [(j, r) for j, r in enumerate(reply["result"]) if not r["ok"]]


def _submit_params(tx: Tx, blobs: dict[bytes, bytes] | None) -> dict[str, str]:
    params = {"tx": "0x" + tx.encoded.hex()}
    if blobs is not None and tx.hash in blobs:
        params["blob"] = "0x" + blobs[tx.hash].hex()
    return params


def _record_tx(patient: crypto.KeyPair, chain: str, nonce: int, size: int) -> tuple[Tx, bytes]:
    """A ``records.add`` of an encrypted Observation (the patient writes its own record)."""
    from ..modules.records.encryption import encrypt_record, records_add_body

    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "bench"},
                "valueString": crypto.random_bytes(max(1, size // 2)).hex()[: max(1, size - 400)]}
    plaintext = json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()
    enc = encrypt_record(plaintext, {patient.public_key: patient.encryption.public_key})
    return sign_tx(patient.signing, chain, "records.add", nonce,
                   records_add_body(patient.public_key, "Observation", enc)), enc.ciphertext


def _wait_blobs(dirs: list[Path], hashes: set[str], timeout: float = 120.0) -> float | None:
    """Seconds until every node's ``blobs/`` holds every hash (None if not within timeout)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if all(hashes <= {p.name for p in (d / "blobs").iterdir()} for d in dirs):
            return time.perf_counter() - t0
        time.sleep(0.05)
    return None


def _watch_heads(path: Path, seen: dict[int, float], stop: threading.Event,
                 block_txs: dict[int, list[str]] | None = None) -> None:
    """Timestamp every new head in ``seen``; with ``block_txs``, also fetch each new
    block's tx hashes at once, while the node still holds the block in memory (it
    keeps the newest few: ``node.rpc.RECENT_BLOCKS``), instead of after the run, when
    it would decode every block back from its store on the CPU being measured."""
    with Client(path, timeout=None) as c, Client(path, timeout=60) as fetch:
        sub = c.subscribe({"topic": "newHeads"})
        while not stop.is_set():
            try:
                head = sub.get(timeout=0.5)
                height = int(head["height"])
                seen.setdefault(height, time.perf_counter())
                if block_txs is not None:
                    block_txs[height] = fetch.block(height=height)["txs"]
            except TimeoutError:
                continue
            except (MedchainError, OSError):
                return


#: how many of the txs a run did not count as committed :func:`missing_report` asks about
MISSING_SAMPLE = 64


def missing_report(ipcs: Sequence[Path], missing: Sequence[bytes]) -> dict[str, Any]:
    """What each node says of the first :data:`MISSING_SAMPLE` of ``missing`` (txs
    submitted but not in any block the run counted): per node, how many are
    ``pending`` / ``committed`` / ``dropped:<reason>`` / ``unknown``. A tx one node
    dropped can still be pending on another and commit later; this tells a local drop
    from a network-wide one, and a slow commit from a lost tx (issue 14, session 10)."""
    sample = list(missing[:MISSING_SAMPLE])
    nodes: list[dict[str, int]] = []
    for path in ipcs:
        counts: dict[str, int] = {}
        try:
            with Client(path, timeout=30) as c:
                for h in sample:
                    try:
                        st = c.tx(h)
                        key = st["status"] + (f":{st['reason']}" if st.get("reason") else "")
                    except RPCError:
                        key = "unknown"
                    counts[key] = counts.get(key, 0) + 1
        except (MedchainError, OSError) as exc:
            counts = {f"unreachable: {exc}": len(sample)}
        nodes.append(counts)
    return {"count": len(missing), "asked": len(sample), "nodes": nodes}


def wait_connected(ipcs: list[Path], timeout: float = 60.0) -> None:
    """Wait (at most ``timeout``) until every node has every other node as a peer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = []
        for p in ipcs:
            with Client(p, timeout=10) as c:
                counts.append(len(c.call("node_peers")))
        if all(n >= len(ipcs) - 1 for n in counts):
            return
        time.sleep(0.2)


def register_senders(ipcs: list[Path], chain: str, n: int) -> list[crypto.KeyPair]:
    """``n`` fresh patient identities, registered and committed on every node (nonce 0
    used: their next tx has nonce 1)."""
    senders = [crypto.KeyPair.generate() for _ in range(n)]
    with Client(ipcs[0], timeout=120) as c:
        hashes = [c.submit(sign_tx(s.signing, chain, "identity.register", 0,
                                   {"role": "patient", "enc_key": s.encryption.public_key}))
                  for s in senders]
    # every node must know the senders before their txs arrive there
    for p in ipcs:
        with Client(p, timeout=120) as c:
            for h in hashes:
                st = c.wait(h, timeout_ms=60_000)
                if st.get("status") != "committed":
                    raise MedchainError(f"setup: sender registration not committed: {st}")
    return senders


def _dropped_everywhere(h: bytes, others: Sequence[Path]) -> bool:
    """True unless one of ``others`` (the other nodes' sockets) still holds ``h`` pending
    or has committed it: a node's ``dropped`` is its own pool's (evicted, a nonce gap
    that expired there), and the node the tx was submitted to may still propose it. A
    node that does not answer does not hold the run up."""
    for path in others:
        try:
            with Client(path, timeout=30) as o:
                if o.tx(h)["status"] in ("pending", "committed"):
                    return False
        except (MedchainError, OSError):  # RPCError (unknown there) is a MedchainError
            continue
    return True


def _wait_settled(c: Client, last_txs: Iterable[bytes], from_height: int,
                  block_txs: dict[int, list[str]] | None = None,
                  others: Sequence[Path] = ()) -> bool:
    """Follow the chain past ``from_height`` until every hash of ``last_txs`` is in a
    block or the node reports it dropped; True if no block came for ``STALL_S`` first.
    ``block_txs`` holds each block's tx hashes (hex) by height, as the head watcher
    fetched them; a height missing there is fetched here and added, so the figures are
    counted without asking the node for any block twice.

    One ``chain_getBlock`` per new block, not one ``tx_wait`` per sender: with 20,000
    one-tx senders (``--tx-type identity``) the waits were ~10% of the node's CPU in the
    measured run. A tx still missing when no block came for a second is asked for by
    status: committed settles it; dropped settles it only if no node of ``others`` holds
    it pending (a drop is local to a pool: the tx may still commit from another node's,
    and stopping then would leave it and its sender's earlier txs uncounted). A node
    answers ``committed`` only for blocks at or below the height it reports
    (``Ledger.tx_location``), so the count that follows, up to ``node_info``'s height,
    includes every tx settled here.
    """
    pending = set(last_txs)
    height = from_height
    last_change = time.monotonic()
    while pending:
        head = c.wait_height(height + 1, timeout_ms=1000)
        top = int(head["height"]) if head else height
        if top > height:
            for hh in range(height + 1, top + 1):
                hashes = block_txs.get(hh) if block_txs is not None else None
                if hashes is None:
                    hashes = c.block(height=hh)["txs"]
                    if block_txs is not None:
                        block_txs[hh] = hashes
                pending.difference_update(bytes.fromhex(th[2:]) for th in hashes)
            height, last_change = top, time.monotonic()
            continue
        for h in list(pending)[:256]:  # no block for a second: dropped ones are settled
            try:
                status = c.tx(h)["status"]
            except RPCError:  # not known to this node (yet): still pending elsewhere
                status = "unknown"
            settled = status == "committed" or (status == "dropped" and _dropped_everywhere(h, others))
            if settled:
                pending.discard(h)
        if time.monotonic() - last_change > STALL_S:
            return True
    return False


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_bench(
    *, validators: int = 4, n_txs: int = 20_000, tx_size: int = 1024, connections: int = 8,
    tx_type: str = "anchor", datadir: Path | None = None, base_port: int = 27656,
    node_log_level: str = "warning", rate: float = 0.0, submit: str = "cbor",
) -> dict[str, Any]:
    tmp = None
    if datadir is None:
        tmp = Path(tempfile.mkdtemp(prefix="mcbench-"))
        datadir = tmp / "net"
    procs = []
    try:
        nodes = init_testnet(datadir, validators, chain_id="medchain-bench", base_port=base_port)
        dirs = [cfg.datadir for cfg, _ in nodes]
        ipcs = [cfg.ipc_path for cfg, _ in nodes]
        procs = start_nodes(dirs, log_level=node_log_level)
        wait_ready(dirs, procs)
        wait_connected(ipcs)
        chain = "medchain-bench"
        t_sign = time.perf_counter()
        txs: list[Tx] = []
        blobs: dict[bytes, bytes] = {}
        if tx_type == "identity":
            for _ in range(n_txs):
                k = crypto.SigningKey.generate()
                txs.append(sign_tx(k, chain, "identity.register", 0,
                                   {"role": "patient", "enc_key": crypto.random_bytes(32)}))
            per_conn = [txs[i::connections] for i in range(connections)]
        elif tx_type == "supply":  # accredited manufacturers capturing commissioning events
            from ..modules.supply.benchkit import capture_tx, setup_manufacturers

            makers = setup_manufacturers(ipcs, chain, [k for _, k in nodes], SUPPLY_SENDERS)
            by_maker: list[list[Tx]] = [[] for _ in makers]
            for i in range(n_txs):
                s = i % len(makers)
                by_maker[s].append(capture_tx(makers[s], chain, 3 + len(by_maker[s]), i))
                txs.append(by_maker[s][-1])
            per_conn = [[t for s in range(c_i, len(makers), connections) for t in by_maker[s]]
                        for c_i in range(connections)]
        elif tx_type == "claims":  # enrolled providers submitting de-identified claims
            import random

            from ..modules.claims.benchkit import claim, setup_pairs, submit_tx

            pairs = setup_pairs(ipcs, chain, [k for _, k in nodes], CLAIMS_PROVIDERS, CLAIMS_PAYERS)
            rng = random.Random(0)  # the claims' content; keys and pair keys are fresh
            by_pair: list[list[Tx]] = [[] for _ in pairs]
            for i in range(n_txs):
                s = i % len(pairs)
                tx, blob = submit_tx(pairs[s], chain, 1 + len(by_pair[s]), claim(pairs[s], i, rng))
                blobs[tx.hash] = blob
                by_pair[s].append(tx)
                txs.append(tx)
            per_conn = [[t for s in range(c_i, len(pairs), connections) for t in by_pair[s]]
                        for c_i in range(connections)]
        else:  # anchor or records: registered senders with nonces
            senders = register_senders(ipcs, chain, SENDERS)
            meta_len = max(0, tx_size - 250)  # ~250 bytes of tx envelope around meta
            nonces = [1] * SENDERS
            by_sender: list[list[Tx]] = [[] for _ in range(SENDERS)]
            for i in range(n_txs):
                s = i % SENDERS
                if tx_type == "records":
                    tx, blob = _record_tx(senders[s], chain, nonces[s], tx_size)
                    blobs[tx.hash] = blob
                    by_sender[s].append(tx)
                else:
                    by_sender[s].append(sign_tx(senders[s].signing, chain, "anchor.commit", nonces[s], {
                        "digest": crypto.random_bytes(32), "kind": "bench", "meta": crypto.random_bytes(meta_len)}))
                nonces[s] += 1
                txs.append(by_sender[s][-1])
            # each connection owns whole senders, so a sender's nonces arrive in order
            # (senders interleaved within a connection for realistic mixing)
            per_conn = []
            for conn_i in range(connections):
                mine = [by_sender[s] for s in range(conn_i, SENDERS, connections)]
                per_conn.append([lst[i] for i in range(max(map(len, mine), default=0)) for lst in mine if i < len(lst)])
        sign_s = time.perf_counter() - t_sign
        with Client(ipcs[0], timeout=60) as c:
            start_height = c.node_info()["height"]
        before = [_proc_stats(p.pid) for p in procs]
        seen: dict[int, float] = {}
        stop = threading.Event()
        block_txs: dict[int, list[str]] = {}
        watcher = threading.Thread(target=_watch_heads, args=(ipcs[0], seen, stop, block_txs), daemon=True)
        watcher.start()
        try:  # the watcher and the sampler stop however this ends
            anon_peaks = [0.0] * len(procs)
            sampler = threading.Thread(target=_sample_anon, args=([p.pid for p in procs], anon_peaks, stop),
                                       daemon=True)
            sampler.start()
            sent_at: dict[bytes, float] = {}
            errors: list[str] = []
            busy = [0]
            threads = [threading.Thread(target=_submit_batches,
                                        args=(ipcs[i % validators], per_conn[i], sent_at, errors, rate / connections,
                                              blobs or None, busy, submit))
                       for i in range(connections)]
            load_before = os.getloadavg()[0]
            client_cpu0 = time.process_time()
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            submit_s = time.perf_counter() - t0
            stalled = False
            missing: dict[str, Any] | None = None
            with Client(ipcs[0], timeout=600) as c:
                # wait for every sender's last tx (a sender's txs commit in nonce order, so
                # the rest of its txs are in by then; a connection may carry several senders);
                # give up if no block comes for STALL_S
                last_of: dict[bytes, Tx] = {}
                for lst in per_conn:
                    for tx in lst:
                        if tx.sender not in last_of or tx.nonce > last_of[tx.sender].nonce:
                            last_of[tx.sender] = tx
                stalled = _wait_settled(c, (t.hash for t in last_of.values()), start_height, block_txs,
                                        ipcs[1:])
                elapsed = time.perf_counter() - t0
                end_height = c.node_info()["height"]
                committed = 0
                counted: set[bytes] = set()
                latencies = []
                sizes = []
                for hh in range(start_height + 1, end_height + 1):
                    hashes = block_txs[hh] if hh in block_txs else c.block(height=hh)["txs"]
                    sizes.append(len(hashes))
                    seen_at = seen.get(hh)
                    for th in hashes:
                        hb = bytes.fromhex(th[2:])
                        if hb in sent_at:
                            committed += 1
                            counted.add(hb)
                            if seen_at is not None:
                                latencies.append(seen_at - sent_at[hb])
                if committed and seen:
                    last = max(t for hh, t in seen.items() if hh <= end_height)
                    elapsed = min(elapsed, last - t0) if last > t0 else elapsed
                if committed < len(sent_at):
                    missing = missing_report(ipcs, [h for h in sent_at if h not in counted])
        finally:
            stop.set()
        sampler.join()
        client_cpu = time.process_time() - client_cpu0
        load_after = os.getloadavg()[0]
        blobs_everywhere = (
            _wait_blobs(dirs, {crypto.sha256(b).hex() for b in blobs.values()}) if blobs and not stalled else None
        )
        after = [_proc_stats(p.pid) for p in procs]
        vrate = verify_rate()
        cores = os.cpu_count() or 1
        bound = vrate * min(cores, validators) / validators
        achieved = committed / elapsed if elapsed > 0 else 0.0
        return {
            "validators": validators,
            "tx_type": tx_type,
            "tx_bytes_mean": round(sum(len(t.encoded) for t in txs) / len(txs)) if txs else 0,
            "txs_submitted": n_txs,
            "txs_committed": committed,
            "stalled": stalled,
            "rejected": len(errors),
            "busy_retries": busy[0],
            "first_rejections": errors[:3],
            "missing": missing,
            "connections": connections,
            "offered_rate_tx_per_s": rate or "unlimited",
            "submit": submit,
            "submit_seconds": round(submit_s, 2),
            "commit_seconds": round(elapsed, 2),
            "committed_tx_per_s": round(achieved, 1),
            "latency_p50_s": round(_percentile(latencies, 0.50), 3),
            "latency_p99_s": round(_percentile(latencies, 0.99), 3),
            "blocks": len(sizes),
            "mean_txs_per_block": round(sum(sizes) / len(sizes), 1) if sizes else 0,
            "max_txs_per_block": max(sizes, default=0),
            **({"blob_bytes_mean": round(sum(map(len, blobs.values())) / len(blobs)),
                "blobs_on_every_node_after_last_commit_s": None if blobs_everywhere is None
                else round(blobs_everywhere, 2)} if blobs else {}),
            "nodes": [
                {"node": i, "cpu_seconds": round(a.get("cpu_s", 0) - b.get("cpu_s", 0), 2),
                 "cpu_us_per_committed_tx": round((a.get("cpu_s", 0) - b.get("cpu_s", 0)) * 1e6 / committed)
                 if committed else None,
                 "rss_mib": round(a.get("VmRSS", 0), 1), "peak_rss_mib": round(a.get("VmHWM", 0), 1),
                 # the resident set's two parts at the end, and the anonymous part's peak
                 # (sampled every ANON_SAMPLE_S): the file-backed part is LevelDB's mapped tables
                 "rss_anon_mib": round(a.get("RssAnon", 0), 1), "rss_file_mib": round(a.get("RssFile", 0), 1),
                 "peak_rss_anon_mib": round(max(anon_peaks[i], a.get("RssAnon", 0)), 1)}
                for i, (b, a) in enumerate(zip(before, after, strict=True))
            ],
            "client_sign_seconds": round(sign_s, 2),
            # the load generator's own CPU from first submit to last commit (JSON encoding,
            # the submit threads, the head watcher): it shares the cores with the nodes
            "client_cpu_seconds": round(client_cpu, 2),
            # the machine is shared: the 1-minute load average when the submits began and ended
            "load_average_1m": [round(load_before, 2), round(load_after, 2)],
            "ed25519_verify_per_s_one_core": round(vrate),
            "cores": cores,
            "verify_bound_tx_per_s": round(bound),
            "ratio_to_verify_bound": round(achieved / bound, 3) if bound else 0,
        }
    finally:
        stop_nodes(procs)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
