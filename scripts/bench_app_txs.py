"""Execution cost per tx of each benchmarked tx type, on the app harness (no network).

Builds a pre-state with :class:`medchaind.testing.appkit.AppChain` (the registry's real
modules over a ``DictState`` with its state trie), then executes one block of ``--txs``
txs of one type (``App.execute``: nonces, body decode, handler, write-set, state-trie
update) ``--repeat`` times on the same pre-state and prints the best CPU (process) time
and wall time per tx. Signing and building the txs are outside the timing; signature
checks are not part of ``App.execute``.

The pre-state is the harness's ``DictState`` with a sorted key index for prefix scans
(:class:`IndexedState`): ``DictState.iterate`` scans every key of the state, which the
node's LevelDB store does not, and which made the handlers that scan a prefix look
several times dearer than they are on a node (trials: ~35% of the time in that scan).

Tx types (built as the node bench builds them, ``medchaind bench --tx-type ...``):

* ``identity``: ``identity.register`` of new keys;
* ``anchor``: ``anchor.commit`` with a 750-byte ``meta`` (the node bench's 1 KiB tx) by 64
  registered patients;
* ``claims``: ``claims.submit`` of generated claims (``modules/claims/benchkit.py``) by
  16 enrolled providers to 4 payers;
* ``supply``: ``supply.capture`` of one commissioning event of one unit
  (``modules/supply/benchkit.py``) by 16 accredited manufacturers;
* ``trials-enroll`` / ``trials-event``: ``trials.enroll`` of consented participants by
  two sites of one trial, and one ``trials.event`` per enrolled participant.

``--mode pipeline`` times what a node spends on the same txs from admission to
execution instead: a real :class:`~medchaind.mempool.Mempool` (signatures pre-verified in
its ``SigCache``, so none is checked) admits every tx (``App.check_tx``: typed body
decode, nonce and sender checks, the handler's dry run for each sender's next tx), then
blocks of ``--block`` txs are reaped, executed, applied and followed by the mempool's
re-check (``Mempool.update``: the full check, dry run included, of each sender's next
pending tx) until every tx is committed. CPU per tx is that whole run over ``--txs``.

Usage::

    .venv/bin/python scripts/bench_app_txs.py --txs 1000 --repeat 3 identity claims supply
    .venv/bin/python scripts/bench_app_txs.py --profile claims     # cProfile of one block
    .venv/bin/python scripts/bench_app_txs.py --mode pipeline --block 100 claims
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import datetime
import hashlib
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medchaind.app import DictState  # noqa: E402
from medchaind.modules.claims import benchkit as claims_bench  # noqa: E402
from medchaind.modules.claims import canonical  # noqa: E402
from medchaind.modules.supply import gs1  # noqa: E402
from medchaind.modules.supply.machine import gs1_check_digit, index_key_check  # noqa: E402
from medchaind.modules.trials.machine import consent_purpose, randomisation_commitment  # noqa: E402
from medchaind.testing.appkit import AppChain, digest, enc_key, pub  # noqa: E402
from medchaind.types import Tx  # noqa: E402

Setup = Callable[[int], tuple[AppChain, list[Tx]]]


class IndexedState(DictState):
    """``DictState`` whose prefix scans cost O(log n + matches), as the node's store's do.

    The index is built on the first scan after a change (only :meth:`apply` changes it
    here; the bench never writes ``data`` directly).
    """

    def __init__(self, data: dict[tuple[str, bytes], bytes] | None = None) -> None:
        super().__init__(data)
        self._index: dict[str, list[bytes]] | None = None

    def iterate(self, module: str, prefix: bytes = b""):  # type: ignore[no-untyped-def]
        if self._index is None:
            index: dict[str, list[bytes]] = {}
            for m, k in self.data:
                index.setdefault(m, []).append(k)
            for keys in index.values():
                keys.sort()
            self._index = index
        keys = self._index.get(module, [])
        for i in range(bisect.bisect_left(keys, prefix), len(keys)):
            k = keys[i]
            if not k.startswith(prefix):
                break
            yield k, self.data[(module, k)]

    def apply(self, writes, trie_delta=None):  # type: ignore[no-untyped-def]
        super().apply(writes, trie_delta)
        self._index = None


def _sealed(tag: str) -> bytes:
    return hashlib.sha512(b"sealed/" + tag.encode()).digest()[:80]


def _register_all(c: AppChain, parties: list[tuple[str, str]]) -> None:
    for i in range(0, len(parties), 1000):
        ex = c.commit(c.txs((n, "identity.register", {"role": r, "enc_key": enc_key(n)})
                            for n, r in parties[i:i + 1000]))
        assert all(r.ok for r in ex.receipts)


def _accredit_all(c: AppChain, parties: list[tuple[str, str]]) -> None:
    ex = c.commit(c.txs(("A", "governance.accredit", {"subject": pub(n), "role": r}) for n, r in parties))
    assert all(r.ok for r in ex.receipts)


def setup_identity(n: int) -> tuple[AppChain, list[Tx]]:
    c = AppChain.of({"A": 1})
    return c, c.txs((f"ID{i}", "identity.register", {"role": "patient", "enc_key": enc_key(f"ID{i}")})
                    for i in range(n))


def setup_anchor(n: int) -> tuple[AppChain, list[Tx]]:
    """``anchor.commit`` of ~1 KiB (a 750-byte ``meta``) by 64 registered patients, as the
    node bench's default tx (``medchaind bench``: ``tx_size`` 1000 less ~250 bytes of envelope)."""
    c = AppChain.of({"A": 1})
    senders = [f"AN{i}" for i in range(64)]
    _register_all(c, [(s, "patient") for s in senders])
    def meta(i: int) -> bytes:  # 750 bytes
        return hashlib.sha512(b"meta/%d" % i).digest() * 11 + b"m" * 46

    return c, c.txs((senders[i % 64], "anchor.commit", {"digest": digest(f"anchor/{i}"), "kind": "bench",
                                                         "meta": meta(i)}) for i in range(n))


