"""The outcome-switching classifier (medchaind/modules/trials/outcomes.py) and its query.

A table drives :func:`classify` through every category; hypothesis checks that the
report does not depend on the order outcomes are listed in and that every outcome is
accounted for exactly once; the chain tests run the ``trials.switching`` query on state
built by real txs (reference = the version in force at the first enrolment).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from trials_kit import NCT, OTHER, PRIMARY, SECONDARY, SECONDARY2, amend_body, enroll, report_body, standard

from medchaind.modules.trials.outcomes import (
    CATEGORIES,
    SWITCHING,
    OutcomeRow,
    classify,
    fingerprint,
    normalize,
    same_time_frame,
    time_points,
)


def row(role: str, measure: str, time_frame: str, metric: str | None = None, version: int | None = None) -> OutcomeRow:
    return OutcomeRow(role, measure, time_frame, metric, version)


HBA1C = row("primary", "Change in HbA1c", "Week 26")
WEIGHT = row("secondary", "Body weight", "Week 26")
FPG = row("secondary", "Fasting plasma glucose", "Week 12")
HYPO = row("other", "Hypoglycaemic events", "Up to 52 weeks")
PRE = [HBA1C, WEIGHT, FPG, HYPO]


def swap(o: OutcomeRow, **kw: Any) -> OutcomeRow:
    d = {"role": o.role, "measure": o.measure, "time_frame": o.time_frame, "metric": o.metric, "version": o.version}
    d.update(kw)
    return OutcomeRow(**d)


def cats(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((e["category"], (e["registered"] or e["reported"])["measure"]) for e in report["outcomes"])


# (prespecified, amendments, reported, expected (category, measure) pairs besides the correct ones)
CASES = [
    pytest.param(PRE, [], PRE, [], id="all correctly reported"),
    pytest.param(PRE, [], [swap(HBA1C, measure="  change in HBA1C. ", time_frame="26 weeks"), WEIGHT, FPG, HYPO], [],
                 id="case, spacing, full stop and an equivalent time frame are not changes"),
    pytest.param(PRE, [], [HBA1C, WEIGHT, FPG], [("missing", "Hypoglycaemic events")], id="missing"),
    pytest.param(PRE, [], [*PRE, row("secondary", "Quality of life (SF-36)", "Week 26")],
                 [("added_undeclared", "Quality of life (SF-36)")], id="added undeclared"),
    pytest.param(PRE, [(2, [*PRE, row("secondary", "Quality of life (SF-36)", "Week 26", version=2)])],
                 [*PRE, row("secondary", "Quality of life (SF-36)", "Week 26")],
                 [("added_declared", "Quality of life (SF-36)")], id="added, declared by amendment"),
    pytest.param(PRE, [], [*PRE, row("post_hoc", "Waist circumference", "Week 26")],
                 [("added_post_hoc", "Waist circumference")], id="added, labelled post hoc in the report"),
    pytest.param(PRE, [], [swap(HBA1C, role="secondary"), swap(WEIGHT, role="primary"), FPG, HYPO],
                 [("role_swapped", "Body weight"), ("role_swapped", "Change in HbA1c")],
                 id="primary and secondary swapped"),
    pytest.param(PRE, [], [swap(HBA1C, time_frame="Week 52"), WEIGHT, FPG, HYPO],
                 [("time_frame_changed", "Change in HbA1c")], id="time frame changed"),
    pytest.param([swap(HBA1C, metric="change from baseline"), WEIGHT], [],
                 [swap(HBA1C, metric="final value"), WEIGHT], [("metric_changed", "Change in HbA1c")],
                 id="metric changed"),
    pytest.param(PRE, [], [swap(HBA1C, role="secondary", time_frame="Week 52"), WEIGHT, FPG, HYPO],
                 [("role_swapped", "Change in HbA1c")], id="demoted and time frame changed: the role names it"),
    pytest.param(PRE, [(2, [swap(HBA1C, time_frame="Week 52", version=2), WEIGHT, FPG, HYPO])],
                 [swap(HBA1C, time_frame="Week 52"), WEIGHT, FPG, HYPO],
                 [("changed_declared", "Change in HbA1c")], id="time frame changed, declared by amendment"),
    pytest.param(PRE, [(2, [swap(HBA1C, time_frame="Week 52", version=2), WEIGHT, FPG, HYPO])],
                 [swap(HBA1C, time_frame="Week 78"), WEIGHT, FPG, HYPO],
                 [("time_frame_changed", "Change in HbA1c")], id="time frame changed other than declared"),
    pytest.param(PRE, [(2, [swap(HBA1C, time_frame="Week 52", version=2), WEIGHT, FPG, HYPO])],
                 [WEIGHT, FPG, HYPO], [("missing", "Change in HbA1c")],
                 id="amended outcome not reported is missing"),
    pytest.param(PRE, [(2, [HBA1C, WEIGHT, FPG])], [HBA1C, WEIGHT, FPG],
                 [("removed_declared", "Hypoglycaemic events")], id="removed by amendment, not reported"),
    pytest.param(PRE, [(2, [*PRE, row("secondary", "Quality of life (SF-36)", "Week 26", version=2)])], PRE,
                 [("missing", "Quality of life (SF-36)")], id="outcome added by amendment, not reported"),
    pytest.param(PRE, [], [swap(HBA1C, measure="HbA1c change from baseline"), WEIGHT, FPG, HYPO],
                 [("added_undeclared", "HbA1c change from baseline"), ("missing", "Change in HbA1c")],
                 id="reworded measure: missing plus added"),
    pytest.param([HBA1C, swap(HBA1C, role="secondary", time_frame="Week 52")], [],
                 [swap(HBA1C, time_frame="Week 52"), swap(HBA1C, role="secondary")],
                 [("role_swapped", "Change in HbA1c"), ("role_swapped", "Change in HbA1c")],
                 id="one measure at two time points, roles swapped"),
    pytest.param([HBA1C, swap(HBA1C, role="secondary", time_frame="Week 52")], [],
                 [swap(HBA1C, time_frame="Week 24"), swap(HBA1C, role="secondary", time_frame="Week 52")],
                 [("time_frame_changed", "Change in HbA1c")], id="one measure at two time points, one moved"),
]


@pytest.mark.parametrize(("pre", "amendments", "reported", "expected"), CASES)
def test_classifier_table(pre: list[OutcomeRow], amendments: list[Any], reported: list[OutcomeRow],
                          expected: list[tuple[str, str]]) -> None:
    report = classify(pre, reported, amendments)
    found = [x for x in cats(report) if x[0] != "correctly_reported"]
    assert found == sorted(expected)
    summary = report["summary"]
    assert summary["switched"] == sum(1 for c, _ in expected if c in SWITCHING)
    assert summary["verdict"] == ("switching" if summary["switched"] else "no_switching")
    assert sum(summary["counts"].values()) == len(report["outcomes"])


def test_entries_say_what_changed_and_which_amendment_declared_it() -> None:
    amended = [(3, [swap(HBA1C, time_frame="Week 52", version=3), WEIGHT])]
    report = classify([HBA1C, WEIGHT, FPG], [swap(HBA1C, time_frame="Week 52"), swap(WEIGHT, role="primary")],
                      amended)
    by = {(e["registered"] or e["reported"])["measure"]: e for e in report["outcomes"]}
    assert by["Change in HbA1c"]["category"] == "changed_declared" and by["Change in HbA1c"]["amendment"] == 3
    assert by["Change in HbA1c"]["changes"] == ["time_frame"] and not by["Change in HbA1c"]["switched"]
    assert by["Body weight"]["changes"] == ["role"] and by["Body weight"]["switched"]
    assert by["Body weight"]["registered"]["role"] == "secondary" and by["Body weight"]["reported"]["role"] == "primary"
    fpg = by["Fasting plasma glucose"]
    assert fpg["category"] == "removed_declared" and fpg["amendment"] == 3
    s = report["summary"]
    assert (s["prespecified_primary"], s["primary_correctly_reported"]) == (1, 0)
    assert (s["prespecified_secondary"], s["secondary_correctly_reported"]) == (2, 0)


def test_every_category_is_exercised_by_the_table() -> None:
    seen = {"correctly_reported"}
    for case in CASES:
        seen |= {c for c, _ in case.values[3]}
    assert seen == set(CATEGORIES)


# ------------------------------------------------------------------ normalisation, time frames


@pytest.mark.parametrize(("a", "b", "same"), [
    ("12 weeks", "Week 12", True),
    ("12 weeks", "84 days", True),
    ("1 year", "12 months", True),
    ("Baseline and week 26", "26 weeks", True),
    ("weeks 4, 8 and 12", "4, 8, and 12 weeks", True),
    ("Up to 24 hours", "24h", True),
    ("six months", "6 months", True),
    ("6 months", "26 weeks", False),
    ("12 weeks", "24 weeks", False),
    ("weeks 4 and 12", "week 12", False),
    ("End of treatment", "end of treatment.", True),
    ("End of treatment", "End of study", False),
    ("Day 1 (C1D1)", "day 1", True),
])
def test_time_frames(a: str, b: str, same: bool) -> None:
    assert same_time_frame(a, b) is same


def test_normalisation_is_ascii_only_and_deterministic() -> None:
    assert normalize("  Change\tin  HbA1c. ") == "change in hba1c"
    assert normalize("ÉTAT") == "État"  # no Unicode case folding: its tables change between Python versions
    assert normalize("a\u00a0 b ") == "a\u00a0 b"  # nor Unicode whitespace classes (ctgov.py collapses those)
    assert time_points("Baseline") == frozenset()
    assert fingerprint("HbA1c", "Week 12") == fingerprint(" hba1c ", "week 12.")
    assert fingerprint("HbA1c", "Week 12") != fingerprint("HbA1c", "12 weeks")  # text; equivalence is separate
    assert fingerprint("HbA1c", "Week 12", "mean") != fingerprint("HbA1c", "Week 12")


# ------------------------------------------------------------------ properties

MEASURES = ["HbA1c", "Body weight", "Fasting glucose", "Blood pressure", "Quality of life"]
FRAMES = ["Week 12", "12 weeks", "Week 26", "Week 52", "1 year"]
METRICS = [None, "mean change", "proportion"]

outcome_st = st.builds(row, st.sampled_from(["primary", "secondary", "other"]), st.sampled_from(MEASURES),
                       st.sampled_from(FRAMES), st.sampled_from(METRICS))
reported_st = st.builds(row, st.sampled_from(["primary", "secondary", "other", "post_hoc"]),
                        st.sampled_from(MEASURES), st.sampled_from(FRAMES), st.sampled_from(METRICS))


def unique(outs: list[OutcomeRow]) -> list[OutcomeRow]:
    seen, out = set(), []
    for o in outs:
        if o.fingerprint not in seen:
            seen.add(o.fingerprint)
            out.append(o)
    return out


@settings(max_examples=300, deadline=None)
@given(pre=st.lists(outcome_st, min_size=1, max_size=8).map(unique),
       later=st.lists(outcome_st, max_size=8).map(unique),
       reported=st.lists(reported_st, max_size=8).map(unique),
       perm=st.randoms(use_true_random=False))
def test_the_report_does_not_depend_on_the_order_outcomes_are_listed_in(
    pre: list[OutcomeRow], later: list[OutcomeRow], reported: list[OutcomeRow], perm: Any,
) -> None:
    amendments = [(2, [swap(o, version=2) for o in later])] if later else []
    first = classify(pre, reported, amendments)
    p2, r2, l2 = list(pre), list(reported), [swap(o, version=2) for o in later]
    perm.shuffle(p2)
    perm.shuffle(r2)
    perm.shuffle(l2)
    assert classify(p2, r2, [(2, l2)] if later else []) == first


@settings(max_examples=300, deadline=None)
@given(pre=st.lists(outcome_st, min_size=1, max_size=8).map(unique),
       reported=st.lists(reported_st, max_size=8).map(unique))
def test_every_outcome_is_accounted_for_once(pre: list[OutcomeRow], reported: list[OutcomeRow]) -> None:
    report = classify(pre, reported)
    registered = sorted(e["registered"]["fingerprint"] + e["registered"]["role"]
                        for e in report["outcomes"] if e["registered"] is not None)
    assert registered == sorted("0x" + o.fingerprint.hex() + o.role for o in pre)
    rep = sorted(e["reported"]["fingerprint"] + e["reported"]["role"]
                 for e in report["outcomes"] if e["reported"] is not None)
    assert rep == sorted("0x" + o.fingerprint.hex() + o.role for o in reported)
    if sorted((o.role, o.fingerprint) for o in pre) == sorted((o.role, o.fingerprint) for o in reported):
        assert report["summary"]["verdict"] == "no_switching"


# ------------------------------------------------------------------ on chain


def d(o: OutcomeRow | dict[str, Any], **kw: Any) -> dict[str, Any]:
    base = o if isinstance(o, dict) else {"role": o.role, "measure": o.measure, "time_frame": o.time_frame}
    return {**base, **kw}


def test_switching_query_uses_the_outcomes_in_force_at_the_start() -> None:
    c = standard(masking="none")
    # before the start an amendment still shapes the prespecified set (not a declared change)
    c.ok("S", "trials.amend", amend_body(2, changes=["outcomes"], outcomes=[PRIMARY, SECONDARY, SECONDARY2]))
    enroll(c, "P1")  # start: version 2 is the reference
    # after the start: an amendment adds an outcome and moves one time frame (declared)
    qol = {"role": "secondary", "measure": "Quality of life (SF-36)", "time_frame": "Week 26"}
    fpg52 = d(SECONDARY2, time_frame="Week 52")
    c.ok("S", "trials.amend", amend_body(3, changes=["outcomes"], outcomes=[PRIMARY, SECONDARY, fpg52, qol]))
    # the report: primary and secondary swapped, the declared changes, an undeclared extra, OTHER re-appears
    c.ok("S", "trials.report", report_body([d(PRIMARY, role="secondary"), d(SECONDARY, role="primary"), fpg52, qol,
                                            OTHER]))
    report = c.query("trials.switching", {"trial": NCT})
    assert report["reference_version"] == 2 and report["declared_versions"] == [3] and report["report"] == 0
    assert cats(report) == sorted([
        ("role_swapped", PRIMARY["measure"]), ("role_swapped", SECONDARY["measure"]),
        ("changed_declared", SECONDARY2["measure"]), ("added_declared", qol["measure"]),
        ("added_undeclared", OTHER["measure"]),
    ])
    assert report["summary"]["switched"] == 3 and report["summary"]["verdict"] == "switching"
    # a second report, as prespecified and declared: no switching; the first stays queryable
    c.ok("S", "trials.report", report_body([PRIMARY, SECONDARY, fpg52, qol]))
    assert c.query("trials.switching", {"trial": NCT})["summary"]["verdict"] == "no_switching"
    assert c.query("trials.switching", {"trial": NCT, "report": 0})["summary"]["switched"] == 3


def test_switching_query_before_any_report_is_an_error() -> None:
    from medchaind.app import QueryError

    c = standard()
    with pytest.raises(QueryError, match="no results report"):
        c.query("trials.switching", {"trial": NCT})
    c2 = standard(masking="none")
    enroll(c2, "P1")
    c2.ok("S", "trials.report", report_body([PRIMARY]))
    with pytest.raises(QueryError, match="reports 0..0"):
        c2.query("trials.switching", {"trial": NCT, "report": 1})
