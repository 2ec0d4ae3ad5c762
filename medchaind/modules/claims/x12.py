"""X12 5010 837P / 837I / 835 / 277CA: a strict segment reader and the mappings to claims.

pyx12 (the TR3 validator, :func:`medchaind.modules.claims.client.validate_x12`) checks a
file against the implementation guide first: loops, segment order and repeats, element
types and the guide's code values. This module then reads the few loops a claim needs,
strictly: every value it uses is checked again (NPI check digits, ICD-10 and CPT /
HCPCS shapes, amounts with at most two decimals, calendar dates, balancing), because
pyx12 does not check external code lists (it accepts ``BK`` with an ICD-10 code) and a
file may reach this module without it. Errors name the segment (its position in the
interchange and its id) and the element: ``837 segment 24 SV1-02: '2X0' is not an
amount``.

Pure: it works on the file's text and never opens anything; the CLI reads the file.

* :func:`parse_837` -> canonical claims (:mod:`.canonical`), 837P (X222A1) or 837I (X223A2);
* :func:`parse_277ca` -> claim acknowledgements (X214 2200D: TRN*2, STC, REF*1K);
* :func:`parse_835` -> a remittance: payment (BPR, TRN, PLB) and claims (CLP, CAS, SVC, LQ).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import ValidationError
from . import codes
from .canonical import ClaimError, check_claim, norm_id

ISA_LEN = 106
SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{1,2}")
VERSIONS = {"837": ("005010X222A1", "005010X223A2"), "835": ("005010X221A1",), "277": ("005010X214",)}
FUNCTIONAL_IDS = {"837": "HC", "835": "HP", "277": "HN"}
MAX_SEGMENTS = 200_000


class X12Error(ValidationError):
    """A file that is not the X12 it claims to be; the message names segment and element."""


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    elements: tuple[str, ...]  # elements[0] is the segment id's first element (XX01)
    pos: int  # 1-based position in the interchange
    component: str
    kind: str = "X12"

    def el(self, i: int) -> str:
        """Element ``i`` (1-based), '' when absent."""
        return self.elements[i - 1] if 0 < i <= len(self.elements) else ""

    def comp(self, i: int, j: int) -> str:
        parts = self.el(i).split(self.component)
        return parts[j - 1] if 0 < j <= len(parts) else ""

    def comps(self, i: int) -> list[str]:
        return self.el(i).split(self.component)

    def where(self, i: int | None = None, j: int | None = None) -> str:
        at = f"{self.kind} segment {self.pos} ({self.id})"
        if i is None:
            return at
        return f"{at} {self.id}{i:02d}" + (f"-{j}" if j is not None else "")

    def fail(self, msg: str, i: int | None = None, j: int | None = None) -> X12Error:
        return X12Error(f"{self.where(i, j)}: {msg}")

    def need(self, i: int, what: str, j: int | None = None) -> str:
        v = self.el(i) if j is None else self.comp(i, j)
        if not v:
            raise self.fail(f"{what} is required", i, j)
        return v

    def amount(self, i: int, what: str, *, optional: bool = False) -> int:
        v = self.el(i)
        if not v and optional:
            return 0
        try:
            return codes.cents(self.need(i, what))
        except ValueError:
            raise self.fail(f"{v!r} is not an amount with at most 2 decimals ({what})", i) from None

    def date(self, i: int, what: str) -> str:
        v = self.need(i, what)
        try:
            codes.parse_date(v)
        except ValueError as exc:
            raise self.fail(f"{exc} ({what})", i) from None
        return v


@dataclass(frozen=True, slots=True)
class Interchange:
    segments: tuple[Segment, ...]
    element: str
    component: str
    repetition: str
    terminator: str


def tokenize(text: str, kind: str = "X12") -> Interchange:
    """Split an interchange into segments, taking the delimiters from the ISA segment.

    Checks the envelope: ISA/IEA and GS/GE control numbers and counts, and each
    transaction set's SE count and control number.
    """
    text = text.lstrip("\ufeff \r\n\t")
    if not text.startswith("ISA"):
        raise X12Error(f"{kind}: the file does not start with an ISA segment")
    if len(text) < ISA_LEN:
        raise X12Error(f"{kind}: the ISA segment is shorter than {ISA_LEN} characters")
    element, repetition, component, terminator = text[3], text[82], text[104], text[105]
    if len({element, component, terminator}) != 3 or any(c.isalnum() or c == " " for c in (element, terminator)):
        raise X12Error(f"{kind}: ISA delimiters are not distinct separators")
    raw = [s.strip("\r\n ") for s in text.split(terminator)]
    if raw and raw[-1] == "":
        raw.pop()
    if len(raw) > MAX_SEGMENTS:
        raise X12Error(f"{kind}: more than {MAX_SEGMENTS} segments")
    segs = []
    for pos, s in enumerate(raw, 1):
        if not s:
            raise X12Error(f"{kind} segment {pos}: empty segment")
        if any(ord(ch) < 0x20 for ch in s):
            raise X12Error(f"{kind} segment {pos}: control characters inside a segment")
        parts = s.split(element)
        if SEGMENT_ID.fullmatch(parts[0]) is None:
            raise X12Error(f"{kind} segment {pos}: {parts[0][:10]!r} is not a segment id")
        segs.append(Segment(parts[0], tuple(parts[1:]), pos, component, kind))
    ic = Interchange(tuple(segs), element, component, repetition, terminator)
    _check_envelope(ic, kind)
    return ic


def _check_envelope(ic: Interchange, kind: str) -> None:
    segs = ic.segments
    if segs[0].id != "ISA" or segs[-1].id != "IEA":
        raise X12Error(f"{kind}: an interchange runs from ISA to IEA")
    isa, iea = segs[0], segs[-1]
    if len(isa.elements) != 16:
        raise isa.fail("ISA has 16 elements")
    if iea.el(2) != isa.el(13):
        raise iea.fail(f"IEA02 {iea.el(2)!r} does not match ISA13 {isa.el(13)!r}", 2)
    groups = 0
    i = 1
    while i < len(segs) - 1:
        gs = segs[i]
        if gs.id != "GS":
            raise gs.fail("expected GS (a functional group) here")
        groups += 1
        sets = 0
        i += 1
        while i < len(segs) and segs[i].id == "ST":
            st, start = segs[i], i
            while i < len(segs) and segs[i].id != "SE":
                if segs[i].id in ("GE", "IEA", "GS") or (segs[i].id == "ST" and i != start):
                    raise segs[i].fail(f"transaction set {st.el(2)!r} has no SE trailer")
                i += 1
            if i >= len(segs):
                raise st.fail("transaction set has no SE trailer")
            se = segs[i]
            if se.el(2) != st.el(2):
                raise se.fail(f"SE02 {se.el(2)!r} does not match ST02 {st.el(2)!r}", 2)
            if se.el(1) != str(i - start + 1):
                raise se.fail(f"SE01 says {se.el(1)!r} segments, the set has {i - start + 1}", 1)
            sets += 1
            i += 1
        ge = segs[i] if i < len(segs) else iea
        if ge.id != "GE":
            raise ge.fail("expected GE (end of the functional group) here")
        if ge.el(2) != gs.el(6):
            raise ge.fail(f"GE02 {ge.el(2)!r} does not match GS06 {gs.el(6)!r}", 2)
        if ge.el(1) != str(sets):
            raise ge.fail(f"GE01 says {ge.el(1)!r} transaction sets, the group has {sets}", 1)
        i += 1
    if iea.el(1) != str(groups):
        raise iea.fail(f"IEA01 says {iea.el(1)!r} functional groups, the interchange has {groups}", 1)


def transactions(text: str, st01: str) -> Iterator[list[Segment]]:
    """The transaction sets (ST..SE, both included) of an interchange of ``st01`` sets."""
    kind = st01 if st01 != "277" else "277CA"
    ic = tokenize(text, kind)
    version = ""
    found = False
    cur: list[Segment] | None = None
    for seg in ic.segments:
        if seg.id == "GS":
            if seg.el(1) != FUNCTIONAL_IDS[st01]:
                raise seg.fail(f"functional identifier {seg.el(1)!r}: this is not a {kind} group "
                               f"(expected {FUNCTIONAL_IDS[st01]})", 1)
            version = seg.el(8)
            if version not in VERSIONS[st01]:
                raise seg.fail(f"version {version!r} is not supported (expected {' or '.join(VERSIONS[st01])})", 8)
        elif seg.id == "ST":
            if seg.el(1) != st01:
                raise seg.fail(f"transaction set {seg.el(1)!r} is not a {st01}", 1)
            cur = [seg]
        elif seg.id == "SE":
            assert cur is not None
            cur.append(seg)
            found = True
            yield cur
            cur = None
        elif cur is not None:
            cur.append(seg)
    if not found:
        raise X12Error(f"{kind}: no transaction set")


def _npi(seg: Segment, i: int, what: str) -> str:
    v = seg.need(i, what)
    if not codes.is_npi(v):
        raise seg.fail(f"{v!r} is not a valid NPI (10 digits, Luhn check digit over 80840 + NPI) ({what})", i)
    return v


def _dates(seg: Segment, what: str) -> tuple[str, str]:
    """DTP/DTM ``D8`` or ``RD8`` -> (from, to)."""
    qual, value = seg.el(2), seg.need(3, what)
    if qual == "D8":
        dates = [value]
    elif qual == "RD8":
        dates = value.split("-")
        if len(dates) != 2:
            raise seg.fail(f"{value!r} is not a date range CCYYMMDD-CCYYMMDD ({what})", 3)
    else:
        raise seg.fail(f"date format {qual!r} (expected D8 or RD8)", 2)
    for d in dates:
        try:
            codes.parse_date(d)
        except ValueError as exc:
            raise seg.fail(f"{exc} ({what})", 3) from None
    return dates[0], dates[-1]


# ------------------------------------------------------------------ 837


def parse_837(text: str) -> list[dict[str, Any]]:
    """Every claim of an 837P or 837I interchange, as canonical claims (in file order)."""
    out: list[dict[str, Any]] = []
    for ts in transactions(text, "837"):
        kind = "institutional" if ts[0].el(3).startswith("005010X223") else "professional"
        out.extend(_Reader837(kind).read(ts))
    return out


class _Reader837:
    """Walks one 837 transaction set, loop by loop (HL hierarchy, 2300 claims, 2400 lines)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.billing: str | None = None
        self.sub: dict[str, Any] = {}
        self.patient: dict[str, Any] | None = None
        self.claims: list[dict[str, Any]] = []
        self.claim: dict[str, Any] | None = None
        self.clm: Segment | None = None
        self.line: dict[str, Any] | None = None
        self.context = ""  # the NM1 loop a DMG belongs to

    def read(self, ts: list[Segment]) -> list[dict[str, Any]]:
        for seg in ts[1:-1]:
            handler = getattr(self, "_" + seg.id, None)
            if handler is not None:
                handler(seg)
        self._close_claim()
        return self.claims

    # hierarchy
    def _HL(self, seg: Segment) -> None:  # noqa: N802
        self._close_claim()
        level = seg.need(3, "hierarchical level code")
        if level == "20":
            self.billing, self.sub, self.patient = None, {}, None
        elif level == "22":
            self.sub, self.patient = {}, None
        elif level == "23":
            if not self.sub:
                raise seg.fail("a patient level (23) needs a subscriber level (22) above it", 3)
            self.patient = {}
        else:
            raise seg.fail(f"hierarchical level {level!r} (expected 20, 22 or 23)", 3)
        self.context = level

    def _SBR(self, seg: Segment) -> None:  # noqa: N802
        seq = seg.need(1, "payer responsibility sequence")
        if seq not in codes.SEQUENCES:
            raise seg.fail(f"payer responsibility sequence {seq!r}", 1)
        self.sub["sequence"] = seq

    def _NM1(self, seg: Segment) -> None:  # noqa: N802
        who = seg.need(1, "entity identifier")
        self.context = who
        if who == "85":
            if seg.el(8) != "XX":
                raise seg.fail("the billing provider is identified by its NPI (NM108 XX)", 8)
            self.billing = _npi(seg, 9, "billing provider NPI")
        elif who == "IL":
            if seg.el(8) != "MI":
                raise seg.fail("the subscriber is identified by a member id (NM108 MI)", 8)
            self.sub.update(member_id=norm_id(seg.need(9, "member id")), last=seg.need(3, "subscriber last name"),
                            first=seg.el(4) or None)
        elif who == "QC":
            if self.patient is None:
                raise seg.fail("a patient name (QC) belongs in the patient level (HL 23)", 1)
            self.patient.update(last=seg.need(3, "patient last name"), first=seg.el(4) or None)
        elif who == "PR" and self.claim is None:
            self.sub["payer_id"] = norm_id(seg.need(9, "payer identifier"))
        elif who in ("82", "71"):  # rendering (837P 2310B / 2420A), attending (837I 2310A)
            npi = _npi(seg, 9, "rendering provider NPI") if seg.el(8) == "XX" else None
            if npi is None:
                raise seg.fail("the rendering / attending provider is identified by an NPI (NM108 XX)", 8)
            if self.line is not None:
                self.line["rendering_npi"] = npi
            elif self.claim is not None:
                self.claim["rendering_npi"] = npi

    def _DMG(self, seg: Segment) -> None:  # noqa: N802
        if seg.el(1) != "D8":
            raise seg.fail("birth date format must be D8", 1)
        dob = seg.date(2, "birth date")
        sex = seg.el(3) or "U"
        if sex not in ("F", "M", "U"):
            raise seg.fail(f"gender {sex!r} (expected F, M or U)", 3)
        target = self.patient if self.context == "QC" and self.patient is not None else self.sub
        target.update(birth_date=dob, sex=sex)

    # claim
    def _CLM(self, seg: Segment) -> None:  # noqa: N802
        self._close_claim()
        if self.billing is None:
            raise seg.fail("claim before the billing provider (loop 2010AA NM1*85)")
        for field in ("member_id", "birth_date", "payer_id"):
            if field not in self.sub:
                what = {"member_id": "NM1*IL", "birth_date": "DMG", "payer_id": "NM1*PR"}[field]
                raise seg.fail(f"claim without its subscriber's {what} (loop 2010BA / 2010BB)")
        if self.patient is not None and "birth_date" not in self.patient:
            raise seg.fail("the patient level (2010CA) needs a DMG birth date")
        facility = seg.need(5, "facility code", 1)
        qualifier = seg.comp(5, 2)
        expected = "A" if self.kind == "institutional" else "B"
        if qualifier != expected:
            raise seg.fail(f"facility code qualifier {qualifier!r} (expected {expected})", 5, 2)
        freq = seg.need(5, "claim frequency", 3)
        if freq not in ("1", "7", "8"):
            raise seg.fail(f"claim frequency {freq!r} is not supported (1 original, 7 replacement, 8 void)", 5, 3)
        who = self.patient if self.patient is not None else self.sub
        self.clm = seg
        self.claim = {
            "v": 1, "kind": self.kind, "payer_id": self.sub["payer_id"], "billing_npi": self.billing,
            "rendering_npi": None, "member_id": self.sub["member_id"],
            "patient": {"last": who["last"], "first": who.get("first"), "birth_date": who["birth_date"],
                        "sex": who.get("sex", "U")},
            "pcn": seg.need(1, "patient control number"), "total_cents": seg.amount(2, "total claim charge"),
            "facility": facility, "frequency": int(freq), "original_icn": None,
            "sequence": self.sub.get("sequence", "P"), "diagnoses": [], "lines": [],
        }
        self.claim_dates: tuple[str, str] | None = None

    def _REF(self, seg: Segment) -> None:  # noqa: N802
        if self.claim is not None and self.line is None and seg.el(1) == "F8":
            self.claim["original_icn"] = seg.need(2, "payer claim control number")

    def _HI(self, seg: Segment) -> None:  # noqa: N802
        if self.claim is None:
            return
        for i in range(1, len(seg.elements) + 1):
            qual, code = seg.comp(i, 1), seg.comp(i, 2)
            if qual in ("BK", "BF", "BJ", "BN"):
                raise seg.fail(f"ICD-9 qualifier {qual!r}: use ABK / ABF (ICD-10-CM) for dates of service "
                               "after 2015-10-01", i, 1)
            if qual in ("ABK", "ABF"):
                if codes.ICD10_RE.fullmatch(code) is None:
                    raise seg.fail(f"{code!r} is not an ICD-10-CM code", i, 2)
                if qual == "ABK" and self.claim["diagnoses"]:
                    raise seg.fail("the principal diagnosis (ABK) comes first", i, 1)
                self.claim["diagnoses"].append(code)

    def _DTP(self, seg: Segment) -> None:  # noqa: N802
        if seg.el(1) == "472" and self.line is not None:
            self.line["from"], self.line["to"] = _dates(seg, "date of service")
        elif seg.el(1) == "434" and self.claim is not None and self.line is None:
            self.claim_dates = _dates(seg, "statement dates")

    # lines
    def _LX(self, seg: Segment) -> None:  # noqa: N802
        if self.claim is None:
            raise seg.fail("service line outside a claim")
        self._close_line()
        try:
            n = int(seg.need(1, "line number"))
        except ValueError:
            raise seg.fail(f"{seg.el(1)!r} is not a line number", 1) from None
        if not 1 <= n <= 999:
            raise seg.fail("line number must be 1..999", 1)
        self.line = {"n": n, "code": None, "revenue": None, "modifiers": [], "units_milli": None,
                     "charge_cents": None, "from": None, "to": None, "pos": None, "rendering_npi": None, "_seg": seg}

    def _procedure(self, seg: Segment, i: int) -> None:
        assert self.line is not None
        qual = seg.need(i, "product/service id qualifier", 1)
        if qual != "HC":
            raise seg.fail(f"procedure code qualifier {qual!r}: only HC (CPT / HCPCS) is supported", i, 1)
        code = seg.need(i, "procedure code", 2)
        if codes.PROCEDURE_RE.fullmatch(code) is None:
            raise seg.fail(f"{code!r} is not a CPT / HCPCS code", i, 2)
        mods = [m for m in seg.comps(i)[2:6] if m]
        for j, m in enumerate(mods, 3):
            if codes.MODIFIER_RE.fullmatch(m) is None:
                raise seg.fail(f"{m!r} is not a procedure modifier", i, j)
        if len(set(mods)) != len(mods):
            raise seg.fail("a modifier repeats", i)
        self.line.update(code=code, modifiers=sorted(mods))

    def _units(self, seg: Segment, unit_i: int, qty_i: int) -> None:
        assert self.line is not None
        unit = seg.need(unit_i, "unit of measure")
        if unit != "UN":
            raise seg.fail(f"unit of measure {unit!r}: only UN (units) is supported", unit_i)
        try:
            self.line["units_milli"] = codes.units_milli(seg.need(qty_i, "service unit count"))
        except ValueError as exc:
            raise seg.fail(str(exc), qty_i) from None
        if self.line["units_milli"] == 0:
            raise seg.fail("zero units", qty_i)

    def _SV1(self, seg: Segment) -> None:  # noqa: N802
        if self.line is None or self.kind != "professional":
            raise seg.fail("SV1 belongs in a professional (837P) service line")
        self._procedure(seg, 1)
        self.line["charge_cents"] = seg.amount(2, "line item charge")
        self._units(seg, 3, 4)
        pos = seg.el(5)
        if pos:
            if codes.POS_RE.fullmatch(pos) is None:
                raise seg.fail(f"{pos!r} is not a place of service code", 5)
            self.line["pos"] = pos

    def _SV2(self, seg: Segment) -> None:  # noqa: N802
        if self.line is None or self.kind != "institutional":
            raise seg.fail("SV2 belongs in an institutional (837I) service line")
        rev = seg.need(1, "revenue code")
        if codes.REVENUE_RE.fullmatch(rev) is None:
            raise seg.fail(f"{rev!r} is not a 4-digit revenue code", 1)
        self.line["revenue"] = rev
        if not seg.el(2):
            raise seg.fail("a HCPCS procedure code is required (revenue-only lines are not supported)", 2)
        self._procedure(seg, 2)
        self.line["charge_cents"] = seg.amount(3, "line item charge")
        self._units(seg, 4, 5)

    def _close_line(self) -> None:
        if self.line is None:
            return
        ln, self.line = self.line, None
        seg = ln.pop("_seg")
        if ln["code"] is None:
            raise seg.fail(f"service line {ln['n']} has no SV1 / SV2")
        if ln["from"] is None:
            if self.claim_dates is None:
                raise seg.fail(f"service line {ln['n']} has no date of service (DTP*472)")
            ln["from"], ln["to"] = self.claim_dates
        assert self.claim is not None
        self.claim["lines"].append(ln)

    def _close_claim(self) -> None:
        self._close_line()
        if self.claim is None:
            return
        c, self.claim = self.claim, None
        clm = self.clm
        assert clm is not None
        if not c["lines"]:
            raise clm.fail(f"claim {c['pcn']!r} has no service lines (loop 2400)")
        if not c["diagnoses"]:
            raise clm.fail(f"claim {c['pcn']!r} has no ICD-10 diagnosis (HI*ABK)")
        total = sum(ln["charge_cents"] for ln in c["lines"])
        if total != c["total_cents"]:
            raise clm.fail(f"total charge {codes.format_cents(c['total_cents'])} is not the sum of the lines "
                           f"({codes.format_cents(total)})", 2)
        try:
            check_claim(c)
        except ClaimError as exc:
            raise clm.fail(f"claim {c['pcn']!r}: {exc}") from None
        self.claims.append(c)


