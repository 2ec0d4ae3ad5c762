"""The reply bound on a real node (issue 9, defect 3): a batch of ``chain_getBlock``
with ``full: true`` used to build one reply of any size (809 MB for 200 entries); now the
batch stops at ``ipc.max_reply_bytes`` and says which entries ran."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from ipc_harness import RawConn, req
from node_kit import running_node

from medchaind.client import AsyncClient
from medchaind.crypto import KeyPair
from medchaind.ipc import LIMIT_EXCEEDED

LIMIT = 64 * 1024  # the smallest ipc.max_reply_bytes


async def test_batch_of_full_blocks_is_bounded(short_dir: Path) -> None:
    async with running_node(short_dir, max_reply_bytes=LIMIT, send_queue_bytes=LIMIT) as node:
        async with AsyncClient(node.config.ipc_path, timeout=30) as client:
            for _ in range(3):  # three blocks with a tx each
                await client.register_identity(KeyPair.generate(), "patient")
        height = node.ledger.height
        assert height >= 1
        c = RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))
        batch = [req("chain_getBlock", {"height": 1 + i % height, "full": True}, id=i) for i in range(200)]
        await c.send_json(batch)
        line = await c.read_line()
        assert line is not None and len(line) <= LIMIT + 200 * 300  # the limit, plus short errors
        replies = json.loads(line)
        assert [r["id"] for r in replies] == list(range(200))
        ran = [r for r in replies if "result" in r]
        assert 10 < len(ran) < 200 and replies[: len(ran)] == ran  # a prefix of the batch ran
        over = replies[len(ran)]["error"]
        assert over["code"] == LIMIT_EXCEEDED and over["data"]["executed"] is True
        assert all(r["error"]["data"] == {"limit": LIMIT, "executed": False} for r in replies[len(ran) + 1 :])
        # the connection and the node carry on
        assert (await c.call(req("chain_getBlock", {"height": 1, "full": True}, id="again")))["result"]
        await c.aclose()
