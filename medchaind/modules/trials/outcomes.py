"""Trial outcomes: canonical fingerprints, time points, and the outcome-switching classifier.

Pure functions over plain values (no state, no clock): the state machine stores what
:func:`fingerprint` computes, and the ``trials.switching`` query runs :func:`classify`
over stored outcome lists; a client computes the same values offline.

Outcomes (SPIRIT 2013 item 12)
------------------------------
An outcome is ``(role, measure, metric, time_frame)``: the role (``primary``,
``secondary``, ``other``; a report may also say ``post_hoc``), the measured variable
(ClinicalTrials.gov ``measure`` / results ``title``), the analysis metric or aggregation
(SPIRIT's "metric": change from baseline, final value, time to event, proportion...;
ClinicalTrials.gov has no such field, so records imported from it carry none) and the
time frame of the assessment.

Normalisation and fingerprint
-----------------------------
:func:`normalize` makes text comparisons insensitive to presentation only: ASCII letters
are lower-cased, runs of whitespace become one space, surrounding spaces and trailing
full stops are dropped. Nothing else changes (no Unicode case folding: the Unicode
tables differ between Python versions, and this runs inside consensus).

The **fingerprint** of an outcome is ``SHA-256("medchain/trials/outcome/v1" ||
CBOR([measure, metric or null, time_frame]))`` over the normalised texts. The role is
deliberately not part of it: an outcome moved from primary to secondary keeps its
fingerprint, so a role swap shows up as "same fingerprint, other role".

Time frames
-----------
Registries and papers write one time point many ways ("12 weeks", "Week 12", "at 12
weeks", "84 days"). :func:`time_points` extracts the set of assessment times (number and
unit, with years as 12 months, weeks as 7 days and hours as 60 minutes; "baseline" is a
reference, not an assessment time, and is ignored). Two time frames are the same when
both yield the same non-empty set, or, if either yields none, when their normalised
texts are equal. Months are not converted to weeks or days (they are not whole
multiples), so "6 months" and "26 weeks" differ, as a reviewer would say they may.

The classifier (COMPare, Goldacre et al., Trials 2019;20:118)
-------------------------------------------------------------
:func:`classify` compares the outcomes **reported** with those **prespecified** (in force
when the trial started, i.e. at its first enrolment; COMPare's reference was the protocol
or registry version before the start date) and those **in force now** (after every
amendment, each with a reason and an ethics approval). Changes that amendments declared
are not switching (COMPare did not count declared changes).

1. Pairing. A reported outcome is paired with the prespecified outcome of the same
   fingerprint; the rest are paired within groups of the same normalised measure (both
   sides sorted by role and fingerprint, then zipped). Everything is sorted before it is
   paired, so the answer does not depend on the order the outcomes are listed in.
2. Categories (:data:`CATEGORIES`), one per outcome:

   ``correctly_reported``  paired; same role, metric and time frame
   ``role_swapped``        paired; the role changed (e.g. primary reported as secondary)
   ``metric_changed``      paired; same role, the metric changed
   ``time_frame_changed``  paired; same role and metric, the time frame changed
   ``changed_declared``    paired and changed, but the reported form is the one an
                           amendment put in force
   ``missing``             prespecified (or added by amendment) and in force, not reported
   ``removed_declared``    prespecified, not reported, removed by an amendment
   ``added_undeclared``    reported, neither prespecified nor added by an amendment
   ``added_declared``      reported, not prespecified, added by an amendment
   ``added_post_hoc``      reported, not prespecified, and labelled post hoc in the report

   ``changes`` lists every difference of a paired outcome (``role``, ``metric``,
   ``time_frame``); the category names the most serious one.
3. **Switching** categories (:data:`SWITCHING`): ``missing``, ``added_undeclared``,
   ``role_swapped``, ``metric_changed``, ``time_frame_changed``.

Outcomes are matched by their measure text (normalised): a reworded measure counts as
one outcome missing and another added, as COMPare counted an outcome not reported as
prespecified. That is strict on purpose: a mechanical check cannot judge synonymy, and
letting the reporter say which registered outcome a reworded one "is" would let it
hide a switch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ... import codec, crypto

ROLES = ("primary", "secondary", "other")
#: roles a report may use: a post-hoc outcome is declared as not prespecified
REPORT_ROLES = (*ROLES, "post_hoc")
ROLE_RANK = {r: i for i, r in enumerate(REPORT_ROLES)}

FINGERPRINT_DOMAIN = b"medchain/trials/outcome/v1"

CATEGORIES = (
    "correctly_reported",
    "role_swapped",
    "metric_changed",
    "time_frame_changed",
    "changed_declared",
    "missing",
    "removed_declared",
    "added_undeclared",
    "added_declared",
    "added_post_hoc",
)
SWITCHING = frozenset({"missing", "added_undeclared", "role_swapped", "metric_changed", "time_frame_changed"})

#: ASCII whitespace only: Unicode's whitespace class differs between Python versions, and
#: this runs inside consensus (Text fields refuse control characters anyway)
_WS = re.compile(r"[ \t\n\r\f\v]+")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize(text: str | None) -> str | None:
    """Presentation-insensitive text: ASCII lower case, single spaces, no trailing full stop."""
    if text is None:
        return None
    return _WS.sub(" ", text.translate(_ASCII_LOWER)).strip(" ").rstrip(".").rstrip(" ")


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """One outcome as the classifier sees it (texts as given; compared normalised)."""

    role: str
    measure: str
    time_frame: str
    metric: str | None = None
    #: the protocol version that put this outcome in force (None: not known / reported)
    version: int | None = None

    @property
    def measure_key(self) -> str:
        return normalize(self.measure) or ""

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.measure, self.time_frame, self.metric)

    def json(self) -> dict[str, Any]:
        return {
            "role": self.role, "measure": self.measure, "metric": self.metric, "time_frame": self.time_frame,
            "fingerprint": "0x" + self.fingerprint.hex(), "version": self.version,
        }


def fingerprint(measure: str, time_frame: str, metric: str | None = None) -> bytes:
    """The canonical fingerprint of an outcome's content (role excluded; see the docstring)."""
    payload = [normalize(measure), normalize(metric), normalize(time_frame)]
    return crypto.sha256(FINGERPRINT_DOMAIN + codec.encode(payload))


