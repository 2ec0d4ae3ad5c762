"""The console's ASGI app against a real in-process node (fast: no processes, no browser).

The node is the real one (LevelDB in a temporary datadir, no P2P network) and the app reads
it through the same query layer the IPC server serves; txs are signed with the app-test
harness's named keys (medchaind.testing.appkit) and submitted to the node directly. Over
ASGI (httpx's transport) for the pages; over a real socket (hypercorn's trio worker) for
the live stream, the bind failure and the token file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from medchaind.console import svg
from medchaind.console.app import Console
from medchaind.console.auth import COOKIE, TOKEN_FILE, load_token
from medchaind.console.kit import Edge, Graph, Node
from medchaind.console.server import ConsoleServer, attach_console
from medchaind.console.source import NodeSource
from medchaind.errors import ConfigError
from medchaind.node.config import load_config
from medchaind.node.init import init_datadir
from medchaind.node.node import Node as MedNode
from medchaind.testing.appkit import enc_key, key
from medchaind.types import sign_tx

TOKEN = "t" * 40


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mccon-"))  # Unix socket paths must stay short
    yield d
    shutil.rmtree(d, ignore_errors=True)


@asynccontextmanager
async def running(base: Path) -> AsyncIterator[MedNode]:
    cfg, genesis, keys = init_datadir(base / "node")
    node = MedNode(cfg, genesis, keys)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        try:
            yield node
        finally:
            nursery.cancel_scope.cancel()


async def commit(node: MedNode, name: str, type_: str, body: dict[str, Any]) -> str:
    _, nonce = node.next_nonce(key(name).public_key)
    tx = sign_tx(key(name), node.genesis.chain_id, type_, nonce, body)
    node.submit(tx)
    with trio.fail_after(10):
        await node.wait_tx(tx.hash)
    return "0x" + tx.hash.hex()


def client(console: Console, *, token: str | None = TOKEN) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=console.app), base_url="http://console",
                             headers=headers)


async def test_pages_show_the_chain_and_follow_a_block_to_its_txs(short_tmp: Path) -> None:
    async with running(short_tmp) as node:
        console = Console(NodeSource(node), TOKEN)
        h1 = await commit(node, "P", "identity.register", {"role": "patient", "enc_key": enc_key("P")})
        h2 = await commit(node, "Q", "identity.register", {"role": "patient", "enc_key": enc_key("Q")})
        async with client(console) as c:
            r = await c.get("/")
            assert r.status_code == 200
            assert "identity.register × 1" in r.text and 'id="recent-blocks"' in r.text
            assert r.text.count("<svg class=\"chart\"") == 3  # tx/s, block time, round changes
            height = node.ledger.height
            r = await c.get(f"/block/{height}")
            assert r.status_code == 200 and f'href="/tx/{h2}"' in r.text and "identity.register" in r.text
            r = await c.get(f"/tx/{h1}")
            assert r.status_code == 200 and h1 in r.text and "committed" in r.text
            assert (await c.get(f"/search?q={height}")).headers["location"] == f"/block/{height}"
            assert (await c.get(f"/search?q={h1}")).headers["location"] == f"/tx/{h1}"
            for path, needle in (("/consensus", "Votes this round"), ("/authorities", "Scheduled changes"),
                                 ("/peers", "no P2P network"), ("/mempool", "By type"), ("/sync", "in step"),
                                 ("/blocks", f'data-height="{height}"'), ("/m", "Supply chain"),
                                 ("/m/supply", 'id="form-unit"')):
                r = await c.get(path)
                assert r.status_code == 200 and needle in r.text, path
            # an identity's pages: records' audit log of a patient with no reads
            r = await c.get("/m/records/audit", params={"patient": "0x" + key("P").public_key.hex()})
            assert r.status_code == 200 and "no reads and no consents" in r.text
            # bad and unknown input: a clear 400 / 404, never a 500
            assert (await c.get("/block/zz")).status_code == 400
            assert (await c.get(f"/block/{height + 50}")).status_code == 404
            assert (await c.get("/tx/0x" + "00" * 32)).status_code == 404
            r = await c.get("/m/supply/unit", params={"oid": "nothex"})
            assert r.status_code == 400 and "oid must be hex" in r.text
            assert (await c.get("/m/supply/unit")).status_code == 400
            assert (await c.get("/m/trials/trial", params={"trial": "NCT00000000"})).status_code in (400, 404)
            assert (await c.get("/m/nope/x")).status_code == 404
            # read-only: nothing but GET
            assert (await c.post("/", content=b"x")).status_code == 405


async def test_the_token_gate(short_tmp: Path) -> None:
    async with running(short_tmp) as node:
        console = Console(NodeSource(node), TOKEN)
        async with client(console, token=None) as c:
            for path in ("/", "/block/1", "/m/supply/cases", "/events", "/static/console.css"):
                r = await c.get(path)
                assert r.status_code == 401 and "needs its access token" in r.text, path
            assert (await c.get("/", headers={"authorization": "Bearer wrong"})).status_code == 401
            assert (await c.get("/?token=wrong")).status_code == 401
            assert (await c.get("/", headers={"cookie": f"{COOKIE}={TOKEN}"})).status_code == 401  # not the token
            r = await c.get("/blocks?token=" + TOKEN + "&before=5")
            assert r.status_code == 303 and r.headers["location"] == "/blocks?before=5"  # the token leaves the URL
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
            r = await c.get("/", headers={"cookie": cookie.split(";")[0]})
            assert r.status_code == 200
            for h in ("content-security-policy", "x-frame-options", "referrer-policy"):
                assert h in r.headers
            assert "script-src 'self'" in r.headers["content-security-policy"]


async def test_live_blocks_over_server_sent_events_and_the_token_file(short_tmp: Path) -> None:
    async with running(short_tmp) as node:
        token = load_token(node.config.datadir)
        path = node.config.datadir / TOKEN_FILE
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and load_token(node.config.datadir) == token
        server = ConsoleServer(lambda: Console(NodeSource(node), token), "127.0.0.1:0")
        async with trio.open_nursery() as nursery:
            url = await nursery.start(server.serve)
            async with httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {token}"},
                                         timeout=10) as c:
                assert (await c.get("/")).status_code == 200
                async with c.stream("GET", "/events") as r:
                    assert r.headers["content-type"].startswith("text/event-stream")
                    lines = r.aiter_lines()
                    assert (await lines.__anext__()).startswith("retry:")
                    h = await commit(node, "P", "identity.register", {"role": "patient", "enc_key": enc_key("P")})
                    with trio.fail_after(10):
                        async for line in lines:
                            if line.startswith("data: "):
                                event = json.loads(line[6:])
                                break
                    assert event["height"] == node.ledger.height and event["types"] == {"identity.register": 1}
                    assert h  # the tx is in that block
            # a port in use is a startup error naming the setting (as metrics.listen)
            with socket.socket() as taken:
                taken.bind(("127.0.0.1", 0))
                taken.listen(1)
                port = taken.getsockname()[1]
                with pytest.raises(ConfigError, match=f"console.listen 127.0.0.1:{port}: Address already in use"):
                    await ConsoleServer(lambda: Console(NodeSource(node), token), f"127.0.0.1:{port}").serve()
            nursery.cancel_scope.cancel()


def test_console_settings(tmp_path: Path) -> None:
    init_datadir(tmp_path / "n")
    cfg = load_config(tmp_path / "n", env={})
    assert cfg.console.listen == ""  # off by default
    cfg = load_config(tmp_path / "n", env={"MEDCHAIND_CONSOLE_LISTEN": "127.0.0.1:9470"})
    assert cfg.console.listen == "127.0.0.1:9470"
    assert load_config(tmp_path / "n", env={}, overrides={"console.listen": "127.0.0.1:0"}).console.listen
    for bad in ("9470", "127.0.0.1:99999", "127.0.0.1:x"):
        with pytest.raises(ConfigError, match="console.listen must be host:port"):
            load_config(tmp_path / "n", env={"MEDCHAIND_CONSOLE_LISTEN": bad})
    (tmp_path / "n" / "config.toml").write_text((tmp_path / "n" / "config.toml").read_text().replace(
        '[console]\nlisten = ""', '[console]\nlisten = "127.0.0.1:9471"'))
    assert load_config(tmp_path / "n", env={}).console.listen == "127.0.0.1:9471"
    # off: nothing is added to the node; on: one service
    node = MedNode.__new__(MedNode)
    node.config, node.services = load_config(tmp_path / "n", env={"MEDCHAIND_CONSOLE_LISTEN": ""}), []
    assert attach_console(node) is None and node.services == []
    node.config = load_config(tmp_path / "n", env={})
    assert attach_console(node) is not None and len(node.services) == 1


def test_svg_escapes_and_lays_out() -> None:
    g = Graph("t", [Node("a", "<script>x</script>", "s&b"), Node("b", "B"), Node("c", "C")],
              [Edge("a", "b", "<l>"), Edge("a", "c")], layout="tree")
    out = svg.graph(g)
    assert "<script>" not in out and "&lt;script&gt;" in out and "s&amp;b" in out and out.count("<line") == 2
    chart = svg.bar_chart("x<y", [0.0, 1.0, 3.0])
    assert "x&lt;y" in chart and chart.count("<rect") == 2


def test_the_hour_of_history_behind_the_charts() -> None:
    from medchaind.console.history import WINDOW_MS, History, backfill
    from medchaind.console.source import BlockSummary

    def block(h: int, t: int, txs: int = 1, rnd: int = 0) -> BlockSummary:
        return BlockSummary(h, f"0x{h:064x}", t, rnd, "0x00", txs, 0, {"anchor.commit": txs}, 1, 0.0)

    now = 10 * WINDOW_MS
    hist = History()
    hist.add(block(10, now - 30_000, txs=60, rnd=2))
    hist.add(block(10, now - 20_000))  # a height seen twice counts once
    hist.add(block(11, now - 29_000, txs=120))
    stored = {h: block(h, now - 61_000 * (10 - h)) for h in range(1, 10)}
    stored[1] = block(1, now - 2 * WINDOW_MS)  # older than the hour: not read back
    trio.run(backfill, hist, 9, stored.get, now)
    assert [b.height for b in hist.blocks] == list(range(2, 12))
    s = hist.series(now)
    assert len(s["tps"]) == 60 and s["tps"][-1] == 3.0  # 180 txs in the last minute
    assert s["rounds"][-1] == 2.0 and s["block_time"][-1] == 16.0  # 9 -> 10: 31 s, 10 -> 11: 1 s
    assert [b.height for b in hist.recent(3)] == [11, 10, 9]
