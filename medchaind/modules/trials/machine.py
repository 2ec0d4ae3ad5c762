"""Trials: registered protocols and outcomes, amendments, consented enrolment, data
commitments, unblinding, results, and outcome-switching detection.

Theory of operation
-------------------
A **sponsor** (identity role ``sponsor``, accredited by governance) registers a trial
under its registry id (``NCT`` + 8 digits, or another primary registry's id) with what
SPIRIT 2013 asks to be fixed in advance: the protocol document's hash and version (item
3), the hash of the registry record as submitted (item 2a; ``docs/protocol.md`` §21 says
how a client hashes a ClinicalTrials.gov record), the outcomes as structured entries
(item 12: role, measure, metric, time frame; each with a canonical fingerprint,
:mod:`.outcomes`), the target enrolment (item 14), allocation and masking (items 16,
17), arms and the **sites** (accredited ``provider`` identities that enrol). Ethics
approval (a reference and the approval document's hash) comes with the registration or
later (``trials.ethics``).

Every later change of the protocol is a ``trials.amend`` with a new, higher protocol
version, the new document's hash, the kinds of change (``outcomes``, ``sample_size``,
``sites``, ``consent_form``...; the body must carry the new outcome list, target or
sites exactly when it says it changes them), a reason, the ethics approval reference
(ICH E6(R3): approved before implementation) and whether participants must
**re-consent**. Outcomes change on chain only through amendments, so "a registry outcome
edited with no amendment" cannot happen here: it shows in the results report instead.

**Enrolment against consent.** A site enrols a participant, who is a pseudonymous
patient identity: a key that should exist for this trial alone (the client makes one),
so the chain links the trial to nothing else of the person's. The participant has
granted, through the consent module, a ``permit`` to the enrolling site for ``write`` on
``ResearchSubject`` (or all resource types) whose purposes name the trial and the
consent-form version, ``CLINTRCH.<registry id>.v<version>`` (:func:`consent_purpose`;
HL7 v3 PurposeOfUse CLINTRCH, clinical trial research). Only an explicit trial purpose
counts: a grant open to every purpose is treatment consent, not trial consent. The
grant must be active at block time and name a version between the trial's **consent
version** (the protocol version of the last amendment that required re-consent) and the
current protocol version; no active deny of the participant's may match. Enrolment
order fixes the **randomisation number** (``seq``). Later study events
(``trials.event``) re-check the participant's recorded consent, so a revoked grant stops
them (``consent_withdrawn``) and, after an amendment that requires re-consent, so does a
grant of an older version (``reconsent_required``) until the site records the new one
(``trials.reconsent``). ``trials.withdraw`` (the participant or the site) ends
participation; data collected before stays, as ICH E6 allows. Withdrawn participants
still count against the target (they were enrolled; sample sizes allow for drop-out).

**Commitments** (``trials.commit``): the statistical analysis plan (``sap``), the
randomisation list (``randomisation``: ``SHA-256("medchain/trials/randomisation/v1" ||
salt || list_hash)``, so nothing about the list can be learnt or guessed before it is
revealed), the data lock (``data_lock``: the Merkle root of the locked data set) and the
analysis code (``analysis_code``). **Unblinding** (``trials.unblind``) reveals the
salt and the list's hash; with the randomisation numbers fixed at enrolment, anyone
holding the list can check every participant's allocation and that the list was
concealed. The **results report** (``trials.report``) lists the reported outcomes; the
``trials.switching`` query compares them with the outcomes in force at the start (the
first enrolment) and those declared by amendments since (:func:`.outcomes.classify`).

Rules (stable codes)
--------------------
Enforced (the tx fails with the code and changes nothing): the chain refuses what no
legitimate trial needs and what could not be repaired afterwards.

========================================  =====================================================
``no_ethics_approval``                    enrolment before ethics approval (ICH E6: no subject
                                          before IRB/IEC approval). Enrolment before
                                          registration cannot happen: a trial must be on chain
                                          (``unknown_trial``), which is ICMJE's rule, stricter
                                          than FDAAA's 21 days.
``no_randomisation_commitment``           a randomised trial enrols before its randomisation
                                          list is committed (concealment unprovable otherwise)
``too_late``                              a randomisation commitment after the first enrolment
``no_consent`` / ``consent_denied`` /     enrolment or a study event without a valid trial
``consent_withdrawn`` /                   consent; after a re-consent amendment, with consent
``reconsent_required``                    to an older version
``target_reached``                        enrolment beyond the target (changing the sample
                                          size is an amendment, SPIRIT 14)
``approval_required``                     an amendment without an ethics approval reference,
                                          unless declared an urgent safety measure (flagged)
``outcomes_locked``                       an amendment changing outcomes after unblinding
                                          (a "declared" change made with the results known
                                          would launder a switch)
``unblinded``                             an SAP committed after unblinding (it would
                                          prespecify nothing); enrolment after unblinding
``no_sap`` / ``no_data_lock``             unblinding before the SAP and the data lock
``reveal_mismatch`` / ``reveal_required`` unblinding whose reveal does not open the
                                          randomisation commitment
``not_unblinded``                         a results report of a masked trial before unblinding
``not_sponsor`` / ``not_a_site``          acting on someone else's trial
========================================  =====================================================

Flagged (accepted, recorded in the trial's flags with block height and time): things a
legitimate trial may do, that a reader must see.

===================================  ==========================================================
``sap_after_enrolment``              the first SAP came after the first enrolment (ICH E9
                                     asks only for "before unblinding"; SPIRIT for the
                                     protocol's statistical methods, item 20)
``data_after_unblinding``            a data lock committed after unblinding (corrections
                                     happen; the reader should know the analysis set moved)
``analysis_code_after_unblinding``   analysis code committed after unblinding
``amendment_without_approval``       an urgent safety measure implemented before approval
                                     (ICH E6(R3) allows it)
``results_late``                     a results report more than one year of block time after
                                     primary completion (FDAAA 801)
``results_overdue``                  (derived by ``trials.get`` at the tip's time, not stored)
                                     primary completion plus one year has passed, no report
===================================  ==========================================================

Key dates are block-time facts (``dates``: height and time of the block that made them
true): registered, ethics, start (first enrolment, ClinicalTrials.gov's definition of
the actual start date), recruitment closed, primary completion, completion, suspended,
terminated, withdrawn, unblinded, results. Dates a registry record declares (estimated
start, anticipated completion) are claims and are not stored.

Privacy
-------
No participant data is on chain: participants are pseudonymous keys, with their site,
randomisation number, consent grant ids and versions, status, and the hashes and kinds of
study events. Free text is the sponsor's public registry text (title, outcomes, arm
labels, amendment reasons); clients must keep PHI out of amendment reasons (the chain
cannot tell). Allocation is never on chain before unblinding, and then only as the
hash of the list. What an operator, another member and a socket user learn is in
``docs/trials-walkthrough.md``.

State (namespace ``trials``; ``tid = SHA-256("medchain/trials/id/v1" || registry id)``)::

    t/<tid>                          -> trial (registry id, sponsor, sites, status, dates,
                                        versions, commitments, counts)
    v/<tid><version 4B>              -> protocol version {protocol_hash, outcomes, ...}
    a/<tid><version 4B>              -> amendment {changes, reason, approval, reconsent, ...}
    n/<tid>                          -> number of participants enrolled (absent: none);
                                        kept apart from the trial so that an enrolment
                                        does not rewrite the trial's record
    e/<tid><participant>             -> enrolment {site, seq, consents, status, events}
    s/<tid><seq 4B>                  -> participant (randomisation order)
    x/<tid><participant><n 4B>       -> study event {kind, data_hash, version}
    f/<tid><n 4B>                    -> flag {code, detail}
    r/<tid><n 2B>                    -> results report {outcomes, snapshot hash, late}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import Module, QueryError, QuerySpec, TopicSpec, TxContext, TxFailed, TxSpec, hex_or_none
from ...app.schema import Bool, Bytes, Enum, FieldError, Int, ListOf, Struct, Text, body, params
from ...app.state import StateReader
from ..consent import machine as consent
from ..identity import machine as identity
from . import outcomes as oc

NAMESPACE = "trials"

#: ``NCT`` + 8 digits, or another registry's id (ISRCTN, EU CT, DRKS, ACTRN, ...):
#: letters, digits and hyphens; ids with slashes (CTRI) are written with hyphens
REGISTRY_ID_PATTERN = r"NCT[0-9]{8}|(?![Nn][Cc][Tt])[A-Za-z0-9][A-Za-z0-9-]{4,39}"
REGISTRY_ID = Text(40, min=5, pattern=REGISTRY_ID_PATTERN,
                   what="a registry id: NCT + 8 digits, or another registry's id (5..40 letters, digits, hyphens)")
MAX_TEXT = 300
MAX_REASON = 1000
MAX_OUTCOMES = 64
MAX_SITES = 64
MAX_ARMS = 32
MAX_COMMITS = 16
MAX_REPORTS = 16
MAX_CONSENTS = 32
MAX_VERSION = 999_999
MAX_TARGET = 10_000_000
MAX_TIME_MS = 2**63 - 1
#: FDAAA 801: results within 12 months of primary completion (here: 365 days of block time)
RESULTS_DUE_MS = 365 * 24 * 3600 * 1000

ALLOCATIONS = ("randomized", "non_randomized", "na")
MASKINGS = ("none", "single", "double", "triple", "quadruple")
PHASES = ("na", "early_phase1", "phase1", "phase2", "phase3", "phase4")
ARM_TYPES = ("experimental", "active_comparator", "placebo_comparator", "sham_comparator", "no_intervention",
             "other")
CHANGE_KINDS = ("outcomes", "sample_size", "sites", "eligibility", "interventions", "procedures", "statistics",
                "consent_form", "safety", "administrative", "other")
COMMIT_KINDS = ("sap", "randomisation", "data_lock", "analysis_code")
STATUS_ACTIONS = ("close_recruitment", "suspend", "resume", "primary_completion", "complete", "terminate",
                  "withdraw")

# trial status (ClinicalTrials.gov overallStatus, lower case)
NOT_YET_RECRUITING = "not_yet_recruiting"
RECRUITING = "recruiting"
ACTIVE_NOT_RECRUITING = "active_not_recruiting"
SUSPENDED = "suspended"
COMPLETED = "completed"
TERMINATED = "terminated"
WITHDRAWN = "withdrawn"
FINAL = frozenset({COMPLETED, TERMINATED, WITHDRAWN})

ENROLLED = "enrolled"
PARTICIPANT_WITHDRAWN = "withdrawn"

#: HL7 v3 PurposeOfUse "clinical trial research"; a trial consent names the trial and version
PURPOSE = "CLINTRCH"
CONSENT_RESOURCE = "ResearchSubject"
RANDOMISATION_DOMAIN = b"medchain/trials/randomisation/v1"
TRIAL_ID_DOMAIN = b"medchain/trials/id/v1"

FLAG_CODES = ("sap_after_enrolment", "data_after_unblinding", "analysis_code_after_unblinding",
              "amendment_without_approval", "results_late")


def trial_id(registry_id: str) -> bytes:
    return crypto.sha256(TRIAL_ID_DOMAIN + registry_id.encode())


def consent_purpose(registry_id: str, version: int) -> str:
    """The purpose code a participant's consent to ``version`` of a trial names."""
    return f"{PURPOSE}.{registry_id}.v{version}"


