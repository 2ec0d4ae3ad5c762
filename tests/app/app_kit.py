"""Builders for the state-machine tests: named deterministic keys, genesis, signed txs and
a tiny chain (an :class:`App` over a :class:`DictState`) that commits one block per call.

Actors are named ("A", "B", "X", ...) as in geth clique's snapshot tests; a name maps to
a fixed Ed25519 seed, so every run (and every hypothesis example) signs the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from medchaind import crypto
from medchaind.app import App, BlockInfo, DictState, Execution
from medchaind.app.identity import get_identity
from medchaind.types import Authority, Genesis, Receipt, Tx, sign_tx

CHAIN_ID = "medchain-test"
GENESIS_TIME_MS = 1_764_000_000_000
BLOCK_INTERVAL_MS = 1_000


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def enc_key(tag: str) -> bytes:
    """A 32-byte stand-in for an X25519 public key (the app only checks its size)."""
    return hashlib.sha256(b"medchain-test/enc/" + tag.encode()).digest()


def make_genesis(powers: Mapping[str, int], chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis(
        chain_id, GENESIS_TIME_MS, tuple(Authority(n, pub(n), p) for n, p in powers.items())
    )


# ------------------------------------------------------------------ tx bodies


def register_body(role: str, enc: str = "1", label: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, "enc_key": enc_key(enc)}
    if label is not None:
        body["label"] = label
    return body


def update_body(enc: str) -> dict[str, Any]:
    return {"enc_key": enc_key(enc)}


def accredit_body(subject: str, role: str = "provider") -> dict[str, Any]:
    return {"subject": pub(subject), "role": role}


def revoke_body(subject: str, reason: str = "licence withdrawn") -> dict[str, Any]:
    return {"subject": pub(subject), "reason": reason}


# ------------------------------------------------------------------ a chain of DictState


class Chain:
    """Committed state plus the app hash and block height/time, one ``commit`` per block."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.app = App(genesis)
        writes, self.app_hash = self.app.genesis_state()
        self.state = DictState()
        self.state.apply(writes)
        self.height = 0
        self.time_ms = genesis.genesis_time_ms
        self.proposer = genesis.authorities[0].public_key

    @classmethod
    def with_authorities(cls, powers: Mapping[str, int] | None = None) -> Chain:
        return cls(make_genesis(powers or {"A": 1}))

    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def identity(self, name: str) -> dict[str, Any] | None:
        return get_identity(self.state, pub(name))

    def status(self, name: str) -> str | None:
        ident = self.identity(name)
        return None if ident is None else str(ident["status"])

    def tx(
        self,
        name: str,
        type_: str,
        body: dict[str, Any],
        *,
        nonce: int | None = None,
        chain: str | None = None,
    ) -> Tx:
        """A tx signed by ``name``; by default with its next committed nonce."""
        n = self.nonce(name) if nonce is None else nonce
        return sign_tx(key(name), chain or self.app.chain_id, type_, n, body)

    def next_block(self) -> BlockInfo:
        return BlockInfo(
            self.app.chain_id, self.height + 1, self.time_ms + BLOCK_INTERVAL_MS, self.proposer
        )

    def execute(self, txs: Iterable[Tx]) -> Execution:
        """Execute the next block without committing it."""
        return self.app.execute(self.state, self.next_block(), list(txs), self.app_hash)

    def commit(self, txs: Iterable[Tx]) -> Execution:
        ex = self.execute(txs)
        self.state.apply(ex.writes)
        self.app_hash = ex.app_hash
        self.height += 1
        self.time_ms += BLOCK_INTERVAL_MS
        return ex

    def send(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        """Commit a block holding one tx of ``name`` (next nonce); return its receipt."""
        return self.commit([self.tx(name, type_, body)]).receipts[0]

    def register(self, name: str, role: str, enc: str = "1", label: str | None = None) -> None:
        r = self.send(name, "identity.register", register_body(role, enc, label))
        assert r.ok, r
