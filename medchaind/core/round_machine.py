"""The Tendermint round state machine: the paper's Algorithm 1, as one dispatch.

Theory of operation
===================

Reference: E. Buchman, J. Kwon, Z. Milosevic, "The latest gossip on BFT consensus"
(2018), Algorithm 1. Line numbers in comments (``# L22``) are that listing's. DESIGN.md
§4 states the requirements; Malachite's ``core-state-machine`` is the model for the
shape.

The core is split like Malachite's:

* :mod:`.votes` and :mod:`.proposals` keep the message log of the height;
* :mod:`.driver` (``apply(state, input)``, the public entry point) files each input in
  the log and then *recognises* which of the paper's "upon" conditions have become true.
  Each recognised condition is an **event** below, named after its rule;
* this module, :func:`transition`, is the body of those rules: one ``match`` over
  ``(step, event)`` in which every branch is one rule of the paper and says which lines
  it implements. Guards the paper writes as "while step_p = ..." or "for the first time"
  are the patterns and ``if`` guards of the branches. A pair no branch matches is a rule
  whose guard is false: the state is returned unchanged with no effects.

Per height a node moves through rounds; a round through the steps propose -> prevote ->
precommit; a decision moves it to commit, where it waits for the host's next
``StartHeight``. Safety rests on two facts: (1) any two sets of more than 2/3 of the
power intersect in a correct validator, so at most one value gathers 2f+1 precommits in
a round; (2) a correct validator that precommits v in round r *locks* on v (L36-L41) and
afterwards prevotes only v, unless shown 2f+1 prevotes for another value from a round at
or after its lock (L28-L29), so once a value is decided no other value can gather 2f+1
prevotes, hence no other precommits, in any later round. Liveness comes from timeouts
that grow each round (:mod:`.timeouts`), validValue (a proposer re-proposes a value that
gathered a polka, L14-L15) and the f+1 round skip (L55) that pulls laggards forward.

Where this differs from the listing, and why (none of it touches safety):

* getValue() (L17) is asynchronous: the core emits ``RequestValue`` and continues with
  the host's ``BlockReady``; until then the proposer waits in the propose step.
* The proposer schedules OnTimeoutPropose too (the listing does it only at L20 for
  others), as CometBFT does, so a host that never answers ``RequestValue`` costs one
  round, not the height. Timeouts only ever lead to nil votes: never unsafe.
* "broadcast" of an own message is split into ``WALAppend`` + ``SignVote`` /
  ``SignProposal`` effects. The host signs, feeds the signed message back (as CometBFT
  feeds its own votes through its internal queue), and the driver counts it and emits
  ``Broadcast``. Before asking for a signature the core checks the last-signed guard
  (:func:`sign`, :mod:`.state`).
* L52-L54 (next height, reset, StartRound(0)) happen when the host, having persisted
  the decided block, feeds ``StartHeight(h + 1)``; meanwhile the step is ``COMMIT``.
* valid(v) is the host's verdict, given with the proposal (``ProposalReceived.valid``).
  Deciding (L49) needs the proposal that carries v and a valid verdict for it, exactly
  as in the listing.
* The message log is bounded per height. Votes count as in the paper, per value from
  distinct senders, except that an equivocator's second vote counts only once its value
  has f+1 backing (:mod:`.votes`); a second proposal for a round is kept only once a
  polka or commit justifies it (:mod:`.proposals`). Both rules keep liveness: a node
  that first heard the "other" version of a Byzantine message can still count what the
  rest of the network agreed on.
* When L36 locks on (or adopts as valid) a value, its POL (the 2f+1 prevotes) is logged
  to the WAL too, so that a restarted node can still prove its lock and valid value to
  the others (:mod:`.state`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .effects import (
    Decide,
    Effect,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    WALAppend,
)
from .messages import (
    NIL_ROUND,
    BlockHash,
    Height,
    Message,
    PolkaRecord,
    Proposal,
    Round,
    Vote,
    VoteKind,
)
from .proposals import ProposalRecord
from .state import LastSigned, State, Step
from .timeouts import TimeoutKind

# ----------------------------------------------------------------------------- events
# Each event is one "upon" condition of Algorithm 1 that the driver found to hold.


@dataclass(frozen=True, slots=True)
class NewRound:
    """L10 / L54: start the height at ``round`` (StartRound, L11)."""

    round: Round


@dataclass(frozen=True, slots=True)
class ValueReady:
    """L17: getValue() returned ``block_hash`` (the host's ``BlockReady``)."""

    block_hash: BlockHash


@dataclass(frozen=True, slots=True)
class ProposalInRound:
    """L22: ⟨PROPOSAL, h_p, round_p, v, -1⟩ from proposer(h_p, round_p)."""

    record: ProposalRecord


@dataclass(frozen=True, slots=True)
class ProposalWithPolka:
    """L28: ⟨PROPOSAL, h_p, round_p, v, vr⟩ + 2f+1 ⟨PREVOTE, h_p, vr, id(v)⟩, 0 <= vr < round_p."""

    record: ProposalRecord


@dataclass(frozen=True, slots=True)
class PolkaAny:
    """L34: 2f+1 ⟨PREVOTE, h_p, round_p, *⟩."""


@dataclass(frozen=True, slots=True)
class ProposalAndPolka:
    """L36: ⟨PROPOSAL, h_p, round_p, v, *⟩ and 2f+1 ⟨PREVOTE, h_p, round_p, id(v)⟩, valid(v)."""

    record: ProposalRecord
    polka: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class PolkaNil:
    """L44: 2f+1 ⟨PREVOTE, h_p, round_p, nil⟩."""


@dataclass(frozen=True, slots=True)
class PrecommitAny:
    """L47: 2f+1 ⟨PRECOMMIT, h_p, round_p, *⟩."""


@dataclass(frozen=True, slots=True)
class ProposalAndCommit:
    """L49: ⟨PROPOSAL, h_p, r, v, *⟩ and 2f+1 ⟨PRECOMMIT, h_p, r, id(v)⟩, valid(v), any r."""

    record: ProposalRecord
    commit_votes: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class SkipRound:
    """L55: f+1 ⟨*, h_p, round, *, *⟩ with round > round_p."""

    round: Round


@dataclass(frozen=True, slots=True)
class TimeoutPropose:
    """L57: OnTimeoutPropose(height, round)."""

    height: Height
    round: Round


@dataclass(frozen=True, slots=True)
class TimeoutPrevote:
    """L61: OnTimeoutPrevote(height, round)."""

    height: Height
    round: Round


@dataclass(frozen=True, slots=True)
class TimeoutPrecommit:
    """L65: OnTimeoutPrecommit(height, round)."""

    height: Height
    round: Round


Event = (NewRound | ValueReady | ProposalInRound | ProposalWithPolka | PolkaAny
         | ProposalAndPolka | PolkaNil | PrecommitAny | ProposalAndCommit | SkipRound
         | TimeoutPropose | TimeoutPrevote | TimeoutPrecommit)

Transition = tuple[State, list[Effect]]


# ------------------------------------------------------------------- rule helpers


def is_lock_compatible(state: State, value: BlockHash, pol_round: Round) -> bool:
    """The lock half of L23 and L29: may this node prevote ``value``?

    L23 (no POL, ``pol_round = -1``): ``lockedRound_p = -1 ∨ lockedValue_p = v``.
    L29 (POL from round vr):        ``lockedRound_p <= vr ∨ lockedValue_p = v``.
    Since lockedRound_p >= -1, the first is the second with vr = -1. This is the rule that
    keeps a decided value safe across rounds.
    """
    return state.locked_round <= pol_round or state.locked_value == value


def sign(state: State, message: Message) -> Transition:
    """Ask the host to sign ``message`` (unsigned), subject to the last-signed guard.

    See :mod:`.state`: a strictly higher (height, round, step) is logged to the WAL and
    signed; the same message at the same (height, round, step) is re-signed (identical
    bytes, nothing new to log); anything else is refused with no effect. A node that is
    not a validator of this height never signs.
    """
    if not state.is_validator:
        return state, []
    candidate = LastSigned.of(message)
    last = state.last_signed
    request: Effect = (SignProposal(candidate.message) if isinstance(candidate.message, Proposal)
                       else SignVote(candidate.message))
    if last is None or candidate.hrs > last.hrs:
        return replace(state, last_signed=candidate), [WALAppend(candidate.message), request]
    if candidate.hrs == last.hrs and candidate.message == last.message:
        return state, [request]
    return state, []


def _vote(state: State, kind: VoteKind, value: BlockHash | None, step: Step) -> Transition:
    effects: list[Effect] = []
    if state.me is not None:
        state, effects = sign(state, Vote(kind, state.height, state.round, value, state.me))
    return replace(state, step=step), effects


def _prevote(state: State, value: BlockHash | None) -> Transition:
    """broadcast ⟨PREVOTE, h_p, round_p, value⟩; step_p ← prevote."""
    return _vote(state, VoteKind.PREVOTE, value, Step.PREVOTE)


def _precommit(state: State, value: BlockHash | None) -> Transition:
    """broadcast ⟨PRECOMMIT, h_p, round_p, value⟩; step_p ← precommit."""
    return _vote(state, VoteKind.PRECOMMIT, value, Step.PRECOMMIT)


def _propose(state: State, value: BlockHash, valid_round: Round) -> Transition:
    """L18: broadcast ⟨PROPOSAL, h_p, round_p, proposal, validRound_p⟩."""
    assert state.me is not None
    proposal = Proposal(state.height, state.round, value, valid_round, state.me)
    return sign(state, proposal)


def _log_polka(state: State, value: BlockHash, polka: tuple[Vote, ...]) -> list[Effect]:
    """WAL the POL behind a new lock / valid value (validators only: observers have no WAL)."""
    if not state.is_validator:
        return []
    return [WALAppend(PolkaRecord(state.height, state.round, value, polka))]


def _schedule(state: State, kind: TimeoutKind) -> Effect:
    return ScheduleTimeout(kind, state.height, state.round,
                           state.timeouts.duration_ms(kind, state.round))


def start_round(state: State, round_: Round) -> Transition:
    """StartRound(round), L11-L21."""
    state = replace(
        state, round=round_, step=Step.PROPOSE,  # L11, L12
        awaiting_value=False, prevote_timeout_scheduled=False, polka_current_seen=False,
        precommit_timeout_scheduled=False,
    )
    effects: list[Effect] = []
    if state.is_validator and state.validators.proposer(state.height, round_) == state.me:  # L13
        if state.valid_value is not None:  # L14
            state, effects = _propose(state, state.valid_value, state.valid_round)  # L15, L18
        else:  # L16
            state = replace(state, awaiting_value=True)  # L17: getValue(), answered by BlockReady
            effects = [RequestValue(state.height, round_)]
    effects.append(_schedule(state, TimeoutKind.PROPOSE))  # L19-L21 (for the proposer too)
    return state, effects


# ------------------------------------------------------------------------ the machine


def transition(state: State, event: Event) -> Transition:
    """Apply one recognised "upon" rule. One dispatch over (step, event)."""
    h, r = state.height, state.round
    match (state.step, event):
        case (_, NewRound(round=new_round)):
            # L10 "upon start do StartRound(0)" and L54 after the host's StartHeight.
            return start_round(state, new_round)

        case (Step.UNSTARTED | Step.COMMIT, _):
            # Before StartHeight there is no height; after L49 decision_p[h_p] ≠ nil, and
            # L49's "while decision_p[h_p] = nil" (and every other rule) waits for L52-L54.
            return state, []

        case (Step.PROPOSE, ValueReady(block_hash=value)) if state.awaiting_value:
            # L17: getValue() returned; L18: broadcast ⟨PROPOSAL, h_p, round_p, v, -1⟩.
            return _propose(replace(state, awaiting_value=False), value, NIL_ROUND)

        case (Step.PROPOSE, ProposalInRound(record=rec)) if (
            rec.proposal.round == r and rec.proposal.pol_round == NIL_ROUND
        ):
            # L22: ⟨PROPOSAL, h_p, round_p, v, -1⟩ from proposer while step_p = propose.
            v = rec.proposal.block_hash
            if rec.valid and is_lock_compatible(state, v, NIL_ROUND):  # L23
                return _prevote(state, v)  # L24, L27
            return _prevote(state, None)  # L25-L27

        case (Step.PROPOSE, ProposalWithPolka(record=rec)) if (
            rec.proposal.round == r and 0 <= rec.proposal.pol_round < r
        ):
            # L28: proposal with a POL from vr = pol_round and 2f+1 prevotes(vr, id(v)).
            v, vr = rec.proposal.block_hash, rec.proposal.pol_round
            if rec.valid and is_lock_compatible(state, v, vr):  # L29
                return _prevote(state, v)  # L30, L33
            return _prevote(state, None)  # L31-L33

        case (Step.PREVOTE, PolkaAny()) if not state.prevote_timeout_scheduled:
            # L34-L35: 2f+1 prevotes for anything, for the first time: OnTimeoutPrevote.
            return (replace(state, prevote_timeout_scheduled=True),
                    [_schedule(state, TimeoutKind.PREVOTE)])

        case (Step.PREVOTE, ProposalAndPolka(record=rec, polka=polka)) if (
            not state.polka_current_seen and rec.valid and rec.proposal.round == r
        ):
            # L36 with step_p = prevote (L37): lock on v (L38-L39), precommit it
            # (L40-L41), and remember it as the valid value (L42-L43). The POL goes to
            # the WAL first, so a restarted node can still prove its lock.
            v = rec.proposal.block_hash
            state = replace(state, polka_current_seen=True, locked_value=v, locked_round=r,
                            valid_value=v, valid_round=r)
            state, effects = _precommit(state, v)
            return state, _log_polka(state, v, polka) + effects

        case (Step.PRECOMMIT, ProposalAndPolka(record=rec, polka=polka)) if (
            not state.polka_current_seen and rec.valid and rec.proposal.round == r
        ):
            # L36 with step_p = precommit: the lock is not touched (L37 is false), only
            # validValue_p ← v, validRound_p ← round_p (L42-L43), with its POL logged.
            v = rec.proposal.block_hash
            state = replace(state, polka_current_seen=True, valid_value=v, valid_round=r)
            return state, _log_polka(state, v, polka)

        case (Step.PREVOTE, PolkaNil()):
            # L44-L46: 2f+1 prevotes for nil while step_p = prevote: precommit nil.
            return _precommit(state, None)

        case (Step.PROPOSE | Step.PREVOTE | Step.PRECOMMIT, PrecommitAny()) if (
            not state.precommit_timeout_scheduled
        ):
            # L47-L48: 2f+1 precommits for anything, for the first time: OnTimeoutPrecommit.
            return (replace(state, precommit_timeout_scheduled=True),
                    [_schedule(state, TimeoutKind.PRECOMMIT)])

        case (Step.PROPOSE | Step.PREVOTE | Step.PRECOMMIT,
              ProposalAndCommit(record=rec, commit_votes=votes)) if rec.valid:
            # L49-L51: proposal + 2f+1 precommits for id(v) in any round r, valid(v),
            # decision_p[h_p] = nil: decide. L52-L54 wait for the host's StartHeight.
            p = rec.proposal
            return (replace(state, step=Step.COMMIT, decision=p.block_hash),
                    [Decide(h, p.round, p.block_hash, p, votes)])

        case (Step.PROPOSE | Step.PREVOTE | Step.PRECOMMIT, SkipRound(round=new_round)) if (
            new_round > r
        ):
            # L55-L56: f+1 messages of a higher round: StartRound(round).
            return start_round(state, new_round)

        case (Step.PROPOSE, TimeoutPropose(height=th, round=tr)) if (th, tr) == (h, r):
            # L57-L60: OnTimeoutPropose while still proposing: prevote nil.
            return _prevote(replace(state, awaiting_value=False), None)

        case (Step.PREVOTE, TimeoutPrevote(height=th, round=tr)) if (th, tr) == (h, r):
            # L61-L64: OnTimeoutPrevote while step_p = prevote: precommit nil.
            return _precommit(state, None)

        case (Step.PROPOSE | Step.PREVOTE | Step.PRECOMMIT,
              TimeoutPrecommit(height=th, round=tr)) if (th, tr) == (h, r):
            # L65-L67: OnTimeoutPrecommit for the current round: StartRound(round_p + 1).
            return start_round(state, Round(r + 1))

        case _:
            # The guard of the rule this event belongs to is false (wrong step, stale
            # timeout, "for the first time" already used): nothing happens.
            return state, []
