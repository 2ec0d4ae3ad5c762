"""Authority-set changes (medchaind/app/governance.py, "authority-set changes").

``governance.add_authority`` / ``remove_authority`` / ``rotate_authority`` are votes
like accreditation: the change runs when authorities holding more than 2/3 of the power
have voted (``3 * power > 2 * total``). Running it does not touch the set at once: the
tx that completes the vote in block V *schedules* the change for height V + 2, and the
end-block hook of block V + 1 applies it, so the set that must sign each height is
known one block ahead (a syncing node can check every commit).

The scenario table follows geth clique's ``snapshot_test.go``: authorities "A".."D",
candidate "E", "A'" the new key of a rotated "A". A scenario is a list of blocks; a block
is one step (one tx) or a tuple of steps in the same block, each with its expected
receipt code. After the last block the runner commits two empty blocks (so every
scheduled change has applied) and compares the authority set, by name and power.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from gov_kit import FOUR, Chain, add_body, hx, make_genesis, powers_of, pub, remove_body, rotate_body
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medchaind.errors import TxRejected
from medchaind.modules.governance.machine import CHANGE_DELAY, authority_powers


@dataclass(frozen=True)
class Step:
    signer: str
    op: str  # "add" | "remove" | "rotate"
    args: tuple[Any, ...]
    code: str = "ok"


def add(signer: str, who: str, power: int = 1, code: str = "ok") -> Step:
    return Step(signer, "add", (who, power), code)


def remove(signer: str, who: str, code: str = "ok") -> Step:
    return Step(signer, "remove", (who,), code)


def rotate(signer: str, old: str, new: str, code: str = "ok") -> Step:
    return Step(signer, "rotate", (old, new), code)


@dataclass(frozen=True)
class Scenario:
    name: str
    authorities: dict[str, int]
    blocks: tuple[Step | tuple[Step, ...], ...]
    final: dict[str, int]  # the authority set after everything applied: name -> power
    open_tallies: int = 0


ONE = {"A": 1}
TWO = {"A": 1, "B": 1}
UNEQUAL = {"A": 5, "B": 1, "C": 1, "D": 1}  # total 8: A alone has 5/8 < 2/3

SCENARIOS = [
    # -- one authority decides alone
    Scenario("one authority: add executes on the first vote", ONE, (add("A", "B"),), {"A": 1, "B": 1}),
    Scenario("one authority: rotate executes on the first vote", ONE, (rotate("A", "A", "A'"),), {"A'": 1}),
    Scenario(
        "one authority: removing the last authority is refused",
        ONE,
        (remove("A", "A", code="last_authority"),),
        {"A": 1},
    ),
    # -- four equal authorities: 3 of 4 needed (2/4 = 1/2, 3/4 > 2/3)
    Scenario(
        "four authorities: two votes to add E are not enough",
        FOUR,
        (add("A", "E"), add("B", "E")),
        FOUR,
        open_tallies=1,
    ),
    Scenario(
        "four authorities: the third vote adds E",
        FOUR,
        (add("A", "E"), add("B", "E"), add("C", "E")),
        {**FOUR, "E": 1},
    ),
    Scenario(
        "four authorities: E joins with the power the vote named",
        FOUR,
        (add("A", "E", 7), add("B", "E", 7), add("C", "E", 7)),
        {**FOUR, "E": 7},
    ),
    # The power is part of the action: votes for E at power 1 and at power 2 do not pool.
    Scenario(
        "four authorities: votes for different powers are different actions",
        FOUR,
        (add("A", "E", 1), add("B", "E", 2), add("C", "E", 1)),
        FOUR,
        open_tallies=2,
    ),
    Scenario(
        "four authorities: remove D with three votes",
        FOUR,
        (remove("A", "D"), remove("B", "D"), remove("C", "D")),
        {"A": 1, "B": 1, "C": 1},
    ),
    Scenario(
        "four authorities: D may vote for its own removal",
        FOUR,
        (remove("D", "D"), remove("B", "D"), remove("C", "D")),
        {"A": 1, "B": 1, "C": 1},
    ),
    Scenario(
        "four authorities: rotate A to A' keeps A's power, A is gone",
        {"A": 3, "B": 1, "C": 1, "D": 1},
        (rotate("B", "A", "A'"), rotate("C", "A", "A'"), rotate("A", "A", "A'")),
        {"A'": 3, "B": 1, "C": 1, "D": 1},
    ),
    Scenario(
        "four authorities: all three ops in one block each need their own 2/3",
        FOUR,
        (
            (add("A", "E"), remove("A", "D"), rotate("A", "C", "C'")),
            (add("B", "E"), remove("B", "D"), rotate("B", "C", "C'")),
            (add("C", "E"), remove("C", "D"), rotate("D", "C", "C'")),
        ),
        {"A": 1, "B": 1, "C'": 1, "E": 1},
    ),
    # -- refusals
    Scenario(
        "adding a current authority is refused", FOUR, (add("A", "B", code="already_authority"),), FOUR
    ),
    Scenario("removing a non-authority is refused", FOUR, (remove("A", "E", code="not_authority"),), FOUR),
    Scenario(
        "rotating a non-authority is refused", FOUR, (rotate("A", "E", "A'", code="not_authority"),), FOUR
    ),
    Scenario(
        "rotating onto a current authority is refused",
        FOUR,
        (rotate("A", "A", "B", code="already_authority"),),
        FOUR,
    ),
    Scenario(
        "a non-authority cannot vote for its own admission",
        FOUR,
        (add("E", "E", code="unauthorized"),),
        FOUR,
    ),
    Scenario(
        "a duplicate vote is refused and not counted twice",
        FOUR,
        (add("A", "E"), add("A", "E", code="duplicate_vote"), add("B", "E")),
        FOUR,
        open_tallies=1,
    ),
    # -- unequal power
    Scenario(
        "unequal powers: the big authority alone (5/8) cannot add E",
        UNEQUAL,
        (add("A", "E"),),
        UNEQUAL,
        open_tallies=1,
    ),
    Scenario(
        "unequal powers: big plus one small (6/8) adds E",
        UNEQUAL,
        (add("A", "E"), add("B", "E")),
        {**UNEQUAL, "E": 1},
    ),
    # -- timing: a change applies at the end of the block after the one that ran it
    # A adds B in block 1 (effective height 3). In block 2 B is not yet an authority; in
    # block 3 it is, and alone (1/2) it cannot add C.
    Scenario(
        "one authority: the new authority votes only from the effective height on",
        ONE,
        (add("A", "B"), add("B", "C", code="unauthorized"), add("B", "C")),
        {"A": 1, "B": 1},
        open_tallies=1,
    ),
    Scenario(
        "one authority: after a rotation only the new key votes",
        ONE,
        (rotate("A", "A", "A'"), (), add("A", "B", code="unauthorized"), add("A'", "B")),
        {"A'": 1, "B": 1},
    ),
    Scenario(
        "four authorities: a removed authority can no longer vote",
        FOUR,
        (remove("A", "D"), remove("B", "D"), remove("C", "D"), (), add("D", "E", code="unauthorized")),
        {"A": 1, "B": 1, "C": 1},
    ),
    # D voted for E, then left; the tally is recomputed against {A, B, C}: A and B are
    # 2/3 (not more) and C's vote is still needed.
    Scenario(
        "four authorities: the vote of a removed authority stops counting",
        FOUR,
        (
            add("D", "E"),
            remove("A", "D"), remove("B", "D"), remove("C", "D"), (),
            add("A", "E"), add("B", "E"),
        ),
        {"A": 1, "B": 1, "C": 1},
        open_tallies=1,
    ),
    Scenario(
        "four authorities: ... and the remaining authorities complete it",
        FOUR,
        (
            add("D", "E"),
            remove("A", "D"), remove("B", "D"), remove("C", "D"), (),
            add("A", "E"), add("B", "E"), add("C", "E"),
        ),
        {"A": 1, "B": 1, "C": 1, "E": 1},
    ),
    # The set must never empty. With two authorities, removals of A (block 1) and of B
    # (block 2, when A is still in the set) both run; A leaves at the end of block 2 and
    # the removal of B, due at the end of block 3, finds B the last one and is dropped.
    Scenario(
        "two authorities: two removals voted before either applies leave one authority",
        TWO,
        (
            (remove("A", "A"), remove("B", "A")),
            (remove("A", "B"), remove("B", "B")),
        ),
        {"B": 1},
    ),
    Scenario(
        "two authorities: once A has left, removing B is refused",
        TWO,
        ((remove("A", "A"), remove("B", "A")), (), (), remove("B", "B", code="last_authority")),
        {"B": 1},
    ),
    # A change whose vote completes twice before it applies (E is not yet an authority
    # when the second round of votes runs) is applied once; the second is a no-op.
    Scenario(
        "one authority: adding E twice before it applies adds it once",
        ONE,
        ((add("A", "E"),), add("A", "E")),
        {"A": 1, "E": 1},
    ),
]


def run(s: Scenario) -> Chain:
    chain = Chain.of(s.authorities)
    for i, block in enumerate(s.blocks):
        steps = (block,) if isinstance(block, Step) else block
        used: dict[str, int] = {}
        txs = []
        for st_ in steps:
            n = chain.nonce(st_.signer) + used.get(st_.signer, 0)
            used[st_.signer] = used.get(st_.signer, 0) + 1
            txs.append(chain.op(st_.signer, st_.op, *st_.args, nonce=n))
        ex = chain.commit(txs)
        got = [r.code for r in ex.receipts]
        want = [st_.code for st_ in steps]
        assert got == want, f"block {i + 1}: receipts {got}, expected {want}: {ex.receipts}"
    for _ in range(CHANGE_DELAY):
        chain.commit()
    return chain


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_authority_change_scenario(s: Scenario) -> None:
    chain = run(s)
    assert chain.powers() == powers_of(s.final)
    names = {a["public_key"]: a["name"] for a in chain.query("authorities")}
    # an added authority carries the name it was voted in with; a rotated key X' keeps
    # the name of the key X it replaced
    assert {n: names[hx(n)] for n in s.final} == {n: n.rstrip("'") for n in s.final}
    assert chain.query("scheduled") == []
    assert len(chain.query("pending")) == s.open_tallies


# ------------------------------------------------------------------ the two-block delay


def test_add_is_scheduled_in_block_v_and_applied_at_the_end_of_v_plus_1() -> None:
    chain = Chain.of(FOUR)
    assert chain.send_op("A", "add", "E", 1).ok
    assert chain.send_op("B", "add", "E", 1).ok
    # block V = 3: C's vote completes 3/4
    r = chain.send_op("C", "add", "E", 1)
    v = chain.height
    assert v == 3 and r.ok
    types = [e["type"] for e in r.events]
    assert types == ["governance.executed", "governance.authority_change_scheduled"]
    sched_event = r.events[1]
    assert sched_event["effective_height"] == v + 2
    assert sched_event["public_key"] == pub("E") and sched_event["power"] == 1

    # after block V: the set is unchanged, the change waits in `scheduled`
    assert authority_powers(chain.state) == powers_of(FOUR)
    assert chain.query("scheduled") == [
        {"effective_height": v + 2, "op": "add_authority", "public_key": hx("E"), "name": "E", "power": 1}
    ]
    assert chain.query("pending") == []  # the tally was cleared when the vote ran

    # block V+1 (no txs): its end-block applies the change; the write lands in this block
    ex = chain.commit()
    assert chain.height == v + 1
    assert ("governance", b"auth/" + pub("E")) in ex.writes
    assert authority_powers(chain.state) == powers_of({**FOUR, "E": 1})
    assert chain.query("scheduled") == []
    assert {a["public_key"]: a["name"] for a in chain.query("authorities")}[hx("E")] == "E"

    # and nothing more happens later
    ex = chain.commit()
    assert not any(m == "governance" and k.startswith(b"auth/") for m, k in ex.writes)


def test_removal_and_rotation_follow_the_same_delay() -> None:
    chain = Chain.of(FOUR)
    for signer in "ABC":
        remove_tx = chain.op(signer, "remove", "D")
        rotate_tx = chain.op(signer, "rotate", "A", "A'", nonce=chain.nonce(signer) + 1)
        chain.commit([remove_tx, rotate_tx])
    v = chain.height
    scheduled = chain.query("scheduled")
    assert sorted(s["op"] for s in scheduled) == ["remove_authority", "rotate_authority"]
    assert {s["effective_height"] for s in scheduled} == {v + 2}
    assert authority_powers(chain.state) == powers_of(FOUR)
    chain.commit()
    assert authority_powers(chain.state) == powers_of({"A'": 1, "B": 1, "C": 1})
    assert chain.query("scheduled") == []


def test_the_set_a_tx_sees_in_block_v_plus_1_is_still_the_old_one() -> None:
    # E's admission ran in block 1; E's vote in block 2 is refused (it is applied only
    # after block 2's txs), the same vote in block 3 counts.
    chain = Chain.of({"A": 1})
    assert chain.send_op("A", "add", "E", 1).ok
    e_vote = chain.op("E", "add", "F", 1)
    assert chain.commit([e_vote]).receipts[0].code == "unauthorized"
    assert pub("E") in chain.powers()
    assert chain.send_op("E", "add", "F", 1).ok  # 1 of 2: recorded, not run
    assert len(chain.query("pending")) == 1


def test_scheduled_changes_of_different_heights_wait_for_their_own_block() -> None:
    chain = Chain.of({"A": 1})
    assert chain.send_op("A", "add", "B", 1).ok  # block 1 -> effective 3
    assert chain.send_op("A", "add", "C", 1).ok  # block 2 -> effective 4; B applied after this block
    assert [s["effective_height"] for s in chain.query("scheduled")] == [4]
    assert chain.powers() == powers_of({"A": 1, "B": 1})
    chain.commit()
    assert chain.powers() == powers_of({"A": 1, "B": 1, "C": 1})


# ------------------------------------------------------------------ admission (check_tx)


@pytest.mark.parametrize(
    ("type_", "body"),
    [
        ("governance.add_authority", {**add_body("E"), "power": 0}),
        ("governance.add_authority", {**add_body("E"), "power": 1_000_001}),
        ("governance.add_authority", {**add_body("E"), "power": True}),  # a bool is not a power
        ("governance.add_authority", {**add_body("E"), "name": ""}),
        ("governance.add_authority", {**add_body("E"), "public_key": b"\x01" * 31}),
        ("governance.add_authority", {**add_body("E"), "extra": 1}),
        ("governance.remove_authority", {"public_key": pub("D")}),
        ("governance.remove_authority", {**remove_body("D"), "reason": "x" * 257}),
        ("governance.rotate_authority", rotate_body("A", "A")),
        ("governance.rotate_authority", {"old_key": pub("A"), "new_key": "A'"}),
    ],
)
def test_malformed_change_bodies_are_refused_at_admission(type_: str, body: dict[str, Any]) -> None:
    chain = Chain.of(FOUR)
    tx = chain.tx("A", type_, body)
    with pytest.raises(TxRejected) as exc:
        chain.app.check_tx(chain.state, tx)
    assert exc.value.code == "invalid_body"
    # and if a proposer includes it anyway, it fails with the same code
    assert chain.commit([tx]).receipts[0].code == "invalid_body"


@pytest.mark.parametrize(
    ("signer", "op", "args", "code"),
    [
        ("E", "add", ("F", 1), "unauthorized"),
        ("A", "add", ("B", 1), "already_authority"),
        ("A", "remove", ("E",), "not_authority"),
        ("A", "rotate", ("E", "F"), "not_authority"),
        ("A", "rotate", ("A", "B"), "already_authority"),
    ],
)
def test_state_dependent_refusals_happen_at_admission(signer: str, op: str, args: tuple[Any, ...], code: str) -> None:
    chain = Chain.of(FOUR)
    with pytest.raises(TxRejected) as exc:
        chain.check(chain.op(signer, op, *args))
    assert exc.value.code == code


def test_last_authority_and_duplicate_vote_are_refused_at_admission() -> None:
    one = Chain.of({"A": 1})
    with pytest.raises(TxRejected) as exc:
        one.check(one.op("A", "remove", "A"))
    assert exc.value.code == "last_authority"

    four = Chain.of(FOUR)
    assert four.send_op("A", "add", "E", 1).ok
    with pytest.raises(TxRejected) as exc:
        four.check(four.op("A", "add", "E", 1))
    assert exc.value.code == "duplicate_vote"


def test_a_refused_change_leaves_state_untouched_apart_from_the_nonce() -> None:
    chain = Chain.of(FOUR)
    before = dict(chain.state.data)
    ex = chain.commit([chain.op("A", "add", "B", 1)])
    assert ex.receipts[0].code == "already_authority"
    assert {m for m, _k in ex.writes} == {"auth"}  # only the sender's nonce
    assert {k: v for k, v in chain.state.data.items() if k[0] != "auth"} == {
        k: v for k, v in before.items() if k[0] != "auth"
    }


# ------------------------------------------------------------------ determinism


def _change_blocks(chain: Chain) -> list[list[Any]]:
    """Blocks of signed txs (built once) that add E, remove D and rotate A -> A'."""
    blocks: list[list[Any]] = []
    nonces = {n: 0 for n in "ABCD"}

    def tx(signer: str, op: str, *args: Any) -> Any:
        t = chain.op(signer, op, *args, nonce=nonces[signer])
        nonces[signer] += 1
        return t

    blocks.append([tx("A", "add", "E", 2), tx("B", "add", "E", 2), tx("A", "remove", "D")])
    blocks.append([tx("C", "add", "E", 2), tx("B", "remove", "D"), tx("C", "remove", "D")])
    # block 3 runs the rotation (eff. 5) while E joining and D leaving apply at its end
    blocks.append([tx("A", "rotate", "A", "A'"), tx("B", "rotate", "A", "A'"), tx("C", "rotate", "A", "A'")])
    blocks.append([])
    blocks.append([])
    return blocks


