"""The records module's client flows (medchaind/modules/records/client.py), driven by a scripted node.

Each flow yields the JSON-RPC calls it needs; these tests answer them from a script and
check the order of calls where the order is what makes the flow correct.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from medchaind import codec, crypto
from medchaind.crypto import KeyPair
from medchaind.errors import ClientTimeout
from medchaind.flows import Flow, RPCError
from medchaind.modules.records import client as rc
from medchaind.modules.records.encryption import encrypt_record

Answer = Callable[[Any], Any]

#: a read request as docs/protocol.md §18.5 specifies it (written out, not imported)
READ_DOMAIN = "medchain/records/read/v1"


def read_request_payload(record_id: bytes, reader: bytes, purpose: str | None, time_ms: int) -> bytes:
    req: dict[str, Any] = {"record_id": record_id, "reader": reader, "time_ms": time_ms}
    if purpose is not None:
        req["purpose"] = purpose
    return codec.encode(req)


def signed(key: KeyPair, answer: Any, *, ciphertext: bool = True, chain_id: str = "c") -> Answer:
    """An answer to ``records_get`` that first checks the request is a fresh read request
    signed by ``key`` for ``chain_id`` (asking for the ciphertext or not)."""

    def check(p: Any) -> Any:
        assert p["reader"] == "0x" + key.public_key.hex()
        assert abs(p["time_ms"] - time.time_ns() // 1_000_000) < 5_000
        assert p.get("ciphertext", True) is ciphertext
        payload = read_request_payload(bytes.fromhex(p["record_id"][2:]), key.public_key, p.get("purpose"),
                                       p["time_ms"])
        assert crypto.verify(key.public_key, bytes.fromhex(p["sig"][2:]), READ_DOMAIN, chain_id, payload)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return check


def access_required() -> RPCError:
    return RPCError(-32602, "access required: ...", {"code": "access_required"})


def drive(flow: Flow[Any], script: list[tuple[str, Answer]]) -> tuple[Any, list[str]]:
    """Run ``flow`` against ``script`` (expected method, answer(params)); the calls made."""
    calls: list[str] = []
    try:
        call = next(flow)
        while True:
            calls.append(call.method)
            assert script, f"unexpected call {call.method}"
            method, answer = script.pop(0)
            assert call.method == method, (calls, method)
            try:
                result = answer(call.params)
            except RPCError as exc:
                call = flow.throw(exc)
            else:
                call = flow.send(result)
    except StopIteration as done:
        assert script == [], f"calls not made: {[m for m, _ in script]}"
        return done.value, calls


def _record(reader: KeyPair, patient: KeyPair, author: KeyPair) -> tuple[dict[str, Any], bytes]:
    plaintext = json.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}).encode()
    enc = encrypt_record(plaintext, {k.public_key: k.encryption.public_key for k in (reader, patient, author)})
    env = next(e for e in enc.envelopes if e["recipient"] == reader.public_key)
    meta = {
        "record_id": "0x" + "11" * 32,
        "patient": "0x" + patient.public_key.hex(),
        "author": "0x" + author.public_key.hex(),
        "content_hash": "0x" + enc.content_hash.hex(),
        "erased": False,
    }
    full = {**meta, "envelope": "0x" + env["sealed_key"].hex(), "ciphertext": "0x" + enc.ciphertext.hex()}
    return {**meta, "envelope": None}, json.dumps(full).encode()


def test_read_waits_for_the_key_without_missing_an_answer_that_already_landed() -> None:
    reader, patient, author = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    without, with_key = _record(reader, patient, author)
    committed = {"status": "committed", "receipt": {"ok": True, "events": []}}
    # the custodian's answer commits while the access tx is being waited for: the flow
    # must read the head *before* re-reading the record, find the envelope and not wait
    script: list[tuple[str, Answer]] = [
        ("records_get", signed(reader, without, ciphertext=False)),
        ("tx_nonce", lambda p: {"next": 0}),
        ("tx_submit", lambda p: "0x" + "22" * 32),
        ("tx_wait", lambda p: committed),
        ("chain_head", lambda p: {"height": 7}),
        ("records_get", signed(reader, json.loads(with_key))),
    ]
    resource, calls = drive(rc.read_record("c", reader, bytes(32), purpose="ETREAT", wait_key_s=30.0), script)
    assert resource["resourceType"] == "Observation"
    assert "chain_waitHeight" not in calls


def test_read_waits_for_the_next_height_then_times_out_with_a_clear_error() -> None:
    reader, patient, author = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    without, _ = _record(reader, patient, author)
    waited: list[int] = []

    def wait(p: Any) -> Any:
        waited.append(p["height"])
        return {"height": p["height"]}

    committed = {"status": "committed", "receipt": {"ok": True, "events": []}}
    script: list[tuple[str, Answer]] = [
        ("records_get", signed(reader, without, ciphertext=False)),
        ("tx_nonce", lambda p: {"next": 3}),
        ("tx_submit", lambda p: "0x" + "22" * 32),
        ("tx_wait", lambda p: committed),
        ("chain_head", lambda p: {"height": 7}),
        ("records_get", signed(reader, without)),
        ("chain_waitHeight", wait),
    ]
    # a zero-length wait: one look, no sleeping; with time left it waits for height 8
    with pytest.raises(ClientTimeout, match="gave up after .* custodian to release its key"):
        drive(rc.read_record("c", reader, bytes(32), wait_key_s=0.0), script[:6])
    with pytest.raises(AssertionError, match="unexpected call"):
        drive(rc.read_record("c", reader, bytes(32), wait_key_s=30.0), script)
    assert waited == [8]


def test_refused_access_is_not_decrypted() -> None:
    reader = KeyPair.generate()
    refused = {"status": "committed", "receipt": {"ok": False, "code": "access_denied", "events": []}}
    script: list[tuple[str, Answer]] = [
        ("records_get", signed(reader, access_required(), ciphertext=False)),
        ("tx_nonce", lambda p: {"next": 0}),
        ("tx_submit", lambda p: "0x" + "22" * 32),
        ("tx_wait", lambda p: refused),
    ]
    with pytest.raises(RPCError, match="access refused"):
        drive(rc.read_record("c", reader, bytes(32), wait_key_s=30.0), script)


def test_custodian_pass_answers_permitted_requests_only_and_batches_per_record() -> None:
    author = KeyPair.generate()
    readers = [KeyPair.generate() for _ in range(3)]
    plaintext = b'{"resourceType": "Observation"}'
    enc = encrypt_record(plaintext, {author.public_key: author.encryption.public_key})
    mine = {"envelope": "0x" + enc.envelopes[0]["sealed_key"].hex()}
    rid = "0x" + "33" * 32
    requests = [
        {"record_id": rid, "reader": "0x" + readers[0].public_key.hex(), "permitted": True},
        {"record_id": rid, "reader": "0x" + readers[1].public_key.hex(), "permitted": True},
        {"record_id": rid, "reader": "0x" + readers[2].public_key.hex(), "permitted": False},
    ]
    enc_keys = {"0x" + r.public_key.hex(): r for r in readers}
    submitted: list[Any] = []

    def submit(p: Any) -> str:
        submitted.append(p)
        return "0x" + "44" * 32

    script: list[tuple[str, Answer]] = [
        ("records_keyRequests", lambda p: requests),
        ("records_get", signed(author, mine, ciphertext=False)),
        ("identity_get", lambda p: {"enc_key": "0x" + enc_keys[p["public_key"]].encryption.public_key.hex()}),
        ("identity_get", lambda p: {"enc_key": "0x" + enc_keys[p["public_key"]].encryption.public_key.hex()}),
        ("tx_nonce", lambda p: {"next": 5}),
        ("tx_submit", submit),
        ("tx_wait", lambda p: {"hash": p["hash"], "status": "committed", "receipt": {"ok": True, "code": "ok"}}),
    ]
    answered, _ = drive(rc.answer_key_requests("c", author, limit=100), script)
    assert answered == [{"record_id": rid, "readers": [requests[0]["reader"], requests[1]["reader"]],
                         "hash": "0x" + "44" * 32, "ok": True, "code": "ok"}]
    from medchaind.modules.records.encryption import open_envelope
    from medchaind.types import decode_tx

    tx = decode_tx(bytes.fromhex(submitted[0]["tx"][2:]))
    assert tx.type == "records.add_envelopes" and tx.nonce == 5
    got = {bytes(e["recipient"]): bytes(e["sealed_key"]) for e in tx.body["envelopes"]}
    assert set(got) == {readers[0].public_key, readers[1].public_key}
    for r in readers[:2]:
        assert open_envelope(r, got[r.public_key]) == enc.data_key  # each reader gets the record's key


def test_grant_shares_every_record_a_page_at_a_time() -> None:
    patient, grantee = KeyPair.generate(), KeyPair.generate()
    enc = encrypt_record(b'{"resourceType": "Observation"}', {patient.public_key: patient.encryption.public_key})
    mine = {"envelope": "0x" + enc.envelopes[0]["sealed_key"].hex()}
    erased = [{"record_id": "0x" + "55" * 32, "erased": True, "resource_type": "Observation"}] * 1000
    oldest = {"record_id": "0x" + "66" * 32, "erased": False, "resource_type": "Observation"}
    offsets: list[int] = []
    submitted: list[Any] = []

    def page(p: Any) -> Any:
        offsets.append(p["offset"])
        return erased if p["offset"] == 0 else [oldest]

    def submit(p: Any) -> str:
        submitted.append(p)
        return "0x" + "77" * 32

    ok = {"status": "committed", "receipt": {"ok": True, "events": []}}
    script: list[tuple[str, Answer]] = [
        ("tx_nonce", lambda p: {"next": 1}), ("tx_submit", submit), ("tx_wait", lambda p: ok),
        ("records_policy", lambda p: {"patient": p["patient"], "strict": False}),
        ("chain_head", lambda p: {"height": 3, "time_ms": 10}),
        ("identity_get", lambda p: {"enc_key": "0x" + grantee.encryption.public_key.hex()}),
        ("records_list", page), ("records_list", page),
        ("records_get", signed(patient, mine, ciphertext=False)),
        ("tx_nonce", lambda p: {"next": 2}), ("tx_submit", submit), ("tx_wait", lambda p: ok),
    ]
    drive(rc.grant("c", patient, actor=grantee.public_key), script)
    assert offsets == [0, 1000]  # the 1,001st record was reached
    from medchaind.types import decode_tx

    share = decode_tx(bytes.fromhex(submitted[1]["tx"][2:]))
    assert share.type == "records.add_envelopes" and share.body["record_id"] == bytes.fromhex("66" * 32)


def test_custodian_pass_reports_a_refused_answer_and_carries_on() -> None:
    author = KeyPair.generate()
    reader = KeyPair.generate()
    enc = encrypt_record(b'{"resourceType": "Observation"}', {author.public_key: author.encryption.public_key})
    mine = {"envelope": "0x" + enc.envelopes[0]["sealed_key"].hex()}
    r1, r2 = "0x" + "81" * 32, "0x" + "82" * 32
    requests = [{"record_id": r, "reader": "0x" + reader.public_key.hex(), "permitted": True} for r in (r1, r2)]
    identity = {"enc_key": "0x" + reader.encryption.public_key.hex()}

    def refuse(p: Any) -> Any:
        raise RPCError(-32010, "refused", {"code": "nonce_too_low"})

    script: list[tuple[str, Answer]] = [
        ("records_keyRequests", lambda p: requests),
        ("records_get", signed(author, mine, ciphertext=False)), ("identity_get", lambda p: identity),
        ("tx_nonce", lambda p: {"next": 0}), ("tx_submit", refuse),
        ("records_get", signed(author, mine, ciphertext=False)), ("identity_get", lambda p: identity),
        ("tx_nonce", lambda p: {"next": 0}), ("tx_submit", lambda p: "0x" + "99" * 32),
        ("tx_wait", lambda p: {"status": "committed", "receipt": {"ok": True, "code": "ok"}}),
    ]
    answered, _ = drive(rc.answer_key_requests("c", author, limit=100), script)
    assert [(a["record_id"], a["ok"], a["code"]) for a in answered] == [(r1, False, "nonce_too_low"), (r2, True, "ok")]


# ---------------------------------------------------------------------- signed reads (protocol.md §18.5)


def test_a_read_the_node_does_not_permit_records_nothing() -> None:
    reader = KeyPair.generate()
    refusal = RPCError(-32602, "not permitted: no consent", {"code": "not_permitted"})
    script: list[tuple[str, Answer]] = [("records_get", signed(reader, refusal, ciphertext=False))]
    with pytest.raises(RPCError, match="not permitted"):
        drive(rc.read_record("c", reader, bytes(32)), script)  # no tx_submit: no nonce spent


def test_patient_and_author_read_with_a_signed_request_and_no_access() -> None:
    patient, author = KeyPair.generate(), KeyPair.generate()
    for own in (patient, author):
        meta, full = _record(own, patient, author)
        script: list[tuple[str, Answer]] = [
            ("records_get", signed(own, {**meta, "envelope": json.loads(full)["envelope"]}, ciphertext=False)),
            ("chain_head", lambda p: {"height": 7}),
            ("records_get", signed(own, json.loads(full))),
        ]
        resource, calls = drive(rc.read_record("c", own, bytes(32), purpose="TREAT"), script)
        assert resource["resourceType"] == "Observation" and "tx_submit" not in calls


def test_a_reader_with_an_envelope_commits_its_access_before_the_node_releases_anything() -> None:
    reader, patient, author = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    _, full = _record(reader, patient, author)
    submitted: list[Any] = []

    def submit(p: Any) -> str:
        submitted.append(p)
        return "0x" + "22" * 32

    committed = {"status": "committed", "receipt": {"ok": True, "events": []}}
    script: list[tuple[str, Answer]] = [
        ("records_get", signed(reader, access_required(), ciphertext=False)),
        ("tx_nonce", lambda p: {"next": 0}), ("tx_submit", submit), ("tx_wait", lambda p: committed),
        ("chain_head", lambda p: {"height": 7}),
        ("records_get", signed(reader, json.loads(full))),
    ]
    resource, _ = drive(rc.read_record("c", reader, bytes(32), purpose="TREAT"), script)
    assert resource["status"] == "final"
    from medchaind.types import decode_tx

    tx = decode_tx(bytes.fromhex(submitted[0]["tx"][2:]))
    assert tx.type == "records.access" and tx.body == {"record_id": bytes(32), "purpose": "TREAT"}


def test_an_access_that_aged_out_while_waiting_is_recorded_again_once() -> None:
    reader, patient, author = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    without, full = _record(reader, patient, author)
    committed = {"status": "committed", "receipt": {"ok": True, "events": []}}
    access = [("tx_nonce", lambda p: {"next": 0}), ("tx_submit", lambda p: "0x" + "22" * 32),
              ("tx_wait", lambda p: committed)]
    script: list[tuple[str, Answer]] = [
        ("records_get", signed(reader, without, ciphertext=False)), *access,
        ("chain_head", lambda p: {"height": 7}),
        ("records_get", signed(reader, access_required())),  # the key came late: the access aged out
        *access,
        ("chain_head", lambda p: {"height": 8}),
        ("records_get", signed(reader, json.loads(full))),
    ]
    resource, calls = drive(rc.read_record("c", reader, bytes(32), wait_key_s=30.0), script)
    assert resource["status"] == "final" and calls.count("tx_submit") == 2
    # twice in one read means something else is wrong: the error reaches the caller
    script = [
        ("records_get", signed(reader, without, ciphertext=False)), *access,
        ("chain_head", lambda p: {"height": 7}), ("records_get", signed(reader, access_required())), *access,
        ("chain_head", lambda p: {"height": 8}), ("records_get", signed(reader, access_required())),
    ]
    with pytest.raises(RPCError, match="access required"):
        drive(rc.read_record("c", reader, bytes(32), wait_key_s=30.0), script)


def test_a_strict_patients_grant_wraps_no_key() -> None:
    patient, grantee = KeyPair.generate(), KeyPair.generate()
    ok = {"status": "committed", "receipt": {"ok": True, "events": []}}
    script: list[tuple[str, Answer]] = [
        ("tx_nonce", lambda p: {"next": 1}), ("tx_submit", lambda p: "0x" + "77" * 32), ("tx_wait", lambda p: ok),
        ("records_policy", lambda p: {"patient": p["patient"], "strict": True}),
    ]
    st, calls = drive(rc.grant("c", patient, actor=grantee.public_key), script)
    assert st == ok and "records_get" not in calls


def test_set_record_policy_sends_the_patients_choice() -> None:
    patient = KeyPair.generate()
    submitted: list[Any] = []

    def submit(p: Any) -> str:
        submitted.append(p)
        return "0x" + "88" * 32

    ok = {"status": "committed", "receipt": {"ok": True, "events": []}}
    script: list[tuple[str, Answer]] = [
        ("tx_nonce", lambda p: {"next": 4}), ("tx_submit", submit), ("tx_wait", lambda p: ok),
    ]
    drive(rc.set_record_policy("c", patient, True), script)
    from medchaind.types import decode_tx

    tx = decode_tx(bytes.fromhex(submitted[0]["tx"][2:]))
    assert (tx.type, tx.body, tx.sender) == ("records.set_policy", {"strict": True}, patient.public_key)
