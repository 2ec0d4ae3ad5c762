"""The validator (authority) set of one height: voting powers, thresholds, proposer.

A :class:`ValidatorSet` is a value. Validators are kept sorted by public key, so every
node derives the same order, the same thresholds and the same proposer from the same
set, whatever order the genesis file or a governance transaction listed them in.

Thresholds (n = 3f+1 in the equal-power case), on voting *power*:

* quorum, the paper's "2f+1": power strictly greater than 2/3 of the total,
  ``quorum_power = 2*total // 3 + 1``;
* the paper's "f+1" (at least one correct validator among them): power strictly
  greater than 1/3 of the total, ``f_plus_one_power = total // 3 + 1``.

Both are integer formulas: no floats reach a consensus decision.

Proposer selection (DESIGN.md §4: "rotating by (height, round) over the sorted set") is
a *stateless, power-weighted rotation*: the set precomputes one cycle of smooth weighted
round-robin (nginx's SWRR, the same idea as CometBFT's proposer priorities, but as a
fixed cycle instead of state carried from block to block) over the powers divided by
their gcd, and ``proposer(h, r) = cycle[(h + r) mod len(cycle)]``. Over any
``len(cycle)`` consecutive (h + r) values each validator proposes exactly
``power / gcd`` times, interleaved rather than in runs, so a crashed heavy validator
does not stall many consecutive rounds. With equal powers the cycle is simply the
sorted order: ``proposer(h, r) = sorted_keys[(h + r) mod n]``. Because it depends only
on (h + r), a node that skips rounds or restarts needs no history to know the proposer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from math import gcd

from ..errors import ValidationError
from .messages import Height, Round, ValidatorId

#: Largest proposer cycle we precompute (sum of powers / gcd of powers).
MAX_CYCLE = 1 << 14


@dataclass(frozen=True, slots=True)
class Validator:
    public_key: ValidatorId
    power: int


@lru_cache(maxsize=64)
def _swrr_cycle(powers: tuple[int, ...]) -> tuple[int, ...]:
    """One full cycle of smooth weighted round-robin; ties go to the lowest index.

    Memoised: building it is O(n * sum of weights), O(n^2) for n equal powers (6 ms for
    128 authorities), and every node builds a set per height from the same powers.
    With equal powers the cycle is the sorted order (each weight is 1 after the gcd).
    """
    if not powers:
        return ()
    g = 0
    for p in powers:
        g = gcd(g, p)
    weights = [p // g for p in powers]
    if all(w == 1 for w in weights):
        return tuple(range(len(weights)))
    total = sum(weights)
    if total > MAX_CYCLE:
        raise ValidationError(
            f"validator set: powers divided by their gcd sum to {total}; at most {MAX_CYCLE} "
            "is supported (scale the voting powers down)"
        )
    current = [0] * len(weights)
    cycle: list[int] = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        cycle.append(best)
    return tuple(cycle)


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """Validators sorted by public key, each with a positive integer power.

    Build one with :meth:`from_powers`; the constructor checks the invariants (sorted,
    unique, power >= 1) rather than fixing them up. The empty set exists only as the
    "not started" placeholder of a consensus state: it has no proposer and no quorum.
    """

    validators: tuple[Validator, ...]
    total_power: int = field(init=False)
    quorum_power: int = field(init=False)
    f_plus_one_power: int = field(init=False)
    _index: Mapping[ValidatorId, int] = field(init=False, repr=False, compare=False)
    _cycle: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [v.public_key for v in self.validators]
        if keys != sorted(set(keys)):
            raise ValidationError("validator set: public keys must be unique and sorted")
        for v in self.validators:
            if type(v.power) is not int or v.power < 1:
                raise ValidationError(f"validator set: {v.public_key.hex()} has power "
                                      f"{v.power!r} (expected an integer >= 1)")
        total = sum(v.power for v in self.validators)
        object.__setattr__(self, "total_power", total)
        object.__setattr__(self, "quorum_power", 2 * total // 3 + 1)
        object.__setattr__(self, "f_plus_one_power", total // 3 + 1)
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(keys)})
        object.__setattr__(self, "_cycle", _swrr_cycle(tuple(v.power for v in self.validators)))

    @classmethod
    def from_powers(cls, powers: Mapping[bytes, int]) -> ValidatorSet:
        """``{public_key: power}`` (e.g. ``Genesis.powers()``) -> a set; must not be empty."""
        if not powers:
            raise ValidationError("validator set: needs at least one validator")
        return cls(tuple(Validator(ValidatorId(k), powers[k]) for k in sorted(powers)))

    @classmethod
    def empty(cls) -> ValidatorSet:
        return cls(())

    def __len__(self) -> int:
        return len(self.validators)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self.validators)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    @property
    def keys(self) -> tuple[ValidatorId, ...]:
        return tuple(v.public_key for v in self.validators)

    def powers(self) -> dict[bytes, int]:
        """``{public_key: power}``, the shape ``types.block.verify_commit`` takes."""
        return {v.public_key: v.power for v in self.validators}

    def power(self, key: ValidatorId) -> int:
        """Voting power of ``key``; 0 for a key outside the set."""
        i = self._index.get(key)
        return 0 if i is None else self.validators[i].power

    def index(self, key: ValidatorId) -> int:
        return self._index[key]

    def is_quorum(self, power: int) -> bool:
        """More than 2/3 of the total power (the paper's 2f+1)."""
        return power >= self.quorum_power and self.total_power > 0

    def is_f_plus_one(self, power: int) -> bool:
        """More than 1/3 of the total power: at least one correct validator (f+1)."""
        return power >= self.f_plus_one_power and self.total_power > 0

    def proposer(self, height: Height, round_: Round) -> ValidatorId:
        """The proposer of (height, round): weighted rotation by (height + round)."""
        if not self._cycle:
            raise ValidationError("validator set: the empty set has no proposer")
        return self.validators[self._cycle[(height + round_) % len(self._cycle)]].public_key
