"""Proposals and votes: real Ed25519 signing, verification, wire form, commits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from medchaind.core import (
    Decide,
    Ed25519Signer,
    Height,
    Proposal,
    Round,
    Vote,
    VoteKind,
    decode_proposal,
    decode_vote,
    proposal_payload,
    verify_proposal,
    verify_vote,
)
from medchaind.crypto import DOMAIN_PROPOSAL, DOMAIN_VOTE, SigningKey, verify
from medchaind.errors import DecodeError, ValidationError
from medchaind.testing.cast import TEST_CHAIN_ID, Cast
from medchaind.types.block import PRECOMMIT, verify_commit, vote_payload

C = Cast(4)


def test_vote_is_signed_over_the_block_vote_payload() -> None:
    v = C.precommit("A", 7, 2, "X")
    assert v.payload() == vote_payload(PRECOMMIT, 7, 2, C.block("X"))
    assert verify(C.id("A"), v.signature, DOMAIN_VOTE, TEST_CHAIN_ID, v.payload())
    assert verify_vote(TEST_CHAIN_ID, v)


def test_tampering_or_another_chain_breaks_a_signature() -> None:
    v = C.prevote("B", 1, 0, "X")
    assert not verify_vote(TEST_CHAIN_ID, replace(v, block_hash=C.block("Y")))
    assert not verify_vote(TEST_CHAIN_ID, replace(v, round=Round(1)))
    assert not verify_vote(TEST_CHAIN_ID, replace(v, kind=VoteKind.PRECOMMIT))
    assert not verify_vote(TEST_CHAIN_ID, replace(v, validator=C.id("C")))
    assert not verify_vote("medchain-other", v)
    p = C.proposal("B", 1, 0, "X")
    assert verify_proposal(TEST_CHAIN_ID, p)
    assert not verify_proposal(TEST_CHAIN_ID, replace(p, pol_round=Round(0), round=Round(1)))
    # A vote signature is not a proposal signature (domain separation).
    assert not verify(C.id("B"), p.signature, DOMAIN_VOTE, TEST_CHAIN_ID, p.payload())
    assert verify(C.id("B"), p.signature, DOMAIN_PROPOSAL, TEST_CHAIN_ID,
                  proposal_payload(1, 0, C.block("X"), -1))


def test_signing_is_deterministic_so_wal_replay_reproduces_signatures() -> None:
    v = Vote(VoteKind.PREVOTE, Height(3), Round(1), None, C.id("C"))
    assert C.signers["C"].sign_vote(v) == C.signers["C"].sign_vote(v)


def test_a_signer_refuses_other_validators_messages() -> None:
    signer = Ed25519Signer(SigningKey(b"\x01" * 32), TEST_CHAIN_ID)
    with pytest.raises(ValidationError, match="does not belong"):
        signer.sign_vote(Vote(VoteKind.PREVOTE, Height(1), Round(0), None, C.id("A")))


def test_wire_round_trip_and_strict_decoding() -> None:
    v, p = C.precommit("D", 5, 3, None), C.proposal("C", 1, 1, "X", pol_round=0)
    assert decode_vote(v.encode()) == v
    assert decode_proposal(p.encode()) == p
    with pytest.raises(DecodeError, match="pol_round"):
        decode_proposal(replace(p, pol_round=Round(1)).encode())
    with pytest.raises(DecodeError, match="height"):
        decode_vote(replace(v, height=Height(0)).encode())
    with pytest.raises(DecodeError, match="kind"):
        decode_vote(replace(v, kind=3).encode())  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match="32 bytes"):
        decode_vote(replace(v, block_hash=b"short").encode())  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_vote(v.encode() + b"\x00")


def test_validate_basic() -> None:
    Proposal(Height(1), Round(0), C.block("X"), Round(-1), C.id("A")).validate_basic()
    with pytest.raises(ValidationError, match="round"):
        Vote(VoteKind.PREVOTE, Height(1), Round(-1), None, C.id("A")).validate_basic()
    with pytest.raises(ValidationError, match="signature"):
        replace(C.prevote("A", 1, 0, None), signature=b"x").validate_basic()


def test_decide_builds_a_commit_that_verifies() -> None:
    votes = tuple(C.precommit(w, 4, 2, "X") for w in "ABD")
    d = Decide(Height(4), Round(2), C.block("X"), C.proposal("B", 4, 2, "X"), votes)
    powers = C.validators.powers()
    verify_commit(d.to_commit(), TEST_CHAIN_ID, powers, C.block("X"), 4)
    short = replace(d, commit_votes=votes[:2])
    with pytest.raises(ValidationError, match="2/3"):
        verify_commit(short.to_commit(), TEST_CHAIN_ID, powers, C.block("X"), 4)
