"""Claims: code shapes, NPI check digits, money and units, months, and the keys the chain computes.

Shared by the state machine (:mod:`.machine`) and the client side (:mod:`.x12`,
:mod:`.fhir_claim`, :mod:`.client`), so both judge a value the same way. Pure: no I/O,
no clock, no floats (money is integer cents, units integer thousandths).

Code lists are checked by *shape* only. X12 publishes the CARC / RARC values but
licenses their descriptions, CPT is licensed by the AMA, and none of the lists ships
with a package we can depend on; a code that has the right shape but is not in the
current list is the payer's to reject (277CA A7 / CARC 16 in practice).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from ... import codec

# ------------------------------------------------------------------ code shapes

#: CPT (4 digits + a digit, F category II, T category III, U PLA) or HCPCS level II
PROCEDURE_RE = re.compile(r"[0-9]{4}[0-9FTU]|[A-V][0-9]{4}")
#: CPT / HCPCS modifiers are two letters or digits
MODIFIER_RE = re.compile(r"[0-9A-Z]{2}")
#: UB-04 revenue codes (837I SV201)
REVENUE_RE = re.compile(r"[0-9]{4}")
#: CMS place-of-service codes (837P CLM05-1, SV105) and UB-04 facility type (837I CLM05-1)
POS_RE = re.compile(r"[0-9]{2}")
#: ICD-10-CM, without the dot (HI*ABK / ABF); client side only, never on chain
ICD10_RE = re.compile(r"[A-TV-Z][0-9][0-9A-Z]([0-9A-Z]{1,4})?")
#: Claim Adjustment Reason Codes: 1-3 digits, or a letter and 1-2 digits (A1, B7, P21, W1)
CARC_RE = re.compile(r"[1-9][0-9]{0,2}|[A-Z][0-9]{1,2}")
#: Remittance Advice Remark Codes: M15, MA130, N522
RARC_RE = re.compile(r"(M|MA|N)[0-9]{1,3}")
#: Provider-level adjustment reason codes (PLB03-1): two characters (WO, FB, L6, 72 ...)
PLB_REASON_RE = re.compile(r"[0-9A-Z]{2}")
#: 277CA health care claim status codes (STC01-2): 1-3 digits
STATUS_CODE_RE = re.compile(r"[0-9]{1,3}")
#: 5010 claim adjustment group codes (CR was retired in 5010)
CAS_GROUPS = ("CO", "OA", "PI", "PR")

#: CLM05-3 claim frequency: original, replacement, void
ORIGINAL, REPLACEMENT, VOID = 1, 7, 8
FREQUENCIES = (ORIGINAL, REPLACEMENT, VOID)
#: SBR01 payer responsibility sequence (P primary, S secondary, T tertiary, A..H 4th-11th, U unknown)
SEQUENCES = ("P", "S", "T", "A", "B", "C", "D", "E", "F", "G", "H", "U")

#: 277CA STC01-1 categories this chain acts on (A1 "received" is taken as accepted, as
#: the issue asks; payers send A1:19 then A2:20 for a claim that enters adjudication)
ACK_ACCEPTED = ("A1", "A2")
ACK_REJECTED = ("A3", "A6", "A7", "A8")
ACK_CATEGORIES = ACK_ACCEPTED + ACK_REJECTED

#: 835 CLP02 claim status codes adjudicate takes (22 reversal and 25 predetermination are not modelled)
CLP_PROCESSED = (1, 2, 3, 19, 20, 21)
CLP_DENIED = 4
CLP_NOT_OUR_CLAIM = 23
CLP_STATUSES = (*CLP_PROCESSED, CLP_DENIED, CLP_NOT_OUR_CLAIM)

#: modifiers that legitimately separate otherwise identical lines (CMS IOM 100-04 ch.1 §120;
#: NCCI: 59 and its X{EPSU} subsets, 76/77 repeat procedure, 91 repeat lab test)
SEPARATING_MODIFIERS = frozenset({"59", "XE", "XP", "XS", "XU", "76", "77", "91"})
#: laterality: RT on one line and LT on the other is two services
LATERALITY = frozenset({"RT", "LT"})


def is_npi(value: object) -> bool:
    """A 10-digit NPI whose last digit is the Luhn check digit over ``80840`` + the first nine.

    (CMS NPI standard: the 80840 prefix is the ISO 7812 issuer for US health applications.)
    """
    if not isinstance(value, str) or len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    return luhn_ok("80840" + value)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def npi_check_digit(first9: str) -> str:
    """The check digit completing a 9-digit NPI stem (for test fixtures and tools)."""
    for d in "0123456789":
        if luhn_ok("80840" + first9 + d):
            return d
    raise AssertionError("unreachable")  # pragma: no cover


def separates(mods_a: Iterable[str], mods_b: Iterable[str]) -> bool:
    """Whether two lines' modifiers make them distinct services (not a suspect duplicate)."""
    a, b = frozenset(mods_a), frozenset(mods_b)
    if (a | b) & SEPARATING_MODIFIERS:
        return True
    la, lb = a & LATERALITY, b & LATERALITY
    return bool(la and lb and la != lb)


