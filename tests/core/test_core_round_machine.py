"""Scenario tables for the round state machine (geth clique ``snapshot_test`` style).

Four validators "A".."D" with equal power (n = 4, f = 1: quorum 3, f+1 = 2). Names are in
sorted key order, so the proposer of (height h, round r) is validator (h + r) mod 4: at
height 1, B proposes round 0, C round 1, D round 2, A round 3. Each case is the node of
``me`` fed a script of inputs; after each input we compare the effects it produced,
including those of its own signed messages looped back as a host does, with the
expected list. Timeouts are the defaults: propose 3000 + 500/round, prevote and
precommit 1000 + 500/round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from medchaind.testing.cast import Cast
from medchaind.testing.script import ScriptHost

# A step: (input builder name, *args[, {kwargs}]) -> expected effects.
Step = tuple[tuple[Any, ...], list[str]]


@dataclass
class Case:
    name: str
    me: str
    script: list[Step]
    n: int = 4
    height: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


PREVOTE_X = ["wal prevote r0 X", "sign prevote r0 X", "broadcast prevote A r0 X"]
PRECOMMIT_X = ["wal polka r0 X by A,B,C", "wal precommit r0 X", "sign precommit r0 X",
               "broadcast precommit A r0 X"]

# Shared prefix: A locks X in round 0; the round ends without a decision (B and C
# precommitted nil, so 2f+1 precommits but not for X), and A moves to round 1, where C
# proposes Y afresh; A prevotes nil (it is locked on X), B and C prevote Y, A's prevote
# timeout ends the round with nil precommits, and A enters round 2 (D proposes).
LOCKED_ON_X_IN_ROUND_2: list[Step] = [
    (("start",), ["timeout propose r0 3000ms"]),
    (("proposal", "B", 0, "X"), PREVOTE_X),
    (("prevote", "B", 0, "X"), []),
    (("prevote", "C", 0, "X"), PRECOMMIT_X),
    (("precommit", "B", 0, None), []),
    (("precommit", "C", 0, None), ["timeout precommit r0 1000ms"]),
    (("timeout", "precommit", 0), ["timeout propose r1 3500ms"]),
    (("proposal", "C", 1, "Y"),
     ["wal prevote r1 nil", "sign prevote r1 nil", "broadcast prevote A r1 nil"]),
    (("prevote", "B", 1, "Y"), []),
    (("prevote", "C", 1, "Y"), ["timeout prevote r1 1500ms"]),
    (("timeout", "prevote", 1),
     ["wal precommit r1 nil", "sign precommit r1 nil", "broadcast precommit A r1 nil"]),
    (("precommit", "B", 1, None), []),
    (("precommit", "C", 1, None), ["timeout precommit r1 1500ms"]),
    (("timeout", "precommit", 1), ["timeout propose r2 4000ms"]),
]

CASES = [
    Case(
        # Happy path: B proposes X, three prevotes lock it (L36), three precommits
        # decide it (L49); the commit carries exactly those three precommits.
        "happy path", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("proposal", "B", 0, "X"), PREVOTE_X),
            (("prevote", "B", 0, "X"), []),
            (("prevote", "C", 0, "X"), PRECOMMIT_X),
            (("precommit", "B", 0, "X"), []),
            (("precommit", "C", 0, "X"), ["decide r0 X by A,B,C"]),
            (("precommit", "D", 0, "X"), []),
        ]),
    Case(
        # The proposer: StartRound asks the host for a block (L16-L17), proposes it with
        # validRound -1 (L18), then prevotes it when its own proposal loops back (L22).
        "proposer builds, proposes and prevotes", "B", [
            (("start",), ["request value r0", "timeout propose r0 3000ms"]),
            (("value", 0, "X"),
             ["wal proposal r0 X", "sign proposal r0 X", "broadcast proposal B r0 X",
              "wal prevote r0 X", "sign prevote r0 X", "broadcast prevote B r0 X"]),
            (("value", 0, "Y"), []),  # a late second block is ignored
        ]),
    Case(
        # Dev mode: one authority is its own quorum and decides alone.
        "single validator decides alone", "A", [
            (("start",), ["request value r0", "timeout propose r0 3000ms"]),
            (("value", 0, "X"),
             ["wal proposal r0 X", "sign proposal r0 X", "broadcast proposal A r0 X",
              "wal prevote r0 X", "sign prevote r0 X", "broadcast prevote A r0 X",
              "wal polka r0 X by A", "wal precommit r0 X", "sign precommit r0 X",
              "broadcast precommit A r0 X", "decide r0 X by A"]),
        ], n=1),
    Case(
        # Locking (L22-L27): locked on X since round 0, A prevotes nil for a fresh Y in
        # round 1, and prevotes X again when D re-proposes X in round 2 (lockedValue = v).
        "locking across rounds", "A", [
            *LOCKED_ON_X_IN_ROUND_2,
            (("proposal", "D", 2, "X"),
             ["wal prevote r2 X", "sign prevote r2 X", "broadcast prevote A r2 X"]),
        ]),
    Case(
        # No unlock without a POL: D proposes Y in round 2 with validRound -1; A is
        # still locked on X (L23 false) and prevotes nil.
        "no unlock without a proof of lock", "A", [
            *LOCKED_ON_X_IN_ROUND_2,
            (("proposal", "D", 2, "Y"),
             ["wal prevote r2 nil", "sign prevote r2 nil", "broadcast prevote A r2 nil"]),
        ]),
    Case(
        # Unlock via POL (L28-L30): D proposes Y with validRound 1. A holds only B's and
        # C's round-1 prevotes for Y, so it waits; D's late round-1 prevote completes
        # 2f+1 for Y in round 1 >= lockedRound 0, and A prevotes Y.
        "unlock via proof of lock", "A", [
            *LOCKED_ON_X_IN_ROUND_2,
            (("proposal", "D", 2, "Y", {"pol_round": 1}), []),
            (("prevote", "D", 1, "Y"),
             ["wal prevote r2 Y", "sign prevote r2 Y", "broadcast prevote A r2 Y"]),
        ]),
    Case(
        # A POL older than the lock does not unlock (L29: lockedRound <= vr fails): Y had
        # a polka in round 0 (A missed the proposal and precommitted nil), A locked X in
        # round 1; D's round-2 proposal of Y with validRound 0 gets a nil prevote.
        "a proof of lock older than the lock does not unlock", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("timeout", "propose", 0),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
            (("prevote", "B", 0, "Y"), []),
            (("prevote", "C", 0, "Y"), ["timeout prevote r0 1000ms"]),
            (("prevote", "D", 0, "Y"), []),
            (("timeout", "prevote", 0),
             ["wal precommit r0 nil", "sign precommit r0 nil", "broadcast precommit A r0 nil"]),
            (("precommit", "B", 0, None), []),
            (("precommit", "C", 0, None), ["timeout precommit r0 1000ms"]),
            (("timeout", "precommit", 0), ["timeout propose r1 3500ms"]),
            (("proposal", "C", 1, "X"),
             ["wal prevote r1 X", "sign prevote r1 X", "broadcast prevote A r1 X"]),
            (("prevote", "B", 1, "X"), []),
            (("prevote", "C", 1, "X"),
             ["wal polka r1 X by A,B,C", "wal precommit r1 X", "sign precommit r1 X",
              "broadcast precommit A r1 X"]),
            (("precommit", "B", 1, None), []),
            (("precommit", "C", 1, None), ["timeout precommit r1 1500ms"]),
            (("timeout", "precommit", 1), ["timeout propose r2 4000ms"]),
            (("proposal", "D", 2, "Y", {"pol_round": 0}),
             ["wal prevote r2 nil", "sign prevote r2 nil", "broadcast prevote A r2 nil"]),
        ]),
    Case(
        # validValue (L36 in the precommit step, L42-L43, L14-L15): at height 3 D proposes
        # round 0 and A round 1. A precommitted nil on its prevote timeout, then saw X's
        # polka and proposal: X becomes its valid value (the POL goes to the WAL) without
        # a lock, and in round 1 A proposes X with validRound 0 and prevotes it (L28).
        "valid value is re-proposed with its proof of lock", "A", [
            (("start", 3), ["timeout propose r0 3000ms"]),
            (("timeout", "propose", 0),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
            (("prevote", "B", 0, "X"), []),
            (("prevote", "C", 0, "X"), ["timeout prevote r0 1000ms"]),
            (("timeout", "prevote", 0),
             ["wal precommit r0 nil", "sign precommit r0 nil", "broadcast precommit A r0 nil"]),
            (("prevote", "D", 0, "X"), []),
            (("proposal", "D", 0, "X"), ["wal polka r0 X by B,C,D"]),
            (("precommit", "B", 0, None), []),
            (("precommit", "C", 0, None), ["timeout precommit r0 1000ms"]),
            (("timeout", "precommit", 0),
             ["wal proposal r1 X pol0", "sign proposal r1 X pol0", "timeout propose r1 3500ms",
              "broadcast proposal A r1 X pol0", "wal prevote r1 X", "sign prevote r1 X",
              "broadcast prevote A r1 X"]),
        ], height=3),
    Case(
        # Timeouts grow by round (base + round * delta): propose 3000, 3500, 4000;
        # prevote and precommit 1000, 1500. A stale timeout of an old round does nothing.
        "timeouts grow", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("timeout", "propose", 0),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
            (("prevote", "B", 0, "X"), []),
            (("prevote", "C", 0, "Y"), ["timeout prevote r0 1000ms"]),
            (("timeout", "prevote", 0),
             ["wal precommit r0 nil", "sign precommit r0 nil", "broadcast precommit A r0 nil"]),
            (("precommit", "B", 0, None), []),
            (("precommit", "C", 0, "X"), ["timeout precommit r0 1000ms"]),
            (("timeout", "precommit", 0), ["timeout propose r1 3500ms"]),
            (("timeout", "propose", 1),
             ["wal prevote r1 nil", "sign prevote r1 nil", "broadcast prevote A r1 nil"]),
            (("prevote", "B", 1, None), []),
            (("prevote", "C", 1, "X"), ["timeout prevote r1 1500ms"]),
            (("timeout", "prevote", 1),
             ["wal precommit r1 nil", "sign precommit r1 nil", "broadcast precommit A r1 nil"]),
            (("precommit", "B", 1, None), []),
            (("precommit", "C", 1, "X"), ["timeout precommit r1 1500ms"]),
            (("timeout", "precommit", 1), ["timeout propose r2 4000ms"]),
            (("timeout", "propose", 0), []),
            (("timeout", "precommit", 1), []),
        ]),
    Case(
        # Round skip (L55): one validator in round 2 is not enough (it may be the faulty
        # one), two (f+1: C's prevote and D's proposal) are; A starts round 2 and at
        # once prevotes the proposal it already holds (L22).
        "round skip on f+1 messages of a higher round", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("prevote", "C", 2, "X"), []),
            (("proposal", "D", 2, "X"),
             ["timeout propose r2 4000ms", "wal prevote r2 X", "sign prevote r2 X",
              "broadcast prevote A r2 X"]),
        ]),
    Case(
        # Nil precommit (L44): 2f+1 prevotes for nil while in the prevote step.
        "nil precommit on a nil polka", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("timeout", "propose", 0),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
            (("prevote", "B", 0, None), []),
            (("prevote", "C", 0, None),
             ["wal precommit r0 nil", "sign precommit r0 nil", "broadcast precommit A r0 nil"]),
        ]),
    Case(
        # valid(v) is the host's: a proposal the host rejects gets a nil prevote (L26).
        "invalid proposal gets a nil prevote", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("proposal", "B", 0, "X", {"valid": False}),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
        ]),
    Case(
        # L50: a node decides only a value it holds valid. Even 2f+1 precommits for X do
        # not make A decide a block its host rejected; the round just times out (L47).
        "no decision for a block this node judged invalid", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("proposal", "B", 0, "X", {"valid": False}),
             ["wal prevote r0 nil", "sign prevote r0 nil", "broadcast prevote A r0 nil"]),
            (("precommit", "B", 0, "X"), []),
            (("precommit", "C", 0, "X"), []),
            (("precommit", "D", 0, "X"), ["timeout precommit r0 1000ms"]),
        ]),
    Case(
        # Only proposer(h, r) may propose: C's proposal for round 0 (B's round) is ignored.
        "proposal from the wrong proposer is ignored", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("proposal", "C", 0, "X"), []),
            (("proposal", "B", 1, "X"), []),
        ]),
    Case(
        # Equivocation: C prevotes X and then nil in round 0; the pair is evidence
        # (canonical order: nil first), reported once; C still counts once.
        "equivocation evidence", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("prevote", "C", 0, "X"), []),
            (("prevote", "C", 0, None), ["evidence C prevote r0 nil/X"]),
            (("prevote", "C", 0, None), []),
            (("prevote", "B", 0, "X"), []),
            (("proposal", "B", 0, "X"),
             ["wal prevote r0 X", "sign prevote r0 X", "broadcast prevote A r0 X",
              "wal polka r0 X by A,B,C", "wal precommit r0 X", "sign precommit r0 X",
              "broadcast precommit A r0 X"]),
        ]),
    Case(
        # L49 in an earlier round: A saw 2f+1 precommits for X in round 0 but not the
        # proposal, timed out into round 1; when the round-0 proposal arrives, it decides.
        "decision for an earlier round", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("precommit", "B", 0, "X"), []),
            (("precommit", "C", 0, "X"), []),
            (("precommit", "D", 0, "X"), ["timeout precommit r0 1000ms"]),
            (("timeout", "precommit", 0), ["timeout propose r1 3500ms"]),
            (("proposal", "B", 0, "X"), ["decide r0 X by B,C,D"]),
            # Decided (step commit): nothing moves until the host starts height 2.
            (("precommit", "D", 1, None), []),
            (("timeout", "propose", 1), []),
        ]),
    Case(
        # The proposer equivocates: A keeps the first proposal (X) and drops Y, until
        # 2f+1 prevotes for Y justify it (a node that heard X first must still be able to
        # lock on what the others agreed on); then A locks on Y (L36).
        "conflicting proposal accepted once a polka justifies it", "A", [
            (("start",), ["timeout propose r0 3000ms"]),
            (("proposal", "B", 0, "X"), PREVOTE_X),
            (("proposal", "B", 0, "Y"), []),
            (("prevote", "B", 0, "Y"), []),
            (("prevote", "C", 0, "Y"), ["timeout prevote r0 1000ms"]),
            (("prevote", "D", 0, "Y"), []),
            (("proposal", "B", 0, "Y"),
             ["wal polka r0 Y by B,C,D", "wal precommit r0 Y", "sign precommit r0 Y",
              "broadcast precommit A r0 Y"]),
        ]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_round_machine_scenario(case: Case) -> None:
    host = ScriptHost(Cast(case.n), case.me)
    for i, (step, expected) in enumerate(case.script):
        name, *args = step
        kwargs: dict[str, Any] = dict(args.pop()) if args and isinstance(args[-1], dict) else {}
        if name == "start":
            inp = host.start(*args) if args else host.start(case.height)
        else:
            kwargs.setdefault("height", case.height)
            inp = getattr(host, name)(*args, **kwargs)
        got = host.feed(inp)
        assert got == expected, f"step {i} {step}: got {got}, expected {expected}"
