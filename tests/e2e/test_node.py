"""End-to-end: a real dev node, driven through the ``medchain`` CLI and raw IPC JSON."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from medchaind import crypto
from medchaind.client import RPCError
from medchaind.testing.nodeproc import NodeProcess, run_cli
from medchaind.types import sign_tx

pytestmark = pytest.mark.e2e


def raw_call(path: Path, obj: object) -> dict:
    """One request as a single line of JSON on a fresh connection, like `nc -U`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        s.sendall(json.dumps(obj).encode() + b"\n")
        f = s.makefile("rb")
        return json.loads(f.readline())


def test_cli_register_and_accredit(node: NodeProcess, short_tmp: Path) -> None:
    env = {"MEDCHAIN_IPC": str(node.ipc), "MEDCHAIN_HOME": str(short_tmp / "client"),
           "MEDCHAIN_PASSPHRASE": "correct horse"}
    alice = json.loads(run_cli("keys", "new", "alice", env=env).stdout)
    clinic = json.loads(run_cli("keys", "new", "clinic", env=env).stdout)
    keyfile = short_tmp / "client" / "keys" / "alice.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600

    first = json.loads(run_cli("identity", "register", "--key", "alice", "--role", "patient", env=env).stdout)
    assert first["status"] == "committed" and first["receipt"]["ok"]
    second = json.loads(run_cli("identity", "register", "--key", "clinic", "--role", "provider",
                                "--label", "Riverside Clinic", env=env).stdout)
    assert second["receipt"]["ok"]
    shown = json.loads(run_cli("identity", "show", "clinic", env=env).stdout)
    assert shown["status"] == "pending" and shown["public_key"] == clinic["public_key"]

    # The dev node's authority votes with the node key file.
    auth_env = {**env, "MEDCHAIN_PASSPHRASE": node.authority_passphrase}
    accredited = json.loads(run_cli("governance", "accredit", "--key", str(node.authority_key),
                                    "--role", "provider", clinic["public_key"], env=auth_env).stdout)
    assert accredited["receipt"]["ok"]
    assert any(e["type"] == "governance.accredited" for e in accredited["receipt"]["events"])
    shown = json.loads(run_cli("identity", "show", "clinic", env=env).stdout)
    assert shown["status"] == "accredited"
    assert json.loads(run_cli("identity", "show", alice["public_key"], env=env).stdout)["role"] == "patient"

    # A patient cannot vote: refused at admission with the reason, exit status 1.
    res = run_cli("governance", "revoke", "--key", "alice", "--reason", "spite", clinic["public_key"],
                  env=env, check=False)
    assert res.returncode == 1 and "unauthorized" in res.stderr

    head = json.loads(run_cli("head", env=env).stdout)
    # each tx was sent after the previous one committed, so each sits in a later block
    assert first["height"] < second["height"] < accredited["height"] <= head["height"]
    block = json.loads(run_cli("block", str(head["height"]), "--full", env=env).stdout)
    assert block["header"]["hash"] == head["hash"] and block["commit"]["block_hash"] == head["hash"]


def test_raw_json_submit_wait_and_proof(node: NodeProcess) -> None:
    info = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 1, "method": "node_info"})["result"]
    kp = crypto.KeyPair.generate()
    tx = sign_tx(kp.signing, info["chain_id"], "identity.register", 0,
                 {"role": "patient", "enc_key": kp.encryption.public_key})
    r = raw_call(node.ipc, {"jsonrpc": "2.0", "id": "a", "method": "tx_submit",
                            "params": {"tx": "0x" + tx.encoded.hex()}})
    assert r == {"jsonrpc": "2.0", "id": "a", "result": "0x" + tx.hash.hex()}
    w = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 2, "method": "tx_wait",
                            "params": {"hash": "0x" + tx.hash.hex(), "timeout_ms": 20000}})["result"]
    assert w["status"] == "committed" and w["receipt"]["ok"]
    got = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 3, "method": "chain_getTx",
                              "params": {"hash": "0x" + tx.hash.hex()}})["result"]
    # The inclusion proof checks against the header's tx_root.
    from medchaind.types.merkle import verify_merkle_proof

    p = got["proof"]
    assert verify_merkle_proof(tx.hash, p["index"], p["size"], [bytes.fromhex(x[2:]) for x in p["path"]],
                               bytes.fromhex(p["tx_root"][2:]))
    header = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 4, "method": "chain_getBlock",
                                 "params": {"height": got["height"]}})["result"]["header"]
    assert header["tx_root"] == p["tx_root"]
    ident = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 5, "method": "identity_get",
                                "params": {"public_key": "0x" + kp.public_key.hex()}})["result"]
    assert ident["role"] == "patient" and ident["status"] == "active"
    mods = raw_call(node.ipc, {"jsonrpc": "2.0", "id": 6, "method": "rpc_modules"})["result"]
    assert {"node", "chain", "tx", "identity", "governance"} <= set(mods)


