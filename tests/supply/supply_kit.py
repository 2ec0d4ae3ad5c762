"""Builders for the supply tests, on the shared harness :mod:`medchaind.testing.appkit`.

The cast (named keys, as in geth clique's tests):

* ``A`` the sole authority;
* ``M`` manufacturer (owns :data:`GTIN_A`), ``N`` a second manufacturer (owns :data:`GTIN_B`);
* ``D`` and ``E`` distributors; ``P`` and ``Q`` pharmacies; ``F`` a regulator (FDA);
* ``X`` registered as a distributor but never accredited.

Object ids are stand-ins for the blind indexes a client computes: ``sgtin("u1")`` and
``sscc("c1")`` (the chain only sees 33 opaque bytes).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from medchaind.modules.supply.machine import SGTIN, SSCC, gs1_check_digit
from medchaind.testing.appkit import DAY_MS, AppChain, pub
from medchaind.types import Receipt


def with_check(digits: str) -> str:
    return digits + str(gs1_check_digit(digits))


GTIN_A = with_check("0030001234567")  # a US drug: 0 + 03 + NDC 0001-2345-67 (sort of)
GTIN_B = with_check("0030009876543")
GLNS = {name: with_check(f"06141410000{i}") for i, name in enumerate("MNDEPQF")}
ROLES = {"M": "manufacturer", "N": "manufacturer", "D": "distributor", "E": "distributor",
         "P": "pharmacy", "Q": "pharmacy", "F": "regulator"}
EXP = 20301231  # far future
EXP_SOON = 20251231


def h(tag: str) -> bytes:
    return hashlib.sha256(b"supply-test/" + tag.encode()).digest()


def sgtin(tag: str) -> bytes:
    return bytes([SGTIN]) + h("sgtin/" + tag)


def sscc(tag: str) -> bytes:
    return bytes([SSCC]) + h("sscc/" + tag)


LOT1 = h("lot/1")
LOT2 = h("lot/2")

_counter = itertools.count()


def event(type_: str, action: str, epcs: list[bytes], **kw: Any) -> dict[str, Any]:
    """An event body with a fresh hash (or ``hash=`` given)."""
    body: dict[str, Any] = {
        "hash": kw.pop("hash", None) or h(f"event/{next(_counter)}"),
        "type": type_, "action": action, "time_ms": kw.pop("time_ms", 1_700_000_000_000), "epcs": list(epcs),
    }
    body.update({k: v for k, v in kw.items() if v is not None})
    return body


def commission(*oids: bytes, gtin: str = GTIN_A, lot: bytes = LOT1, exp: int = EXP, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "ADD", list(oids), biz_step="commissioning", disposition="active",
                 gtin=gtin, lot_id=lot, expiry=exp, **kw)


def ship(*oids: bytes, to: str, frm: str | None = None, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "OBSERVE", list(oids), biz_step="shipping", disposition="in_transit",
                 dest=GLNS[to], source=None if frm is None else GLNS[frm], **kw)


def receive(*oids: bytes, at: str | None = None, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "OBSERVE", list(oids), biz_step="receiving", disposition="in_progress",
                 dest=None if at is None else GLNS[at], **kw)


def dispense(*oids: bytes, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "OBSERVE", list(oids), biz_step="dispensing", disposition="dispensed", **kw)


def observe(*oids: bytes, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "OBSERVE", list(oids), biz_step="inspecting", **kw)


def void(*oids: bytes, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "OBSERVE", list(oids), biz_step="void_shipping", **kw)


def decommission(*oids: bytes, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "DELETE", list(oids), biz_step="decommissioning", disposition="inactive", **kw)


def destroy(*oids: bytes, **kw: Any) -> dict[str, Any]:
    return event("ObjectEvent", "DELETE", list(oids), biz_step="destroying", disposition="destroyed", **kw)


def pack(parent: bytes, *children: bytes, **kw: Any) -> dict[str, Any]:
    return event("AggregationEvent", "ADD", list(children), biz_step="packing", parent=parent, **kw)


def unpack(parent: bytes, *children: bytes, **kw: Any) -> dict[str, Any]:
    return event("AggregationEvent", "DELETE", list(children), biz_step="unpacking", parent=parent, **kw)


def check_agg(parent: bytes, *children: bytes, **kw: Any) -> dict[str, Any]:
    return event("AggregationEvent", "OBSERVE", list(children), biz_step="receiving", parent=parent, **kw)


def flags(r: Receipt) -> dict[str, list[bytes]]:
    """``code -> oids`` of the flags a receipt carries (``supply.flagged`` events)."""
    out: dict[str, list[bytes]] = {}
    for e in r.events:
        if e["type"] == "supply.flagged":
            out.setdefault(e["code"], []).extend(e["oids"])
    return out


class SupplyChain(AppChain):
    """An AppChain with the supply cast registered, accredited and holding GLNs."""

    @classmethod
    def cast(cls) -> SupplyChain:  # type: ignore[override]
        c = cls.of({"A": 1})
        for name, role in ROLES.items():
            c.register(name, role)
            c.accredit(name, role)
            c.ok(name, "supply.register_party", {"gln": GLNS[name]})
        c.register("X", "distributor")
        c.ok("M", "supply.register_product", {"gtin": GTIN_A, "key_check": h("key/A")})
        c.ok("N", "supply.register_product", {"gtin": GTIN_B, "key_check": h("key/B")})
        return c

    def capture(self, name: str, *events: dict[str, Any], **extra: Any) -> Receipt:
        return self.send(name, "supply.capture", {"events": list(events), **extra})

    def captured(self, name: str, *events: dict[str, Any]) -> dict[str, list[bytes]]:
        """Capture that must succeed; its flags."""
        r = self.capture(name, *events)
        assert r.ok, r
        return flags(r)

    def unit(self, oid: bytes) -> dict[str, Any] | None:
        u: dict[str, Any] | None = self.query("supply.unit", {"oid": oid})
        return u

    def owner(self, oid: bytes) -> str | None:
        u = self.unit(oid)
        return None if u is None or u["owner"] is None else u["owner"]["gln"]

    def custodian(self, oid: bytes) -> str | None:
        u = self.unit(oid)
        return None if u is None or u["custodian"] is None else u["custodian"]["gln"]

    def holders(self, gtin: str = GTIN_A, lot: bytes = LOT1) -> dict[str, tuple[int, int]]:
        ans = self.query("supply.holders", {"gtin": gtin, "lot_id": lot})
        return {x["gln"]: (x["held"], x["inbound"]) for x in ans["holders"]}

    def delivered(self, oids: list[bytes], frm: str, to: str) -> None:
        """``frm`` ships ``oids`` to ``to``, who receives them (both clean)."""
        assert self.captured(frm, ship(*oids, to=to)) == {}
        assert self.captured(to, receive(*oids)) == {}


__all__ = ["DAY_MS", "pub"]
