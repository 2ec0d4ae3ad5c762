"""Properties of the state trie (medchaind/app/trie.py) and of its proofs (app/proofs.py).

* the incremental root equals the root rebuilt from scratch over the same state, after
  any sequence of blocks of puts and deletes, in any order; and the store then holds
  exactly the records of the rebuilt trie (nothing stale, nothing missing);
* every membership and every absence proof verifies, at the edges of the key space
  (empty keys, runs of 0x00 and 0xff, a key's neighbours and prefixes) too;
* a prefix proof gives exactly the keys under the prefix; a partial scan proves its part;
* every tampered proof fails: a record or a value changed or left out, another root.

Keys are drawn from a small alphabet heavy in 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff so that
shared prefixes, keys that are prefixes of others and nibble boundaries are common.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.app import trie
from medchaind.app.proofs import ProvingState, Witness, WitnessState, verify_key
from medchaind.errors import ProofError

EDGE_BYTES = [0x00, 0x01, 0x0F, 0x10, 0x7F, 0x80, 0xF0, 0xFE, 0xFF]
byte = st.one_of(st.sampled_from(EDGE_BYTES), st.integers(0, 255))
keys = st.lists(byte, max_size=5).map(bytes)
values = st.binary(min_size=0, max_size=3)
batch = st.dictionaries(keys, st.one_of(st.none(), values), max_size=12)
MODULE = "m"


class Store:
    """A node-record store fed by TrieDeltas, and the state it commits to."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        self.root = trie.EMPTY_ROOT
        self.state: dict[bytes, bytes] = {}

    def apply(self, changes: dict[bytes, bytes | None]) -> trie.TrieDelta:
        d = trie.update(self.root, self.nodes.get, ((trie.tree_key(MODULE, k), v) for k, v in changes.items()))
        for h in d.deletes:
            assert h in self.nodes, "deleting a record the store does not have"
            del self.nodes[h]
        assert not set(d.puts) & set(self.nodes), "putting a record the store already has"
        self.nodes.update(d.puts)
        self.root = d.root
        for k, v in changes.items():
            if v is None:
                self.state.pop(k, None)
            else:
                self.state[k] = v
        return d

    def items(self) -> dict[bytes, bytes]:
        return {trie.tree_key(MODULE, k): v for k, v in self.state.items()}

    def prover(self) -> ProvingState:
        return ProvingState(self.root, self.nodes.get, lambda m, k: self.state.get(k))


def neighbours(k: bytes) -> list[bytes]:
    out = [k + b"\x00", k + b"\xff", k[:-1], b"", b"\x00", b"\xff", b"\x00" * 6, b"\xff" * 6]
    if k:
        last = k[-1]
        out += [k[:-1] + bytes([(last + 1) % 256]), k[:-1] + bytes([(last - 1) % 256])]
    return out


# ------------------------------------------------------------------ the root


@settings(max_examples=150, deadline=None)
@given(st.lists(batch, min_size=1, max_size=8))
def test_incremental_root_equals_the_root_rebuilt_from_scratch(batches: list[dict[bytes, bytes | None]]) -> None:
    s = Store()
    for b in batches:
        s.apply(b)
        assert s.root == trie.compute_root(s.items())
        rebuilt = trie.build(s.items())
        assert rebuilt.root == s.root
        assert rebuilt.puts == s.nodes  # exactly the live records, nothing stale or missing


@settings(max_examples=80, deadline=None)
@given(batch, st.randoms(use_true_random=False))
def test_the_order_and_grouping_of_changes_do_not_matter(changes: dict[bytes, bytes | None], rnd: Any) -> None:
    a, b = Store(), Store()
    base = {k: b"base" for k in changes}
    a.apply(base)
    b.apply(base)
    a.apply(changes)
    items = list(changes.items())
    rnd.shuffle(items)
    cut = rnd.randint(0, len(items))
    b.apply(dict(items[:cut]))
    b.apply(dict(items[cut:]))
    assert a.root == b.root and a.nodes == b.nodes


def test_the_empty_state_and_single_entries() -> None:
    assert trie.compute_root({}) == trie.EMPTY_ROOT == trie.build({}).root
    one = {b"m/": b"v"}
    assert trie.compute_root(one) == trie.leaf_hash(b"m/", trie.value_hash(b"v"))
    s = Store()
    s.apply({b"": b"v"})
    s.apply({b"": None})
    assert s.root == trie.EMPTY_ROOT and s.nodes == {}


def test_symbols_keep_byte_order_and_no_key_is_a_prefix_of_another_in_symbols() -> None:
    ks = [b"", b"\x00", b"\x00\x00", b"\x01", b"\x0f", b"\x10", b"\xff", b"\xff\x00", b"ab", b"a"]

    def s(k: bytes) -> list[int]:
        return [trie.sym(k, i) for i in range(2 * len(k) + 1)]

    assert sorted(ks, key=s) == sorted(ks)
    for a in ks:
        for b in ks:
            if a != b:
                c = trie.crit_pos(a, b)
                assert c is not None and trie.sym(a, c) != trie.sym(b, c)
                assert all(trie.sym(a, i) == trie.sym(b, i) for i in range(c))
    assert trie.crit_pos(b"ab", b"ab") is None


