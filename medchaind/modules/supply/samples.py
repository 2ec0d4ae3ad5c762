"""Sample EPCIS 2.0 documents of a DSCSA lifecycle (tests, the benchmark, the walkthrough).

:func:`lifecycle` writes what each trading partner of one lot would capture, one EPCIS
document per party, with identifiers in the forms real documents use (SGTIN / SSCC /
PGLN EPC URNs, a GS1 Digital Link for the pharmacy's scans):

* the **manufacturer** commissions ``units`` serialised packages of one lot (ILMD lot and
  expiry), packs them into cases (SSCC) and the cases onto a pallet, and ships the pallet
  to the distributor;
* the **distributor** receives the pallet, breaks it down and ships the cases to the
  pharmacy;
* the **pharmacy** receives the cases, checks one case's contents, unpacks them and
  dispenses every unit (scanning its DataMatrix: GTIN, serial, lot and expiry).

:func:`anomalies` adds what the chain must catch: a counterfeit serial dispensed, a unit
dispensed twice, and a case shipped by a party that no longer owns it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from . import gs1
from .epcis import OFFLINE_CONTEXTS
from .machine import gs1_check_digit

CP_LEN = 7  # GS1 company prefix length used for the URNs of the samples


@dataclass(frozen=True, slots=True)
class Parties:
    manufacturer: str
    distributor: str
    pharmacy: str


def _pgln(gln: str) -> str:
    return f"urn:epc:id:pgln:{gln[:CP_LEN]}.{gln[CP_LEN:12]}"


def _sgln(gln: str) -> str:
    return f"urn:epc:id:sgln:{gln[:CP_LEN]}.{gln[CP_LEN:12]}.0"


def serial(i: int, prefix: str = "S") -> str:
    return f"{prefix}{i:07d}"


def sscc(gln: str, i: int) -> str:
    digits = "0" + gln[:CP_LEN] + f"{i:09d}"
    return digits + str(gs1_check_digit(digits))


class _Doc:
    def __init__(self, start: datetime.datetime) -> None:
        self.t = start
        self.events: list[dict[str, Any]] = []

    def add(self, type_: str, party: str, **fields: Any) -> dict[str, Any]:
        self.t += datetime.timedelta(seconds=1)
        ev = {"type": type_, "eventTime": self.t.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "eventTimeZoneOffset": "+00:00",
              **fields, "readPoint": {"id": _sgln(party)}}
        self.events.append(ev)
        return ev

    def document(self) -> dict[str, Any]:
        return {"@context": [OFFLINE_CONTEXTS[0]], "type": "EPCISDocument", "schemaVersion": "2.0",
                "creationDate": self.t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "epcisBody": {"eventList": self.events}}


def lifecycle(parties: Parties, gtin: str, lot: str, expiry_iso: str, units: int, *, per_case: int = 12,
              start: datetime.datetime | None = None, serial_prefix: str = "S",
              case_offset: int = 0, dispense: int | None = None) -> dict[str, dict[str, Any]]:
    """EPCIS documents of one lot from commissioning to dispensing, per party role
    (the pharmacy dispenses the first ``dispense`` units, default all)."""
    start = start or datetime.datetime(2025, 6, 2, 8, 0, tzinfo=datetime.UTC)
    m, d, p = parties.manufacturer, parties.distributor, parties.pharmacy
    sgtins = [gs1.sgtin_urn(gtin, serial(i, serial_prefix), CP_LEN) for i in range(units)]
    cases = [f"urn:epc:id:sscc:{s[1:1 + CP_LEN]}.{s[0]}{s[1 + CP_LEN:17]}"
             for s in (sscc(m, case_offset + i + 1) for i in range((units + per_case - 1) // per_case))]
    pallet_s = sscc(m, case_offset + 900_000)
    pallet = f"urn:epc:id:sscc:{pallet_s[1:1 + CP_LEN]}.{pallet_s[0]}{pallet_s[1 + CP_LEN:17]}"
    groups = [sgtins[i * per_case:(i + 1) * per_case] for i in range(len(cases))]

    md = _Doc(start)
    for i in range(0, units, 1000):
        md.add("ObjectEvent", m, action="ADD", epcList=sgtins[i:i + 1000], bizStep="commissioning",
               disposition="active", ilmd={"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry_iso})
    for case, kids in zip(cases, groups, strict=True):
        md.add("AggregationEvent", m, action="ADD", parentID=case, childEPCs=kids, bizStep="packing",
               disposition="in_progress")
    md.add("AggregationEvent", m, action="ADD", parentID=pallet, childEPCs=cases, bizStep="packing",
           disposition="in_progress")
    md.add("ObjectEvent", m, action="OBSERVE", epcList=[pallet], bizStep="shipping", disposition="in_transit",
           sourceList=[{"type": "owning_party", "source": _pgln(m)}],
           destinationList=[{"type": "owning_party", "destination": _pgln(d)}],
           bizTransactionList=[{"type": "po", "bizTransaction": f"urn:epcglobal:cbv:bt:{d}:PO-{lot}"}])

    dd = _Doc(md.t + datetime.timedelta(hours=20))
    dd.add("ObjectEvent", d, action="OBSERVE", epcList=[pallet], bizStep="receiving", disposition="in_progress",
           destinationList=[{"type": "owning_party", "destination": _pgln(d)}])
    dd.add("AggregationEvent", d, action="DELETE", parentID=pallet, bizStep="unpacking", disposition="in_progress")
    dd.add("ObjectEvent", d, action="OBSERVE", epcList=cases, bizStep="shipping", disposition="in_transit",
           sourceList=[{"type": "owning_party", "source": _pgln(d)}],
           destinationList=[{"type": "owning_party", "destination": _pgln(p)}])

    pd = _Doc(dd.t + datetime.timedelta(hours=20))
    pd.add("ObjectEvent", p, action="OBSERVE", epcList=cases, bizStep="receiving", disposition="in_progress")
    if cases:
        pd.add("AggregationEvent", p, action="OBSERVE", parentID=cases[0], childEPCs=groups[0], bizStep="receiving")
    for case in cases:
        pd.add("AggregationEvent", p, action="DELETE", parentID=case, bizStep="unpacking")
    exp = gs1.expiry_from_iso(expiry_iso)
    for i in range(units if dispense is None else dispense):
        pid = gs1.ProductId(gtin, serial(i, serial_prefix), lot, exp)
        pd.add("ObjectEvent", p, action="OBSERVE", epcList=[gs1.digital_link(pid)], bizStep="dispensing",
               disposition="dispensed")
    return {"manufacturer": md.document(), "distributor": dd.document(), "pharmacy": pd.document()}


def anomalies(parties: Parties, gtin: str, lot: str, expiry_iso: str, *, serial_prefix: str = "S",
              start: datetime.datetime | None = None) -> dict[str, dict[str, Any]]:
    """What the chain must flag after :func:`lifecycle` (same parties, product and serials):

    * the pharmacy dispenses a counterfeit (a serial never commissioned): ``not_commissioned``;
    * the pharmacy dispenses unit 0 again (a clone): ``dispensed_twice``;
    * the distributor ships the first case again, which the pharmacy now owns: ``not_owner``.
    """
    start = start or datetime.datetime(2025, 6, 9, 8, 0, tzinfo=datetime.UTC)
    m, d, p = parties.manufacturer, parties.distributor, parties.pharmacy
    exp = gs1.expiry_from_iso(expiry_iso)
    pd = _Doc(start)
    fake = gs1.ProductId(gtin, serial(9_999_999, serial_prefix), lot, exp)
    pd.add("ObjectEvent", p, action="OBSERVE", epcList=[gs1.digital_link(fake)], bizStep="dispensing",
           disposition="dispensed")
    again = gs1.ProductId(gtin, serial(0, serial_prefix), lot, exp)
    pd.add("ObjectEvent", p, action="OBSERVE", epcList=[gs1.digital_link(again)], bizStep="dispensing",
           disposition="dispensed")
    dd = _Doc(start)
    first = sscc(m, 1)
    dd.add("ObjectEvent", d, action="OBSERVE", epcList=[f"urn:epc:id:sscc:{first[1:1 + CP_LEN]}.{first[0]}"
                                                        f"{first[1 + CP_LEN:17]}"],
           bizStep="shipping", disposition="in_transit",
           destinationList=[{"type": "owning_party", "destination": _pgln(p)}])
    return {"pharmacy": pd.document(), "distributor": dd.document()}


def saleable_return(parties: Parties, gtin: str, unit: int, *, serial_prefix: str = "S",
                    start: datetime.datetime | None = None) -> dict[str, dict[str, Any]]:
    """The pharmacy returns one undispensed unit to the distributor (which verifies it
    before resale, DSCSA §582(c)(4)(D)): the pharmacy's shipment and the distributor's receipt."""
    start = start or datetime.datetime(2025, 6, 10, 8, 0, tzinfo=datetime.UTC)
    d, p = parties.distributor, parties.pharmacy
    urn = gs1.sgtin_urn(gtin, serial(unit, serial_prefix), CP_LEN)
    pd = _Doc(start)
    pd.add("ObjectEvent", p, action="OBSERVE", epcList=[urn], bizStep="shipping", disposition="returned",
           sourceList=[{"type": "owning_party", "source": _pgln(p)}],
           destinationList=[{"type": "owning_party", "destination": _pgln(d)}])
    dd = _Doc(start + datetime.timedelta(hours=6))
    dd.add("ObjectEvent", d, action="OBSERVE", epcList=[urn], bizStep="receiving", disposition="returned",
           destinationList=[{"type": "owning_party", "destination": _pgln(d)}])
    return {"pharmacy": pd.document(), "distributor": dd.document()}
