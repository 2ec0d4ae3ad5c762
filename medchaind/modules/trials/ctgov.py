"""ClinicalTrials.gov API v2 study records -> ``trials.register`` / ``trials.report`` bodies.

Client side: the CLI and the client helpers read a study record (a JSON file the user
downloaded from ``https://clinicaltrials.gov/api/v2/studies/<NCT id>`` or exported from
the site; nothing is downloaded here) and build tx bodies from it. The state machine
never imports this module. It is pure (it gets the file's bytes, not its path), so the
layer contract counts it with the module's pure files.

What is read (``protocolSection``):

* ``identificationModule.nctId`` (required, NCT + 8 digits), ``briefTitle``
  (else ``officialTitle``);
* ``designModule``: ``enrollmentInfo.count`` (the target; required), ``phases``,
  ``designInfo.allocation`` (absent: ``na``), ``designInfo.maskingInfo.masking``
  (absent: ``none``);
* ``armsInterventionsModule.armGroups``: ``label`` and ``type``;
* ``outcomesModule``: ``primaryOutcomes``, ``secondaryOutcomes``, ``otherOutcomes``,
  each ``{measure, timeFrame, description}`` (``measure`` and ``timeFrame`` required;
  the description is not part of the outcome on chain: it is covered by the snapshot hash);
* for a report, ``resultsSection.outcomeMeasuresModule.outcomeMeasures`` when present
  (``type`` PRIMARY / SECONDARY / OTHER_PRE_SPECIFIED / POST_HOC, ``title``,
  ``timeFrame``), else the record's ``outcomesModule`` (a later registry version as the
  report, the way COMPare compared registry versions).

ClinicalTrials.gov has no field for SPIRIT's analysis metric, so imported outcomes carry
none. Text is whitespace-collapsed (line breaks become spaces); nothing else is changed.

The **registry snapshot hash** of a record is the SHA-256 of its canonical JSON: keys
sorted, no insignificant whitespace, UTF-8, non-ASCII characters unescaped (what
``json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
writes), so re-formatting a downloaded file does not change it.

Every problem raises :class:`CtgovError` naming the file and the JSON path, e.g.
``study.json: protocolSection.outcomesModule.primaryOutcomes[1]: no timeFrame``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, NoReturn

from ... import crypto
from ...errors import MedchainError
from . import machine
from .outcomes import fingerprint

NCT_RE = re.compile(r"NCT[0-9]{8}")
_WS = re.compile(r"\s+")

ROLE_KEYS = (("primaryOutcomes", "primary"), ("secondaryOutcomes", "secondary"), ("otherOutcomes", "other"))
RESULT_TYPES = {"PRIMARY": "primary", "SECONDARY": "secondary", "OTHER_PRE_SPECIFIED": "other",
                "POST_HOC": "post_hoc"}
ALLOCATIONS = {"RANDOMIZED": "randomized", "NON_RANDOMIZED": "non_randomized", "NA": "na"}


class CtgovError(MedchainError):
    """A study record that cannot be imported; the message names the file and the field."""


class Study:
    """One parsed ClinicalTrials.gov v2 study record (``name`` is used in error messages)."""

    def __init__(self, record: dict[str, Any], name: str = "study.json") -> None:
        self.record = record
        self.name = name
        ps = record.get("protocolSection")
        if not isinstance(ps, dict):
            self.fail("protocolSection", "missing (not a ClinicalTrials.gov API v2 study record?)")
        self.protocol: dict[str, Any] = ps
        nct = self.get("identificationModule", "nctId")
        if nct is None:
            self.fail("protocolSection.identificationModule.nctId", "missing: the record has no NCT id")
        if not isinstance(nct, str) or NCT_RE.fullmatch(nct) is None:
            self.fail("protocolSection.identificationModule.nctId", f"{nct!r} is not NCT followed by 8 digits")
        self.nct_id: str = nct

    # ------------------------------------------------------------------ reading

    def fail(self, path: str, problem: str) -> NoReturn:
        raise CtgovError(f"{self.name}: {path}: {problem}")

    def get(self, module: str, *path: str) -> Any:
        node: Any = self.protocol.get(module)
        for p in path:
            if not isinstance(node, dict):
                return None
            node = node.get(p)
        return node

    def text(self, value: Any, path: str, limit: int = machine.MAX_TEXT) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, "missing or empty")
        s = _WS.sub(" ", value).strip()
        if len(s) > limit:
            self.fail(path, f"longer than {limit} characters ({len(s)})")
        return s

    @property
    def snapshot_hash(self) -> bytes:
        return snapshot_hash(self.record)

    @property
    def title(self) -> str:
        for key in ("briefTitle", "officialTitle"):
            value = self.get("identificationModule", key)
            if isinstance(value, str) and value.strip():
                return self.text(value, f"protocolSection.identificationModule.{key}")
        self.fail("protocolSection.identificationModule.briefTitle", "missing: the record has no title")

    @property
    def target_enrollment(self) -> int:
        path = "protocolSection.designModule.enrollmentInfo.count"
        count = self.get("designModule", "enrollmentInfo", "count")
        if count is None:
            self.fail(path, "missing: the record states no enrolment target")
        if type(count) is not int or not 1 <= count <= machine.MAX_TARGET:
            self.fail(path, f"{count!r} is not a whole number of participants in 1..{machine.MAX_TARGET}")
        return int(count)

    @property
    def allocation(self) -> str:
        value = self.get("designModule", "designInfo", "allocation")
        if value is None:
            return "na"
        if value not in ALLOCATIONS:
            self.fail("protocolSection.designModule.designInfo.allocation",
                      f"{value!r} is not one of {', '.join(ALLOCATIONS)}")
        return ALLOCATIONS[value]

    @property
    def masking(self) -> str:
        value = self.get("designModule", "designInfo", "maskingInfo", "masking")
        if value is None:
            return "none"
        if not isinstance(value, str) or value.lower() not in machine.MASKINGS:
            self.fail("protocolSection.designModule.designInfo.maskingInfo.masking", f"{value!r} is not a masking")
        return str(value).lower()

    @property
    def phases(self) -> list[str]:
        value = self.get("designModule", "phases") or []
        out = []
        for i, ph in enumerate(value if isinstance(value, list) else [value]):
            if not isinstance(ph, str) or ph.lower() not in machine.PHASES:
                self.fail(f"protocolSection.designModule.phases[{i}]", f"{ph!r} is not a phase")
            if ph.lower() not in out:
                out.append(ph.lower())
        return out

    @property
    def arms(self) -> list[dict[str, str]]:
        groups = self.get("armsInterventionsModule", "armGroups") or []
        out = []
        for i, g in enumerate(groups):
            path = f"protocolSection.armsInterventionsModule.armGroups[{i}]"
            if not isinstance(g, dict):
                self.fail(path, "not an object")
            label = self.text(g.get("label"), path + ".label", 100)
            kind = g.get("type", "OTHER")
            if not isinstance(kind, str) or kind.lower() not in machine.ARM_TYPES:
                self.fail(path + ".type", f"{kind!r} is not an arm type")
            out.append({"label": label, "type": kind.lower()})
        if len(out) > machine.MAX_ARMS:
            self.fail("protocolSection.armsInterventionsModule.armGroups", f"more than {machine.MAX_ARMS} arms")
        return out

    def _outcome(self, o: Any, path: str, role: str, measure_key: str) -> dict[str, Any]:
        if not isinstance(o, dict):
            self.fail(path, "not an object")
        if not isinstance(o.get(measure_key), str) or not o[measure_key].strip():
            self.fail(path, f"no {measure_key}")
        if not isinstance(o.get("timeFrame"), str) or not o["timeFrame"].strip():
            self.fail(path, "no timeFrame (SPIRIT 12: every outcome needs its time point)")
        return {"role": role, "measure": self.text(o[measure_key], f"{path}.{measure_key}"),
                "time_frame": self.text(o["timeFrame"], f"{path}.timeFrame")}

    @property
    def registered_outcomes(self) -> list[dict[str, Any]]:
        """The record's ``outcomesModule`` as outcome entries (primary first)."""
        module = self.protocol.get("outcomesModule")
        if not isinstance(module, dict):
            self.fail("protocolSection.outcomesModule", "missing: the record lists no outcomes")
        out = []
        for key, role in ROLE_KEYS:
            items = module.get(key) or []
            if not isinstance(items, list):
                self.fail(f"protocolSection.outcomesModule.{key}", "not a list")
            for i, o in enumerate(items):
                out.append(self._outcome(o, f"protocolSection.outcomesModule.{key}[{i}]", role, "measure"))
        return self._checked(out, "protocolSection.outcomesModule")

    @property
    def has_results(self) -> bool:
        return self._results() is not None

    def _results(self) -> list[Any] | None:
        rs = self.record.get("resultsSection")
        if not isinstance(rs, dict):
            return None
        measures = (rs.get("outcomeMeasuresModule") or {}).get("outcomeMeasures")
        return measures if isinstance(measures, list) else None

    @property
    def result_outcomes(self) -> list[dict[str, Any]]:
        """The results section's outcome measures as reported outcome entries."""
        measures = self._results()
        if measures is None:
            self.fail("resultsSection.outcomeMeasuresModule.outcomeMeasures", "missing: the record has no results")
        out = []
        for i, m in enumerate(measures or []):
            path = f"resultsSection.outcomeMeasuresModule.outcomeMeasures[{i}]"
            kind = m.get("type") if isinstance(m, dict) else None
            if kind not in RESULT_TYPES:
                self.fail(path + ".type", f"{kind!r} is not one of {', '.join(RESULT_TYPES)}")
            out.append(self._outcome(m, path, RESULT_TYPES[str(kind)], "title"))
        return self._checked(out, "resultsSection.outcomeMeasuresModule.outcomeMeasures")

    def _checked(self, outs: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
        if not outs:
            self.fail(path, "no outcomes")
        if len(outs) > machine.MAX_OUTCOMES:
            self.fail(path, f"{len(outs)} outcomes; the chain takes at most {machine.MAX_OUTCOMES}")
        seen: dict[bytes, str] = {}
        for o in outs:
            fp = fingerprint(o["measure"], o["time_frame"], o.get("metric"))
            if fp in seen:
                self.fail(path, f"the outcome {o['measure']!r} ({o['time_frame']}) is listed twice")
            seen[fp] = o["measure"]
        return outs

    # ------------------------------------------------------------------ bodies

    def registration(
        self, *, protocol_hash: bytes, protocol_version: int = 1, sites: Sequence[bytes] = (),
        ethics: tuple[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """The ``trials.register`` body (Python values; bytes as bytes)."""
        outcomes = self.registered_outcomes
        if not any(o["role"] == "primary" for o in outcomes):
            self.fail("protocolSection.outcomesModule.primaryOutcomes", "missing: at least one primary outcome")
        body: dict[str, Any] = {
            "trial": self.nct_id, "title": self.title, "protocol_hash": protocol_hash,
            "protocol_version": protocol_version, "registry_snapshot_hash": self.snapshot_hash,
            "target_enrollment": self.target_enrollment, "allocation": self.allocation, "masking": self.masking,
            "outcomes": outcomes,
        }
        if sites:
            body["sites"] = list(sites)
        if self.arms:
            body["arms"] = self.arms
        if self.phases:
            body["phases"] = self.phases
        if ethics is not None:
            body["ethics"] = {"ref": ethics[0], "document_hash": ethics[1]}
        return body

    def report(self, *, source: str = "auto", results_hash: bytes | None = None) -> dict[str, Any]:
        """The ``trials.report`` body: the results section's outcomes (``source="results"``),
        the record's registered outcomes (``"protocol"``), or results if present (``"auto"``)."""
        if source not in ("auto", "results", "protocol"):
            raise ValueError("source is auto, results or protocol")
        use_results = source == "results" or (source == "auto" and self.has_results)
        body: dict[str, Any] = {
            "trial": self.nct_id, "registry_snapshot_hash": self.snapshot_hash,
            "outcomes": self.result_outcomes if use_results else self.registered_outcomes,
        }
        if results_hash is not None:
            body["results_hash"] = results_hash
        return body

    def summary(self) -> dict[str, Any]:
        """What the record declares (claims, not block-time facts): shown by the CLI."""
        status = self.protocol.get("statusModule") or {}

        def date(key: str) -> Any:
            d = status.get(key)
            return d if not isinstance(d, dict) else {"date": d.get("date"), "type": d.get("type")}

        return {
            "nct_id": self.nct_id, "overall_status": status.get("overallStatus"),
            "start": date("startDateStruct"), "primary_completion": date("primaryCompletionDateStruct"),
            "completion": date("completionDateStruct"), "first_submitted": status.get("studyFirstSubmitDate"),
            "last_update_submitted": status.get("lastUpdateSubmitDate"), "has_results": self.has_results,
            "snapshot_hash": "0x" + self.snapshot_hash.hex(),
        }


def canonical_json(record: Any) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def snapshot_hash(record: Any) -> bytes:
    """SHA-256 of a record's canonical JSON (see the module docstring)."""
    return crypto.sha256(canonical_json(record))


def parse(data: bytes | str, name: str = "study.json") -> Study:
    """A study record from the bytes of a JSON file; :class:`CtgovError` if it is not one."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CtgovError(f"{name}: not valid JSON ({exc})") from None
    if isinstance(record, dict) and "studies" in record and isinstance(record["studies"], list):
        # a search answer (`/api/v2/studies?query...`): take it only if it holds one study
        if len(record["studies"]) != 1:
            raise CtgovError(f"{name}: holds {len(record['studies'])} studies; give one study's record")
        record = record["studies"][0]
    if not isinstance(record, dict):
        raise CtgovError(f"{name}: a study record is a JSON object")
    return Study(record, name)
