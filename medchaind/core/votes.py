"""The vote keeper: per-round tallies of one height, duplicates, equivocation evidence.

Why it is shaped this way
=========================

The round state machine only asks threshold questions ("2f+1 prevotes for v in round
r?", "2f+1 precommits for anything?", "f+1 validators active in round r?"). The keeper
answers them in O(1)-ish from running tallies instead of recounting.

Counting rule. Per (round, kind) a validator's *first* vote is its vote: it counts for
"2f+1 of anything" (L34, L47), for its value, and for the f+1 round skip (L55). A
second identical vote is a duplicate. A vote for a different value is *equivocation*:
the first such pair becomes :class:`Evidence` (reported once per validator, round and
kind), and the conflicting vote also counts for *its* value, but only if that value
already holds f+1 power of first votes. The paper counts "2f+1 ⟨PRECOMMIT, h, r,
id(v)⟩" as messages from distinct senders for id(v), whatever else they sent; this
matters for liveness: a node that first heard an equivocator's other vote must still
be able to count the commit certificate the rest of the network decided with (CometBFT
reaches the same place with per-block tallies unlocked by peers' VoteSetMaj23 claims).
It is safe because two values with 2f+1 each would need more than f equivocators
(quorum intersection). The f+1 bar bounds memory: first votes sum to at most the total
power, so at most two values per (round, kind) clear it, and every validator has at most
three stored votes there (first + two conflicting).

Memory bound (the argument of CometBFT's ``types/vote_set.go`` / ``HeightVoteSet``).
A Byzantine validator must not be able to make us store unboundedly many votes:

* per (round, kind) we store at most three votes per validator (above) and one piece
  of evidence per validator;
* rounds at or below our current round r: at most r+1 of them, and r itself only
  grows by timeouts (time-bounded) or by the f+1 round skip (L55), which needs at least
  one correct validator to be in that round already;
* rounds *above* our current round ("catch-up rounds", which we must keep so that L55
  and late decisions work): each validator may occupy at most
  :data:`MAX_FUTURE_ROUNDS_PER_VALIDATOR` of them (CometBFT allows each peer two
  catch-up rounds). Votes beyond that are rejected, not stored; the quota frees itself
  as our round advances past them, and gossip re-delivers what was rejected.

So a height holds at most ``(r + 1 + 2n) * n * 2 * 3`` votes and ``(r + 1 + 2n) * n * 2``
evidence records,
for n validators. The keeper is dropped at the next height.

Persistence: the keeper is a value, and older keepers stay valid, which is what lets
``apply(state, input)`` be a pure function. Every map in it is a persistent hash array
mapped trie (``immutables.Map``, the structure behind :mod:`contextvars`): adding a vote
updates a few maps in O(log32 n) (effectively constant: three levels up to 32,768
validators) and shares everything else with the previous keeper. With plain dicts each
vote copied the round's vote map, O(n) per vote and O(n^2) per height per node, which
at 128 authorities was a measurable share of a height (docs/benchmarks.md, issue 14).
Every quantity the round machine asks about (power per value, power of first votes,
power of the round's participants, the quorum) is a running total updated by the add
that changes it; no query rescans a vote set except :meth:`VoteKeeper.votes_for` and
:meth:`VoteKeeper.all_votes`, which build a commit or a re-gossip list once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from immutables import Map

from ..errors import ValidationError
from .messages import BlockHash, Height, Round, ValidatorId, Vote, VoteKind
from .validators import ValidatorSet

MAX_FUTURE_ROUNDS_PER_VALIDATOR = 2


def _value_key(v: BlockHash | None) -> tuple[int, bytes]:
    return (0, b"") if v is None else (1, v)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two votes by one validator for the same (height, round, kind), different values.

    Canonical order, so every node that sees the same pair builds the same evidence:
    ``vote_a`` holds the smaller value (nil first, then bytewise).
    """

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, x: Vote, y: Vote) -> Evidence:
        a, b = sorted((x, y), key=lambda v: _value_key(v.block_hash))
        ev = cls(a, b)
        ev.validate_basic()
        return ev

    @property
    def validator(self) -> ValidatorId:
        return self.vote_a.validator

    def validate_basic(self) -> None:
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.height, a.round, a.kind) != (b.validator, b.height, b.round, b.kind):
            raise ValidationError("evidence: votes are not by one validator for one step")
        if _value_key(a.block_hash) >= _value_key(b.block_hash):
            raise ValidationError("evidence: votes must differ and be in canonical order")


@dataclass(frozen=True, slots=True)
class Quorum:
    """A value (``None`` = nil) that holds more than 2/3 of the power of a (round, kind)."""

    value: BlockHash | None


