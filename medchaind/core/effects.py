"""What the consensus core asks its host to do (the result of ``apply``).

Effects come as an ordered list and the host carries them out *in order*. The order
carries two guarantees:

* ``WALAppend(m)`` precedes the ``SignVote``/``SignProposal`` for the same ``m``: the
  host makes the entry durable (fsync) before it signs, so no signature can exist that
  a restarted node does not know about;
* ``Broadcast`` of an own message only follows its loop-back: the host signs, feeds the
  signed message back as ``VoteReceived`` / ``ProposalReceived``, and the core answers
  with ``Broadcast`` once it has counted it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..types.block import Commit, CommitSig
from .messages import BlockHash, Height, Message, Proposal, Round, Vote, WALEntry
from .timeouts import TimeoutKind
from .votes import Evidence


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Publish a signed message to the other validators."""

    message: Message


@dataclass(frozen=True, slots=True)
class SignVote:
    """Sign this (unsigned) vote, then feed it back as ``VoteReceived``."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class SignProposal:
    """Sign this (unsigned) proposal, then feed it back as ``ProposalReceived(valid=True)``."""

    proposal: Proposal


@dataclass(frozen=True, slots=True)
class WALAppend:
    """Durably append ``entry`` (fsync) before carrying out the effects after it.

    Either an own message about to be signed (unsigned) or a :class:`PolkaRecord`.
    """

    entry: WALEntry


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """After ``duration_ms``, feed ``TimeoutFired(kind, height, round)``."""

    kind: TimeoutKind
    height: Height
    round: Round
    duration_ms: int


@dataclass(frozen=True, slots=True)
class RequestValue:
    """This node proposes in (height, round): build a block, answer with ``BlockReady``."""

    height: Height
    round: Round


@dataclass(frozen=True, slots=True)
class Decide:
    """``block_hash`` is final at ``height`` (L49-L51).

    ``commit_votes`` are the 2f+1 (by power) precommits for it in ``round``, sorted by
    validator: the commit certificate. ``proposal`` is the proposal that carried the
    value. The host persists block + commit, then starts the next height.
    """

    height: Height
    round: Round
    block_hash: BlockHash
    proposal: Proposal
    commit_votes: tuple[Vote, ...]

    def to_commit(self) -> Commit:
        """The :class:`~medchaind.types.block.Commit` stored with the block."""
        return Commit(self.height, self.round, self.block_hash,
                      tuple(CommitSig(v.validator, v.signature) for v in self.commit_votes))


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    """A validator equivocated; gossip the evidence and put it in a block."""

    evidence: Evidence


Effect = (Broadcast | SignVote | SignProposal | WALAppend | ScheduleTimeout | RequestValue
          | Decide | EvidenceFound)
