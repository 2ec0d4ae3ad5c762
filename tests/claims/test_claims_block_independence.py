"""``claims.submit`` declares ``verdict_reads_block=False``: its admission verdict (pass,
or the refusal's code) and the state it reads are the same under any two BlockInfos, on
the same state. The mempool relies on that to keep a pending claim's verdict after a
block that wrote nothing the claim's check read (medchaind.mempool, "The re-check after a
block"; the other opted-in types are proven in
tests/mempool/test_mempool_block_independence.py).

The states: the claims cast (enrolled providers, payers, patients with encounters),
then random claims already submitted, acknowledged, adjudicated or voided, so that the
judged claim meets duplicates (exact and suspect), no-service-on-record and coordination
of benefits flags, replacements and voids of originals in every status, and the party
and enrollment refusals.
"""

from __future__ import annotations

from typing import Any

from claims_kit import BILLING, BILLING2, DOS, DOS2, ClaimsChain, adjudication, claim, line, submit_body
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from medchaind.app import App, BlockInfo
from medchaind.errors import TxRejected
from medchaind.mempool import _ReadRecorder
from medchaind.testing.appkit import pub

_BASE: list[ClaimsChain] = []


def base() -> ClaimsChain:
    """The cast, built once; each example works on a copy of its state."""
    if not _BASE:
        c = ClaimsChain.setup()
        c.encs = [c.encounter(tag="e1"), c.encounter("PT2", tag="e2")]  # type: ignore[attr-defined]
        _BASE.append(c)
    c0 = _BASE[0]
    c = ClaimsChain(c0.genesis)
    c.state = type(c0.state)(dict(c0.state.data))
    c.app_hash, c.height, c.time_ms = c0.app_hash, c0.height, c0.time_ms
    c.encs = c0.encs  # type: ignore[attr-defined]
    return c


lines_st = st.lists(
    st.builds(lambda code, date, charge, units: (code, date, charge, units),
              st.sampled_from(["99213", "99214", "J1100"]), st.sampled_from([DOS, DOS2]),
              st.sampled_from([100, 12500]), st.sampled_from([1000, 2000])),
    min_size=1, max_size=3)
claim_st = st.fixed_dictionaries({
    "pcn": st.sampled_from(["PCN1", "PCN2"]),
    "member": st.sampled_from(["MBR1", "MBR2"]),
    "lines": lines_st,
    "provider": st.sampled_from(["PRV", "PRV", "PRV2", "X"]),
    "payer": st.sampled_from(["PAY", "PAY2"]),
    "sequence": st.sampled_from(["P", "P", "S"]),
    "encounter": st.sampled_from([None, 0, 1]),
    # 1: original; 7 / 8: replaces / voids the latest claim submitted before it
    "frequency": st.sampled_from([1, 1, 1, 7, 8]),
    # what happens to it once submitted
    "then": st.sampled_from([None, "ack", "adjudicate"]),
})
blocks = st.builds(BlockInfo, st.just("medchain-test"), st.integers(0, 1 << 40), st.integers(0, 1 << 62),
                   st.sampled_from([b"", pub("A")]))


def body(c: ClaimsChain, spec: dict[str, Any], original: bytes | None) -> dict[str, Any]:
    billing = BILLING2 if spec["provider"] == "PRV2" else BILLING
    ls = [line(i + 1, code, charge, units=units, date=date)
          for i, (code, date, charge, units) in enumerate(spec["lines"])]
    freq = spec["frequency"] if original is not None else 1
    payer = "PAY" if spec["provider"] == "PRV2" else spec["payer"]
    cl = claim(spec["pcn"], member=spec["member"], lines=ls, frequency=freq, billing=billing,
               sequence=spec["sequence"], original_icn="ICN-" + spec["pcn"] if freq != 1 else None)
    enc = spec["encounter"]
    provider = spec["provider"] if spec["provider"] != "X" else "PRV"
    return submit_body(cl, payer=payer, provider=provider, original=original if freq != 1 else None,
                       encounters={1: c.encs[enc]} if enc is not None and provider == "PRV" else None)  # type: ignore[attr-defined]


def judge(c: ClaimsChain, sender: str, b: dict[str, Any], block: BlockInfo) -> tuple[str, list[Any], list[Any]]:
    tx = c.tx(sender, "claims.submit", b)
    rec = _ReadRecorder(c.state, 10_000)
    n = App.nonce(c.state, tx.sender)
    try:
        c.app.check_tx(rec, tx, expected_nonce=n, committed_nonce=n, block=block)
        code = "ok"
    except TxRejected as exc:
        code = exc.code
    c.app.bodies.discard((tx.hash,))
    return code, list(rec.keys), list(rec.prefixes)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(claim_st, max_size=4), judged=claim_st, first=blocks, second=blocks)
def test_a_claims_submit_verdict_ignores_the_block(history: list[dict[str, Any]], judged: dict[str, Any],
                                                   first: BlockInfo, second: BlockInfo) -> None:
    c = base()
    last: bytes | None = None
    for spec in history:
        sender = spec["provider"]
        r = c.send(sender, "claims.submit", body(c, spec, last))
        if not r.ok:
            continue
        claim_id = bytes(next(e for e in r.events if e["type"] == "claims.submitted")["claim_id"])
        last = claim_id
        payer = "PAY" if sender == "PRV2" else spec["payer"]
        if spec["then"] is not None:
            c.send(payer, "claims.ack", {"claim_id": claim_id, "category": "A2", "status_code": "20"})
        if spec["then"] == "adjudicate":
            got = c.query("claims.get", {"claim_id": claim_id})
            if got is not None and got["status"] == "acknowledged":
                c.send(payer, "claims.adjudicate", adjudication(got, 0))
    b = body(c, judged, last)
    a, z = judge(c, judged["provider"], b, first), judge(c, judged["provider"], b, second)
    event(f"claims.submit: {a[0]}")
    assert a == z
