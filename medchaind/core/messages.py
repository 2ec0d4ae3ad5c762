"""Consensus messages: proposals and votes, their signed payloads and wire form.

Both are frozen values. A message the core asks the host to sign carries an empty
``signature`` (``b""``); the host signs :meth:`Vote.payload` / :meth:`Proposal.payload`
under the vote / proposal domain (see :mod:`medchaind.crypto`) and returns the same
value with the signature filled in (:meth:`Vote.with_signature`).

Signature verification is a *host* concern (validate once, at the boundary): the node's
gossip validator runs :func:`decode_vote` / :func:`decode_proposal` (shape) and then
:func:`verify_vote` / :func:`verify_proposal` (signature, chain id) before a message
reaches the core. The core trusts what it is fed and only applies the *stateful* checks
(right height, known validator, right proposer for the round). This keeps the core free
of crypto cost in the simulator and keeps one place that decides what "valid" means.

The signed payloads are canonical CBOR (``medchaind.codec``): votes use
:func:`medchaind.types.block.vote_payload`, so the precommits the core collects are,
byte for byte, the signatures a :class:`~medchaind.types.block.Commit` carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NewType, Protocol

from .. import codec, crypto
from ..errors import DecodeError, ValidationError
from ..types.block import PRECOMMIT, PREVOTE, vote_payload

Height = NewType("Height", int)
Round = NewType("Round", int)
#: A block's identity; the core never sees block contents.
BlockHash = NewType("BlockHash", bytes)
#: A validator is identified by its Ed25519 public key.
ValidatorId = NewType("ValidatorId", bytes)

#: ``-1``: the paper's "no round" (initial lockedRound / validRound, proposal without POL).
NIL_ROUND = Round(-1)

MAX_MESSAGE_BYTES = 512


class VoteKind(IntEnum):
    """Vote types; the numbers are the ``type`` field of the signed vote payload."""

    PREVOTE = PREVOTE
    PRECOMMIT = PRECOMMIT


def proposal_payload(height: int, round_: int, block_hash: bytes, pol_round: int) -> bytes:
    """What a proposer signs (domain ``medchain/proposal/v1``) when it proposes.

    The proposer's key is not in the payload: the signature binds it, as for votes.
    """
    return codec.encode_unchecked(
        {"type": "proposal", "height": height, "round": round_, "block": block_hash,
         "pol_round": pol_round}
    )


# Integer fields are checked with ``type(x) is int``, never ``isinstance(x, int)``: CBOR
# ``true``/``false`` decode to Python's bool, a subclass of int with True == 1, so a
# membership or range test alone would accept ``{"kind": true}`` as a prevote. The vote
# would then have two encodings (``1`` and ``true``), hence two hashes and two gossip
# ids, for one signature (docs/protocol.md: one object, one encoding).


def _is_uint(x: object) -> bool:
    return type(x) is int and 0 <= x < 2**63


def _is_kind(x: object) -> bool:
    """A vote kind: the integer 1 or 2 (or the VoteKind enum built from it), never a bool."""
    return type(x) in (int, VoteKind) and x in (VoteKind.PREVOTE, VoteKind.PRECOMMIT)


def _check_key(x: object, what: str) -> None:
    if not isinstance(x, bytes) or len(x) != crypto.PUBLIC_KEY_SIZE:
        raise ValidationError(f"{what}: must be a {crypto.PUBLIC_KEY_SIZE}-byte public key")


def _check_hash(x: object, what: str) -> None:
    if not isinstance(x, bytes) or len(x) != crypto.HASH_SIZE:
        raise ValidationError(f"{what}: block hash must be {crypto.HASH_SIZE} bytes")


def _check_signature(x: object, what: str) -> None:
    if not isinstance(x, bytes) or len(x) not in (0, crypto.SIGNATURE_SIZE):
        raise ValidationError(f"{what}: signature must be empty or {crypto.SIGNATURE_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class Vote:
    """⟨PREVOTE|PRECOMMIT, height, round, id(v) | nil⟩ signed by ``validator``."""

    kind: VoteKind
    height: Height
    round: Round
    block_hash: BlockHash | None
    validator: ValidatorId
    signature: bytes = b""

    def payload(self) -> bytes:
        return vote_payload(int(self.kind), self.height, self.round, self.block_hash)

    def unsigned(self) -> Vote:
        return Vote(self.kind, self.height, self.round, self.block_hash, self.validator)

    def with_signature(self, signature: bytes) -> Vote:
        return Vote(self.kind, self.height, self.round, self.block_hash, self.validator, signature)

    def validate_basic(self) -> None:
        """Stateless checks; raise ValidationError on the first broken rule."""
        if not _is_kind(self.kind):
            raise ValidationError("vote: kind must be prevote (1) or precommit (2)")
        if not _is_uint(self.height) or self.height < 1:
            raise ValidationError("vote: height must be an integer >= 1")
        if not _is_uint(self.round):
            raise ValidationError("vote: round must be an integer >= 0")
        if self.block_hash is not None:
            _check_hash(self.block_hash, "vote")
        _check_key(self.validator, "vote: validator")
        _check_signature(self.signature, "vote")

    def to_map(self) -> dict[str, Any]:
        return {"kind": int(self.kind), "height": self.height, "round": self.round,
                "block": self.block_hash, "validator": self.validator,
                "signature": self.signature}

    def encode(self) -> bytes:
        return codec.encode_unchecked(self.to_map())

    @classmethod
    def from_map(cls, m: Any) -> Vote:
        if not isinstance(m, dict) or set(m) != {"kind", "height", "round", "block",
                                                 "validator", "signature"}:
            raise ValidationError("vote: wrong fields")
        if not _is_kind(m["kind"]):
            raise ValidationError("vote: kind must be prevote (1) or precommit (2)")
        vote = cls(VoteKind(m["kind"]), m["height"], m["round"], m["block"], m["validator"],
                   m["signature"])
        vote.validate_basic()
        return vote

    def __repr__(self) -> str:
        value = "nil" if self.block_hash is None else self.block_hash.hex()[:8]
        return (f"Vote({self.kind.name.lower()} h={self.height} r={self.round} {value} "
                f"by {self.validator.hex()[:8]})")


@dataclass(frozen=True, slots=True)
class Proposal:
    """⟨PROPOSAL, height, round, v, validRound⟩ signed by ``proposer``.

    ``pol_round`` is the paper's ``vr``: -1, or the round (< ``round``) of the proof of
    lock (2f+1 prevotes for ``block_hash``) that justifies re-proposing a locked value.
    """

    height: Height
    round: Round
    block_hash: BlockHash
    pol_round: Round
    proposer: ValidatorId
    signature: bytes = b""

    def payload(self) -> bytes:
        return proposal_payload(self.height, self.round, self.block_hash, self.pol_round)

    def unsigned(self) -> Proposal:
        return Proposal(self.height, self.round, self.block_hash, self.pol_round, self.proposer)

    def with_signature(self, signature: bytes) -> Proposal:
        return Proposal(self.height, self.round, self.block_hash, self.pol_round,
                        self.proposer, signature)

    def validate_basic(self) -> None:
        if not _is_uint(self.height) or self.height < 1:
            raise ValidationError("proposal: height must be an integer >= 1")
        if not _is_uint(self.round):
            raise ValidationError("proposal: round must be an integer >= 0")
        if type(self.pol_round) is not int or not -1 <= self.pol_round < self.round:
            raise ValidationError("proposal: pol_round must be -1 or a round below round")
        _check_hash(self.block_hash, "proposal")
        _check_key(self.proposer, "proposal: proposer")
        _check_signature(self.signature, "proposal")

    def to_map(self) -> dict[str, Any]:
        return {"height": self.height, "round": self.round, "block": self.block_hash,
                "pol_round": self.pol_round, "proposer": self.proposer,
                "signature": self.signature}

    def encode(self) -> bytes:
        return codec.encode_unchecked(self.to_map())

    @classmethod
    def from_map(cls, m: Any) -> Proposal:
        if not isinstance(m, dict) or set(m) != {"height", "round", "block", "pol_round",
                                                 "proposer", "signature"}:
            raise ValidationError("proposal: wrong fields")
        proposal = cls(m["height"], m["round"], m["block"], m["pol_round"], m["proposer"],
                       m["signature"])
        proposal.validate_basic()
        return proposal

    def __repr__(self) -> str:
        return (f"Proposal(h={self.height} r={self.round} {self.block_hash.hex()[:8]} "
                f"pol={self.pol_round} by {self.proposer.hex()[:8]})")


#: A message the core handles (and the unit the WAL stores, unsigned).
Message = Proposal | Vote


@dataclass(frozen=True, slots=True)
class PolkaRecord:
    """2f+1 signed prevotes for ``block_hash`` in (height, round): a proof of lock (POL).

    The core logs one to the WAL whenever L36 makes it lock on, or adopt as valid, a
    value. It is what lets a restarted node *prove* its lock and valid value to others:
    it proposes validValue with validRound (L14-L15), and the other nodes accept that
    only with the POL (L28). If the node kept only its own votes, a crash could leave
    the only other copies of the POL with Byzantine nodes that never gossip them, and
    the honest nodes could stay split forever.
    """

    height: Height
    round: Round
    block_hash: BlockHash
    votes: tuple[Vote, ...]


#: What a ``WALAppend`` carries: an own message about to be signed (unsigned) or a POL.
WALEntry = Proposal | Vote | PolkaRecord


def decode_vote(data: bytes) -> Vote:
    """Bytes from a peer -> a well-formed vote, or DecodeError. Does not check the signature."""
    try:
        return Vote.from_map(codec.decode(data, max_size=MAX_MESSAGE_BYTES))
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None


def decode_proposal(data: bytes) -> Proposal:
    """Bytes from a peer -> a well-formed proposal, or DecodeError. Does not check the signature."""
    try:
        return Proposal.from_map(codec.decode(data, max_size=MAX_MESSAGE_BYTES))
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None


# ------------------------------------------------------------------------------ signing


def sign_vote(key: crypto.SigningKey, chain_id: str, vote: Vote) -> Vote:
    """``vote`` signed by ``key``; refuses to sign for another validator."""
    if key.public_key != vote.validator:
        raise ValidationError("sign_vote: key does not belong to the vote's validator")
    return vote.with_signature(key.sign(crypto.DOMAIN_VOTE, chain_id, vote.payload()))


def sign_proposal(key: crypto.SigningKey, chain_id: str, proposal: Proposal) -> Proposal:
    if key.public_key != proposal.proposer:
        raise ValidationError("sign_proposal: key does not belong to the proposer")
    return proposal.with_signature(
        key.sign(crypto.DOMAIN_PROPOSAL, chain_id, proposal.payload())
    )


def verify_vote(chain_id: str, vote: Vote) -> bool:
    return crypto.verify(vote.validator, vote.signature, crypto.DOMAIN_VOTE, chain_id,
                         vote.payload())


def verify_proposal(chain_id: str, proposal: Proposal) -> bool:
    return crypto.verify(proposal.proposer, proposal.signature, crypto.DOMAIN_PROPOSAL,
                         chain_id, proposal.payload())


class Signer(Protocol):
    """What a host needs to carry out ``SignVote`` / ``SignProposal`` effects."""

    @property
    def public_key(self) -> ValidatorId: ...

    def sign_vote(self, vote: Vote) -> Vote: ...

    def sign_proposal(self, proposal: Proposal) -> Proposal: ...


class Ed25519Signer:
    """The production signer: a validator key bound to one chain id.

    Ed25519 signatures are deterministic, so re-signing a message replayed from the WAL
    yields the very same bytes: a replay can never produce a second, different signature.
    """

    __slots__ = ("_key", "_chain_id")

    def __init__(self, key: crypto.SigningKey, chain_id: str) -> None:
        self._key = key
        self._chain_id = chain_id

    @property
    def public_key(self) -> ValidatorId:
        return ValidatorId(self._key.public_key)

    def sign_vote(self, vote: Vote) -> Vote:
        return sign_vote(self._key, self._chain_id, vote)

    def sign_proposal(self, proposal: Proposal) -> Proposal:
        return sign_proposal(self._key, self._chain_id, proposal)
