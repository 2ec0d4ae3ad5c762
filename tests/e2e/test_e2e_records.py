"""End-to-end: encrypted FHIR records under patient control, on a real dev node.

A patient, two providers and an emergency: consent grants, deny over permit, expiry,
revocation, audited reads, break-glass pushed to the patient's subscription, erasure
(checked on disk), and a canary marker that must never reach the datadir or the log.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from medchaind import crypto
from medchaind.client import RPCError
from medchaind.crypto import KeyPair
from medchaind.errors import ClientTimeout
from medchaind.files import load_keystore
from medchaind.modules.records.client import read_request_params
from medchaind.modules.records.encryption import open_envelope
from medchaind.testing.nodeproc import NodeProcess
from medchaind.testing.wait import wait_until

pytestmark = pytest.mark.e2e


def observation(marker: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"text": f"glucose {marker}"}, "valueString": f"7.2 mmol/L {marker}"}


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_socket():
            data = p.read_bytes()
            hits += [f"{p.name}:{n[:12]!r}" for n in needles if n in data]
    return hits


def ok(st: dict) -> dict:
    assert st["status"] == "committed" and st["receipt"]["ok"], st
    return st


def test_patient_records_flow(node: NodeProcess) -> None:
    marker = "CANARY" + secrets.token_hex(8)
    P, D1, D2 = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    auth = load_keystore(node.authority_key, node.authority_passphrase)
    with node.client() as c, node.client() as watcher:
        ok(c.register_identity(P, "patient"))
        for d, name in ((D1, "Clinic One"), (D2, "Clinic Two")):
            ok(c.register_identity(d, "provider", label=name))
            ok(c.accredit(auth.signing, d.public_key, "provider"))
        events = watcher.subscribe({"topic": "patient", "patient": "0x" + P.public_key.hex()})

        # P lets D1 read and write; D1 writes an encrypted Observation for P
        ok(c.grant(P, actor=D1.public_key, actions=["read", "write"]))
        st = ok(c.add_record(D1, P.public_key, observation(marker)))
        rid = bytes.fromhex(st["record_id"][2:])
        assert c.read_record(D1, rid)["valueString"].endswith(marker)  # the author
        assert c.read_record(P, rid)["code"]["text"].endswith(marker)  # the patient

        # D2 has no consent: refused, and the ciphertext it might get elsewhere is useless
        with pytest.raises(RPCError, match="not permitted"):
            c.read_record(D2, rid)
        mine = c.call("records_get", read_request_params(c.chain_id, P.signing, rid))
        with pytest.raises(crypto.SignatureError):
            open_envelope(D2, bytes.fromhex(mine["envelope"][2:]))
        ciphertext = bytes.fromhex(mine["ciphertext"][2:])
        assert marker.encode() not in ciphertext

        # permit for D2 (its envelope is re-wrapped by P's client), then a deny wins
        ok(c.grant(P, actor=D2.public_key, actions=["read"]))
        assert c.read_record(D2, rid, purpose="TREAT")["status"] == "final"
        ok(c.grant(P, actor=D2.public_key, actions=["read"], decision="deny"))
        with pytest.raises(RPCError, match="not permitted"):
            c.read_record(D2, rid)

        # a permit whose period has ended does not count
        E = KeyPair.generate()
        ok(c.register_identity(E, "provider"))
        ok(c.accredit(auth.signing, E.public_key, "provider"))
        tip = c.head()["time_ms"]
        ok(c.grant(P, actor=E.public_key, actions=["read"], end_ms=tip - 1))
        with pytest.raises(RPCError, match="not permitted"):
            c.read_record(E, rid)

        # revoking D1 stops its access to records added after the revocation
        grants = c.call("consent_list", {"patient": "0x" + P.public_key.hex()})
        d1_grant = next(g for g in grants if g.get("actor") == "0x" + D1.public_key.hex())
        ok(c.revoke_consent(P, bytes.fromhex(d1_grant["grant_id"][2:])))
        later = ok(c.add_record(P, P.public_key, observation(marker)))
        with pytest.raises(RPCError, match="not permitted"):
            c.read_record(D1, bytes.fromhex(later["record_id"][2:]))
        with pytest.raises(RPCError):
            c.add_record(D1, P.public_key, observation(marker))

        # break-glass: E (no valid consent) declares an emergency; audited, flagged, pushed to P
        ok(c.break_glass(E, rid, "unconscious patient in the emergency department"))
        seen = []
        while not any(e["type"] == "records.break_glass" for e in seen):
            seen.append(events.get(timeout=30))
        # E holds no envelope: its read leaves a key request that D1's custodian (the author) answers
        with pytest.raises(ClientTimeout, match="custodian to release its key"):
            c.read_record(E, rid, purpose="ETREAT")
        (req,) = c.key_requests(D1.public_key)
        assert (req["reader"], req["break_glass"], req["permitted"]) == ("0x" + E.public_key.hex(), True, True)
        (answer,) = c.answer_key_requests(D1)
        assert answer["ok"] and answer["readers"] == ["0x" + E.public_key.hex()]
        assert c.read_record(E, rid, purpose="ETREAT")["valueString"].endswith(marker)
        assert c.key_requests(D1.public_key) == [] and c.answer_key_requests(D1) == []
        # a second emergency, answered by the patient's own app (say the author's custodian is down)
        E2 = KeyPair.generate()
        ok(c.register_identity(E2, "provider"))
        ok(c.accredit(auth.signing, E2.public_key, "provider"))
        ok(c.break_glass(E2, rid, "ED-TRAUMA"))
        (req2,) = c.key_requests(P.public_key, as_="patient")
        assert req2["reader"] == "0x" + E2.public_key.hex() and req2["author"] == "0x" + D1.public_key.hex()
        (answer2,) = c.answer_key_requests(P, as_="patient")
        assert answer2["ok"]
        assert c.read_record(E2, rid, purpose="ETREAT")["valueString"].endswith(marker)
        assert c.key_requests(D1.public_key) == []  # one request, gone from both indexes
        audit = c.call("audit_log", {"patient": "0x" + P.public_key.hex()})
        assert any(a["break_glass"] for a in audit)
        assert sum(a["reader"] == "0x" + E.public_key.hex() for a in audit) == 3  # glass broken, two reads
        assert any(not a["break_glass"] and a["reader"] == "0x" + D2.public_key.hex() for a in audit)
        assert sum(a["reader"] == "0x" + E2.public_key.hex() for a in audit) == 2  # glass broken, one read

        # erasure: every trace of the ciphertext leaves the node's LevelDB, the chain still verifies
        ok(c.erase_record(P, rid))
        with pytest.raises(RPCError, match="erased"):
            c.read_record(P, rid)
        needle = [ciphertext[16:80]]

        def compacted() -> bool:  # the node compacts LevelDB after an erasure, in its own time
            c.call("node_health")
            return not files_containing(node.datadir / "chaindata", needle)

        wait_until(compacted, timeout=60, what="the erased ciphertext to leave chaindata", interval=0.2)
        assert files_containing(node.datadir / "chaindata", needle) == []
        for h in range(1, c.head()["height"] + 1):
            b = c.block(height=h)
            assert b["commit"]["block_hash"] == b["header"]["hash"]

    # canary: the marker never appears in the datadir or the log, in plaintext or hex
    needles = [marker.encode(), marker.encode().hex().encode(), marker.encode().hex().upper().encode()]
    assert files_containing(node.datadir, needles) == []
    log = node.log().encode()
    assert not any(n in log for n in needles)


def test_records_flow_through_the_medchain_cli(node: NodeProcess, tmp_path: Path) -> None:
    import json as _json

    from medchaind.testing.nodeproc import run_cli

    env = {"MEDCHAIN_IPC": str(node.ipc), "MEDCHAIN_HOME": str(tmp_path / "home"), "MEDCHAIN_PASSPHRASE": "pw"}
    auth_env = {**env, "MEDCHAIN_PASSPHRASE": node.authority_passphrase}

    def cli(*args: str, e: dict | None = None) -> dict | list:
        return _json.loads(run_cli(*args, env=e or env).stdout)  # type: ignore[no-any-return]

    for name in ("pat", "doc"):
        cli("keys", "new", name)
    cli("identity", "register", "--key", "pat", "--role", "patient")
    cli("identity", "register", "--key", "doc", "--role", "provider", "--label", "Riverside")
    doc_pk = cli("keys", "show", "doc")["public_key"]  # type: ignore[index]
    cli("governance", "accredit", "--key", str(node.authority_key), "--role", "provider", doc_pk, e=auth_env)
    cli("consent", "grant", "--key", "pat", "--actor", "doc", "--actions", "read,write")
    res = run_cli("records", "add", "--key", "doc", "--patient", "pat", "/dev/null", env=env, check=False)
    assert res.returncode == 1 and res.stderr.startswith("medchain: error:")  # empty file: not a resource
    f = tmp_path / "obs.json"
    f.write_text('{"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}')
    res = run_cli("records", "add", "--key", "doc", "--patient", "pat", str(f), env=env, check=False)
    assert res.returncode == 1 and "status" in res.stderr  # the binding check fhir.resources lacks
    f.write_text('{"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"},'
                 ' "valueQuantity": {"value": 72, "unit": "/min"}}')
    added = cli("records", "add", "--key", "doc", "--patient", "pat", str(f))
    rid = added["record_id"]  # type: ignore[index]
    assert cli("records", "read", "--key", "doc", rid)["code"]["text"] == "heart rate"  # type: ignore[index]
    assert cli("records", "read", "--key", "pat", rid)["valueQuantity"]["value"] == 72  # type: ignore[index]
    assert [r["record_id"] for r in cli("records", "list", "pat")] == [rid]  # type: ignore[index,union-attr]
    assert len(cli("consent", "list", "pat")) == 1
    # an emergency: "er" breaks the glass; doc's custodian (a long-running process) releases the key
    import subprocess
    import sys

    cli("keys", "new", "er")
    cli("identity", "register", "--key", "er", "--role", "provider", "--label", "County ED")
    cli("governance", "accredit", "--key", str(node.authority_key), "--role", "provider",
        cli("keys", "show", "er")["public_key"], e=auth_env)  # type: ignore[index]
    res = run_cli("records", "read", "--key", "er", rid, env=env, check=False)
    assert res.returncode == 1 and "not permitted" in res.stderr
    cli("records", "break-glass", "--key", "er", "--reason", "ED-UNRESPONSIVE", rid)
    custodian = subprocess.Popen(
        [sys.executable, "-m", "medchaind.cli.client", "records", "custodian", "--key", "doc"],
        env={**__import__("os").environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        got = cli("records", "read", "--key", "er", "--purpose", "ETREAT", "--wait-key", "120", rid)
        assert got["code"]["text"] == "heart rate"  # type: ignore[index]
    finally:
        custodian.terminate()
        stdout, stderr = custodian.communicate(timeout=30)
    answers = [_json.loads(line) for line in stdout.splitlines()]
    assert [a["record_id"] for a in answers] == [rid] and all(a["ok"] for a in answers), (stdout, stderr)
    assert cli("records", "requests", "doc") == []
    assert cli("records", "policy", "pat")["strict"] is False  # type: ignore[index]
    cli("records", "set-policy", "--key", "pat", "--strict")
    assert cli("records", "policy", "pat")["strict"] is True  # type: ignore[index]
    cli("records", "erase", "--key", "pat", rid)
    res = run_cli("records", "read", "--key", "pat", rid, env=env, check=False)
    assert res.returncode == 1 and "erased" in res.stderr


async def test_async_client_records_and_custodian(node: NodeProcess) -> None:
    """AsyncClient drives the same flows: add, grant with re-wrap, break-glass answered by
    a custodian task while the emergency reader waits for its key."""
    import trio

    from medchaind.client import AsyncClient

    P, D, ER = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    auth = load_keystore(node.authority_key, node.authority_passphrase)
    async with AsyncClient(node.ipc, timeout=60) as c, AsyncClient(node.ipc, timeout=60) as custodian_conn:
        ok(await c.register_identity(P, "patient"))
        for d in (D, ER):
            ok(await c.register_identity(d, "provider"))
            ok(await c.accredit(auth.signing, d.public_key, "provider"))
        ok(await c.grant(P, actor=D.public_key, actions=["read", "write"]))
        st = ok(await c.add_record(D, P.public_key, observation("async")))
        rid = st["record_id"]
        assert (await c.read_record(P, rid))["valueString"].endswith("async")
        with pytest.raises(RPCError, match="not permitted"):
            await c.read_record(ER, rid)

        answers: list[dict] = []
        answered = trio.Event()

        def on_answer(answer: dict) -> None:
            answers.append(answer)
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: custodian_conn.serve_key_requests(D, on_answer=on_answer))
            ok(await c.break_glass(ER, bytes.fromhex(rid[2:]), "ED-TRAUMA"))
            got = await c.read_record(ER, rid, purpose="ETREAT", wait_key_s=60)
            with trio.fail_after(60):  # the reader may see the envelope before the custodian's tx_wait returns
                await answered.wait()
            nursery.cancel_scope.cancel()
        assert got["code"]["text"] == "glucose async"
        assert [a["readers"] for a in answers] == [["0x" + ER.public_key.hex()]] and answers[0]["ok"]
        assert await c.key_requests(D.public_key) == []


def test_a_consent_that_starts_while_the_chain_is_idle_admits_the_read(node: NodeProcess) -> None:
    """Admission checks a tx at the next block's time (now), not at the last block's time:
    an idle chain makes no blocks, so its last block time can lag the consent's start."""
    import time

    P, D = KeyPair.generate(), KeyPair.generate()
    auth = load_keystore(node.authority_key, node.authority_passphrase)
    with node.client() as c:
        ok(c.register_identity(P, "patient"))
        ok(c.register_identity(D, "provider"))
        ok(c.accredit(auth.signing, D.public_key, "provider"))
        rid = ok(c.add_record(P, P.public_key, observation("later")))["record_id"]
        start_ms = int(time.time() * 1000) + 1500
        ok(c.grant(P, actor=D.public_key, actions=["read"], start_ms=start_ms))
        with pytest.raises(RPCError, match="not permitted"):
            c.read_record(D, rid)  # not yet
        idle_tip = c.head()["time_ms"]
        # the condition is the wall clock itself: sleep until just past the consent's start
        # (re-read, in case the clock was stepped); the chain stays idle meanwhile
        while (left := (start_ms + 50) / 1000 - time.time()) >= 0:
            time.sleep(left + 0.001)
        assert c.head()["time_ms"] == idle_tip < start_ms
        st = c.send(D.signing, "records.access", {"record_id": bytes.fromhex(rid[2:]), "purpose": "TREAT"})
        assert st["receipt"]["ok"], st


