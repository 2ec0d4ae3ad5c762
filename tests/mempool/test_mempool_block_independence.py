"""Every tx type that declares ``verdict_reads_block=False`` earns it: its admission
verdict (pass, or the refusal's code) and the state it reads are the same under any two
BlockInfos, on the same state. The mempool relies on that to keep such a tx's verdict
after a block that wrote nothing it read (medchaind.mempool, "The re-check after a block").

The states are built by random blocks of the model test's txs (registrations,
accreditation votes and revocations, anchors, consent grants and revocations), so the
verdicts cover both passes and the refusals that depend on state.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mempool_kit import CHAIN_ID, pub
from test_mempool_recheck_model import SENDERS, Chain, make_tx, voter

from medchaind.app import App, BlockInfo
from medchaind.errors import TxRejected
from medchaind.mempool import MempoolConfig, _ReadRecorder
from medchaind.modules import make_app
from medchaind.types import Genesis, Tx

#: the tx types that opt in, with the model's name for the txs that exercise them
OPTED_IN = {
    "identity.register": "register",
    "identity.update": "update",
    "anchor.commit": "anchor",
    "governance.accredit": "accredit",
    "governance.revoke": "revoke",
    "consent.grant": "grant",
    "consent.revoke": "ungrant",
}

blocks = st.builds(BlockInfo, st.just(CHAIN_ID), st.integers(0, 1 << 40), st.integers(0, 1 << 62),
                   st.sampled_from([b"", pub("A"), pub("Z")]))
setup_tx = st.tuples(st.sampled_from(sorted(OPTED_IN.values())), st.sampled_from(SENDERS), st.integers(0, 5))


#: opt-ins whose proof needs its module's test cast, with the test that proves it
PROVEN_ELSEWHERE = {
    "claims.submit": "tests/claims/test_claims_block_independence.py",
}


def test_the_opted_in_types_are_exactly_the_tested_ones() -> None:
    """A new opt-in needs its row here (and so its proof below) or in PROVEN_ELSEWHERE."""
    app = make_app(Genesis(CHAIN_ID, 0, ()))
    assert {t for t, spec in app.specs.items() if not spec.verdict_reads_block} == set(OPTED_IN) | set(PROVEN_ELSEWHERE)


def judge(chain: Chain, tx: Tx, block: BlockInfo) -> tuple[str, list[object], list[object]]:
    """The admission verdict of ``tx`` as its sender's next tx in ``block``, and what it read."""
    app = chain.new.app
    rec = _ReadRecorder(chain.state, 1000)
    n = App.nonce(chain.state, tx.sender)
    try:
        app.check_tx(rec, tx, expected_nonce=n, committed_nonce=n, block=block)
        code = "ok"
    except TxRejected as exc:
        code = exc.code
    app.bodies.discard((tx.hash,))
    return code, list(rec.keys), list(rec.prefixes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx_type=st.sampled_from(sorted(OPTED_IN)), sender=st.sampled_from(SENDERS), pick=st.integers(0, 5),
       setup=st.lists(st.lists(setup_tx, min_size=1, max_size=6), max_size=4), first=blocks, second=blocks)
def test_an_opted_in_verdict_ignores_the_block(tx_type: str, sender: str, pick: int,
                                               setup: list[list[tuple[str, str, int]]],
                                               first: BlockInfo, second: BlockInfo) -> None:
    chain = Chain(MempoolConfig())
    for txs in setup:
        block: list[Tx] = []
        used: dict[str, int] = {}
        for kind, who, p in txs:
            who = voter(kind, who, p)
            block.append(make_tx(chain, kind, who, chain.nonce(who) + used.get(who, 0), p))
            used[who] = used.get(who, 0) + 1
        chain.commit(list({t.hash: t for t in block}.values()))
    sender = voter(OPTED_IN[tx_type], sender, pick)
    tx = make_tx(chain, OPTED_IN[tx_type], sender, chain.nonce(sender), pick)
    assert tx.type == tx_type
    a, b = judge(chain, tx, first), judge(chain, tx, second)
    event(f"{tx_type}: {a[0]}")
    assert a == b


def _accredited(c: Chain, subject: str) -> list[Tx]:
    return [c.tx(a, "governance.accredit", {"subject": pub(subject), "role": "provider"}, c.nonce(a))
            for a in "ABC"]


def _revoked(c: Chain, subject: str) -> list[Tx]:
    return [c.tx(a, "governance.revoke", {"subject": pub(subject), "reason": "audit"}, c.nonce(a)) for a in "ABC"]


def _grant(c: Chain) -> Tx:
    return c.tx("P", "consent.grant", {"actions": ["read"], "decision": "permit", "actor": pub("X")}, c.nonce("P"))


# (case, the blocks that set the state up (each built on the state the previous one left),
# the tx judged, the verdict expected): verdicts the random states above reach rarely
Block = Callable[[Chain], list[Tx]]
CASES: list[tuple[str, list[Block], Callable[[Chain], Tx], str]] = [
    ("anchor already anchored by another sender", [lambda c: [make_tx(c, "anchor", "Q", c.nonce("Q"), 0)]],
     lambda c: make_tx(c, "anchor", "P", c.nonce("P"), 0), "already_anchored"),
    ("revocation that passes", [lambda c: _accredited(c, "X")],
     lambda c: c.tx("D", "governance.revoke", {"subject": pub("X"), "reason": "audit"}, c.nonce("D")), "ok"),
    ("accreditation of an accredited subject", [lambda c: _accredited(c, "X")],
     lambda c: c.tx("D", "governance.accredit", {"subject": pub("X"), "role": "provider"}, c.nonce("D")),
     "already_accredited"),
    ("update of a revoked identity", [lambda c: _accredited(c, "X"), lambda c: _revoked(c, "X")],
     lambda c: make_tx(c, "update", "X", c.nonce("X"), 0), "revoked"),
    ("grant by a patient", [], _grant, "ok"),
    ("grant by a provider", [], lambda c: make_tx(c, "grant", "X", c.nonce("X"), 1), "unauthorized"),
    ("revocation of a grant", [lambda c: [_grant(c)]],
     lambda c: c.tx("P", "consent.revoke", {"grant_id": c.grants[0]}, c.nonce("P")), "ok"),
    ("revocation of a revoked grant",
     [lambda c: [_grant(c)], lambda c: [c.tx("P", "consent.revoke", {"grant_id": c.grants[0]}, c.nonce("P"))]],
     lambda c: c.tx("P", "consent.revoke", {"grant_id": c.grants[0]}, c.nonce("P")), "already_revoked"),
]


@pytest.mark.parametrize(("case", "setup", "judged", "expected"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=25, deadline=None)
@given(first=blocks, second=blocks)
def test_a_pinned_verdict_ignores_the_block(case: str, setup: list[Block], judged: Callable[[Chain], Tx],
                                            expected: str, first: BlockInfo, second: BlockInfo) -> None:
    chain = Chain(MempoolConfig())
    for make_block in setup:
        ex = chain.commit(make_block(chain))
        assert all(r.ok for r in ex.receipts), (case, ex.receipts)
    tx = judged(chain)
    assert tx.type in OPTED_IN
    a, b = judge(chain, tx, first), judge(chain, tx, second)
    assert a == b
    assert a[0] == expected