# ------------------------------------------------------------------ 277CA


def parse_277ca(text: str) -> list[dict[str, Any]]:
    """The claim-level acknowledgements (loop 2200D) of a 277CA, in file order.

    Each: ``pcn`` (TRN02 = CLM01), ``category`` / ``status_code`` / ``entity`` (STC01; the
    first STC of the claim decides), ``accepted``, ``icn`` (REF*1K or None),
    ``charge_cents`` (STC04) and the claim's dates (DTP*472).
    """
    out: list[dict[str, Any]] = []
    for ts in transactions(text, "277"):
        level = ""
        cur: dict[str, Any] | None = None
        for seg in ts[1:-1]:
            if seg.id == "HL":
                if cur is not None:
                    out.append(_close_ack(cur))
                    cur = None
                level = seg.need(3, "hierarchical level code")
            elif level == "PT" and seg.id == "TRN" and seg.el(1) == "2":
                if cur is not None:
                    out.append(_close_ack(cur))
                cur = {"pcn": seg.need(2, "claim status tracking number (CLM01)"), "category": None,
                       "status_code": None, "entity": None, "icn": None, "charge_cents": None, "_seg": seg}
            elif cur is not None and seg.id == "STC" and cur["category"] is None:
                category = seg.need(1, "health care claim status category", 1)
                if not re.fullmatch(r"A[0-8]|[DEFPR][0-9]?", category):
                    raise seg.fail(f"{category!r} is not a claim status category code", 1, 1)
                status = seg.need(1, "health care claim status code", 2)
                if codes.STATUS_CODE_RE.fullmatch(status) is None:
                    raise seg.fail(f"{status!r} is not a claim status code", 1, 2)
                cur.update(category=category, status_code=status, entity=seg.comp(1, 3) or None,
                           charge_cents=seg.amount(4, "total claim charge", optional=True))
            elif cur is not None and seg.id == "REF" and seg.el(1) == "1K":
                cur["icn"] = seg.need(2, "payer claim control number")
            elif cur is not None and seg.id == "DTP" and seg.el(1) == "472":
                cur["from"], cur["to"] = _dates(seg, "claim service date")
        if cur is not None:
            out.append(_close_ack(cur))
    return out


