"""The application state machine: admission checks, tx execution, queries.

Pure and deterministic: given the same committed state, block info and txs, every
node produces the same write-set, receipts and ``app_hash``. Nothing here touches a
clock, a socket, randomness or the disk.

Per-sender nonces live in the ``auth`` namespace: a tx executes only if its nonce
equals the number of txs the sender has had committed, which stops replays and fixes
the order of a sender's txs. A tx with the wrong nonce in a block gets a ``bad_nonce``
receipt and changes nothing; a tx whose handler fails consumes its nonce and changes
nothing else.

``app_hash`` is the root of the state trie (:mod:`medchaind.app.trie`): a 16-ary
Merkle Patricia trie over every ``(namespace, key) -> value`` of the state, nonces
included, keys in order. :meth:`App.execute` updates it incrementally from the block's
write-set (only the changed keys' paths are read and rehashed) and returns the new root
with the node records the store must add and delete (:class:`~medchaind.app.trie.
TrieDelta`), so a block's state and its commitment are written in one batch. The header
of block ``h`` carries the root of the state *after* block ``h`` (immediate execution);
the genesis state's root is the ``app_hash`` "before block 1". Because the trie's shape
depends only on the state, every node computes the same root, and a node or a client can
prove any key's value, its absence, or every key under a prefix against a header
(docs/protocol.md §23, docs/adr-state-commitment.md). Protocol 1 chained hashes of
write-sets instead; :data:`PROTOCOL_VERSION` 2 introduced this commitment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import codec, crypto
from ..errors import TxRejected
from ..types import Receipt, Tx, results_hash
from ..types.genesis import Genesis
from .module import (
    LANES,
    BlockInfo,
    BodyCache,
    HostEffect,
    Module,
    QueryContext,
    QueryError,
    QuerySpec,
    TopicSpec,
    TxContext,
    TxFailed,
    TxSpec,
    get_query,
)
from .schema import FieldError, decode_native_params
from .state import StateKey, StateOverlay, StateReader, TrieSource
from .trie import EMPTY_ROOT, NodeReader, TrieDelta, tree_key, update

NONCE_NS = "auth"

#: The chain's protocol version (docs/protocol.md, "Protocol versions"): 2 made
#: ``app_hash`` the root of the state trie (it was a hash chain over write-sets in 1),
#: 3 leaves the free-text ``reason`` out of ``results_hash`` (it commits to each
#: receipt's ``{code, events}``), 4 makes proposals compact (tx hashes, not txs; a
#: ``txs/1`` request/response for the missing ones: docs/protocol.md §12.3, §13.5).
#: Nodes of different versions disagree on block hashes or cannot exchange proposals.
PROTOCOL_VERSION = 4


#: receipt codes of a tx that did not use its nonce (docs/protocol.md §7.1, rules 1-3:
#: :meth:`App.deliver_tx` returns them before it writes the nonce); every other receipt
#: means the sender's nonce moved past the tx's, and nonces only grow
NONCE_UNUSED_CODES = frozenset({"wrong_chain", "unknown_type", "bad_nonce"})


def nonce_key(sender: bytes) -> bytes:
    return b"n/" + sender


def nonce_sender(key: bytes) -> bytes | None:
    """The sender whose nonce the ``auth`` key ``key`` holds (:func:`nonce_key`'s inverse), or None."""
    return key[2:] if key.startswith(b"n/") else None


def state_update(root: bytes, read_node: NodeReader, writes: dict[StateKey, bytes | None]) -> TrieDelta:
    """The state trie after ``writes`` (value None = delete) on the trie at ``root``.

    Changes are applied in key order (the result does not depend on it; the order only
    makes neighbouring keys share the nodes they load).
    """
    prefixes: dict[str, bytes] = {}  # tree_key(m, b"") per module (one encode per module, not per write)
    changes: list[tuple[bytes, bytes | None]] = []
    for (m, k), v in writes.items():
        p = prefixes.get(m)
        if p is None:
            p = prefixes[m] = tree_key(m, b"")
        changes.append((p + k, v))
    changes.sort()  # tree keys are unique: values are never compared
    return update(root, read_node, changes)


@dataclass(frozen=True, slots=True)
class Execution:
    writes: dict[StateKey, bytes | None]
    receipts: list[Receipt]
    #: the root of the state trie after the block
    app_hash: bytes
    results_hash: bytes
    #: the state trie's node records to add and delete (the store writes them with the block)
    trie: TrieDelta | None = None


class App:
    """The state machine of one chain: the modules of the registry, dispatched by tx type.

    ``modules`` come from :func:`medchaind.modules.load_modules` (the registry); the
    framework never names a module.
    """

    def __init__(self, genesis: Genesis, modules: Sequence[Module], *, body_cache: int = 10_000) -> None:
        self.genesis = genesis
        #: typed bodies of txs that passed :meth:`check_tx`, reused by the re-checks and
        #: :meth:`deliver_tx` (the mempool discards a tx's entry when the tx leaves it)
        self.bodies = BodyCache(body_cache)
        self.chain_id = genesis.chain_id
        self.modules: dict[str, Module] = {}
        self.specs: dict[str, TxSpec] = {}
        self.topics: dict[str, TopicSpec] = {}
        for mod in modules:
            if not mod.name or mod.name in self.modules or mod.name == NONCE_NS:
                raise ValueError(f"duplicate or reserved module name {mod.name!r}")
            self.modules[mod.name] = mod
            for action, spec in mod.txs.items():
                self.specs[f"{mod.name}.{action}"] = spec
            for topic, tspec in mod.topics.items():
                if topic in self.topics:
                    raise ValueError(f"two modules declare subscription topic {topic!r}")
                self.topics[topic] = tspec
        #: the modules that answer :meth:`sender_registered` (those that override the
        #: base class's "no"): asking only them saves a call per module on every tx
        self._registrars = [m for m in self.modules.values()
                            if type(m).sender_registered is not Module.sender_registered]

    # ------------------------------------------------------------------ genesis

    def genesis_state(self) -> tuple[dict[StateKey, bytes | None], bytes]:
        """The initial write-set and the app hash it yields (the root of its state trie)."""
        writes = self.genesis_writes()
        return writes, self.genesis_trie(writes).root

    def genesis_writes(self) -> dict[StateKey, bytes | None]:
        writes: dict[StateKey, bytes | None] = {}
        for mod in self.modules.values():
            for k, v in mod.genesis_writes(self.genesis).items():
                writes[(mod.name, k)] = codec.encode(v)
        return writes

    @staticmethod
    def genesis_trie(writes: dict[StateKey, bytes | None]) -> TrieDelta:
        """The state trie of the genesis write-set, built from nothing (every record in ``puts``)."""
        return state_update(EMPTY_ROOT, lambda h: None, writes)

    # ------------------------------------------------------------------ capabilities

    @staticmethod
    def nonce(state: StateReader, sender: bytes) -> int:
        raw = state.get(NONCE_NS, nonce_key(sender))
        return 0 if raw is None else int.from_bytes(raw, "big")

    def sender_registered(self, state: StateReader, sender: bytes) -> bool:
        for m in self._registrars:
            if m.sender_registered(state, sender):
                return True
        return False

    def authority_powers(self, state: StateReader) -> dict[bytes, int]:
        """The current authority set (from the module that keeps it; empty if none does)."""
        for m in self.modules.values():
            powers = m.authority_powers(state)
            if powers is not None:
                return powers
        return {}

    def evidence_tx(self, vote_a: dict[str, Any], vote_b: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """``(tx type, body)`` that puts an equivocation on chain, if a module takes evidence."""
        for m in self.modules.values():
            found = m.evidence_tx(vote_a, vote_b)
            if found is not None:
                return f"{m.name}.{found[0]}", found[1]
        return None

    def spec(self, tx_type: str) -> TxSpec | None:
        return self.specs.get(tx_type)

    def registers_sender(self, tx: Tx) -> bool:
        spec = self.specs.get(tx.type)
        return spec is not None and spec.registers_sender

    def verdict_reads_block(self, tx: Tx) -> bool:
        """Whether ``tx``'s admission verdict may depend on the block (:attr:`TxSpec.verdict_reads_block`;
        True for an unknown type)."""
        spec = self.specs.get(tx.type)
        return spec is None or spec.verdict_reads_block

    def lane(self, tx: Tx) -> str:
        spec = self.specs.get(tx.type)
        return LANES[-1] if spec is None else spec.lane

    def blob_hash(self, tx: Tx) -> bytes | None:
        """The hash that binds ``tx``'s sidecar, if its type carries one."""
        spec = self.specs.get(tx.type)
        if spec is None or spec.blob is None:
            return None
        h = tx.body.get(spec.blob.hash_field) if isinstance(tx.body, dict) else None
        return h if isinstance(h, bytes) and len(h) == 32 else None

    def check_blob(self, tx: Tx, blob: bytes | None) -> None:
        """Refuse a sidecar that ``tx``'s type does not take or that its body does not bind."""
        spec = self.specs.get(tx.type)
        bspec = None if spec is None else spec.blob
        if bspec is None:
            if blob is not None:
                raise TxRejected("unexpected_blob", f"{tx.type} takes no blob")
            return
        if blob is None:
            if bspec.required:
                raise TxRejected("blob_required", f"{tx.type} needs its sidecar as the blob parameter")
            return
        body = tx.body if isinstance(tx.body, dict) else {}
        size_ok = bspec.size_field is None or body.get(bspec.size_field) == len(blob)
        if len(blob) > bspec.max_size or crypto.sha256(blob) != body.get(bspec.hash_field) or not size_ok:
            raise TxRejected("blob_mismatch", f"the blob does not match the tx's {bspec.hash_field}"
                             + (f" and {bspec.size_field}" if bspec.size_field else ""))

    def host_effects(self, events: Iterable[dict[str, Any]]) -> list[HostEffect]:
        """Node-side work that committed events ask for, in event order."""
        out: list[HostEffect] = []
        for event in events:
            module = str(event.get("type", "")).partition(".")[0]
            mod = self.modules.get(module)
            if mod is not None:
                out.extend(mod.host_effects(event))
        return out

    def live_blobs(self, state: StateReader) -> set[bytes]:
        out: set[bytes] = set()
        for m in self.modules.values():
            out |= m.live_blobs(state)
        return out

    # ------------------------------------------------------------------ admission

    def check_tx(
        self, state: StateReader, tx: Tx, *, expected_nonce: int | None = None,
        registration_pending: bool = False, block: BlockInfo | None = None,
        committed_nonce: int | None = None,
    ) -> None:
        """Stateful admission checks against committed ``state`` (signature checked apart).

        With ``expected_nonce`` equal to the committed nonce (the sender's next tx), the
        handler also runs on a scratch overlay so that a tx sure to fail (already
        registered, not an authority, ...) is refused now with its reason instead of
        being committed as a failed receipt. ``registration_pending`` says an earlier
        pending tx of the sender registers it, so txs that need an identity may queue.
        ``block`` is what the dry run sees as its block (the node passes the next height
        and the time this node would propose it at, so time-bounded consents are judged
        sensibly). ``committed_nonce``: the sender's nonce in ``state`` when the caller
        has read it already (the mempool), so it is read once per admission.

        A tx that passes leaves its typed body in :attr:`bodies` for the next checks
        and :meth:`deliver_tx`; the caller discards it when the tx leaves its pool.
        """
        if tx.chain != self.chain_id:
            raise TxRejected("wrong_chain", f"tx is for chain {tx.chain!r}, this node runs {self.chain_id!r}")
        spec = self.specs.get(tx.type)
        if spec is None:
            raise TxRejected("unknown_type", f"no module handles tx type {tx.type!r}")
        # the typed body is stored only once every check below passed, and a failed check
        # forgets it (BodyCache's invariants)
        bodies = self.bodies
        body = bodies.get(tx.hash, tx.type, tx.body)
        try:
            if body is None:
                try:
                    body = spec.decode(tx.body)
                except TxFailed as exc:
                    raise TxRejected(exc.code, exc.reason) from None
            self._check_decoded(state, tx, spec, body, expected_nonce, registration_pending, block, committed_nonce)
        except BaseException:
            bodies.discard((tx.hash,))
            raise
        bodies.put(tx.hash, tx.type, tx.body, body)

    def _check_decoded(self, state: StateReader, tx: Tx, spec: TxSpec, body: Any, expected_nonce: int | None,
                       registration_pending: bool, block: BlockInfo | None, committed_nonce: int | None) -> None:
        committed = self.nonce(state, tx.sender) if committed_nonce is None else committed_nonce
        if tx.nonce < committed:
            raise TxRejected("nonce_too_low", f"nonce {tx.nonce} already used (next is {committed})")
        if spec.requires_identity and not registration_pending and not self.sender_registered(state, tx.sender):
            raise TxRejected("unregistered_sender", "register an identity before sending this tx")
        if expected_nonce is not None and tx.nonce == committed == expected_nonce:
            info = block or BlockInfo(self.chain_id, 0, 0, b"")
            ctx = self._context(StateOverlay(state), info, tx)
            try:
                spec.handler(ctx, body)
            except TxFailed as exc:
                raise TxRejected(exc.code, exc.reason) from None

    # ------------------------------------------------------------------ execution

    def _context(self, overlay: StateOverlay, block: BlockInfo, tx: Tx) -> TxContext:
        return TxContext(module=tx.module, state=overlay, block=block, sender=tx.sender, tx_hash=tx.hash)

    def deliver_tx(self, block_state: StateOverlay, block: BlockInfo, tx: Tx) -> Receipt:
        """Execute one tx whose signature has been verified; writes land in ``block_state``."""
        if tx.chain != self.chain_id:
            return Receipt("wrong_chain", "tx is for another chain")
        spec = self.specs.get(tx.type)
        if spec is None:
            return Receipt("unknown_type", f"no module handles tx type {tx.type!r}")
        expected = self.nonce(block_state, tx.sender)
        if tx.nonce != expected:
            return Receipt("bad_nonce", f"nonce {tx.nonce}, expected {expected}")
        block_state.set(NONCE_NS, nonce_key(tx.sender), (expected + 1).to_bytes(8, "big"))
        if spec.requires_identity and not self.sender_registered(block_state, tx.sender):
            return Receipt("unregistered_sender", "sender has no registered identity")
        # the handler writes into the block's overlay under an undo log (a failure
        # discards its writes, not the nonce): the same view and write-set as a tx layer
        # merged on success, without reading through and copying a second layer
        ctx = self._context(block_state, block, tx)
        typed = self.bodies.get(tx.hash, tx.type, tx.body)  # decoded by this node's admission
        block_state.begin()
        try:
            spec.handler(ctx, spec.decode(tx.body) if typed is None else typed)
        except TxFailed as exc:
            block_state.rollback()
            return Receipt(exc.code, exc.reason)
        except BaseException:
            block_state.rollback()
            raise
        block_state.commit()
        return Receipt(events=tuple(ctx.events))

    def execute(self, state: StateReader, block: BlockInfo, txs: Sequence[Tx], prev_app_hash: bytes) -> Execution:
        """Run a block on ``state`` (whose state trie has root ``prev_app_hash``).

        ``state`` must also be a :class:`~medchaind.app.state.TrieSource` (the store's
        state and :class:`DictState` are): the new ``app_hash`` is computed by updating
        its trie with the block's write-set.
        """
        overlay = StateOverlay(state)
        receipts = [self.deliver_tx(overlay, block, tx) for tx in txs]
        for mod in self.modules.values():
            mod.end_block(TxContext(module=mod.name, state=overlay, block=block, sender=b"", tx_hash=b""))
        writes = overlay.writes
        source: TrieSource = state  # type: ignore[assignment]
        delta = state_update(prev_app_hash, source.trie_node, writes)
        return Execution(writes, receipts, delta.root, results_hash(receipts), delta)

    # ------------------------------------------------------------------ queries

    def query_spec(self, path: str) -> tuple[Module, QuerySpec]:
        return get_query(self.modules, path)

    def query(self, state: StateReader, path: str, params: dict[str, Any] | None = None, *,
              time_ms: int | None = None) -> Any:
        """Run query ``<module>.<name>`` with Python-valued ``params`` (bytes as bytes).

        A query that reads at the tip's time takes ``time_ms`` from ``params`` or else
        from the keyword (the node passes its tip's block time). A query that declares
        ``context=True`` gets ``QueryContext(chain_id, time_ms)`` with the keyword's
        ``time_ms`` as the node's clock.
        """
        _, spec = self.query_spec(path)
        p = dict(params or {})
        if spec.tip_time and "time_ms" not in p:
            if time_ms is None:
                raise QueryError(f"{path} needs time_ms")
            p["time_ms"] = time_ms
        if spec.context and time_ms is None:
            raise QueryError(f"{path} needs time_ms (the node's clock)")
        try:
            typed: Any = decode_native_params(spec.params, p)
        except FieldError as exc:
            raise QueryError(str(exc)) from None
        return spec.run(state, typed, QueryContext(self.chain_id, time_ms or 0))