def randomisation_commitment(salt: bytes, list_hash: bytes) -> bytes:
    """The ``randomisation`` commitment to an allocation list (its hash ``list_hash``)."""
    return crypto.sha256(RANDOMISATION_DOMAIN + salt + list_hash)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def trial_key(tid: bytes) -> bytes:
    return b"t/" + tid


def version_key(tid: bytes, version: int) -> bytes:
    return b"v/" + tid + _u32(version)


def amendment_key(tid: bytes, version: int) -> bytes:
    return b"a/" + tid + _u32(version)


def enrolment_key(tid: bytes, participant: bytes) -> bytes:
    return b"e/" + tid + participant


def seq_key(tid: bytes, seq: int) -> bytes:
    return b"s/" + tid + _u32(seq)


def count_key(tid: bytes) -> bytes:
    return b"n/" + tid


def enrolled_count(state: StateReader, tid: bytes) -> int:
    """How many participants the trial has enrolled (withdrawn ones included)."""
    raw = state.get(NAMESPACE, count_key(tid))
    return 0 if raw is None else int(codec.decode_stored(raw))


def event_key(tid: bytes, participant: bytes, n: int) -> bytes:
    return b"x/" + tid + participant + _u32(n)


def flag_key(tid: bytes, n: int) -> bytes:
    return b"f/" + tid + _u32(n)


def report_key(tid: bytes, n: int) -> bytes:
    return b"r/" + tid + n.to_bytes(2, "big")


# ------------------------------------------------------------------ tx bodies

TEXT = Text(MAX_TEXT)


@body
class Outcome:
    role: Annotated[str, Enum(oc.ROLES)]
    measure: Annotated[str, TEXT]
    time_frame: Annotated[str, TEXT]
    metric: Annotated[str | None, TEXT] = None


@body
class ReportedOutcome:
    role: Annotated[str, Enum(oc.REPORT_ROLES)]
    measure: Annotated[str, TEXT]
    time_frame: Annotated[str, TEXT]
    metric: Annotated[str | None, TEXT] = None


@body
class Arm:
    label: Annotated[str, Text(100)]
    type: Annotated[str, Enum(ARM_TYPES)]


@body
class Approval:
    """An ethics (IRB/IEC) approval: its reference and the approval document's hash."""

    ref: Annotated[str, Text(128)]
    document_hash: Annotated[bytes, Bytes(32)]


def _unique_fingerprints(outs: Sequence[Outcome | ReportedOutcome], what: str) -> None:
    fps = [oc.fingerprint(o.measure, o.time_frame, o.metric) for o in outs]
    if len(set(fps)) != len(fps):
        raise FieldError(f"{what}: two outcomes have the same measure, metric and time frame")
    if any(not oc.normalize(o.measure) or not oc.normalize(o.time_frame) for o in outs):
        raise FieldError(f"{what}: an outcome's measure or time frame is empty once normalised")


