"""Bytes of a stopped node's LevelDB by namespace (blocks, state trie, receipts, ...).

Usage::

    .venv/bin/python scripts/db_usage.py DATADIR/chaindata

Scans every key once (the node must be stopped: LevelDB's lock) and prints, per
namespace of :data:`medchaind.store.schema.NAMESPACES`, the keys, their bytes and their
values' bytes, largest first. This is how docs/benchmarks.md (issue 14, session 6) split
a database into what compaction rewrites. Nothing is asserted (a measurement, not a test).
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medchaind.store import LevelDBKV  # noqa: E402
from medchaind.store.schema import NAMESPACES  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-") or not Path(argv[0]).is_dir():
        print(__doc__)  # -h/--help, or not an existing database directory (never create one)
        return 2
    prefixes = sorted(NAMESPACES, key=len, reverse=True)
    count: collections.Counter[str] = collections.Counter()
    key_bytes: collections.Counter[str] = collections.Counter()
    value_bytes: collections.Counter[str] = collections.Counter()
    with LevelDBKV.open(Path(argv[0])) as kv:
        for k, v in kv.iterate(b""):
            name = next((NAMESPACES[p] for p in prefixes if k.startswith(p)), "other")
            count[name] += 1
            key_bytes[name] += len(k)
            value_bytes[name] += len(v)
    total = sum(key_bytes.values()) + sum(value_bytes.values())
    mib = 1 << 20
    for name in sorted(count, key=lambda n: -(key_bytes[n] + value_bytes[n])):
        size = key_bytes[name] + value_bytes[name]
        print(f"{name:30s} {count[name]:10d} keys {key_bytes[name] / mib:9.1f} MiB keys "
              f"{value_bytes[name] / mib:9.1f} MiB values {100 * size / max(total, 1):5.1f}%")
    print(f"total {total / mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
