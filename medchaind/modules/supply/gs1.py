"""GS1 identifiers on the client: element strings, Digital Links, EPC URNs, blind indexes.

A DSCSA product identifier is a GTIN-14 (AI 01; a US drug's GTIN embeds its NDC), a
serial (AI 21, up to 20 characters), a lot (AI 10, up to 20) and an expiry (AI 17,
YYMMDD, day ``00`` = the month's last day). It reaches a client as

* an **element string** scanned from a GS1 DataMatrix (``01…17…10…<GS>21…``), parsed
  with ``biip``. biip's trap: when the scanner drops the GS separator (FNC1) after a
  variable-length field, the next field is silently swallowed (``10ABC12321SN0001`` parses
  as lot ``ABC12321SN0001``). :func:`parse_element_string` requires all four AIs of a DSCSA
  identifier and refuses a message whose variable-length value swallowed another one;
* a **GS1 Digital Link** (``https://id.gs1.org/01/{gtin}/10/{lot}/21/{serial}?17=YYMMDD``,
  any resolver domain), also through biip;
* an **EPC URN** in EPCIS (``urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial``,
  ``urn:epc:id:sscc:…``, ``urn:epc:id:pgln:…`` / ``sgln``), handled here (biip has none).
  Converting a GTIN back to a URN needs the GS1 company prefix length.

:func:`sgtin_oid`, :func:`lot_id` and :func:`sscc_oid` compute the chain's blind indexes
(see the privacy model in :mod:`medchaind.modules.supply.machine`): HMAC-SHA-256 under the
product's index key for serials and lots, a plain domain-separated SHA-256 for SSCCs.

Client side only: imports biip; never imported by the state machine.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ...errors import ValidationError
from .machine import SGTIN, SSCC, gs1_check_digit, gs1_valid, index_key_check

SGTIN_DOMAIN = b"medchain/supply/sgtin/v1"
LOT_DOMAIN = b"medchain/supply/lot/v1"
SSCC_DOMAIN = b"medchain/supply/sscc/v1"
DL_BASE = "https://id.gs1.org"

#: characters GS1 allows in AI 10 / AI 21 values (GS1 AI encodable character set 82)
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}")


class GS1Error(ValidationError):
    """An identifier that is malformed, has a bad check digit, or is ambiguous."""


@dataclass(frozen=True, slots=True)
class ProductId:
    """A serialised unit's identifier; ``lot`` / ``expiry`` (YYYYMMDD) when known."""

    gtin: str
    serial: str
    lot: str | None = None
    expiry: int | None = None


@dataclass(frozen=True, slots=True)
class Epc:
    """An EPC from an EPCIS document: a serialised unit (``sgtin``) or a logistic unit (``sscc``)."""

    kind: str
    gtin: str | None = None
    serial: str | None = None
    sscc: str | None = None
    #: lot / expiry carried by a Digital Link (``/10/{lot}``, ``?17=``): a scan, not ILMD
    lot: str | None = None
    expiry: int | None = None


# ------------------------------------------------------------------ check digits and values


def check_gtin(gtin: str) -> str:
    """A GTIN-8/12/13/14 as a GTIN-14, check digit verified."""
    if not (gtin.isascii() and gtin.isdigit() and len(gtin) in (8, 12, 13, 14)):
        raise GS1Error(f"GTIN {gtin!r} must be 8, 12, 13 or 14 digits")
    gtin = gtin.zfill(14)
    if not gs1_valid(gtin):
        raise GS1Error(f"GTIN {gtin} has a bad check digit (expected {gs1_check_digit(gtin[:-1])})")
    return gtin


def check_gln(gln: str) -> str:
    if not (gln.isascii() and gln.isdigit() and len(gln) == 13):
        raise GS1Error(f"GLN {gln!r} must be 13 digits")
    if not gs1_valid(gln):
        raise GS1Error(f"GLN {gln} has a bad check digit (expected {gs1_check_digit(gln[:-1])})")
    return gln


def check_sscc(sscc: str) -> str:
    if not (sscc.isascii() and sscc.isdigit() and len(sscc) == 18):
        raise GS1Error(f"SSCC {sscc!r} must be 18 digits")
    if not gs1_valid(sscc):
        raise GS1Error(f"SSCC {sscc} has a bad check digit (expected {gs1_check_digit(sscc[:-1])})")
    return sscc


