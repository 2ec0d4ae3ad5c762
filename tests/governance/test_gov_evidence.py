"""Equivocation evidence (medchaind/app/governance.py, "equivocation evidence").

``governance.evidence`` carries two signed consensus votes. They prove an equivocation
when they are by one validator for one (height, round, kind), for different values, and
both signatures verify under the vote domain and this chain's id (the same bytes a
``core.sign_vote`` produces, and that a commit carries). Anyone may report (no identity
needed); the record is keyed by (validator, height, round, kind), so one equivocation
is on record once whichever pair of votes proves it.

Votes here are real ``core.Vote`` values signed with ``core.sign_vote``, as the
consensus engine's ``EvidenceFound`` effect hands them to the node.
"""

from __future__ import annotations

from typing import Any

import pytest
from gov_kit import (
    CHAIN_ID,
    FOUR,
    OTHER_CHAIN_ID,
    Chain,
    block_hash,
    evidence_body,
    hx,
    key,
    make_genesis,
    pub,
    vote,
)

from medchaind import core, crypto
from medchaind.errors import TxRejected
from medchaind.types import Receipt

EVIDENCE = "governance.evidence"

# A valid evidence tx once crashed its handler: emit's event name collided with the
# vote's ``kind`` field. The tests below are the spec of a recorded equivocation.


def report(chain: Chain, body: dict[str, Any], reporter: str = "R") -> Receipt:
    return chain.send(reporter, EVIDENCE, body)


def test_a_real_equivocation_is_recorded_with_an_event_and_queryable() -> None:
    chain = Chain.of(FOUR)
    a, b = vote("B", "x", height=7, round_=1), vote("B", "y", height=7, round_=1)
    assert core.verify_vote(CHAIN_ID, a) and core.verify_vote(CHAIN_ID, b)

    r = report(chain, evidence_body(a, b))  # R: no identity, not an authority
    assert r.ok, r
    assert r.events == (
        {"type": "governance.equivocation", "validator": pub("B"), "height": 7, "round": 1,
         "kind": int(core.VoteKind.PREVOTE)},
    )
    assert chain.query("evidence") == [
        {"validator": hx("B"), "height": 7, "round": 1, "kind": 1,
         "recorded_at": chain.height, "reported_by": hx("R")}
    ]
    # evidence is a record, not a punishment: the authority set is unchanged
    assert pub("B") in chain.powers()


@pytest.mark.parametrize(
    ("first", "second", "kind"),
    [
        ("x", None, core.VoteKind.PREVOTE),  # a value and nil conflict too
        (None, "y", core.VoteKind.PRECOMMIT),
        ("x", "y", core.VoteKind.PRECOMMIT),
    ],
)
def test_nil_and_precommit_equivocations_count(first: str | None, second: str | None, kind: core.VoteKind) -> None:
    chain = Chain.of(FOUR)
    r = report(chain, evidence_body(vote("A", first, kind=kind), vote("A", second, kind=kind)), reporter="C")
    assert r.ok, r
    [rec] = chain.query("evidence")
    assert (rec["validator"], rec["kind"], rec["reported_by"]) == (hx("A"), int(kind), hx("C"))


def test_the_same_equivocation_is_recorded_once() -> None:
    chain = Chain.of(FOUR)
    a, b, c = vote("B", "x"), vote("B", "y"), vote("B", "z")
    assert report(chain, evidence_body(a, b)).ok
    # the same pair, the pair swapped, another pair for the same slot: all duplicates
    assert report(chain, evidence_body(a, b)).code == "duplicate_evidence"
    assert report(chain, evidence_body(b, a), reporter="A").code == "duplicate_evidence"
    assert report(chain, evidence_body(a, c)).code == "duplicate_evidence"
    # ... and admission refuses it before it reaches a block
    with pytest.raises(TxRejected) as exc:
        chain.check(chain.tx("R", EVIDENCE, evidence_body(b, c)))
    assert exc.value.code == "duplicate_evidence"
    # other slots of the same validator are separate equivocations
    assert report(chain, evidence_body(vote("B", "x", round_=1), vote("B", "y", round_=1))).ok
    assert report(chain, evidence_body(vote("B", "x", height=8), vote("B", "y", height=8))).ok
    k = core.VoteKind.PRECOMMIT
    assert report(chain, evidence_body(vote("B", "x", kind=k), vote("B", "y", kind=k))).ok
    assert len(chain.query("evidence")) == 4


# Each case is a pair of validly signed votes that is not an equivocation.
NOT_EQUIVOCATION = [
    # the same vote twice
    pytest.param(vote("B", "x"), vote("B", "x"), id="same vote twice"),
    pytest.param(vote("B", "x", round_=0), vote("B", "y", round_=1), id="different rounds"),
    pytest.param(vote("B", "x", height=7), vote("B", "y", height=8), id="different heights"),
    pytest.param(
        vote("B", "x", kind=core.VoteKind.PREVOTE),
        vote("B", "y", kind=core.VoteKind.PRECOMMIT),
        id="prevote and precommit",
    ),
    pytest.param(vote("B", "x"), vote("C", "y"), id="two validators"),
    pytest.param(vote("B", None), vote("B", None), id="nil twice"),
]