def _check_outcomes(outs: Sequence[Outcome]) -> None:
    _unique_fingerprints(outs, "outcomes")
    if not any(o.role == "primary" for o in outs):
        raise FieldError("outcomes: at least one primary outcome is required (SPIRIT 12)")


OUTCOMES = ListOf(Struct(Outcome), min=1, max=MAX_OUTCOMES)
SITES = ListOf(Bytes(32), max=MAX_SITES, unique=True)


@body
class Register:
    trial: Annotated[str, REGISTRY_ID]
    title: Annotated[str, TEXT]
    protocol_hash: Annotated[bytes, Bytes(32)]
    protocol_version: Annotated[int, Int(1, MAX_VERSION)]
    registry_snapshot_hash: Annotated[bytes, Bytes(32)]
    target_enrollment: Annotated[int, Int(1, MAX_TARGET)]
    allocation: Annotated[str, Enum(ALLOCATIONS)]
    masking: Annotated[str, Enum(MASKINGS)]
    outcomes: Annotated[tuple[Outcome, ...], OUTCOMES]
    sites: Annotated[tuple[bytes, ...] | None, SITES] = None
    arms: Annotated[tuple[Arm, ...] | None, ListOf(Struct(Arm), max=MAX_ARMS, unique=True)] = None
    phases: Annotated[tuple[str, ...] | None, ListOf(Enum(PHASES), max=len(PHASES), unique=True)] = None
    ethics: Annotated[Approval | None, Struct(Approval)] = None

    def check(self) -> None:
        _check_outcomes(self.outcomes)
        if self.arms is not None and len({a.label for a in self.arms}) != len(self.arms):
            raise FieldError("arms: labels must be unique")


@body
class Ethics:
    trial: Annotated[str, REGISTRY_ID]
    approval: Annotated[Approval, Struct(Approval)]


@body
class Amend:
    trial: Annotated[str, REGISTRY_ID]
    effective_version: Annotated[int, Int(1, MAX_VERSION)]
    protocol_hash: Annotated[bytes, Bytes(32)]
    changes: Annotated[tuple[str, ...], ListOf(Enum(CHANGE_KINDS), min=1, max=len(CHANGE_KINDS), unique=True)]
    reason: Annotated[str, Text(MAX_REASON)]
    reconsent: Annotated[bool, Bool()]
    approval: Annotated[Approval | None, Struct(Approval)] = None
    urgent_safety: Annotated[bool | None, Bool()] = None
    outcomes: Annotated[tuple[Outcome, ...] | None, OUTCOMES] = None
    target_enrollment: Annotated[int | None, Int(1, MAX_TARGET)] = None
    add_sites: Annotated[tuple[bytes, ...] | None, ListOf(Bytes(32), min=1, max=MAX_SITES, unique=True)] = None

    def check(self) -> None:
        for kind, value, name in (("outcomes", self.outcomes, "outcomes"),
                                  ("sample_size", self.target_enrollment, "target_enrollment"),
                                  ("sites", self.add_sites, "add_sites")):
            if (kind in self.changes) != (value is not None):
                raise FieldError(f"changes lists {kind!r} exactly when {name} is given")
        if self.outcomes is not None:
            _check_outcomes(self.outcomes)
        if "consent_form" in self.changes and not self.reconsent:
            raise FieldError("a new consent form needs reconsent: true")
        if self.urgent_safety is False:
            raise FieldError("urgent_safety is true or absent")


@body
class Commit:
    trial: Annotated[str, REGISTRY_ID]
    kind: Annotated[str, Enum(COMMIT_KINDS)]
    hash: Annotated[bytes, Bytes(32)]
    label: Annotated[str | None, Text(64)] = None


@body
class Enroll:
    trial: Annotated[str, REGISTRY_ID]
    participant: Annotated[bytes, Bytes(32)]
    consent_grant: Annotated[bytes, Bytes(32)]


@body
class Reconsent:
    trial: Annotated[str, REGISTRY_ID]
    participant: Annotated[bytes, Bytes(32)]
    consent_grant: Annotated[bytes, Bytes(32)]


@body
class Event:
    trial: Annotated[str, REGISTRY_ID]
    participant: Annotated[bytes, Bytes(32)]
    kind: Annotated[str, consent.CODE]
    data_hash: Annotated[bytes | None, Bytes(32)] = None


@body
class Withdraw:
    trial: Annotated[str, REGISTRY_ID]
    participant: Annotated[bytes, Bytes(32)]


@body
class Status:
    trial: Annotated[str, REGISTRY_ID]
    action: Annotated[str, Enum(STATUS_ACTIONS)]


@body
class Unblind:
    trial: Annotated[str, REGISTRY_ID]
    randomisation_salt: Annotated[bytes | None, Bytes(32)] = None
    randomisation_list_hash: Annotated[bytes | None, Bytes(32)] = None

    def check(self) -> None:
        if (self.randomisation_salt is None) != (self.randomisation_list_hash is None):
            raise FieldError("give both randomisation_salt and randomisation_list_hash, or neither")


@body
class Report:
    trial: Annotated[str, REGISTRY_ID]
    registry_snapshot_hash: Annotated[bytes, Bytes(32)]
    outcomes: Annotated[tuple[ReportedOutcome, ...], ListOf(Struct(ReportedOutcome), min=1, max=MAX_OUTCOMES)]
    results_hash: Annotated[bytes | None, Bytes(32)] = None

    def check(self) -> None:
        _unique_fingerprints(self.outcomes, "outcomes")


# ------------------------------------------------------------------ stored values


def outcome_value(o: Outcome | ReportedOutcome) -> dict[str, Any]:
    return {"role": o.role, "measure": o.measure, "metric": o.metric, "time_frame": o.time_frame,
            "fingerprint": oc.fingerprint(o.measure, o.time_frame, o.metric)}


def outcome_row(v: dict[str, Any], version: int | None = None) -> oc.OutcomeRow:
    return oc.OutcomeRow(v["role"], v["measure"], v["time_frame"], v["metric"], version)


def _at(ctx: TxContext) -> dict[str, int]:
    return {"height": ctx.block.height, "time_ms": ctx.block.time_ms}


def _approval(a: Approval | None, ctx: TxContext) -> dict[str, Any] | None:
    return None if a is None else {"ref": a.ref, "document_hash": a.document_hash, **_at(ctx)}


def get_trial(state: StateReader, registry_id: str) -> dict[str, Any] | None:
    raw = state.get(NAMESPACE, trial_key(trial_id(registry_id)))
    return None if raw is None else codec.decode_stored(raw)


def _trial(ctx: TxContext, registry_id: str) -> tuple[bytes, dict[str, Any]]:
    tid = trial_id(registry_id)
    t = ctx.get(trial_key(tid))
    if t is None:
        raise TxFailed("unknown_trial", f"no trial {registry_id} is registered")
    return tid, t


def _sponsor_trial(ctx: TxContext, registry_id: str) -> tuple[bytes, dict[str, Any]]:
    tid, t = _trial(ctx, registry_id)
    if t["sponsor"] != ctx.sender:
        raise TxFailed("not_sponsor", f"only the sponsor of {registry_id} may do this")
    if not identity.is_accredited(ctx.state, ctx.sender, "sponsor"):
        raise TxFailed("unauthorized", "the sponsor's accreditation has been revoked")
    return tid, t