def test_the_node_releases_a_record_only_after_the_readers_access_commits(node: NodeProcess) -> None:
    """A socket client holding a consented reader's key gets no envelope and no ciphertext
    from ``records_get`` until that reader's ``records.access`` is on chain; unsigned,
    stale and foreign-signed requests are refused with a code and what to send."""
    P, D, other = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    auth = load_keystore(node.authority_key, node.authority_passphrase)
    with node.client() as c:
        ok(c.register_identity(P, "patient"))
        for d in (D, other):
            ok(c.register_identity(d, "provider"))
            ok(c.accredit(auth.signing, d.public_key, "provider"))
        rid = bytes.fromhex(ok(c.add_record(P, P.public_key, observation("gate")))["record_id"][2:])
        ok(c.grant(P, actor=D.public_key, actions=["read"]))  # P's client re-wraps the key for D
        chain = c.chain_id

        def refused(params: dict) -> RPCError:
            with pytest.raises(RPCError) as info:
                c.call("records_get", params)
            assert info.value.code == -32602
            return info.value

        # the old call: a clear error naming what to send, nothing released
        err = refused({"record_id": "0x" + rid.hex(), "reader": "0x" + D.public_key.hex(), "purpose": "TREAT"})
        assert err.data == {"code": "signature_required"} and "sig" in err.message and "§18.5" in err.message
        # metadata stays available to anyone, without envelope or ciphertext
        meta = c.call("records_get", {"record_id": "0x" + rid.hex()})
        assert meta["patient"] == "0x" + P.public_key.hex() and "envelope" not in meta and "ciphertext" not in meta
        # D's own signed request, before any access: refused, nothing released
        err = refused(read_request_params(chain, D.signing, rid, "TREAT"))
        assert err.data == {"code": "access_required"} and "records.access" in err.message
        assert c.call("audit_log", {"patient": "0x" + P.public_key.hex()}) == []
        # a request signed by another key, for another chain, or too old: refused
        forged = read_request_params(chain, other.signing, rid, "TREAT")
        forged["reader"] = "0x" + D.public_key.hex()
        assert refused(forged).data == {"code": "bad_signature"}
        assert refused(read_request_params(chain + "-x", D.signing, rid, "TREAT")).data == {"code": "bad_signature"}
        head_ms = c.head()["time_ms"]
        stale = read_request_params(chain, D.signing, rid, "TREAT", time_ms=head_ms - 120_000)
        err = refused(stale)
        assert err.data == {"code": "stale_request"} and "sign a new request" in err.message

        # the client's read path: the access commits, then the node releases
        assert c.read_record(D, rid)["valueString"].endswith("gate")
        (entry,) = c.call("audit_log", {"patient": "0x" + P.public_key.hex()})
        assert entry["reader"] == "0x" + D.public_key.hex() and entry["purpose"] == "TREAT"
        got = c.call("records_get", read_request_params(chain, D.signing, rid, "TREAT"))
        assert open_envelope(D, bytes.fromhex(got["envelope"][2:])) and got["ciphertext"]


