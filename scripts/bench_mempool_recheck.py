"""CPU of the mempool's re-check after a block, bounded by the block's write-set or a full walk.

Admits ``--txs`` ``identity.register`` txs of fresh keys (signatures verified beforehand:
admission's own work is timed, the read recording included), then commits them in blocks
of ``--block`` (``App.execute`` over a ``DictState``, outside the timing) and times
``Mempool.update`` after each block: with the block's write-set (the node's path) and
with ``writes=None`` (every pending sender re-checked: the walk the node did before issue
14's bounded re-check), on two pools fed the same txs, alternately. Prints the best CPU
(process) time of ``--repeat`` rounds. Both pools must end each block identical (checked).

    .venv/bin/python scripts/bench_mempool_recheck.py --txs 20000 --block 1000
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import time

from medchaind import crypto
from medchaind.app import BlockInfo, DictState
from medchaind.chain import SigCache
from medchaind.mempool import Mempool, MempoolConfig
from medchaind.modules import make_app
from medchaind.types import Authority, Genesis, Tx, sign_tx

CHAIN = "medchain-bench"


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"bench/" + name.encode()).digest())


def _same(state: DictState) -> DictState:
    return state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--txs", type=int, default=20_000)
    ap.add_argument("--block", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    n = args.txs
    genesis = Genesis(CHAIN, 0, (Authority("A", key("A").public_key, 1),))
    app = make_app(genesis)
    txs = [sign_tx(key(str(i)), CHAIN, "identity.register", 0,
                   {"role": "patient", "enc_key": hashlib.sha256(b"enc %d" % i).digest()}) for i in range(n)]
    sigs = SigCache(capacity=4 * n)
    for t in txs:
        sigs.verify(t)
    writes, root = app.genesis_state()
    admit: list[float] = []
    bounded: list[float] = []
    full: list[float] = []
    for _ in range(args.repeat):
        state = DictState()
        state.apply(writes)
        committed: set[bytes] = set()
        cfg = MempoolConfig(max_txs=2 * n, busy_txs=2 * n, max_bytes=1 << 34)
        pools = [Mempool(app, functools.partial(_same, state), sigs, committed.__contains__, cfg) for _ in range(2)]
        t0 = time.process_time()
        for t in txs:
            pools[0].add(t)
        admit.append((time.process_time() - t0) / n * 1e6)
        for t in txs:
            pools[1].add(t)
        app_hash, spent = root, [0.0, 0.0]
        for height, i in enumerate(range(0, n, args.block), start=1):
            block: list[Tx] = txs[i:i + args.block]
            ex = app.execute(state, BlockInfo(CHAIN, height, height * 1000, b""), block, app_hash)
            state.apply(ex.writes)
            app_hash = ex.app_hash
            committed.update(t.hash for t in block)
            order = (0, 1) if height % 2 else (1, 0)  # alternate which path runs first
            for which in order:
                t0 = time.process_time()
                pools[which].update(block, ex.writes if which == 0 else None)
                spent[which] += time.process_time() - t0
            assert list(pools[0]._txs) == list(pools[1]._txs)
        blocks = -(-n // args.block)
        bounded.append(spent[0] / blocks * 1e3)
        full.append(spent[1] / blocks * 1e3)
    print(f"admission (read recording included): {min(admit):.1f} us per tx")
    print(f"update per block of {args.block} (pool {n} -> 0, mean {n // 2} pending): "
          f"bounded {min(bounded):.2f} ms, full walk {min(full):.2f} ms")


if __name__ == "__main__":
    main()
