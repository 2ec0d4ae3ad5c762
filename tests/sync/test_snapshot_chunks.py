"""Snapshot manifests and chunks (medchaind.app.snapshot, docs/protocol.md §23.8).

Properties: a state cut into chunks of any size reassembles to the same trie (the same
root, the same records, the same values); every chunk verifies on its own against the
verified manifest; a tampered manifest or chunk (an entry changed, added, dropped,
reordered, moved to another unit) fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.app import trie
from medchaind.app.snapshot import (
    Manifest,
    SnapshotError,
    chunk_entries,
    decode_chunk,
    decode_manifest,
    encode_chunk,
    plan_snapshot,
    verify_chunk,
    verify_manifest,
)
from medchaind.errors import DecodeError

MODULES = (b"auth/", b"identity/", b"consent/", b"a/", b"ab/")

keys = st.builds(lambda m, k: m + k, st.sampled_from(MODULES), st.binary(max_size=6))
states = st.dictionaries(keys, st.binary(min_size=0, max_size=40), max_size=120)


def served(state: dict[bytes, bytes], chunk_bytes: int) -> tuple[Manifest, list[Any]]:
    built = trie.build(state)
    values = built.values

    def size(lh: bytes) -> int:
        return len(values[lh])

    m = plan_snapshot(7, built.root, built.puts.get, size, max_chunk_bytes=chunk_bytes)
    chunks = [chunk_entries(m, i, built.puts.get, values.get) for i in range(len(m.chunks))]
    return m, chunks


@settings(max_examples=150, deadline=None)
@given(states, st.integers(min_value=1, max_value=2000))
def test_a_chunked_snapshot_reassembles_to_the_same_trie(state: dict[bytes, bytes], chunk_bytes: int) -> None:
    built = trie.build(state)
    m, chunks = served(state, chunk_bytes)
    m = decode_manifest(m.encode())  # over the wire
    verify_manifest(m, built.root)
    records = {trie.node_hash(r): r for r in m.nodes}
    values: dict[bytes, bytes] = {}
    entries: list[tuple[bytes, bytes]] = []
    for i, c in enumerate(chunks):
        c = decode_chunk(encode_chunk(c))
        r, v = verify_chunk(m, i, c)
        records.update(r)
        values.update(v)
        entries.extend(e for unit in c for e in unit)
    assert entries == sorted(state.items())
    assert records == built.puts
    assert values == built.values
    for c in chunks:  # chunks respect the size bound unless one unit alone is larger
        size = sum(len(k) + len(v) + 8 for unit in c for k, v in unit)
        assert size <= chunk_bytes or len(c) == 1


@settings(max_examples=150, deadline=None)
@given(states.filter(lambda s: len(s) >= 2), st.integers(min_value=30, max_value=400), st.data())
def test_every_tampered_chunk_fails(state: dict[bytes, bytes], chunk_bytes: int, data: st.DataObject) -> None:
    built = trie.build(state)
    m, chunks = served(state, chunk_bytes)
    verify_manifest(m, built.root)
    i = data.draw(st.integers(0, len(chunks) - 1))
    units = [list(u) for u in chunks[i]]
    j = data.draw(st.integers(0, len(units) - 1))
    unit = units[j]
    how = data.draw(st.sampled_from(["value", "drop", "add", "swap", "key", "move", "other"]))
    if how == "value":
        k, v = unit[0]
        unit[0] = (k, v + b"!")
    elif how == "drop":
        if len(unit) == 1:
            units.pop(j)
        else:
            unit.pop(data.draw(st.integers(0, len(unit) - 1)))
    elif how == "add":
        k = unit[-1][0] + b"\x00"
        if any(k == e[0] for c in chunks for u in c for e in u):
            return
        unit.append((k, b"x"))
    elif how == "swap":
        if len(unit) < 2:
            return
        unit[0], unit[1] = unit[1], unit[0]
    elif how == "key":
        k, v = unit[0]
        unit[0] = (k + b"\x01", v)
        unit.sort()
        if len({e[0] for e in unit}) != len(unit):
            return
    elif how == "move":  # an entry moved to the neighbouring unit of the same chunk
        if len(units) < 2 or len(unit) < 2:
            return
        other = units[j + 1] if j + 1 < len(units) else units[j - 1]
        other.append(unit.pop())
        other.sort()
    else:  # another chunk's content under this index
        if len(chunks) < 2:
            return
        units = [list(u) for u in chunks[(i + 1) % len(chunks)]]
    tampered = tuple(tuple(u) for u in units)
    with pytest.raises(SnapshotError):
        verify_chunk(m, i, tampered)


@settings(max_examples=100, deadline=None)
@given(states.filter(lambda s: len(s) >= 3), st.data())
def test_every_tampered_manifest_fails(state: dict[bytes, bytes], data: st.DataObject) -> None:
    built = trie.build(state)
    m, _ = served(state, data.draw(st.integers(20, 300)))
    verify_manifest(m, built.root)
    all_units = [u for c in m.chunks for u in c]
    how = data.draw(st.sampled_from(["root", "drop_node", "dup_node", "drop_unit", "extra_unit", "order", "leaf"]))
    nodes, chunks = list(m.nodes), [list(c) for c in m.chunks]
    if how == "root":
        with pytest.raises(SnapshotError):
            verify_manifest(m, trie.compute_root({**state, b"auth/zz": b"1"}))
        return
    if how == "drop_node":
        if not nodes:
            return
        nodes.pop(data.draw(st.integers(0, len(nodes) - 1)))
    elif how == "dup_node":
        if not nodes:
            return
        nodes.append(nodes[0])
    elif how == "drop_unit":
        chunks[-1].pop()
        chunks = [c for c in chunks if c]
    elif how == "extra_unit":
        chunks.append([b"\x07" * 32])
    elif how == "order":
        if len(all_units) < 2:
            return
        flat = all_units[:]
        flat[0], flat[1] = flat[1], flat[0]
        chunks = [[u] for u in flat]
    else:  # a leaf record above the cut
        leaf = next(r for r in built.puts.values() if r[0] == 0)
        nodes.append(leaf)
    bad = Manifest(m.height, m.root, tuple(nodes), tuple(tuple(c) for c in chunks))
    with pytest.raises(SnapshotError):
        verify_manifest(bad, built.root)


def test_the_empty_state_and_a_single_entry() -> None:
    m, chunks = served({}, 100)
    assert m.nodes == () and m.chunks == () and chunks == []
    verify_manifest(m, trie.EMPTY_ROOT)
    m, chunks = served({b"auth/x": b"v"}, 100)
    assert m.nodes == () and len(m.chunks) == 1
    verify_manifest(m, trie.compute_root({b"auth/x": b"v"}))
    assert verify_chunk(m, 0, chunks[0])[1] == trie.build({b"auth/x": b"v"}).values


@pytest.mark.parametrize("blob", [b"", b"\xa0", b"\x81\x80", b"\x81\x81\x81\x41a",
                                  b"\x81\x81\x82\x41a\x01"])
def test_malformed_chunks_are_decode_errors(blob: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_chunk(blob)


def test_entries_outside_a_namespace_fail() -> None:
    state = {b"nslash": b"v", b"auth/x": b"w"}
    built = trie.build(state)
    m = plan_snapshot(1, built.root, built.puts.get, lambda h: 1, max_chunk_bytes=10_000)
    with pytest.raises(SnapshotError):
        verify_chunk(m, 0, chunk_entries(m, 0, built.puts.get, built.values.get))