@dataclass(frozen=True, slots=True)
class Tally:
    """The counted votes of one (round, kind)."""

    #: The first vote of each validator.
    votes: Map[ValidatorId, Vote]
    #: Conflicting votes counted for their value, by (validator, value).
    extra: Map[tuple[ValidatorId, BlockHash | None], Vote]
    #: Power of first votes per value (the f+1 bar for counting conflicting votes).
    first_power: Map[BlockHash | None, int]
    #: Power per value, first and counted conflicting votes (L36, L44, L49).
    power_by_value: Map[BlockHash | None, int]
    #: Power of the validators that voted at all (L34, L47).
    power: int
    quorum: Quorum | None

    def _with_value_power(self, value: BlockHash | None, power: int,
                          validators: ValidatorSet) -> tuple[Map[BlockHash | None, int],
                                                             Quorum | None]:
        value_power = self.power_by_value.get(value, 0) + power
        by_value = self.power_by_value.set(value, value_power)
        quorum = self.quorum
        if quorum is None and validators.is_quorum(value_power):
            quorum = Quorum(value)
        return by_value, quorum

    def with_first(self, vote: Vote, power: int, validators: ValidatorSet) -> Tally:
        votes = self.votes.set(vote.validator, vote)
        first = self.first_power.set(vote.block_hash, self.first_power.get(vote.block_hash, 0) + power)
        by_value, quorum = self._with_value_power(vote.block_hash, power, validators)
        return Tally(votes, self.extra, first, by_value, self.power + power, quorum)

    def with_extra(self, vote: Vote, power: int, validators: ValidatorSet) -> Tally:
        extra = self.extra.set((vote.validator, vote.block_hash), vote)
        by_value, quorum = self._with_value_power(vote.block_hash, power, validators)
        return Tally(self.votes, extra, self.first_power, by_value, self.power, quorum)

    def get(self, validator: ValidatorId, value: BlockHash | None) -> Vote | None:
        """The counted vote of ``validator`` for ``value``, if any."""
        v = self.votes.get(validator)
        if v is not None and v.block_hash == value:
            return v
        return self.extra.get((validator, value))


_EMPTY_TALLY = Tally(Map(), Map(), Map(), Map(), 0, None)


@dataclass(frozen=True, slots=True)
class RoundVotes:
    prevotes: Tally
    precommits: Tally
    #: Power of the validators with at least one counted vote in this round (for L55).
    participant_power: int

    def tally(self, kind: VoteKind) -> Tally:
        return self.prevotes if kind == VoteKind.PREVOTE else self.precommits

    def has_voted(self, validator: ValidatorId) -> bool:
        return validator in self.prevotes.votes or validator in self.precommits.votes


_EMPTY_ROUND = RoundVotes(_EMPTY_TALLY, _EMPTY_TALLY, 0)