def check_text(value: str, what: str) -> str:
    if not _CSET82.fullmatch(value):
        raise GS1Error(f"{what} {value!r} must be 1..20 characters of the GS1 character set 82")
    return value


def expiry_from_yymmdd(yymmdd: str) -> int:
    """AI 17 (YYMMDD, day 00 = last day of the month) as YYYYMMDD.

    The century is 20YY: GS1's sliding window (General Specifications §7.12) gives the
    same for any drug expiry this century, and this stays independent of today's date.
    """
    if not (len(yymmdd) == 6 and yymmdd.isdigit()):
        raise GS1Error(f"expiry {yymmdd!r} must be YYMMDD")
    y, m, d = 2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    if not 1 <= m <= 12:
        raise GS1Error(f"expiry {yymmdd}: month {m:02d} does not exist")
    if d == 0:
        nxt = datetime.date(y + (m == 12), m % 12 + 1, 1)
        d = (nxt - datetime.timedelta(days=1)).day
    try:
        datetime.date(y, m, d)
    except ValueError:
        raise GS1Error(f"expiry {yymmdd}: not a calendar date") from None
    return y * 10000 + m * 100 + d


def expiry_from_iso(text: str) -> int:
    """An ISO date (``2026-05-31``, as in EPCIS ILMD ``itemExpirationDate``) as YYYYMMDD."""
    try:
        d = datetime.date.fromisoformat(text[:10])
    except ValueError:
        raise GS1Error(f"expiry {text!r} is not an ISO date YYYY-MM-DD") from None
    return d.year * 10000 + d.month * 100 + d.day


def yymmdd(expiry: int) -> str:
    return f"{expiry // 10000 % 100:02d}{expiry // 100 % 100:02d}{expiry % 100:02d}"


# ------------------------------------------------------------------ element strings (biip)


def _elements(result: object) -> dict[str, str]:
    if hasattr(result, "element_strings"):
        msg = result
    else:
        msg = getattr(result, "gs1_message", None) or getattr(result, "gs1_digital_link_uri", None)
    if msg is None:
        return {}
    out: dict[str, str] = {}
    for es in msg.element_strings:
        if es.ai.ai in out:
            raise GS1Error(f"AI ({es.ai.ai}) appears twice")
        out[es.ai.ai] = es.value
    return out


def parse_element_string(data: str) -> ProductId:
    """A scanned GS1 DataMatrix / GS1-128 message as a DSCSA product identifier.

    Accepts the raw message (with or without a symbology identifier such as ``]d2``, GS
    as ``\\x1d``) or the human-readable form ``(01)…(17)…(10)…(21)…``. Refuses a message
    missing any of AI 01, 17, 10, 21, and names the likely cause when a variable-length
    value swallowed the next field because the GS separator was missing.
    """
    from biip import ParseError, parse
    from biip.gs1_messages import GS1Message

    try:
        if data.startswith("("):
            result: object = GS1Message.parse_hri(data)
            err = None
        else:
            result = parse(data)
            err = getattr(result, "gs1_message_error", None)
    except ParseError as exc:
        raise GS1Error(f"not a GS1 message: {exc}") from None
    els = _elements(result)
    if not els:
        raise GS1Error(f"not a GS1 element string: {err or data!r}")
    for ai, what, tail in (("10", "lot", "21"), ("21", "serial", "10")):
        value = els.get(ai)
        # a variable-length value containing another AI's tag at a place where that AI is
        # missing: the separator was dropped and biip merged the two fields
        if value is not None and tail not in els and tail in value[1:]:
            raise GS1Error(
                f"AI ({ai}) {what} {value!r} seems to contain AI ({tail}): the GS separator (FNC1) after a "
                f"variable-length field is missing, so the {'serial' if tail == '21' else 'lot'} was merged into "
                f"the {what}; rescan (the scanner must transmit GS as \\x1d) or key in the identifier"
            )
    missing = [f"({ai}) {name}" for ai, name in (("01", "GTIN"), ("21", "serial"), ("10", "lot"), ("17", "expiry"))
               if ai not in els]
    if missing:
        raise GS1Error(f"a DSCSA product identifier needs AI (01), (21), (10), (17); missing {', '.join(missing)}")
    return ProductId(check_gtin(els["01"]), check_text(els["21"], "serial"), check_text(els["10"], "lot"),
                     expiry_from_yymmdd(els["17"]))