def test_commit_seen_through_subscriptions(node: NodeProcess) -> None:
    kp = crypto.KeyPair.generate()
    with node.client() as sub_client, node.client() as c:
        tx = sign_tx(kp.signing, c.chain_id, "identity.register", 0,
                     {"role": "patient", "enc_key": kp.encryption.public_key})
        heads = sub_client.subscribe({"topic": "newHeads"})
        txs = sub_client.subscribe({"topic": "tx", "hash": "0x" + tx.hash.hex()})
        c.submit(tx)
        statuses = []
        while not statuses or statuses[-1]["status"] != "committed":
            statuses.append(txs.get(timeout=30))
        assert statuses[-1]["receipt"]["ok"]
        assert statuses[0]["status"] in ("pending", "committed")
        head = heads.get(timeout=30)
        assert head["height"] == statuses[-1]["height"]


def test_rejections_have_clear_reasons(node: NodeProcess) -> None:
    kp = crypto.KeyPair.generate()
    body = {"role": "patient", "enc_key": kp.encryption.public_key}
    with node.client() as c:
        chain = c.chain_id
        tx = sign_tx(kp.signing, chain, "identity.register", 0, body)
        assert c.wait(c.submit(tx))["receipt"]["ok"]

        def refused(raw: bytes) -> dict:
            with pytest.raises(RPCError) as ei:
                c.submit(raw)
            return ei.value.data

        # replay of a committed tx
        assert refused(tx.encoded)["code"] == "already_committed"
        # signed for another chain id
        other = sign_tx(kp.signing, "some-other-chain", "identity.update", 1, {"enc_key": b"\x01" * 32})
        assert refused(other.encoded)["code"] == "wrong_chain"
        # bad signature: a valid tx with one signature byte flipped
        good = sign_tx(kp.signing, chain, "identity.update", 1, {"enc_key": b"\x02" * 32})
        m = good.to_map()
        m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
        from medchaind.codec import encode

        assert refused(encode(m))["code"] == "bad_signature"
        # wrong nonce: 0 is used
        stale = sign_tx(kp.signing, chain, "identity.update", 0, {"enc_key": b"\x03" * 32})
        d = refused(stale.encoded)
        assert d["code"] == "nonce_too_low" and "next is 1" in d["reason"]
        # malformed bytes
        assert refused(b"\xa1\x61")["code"] == "malformed"
        # the good one still goes through
        assert c.wait(c.submit(good))["receipt"]["ok"]


def _commit_some(node: NodeProcess, n: int) -> dict[str, int]:
    """Submit ``n`` txs at once and wait for each: tx hash -> the height it committed at.

    The node packs several txs into one block when they arrive together (how many
    depends on timing), so a test never computes heights from a number of txs: it
    compares with the heights reported here.
    """
    hashes = []
    with node.client() as c:
        chain = c.chain_id
        for _ in range(n):
            kp = crypto.KeyPair.generate()
            tx = sign_tx(kp.signing, chain, "identity.register", 0,
                         {"role": "patient", "enc_key": kp.encryption.public_key})
            hashes.append(c.submit(tx))
        committed = {}
        for h in hashes:
            st = c.wait(h)
            assert st["status"] == "committed"
            committed[h] = st["height"]
    return committed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_restart_keeps_every_committed_tx(node: NodeProcess, sig: int) -> None:
    hashes = _commit_some(node, 30)
    with node.client() as c:
        head_before = c.head()
    rc = node.stop(sig)
    assert rc == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert not node.ipc.exists(), "a clean shutdown removes the socket"
    node.start()
    with node.client() as c:
        assert c.head() == head_before
        for h in hashes:
            assert c.tx(h)["status"] == "committed"
        # and it keeps committing
        more = _commit_some(node, 3)
        assert c.head()["height"] > head_before["height"]
        assert all(c.tx(h)["status"] == "committed" for h in more)


