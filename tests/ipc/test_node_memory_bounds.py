"""Memory bounds of a real in-process node (issue 14): the signature cache is sized from
what it serves (the mempool and the blocks in flight) and a committed block's hashes
leave it, so it does not grow with the chain; the memory trimmer is on by default."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import trio
from ipc_harness import RawConn, req
from node_kit import running_node

from medchaind import codec, crypto
from medchaind.types import sign_tx

WAIT = 30


async def test_committed_hashes_leave_the_signature_cache(short_dir: Path) -> None:
    async with running_node(short_dir, mempool={"max_txs": 5000, "max_per_sender": 5000}) as node:
        assert node.sigs.capacity == 5000 + 2 * node.genesis.params.max_block_txs
        if sys.platform.startswith("linux"):
            assert node.trimmer.enabled and node.trimmer.interval_s == node.config.node.malloc_trim_ms / 1000
        txs = [sign_tx(crypto.SigningKey.generate(), node.genesis.chain_id, "identity.register", 0,
                       {"role": "patient", "enc_key": crypto.random_bytes(32)}) for _ in range(40)]
        c = RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))
        batch = base64.b64encode(codec.encode([t.encoded for t in txs])).decode()
        reply = (await c.call(req("tx_submitBatch", {"txs": batch})))["result"]
        assert all(r["ok"] for r in reply), reply
        with trio.fail_after(WAIT):
            for t in txs:
                st = (await c.call(req("tx_wait", {"hash": "0x" + t.hash.hex(), "timeout_ms": 20_000})))["result"]
                assert st["status"] == "committed", st
        await c.aclose()
        assert all(node.ledger.is_committed(t.hash) for t in txs)
        assert not any(t.hash in node.sigs for t in txs)
        assert len(node.sigs) == 0  # nothing is pending, so the cache holds nothing