class AddOutcome(Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"
    #: A conflicting vote, counted for its value (that value has f+1 first-vote power).
    ADDED_CONFLICTING = "added-conflicting"
    #: A conflicting vote not counted (its value lacks f+1 first-vote power).
    EQUIVOCATION = "equivocation"
    #: Wrong height, unknown validator, or over the catch-up-round quota.
    REJECTED = "rejected"


#: Outcomes after which the tallies changed.
COUNTED = (AddOutcome.ADDED, AddOutcome.ADDED_CONFLICTING)


@dataclass(frozen=True, slots=True)
class VoteKeeper:
    height: Height
    validators: ValidatorSet
    rounds: Map[Round, RoundVotes]
    evidence: Map[tuple[ValidatorId, Round, VoteKind], Evidence]

    @classmethod
    def new(cls, height: Height, validators: ValidatorSet) -> VoteKeeper:
        return cls(height, validators, Map(), Map())

    # ------------------------------------------------------------------ updates

    def classify(self, vote: Vote, current_round: Round) -> AddOutcome:
        """What :meth:`add` would do with ``vote`` (a pure query; gossip uses it to
        decide whether a peer needs a vote)."""
        power = self.validators.power(vote.validator)
        if vote.height != self.height or power == 0 or vote.round < 0:
            return AddOutcome.REJECTED
        rv = self.rounds.get(vote.round, _EMPTY_ROUND)
        tally = rv.tally(vote.kind)
        prior = tally.votes.get(vote.validator)
        if prior is None:
            if (
                vote.round > current_round
                and not rv.has_voted(vote.validator)
                and self.future_rounds_of(vote.validator, current_round)
                >= MAX_FUTURE_ROUNDS_PER_VALIDATOR
            ):
                return AddOutcome.REJECTED
            return AddOutcome.ADDED
        if prior.block_hash == vote.block_hash or (vote.validator, vote.block_hash) in tally.extra:
            return AddOutcome.DUPLICATE
        if tally.first_power.get(vote.block_hash, 0) >= self.validators.f_plus_one_power:
            return AddOutcome.ADDED_CONFLICTING
        return AddOutcome.EQUIVOCATION

    def add(
        self, vote: Vote, current_round: Round
    ) -> tuple[VoteKeeper, AddOutcome, Evidence | None]:
        """Count ``vote``; the returned evidence is not None only when newly found."""
        outcome = self.classify(vote, current_round)
        if outcome is AddOutcome.REJECTED or outcome is AddOutcome.DUPLICATE:
            return self, outcome, None
        power = self.validators.power(vote.validator)
        rv = self.rounds.get(vote.round, _EMPTY_ROUND)
        tally = rv.tally(vote.kind)
        evidence = self.evidence
        new_evidence = None
        participant_power = rv.participant_power
        if outcome is AddOutcome.ADDED:
            if not rv.has_voted(vote.validator):
                participant_power += power
            tally = tally.with_first(vote, power, self.validators)
        else:
            key = (vote.validator, vote.round, vote.kind)
            if key not in self.evidence:
                new_evidence = Evidence.of(tally.votes[vote.validator], vote)
                evidence = self.evidence.set(key, new_evidence)
            if outcome is AddOutcome.EQUIVOCATION:
                keeper = self if new_evidence is None else VoteKeeper(
                    self.height, self.validators, self.rounds, evidence)
                return keeper, outcome, new_evidence
            tally = tally.with_extra(vote, power, self.validators)
        if vote.kind == VoteKind.PREVOTE:
            new_rv = RoundVotes(tally, rv.precommits, participant_power)
        else:
            new_rv = RoundVotes(rv.prevotes, tally, participant_power)
        rounds = self.rounds.set(vote.round, new_rv)
        return VoteKeeper(self.height, self.validators, rounds, evidence), outcome, new_evidence

    # ------------------------------------------------------------------ queries

    def future_rounds_of(self, validator: ValidatorId, current_round: Round) -> int:
        """How many rounds above ``current_round`` hold a vote of ``validator``."""
        return sum(1 for r, rv in self.rounds.items()
                   if r > current_round and rv.has_voted(validator))

    def tally(self, round_: Round, kind: VoteKind) -> Tally:
        rv = self.rounds.get(round_)
        return _EMPTY_TALLY if rv is None else rv.tally(kind)

    def power_for(self, round_: Round, kind: VoteKind, value: BlockHash | None) -> int:
        return self.tally(round_, kind).power_by_value.get(value, 0)

    def quorum(self, round_: Round, kind: VoteKind) -> Quorum | None:
        """The value with 2f+1 power in (round, kind), if any (at most one can exist)."""
        return self.tally(round_, kind).quorum

    def has_quorum_for(self, round_: Round, kind: VoteKind, value: BlockHash | None) -> bool:
        q = self.tally(round_, kind).quorum
        return q is not None and q.value == value

    def has_quorum_any(self, round_: Round, kind: VoteKind) -> bool:
        """2f+1 power voted in (round, kind), for any mix of values (L34, L47)."""
        return self.validators.is_quorum(self.tally(round_, kind).power)

    def participant_power(self, round_: Round) -> int:
        rv = self.rounds.get(round_)
        return 0 if rv is None else rv.participant_power

    def has_voted(self, round_: Round, validator: ValidatorId) -> bool:
        rv = self.rounds.get(round_)
        return rv is not None and rv.has_voted(validator)

    def contains(self, vote: Vote) -> bool:
        return self.tally(vote.round, vote.kind).get(vote.validator, vote.block_hash) == vote

    def votes_for(self, round_: Round, kind: VoteKind, value: BlockHash | None) -> tuple[Vote, ...]:
        """The counted votes for ``value``, sorted by validator (a canonical commit)."""
        tally = self.tally(round_, kind)
        out = [v for v in tally.votes.values() if v.block_hash == value]
        out += [v for (_, val), v in tally.extra.items() if val == value]
        return tuple(sorted(out, key=lambda v: v.validator))

    def all_votes(self) -> list[Vote]:
        """Every counted vote, by round then prevotes before precommits (gossip order)."""
        out: list[Vote] = []
        for r in sorted(self.rounds):
            rv = self.rounds[r]
            for t in (rv.prevotes, rv.precommits):
                out.extend(t.votes.values())
                out.extend(t.extra.values())
        return out

    def vote_count(self) -> int:
        return sum(len(t.votes) + len(t.extra) for rv in self.rounds.values()
                   for t in (rv.prevotes, rv.precommits))
