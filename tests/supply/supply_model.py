"""A small reference model of the supply custody rules, written plainly.

No counters, no lazy aggregates, no caches: objects in a dict, containment by parent
pointers walked every time, holders recomputed from scratch. It shares nothing with
:mod:`medchaind.modules.supply.machine` but the names of the codes, so when the chain and
the model agree on every flag and every state after random event sequences, the
chain's bookkeeping (lot counts per container, holder and inbound counters, lazy
custody through containers) is doing what the rules say.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any

SGTIN, SSCC = 0x01, 0x02
DAY_MS = 86_400_000


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def kind_of(ev: dict[str, Any]) -> str:
    t, a, s = ev["type"], ev["action"], ev.get("biz_step")
    if t == "ObjectEvent":
        if a == "ADD":
            return "commission"
        if a == "DELETE":
            return "destroy" if s == "destroying" else "decommission"
        table = {"shipping": "ship", "receiving": "receive", "dispensing": "dispense",
                 "decommissioning": "decommission", "destroying": "destroy", "void_shipping": "void"}
        return table.get(s or "", "observe")
    if t == "AggregationEvent":
        return {"ADD": "pack", "DELETE": "unpack", "OBSERVE": "check"}[a]
    return "record"


def expired(now_ms: int, exp: int) -> bool:
    d = datetime.date(exp // 10000, exp // 100 % 100, exp % 100)
    end = (d - datetime.date(1970, 1, 1)).days * DAY_MS + DAY_MS
    return now_ms >= end


@dataclass
class Obj:
    kind: int
    gtin: str | None
    lot: bytes | None
    exp: int | None
    st: str = "active"
    own: str = ""
    cus: str = ""
    to: str | None = None
    par: bytes | None = None
    fl: int = 0
    n: int = 0


@dataclass
class Model:
    owners: dict[str, str]                      # gtin -> owning party name
    glns: dict[str, str]                        # gln -> party name
    objs: dict[bytes, Obj] = field(default_factory=dict)
    lots: dict[tuple[str, bytes], dict[str, Any]] = field(default_factory=dict)
    events: set[tuple[bytes, str]] = field(default_factory=set)  # (hash, reporter): reports

    # -------------------------------------------------------------- helpers

    def root(self, oid: bytes) -> Obj:
        o = self.objs[oid]
        while o.par is not None:
            o = self.objs[o.par]
        return o

    def children(self, oid: bytes) -> list[bytes]:
        return sorted(k for k, o in self.objs.items() if o.par == oid)

    def descendants(self, oid: bytes) -> list[bytes]:
        out = []
        for c in self.children(oid):
            out.append(c)
            out.extend(self.descendants(c))
        return out

    def live_lots(self, oid: bytes) -> set[tuple[str, bytes]]:
        out = set()
        for x in [oid, *self.descendants(oid)]:
            o = self.objs[x]
            if o.kind == SGTIN and o.st == "active":
                assert o.gtin is not None and o.lot is not None
                out.add((o.gtin, o.lot))
        return out

    def life(self, kind: str, o: Obj | None) -> str | None:
        if o is None:
            return "not_commissioned"
        if o.st == "active":
            return None
        if o.st == "destroyed":
            return "after_destruction"
        if o.st == "decommissioned":
            return "after_decommission"
        return "dispensed_twice" if kind == "dispense" else "after_dispense"

    def detach(self, oid: bytes) -> None:
        o = self.objs[oid]
        r = self.root(oid)
        o.own, o.cus, o.to, o.par = r.own, r.cus, r.to, None

    def retire(self, oid: bytes, status: str, recursive: bool, named: list[bytes]) -> None:
        o = self.objs[oid]
        if o.par is not None:
            self.detach(oid)
        if recursive:
            for d in self.descendants(oid):
                named.append(d)
                x = self.objs[d]
                x.st, x.par, x.own, x.cus, x.to = status, None, o.own, o.cus, None
        else:
            for c in self.children(oid):
                named.append(c)
                self.detach(c)
        o.st, o.to = status, None

    def warnings(self, oid: bytes, exempt: str | None, now: int) -> list[str]:
        rec = exp = False
        for gtin, lot in sorted(self.live_lots(oid)):
            if exempt is not None and self.owners[gtin] == exempt:
                continue
            lr = self.lots[(gtin, lot)]
            rec |= lr["recalled"]
            exp |= expired(now, lr["exp"])
        return [c for c, hit in (("recalled_lot", rec), ("expired_lot", exp)) if hit]

    def scan(self, ev: dict[str, Any], o: Obj) -> list[str]:
        if o.kind != SGTIN:
            return []
        out = []
        if ev.get("lot_id") is not None and ev["lot_id"] != o.lot:
            out.append("lot_mismatch")
        if ev.get("expiry") is not None and ev["expiry"] != o.exp:
            out.append("expiry_mismatch")
        return out

    def holders(self) -> dict[tuple[str, bytes], dict[str, tuple[int, int]]]:
        out: dict[tuple[str, bytes], dict[str, list[int]]] = {}
        for oid, o in self.objs.items():
            if o.kind != SGTIN or o.st != "active":
                continue
            assert o.gtin is not None and o.lot is not None
            r = self.root(oid)
            per = out.setdefault((o.gtin, o.lot), {})
            per.setdefault(r.cus, [0, 0])[0] += 1
            if r.to is not None:
                per.setdefault(r.to, [0, 0])[1] += 1
        return {lk: {p: (a, b) for p, (a, b) in per.items()} for lk, per in out.items()}

    # -------------------------------------------------------------- txs

    def capture(self, reporter: str, events: list[dict[str, Any]], now: int) -> list[list[tuple[str, bytes | None]]]:
        """Apply a batch atomically; the flags of each new event (None for a duplicate)."""
        backup = copy.deepcopy((self.objs, self.lots, self.events))
        try:
            return [self._one(reporter, ev, now) for ev in events]
        except Refused:
            self.objs, self.lots, self.events = backup
            raise

    def _one(self, r: str, ev: dict[str, Any], now: int) -> list[tuple[str, bytes | None]]:
        if (ev["hash"], r) in self.events:
            return None  # type: ignore[return-value]
        kind = kind_of(ev)
        my_gln = next(g for g, n in self.glns.items() if n == r)
        dest = None if ev.get("dest") is None else self.glns.get(ev["dest"])
        if ev.get("dest") is not None and dest is None:
            raise Refused("unknown_party")
        if ev.get("source") is not None and ev["source"] not in self.glns:
            raise Refused("unknown_party")
        if kind == "ship" and ev.get("source") is not None and ev["source"] != my_gln:
            raise Refused("source_not_sender")
        if kind == "receive" and ev.get("dest") is not None and ev["dest"] != my_gln:
            raise Refused("dest_not_sender")
        if kind == "commission" and ev.get("gtin") is not None and self.owners.get(ev["gtin"]) != r:
            raise Refused("not_product_owner")
        flags: list[tuple[str, bytes | None]] = []
        named: list[bytes] = []

        def flag(code: str, oid: bytes) -> None:
            flags.append((code, oid))
            o = self.objs.get(oid)
            if o is not None and not (code == "expiry_mismatch" and kind == "commission") and code not in (
                    "recalled_lot", "expired_lot"):
                o.fl += 1

        if kind == "commission":
            for oid in ev["epcs"]:
                named.append(oid)
                if oid in self.objs:
                    flag("commissioned_twice", oid)
                    continue
                o = Obj(oid[0], None, None, None, own=r, cus=r)
                if oid[0] == SGTIN:
                    lk = (ev["gtin"], ev["lot_id"])
                    if lk not in self.lots:
                        self.lots[lk] = {"exp": ev["expiry"], "recalled": False}
                    elif self.lots[lk]["exp"] != ev["expiry"]:
                        flags.append(("expiry_mismatch", oid))
                    o.gtin, o.lot, o.exp = ev["gtin"], ev["lot_id"], ev["expiry"]
                self.objs[oid] = o
        elif kind in ("pack", "unpack", "check"):
            pid = ev["parent"]
            named.append(pid)
            p = self.objs.get(pid)
            created = p is None and kind == "pack" and pid[0] == SSCC
            if created:
                p = self.objs[pid] = Obj(SSCC, None, None, None, own=r, cus=r)
            code = self.life(kind, p)
            if code is not None:
                flag(code, pid)
            elif kind == "check":
                if set(ev["epcs"]) != set(self.children(pid)):
                    flag("child_set_mismatch", pid)
            elif r not in (self.root(pid).own, self.root(pid).cus):
                flag("not_owner", pid)
            elif kind == "unpack" and not ev["epcs"]:
                kids = self.children(pid)
                if not kids:
                    flag("not_packed", pid)
                for c in kids:
                    named.append(c)
                    self.detach(c)
            else:
                for cid in ev["epcs"]:
                    named.append(cid)
                    c = self.objs.get(cid)
                    code = self.life(kind, c)
                    if code is not None:
                        flag(code, cid)
                        continue
                    assert c is not None
                    codes = self.scan(ev, c)
                    if kind == "pack":
                        anc = [pid]
                        x = self.objs[pid]
                        while x.par is not None:
                            anc.append(x.par)
                            x = self.objs[x.par]
                        if c.par == pid:
                            pass
                        elif cid in anc:
                            raise Refused("aggregation_cycle")
                        elif c.par is not None:
                            codes.append("packed_elsewhere")
                        elif r not in (self.root(cid).own, self.root(cid).cus):
                            codes.append("not_owner")
                    elif c.par != pid:
                        codes.append("not_packed")
                    for code in codes:
                        flag(code, cid)
                    if codes:
                        continue
                    if kind == "pack":
                        if c.par != pid:
                            c.par, c.to = pid, None
                    else:
                        self.detach(cid)
                if created and not self.children(pid):
                    del self.objs[pid]
        elif kind != "record":
            for oid in ev["epcs"]:
                named.append(oid)
                o = self.objs.get(oid)
                code = self.life(kind, o)
                if code is not None:
                    flag(code, oid)
                    continue
                assert o is not None
                root = self.root(oid)
                codes = self.scan(ev, o)
                if kind in ("ship", "dispense", "decommission", "destroy", "void") and root.own != r:
                    codes.append("not_owner")
                if kind == "receive" and root.to != r:
                    codes.append("no_matching_shipment")
                if kind == "void" and (o.par is not None or o.to is None):
                    codes.append("no_matching_shipment")
                for code in codes:
                    flag(code, oid)
                if codes or kind == "observe":
                    continue
                if kind in ("ship", "receive", "dispense"):
                    exempt = dest if kind == "ship" else r if kind == "receive" else None
                    for code in self.warnings(oid, exempt, now):
                        flags.append((code, oid))
                if kind == "ship":
                    if o.par is not None:
                        self.detach(oid)
                    o.to = dest
                elif kind == "receive":
                    if o.par is not None:
                        self.detach(oid)
                    o.own, o.cus, o.to = r, r, None
                elif kind == "void":
                    o.to = None
                elif kind == "dispense":
                    self.retire(oid, "dispensed", True, named)
                elif kind == "destroy":
                    self.retire(oid, "destroyed", True, named)
                else:
                    self.retire(oid, "decommissioned", False, named)
        for oid in set(named):
            if oid in self.objs:
                self.objs[oid].n += 1
        self.events.add((ev["hash"], r))
        return flags

    def recall(self, r: str, gtin: str, lot: bytes) -> None:
        if self.owners[gtin] != r:
            raise Refused("unauthorized")
        lr = self.lots.get((gtin, lot))
        if lr is None:
            raise Refused("unknown_lot")
        if lr["recalled"]:
            raise Refused("already_recalled")
        lr["recalled"] = True