def test_sigkill_under_load_loses_nothing_committed(node: NodeProcess) -> None:
    """Kill -9 while txs stream in: everything reported committed before is still there."""
    with node.client() as c:
        chain = c.chain_id
        committed: list[str] = []
        txs = []
        for _ in range(400):
            kp = crypto.KeyPair.generate()
            txs.append(sign_tx(kp.signing, chain, "identity.register", 0,
                               {"role": "patient", "enc_key": kp.encryption.public_key}))
        for t in txs[:200]:
            c.submit(t)
        for t in txs[:200]:
            if c.tx(t.hash)["status"] == "committed":
                committed.append("0x" + t.hash.hex())
        for t in txs[200:]:
            c.submit(t)  # keep the node busy while it dies
        height = c.head()["height"]
    node.stop(signal.SIGKILL)
    node.start()
    with node.client() as c:
        assert c.head()["height"] >= height
        for h in committed:
            assert c.tx(h)["status"] == "committed"
        # the chain re-verifies: every stored block's commit is for that block
        for hgt in range(1, c.head()["height"] + 1):
            b = c.block(height=hgt)
            assert b["commit"]["block_hash"] == b["header"]["hash"]


def test_hostile_socket_input_leaves_node_serving(node: NodeProcess) -> None:
    def exchange(payload: bytes, read: bool = True) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(node.ipc))
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                return b""
            if not read:
                return b""
            chunks = []
            try:
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    chunks.append(d)
                    if d.endswith(b"\n"):
                        break
            except (ConnectionResetError, TimeoutError):
                pass
            return b"".join(chunks)

    r = json.loads(exchange(b"this is not json\n"))
    assert r["error"]["code"] == -32700 and r["id"] is None
    r = json.loads(exchange(b'{"jsonrpc":"2.0","id":1,"method":"no_such_method"}\n'))
    assert r["error"]["code"] == -32601
    r = json.loads(exchange(b'{"jsonrpc":"2.0","id":1,"method":"chain_getBlock","params":{"height":"x"}}\n'))
    assert r["error"]["code"] == -32602
    r = json.loads(exchange(b'{"jsonrpc":"2.0","id":1,"method":"tx_submit","params":{"tx":"0xzz"}}\n'))
    assert r["error"]["code"] == -32602
    r = json.loads(exchange(b'[]\n'))
    assert r["error"]["code"] == -32600
    exchange(b'\xff\xfe\x00garbage\x80\x81\n')
    exchange(b'{"jsonrpc":"2.0","id":1,"method":"node_info"', read=False)  # truncated, then hang up
    big = b'{"jsonrpc":"2.0","id":1,"method":"tx_submit","params":{"tx":"0x' + b"00" * (9 * 1024 * 1024)
    r = exchange(big + b'"}}\n')
    if r:
        assert json.loads(r.splitlines()[0])["error"]["code"] in (-32600, -32602)
    exchange(os.urandom(4096), read=False)
    # still serving, and still committing
    with node.client() as c:
        assert c.node_info()["chain_id"] == "medchain-dev"
    assert _commit_some(node, 1)


def test_systemd_notify_ready_watchdog_and_stopping(short_tmp: Path) -> None:
    """Under Type=notify: READY=1 once the socket answers, WATCHDOG=1 pings, STOPPING=1."""
    sock_path = short_tmp / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd:
        sd.bind(str(sock_path))
        sd.settimeout(30)
        env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
        n = NodeProcess(short_tmp / "node", short_tmp / "node.log", env=env)
        n.start()
        try:
            messages = []
            while not any(m.startswith("READY=1") for m in messages):
                messages.append(sd.recv(4096).decode())
            with n.client() as c:  # ready means ready: the socket answers
                assert c.node_info()["height"] >= 0
            pings = 0
            while pings < 3:
                pings += sd.recv(4096) == b"WATCHDOG=1"
            assert n.stop(signal.SIGTERM) == 0
            while "STOPPING=1" not in messages:
                messages.append(sd.recv(4096).decode())
        finally:
            if n.proc is not None and n.proc.poll() is None:
                n.stop(signal.SIGKILL)
    ready = next(m for m in messages if m.startswith("READY=1"))
    assert "STATUS=height" in ready


