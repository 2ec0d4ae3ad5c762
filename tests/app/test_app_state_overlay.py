"""StateOverlay and DictState (medchaind/app/state.py) against a plain dict model.

The app stacks overlays (block over committed state, tx over block); whatever the stack,
``get`` and ``iterate`` must equal the model obtained by applying the writes in order,
and ``iterate`` must be key-sorted and never show deleted keys.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.app import DictState, StateOverlay

MODULES = ["identity", "governance"]
# short keys over a tiny alphabet so prefixes and collisions are common; 0x00 and 0xff
# reach the edges of the prefix-range arithmetic (a prefix of 0xff bytes has no upper bound)
ALPHABET = (0x00, 0x61, 0xFF)
key_st = st.binary(min_size=0, max_size=3).map(lambda b: bytes(ALPHABET[x % 3] for x in b))
value_st = st.binary(min_size=0, max_size=4)
prefix_st = st.binary(max_size=2).map(lambda b: bytes(ALPHABET[x % 3] for x in b))
write_st = st.tuples(
    st.sampled_from(MODULES), key_st, st.one_of(st.none(), value_st)
)  # None = delete


def _apply(model: dict[Any, bytes], writes: list[tuple[str, bytes, bytes | None]]) -> None:
    for m, k, v in writes:
        if v is None:
            model.pop((m, k), None)
        else:
            model[(m, k)] = v


def _write(overlay: StateOverlay, writes: list[tuple[str, bytes, bytes | None]]) -> None:
    for m, k, v in writes:
        if v is None:
            overlay.delete(m, k)
        else:
            overlay.set(m, k, v)


def _expected_iter(
    model: dict[Any, bytes], module: str, prefix: bytes
) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for (m, k), v in model.items() if m == module and k.startswith(prefix))


def test_reads_see_writes_and_deletes_hide_parent_values() -> None:
    base = DictState(
        {("identity", b"a"): b"1", ("identity", b"b"): b"2", ("governance", b"a"): b"g"}
    )
    o = StateOverlay(base)
    o.set("identity", b"c", b"3")
    o.set("identity", b"a", b"1'")
    o.delete("identity", b"b")
    assert o.get("identity", b"a") == b"1'"
    assert o.get("identity", b"b") is None
    assert o.get("identity", b"c") == b"3"
    assert o.get("governance", b"a") == b"g"  # other module untouched
    assert list(o.iterate("identity")) == [(b"a", b"1'"), (b"c", b"3")]
    assert list(o.iterate("governance")) == [(b"a", b"g")]
    # the parent is unchanged until the writes are applied
    assert base.get("identity", b"b") == b"2"
    base.apply(o.writes)
    assert base.data == {
        ("identity", b"a"): b"1'",
        ("identity", b"c"): b"3",
        ("governance", b"a"): b"g",
    }


def test_delete_of_a_missing_key_is_harmless() -> None:
    base = DictState()
    o = StateOverlay(base)
    o.delete("identity", b"x")
    assert o.get("identity", b"x") is None
    assert list(o.iterate("identity")) == []
    base.apply(o.writes)
    assert base.data == {}


def test_merge_into_moves_a_tx_layer_into_the_block_layer() -> None:
    base = DictState({("identity", b"a"): b"1"})
    block = StateOverlay(base)
    block.set("identity", b"b", b"2")
    tx = StateOverlay(block)
    tx.delete("identity", b"a")
    tx.set("identity", b"b", b"2'")
    assert list(block.iterate("identity")) == [(b"a", b"1"), (b"b", b"2")]  # not yet merged
    tx.merge_into(block)
    assert list(block.iterate("identity")) == [(b"b", b"2'")]
    assert block.writes == {("identity", b"a"): None, ("identity", b"b"): b"2'"}


@settings(max_examples=200, deadline=None)
@given(
    committed=st.dictionaries(st.tuples(st.sampled_from(MODULES), key_st), value_st, max_size=12),
    layers=st.lists(st.lists(write_st, max_size=10), min_size=1, max_size=3),
    queries=st.lists(st.tuples(st.sampled_from(MODULES), prefix_st), min_size=1, max_size=5),
)
def test_stacked_overlays_match_a_dict_model(
    committed: dict[Any, bytes],
    layers: list[list[tuple[str, bytes, bytes | None]]],
    queries: list[tuple[str, bytes]],
) -> None:
    base = DictState(committed)
    model = dict(committed)
    top: Any = base
    overlays = []
    for writes in layers:
        top = StateOverlay(top)
        overlays.append(top)
        _write(top, writes)
        _apply(model, writes)

    all_keys = {k for k in committed} | {(m, k) for layer in layers for m, k, _ in layer}
    for m, k in all_keys:
        assert top.get(m, k) == model.get((m, k))
    for module, prefix in queries:
        got = list(top.iterate(module, prefix))
        assert got == _expected_iter(model, module, prefix)

    # Collapsing the stack (tx layers merged into the block layer) keeps the same view,
    # and applying the block's write-set to the committed state reproduces the model.
    for upper, lower in zip(reversed(overlays[1:]), reversed(overlays[:-1]), strict=True):
        upper.merge_into(lower)
    for module, prefix in queries:  # the merged block layer's own key index sees the same
        assert list(overlays[0].iterate(module, prefix)) == _expected_iter(model, module, prefix)
    assert base.data == committed  # nothing reached the committed state yet
    base.apply(overlays[0].writes)
    assert base.data == model


@settings(max_examples=300, deadline=None)
@given(
    committed=st.dictionaries(st.tuples(st.sampled_from(MODULES), key_st), value_st, max_size=8),
    txs=st.lists(st.tuples(st.lists(write_st, max_size=8), st.booleans()), max_size=6),
    queries=st.lists(st.tuples(st.sampled_from(MODULES), prefix_st), min_size=1, max_size=4),
)
def test_undo_log_equals_a_tx_layer_merged_on_success(
    committed: dict[Any, bytes],
    txs: list[tuple[list[tuple[str, bytes, bytes | None]], bool]],
    queries: list[tuple[str, bytes]],
) -> None:
    """App.deliver_tx runs a tx on the block's overlay between begin() and commit() or
    rollback(): the block's write-set (items *and* insertion order, which the store's
    batch follows), its reads and its prefix scans must be those of the tx-layer
    design it replaced (a StateOverlay per tx, merged into the block's if the tx
    succeeds, dropped if it fails)."""
    base = DictState(committed)
    journaled, layered = StateOverlay(base), StateOverlay(base)
    for writes, fails in txs:
        journaled.begin()
        _write(journaled, writes)
        layer = StateOverlay(layered)
        _write(layer, writes)
        for m, k, _ in writes:  # inside the tx, both see the tx's own writes
            assert journaled.get(m, k) == layer.get(m, k)
        if fails:
            journaled.rollback()
        else:
            journaled.commit()
            layer.merge_into(layered)
        assert list(journaled.writes.items()) == list(layered.writes.items())
        for module, prefix in queries:
            assert list(journaled.iterate(module, prefix)) == list(layered.iterate(module, prefix))


def test_begin_twice_or_rollback_without_begin_is_an_error() -> None:
    o = StateOverlay(DictState())
    o.begin()
    with pytest.raises(RuntimeError, match="already open"):
        o.begin()
    o.set("identity", b"a", b"1")
    o.rollback()
    assert o.writes == {} and list(o.iterate("identity")) == []
    with pytest.raises(RuntimeError, match="no tx is open"):
        o.rollback()
