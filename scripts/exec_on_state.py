"""CPU to execute a block of ``anchor.commit`` txs on a copy of a real node's state.

Usage::

    .venv/bin/python scripts/exec_on_state.py DATADIR [--txs 1000] [--rounds 4]

``DATADIR`` is a stopped node's datadir (``genesis.json`` and ``chaindata/``), e.g. one
kept by ``medchaind bench --datadir D`` (``D/node0``). Its ``chaindata`` is copied to a
temporary directory, then a block of ``--txs`` new 1 KiB ``anchor.commit`` txs, from
the senders of the head block with their next nonces (signatures are not checked by
execution), is executed ``--rounds`` times on the head state. Per round, in CPU time of
this process per tx: delivering the txs (handlers, nonces, overlay), the state-trie
update and the results hash. On the app harness's small state the trie update is a few
tens of us per write; on a node's state of a few hundred thousand keys it is several
times that (docs/benchmarks.md, issue 14 session 3). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medchaind import codec  # noqa: E402
from medchaind.app.app import App, state_update  # noqa: E402
from medchaind.app.module import BlockInfo  # noqa: E402
from medchaind.app.state import StateOverlay  # noqa: E402
from medchaind.ledger import StoreState  # noqa: E402
from medchaind.modules import load_modules  # noqa: E402
from medchaind.store import ChainStore, LevelDBKV  # noqa: E402
from medchaind.types import Genesis  # noqa: E402
from medchaind.types.receipt import results_hash  # noqa: E402
from medchaind.types.tx import decode_tx  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datadir", type=Path)
    ap.add_argument("--txs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args(argv)
    genesis = Genesis.from_json((args.datadir / "genesis.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(args.datadir / "chaindata", Path(tmp) / "chaindata")
        store = ChainStore(LevelDBKV.open(Path(tmp) / "chaindata"))
        app = App(genesis, load_modules())
        state = StoreState(store)
        head = store.get_block(store.head_height())
        if head is None or not head.txs:
            print("the head block holds no txs to take senders from")
            return 1
        senders = sorted({t.sender for t in head.txs})
        nonces = {s: app.nonce(state, s) for s in senders}
        txs = []
        for i in range(args.txs):
            s = senders[i % len(senders)]
            m = {"v": 1, "chain": genesis.chain_id, "type": "anchor.commit", "sender": s, "nonce": nonces[s],
                 "body": {"digest": os.urandom(32), "kind": "bench", "meta": os.urandom(750)}, "sig": bytes(64)}
            nonces[s] += 1
            txs.append(decode_tx(codec.encode(m)))
        info = BlockInfo(genesis.chain_id, head.header.height + 1, head.header.time_ms + 1000, bytes(32))
        n = len(txs)
        print(f"state at height {head.header.height}; a block of {n} anchor.commit txs")
        for r in range(args.rounds):
            c0 = time.process_time()
            overlay = StateOverlay(state)
            receipts = [app.deliver_tx(overlay, info, tx) for tx in txs]
            c1 = time.process_time()
            delta = state_update(head.header.app_hash, state.trie_node, overlay.writes)
            c2 = time.process_time()
            results_hash(receipts)
            c3 = time.process_time()
            print(f"round {r + 1}: deliver {1e6 * (c1 - c0) / n:.0f} us/tx, trie update {1e6 * (c2 - c1) / n:.0f} "
                  f"us/tx ({len(delta.puts)} records put, {len(delta.deletes)} deleted), results "
                  f"{1e6 * (c3 - c2) / n:.0f} us/tx")
        store.kv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
