"""Answers follow the node's tip while a block's write is in flight (issue 14, session 11).

With ``commit_in_thread`` a decided block's batch lands in LevelDB from a worker thread
before :meth:`Ledger.commit` moves the tip, updates the state cache and tells the
listeners. A reader in that window saw the block's txs ``committed`` at a height that
``node_info`` and ``chain_head`` did not report yet (a bench run stopped counting one
block early because of it). Here a real node's commit is held right after its write, and
every read over the socket must still describe the previous tip; once released, the tx
is committed at the new one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from ipc_harness import RawConn, req
from node_kit import running_node

from medchaind import crypto
from medchaind.node.node import Node
from medchaind.types import sign_tx

WAIT = 30


@pytest.fixture
async def node(short_dir: Path) -> Any:
    async with running_node(short_dir) as n:
        yield n


async def test_reads_describe_the_tip_until_the_block_write_returns(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    assert node.ledger.commit_in_thread
    written, release = threading.Event(), threading.Event()
    write = node.ledger._commit_block

    def held_after_write(block: Any, commit: Any, ex: Any) -> None:
        write(block, commit, ex)
        if any(t.hash == tx.hash for t in block.txs):
            written.set()
            release.wait(WAIT)

    monkeypatch.setattr(node.ledger, "_commit_block", held_after_write)
    first, tx = (sign_tx(crypto.SigningKey.generate(), node.genesis.chain_id, "identity.register", 0,
                         {"role": "patient", "enc_key": crypto.random_bytes(32)}) for _ in range(2))
    h = "0x" + tx.hash.hex()
    c = RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))
    try:
        # a first block, so that the tip has a head to describe
        assert (await c.call(req("tx_submit", {"tx": "0x" + first.encoded.hex()})))["result"]
        with trio.fail_after(WAIT):
            await c.call(req("tx_wait", {"hash": "0x" + first.hash.hex(), "timeout_ms": 20_000}))
        assert (await c.call(req("tx_submit", {"tx": "0x" + tx.encoded.hex()})))["result"] == h
        assert await trio.to_thread.run_sync(written.wait, WAIT)
        tip = node.ledger.height
        assert tip >= 1
        assert node.ledger.store.head_height() == tip + 1  # the block is in the store
        info = (await c.call(req("node_info", {})))["result"]
        assert info["height"] == tip
        assert (await c.call(req("chain_head", {})))["result"]["height"] == tip
        got = (await c.call(req("chain_getTx", {"hash": h})))["result"]
        assert got["status"] == "pending", got
        waited = (await c.call(req("tx_wait", {"hash": h, "timeout_ms": 50})))["result"]
        assert waited["status"] == "pending", waited
        for method in ("chain_getBlock", "chain_getCommit"):
            err = (await c.call(req(method, {"height": tip + 1})))["error"]
            assert "no " in err["message"], (method, err)
        assert (await c.call(req("chain_getBlock", {"height": tip})))["result"]["header"]["height"] == tip
    finally:
        release.set()
    with trio.fail_after(WAIT):
        done = (await c.call(req("tx_wait", {"hash": h, "timeout_ms": 20_000})))["result"]
    assert done["status"] == "committed" and done["height"] == tip + 1, done
    assert (await c.call(req("chain_head", {})))["result"]["height"] >= tip + 1
    assert (await c.call(req("chain_getBlock", {"height": tip + 1})))["result"]["header"]["height"] == tip + 1
    await c.aclose()
