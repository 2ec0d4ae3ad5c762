"""Round timeouts: which step a timeout ends, and how long it lasts in a given round.

Durations grow linearly with the round, ``base + round * delta`` (integer
milliseconds), as in the Tendermint paper's timeoutPropose(r) / timeoutPrevote(r) /
timeoutPrecommit(r): after GST the timeouts eventually exceed the real message delay,
which is what makes the protocol live under partial synchrony. The defaults are
CometBFT's (3 s + 500 ms per round for propose, 1 s + 500 ms for the vote steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import ValidationError


class TimeoutKind(IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    propose_ms: int = 3000
    propose_delta_ms: int = 500
    prevote_ms: int = 1000
    prevote_delta_ms: int = 500
    precommit_ms: int = 1000
    precommit_delta_ms: int = 500

    def __post_init__(self) -> None:
        for name in ("propose_ms", "propose_delta_ms", "prevote_ms", "prevote_delta_ms",
                     "precommit_ms", "precommit_delta_ms"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValidationError(f"timeouts: {name} must be an integer >= 0 (ms)")

    def duration_ms(self, kind: TimeoutKind, round_: int) -> int:
        """How long the ``kind`` timeout of round ``round_`` lasts."""
        if kind == TimeoutKind.PROPOSE:
            return self.propose_ms + round_ * self.propose_delta_ms
        if kind == TimeoutKind.PREVOTE:
            return self.prevote_ms + round_ * self.prevote_delta_ms
        return self.precommit_ms + round_ * self.precommit_delta_ms