def _flag(ctx: TxContext, tid: bytes, t: dict[str, Any], code: str, detail: str) -> None:
    assert code in FLAG_CODES
    n = t["flags"]
    t["flags"] = n + 1
    ctx.put(flag_key(tid, n), {"code": code, "detail": detail, **_at(ctx)})
    ctx.emit("flagged", trial=t["registry_id"], code=code)


def _check_sites(ctx: TxContext, sites: Sequence[bytes]) -> None:
    for s in sites:
        if not identity.is_accredited(ctx.state, s, "provider"):
            raise TxFailed("invalid_site", f"site {s.hex()[:16]} is not an accredited provider")


# ------------------------------------------------------------------ consent


_VERSION_NUMBER = re.compile(r"[1-9][0-9]{0,5}", re.ASCII)


def _versions_named(grant: dict[str, Any], registry_id: str) -> list[int]:
    """The protocol versions a grant's purposes name for this trial."""
    prefix = f"{PURPOSE}.{registry_id}.v"
    n = len(prefix)
    out = []
    for p in grant["purposes"] or ():
        if p.startswith(prefix) and _VERSION_NUMBER.fullmatch(p, n) is not None:
            out.append(int(p[n:]))
    return out


def check_trial_consent(
    state: StateReader, participant: bytes, site: bytes, registry_id: str, grant_id: bytes,
    min_version: int, max_version: int, time_ms: int,
) -> tuple[str | None, str, int]:
    """Whether the participant's grant ``grant_id`` is a valid consent to the trial now.

    Returns ``(code, reason, version)``: ``code`` is ``None`` when valid (``version`` is
    the consent-form version it names), else ``no_consent``, ``consent_withdrawn``,
    ``consent_denied`` or ``reconsent_required``.
    """
    raw = state.get(consent.NAMESPACE, consent.grant_key(participant, grant_id))
    if raw is None:
        return "no_consent", "the participant has no such consent grant", 0
    grant = codec.decode_stored(raw)
    if grant["revoked_height"] is not None:
        return "consent_withdrawn", "the participant revoked this consent", 0
    if not consent.grant_is_active(grant, time_ms):
        return "no_consent", "the consent is not valid at this block's time", 0
    if grant["decision"] != consent.PERMIT:
        return "no_consent", "the grant is a deny", 0
    if grant["actor"] != site:
        return "no_consent", "the consent is not given to this site", 0
    named = [v for v in _versions_named(grant, registry_id) if v <= max_version]
    if not named:
        wanted = consent_purpose(registry_id, max_version)
        return "no_consent", f"the consent does not name {registry_id} (purpose {wanted})", 0
    version = max(named)
    purpose = consent_purpose(registry_id, version)
    site_ident = identity.get_identity(state, site)
    if not consent.grant_matches(grant, site, site_ident, "write", CONSENT_RESOURCE, None, purpose):
        return "no_consent", f"the consent does not permit write on {CONSENT_RESOURCE}", 0
    prefix = b"g/" + participant
    for k, v in state.iterate(consent.NAMESPACE, prefix):
        if k[len(prefix):] == grant_id:  # the permit checked above (decoded once is enough)
            continue
        g = codec.decode_stored(v)
        if (g["decision"] == consent.DENY and consent.grant_is_active(g, time_ms)
                and consent.grant_matches(g, site, site_ident, "write", CONSENT_RESOURCE, None, purpose)):
            return "consent_denied", f"denied by consent {k[len(prefix):].hex()}", 0
    if version < min_version:
        return ("reconsent_required",
                f"consent is to version {version}; re-consent to version {min_version} or later is required", version)
    return None, f"consent to version {version}", version


# ------------------------------------------------------------------ handlers


def _register(ctx: TxContext, b: Register) -> None:
    if not identity.is_accredited(ctx.state, ctx.sender, "sponsor"):
        raise TxFailed("unauthorized", "only an accredited sponsor registers a trial")
    tid = trial_id(b.trial)
    if ctx.get(trial_key(tid)) is not None:
        raise TxFailed("already_registered", f"{b.trial} is already registered")
    sites = list(b.sites or ())
    _check_sites(ctx, sites)
    dates: dict[str, Any] = {"registered": _at(ctx)}
    ethics = _approval(b.ethics, ctx)
    if ethics is not None:
        dates["ethics"] = _at(ctx)
    trial = {
        "registry_id": b.trial, "title": b.title, "sponsor": ctx.sender, "sites": sites,
        "protocol_version": b.protocol_version, "protocol_hash": b.protocol_hash,
        "consent_version": b.protocol_version, "first_version": b.protocol_version,
        "registry_snapshot_hash": b.registry_snapshot_hash, "target": b.target_enrollment,
        "allocation": b.allocation, "masking": b.masking, "phases": list(b.phases or ()),
        "arms": [{"label": a.label, "type": a.type} for a in b.arms or ()],
        "status": NOT_YET_RECRUITING, "suspended_from": None, "ethics": ethics, "dates": dates,
        "start_version": None, "outcome_versions": [b.protocol_version],
        "withdrawn": 0, "amendments": [], "reports": 0, "flags": 0,
        "commitments": {k: [] for k in COMMIT_KINDS}, "randomisation_reveal": None,
    }
    ctx.put(trial_key(tid), trial)
    ctx.put(version_key(tid, b.protocol_version), {
        "version": b.protocol_version, "protocol_hash": b.protocol_hash,
        "outcomes": [outcome_value(o) for o in b.outcomes], **_at(ctx),
    })
    ctx.emit("registered", trial=b.trial, sponsor=ctx.sender, version=b.protocol_version)


def _ethics(ctx: TxContext, b: Ethics) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    if t["ethics"] is not None:
        raise TxFailed("already_approved", "the trial's ethics approval is already recorded")
    t["ethics"] = _approval(b.approval, ctx)
    t["dates"]["ethics"] = _at(ctx)
    ctx.put(trial_key(tid), t)
    ctx.emit("ethics_approved", trial=b.trial)


