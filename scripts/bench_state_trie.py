"""What the state commitment costs per write: the trie update and its extra LevelDB bytes.

Usage::

    .venv/bin/python scripts/bench_state_trie.py [--keys 200000] [--block 4000] [--blocks 5]

Builds a state of ``--keys`` entries (record-like keys under ``records/r/``, 200-byte
values) in a LevelDB store in a temporary directory, then commits ``--blocks`` blocks
of ``--block`` writes each, half of them nonce updates (``auth/n/<32 bytes>``, 8-byte
values) and half new record keys, the mix of a block of simple txs. For each block it
measures, in CPU time of this process:

* ``update``: :func:`medchaind.app.app.state_update` reading trie nodes from LevelDB
  through the ledger's record cache (:class:`medchaind.ledger.StoreState`, which keeps
  each block's new records), what every node adds to executing a block; ``--no-cache``
  reads every record from LevelDB;
* ``write``: the block's sync'd LevelDB batch of state *and* trie records, against the
  same batch without the trie records (the protocol-1 cost) for the extra;
* the old write-set hash chain (``writes_digest``) of protocol 1, for comparison.

Prints one line per block and a summary; nothing is asserted (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medchaind import codec  # noqa: E402
from medchaind.app import trie  # noqa: E402
from medchaind.app.app import state_update  # noqa: E402
from medchaind.ledger import StoreState  # noqa: E402
from medchaind.store import ChainStore, LevelDBKV, schema  # noqa: E402


def old_digest(writes: dict[tuple[str, bytes], bytes | None]) -> bytes:
    """Protocol 1's per-block cost: a hash of the sorted write-set."""
    items = [[m, k, writes[(m, k)]] for (m, k) in sorted(writes)]
    return hashlib.sha256(codec.encode_unchecked(items)).digest()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--block", type=int, default=4000)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--no-cache", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelDBKV.open(Path(tmp) / "chaindata")
        t0 = time.perf_counter()
        state = {("records", b"r/" + hashlib.sha256(i.to_bytes(8, "big")).digest()): os.urandom(200)
                 for i in range(args.keys)}
        built = trie.build({trie.tree_key(m, k): v for (m, k), v in state.items()})
        puts = [(schema.state_key(m, k), v) for (m, k), v in state.items()]
        puts += [(schema.trie_key(h), r) for h, r in built.puts.items()]
        for i in range(0, len(puts), 50_000):
            kv.write(puts[i:i + 50_000], sync=False)
        root = built.root
        print(f"state: {args.keys} keys, {len(built.puts)} trie records, built in {time.perf_counter() - t0:.1f} s")
        del state, built, puts

        source = StoreState(ChainStore(kv))

        def read(h: bytes) -> bytes | None:
            return kv.get(schema.trie_key(h)) if args.no_cache else source.trie_node(h)

        totals = {"update": 0.0, "write": 0.0, "write_old": 0.0, "digest": 0.0, "puts": 0, "dels": 0, "bytes": 0}
        n = 0
        for b in range(args.blocks):
            half = args.block // 2
            writes: dict[tuple[str, bytes], bytes | None] = {("auth", b"n/" + os.urandom(32)): os.urandom(8)
                                                            for _ in range(half)}
            writes.update({("records", b"r/" + os.urandom(32)): os.urandom(200) for _ in range(args.block - half)})
            c0 = time.process_time()
            delta = state_update(root, read, writes)
            c1 = time.process_time()
            old_digest(writes)
            c2 = time.process_time()
            state_puts = [(schema.state_key(m, k), v) for (m, k), v in writes.items() if v is not None]
            trie_puts = [(schema.trie_key(h), r) for h, r in delta.puts.items()]
            trie_dels = [schema.trie_key(h) for h in delta.deletes]
            w0 = time.perf_counter()
            kv.write(state_puts, sync=True)  # protocol 1's batch (state only), measured on its own
            w1 = time.perf_counter()
            kv.write(state_puts + trie_puts, trie_dels, sync=True)
            w2 = time.perf_counter()
            root = delta.root
            source.remember(delta.puts)
            extra_bytes = sum(len(k) + len(v) for k, v in trie_puts) + sum(len(k) for k in trie_dels)
            print(f"block {b + 1}: {len(writes)} writes, update {1e6 * (c1 - c0) / len(writes):.1f} us/write "
                  f"(cpu), {len(delta.puts) / len(writes):.2f} records put + {len(delta.deletes) / len(writes):.2f} "
                  f"deleted per write, +{extra_bytes / len(writes):.0f} B/write; batch {1e3 * (w2 - w1):.1f} ms "
                  f"vs {1e3 * (w1 - w0):.1f} ms without the trie (wall); protocol-1 digest "
                  f"{1e6 * (c2 - c1) / len(writes):.2f} us/write")
            totals["update"] += c1 - c0
            totals["digest"] += c2 - c1
            totals["write"] += w2 - w1
            totals["write_old"] += w1 - w0
            totals["puts"] += len(delta.puts)
            totals["dels"] += len(delta.deletes)
            totals["bytes"] += extra_bytes
            n += len(writes)
        print(f"summary: {n} writes over a {args.keys}-key state: "
              f"trie update {1e6 * totals['update'] / n:.1f} us/write "
              f"(cpu; protocol 1's digest {1e6 * totals['digest'] / n:.2f}), "
              f"{totals['puts'] / n:.2f} puts + {totals['dels'] / n:.2f} deletes = "
              f"{totals['bytes'] / n:.0f} extra bytes per write; sync'd batch "
              f"{1e6 * totals['write'] / n:.1f} us/write vs {1e6 * totals['write_old'] / n:.1f} "
              "without the trie (wall)")
        kv.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