def test_strict_release_keys_reach_a_reader_only_after_its_access(node: NodeProcess) -> None:
    """A patient's strict release: no envelope at grant time; the reader's audited access
    leaves a key request that the author's custodian answers, then the read succeeds."""
    P, D1, D2 = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    auth = load_keystore(node.authority_key, node.authority_passphrase)
    with node.client() as c:
        ok(c.register_identity(P, "patient"))
        for d in (D1, D2):
            ok(c.register_identity(d, "provider"))
            ok(c.accredit(auth.signing, d.public_key, "provider"))
        ok(c.set_record_policy(P, True))
        assert c.record_policy(P.public_key)["strict"] is True
        ok(c.grant(P, actor=D1.public_key, actions=["read", "write"]))
        with pytest.raises(RPCError, match="strict_release|access time"):  # no pre-shared key for D2
            c.add_record(D1, P.public_key, observation("strict"), share_with=[D2.public_key])
        rid = ok(c.add_record(D1, P.public_key, observation("strict")))["record_id"]
        ok(c.grant(P, actor=D2.public_key, actions=["read"]))  # no re-wrap: strict
        with pytest.raises(ClientTimeout, match="custodian to release its key"):
            c.read_record(D2, rid)  # audited, and leaves a key request
        (answer,) = c.answer_key_requests(D1)
        assert answer["ok"] and answer["readers"] == ["0x" + D2.public_key.hex()]
        assert c.read_record(D2, rid)["valueString"].endswith("strict")
        audit = c.call("audit_log", {"patient": "0x" + P.public_key.hex()})
        assert [a["reader"] for a in audit] == ["0x" + D2.public_key.hex()] * 2