def _amend(ctx: TxContext, b: Amend) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    if t["status"] in FINAL:
        raise TxFailed("trial_closed", f"the trial is {t['status']}")
    if b.effective_version <= t["protocol_version"]:
        raise TxFailed("bad_version", f"effective_version must be above the current version {t['protocol_version']}")
    if b.approval is None and not b.urgent_safety:
        raise TxFailed("approval_required", "an amendment needs its ethics approval reference "
                                            "(or urgent_safety for a measure taken before approval)")
    if b.approval is not None and b.urgent_safety:
        raise TxFailed("invalid_body", "an urgent safety measure is the one amendment without approval")
    unblinded = "unblinded" in t["dates"]
    old = ctx.get(version_key(tid, t["protocol_version"]))
    assert old is not None
    outcomes = old["outcomes"]
    if b.outcomes is not None:
        if unblinded:
            raise TxFailed("outcomes_locked", "outcomes cannot change after unblinding")
        new = [outcome_value(o) for o in b.outcomes]
        if sorted((o["role"], o["fingerprint"]) for o in new) == sorted(
                (o["role"], o["fingerprint"]) for o in outcomes):
            raise TxFailed("invalid_body", "changes lists 'outcomes' but the outcomes are the same")
        outcomes = new
        t["outcome_versions"].append(b.effective_version)
    old_target = t["target"]
    if b.target_enrollment is not None:
        enrolled = enrolled_count(ctx.state, tid)
        if b.target_enrollment < enrolled:
            raise TxFailed("invalid_body", f"the target cannot be below the {enrolled} already enrolled")
        t["target"] = b.target_enrollment
    if b.add_sites is not None:
        if any(s in t["sites"] for s in b.add_sites):
            raise TxFailed("invalid_body", "a site in add_sites is already a site of the trial")
        if len(t["sites"]) + len(b.add_sites) > MAX_SITES:
            raise TxFailed("too_many_sites", f"a trial has at most {MAX_SITES} sites")
        _check_sites(ctx, b.add_sites)
        t["sites"] = t["sites"] + list(b.add_sites)
    previous = t["protocol_version"]
    t["protocol_version"] = b.effective_version
    t["protocol_hash"] = b.protocol_hash
    if b.reconsent:
        t["consent_version"] = b.effective_version
    t["amendments"].append(b.effective_version)
    ctx.put(version_key(tid, b.effective_version), {
        "version": b.effective_version, "protocol_hash": b.protocol_hash, "outcomes": outcomes, **_at(ctx),
    })
    ctx.put(amendment_key(tid, b.effective_version), {
        "effective_version": b.effective_version, "previous_version": previous, "protocol_hash": b.protocol_hash,
        "changes": sorted(b.changes), "reason": b.reason, "approval": _approval(b.approval, ctx),
        "urgent_safety": bool(b.urgent_safety), "reconsent": b.reconsent,
        "target": [old_target, t["target"]] if b.target_enrollment is not None else None,
        "added_sites": list(b.add_sites or ()), "after_start": "start" in t["dates"], **_at(ctx),
    })
    if b.approval is None:
        _flag(ctx, tid, t, "amendment_without_approval", f"version {b.effective_version}: urgent safety measure")
    ctx.put(trial_key(tid), t)
    ctx.emit("amended", trial=b.trial, version=b.effective_version, changes=sorted(b.changes), reconsent=b.reconsent)


def _commit(ctx: TxContext, b: Commit) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    history = t["commitments"][b.kind]
    started = "start" in t["dates"]
    unblinded = "unblinded" in t["dates"]
    if len(history) >= MAX_COMMITS:
        raise TxFailed("too_many_commitments", f"at most {MAX_COMMITS} {b.kind} commitments")
    if b.kind == "randomisation":
        if history:
            raise TxFailed("already_committed", "the randomisation list is committed once")
        if started:
            raise TxFailed("too_late", "the randomisation list must be committed before the first enrolment")
    if b.kind == "sap" and unblinded:
        raise TxFailed("unblinded", "an SAP committed after unblinding prespecifies nothing")
    if b.kind in ("data_lock", "analysis_code") and not started:
        raise TxFailed("not_started", f"a {b.kind} commitment needs enrolled participants")
    if any(c["hash"] == b.hash for c in history):
        raise TxFailed("already_committed", f"this {b.kind} hash is already committed")
    history.append({"hash": b.hash, "label": b.label, **_at(ctx)})
    if b.kind == "sap" and started and len(history) == 1:
        _flag(ctx, tid, t, "sap_after_enrolment", "the first SAP was committed after the first enrolment")
    if b.kind == "data_lock" and unblinded:
        _flag(ctx, tid, t, "data_after_unblinding", "a data lock was committed after unblinding")
    if b.kind == "analysis_code" and unblinded:
        _flag(ctx, tid, t, "analysis_code_after_unblinding", "analysis code was committed after unblinding")
    ctx.put(trial_key(tid), t)
    ctx.emit("committed", trial=b.trial, kind=b.kind, hash=b.hash)


def _site_trial(ctx: TxContext, registry_id: str) -> tuple[bytes, dict[str, Any]]:
    tid, t = _trial(ctx, registry_id)
    if ctx.sender not in t["sites"] or not identity.is_accredited(ctx.state, ctx.sender, "provider"):
        raise TxFailed("not_a_site", f"the sender is not an accredited site of {registry_id}")
    return tid, t


def _consent_or_fail(ctx: TxContext, t: dict[str, Any], participant: bytes, grant_id: bytes) -> int:
    code, reason, version = check_trial_consent(
        ctx.state, participant, ctx.sender, t["registry_id"], grant_id,
        t["consent_version"], t["protocol_version"], ctx.block.time_ms,
    )
    if code is not None:
        raise TxFailed(code, reason)
    return version


def _enroll(ctx: TxContext, b: Enroll) -> None:
    tid, t = _site_trial(ctx, b.trial)
    if "unblinded" in t["dates"]:
        raise TxFailed("unblinded", "no enrolment after unblinding")
    if t["status"] not in (NOT_YET_RECRUITING, RECRUITING):
        raise TxFailed("not_recruiting", f"the trial is {t['status']}")
    if t["ethics"] is None:
        raise TxFailed("no_ethics_approval", "no participant may be enrolled before ethics approval")
    if t["allocation"] == "randomized" and not t["commitments"]["randomisation"]:
        raise TxFailed("no_randomisation_commitment", "commit the randomisation list before the first enrolment")
    seq = enrolled_count(ctx.state, tid)
    if seq >= t["target"]:
        raise TxFailed("target_reached", f"the target enrolment of {t['target']} is reached (amend sample_size)")
    p = identity.get_identity(ctx.state, b.participant)
    if p is None or p["role"] != "patient" or p["status"] != identity.ACTIVE:
        raise TxFailed("unknown_participant", "the participant is not an active patient identity")
    if ctx.get(enrolment_key(tid, b.participant)) is not None:
        raise TxFailed("already_enrolled", "the participant is already enrolled")
    version = _consent_or_fail(ctx, t, b.participant, b.consent_grant)
    at = _at(ctx)
    # keys in canonical order (shorter first, then bytewise) and checked parts: same bytes
    # in any order, but put_built encodes them without codec.encode's walk or sort
    ctx.put_built(enrolment_key(tid, b.participant), {
        "seq": seq, "site": ctx.sender, "events": 0, "height": at["height"], "status": ENROLLED,
        "time_ms": at["time_ms"], "consents": [{**at, "version": version, "grant_id": b.consent_grant}],
        "withdrawn": None,
    })
    ctx.put_built(seq_key(tid, seq), b.participant)
    ctx.put_built(count_key(tid), seq + 1)
    if "start" not in t["dates"]:  # the trial's record changes at the first enrolment only
        t["dates"]["start"] = _at(ctx)
        t["start_version"] = t["protocol_version"]
        t["status"] = RECRUITING
        ctx.put(trial_key(tid), t)
    ctx.emit("enrolled", trial=b.trial, participant=b.participant, site=ctx.sender, seq=seq, consent_version=version)


