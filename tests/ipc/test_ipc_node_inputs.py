"""Bad input to the node's own methods is -32602 naming the parameter, never -32603, and
changes nothing (issue 9, defect 8 and the peer-id check of defect 9), on a real node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from ipc_harness import RawConn, req
from node_kit import running_node, state_of

from medchaind.ipc import INTERNAL_ERROR, INVALID_PARAMS
from medchaind.node.node import Node

VALID_PEER = "12D3KooWNZycbRThbcG4rmnztSrRcJUAVJbP8JowVGfLK8Fqu5om"


@pytest.fixture
async def node(short_dir: Path) -> Any:
    async with running_node(short_dir) as n:
        yield n


async def _conn(node: Node) -> RawConn:
    return RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))


async def _expect_invalid(c: RawConn, method: str, params: Any, names: str) -> str:
    reply = await c.call(req(method, params))
    assert "error" in reply, (method, params, reply)
    err = reply["error"]
    assert err["code"] != INTERNAL_ERROR
    assert err["code"] == INVALID_PARAMS, (method, params, err)
    assert names in err["message"], (method, params, err)
    return str(err["message"])


@pytest.mark.parametrize(
    "path",
    [
        "/tmp/mc-backup\x00evil",  # NUL: every os call would raise ValueError
        "/tmp/mc-backup-\ud800",  # a lone surrogate: not encodable for the file system
        "/tmp/mc-backup-\udcff",  # ... even the kind surrogateescape would encode
        "/" + "a" * 300,  # a name over NAME_MAX: ENAMETOOLONG from the file system
        "/tmp/" + "d/" * 3000,  # a path over PATH_MAX
        "backups/today",  # relative
        "",
        "/nonexistent-mc-parent/sub/backup",  # the parent does not exist
        "/",  # exists and is not empty
        42,
        None,
        ["/tmp/x"],
    ],
)
async def test_admin_backup_bad_path_is_invalid_params(node: Node, path: Any) -> None:
    before = state_of(node)
    c = await _conn(node)
    await _expect_invalid(c, "admin_backup", {"path": path}, "path")
    assert state_of(node) == before


async def test_admin_backup_bad_path_over_the_wire_escape(node: Node) -> None:
    # exactly as a hostile client sends it: JSON escapes, not Python strings
    c = await _conn(node)
    for raw in (b'"/tmp/x\\u0000y"', b'"/tmp/\\ud83d"', b'"/tmp/\\udfff\\ud800"'):
        await c.send(b'{"jsonrpc":"2.0","id":1,"method":"admin_backup","params":{"path":' + raw + b"}}\n")
        err = (await c.read_json())["error"]
        assert err["code"] == INVALID_PARAMS and "path" in err["message"], err


@pytest.mark.parametrize(
    "peer",
    [
        "\u0661\u0662\u0663",  # Arabic-Indic digits: str.isalnum() is true
        "Ⅻ",  # a Roman numeral letter
        "12D3KooWé",
        "12D3KooW0NZy",  # '0' is not base58
        "12D3KooWONZy",  # nor 'O', 'I', 'l'
        "12D3 KooW",
        "",
        "1" * 129,
        5,
        None,
    ],
)
async def test_ban_peer_accepts_only_base58(node: Node, peer: Any) -> None:
    c = await _conn(node)
    for method in ("admin_banPeer", "admin_unbanPeer"):
        await _expect_invalid(c, method, {"peer_id": peer}, "peer_id must be a base58 libp2p peer id")
    assert node.banned == set()


async def test_ban_peer_with_a_real_peer_id(node: Node) -> None:
    c = await _conn(node)
    assert (await c.call(req("admin_banPeer", {"peer_id": VALID_PEER})))["result"] is True
    assert node.banned == {VALID_PEER}
    assert (await c.call(req("admin_unbanPeer", {"peer_id": VALID_PEER})))["result"] is True
    assert node.banned == set()


@pytest.mark.parametrize(
    ("method", "params", "names"),
    [
        ("node_info", {"verbose": True}, "unknown param(s) ['verbose']; this method takes no params"),
        ("chain_getBlock", {"height": 1, "ful": True}, "unknown param(s) ['ful']; expected ['height', 'hash', 'full']"),
        ("chain_getBlock", {"height": 1, "full": "yes"}, "full must be a boolean"),
        ("chain_getBlock", {"height": 0}, "height must be an integer in 1.."),
        ("chain_getBlock", {"height": True}, "height must be an integer"),
        ("chain_getBlock", {"hash": "0x" + "1 " * 32}, "hash is not valid hex"),
        ("chain_getTx", {"hash": "0x" + "ab" * 31 + "a"}, "hash is not valid hex"),
        ("chain_getTx", {"hash": "0x" + "٣" * 64}, "hash is not valid hex"),
        ("tx_submit", {"tx": "0x", "blob": 7}, "blob must be a 0x-prefixed hex string"),
        ("tx_wait", {"hash": "0x" + "00" * 32, "timeout_ms": -1}, "timeout_ms must be an integer in 0..600000"),
        ("chain_waitHeight", {"height": 2**64}, "height must be an integer in 0.."),
        ("admin_backup", {"path": "/tmp/x", "mode": "fast"}, "unknown param(s) ['mode']"),
        ("node_info", {"x" * 1000: 1}, "unknown param(s) ['" + "x" * 40 + "…']"),
        ("tx_nonce", ["0x" + "00" * 32], "params must be an object with named fields"),
    ],
)
async def test_bad_params_name_the_parameter(node: Node, method: str, params: Any, names: str) -> None:
    before = state_of(node)
    c = await _conn(node)
    await _expect_invalid(c, method, params, names)
    assert state_of(node) == before


async def test_error_messages_stay_small(node: Node) -> None:
    c = await _conn(node)
    reply = await c.call(req("chain_getBlock", {"k" * 100_000: 1, "j" * 100_000: 2}))
    assert len(json.dumps(reply)) < 2_000
