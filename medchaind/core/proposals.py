"""The proposals of one height, with the host's verdict on each proposed block.

Admission rules (checked by :meth:`ProposalKeeper.add`), and why:

* the proposal must be for our height, signed by ``proposer(height, round)`` (the paper's
  "from proposer(h_p, r)") and have ``-1 <= pol_round < round``;
* the *first* proposal of a round is kept. A different proposal for a round that already
  has one (the proposer equivocated) is kept only if our votes already *justify* it: 2f+1
  prevotes or 2f+1 precommits for its value in that round. Those are exactly the cases
  where the value matters (L36 locks on it, L49 decides it), and a node that first heard
  the other proposal would otherwise never be able to lock on or decide the value the
  rest of the network agreed on. Since at most one value per (round, kind) can have 2f+1
  counted power (see :mod:`.votes`), a round holds at most three proposals;
* proposals for rounds above ours are capped at two such rounds per proposer, the same
  catch-up-round quota as votes.

``valid`` is the host's answer to valid(v): the core never sees the block, only its
hash and this bit. A node's own proposal is valid by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .messages import BlockHash, Height, Proposal, Round, ValidatorId, VoteKind
from .validators import ValidatorSet
from .votes import COUNTED, MAX_FUTURE_ROUNDS_PER_VALIDATOR, AddOutcome, VoteKeeper


@dataclass(frozen=True, slots=True)
class ProposalRecord:
    proposal: Proposal
    valid: bool


@dataclass(frozen=True, slots=True)
class ProposalKeeper:
    height: Height
    #: round -> the kept proposals of that round, first received first.
    by_round: Mapping[Round, tuple[ProposalRecord, ...]]

    @classmethod
    def new(cls, height: Height) -> ProposalKeeper:
        return cls(height, {})

    def in_round(self, round_: Round) -> tuple[ProposalRecord, ...]:
        return self.by_round.get(round_, ())

    def get(self, round_: Round, value: BlockHash) -> ProposalRecord | None:
        for rec in self.by_round.get(round_, ()):
            if rec.proposal.block_hash == value:
                return rec
        return None

    def contains(self, proposal: Proposal) -> bool:
        rec = self.get(proposal.round, proposal.block_hash)
        return rec is not None and rec.proposal == proposal

    def all_proposals(self) -> list[Proposal]:
        return [rec.proposal for r in sorted(self.by_round) for rec in self.by_round[r]]

    def _future_rounds_of(self, proposer: ValidatorId, current_round: Round) -> int:
        return sum(1 for r, recs in self.by_round.items()
                   if r > current_round and recs[0].proposal.proposer == proposer)

    def classify(
        self,
        proposal: Proposal,
        validators: ValidatorSet,
        votes: VoteKeeper,
        current_round: Round,
    ) -> AddOutcome:
        """What :meth:`add` would do with ``proposal`` (a pure query)."""
        p = proposal
        if (
            p.height != self.height
            or p.round < 0
            or not -1 <= p.pol_round < p.round
            or p.proposer != validators.proposer(p.height, p.round)
        ):
            return AddOutcome.REJECTED
        kept = self.by_round.get(p.round, ())
        if any(rec.proposal.block_hash == p.block_hash for rec in kept):
            return AddOutcome.DUPLICATE
        if kept:
            justified = votes.has_quorum_for(p.round, VoteKind.PREVOTE, p.block_hash) or (
                votes.has_quorum_for(p.round, VoteKind.PRECOMMIT, p.block_hash)
            )
            return AddOutcome.ADDED_CONFLICTING if justified else AddOutcome.EQUIVOCATION
        if (
            p.round > current_round
            and self._future_rounds_of(p.proposer, current_round)
            >= MAX_FUTURE_ROUNDS_PER_VALIDATOR
        ):
            return AddOutcome.REJECTED
        return AddOutcome.ADDED

    def add(
        self,
        proposal: Proposal,
        valid: bool,
        validators: ValidatorSet,
        votes: VoteKeeper,
        current_round: Round,
    ) -> tuple[ProposalKeeper, AddOutcome]:
        """Keep ``proposal`` if the admission rules allow; ADDED or ADDED_CONFLICTING
        mean it was kept."""
        outcome = self.classify(proposal, validators, votes, current_round)
        if outcome not in COUNTED:
            return self, outcome
        by_round = dict(self.by_round)
        by_round[proposal.round] = (*self.by_round.get(proposal.round, ()),
                                    ProposalRecord(proposal, valid))
        return ProposalKeeper(self.height, by_round), outcome
