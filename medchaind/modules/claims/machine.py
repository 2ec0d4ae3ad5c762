"""Claims: the lifecycle of a health care claim, from the 837 to the 835, with no PHI on chain.

Theory of operation
-------------------
A provider's billing system submits a claim (an X12 837P/837I claim or a FHIR Claim,
parsed and de-identified in the client) with ``claims.submit``; the payer acknowledges
it (277CA, ``claims.ack``), adjudicates it (an 835 CLP loop, ``claims.adjudicate``) and
pays (the 835's BPR/TRN/PLB, ``claims.pay``). Every step is a tx by the one party
allowed to take it, and the chain refuses a step that the lifecycle does not allow::

    submitted --ack A1/A2--> accepted --adjudicate--> adjudicated --pay--> paid   (paid > 0)
        |                        ^                                    \\--> denied (paid = 0)
        |--ack A3/A6/A7/A8--> rejected                                    |
        |--every line auto-denied (exact duplicate, unit limit)--> denied  |
                                 appealed <--appeal-- paid | denied <-----/
    accepted | adjudicated | paid | denied | appealed --(frequency 7 accepted)--> replaced
                                                      --(frequency 8 accepted)--> voided

A replacement (CLM05-3 = 7) or void (8) is a claim of its own that names its original
(the client resolves REF*F8, the payer's claim control number, to the original's claim
id); the original becomes ``replaced`` / ``voided`` only when the payer accepts the
replacement or void, and stays as it was if the payer rejects it. A void is
acknowledged, never adjudicated. Rejected (front-end) claims never entered
adjudication: resubmitting them as originals is correct practice, so they leave the
duplicate indexes.

Keys and blind indexes (no PHI on chain)
----------------------------------------
The payer **enrolls** each provider it accepts claims from (``claims.enroll``: the
billing NPIs it credentialed, and a random 32-byte *pair key* sealed to the provider's
and its own X25519 keys, so the chain carries only sealed boxes). Every identifier that
is PHI is blinded in the client with the pair key (HMAC-SHA-256, domain-separated;
:mod:`.canonical`), so only that payer and that provider can compute or recognise it:

* ``patient``: the member id and the claim's service month (a token that changes every
  month, so outsiders cannot follow a patient's claims from month to month);
* ``pcn``: the patient control number (CLM01); ``icn``: the payer's claim control
  number (277CA REF*1K, 835 CLP07); ``trace``: the payment's TRN02;
* ``days`` of each line: one key per date of service (member id + date), 1..31 per line;
* ``claim``: the commitment to the whole canonical claim (X12 and FHIR forms of one
  claim canonicalise to the same bytes, hence the same commitment).

In the clear: the payer and provider identities, billing / rendering NPIs (not patient
PHI), procedure / revenue codes and modifiers, units, charges, place of service, the
month of service, status and adjustment codes. Diagnoses, names, birth dates, member ids,
CLM01 and exact dates never reach the chain. The claim document travels as a blob
sidecar, encrypted to the payer and the provider (records' mechanism): the chain holds
its ciphertext hash.

Detections (stable codes; refuse or commit-and-flag)
----------------------------------------------------
The chain computes the duplicate keys itself from what it sees (:mod:`.codes`), so a
provider cannot opt out except by lying about the blind day keys, which the payer checks
when it opens the document (the acknowledgement flow recomputes every blind value).

* ``exact_duplicate``: a line whose CMS §120 fields (beneficiary and dates via the day
  keys, billing and rendering NPI, code, modifiers, units, charge, place of service)
  equal a live line of another claim (or an earlier line of the same claim). **Committed
  and auto-denied** with group OA, CARC 18, RARC N522, as Medicare does: the duplicate is
  a business fact the provider gets a denial for and duplicate-rate analytics count;
  refused, it would leave only a failed receipt that no query reports. A claim whose
  lines are all auto-denied is ``denied`` at once.
* ``unit_limit``: units above the code's medically-unlikely-edit limit (a chain
  parameter set by an authority, ``claims.set_unit_limit``). Auto-denied, CO 151 / N362.
* ``suspect_duplicate`` (reasons ``same_service``: same patient, day and code with other
  modifiers, units, charge or place; ``overlapping_dates``; ``other_payer``: the same
  encounter and code billed as primary to two payers): **committed and held** for the
  payer's review (CMS suspends these): the payer may release the hold
  (``claims.release``) or deny; it cannot pay a held claim. Modifiers 59, X{EPSU}, 76,
  77, 91 and opposite laterality (RT/LT) separate lines and are never suspect.
* ``no_service_on_record``: a line with no matching encounter: it must name a live
  record (the records module) written by the submitting provider, of a service resource
  type, committed within the line's month of service (a day before, up to
  :data:`DOC_LAG_DAYS` after), and the record's patient must be the one this pair's
  token was first seen with. **Committed and held**: documentation can lag, and the
  payer decides; refusing would also let a provider probe the records index.
* Illegal transitions (payment before adjudication, replacement of an unknown, voided
  or replaced claim, acknowledging twice, an 835 that does not balance, paying an
  auto-denied line or a held claim...) are **refused** with a code: no business state
  corresponds to them, and the dry run at admission refuses them before they are
  committed.

State (namespace ``claims``)::

    c/<claim_id>                         -> the claim (see _submit)
    a/<claim_id><seq 2B>                 -> adjudication history entry
    e/<payer><provider>                  -> enrollment {npis, envelopes, epoch, height}
    n/<payer><npi>                       -> provider (one billing identity per NPI and payer)
    s/<suspect_key><claim_id><line 2B>   -> exact_key   live lines, by (day key, code); an exact
                                            duplicate is found under the first day's key
    u/<record_id><claim_id><line 2B>     -> {payer, code, sequence}   encounter uses
    pt/<payer><provider><token>          -> records patient the token was first seen with
    pp/<payer><provider><patient><month 4B> -> token
    r/<pcn><claim_id>                    -> content_hash   blind reference index; its values are
                                            the claim documents every node keeps (live_blobs)
    i/<icn><claim_id>                    -> True   blind reference index
    lp/<provider><~seq 8B>, ly/<payer><~seq 8B>   -> [claim_id, flagged]   (newest first; the
                                            duplicates report filters them on ``flagged``)
    np/<provider>, ny/<payer>            -> {next}
    st/<payer><provider>                 -> {claims, lines, exact, suspect, nsor, unit_limit}
    t/<payer><trace>                     -> payment {provider, method, total, claims, plb, height}
    ul/<code>                            -> max units (thousandths) per line
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import (
    Attach,
    BlobSpec,
    HostEffect,
    Module,
    QueryError,
    QuerySpec,
    TopicSpec,
    TxContext,
    TxFailed,
    TxSpec,
    WantBlob,
    canonical_order,
    hex_or_none,
)
from ...app.schema import Bytes, Custom, Enum, FieldError, Int, ListOf, OneOf, Struct, Text, body, params
from ...app.state import StateReader
from ..governance import machine as governance
from ..identity import machine as identity
from ..records import machine as records
from . import codes

NAMESPACE = "claims"

MAX_DOC_SIZE = 1024 * 1024
MAX_LINES = 50
MAX_DAYS_PER_LINE = codes.MAX_DAYS_PER_LINE
MAX_DAY_KEYS = 200
MAX_NPIS = 32
MAX_ADJ = 99
MAX_PAY_CLAIMS = 500
MIN_SEALED, MAX_SEALED = 48, 256
#: a record documenting a service may be committed this many days after the month of service
DOC_LAG_DAYS = 30
#: and up to a day before it (the block clock is UTC, dates of service are local)
DOC_LEAD_DAYS = 1
#: FHIR resource types that document a service having happened
SERVICE_RESOURCES = frozenset({
    "Encounter", "Procedure", "Observation", "DiagnosticReport", "Immunization",
    "MedicationAdministration", "MedicationDispense", "ImagingStudy", "DocumentReference",
})
_SEQ_MAX = 2**64 - 1

# statuses
SUBMITTED, ACCEPTED, REJECTED = "submitted", "accepted", "rejected"
ADJUDICATED, PAID, DENIED, APPEALED = "adjudicated", "paid", "denied", "appealed"
REPLACED, VOIDED = "replaced", "voided"
STATUSES = (SUBMITTED, ACCEPTED, REJECTED, ADJUDICATED, PAID, DENIED, APPEALED, REPLACED, VOIDED)
#: statuses in which a claim's lines stay in the duplicate indexes
LIVE = frozenset({SUBMITTED, ACCEPTED, ADJUDICATED, PAID, DENIED, APPEALED})
#: an original in one of these may be replaced or voided
CHANGEABLE = frozenset({ACCEPTED, ADJUDICATED, PAID, DENIED, APPEALED})

# detections (stable codes, docs/protocol.md "claims")
EXACT, SUSPECT, NSOR, UNIT_LIMIT = "exact_duplicate", "suspect_duplicate", "no_service_on_record", "unit_limit"
HOLDS = (SUSPECT, NSOR)
#: line auto-denials: group, CARC, RARC
AUTO_DENIALS = {EXACT: ("OA", "18", "N522"), UNIT_LIMIT: ("CO", "151", "N362")}
#: the X12 code of what a claim is (837P professional, 837I institutional)
KINDS = ("professional", "institutional")
PAYMENT_METHODS = ("ACH", "CHK", "BOP", "FWT", "NON")


# ------------------------------------------------------------------ keys


def claim_key(claim_id: bytes) -> bytes:
    return b"c/" + claim_id


def enrollment_key(payer: bytes, provider: bytes) -> bytes:
    return b"e/" + payer + provider


def _line_ref(claim_id: bytes, n: int) -> bytes:
    return claim_id + n.to_bytes(2, "big")


def _seq_key(prefix: bytes, party: bytes, seq: int) -> bytes:
    return prefix + party + (_SEQ_MAX - seq).to_bytes(8, "big")


def get_claim(state: StateReader, claim_id: bytes) -> dict[str, Any] | None:
    raw = state.get(NAMESPACE, claim_key(claim_id))
    return None if raw is None else codec.decode_stored(raw)


# ------------------------------------------------------------------ field types


def _npi(value: Any, name: str) -> str:
    if not codes.is_npi(value):
        raise FieldError(f"{name} must be a 10-digit NPI with a valid check digit (Luhn over 80840 + NPI)")
    return str(value)


NPI = Custom(_npi, "a 10-digit NPI with a valid check digit", memo=True)  # pure: decoding remembers accepted NPIs


def _month(value: Any, name: str) -> int:
    if not codes.is_month(value):
        raise FieldError(f"{name} must be a month YYYYMM (200001..209912)")
    return int(value)


MONTH = Custom(_month, "a month YYYYMM")
PROCEDURE = Text(5, min=5, pattern=codes.PROCEDURE_RE.pattern, what="a CPT or HCPCS code (5 characters)")
MODIFIER = Text(2, min=2, pattern=codes.MODIFIER_RE.pattern, what="a 2-character modifier")
REVENUE = Text(4, min=4, pattern=codes.REVENUE_RE.pattern, what="a 4-digit revenue code")
POS = Text(2, min=2, pattern=codes.POS_RE.pattern, what="a 2-digit place of service / facility code")
CARC = Text(3, pattern=codes.CARC_RE.pattern, what="a claim adjustment reason code (CARC)")
RARC = Text(5, min=2, pattern=codes.RARC_RE.pattern, what="a remittance advice remark code (RARC)")
CENTS = Int(0, codes.MAX_CENTS)
SIGNED_CENTS = Int(-codes.MAX_CENTS, codes.MAX_CENTS)
UNITS = Int(1, codes.MAX_UNITS_MILLI)


# ------------------------------------------------------------------ tx bodies


@body
class Envelope:
    recipient: Annotated[bytes, Bytes(32)]
    sealed_key: Annotated[bytes, Bytes(min=MIN_SEALED, max=MAX_SEALED)]


def _unique_recipients(envs: Sequence[Envelope]) -> None:
    if len({e.recipient for e in envs}) != len(envs):
        raise FieldError("envelope recipients must be unique")


@body
class Enroll:
    """The payer enrolls a provider: credentialed billing NPIs and the sealed pair key."""

    provider: Annotated[bytes, Bytes(32)]
    npis: Annotated[tuple[str, ...], ListOf(NPI, min=1, max=MAX_NPIS, unique=True)]
    envelopes: Annotated[tuple[Envelope, ...], ListOf(Struct(Envelope), min=2, max=2)]

    def check(self) -> None:
        _unique_recipients(self.envelopes)


@body
class Line:
    n: Annotated[int, Int(1, 999)]
    code: Annotated[str, PROCEDURE]
    units: Annotated[int, UNITS]
    charge: Annotated[int, CENTS]
    month: Annotated[int, MONTH]
    days: Annotated[tuple[bytes, ...], ListOf(Bytes(32), min=1, max=MAX_DAYS_PER_LINE, unique=True)]
    modifiers: Annotated[tuple[str, ...] | None, ListOf(MODIFIER, min=1, max=4, unique=True)] = None
    revenue: Annotated[str | None, REVENUE] = None
    pos: Annotated[str | None, POS] = None
    rendering_npi: Annotated[str | None, NPI] = None
    encounter: Annotated[bytes | None, Bytes(32)] = None


@body
class Submit:
    payer: Annotated[bytes, Bytes(32)]
    kind: Annotated[str, Enum(KINDS)]
    frequency: Annotated[int, OneOf(*codes.FREQUENCIES)]
    sequence: Annotated[str, Enum(codes.SEQUENCES)]
    billing_npi: Annotated[str, NPI]
    pos: Annotated[str, POS]
    total: Annotated[int, CENTS]
    month: Annotated[int, MONTH]
    patient: Annotated[bytes, Bytes(32)]
    pcn: Annotated[bytes, Bytes(32)]
    claim: Annotated[bytes, Bytes(32)]
    content_hash: Annotated[bytes, Bytes(32)]
    size: Annotated[int, Int(1, MAX_DOC_SIZE)]
    envelopes: Annotated[tuple[Envelope, ...], ListOf(Struct(Envelope), min=1, max=4)]
    lines: Annotated[tuple[Line, ...], ListOf(Struct(Line), min=1, max=MAX_LINES)]
    rendering_npi: Annotated[str | None, NPI] = None
    original: Annotated[bytes | None, Bytes(32)] = None

    def check(self) -> None:
        _unique_recipients(self.envelopes)
        if (self.frequency == codes.ORIGINAL) != (self.original is None):
            raise FieldError("original is required with frequency 7 (replacement) and 8 (void), and only then")
        if len({ln.n for ln in self.lines}) != len(self.lines):
            raise FieldError("line numbers must be unique")
        if sum(ln.charge for ln in self.lines) != self.total:
            raise FieldError("total must equal the sum of the line charges (CLM02 = sum of SV102 / SV203)")
        if self.month != min(ln.month for ln in self.lines):
            raise FieldError("month must be the earliest month of service of the lines")
        if sum(len(ln.days) for ln in self.lines) > MAX_DAY_KEYS:
            raise FieldError(f"at most {MAX_DAY_KEYS} day keys per claim")
        for ln in self.lines:
            if (ln.revenue is not None) != (self.kind == "institutional"):
                raise FieldError(f"line {ln.n}: revenue is required on institutional claims and only there")


@body
class Ack:
    claim_id: Annotated[bytes, Bytes(32)]
    category: Annotated[str, Enum(codes.ACK_CATEGORIES)]
    status_code: Annotated[str, Text(3, pattern=codes.STATUS_CODE_RE.pattern, what="a claim status code (STC01-2)")]
    icn: Annotated[bytes | None, Bytes(32)] = None


@body
class Adjustment:
    group: Annotated[str, Enum(codes.CAS_GROUPS)]
    reason: Annotated[str, CARC]
    amount: Annotated[int, SIGNED_CENTS]


ADJUSTMENTS = ListOf(Struct(Adjustment), max=MAX_ADJ)
REMARKS = ListOf(RARC, min=1, max=20, unique=True)


@body
class LineAdjudication:
    n: Annotated[int, Int(1, 999)]
    charge: Annotated[int, CENTS]
    paid: Annotated[int, SIGNED_CENTS]
    adjustments: Annotated[tuple[Adjustment, ...], ADJUSTMENTS]
    remarks: Annotated[tuple[str, ...] | None, REMARKS] = None


@body
class Adjudicate:
    claim_id: Annotated[bytes, Bytes(32)]
    clp_status: Annotated[int, OneOf(*codes.CLP_STATUSES)]
    charge: Annotated[int, CENTS]
    paid: Annotated[int, SIGNED_CENTS]
    patient_resp: Annotated[int, SIGNED_CENTS]
    adjustments: Annotated[tuple[Adjustment, ...], ADJUSTMENTS]
    lines: Annotated[tuple[LineAdjudication, ...], ListOf(Struct(LineAdjudication), max=MAX_LINES)]
    remarks: Annotated[tuple[str, ...] | None, REMARKS] = None
    icn: Annotated[bytes | None, Bytes(32)] = None

    def check(self) -> None:
        if len({ln.n for ln in self.lines}) != len(self.lines):
            raise FieldError("line numbers must be unique")


@body
class ProviderAdjustment:
    reason: Annotated[str, Text(2, min=2, pattern=codes.PLB_REASON_RE.pattern, what="a PLB reason code")]
    amount: Annotated[int, SIGNED_CENTS]


@body
class Pay:
    provider: Annotated[bytes, Bytes(32)]
    trace: Annotated[bytes, Bytes(32)]
    method: Annotated[str, Enum(PAYMENT_METHODS)]
    total: Annotated[int, CENTS]
    claims: Annotated[tuple[bytes, ...], ListOf(Bytes(32), min=1, max=MAX_PAY_CLAIMS, unique=True)]
    plb: Annotated[tuple[ProviderAdjustment, ...] | None, ListOf(Struct(ProviderAdjustment), min=1, max=50)] = None


@body
class Release:
    claim_id: Annotated[bytes, Bytes(32)]
    hold: Annotated[str, Enum(HOLDS)]


@body
class Appeal:
    claim_id: Annotated[bytes, Bytes(32)]


@body
class SetUnitLimit:
    code: Annotated[str, PROCEDURE]
    max_units: Annotated[int, Int(0, codes.MAX_UNITS_MILLI)]


# ------------------------------------------------------------------ helpers


def _party(ctx: TxContext, role: str, code: str) -> None:
    if not identity.is_accredited(ctx.state, ctx.sender, role):
        raise TxFailed(code, f"only an accredited {role} may do this")


@functools.lru_cache(maxsize=4096)
def _enrolled_npis(raw: bytes) -> frozenset[str]:
    """The NPIs of a stored enrollment: a pure function of its bytes, memoised because every
    claim of a pair reads the same enrollment (its decode, envelopes included, was ~1.7 us)."""
    return frozenset(codec.decode_stored(raw)["npis"])


def _load(ctx: TxContext, claim_id: bytes) -> dict[str, Any]:
    claim = ctx.get(claim_key(claim_id))
    if claim is None:
        raise TxFailed("unknown_claim", "no such claim")
    return dict(claim)


def _as_payer(ctx: TxContext, claim: dict[str, Any]) -> None:
    if ctx.sender != claim["payer"]:
        raise TxFailed("not_payer", "only the claim's payer may do this")


def _set_status(ctx: TxContext, claim_id: bytes, claim: dict[str, Any], status: str) -> None:
    previous = claim["status"]
    claim["status"] = status
    claim["updated_height"] = ctx.block.height
    ctx.put(claim_key(claim_id), claim)
    if status not in LIVE and previous in LIVE:
        _unindex(ctx, claim_id, claim)
    ctx.emit("status", claim_id=claim_id, status=status, previous=previous,
             parties=[claim["provider"], claim["payer"]], flags=claim["flags"], holds=claim["holds"])


def _unindex(ctx: TxContext, claim_id: bytes, claim: dict[str, Any]) -> None:
    """Take a claim that left the live statuses out of the duplicate and encounter indexes."""
    for ln in claim["lines"]:
        ref = _line_ref(claim_id, ln["n"])
        for sk in ln["suspect"]:
            ctx.delete(b"s/" + sk + ref)
        if ln["encounter"] is not None:
            ctx.delete(b"u/" + ln["encounter"] + ref)


#: a party pair's counters before its first claim, keys in canonical order
_NO_STATS = {k: 0 for k in canonical_order(("claims", "lines", EXACT, SUSPECT, NSOR, UNIT_LIMIT))}


def _bump(ctx: TxContext, key: bytes, **incs: int) -> None:
    # the stored map (decoded from canonical bytes) or _NO_STATS, existing keys only
    # incremented: still in canonical order, so put_built's bytes are codec.encode's
    stats = dict(ctx.get(key) or _NO_STATS)
    for k, v in incs.items():
        stats[k] += v
    ctx.put_built(key, stats)


def _next_seq(ctx: TxContext, counter: bytes) -> int:
    c = ctx.get(counter) or {"next": 0}
    ctx.put_built(counter, {"next": c["next"] + 1})
    return int(c["next"])


# ------------------------------------------------------------------ enroll


def _enroll(ctx: TxContext, b: Enroll) -> None:
    _party(ctx, "payer", "not_payer")
    if not identity.is_accredited(ctx.state, b.provider, "provider"):
        raise TxFailed("unknown_provider", "the enrolled party must be an accredited provider")
    if {e.recipient for e in b.envelopes} != {ctx.sender, b.provider}:
        raise TxFailed("bad_envelopes", "the pair key is sealed to exactly the payer and the provider")
    for npi in b.npis:
        holder = ctx.get(b"n/" + ctx.sender + npi.encode())
        if holder is not None and holder != b.provider:
            raise TxFailed("npi_taken", f"NPI {npi} is enrolled with this payer for another provider")
    key = enrollment_key(ctx.sender, b.provider)
    old = ctx.get(key)
    for npi in (old or {}).get("npis", []):
        if npi not in b.npis:
            ctx.delete(b"n/" + ctx.sender + npi.encode())
    for npi in b.npis:
        ctx.put(b"n/" + ctx.sender + npi.encode(), b.provider)
    ctx.put(key, {
        "npis": sorted(b.npis),
        "envelopes": [[e.recipient, e.sealed_key] for e in sorted(b.envelopes, key=lambda e: e.recipient)],
        "epoch": 0 if old is None else old["epoch"] + 1,
        "height": ctx.block.height,
    })
    ctx.emit("enrolled", payer=ctx.sender, provider=b.provider, npis=sorted(b.npis),
             parties=[b.provider, ctx.sender])


# ------------------------------------------------------------------ submit


def _check_original(ctx: TxContext, b: Submit) -> dict[str, Any]:
    assert b.original is not None
    orig = ctx.get(claim_key(b.original))
    if orig is None or orig["provider"] != ctx.sender or orig["payer"] != b.payer:
        raise TxFailed("unknown_original", "the original claim is not a claim of this provider to this payer")
    if orig["frequency"] == codes.VOID:
        raise TxFailed("original_is_void", "a void cannot be replaced or voided")
    if orig["status"] == VOIDED:
        raise TxFailed("original_voided", "the original claim has been voided")
    if orig["status"] == REPLACED:
        raise TxFailed("original_replaced", "the original claim has been replaced: reference its replacement")
    if orig["status"] == REJECTED:
        raise TxFailed("original_rejected", "a rejected claim never entered adjudication: submit a new original")
    if orig["status"] not in CHANGEABLE:
        raise TxFailed("original_not_acknowledged", "the payer has not accepted the original claim yet")
    if orig["pending_change"] is not None:
        raise TxFailed("change_pending", "a replacement or void of this claim awaits the payer's acknowledgement")
    return dict(orig)


def _encounter_problem(ctx: TxContext, b: Submit, ln: Line) -> str | None:
    """Why a line has no service on record (None: its encounter matches)."""
    if ln.encounter is None:
        return "no_encounter"
    rec = records.get_record(ctx.state, ln.encounter)
    if rec is None:
        return "unknown_record"
    if rec["erased"]:
        return "erased_record"
    if rec["author"] != ctx.sender:
        return "other_author"
    if rec["resource_type"] not in SERVICE_RESOURCES:
        return "not_a_service"
    lo = codes.month_start_ms(ln.month) - DOC_LEAD_DAYS * codes.DAY_MS
    hi = codes.month_end_ms(ln.month) + DOC_LAG_DAYS * codes.DAY_MS
    if not lo <= rec["created_ms"] < hi:
        return "outside_window"
    bound = ctx.get(b"pt/" + b.payer + ctx.sender + b.patient)
    if bound is not None and bound != rec["patient"]:
        return "other_patient"
    token = ctx.get(b"pp/" + b.payer + ctx.sender + rec["patient"] + b.month.to_bytes(4, "big"))
    if token is not None and token != b.patient:
        return "other_patient"
    return None


def _detect(ctx: TxContext, claim_id: bytes, b: Submit, lines: list[dict[str, Any]]) -> None:
    """Run the line detections of a new claim and index its live lines (in line order)."""
    skip = b.original
    for ln, out in zip(b.lines, lines, strict=True):
        flags: list[dict[str, Any]] = []
        rendering = ln.rendering_npi or b.rendering_npi or b.billing_npi
        exact = codes.exact_key(b.billing_npi, rendering, ln.days, ln.code, ln.revenue, ln.modifiers or (),
                                ln.units, ln.charge, ln.pos or b.pos)
        suspects = [codes.suspect_key(d, ln.code) for d in sorted(ln.days)]
        # a live line with the same exact key has the same days and code, so it is indexed
        # under this line's first suspect key with the exact key as its value (an exact
        # index of its own was one more state key per line: protocol.md §22.4)
        first_day = list(ctx.iterate(b"s/" + suspects[0]))  # read once: _suspect scans it too
        dup = next((k[len(b"s/") + 32:] for k, v in first_day
                    if v == exact and k[len(b"s/") + 32:][:32] != skip), None)
        limit = ctx.get(b"ul/" + ln.code.encode())
        if dup is not None:
            flags.append({"of": [dup[:32], int.from_bytes(dup[32:], "big")], "code": EXACT})
        elif limit is not None and ln.units > limit:
            flags.append({"code": UNIT_LIMIT, "limit": limit})
        if flags:
            out.update(flags=flags, denied=flags[0]["code"])
            continue
        found = _suspect(ctx, ln, suspects, skip, first_day)
        if found is not None:
            flags.append(found)
        problem = _encounter_problem(ctx, b, ln)
        if problem is not None:
            flags.append({"code": NSOR, "reason": problem})
        elif ln.encounter is not None:
            other = _other_payer(ctx, b, ln)
            if other is not None and found is None:
                flags.append(other)
            rec = records.get_record(ctx.state, ln.encounter)
            assert rec is not None
            ctx.put_built(b"pt/" + b.payer + ctx.sender + b.patient, rec["patient"])
            ctx.put_built(b"pp/" + b.payer + ctx.sender + rec["patient"] + b.month.to_bytes(4, "big"), b.patient)
        ref = _line_ref(claim_id, ln.n)
        for sk in suspects:
            ctx.put_built(b"s/" + sk + ref, exact)
        if ln.encounter is not None:
            ctx.put_built(b"u/" + ln.encounter + ref, {"code": ln.code, "payer": b.payer, "sequence": b.sequence})
        out.update(flags=flags, exact=exact, suspect=suspects)


def _suspect(ctx: TxContext, ln: Line, suspects: list[bytes], skip: bytes | None,
             first_day: list[tuple[bytes, Any]]) -> dict[str, Any] | None:
    """The first live line under one of ``suspects`` that this line duplicates (``first_day``:
    the entries under ``suspects[0]``, already read)."""
    mods = ln.modifiers or ()
    for i, sk in enumerate(suspects):
        for k, _ in (first_day if i == 0 else ctx.iterate(b"s/" + sk)):
            ref = k[len(b"s/") + 32:]
            other_id, n = ref[:32], int.from_bytes(ref[32:], "big")
            if other_id == skip:
                continue
            other = ctx.get(claim_key(other_id))
            if other is None:  # the claim being submitted (an earlier line of it)
                continue
            m = next(x for x in other["lines"] if x["n"] == n)
            if codes.separates(mods, m["modifiers"]):
                continue
            same_days = sorted(m["days"]) == sorted(ln.days)
            return {"of": [other_id, n], "code": SUSPECT,  # keys in canonical order (_submit)
                    "reason": "same_service" if same_days else "overlapping_dates"}
    return None


def _other_payer(ctx: TxContext, b: Submit, ln: Line) -> dict[str, Any] | None:
    """The same encounter and code billed as primary to another payer (coordination of benefits)."""
    assert ln.encounter is not None
    if b.sequence != "P":
        return None
    for k, use in ctx.iterate(b"u/" + ln.encounter):
        ref = k[len(b"u/") + 32:]
        if use["payer"] != b.payer and use["code"] == ln.code and use["sequence"] == "P" and ref[:32] != b.original:
            return {"of": [ref[:32], int.from_bytes(ref[32:], "big")], "code": SUSPECT, "reason": "other_payer"}
    return None


def _submit(ctx: TxContext, b: Submit) -> None:
    _party(ctx, "provider", "not_provider")
    if not identity.is_accredited(ctx.state, b.payer, "payer"):
        raise TxFailed("unknown_payer", "the payer is not an accredited payer")
    enrollment = ctx.state.get(NAMESPACE, enrollment_key(b.payer, ctx.sender))
    if enrollment is None:
        raise TxFailed("not_enrolled", "this provider is not enrolled with the payer (claims.enroll)")
    if b.billing_npi not in _enrolled_npis(enrollment):
        raise TxFailed("npi_not_enrolled", f"billing NPI {b.billing_npi} is not enrolled with this payer")
    if {ctx.sender, b.payer} - {e.recipient for e in b.envelopes}:
        raise TxFailed("bad_envelopes", "the claim document must be sealed to the payer and the provider")
    orig = _check_original(ctx, b) if b.original is not None else None
    claim_id = crypto.sha256(b"medchain/claims/id/v1" + ctx.tx_hash)
    # the claim's maps, its lines' and their flags' (_detect, _suspect, _other_payer) are
    # built with their keys in canonical order (shorter first, then bytewise) from the
    # typed body's checked fields: the stored bytes are the same in any order, but then
    # put_built encodes them with cbor2's plain mode and no data-model walk (the claim's
    # encoding was ~10% of a claims.submit, half of it the walk)
    lines: list[dict[str, Any]] = [{
        "n": ln.n, "pos": ln.pos, "code": ln.code, "days": list(ln.days), "exact": None, "flags": [],
        "month": ln.month, "units": ln.units, "charge": ln.charge, "denied": None, "revenue": ln.revenue,
        "suspect": [], "encounter": ln.encounter, "modifiers": sorted(ln.modifiers or ()),
        "rendering_npi": ln.rendering_npi,
    } for ln in b.lines]
    if b.frequency != codes.VOID:  # a void is a copy of its original: nothing to detect or index
        _detect(ctx, claim_id, b, lines)
    line_flags = [f["code"] for ln in lines for f in ln["flags"]]
    holds = sorted({c for c in line_flags if c in HOLDS})
    all_denied = all(ln["denied"] is not None for ln in lines) and b.frequency != codes.VOID
    seq_p = _next_seq(ctx, b"np/" + ctx.sender)
    seq_y = _next_seq(ctx, b"ny/" + b.payer)
    claim: dict[str, Any] = {  # keys in canonical order (see lines above)
        "ack": None, "icn": None, "pcn": b.pcn, "pos": b.pos, "kind": b.kind, "paid": 0, "size": b.size,
        "flags": sorted(set(line_flags)), "holds": holds, "lines": lines, "month": b.month, "payer": b.payer,
        "total": b.total, "status": SUBMITTED, "patient": b.patient, "original": b.original, "paid_out": 0,
        "provider": ctx.sender, "sequence": b.sequence,
        "envelopes": [[e.recipient, e.sealed_key] for e in sorted(b.envelopes, key=lambda e: e.recipient)],
        "frequency": b.frequency, "changed_by": None, "commitment": b.claim, "billing_npi": b.billing_npi,
        "chain_denied": False, "content_hash": b.content_hash, "patient_resp": 0,
        "submitted_ms": ctx.block.time_ms, "adjudications": 0, "rendering_npi": b.rendering_npi,
        "pending_change": None, "updated_height": ctx.block.height, "submitted_height": ctx.block.height,
    }
    if orig is not None:
        assert b.original is not None
        orig["pending_change"] = claim_id
        ctx.put(claim_key(b.original), orig)
    ctx.put_built(claim_key(claim_id), claim)
    # one list entry per party says whether the claim is flagged (the duplicates report
    # filters the lists; separate flagged lists were two more state keys per claim), and
    # the pcn index holds the document hash (the documents every node keeps; a separate
    # document index was one more): protocol.md §22.4
    entry = [claim_id, bool(claim["flags"])]
    ctx.put_built(_seq_key(b"lp/", ctx.sender, seq_p), entry)
    ctx.put_built(_seq_key(b"ly/", b.payer, seq_y), entry)
    ctx.put_built(b"r/" + b.pcn + claim_id, b.content_hash)
    _bump(ctx, b"st/" + b.payer + ctx.sender, claims=1, lines=len(lines),
          **{c: line_flags.count(c) for c in (EXACT, SUSPECT, NSOR, UNIT_LIMIT)})
    ctx.emit("submitted", claim_id=claim_id, content_hash=b.content_hash, frequency=b.frequency,
             parties=[ctx.sender, b.payer], flags=claim["flags"], holds=holds)
    if all_denied:
        _chain_denial(ctx, claim_id, claim)


def _chain_denial(ctx: TxContext, claim_id: bytes, claim: dict[str, Any]) -> None:
    """Every line was auto-denied: the claim is denied at once (CARC 18 / N522, CARC 151 / N362)."""
    entry_lines = []
    for ln in claim["lines"]:
        group, carc, rarc = AUTO_DENIALS[ln["denied"]]
        entry_lines.append({"n": ln["n"], "charge": ln["charge"], "paid": 0,
                            "adjustments": [[group, carc, ln["charge"]]], "remarks": [rarc]})
    ctx.put(b"a/" + claim_id + (0).to_bytes(2, "big"), {
        "source": "chain", "height": ctx.block.height, "time_ms": ctx.block.time_ms, "clp_status": codes.CLP_DENIED,
        "charge": claim["total"], "paid": 0, "patient_resp": 0, "adjustments": [], "remarks": [],
        "lines": entry_lines,
    })
    claim["adjudications"] = 1
    claim["chain_denied"] = True
    _set_status(ctx, claim_id, claim, DENIED)


# ------------------------------------------------------------------ acknowledge


def _ack(ctx: TxContext, b: Ack) -> None:
    claim = _load(ctx, b.claim_id)
    _as_payer(ctx, claim)
    if claim["ack"] is not None:
        raise TxFailed("already_acknowledged", "the claim has been acknowledged already")
    if claim["status"] != SUBMITTED and not claim["chain_denied"]:
        raise TxFailed("not_submitted", f"the claim is {claim['status']}, not awaiting acknowledgement")
    accepted = b.category in codes.ACK_ACCEPTED
    claim["ack"] = {"category": b.category, "status_code": b.status_code, "height": ctx.block.height}
    if b.icn is not None and accepted:
        claim["icn"] = b.icn
        ctx.put(b"i/" + b.icn + b.claim_id, True)
    if claim["chain_denied"]:  # the payer's 277CA for a claim the chain denied: recorded, no change
        claim["updated_height"] = ctx.block.height
        ctx.put(claim_key(b.claim_id), claim)
        ctx.emit("acknowledged", claim_id=b.claim_id, category=b.category, parties=[claim["provider"], claim["payer"]])
        return
    orig_id = claim["original"]
    if orig_id is not None:
        orig = _load(ctx, orig_id)
        orig["pending_change"] = None
        if accepted:
            orig["changed_by"] = b.claim_id
            _set_status(ctx, orig_id, orig, REPLACED if claim["frequency"] == codes.REPLACEMENT else VOIDED)
        else:
            ctx.put(claim_key(orig_id), orig)
    _set_status(ctx, b.claim_id, claim, ACCEPTED if accepted else REJECTED)


# ------------------------------------------------------------------ adjudicate


def _adj_sum(adjs: Sequence[Adjustment], group: str | None = None) -> int:
    return sum(a.amount for a in adjs if group is None or a.group == group)


def _adjudicate(ctx: TxContext, b: Adjudicate) -> None:
    claim = _load(ctx, b.claim_id)
    _as_payer(ctx, claim)
    if claim["frequency"] == codes.VOID:
        raise TxFailed("void_not_adjudicated", "a void is acknowledged, not adjudicated")
    if claim["status"] not in (ACCEPTED, APPEALED):
        raise TxFailed("not_adjudicable",
                       f"the claim is {claim['status']}: only accepted or appealed claims are adjudicated")
    if b.charge != claim["total"]:
        raise TxFailed("charge_mismatch", f"CLP03 {b.charge} is not the claim's total charge {claim['total']}")
    by_n = {ln["n"]: ln for ln in claim["lines"]}
    line_adjs = [a for la in b.lines for a in la.adjustments]
    for la in b.lines:
        ln = by_n.get(la.n)
        if ln is None:
            raise TxFailed("unknown_line", f"the claim has no line {la.n}")
        if la.charge != ln["charge"]:
            raise TxFailed("line_charge_mismatch", f"line {la.n}: SVC02 {la.charge} is not the billed {ln['charge']}")
        if la.charge - la.paid != _adj_sum(la.adjustments):
            raise TxFailed("unbalanced_line", f"line {la.n}: charge - paid must equal the sum of its adjustments")
        if ln["denied"] is not None and la.paid != 0 and claim["status"] != APPEALED:
            raise TxFailed("pays_denied_line", f"line {la.n} was auto-denied ({ln['denied']}); appeal first")
    if b.lines and sum(la.paid for la in b.lines) != b.paid:
        raise TxFailed("unbalanced", "CLP04 must equal the sum of the lines' paid amounts (SVC03)")
    if b.charge - b.paid != _adj_sum(b.adjustments) + _adj_sum(line_adjs):
        raise TxFailed("unbalanced", "CLP03 - CLP04 must equal the sum of all adjustments (CAS)")
    if b.patient_resp != _adj_sum(b.adjustments, "PR") + _adj_sum(line_adjs, "PR"):
        raise TxFailed("patient_responsibility_mismatch", "CLP05 must equal the sum of the PR adjustments")
    if b.clp_status == codes.CLP_DENIED and b.paid != 0:
        raise TxFailed("denied_with_payment", "CLP02 4 (denied) pays nothing")
    if claim["holds"] and b.paid > 0:
        raise TxFailed("held", f"the claim is held ({', '.join(claim['holds'])}): review it (claims.release) first")
    if b.paid < claim["paid_out"]:
        # an appeal's re-adjudication may pay more, never take back: a recoupment is an 835
        # reversal (CLP02 22), which this module does not model (found by the lifecycle
        # model test: a zero re-adjudication after payment left a negative amount due)
        raise TxFailed("below_paid", f"CLP04 {b.paid} is less than the {claim['paid_out']} already paid; "
                       "recoupments (835 reversals) are not supported")
    seq = claim["adjudications"]
    ctx.put(b"a/" + b.claim_id + seq.to_bytes(2, "big"), {
        "source": "payer", "height": ctx.block.height, "time_ms": ctx.block.time_ms, "clp_status": b.clp_status,
        "charge": b.charge, "paid": b.paid, "patient_resp": b.patient_resp,
        "adjustments": [[a.group, a.reason, a.amount] for a in b.adjustments],
        "remarks": list(b.remarks or ()),
        "lines": [{"n": la.n, "charge": la.charge, "paid": la.paid,
                   "adjustments": [[a.group, a.reason, a.amount] for a in la.adjustments],
                   "remarks": list(la.remarks or ())} for la in b.lines],
    })
    claim.update(adjudications=seq + 1, paid=b.paid, patient_resp=b.patient_resp)
    if b.icn is not None and claim["icn"] is None:
        claim["icn"] = b.icn
        ctx.put(b"i/" + b.icn + b.claim_id, True)
    _set_status(ctx, b.claim_id, claim, ADJUDICATED)


# ------------------------------------------------------------------ pay


def _pay(ctx: TxContext, b: Pay) -> None:
    _party(ctx, "payer", "not_payer")
    tkey = b"t/" + ctx.sender + b.trace
    if ctx.get(tkey) is not None:
        raise TxFailed("duplicate_payment", "a payment with this trace number is on chain already")
    claims = []
    for cid in b.claims:
        claim = _load(ctx, cid)
        _as_payer(ctx, claim)
        if claim["provider"] != b.provider:
            raise TxFailed("other_provider", "every claim of a payment is the payee's")
        if claim["status"] != ADJUDICATED:
            raise TxFailed("not_adjudicated", f"claim {cid.hex()[:16]} is {claim['status']}: adjudicate before paying")
        claims.append((cid, claim))
    due = sum(c["paid"] - c["paid_out"] for _, c in claims)
    plb = sum(p.amount for p in b.plb or ())
    if b.total != due - plb:
        raise TxFailed("unbalanced", f"BPR02 {b.total} must equal the claims' payments {due} minus PLB {plb}")
    for cid, claim in claims:
        claim["paid_out"] = claim["paid"]
        _set_status(ctx, cid, claim, PAID if claim["paid"] > 0 else DENIED)
    ctx.put(tkey, {"provider": b.provider, "method": b.method, "total": b.total, "claims": list(b.claims),
                   "plb": [[p.reason, p.amount] for p in b.plb or ()], "height": ctx.block.height})
    ctx.emit("paid", trace=b.trace, total=b.total, claims=list(b.claims), parties=[b.provider, ctx.sender])


# ------------------------------------------------------------------ release, appeal, unit limits


def _release(ctx: TxContext, b: Release) -> None:
    claim = _load(ctx, b.claim_id)
    _as_payer(ctx, claim)
    if b.hold not in claim["holds"]:
        raise TxFailed("no_such_hold", f"the claim is not held for {b.hold}")
    if claim["status"] not in LIVE:
        raise TxFailed("not_live", f"the claim is {claim['status']}")
    claim["holds"] = [h for h in claim["holds"] if h != b.hold]
    claim["updated_height"] = ctx.block.height
    ctx.put(claim_key(b.claim_id), claim)
    ctx.emit("released", claim_id=b.claim_id, hold=b.hold, parties=[claim["provider"], claim["payer"]])


def _appeal(ctx: TxContext, b: Appeal) -> None:
    claim = _load(ctx, b.claim_id)
    if ctx.sender != claim["provider"]:
        raise TxFailed("not_provider", "only the claim's provider appeals it")
    if claim["status"] not in (PAID, DENIED) or claim["frequency"] == codes.VOID:
        raise TxFailed("not_appealable", f"the claim is {claim['status']}: only paid or denied claims are appealed")
    _set_status(ctx, b.claim_id, claim, APPEALED)


def _set_unit_limit(ctx: TxContext, b: SetUnitLimit) -> None:
    if ctx.sender not in governance.authority_powers(ctx.state):
        raise TxFailed("unauthorized", "only an authority sets unit limits")
    key = b"ul/" + b.code.encode()
    if b.max_units == 0:
        ctx.delete(key)
    else:
        ctx.put(key, b.max_units)
    ctx.emit("unit_limit", code=b.code, max_units=b.max_units)


# ------------------------------------------------------------------ queries


def _flag_json(f: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in f.items() if k != "of"}
    if "of" in f:
        out["of"] = {"claim_id": hex_or_none(f["of"][0]), "line": f["of"][1]}
    return out


def claim_json(claim_id: bytes, c: dict[str, Any], *, lines: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "claim_id": hex_or_none(claim_id), "status": c["status"], "provider": hex_or_none(c["provider"]),
        "payer": hex_or_none(c["payer"]), "kind": c["kind"], "frequency": c["frequency"],
        "original": hex_or_none(c["original"]), "sequence": c["sequence"], "billing_npi": c["billing_npi"],
        "rendering_npi": c["rendering_npi"], "pos": c["pos"], "total_cents": c["total"], "month": c["month"],
        "patient": hex_or_none(c["patient"]), "pcn": hex_or_none(c["pcn"]), "commitment": hex_or_none(c["commitment"]),
        "content_hash": hex_or_none(c["content_hash"]), "flags": c["flags"], "holds": c["holds"],
        "ack": c["ack"], "icn": hex_or_none(c["icn"]), "paid_cents": c["paid"], "paid_out_cents": c["paid_out"],
        "patient_resp_cents": c["patient_resp"], "chain_denied": c["chain_denied"],
        "pending_change": hex_or_none(c["pending_change"]), "changed_by": hex_or_none(c["changed_by"]),
        "submitted_height": c["submitted_height"], "submitted_ms": c["submitted_ms"],
        "updated_height": c["updated_height"],
    }
    if lines:
        out["lines"] = [{
            "n": ln["n"], "code": ln["code"], "revenue": ln["revenue"], "modifiers": ln["modifiers"],
            "units_milli": ln["units"], "charge_cents": ln["charge"], "pos": ln["pos"],
            "rendering_npi": ln["rendering_npi"], "month": ln["month"], "days": [hex_or_none(d) for d in ln["days"]],
            "encounter": hex_or_none(ln["encounter"]), "denied": ln["denied"],
            "flags": [_flag_json(f) for f in ln["flags"]],
        } for ln in c["lines"]]
    return out


def _adjudication_json(e: dict[str, Any]) -> dict[str, Any]:
    def adj(a: list[Any]) -> dict[str, Any]:
        return {"group": a[0], "reason": a[1], "amount_cents": a[2]}

    return {
        "source": e["source"], "height": e["height"], "time_ms": e["time_ms"], "clp_status": e["clp_status"],
        "charge_cents": e["charge"], "paid_cents": e["paid"], "patient_resp_cents": e["patient_resp"],
        "adjustments": [adj(a) for a in e["adjustments"]], "remarks": e["remarks"],
        "lines": [{"n": ln["n"], "charge_cents": ln["charge"], "paid_cents": ln["paid"],
                   "adjustments": [adj(a) for a in ln["adjustments"]], "remarks": ln["remarks"]} for ln in e["lines"]],
    }


MAX_OFFSET = 2**63 - 1


@params
class GetParams:
    claim_id: Annotated[bytes, Bytes(32)]


@params
class ListParams:
    provider: Annotated[bytes | None, Bytes(32)] = None
    payer: Annotated[bytes | None, Bytes(32)] = None
    status: Annotated[str | None, Enum(STATUSES)] = None
    limit: Annotated[int, Int(1, 1000)] = 100
    offset: Annotated[int, Int(0, MAX_OFFSET)] = 0

    def check(self) -> None:
        if (self.provider is None) == (self.payer is None):
            raise FieldError("give exactly one of provider or payer")


@params
class RefParams:
    pcn: Annotated[bytes | None, Bytes(32)] = None
    icn: Annotated[bytes | None, Bytes(32)] = None

    def check(self) -> None:
        if (self.pcn is None) == (self.icn is None):
            raise FieldError("give exactly one of pcn or icn")


@params
class DuplicatesParams:
    provider: Annotated[bytes | None, Bytes(32)] = None
    payer: Annotated[bytes | None, Bytes(32)] = None
    limit: Annotated[int, Int(1, 1000)] = 100
    offset: Annotated[int, Int(0, MAX_OFFSET)] = 0

    def check(self) -> None:
        if (self.provider is None) == (self.payer is None):
            raise FieldError("give exactly one of provider or payer")


@params
class EnrollmentParams:
    payer: Annotated[bytes, Bytes(32)]
    provider: Annotated[bytes | None, Bytes(32)] = None
    npi: Annotated[str | None, NPI] = None

    def check(self) -> None:
        if (self.provider is None) == (self.npi is None):
            raise FieldError("give exactly one of provider or npi")


@params
class DocumentParams:
    claim_id: Annotated[bytes, Bytes(32)]
    reader: Annotated[bytes, Bytes(32)]


@params
class PaymentParams:
    payer: Annotated[bytes, Bytes(32)]
    trace: Annotated[bytes, Bytes(32)]


@params
class UnitLimitParams:
    code: Annotated[str, PROCEDURE]


def _ids(state: StateReader, prefix: bytes, offset: int, *, flagged: bool = False) -> Iterator[bytes]:
    """Claim ids of a party's list (``lp/`` or ``ly/`` prefix), newest first, after
    skipping ``offset`` of them; with ``flagged`` only those of flagged claims."""
    entries = (codec.decode_stored(raw) for _, raw in state.iterate(NAMESPACE, prefix))
    if flagged:
        entries = (e for e in entries if e[1])
    for claim_id, _ in itertools.islice(entries, offset, None):
        yield claim_id


def _query_get(state: StateReader, p: GetParams) -> Any:
    """A claim: status, holds, flags per line, acknowledgement, and its adjudication history."""
    c = get_claim(state, p.claim_id)
    if c is None:
        return None
    out = claim_json(p.claim_id, c)
    out["adjudications"] = [_adjudication_json(codec.decode(v))
                            for _, v in state.iterate(NAMESPACE, b"a/" + p.claim_id)]
    return out


def _query_list(state: StateReader, p: ListParams) -> Any:
    """A provider's or a payer's claims (give one), newest first, optionally of one status."""
    prefix = b"lp/" + p.provider if p.provider is not None else b"ly/" + (p.payer or b"")
    out: list[dict[str, Any]] = []
    skipped = 0
    for cid in _ids(state, prefix, 0 if p.status else p.offset):
        c = get_claim(state, cid)
        assert c is not None
        if p.status is not None and c["status"] != p.status:
            continue
        if p.status is not None and skipped < p.offset:
            skipped += 1
            continue
        out.append(claim_json(cid, c, lines=False))
        if len(out) >= p.limit:
            break
    return out


def _query_by_ref(state: StateReader, p: RefParams) -> Any:
    """The claims under a blind patient control number (pcn) or payer claim control number (icn)."""
    prefix = b"r/" + p.pcn if p.pcn is not None else b"i/" + (p.icn or b"")
    out = []
    for k, _ in state.iterate(NAMESPACE, prefix):
        cid = k[len(prefix):]
        c = get_claim(state, cid)
        assert c is not None
        out.append(claim_json(cid, c, lines=False))
    return sorted(out, key=lambda c: (c["submitted_height"], c["claim_id"]))


def _query_duplicates(state: StateReader, p: DuplicatesParams) -> Any:
    """Duplicates report: flagged claims (newest first) with their line flags, and per-pair counts."""
    if p.provider is not None:
        prefix, stats_prefix = b"lp/" + p.provider, None
    else:
        prefix, stats_prefix = b"ly/" + (p.payer or b""), b"st/" + (p.payer or b"")
    claims = []
    for cid in itertools.islice(_ids(state, prefix, p.offset, flagged=True), p.limit):
        c = get_claim(state, cid)
        assert c is not None
        j = claim_json(cid, c)
        j["lines"] = [ln for ln in j["lines"] if ln["flags"]]
        claims.append(j)
    stats = []
    if stats_prefix is not None:
        for k, v in state.iterate(NAMESPACE, stats_prefix):
            stats.append({"payer": hex_or_none(k[3:35]), "provider": hex_or_none(k[35:]), **codec.decode(v)})
    else:
        assert p.provider is not None
        for k, v in state.iterate(NAMESPACE, b"st/"):
            if k[35:] == p.provider:
                stats.append({"payer": hex_or_none(k[3:35]), "provider": hex_or_none(k[35:]), **codec.decode(v)})
    return {"claims": claims, "stats": stats}


def _query_enrollment(state: StateReader, p: EnrollmentParams) -> Any:
    """A provider's enrollment with a payer (by provider, or by one of its billing NPIs):
    billing NPIs and the pair key sealed to each party."""
    provider = p.provider
    if provider is None:
        raw_holder = state.get(NAMESPACE, b"n/" + p.payer + (p.npi or "").encode())
        if raw_holder is None:
            return None
        provider = codec.decode(raw_holder)
    raw = state.get(NAMESPACE, enrollment_key(p.payer, provider))
    if raw is None:
        return None
    e = codec.decode(raw)
    return {"payer": hex_or_none(p.payer), "provider": hex_or_none(provider), "npis": e["npis"],
            "epoch": e["epoch"], "height": e["height"],
            "envelopes": [{"recipient": hex_or_none(r), "sealed_key": hex_or_none(s)} for r, s in e["envelopes"]]}


def _query_document(state: StateReader, p: DocumentParams) -> Any:
    """A claim's encrypted document with the reader's sealed data key (payer and provider only)."""
    c = get_claim(state, p.claim_id)
    if c is None:
        return None
    sealed = next((s for r, s in c["envelopes"] if r == p.reader), None)
    if sealed is None:
        raise QueryError("not permitted: the claim document is sealed to its payer and provider only", "access_denied")
    value = {"claim_id": hex_or_none(p.claim_id), "content_hash": hex_or_none(c["content_hash"]),
             "commitment": hex_or_none(c["commitment"]), "envelope": hex_or_none(sealed)}
    return Attach(value, c["content_hash"], "ciphertext")


def _query_payment(state: StateReader, p: PaymentParams) -> Any:
    """A payment (835 BPR/TRN/PLB) by its payer and blind trace number."""
    raw = state.get(NAMESPACE, b"t/" + p.payer + p.trace)
    if raw is None:
        return None
    t = codec.decode(raw)
    return {"payer": hex_or_none(p.payer), "trace": hex_or_none(p.trace), "provider": hex_or_none(t["provider"]),
            "method": t["method"], "total_cents": t["total"], "claims": [hex_or_none(c) for c in t["claims"]],
            "plb": [{"reason": r, "amount_cents": a} for r, a in t["plb"]], "height": t["height"]}


def _query_unit_limit(state: StateReader, p: UnitLimitParams) -> Any:
    """The medically-unlikely-edit unit limit of a procedure code (units in thousandths), or null."""
    raw = state.get(NAMESPACE, b"ul/" + p.code.encode())
    return {"code": p.code, "max_units_milli": None if raw is None else codec.decode(raw)}


class ClaimsModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "enroll": TxSpec(Enroll, _enroll),
            # stores the block's height and time, never judges by them (a claim's dates are
            # judged against the records, not the clock): tests/claims/test_claims_block_independence.py
            "submit": TxSpec(Submit, _submit, blob=BlobSpec("content_hash", "size", max_size=MAX_DOC_SIZE),
                             verdict_reads_block=False),
            "ack": TxSpec(Ack, _ack),
            "adjudicate": TxSpec(Adjudicate, _adjudicate),
            "pay": TxSpec(Pay, _pay),
            "release": TxSpec(Release, _release),
            "appeal": TxSpec(Appeal, _appeal),
            "set_unit_limit": TxSpec(SetUnitLimit, _set_unit_limit, requires_identity=False),
        }
        self.queries = {
            "get": QuerySpec(_query_get, GetParams, not_found="no such claim"),
            "list": QuerySpec(_query_list, ListParams),
            "by_ref": QuerySpec(_query_by_ref, RefParams),
            "duplicates": QuerySpec(_query_duplicates, DuplicatesParams),
            "enrollment": QuerySpec(_query_enrollment, EnrollmentParams, not_found="the provider is not enrolled"),
            "document": QuerySpec(_query_document, DocumentParams, not_found="no such claim"),
            "payment": QuerySpec(_query_payment, PaymentParams, not_found="no such payment"),
            "unit_limit": QuerySpec(_query_unit_limit, UnitLimitParams),
        }
        self.topics = {
            "claims": TopicSpec("parties", "status changes of the claims of one provider or payer"),
        }

    def host_effects(self, event: dict[str, Any]) -> Sequence[HostEffect]:
        if event.get("type") == "claims.submitted":
            return (WantBlob(event["content_hash"]),)
        return ()

    def live_blobs(self, state: StateReader) -> set[bytes]:
        return {codec.decode_stored(v) for _, v in state.iterate(NAMESPACE, b"r/")}