def setup_claims(n: int) -> tuple[AppChain, list[Tx]]:
    c = AppChain.of({"A": 1})
    providers = [f"PRV{i}" for i in range(16)]
    payers = [f"PAY{i}" for i in range(4)]
    parties = [(p, "provider") for p in providers] + [(p, "payer") for p in payers]
    _register_all(c, parties)
    _accredit_all(c, parties)
    pairs = []
    enrolls = []
    for i, prov in enumerate(providers):
        pay = payers[i % 4]
        pair = SimpleNamespace(provider=prov, payer=pay, npi=claims_bench.npi(1000 + i),
                               pair_key=hashlib.sha256(f"pair/{i}".encode()).digest())
        pairs.append(pair)
        enrolls.append((pay, "claims.enroll", {
            "provider": pub(prov), "npis": [pair.npi],
            "envelopes": [{"recipient": pub(pay), "sealed_key": _sealed(pay)},
                          {"recipient": pub(prov), "sealed_key": _sealed(prov)}]}))
    ex = c.commit(c.txs(enrolls))
    assert all(r.ok for r in ex.receipts), ex.receipts
    rng = random.Random(1)
    specs = []
    for serial in range(n):
        pair = pairs[serial % len(pairs)]
        claim = claims_bench.claim(pair, serial, rng)  # type: ignore[arg-type]
        body = canonical.submit_body(
            claim, pair.pair_key, payer=pub(pair.payer), content_hash=digest(f"claim/{serial}"), size=706,
            envelopes=[{"recipient": pub(pair.payer), "sealed_key": _sealed(pair.payer)},
                       {"recipient": pub(pair.provider), "sealed_key": _sealed(pair.provider)}])
        specs.append((pair.provider, "claims.submit", body))
    return c, c.txs(specs)


def _with_check(digits: str) -> str:
    return digits + str(gs1_check_digit(digits))


