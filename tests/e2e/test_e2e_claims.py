"""End-to-end: claims on a real network (4 authorities, ``medchaind run`` processes on
libp2p over 127.0.0.1), driven with the ``medchain`` CLI as a clinic's billing office and a
payer's claims engine would drive it.

The payer enrolls the clinic; the patient lets the clinic write records and the clinic
records the encounter; an 837P with three claims is submitted -- one a duplicate of
another (another CLM01, same service), one for a patient with no encounter on chain;
the payer posts its 277CA and its 835 (adjustments, a denial with a remark code, a
provider-level adjustment); a replacement claim (frequency 7, REF*F8) follows; an
invalid 837 is refused in the client. Every node agrees on every claim's status and
flags, and a canary check finds none of the fixtures' member ids, names or CLM01 values
in any node's datadir or log, in plaintext or hex. Every wait is on a condition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medchaind.client import Client
from medchaind.testing.nodeproc import Medchain, NodeProcess, call, run_cli, start_testnet

pytestmark = pytest.mark.e2e

CHAIN = "medchain-e2e-claims"
DATA = Path(__file__).resolve().parents[1] / "claims" / "data"
PASSPHRASE = "e2e-claims-passphrase"
#: distinctive values of the fixtures: member ids, names, patient control numbers, dates of birth
CANARIES = ["QXM90011234", "ZBM70045678", "QUIXOTE", "XAVIERA", "ZEPHYRINE", "BARNABY", "PCNQX0001", "PCNQX0002",
            "PCNZB0003", "19800214", "19721103"]


@pytest.fixture
def network() -> Iterator[tuple[list[NodeProcess], Path]]:
    with start_testnet(4, chain_id=CHAIN, prefix="mccl-") as net:
        yield net.nodes, net.root


def dated(name: str, today: str, yesterday: str) -> str:
    """A fixture with its dates of service moved to today (the encounter is recorded today)."""
    return (DATA / name).read_text().replace("20240110", today).replace("20240111", yesterday)


def files_containing(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_socket():
            data = p.read_bytes()
            hits += [f"{p.relative_to(root)}:{n[:16]!r}" for n in needles if n in data]
    return hits


def test_claims_from_837_to_835_on_every_node(network: tuple[list[NodeProcess], Path]) -> None:
    nodes, root = network
    home = root / "client"
    m = Medchain(nodes, home, PASSPHRASE)
    work = root / "files"
    work.mkdir()
    now = time.gmtime()
    today = time.strftime("%Y%m%d", now)
    other_day = time.strftime("%Y%m%d", time.gmtime(time.time() - (86400 if now.tm_mday > 1 else -86400)))

    # --- the cast: a clinic, a payer (accredited by 3 of the 4 authorities), a patient
    for name in ("clinic", "payer", "patient"):
        m.key(name)
    m.tx(0, "identity", "register", "--key", "clinic", "--role", "provider", "--label", "Riverside Clinic")
    m.tx(1, "identity", "register", "--key", "payer", "--role", "payer", "--label", "Acme Health Plan")
    m.tx(2, "identity", "register", "--key", "patient", "--role", "patient")
    for i in range(3):
        auth = ["--passphrase-file", str(nodes[i].datadir / "keys" / "node.passphrase")]
        for subject, role in (("clinic", "provider"), ("payer", "payer")):
            res = run_cli("--ipc", str(nodes[i].ipc), *auth, "governance", "accredit", "--key",
                          str(nodes[i].authority_key), "--role", role, str(home / "keys" / f"{subject}.json"),
                          env=m.env)
            assert json.loads(res.stdout)["receipt"]["ok"], res.stdout
    m.settle_all()

    # --- the payer enrolls the clinic's billing NPI; the patient's encounter is recorded
    m.tx(1, "claims", "enroll", "--key", "payer", "--npi", "1234567893", "clinic")
    m.tx(2, "consent", "grant", "--key", "patient", "--actor", "clinic", "--actions", "read,write")
    encounter = work / "encounter.json"
    encounter.write_text(json.dumps({
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}))
    rid = m.tx(0, "records", "add", "--key", "clinic", "--patient", "patient", str(encounter))["record_id"]

    # --- an 837P with three claims: an original, its duplicate, one with no encounter on chain
    payer_key = m.run(0, "keys", "show", "payer")["public_key"]
    watcher = Client(nodes[2].ipc, timeout=60)  # the payer's claims engine, subscribed on another node
    events = watcher.subscribe({"topic": "claims", "parties": payer_key})
    f837 = work / "batch.837"
    f837.write_text(dated("837p_batch.txt", today, other_day))
    encounters = work / "encounters.json"
    encounters.write_text(json.dumps({"PCNQX0001": rid, "PCNQX0002": rid}))
    reports = m.run(0, "claims", "submit", "--key", "clinic", "--payer", "payer", "--encounters", str(encounters),
                    str(f837))
    assert [(r["pcn"], r["ok"], r["flags"]) for r in reports] == [
        ("PCNQX0001", True, []), ("PCNQX0002", True, ["exact_duplicate"]),
        ("PCNZB0003", True, ["no_service_on_record"])]
    first, dup, nsor = (r["claim_id"] for r in reports)
    m.settle_all()
    # the subscription pushed the submissions and the duplicate's denial
    seen: list[dict[str, Any]] = []
    while not any(e["type"] == "claims.status" and e["claim_id"] == dup for e in seen):
        seen.append(events.get(timeout=30))
    denial = next(e for e in seen if e["type"] == "claims.status")
    assert (denial["status"], denial["previous"], denial["flags"]) == ("denied", "submitted", ["exact_duplicate"])
    watcher.close()

    def everywhere(claim_id: str) -> dict[str, Any]:
        """The claim as every node answers it; all answers identical."""
        answers = [call(n, "claims_get", {"claim_id": claim_id}) for n in nodes]
        assert all(a == answers[0] for a in answers), f"nodes disagree on {claim_id}"
        return answers[0]  # type: ignore[no-any-return]

    assert everywhere(dup)["status"] == "denied" and everywhere(dup)["lines"][0]["denied"] == "exact_duplicate"
    assert everywhere(dup)["adjudications"][0]["lines"][0]["remarks"] == ["N522"]
    assert everywhere(nsor)["holds"] == ["no_service_on_record"]
    assert everywhere(nsor)["lines"][0]["flags"] == [{"code": "no_service_on_record", "reason": "no_encounter"}]

    # --- the payer's 277CA (the payer's node: another one) and 835
    f277 = work / "ack.277"
    f277.write_text(dated("277ca_batch.txt", today, other_day))
    acks = m.run(3, "claims", "ack", "--key", "payer", str(f277))
    assert [(a["pcn"], a["ok"]) for a in acks] == [("PCNQX0001", True), ("PCNQX0002", True), ("PCNZB0003", True)]
    m.settle_all()
    f835 = work / "remit.835"
    f835.write_text(dated("835_remit.txt", today, other_day))
    (remit,) = m.run(3, "claims", "remit", "--key", "payer", str(f835))
    assert [(r["pcn"], r["ok"]) for r in remit["claims"]] == [("PCNQX0001", True), ("PCNZB0003", True)]
    assert remit["payment"]["ok"]
    m.settle_all()
    paid = everywhere(first)
    assert (paid["status"], paid["paid_cents"], paid["patient_resp_cents"]) == ("paid", 10000, 2000)
    assert everywhere(nsor)["status"] == "denied" and everywhere(dup)["status"] == "denied"

    # --- the duplicates report and the claim lists agree on every node
    reports_by_node = {json.dumps(m.run(i, "claims", "duplicates", "--payer", "payer"), sort_keys=True)
                       for i in range(4)}
    assert len(reports_by_node) == 1
    report = json.loads(reports_by_node.pop())
    assert {c["claim_id"] for c in report["claims"]} == {dup, nsor}
    (stats,) = report["stats"]
    assert (stats["claims"], stats["exact_duplicate"], stats["no_service_on_record"]) == (3, 2, 1)
    assert [c["status"] for c in m.run(2, "claims", "list", "--provider", "clinic")] == ["denied", "denied", "paid"]

    # --- a replacement (frequency 7) for the paid claim, found through REF*F8
    frep = work / "replacement.837"
    frep.write_text(dated("837p_replacement.txt", today, other_day))
    encounters.write_text(json.dumps({"PCNQX0001": rid}))
    (repl,) = m.run(1, "claims", "submit", "--key", "clinic", "--payer", "payer", "--encounters", str(encounters),
                    str(frep))
    assert repl["ok"] and repl["flags"] == []
    m.settle_all()
    assert everywhere(first)["pending_change"] == repl["claim_id"]
    assert m.run(2, "claims", "status", repl["claim_id"])["original"] == first

    # --- an invalid 837 changes nothing: refused in the client with pyx12's reason
    bad = work / "bad.837"
    bad.write_text(f837.read_text().replace("NM1*85*2*RIVERSIDE CLINIC*****XX*1234567893~\n", ""))
    height = int(call(nodes[0], "node_info")["height"])
    err = m.run(0, "claims", "submit", "--key", "clinic", "--payer", "payer", str(bad), code=1)
    assert "medchain: error: bad.837" in err and "Billing Provider Name" in err
    assert int(call(nodes[0], "node_info")["height"]) == height

    # --- canary: no member id, name, CLM01 or birth date in any datadir or log, plaintext or hex
    needles = []
    for c in CANARIES:
        needles += [c.encode(), c.encode().hex().encode(), c.encode().hex().upper().encode()]
    for n in nodes:
        assert files_containing(n.datadir, needles) == [], n.datadir.name
        log = n.log().encode()
        assert not [x for x in needles if x in log], n.datadir.name