@pytest.mark.parametrize(("a", "b"), NOT_EQUIVOCATION)
def test_pairs_that_are_not_an_equivocation_are_invalid(a: core.Vote, b: core.Vote) -> None:
    chain = Chain.of(FOUR)
    tx = chain.tx("R", EVIDENCE, evidence_body(a, b))
    with pytest.raises(TxRejected) as exc:
        chain.app.check_tx(chain.state, tx)
    assert exc.value.code == "invalid_body"
    assert chain.commit([tx]).receipts[0].code == "invalid_body"
    assert chain.query("evidence") == []


def _resign(v: core.Vote, signer: str, *, domain: str = crypto.DOMAIN_VOTE, chain_id: str = CHAIN_ID) -> core.Vote:
    return v.with_signature(key(signer).sign(domain, chain_id, v.payload()))


def _flip(sig: bytes) -> bytes:
    return sig[:10] + bytes([sig[10] ^ 0x01]) + sig[11:]


BAD_SIGNATURES = [
    pytest.param(lambda a, b: (a, b.with_signature(_flip(b.signature))), id="a flipped bit"),
    pytest.param(lambda a, b: (a.with_signature(b.signature), b), id="the other vote's signature"),
    pytest.param(lambda a, b: (a, b.with_signature(b"")), id="no signature"),
    pytest.param(lambda a, b: (a, _resign(b, "C")), id="signed by another authority"),
    pytest.param(lambda a, b: (a, _resign(b, "B", chain_id=OTHER_CHAIN_ID)), id="one vote for another chain"),
    pytest.param(
        lambda a, b: (_resign(a, "B", chain_id=OTHER_CHAIN_ID), _resign(b, "B", chain_id=OTHER_CHAIN_ID)),
        id="both votes for another chain",
    ),
    pytest.param(
        lambda a, b: (a, _resign(b, "B", domain=crypto.DOMAIN_PROPOSAL)), id="signed under the proposal domain"
    ),
    pytest.param(lambda a, b: (a, _resign(b, "B", domain=crypto.DOMAIN_TX)), id="signed under the tx domain"),
]


@pytest.mark.parametrize("tamper", BAD_SIGNATURES)
def test_votes_whose_signatures_do_not_verify_are_bad_evidence(tamper: Any) -> None:
    chain = Chain.of(FOUR)
    a, b = tamper(vote("B", "x"), vote("B", "y"))
    r = report(chain, evidence_body(a, b))
    assert r.code == "bad_evidence", r
    assert chain.query("evidence") == []
    with pytest.raises(TxRejected) as exc:
        chain.check(chain.tx("R", EVIDENCE, evidence_body(a, b)))
    assert exc.value.code == "bad_evidence"


def test_votes_signed_for_another_chain_are_valid_there_only() -> None:
    # The same equivocation, signed for "medchain-other", is evidence on that chain only.
    a = vote("B", "x", chain_id=OTHER_CHAIN_ID)
    b = vote("B", "y", chain_id=OTHER_CHAIN_ID)
    here = Chain.of(FOUR)
    assert report(here, evidence_body(a, b)).code == "bad_evidence"
    there = Chain(make_genesis(FOUR, chain_id=OTHER_CHAIN_ID))
    assert report(there, evidence_body(a, b)).ok


def test_evidence_about_a_non_authority_is_refused() -> None:
    chain = Chain.of(FOUR)
    r = report(chain, evidence_body(vote("X", "x"), vote("X", "y")))
    assert r.code == "not_authority"
    with pytest.raises(TxRejected) as exc:
        chain.check(chain.tx("R", EVIDENCE, evidence_body(vote("X", "x"), vote("X", "y"))))
    assert exc.value.code == "not_authority"


def test_evidence_about_an_authority_that_has_left_is_refused() -> None:
    chain = Chain.of(FOUR)
    for signer in "ABC":
        assert chain.send_op(signer, "remove", "D").ok
    chain.commit()  # end of block V+1: D leaves
    body = evidence_body(vote("D", "x"), vote("D", "y"))
    assert report(chain, body).code == "not_authority"


def test_admission_accepts_a_real_equivocation() -> None:
    # What the node does with the engine's EvidenceFound: sign a tx and submit it.
    chain = Chain.of(FOUR)
    chain.check(chain.tx("A", EVIDENCE, evidence_body(vote("B", "x"), vote("B", "y"))))


def test_evidence_about_an_authority_counts_until_its_removal_applies() -> None:
    chain = Chain.of(FOUR)
    for signer in "ABC":
        assert chain.send_op(signer, "remove", "D").ok
    assert report(chain, evidence_body(vote("D", "x"), vote("D", "y"))).ok


def _vote_map(**changes: Any) -> dict[str, Any]:
    m = vote("B", "x").to_map()
    for k, v in changes.items():
        if v is _DROP:
            del m[k]
        else:
            m[k] = v
    return m


