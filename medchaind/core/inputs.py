"""What a host feeds the consensus core (``apply(state, input)``).

All inputs are values. Messages arrive *already verified* by the host (signature and
shape, see :mod:`.messages`); the core applies only stateful checks and silently ignores
what is irrelevant (another height, an unknown validator, a stale timeout), as the
paper's "upon" rules do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import BlockHash, Height, Proposal, Round, Vote, WALEntry
from .timeouts import TimeoutKind
from .validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class StartHeight:
    """Begin ``height`` with ``validators`` (paper L10 "upon start", and L52-L54).

    ``wal`` holds what this node's WAL recorded for ``height`` (the entries of earlier
    ``WALAppend`` effects, in order). Empty on a normal start; after a crash it restores
    the last-signed guard, the lock, the valid value with its POL, and the round, and
    the core asks for the same messages to be signed (identically) and re-broadcast.
    """

    height: Height
    validators: ValidatorSet
    wal: tuple[WALEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    """A verified proposal; ``valid`` is the host's valid(v) for the proposed block.

    The host feeds its *own* signed proposal back through this input (valid=True).
    """

    proposal: Proposal
    valid: bool


@dataclass(frozen=True, slots=True)
class VoteReceived:
    """A verified vote. The host feeds its own signed votes back through this input."""

    vote: Vote


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    """A timeout scheduled by a ``ScheduleTimeout`` effect has expired."""

    kind: TimeoutKind
    height: Height
    round: Round


@dataclass(frozen=True, slots=True)
class BlockReady:
    """The host's answer to ``RequestValue``: the hash of the block it built (L17)."""

    height: Height
    round: Round
    block_hash: BlockHash


Input = StartHeight | ProposalReceived | VoteReceived | TimeoutFired | BlockReady