def setup_supply(n: int) -> tuple[AppChain, list[Tx]]:
    c = AppChain.of({"A": 1})
    makers = [SimpleNamespace(name=f"M{i}", gln=_with_check(f"7{i:011d}"), gtin=_with_check(f"0{i + 100_000:012d}"),
                              key=hashlib.sha256(f"index/{i}".encode()).digest()) for i in range(16)]
    parties = [(m.name, "manufacturer") for m in makers]
    _register_all(c, parties)
    _accredit_all(c, parties)
    ex = c.commit(c.txs([(m.name, "supply.register_party", {"gln": m.gln}) for m in makers]
                        + [(m.name, "supply.register_product", {"gtin": m.gtin, "key_check": index_key_check(m.key)})
                           for m in makers]))
    assert all(r.ok for r in ex.receipts), ex.receipts
    specs = []
    for serial_no in range(n):
        m = makers[serial_no % len(makers)]
        serials = [f"B{serial_no:09d}-0"]
        t = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=serial_no)
        event = {
            "hash": gs1.sgtin_oid(m.key, m.gtin, "event/" + serials[0])[1:],
            "type": "ObjectEvent", "action": "ADD", "biz_step": "commissioning", "disposition": "active",
            "time_ms": int(t.timestamp()) * 1000,
            "epcs": [gs1.sgtin_oid(m.key, m.gtin, s) for s in serials],
            "gtin": m.gtin, "lot_id": gs1.lot_id(m.key, m.gtin, "BENCH-LOT"), "expiry": 20301231,
        }
        specs.append((m.name, "supply.capture", {"events": [event]}))
    return c, c.txs(specs)


NCT = "NCT01234567"


def _trial_chain(n: int) -> AppChain:
    c = AppChain.of({"A": 1})
    cast = [("S", "sponsor"), ("D1", "provider"), ("D2", "provider")]
    patients = [(f"P{i}", "patient") for i in range(n)]
    _register_all(c, cast + patients)
    _accredit_all(c, cast)
    outcomes = [{"role": "primary", "measure": "Change in HbA1c", "time_frame": "Baseline and week 26"},
                {"role": "secondary", "measure": "Body weight", "time_frame": "Week 26"}]
    c.ok("S", "trials.register", {
        "trial": NCT, "title": "A randomised trial of drug X in type 2 diabetes",
        "protocol_hash": digest("protocol-v1"), "protocol_version": 1,
        "registry_snapshot_hash": digest("ctgov-v1"), "target_enrollment": n, "allocation": "randomized",
        "masking": "double", "outcomes": outcomes, "sites": [pub("D1"), pub("D2")],
        "arms": [{"label": "Drug X", "type": "experimental"}, {"label": "Placebo", "type": "placebo_comparator"}],
        "phases": ["phase3"], "ethics": {"ref": "IRB-1", "document_hash": digest("approval/IRB-1")}})
    c.ok("S", "trials.commit", {"trial": NCT, "kind": "randomisation",
                                "hash": randomisation_commitment(digest("salt"), digest("list"))})
    return c


def _site(i: int) -> str:
    return "D1" if i % 2 == 0 else "D2"


def _grants(c: AppChain, n: int) -> list[bytes]:
    ex = c.commit(c.txs((f"P{i}", "consent.grant", {
        "actions": ["read", "write"], "decision": "permit", "actor": pub(_site(i)),
        "purposes": [consent_purpose(NCT, 1)]}) for i in range(n)))
    assert all(r.ok for r in ex.receipts), ex.receipts[:3]
    return [bytes(next(e for e in r.events if e["type"] == "consent.granted")["grant_id"]) for r in ex.receipts]


def _enroll_specs(grants: list[bytes]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(_site(i), "trials.enroll", {"trial": NCT, "participant": pub(f"P{i}"), "consent_grant": g})
            for i, g in enumerate(grants)]


def setup_trials_enroll(n: int) -> tuple[AppChain, list[Tx]]:
    c = _trial_chain(n)
    return c, c.txs(_enroll_specs(_grants(c, n)))


def setup_trials_event(n: int) -> tuple[AppChain, list[Tx]]:
    c = _trial_chain(n)
    ex = c.commit(c.txs(_enroll_specs(_grants(c, n))))
    assert all(r.ok for r in ex.receipts), ex.receipts[:3]
    return c, c.txs((_site(i), "trials.event", {"trial": NCT, "participant": pub(f"P{i}"), "kind": "visit",
                                                 "data_hash": digest(f"data/{i}")}) for i in range(n))


def copy_state(state: DictState) -> IndexedState:
    """A copy of ``state`` with its trie records (not rebuilt inside a timed run)."""
    out = IndexedState(state.data)
    state.root  # noqa: B018 -- builds the source's trie records if not yet built
    out._nodes, out._root = dict(state._nodes or {}), state.root
    return out