def element_string(pid: ProductId, *, human: bool = False) -> str:
    """The element string of ``pid`` (fixed-length fields first; GS after the lot)."""
    if pid.lot is None or pid.expiry is None:
        raise GS1Error("an element string of a DSCSA identifier needs lot and expiry")
    if human:
        return f"(01){pid.gtin}(17){yymmdd(pid.expiry)}(10){pid.lot}(21){pid.serial}"
    return f"01{pid.gtin}17{yymmdd(pid.expiry)}10{pid.lot}\x1d21{pid.serial}"


# ------------------------------------------------------------------ Digital Link


def digital_link(pid: ProductId, base: str = DL_BASE) -> str:
    """``{base}/01/{gtin}[/10/{lot}]/21/{serial}[?17=YYMMDD]`` (percent-encoded)."""
    path = f"{base.rstrip('/')}/01/{pid.gtin}"
    if pid.lot is not None:
        path += "/10/" + quote(pid.lot, safe="")
    path += "/21/" + quote(pid.serial, safe="")
    if pid.expiry is not None:
        path += f"?17={yymmdd(pid.expiry)}"
    return path


def parse_digital_link(uri: str) -> Epc:
    """A GS1 Digital Link URI (any domain) as an EPC: SGTIN (01+21) or SSCC (00)."""
    from biip import ParseError, parse

    try:
        result = parse(uri)
    except ParseError as exc:
        raise GS1Error(f"not a GS1 Digital Link: {exc}") from None
    if getattr(result, "gs1_digital_link_uri", None) is None:
        raise GS1Error(f"not a GS1 Digital Link: {getattr(result, 'gs1_digital_link_uri_error', None) or uri!r}")
    els = _elements(result)
    if "00" in els:
        return Epc("sscc", sscc=check_sscc(els["00"]))
    if "01" in els and "21" in els:
        exp = expiry_from_yymmdd(els["17"]) if "17" in els else None
        return Epc("sgtin", gtin=check_gtin(els["01"]), serial=check_text(els["21"], "serial"),
                   lot=None if "10" not in els else check_text(els["10"], "lot"), expiry=exp)
    raise GS1Error(f"{uri}: a Digital Link of a serialised unit needs /01/{{gtin}}/21/{{serial}} (or /00/{{sscc}})")


# ------------------------------------------------------------------ EPC URNs (GS1 Tag Data Standard)


def _urn_parts(urn: str, scheme: str, n: int) -> list[str]:
    prefix = f"urn:epc:id:{scheme}:"
    if not urn.startswith(prefix):
        raise GS1Error(f"{urn!r} is not an {prefix} URN")
    parts = urn[len(prefix):].split(".", n - 1)  # the last part (a serial) may hold dots
    if len(parts) != n:
        raise GS1Error(f"{urn!r}: expected {n} dot-separated parts")
    return parts


def sgtin_from_urn(urn: str) -> tuple[str, str]:
    """``urn:epc:id:sgtin:CP.IndicatorItemRef.Serial`` -> (GTIN-14, serial)."""
    cp, ind_ref, serial_esc = _urn_parts(urn, "sgtin", 3)
    if not (cp.isdigit() and ind_ref.isdigit() and len(cp) + len(ind_ref) == 13 and 6 <= len(cp) <= 12):
        raise GS1Error(f"{urn!r}: company prefix and indicator/item reference must be 13 digits together")
    digits = ind_ref[0] + cp + ind_ref[1:]
    return digits + str(gs1_check_digit(digits)), check_text(unquote(serial_esc), "serial")


def sgtin_urn(gtin: str, serial: str, company_prefix_length: int) -> str:
    """(GTIN-14, serial) -> ``urn:epc:id:sgtin:…`` (needs the GS1 company prefix length, 6..12)."""
    gtin = check_gtin(gtin)
    if not 6 <= company_prefix_length <= 12:
        raise GS1Error("the GS1 company prefix length is 6..12 digits")
    cp = gtin[1:1 + company_prefix_length]
    ref = gtin[0] + gtin[1 + company_prefix_length:13]
    return f"urn:epc:id:sgtin:{cp}.{ref}.{quote(check_text(serial, 'serial'), safe='')}"


