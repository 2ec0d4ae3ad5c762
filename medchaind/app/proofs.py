"""State proofs for query answers: the node records a witness, the client re-runs the query.

Theory of operation
-------------------
A module query is a pure function of the committed state, read through
:class:`~medchaind.app.state.StateReader` (``get`` and prefix ``iterate``). So the
simplest proof that an answer is right is the part of the state trie the query read:

* the node runs the query on a :class:`ProvingState`, which walks the state trie at
  the tip's ``app_hash`` instead of reading the flat state, and records every trie node
  it visits and every value it returns: the **witness** (:class:`Witness`);
* the client checks the header that carries that ``app_hash`` (commit signatures
  against the authority set) and runs *the same query* on a :class:`WitnessState`,
  which serves reads from the witness alone. Each node is taken by its hash, starting
  at ``app_hash``, so a witness can only contain the committed nodes; a read the
  witness cannot answer raises :class:`~medchaind.errors.ProofError` (the proof is too
  small), and an answer that differs from the node's is a lie.

Nothing is declared per query: the witness of ``identity_get`` is the path to one key,
the witness of a consent check is the path to the patient's grants *and the subtree
holding all of them*, which proves that no other grant (no hidden deny) exists, because
the trie's keys are in order (:mod:`medchaind.app.trie`). A key's absence is proved by
the path that ends without it. A query that stops iterating early (a page) proves only
what it consumed. The witness format and the rules are docs/protocol.md §23.4.

The client must run the same query rules (module code) as the node's protocol version;
a query that reads the node's clock (``context=True``) is replayed at the time the node
says it used, which only decides freshness windows of signed requests.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ProofError
from .module import Attach, Module, QueryContext, QuerySpec
from .schema import FieldError, decode_json_params
from .trie import EMPTY_ROOT, MAX_KEY_SIZE, TrieReader, leaf_hash, tree_key

__all__ = [
    "MAX_WITNESS_ITEMS", "ProvingState", "Witness", "WitnessState", "check_answer",
    "plain", "query_index", "replay_query", "verify_key",
]

#: the most node records, and the most values, a client accepts in one witness
MAX_WITNESS_ITEMS = 200_000
#: a reserved query parameter: ``"prove": true`` asks for the answer with its proof
PROVE_PARAM = "prove"
#: a reserved query parameter: ``"height": h`` asks for the answer on the state after
#: block ``h`` (a version the node keeps), not its head's
HEIGHT_PARAM = "height"


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Witness:
    """Trie node records and state values; a verifier indexes both by their SHA-256."""

    nodes: tuple[bytes, ...]
    values: tuple[bytes, ...]

    def to_json(self) -> dict[str, list[str]]:
        return {"nodes": ["0x" + n.hex() for n in self.nodes], "values": ["0x" + v.hex() for v in self.values]}

    @classmethod
    def from_json(cls, doc: Any) -> Witness:
        """Decode ``{"nodes": [hex...], "values": [hex...]}``; ProofError if malformed."""
        if not isinstance(doc, dict):
            raise ProofError("a proof is an object with nodes and values")
        out: list[tuple[bytes, ...]] = []
        for name in ("nodes", "values"):
            items = doc.get(name)
            if not isinstance(items, list) or len(items) > MAX_WITNESS_ITEMS:
                raise ProofError(f"proof {name} must be a list of at most {MAX_WITNESS_ITEMS} hex strings")
            try:
                out.append(tuple(bytes.fromhex(x[2:] if x.startswith("0x") else x) for x in items))
            except (AttributeError, ValueError):
                raise ProofError(f"proof {name} must be hex strings") from None
        return cls(out[0], out[1])


class ProvingState:
    """A StateReader over committed state that proves what it reads (the node's side).

    Reads walk the trie at ``root`` through ``read_node`` (the store's records); values
    come from ``read_value`` (the flat state) and must hash to their leaf's value hash.
    If the state moves under a reader (a block commits meanwhile), a node goes missing
    or a value stops matching, and :class:`ProofError` says so: the caller retries at
    the new root.
    """

    def __init__(self, root: bytes, read_node: Callable[[bytes], bytes | None],
                 read_value: Callable[[str, bytes], bytes | None],
                 read_leaf_value: Callable[[bytes], bytes | None] | None = None) -> None:
        self._nodes: dict[bytes, bytes] = {}
        self._values: dict[bytes, bytes] = {}
        self.trie = TrieReader(root, read_node, seen=self._nodes.__setitem__)
        self.read_value = read_value
        #: values by leaf hash (a store that keeps older versions): reads an older state
        self.read_leaf_value = read_leaf_value

    def _value(self, module: str, key: bytes, vhash: bytes) -> bytes:
        found = self._values.get(vhash)
        if found is not None:
            return found
        if self.read_leaf_value is not None:
            value = self.read_leaf_value(leaf_hash(tree_key(module, key), vhash))
        else:
            value = self.read_value(module, key)
        if value is None or _h(value) != vhash:
            raise ProofError("the state changed while a proof was built (a block committed); retry")
        self._values[vhash] = value
        return value

    def get(self, module: str, key: bytes) -> bytes | None:
        vhash = self.trie.get(tree_key(module, key))
        return None if vhash is None else self._value(module, key, vhash)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        base = tree_key(module, b"")
        for k, vhash in self.trie.iterate(base + prefix):
            key = k[len(base):]
            yield key, self._value(module, key, vhash)

    def witness(self) -> Witness:
        return Witness(tuple(self._nodes.values()), tuple(self._values.values()))


class WitnessState:
    """A StateReader that answers from a witness alone, checked against ``root`` (the
    client's side). A read the witness cannot answer raises ProofError."""

    def __init__(self, root: bytes, witness: Witness) -> None:
        nodes = {_h(r): r for r in witness.nodes}
        self._values = {_h(v): v for v in witness.values}
        self.trie = TrieReader(root, nodes.get)

    def _value(self, vhash: bytes) -> bytes:
        value = self._values.get(vhash)
        if value is None:
            raise ProofError("the proof lacks a value the query reads")
        return value

    def get(self, module: str, key: bytes) -> bytes | None:
        vhash = self.trie.get(tree_key(module, key))
        return None if vhash is None else self._value(vhash)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        base = tree_key(module, b"")
        for k, vhash in self.trie.iterate(base + prefix):
            yield k[len(base):], self._value(vhash)


def verify_key(root: bytes, module: str, key: bytes, witness: Witness) -> bytes | None:
    """The value of ``(module, key)`` that ``witness`` proves against ``root``: bytes
    (membership) or None (absence). ProofError if the witness proves neither."""
    if len(tree_key(module, key)) > MAX_KEY_SIZE:
        raise ProofError("key too long")
    if root == EMPTY_ROOT:
        return None
    return WitnessState(root, witness).get(module, key)


# ------------------------------------------------------------------- query answers


def query_index(modules: Sequence[Module]) -> dict[str, tuple[Module, QuerySpec]]:
    """JSON-RPC method name (and alias) -> (module, query), as the node serves them."""
    out: dict[str, tuple[Module, QuerySpec]] = {}
    for mod in modules:
        for qname, spec in mod.queries.items():
            out[mod.rpc_name(qname)] = (mod, spec)
            for alias in spec.aliases:
                out[alias] = (mod, spec)
    return out


def plain(value: Any) -> Any:
    """An answer as JSON would carry it (tuples as lists), for comparison."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def replay_query(spec: QuerySpec, chain_id: str, params: dict[str, Any], state: WitnessState, *,
                 tip_time_ms: int, context_time_ms: int | None = None) -> Any:
    """Run ``spec`` on a witness as the node did: JSON ``params`` (without ``prove``), a
    missing ``time_ms`` of a tip-time query = the proven header's time.

    Returns the answer as the node sends it (before it attaches a blob: an
    :class:`Attach` comes back as is).
    """
    p = {k: v for k, v in params.items() if k not in (PROVE_PARAM, HEIGHT_PARAM)}
    if spec.tip_time and p.get("time_ms") is None:
        p["time_ms"] = tip_time_ms
    try:
        typed: Any = decode_json_params(spec.params, p)
    except FieldError as exc:
        raise ProofError(f"the query's params do not decode: {exc}") from None
    ctx = QueryContext(chain_id, tip_time_ms if context_time_ms is None else context_time_ms)
    return spec.run(state, typed, ctx)


def check_answer(replayed: Any, claimed: Any) -> Any:
    """The verified answer: ``replayed`` (from the witness) if the node's ``claimed``
    answer agrees with it, else ProofError. A blob the node attached must hash to the
    content hash the state commits to (the blob itself is not state)."""
    if isinstance(replayed, Attach):
        if not isinstance(claimed, dict):
            raise ProofError("the node's answer differs from what its proof shows")
        blob_hex = claimed.get(replayed.field)
        expected = plain(dict(replayed.value))
        expected[replayed.field] = blob_hex
        if plain(claimed) != expected:
            raise ProofError("the node's answer differs from what its proof shows")
        if blob_hex is not None:
            try:
                blob = bytes.fromhex(blob_hex[2:])
            except (TypeError, ValueError):
                raise ProofError("the attached blob is not hex") from None
            if _h(blob) != replayed.content_hash:
                raise ProofError("the attached blob does not match the content hash in the state")
        return expected
    if plain(replayed) != claimed:
        raise ProofError("the node's answer differs from what its proof shows")
    return plain(replayed)