def _enrolment(ctx: TxContext, tid: bytes, participant: bytes) -> dict[str, Any]:
    e: dict[str, Any] | None = ctx.get(enrolment_key(tid, participant))
    if e is None:
        raise TxFailed("not_enrolled", "the participant is not enrolled in this trial")
    if e["status"] == PARTICIPANT_WITHDRAWN:
        raise TxFailed("withdrawn", "the participant has withdrawn")
    return e


def _reconsent(ctx: TxContext, b: Reconsent) -> None:
    tid, t = _site_trial(ctx, b.trial)
    e = _enrolment(ctx, tid, b.participant)
    if e["site"] != ctx.sender:
        raise TxFailed("not_a_site", "only the enrolling site records re-consent")
    version = _consent_or_fail(ctx, t, b.participant, b.consent_grant)
    last = e["consents"][-1]["version"]
    if version <= last:
        raise TxFailed("already_consented", f"the participant already consented to version {last}")
    if len(e["consents"]) >= MAX_CONSENTS:
        raise TxFailed("too_many_consents", f"at most {MAX_CONSENTS} consents per participant")
    e["consents"].append({"grant_id": b.consent_grant, "version": version, **_at(ctx)})
    ctx.put(enrolment_key(tid, b.participant), e)
    ctx.emit("reconsented", trial=b.trial, participant=b.participant, consent_version=version)


def _event(ctx: TxContext, b: Event) -> None:
    tid, t = _site_trial(ctx, b.trial)
    e = _enrolment(ctx, tid, b.participant)
    if e["site"] != ctx.sender:
        raise TxFailed("not_a_site", "only the enrolling site records the participant's events")
    if t["status"] not in (RECRUITING, ACTIVE_NOT_RECRUITING):
        raise TxFailed("trial_closed", f"the trial is {t['status']}")
    _consent_or_fail(ctx, t, b.participant, e["consents"][-1]["grant_id"])
    n = e["events"]
    ctx.put_built(event_key(tid, b.participant, n), {  # keys in canonical order (see _enroll)
        "kind": b.kind, **_at(ctx), "data_hash": b.data_hash, "protocol_version": t["protocol_version"],
    })
    e["events"] = n + 1  # a key the stored (canonical) map has: its order holds
    ctx.put_built(enrolment_key(tid, b.participant), e)
    ctx.emit("event", trial=b.trial, participant=b.participant, kind=b.kind, n=n)


def _withdraw(ctx: TxContext, b: Withdraw) -> None:
    tid, t = _trial(ctx, b.trial)
    e = _enrolment(ctx, tid, b.participant)
    if ctx.sender == b.participant:
        by = "participant"
    elif ctx.sender == e["site"]:
        by = "site"
    else:
        raise TxFailed("unauthorized", "only the participant or the enrolling site records a withdrawal")
    e["status"] = PARTICIPANT_WITHDRAWN
    e["withdrawn"] = {"by": by, **_at(ctx)}
    t["withdrawn"] += 1
    ctx.put(enrolment_key(tid, b.participant), e)
    ctx.put(trial_key(tid), t)
    ctx.emit("withdrawn", trial=b.trial, participant=b.participant, by=by)


#: action -> (statuses it applies to, new status or None to keep, date it records)
TRANSITIONS: dict[str, tuple[frozenset[str], str | None, str]] = {
    "close_recruitment": (frozenset({RECRUITING}), ACTIVE_NOT_RECRUITING, "recruitment_closed"),
    "suspend": (frozenset({RECRUITING, ACTIVE_NOT_RECRUITING, NOT_YET_RECRUITING}), SUSPENDED, "suspended"),
    "resume": (frozenset({SUSPENDED}), None, "resumed"),
    "primary_completion": (frozenset({RECRUITING, ACTIVE_NOT_RECRUITING}), ACTIVE_NOT_RECRUITING,
                           "primary_completion"),
    "complete": (frozenset({ACTIVE_NOT_RECRUITING}), COMPLETED, "completion"),
    "terminate": (frozenset({RECRUITING, ACTIVE_NOT_RECRUITING, SUSPENDED}), TERMINATED, "terminated"),
    "withdraw": (frozenset({NOT_YET_RECRUITING, SUSPENDED}), WITHDRAWN, "withdrawn"),
}


def _status(ctx: TxContext, b: Status) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    allowed, new, date = TRANSITIONS[b.action]
    if t["status"] not in allowed:
        raise TxFailed("bad_transition", f"cannot {b.action} a trial that is {t['status']}")
    if b.action == "primary_completion" and "primary_completion" in t["dates"]:
        raise TxFailed("bad_transition", "primary completion is already recorded")
    if b.action == "complete" and "primary_completion" not in t["dates"]:
        raise TxFailed("bad_transition", "record primary completion first")
    if b.action == "withdraw" and enrolled_count(ctx.state, tid):
        raise TxFailed("bad_transition", "a trial with enrolled participants is terminated, not withdrawn")
    if b.action == "suspend":
        t["suspended_from"] = t["status"]
    if b.action == "resume":
        new, t["suspended_from"] = t["suspended_from"], None
    if b.action == "terminate" and "primary_completion" not in t["dates"]:
        # ClinicalTrials.gov: a terminated trial's primary completion date is the day it stopped
        t["dates"]["primary_completion"] = _at(ctx)
    t["status"] = new
    t["dates"][date] = _at(ctx)
    ctx.put(trial_key(tid), t)
    ctx.emit("status", trial=b.trial, action=b.action, status=new)


def _unblind(ctx: TxContext, b: Unblind) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    if "unblinded" in t["dates"]:
        raise TxFailed("already_unblinded", "the trial is already unblinded")
    if "start" not in t["dates"]:
        raise TxFailed("not_started", "no participant is enrolled")
    if not t["commitments"]["sap"]:
        raise TxFailed("no_sap", "commit the statistical analysis plan before unblinding")
    if not t["commitments"]["data_lock"]:
        raise TxFailed("no_data_lock", "commit the data lock before unblinding")
    committed = t["commitments"]["randomisation"]
    if committed:
        if b.randomisation_salt is None or b.randomisation_list_hash is None:
            raise TxFailed("reveal_required", "unblinding reveals the randomisation commitment (salt and list hash)")
        if randomisation_commitment(b.randomisation_salt, b.randomisation_list_hash) != committed[0]["hash"]:
            raise TxFailed("reveal_mismatch", "the salt and list hash do not open the randomisation commitment")
        t["randomisation_reveal"] = {"salt": b.randomisation_salt, "list_hash": b.randomisation_list_hash}
    elif b.randomisation_salt is not None:
        raise TxFailed("invalid_body", "no randomisation commitment to reveal")
    t["dates"]["unblinded"] = _at(ctx)
    ctx.put(trial_key(tid), t)
    ctx.emit("unblinded", trial=b.trial)


def results_due_ms(t: dict[str, Any]) -> int | None:
    pc = t["dates"].get("primary_completion")
    return None if pc is None else int(pc["time_ms"]) + RESULTS_DUE_MS


