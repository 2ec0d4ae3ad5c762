"""Builders for the claims state-machine tests, on :mod:`medchaind.testing.appkit`.

Actors: ``A`` the sole authority; ``PRV`` / ``PRV2`` accredited providers; ``PAY`` /
``PAY2`` accredited payers; ``PT`` / ``PT2`` patients (records' pseudonymous keys); ``X``
a registered provider that is not accredited. ``PRV`` is enrolled with ``PAY`` and
``PAY2`` under billing NPI :data:`BILLING`; ``PRV2`` with ``PAY`` under :data:`BILLING2`.

Claims are built as canonical claims (:mod:`medchaind.modules.claims.canonical`) and
turned into ``claims.submit`` bodies with the real blinding code, so the tests also run
the client's half of the protocol.
"""

from __future__ import annotations

import hashlib
from typing import Any

from medchaind.modules.claims import canonical
from medchaind.testing.appkit import GENESIS_TIME_MS, AppChain, pub

BILLING = "1234567893"
BILLING2 = "1987654328"
RENDERING = "1245319599"
RENDERING2 = "1555123458"
#: pair keys (the payer draws them at random; fixed here)
PAIR = {("PAY", "PRV"): b"\x01" * 32, ("PAY2", "PRV"): b"\x02" * 32, ("PAY", "PRV2"): b"\x03" * 32}
#: the month the harness's blocks fall in (GENESIS_TIME_MS is 2025-11-24)
MONTH = 202511
DOS = "20251124"
DOS2 = "20251125"
assert GENESIS_TIME_MS // 86_400_000 * 86_400_000 <= GENESIS_TIME_MS


def sealed(tag: str) -> bytes:
    """An 80-byte stand-in for a key sealed to someone (opaque to the chain)."""
    return hashlib.sha512(b"sealed/" + tag.encode()).digest()[:80].ljust(80, b"\x00")


def digest(tag: str) -> bytes:
    return hashlib.sha256(b"claims-test/" + tag.encode()).digest()


def line(n: int = 1, code: str = "99213", charge: int = 12500, *, units: int = 1000, date: str = DOS,
         to: str | None = None, mods: tuple[str, ...] = (), pos: str | None = None,
         rendering: str | None = None, revenue: str | None = None) -> dict[str, Any]:
    return {"n": n, "code": code, "revenue": revenue, "modifiers": sorted(mods), "units_milli": units,
            "charge_cents": charge, "from": date, "to": to or date, "pos": pos, "rendering_npi": rendering}


def claim(pcn: str = "PCN0001", *, member: str = "MBR0001", birth: str = "19800214",
          lines: list[dict[str, Any]] | None = None,
          frequency: int = 1, original_icn: str | None = None, billing: str = BILLING, sequence: str = "P",
          kind: str = "professional", facility: str = "11", last: str = "DOE") -> dict[str, Any]:
    ls = lines if lines is not None else [line()]
    return {
        "v": 1, "kind": kind, "payer_id": "ACME01", "billing_npi": billing, "rendering_npi": RENDERING,
        "member_id": member, "patient": {"last": last, "first": "JANE", "birth_date": birth, "sex": "F"},
        "pcn": pcn, "total_cents": sum(x["charge_cents"] for x in ls), "facility": facility, "frequency": frequency,
        "original_icn": original_icn, "sequence": sequence, "diagnoses": ["J069"], "lines": ls,
    }


def submit_body(c: dict[str, Any], *, payer: str = "PAY", provider: str = "PRV",
                encounters: dict[int, bytes] | None = None, original: bytes | None = None) -> dict[str, Any]:
    return canonical.submit_body(
        c, PAIR[(payer, provider)], payer=pub(payer), content_hash=digest("doc/" + c["pcn"] + str(c["frequency"])),
        size=1000, envelopes=[{"recipient": pub(payer), "sealed_key": sealed(payer)},
                              {"recipient": pub(provider), "sealed_key": sealed(provider)}],
        encounters=encounters, original=original,
    )


def icn(payer: str, provider: str, value: str) -> bytes:
    return canonical.icn_key(PAIR[(payer, provider)], value)


def event(receipt: Any, kind: str) -> dict[str, Any]:
    return next(e for e in receipt.events if e["type"] == kind)


