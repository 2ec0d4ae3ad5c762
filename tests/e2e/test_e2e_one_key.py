"""End-to-end: a copy of an authority started with the same key refuses to sign (issue 9).

"One key, one running authority": a restored backup ran beside its original with the
same authority key and nothing noticed. The double-sign check at start looks for the
key's signatures in recent blocks, which a copy of the datadir (its WAL included) does
not reveal; with one authority both copies simply kept committing their own blocks, a
fork. Now the copy, whose bootstrap list names the original's address with *its own*
peer id, dials it, finds its own key answering there, and both processes stop signing
and say why (log, ``consensus_status.signing``, ``node_network.identity_conflicts``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from medchaind import crypto
from medchaind.client import Client
from medchaind.testing.nodeproc import NodeProcess, _cmd, free_port_range
from medchaind.testing.wait import wait_until
from medchaind.types import sign_tx

pytestmark = pytest.mark.e2e


def signing(node: NodeProcess) -> dict[str, object]:
    with node.client() as c:
        status: dict[str, object] = c.call("consensus_status")["signing"]
        return status


def submit_one(node: NodeProcess) -> str:
    kp = crypto.KeyPair.generate()
    with node.client() as c:
        tx = sign_tx(kp.signing, c.chain_id, "identity.register", 0,
                     {"role": "patient", "enc_key": kp.encryption.public_key})
        return c.submit(tx)


def test_a_copy_running_with_the_same_key_makes_both_refuse_to_sign(short_tmp: Path) -> None:
    a_dir, b_dir = short_tmp / "a", short_tmp / "b"
    subprocess.run(_cmd("medchaind") + ["init", "--datadir", str(a_dir)], check=True, capture_output=True,
                   timeout=60)
    shutil.copytree(a_dir, b_dir)  # the copy: same key, same genesis, same (empty) chain and WAL
    port = free_port_range(2)
    original = NodeProcess(a_dir, short_tmp / "a.log", command="run",
                           env={"MEDCHAIND_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{port}"})
    copy = None
    try:
        original.start()
        with original.client() as c:
            peer_id = c.node_info()["peer_id"]
        # what a copied config would hold: the original's address, with this key's peer id
        copy = NodeProcess(b_dir, short_tmp / "b.log", command="run", env={
            "MEDCHAIND_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{port + 1}",
            "MEDCHAIND_P2P_BOOTSTRAP": f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}",
        })
        copy.start()
        for node in (original, copy):
            wait_until(lambda n=node: peer_id in str(signing(n)["reason"]), timeout=10,  # type: ignore[misc]
                       what=f"{node.datadir.name} to stop signing because its peer id is seen elsewhere")
            status = signing(node)
            assert status["validator"] is True and status["signing"] is False, status
            with node.client() as c:
                assert int(c.call("node_network")["identity_conflicts"]) >= 1
        assert "answered at 127.0.0.1:" in str(signing(copy)["reason"])
        assert "connected from 127.0.0.1:" in str(signing(original)["reason"])
        for node in (original, copy):
            log = node.log()
            assert "another process is running with this node's key" in log, log[-3000:]
            assert "Stop the other copy" in log
            assert "Traceback" not in log
        # and neither signs: a tx stays pending on each (before, each committed its own block 1)
        # (a lone authority commits a tx within milliseconds: 1.5 s in all is ample)
        hashes = {node.datadir.name: submit_one(node) for node in (original, copy)}
        for node, wait_ms in ((original, 1500), (copy, 100)):
            with Client(node.ipc, timeout=10) as c:
                assert c.wait(hashes[node.datadir.name], timeout_ms=wait_ms)["status"] != "committed"
                assert int(c.node_info()["height"]) == 0
    finally:
        for node in (copy, original):
            if node is not None and node.proc is not None and node.proc.poll() is None:
                node.stop(signal.SIGKILL)