# ------------------------------------------------------------------------- time points

_UNITS = {
    "minute": ("min", 1), "min": ("min", 1),
    "hour": ("min", 60), "hr": ("min", 60), "h": ("min", 60),
    "day": ("d", 1), "d": ("d", 1),
    "week": ("d", 7), "wk": ("d", 7), "w": ("d", 7),
    "month": ("mo", 1), "mo": ("mo", 1),
    "year": ("mo", 12), "yr": ("mo", 12), "y": ("mo", 12),
}
_WORDS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "eighteen": "18",
    "twenty-four": "24", "thirty": "30", "thirty-six": "36", "forty-eight": "48",
}
_UNIT = r"(minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|wks?|w|months?|mos?|years?|yrs?|y)"
_NUM = r"[0-9]+(?:\.[0-9]+)?"
_LIST = rf"{_NUM}(?:\s*(?:,\s*(?:and|or)?|and|or|&|to|through|-)\s*{_NUM})*"
# "12 weeks", "4, 8 and 12 weeks", "12-week"
_NUM_UNIT = re.compile(rf"(?<![0-9.])({_LIST})\s*-?\s*{_UNIT}\b", re.ASCII)
# "week 12", "weeks 4, 8 and 12", "day 1" (units spelt out: "d 3" is too often not a day)
_UNIT_WORD = r"(minutes?|hours?|days?|weeks?|months?|years?)"
_UNIT_NUM = re.compile(rf"\b{_UNIT_WORD}\s*({_LIST})(?![0-9.])", re.ASCII)
_NUMBERS = re.compile(_NUM, re.ASCII)
_WORD_RE = re.compile(r"\b(" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")\b", re.ASCII)


def _unit(word: str) -> tuple[str, int]:
    w = word.rstrip("s") if len(word) > 2 else word
    return _UNITS.get(w) or _UNITS[word]


