"""Instructions per tx of ``bench_app_txs.py``'s runs, counted by valgrind (load-independent).

On a shared machine the CPU time of the app harness moves by +-20% between runs of one
tree, more than most levers change it. Instructions retired do not depend on the load:
this runs each tx type of ``scripts/bench_app_txs.py`` (``--mode pipeline`` or
``execute``) once per tree under ``valgrind --tool=callgrind``, counting only the timed part
(it runs inside ``functools.reduce``, callgrind's ``--toggle-collect`` target; the set-up,
the warm-up run and the imports are outside it), and prints instructions per tx and the
ratio to the identity tx of the same tree. Instructions are not time (SHA-256 runs without
the CPU's SHA extensions under valgrind, so hashing weighs more than it does natively), but
two trees' counts compare the Python work each does. ``PYTHONHASHSEED=0``: the same run
counts the same, within ~0.1%.

Usage (each tree a directory holding ``medchaind/`` and ``scripts/``, e.g. a ``git archive``)::

    .venv/bin/python scripts/count_app_instructions.py --tree /tmp/before --tree . identity claims supply
    .venv/bin/python scripts/count_app_instructions.py --tree . --mode execute --txs 500 claims

A run takes ~1-2 minutes of CPU per tx type and tree (the set-up under valgrind).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def inner(tree: str, name: str, n: int, mode: str, block: int) -> None:
    """The run valgrind counts (``--inner``): set-up and warm-up outside functools.reduce."""
    sys.path.insert(0, tree)
    sys.path.insert(1, str(Path(tree) / "scripts"))
    import bench_app_txs as b  # the tree's own harness

    c, txs = b.SETUPS[name](n)
    c.state = b.IndexedState(c.state.data)
    ex = c.execute(txs)
    if not all(r.ok for r in ex.receipts):
        raise SystemExit(f"{name}: a tx failed")
    pre = c.state
    if mode == "pipeline":
        b.run_pipeline(c, pre, txs, block)  # warm-up: lazy imports, caches
        functools.reduce(lambda acc, _: b.run_pipeline(c, pre, txs, block), range(1), None)
    else:
        c.execute(txs)
        functools.reduce(lambda acc, _: c.execute(txs), range(1), None)


def count(tree: str, name: str, n: int, mode: str, block: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce", f"--callgrind-out-file={out}",
             sys.executable, __file__, "--inner", tree, name, str(n), mode, str(block)],
            check=True, cwd=tmp, env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        if m is None:
            raise SystemExit(f"no instruction total in {out}")
        return int(m.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        tree, name, n, mode, block = sys.argv[2:7]
        inner(tree, name, int(n), mode, int(block))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("types", nargs="+", help="tx types of bench_app_txs.py (identity first gives the ratios)")
    ap.add_argument("--tree", action="append", required=True, help="a tree to count (repeat to compare)")
    ap.add_argument("--txs", type=int, default=500)
    ap.add_argument("--mode", choices=("pipeline", "execute"), default="pipeline")
    ap.add_argument("--block", type=int, default=100, help="txs per block in --mode pipeline")
    args = ap.parse_args()
    for tree in args.tree:
        base = None
        for name in args.types:
            per_tx = count(str(Path(tree).resolve()), name, args.txs, args.mode, args.block) / args.txs
            base = per_tx if name == "identity" else base
            ratio = f"  {per_tx / base:.2f}x identity" if base else ""
            print(f"{tree}  {args.mode}  {name:14s} {per_tx:12,.0f} instructions/tx{ratio}", flush=True)


if __name__ == "__main__":
    main()