# ------------------------------------------------------------------ money and units

MAX_CENTS = 10**11  # $1 billion
MAX_UNITS_MILLI = 10**9
_AMOUNT_RE = re.compile(r"-?([0-9]{1,12})(\.([0-9]{0,2}))?")
_QTY_RE = re.compile(r"([0-9]{1,9})(\.([0-9]{0,3}))?")


def cents(text: str) -> int:
    """An X12 / decimal amount (``125``, ``125.5``, ``-10.00``) as integer cents; ValueError otherwise."""
    m = _AMOUNT_RE.fullmatch(text)
    if m is None or text in ("-", ""):
        raise ValueError(f"{text!r} is not an amount with at most 2 decimals")
    frac = (m.group(3) or "").ljust(2, "0")
    value = int(m.group(1)) * 100 + int(frac)
    return -value if text.startswith("-") else value


def units_milli(text: str) -> int:
    """A quantity (``1``, ``2.5``) as integer thousandths; ValueError otherwise."""
    m = _QTY_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a quantity with at most 3 decimals")
    return int(m.group(1)) * 1000 + int((m.group(3) or "").ljust(3, "0"))


def format_cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


# ------------------------------------------------------------------ dates and months

DAY_MS = 86_400_000
#: dates of service one line may span (one blind day key each)
MAX_DAYS_PER_LINE = 31


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def days_in_month(y: int, m: int) -> int:
    nxt = days_from_civil(y + (m == 12), 1 if m == 12 else m + 1, 1)
    return nxt - days_from_civil(y, m, 1)


def is_month(value: object) -> bool:
    """``YYYYMM`` as an integer, 2000-01 .. 2099-12."""
    return type(value) is int and 200001 <= value <= 209912 and 1 <= value % 100 <= 12


def month_start_ms(month: int) -> int:
    return days_from_civil(month // 100, month % 100, 1) * DAY_MS


def month_end_ms(month: int) -> int:
    """The first millisecond after ``month`` (UTC)."""
    y, m = month // 100, month % 100
    return (days_from_civil(y, m, 1) + days_in_month(y, m)) * DAY_MS


def month_of_ms(time_ms: int) -> int:
    y, m, _ = civil_from_days(time_ms // DAY_MS)
    return y * 100 + m


def parse_date(text: str) -> tuple[int, int, int]:
    """``CCYYMMDD`` -> (y, m, d), checked against the calendar; ValueError otherwise."""
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"{text!r} is not a date CCYYMMDD")
    y, m, d = int(text[:4]), int(text[4:6]), int(text[6:])
    if not (1900 <= y <= 2099 and 1 <= m <= 12 and 1 <= d <= days_in_month(y, m)):
        raise ValueError(f"{text!r} is not a calendar date")
    return y, m, d


def date_range(first: str, last: str, *, limit: int) -> list[str]:
    """Every ``CCYYMMDD`` from ``first`` to ``last`` inclusive (at most ``limit`` days)."""
    a, b = days_from_civil(*parse_date(first)), days_from_civil(*parse_date(last))
    if b < a:
        raise ValueError(f"date range {first}-{last} ends before it starts")
    if b - a + 1 > limit:
        raise ValueError(f"date range {first}-{last} spans {b - a + 1} days (at most {limit})")
    out = []
    for z in range(a, b + 1):
        y, m, d = civil_from_days(z)
        out.append(f"{y:04d}{m:02d}{d:02d}")
    return out


# ------------------------------------------------------------------ keys the chain computes

#: domain tags of the chain-computed duplicate keys (docs/protocol.md, claims)
EXACT_TAG = "medchain/claims/exact/v1"
SUSPECT_TAG = "medchain/claims/suspect/v1"


def exact_key(billing_npi: str, rendering_npi: str, days: Sequence[bytes], code: str, revenue: str | None,
              modifiers: Sequence[str], units: int, charge: int, pos: str) -> bytes:
    """The exact-duplicate key of a line: CMS IOM 100-04 ch.1 §120's fields.

    Beneficiary and date of service enter through the blind day keys (keyed with the
    payer-provider pair key, so the chain compares them without learning either);
    provider, code, modifiers (as a set), units, charge and place of service in the clear.
    """
    # an array of checked scalars and arrays (no map): its plain encoding is the canonical
    # one, so encode_built's bytes are encode's without the walk
    return hashlib.sha256(codec.encode_built([
        EXACT_TAG, billing_npi, rendering_npi, sorted(days), code, revenue or "", sorted(modifiers), units, charge, pos,
    ])).digest()


def suspect_key(day: bytes, code: str) -> bytes:
    """The suspect-duplicate key of one day of a line: same patient, same day, same code."""
    return hashlib.sha256(codec.encode_built([SUSPECT_TAG, day, code])).digest()
