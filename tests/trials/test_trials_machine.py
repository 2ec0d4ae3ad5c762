"""The trials state machine on the shared app-test harness: pre-state, tx, post-state or
error (``fails`` also checks that nothing but the nonce changed).

One test (or one table row) per rule of medchaind/modules/trials/machine.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from trials_kit import (
    LIST_HASH,
    NCT,
    OUTCOMES,
    PRIMARY,
    SALT,
    SECONDARY,
    amend_body,
    approval,
    base,
    commit_body,
    consent_body,
    enroll,
    enroll_body,
    flags,
    grant,
    register_body,
    report_body,
    standard,
    to_unblinding,
    trial,
    unblind_body,
)

from medchaind import codec
from medchaind.modules.trials import outcomes as oc
from medchaind.modules.trials.machine import RESULTS_DUE_MS, consent_purpose, trial_id
from medchaind.testing.appkit import DAY_MS, digest, pub

# ------------------------------------------------------------------ registration


def test_register_records_the_protocol_outcomes_and_block_time_facts() -> None:
    c = standard()
    t = trial(c)
    assert t["trial"] == NCT and t["sponsor"] == "0x" + pub("S").hex()
    assert t["status"] == "not_yet_recruiting" and t["protocol_version"] == 1 and t["consent_version"] == 1
    assert t["sites"] == ["0x" + pub("D1").hex(), "0x" + pub("D2").hex()]
    assert t["ethics"]["ref"] == "IRB-2025-001"
    assert set(t["dates"]) == {"registered", "ethics"}
    assert t["dates"]["registered"]["height"] == c.height - 1  # the randomisation commit came after
    assert len(t["commitments"]["randomisation"]) == 1
    outs = c.query("trials.outcomes", {"trial": NCT})
    assert outs["version"] == 1 and outs["prespecified"] is False  # not started yet
    assert [o["measure"] for o in outs["outcomes"]] == [o["measure"] for o in OUTCOMES]
    assert outs["outcomes"][0]["fingerprint"] == "0x" + oc.fingerprint(PRIMARY["measure"], PRIMARY["time_frame"]).hex()
    assert c.query("trials.list", {}) == [{
        "trial": NCT, "title": t["title"], "sponsor": t["sponsor"], "status": "not_yet_recruiting",
        "protocol_version": 1, "enrolled": 0, "target_enrollment": 3, "reports": 0}]


BAD_REGISTRATIONS = [
    pytest.param(register_body(trial="NCT123"), id="NCT id with too few digits"),
    pytest.param(register_body(trial="nct01234567"), id="lower-case nct"),
    pytest.param(register_body(trial="ISRCTN 123"), id="space in a registry id"),
    pytest.param({k: v for k, v in register_body().items() if k != "trial"}, id="no registry id"),
    pytest.param(register_body(outcomes=[{"role": "primary", "measure": "HbA1c"}]), id="outcome without time frame"),
    pytest.param(register_body(outcomes=[SECONDARY]), id="no primary outcome"),
    pytest.param(register_body(outcomes=[PRIMARY, {**PRIMARY, "measure": "change in hba1c."}]),
                 id="the same outcome twice (after normalisation)"),
    pytest.param(register_body(outcomes=[{**PRIMARY, "role": "key"}]), id="unknown role"),
    pytest.param(register_body(outcomes=[{**PRIMARY, "measure": "."}]), id="measure empty once normalised"),
    pytest.param(register_body(outcomes=[{**PRIMARY, "time_frame": "week\n26"}]), id="control character"),
    pytest.param(register_body(target_enrollment=0), id="target 0"),
    pytest.param(register_body(protocol_hash=b"\x01" * 31), id="short protocol hash"),
    pytest.param(register_body(allocation="random"), id="unknown allocation"),
    pytest.param(register_body(arms=[{"label": "A", "type": "experimental"}, {"label": "A", "type": "other"}]),
                 id="duplicate arm label"),
    pytest.param({**register_body(), "participants": []}, id="unexpected field"),
]


@pytest.mark.parametrize("body", BAD_REGISTRATIONS)
def test_bad_registration_bodies_are_refused_and_change_nothing(body: dict[str, Any]) -> None:
    c = base()
    c.fails("S", "trials.register", body, code="invalid_body")
    assert c.query("trials.list", {}) == []


def test_other_registry_ids_are_accepted() -> None:
    c = base()
    for rid in ("ISRCTN12345678", "2022-500001-23-00", "DRKS00012345", "ACTRN12620000123456"):
        c.ok("S", "trials.register", register_body(trial=rid))
    assert len(c.query("trials.list", {})) == 4


def test_only_an_accredited_sponsor_registers_once_with_accredited_sites() -> None:
    c = base()
    c.register("S9", "sponsor")  # pending, not accredited
    c.fails("S9", "trials.register", register_body(), code="unauthorized")
    c.fails("D1", "trials.register", register_body(), code="unauthorized")
    c.fails("P1", "trials.register", register_body(), code="unauthorized")
    c.register("D9", "provider")  # not accredited
    c.fails("S", "trials.register", register_body(sites=[pub("D1"), pub("D9")]), code="invalid_site")
    c.ok("S", "trials.register", register_body())
    c.fails("S2", "trials.register", register_body(), code="already_registered")
    c.fails("S", "trials.register", register_body(), code="already_registered")


def test_unknown_trial_and_someone_elses_trial_are_refused() -> None:
    c = standard()
    c.fails("S", "trials.report", report_body([PRIMARY], trial="NCT99999999"), code="unknown_trial")
    c.fails("S", "trials.amend", amend_body(2, changes=["other"], trial="NCT99999999"), code="unknown_trial")
    for action, body in [
        ("trials.amend", amend_body(2, changes=["other"])),
        ("trials.commit", commit_body("sap", "v1")),
        ("trials.ethics", {"trial": NCT, "approval": approval("X")}),
        ("trials.status", {"trial": NCT, "action": "suspend"}),
        ("trials.unblind", unblind_body()),
        ("trials.report", report_body([PRIMARY])),
    ]:
        c.fails("S2", action, body, code="not_sponsor")
    assert c.query("trials.get", {"trial": "NCT99999999"}) is None


# ------------------------------------------------------------------ ethics, randomisation


def test_enrolment_before_ethics_approval_is_refused() -> None:
    c = standard(ethics=None)
    g = grant(c, "P1")
    c.fails("D1", "trials.enroll", enroll_body("P1", g), code="no_ethics_approval")
    c.ok("S", "trials.ethics", {"trial": NCT, "approval": approval("IRB-7")})
    c.fails("S", "trials.ethics", {"trial": NCT, "approval": approval("IRB-8")}, code="already_approved")
    c.ok("D1", "trials.enroll", enroll_body("P1", g))
    assert "ethics" in trial(c)["dates"]


def test_randomised_enrolment_needs_the_randomisation_commitment_first() -> None:
    c = base()
    c.ok("S", "trials.register", register_body())
    g = grant(c, "P1")
    c.fails("D1", "trials.enroll", enroll_body("P1", g), code="no_randomisation_commitment")
    c.ok("S", "trials.commit", commit_body("randomisation", "r"))
    c.fails("S", "trials.commit", commit_body("randomisation", "r"), code="already_committed")
    c.ok("D1", "trials.enroll", enroll_body("P1", g))


def test_randomisation_committed_after_the_first_enrolment_is_refused() -> None:
    c = base()
    c.ok("S", "trials.register", register_body(allocation="na", masking="none"))
    enroll(c, "P1")
    c.fails("S", "trials.commit", commit_body("randomisation", "r"), code="too_late")


# ------------------------------------------------------------------ enrolment against consent


def test_enrolment_fixes_the_start_and_the_randomisation_order() -> None:
    c = standard()
    g1 = enroll(c, "P1")
    start = c.height
    enroll(c, "P2", site="D2")
    t = trial(c)
    assert t["status"] == "recruiting" and t["enrolled"] == 2 and t["start_version"] == 1
    assert t["dates"]["start"]["height"] == start
    ps = c.query("trials.participants", {"trial": NCT})
    assert [(p["participant"], p["seq"], p["site"]) for p in ps] == [
        ("0x" + pub("P1").hex(), 0, "0x" + pub("D1").hex()), ("0x" + pub("P2").hex(), 1, "0x" + pub("D2").hex())]
    assert ps[0]["consents"][0]["grant_id"] == "0x" + g1.hex() and ps[0]["consent"] == "current"
    assert c.query("trials.outcomes", {"trial": NCT})["prespecified"] is True


NO_CONSENT = [
    pytest.param(dict(site="D2"), "no_consent", id="consent given to another site"),
    pytest.param(dict(purposes=["TREAT"]), "no_consent", id="treatment purpose, not the trial"),
    pytest.param(dict(purposes=[consent_purpose("NCT07654321", 1)]), "no_consent", id="consent to another trial"),
    pytest.param(dict(purposes=["CLINTRCH"]), "no_consent", id="research in general, not this trial"),
    pytest.param(dict(version=2), "no_consent", id="consent to a version that does not exist yet"),
    pytest.param(dict(actions=["read"]), "no_consent", id="no write permission"),
    pytest.param(dict(resource_types=["Observation"]), "no_consent", id="scope without ResearchSubject"),
    pytest.param(dict(end_ms=1), "no_consent", id="consent period over"),
    pytest.param(dict(decision="deny"), "no_consent", id="the named grant is a deny"),
]


@pytest.mark.parametrize(("over", "code"), NO_CONSENT)
def test_enrolment_without_a_valid_trial_consent_is_refused(over: dict[str, Any], code: str) -> None:
    c = standard()
    site = over.pop("site", "D1")
    version = over.pop("version", 1)
    body = consent_body(site, version, **over)
    if "purposes" in over:
        body["purposes"] = over["purposes"]
    r = c.ok("P1", "consent.grant", body)
    g = bytes(r.events[0]["grant_id"])
    c.fails("D1", "trials.enroll", enroll_body("P1", g), code=code)
    assert trial(c)["enrolled"] == 0


def test_a_grant_for_any_purpose_is_not_trial_consent() -> None:
    c = standard()
    r = c.ok("P1", "consent.grant", {"actions": ["read", "write"], "decision": "permit", "actor": pub("D1")})
    c.fails("D1", "trials.enroll", enroll_body("P1", bytes(r.events[0]["grant_id"])), code="no_consent")


def test_an_unknown_or_someone_elses_grant_is_no_consent() -> None:
    c = standard()
    g2 = grant(c, "P2")
    c.fails("D1", "trials.enroll", enroll_body("P1", g2), code="no_consent")  # P2's grant for P1
    c.fails("D1", "trials.enroll", enroll_body("P1", digest("nothing")), code="no_consent")


def test_a_deny_wins_and_a_revoked_consent_is_withdrawn() -> None:
    c = standard()
    g = grant(c, "P1")
    c.ok("P1", "consent.grant", consent_body("D1", decision="deny"))
    c.fails("D1", "trials.enroll", enroll_body("P1", g), code="consent_denied")
    g2 = grant(c, "P2")
    c.ok("P2", "consent.revoke", {"grant_id": g2})
    c.fails("D1", "trials.enroll", enroll_body("P2", g2), code="consent_withdrawn")


def test_enrolment_by_a_non_site_twice_or_of_a_non_patient_is_refused() -> None:
    c = standard()
    g = grant(c, "P1", site="D3")
    c.fails("D3", "trials.enroll", enroll_body("P1", g), code="not_a_site")
    c.fails("S", "trials.enroll", enroll_body("P1", g), code="not_a_site")
    g = grant(c, "P1")
    c.ok("D1", "trials.enroll", enroll_body("P1", g))
    c.fails("D1", "trials.enroll", enroll_body("P1", g), code="already_enrolled")
    c.fails("D1", "trials.enroll", {"trial": NCT, "participant": pub("D2"), "consent_grant": g},
            code="unknown_participant")
    c.fails("D1", "trials.enroll", enroll_body("P9", g), code="unknown_participant")


def test_enrolment_counts_against_the_target_withdrawals_included() -> None:
    c = standard()  # target 3
    for p in ("P1", "P2", "P3"):
        enroll(c, p)
    c.ok("P1", "trials.withdraw", {"trial": NCT, "participant": pub("P1")})
    g4 = grant(c, "P4")
    c.fails("D1", "trials.enroll", enroll_body("P4", g4), code="target_reached")
    c.fails("S", "trials.amend", amend_body(2, changes=["sample_size"], target_enrollment=2), code="invalid_body")
    c.ok("S", "trials.amend", amend_body(2, changes=["sample_size"], target_enrollment=4))
    c.ok("D1", "trials.enroll", enroll_body("P4", g4))  # a v1 consent: no re-consent was required
    t = trial(c)
    assert (t["enrolled"], t["withdrawn"], t["target_enrollment"]) == (4, 1, 4)


def test_enrolment_count_has_its_own_key_and_only_the_first_enrolment_rewrites_the_trial() -> None:
    """State layout (protocol.md §21.3): ``n/ || tid`` counts enrolments; the trial has no count."""
    c = standard()
    tid = trial_id(NCT)
    assert (("trials", b"n/" + tid) not in c.state.data
            and "enrolled" not in codec.decode(c.state.data[("trials", b"t/" + tid)]))
    writes = []
    for p in ("P1", "P2"):
        g = grant(c, p)
        ex = c.commit(c.txs([("D1", "trials.enroll", enroll_body(p, g))]))
        assert ex.receipts[0].ok
        writes.append({k for (m, k) in ex.writes if m == "trials"})
    assert b"t/" + tid in writes[0] and b"t/" + tid not in writes[1]  # the start date, then nothing
    assert all(b"n/" + tid in w for w in writes)
    assert codec.decode(c.state.data[("trials", b"n/" + tid)]) == 2 == trial(c)["enrolled"]
    assert [x["enrolled"] for x in c.query("trials.list", {}) if x["trial"] == NCT] == [2]


# ------------------------------------------------------------------ re-consent and withdrawal


def event(participant: str, kind: str = "visit") -> dict[str, Any]:
    return {"trial": NCT, "participant": pub(participant), "kind": kind, "data_hash": digest("crf/" + participant)}


def test_reconsent_after_an_amendment_that_requires_it() -> None:
    c = standard()
    enroll(c, "P1")
    c.ok("D1", "trials.event", event("P1"))
    c.ok("S", "trials.amend", amend_body(2, changes=["consent_form", "procedures"], reconsent=True))
    assert trial(c)["consent_version"] == 2
    # later study events of P1 fail until P1 re-consents and the site records it
    c.fails("D1", "trials.event", event("P1"), code="reconsent_required")
    cov = c.query("trials.coverage", {"trial": NCT})
    assert cov["total"] == {"enrolled": 1, "current": 0, "reconsent_required": 1, "withdrawn": 0, "invalid": 0}
    # a new participant with a v1 consent cannot enrol; with a v2 consent can
    g_old = grant(c, "P2", version=1)
    c.fails("D1", "trials.enroll", enroll_body("P2", g_old), code="reconsent_required")
    g_new = grant(c, "P2", version=2)
    c.ok("D1", "trials.enroll", enroll_body("P2", g_new))
    # P1 re-consents
    g1v2 = grant(c, "P1", version=2)
    c.fails("D2", "trials.reconsent", {"trial": NCT, "participant": pub("P1"), "consent_grant": g1v2},
            code="not_a_site")
    c.ok("D1", "trials.reconsent", {"trial": NCT, "participant": pub("P1"), "consent_grant": g1v2})
    c.fails("D1", "trials.reconsent", {"trial": NCT, "participant": pub("P1"), "consent_grant": g1v2},
            code="already_consented")
    c.ok("D1", "trials.event", event("P1"))
    p1 = c.query("trials.participants", {"trial": NCT})[0]
    assert [x["version"] for x in p1["consents"]] == [1, 2] and p1["consent"] == "current" and p1["events"] == 2
    cov = c.query("trials.coverage", {"trial": NCT})
    assert cov["total"]["current"] == 2 and cov["total"]["reconsent_required"] == 0


def test_an_amendment_without_reconsent_keeps_earlier_consents_valid() -> None:
    c = standard()
    enroll(c, "P1")
    c.ok("S", "trials.amend", amend_body(2, changes=["administrative"]))
    assert trial(c)["consent_version"] == 1
    c.ok("D1", "trials.event", event("P1"))
    enroll(c, "P2", version=1)
    enroll(c, "P3", version=2)  # a consent to the current version counts too


def test_withdrawal_by_revoking_consent_stops_study_events() -> None:
    c = standard()
    g = enroll(c, "P1")
    c.ok("D1", "trials.event", event("P1"))
    c.ok("P1", "consent.revoke", {"grant_id": g})
    c.fails("D1", "trials.event", event("P1"), code="consent_withdrawn")
    p1 = c.query("trials.participants", {"trial": NCT})[0]
    assert p1["consent"] == "withdrawn"
    assert c.query("trials.coverage", {"trial": NCT})["total"]["withdrawn"] == 1


def test_withdrawal_recorded_by_the_participant_or_the_site() -> None:
    c = standard()
    enroll(c, "P1")
    enroll(c, "P2")
    c.fails("D2", "trials.withdraw", {"trial": NCT, "participant": pub("P1")}, code="unauthorized")
    c.fails("P2", "trials.withdraw", {"trial": NCT, "participant": pub("P1")}, code="unauthorized")
    c.ok("P1", "trials.withdraw", {"trial": NCT, "participant": pub("P1")})
    c.ok("D1", "trials.withdraw", {"trial": NCT, "participant": pub("P2")})
    c.fails("P1", "trials.withdraw", {"trial": NCT, "participant": pub("P1")}, code="withdrawn")
    c.fails("D1", "trials.event", event("P1"), code="withdrawn")
    c.fails("D1", "trials.event", event("P3"), code="not_enrolled")
    ps = c.query("trials.participants", {"trial": NCT})
    assert [p["withdrawn"]["by"] for p in ps] == ["participant", "site"]
    assert trial(c)["withdrawn"] == 2


def test_study_events_only_by_the_enrolling_site_while_the_trial_runs() -> None:
    c = standard()
    enroll(c, "P1")
    c.fails("D2", "trials.event", event("P1"), code="not_a_site")
    c.ok("S", "trials.status", {"trial": NCT, "action": "suspend"})
    c.fails("D1", "trials.event", event("P1"), code="trial_closed")
    c.ok("S", "trials.status", {"trial": NCT, "action": "resume"})
    c.ok("D1", "trials.event", event("P1"))
    c.fails("D1", "trials.event", {**event("P1"), "kind": "visit 2"}, code="invalid_body")


# ------------------------------------------------------------------ amendments


def test_an_amendment_needs_an_approval_unless_urgent_which_is_flagged() -> None:
    c = standard()
    c.fails("S", "trials.amend", amend_body(2, changes=["safety"], approval=None), code="approval_required")
    c.fails("S", "trials.amend", amend_body(2, changes=["safety"], urgent_safety=True), code="invalid_body")
    c.ok("S", "trials.amend", amend_body(2, changes=["safety"], approval=None, urgent_safety=True))
    assert flags(c) == ["amendment_without_approval"]
    (a,) = c.query("trials.amendments", {"trial": NCT})
    assert a["urgent_safety"] is True and a["approval"] is None and a["changes"] == ["safety"]


BAD_AMENDMENTS = [
    pytest.param(amend_body(1, changes=["other"]), "bad_version", id="version not above the current one"),
    pytest.param(amend_body(2, changes=["outcomes"]), "invalid_body", id="says outcomes, gives none"),
    pytest.param(amend_body(2, changes=["other"], outcomes=[PRIMARY]), "invalid_body", id="outcomes not declared"),
    pytest.param(amend_body(2, changes=["outcomes"], outcomes=OUTCOMES), "invalid_body", id="outcomes unchanged"),
    pytest.param(amend_body(2, changes=["outcomes"], outcomes=[SECONDARY]), "invalid_body", id="no primary left"),
    pytest.param(amend_body(2, changes=["sample_size"]), "invalid_body", id="sample size without target"),
    pytest.param(amend_body(2, changes=["sites"], add_sites=[pub("D1")]), "invalid_body", id="site already listed"),
    pytest.param(amend_body(2, changes=["sites"], add_sites=[pub("P1")]), "invalid_site", id="site not a provider"),
    pytest.param(amend_body(2, changes=["consent_form"]), "invalid_body", id="new consent form, no re-consent"),
    pytest.param(amend_body(2, changes=["other"], reason=""), "invalid_body", id="no reason"),
    pytest.param(amend_body(2, changes=["other"], urgent_safety=False), "invalid_body", id="urgent_safety false"),
]


@pytest.mark.parametrize(("body", "code"), BAD_AMENDMENTS)
def test_bad_amendments_are_refused(body: dict[str, Any], code: str) -> None:
    c = standard()
    c.fails("S", "trials.amend", body, code=code)
    assert trial(c)["protocol_version"] == 1


def test_amendment_adds_sites_and_records_what_changed_and_why() -> None:
    c = standard()
    c.ok("S", "trials.amend", amend_body(3, changes=["sites", "outcomes"], add_sites=[pub("D3")],
                                         outcomes=[PRIMARY, SECONDARY], reason="site added; exploratory dropped"))
    t = trial(c)
    assert t["protocol_version"] == 3 and t["outcome_versions"] == [1, 3] and len(t["sites"]) == 3
    (a,) = c.query("trials.amendments", {"trial": NCT})
    assert (a["previous_version"], a["effective_version"], a["changes"]) == (1, 3, ["outcomes", "sites"])
    assert a["reason"] == "site added; exploratory dropped" and a["approval"]["ref"] == "IRB-2025-001-A3"
    assert a["after_start"] is False
    assert len(c.query("trials.outcomes", {"trial": NCT})["outcomes"]) == 2
    assert len(c.query("trials.outcomes", {"trial": NCT, "version": 1})["outcomes"]) == 4
    enroll(c, "P1", site="D3")


def test_outcomes_cannot_change_after_unblinding() -> None:
    c = standard()
    to_unblinding(c)
    c.fails("S", "trials.amend", amend_body(2, changes=["outcomes"], outcomes=[PRIMARY]), code="outcomes_locked")
    c.ok("S", "trials.amend", amend_body(2, changes=["administrative"]))


# ------------------------------------------------------------------ commitments and unblinding


def test_sap_after_the_first_enrolment_is_flagged_and_after_unblinding_refused() -> None:
    c = standard()
    c.ok("S", "trials.commit", commit_body("sap", "v0"))
    enroll(c, "P1")
    c.ok("S", "trials.commit", commit_body("sap", "v1"))  # an update: the first SAP came before
    assert flags(c) == []
    c2 = standard()
    enroll(c2, "P1")
    c2.ok("S", "trials.commit", commit_body("sap", "v1"))
    assert flags(c2) == ["sap_after_enrolment"]
    c2.ok("S", "trials.commit", commit_body("data_lock", "l"))
    c2.ok("S", "trials.unblind", unblind_body())
    c2.fails("S", "trials.commit", commit_body("sap", "v2"), code="unblinded")


def test_data_and_code_committed_after_unblinding_are_flagged() -> None:
    c = standard()
    c.fails("S", "trials.commit", commit_body("data_lock", "early"), code="not_started")
    to_unblinding(c)
    c.ok("S", "trials.commit", commit_body("data_lock", "lock2"))
    c.ok("S", "trials.commit", commit_body("analysis_code", "c1"))
    c.fails("S", "trials.commit", commit_body("analysis_code", "c1"), code="already_committed")
    assert flags(c) == ["sap_after_enrolment", "data_after_unblinding", "analysis_code_after_unblinding"]


def test_unblinding_needs_sap_data_lock_and_the_matching_reveal() -> None:
    c = standard()
    c.fails("S", "trials.unblind", unblind_body(), code="not_started")
    enroll(c, "P1")
    c.fails("S", "trials.unblind", unblind_body(), code="no_sap")
    c.ok("S", "trials.commit", commit_body("sap", "v1"))
    c.fails("S", "trials.unblind", unblind_body(), code="no_data_lock")
    c.ok("S", "trials.commit", commit_body("data_lock", "l"))
    c.fails("S", "trials.unblind", {"trial": NCT}, code="reveal_required")
    c.fails("S", "trials.unblind", {"trial": NCT, "randomisation_salt": SALT}, code="invalid_body")
    c.fails("S", "trials.unblind", {**unblind_body(), "randomisation_list_hash": digest("another list")},
            code="reveal_mismatch")
    c.ok("S", "trials.unblind", unblind_body())
    c.fails("S", "trials.unblind", unblind_body(), code="already_unblinded")
    t = trial(c)
    assert t["randomisation_reveal"] == {"salt": "0x" + SALT.hex(), "list_hash": "0x" + LIST_HASH.hex()}
    g = grant(c, "P2")
    c.fails("D1", "trials.enroll", enroll_body("P2", g), code="unblinded")


# ------------------------------------------------------------------ status, results


def test_status_transitions_are_block_time_facts() -> None:
    c = standard()
    c.fails("S", "trials.status", {"trial": NCT, "action": "close_recruitment"}, code="bad_transition")
    c.fails("S", "trials.status", {"trial": NCT, "action": "complete"}, code="bad_transition")
    enroll(c, "P1")
    c.fails("S", "trials.status", {"trial": NCT, "action": "withdraw"}, code="bad_transition")
    c.ok("S", "trials.status", {"trial": NCT, "action": "close_recruitment"})
    g = grant(c, "P2")
    c.fails("D1", "trials.enroll", enroll_body("P2", g), code="not_recruiting")
    c.fails("S", "trials.status", {"trial": NCT, "action": "complete"}, code="bad_transition")
    c.ok("S", "trials.status", {"trial": NCT, "action": "primary_completion"})
    c.fails("S", "trials.status", {"trial": NCT, "action": "primary_completion"}, code="bad_transition")
    c.ok("S", "trials.status", {"trial": NCT, "action": "complete"})
    c.fails("S", "trials.status", {"trial": NCT, "action": "terminate"}, code="bad_transition")
    c.fails("S", "trials.amend", amend_body(2, changes=["other"]), code="trial_closed")
    t = trial(c)
    assert t["status"] == "completed"
    assert list(t["dates"]) == ["completion", "ethics", "primary_completion", "recruitment_closed", "registered",
                                "start"]
    assert t["results_due_ms"] == t["dates"]["primary_completion"]["time_ms"] + RESULTS_DUE_MS


def test_a_trial_never_started_is_withdrawn_a_started_one_terminated() -> None:
    c = standard()
    c.ok("S", "trials.status", {"trial": NCT, "action": "withdraw"})
    assert trial(c)["status"] == "withdrawn"
    c2 = standard()
    enroll(c2, "P1")
    c2.ok("S", "trials.status", {"trial": NCT, "action": "terminate"})
    t = trial(c2)
    assert t["status"] == "terminated" and "primary_completion" in t["dates"]


def test_results_of_a_masked_trial_come_after_unblinding() -> None:
    c = standard()
    c.fails("S", "trials.report", report_body(OUTCOMES), code="not_started")
    enroll(c, "P1")
    c.fails("S", "trials.report", report_body(OUTCOMES), code="not_unblinded")
    open_label = standard(masking="none")
    enroll(open_label, "P1")
    open_label.ok("S", "trials.report", report_body(OUTCOMES))
    assert trial(open_label)["reports"] == 1


def test_results_overdue_then_late() -> None:
    c = standard(masking="none")
    enroll(c, "P1")
    c.ok("S", "trials.status", {"trial": NCT, "action": "primary_completion"})
    assert flags(c) == []
    c.advance(RESULTS_DUE_MS + DAY_MS)
    assert flags(c) == ["results_overdue"]  # derived at the tip's time, not stored
    c.ok("S", "trials.report", report_body(OUTCOMES))
    assert flags(c) == ["results_late"]


def test_report_bodies_are_checked() -> None:
    c = standard(masking="none")
    enroll(c, "P1")
    c.fails("S", "trials.report", report_body([]), code="invalid_body")
    c.fails("S", "trials.report", report_body([PRIMARY, PRIMARY]), code="invalid_body")
    c.fails("S", "trials.report", report_body([{"role": "primary", "measure": "x"}]), code="invalid_body")
    c.ok("S", "trials.report", report_body([{**SECONDARY, "role": "post_hoc"}]))


def test_trial_ids_are_hashes_of_the_registry_id() -> None:
    c = standard()
    assert any(k.startswith(b"t/" + trial_id(NCT)) for k in c.keys("trials"))
    assert not any(NCT.encode() in k for k in c.keys("trials"))


def test_queries_of_an_unknown_trial_answer_none_which_the_node_turns_into_not_found() -> None:
    c = standard()
    for q in ("get", "outcomes", "amendments", "participants", "coverage", "switching"):
        assert c.query("trials." + q, {"trial": "NCT99999999"}) is None
        assert c.app.query_spec("trials." + q)[1].not_found == "no such trial"


def test_events_carry_the_trial_for_subscribers() -> None:
    c = standard()
    g = grant(c, "P1")
    r = c.ok("D1", "trials.enroll", enroll_body("P1", g))
    (ev,) = r.events
    assert ev == {"type": "trials.enrolled", "trial": NCT, "participant": pub("P1"), "site": pub("D1"), "seq": 0,
                  "consent_version": 1}


def test_check_tx_dry_run_refuses_a_bad_enrolment() -> None:
    from medchaind.errors import TxRejected

    c = standard()
    tx = c.tx("D1", "trials.enroll", enroll_body("P1", digest("no grant")))
    with pytest.raises(TxRejected):
        c.check(tx)