def _report(ctx: TxContext, b: Report) -> None:
    tid, t = _sponsor_trial(ctx, b.trial)
    if "start" not in t["dates"]:
        raise TxFailed("not_started", "no participant is enrolled")
    if t["masking"] != "none" and "unblinded" not in t["dates"]:
        raise TxFailed("not_unblinded", "a masked trial reports results after unblinding")
    n = t["reports"]
    if n >= MAX_REPORTS:
        raise TxFailed("too_many_reports", f"at most {MAX_REPORTS} results reports")
    due = results_due_ms(t)
    late = due is not None and ctx.block.time_ms > due
    ctx.put(report_key(tid, n), {
        "registry_snapshot_hash": b.registry_snapshot_hash, "results_hash": b.results_hash,
        "outcomes": [outcome_value(o) for o in b.outcomes], "protocol_version": t["protocol_version"],
        "late": late, **_at(ctx),
    })
    t["reports"] = n + 1
    t["dates"].setdefault("results", _at(ctx))
    if late:
        _flag(ctx, tid, t, "results_late", "the report came more than a year after primary completion")
    ctx.put(trial_key(tid), t)
    ctx.emit("reported", trial=b.trial, report=n, late=late)


# ------------------------------------------------------------------ the switching report


def _load(state: StateReader, key: bytes) -> Any:
    raw = state.get(NAMESPACE, key)
    return None if raw is None else codec.decode_stored(raw)


def switching_report(state: StateReader, registry_id: str, report: int | None = None) -> dict[str, Any] | None:
    """The outcome-switching report of a trial's results report (default: the latest).

    Reference: the outcomes in force at the start (the version current at the first
    enrolment; the current version if nobody is enrolled). Declared: the outcome
    versions after it (each an amendment with a reason and an approval).
    """
    tid = trial_id(registry_id)
    t = _load(state, trial_key(tid))
    if t is None:
        return None
    if t["reports"] == 0:
        raise QueryError(f"{registry_id} has no results report yet")
    n = t["reports"] - 1 if report is None else report
    if not 0 <= n < t["reports"]:
        raise QueryError(f"{registry_id} has reports 0..{t['reports'] - 1}")
    rep = _load(state, report_key(tid, n))
    reference = t["start_version"] if t["start_version"] is not None else t["protocol_version"]
    base = max(v for v in t["outcome_versions"] if v <= reference)
    pre = [outcome_row(o, base) for o in _load(state, version_key(tid, base))["outcomes"]]
    later = [(v, [outcome_row(o, v) for o in _load(state, version_key(tid, v))["outcomes"]])
             for v in t["outcome_versions"] if v > reference and v <= rep["protocol_version"]]
    result = oc.classify(pre, [outcome_row(o) for o in rep["outcomes"]], later)
    return {
        "trial": registry_id, "report": n, "reported_height": rep["height"], "reported_ms": rep["time_ms"],
        "reference_version": reference, "started": t["start_version"] is not None,
        "declared_versions": [v for v, _ in later], **result,
    }


# ------------------------------------------------------------------ queries


def _dates_json(dates: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) for k, v in sorted(dates.items())}