def time_points(time_frame: str) -> frozenset[tuple[str, str]]:
    """The assessment times a time frame names, as ``(amount, unit)`` in min / d / mo."""
    text = normalize(time_frame) or ""
    text = _WORD_RE.sub(lambda m: _WORDS[m.group(1)], text)
    points: set[tuple[str, str]] = set()
    spans: list[tuple[int, int]] = []
    for pattern, num_group, unit_group in ((_NUM_UNIT, 1, 2), (_UNIT_NUM, 2, 1)):
        for m in pattern.finditer(text):
            if any(s <= m.start() < e or s < m.end() <= e for s, e in spans):
                continue
            spans.append((m.start(), m.end()))
            unit, factor = _unit(m.group(unit_group))
            for n in _NUMBERS.findall(m.group(num_group)):
                amount = Fraction(n) * factor
                if amount:
                    points.add((str(amount), unit))
    return frozenset(points)


def same_time_frame(a: str, b: str) -> bool:
    pa, pb = time_points(a), time_points(b)
    if pa and pb:
        return pa == pb
    return normalize(a) == normalize(b)


def _same_metric(a: str | None, b: str | None) -> bool:
    return normalize(a) == normalize(b)


def differences(a: OutcomeRow, b: OutcomeRow) -> list[str]:
    """What differs between two outcomes of the same measure: role, metric, time frame."""
    out = []
    if a.role != b.role:
        out.append("role")
    if not _same_metric(a.metric, b.metric):
        out.append("metric")
    if not same_time_frame(a.time_frame, b.time_frame):
        out.append("time_frame")
    return out


def same_outcome(a: OutcomeRow, b: OutcomeRow) -> bool:
    return a.measure_key == b.measure_key and not differences(a, b)


# ------------------------------------------------------------------------- classifier


def _key(o: OutcomeRow) -> tuple[int, str, bytes]:
    return ROLE_RANK.get(o.role, 99), o.measure_key, o.fingerprint


def _sorted(outcomes: Iterable[OutcomeRow]) -> list[OutcomeRow]:
    return sorted(outcomes, key=_key)


def pair(prespecified: Sequence[OutcomeRow], reported: Sequence[OutcomeRow]) -> tuple[
    list[tuple[OutcomeRow, OutcomeRow]], list[OutcomeRow], list[OutcomeRow]
]:
    """``(pairs, unpaired prespecified, unpaired reported)``; independent of input order."""
    pre, rep = _sorted(prespecified), _sorted(reported)
    pairs: list[tuple[OutcomeRow, OutcomeRow]] = []
    # 1. same content: same fingerprint (the first of each, in sorted order)
    rest_pre: list[OutcomeRow] = []
    rep_by_fp: dict[bytes, list[OutcomeRow]] = {}
    for r in rep:
        rep_by_fp.setdefault(r.fingerprint, []).append(r)
    for p in pre:
        candidates = rep_by_fp.get(p.fingerprint)
        if candidates:
            # prefer the candidate with the same role (a listed duplicate elsewhere stays unpaired)
            same = [r for r in candidates if r.role == p.role]
            r = (same or candidates)[0]
            candidates.remove(r)
            pairs.append((p, r))
        else:
            rest_pre.append(p)
    rest_rep = _sorted(r for group in rep_by_fp.values() for r in group)
    # 2. same measure, other content: zip within each measure group
    by_measure_pre: dict[str, list[OutcomeRow]] = {}
    by_measure_rep: dict[str, list[OutcomeRow]] = {}
    for p in rest_pre:
        by_measure_pre.setdefault(p.measure_key, []).append(p)
    for r in rest_rep:
        by_measure_rep.setdefault(r.measure_key, []).append(r)
    unpaired_pre: list[OutcomeRow] = []
    unpaired_rep: list[OutcomeRow] = []
    for mk in sorted(by_measure_pre.keys() | by_measure_rep.keys()):
        ps, rs = by_measure_pre.get(mk, []), by_measure_rep.get(mk, [])
        n = min(len(ps), len(rs))
        pairs.extend(zip(ps[:n], rs[:n], strict=True))
        unpaired_pre.extend(ps[n:])
        unpaired_rep.extend(rs[n:])
    return pairs, _sorted(unpaired_pre), _sorted(unpaired_rep)


def _find(outcomes: Sequence[OutcomeRow], o: OutcomeRow) -> OutcomeRow | None:
    """The outcome of ``outcomes`` that is ``o`` (same measure, role, metric, time frame)."""
    for c in _sorted(outcomes):
        if same_outcome(c, o):
            return c
    return None