def test_two_apps_agree_on_every_app_hash_including_end_block_effects() -> None:
    node1 = Chain(make_genesis(FOUR))
    node2 = Chain(make_genesis(FOUR))
    assert node1.app is not node2.app
    for txs in _change_blocks(node1):
        ex1, ex2 = node1.commit(txs), node2.commit(txs)
        assert ex1.writes == ex2.writes
        assert ex1.receipts == ex2.receipts
        assert (ex1.app_hash, ex1.results_hash) == (ex2.app_hash, ex2.results_hash)
    assert node1.powers() == node2.powers() == powers_of({"A'": 1, "B": 1, "C": 1, "E": 2})
    assert node1.state.data == node2.state.data


def test_end_block_effects_are_part_of_the_app_hash() -> None:
    # Block V+1 holds no tx: its whole write-set comes from the end-block hook, so a node
    # that skipped the hook would compute another app_hash for it (its state's root).
    from medchaind.app import trie

    chain = Chain.of({"A": 1})
    assert chain.send_op("A", "add", "E", 1).ok
    prev = chain.app_hash
    ex = chain.commit()
    assert ex.receipts == []
    assert ex.writes  # the added authority and the consumed schedule entry
    assert ex.app_hash != prev  # a node that skipped the hook keeps the previous root
    assert ex.app_hash == trie.compute_root({trie.tree_key(m, k): v for (m, k), v in chain.state.data.items()})


