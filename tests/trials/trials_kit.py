"""Builders for the trials tests, on the shared harness :mod:`medchaind.testing.appkit`.

Cast: ``A`` the sole authority; ``S`` an accredited sponsor (``S2`` another one);
``D1`` / ``D2`` accredited providers that are the trial's sites (``D3`` accredited but not
a site); ``P1``..``P4`` participants (patient identities, one pseudonymous key per
trial). :func:`standard` registers trial :data:`NCT` with ethics approval and the
randomisation list committed, ready to enrol.
"""

from __future__ import annotations

from typing import Any

from medchaind.modules.trials.machine import consent_purpose, randomisation_commitment
from medchaind.testing.appkit import DAY_MS, AppChain, digest, pub

NCT = "NCT01234567"
SALT = digest("randomisation-salt")
LIST_HASH = digest("allocation-list")

PRIMARY = {"role": "primary", "measure": "Change in HbA1c", "time_frame": "Baseline and week 26"}
SECONDARY = {"role": "secondary", "measure": "Body weight", "time_frame": "Week 26"}
SECONDARY2 = {"role": "secondary", "measure": "Fasting plasma glucose", "time_frame": "Week 12"}
OTHER = {"role": "other", "measure": "Hypoglycaemic events", "time_frame": "Up to 52 weeks"}
OUTCOMES = [PRIMARY, SECONDARY, SECONDARY2, OTHER]

CAST = [("S", "sponsor"), ("S2", "sponsor"), ("D1", "provider"), ("D2", "provider"), ("D3", "provider")]
PARTICIPANTS = ["P1", "P2", "P3", "P4"]


def register_body(trial: str = NCT, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "trial": trial,
        "title": "A randomised trial of drug X in type 2 diabetes",
        "protocol_hash": digest("protocol-v1"),
        "protocol_version": 1,
        "registry_snapshot_hash": digest("ctgov-v1"),
        "target_enrollment": 3,
        "allocation": "randomized",
        "masking": "double",
        "outcomes": [dict(o) for o in OUTCOMES],
        "sites": [pub("D1"), pub("D2")],
        "arms": [{"label": "Drug X", "type": "experimental"}, {"label": "Placebo", "type": "placebo_comparator"}],
        "phases": ["phase3"],
        "ethics": approval("IRB-2025-001"),
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def approval(ref: str) -> dict[str, Any]:
    return {"ref": ref, "document_hash": digest("approval/" + ref)}


def amend_body(version: int, *, changes: list[str], reconsent: bool = False, trial: str = NCT,
               **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "trial": trial, "effective_version": version, "protocol_hash": digest(f"protocol-v{version}"),
        "changes": changes, "reason": f"amendment {version}", "reconsent": reconsent,
        "approval": approval(f"IRB-2025-001-A{version}"),
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


def consent_body(site: str, version: int = 1, trial: str = NCT, **over: Any) -> dict[str, Any]:
    """The participant's ``consent.grant`` to ``site`` for version ``version`` of the trial."""
    body: dict[str, Any] = {"actions": ["read", "write"], "decision": "permit", "actor": pub(site),
                            "purposes": [consent_purpose(trial, version)]}
    body.update(over)
    return body


def grant(c: AppChain, participant: str, site: str = "D1", version: int = 1, **over: Any) -> bytes:
    """Commit a consent grant of ``participant``; its grant id."""
    r = c.ok(participant, "consent.grant", consent_body(site, version, **over))
    (ev,) = [e for e in r.events if e["type"] == "consent.granted"]
    return bytes(ev["grant_id"])


def enroll_body(participant: str, grant_id: bytes, trial: str = NCT) -> dict[str, Any]:
    return {"trial": trial, "participant": pub(participant), "consent_grant": grant_id}


def enroll(c: AppChain, participant: str, site: str = "D1", version: int = 1) -> bytes:
    g = grant(c, participant, site, version)
    c.ok(site, "trials.enroll", enroll_body(participant, g))
    return g


def commit_body(kind: str, tag: str, trial: str = NCT) -> dict[str, Any]:
    h = randomisation_commitment(SALT, LIST_HASH) if kind == "randomisation" else digest(f"{kind}/{tag}")
    return {"trial": trial, "kind": kind, "hash": h}


def unblind_body(trial: str = NCT) -> dict[str, Any]:
    return {"trial": trial, "randomisation_salt": SALT, "randomisation_list_hash": LIST_HASH}


def report_body(outcomes: list[dict[str, Any]], trial: str = NCT) -> dict[str, Any]:
    return {"trial": trial, "registry_snapshot_hash": digest("ctgov-results"), "outcomes": outcomes}


def base() -> AppChain:
    """The cast, registered and accredited; no trial yet."""
    c = AppChain.of({"A": 1})
    c.cast([*CAST, *((p, "patient") for p in PARTICIPANTS)],
           accredited=[(n, r) for n, r in CAST])
    return c


def standard(**over: Any) -> AppChain:
    """:func:`base` plus trial NCT registered (ethics approved) and its randomisation committed."""
    c = base()
    c.ok("S", "trials.register", register_body(**over))
    c.ok("S", "trials.commit", commit_body("randomisation", "r"))
    return c


def trial(c: AppChain, trial_id: str = NCT) -> dict[str, Any]:
    t = c.query("trials.get", {"trial": trial_id})
    assert t is not None
    return t  # type: ignore[no-any-return]


def flags(c: AppChain, trial_id: str = NCT) -> list[str]:
    return [f["code"] for f in trial(c, trial_id)["flags"]]


def to_unblinding(c: AppChain) -> None:
    """Enrol P1, commit the SAP and the data lock, then unblind."""
    enroll(c, "P1")
    c.ok("S", "trials.commit", commit_body("sap", "v1"))
    c.ok("S", "trials.commit", commit_body("data_lock", "lock1"))
    c.ok("S", "trials.unblind", unblind_body())


__all__ = ["DAY_MS"]