_DROP = object()
GOOD_B = vote("B", "y").to_map()

MALFORMED = [
    pytest.param({"vote_a": _vote_map(signature=_DROP), "vote_b": GOOD_B}, id="missing field"),
    pytest.param({"vote_a": _vote_map(extra=1), "vote_b": GOOD_B}, id="extra field"),
    pytest.param({"vote_a": _vote_map(kind=3), "vote_b": GOOD_B}, id="kind 3"),
    pytest.param({"vote_a": _vote_map(kind=0), "vote_b": GOOD_B}, id="kind 0"),
    pytest.param({"vote_a": _vote_map(kind="prevote"), "vote_b": GOOD_B}, id="kind as text"),
    pytest.param({"vote_a": _vote_map(height="7"), "vote_b": GOOD_B}, id="height as text"),
    pytest.param({"vote_a": _vote_map(height=True), "vote_b": GOOD_B}, id="height as bool"),
    pytest.param({"vote_a": _vote_map(round=None), "vote_b": GOOD_B}, id="round null"),
    pytest.param({"vote_a": _vote_map(block=b"\x01" * 31), "vote_b": GOOD_B}, id="block 31 bytes"),
    pytest.param({"vote_a": _vote_map(block="0x" + "00" * 32), "vote_b": GOOD_B}, id="block as hex text"),
    pytest.param({"vote_a": _vote_map(validator=hx("B")), "vote_b": GOOD_B}, id="validator as hex text"),
    pytest.param({"vote_a": _vote_map(signature=[1, 2]), "vote_b": GOOD_B}, id="signature a list"),
    pytest.param({"vote_a": list(_vote_map().values()), "vote_b": GOOD_B}, id="vote a list"),
    pytest.param({"vote_a": _vote_map().get("signature"), "vote_b": GOOD_B}, id="vote a byte string"),
    pytest.param({"vote_a": _vote_map(), "vote_b": None}, id="vote_b null"),
    pytest.param({"vote_a": _vote_map()}, id="vote_b missing"),
    pytest.param({"vote_a": _vote_map(), "vote_b": GOOD_B, "note": "x"}, id="extra body field"),
    pytest.param({"votes": [_vote_map(), GOOD_B]}, id="wrong body shape"),
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_vote_maps_are_invalid_body_at_admission(body: dict[str, Any]) -> None:
    chain = Chain.of(FOUR)
    tx = chain.tx("R", EVIDENCE, body)
    with pytest.raises(TxRejected) as exc:
        chain.app.check_tx(chain.state, tx)
    assert exc.value.code == "invalid_body"
    assert chain.commit([tx]).receipts[0].code == "invalid_body"


# A Byzantine authority "B" signs two votes at a height (or round) that no honest node
# ever signs. The body validator only checks ``type(...) is int``, so the pair passes
# validation and both signatures verify; the handler then builds the record key with
# ``height.to_bytes(8, "big")``, which raises OverflowError for a negative number. That
# escapes ``App.deliver_tx`` (it only catches TxFailed) and ``App.execute``, so a block
# carrying this tx cannot be executed by any node: the proposer's ``build_block`` and
# every validator's ``validate_block`` raise, and consensus halts at that height.
# The fix: validate height and round like ``core.Vote.validate_basic`` does (unsigned
# 63-bit, height >= 1) in ``_validate_evidence`` and refuse with invalid_body.
NEGATIVE = [
    pytest.param({"height": -1}, id="negative height"),
    pytest.param({"round_": -1}, id="negative round"),
    pytest.param({"height": -(2**63)}, id="most negative height"),
]


def _byzantine_pair(**where: int) -> dict[str, Any]:
    def signed(value: str) -> dict[str, Any]:
        height, round_ = where.get("height", 7), where.get("round_", 0)
        payload_vote = core.Vote(core.VoteKind.PREVOTE, core.Height(height), core.Round(round_),
                                 core.BlockHash(block_hash(value)), core.ValidatorId(pub("B")))
        # core.sign_vote does not validate, so a faulty node can sign anything
        return core.sign_vote(key("B"), CHAIN_ID, payload_vote).to_map()

    return {"vote_a": signed("x"), "vote_b": signed("y")}


@pytest.mark.parametrize("where", NEGATIVE)
def test_evidence_with_a_negative_height_or_round_fails_as_a_tx_not_as_the_block(where: dict[str, int]) -> None:
    chain = Chain.of(FOUR)
    ex = chain.execute([chain.tx("R", EVIDENCE, _byzantine_pair(**where))])
    assert ex.receipts[0].code == "invalid_body"


def test_admission_refuses_evidence_with_a_negative_height_with_a_typed_error() -> None:
    chain = Chain.of(FOUR)
    with pytest.raises(TxRejected) as exc:
        chain.check(chain.tx("R", EVIDENCE, _byzantine_pair(height=-1)))
    assert exc.value.code == "invalid_body"