def run_pipeline(c: AppChain, pre: DictState, txs: list[Tx], block_txs: int) -> tuple[float, float, bytes]:
    """Admit ``txs`` into a mempool over a copy of ``pre``, then reap, execute, apply and
    re-check blocks of ``block_txs`` until all are committed; (cpu s, wall s, last app_hash)."""
    from medchaind.app import BlockInfo
    from medchaind.chain import SigCache
    from medchaind.mempool import Mempool, MempoolConfig

    state = copy_state(pre)
    sigs = SigCache(capacity=len(txs) + 1)
    for tx in txs:
        sigs.add(tx.hash)
    app, app_hash, height, time_ms = c.app, c.app_hash, c.height, c.time_ms
    info = lambda: BlockInfo(app.chain_id, height + 1, time_ms + 1000, c.proposer)  # noqa: E731
    pool = Mempool(app, lambda: state, sigs, lambda h: False, MempoolConfig(busy_txs=len(txs) + 1),
                   clock=lambda: 0.0, block_info=info)
    c0, w0 = time.process_time(), time.perf_counter()
    for tx in txs:
        pool.add(tx)
    while len(pool):
        block = pool.reap(block_txs, 1 << 30)
        if not block:
            raise SystemExit(f"pipeline: {len(pool)} txs pending but none proposable")
        ex = app.execute(state, info(), block, app_hash)
        failed = [r for r in ex.receipts if not r.ok]
        if failed:
            raise SystemExit(f"pipeline: {len(failed)} txs failed, e.g. {failed[0]}")
        state.apply(ex.writes, ex.trie)
        app_hash, height, time_ms = ex.app_hash, height + 1, time_ms + 1000
        pool.update(block, ex.writes)
    return time.process_time() - c0, time.perf_counter() - w0, app_hash


SETUPS: dict[str, Setup] = {
    "identity": setup_identity, "anchor": setup_anchor, "claims": setup_claims, "supply": setup_supply,
    "trials-enroll": setup_trials_enroll, "trials-event": setup_trials_event,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("types", nargs="*", help=f"tx types (default all): {', '.join(SETUPS)}")
    ap.add_argument("--txs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one block instead of timing")
    ap.add_argument("--mode", choices=("execute", "pipeline"), default="execute",
                    help="execute: one block with App.execute; pipeline: mempool admission, blocks, re-checks")
    ap.add_argument("--block", type=int, default=100, help="txs per block in --mode pipeline")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    for name in args.types or list(SETUPS):
        c, txs = SETUPS[name](args.txs)
        c.state = IndexedState(c.state.data)
        ex = c.execute(txs)
        failed = [r for r in ex.receipts if not r.ok]
        if failed:
            raise SystemExit(f"{name}: {len(failed)} txs failed, e.g. {failed[0]}")
        if args.mode == "pipeline":
            pre = c.state
            run_pipeline(c, pre, txs, args.block)  # warm-up
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                run_pipeline(c, pre, txs, args.block)
                prof.disable()
                print(f"== {name}: cProfile of admission + blocks of {args.block} + re-checks, {len(txs)} txs")
                pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
                continue
            runs = [run_pipeline(c, pre, txs, args.block) for _ in range(args.repeat)]
            k = 1e6 / len(txs)
            cpu = sorted(r[0] for r in runs)
            print(f"{name:14s} {len(txs)} txs  pipeline (blocks of {args.block})  cpu best {cpu[0] * k:7.0f} us/tx"
                  f"  median {cpu[len(cpu) // 2] * k:7.0f}  wall best {min(r[1] for r in runs) * k:7.0f} us/tx"
                  f"  app_hash {runs[-1][2].hex()[:16]}", flush=True)
            continue
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            c.execute(txs)
            prof.disable()
            print(f"== {name}: cProfile of one block of {len(txs)} txs")
            pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(args.top)
            continue
        cpu, wall = [], []
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            c.execute(txs)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        k = 1e6 / len(txs)
        median = sorted(cpu)[len(cpu) // 2]
        print(f"{name:14s} {len(txs)} txs  cpu best {min(cpu) * k:7.0f} us/tx  median {median * k:7.0f}"
              f"  wall best {min(wall) * k:7.0f} us/tx  app_hash {ex.app_hash.hex()[:16]}"
              f"  results_hash {ex.results_hash.hex()[:16]}", flush=True)


if __name__ == "__main__":
    main()
