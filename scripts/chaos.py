"""Chaos run: 4 authorities (real processes, libp2p on 127.0.0.1) under steady client load;
every few seconds SIGKILL a random authority and restart it. Afterwards every node must
hold the same chain and every tx a client saw committed.

    .venv/bin/python scripts/chaos.py [SEED] [SECONDS]      (default 1 60)

Prints kills, acknowledged txs, final heights, missing acknowledged txs (must be 0) and
the ERROR lines of each node's log. A shorter seeded version runs in the suite
(tests/e2e/test_network.py::test_random_kills_under_load_lose_nothing_and_never_fork).
"""

import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from medchaind import crypto
from medchaind.client import Client
from medchaind.node.init import init_testnet
from medchaind.testing.nodeproc import NodeProcess, free_port_range
from medchaind.types import sign_tx

CHAIN = "chaos"
root = Path(tempfile.mkdtemp(prefix="mcchaos-"))
cfgs = init_testnet(root / "net", 4, chain_id=CHAIN, base_port=free_port_range(4, start=43000))
nodes = [NodeProcess(c.datadir, c.datadir / "node.log", command="run") for c, _ in cfgs]
for n in nodes:
    n.start()
time.sleep(3)
rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
stop = threading.Event()
acked: list[str] = []


def load():
    while not stop.is_set():
        i = rng.randrange(4)
        try:
            with Client(nodes[i].ipc, timeout=10) as c:
                kp = crypto.KeyPair.generate()
                tx = sign_tx(
                    kp.signing, CHAIN, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key}
                )
                h = c.submit(tx)
                st = c.wait(h, timeout_ms=8000)
                if st["status"] == "committed":
                    acked.append(h)
        except Exception:
            time.sleep(0.1)


threads = [threading.Thread(target=load) for _ in range(4)]
for t in threads:
    t.start()
t0 = time.time()
kills = 0
try:
    while time.time() - t0 < (float(sys.argv[2]) if len(sys.argv) > 2 else 60):
        time.sleep(rng.uniform(2, 5))
        victim = nodes[rng.randrange(4)]
        victim.stop(signal.SIGKILL)
        kills += 1
        time.sleep(rng.uniform(0.5, 3))
        victim.start()
finally:
    stop.set()
    for t in threads:
        t.join()
time.sleep(5)
heights = []
for n in nodes:
    with n.client() as c:
        heights.append(c.head()["height"])
print("kills", kills, "acked", len(acked), "heights", heights)
deadline = time.time() + 60
while time.time() < deadline and len(set(heights)) > 1:
    time.sleep(1)
    heights = []
    for n in nodes:
        with n.client() as c:
            heights.append(c.head()["height"])
top = min(heights)
for h in range(1, top + 1):
    hs = set()
    for n in nodes:
        with n.client() as c:
            hs.add(c.block(height=h)["header"]["hash"])
    assert len(hs) == 1, f"fork at {h}"
missing = 0
for n in nodes:
    with n.client() as c:
        missing += sum(1 for h in acked if c.tx(h)["status"] != "committed")
print("final heights", heights, "missing acked", missing)
for i, n in enumerate(nodes):
    errs = [line for line in n.log().splitlines() if "level=error" in line or "Traceback" in line]
    print(f"node{i} errors:", len(errs), errs[:3])
for n in nodes:
    n.stop(signal.SIGTERM)
shutil.rmtree(root, ignore_errors=True)
