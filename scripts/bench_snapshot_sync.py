"""Snapshot sync against block sync, in one process (no network): what joining costs.

    .venv/bin/python scripts/bench_snapshot_sync.py --blocks 3000 --identities 2000 --chunk-bytes 1048576

Builds a chain offline (medchaind.testing.chainbuild: ``--identities`` registrations in
the first blocks, then empty blocks up to ``--blocks``), with a snapshot at the last
multiple of ``--interval``. Then, each into a fresh LevelDB datadir:

* **snapshot**: the server plans the manifest and reads every chunk (the work a serving
  node does), the joiner decodes and verifies every chunk and writes the state in one
  batch (Ledger.restore_snapshot), then block-syncs the blocks after the snapshot;
* **block sync**: every block from genesis validated (commit signatures, re-execution)
  and committed (one fsync'd batch each), as sync/1 does.

Prints one JSON line: sizes (entries, chunks, manifest and chunk bytes) and seconds.
Network transfer is not included (loopback libp2p moves 140-190 MB/s: DESIGN.md §5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio  # noqa: E402

from medchaind import crypto  # noqa: E402
from medchaind.app.snapshot import (  # noqa: E402
    chunk_entries,
    decode_chunk,
    decode_manifest,
    encode_chunk,
    plan_snapshot,
    split_tree_key,
    verify_chunk,
    verify_manifest,
)
from medchaind.app.trie import node_hash  # noqa: E402
from medchaind.chain import SigCache, validate_block  # noqa: E402
from medchaind.ledger import Ledger, Retention  # noqa: E402
from medchaind.modules import make_app  # noqa: E402
from medchaind.store import ChainStore, LevelDBKV  # noqa: E402
from medchaind.testing.chainbuild import build_chain  # noqa: E402
from medchaind.types import Authority, Genesis, sign_tx  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=3000)
    ap.add_argument("--identities", type=int, default=2000)
    ap.add_argument("--interval", type=int, default=1000)
    ap.add_argument("--chunk-bytes", type=int, default=1 << 20)
    a = ap.parse_args()

    keys = [crypto.SigningKey.generate() for _ in range(4)]
    genesis = Genesis(chain_id="bench-snap", genesis_time_ms=1_700_000_000_000,
                      authorities=tuple(Authority(f"a{i}", k.public_key, 1) for i, k in enumerate(keys)))
    per_block = 500
    txs: dict[int, list] = {}
    for i in range(a.identities):
        kp = crypto.KeyPair.generate()
        txs.setdefault(1 + i // per_block, []).append(
            sign_tx(kp.signing, genesis.chain_id, "identity.register", 0,
                    {"role": "patient", "enc_key": kp.encryption.public_key}))
    t = time.perf_counter()
    src = build_chain(genesis, keys[:3], a.blocks, txs=txs,
                      retention=Retention(recent=8, snapshot_interval=a.interval, snapshot_keep=2))
    build_s = time.perf_counter() - t
    ledger = Ledger(ChainStore(src), make_app(genesis), genesis, commit_in_thread=False,
                    retention=Retention(recent=8, snapshot_interval=a.interval, snapshot_keep=2))
    snap = ledger.snapshot_heights()[0]
    root = ledger.root_at(snap)
    assert root is not None

    out: dict[str, object] = {"blocks": a.blocks, "identities": a.identities, "snapshot_height": snap,
                              "build_s": round(build_s, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        # ---- snapshot: serve, verify, restore, then the blocks after it
        t = time.perf_counter()
        m = plan_snapshot(snap, root, ledger.state.trie_node, lambda lh: len(ledger.store.trie_value(lh) or b""),
                          max_chunk_bytes=a.chunk_bytes)
        manifest_bytes = m.encode()
        wire = [encode_chunk(chunk_entries(m, i, ledger.state.trie_node, ledger.store.trie_value))
                for i in range(len(m.chunks))]
        serve_s = time.perf_counter() - t
        t = time.perf_counter()
        mm = decode_manifest(manifest_bytes)
        verify_manifest(mm, root)
        records = {node_hash(r): r for r in mm.nodes}
        values: dict[bytes, bytes] = {}
        state = []
        for i, raw in enumerate(wire):
            c = decode_chunk(raw)
            r, v = verify_chunk(mm, i, c)
            records.update(r)
            values.update(v)
            state.extend((*split_tree_key(k), val) for u in c for k, val in u)
        verify_s = time.perf_counter() - t
        kv = LevelDBKV.open(Path(tmp) / "snap")
        fresh = Ledger(ChainStore(kv), make_app(genesis), genesis)
        t = time.perf_counter()
        fresh.restore_snapshot(ledger.store.get_block(snap), ledger.store.get_commit(snap), state, records, values)
        restore_s = time.perf_counter() - t
        t = time.perf_counter()
        trio.run(replay, fresh, ledger, snap + 1, a.blocks)
        tail_s = time.perf_counter() - t
        assert fresh.tip.app_hash == ledger.tip.app_hash
        kv.close()
        out.update(entries=len(state), chunks=len(wire), manifest_bytes=len(manifest_bytes),
                   chunk_bytes_total=sum(map(len, wire)), serve_s=round(serve_s, 2), verify_s=round(verify_s, 2),
                   restore_s=round(restore_s, 2), blocks_after_snapshot=a.blocks - snap,
                   blocks_after_snapshot_s=round(tail_s, 2),
                   snapshot_join_s=round(serve_s + verify_s + restore_s + tail_s, 2))
        # ---- block sync from genesis
        kv = LevelDBKV.open(Path(tmp) / "blocks")
        full = Ledger(ChainStore(kv), make_app(genesis), genesis)
        t = time.perf_counter()
        trio.run(replay, full, ledger, 1, a.blocks)
        out["block_sync_s"] = round(time.perf_counter() - t, 2)
        assert full.tip.app_hash == ledger.tip.app_hash
        kv.close()
    print(json.dumps(out))


async def replay(dst: Ledger, src: Ledger, first: int, last: int) -> None:
    """Validate and commit blocks ``first..last`` of ``src`` as block sync does."""
    sigs = SigCache()
    params = dst.genesis.params
    from medchaind.types import verify_commit

    for h in range(first, last + 1):
        block, commit = src.store.get_block(h), src.store.get_commit(h)
        assert block is not None and commit is not None
        verify_commit(commit, dst.genesis.chain_id, dst.tip.powers, block.hash(), h)
        if block.last_commit is not None:
            verify_commit(block.last_commit, dst.genesis.chain_id, dst.tip.powers, block.header.prev_hash, h - 1)
        ex = validate_block(dst.app, dst.state, dst.tip, block, sigs, max_txs=params.max_block_txs,
                            max_bytes=params.max_block_bytes)
        await dst.commit(block, commit, ex)


if __name__ == "__main__":
    main()