NAMES = ("A", "B", "C", "D", "E", "F")
step_st = st.tuples(
    st.sampled_from(NAMES),
    st.sampled_from(["add", "remove", "rotate"]),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(step_st, max_size=4), min_size=1, max_size=6))
def test_random_change_sequences_are_deterministic_and_never_empty_the_set(
    blocks: list[list[tuple[str, str, str, str]]],
) -> None:
    node1 = Chain(make_genesis({"A": 1, "B": 1, "C": 1}))
    node2 = Chain(make_genesis({"A": 1, "B": 1, "C": 1}))
    for block in [*blocks, [], []]:
        used: dict[str, int] = {}
        txs = []
        for signer, op, x, y in block:
            if op == "rotate" and x == y:
                continue
            n = node1.nonce(signer) + used.get(signer, 0)
            used[signer] = used.get(signer, 0) + 1
            args: tuple[Any, ...] = {"add": (x, 1), "remove": (x,), "rotate": (x, y)}[op]
            txs.append(node1.op(signer, op, *args, nonce=n))
        ex1, ex2 = node1.commit(txs), node2.commit(txs)
        assert ex1.app_hash == ex2.app_hash and ex1.receipts == ex2.receipts
        assert len(node1.powers()) >= 1
        # every scheduled change is due at the next height (applied by the coming block)
        # or the one after it, never in the past
        for s in node1.query("scheduled"):
            assert node1.height < s["effective_height"] <= node1.height + CHANGE_DELAY
    assert node1.state.data == node2.state.data
