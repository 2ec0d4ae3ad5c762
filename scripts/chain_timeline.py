"""Per-minute throughput, block sizes, intervals and rounds of a node's chain, read from its datadir.

Usage::

    .venv/bin/python scripts/chain_timeline.py DATADIR/chaindata

For a bench run kept with ``medchaind bench --datadir D`` (``D/node0/chaindata``), once
the nodes are stopped: committed txs per minute of block time, mean txs per block per
minute, the block-interval percentiles and how many heights needed a round > 0. This is
how docs/benchmarks.md tells a sustained run that holds its rate from one that decays.
Nothing is asserted (a measurement, not a test).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medchaind.store import ChainStore, LevelDBKV  # noqa: E402


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-") or not Path(argv[0]).is_dir():
        print(__doc__)  # -h/--help, or not an existing database directory (never create one)
        return 2
    store = ChainStore(LevelDBKV.open(Path(argv[0])))
    rows = []
    for h in range(1, store.head_height() + 1):
        b = store.get_block(h)
        assert b is not None
        rows.append((b.header.time_ms, b.header.round, len(b.txs)))
    if not rows:
        print("no blocks")
        return 1
    gaps = [(b[0] - a[0]) / 1000 for a, b in zip(rows, rows[1:], strict=False)]
    print(f"height {len(rows)}, txs {sum(r[2] for r in rows)}, interval p50 {_pct(gaps, 0.5):.2f} s "
          f"p90 {_pct(gaps, 0.9):.2f} s max {max(gaps, default=0):.2f} s, "
          f"heights in round > 0: {sum(1 for r in rows if r[1] > 0)}")
    t0 = rows[0][0]
    txs: collections.Counter[int] = collections.Counter()
    blocks: collections.Counter[int] = collections.Counter()
    for t, _, n in rows:
        txs[(t - t0) // 60_000] += n
        blocks[(t - t0) // 60_000] += 1
    print("txs per minute:", [txs[k] for k in sorted(txs)])
    print("mean txs per block per minute:", [txs[k] // blocks[k] for k in sorted(txs)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