class ClaimsChain(AppChain):
    """An :class:`AppChain` with the claims cast registered, accredited and enrolled."""

    @classmethod
    def setup(cls) -> ClaimsChain:
        c = cls(AppChain.of().genesis)
        c.cast([("PRV", "provider"), ("PRV2", "provider"), ("PAY", "payer"), ("PAY2", "payer"),
                ("PT", "patient"), ("PT2", "patient"), ("X", "provider")],
               accredited=[("PRV", "provider"), ("PRV2", "provider"), ("PAY", "payer"), ("PAY2", "payer")])
        c.enroll("PAY", "PRV", [BILLING])
        c.enroll("PAY2", "PRV", [BILLING])
        c.enroll("PAY", "PRV2", [BILLING2])
        # PT and PT2 let PRV write their records (the encounters claims point at)
        for p in ("PT", "PT2"):
            c.ok(p, "consent.grant", {"actor": pub("PRV"), "actions": ["write", "read"], "decision": "permit"})
        return c

    def enroll(self, payer: str, provider: str, npis: list[str]) -> Any:
        return self.ok(payer, "claims.enroll", {
            "provider": pub(provider), "npis": npis,
            "envelopes": [{"recipient": pub(payer), "sealed_key": sealed(payer)},
                          {"recipient": pub(provider), "sealed_key": sealed(provider)}],
        })

    def encounter(self, patient: str = "PT", author: str = "PRV", resource_type: str = "Encounter",
                  tag: str = "enc") -> bytes:
        r = self.ok(author, "records.add", {
            "patient": pub(patient), "resource_type": resource_type, "content_hash": digest("record/" + tag),
            "size": 100, "envelopes": [{"recipient": pub(patient), "sealed_key": sealed(patient)}],
        })
        return bytes(event(r, "records.added")["record_id"])

    def submit(self, c: dict[str, Any], *, provider: str = "PRV", payer: str = "PAY",
               encounters: dict[int, bytes] | None = None, original: bytes | None = None) -> bytes:
        r = self.ok(provider, "claims.submit",
                    submit_body(c, payer=payer, provider=provider, encounters=encounters, original=original))
        return bytes(event(r, "claims.submitted")["claim_id"])

    def get(self, claim_id: bytes) -> dict[str, Any]:
        got = self.query("claims.get", {"claim_id": claim_id})
        assert got is not None
        return got  # type: ignore[no-any-return]

    def status(self, claim_id: bytes) -> str:
        return str(self.get(claim_id)["status"])

    def ack(self, claim_id: bytes, category: str = "A2", *, payer: str = "PAY", icn_value: str | None = None,
            provider: str = "PRV") -> Any:
        body: dict[str, Any] = {"claim_id": claim_id, "category": category, "status_code": "20"}
        if icn_value is not None:
            body["icn"] = icn(payer, provider, icn_value)
        return self.ok(payer, "claims.ack", body)

    def adjudicate(self, claim_id: bytes, paid: int, *, payer: str = "PAY", status: int = 1,
                   pr: int = 0, reason: str = "45") -> Any:
        """Adjudicate every line, paying ``paid`` on the first and nothing on the others."""
        return self.ok(payer, "claims.adjudicate", adjudication(self.get(claim_id), paid, status=status, pr=pr,
                                                                reason=reason))

    def pay(self, claims: list[bytes], *, payer: str = "PAY", provider: str = "PRV", trace: str = "T1",
            plb: list[tuple[str, int]] | None = None, total: int | None = None) -> Any:
        return self.ok(payer, "claims.pay", pay_body(self, claims, payer=payer, provider=provider, trace=trace,
                                                     plb=plb, total=total))


def adjudication(got: dict[str, Any], paid: int, *, status: int = 1, pr: int = 0, reason: str = "45") -> dict[str, Any]:
    """A balanced ``claims.adjudicate`` body: line 1 pays ``paid`` (``pr`` of it patient
    responsibility), the rest is written off with CO-``reason``."""
    lines = []
    for i, ln in enumerate(got["lines"]):
        p = paid if i == 0 else 0
        adjs = []
        if pr:
            adjs.append({"group": "PR", "reason": "2", "amount": pr} if i == 0 else None)
        rest = ln["charge_cents"] - p - (pr if i == 0 else 0)
        if rest:
            adjs.append({"group": "CO", "reason": reason, "amount": rest})
        lines.append({"n": ln["n"], "charge": ln["charge_cents"], "paid": p,
                      "adjustments": [a for a in adjs if a is not None]})
    return {"claim_id": bytes.fromhex(got["claim_id"][2:]), "clp_status": status, "charge": got["total_cents"],
            "paid": paid, "patient_resp": pr, "adjustments": [], "lines": lines}


def pay_body(chain: ClaimsChain, claims: list[bytes], *, payer: str = "PAY", provider: str = "PRV", trace: str = "T1",
             plb: list[tuple[str, int]] | None = None, total: int | None = None) -> dict[str, Any]:
    due = sum(chain.get(c)["paid_cents"] - chain.get(c)["paid_out_cents"] for c in claims)
    adj = sum(a for _, a in plb or [])
    body: dict[str, Any] = {"provider": pub(provider), "trace": digest("trace/" + trace), "method": "ACH",
                            "total": due - adj if total is None else total, "claims": claims}
    if plb:
        body["plb"] = [{"reason": r, "amount": a} for r, a in plb]
    return body
