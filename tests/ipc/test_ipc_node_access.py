"""IPC access control on a real in-process node, with a second real uid (issue 9, gap
"IPC access control"): the node's own user (root here) may call everything; another user
let onto the socket by ``ipc.group`` gets the read-only default set, plus what
``[ipc.access.<name>]`` rules grant its uid or its groups; refusals name the namespace;
``rpc_modules`` shows what the caller may call; the reserved connection slots keep the
node's own user able to connect when another user has filled the rest.

The second uid is ``nobody`` in a forked child (tests/ipc/other_user.py), so these tests
need root and are skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from ipc_harness import RawConn, req
from node_kit import running_node, state_of
from other_user import NOBODY, NOGROUP, SKIP_REASON, OtherUser, can_switch_uid, open_to_group

from medchaind.ipc import ACCESS_DENIED, LIMIT_EXCEEDED, AccessRule

pytestmark = pytest.mark.skipif(not can_switch_uid(), reason=SKIP_REASON)

DEFAULT_SET = {"chain": "1.0", "consensus": "1.0", "mempool": "1.0", "node": "1.0", "rpc": "1.0", "tx": "1.0"}
PATIENT = "0x" + "11" * 32
AUDITORS = 4242  # a supplementary group of the child in one test


@pytest.fixture
def socket_dir(short_dir: Path) -> Iterator[Path]:
    """A directory the other uid can reach (the datadir stays 0700)."""
    open_to_group(short_dir)
    d = short_dir / "sock"
    d.mkdir()
    open_to_group(d)
    yield d


async def _root_conn(path: Path) -> RawConn:
    return RawConn(await trio.open_unix_socket(str(path)))


async def test_other_uid_gets_the_read_only_default(short_dir: Path, socket_dir: Path) -> None:
    path = socket_dir / "n.ipc"
    async with running_node(short_dir, path=str(path), group="nogroup") as node:
        before = state_of(node)
        other = OtherUser.start()
        c = await other.connect(path)
        assert (await other.call(c, "rpc_modules"))["result"] == DEFAULT_SET
        for method, params, namespace in [
            ("admin_backup", {"path": str(short_dir / "stolen")}, "admin"),
            ("admin_banPeer", {"peer_id": "12D3KooWNZycbRThbcG4rmnztSrRcJUAVJbP8JowVGfLK8Fqu5om"}, "admin"),
            ("records_list", {"patient": PATIENT}, "records"),
            ("audit_log", {"patient": PATIENT}, "audit"),
            ("consent_list", {"patient": PATIENT}, "consent"),
            ("identity_get", {"public_key": PATIENT}, "identity"),
        ]:
            err = (await other.call(c, method, params))["error"]
            assert err["code"] == ACCESS_DENIED, (method, err)
            assert f"namespace '{namespace}'" in err["message"] and f"uid {NOBODY}" in err["message"]
            assert "[ipc.access.<name>]" in err["message"]
        # what the default allows: reads of the chain and node, tx submission
        assert (await other.call(c, "node_health"))["result"]["ok"] is True
        assert "result" in await other.call(c, "chain_head")
        assert (await other.call(c, "tx_nonce", {"sender": PATIENT}))["result"] == {"committed": 0, "next": 0}
        assert (await other.call(c, "tx_submit", {"tx": "0x00"}))["error"]["code"] == -32001  # checked, not refused
        assert (await other.call(c, "tx_submitBatch", {"txs": "AA=="}))["error"]["code"] == -32602  # the same
        # topics belong to the namespace of their publisher
        assert "result" in await other.call(c, "subscribe", {"topic": "newHeads"})
        err = (await other.call(c, "subscribe", {"topic": "patient", "patient": PATIENT}))["error"]
        assert err["code"] == ACCESS_DENIED and "topic 'patient' (namespace 'records')" in err["message"]
        await other.aclose()
        assert state_of(node) == before
        assert not (short_dir / "stolen").exists()
        # the node's own user (root here) may call everything
        mine = await _root_conn(path)
        modules = (await mine.call(req("rpc_modules")))["result"]
        assert {"admin", "records", "audit", "consent", "identity"} <= set(modules)
        ban = req("admin_banPeer", {"peer_id": "12D3KooWNZycbRThbcG4rmnztSrRcJUAVJbP8JowVGfLK8Fqu5om"})
        assert (await mine.call(ban))["result"] is True
        await mine.aclose()


async def test_rules_grant_namespaces_by_uid_and_by_group(short_dir: Path, socket_dir: Path) -> None:
    path = socket_dir / "n.ipc"
    rules = (
        AccessRule("patient-app", frozenset({"records", "consent", "identity"}), uids=frozenset({NOBODY})),
        AccessRule("auditors", frozenset({"audit"}), gids=frozenset({AUDITORS})),
    )
    async with running_node(short_dir, path=str(path), group="nogroup", access=rules):
        plain = OtherUser.start()
        c = await plain.connect(path)
        modules = (await plain.call(c, "rpc_modules"))["result"]
        assert set(modules) == set(DEFAULT_SET) | {"records", "consent", "identity"}
        assert "result" in await plain.call(c, "records_list", {"patient": PATIENT})
        assert "result" in await plain.call(c, "subscribe", {"topic": "patient", "patient": PATIENT})
        assert (await plain.call(c, "audit_log", {"patient": PATIENT}))["error"]["code"] == ACCESS_DENIED
        assert (await plain.call(c, "admin_backup", {"path": "/x"}))["error"]["code"] == ACCESS_DENIED
        await plain.aclose()

        auditor = OtherUser.start(groups=(NOGROUP, AUDITORS))  # audit via a supplementary group
        c = await auditor.connect(path)
        assert "audit" in (await auditor.call(c, "rpc_modules"))["result"]
        assert "result" in await auditor.call(c, "audit_log", {"patient": PATIENT})
        assert (await auditor.call(c, "admin_banPeer", {"peer_id": "12D3KooW"}))["error"]["code"] == ACCESS_DENIED
        await auditor.aclose()


async def test_the_node_user_keeps_reserved_slots(short_dir: Path, socket_dir: Path) -> None:
    path = socket_dir / "n.ipc"
    async with running_node(short_dir, path=str(path), group="nogroup", max_connections=4, reserved_connections=2):
        other = OtherUser.start()
        first = [await other.connect(path) for _ in range(2)]
        for c in first:
            assert "result" in await other.call(c, "node_health")
        refused = await other.connect(path)
        msg = await other.read(refused)
        assert msg is not None and msg["error"]["code"] == LIMIT_EXCEEDED
        assert "2 are reserved for the node's own user" in msg["error"]["message"]
        assert await other.read(refused) is None  # then closed
        # the operator still gets in, twice, while the other user holds its slots
        mine = [await _root_conn(path) for _ in range(2)]
        for m in mine:
            assert (await m.call(req("node_health")))["result"]["ok"] is True
        for m in mine:
            await m.aclose()
        await other.aclose()
