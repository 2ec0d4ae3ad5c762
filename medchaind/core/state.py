"""The consensus state of one node at one height, and the last-signed guard.

``State`` is the paper's per-process state (h_p, round_p, step_p, lockedValue_p,
lockedRound_p, validValue_p, validRound_p) plus the message log of the height (the vote
and proposal keepers), the "for the first time" flags of the current round, and the
last-signed guard. It is a frozen value; :func:`medchaind.core.driver.apply` returns a
new one.

The last-signed guard
=====================

:class:`LastSigned` is the highest (height, round, step) this node has asked its host to
sign, with the exact unsigned message. The core consults it before every signature
request (:func:`medchaind.core.round_machine.sign`):

* a strictly higher (height, round, step) may be signed (and becomes the new guard);
* the *same* (height, round, step) with the *same* message may be re-requested: Ed25519
  is deterministic, so this reproduces the original signature byte for byte;
* anything else (lower, or same step with another value) is refused: no effect is
  emitted, although the state machine still moves on as the paper says.

Within a height an honest node signs at most one proposal, one prevote and one
precommit per round and only in increasing (round, step) order, so the guard never
refuses in normal operation; it is what stops a node that restarted from signing a
conflicting vote.

How the WAL restores it. Every signature request is preceded by a ``WALAppend`` of the
unsigned message, which the host makes durable before signing. After a crash the host
starts the height again with ``StartHeight(height, validators, wal=<entries of that
height>)``. The core then (1) sets the guard to the maximum own message by (round,
step), (2) restores lockedValue/lockedRound from the highest-round non-nil precommit
(the paper assigns the lock exactly when it precommits a value, L38-L40), (3) files the
prevotes of every logged :class:`~.messages.PolkaRecord` back into its vote keeper and
takes the highest as validValue/validRound (L42-L43 ran when it was logged), (4) resumes
at the round and step of the guard, and (5) asks the host to sign every own entry again
(identical bytes) so that signatures that may never have left before the crash are
broadcast now. So the guard is persisted implicitly: it is a function of the WAL
(:meth:`LastSigned.from_wal`).

Without (3) a restarted validator could keep its lock but lose the proof of it: if the
other copies of that POL are held only by Byzantine nodes that never gossip them, the
honest nodes may never again agree on a value (the simulator found exactly that).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import IntEnum

from .messages import NIL_ROUND, BlockHash, Height, Message, Proposal, Round, ValidatorId, VoteKind
from .proposals import ProposalKeeper
from .timeouts import TimeoutConfig
from .validators import ValidatorSet
from .votes import VoteKeeper


class Step(IntEnum):
    """step_p. The numbers order signatures within a round (propose < prevote < precommit)."""

    UNSTARTED = 0
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    #: Decided (L49); waiting for the host's StartHeight(h + 1).
    COMMIT = 4


def signing_step(message: Message) -> Step:
    if isinstance(message, Proposal):
        return Step.PROPOSE
    return Step.PREVOTE if message.kind == VoteKind.PREVOTE else Step.PRECOMMIT


@dataclass(frozen=True, slots=True)
class LastSigned:
    """The highest (height, round, step) signed, and the unsigned message signed there."""

    height: Height
    round: Round
    step: Step
    message: Message

    @classmethod
    def of(cls, message: Message) -> LastSigned:
        return cls(message.height, message.round, signing_step(message), message.unsigned())

    @property
    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, int(self.step))

    @classmethod
    def from_wal(cls, entries: Iterable[Message]) -> LastSigned | None:
        """The guard a node had when it wrote ``entries`` (None for an empty WAL)."""
        best: LastSigned | None = None
        for e in entries:
            cand = cls.of(e)
            if best is None or cand.hrs > best.hrs:
                best = cand
        return best


@dataclass(frozen=True, slots=True)
class State:
    #: This node's validator key; None for a node that only follows (never signs).
    me: ValidatorId | None
    timeouts: TimeoutConfig
    height: Height
    validators: ValidatorSet
    round: Round
    step: Step
    locked_value: BlockHash | None
    locked_round: Round
    valid_value: BlockHash | None
    valid_round: Round
    votes: VoteKeeper
    proposals: ProposalKeeper
    last_signed: LastSigned | None
    #: RequestValue is outstanding for (height, round): L17's getValue() has not returned.
    awaiting_value: bool
    #: "for the first time" flags of the current round: L34, L36, L47.
    prevote_timeout_scheduled: bool
    polka_current_seen: bool
    precommit_timeout_scheduled: bool
    #: The decided value once step is COMMIT.
    decision: BlockHash | None

    @property
    def is_validator(self) -> bool:
        return self.me is not None and self.me in self.validators

    def with_votes(self, votes: VoteKeeper) -> State:
        """``dataclasses.replace(self, votes=votes)``: the driver does it once per counted
        vote, and the generic ``replace`` (field metadata walked, keyword ``__init__``)
        cost about three times this copy of the slots."""
        new = object.__new__(State)
        for name in _FIELD_NAMES:
            object.__setattr__(new, name, getattr(self, name))
        object.__setattr__(new, "votes", votes)
        return new


_FIELD_NAMES = tuple(f.name for f in fields(State))


def initial_state(me: ValidatorId | None, timeouts: TimeoutConfig | None = None) -> State:
    """A node that has not started any height yet; feed it ``StartHeight``."""
    vs = ValidatorSet.empty()
    return State(
        me=me, timeouts=timeouts or TimeoutConfig(), height=Height(0), validators=vs,
        round=Round(0), step=Step.UNSTARTED, locked_value=None, locked_round=NIL_ROUND,
        valid_value=None, valid_round=NIL_ROUND, votes=VoteKeeper.new(Height(0), vs),
        proposals=ProposalKeeper.new(Height(0)), last_signed=None, awaiting_value=False,
        prevote_timeout_scheduled=False, polka_current_seen=False,
        precommit_timeout_scheduled=False, decision=None,
    )