def _close_ack(cur: dict[str, Any]) -> dict[str, Any]:
    seg = cur.pop("_seg")
    if cur["category"] is None:
        raise seg.fail(f"claim {cur['pcn']!r} has no STC status")
    cur["accepted"] = cur["category"] in codes.ACK_ACCEPTED
    if cur["category"] not in codes.ACK_CATEGORIES:
        raise seg.fail(f"claim {cur['pcn']!r}: status category {cur['category']!r} is not an acknowledgement "
                       f"this chain acts on ({', '.join(codes.ACK_CATEGORIES)})")
    return cur


# ------------------------------------------------------------------ 835


def parse_835(text: str) -> list[dict[str, Any]]:
    """Each 835 transaction set: the payment and the claims it adjudicates.

    ``{"handling", "total_cents", "method", "trace", "payer_name", "payee_npi", "claims": [...], "plb": [...]}``;
    each claim ``{"pcn", "status", "charge_cents", "paid_cents", "patient_resp_cents", "icn", "frequency",
    "member_id", "adjustments", "remarks", "lines"}``; each line ``{"code", "modifiers", "charge_cents",
    "paid_cents", "units_milli", "control", "adjustments", "remarks"}``; an adjustment
    ``{"group", "reason", "amount_cents"}``. Balancing is checked here (each SVC, each CLP,
    and BPR02 against the CLPs and PLBs) and again by the chain.
    """
    out = []
    for ts in transactions(text, "835"):
        out.append(_read_835(ts))
    return out


