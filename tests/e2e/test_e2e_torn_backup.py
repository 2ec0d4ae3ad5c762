"""End-to-end: a node refuses to start on a backup that was cut off mid-copy (issue 9, defect 5).

Found by attack: a backup killed half-way left a directory without ``BACKUP.json``; with
the node's genesis, config and key put beside it (what an operator restoring by hand
does), ``medchaind run`` started it at height 0 although it held blocks 5-60, and after
one tx the same authority key signed a different block 1. Now the run stops at once with
what is wrong and what to do.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from medchaind import crypto
from medchaind.testing.nodeproc import NodeProcess
from medchaind.types import sign_tx

pytestmark = pytest.mark.e2e

CHILD = Path(__file__).resolve().parents[1] / "store" / "torn_backup_child.py"


def commit_some(node: NodeProcess, n: int) -> int:
    with node.client() as c:
        chain = c.chain_id
        hashes = []
        for _ in range(n):
            kp = crypto.KeyPair.generate()
            tx = sign_tx(kp.signing, chain, "identity.register", 0,
                         {"role": "patient", "enc_key": kp.encryption.public_key})
            hashes.append(c.submit(tx))
        for h in hashes:
            assert c.wait(h)["status"] == "committed"
        return int(c.head()["height"])


def test_a_node_refuses_to_start_on_a_backup_killed_mid_copy(node: NodeProcess, short_tmp: Path) -> None:
    height = commit_some(node, 12)
    assert node.stop(signal.SIGTERM) == 0
    n_keys = sum(1 for _ in _keys(node.datadir))
    dest = short_tmp / "backup"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, str(CHILD), str(node.datadir), str(dest), str(n_keys // 2)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 137, res.stdout + res.stderr
    (left,) = [p for p in short_tmp.iterdir() if p.is_dir() and p != node.datadir]
    assert not (left / "BACKUP.json").exists()
    # the operator restores by hand: genesis, config, the key and its passphrase beside the copy
    for name in ("genesis.json", "config.toml"):
        shutil.copy(node.datadir / name, left / name)
    shutil.copytree(node.datadir / "keys", left / "keys", dirs_exist_ok=True)

    restored = NodeProcess(left, short_tmp / "restored.log", command="run")
    try:
        with pytest.raises(AssertionError, match="node exited with 1"):
            restored.start(timeout=60)
    finally:
        if restored.proc is not None and restored.proc.poll() is None:
            restored.stop(signal.SIGKILL)
    log = restored.log()
    assert "incomplete copy" in log and "Do not run a node on it" in log, log[-3000:]
    assert "take a new backup" in log
    assert "Traceback" not in log
    assert height >= 1


def _keys(datadir: Path) -> list[bytes]:
    from medchaind.store import LevelDBKV

    kv = LevelDBKV.open(datadir / "chaindata")
    try:
        return [k for k, _ in kv.iterate(b"")]
    finally:
        kv.close()
