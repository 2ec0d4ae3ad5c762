"""The claim lifecycle against a small reference model (hypothesis).

Random sequences of submit / replace / void / ack / adjudicate / pay / appeal run on the
real state machine and on :class:`Model`, a dozen lines of plain Python that says what
the lifecycle is (machine.py's theory of operation). After every step both agree on the
outcome (ok, or the refusal code) and on every claim's status and pending change. Each
claim bills its own procedure code with a valid encounter, so no detection interferes:
the detections have their own table tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from claims_kit import ClaimsChain, adjudication, claim, line, pay_body, submit_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CHANGEABLE = {"accepted", "adjudicated", "paid", "denied", "appealed"}


@dataclass
class M:
    frequency: int
    original: int | None
    status: str = "submitted"
    pending: int | None = None
    acked: bool = False
    paid: int = 0
    paid_out: int = 0


class Model:
    def __init__(self) -> None:
        self.claims: list[M] = []

    def submit(self) -> str:
        self.claims.append(M(1, None))
        return "ok"

    def change(self, i: int, frequency: int) -> str:
        o = self.claims[i]
        if o.frequency == 8:
            return "original_is_void"
        refusal = {"voided": "original_voided", "replaced": "original_replaced", "rejected": "original_rejected"}
        if o.status in refusal:
            return refusal[o.status]
        if o.status not in CHANGEABLE:
            return "original_not_acknowledged"
        if o.pending is not None:
            return "change_pending"
        o.pending = len(self.claims)
        self.claims.append(M(frequency, i))
        return "ok"

    def ack(self, i: int, accept: bool) -> str:
        c = self.claims[i]
        if c.acked:
            return "already_acknowledged"
        if c.status != "submitted":
            return "not_submitted"
        c.acked = True
        c.status = "accepted" if accept else "rejected"
        if c.original is not None:
            o = self.claims[c.original]
            o.pending = None
            if accept:
                o.status = "replaced" if c.frequency == 7 else "voided"
        return "ok"

    def adjudicate(self, i: int, pays: bool) -> str:
        c = self.claims[i]
        if c.frequency == 8:
            return "void_not_adjudicated"
        if c.status not in ("accepted", "appealed"):
            return "not_adjudicable"
        if c.paid_out and not pays:
            return "below_paid"  # a re-adjudication never takes back what was paid
        c.status, c.paid = "adjudicated", int(pays)
        return "ok"

    def pay(self, i: int) -> str:
        c = self.claims[i]
        if c.status != "adjudicated":
            return "not_adjudicated"
        c.status = "paid" if c.paid else "denied"
        c.paid_out = c.paid_out or c.paid
        return "ok"

    def appeal(self, i: int) -> str:
        c = self.claims[i]
        if c.status not in ("paid", "denied") or c.frequency == 8:
            return "not_appealable"
        c.status = "appealed"
        return "ok"


#: weighted towards the steps that move a claim forward, so sequences reach payment and appeal
OPS = st.sampled_from(["submit", "replace", "void", "ack", "ack", "ack", "reject", "adjudicate_paid",
                       "adjudicate_paid", "adjudicate_zero", "pay", "pay", "pay", "appeal"])


class Runner:
    def __init__(self) -> None:
        self.c = ClaimsChain.setup()
        self.enc = self.c.encounter()
        self.ids: list[bytes] = []
        self.docs: list[dict[str, Any]] = []
        self.traces = 0

    def _claim(self, k: int, frequency: int = 1) -> dict[str, Any]:
        code = f"1{k:04d}"
        return claim(f"PCN{k}", frequency=frequency, original_icn=None if frequency == 1 else f"ICN{k}",
                     lines=[line(code=code, charge=1000 + k)])

    def send(self, name: str, type_: str, body: dict[str, Any]) -> str:
        r = self.c.send(name, type_, body)
        if r.ok:
            for e in r.events:
                if e["type"] == "claims.submitted":
                    self.ids.append(bytes(e["claim_id"]))
        return "ok" if r.ok else r.code

    def run(self, op: str, i: int) -> str:
        c = self.c
        if op == "submit":
            doc = self._claim(len(self.ids))
            return self.send("PRV", "claims.submit", submit_body(doc, encounters={1: self.enc}))
        if op in ("replace", "void"):
            freq = 7 if op == "replace" else 8
            orig = self.ids[i]
            # a replacement bills a new service; a void copies its original
            doc = self._claim(len(self.ids), 7) if freq == 7 else self._claim(i, 8)
            return self.send("PRV", "claims.submit", submit_body(doc, encounters={1: self.enc}, original=orig))
        cid = self.ids[i]
        if op in ("ack", "reject"):
            return self.send("PAY", "claims.ack", {"claim_id": cid, "category": "A2" if op == "ack" else "A7",
                                                   "status_code": "20"})
        if op.startswith("adjudicate"):
            got = c.get(cid)
            paid = got["total_cents"] if op == "adjudicate_paid" else 0
            return self.send("PAY", "claims.adjudicate", adjudication(got, paid))
        if op == "pay":
            self.traces += 1
            return self.send("PAY", "claims.pay", pay_body(c, [cid], trace=f"T{self.traces}"))
        assert op == "appeal"
        return self.send("PRV", "claims.appeal", {"claim_id": cid})


def expect(model: Model, op: str, i: int) -> str:
    if op == "submit":
        return model.submit()
    if op in ("replace", "void"):
        return model.change(i, 7 if op == "replace" else 8)
    if op in ("ack", "reject"):
        return model.ack(i, op == "ack")
    if op.startswith("adjudicate"):
        return model.adjudicate(i, op == "adjudicate_paid")
    return model.pay(i) if op == "pay" else model.appeal(i)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(OPS, st.integers(0, 2)), min_size=12, max_size=40))
def test_lifecycle_matches_the_reference_model(steps: list[tuple[str, int]]) -> None:
    model, run = Model(), Runner()
    for op, k in steps:
        if op != "submit" and not model.claims:
            op = "submit"
        i = max(0, len(model.claims) - 1 - k)  # mostly the newest claims: deep lifecycles
        expected = expect(model, op, i)
        got = run.run(op, i)
        assert got == expected, (op, i, got, expected)
        assert len(run.ids) == len(model.claims)
        for j, m in enumerate(model.claims):
            onchain = run.c.get(run.ids[j])
            pending = None if m.pending is None else "0x" + run.ids[m.pending].hex()
            assert (onchain["status"], onchain["pending_change"]) == (m.status, pending), (j, op)
            assert onchain["flags"] == [], onchain["flags"]
