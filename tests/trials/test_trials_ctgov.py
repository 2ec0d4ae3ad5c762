"""ClinicalTrials.gov API v2 records -> trials bodies (medchaind/modules/trials/ctgov.py).

The fixtures in ``fixtures/`` are written for these tests (a fictional trial, no
download): ``-v1`` as registered before the start, ``-v2`` a later registry version
that swaps the primary and a secondary outcome and moves a time frame, ``-results``
with a results section (the same switch, an undeclared extra outcome and a post hoc one).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from trials_kit import base, commit_body, consent_body, enroll_body, unblind_body

from medchaind.app.schema import decode_body
from medchaind.modules.trials import ctgov
from medchaind.modules.trials.ctgov import CtgovError
from medchaind.modules.trials.machine import Register, Report
from medchaind.testing.appkit import AppChain, digest, pub

FIXTURES = Path(__file__).parent / "fixtures"
NCT = "NCT09000001"


def record(name: str = "v1") -> dict[str, Any]:
    return json.loads((FIXTURES / f"{NCT}-{name}.json").read_text())  # type: ignore[no-any-return]


def study(rec: dict[str, Any] | None = None) -> ctgov.Study:
    return ctgov.parse(json.dumps(rec if rec is not None else record()), "study.json")


def registration(rec: dict[str, Any] | None = None) -> dict[str, Any]:
    return study(rec).registration(protocol_hash=digest("protocol"), sites=[pub("D1"), pub("D2")],
                                   ethics=("REC 25/NE/0001", digest("rec-approval")))


def test_v1_becomes_a_valid_registration() -> None:
    body = registration()
    decode_body(Register, body)  # the state machine's own stateless check
    assert body["trial"] == NCT and body["target_enrollment"] == 6
    assert (body["allocation"], body["masking"], body["phases"]) == ("randomized", "quadruple", ["phase3"])
    assert body["arms"] == [{"label": "Glucoretide 2 mg", "type": "experimental"},
                            {"label": "Placebo", "type": "placebo_comparator"}]
    assert [(o["role"], o["time_frame"]) for o in body["outcomes"]] == [
        ("primary", "Baseline, Week 26"), ("secondary", "Week 26"), ("secondary", "Baseline, Week 26"),
        ("secondary", "Baseline, Week 26"), ("other", "Up to 52 weeks")]
    assert body["outcomes"][0]["measure"] == "Change From Baseline in Glycated Haemoglobin (HbA1c)"
    assert body["ethics"] == {"ref": "REC 25/NE/0001", "document_hash": digest("rec-approval")}


def test_snapshot_hash_is_of_the_canonical_json() -> None:
    raw = (FIXTURES / f"{NCT}-v1.json").read_bytes()
    compact = json.dumps(json.loads(raw), separators=(",", ":"))  # re-formatted, ASCII-escaped
    assert ctgov.parse(raw).snapshot_hash == ctgov.parse(compact).snapshot_hash
    changed = record()
    changed["protocolSection"]["statusModule"]["overallStatus"] = "RECRUITING"
    assert study(changed).snapshot_hash != ctgov.parse(raw).snapshot_hash
    # a search answer holding exactly this study is the same record
    assert ctgov.parse(json.dumps({"studies": [json.loads(raw)]})).snapshot_hash == ctgov.parse(raw).snapshot_hash


def edit(path: str, value: Any, name: str = "v1") -> dict[str, Any]:
    """A copy of a fixture with ``path`` (dots, [i] for list items) set to ``value`` (None: removed)."""
    rec = copy.deepcopy(record(name))
    node: Any = rec
    parts = path.replace("[", ".").replace("]", "").split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    last = parts[-1]
    if value is None:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return rec


BAD = [
    pytest.param(edit("protocolSection.identificationModule.nctId", None),
                 "protocolSection.identificationModule.nctId: missing: the record has no NCT id", id="no NCT id"),
    pytest.param(edit("protocolSection.identificationModule.nctId", "NCT123"),
                 "'NCT123' is not NCT followed by 8 digits", id="malformed NCT id"),
    pytest.param(edit("protocolSection.outcomesModule.secondaryOutcomes[1].timeFrame", None),
                 "protocolSection.outcomesModule.secondaryOutcomes[1]: no timeFrame", id="outcome without time frame"),
    pytest.param(edit("protocolSection.outcomesModule.primaryOutcomes[0].timeFrame", "  "),
                 "primaryOutcomes[0]: no timeFrame", id="blank time frame"),
    pytest.param(edit("protocolSection.outcomesModule.primaryOutcomes[0].measure", None),
                 "primaryOutcomes[0]: no measure", id="outcome without measure"),
    pytest.param(edit("protocolSection.outcomesModule.primaryOutcomes", None),
                 "at least one primary outcome", id="no primary outcome"),
    pytest.param(edit("protocolSection.outcomesModule", None),
                 "protocolSection.outcomesModule: missing", id="no outcomes module"),
    pytest.param(edit("protocolSection.designModule.enrollmentInfo", None),
                 "enrollmentInfo.count: missing", id="no enrolment target"),
    pytest.param(edit("protocolSection.designModule.enrollmentInfo.count", "600"),
                 "'600' is not a whole number", id="target as text"),
    pytest.param(edit("protocolSection.designModule.designInfo.allocation", "RANDOM"),
                 "'RANDOM' is not one of", id="unknown allocation"),
    pytest.param(edit("protocolSection.outcomesModule.secondaryOutcomes[0]",
                      record()["protocolSection"]["outcomesModule"]["primaryOutcomes"][0]),
                 "is listed twice", id="an outcome listed twice"),
    pytest.param(edit("protocolSection.identificationModule.briefTitle", "x" * 301),
                 "longer than 300 characters", id="title too long"),
    pytest.param({"nctId": NCT}, "protocolSection: missing", id="not a v2 record"),
]


@pytest.mark.parametrize(("rec", "message"), BAD)
def test_bad_records_get_a_clear_error(rec: dict[str, Any], message: str) -> None:
    with pytest.raises(CtgovError, match="^study.json: ") as err:
        study(rec).registration(protocol_hash=digest("p"))
    assert message in str(err.value)


def test_unparseable_files_get_a_clear_error() -> None:
    with pytest.raises(CtgovError, match="not valid JSON"):
        ctgov.parse(b"{nope", "x.json")
    with pytest.raises(CtgovError, match="holds 2 studies"):
        ctgov.parse(json.dumps({"studies": [record(), record()]}), "x.json")
    with pytest.raises(CtgovError, match="a study record is a JSON object"):
        ctgov.parse("[]", "x.json")


def test_report_bodies_from_a_later_version_and_from_results() -> None:
    v2 = study(record("v2")).report()  # no results section: the registered outcomes of that version
    decode_body(Report, v2)
    assert [(o["role"], o["measure"][:30]) for o in v2["outcomes"]][:2] == [
        ("primary", "Percentage of Participants Ach"), ("secondary", "Change From Baseline in Glycat")]
    res = study(record("results"))
    assert res.has_results
    body = res.report(results_hash=digest("csr"))
    decode_body(Report, body)
    assert [o["role"] for o in body["outcomes"]] == ["primary", "secondary", "secondary", "secondary", "secondary",
                                                    "post_hoc"]
    assert body["results_hash"] == digest("csr")
    assert res.report(source="protocol")["outcomes"] == v2["outcomes"]
    with pytest.raises(CtgovError, match="resultsSection.outcomeMeasuresModule.outcomeMeasures: missing"):
        study(record("v2")).report(source="results")
    bad = edit("resultsSection.outcomeMeasuresModule.outcomeMeasures[5].type", "EXPLORATORY", "results")
    with pytest.raises(CtgovError, match=r"outcomeMeasures\[5\].type: 'EXPLORATORY' is not one of"):
        study(bad).report()


def test_summary_shows_what_the_record_declares() -> None:
    s = study(record("v2")).summary()
    assert s["overall_status"] == "COMPLETED" and s["start"] == {"date": "2025-03-10", "type": "ACTUAL"}
    assert s["has_results"] is False and s["snapshot_hash"].startswith("0x")


def registered_chain() -> AppChain:
    c = base()
    c.ok("S", "trials.register", registration())
    c.ok("S", "trials.commit", commit_body("randomisation", "r", trial=NCT))
    return c


def switch_report(c: AppChain, name: str) -> dict[str, Any]:
    c.ok("S", "trials.report", study(record(name)).report())
    return c.query("trials.switching", {"trial": NCT})  # type: ignore[no-any-return]


def categories(report: dict[str, Any]) -> dict[str, str]:
    return {(e["registered"] or e["reported"])["measure"]: e["category"] for e in report["outcomes"]}


def test_registered_from_v1_and_reported_from_v2_the_switch_is_named() -> None:
    c = registered_chain()
    g = c.ok("P1", "consent.grant", consent_body("D1", 1, trial=NCT)).events[0]["grant_id"]
    c.ok("D1", "trials.enroll", enroll_body("P1", bytes(g), trial=NCT))
    c.ok("S", "trials.commit", commit_body("sap", "v1", trial=NCT))
    c.ok("S", "trials.commit", commit_body("data_lock", "lock", trial=NCT))
    c.ok("S", "trials.unblind", unblind_body(trial=NCT))
    report = switch_report(c, "v2")
    cats = categories(report)
    assert cats == {
        "Change From Baseline in Glycated Haemoglobin (HbA1c)": "role_swapped",
        "Percentage of Participants Achieving HbA1c < 7.0%": "role_swapped",
        "Change From Baseline in Body Weight": "time_frame_changed",
        "Change From Baseline in Fasting Plasma Glucose": "correctly_reported",
        "Number of Participants With Severe Hypoglycaemia": "correctly_reported",
    }
    assert report["summary"]["switched"] == 3 and report["summary"]["primary_correctly_reported"] == 0
    cats = categories(switch_report(c, "results"))
    assert cats["Change From Baseline in Systolic Blood Pressure"] == "added_undeclared"
    assert cats["Change From Baseline in Waist Circumference"] == "added_post_hoc"
