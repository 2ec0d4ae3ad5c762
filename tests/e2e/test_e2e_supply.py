"""End-to-end: a DSCSA lifecycle on a real network (4 authorities, ``medchaind run``
processes talking libp2p on 127.0.0.1), driven with the ``medchain`` CLI as a
manufacturer, a distributor, a pharmacy and a regulator would drive it.

The manufacturer registers its product (index key sealed to its partners and FDA); each
party imports its own EPCIS 2.0 document (300 serialised units: commission, pack into
cases and a pallet, ship, receive, break down, ship, receive, check, unpack, dispense),
one import resumed; a saleable return is verified; a counterfeit serial, a double
dispense and a shipment by a non-owner are flagged on every node; a recall reaches the
pharmacy's subscription and the holders list; a suspect case runs its 24-hour clock.
Bad input (schema-invalid document, bad check digit, someone else's product) is refused
with a clear message and changes nothing. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchaind.client import Client
from medchaind.modules.supply import gs1, samples
from medchaind.testing.nodeproc import Medchain, NodeProcess, call, run_cli, start_testnet

pytestmark = pytest.mark.e2e

CHAIN = "medchain-e2e-supply"
PASSPHRASE = "e2e-supply-passphrase"
GLN = {"manu": "0614141000012", "dist": "0614141000029", "pharm": "0614141000036", "fda": "0614141000043"}
GTIN = "00300012345671"
LOT = "LOT-2506A"
EXPIRY = "2027-05-31"
UNITS, DISPENSED, RETURNED = 300, 290, 295


@pytest.fixture
def network() -> Iterator[tuple[list[NodeProcess], Path]]:
    with start_testnet(4, chain_id=CHAIN, prefix="mcsu-") as net:
        yield net.nodes, net.root


def test_dscsa_lifecycle_on_a_four_authority_network(network: tuple[list[NodeProcess], Path]) -> None:
    nodes, root = network
    home = root / "client"
    m = Medchain(nodes, home, PASSPHRASE)
    pub = {name: m.key(name) for name in ("manu", "dist", "pharm", "fda")}

    # --- the cast: registered, accredited by 3 of the 4 authorities, bound to their GLNs
    roles = {"manu": "manufacturer", "dist": "distributor", "pharm": "pharmacy", "fda": "regulator"}
    for i, (name, role) in enumerate(roles.items()):
        m.tx(i, "identity", "register", "--key", name, "--role", role)
    for i in range(3):
        auth = ["--passphrase-file", str(nodes[i].datadir / "keys" / "node.passphrase")]
        for name, role in roles.items():
            res = run_cli("--ipc", str(nodes[i].ipc), *auth, "governance", "accredit", "--key",
                          str(nodes[i].authority_key), "--role", role, str(home / "keys" / f"{name}.json"), env=m.env)
            assert json.loads(res.stdout)["receipt"]["ok"], res.stdout
    m.settle_all()
    m.run(0, "supply", "register-party", "--key", "manu", "--gln", "0614141000013", code=1)  # bad check digit
    assert "check digit" in m.stderr
    for i, name in enumerate(roles):
        m.tx(i, "supply", "register-party", "--key", name, "--gln", GLN[name])
    st = m.tx(0, "supply", "register-product", "--key", "manu", "--gtin", GTIN, "--ndc", "0001-2345-67",
              "--share-with", "dist", "--share-with", "pharm", "--share-with", "fda")
    assert st["registered"]["receipt"]["ok"]

    # --- each party imports its own EPCIS document
    docs = root / "docs"
    m.run(0, "supply", "sample", "--manufacturer", GLN["manu"], "--distributor", GLN["dist"], "--pharmacy",
          GLN["pharm"], "--gtin", GTIN, "--lot", LOT, "--expiry", EXPIRY, "--units", str(UNITS), "--dispense",
          str(DISPENSED), "--return-unit", str(RETURNED), "--out", str(docs))
    # someone else's product: the distributor cannot commission the manufacturer's units
    rep = m.run(1, "supply", "import", "--key", "dist", str(docs / "manufacturer.jsonld"), "--progress-file",
                str(root / "wrong.progress"), code=2)
    assert rep["refused"][0]["event"] == "event 1" and rep["refused"][0]["code"] == "not_product_owner"
    for node, who, doc in ((0, "manu", "manufacturer"), (1, "dist", "distributor"), (2, "pharm", "pharmacy")):
        rep = m.run(node, "supply", "import", "--key", who, str(docs / f"{doc}.jsonld"))
        assert rep["refused"] == [] and rep["flags"] == [] and rep["captured"] == rep["events"], rep
    # run again: resumed from the progress file, nothing sent
    rep = m.run(2, "supply", "import", "--key", "pharm", str(docs / "pharmacy.jsonld"))
    assert rep["skipped"] == rep["events"] and rep["txs"] == [] and "resuming" in m.stderr
    # a schema-invalid document is refused whole, naming the event and field
    bad = json.loads((docs / "pharmacy.jsonld").read_text())
    bad["epcisBody"]["eventList"][3]["action"] = "MOVE"
    (docs / "bad.jsonld").write_text(json.dumps(bad))
    m.run(2, "supply", "import", "--key", "pharm", str(docs / "bad.jsonld"), code=1)
    assert "event 4: action: 'MOVE' is not one of" in m.stderr
    m.settle_all()

    # --- a saleable return, verified by the distributor before resale
    m.run(2, "supply", "import", "--key", "pharm", str(docs / "return-pharmacy.jsonld"))
    m.run(1, "supply", "import", "--key", "dist", str(docs / "return-distributor.jsonld"))
    scan = gs1.element_string(gs1.ProductId(GTIN, samples.serial(RETURNED), LOT, gs1.expiry_from_iso(EXPIRY)))
    ans = m.run(1, "supply", "verify", "--key", "dist", "--scan", scan, "--corr-uuid", "a4b1e2")
    assert ans["data"] == {"verified": True} and ans["responderGLN"] == GLN["manu"] and ans["corrUUID"] == "a4b1e2"
    ans = m.run(1, "supply", "verify", "--key", "dist", "--gtin", GTIN, "--serial", "FAKE0001", code=2)
    assert ans["data"]["verificationFailureReason"] == "No_match_GTIN_Serial"
    ans = m.run(1, "supply", "verify", "--key", "dist", "--gtin", GTIN, "--serial", samples.serial(0), code=2)
    assert ans["data"]["verificationFailureReason"] == "Not_for_re-distribution"  # dispensed

    # --- a counterfeit, a double dispense and a shipment by a non-owner: flagged on every node
    rep = m.run(2, "supply", "import", "--key", "pharm", str(docs / "anomalies-pharmacy.jsonld"))
    assert sorted(f["code"] for f in rep["flags"]) == ["dispensed_twice", "not_commissioned"]
    rep = m.run(1, "supply", "import", "--key", "dist", str(docs / "anomalies-distributor.jsonld"))
    assert [f["code"] for f in rep["flags"]] == ["not_owner"]
    m.settle_all()
    for i, n in enumerate(nodes):
        # the three anomalies, newest first (older: the flags of the distributor's mistaken import)
        latest = [(f["code"], f["reporter"]["gln"]) for f in call(n, "supply_flags", {"limit": 3})]
        assert latest == [("not_owner", GLN["dist"]), ("dispensed_twice", GLN["pharm"]),
                          ("not_commissioned", GLN["pharm"])], f"node{i}: {latest}"
    assert len({json.dumps(call(n, "supply_flags", {"limit": 1000}), sort_keys=True) for n in nodes}) == 1

    # --- a recall reaches the current holders at once
    with Client(nodes[3].ipc, timeout=60) as watcher:
        pushes = watcher.subscribe({"topic": "supply", "parties": pub["pharm"]})
        m.tx(0, "supply", "recall", "--key", "manu", "--gtin", GTIN, "--lot", LOT, "--class", "II",
             "--reason", "particulate matter")
        got = []
        deadline = time.monotonic() + 30
        while not any(e["type"] == "supply.recalled" for e in got) and time.monotonic() < deadline:
            got.append(pushes.get(timeout=30))
        recalled = next(e for e in got if e["type"] == "supply.recalled")
        assert recalled["cls"] == "II" and pub["pharm"] in recalled["parties"]
    held = m.run(3, "supply", "holders", "--key", "fda", "--gtin", GTIN, "--lot", LOT)
    assert {(h["gln"], h["held"], h["inbound"]) for h in held["holders"]} == {
        (GLN["pharm"], UNITS - DISPENSED - 1, 0), (GLN["dist"], 1, 0)}
    m.tx(2, "supply", "recall-ack", "--key", "pharm", "--gtin", GTIN, "--lot", LOT)
    held = m.run(3, "supply", "holders", "--key", "fda", "--gtin", GTIN, "--lot", LOT)
    assert {h["gln"]: h["acknowledged_ms"] is not None for h in held["holders"]} == {GLN["pharm"]: True,
                                                                                      GLN["dist"]: False}

    # --- the counterfeit becomes a case: illegitimate, then notified with Form 3911
    st = m.tx(2, "supply", "case-open", "--key", "pharm", "--reason", "counterfeit", "--gtin", GTIN,
              "--serial", samples.serial(9_999_999))
    case_id = st["receipt"]["events"][0]["case_id"]
    m.tx(0, "supply", "case-update", "--key", "manu", "--status", "illegitimate", case_id)
    (case,) = m.run(3, "supply", "cases")
    assert case["status"] == "illegitimate" and case["overdue"] is False and 0 < case["remaining_ms"] <= 86_400_000
    (docs / "form3911.pdf").write_text("FDA 3911 notification")
    m.tx(2, "supply", "case-update", "--key", "pharm", "--status", "notified", "--form3911",
         str(docs / "form3911.pdf"), "--fda-incident", "MW5001234", case_id)
    (case,) = m.run(3, "supply", "cases")
    assert case["status"] == "notified" and case["late"] is False and case["fda_incident"] == "MW5001234"
    m.tx(3, "supply", "case-update", "--key", "fda", "--status", "closed", case_id)  # FDA terminates it
    assert m.run(3, "supply", "cases") == []
    # the trace of a dispensed unit, for the regulator: commissioned, packed twice, shipped twice...
    trace = m.run(3, "supply", "trace", "--key", "fda", "--gtin", GTIN, "--serial", samples.serial(1))
    first = trace["events"][0]  # the distributor's mistaken import came first, and stays on record
    assert (first["biz_step"], first["reporter"]["gln"], first["codes"]) == ("packing", GLN["dist"],
                                                                           ["not_commissioned"])
    steps = [e["biz_step"] for e in trace["events"] if not e["codes"]]
    assert steps[0] == "commissioning" and steps[-1] == "dispensing" and steps.count("shipping") == 2
    assert trace["object"]["status"] == "dispensed" and trace["object"]["custodian"]["gln"] == GLN["pharm"]
