"""Validator sets: sorted order, integer thresholds, weighted proposer rotation."""

from __future__ import annotations

from collections import Counter
from math import gcd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.core import Height, Round, ValidatorSet
from medchaind.errors import ValidationError
from medchaind.testing.cast import Cast


def key(i: int) -> bytes:
    return bytes([i]) * 32


def test_members_are_sorted_whatever_the_input_order() -> None:
    vs = ValidatorSet.from_powers({key(3): 1, key(1): 1, key(2): 1})
    assert vs.keys == (key(1), key(2), key(3))
    assert vs == ValidatorSet.from_powers({key(1): 1, key(2): 1, key(3): 1})


@pytest.mark.parametrize(("powers", "quorum", "f_plus_one"), [
    ([1], 1, 1),                 # dev mode: one authority is everything
    ([1, 1, 1], 3, 2),           # n = 3 tolerates no fault: all three needed
    ([1, 1, 1, 1], 3, 2),        # n = 4, f = 1
    ([1] * 7, 5, 3),             # n = 7, f = 2
    ([1] * 10, 7, 4),            # n = 10, f = 3
    ([5, 1, 1, 1], 6, 3),        # weighted: A alone is more than 1/3 but not 2/3
])
def test_thresholds(powers: list[int], quorum: int, f_plus_one: int) -> None:
    vs = ValidatorSet.from_powers({key(i): p for i, p in enumerate(powers)})
    assert (vs.quorum_power, vs.f_plus_one_power) == (quorum, f_plus_one)
    total = vs.total_power
    assert vs.is_quorum(quorum) and not vs.is_quorum(quorum - 1)
    assert 3 * quorum > 2 * total >= 3 * (quorum - 1)
    assert 3 * f_plus_one > total >= 3 * (f_plus_one - 1)


def test_equal_power_rotation_is_by_height_plus_round() -> None:
    c = Cast(4)
    names = [c.name(c.validators.proposer(Height(1), Round(r))) for r in range(5)]
    assert names == ["B", "C", "D", "A", "B"]
    assert c.validators.proposer(Height(2), Round(0)) == c.validators.proposer(Height(1), Round(1))


def test_weighted_rotation_interleaves_by_power() -> None:
    c = Cast(3, powers=[3, 1, 2])
    cycle = [c.name(c.validators.proposer(Height(0), Round(r))) for r in range(6)]
    assert Counter(cycle) == {"A": 3, "B": 1, "C": 2}
    # Smooth weighted round-robin by hand (add weights, pick the max, lowest key on a
    # tie, subtract the total 6): [3,1,2]->A, [0,2,4]->C, [3,3,0]->A, [0,4,2]->B,
    # [3,-1,4]->C, [6,0,0]->A. A's three turns are spread out, not a run of three.
    assert cycle == ["A", "C", "A", "B", "C", "A"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=12))
def test_each_validator_proposes_in_proportion_to_its_power(powers: list[int]) -> None:
    vs = ValidatorSet.from_powers({key(i): p for i, p in enumerate(powers)})
    g = 0
    for p in powers:
        g = gcd(g, p)
    cycle = sum(powers) // g
    counts = Counter(vs.proposer(Height(0), Round(r)) for r in range(cycle))
    assert counts == {key(i): p // g for i, p in enumerate(powers)}


def test_invalid_sets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        ValidatorSet.from_powers({})
    with pytest.raises(ValidationError, match="power"):
        ValidatorSet.from_powers({key(1): 0})
    with pytest.raises(ValidationError, match="sorted"):
        ValidatorSet((ValidatorSet.from_powers({key(2): 1}).validators[0],
                      ValidatorSet.from_powers({key(1): 1}).validators[0]))
    with pytest.raises(ValidationError, match="no proposer"):
        ValidatorSet.empty().proposer(Height(1), Round(0))