def sscc_from_urn(urn: str) -> str:
    """``urn:epc:id:sscc:CP.ExtSerialRef`` -> SSCC-18."""
    cp, ext_ref = _urn_parts(urn, "sscc", 2)
    if not (cp.isdigit() and ext_ref.isdigit() and len(cp) + len(ext_ref) == 17):
        raise GS1Error(f"{urn!r}: company prefix and extension/serial reference must be 17 digits together")
    digits = ext_ref[0] + cp + ext_ref[1:]
    return digits + str(gs1_check_digit(digits))


def sscc_urn(sscc: str, company_prefix_length: int) -> str:
    sscc = check_sscc(sscc)
    cp = sscc[1:1 + company_prefix_length]
    return f"urn:epc:id:sscc:{cp}.{sscc[0]}{sscc[1 + company_prefix_length:17]}"


def gln_from_party(text: str) -> str:
    """An owning party or location as a GLN: ``urn:epc:id:pgln:CP.Ref``, ``urn:epc:id:sgln:CP.Ref.Ext``,
    a Digital Link ``…/417/{gln}`` or ``…/414/{gln}``, or 13 digits."""
    if text.startswith("urn:epc:id:pgln:") or text.startswith("urn:epc:id:sgln:"):
        scheme = text.split(":")[3]
        parts = _urn_parts(text, scheme, 2 if scheme == "pgln" else 3)
        digits = parts[0] + parts[1]
        if not (digits.isdigit() and len(digits) == 12):
            raise GS1Error(f"{text!r}: company prefix and reference must be 12 digits together")
        return digits + str(gs1_check_digit(digits))
    m = re.search(r"/(417|414)/([0-9]{13})(?:/|\?|$)", text)
    if m:
        return check_gln(m.group(2))
    if text.isdigit():
        return check_gln(text)
    raise GS1Error(f"{text!r} is not a party GLN (urn:epc:id:pgln:…, sgln, or a Digital Link /417/…)")


def parse_epc(text: str) -> Epc:
    """An EPC as written in an EPCIS document (URN or Digital Link)."""
    if text.startswith("urn:epc:id:sgtin:"):
        gtin, serial = sgtin_from_urn(text)
        return Epc("sgtin", gtin=gtin, serial=serial)
    if text.startswith("urn:epc:id:sscc:"):
        return Epc("sscc", sscc=sscc_from_urn(text))
    if text.startswith("http://") or text.startswith("https://"):
        return parse_digital_link(text)
    raise GS1Error(f"{text!r}: only SGTIN and SSCC identifiers (EPC URN or GS1 Digital Link) are followed")


# ------------------------------------------------------------------ blind indexes


def _hmac(key: bytes, domain: bytes, *fields: str) -> bytes:
    if len(key) != 32:
        raise GS1Error("an index key is 32 bytes")
    msg = domain + b"".join(b"\x00" + f.encode() for f in fields)
    return hmac.new(key, msg, hashlib.sha256).digest()


def sgtin_oid(index_key: bytes, gtin: str, serial: str) -> bytes:
    """The chain's id of a serialised unit: kind 0x01 + HMAC(product key, gtin, serial)."""
    return bytes([SGTIN]) + _hmac(index_key, SGTIN_DOMAIN, check_gtin(gtin), serial)


def lot_id(index_key: bytes, gtin: str, lot: str) -> bytes:
    """The chain's id of a lot: HMAC(product key, gtin, lot)."""
    return _hmac(index_key, LOT_DOMAIN, check_gtin(gtin), lot)


def sscc_oid(sscc: str) -> bytes:
    """The chain's id of a logistic unit: kind 0x02 + SHA-256(domain, sscc) (unkeyed)."""
    return bytes([SSCC]) + hashlib.sha256(SSCC_DOMAIN + b"\x00" + check_sscc(sscc).encode()).digest()


def new_index_key() -> tuple[bytes, bytes]:
    """A fresh product index key and the ``key_check`` the product record carries."""
    from ...crypto import random_bytes

    key = random_bytes(32)
    return key, index_key_check(key)
