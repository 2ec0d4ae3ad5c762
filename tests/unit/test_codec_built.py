"""``codec.encode_built`` gives exactly ``codec.encode``'s bytes for what it promises to take.

Its contract (codec.py): data-model items only, every map's keys already in canonical
order. Then cbor2's plain mode is the canonical encoding; these properties check that
against :func:`codec.encode` for arbitrary nested values built that way, including the
shapes the modules write (records of scalars and byte strings, lists of pairs, index
arrays that are hashed), and show why the order is part of the contract. The suite's
conftest additionally checks every ``encode_built`` call a test makes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from medchaind import codec
from medchaind.app.module import canonical_order
from medchaind.codec import INT_MAX, INT_MIN
from medchaind.codec import encode_built as real_encode_built  # the suite's conftest wraps codec.encode_built

KEYS = st.text(min_size=1, max_size=12)  # any text, non-ASCII included (no lone surrogates)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(INT_MIN, INT_MAX), st.binary(max_size=40), st.text(max_size=20),
)


def ordered(m: dict[str, Any]) -> dict[str, Any]:
    """``m`` rebuilt with its keys in canonical order, as a module's builder writes it."""
    return {k: m[k] for k in canonical_order(tuple(m))}


VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(KEYS, inner, max_size=6).map(ordered),
    ),
    max_leaves=40,
)


@settings(max_examples=600)
@given(VALUES)
def test_built_values_encode_as_encode_does(value: Any) -> None:
    assert real_encode_built(value) == codec.encode(value)
    assert codec.decode(real_encode_built(value)) == value


@settings(max_examples=200)
@given(st.lists(st.one_of(st.binary(max_size=32), st.text(max_size=12), st.integers(0, INT_MAX),
                          st.lists(st.binary(max_size=32), max_size=4)), max_size=10))
def test_hashed_index_arrays_encode_as_encode_does(items: list[Any]) -> None:
    # claims' exact and suspect keys hash such arrays (no maps: always canonical)
    assert real_encode_built(items) == codec.encode(items)


@settings(max_examples=200)
@given(st.dictionaries(KEYS, SCALARS, min_size=2, max_size=8))
def test_a_map_out_of_canonical_order_is_what_the_contract_excludes(m: dict[str, Any]) -> None:
    reverse = {k: m[k] for k in reversed(canonical_order(tuple(m)))}
    assume(list(reverse) != list(canonical_order(tuple(m))))
    assert real_encode_built(reverse) != codec.encode(reverse)
    assert real_encode_built(ordered(reverse)) == codec.encode(reverse)


def test_the_suite_checks_every_encode_built_call() -> None:
    # tests/conftest.py: a put_built site that broke the contract fails its test
    assert codec.encode_built({"aa": 1}) == codec.encode({"aa": 1})
    with pytest.raises(AssertionError, match="canonical order"):
        codec.encode_built({"bb": 1, "a": 2})
    with pytest.raises(codec.DecodeError):
        codec.encode_built((1, 2))  # a tuple: encode refuses it, plain cbor2 would not
