"""The application state machine: admission checks, tx execution, queries.

Pure and deterministic: given the same committed state, block info and txs, every
node produces the same write-set, receipts and ``app_hash``. Nothing here touches a
clock, a socket, randomness or the disk.

Per-sender nonces live in the ``auth`` namespace: a tx executes only if its nonce
equals the number of txs the sender has had committed, which stops replays and fixes
the order of a sender's txs. A tx with the wrong nonce in a block gets a ``bad_nonce``
receipt and changes nothing; a tx whose handler fails consumes its nonce and changes
nothing else.

``app_hash`` is a hash chain over write-sets:
``app_hash(h) = SHA-256(app_hash(h-1) || SHA-256(canonical sorted write-set of h))``,
starting from the genesis write-set. Two nodes whose states diverge produce different
headers at the first diverging block, so the divergence cannot go unnoticed. (It does
not give per-key state proofs; a Merkleised state tree can replace it behind the same
header field.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import codec, crypto
from ..errors import TxRejected
from ..types import Receipt, Tx, results_hash
from ..types.genesis import Genesis
from .anchor import AnchorModule
from .consent import ConsentModule
from .governance import GovernanceModule
from .identity import IdentityModule, get_identity
from .module import BlockInfo, Module, QueryError, TxContext, TxFailed, TxSpec
from .records import RecordsModule
from .state import StateKey, StateOverlay, StateReader

NONCE_NS = "auth"


def nonce_key(sender: bytes) -> bytes:
    return b"n/" + sender


def default_modules() -> list[Module]:
    return [IdentityModule(), GovernanceModule(), AnchorModule(), ConsentModule(), RecordsModule()]


def writes_digest(writes: dict[StateKey, bytes | None]) -> bytes:
    items = [[m, k, writes[(m, k)]] for (m, k) in sorted(writes)]
    return crypto.sha256(codec.encode_unchecked(items))


def next_app_hash(prev: bytes, writes: dict[StateKey, bytes | None]) -> bytes:
    return crypto.sha256(prev + writes_digest(writes))


@dataclass(frozen=True, slots=True)
class Execution:
    writes: dict[StateKey, bytes | None]
    receipts: list[Receipt]
    app_hash: bytes
    results_hash: bytes


class App:
    def __init__(self, genesis: Genesis, modules: Sequence[Module] | None = None) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.modules: dict[str, Module] = {}
        self.specs: dict[str, TxSpec] = {}
        for mod in modules if modules is not None else default_modules():
            if mod.name in self.modules or mod.name == NONCE_NS:
                raise ValueError(f"duplicate or reserved module name {mod.name!r}")
            self.modules[mod.name] = mod
            for action, spec in mod.txs.items():
                self.specs[f"{mod.name}.{action}"] = spec

    # ------------------------------------------------------------------ genesis

    def genesis_state(self) -> tuple[dict[StateKey, bytes | None], bytes]:
        """The initial write-set and the app hash it yields (chained from the genesis hash)."""
        writes: dict[StateKey, bytes | None] = {}
        for mod in self.modules.values():
            for k, v in mod.genesis_writes(self.genesis).items():
                writes[(mod.name, k)] = codec.encode(v)
        return writes, next_app_hash(self.genesis.hash(), writes)

    # ------------------------------------------------------------------ nonces

    @staticmethod
    def nonce(state: StateReader, sender: bytes) -> int:
        raw = state.get(NONCE_NS, nonce_key(sender))
        return 0 if raw is None else int.from_bytes(raw, "big")

    # ------------------------------------------------------------------ admission

    def check_tx(
        self, state: StateReader, tx: Tx, *, expected_nonce: int | None = None,
        registration_pending: bool = False, block: BlockInfo | None = None,
    ) -> None:
        """Stateful admission checks against committed ``state`` (signature checked apart).

        With ``expected_nonce`` equal to the committed nonce (the sender's next tx), the
        handler also runs on a scratch overlay so that a tx sure to fail (already
        registered, not an authority, ...) is refused now with its reason instead of
        being committed as a failed receipt. ``registration_pending`` says an earlier
        pending tx of the sender registers it, so txs that need an identity may queue.
        ``block`` is what the dry run sees as its block (the node passes the next height
        and the last block's time, so time-bounded consents are judged sensibly).
        """
        if tx.chain != self.chain_id:
            raise TxRejected("wrong_chain", f"tx is for chain {tx.chain!r}, this node runs {self.chain_id!r}")
        spec = self.specs.get(tx.type)
        if spec is None:
            raise TxRejected("unknown_type", f"no module handles tx type {tx.type!r}")
        try:
            spec.validate(tx.body)
        except TxFailed as exc:
            raise TxRejected(exc.code, exc.reason) from None
        committed = self.nonce(state, tx.sender)
        if tx.nonce < committed:
            raise TxRejected("nonce_too_low", f"nonce {tx.nonce} already used (next is {committed})")
        if spec.requires_identity and not registration_pending and get_identity(state, tx.sender) is None:
            raise TxRejected("unregistered_sender", "register an identity before sending this tx")
        if expected_nonce is not None and tx.nonce == committed == expected_nonce:
            info = block or BlockInfo(self.chain_id, 0, 0, b"")
            ctx = self._context(StateOverlay(state), info, tx)
            try:
                spec.handler(ctx, tx.body)
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
        if spec.requires_identity and get_identity(block_state, tx.sender) is None:
            return Receipt("unregistered_sender", "sender has no registered identity")
        overlay = StateOverlay(block_state)
        ctx = self._context(overlay, block, tx)
        try:
            spec.validate(tx.body)
            spec.handler(ctx, tx.body)
        except TxFailed as exc:
            return Receipt(exc.code, exc.reason)
        overlay.merge_into(block_state)
        return Receipt(events=tuple(ctx.events))

    def execute(self, state: StateReader, block: BlockInfo, txs: Sequence[Tx], prev_app_hash: bytes) -> Execution:
        overlay = StateOverlay(state)
        receipts = [self.deliver_tx(overlay, block, tx) for tx in txs]
        for mod in self.modules.values():
            mod.end_block(TxContext(module=mod.name, state=overlay, block=block, sender=b"", tx_hash=b""))
        writes = overlay.writes
        return Execution(writes, receipts, next_app_hash(prev_app_hash, writes), results_hash(receipts))

    # ------------------------------------------------------------------ queries

    def query(self, state: StateReader, path: str, params: dict[str, Any]) -> Any:
        module, _, name = path.partition(".")
        mod = self.modules.get(module)
        if mod is None or name not in mod.queries:
            raise QueryError(f"unknown query {path!r}")
        return mod.queries[name](state, params)
