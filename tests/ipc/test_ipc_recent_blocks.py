"""``chain_getBlock`` serves the newest committed blocks from memory (issue 14: a client
following the chain asked for each new block, and the node decoded it back from LevelDB
on its event loop, ~8% of a lone authority's main thread in the identity bench). The
answer must be the one the store gives, for every height, in both forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from node_kit import running_node

from medchaind import crypto
from medchaind.client import AsyncClient
from medchaind.node.node import Node
from medchaind.node.rpc import RECENT_BLOCKS, block_json
from medchaind.types import sign_tx


@pytest.fixture
async def node(short_dir: Path) -> Any:
    async with running_node(short_dir) as n:
        yield n


async def test_recent_blocks_come_from_memory_and_equal_the_stored_ones(node: Node) -> None:
    store = node.ledger.store
    async with AsyncClient(str(node.config.ipc_path)) as cl:
        with trio.fail_after(60):
            for _ in range(RECENT_BLOCKS + 2):  # one block each: more heights than are kept
                key = crypto.SigningKey.generate()
                tx = sign_tx(key, node.genesis.chain_id, "identity.register", 0,
                             {"role": "patient", "enc_key": crypto.random_bytes(32)})
                await cl.submit(tx)
                assert (await cl.wait(tx.hash))["status"] == "committed"
        top = node.ledger.height
        assert top >= RECENT_BLOCKS + 2

        read_back: list[int] = []
        real_get_block = store.get_block

        def counting_get_block(height: int) -> Any:
            read_back.append(height)
            return real_get_block(height)

        store.get_block = counting_get_block  # type: ignore[method-assign]
        try:
            for h in range(1, top + 1):
                stored = real_get_block(h)
                assert stored is not None
                commit = store.get_commit(h)
                for full in (False, True):
                    got = await cl.block(height=h, full=full)
                    want = block_json(stored, full=full)
                    want["commit"] = None if commit is None else commit.to_json()
                    assert got == want, (h, full)
        finally:
            store.get_block = real_get_block  # type: ignore[method-assign]
    # the newest heights were answered without reading the store; older ones from it
    kept = set(range(top - RECENT_BLOCKS + 1, top + 1))
    assert not kept & set(read_back)
    assert set(read_back) == set(range(1, top + 1)) - kept
