"""``apply(state, input) -> (state, effects)``: the consensus core's one entry point.

The driver does three things, in order, for every input:

1. **file** it: a vote goes to the vote keeper, a proposal to the proposal keeper (both
   apply their admission rules, see :mod:`.votes` and :mod:`.proposals`), a timeout or a
   built block becomes a round-machine event directly;
2. **recognise** which "upon" conditions of the paper now hold (:func:`next_event`),
   strictly in this order: a decision (L49), a round skip (L55), then the rules of the
   current round (L22/L28, L36, L44, L34, L47);
3. **step** the round machine (:func:`.round_machine.transition`) with that event and go
   back to 2 until no condition holds. Every event either changes the step or round or
   sets a "for the first time" flag, so this terminates; :data:`MAX_EVENTS_PER_INPUT`
   turns a bug that would loop into an exception.

L49 and L55 concern an arbitrary round; they can only become true when something of that
round arrives, so only the round the input touched is examined for them.

How a host drives the core
==========================

::

    state = initial_state(my_key, timeouts)
    state, effects = apply(state, StartHeight(h, validators, wal=wal.entries(h)))
    loop:
        for effect in effects, in order:
            WALAppend(m)        -> append m to the WAL and fsync
            SignVote(v)         -> s = signer.sign_vote(v); queue VoteReceived(s)
            SignProposal(p)     -> s = signer.sign_proposal(p); queue ProposalReceived(s, True)
            Broadcast(m)        -> publish m (own, signed messages only)
            ScheduleTimeout(..) -> after duration_ms queue TimeoutFired(kind, height, round)
            RequestValue(h, r)  -> build a block; queue BlockReady(h, r, hash)
            Decide(..)          -> persist block + to_commit(); queue StartHeight(h + 1, ...)
            EvidenceFound(e)    -> hand e to the evidence pool / gossip
        next input: the queued own inputs first, then verified peer messages, timers
        state, effects = apply(state, input)

Peer messages are verified (shape and signature) before they are fed. Messages for a
height the node has not reached are dropped or buffered by the host; gossip delivers
them again.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import ValidationError
from .effects import Broadcast, Effect, EvidenceFound, ScheduleTimeout, SignProposal, SignVote
from .inputs import BlockReady, Input, ProposalReceived, StartHeight, TimeoutFired, VoteReceived
from .messages import NIL_ROUND, Message, PolkaRecord, Proposal, Round, Vote, VoteKind
from .proposals import ProposalKeeper
from .round_machine import (
    Event,
    NewRound,
    PolkaAny,
    PolkaNil,
    PrecommitAny,
    ProposalAndCommit,
    ProposalAndPolka,
    ProposalInRound,
    ProposalWithPolka,
    SkipRound,
    TimeoutPrecommit,
    TimeoutPrevote,
    TimeoutPropose,
    ValueReady,
    transition,
)
from .state import LastSigned, State, Step
from .timeouts import TimeoutKind
from .votes import COUNTED, AddOutcome, VoteKeeper

MAX_EVENTS_PER_INPUT = 64

Transition = tuple[State, list[Effect]]


def apply(state: State, inp: Input) -> Transition:
    """Feed one input; return the new state and the effects for the host, in order.

    Pure: no I/O, no clock, no randomness; ``state`` is not modified. Raises
    :class:`~medchaind.errors.ValidationError` only for a host error (a StartHeight that
    does not move forward, a WAL entry signed by another key); a peer message can never
    make it raise.
    """
    touched: Round | None = None
    match inp:
        case StartHeight():
            return _start_height(state, inp)
        case _ if state.step == Step.UNSTARTED:
            return state, []
        case VoteReceived(vote=vote):
            state, effects, touched = _file_vote(state, vote)
        case ProposalReceived(proposal=proposal, valid=valid):
            state, effects, touched = _file_proposal(state, proposal, valid)
        case TimeoutFired(kind=kind, height=height, round=round_):
            event: Event
            if kind == TimeoutKind.PROPOSE:
                event = TimeoutPropose(height, round_)
            elif kind == TimeoutKind.PREVOTE:
                event = TimeoutPrevote(height, round_)
            else:
                event = TimeoutPrecommit(height, round_)
            state, effects = transition(state, event)
        case BlockReady(height=height, round=round_, block_hash=block_hash):
            if (height, round_) != (state.height, state.round):
                return state, []
            state, effects = transition(state, ValueReady(block_hash))
    state, more = _progress(state, touched)
    return state, effects + more


# ----------------------------------------------------------------------- filing


def _file_vote(state: State, vote: Vote) -> tuple[State, list[Effect], Round | None]:
    if vote.height != state.height:
        return state, [], None
    keeper, outcome, evidence = state.votes.add(vote, state.round)
    effects: list[Effect] = []
    if evidence is not None:
        effects.append(EvidenceFound(evidence))
    if keeper is not state.votes:
        state = state.with_votes(keeper)
    if outcome not in COUNTED:
        return state, effects, None
    if outcome is AddOutcome.ADDED and vote.validator == state.me:
        effects.append(Broadcast(vote))  # own vote, signed and counted: publish it
    return state, effects, vote.round


def _file_proposal(state: State, proposal: Proposal, valid: bool
                   ) -> tuple[State, list[Effect], Round | None]:
    if proposal.height != state.height:
        return state, [], None
    keeper, outcome = state.proposals.add(proposal, valid, state.validators, state.votes,
                                          state.round)
    if outcome not in COUNTED:
        return state, [], None
    state = replace(state, proposals=keeper)
    effects: list[Effect] = [Broadcast(proposal)] if proposal.proposer == state.me else []
    return state, effects, proposal.round


def admits_proposal(state: State, proposal: Proposal) -> bool:
    """Whether :func:`apply` would keep ``proposal`` now: a pure query for the host.

    The host must answer valid(v) (L22, L28, L36, L49) before it feeds a proposal, and
    for a block that means executing it. Asking first means a block is executed, and
    kept in the host's cache, only for a proposal the core will file: this height, not
    decided yet (L49 is done once step_p = commit), from proposer(h_p, r) (the paper's
    "from proposer(h_p, round_p)", L22/L28), the first of its round or justified by a
    polka or commit, within the catch-up-round quota (:mod:`.proposals`). Without this
    check one Byzantine authority could make every node execute and hold any number of
    blocks by signing proposals for rounds that are not its turn.
    """
    if state.step in (Step.UNSTARTED, Step.COMMIT) or proposal.height != state.height:
        return False
    outcome = state.proposals.classify(proposal, state.validators, state.votes, state.round)
    return outcome in COUNTED


# ------------------------------------------------------------------- recognising


def _round_participation(state: State, round_: Round) -> int:
    """Power of the validators from which we hold a message of ``round_`` (L55)."""
    power = state.votes.participant_power(round_)
    recs = state.proposals.in_round(round_)
    if recs:
        proposer = recs[0].proposal.proposer
        if not state.votes.has_voted(round_, proposer):
            power += state.validators.power(proposer)
    return power


def next_event(state: State, touched: Round | None) -> Event | None:
    """The first "upon" condition that holds now, or None.

    Mirrors the guards of :func:`.round_machine.transition` exactly, so that every event
    returned here makes progress.
    """
    step = state.step
    if step == Step.UNSTARTED or step == Step.COMMIT:
        return None
    votes, proposals, r = state.votes, state.proposals, state.round
    if touched is not None:
        # L49: proposal + 2f+1 precommits for its value, in the round just touched.
        q = votes.quorum(touched, VoteKind.PRECOMMIT)
        if q is not None and q.value is not None:
            rec = proposals.get(touched, q.value)
            if rec is not None and rec.valid:
                return ProposalAndCommit(rec, votes.votes_for(touched, VoteKind.PRECOMMIT,
                                                              q.value))
        # L55: f+1 (by power) of the validators are already in a higher round.
        if touched > r and state.validators.is_f_plus_one(_round_participation(state, touched)):
            return SkipRound(touched)
    if step == Step.PROPOSE:
        for rec in proposals.in_round(r):
            vr = rec.proposal.pol_round
            if vr == NIL_ROUND:
                return ProposalInRound(rec)  # L22
            if vr < r and votes.has_quorum_for(vr, VoteKind.PREVOTE, rec.proposal.block_hash):
                return ProposalWithPolka(rec)  # L28
        # L22/L28 are the only propose-step rules besides L47/L49/L55 and the timeout.
    q = votes.quorum(r, VoteKind.PREVOTE)
    if q is not None and not state.polka_current_seen and step >= Step.PREVOTE and (
        q.value is not None
    ):
        rec = proposals.get(r, q.value)
        if rec is not None and rec.valid:
            return ProposalAndPolka(rec, votes.votes_for(r, VoteKind.PREVOTE, q.value))  # L36
    if step == Step.PREVOTE:
        if q is not None and q.value is None:
            return PolkaNil()  # L44
        if not state.prevote_timeout_scheduled and votes.has_quorum_any(r, VoteKind.PREVOTE):
            return PolkaAny()  # L34
    if not state.precommit_timeout_scheduled and votes.has_quorum_any(r, VoteKind.PRECOMMIT):
        return PrecommitAny()  # L47
    return None


def _progress(state: State, touched: Round | None) -> Transition:
    effects: list[Effect] = []
    for _ in range(MAX_EVENTS_PER_INPUT):
        event = next_event(state, touched)
        if event is None:
            return state, effects
        new_state, out = transition(state, event)
        if new_state is state:
            raise RuntimeError(f"consensus core bug: {event!r} recognised but not applied "
                               f"at step {state.step.name}")
        state = new_state
        effects.extend(out)
    raise RuntimeError("consensus core bug: no fixpoint after "
                       f"{MAX_EVENTS_PER_INPUT} events for one input")


# ------------------------------------------------------------------- heights & WAL


def _start_height(state: State, inp: StartHeight) -> Transition:
    """L10 (start) / L52-L54 (next height): a fresh height, or a restore from the WAL."""
    if state.step != Step.UNSTARTED and inp.height <= state.height:
        raise ValidationError(f"start height: {inp.height} does not follow height {state.height}")
    if inp.height < 1:
        raise ValidationError("start height: heights start at 1")
    if len(inp.validators) == 0:
        raise ValidationError("start height: the validator set is empty")
    h, vs = inp.height, inp.validators
    # L53: reset lockedRound, lockedValue, validRound, validValue and the message log.
    fresh = replace(
        state, height=h, validators=vs, round=Round(0), step=Step.UNSTARTED,
        locked_value=None, locked_round=NIL_ROUND, valid_value=None, valid_round=NIL_ROUND,
        votes=VoteKeeper.new(h, vs), proposals=ProposalKeeper.new(h), awaiting_value=False,
        prevote_timeout_scheduled=False, polka_current_seen=False,
        precommit_timeout_scheduled=False, decision=None,
    )
    entries: list[Message] = []
    polkas: list[PolkaRecord] = []
    for e in inp.wal:
        if e.height != h:
            continue
        if isinstance(e, PolkaRecord):
            polkas.append(e)
            continue
        signer = e.proposer if isinstance(e, Proposal) else e.validator
        if signer != state.me:
            raise ValidationError("start height: a WAL entry was signed by another key "
                                  "(wrong WAL for this validator?)")
        if e.unsigned() not in entries:
            entries.append(e.unsigned())
    if not entries:
        return transition(fresh, NewRound(Round(0)))  # L10 / L54: StartRound(0)
    return _restore(fresh, entries, polkas)


def _restore(state: State, entries: list[Message], polkas: list[PolkaRecord]) -> Transition:
    """Resume a height from the WAL entries of a node that crashed in it (see .state)."""
    guard = LastSigned.from_wal(entries)
    assert guard is not None
    if state.last_signed is None or guard.hrs > state.last_signed.hrs:
        state = replace(state, last_signed=guard)
    # The POLs: back into the vote keeper (so gossip can prove them to others again),
    # and the highest one is validValue/validRound (L42-L43 ran when it was logged).
    horizon = Round(max([guard.round, *(p.round for p in polkas)]))
    keeper = state.votes
    for polka in polkas:
        for vote in polka.votes:
            keeper, _, _ = keeper.add(vote, horizon)
    state = replace(state, votes=keeper)
    for polka in polkas:
        if polka.round > state.valid_round and keeper.has_quorum_for(
            polka.round, VoteKind.PREVOTE, polka.block_hash
        ):
            state = replace(state, valid_value=polka.block_hash, valid_round=polka.round)
    locks = [e for e in entries if isinstance(e, Vote) and e.kind == VoteKind.PRECOMMIT
             and e.block_hash is not None]
    if locks:
        # L38-L39 ran exactly when this precommit was signed: the lock was (v, round).
        lock = max(locks, key=lambda v: v.round)
        state = replace(state, locked_value=lock.block_hash, locked_round=lock.round)
        if lock.round > state.valid_round:
            state = replace(state, valid_value=lock.block_hash, valid_round=lock.round)
    state = replace(state, round=guard.round, step=guard.step)
    effects: list[Effect] = [SignProposal(e) if isinstance(e, Proposal) else SignVote(e)
                             for e in entries]
    if guard.step == Step.PROPOSE:
        effects.append(ScheduleTimeout(TimeoutKind.PROPOSE, state.height, state.round,
                                       state.timeouts.duration_ms(TimeoutKind.PROPOSE,
                                                                  state.round)))
    return state, effects
