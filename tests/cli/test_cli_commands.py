"""The operator and scripting commands, through the real entry points against a real node:
``medchain rpc``, ``medchain admin``, ``medchaind peer-id``, ``--version``, weak-passphrase
warnings (issue 13)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from medchaind.net.libp2p_net import peer_id_from_public_key
from medchaind.testing.nodeproc import NodeProcess, _cmd, run_cli

pytestmark = pytest.mark.e2e


def test_rpc_admin_and_version(node: NodeProcess, tmp_path: Path) -> None:
    env = {"MEDCHAIN_IPC": str(node.ipc), "MEDCHAIN_HOME": str(tmp_path / "home")}
    health = json.loads(run_cli("rpc", "node_health", env=env).stdout)
    assert health["ok"] is True
    assert json.loads(run_cli("rpc", "identity_list", '{"limit": 1}', env=env).stdout) == []
    bad = run_cli("rpc", "chain_getBlock", "{not json", env=env, check=False)
    assert bad.returncode == 1 and "PARAMS is not JSON" in bad.stderr
    refused = run_cli("rpc", "no_suchMethod", env=env, check=False)
    assert refused.returncode == 1 and "node refused" in refused.stderr

    peer = "12D3KooWMNViDdDTJu4EGNHDDgXTXV4HEV24CZUhWNLELypLeusp"
    assert json.loads(run_cli("admin", "ban-peer", peer, env=env).stdout) is True
    assert peer in json.loads(run_cli("rpc", "node_network", env=env).stdout)["banned"]
    assert json.loads(run_cli("admin", "unban-peer", peer, env=env).stdout) is True
    assert peer not in json.loads(run_cli("rpc", "node_network", env=env).stdout)["banned"]
    assert run_cli("admin", "ban-peer", "not a peer!", env=env, check=False).returncode == 1

    for prog in ("medchain", "medchaind"):
        v = subprocess.run(_cmd(prog) + ["--version"], capture_output=True, text=True, timeout=60, check=True).stdout
        assert v.startswith(f"{prog} ") and "protocol 4: tx/v1" in v and "commit " in v


def test_peer_id_matches_the_network_layer() -> None:
    key = bytes(range(32))
    res = subprocess.run(_cmd("medchaind") + ["peer-id", "0x" + key.hex()], capture_output=True, text=True,
                         timeout=60, check=True)
    assert res.stdout.split() == ["0x" + key.hex(), str(peer_id_from_public_key(key))]
    bad = subprocess.run(_cmd("medchaind") + ["peer-id", "0x1234"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "32 bytes" in bad.stderr


def test_keys_new_warns_about_a_weak_passphrase(tmp_path: Path) -> None:
    weak = run_cli("keys", "new", "a", env={"MEDCHAIN_HOME": str(tmp_path), "MEDCHAIN_PASSPHRASE": "pw"})
    assert "weak passphrase (2 characters)" in weak.stderr
    strong = run_cli("keys", "new", "b", env={"MEDCHAIN_HOME": str(tmp_path),
                                              "MEDCHAIN_PASSPHRASE": "correct horse battery staple"})
    assert strong.stderr == ""