def _approval_json(a: dict[str, Any] | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {"ref": a["ref"], "document_hash": hex_or_none(a["document_hash"]), "height": a["height"],
            "time_ms": a["time_ms"]}


def trial_json(state: StateReader, t: dict[str, Any], time_ms: int | None) -> dict[str, Any]:
    tid = trial_id(t["registry_id"])
    due = results_due_ms(t)
    flags = [codec.decode(v) for _, v in state.iterate(NAMESPACE, b"f/" + tid)]
    out = {
        "trial": t["registry_id"], "title": t["title"], "sponsor": hex_or_none(t["sponsor"]),
        "sites": [hex_or_none(s) for s in t["sites"]], "status": t["status"],
        "protocol_version": t["protocol_version"], "protocol_hash": hex_or_none(t["protocol_hash"]),
        "consent_version": t["consent_version"], "start_version": t["start_version"],
        "registry_snapshot_hash": hex_or_none(t["registry_snapshot_hash"]),
        "target_enrollment": t["target"], "enrolled": enrolled_count(state, tid), "withdrawn": t["withdrawn"],
        "allocation": t["allocation"], "masking": t["masking"], "phases": t["phases"], "arms": t["arms"],
        "ethics": _approval_json(t["ethics"]), "dates": _dates_json(t["dates"]),
        "amendments": t["amendments"], "outcome_versions": t["outcome_versions"], "reports": t["reports"],
        "commitments": {k: [{"hash": hex_or_none(c["hash"]), "label": c["label"], "height": c["height"],
                             "time_ms": c["time_ms"]} for c in v] for k, v in t["commitments"].items()},
        "randomisation_reveal": None if t["randomisation_reveal"] is None else {
            "salt": hex_or_none(t["randomisation_reveal"]["salt"]),
            "list_hash": hex_or_none(t["randomisation_reveal"]["list_hash"])},
        "results_due_ms": due,
        "flags": [{"code": f["code"], "detail": f["detail"], "height": f["height"], "time_ms": f["time_ms"]}
                  for f in flags],
    }
    if time_ms is not None and due is not None and t["reports"] == 0 and time_ms > due:
        out["flags"].append({"code": "results_overdue", "detail": "no results one year after primary completion",
                             "height": None, "time_ms": due})
    return out


@params
class TrialParams:
    trial: Annotated[str, REGISTRY_ID]
    time_ms: Annotated[int, Int(0, MAX_TIME_MS)]


@params
class ListParams:
    sponsor: Annotated[bytes | None, Bytes(32)] = None
    status: Annotated[str | None, Enum((NOT_YET_RECRUITING, RECRUITING, ACTIVE_NOT_RECRUITING, SUSPENDED, COMPLETED,
                                        TERMINATED, WITHDRAWN))] = None
    limit: Annotated[int, Int(1, 1000)] = 100


@params
class OutcomesParams:
    trial: Annotated[str, REGISTRY_ID]
    version: Annotated[int | None, Int(1, MAX_VERSION)] = None


@params
class PlainTrialParams:
    trial: Annotated[str, REGISTRY_ID]


@params
class ParticipantsParams:
    trial: Annotated[str, REGISTRY_ID]
    time_ms: Annotated[int, Int(0, MAX_TIME_MS)]
    site: Annotated[bytes | None, Bytes(32)] = None
    limit: Annotated[int, Int(1, 1000)] = 100
    offset: Annotated[int, Int(0, 2**31)] = 0


@params
class SwitchingParams:
    trial: Annotated[str, REGISTRY_ID]
    report: Annotated[int | None, Int(0, MAX_REPORTS - 1)] = None


def _query_get(state: StateReader, p: TrialParams) -> Any:
    """A trial: registry id, sponsor, sites, status and dates, versions, commitments, counts, flags."""
    t = get_trial(state, p.trial)
    return None if t is None else trial_json(state, t, p.time_ms)


def _query_list(state: StateReader, p: ListParams) -> Any:
    """Registered trials (registry id, sponsor, status, counts), optionally of one sponsor or status."""
    out = []
    for k, raw in state.iterate(NAMESPACE, b"t/"):
        t = codec.decode(raw)
        if (p.sponsor is None or t["sponsor"] == p.sponsor) and (p.status is None or t["status"] == p.status):
            out.append({"trial": t["registry_id"], "title": t["title"], "sponsor": hex_or_none(t["sponsor"]),
                        "status": t["status"], "protocol_version": t["protocol_version"],
                        "enrolled": enrolled_count(state, k[2:]), "target_enrollment": t["target"],
                        "reports": t["reports"]})
    out.sort(key=lambda x: x["trial"])
    return out[: p.limit]


def _outcome_json(v: dict[str, Any]) -> dict[str, Any]:
    return {"role": v["role"], "measure": v["measure"], "metric": v["metric"], "time_frame": v["time_frame"],
            "fingerprint": hex_or_none(v["fingerprint"])}


def _query_outcomes(state: StateReader, p: OutcomesParams) -> Any:
    """The outcomes in force at a protocol version (default: the current one), with fingerprints."""
    t = get_trial(state, p.trial)
    if t is None:
        return None
    version = t["protocol_version"] if p.version is None else p.version
    v = _load(state, version_key(trial_id(p.trial), version))
    if v is None:
        raise QueryError(f"{p.trial} has no protocol version {version}")
    return {"trial": p.trial, "version": version, "protocol_hash": hex_or_none(v["protocol_hash"]),
            "prespecified": version == t["start_version"], "height": v["height"], "time_ms": v["time_ms"],
            "outcomes": [_outcome_json(o) for o in v["outcomes"]]}


def _query_amendments(state: StateReader, p: PlainTrialParams) -> Any:
    """A trial's amendments in version order: what changed, why, approval, re-consent."""
    if get_trial(state, p.trial) is None:
        return None
    out = []
    for _, raw in state.iterate(NAMESPACE, b"a/" + trial_id(p.trial)):
        a = codec.decode(raw)
        out.append({
            "effective_version": a["effective_version"], "previous_version": a["previous_version"],
            "protocol_hash": hex_or_none(a["protocol_hash"]), "changes": a["changes"], "reason": a["reason"],
            "approval": _approval_json(a["approval"]), "urgent_safety": a["urgent_safety"],
            "reconsent": a["reconsent"], "target": a["target"],
            "added_sites": [hex_or_none(s) for s in a["added_sites"]], "after_start": a["after_start"],
            "height": a["height"], "time_ms": a["time_ms"],
        })
    return out


def _consent_state(state: StateReader, t: dict[str, Any], participant: bytes, e: dict[str, Any],
                   time_ms: int) -> tuple[str, str]:
    """``(consent, reason)``: ``current``, ``reconsent_required``, ``withdrawn`` or ``invalid``."""
    if e["status"] == PARTICIPANT_WITHDRAWN:
        return "withdrawn", "the participant withdrew"
    code, reason, _ = check_trial_consent(state, participant, e["site"], t["registry_id"],
                                          e["consents"][-1]["grant_id"], t["consent_version"],
                                          t["protocol_version"], time_ms)
    if code is None:
        return "current", reason
    if code == "reconsent_required":
        return "reconsent_required", reason
    if code == "consent_withdrawn":
        return "withdrawn", reason
    return "invalid", reason


def _participants(state: StateReader, tid: bytes) -> Iterator[tuple[bytes, dict[str, Any]]]:
    prefix = b"s/" + tid
    for _, raw in state.iterate(NAMESPACE, prefix):
        participant = codec.decode(raw)
        e = _load(state, enrolment_key(tid, participant))
        yield participant, e


def _query_participants(state: StateReader, p: ParticipantsParams) -> Any:
    """Enrolled participants in randomisation order: pseudonym, site, consent versions and
    whether their consent covers the current protocol at ``time_ms``."""
    t = get_trial(state, p.trial)
    if t is None:
        return None
    out = []
    skipped = 0
    for participant, e in _participants(state, trial_id(p.trial)):
        if p.site is not None and e["site"] != p.site:
            continue
        if skipped < p.offset:
            skipped += 1
            continue
        consent_now, reason = _consent_state(state, t, participant, e, p.time_ms)
        out.append({
            "participant": hex_or_none(participant), "site": hex_or_none(e["site"]), "seq": e["seq"],
            "status": e["status"], "height": e["height"], "time_ms": e["time_ms"],
            "consents": [{"grant_id": hex_or_none(c["grant_id"]), "version": c["version"], "height": c["height"],
                          "time_ms": c["time_ms"]} for c in e["consents"]],
            "consent": consent_now, "consent_reason": reason, "events": e["events"],
            "withdrawn": e["withdrawn"],
        })
        if len(out) >= p.limit:
            break
    return out


def _query_coverage(state: StateReader, p: TrialParams) -> Any:
    """Consent coverage per site at ``time_ms``: enrolled, covered for the current protocol,
    awaiting re-consent, withdrawn, invalid."""
    t = get_trial(state, p.trial)
    if t is None:
        return None
    sites: dict[bytes, dict[str, int]] = {}
    for participant, e in _participants(state, trial_id(p.trial)):
        row = sites.setdefault(e["site"], {"enrolled": 0, "current": 0, "reconsent_required": 0,
                                           "withdrawn": 0, "invalid": 0})
        row["enrolled"] += 1
        row[_consent_state(state, t, participant, e, p.time_ms)[0]] += 1
    per_site = [{"site": hex_or_none(s), **row} for s, row in sorted(sites.items())]
    total = {k: sum(r[k] for r in sites.values()) for k in ("enrolled", "current", "reconsent_required",
                                                             "withdrawn", "invalid")}
    return {"trial": p.trial, "consent_version": t["consent_version"], "protocol_version": t["protocol_version"],
            "target_enrollment": t["target"], "total": total, "sites": per_site}


def _query_switching(state: StateReader, p: SwitchingParams) -> Any:
    """COMPare-style outcome-switching report: every outcome of a results report against the
    outcomes in force at the start, declared amendments excepted."""
    return switching_report(state, p.trial, p.report)


class TrialsModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "register": TxSpec(Register, _register),
            "ethics": TxSpec(Ethics, _ethics),
            "amend": TxSpec(Amend, _amend),
            "commit": TxSpec(Commit, _commit),
            "enroll": TxSpec(Enroll, _enroll),
            "reconsent": TxSpec(Reconsent, _reconsent),
            "event": TxSpec(Event, _event),
            # a withdrawal is never delayed behind bulk traffic (as consent revocations)
            "withdraw": TxSpec(Withdraw, _withdraw, lane="priority"),
            "status": TxSpec(Status, _status),
            "unblind": TxSpec(Unblind, _unblind),
            "report": TxSpec(Report, _report),
        }
        self.queries = {
            "get": QuerySpec(_query_get, TrialParams, tip_time=True, not_found="no such trial"),
            "list": QuerySpec(_query_list, ListParams),
            "outcomes": QuerySpec(_query_outcomes, OutcomesParams, not_found="no such trial"),
            "amendments": QuerySpec(_query_amendments, PlainTrialParams, not_found="no such trial"),
            "participants": QuerySpec(_query_participants, ParticipantsParams, tip_time=True,
                                      not_found="no such trial"),
            "coverage": QuerySpec(_query_coverage, TrialParams, tip_time=True, not_found="no such trial"),
            "switching": QuerySpec(_query_switching, SwitchingParams, not_found="no such trial"),
        }
        self.topics = {
            "trial": TopicSpec("trial", "a trial's registration, amendments, enrolments, commitments and reports",
                               param=REGISTRY_ID),
        }