@pytest.mark.parametrize("record", [
    b"", b"\x02" + bytes(40),
    b"\x01" + bytes(4) + (1).to_bytes(3, "big") + bytes(32),           # one child only
    b"\x01" + bytes(4) + (3).to_bytes(3, "big") + bytes(32),           # bitmap says two, one hash
    b"\x01" + bytes(4) + (1 << 17 | 3).to_bytes(3, "big") + bytes(64),  # symbol 17 does not exist
    b"\x00" + bytes(31),                                               # leaf without a value hash
])
def test_malformed_records_are_refused(record: bytes) -> None:
    with pytest.raises(ProofError):
        trie.decode_node(record)


# ------------------------------------------------------------------ point proofs


def _prove_get(s: Store, k: bytes) -> tuple[bytes | None, Witness]:
    p = s.prover()
    return p.get(MODULE, k), p.witness()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=30), st.lists(keys, max_size=5))
def test_every_membership_and_absence_proof_verifies(state: dict[bytes, bytes], extra: list[bytes]) -> None:
    s = Store()
    s.apply(dict(state))
    probes = set(state) | set(extra)
    for k in list(probes):
        probes.update(neighbours(k))
    probes.update(neighbours(b""))
    for k in probes:
        got, w = _prove_get(s, k)
        assert got == state.get(k)
        assert verify_key(s.root, MODULE, k, w) == state.get(k)


def test_absence_at_the_edges_of_the_whole_key_space() -> None:
    s = Store()
    s.apply({b"\x00": b"lo", b"\x7f": b"mid", b"\xff": b"hi", b"\xff\xff": b"top"})
    nodes = s.nodes
    for tk in [b"", b"\x00", b"\x00" * 40, b"a", b"m", b"m/\x00\x00", b"m/\xff\xff\xff", b"m0", b"\xff" * 40, b"z"]:
        seen: dict[bytes, bytes] = {}
        assert trie.TrieReader(s.root, nodes.get, seen=seen.__setitem__).get(tk) is None
        assert trie.TrieReader(s.root, seen.get).get(tk) is None  # the path alone proves it
    assert verify_key(trie.EMPTY_ROOT, MODULE, b"x", Witness((), ())) is None


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=30), st.data())
def test_every_tampered_point_proof_fails(state: dict[bytes, bytes], data: st.DataObject) -> None:
    s = Store()
    s.apply(dict(state))
    k = data.draw(st.one_of(st.sampled_from(sorted(state)), keys), label="key")
    claimed, w = _prove_get(s, k)
    items = [("nodes", i) for i in range(len(w.nodes))] + [("values", i) for i in range(len(w.values))]
    assert items  # a non-empty state: every proof has at least the root
    kind, i = data.draw(st.sampled_from(items), label="item")
    seq = list(getattr(w, kind))
    how = data.draw(st.sampled_from(["flip", "drop", "extend"]), label="how")
    if how == "drop":
        del seq[i]
    elif how == "extend":
        seq[i] = seq[i] + b"\x00"
    else:
        pos = data.draw(st.integers(0, max(0, len(seq[i]) - 1)), label="pos")
        raw = bytearray(seq[i] or b"\x00")
        raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        seq[i] = bytes(raw)
    bad = Witness(tuple(seq), w.values) if kind == "nodes" else Witness(w.nodes, tuple(seq))
    with pytest.raises(ProofError):
        verify_key(s.root, MODULE, k, bad)
    # and the honest proof does not vouch for another root
    other = trie.compute_root({**s.items(), trie.tree_key(MODULE, b"\x42other"): b"x"})
    with pytest.raises(ProofError):
        verify_key(other, MODULE, k, w)
    assert verify_key(s.root, MODULE, k, w) == claimed


# ------------------------------------------------------------------ prefix proofs


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(keys, values, max_size=30), st.lists(keys, max_size=4))
def test_a_prefix_proof_gives_exactly_the_keys_under_the_prefix(state: dict[bytes, bytes], more: list[bytes]) -> None:
    s = Store()
    s.apply(dict(state))
    prefixes = {b"", b"\x00", b"\xff", *more, *(k[:n] for k in state for n in range(len(k) + 1))}
    for prefix in prefixes:
        p = s.prover()
        got = list(p.iterate(MODULE, prefix))
        expected = sorted((k, v) for k, v in state.items() if k.startswith(prefix))
        assert got == expected
        w = p.witness()
        assert list(WitnessState(s.root, w).iterate(MODULE, prefix)) == expected
        if w.nodes:  # leave any one record out: the scan can no longer be completed
            for i in range(len(w.nodes)):
                cut = Witness(w.nodes[:i] + w.nodes[i + 1:], w.values)
                with pytest.raises(ProofError):
                    list(WitnessState(s.root, cut).iterate(MODULE, prefix))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=30), st.integers(0, 10))
def test_a_partial_scan_proves_the_part_it_read(state: dict[bytes, bytes], n: int) -> None:
    s = Store()
    s.apply(dict(state))
    p = s.prover()
    it = p.iterate(MODULE, b"")
    head = [next(it) for _ in range(min(n, len(state)))]
    w = p.witness()
    replay = WitnessState(s.root, w).iterate(MODULE, b"")
    assert [next(replay) for _ in range(len(head))] == head == sorted(state.items())[: len(head)]
    if len(head) < len(state):  # reading past what was proven fails, it never skips
        with pytest.raises(ProofError):
            list(replay)


def test_witness_json_round_trip_and_limits() -> None:
    w = Witness((b"\x01\x02",), (b"",))
    assert Witness.from_json(w.to_json()) == w
    for bad in [None, [], {"nodes": "00"}, {"nodes": ["zz"], "values": []}, {"nodes": [1], "values": []}]:
        with pytest.raises(ProofError):
            Witness.from_json(bad)
