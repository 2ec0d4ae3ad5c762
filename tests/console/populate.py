"""Put a little of everything on a dev chain, as clients would, for the console's tests.

One call of :func:`populate` (about a dozen seconds on a single-authority dev node) drives
the real client helpers over the node's socket: identities accredited by the authority, a
FHIR record encrypted client-side and read by a second provider (an audited access), the
DSCSA sample lifecycle of one lot (commission, pack, ship, receive, dispense) with a recall
and a suspect case, a clinical trial registered from its ClinicalTrials.gov record,
amended and reported with switched outcomes, and an 837P claim batch with a duplicate.

A canary string is planted in the plaintext of the record, the claim document and the
trial's protocol document: the console must never show it (it holds no key to decrypt).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medchaind.client import Client
from medchaind.crypto import KeyPair
from medchaind.files import load_keystore

ROOT = Path(__file__).resolve().parents[1]
TRIALS = ROOT / "trials" / "fixtures"
CLAIMS = ROOT / "claims" / "data"
NCT = "NCT09000001"
GTIN = "00300012345671"
LOT = "LOT-2506A"
GLN = {"manu": "0614141000012", "dist": "0614141000029", "pharm": "0614141000036"}
#: planted in every plaintext document; the console must never show it
CANARIES = ("CANARY-RECORD-7f3a9c", "CANARY-CLAIM-51BE02", "CANARY-TRIAL-c0ffee")


@dataclass
class World:
    """What the tests look up in the console."""

    patient: str = ""
    record_id: str = ""
    oids: list[str] = field(default_factory=list)
    pallet: str = ""
    case_id: str = ""
    claim_id: str = ""
    duplicate_id: str = ""
    tx_hashes: list[str] = field(default_factory=list)
    #: the patient's keys (for the patient's own console, which runs with them)
    patient_keys: KeyPair | None = None


def ok(st: Any) -> Any:
    assert st["receipt"]["ok"], st
    return st


def _check_gln(g: str) -> str:
    from medchaind.modules.supply.machine import gs1_check_digit

    return g[:12] + str(gs1_check_digit(g[:12]))


def populate(ipc: Path, datadir: Path) -> World:
    w = World()
    authority = load_keystore(datadir / "keys" / "node.json",
                              (datadir / "keys" / "node.passphrase").read_text().strip())
    people = {n: KeyPair.generate() for n in
              ("clinic", "doctor", "patient", "payer", "sponsor", "site1", "site2", "manu", "dist", "pharm")}
    roles = {"clinic": "provider", "doctor": "provider", "patient": "patient", "payer": "payer",
             "sponsor": "sponsor", "site1": "provider", "site2": "provider", "manu": "manufacturer",
             "dist": "distributor", "pharm": "pharmacy"}
    labels = {"clinic": "Riverside Clinic", "doctor": "Northfield Hospital", "payer": "Acme Health Plan",
              "sponsor": "Glucora Therapeutics", "site1": "Northfield CRU", "site2": "Riverside Diabetes Centre",
              "manu": "Pharma Co", "dist": "Wholesale Inc", "pharm": "Corner Pharmacy"}
    w.patient = "0x" + people["patient"].public_key.hex()
    w.patient_keys = people["patient"]
    with Client(ipc, timeout=60) as c:
        for name, kp in people.items():
            st = ok(c.register_identity(kp, roles[name], label=labels.get(name)))
            w.tx_hashes.append(st["hash"])
        for name, kp in people.items():
            if roles[name] != "patient":
                ok(c.accredit(authority.signing, kp.public_key, roles[name]))

        # --- records: a record with a canary, granted to a doctor who reads it (audited)
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"text": f"blood pressure {CANARIES[0]}"},
               "subject": {"display": f"Jane Roe {CANARIES[0]}"},
               "valueQuantity": {"value": 120, "unit": "mmHg"}}
        ok(c.send(people["patient"].signing, "consent.grant", {
            "actor": people["clinic"].public_key, "actions": ["read", "write"], "decision": "permit"}))
        st = ok(c.add_record(people["clinic"], people["patient"].public_key, obs,
                             share_with=[people["doctor"].public_key]))
        w.record_id = st["record_id"]
        ok(c.send(people["patient"].signing, "consent.grant", {
            "actor": people["doctor"].public_key, "actions": ["read"], "decision": "permit"}))
        c.read_record(people["doctor"], w.record_id)

        # --- supply: the sample lifecycle of one lot, a recall and a suspect case
        from medchaind.modules.supply import samples

        gln = dict(GLN)
        for name in ("manu", "dist", "pharm"):
            ok(c.register_party(people[name], gln[name]))
        ok(c.register_product(people["manu"], GTIN, ndc="0001-2345-67",
                              share_with=[people["dist"].public_key, people["pharm"].public_key]))
        docs = samples.lifecycle(samples.Parties(gln["manu"], gln["dist"], gln["pharm"]), GTIN, LOT,
                                 "2031-12-31", 4, per_case=2)
        for who, doc in (("manu", "manufacturer"), ("dist", "distributor"), ("pharm", "pharmacy")):
            c.import_epcis(people[who], docs[doc])
        ok(c.recall_lot(people["manu"], GTIN, LOT, cls="II", reason="label misprint"))
        trace = c.trace_unit(people["pharm"], gtin=GTIN, serial=samples.serial(1))
        w.oids = [trace["object"]["oid"]]
        st = ok(c.open_case(people["pharm"], "suspect", "counterfeit", [bytes.fromhex(w.oids[0][2:])], gtin=GTIN))
        w.case_id = st["case_id"]
        w.pallet = trace["events"][0]["parent"] or ""

        # --- trials: registered from its ClinicalTrials.gov record (the protocol document,
        # with a canary, only by its hash), amended, then a report that switches outcomes
        from medchaind.modules.trials import ctgov

        protocol = f"Protocol v1 of {NCT}: inclusion criteria ... {CANARIES[2]}".encode()
        study = ctgov.parse((TRIALS / f"{NCT}-v1.json").read_bytes())
        body = study.registration(protocol_hash=hashlib.sha256(protocol).digest(),
                                  sites=[people["site1"].public_key, people["site2"].public_key],
                                  ethics=("REC 25/NE/0001", hashlib.sha256(b"approval").digest()))
        ok(c.register_trial(people["sponsor"].signing, body))
        allocation, salt = b"seq,arm\n0,Glucoretide 2 mg\n1,Placebo\n", hashlib.sha256(b"salt").digest()
        ok(c.commit_randomisation(people["sponsor"].signing, NCT, allocation, salt))
        participant = KeyPair.generate()  # a fresh pseudonymous key for this trial
        ok(c.join_trial(participant, NCT, people["site1"].public_key, 1))
        ok(c.enroll_participant(people["site1"].signing, NCT, participant.public_key))
        ok(c.amend_trial(people["sponsor"].signing, NCT, effective_version=2,
                         protocol_hash=hashlib.sha256(protocol + b" v2").digest(), changes=["consent_form"],
                         reason="new safety information for participants", reconsent=True,
                         approval=("REC 25/NE/0001/AM01", hashlib.sha256(b"am01").digest())))
        from medchaind.modules.trials.client import data_lock_root

        ok(c.trial_commit(people["sponsor"].signing, NCT, "sap", hashlib.sha256(b"sap").digest(), label="SAP v1.0"))
        ok(c.trial_commit(people["sponsor"].signing, NCT, "data_lock",
                          data_lock_root([hashlib.sha256(b"a.csv").digest()])))
        ok(c.unblind_trial(people["sponsor"].signing, NCT, allocation_list=allocation, salt=salt))
        later = ctgov.parse((TRIALS / f"{NCT}-v2.json").read_bytes())
        ok(c.report_trial(people["sponsor"].signing, later.report()))

        # --- claims: an 837P batch (a canary in the patient's address) with a duplicate
        from medchaind.modules.claims.client import read_claims

        ok(c.enroll_provider(people["payer"], people["clinic"].public_key, ["1234567893"]))
        today = time.strftime("%Y%m%d", time.gmtime())
        text = (CLAIMS / "837p_batch.txt").read_text().replace("20240110", today).replace(
            "12 ELM STREET", f"12 {CANARIES[1]} STREET")
        claims, _ = read_claims(text)
        encounters = {"PCNQX0001": {1: bytes.fromhex(w.record_id[2:])}}
        reports = c.submit_claims(people["clinic"], people["payer"].public_key, claims)
        assert all(r["ok"] for r in reports), reports
        w.claim_id, w.duplicate_id = reports[0]["claim_id"], reports[1]["claim_id"]
        del encounters
        return w
