"""End-to-end: a clinical trial on a real network (4 authorities and an observer,
``medchaind run`` processes talking libp2p on 127.0.0.1), driven with the ``medchain``
CLI as a sponsor, two sites and three participants would drive it.

Register from a ClinicalTrials.gov v2 record (tests/trials/fixtures), commit the
randomisation list, consent and enrol (each participant a fresh pseudonymous key),
amend with re-consent (a study event of a not-yet-re-consented participant is refused),
a withdrawal, SAP, data lock, unblinding with the reveal, then a results report from a
later version of the record that swaps the primary and a secondary outcome and moves a
time frame: every node's switching report names both swapped outcomes and the changed
time frame. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchaind.testing.nodeproc import Medchain, NodeProcess, call, run_cli, start_testnet

pytestmark = pytest.mark.e2e

CHAIN = "medchain-e2e-trials"
NCT = "NCT09000001"
FIXTURES = Path(__file__).resolve().parents[1] / "trials" / "fixtures"
PASSPHRASE = "e2e-trials-passphrase"


@pytest.fixture
def network() -> Iterator[tuple[list[NodeProcess], Path]]:
    with start_testnet(4, observers=1, chain_id=CHAIN, prefix="mctr-") as net:
        yield net.nodes, net.root


def test_trial_from_ctgov_record_to_switching_report_on_every_node(
    network: tuple[list[NodeProcess], Path],
) -> None:
    nodes, root = network
    home = root / "client"
    m = Medchain(nodes, home, PASSPHRASE)
    docs = root / "docs"
    docs.mkdir()
    for name, text in [("protocol-v1.pdf", "GLUCO-3 protocol v1.0"), ("protocol-v2.pdf", "GLUCO-3 protocol v2.0"),
                       ("rec-approval.pdf", "REC favourable opinion"), ("rec-am01.pdf", "REC approval of AM01"),
                       ("sap.pdf", "SAP v1.0"), ("allocation.csv", "seq,arm\n0,A\n1,B\n2,B\n3,A\n4,A\n5,B\n"),
                       ("data-adsl.csv", "usubjid,arm\n"), ("data-adlb.csv", "usubjid,param,aval\n")]:
        (docs / name).write_text(text)

    # --- the cast: a sponsor, two sites (accredited by 3 of the 4 authorities)
    for name in ("sponsor", "site1", "site2"):
        m.key(name)
    m.tx(0, "identity", "register", "--key", "sponsor", "--role", "sponsor", "--label", "Glucora Therapeutics")
    m.tx(1, "identity", "register", "--key", "site1", "--role", "provider", "--label", "Northfield CRU")
    m.tx(2, "identity", "register", "--key", "site2", "--role", "provider", "--label", "Riverside Diabetes Centre")
    for i in range(3):
        auth = ["--passphrase-file", str(nodes[i].datadir / "keys" / "node.passphrase")]
        authority = str(nodes[i].authority_key)
        for subject, role in (("sponsor", "sponsor"), ("site1", "provider"), ("site2", "provider")):
            res = run_cli("--ipc", str(nodes[i].ipc), *auth, "governance", "accredit", "--key", authority,
                          "--role", role, str(home / "keys" / f"{subject}.json"), env=m.env)
            assert json.loads(res.stdout)["receipt"]["ok"], res.stdout
    m.settle(int(call(nodes[2], "node_info")["height"]))

    # --- registration from the ClinicalTrials.gov record, randomisation list committed
    st = m.tx(1, "trials", "register", "--key", "sponsor", "--from-ctgov", str(FIXTURES / f"{NCT}-v1.json"),
              "--protocol-file", str(docs / "protocol-v1.pdf"), "--site", "site1", "--site", "site2",
              "--ethics-ref", "REC 25/NE/0001", "--ethics-file", str(docs / "rec-approval.pdf"))
    assert st["receipt"]["events"][0]["trial"] == NCT
    m.tx(1, "trials", "commit", NCT, "--key", "sponsor", "--kind", "randomisation",
         "--file", str(docs / "allocation.csv"), "--salt-file", str(docs / "salt.hex"))

    # --- consent (each participant a fresh pseudonym, registered by `trials consent`) and enrolment
    for p in ("p1", "p2", "p3"):
        m.key(p)
    m.tx(2, "trials", "consent", NCT, "--key", "p1", "--site", "site1", "--version", "1")
    m.tx(3, "trials", "consent", NCT, "--key", "p2", "--site", "site2", "--version", "1")
    m.tx(2, "trials", "enroll", NCT, "--key", "site1", "--participant", "p1")
    m.tx(3, "trials", "enroll", NCT, "--key", "site2", "--participant", "p2")
    m.refused(2, "trials", "enroll", NCT, "--key", "site1", "--participant", "p1", code="already_enrolled")
    m.tx(2, "trials", "event", NCT, "--key", "site1", "--participant", "p1", "--kind", "visit",
         "--data-file", str(docs / "data-adsl.csv"))

    # --- an amendment that requires re-consent; p1's next visit waits for it
    m.tx(0, "trials", "amend", NCT, "--key", "sponsor", "--version", "2", "--protocol-file",
         str(docs / "protocol-v2.pdf"), "--changes", "consent_form,procedures",
         "--reason", "Additional safety monitoring visit at week 4; updated participant information sheet",
         "--reconsent", "--approval-ref", "REC 25/NE/0001/AM01", "--approval-file", str(docs / "rec-am01.pdf"))
    m.refused(2, "trials", "event", NCT, "--key", "site1", "--participant", "p1", "--kind", "visit",
              code="reconsent_required")
    m.tx(2, "trials", "consent", NCT, "--key", "p1", "--site", "site1", "--version", "2")
    m.tx(2, "trials", "reconsent", NCT, "--key", "site1", "--participant", "p1")
    m.tx(2, "trials", "event", NCT, "--key", "site1", "--participant", "p1", "--kind", "visit")
    # p2 withdraws (its own key); p3 consents to version 2 and is enrolled
    m.tx(3, "trials", "withdraw", NCT, "--key", "p2", "--participant", "p2")
    m.refused(3, "trials", "event", NCT, "--key", "site2", "--participant", "p2", "--kind", "visit", code="withdrawn")
    m.tx(4, "trials", "consent", NCT, "--key", "p3", "--site", "site1", "--version", "2")
    m.tx(4, "trials", "enroll", NCT, "--key", "site1", "--participant", "p3")
    status = m.run(4, "trials", "status", NCT)
    assert (status["enrolled"], status["withdrawn"], status["consent_version"]) == (3, 1, 2)
    assert status["coverage"]["total"] == {"enrolled": 3, "current": 2, "reconsent_required": 0, "withdrawn": 1,
                                           "invalid": 0}

    # --- SAP, completion, data lock, unblinding with the randomisation reveal
    m.tx(0, "trials", "commit", NCT, "--key", "sponsor", "--kind", "sap", "--file", str(docs / "sap.pdf"),
         "--label", "SAP v1.0")
    m.tx(0, "trials", "set-status", NCT, "close_recruitment", "--key", "sponsor")
    m.tx(0, "trials", "set-status", NCT, "primary_completion", "--key", "sponsor")
    m.refused(0, "trials", "unblind", NCT, "--key", "sponsor", "--list-file", str(docs / "allocation.csv"),
              "--salt-file", str(docs / "salt.hex"), code="no_data_lock")
    m.tx(0, "trials", "commit", NCT, "--key", "sponsor", "--kind", "data_lock",
         "--file", str(docs / "data-adsl.csv"), "--file", str(docs / "data-adlb.csv"))
    m.tx(0, "trials", "unblind", NCT, "--key", "sponsor", "--list-file", str(docs / "allocation.csv"),
         "--salt-file", str(docs / "salt.hex"))

    # --- the report from a later version of the record: primary and secondary swapped, a time frame moved
    m.tx(1, "trials", "report", "--key", "sponsor", "--from-ctgov", str(FIXTURES / f"{NCT}-v2.json"))
    expected = {
        "Change From Baseline in Glycated Haemoglobin (HbA1c)": ("role_swapped", "primary", "secondary"),
        "Percentage of Participants Achieving HbA1c < 7.0%": ("role_swapped", "secondary", "primary"),
        "Change From Baseline in Body Weight": ("time_frame_changed", "secondary", "secondary"),
    }
    for i in range(len(nodes)):
        report = m.run(i, "trials", "switching", NCT, code=3)  # exit 3: outcomes were switched
        switched = {e["registered"]["measure"]: (e["category"], e["registered"]["role"], e["reported"]["role"])
                    for e in report["outcomes"] if e["switched"]}
        assert switched == expected, f"node{i}: {switched}"
        body_weight = next(e for e in report["outcomes"] if e["category"] == "time_frame_changed")
        assert (body_weight["registered"]["time_frame"], body_weight["reported"]["time_frame"]) == (
            "Baseline, Week 26", "Baseline, Week 52")
        assert report["summary"]["verdict"] == "switching" and report["reference_version"] == 1
    # the same answer on every node, byte for byte
    answers = {json.dumps(call(n, "trials_switching", {"trial": NCT}), sort_keys=True) for n in nodes}
    assert len(answers) == 1
    t = call(nodes[4], "trials_get", {"trial": NCT})
    assert t["status"] == "active_not_recruiting" and t["reports"] == 1
    assert [f["code"] for f in t["flags"]] == ["sap_after_enrolment"]  # the SAP came after the first enrolment
    assert set(t["dates"]) >= {"registered", "ethics", "start", "recruitment_closed", "primary_completion",
                               "unblinded", "results"}
