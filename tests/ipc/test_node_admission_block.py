"""The block a node's mempool dry-runs admissions in (``Node._admission_block``): the
next height at the time this node would propose it now, built once per tip and
millisecond (issue 14) and never stale across a commit or a clock tick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from node_kit import running_node

from medchaind import crypto
from medchaind.client import AsyncClient
from medchaind.consensus.bft import wall_clock_ms
from medchaind.node.node import Node
from medchaind.types import sign_tx


@pytest.fixture
async def node(short_dir: Path) -> Any:
    async with running_node(short_dir) as n:
        yield n


def check(node: Node) -> None:
    tip = node.ledger.tip
    before = wall_clock_ms()
    info = node._admission_block()
    after = wall_clock_ms()
    assert info.chain_id == node.genesis.chain_id and info.proposer == b""
    assert info.height == tip.height + 1
    assert max(before, tip.time_ms + 1) <= info.time_ms <= max(after, tip.time_ms + 1)
    again = node._admission_block()
    assert again is info or again.time_ms > info.time_ms  # reused within its millisecond only


async def test_admission_block_follows_the_tip_and_the_clock(node: Node) -> None:
    check(node)
    first = node._admission_block()
    async with AsyncClient(str(node.config.ipc_path)) as cl:
        with trio.fail_after(60):
            for _ in range(2):
                tx = sign_tx(crypto.SigningKey.generate(), node.genesis.chain_id, "identity.register", 0,
                             {"role": "patient", "enc_key": crypto.random_bytes(32)})
                await cl.submit(tx)
                assert (await cl.wait(tx.hash))["status"] == "committed"
                check(node)
    assert node._admission_block().height >= first.height + 2
