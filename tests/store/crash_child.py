"""Crash-test writer: commits ``make_chain`` blocks into a LevelDB store until killed.

Usage: ``python crash_child.py <db path> <txs per block> <fill writes per block>``.
Resumes from the store's head (so a test can kill and restart it repeatedly) and
prints ``committed <height>`` after each commit_block returns. Run by
``test_crash_atomicity.py``, which SIGKILLs it at a random moment.
"""

from __future__ import annotations

import sys
from pathlib import Path

from store_factories import commit_fixture, make_block

from medchaind.store import ChainStore, LevelDBKV

MAX_HEIGHT = 100_000  # a safety stop if the parent never kills us


def main() -> None:
    path, n_txs, n_fill = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    kv = LevelDBKV.open(path)
    store = ChainStore(kv)
    height = store.head_height()
    prev = store.get_block(height) if height else None
    prev_commit = store.get_commit(height) if height else None
    print(f"resumed {height}", flush=True)
    while height < MAX_HEIGHT:
        height += 1
        fx = make_block(height, prev, prev_commit, n_txs, n_fill)
        commit_fixture(store, fx)
        print(f"committed {height}", flush=True)
        prev, prev_commit = fx.block, fx.commit
    kv.close()


if __name__ == "__main__":
    main()
