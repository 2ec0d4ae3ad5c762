"""The canonical claim, its commitment and the blind values a claim puts on chain.

Both input forms of a claim -- an X12 837P/837I claim (:mod:`.x12`) and a FHIR Claim
(:mod:`.fhir_claim`) -- are turned into one **canonical claim**: a plain dict of
normalised values (upper-case identifiers, ``CCYYMMDD`` dates, integer cents and unit
thousandths, sorted modifiers), checked by :func:`check_claim`. Its canonical CBOR
encoding is what the commitment covers, so the X12 and FHIR forms of one claim commit
to the same bytes (``tests/claims/test_claims_canonical.py``).

Blind values (:func:`blind`) are HMAC-SHA-256 under the payer-provider **pair key**
(random, 32 bytes, chosen by the payer at enrollment and sealed to both parties on
chain), over a domain tag and the canonical CBOR of the parts. Only the pair can compute
or test them; a node operator sees 32 random-looking bytes. Recomputing them is how the
payer checks what a provider put on chain (:func:`verify_submission`).

=============  ==========================================  =====================
value          input                                        on chain as
=============  ==========================================  =====================
patient token  member id, birth date, service month         ``submit.patient``
day key        member id, birth date, one date of service   ``line.days[]``
pcn            patient control number (CLM01)               ``submit.pcn``
icn            payer claim control number (REF*1K, CLP07)   ``ack.icn``
trace          payment trace number (TRN02)                 ``pay.trace``
commitment     the canonical claim (CBOR)                   ``submit.claim``
=============  ==========================================  =====================

Pure (no I/O, no clock); shared by the client helpers and the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ... import codec
from ...errors import ValidationError
from . import codes

VERSION = 1
PAIR_KEY_SIZE = 32
KINDS = ("professional", "institutional")
MAX_ID = 80


class ClaimError(ValidationError):
    """A claim that cannot be canonicalised; the message names the field."""


# ------------------------------------------------------------------ blind values


def blind(pair_key: bytes, label: str, *parts: Any) -> bytes:
    """HMAC-SHA-256(pair_key, CBOR([``medchain/claims/<label>/v1``, *parts]))."""
    if len(pair_key) != PAIR_KEY_SIZE:
        raise ValueError("a pair key is 32 bytes")
    return hmac.new(pair_key, codec.encode([f"medchain/claims/{label}/v1", *parts]), hashlib.sha256).digest()


def norm_id(value: str) -> str:
    """An identifier as X12 carries it: upper case, no surrounding or inner blanks."""
    return "".join(value.split()).upper()


def patient_token(pair_key: bytes, member_id: str, birth_date: str, month: int) -> bytes:
    return blind(pair_key, "patient", norm_id(member_id), birth_date, month)


def day_key(pair_key: bytes, member_id: str, birth_date: str, date: str) -> bytes:
    return blind(pair_key, "dos", norm_id(member_id), birth_date, date)


def pcn_key(pair_key: bytes, pcn: str) -> bytes:
    return blind(pair_key, "pcn", norm_id(pcn))


def icn_key(pair_key: bytes, icn: str) -> bytes:
    return blind(pair_key, "icn", norm_id(icn))


def trace_key(pair_key: bytes, trace: str) -> bytes:
    return blind(pair_key, "trace", norm_id(trace))


def commitment(pair_key: bytes, claim: Mapping[str, Any]) -> bytes:
    return blind(pair_key, "claim", canonical_bytes(claim))


# ------------------------------------------------------------------ the canonical claim


def canonical_bytes(claim: Mapping[str, Any]) -> bytes:
    return codec.encode(dict(claim))


def document_bytes(claim: Mapping[str, Any]) -> bytes:
    """The plaintext of the encrypted claim document: the canonical claim as sorted JSON."""
    return json.dumps(claim, sort_keys=True, separators=(",", ":")).encode()


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ClaimError(msg)


def _text(v: Any, name: str, *, max_len: int = MAX_ID, optional: bool = False) -> None:
    if optional and v is None:
        return
    _need(isinstance(v, str) and 1 <= len(v) <= max_len and v.isprintable() and v == v.strip(),
          f"{name} must be text of 1..{max_len} printable characters")


def _date(v: Any, name: str) -> None:
    try:
        codes.parse_date(v if isinstance(v, str) else "")
    except ValueError:
        raise ClaimError(f"{name} must be a calendar date CCYYMMDD, not {v!r}") from None


def check_claim(c: Mapping[str, Any]) -> None:
    """Raise :class:`ClaimError` unless ``c`` is a well-formed canonical claim."""
    keys = {"v", "kind", "payer_id", "billing_npi", "rendering_npi", "member_id", "patient", "pcn", "total_cents",
            "facility", "frequency", "original_icn", "sequence", "diagnoses", "lines"}
    _need(isinstance(c, Mapping) and set(c) == keys, f"a canonical claim has exactly the fields {sorted(keys)}")
    _need(c["v"] == VERSION, f"v must be {VERSION}")
    _need(c["kind"] in KINDS, f"kind must be one of {KINDS}")
    _text(c["payer_id"], "payer_id")
    _need(codes.is_npi(c["billing_npi"]), f"billing_npi {c['billing_npi']!r} is not a valid NPI (check digit)")
    _need(c["rendering_npi"] is None or codes.is_npi(c["rendering_npi"]),
          f"rendering_npi {c['rendering_npi']!r} is not a valid NPI (check digit)")
    _text(c["member_id"], "member_id")
    p = c["patient"]
    _need(isinstance(p, Mapping) and set(p) == {"last", "first", "birth_date", "sex"},
          "patient has exactly last, first, birth_date, sex")
    _text(p["last"], "patient.last", max_len=60)
    _text(p["first"], "patient.first", max_len=35, optional=True)
    _date(p["birth_date"], "patient.birth_date")
    _need(p["sex"] in ("F", "M", "U"), "patient.sex must be F, M or U")
    _text(c["pcn"], "pcn", max_len=38)
    _need(c["frequency"] in codes.FREQUENCIES, "frequency must be 1, 7 or 8")
    _need((c["frequency"] == codes.ORIGINAL) == (c["original_icn"] is None),
          "original_icn (REF*F8) is required for frequency 7 and 8, and only then")
    _text(c["original_icn"], "original_icn", max_len=50, optional=True)
    _need(c["sequence"] in codes.SEQUENCES, f"sequence must be one of {codes.SEQUENCES}")
    _need(isinstance(c["facility"], str) and codes.POS_RE.fullmatch(c["facility"]) is not None,
          "facility must be a 2-digit place of service / facility type code")
    dx = c["diagnoses"]
    _need(isinstance(dx, list) and 1 <= len(dx) <= 25, "diagnoses must list 1..25 ICD-10-CM codes")
    for i, d in enumerate(dx):
        _need(isinstance(d, str) and codes.ICD10_RE.fullmatch(d) is not None,
              f"diagnoses[{i}] {d!r} is not an ICD-10-CM code (no dot)")
    lines = c["lines"]
    _need(isinstance(lines, list) and 1 <= len(lines) <= 50, "a claim has 1..50 lines")
    for ln in lines:
        _check_line(ln, c["kind"])
    _need(len({ln["n"] for ln in lines}) == len(lines), "line numbers must be unique")
    _need(type(c["total_cents"]) is int and c["total_cents"] == sum(ln["charge_cents"] for ln in lines),
          "total_cents must equal the sum of the line charges")


def _check_line(ln: Any, kind: str) -> None:
    keys = {"n", "code", "revenue", "modifiers", "units_milli", "charge_cents", "from", "to", "pos", "rendering_npi"}
    _need(isinstance(ln, Mapping) and set(ln) == keys, f"a line has exactly the fields {sorted(keys)}")
    n = ln["n"]
    _need(type(n) is int and 1 <= n <= 999, "line n must be 1..999")
    where = f"line {n}"
    _need(isinstance(ln["code"], str) and codes.PROCEDURE_RE.fullmatch(ln["code"]) is not None,
          f"{where}: {ln['code']!r} is not a CPT / HCPCS code")
    if kind == "institutional":
        _need(isinstance(ln["revenue"], str) and codes.REVENUE_RE.fullmatch(ln["revenue"]) is not None,
              f"{where}: an institutional line needs a 4-digit revenue code")
    else:
        _need(ln["revenue"] is None, f"{where}: revenue codes are for institutional claims")
    mods = ln["modifiers"]
    _need(isinstance(mods, list) and len(mods) <= 4 and mods == sorted(set(mods))
          and all(isinstance(m, str) and codes.MODIFIER_RE.fullmatch(m) for m in mods),
          f"{where}: modifiers must be up to 4 distinct 2-character codes, sorted")
    _need(type(ln["units_milli"]) is int and 1 <= ln["units_milli"] <= codes.MAX_UNITS_MILLI,
          f"{where}: units must be positive")
    _need(type(ln["charge_cents"]) is int and 0 <= ln["charge_cents"] <= codes.MAX_CENTS,
          f"{where}: charge must be 0..{codes.MAX_CENTS} cents")
    _date(ln["from"], f"{where}: from")
    _date(ln["to"], f"{where}: to")
    try:
        codes.date_range(ln["from"], ln["to"], limit=codes.MAX_DAYS_PER_LINE)
    except ValueError as exc:
        raise ClaimError(f"{where}: {exc}") from None
    _need(ln["pos"] is None or (isinstance(ln["pos"], str) and codes.POS_RE.fullmatch(ln["pos"]) is not None),
          f"{where}: pos must be a 2-digit place of service")
    _need(ln["rendering_npi"] is None or codes.is_npi(ln["rendering_npi"]),
          f"{where}: rendering_npi {ln['rendering_npi']!r} is not a valid NPI (check digit)")


def month_of(date: str) -> int:
    return int(date[:6])


# ------------------------------------------------------------------ the submit body


def submit_body(
    claim: Mapping[str, Any],
    pair_key: bytes,
    *,
    payer: bytes,
    content_hash: bytes,
    size: int,
    envelopes: Sequence[Mapping[str, bytes]],
    encounters: Mapping[int, bytes] | None = None,
    original: bytes | None = None,
) -> dict[str, Any]:
    """The ``claims.submit`` body of a canonical claim: every PHI value blinded with the pair key.

    ``encounters`` maps line numbers to the record ids (records module) that document
    them; ``original`` is the claim id the replacement / void refers to (the client
    resolves REF*F8 to it).
    """
    check_claim(claim)
    if (claim["frequency"] == codes.ORIGINAL) != (original is None):
        raise ClaimError("a replacement or void needs the original claim's id, an original claim none")
    member, dob = claim["member_id"], claim["patient"]["birth_date"]
    encounters = dict(encounters or {})
    unknown = sorted(set(encounters) - {ln["n"] for ln in claim["lines"]})
    if unknown:
        raise ClaimError(f"encounters name lines the claim does not have: {unknown}")
    lines = []
    for ln in claim["lines"]:
        dates = codes.date_range(ln["from"], ln["to"], limit=codes.MAX_DAYS_PER_LINE)
        days = [day_key(pair_key, member, dob, d) for d in dates]
        line: dict[str, Any] = {
            "n": ln["n"], "code": ln["code"], "units": ln["units_milli"], "charge": ln["charge_cents"],
            "month": month_of(ln["from"]), "days": days,
        }
        optional = {"modifiers": ln["modifiers"] or None, "revenue": ln["revenue"], "pos": ln["pos"],
                    "rendering_npi": ln["rendering_npi"], "encounter": encounters.get(ln["n"])}
        line.update({k: v for k, v in optional.items() if v is not None})
        lines.append(line)
    month = min(ln["month"] for ln in lines)
    body: dict[str, Any] = {
        "payer": payer, "kind": claim["kind"], "frequency": claim["frequency"], "sequence": claim["sequence"],
        "billing_npi": claim["billing_npi"], "pos": claim["facility"], "total": claim["total_cents"],
        "month": month, "patient": patient_token(pair_key, member, dob, month),
        "pcn": pcn_key(pair_key, claim["pcn"]), "claim": commitment(pair_key, claim),
        "content_hash": content_hash, "size": size,
        "envelopes": [{"recipient": e["recipient"], "sealed_key": e["sealed_key"]} for e in envelopes],
        "lines": lines,
    }
    if claim["rendering_npi"] is not None:
        body["rendering_npi"] = claim["rendering_npi"]
    if original is not None:
        body["original"] = original
    return body


def verify_submission(claim: Mapping[str, Any], pair_key: bytes, onchain: Mapping[str, Any]) -> list[str]:
    """What the payer checks after opening a claim's document: every on-chain value against
    the document (``onchain`` is ``claims_get``'s answer). Returns the mismatches (empty: all match)."""
    check_claim(claim)
    problems = []
    member, dob = claim["member_id"], claim["patient"]["birth_date"]
    if onchain["commitment"] != "0x" + commitment(pair_key, claim).hex():
        problems.append("commitment")
    if onchain["pcn"] != "0x" + pcn_key(pair_key, claim["pcn"]).hex():
        problems.append("pcn")
    if onchain["total_cents"] != claim["total_cents"] or onchain["billing_npi"] != claim["billing_npi"]:
        problems.append("total or billing NPI")
    by_n = {ln["n"]: ln for ln in claim["lines"]}
    months = []
    for ol in onchain["lines"]:
        ln = by_n.get(ol["n"])
        if ln is None:
            problems.append(f"line {ol['n']}")
            continue
        months.append(month_of(ln["from"]))
        days = ["0x" + day_key(pair_key, member, dob, d).hex()
                for d in codes.date_range(ln["from"], ln["to"], limit=codes.MAX_DAYS_PER_LINE)]
        if (ol["code"], ol["modifiers"], ol["units_milli"], ol["charge_cents"], ol["month"], ol["days"]) != (
            ln["code"], ln["modifiers"], ln["units_milli"], ln["charge_cents"], month_of(ln["from"]), days,
        ):
            problems.append(f"line {ol['n']}")
    if months and onchain["patient"] != "0x" + patient_token(pair_key, member, dob, min(months)).hex():
        problems.append("patient token")
    return problems
