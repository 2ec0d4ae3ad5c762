"""The short, seeded IPC fuzzer (issue 9): a few thousand hostile inputs against a real
in-process node over its socket, with clients that never read and clients that stop
halfway through a request alongside.

Asserts: no reply is -32603 and the node logs no handler failure; the node answers a
sentinel after every input; the non-reading and half-written clients are closed; the
node's state (chain, app hash, mempool, bans, datadir) is unchanged. A failure prints the
seed and the input; ``scripts/fuzz_ipc.py --seed N`` replays and extends it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
from ipc_harness import RawConn, req
from node_kit import running_node, state_of

from medchaind.node.rpc import method_params
from medchaind.testing.ipcfuzz import InputMaker, run

SEED = 20240609
COUNT = 3000


async def test_ipc_fuzz_short(short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running_node(
        short_dir,
        max_request_bytes=1 << 20,  # small bounds, so hostile inputs reach them quickly
        max_reply_bytes=256 * 1024,
        send_queue_bytes=256 * 1024,
        read_timeout_ms=500,
    ) as node:
        before = state_of(node)
        maker = InputMaker(SEED, method_params(node.app), node.hub.topics())
        report = await run(
            node.config.ipc_path,
            maker,
            seed=SEED,
            count=COUNT,
            time_limit=120,
            non_reading=2,
            half_written=3,
            half_written_wait=10,
        )
        print(report.summary())
        assert report.failures == [], f"{report.summary()}\n" + "\n".join(report.failures[:10])
        assert report.inputs == COUNT
        assert report.slow_closed == 2 and report.half_closed == 3
        # every kind of refusal was exercised, none of them internal
        assert {-32700, -32600, -32601, -32602} <= set(report.codes)
        assert -32603 not in report.codes
        after = state_of(node)
        changed = {k: (v, vars(after)[k]) for k, v in vars(before).items() if vars(after)[k] != v}
        assert changed == {}
        # every hostile connection is gone and freed, and a well-behaved client is served
        with trio.fail_after(10):
            for conn in node.ipc_server.connections():
                await conn.wait_closed()
        assert node.ipc_server.statistics().queued_bytes == 0
        c = RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))
        assert (await c.call(req("node_health")))["result"]["ok"] is True
        await c.aclose()
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failed == []  # e.g. "ipc handler failed", logged for every -32603
