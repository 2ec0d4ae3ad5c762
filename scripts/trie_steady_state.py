"""The state trie's update on a real node's state over successive blocks: CPU and record-cache misses per tx.

Usage::

    .venv/bin/python scripts/trie_steady_state.py DATADIR [--blocks 60] [--txs 1000] [--trie-cache 65536 ...]

``DATADIR`` is a stopped node's datadir (``genesis.json`` and ``chaindata/``), e.g. one
kept by ``medchaind bench --datadir D`` (``D/node0``); its ``chaindata`` is copied to a
temporary directory first. Where ``scripts/exec_on_state.py`` executes one block again
and again on the head state, this script executes ``--blocks`` *successive* blocks of
``--txs`` new 1 KiB ``anchor.commit`` txs (the head block's senders, their next nonces),
each on the trie the previous one left, the way a node does. The trie records go through
the node's own record cache (:class:`medchaind.ledger.StoreState`, which keeps each
block's new records as a node does after a commit) with ``--trie-cache`` records (one
run per size given). Records a block adds are served from memory instead of being
written to the copy, so only the trie's own reads reach LevelDB.

Printed per size, averaged over the second half of the blocks (the cache's steady
state): record reads that missed the cache and went to the store, reads that hit, and
CPU us per tx of ``state_update`` (docs/benchmarks.md, issue 14 session 7). Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
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
from medchaind.types.tx import Tx, decode_tx  # noqa: E402


class _Chain:
    """The copied store plus the blocks executed here: what StoreState reads from."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self.records: dict[bytes, bytes] = {}
        self.values: dict[tuple[str, bytes], bytes | None] = {}

    def trie_node(self, node_hash: bytes) -> bytes | None:
        record = self.records.get(node_hash)
        return record if record is not None else self.store.trie_node(node_hash)

    def state_get(self, module: str, key: bytes) -> bytes | None:
        k = (module, key)
        return self.values[k] if k in self.values else self.store.state_get(module, key)

    def state_iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return self.store.state_iterate(module, prefix)


def run(datadir: Path, cache_records: int, blocks: int, n_txs: int) -> str:
    genesis = Genesis.from_json((datadir / "genesis.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(datadir / "chaindata", Path(tmp) / "chaindata")
        store = ChainStore(LevelDBKV.open(Path(tmp) / "chaindata"))
        try:
            head = store.get_block(store.head_height())
            if head is None or not head.txs:
                return "the head block holds no txs to take senders from"
            chain = _Chain(store)
            state = type("SizedStoreState", (StoreState,), {"TRIE_CACHE_RECORDS": cache_records})(chain)  # type: ignore[arg-type]
            app = App(genesis, load_modules())
            senders = sorted({t.sender for t in head.txs})
            nonces = {s: app.nonce(state, s) for s in senders}
            rng = random.Random(7)  # the same blocks for every cache size
            root = head.header.app_hash
            late: list[tuple[int, int, float]] = []
            for b in range(blocks):
                txs: list[Tx] = []
                for i in range(n_txs):
                    s = senders[i % len(senders)]
                    body = {"digest": rng.randbytes(32), "kind": "bench", "meta": rng.randbytes(750)}
                    txs.append(decode_tx(codec.encode({"v": 1, "chain": genesis.chain_id, "type": "anchor.commit",
                                                       "sender": s, "nonce": nonces[s], "body": body,
                                                       "sig": bytes(64)})))
                    nonces[s] += 1
                info = BlockInfo(genesis.chain_id, head.header.height + 1 + b,
                                 head.header.time_ms + 1000 * (b + 1), bytes(32))
                overlay = StateOverlay(state)
                for tx in txs:
                    app.deliver_tx(overlay, info, tx)
                hits0, misses0 = state.trie_hits, state.trie_misses
                c0 = time.process_time()
                delta = state_update(root, state.trie_node, overlay.writes)
                cpu = time.process_time() - c0
                chain.records.update(delta.puts)
                chain.values.update(overlay.writes)
                state.apply_writes(overlay.writes)
                state.remember(delta.puts)  # as Ledger.commit does
                root = delta.root
                if b >= blocks // 2:
                    late.append((state.trie_misses - misses0, state.trie_hits - hits0, cpu))
        finally:
            store.kv.close()
    k = len(late) * n_txs
    return (f"trie cache {cache_records:>8,} records: {sum(m for m, _, _ in late) / k:.2f} store reads per tx, "
            f"{sum(h for _, h, _ in late) / k:.2f} cache hits per tx, "
            f"state_update {1e6 * sum(c for _, _, c in late) / k:.0f} us CPU per tx "
            f"(blocks {blocks // 2 + 1}-{blocks} of {blocks}, {n_txs} txs each)")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datadir", type=Path)
    ap.add_argument("--blocks", type=int, default=60)
    ap.add_argument("--txs", type=int, default=1000)
    ap.add_argument("--trie-cache", type=int, nargs="+", default=[StoreState.TRIE_CACHE_RECORDS])
    args = ap.parse_args(argv)
    if args.blocks < 2 or args.txs < 1 or min(args.trie_cache) < 1:
        ap.error("--blocks must be >= 2, --txs and --trie-cache >= 1")
    for size in args.trie_cache:
        print(run(args.datadir, size, args.blocks, args.txs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
