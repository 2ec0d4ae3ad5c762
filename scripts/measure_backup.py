"""Measure `medchaind backup` on a dev node holding N committed identity txs.

    .venv/bin/python scripts/measure_backup.py [N]      (default 20000)

Prints the chain height, the chaindata size, and the backup's wall time (including the
CLI's start-up), key count and bytes. Uses a temporary directory.
"""
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from medchaind import crypto
from medchaind.testing.nodeproc import NodeProcess, _cmd
from medchaind.types import sign_tx

root = Path(tempfile.mkdtemp(prefix="mcbk-"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
n = NodeProcess(root / "node", root / "node.log")
n.start()
try:
    with n.client(timeout=120) as c:
        chain = c.chain_id
        hashes = []
        for _ in range(N):
            kp = crypto.KeyPair.generate()
            tx = sign_tx(kp.signing, chain, "identity.register", 0,
                         {"role": "patient", "enc_key": kp.encryption.public_key})
            hashes.append(c.submit(tx))
            if len(hashes) % 2000 == 0:
                c.wait(hashes[-1], timeout_ms=120000)
        c.wait(hashes[-1], timeout_ms=120000)
        print("height", c.head()["height"])
    du = subprocess.run(["du", "-sh", str(root / "node" / "chaindata")], capture_output=True, text=True).stdout
    print("chaindata", du.strip())
    t = time.monotonic()
    res = subprocess.run(_cmd("medchaind") + ["backup", "--ipc", str(n.ipc), "--out", str(root / "backup")],
                         capture_output=True, text=True)
    dt = time.monotonic() - t
    m = json.loads(res.stdout)
    print("backup s", round(dt, 2), "keys", m["keys"], "bytes", m["bytes"], "height", m["height"])
finally:
    n.stop(signal.SIGTERM)
    subprocess.run(["rm", "-rf", str(root)])
