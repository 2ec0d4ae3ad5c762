"""Governance votes (medchaind/app/governance.py), driven by scenario tables.

As in geth clique's ``snapshot_test.go``: authorities are named "A".."D" with their
voting power, subjects "X", "Y" (organisations) and "P" (a patient) are registered
before the scenario starts, and every step is one tx committed in its own block with
its expected receipt code. The scenario ends with the expected identity statuses and
the number of open tallies (``governance.pending``).

An action executes when authorities holding *more than* 2/3 of the power have voted
(``3 * power > 2 * total``); its tally is then deleted so the same action can run again
(re-accreditation after a revocation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from app_kit import Chain, accredit_body, make_genesis, pub, revoke_body

from medchaind.errors import TxRejected


@dataclass(frozen=True)
class Step:
    signer: str
    op: str  # "accredit" | "revoke"
    subject: str
    arg: str  # role for accredit, reason for revoke
    code: str


def acc(signer: str, subject: str, role: str = "provider", code: str = "ok") -> Step:
    return Step(signer, "accredit", subject, role, code)


def rev(signer: str, subject: str, reason: str = "licence withdrawn", code: str = "ok") -> Step:
    return Step(signer, "revoke", subject, reason, code)


@dataclass(frozen=True)
class Scenario:
    name: str
    authorities: dict[str, int]
    steps: tuple[Step, ...]
    status: dict[str, str]
    open_tallies: int = 0
    subjects: dict[str, str] = field(
        default_factory=lambda: {"X": "provider", "Y": "provider", "P": "patient"}
    )


ONE = {"A": 1}
FOUR = {"A": 1, "B": 1, "C": 1, "D": 1}
UNEQUAL = {"A": 5, "B": 1, "C": 1, "D": 1}  # total 8: A alone has 5/8 < 2/3

SCENARIOS = [
    # -- a single authority decides alone
    Scenario(
        "one authority: a single vote accredits at once", ONE, (acc("A", "X"),), {"X": "accredited"}
    ),
    Scenario(
        "one authority: accrediting twice is refused",
        ONE,
        (acc("A", "X"), acc("A", "X", code="already_accredited")),
        {"X": "accredited"},
    ),
    Scenario(
        "one authority: accredit, revoke, re-accredit",
        ONE,
        (acc("A", "X"), rev("A", "X"), acc("A", "X")),
        {"X": "accredited"},
    ),
    # -- four equal authorities: 3 of 4 needed (2/4 = 1/2, 3/4 > 2/3)
    Scenario(
        "four authorities: two votes are not enough",
        FOUR,
        (acc("A", "X"), acc("B", "X")),
        {"X": "pending"},
        open_tallies=1,
    ),
    Scenario(
        "four authorities: the third vote executes",
        FOUR,
        (acc("A", "X"), acc("B", "X"), acc("C", "X")),
        {"X": "accredited"},
    ),
    Scenario(
        "four authorities: a late fourth vote is refused, the action already ran",
        FOUR,
        (acc("A", "X"), acc("B", "X"), acc("C", "X"), acc("D", "X", code="already_accredited")),
        {"X": "accredited"},
    ),
    Scenario(
        "four authorities: a duplicate vote is refused and not counted twice",
        FOUR,
        (acc("A", "X"), acc("A", "X", code="duplicate_vote"), acc("B", "X")),
        {"X": "pending"},
        open_tallies=1,
    ),
    Scenario(
        "four authorities: tallies for different subjects do not pool",
        FOUR,
        (acc("A", "X"), acc("B", "Y"), acc("C", "X")),
        {"X": "pending", "Y": "pending"},
        open_tallies=2,
    ),
    Scenario(
        "four authorities: revoke needs 2/3 too, and reasons may differ",
        FOUR,
        (
            acc("A", "X"),
            acc("B", "X"),
            acc("C", "X"),
            rev("A", "X", "forged licence"),
            rev("B", "X", "audit failed"),
        ),
        {"X": "accredited"},
        open_tallies=1,
    ),
    Scenario(
        "four authorities: the third revoke vote executes",
        FOUR,
        (
            acc("A", "X"),
            acc("B", "X"),
            acc("C", "X"),
            rev("A", "X", "forged licence"),
            rev("B", "X", "audit failed"),
            rev("D", "X", "fraud"),
        ),
        {"X": "revoked"},
    ),
    # The tally of the first accreditation was deleted when it ran: A's new vote is a
    # fresh vote, not a duplicate, and two fresh votes do not re-accredit.
    Scenario(
        "four authorities: re-accreditation after revoke starts a fresh tally",
        FOUR,
        (
            acc("A", "X"),
            acc("B", "X"),
            acc("C", "X"),
            rev("A", "X"),
            rev("B", "X"),
            rev("C", "X"),
            acc("A", "X"),
            acc("B", "X"),
        ),
        {"X": "revoked"},
        open_tallies=1,
    ),
    Scenario(
        "four authorities: re-accreditation completes with the third fresh vote",
        FOUR,
        (
            acc("A", "X"),
            acc("B", "X"),
            acc("C", "X"),
            rev("A", "X"),
            rev("B", "X"),
            rev("C", "X"),
            acc("D", "X"),
            acc("A", "X"),
            acc("B", "X"),
        ),
        {"X": "accredited"},
    ),
    # -- unequal power
    Scenario(
        "unequal powers: the big authority alone (5/8) is not enough",
        UNEQUAL,
        (acc("A", "X"),),
        {"X": "pending"},
        open_tallies=1,
    ),
    Scenario(
        "unequal powers: big plus one small (6/8) passes",
        UNEQUAL,
        (acc("A", "X"), acc("B", "X")),
        {"X": "accredited"},
    ),
    Scenario(
        "unequal powers: all three small ones (3/8) are not enough",
        UNEQUAL,
        (acc("B", "X"), acc("C", "X"), acc("D", "X")),
        {"X": "pending"},
        open_tallies=1,
    ),
    Scenario(
        "unequal powers: the big one completes the small ones' tally",
        UNEQUAL,
        (acc("B", "X"), acc("C", "X"), acc("D", "X"), acc("A", "X")),
        {"X": "accredited"},
    ),
    Scenario(
        "two equal authorities: both are needed (1/2 is not > 2/3)",
        {"A": 1, "B": 1},
        (acc("A", "X"),),
        {"X": "pending"},
        open_tallies=1,
    ),
    # -- who may vote
    Scenario(
        "an accredited organisation is no authority",
        ONE,
        (acc("A", "X"), acc("X", "Y", code="unauthorized")),
        {"X": "accredited", "Y": "pending"},
    ),
    Scenario(
        "an unregistered stranger is no authority",
        FOUR,
        (acc("Z", "X", code="unauthorized"),),
        {"X": "pending"},
    ),
    Scenario(
        "a stranger cannot revoke",
        ONE,
        (acc("A", "X"), rev("Z", "X", code="unauthorized")),
        {"X": "accredited"},
    ),
    # -- what may be voted on
    Scenario(
        "role mismatch: registered as provider, voted as pharmacy",
        ONE,
        (acc("A", "X", role="pharmacy", code="role_mismatch"),),
        {"X": "pending"},
    ),
    Scenario(
        "role mismatch: a patient cannot be accredited as a provider",
        ONE,
        (acc("A", "P", role="provider", code="role_mismatch"),),
        {"P": "active"},
    ),
    Scenario(
        "patient is not an accreditable role",
        ONE,
        (acc("A", "P", role="patient", code="invalid_body"),),
        {"P": "active"},
    ),
    Scenario(
        "accrediting an unknown subject",
        ONE,
        (acc("A", "Nobody", code="unknown_subject"),),
        {"X": "pending"},
    ),
    Scenario(
        "revoking a pending (never accredited) subject",
        ONE,
        (rev("A", "X", code="not_accredited"),),
        {"X": "pending"},
    ),
    Scenario("revoking a patient", ONE, (rev("A", "P", code="not_accredited"),), {"P": "active"}),
    Scenario(
        "revoking twice: the second finds the subject revoked",
        ONE,
        (acc("A", "X"), rev("A", "X"), rev("A", "X", code="not_accredited")),
        {"X": "revoked"},
    ),
    Scenario(
        "revoke needs a reason",
        ONE,
        (acc("A", "X"), rev("A", "X", reason="", code="invalid_body")),
        {"X": "accredited"},
    ),
]


def _tx(c: Chain, s: Step):  # type: ignore[no-untyped-def]
    if s.op == "accredit":
        return c.tx(s.signer, "governance.accredit", accredit_body(s.subject, s.arg))
    return c.tx(s.signer, "governance.revoke", revoke_body(s.subject, s.arg))


@pytest.mark.parametrize("sc", SCENARIOS, ids=lambda sc: sc.name)
def test_governance_scenario(sc: Scenario) -> None:
    c = Chain(make_genesis(sc.authorities))
    for name, role in sc.subjects.items():
        c.register(name, role)

    for i, step in enumerate(sc.steps):
        tx = _tx(c, step)
        # Admission dry-runs the same handler on committed state: same verdict.
        if step.code == "ok":
            c.app.check_tx(c.state, tx, expected_nonce=c.nonce(step.signer))
        else:
            with pytest.raises(TxRejected) as err:
                c.app.check_tx(c.state, tx, expected_nonce=c.nonce(step.signer))
            assert err.value.code == step.code, f"step {i} {step}"
        receipt = c.commit([tx]).receipts[0]
        assert receipt.code == step.code, f"step {i} {step}: {receipt}"
        assert receipt.ok or receipt.reason

    for name, status in sc.status.items():
        assert c.status(name) == status, name
    assert len(c.app.query(c.state, "governance.pending", {})) == sc.open_tallies


def test_executed_vote_emits_events_and_records_the_change_height() -> None:
    c = Chain(make_genesis(FOUR))
    c.register("X", "provider")  # height 1
    aid = None
    for signer in "AB":
        r = c.send(signer, "governance.accredit", accredit_body("X"))
        assert [e["type"] for e in r.events] == ["governance.voted"]
        aid = r.events[0]["action_id"]
    r = c.send("C", "governance.accredit", accredit_body("X"))  # height 4
    assert r.events == (
        {"type": "governance.executed", "action_id": aid, "power": 3, "total": 4},
        {"type": "governance.accredited", "subject": pub("X"), "role": "provider"},
    )
    ident = c.identity("X")
    assert ident is not None
    assert (ident["status"], ident["registered_at"], ident["changed_at"]) == ("accredited", 1, 4)


def test_revocation_event_carries_the_executing_vote_reason() -> None:
    c = Chain(make_genesis(ONE))
    c.register("X", "provider")
    c.send("A", "governance.accredit", accredit_body("X"))
    r = c.send("A", "governance.revoke", revoke_body("X", "forged licence"))
    assert r.events[-1] == {
        "type": "governance.revoked",
        "subject": pub("X"),
        "reason": "forged licence",
    }


def test_failed_vote_writes_nothing_but_the_nonce() -> None:
    c = Chain(make_genesis(FOUR))
    c.register("X", "provider")
    c.send("A", "governance.accredit", accredit_body("X"))
    ex = c.commit([c.tx("A", "governance.accredit", accredit_body("X"))])
    assert ex.receipts[0].code == "duplicate_vote"
    assert list(ex.writes) == [("auth", b"n/" + pub("A"))]


def test_votes_in_one_block_accumulate() -> None:
    c = Chain(make_genesis(FOUR))
    c.register("X", "provider")
    ex = c.commit([c.tx(s, "governance.accredit", accredit_body("X")) for s in "ABCD"])
    assert [r.code for r in ex.receipts] == ["ok", "ok", "ok", "already_accredited"]
    assert c.status("X") == "accredited"
    assert c.app.query(c.state, "governance.pending", {}) == []
