"""Snapshot sync between real processes (docs/protocol.md §13.4, §23.8; issue 15).

Four authorities whose chain already has 2,005 blocks (built offline by
:mod:`medchaind.testing.chainbuild`: live consensus on a loaded test machine makes about
one block a second) and 300 registered identities. They keep a snapshot every 500
blocks, in chunks of 4 KiB; node1 serves every chunk corrupted (the fault-injection
switch ``[sync] fault_corrupt_snapshot_chunks``), node3 serves no snapshots.

* node4, an empty observer with ``--snapshot-sync``, restores the snapshot of height
  2000 from node0 and node2 (banning node1 for its chunks), block-syncs the rest and
  then follows the chain: its base is 2000 and it has no block below it;
* node5, an empty observer with snapshot sync on that can reach node3 only (no snapshot
  available), falls back to block sync from genesis by itself.

Both reach the head with the same ``app_hash`` as the authorities. The chain also holds
patients' records (``records.add`` in block 4, inside the snapshot, and one in block
2003, which node4 re-executes), whose ciphertexts only the authorities' blob stores hold:
node4's blob reconciliation fetches the ones its restored state commits to (it never
executed block 4), node5's block execution the rest; both end up with every ciphertext
byte for byte, hashing to the on-chain ``content_hash``, and node4 serves the patient a
record it decrypts (issue 15, "Record ciphertexts are fetched afterwards by the existing
blob reconciliation").
"""

from __future__ import annotations

import functools
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from medchaind import crypto
from medchaind.client import Client
from medchaind.ipc import RPCError
from medchaind.ledger import Retention
from medchaind.modules.records.encryption import encrypt_record, records_add_body
from medchaind.node.init import init_testnet
from medchaind.store.blobs import FileBlobStore
from medchaind.testing.chainbuild import build_chain, write_datadirs
from medchaind.testing.nodeproc import NodeProcess, call, free_port_range
from medchaind.testing.wait import wait_until
from medchaind.types import Genesis, sign_tx

pytestmark = pytest.mark.e2e

CHAIN = "medchain-snap"
BLOCKS = 2005  # "thousands of blocks" (issue 15); the fallback node replays them all (~45 s here)
INTERVAL = 500


def register(kp: crypto.KeyPair | None = None) -> Any:
    kp = kp or crypto.KeyPair.generate()
    return sign_tx(kp.signing, CHAIN, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key})


def record(patient: crypto.KeyPair, nonce: int, marker: str) -> tuple[Any, bytes, dict[str, Any]]:
    """A ``records.add`` of the patient's own Observation: (tx, ciphertext sidecar, resource)."""
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "snapshot"},
                "valueString": marker}
    enc = encrypt_record(json.dumps(resource, sort_keys=True).encode(),
                         {patient.public_key: patient.encryption.public_key})
    tx = sign_tx(patient.signing, CHAIN, "records.add", nonce, records_add_body(patient.public_key, "Observation", enc))
    return tx, enc.ciphertext, resource


def holds_all(store: FileBlobStore, hashes: set[bytes]) -> bool:
    return all(store.has_blob(h) for h in hashes)


def height(n: NodeProcess) -> int:
    return int(call(n, "node_info")["height"])