def _http(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(raw)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_prometheus_metrics(short_tmp: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from medchaind.testing.nodeproc import free_port_range

    port = free_port_range(1, start=39000)
    n = NodeProcess(short_tmp / "node", short_tmp / "node.log", env={"MEDCHAIND_METRICS_LISTEN": f"127.0.0.1:{port}"})
    n.start()
    try:
        hashes = _commit_some(n, 5)
        with n.client() as c:
            head = c.head()
            chain_id = c.chain_id
            assert all(c.tx(h)["status"] == "committed" for h in hashes)
        reply = _http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head_part, _, body = reply.partition(b"\r\n\r\n")
        assert head_part.startswith(b"HTTP/1.0 200") and b"text/plain; version=0.0.4" in head_part
        samples = {
            s.name: s for fam in text_string_to_metric_families(body.decode()) for s in fam.samples
        }
        assert samples["medchaind_chain_height"].value == head["height"]
        assert samples["medchaind_txs_committed_total"].value >= 5
        assert samples["medchaind_authority"].value == 1 and samples["medchaind_authorities"].value == 1
        assert samples["medchaind_info"].labels["chain_id"] == chain_id
        assert samples["medchaind_last_block_age_seconds"].value >= 0
        assert "medchaind_mempool_txs" in samples and "medchaind_ipc_connections" in samples
        # bad input gets a clear status, and the endpoint keeps serving
        assert _http(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400")
        assert _http(port, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 405")
        assert _http(port, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 404")
        assert _http(port, b"GET /x" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 431")
        assert _http(port, b"GET /healthz HTTP/1.0\r\n\r\n").endswith(b"ok\n")
        ready = _http(port, b"GET /readyz HTTP/1.0\r\n\r\n")
        assert ready.startswith(b"HTTP/1.0 200") and ready.endswith(b"ready\n")
        with n.client() as c:
            assert c.node_info()["height"] == head["height"]
    finally:
        if n.proc is not None and n.proc.poll() is None:
            n.stop(signal.SIGTERM)


def test_metrics_port_in_use_is_a_clear_startup_error(short_tmp: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        n = NodeProcess(short_tmp / "node", short_tmp / "node.log",
                        env={"MEDCHAIND_METRICS_LISTEN": f"127.0.0.1:{port}"})
        with pytest.raises(AssertionError, match="node exited with 1"):
            n.start()
    assert f"metrics.listen 127.0.0.1:{port}" in n.log()


def test_online_backup_restores_to_a_working_node(node: NodeProcess, short_tmp: Path) -> None:
    """`medchaind backup` copies a running node consistently; the copy starts as the node."""
    import shutil
    import threading

    from medchaind.testing.nodeproc import _cmd

    before = _commit_some(node, 20)
    stop = threading.Event()
    during: dict[str, int] = {}
    lock = threading.Lock()

    def keep_committing() -> None:  # the node keeps working while the backup runs
        while not stop.is_set():
            got = _commit_some(node, 2)
            with lock:
                during.update(got)

    writer = threading.Thread(target=keep_committing)
    writer.start()
    try:
        with lock:  # acknowledged as committed before the backup starts: must be in it
            acknowledged = {**before, **during}
        out = short_tmp / "backup"
        res = subprocess.run(_cmd("medchaind") + ["backup", "--ipc", str(node.ipc), "--out", str(out)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        manifest = json.loads(res.stdout)
        # a second backup into the same (now non-empty) directory is refused, nothing changes
        again = subprocess.run(_cmd("medchaind") + ["backup", "--ipc", str(node.ipc), "--out", str(out)],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 1 and "not an empty directory" in again.stderr
    finally:
        stop.set()
        writer.join(timeout=60)
    assert json.loads((out / "BACKUP.json").read_text()) == manifest
    # The backup holds at least every block that committed a tx acknowledged before it
    # began (not "one block per tx": the node batches txs that arrive together).
    assert manifest["height"] >= max(acknowledged.values()) and manifest["keys"] > 0
    assert not (out / "keys" / "node.passphrase").exists()  # never the passphrase
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(out / "keys" / "node.json").st_mode) == 0o600

    with node.client() as c:
        original = {h: c.block(height=h)["header"]["hash"] for h in range(1, manifest["height"] + 1)}
    assert node.stop(signal.SIGTERM) == 0  # the original stops for good before its copy runs
    shutil.copy(node.datadir / "keys" / "node.passphrase", out / "keys" / "node.passphrase")
    restored = NodeProcess(out, short_tmp / "restored.log", command="run")
    restored.start()
    try:
        with restored.client() as c:
            head = c.head()
            assert head["height"] >= manifest["height"]
            assert c.block(height=manifest["height"])["header"]["hash"] == manifest["head_hash"]
            assert all(c.block(height=h)["header"]["hash"] == original[h] for h in original)
            for h, height in acknowledged.items():
                st = c.tx(h)
                assert (st["status"], st["height"]) == ("committed", height)
        more = _commit_some(restored, 3)  # and it carries on as the authority
        with restored.client() as c:
            assert all(c.tx(h)["status"] == "committed" for h in more)
    finally:
        restored.stop(signal.SIGTERM)
        print(restored.log()[-4000:])  # shown by pytest only when the test failed


def test_backup_refuses_bad_destinations(node: NodeProcess, short_tmp: Path) -> None:
    ro = short_tmp / "readonly"
    ro.mkdir()
    (ro / "x").mkdir()
    ro.chmod(0o500)
    with node.client() as c:
        for params, fragment in [
            ({"path": "relative/dir"}, "absolute"),
            ({"path": str(short_tmp / "no" / "such" / "parent")}, "not a directory"),
            ({"path": str(ro)}, "not an empty directory"),
            ({}, "path"),
        ]:
            with pytest.raises(RPCError, match=fragment):
                c.call("admin_backup", params)
        assert c.node_info()["height"] >= 0  # the node is unaffected
    ro.chmod(0o700)


def test_export_and_verified_import(node: NodeProcess, short_tmp: Path) -> None:
    """`medchaind export` / `import`: a portable copy that is re-verified block by block."""
    from medchaind.testing.nodeproc import _cmd

    def daemon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_cmd("medchaind") + list(args), capture_output=True, text=True, timeout=300)

    hashes = _commit_some(node, 12)
    with node.client() as c:
        head = c.head()
    out = short_tmp / "chain.export"
    busy = daemon("export", "--datadir", str(node.datadir), "--out", str(out))
    assert busy.returncode == 1 and "another process" in busy.stderr  # the running node holds the database
    assert node.stop(signal.SIGTERM) == 0
    exported = json.loads(daemon("export", "--datadir", str(node.datadir), "--out", str(out)).stdout)
    assert (exported["from"], exported["to"]) == (1, head["height"])

    def fresh(name: str) -> Path:
        d = short_tmp / name
        res = daemon("init", "--datadir", str(d), "--genesis", str(node.datadir / "genesis.json"))
        assert res.returncode == 0, res.stderr
        return d

    copy = fresh("copy")
    res = daemon("import", "--datadir", str(copy), str(out))
    assert res.returncode == 0, res.stderr
    imported = json.loads(res.stdout)
    assert (imported["height"], imported["head_hash"], imported["app_hash"]) == (
        head["height"], head["hash"], head["app_hash"],
    )
    again = json.loads(daemon("import", "--datadir", str(copy), str(out)).stdout)
    assert again["imported"] == 0 and again["height"] == head["height"]  # idempotent: resumes

    # a tampered file stops at the first bad block; everything before it stays committed
    data = bytearray(out.read_bytes())
    at = data.rfind(bytes.fromhex(head["app_hash"][2:]))  # inside the last block's header
    assert at > 0
    data[at] ^= 0x01  # still well-formed CBOR: the block no longer matches its commit
    bad = short_tmp / "bad.export"
    bad.write_bytes(bytes(data))
    tampered = fresh("tampered")
    res = daemon("import", "--datadir", str(tampered), str(bad))
    assert res.returncode == 1, res.stdout
    assert f"block {head['height']} rejected" in res.stderr and f"stays at height {head['height'] - 1}" in res.stderr

    # another chain's export is refused before anything is written
    other = short_tmp / "other"
    assert daemon("init", "--datadir", str(other)).returncode == 0
    res = daemon("import", "--datadir", str(other), str(out))
    assert res.returncode == 1 and "another genesis" in res.stderr

    # the imported copy serves the chain: every tx is there
    served = NodeProcess(copy, short_tmp / "copy.log", command="run")
    served.start()
    try:
        with served.client() as c:
            assert c.head()["hash"] == head["hash"]
            assert all(c.tx(h)["status"] == "committed" for h in hashes)
    finally:
        served.stop(signal.SIGTERM)
