"""A one-node chain for executor tests: named deterministic keys, genesis, and a node
that builds, validates and commits blocks over a DictState (no store, no consensus)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from medchaind import crypto
from medchaind.app import DictState, Execution
from medchaind.chain import SigCache, Tip, build_block, validate_block
from medchaind.modules import make_app
from medchaind.types import Authority, Block, Commit, Genesis, Tx, sign_commit_vote, sign_tx

CHAIN_ID = "medchain-test"
GENESIS_TIME_MS = 1_764_000_000_000
MAX_TXS = 1000
MAX_BYTES = 1 << 20


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def make_genesis(powers: Mapping[str, int]) -> Genesis:
    return Genesis(
        CHAIN_ID, GENESIS_TIME_MS, tuple(Authority(n, pub(n), p) for n, p in powers.items())
    )


def register(name: str, nonce: int = 0, role: str = "patient", enc: bytes = b"\x01" * 32) -> Tx:
    return sign_tx(key(name), CHAIN_ID, "identity.register", nonce, {"role": role, "enc_key": enc})


def signed(name: str, type_: str, nonce: int, body: dict[str, Any]) -> Tx:
    return sign_tx(key(name), CHAIN_ID, type_, nonce, body)


class Node:
    """Committed DictState plus the tip; blocks are built by authority ``proposer``."""

    def __init__(self, genesis: Genesis, sigs: SigCache | None = None) -> None:
        self.genesis = genesis
        self.app = make_app(genesis)
        writes, app_hash = self.app.genesis_state()
        self.state = DictState()
        self.state.apply(writes)
        self.tip = Tip(0, genesis.hash(), app_hash, genesis.genesis_time_ms, genesis.powers())
        self.sigs = sigs if sigs is not None else SigCache()
        self.last_commit: Commit | None = None

    def build(
        self, txs: Sequence[Tx], proposer: str = "A", time_ms: int | None = None
    ) -> tuple[Block, Execution]:
        return build_block(
            self.app,
            self.state,
            self.tip,
            txs,
            proposer=pub(proposer),
            time_ms=self.tip.time_ms + 1000 if time_ms is None else time_ms,
            round_=0,
            last_commit=self.last_commit,
        )

    def validate(
        self, block: Block, *, max_txs: int = MAX_TXS, max_bytes: int = MAX_BYTES
    ) -> Execution:
        return validate_block(
            self.app, self.state, self.tip, block, self.sigs, max_txs=max_txs, max_bytes=max_bytes
        )

    def commit(self, block: Block, ex: Execution, signers: Sequence[str] = ("A",)) -> None:
        self.state.apply(ex.writes)
        h = block.header
        self.tip = Tip(h.height, block.hash(), ex.app_hash, h.time_ms, self.tip.powers)
        sigs = tuple(
            sign_commit_vote(key(s), CHAIN_ID, h.height, h.round, block.hash()) for s in signers
        )
        self.last_commit = Commit(h.height, h.round, block.hash(), sigs)
