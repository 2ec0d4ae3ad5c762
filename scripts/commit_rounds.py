"""Rounds per height of a stopped node's chain (a datadir `medchaind bench --datadir` kept).

A height decided in round 0 needed one proposal; round r > 0 means r rounds timed out
first. The round of height h is that of the commit the next block carries (the head's
own stored commit for the last height). Used for the compact-proposal figures of
docs/benchmarks.md (issue 14)::

    python scripts/commit_rounds.py <bench-dir>/node0 [...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from medchaind.store import open_store


def commit_rounds(datadir: Path) -> list[int]:
    kv, store = open_store(datadir)
    try:
        rounds = []
        for h in range(1, store.head_height() + 1):
            following = store.get_block(h + 1)
            commit = following.last_commit if following is not None else store.get_commit(h)
            assert commit is not None, f"height {h} has no commit"
            rounds.append(commit.round)
        return rounds
    finally:
        kv.close()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for d in argv:
        rounds = commit_rounds(Path(d))
        later = [r for r in rounds if r > 0]
        print(f"{d}: heights={len(rounds)} needing_round_above_0={len(later)} "
              f"max_round={max(rounds, default=0)} rounds={rounds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