def _cas(seg: Segment) -> list[dict[str, Any]]:
    group = seg.need(1, "claim adjustment group code")
    if group not in codes.CAS_GROUPS:
        raise seg.fail(f"adjustment group {group!r} (5010: CO, OA, PI or PR)", 1)
    adjs = []
    for k in range(6):  # up to six reason / amount / quantity triples
        reason_i = 2 + 3 * k
        if not seg.el(reason_i):
            if k == 0:
                raise seg.fail("adjustment reason code is required", 2)
            break
        reason = seg.el(reason_i)
        if codes.CARC_RE.fullmatch(reason) is None:
            raise seg.fail(f"{reason!r} is not a claim adjustment reason code (CARC)", reason_i)
        adjs.append({"group": group, "reason": reason, "amount_cents": seg.amount(reason_i + 1, "adjustment amount")})
    return adjs


def _read_835(ts: list[Segment]) -> dict[str, Any]:
    pay: dict[str, Any] = {"handling": None, "total_cents": None, "method": None, "trace": None, "payer_name": None,
                           "payee_npi": None, "claims": [], "plb": []}
    claim: dict[str, Any] | None = None
    line: dict[str, Any] | None = None
    n1 = ""
    bpr = trn = None
    for seg in ts[1:-1]:
        if seg.id == "BPR":
            bpr = seg
            pay.update(handling=seg.need(1, "transaction handling code"),
                       total_cents=seg.amount(2, "total actual provider payment"),
                       method=seg.need(4, "payment method code"))
            if seg.el(3) != "C" and pay["total_cents"]:
                raise seg.fail("only credit payments (BPR03 C) are supported", 3)
        elif seg.id == "TRN":
            trn = seg
            pay["trace"] = seg.need(2, "check or EFT trace number")
        elif seg.id == "N1":
            n1 = seg.need(1, "entity identifier")
            if n1 == "PR":
                pay["payer_name"] = seg.el(2)
            elif n1 == "PE":
                if seg.el(3) != "XX":
                    raise seg.fail("the payee is identified by its NPI (N103 XX)", 3)
                pay["payee_npi"] = _npi(seg, 4, "payee NPI")
        elif seg.id == "CLP":
            line = None
            status = seg.need(2, "claim status code")
            if not status.isdigit() or int(status) not in codes.CLP_STATUSES:
                raise seg.fail(f"claim status {status!r} is not supported (1, 2, 3, 4, 19, 20, 21, 23)", 2)
            freq = seg.el(9) or "1"
            claim = {"pcn": seg.need(1, "patient control number"), "status": int(status),
                     "charge_cents": seg.amount(3, "total claim charge"), "paid_cents": seg.amount(4, "claim payment"),
                     "patient_resp_cents": seg.amount(5, "patient responsibility", optional=True),
                     "icn": seg.el(7) or None, "frequency": int(freq) if freq.isdigit() else None,
                     "member_id": None, "adjustments": [], "remarks": [], "lines": [], "_seg": seg}
            pay["claims"].append(claim)
        elif seg.id == "CAS":
            if line is not None:
                line["adjustments"].extend(_cas(seg))
            elif claim is not None:
                claim["adjustments"].extend(_cas(seg))
            else:
                raise seg.fail("adjustment outside a claim")
        elif seg.id == "NM1" and claim is not None and seg.el(1) in ("QC", "IL") and seg.el(8) in ("MI", "II"):
            claim["member_id"] = claim["member_id"] or norm_id(seg.el(9))
        elif seg.id == "SVC":
            if claim is None:
                raise seg.fail("service line outside a claim")
            qual = seg.need(1, "product/service id qualifier", 1)
            if qual != "HC":
                raise seg.fail(f"procedure code qualifier {qual!r}: only HC is supported", 1, 1)
            code = seg.need(1, "procedure code", 2)
            if codes.PROCEDURE_RE.fullmatch(code) is None:
                raise seg.fail(f"{code!r} is not a CPT / HCPCS code", 1, 2)
            units = seg.el(5) or "1"
            try:
                units_milli = codes.units_milli(units)
            except ValueError as exc:
                raise seg.fail(str(exc), 5) from None
            line = {"code": code, "modifiers": sorted(m for m in seg.comps(1)[2:6] if m),
                    "charge_cents": seg.amount(2, "line charge"), "paid_cents": seg.amount(3, "line payment"),
                    "units_milli": units_milli, "control": None, "adjustments": [], "remarks": [], "_seg": seg}
            claim["lines"].append(line)
        elif seg.id == "REF" and seg.el(1) == "6R" and line is not None:
            line["control"] = seg.need(2, "line item control number")
        elif seg.id == "LQ" and seg.el(1) == "HE":
            rarc = seg.need(2, "remark code")
            if codes.RARC_RE.fullmatch(rarc) is None:
                raise seg.fail(f"{rarc!r} is not a remittance advice remark code (RARC)", 2)
            if line is None:
                raise seg.fail("LQ (service line remark) outside a service line")
            line["remarks"].append(rarc)
        elif seg.id in ("MOA", "MIA") and claim is not None:
            first = 3 if seg.id == "MOA" else 5
            for i in range(first, len(seg.elements) + 1):
                v = seg.el(i)
                if v and codes.RARC_RE.fullmatch(v):
                    claim["remarks"].append(v)
        elif seg.id == "PLB":
            line = None
            claim = None
            for k in range(6):
                ri = 3 + 2 * k
                if not seg.el(ri):
                    if k == 0:
                        raise seg.fail("provider adjustment reason is required", 3)
                    break
                reason = seg.comp(ri, 1)
                if codes.PLB_REASON_RE.fullmatch(reason) is None:
                    raise seg.fail(f"{reason!r} is not a provider adjustment reason code", ri, 1)
                pay["plb"].append({"reason": reason, "reference": seg.comp(ri, 2) or None,
                                   "amount_cents": seg.amount(ri + 1, "provider adjustment amount")})
    if bpr is None or trn is None:
        raise X12Error(f"835 segment {ts[0].pos}: a remittance needs BPR and TRN")
    if not pay["claims"]:
        raise bpr.fail("a remittance without claims (loop 2100 CLP)")
    for c in pay["claims"]:
        _balance_claim(c)
    due = sum(c["paid_cents"] for c in pay["claims"]) - sum(p["amount_cents"] for p in pay["plb"])
    if due != pay["total_cents"]:
        raise bpr.fail(f"BPR02 {codes.format_cents(pay['total_cents'])} is not the sum of the claim payments "
                       f"minus the provider adjustments ({codes.format_cents(due)})", 2)
    return pay


def _balance_claim(c: dict[str, Any]) -> None:
    seg = c.pop("_seg")
    for ln in c["lines"]:
        lseg = ln.pop("_seg")
        if ln["charge_cents"] - ln["paid_cents"] != sum(a["amount_cents"] for a in ln["adjustments"]):
            raise lseg.fail("the line does not balance: charge - payment must equal the sum of its CAS amounts")
    adjs = c["adjustments"] + [a for ln in c["lines"] for a in ln["adjustments"]]
    if c["lines"] and sum(ln["paid_cents"] for ln in c["lines"]) != c["paid_cents"]:
        raise seg.fail("CLP04 is not the sum of the service line payments (SVC03)", 4)
    if c["charge_cents"] - c["paid_cents"] != sum(a["amount_cents"] for a in adjs):
        raise seg.fail("the claim does not balance: CLP03 - CLP04 must equal the sum of the CAS amounts", 3)
    pr = sum(a["amount_cents"] for a in adjs if a["group"] == "PR")
    if c["patient_resp_cents"] != pr:
        raise seg.fail(f"CLP05 {codes.format_cents(c['patient_resp_cents'])} is not the sum of the PR adjustments "
                       f"({codes.format_cents(pr)})", 5)
