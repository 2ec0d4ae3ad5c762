"""What the kept versions of the state cost on disk: a long chain whose state churns.

    .venv/bin/python scripts/bench_retention.py --heights 3200 --per-block 50

Issue 14's storage figure for ``[sync]`` retention (docs/protocol.md §23.8). Builds a
chain in this process, block by block through a real :class:`~medchaind.ledger.Ledger`
on LevelDB with the node's retention (``--recent`` 100, a snapshot every
``--snapshot-interval`` 1,000 heights, ``--snapshot-keep`` 2 kept: the defaults):
``--users`` identities register, then each block carries ``--per-block``
``identity.update`` txs of identities picked at random, so the state stops growing and
its records are replaced, which is where retention costs. Prints one JSON object: the
database's entries and bytes per namespace at the head, the bytes LevelDB compacted
(its ``LOG``), the process CPU and the part of it in ``ChainStore.prune_trie``.
Deterministic but for the keys (generated fresh); to compare two trees, run each tree's
copy of this script (it imports the tree it is in). No timed asserts.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medchaind import crypto  # noqa: E402
from medchaind.chain import build_block  # noqa: E402
from medchaind.ledger import Ledger, Retention  # noqa: E402
from medchaind.modules import make_app  # noqa: E402
from medchaind.node.init import init_testnet  # noqa: E402
from medchaind.store import ChainStore, LevelDBKV  # noqa: E402
from medchaind.testing.appkit import enc_key  # noqa: E402
from medchaind.types import Commit, Genesis, Tx, sign_commit_vote, sign_tx  # noqa: E402

CHAIN = "bench-retention"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heights", type=int, default=3200)
    ap.add_argument("--per-block", type=int, default=50, help="txs per block")
    ap.add_argument("--users", type=int, default=2000, help="identities (registered first, then updating)")
    ap.add_argument("--recent", type=int, default=100, help="[sync] proof_history")
    ap.add_argument("--snapshot-interval", type=int, default=1000)
    ap.add_argument("--snapshot-keep", type=int, default=2)
    ap.add_argument("--keep", type=Path, help="build in this (new) directory and keep it")
    a = ap.parse_args()
    root = a.keep or Path(tempfile.mkdtemp(prefix="mcretention-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        cfg, keys = init_testnet(root / "net", 1, chain_id=CHAIN, base_port=40000)[0]
        genesis = Genesis.from_json((cfg.datadir / "genesis.json").read_text())
        signer = keys.signing
        kv = LevelDBKV.open(root / "chaindata")
        retention = Retention(recent=a.recent, snapshot_interval=a.snapshot_interval,
                              snapshot_keep=a.snapshot_keep)
        ledger = Ledger(ChainStore(kv), make_app(genesis), genesis, commit_in_thread=False, retention=retention)
        pruning = [0.0]
        prune = ledger.store.prune_trie

        def timed_prune(*args: object, **kw: object) -> int:
            t = time.process_time()
            try:
                return prune(*args, **kw)  # type: ignore[arg-type]
            finally:
                pruning[0] += time.process_time() - t

        ledger.store.prune_trie = timed_prune  # type: ignore[method-assign]
        rng = random.Random(7)
        users = [crypto.KeyPair.generate() for _ in range(a.users)]
        nonces = [0] * len(users)
        per = a.per_block

        def txs_for(h: int) -> list[Tx]:
            if (h - 1) * per < len(users):
                return [sign_tx(u.signing, CHAIN, "identity.register", 0,
                                {"role": "patient", "enc_key": u.encryption.public_key})
                        for u in users[(h - 1) * per:h * per]]
            out = []
            for i in rng.sample(range(len(users)), min(per, len(users))):
                nonces[i] += 1
                out.append(sign_tx(users[i].signing, CHAIN, "identity.update", nonces[i],
                                   {"enc_key": enc_key(f"{h}-{i}")}))
            return out

        async def run() -> None:
            for _ in range(a.heights):
                tip = ledger.tip
                block, ex = build_block(ledger.app, ledger.state, tip, txs_for(tip.height + 1),
                                        proposer=signer.public_key, time_ms=tip.time_ms + 1, round_=0,
                                        last_commit=ledger.store.get_commit(tip.height) if tip.height else None)
                h = block.hash()
                sig = sign_commit_vote(signer, CHAIN, block.height, 0, h)
                await ledger.commit(block, Commit(block.height, 0, h, (sig,)), ex)

        cpu = time.process_time()
        trio.run(run)
        cpu = time.process_time() - cpu
        entries: collections.Counter[str] = collections.Counter()
        size: collections.Counter[str] = collections.Counter()
        for k, v in kv.iterate(b"v1/"):
            name = k[:k.index(b"/", 3) + 1].decode()
            entries[name] += 1
            size[name] += len(k) + len(v)
        kv.close()
        log = (root / "chaindata" / "LOG").read_text(errors="replace")
        compacted = sum(int(line.split("files => ")[1].split()[0]) for line in log.splitlines() if "files => " in line)
        print(json.dumps({
            "heights": ledger.height, "txs_per_block": per, "users": a.users,
            "retention": {"recent": a.recent, "snapshot_interval": a.snapshot_interval,
                          "snapshot_keep": a.snapshot_keep},
            "horizon": retention.horizon(ledger.height), "snapshots": retention.snapshot_heights(ledger.height),
            "database_bytes": sum(size.values()), "compacted_bytes": compacted, "cpu_seconds": round(cpu, 1),
            "prune_cpu_seconds": round(pruning[0], 2),
            "namespaces": {n: {"entries": entries[n], "bytes": size[n]}
                           for n in sorted(size, key=lambda n: -size[n])},
        }, indent=1))
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