def _entry(category: str, registered: OutcomeRow | None, reported: OutcomeRow | None,
           changes: Sequence[str] = (), amendment: int | None = None) -> dict[str, Any]:
    return {
        "category": category,
        "switched": category in SWITCHING,
        "changes": list(changes),
        "registered": None if registered is None else registered.json(),
        "reported": None if reported is None else reported.json(),
        "amendment": amendment,
    }


def _entry_key(e: dict[str, Any]) -> tuple[Any, ...]:
    ref = e["registered"] or e["reported"]
    return (CATEGORIES.index(e["category"]), ROLE_RANK.get(ref["role"], 99), normalize(ref["measure"]) or "",
            ref["fingerprint"])


Versions = Sequence[tuple[int, Sequence[OutcomeRow]]]


def classify(prespecified: Sequence[OutcomeRow], reported: Sequence[OutcomeRow],
             amendments: Versions = ()) -> dict[str, Any]:
    """The outcome-switching report: one entry per outcome, and a summary (see the docstring).

    ``prespecified``: the outcomes in force at the start; ``reported``: the report's;
    ``amendments``: ``(version, outcomes in force from that version on)`` for every
    protocol version after the start that changed the outcomes. An entry's
    ``amendment`` names the version that declared its change, addition or removal.
    """
    later = sorted(amendments, key=lambda v: v[0])
    current: Sequence[OutcomeRow] = later[-1][1] if later else prespecified

    def introduced(o: OutcomeRow) -> int | None:
        return next((v for v, outs in later if _find(outs, o) is not None), None)

    def removed(p: OutcomeRow) -> int | None:
        return next((v for v, outs in later if all(c.measure_key != p.measure_key for c in outs)), None)

    entries: list[dict[str, Any]] = []
    pairs, unpaired_pre, unpaired_rep = pair(prespecified, reported)
    for p, r in pairs:
        changes = differences(p, r)
        if not changes:
            entries.append(_entry("correctly_reported", p, r))
        elif _find(current, r) is not None:
            entries.append(_entry("changed_declared", p, r, changes, introduced(r)))
        elif "role" in changes:
            entries.append(_entry("role_swapped", p, r, changes))
        elif "metric" in changes:
            entries.append(_entry("metric_changed", p, r, changes))
        else:
            entries.append(_entry("time_frame_changed", p, r, changes))
    for p in unpaired_pre:
        # still in force (as prespecified, or in a form an amendment changed): missing;
        # no outcome of that measure in force any more: an amendment removed it
        if any(c.measure_key == p.measure_key for c in current):
            entries.append(_entry("missing", p, None))
        else:
            entries.append(_entry("removed_declared", p, None, amendment=removed(p)))
    for r in unpaired_rep:
        if r.role == "post_hoc":
            entries.append(_entry("added_post_hoc", None, r))
        elif _find(current, r) is not None:
            entries.append(_entry("added_declared", None, r, amendment=introduced(r)))
        else:
            entries.append(_entry("added_undeclared", None, r))
    # outcomes of a new measure an amendment added, which the report leaves out
    pre_measures = {p.measure_key for p in prespecified}
    reported_measures = {r.measure_key for r in reported}
    for c in _sorted(current):
        if c.measure_key not in pre_measures and c.measure_key not in reported_measures:
            entries.append(_entry("missing", c, None, amendment=introduced(c)))
    entries.sort(key=_entry_key)
    return {"outcomes": entries, "summary": summarize(entries, prespecified)}


def summarize(entries: Sequence[Mapping[str, Any]], prespecified: Sequence[OutcomeRow]) -> dict[str, Any]:
    """Counts per category, the number of switched outcomes, and COMPare's headline figures."""
    counts = {c: 0 for c in CATEGORIES}
    for e in entries:
        counts[e["category"]] += 1

    def correct(role: str) -> int:
        return sum(1 for e in entries if e["category"] == "correctly_reported" and e["registered"]["role"] == role)

    switched = sum(counts[c] for c in SWITCHING)
    return {
        "counts": counts,
        "switched": switched,
        "prespecified_primary": sum(1 for p in prespecified if p.role == "primary"),
        "primary_correctly_reported": correct("primary"),
        "prespecified_secondary": sum(1 for p in prespecified if p.role == "secondary"),
        "secondary_correctly_reported": correct("secondary"),
        "verdict": "switching" if switched else "no_switching",
    }