def test_a_node_joins_by_snapshot_past_a_corrupt_peer_and_one_without_falls_back() -> None:
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mcsnap-"))
    base = free_port_range(7)
    cfgs = init_testnet(root / "net", 4, observers=2, chain_id=CHAIN, base_port=base)
    genesis = Genesis.from_json((cfgs[0][0].datadir / "genesis.json").read_text())
    patients = [crypto.KeyPair.generate() for _ in range(4)]
    txs = {h: [register() for _ in range(100)] for h in (1, 2, 3)}
    txs[1] += [register(p) for p in patients]
    # three records inside the snapshot (block 4), one in a block after it
    records = [record(p, 1, f"record {i}") for i, p in enumerate(patients)]
    txs[4] = [tx for tx, _, _ in records[:3]]
    txs[BLOCKS - 2] = [records[3][0]]
    blobs = {crypto.sha256(ct): ct for _, ct, _ in records}
    kv = build_chain(genesis, [k.signing for _, k in cfgs[:3]], BLOCKS, txs=txs,
                     retention=Retention(recent=16, snapshot_interval=INTERVAL, snapshot_keep=2))
    write_datadirs(kv, [c.datadir for c, _ in cfgs[:4]], blobs=blobs)
    common = {"MEDCHAIND_LOG_LEVEL": "info", "MEDCHAIND_SYNC_SNAPSHOT_INTERVAL": str(INTERVAL),
              "MEDCHAIND_SYNC_SNAPSHOT_KEEP": "2", "MEDCHAIND_SYNC_PROOF_HISTORY": "16",
              "MEDCHAIND_SYNC_SNAPSHOT_CHUNK_BYTES": "4096",
              # the chain was signed offline: the authorities' fresh WALs do not know those votes
              "MEDCHAIND_CONSENSUS_DOUBLE_SIGN_CHECK_HEIGHT": "0"}
    envs: list[dict[str, str]] = [dict(common) for _ in range(6)]
    envs[1]["MEDCHAIND_SYNC_FAULT_CORRUPT_SNAPSHOT_CHUNKS"] = "true"
    envs[3]["MEDCHAIND_SYNC_SNAPSHOT_INTERVAL"] = "0"
    envs[4].update({"MEDCHAIND_SYNC_SNAPSHOT_SYNC": "true", "MEDCHAIND_SYNC_SNAPSHOT_DISCOVERY_MS": "20000"})
    # node5 reaches node3 only: it listens where no one dials and bootstraps to node3 alone
    node3 = next(a for a in cfgs[5][0].p2p.bootstrap.split(",") if f"/tcp/{base + 3}/" in a)
    envs[5].update({"MEDCHAIND_SYNC_SNAPSHOT_SYNC": "true", "MEDCHAIND_SYNC_SNAPSHOT_DISCOVERY_MS": "3000",
                    "MEDCHAIND_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{base + 6}", "MEDCHAIND_P2P_BOOTSTRAP": node3})
    nodes = [NodeProcess(c.datadir, c.datadir / "node.log", command="run", env=envs[i])
             for i, (c, _) in enumerate(cfgs)]
    try:
        # the observers start once the serving authorities list their snapshot (each plans
        # it in the background after start; on a loaded machine an observer that asked
        # first found node1 not offering it yet and so never met its corrupt chunks)
        for n in nodes[:4]:
            n.spawn()
        for n in nodes[:4]:
            n.wait_ready(timeout=90)
        ready = f"snapshot ready height={BLOCKS - BLOCKS % INTERVAL} "
        wait_until(lambda: all(ready in n.log() for n in nodes[:3]), timeout=60,
                   what="node0..node2 to list their snapshot")
        for n in nodes[4:]:
            n.spawn()
        for n in nodes[4:]:
            n.wait_ready(timeout=90)
        wait_until(lambda: min(height(n) for n in nodes) >= BLOCKS, timeout=240,
                   what="both observers to reach the prebuilt head")
        # a new block by consensus: everyone, the restored node too, executes it
        with Client(nodes[0].ipc, timeout=30) as c:
            c.submit(register())
        wait_until(lambda: min(height(n) for n in nodes) > BLOCKS, timeout=90,
                   what="a block after the prebuilt chain on every node")
        top = min(height(n) for n in nodes)
        hashes = {call(n, "chain_getBlock", {"height": top})["header"]["app_hash"] for n in nodes}
        assert len(hashes) == 1, f"nodes disagree on app_hash at {top}: {hashes}"

        joined = call(nodes[4], "node_syncing")
        assert joined["base_height"] == BLOCKS - BLOCKS % INTERVAL
        snap = joined["snapshot"]
        assert snap["state"] == "restored" and snap["height"] == BLOCKS - BLOCKS % INTERVAL and snap["chunks"] > 1
        bad = call(nodes[1], "node_info")["peer_id"]
        assert bad in snap["faults"] and bad not in snap["served_by"]
        # node0 and node2 (node3 serves none). Not "both": on a starved machine one of them
        # can serve all chunks before the other answers its first (seen at load 16 on two
        # cores: node2 served 22 of 22 in 0.9 s); tests/sync/test_snapshot_fetch.py checks
        # that chunks are spread over several peers.
        servers = {call(nodes[i], "node_info")["peer_id"] for i in (0, 2)}
        assert snap["served_by"] and set(snap["served_by"]) <= servers
        with pytest.raises(RPCError, match="no such block"):  # nothing below its base
            call(nodes[4], "chain_getBlock", {"height": BLOCKS - BLOCKS % INTERVAL - 1})
        assert call(nodes[4], "identity_list", {"limit": 5}) is not None

        # every record's ciphertext reaches both observers, byte for byte, and hashes to
        # the content_hash the chain commits to
        for i in (4, 5):
            listed = [r for p in patients
                      for r in call(nodes[i], "records_list", {"patient": "0x" + p.public_key.hex()})]
            assert len(listed) == len(records)
            assert {bytes.fromhex(r["content_hash"][2:]) for r in listed} == set(blobs)
            heights = sorted(r["created_height"] for r in listed)
            assert heights == [4, 4, 4, BLOCKS - 2]  # three inside node4's snapshot: never executed there
            store = FileBlobStore(cfgs[i][0].datadir / "blobs")
            wait_until(functools.partial(holds_all, store, set(blobs)), timeout=60,
                       what=f"node{i} to fetch every record ciphertext")
            for h, ct in blobs.items():
                got = store.get_blob(h)
                assert got == ct and got is not None and crypto.sha256(got) == h
        with Client(nodes[4].ipc, timeout=30) as c:
            rid = call(nodes[4], "records_list", {"patient": "0x" + patients[0].public_key.hex()})[0]["record_id"]
            assert c.read_record(patients[0], rid) == records[0][2]

        fell_back = call(nodes[5], "node_syncing")
        assert fell_back["base_height"] == 1 and fell_back["snapshot"]["state"] == "fell back to block sync"
        assert call(nodes[5], "chain_getBlock", {"height": 1})["header"]["height"] == 1
        print(f"e2e snapshot sync: {time.monotonic() - t0:.1f} s; snapshot {snap}")
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.stop(signal.SIGKILL)
        for i, n in enumerate(nodes):
            print(f"---- node{i} log (tail) ----")
            print("\n".join(n.log().splitlines()[-25:]))
        import shutil

        if os.environ.get("MEDCHAIND_KEEP_TEST_LOGS"):
            shutil.copytree(root, os.environ["MEDCHAIND_KEEP_TEST_LOGS"], dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.ipc", "chaindata"))
        shutil.rmtree(root, ignore_errors=True)
