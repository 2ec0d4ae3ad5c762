"""Trials' client helpers and CLI, driven against the real state machine.

:class:`FakeNode` answers the JSON-RPC calls a flow yields from an :class:`AppChain`
(one block per submitted tx, queries decoded from JSON as the node decodes them), so
the flows, the bodies they build and the chain's answers are the real ones; only the
socket is missing (tests/ipc and the e2e tests cover it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from trials_kit import base

from medchaind.app.schema import decode_json_params
from medchaind.crypto import KeyPair, SigningKey
from medchaind.flows import Flow, drive
from medchaind.ipc import RPCError
from medchaind.modules.trials import client as tc
from medchaind.modules.trials import ctgov
from medchaind.node.queries import query_methods
from medchaind.node.rpc import receipt_json
from medchaind.testing.appkit import AppChain, digest, key, pub
from medchaind.types.tx import decode_tx

FIXTURES = Path(__file__).parent / "fixtures"
NCT = "NCT09000001"


class FakeNode:
    def __init__(self, chain: AppChain) -> None:
        self.c = chain
        self.receipts: dict[str, dict[str, Any]] = {}
        self.queries = {m.name: m.spec for m in query_methods(chain.app)}

    def __call__(self, method: str, params: Any) -> Any:
        if method == "tx_nonce":
            return {"next": self.c.app.nonce(self.c.state, bytes.fromhex(params["sender"][2:]))}
        if method == "tx_submit":
            tx = decode_tx(bytes.fromhex(params["tx"][2:]))
            (r,) = self.c.commit([tx]).receipts
            h = "0x" + tx.hash.hex()
            self.receipts[h] = receipt_json(r)
            return h
        if method == "tx_wait":
            return {"status": "committed", "receipt": self.receipts[params["hash"]]}
        spec = self.queries[method]
        if spec.tip_time and "time_ms" not in params:
            params = {**params, "time_ms": self.c.time_ms}
        answer = spec.handler(self.c.state, decode_json_params(spec.params, params))
        if answer is None and spec.not_found:
            raise RPCError(-32020, spec.not_found)
        return json.loads(json.dumps(answer))  # what crosses the socket

    def drive(self, flow: Flow[Any]) -> Any:
        return drive(flow, lambda call: self(call.method, call.params))


CHAIN = "medchain-test"


def committed(st: dict[str, Any]) -> dict[str, Any]:
    assert st["receipt"]["ok"], st
    return st


def sponsor() -> SigningKey:
    return key("S")


def site() -> SigningKey:
    return key("D1")


def registered() -> tuple[AppChain, FakeNode]:
    c = base()
    node = FakeNode(c)
    study = ctgov.parse((FIXTURES / f"{NCT}-v1.json").read_bytes())
    body = study.registration(protocol_hash=digest("protocol"), sites=[pub("D1"), pub("D2")],
                              ethics=("REC 25/NE/0001", digest("rec")))
    committed(node.drive(tc.register_trial(CHAIN, sponsor(), body)))
    return c, node


def test_join_consent_enrol_and_the_randomisation_commit_reveal() -> None:
    c, node = registered()
    allocation = b"seq,arm\n0,Glucoretide 2 mg\n1,Placebo\n2,Placebo\n3,Glucoretide 2 mg\n"
    salt = digest("secret salt")
    committed(node.drive(tc.commit_randomisation(CHAIN, sponsor(), NCT, allocation, salt)))
    pseudonym = KeyPair.generate()  # a fresh key for this trial: registered by join_trial
    st = committed(node.drive(tc.join_trial(CHAIN, pseudonym, NCT, pub("D1"), 1)))
    assert st["grant_id"].startswith("0x")
    with pytest.raises(RPCError, match="no consent to NCT09000001 for this site"):
        node.drive(tc.enroll_participant(CHAIN, key("D2"), NCT, pseudonym.public_key))
    st = committed(node.drive(tc.enroll_participant(CHAIN, site(), NCT, pseudonym.public_key)))
    assert st["seq"] == 0
    # the SAP, the data lock over two data files, then unblinding reveals the list
    committed(node.drive(tc.trial_commit(CHAIN, sponsor(), NCT, "sap", digest("sap"), label="SAP v1.0")))
    root = tc.data_lock_root([digest("a.csv"), digest("b.csv")])
    committed(node.drive(tc.trial_commit(CHAIN, sponsor(), NCT, "data_lock", root)))
    wrong = node.drive(tc.unblind_trial(CHAIN, sponsor(), NCT, allocation_list=allocation + b"4,Placebo\n", salt=salt))
    assert wrong["receipt"]["code"] == "reveal_mismatch"
    committed(node.drive(tc.unblind_trial(CHAIN, sponsor(), NCT, allocation_list=allocation, salt=salt)))
    t = node.drive(tc.trial(NCT))
    assert t["randomisation_reveal"]["list_hash"] == "0x" + tc.list_hash(allocation).hex()
    assert t["commitments"]["sap"][0]["label"] == "SAP v1.0"
    (p,) = node.drive(tc.trial_participants(NCT))
    assert p["participant"] == "0x" + pseudonym.public_key.hex() and p["consent"] == "current"


def test_reconsent_events_withdrawal_and_switching_through_the_helpers() -> None:
    c, node = registered()
    committed(node.drive(tc.trial_commit(CHAIN, sponsor(), NCT, "randomisation", digest("r"))))
    kp = KeyPair.generate()
    committed(node.drive(tc.join_trial(CHAIN, kp, NCT, pub("D1"), 1)))
    committed(node.drive(tc.enroll_participant(CHAIN, site(), NCT, kp.public_key)))
    committed(node.drive(tc.amend_trial(
        CHAIN, sponsor(), NCT, effective_version=2, protocol_hash=digest("p2"), changes=["consent_form"],
        reason="new safety information for participants", reconsent=True,
        approval=("REC 25/NE/0001/AM01", digest("a")))))
    st = node.drive(tc.trial_event(CHAIN, site(), NCT, kp.public_key, "visit", data_hash=digest("crf")))
    assert st["receipt"]["code"] == "reconsent_required"
    assert node.drive(tc.trial_coverage(NCT))["total"]["reconsent_required"] == 1
    committed(node.drive(tc.join_trial(CHAIN, kp, NCT, pub("D1"), 2)))  # already registered: consent only
    committed(node.drive(tc.reconsent_participant(CHAIN, site(), NCT, kp.public_key)))
    committed(node.drive(tc.trial_event(CHAIN, site(), NCT, kp.public_key, "visit")))
    assert [a["effective_version"] for a in node.drive(tc.trial_amendments(NCT))] == [2]
    committed(node.drive(tc.withdraw_participant(CHAIN, kp.signing, NCT, kp.public_key)))
    assert node.drive(tc.trial_coverage(NCT))["total"]["withdrawn"] == 1
    committed(node.drive(tc.trial_commit(CHAIN, sponsor(), NCT, "sap", digest("sap"))))
    committed(node.drive(tc.trial_commit(CHAIN, sponsor(), NCT, "data_lock", digest("lock"))))
    st = node.drive(tc.unblind_trial(CHAIN, sponsor(), NCT))
    assert st["receipt"]["code"] == "reveal_required"  # digest("r") cannot be opened: a commitment is binding
    assert node.drive(tc.trial_outcomes(NCT))["version"] == 2


def test_find_trial_consent_takes_the_highest_version_for_this_site() -> None:
    def g(gid: str, purposes: list[str] | None, actor: bytes = pub("D1"), revoked: int | None = None,
          decision: str = "permit") -> dict[str, Any]:
        return {"grant_id": gid, "purposes": purposes, "actor": "0x" + actor.hex(), "revoked_height": revoked,
                "decision": decision}

    grants = [
        g("0x01", ["CLINTRCH.NCT09000001.v1"]), g("0x02", ["CLINTRCH.NCT09000001.v3"], revoked=9),
        g("0x03", ["TREAT", "CLINTRCH.NCT09000001.v2"]), g("0x04", ["CLINTRCH.NCT09000001.v4"], actor=pub("D2")),
        g("0x05", ["CLINTRCH.NCT09000001.v5"], decision="deny"), g("0x06", None),
        g("0x07", ["CLINTRCH.NCT09000002.v9"]),
    ]
    assert tc.find_trial_consent(grants, NCT, pub("D1")) == "0x03"
    assert tc.find_trial_consent(grants[5:], NCT, pub("D1")) is None


# ------------------------------------------------------------------ CLI (no node needed)


def run(*args: str) -> Any:
    from medchaind.cli.client import main

    return CliRunner().invoke(main, ["--ipc", "/nonexistent.ipc", *args], catch_exceptions=False)


def test_register_dry_run_prints_the_body_from_the_record() -> None:
    r = run("trials", "register", "--key", "S", "--from-ctgov", str(FIXTURES / f"{NCT}-v1.json"),
            "--protocol-hash", "0x" + digest("p").hex(), "--site", "0x" + pub("D1").hex(), "--dry-run")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["body"]["trial"] == NCT and shown["body"]["sites"] == ["0x" + pub("D1").hex()]
    assert shown["record"]["overall_status"] == "NOT_YET_RECRUITING"
    assert len(shown["body"]["outcomes"]) == 5


def test_report_dry_run_and_bad_records_are_clear_errors(tmp_path: Path) -> None:
    r = run("trials", "report", "--key", "S", "--from-ctgov", str(FIXTURES / f"{NCT}-results.json"), "--dry-run")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["body"]["outcomes"][-1]["role"] == "post_hoc"
    rec = json.loads((FIXTURES / f"{NCT}-v1.json").read_text())
    del rec["protocolSection"]["identificationModule"]["nctId"]
    bad = tmp_path / "study.json"
    bad.write_text(json.dumps(rec))
    r = run("trials", "register", "--key", "S", "--from-ctgov", str(bad), "--protocol-hash", "0x" + "00" * 32,
            "--dry-run")
    assert r.exit_code == 1
    assert "medchain: error: study.json: protocolSection.identificationModule.nctId: missing" in r.output
    r = run("trials", "register", "--key", "S", "--from-ctgov", str(FIXTURES / f"{NCT}-v1.json"), "--dry-run")
    assert r.exit_code == 1 and "--protocol-file FILE or --protocol-hash HEX" in r.output
    r = run("trials", "switching", "NCT123")
    assert r.exit_code == 1 and "is not a registry id" in r.output
