"""Drive one consensus core by hand, as its host would, for scenario tables.

:class:`ScriptHost` plays the host of one validator: it feeds an input, carries out the
effects the way the consensus service will (sign with the real key and loop own messages
back; everything else is recorded, not performed), and returns what happened as the
short strings of :meth:`Cast.describe`. The other validators are played by the test,
which builds their signed messages with the helpers below (CometBFT's
``validatorStub`` idea).
"""

from __future__ import annotations

from collections import deque

from ..core.driver import apply
from ..core.effects import Effect, SignProposal, SignVote
from ..core.inputs import (
    BlockReady,
    Input,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
)
from ..core.messages import NIL_ROUND, Height, Round, WALEntry
from ..core.state import State, initial_state
from ..core.timeouts import TimeoutConfig, TimeoutKind
from .cast import Cast


class ScriptHost:
    def __init__(self, cast: Cast, me: str, timeouts: TimeoutConfig | None = None) -> None:
        self.cast = cast
        self.me = me
        self.state: State = initial_state(cast.id(me), timeouts or TimeoutConfig())
        #: Every effect so far, in order (loop-back effects included).
        self.effects: list[Effect] = []

    def feed(self, inp: Input) -> list[str]:
        """Apply ``inp`` plus the own signed messages it leads to; describe the effects."""
        out: list[Effect] = []
        queue: deque[Input] = deque([inp])
        signer = self.cast.signers[self.me]
        while queue:
            self.state, effects = apply(self.state, queue.popleft())
            for e in effects:
                out.append(e)
                if isinstance(e, SignVote):
                    queue.append(VoteReceived(signer.sign_vote(e.vote)))
                elif isinstance(e, SignProposal):
                    queue.append(ProposalReceived(signer.sign_proposal(e.proposal), True))
        self.effects.extend(out)
        return self.cast.describe_all(out)

    # ------------------------------------------------------------ input builders

    def start(self, height: int = 1, wal: tuple[WALEntry, ...] = ()) -> StartHeight:
        return StartHeight(Height(height), self.cast.validators, wal)

    def proposal(self, who: str, round_: int, value: str, pol_round: int = NIL_ROUND,
                 valid: bool = True, height: int = 1) -> ProposalReceived:
        return ProposalReceived(self.cast.proposal(who, height, round_, value, pol_round), valid)

    def prevote(self, who: str, round_: int, value: str | None,
                height: int = 1) -> VoteReceived:
        return VoteReceived(self.cast.prevote(who, height, round_, value))

    def precommit(self, who: str, round_: int, value: str | None,
                  height: int = 1) -> VoteReceived:
        return VoteReceived(self.cast.precommit(who, height, round_, value))

    def timeout(self, kind: str, round_: int, height: int = 1) -> TimeoutFired:
        return TimeoutFired(TimeoutKind[kind.upper()], Height(height), Round(round_))

    def value(self, round_: int, value: str, height: int = 1) -> BlockReady:
        return BlockReady(Height(height), Round(round_), self.cast.block(value))
