"""Builders for the governance tests: named deterministic keys, tx bodies for
authority-set changes and signed consensus votes for equivocation evidence, and a
chain (an :class:`App` over a :class:`DictState`) that commits one block per call.

Actors are named as in geth clique's snapshot tests: "A".."D" are authorities, "E" a
candidate, "A'" the new key of a rotated "A", "R" a reporter with no identity. A name
maps to a fixed Ed25519 seed, so every run signs the same bytes (the seeds are those of
``tests/app/app_kit.py``, so the same name is the same key across suites).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from medchaind import core, crypto
from medchaind.app import App, BlockInfo, DictState, Execution
from medchaind.app.governance import authority_powers
from medchaind.types import Authority, Genesis, Receipt, Tx, sign_tx

CHAIN_ID = "medchain-test"
OTHER_CHAIN_ID = "medchain-other"
GENESIS_TIME_MS = 1_764_000_000_000
BLOCK_INTERVAL_MS = 1_000

FOUR = {"A": 1, "B": 1, "C": 1, "D": 1}


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def hx(name: str) -> str:
    return "0x" + pub(name).hex()


def block_hash(tag: str) -> bytes:
    """A stand-in 32-byte block hash (evidence never looks the block up)."""
    return hashlib.sha256(b"medchain-test/block/" + tag.encode()).digest()


def make_genesis(powers: Mapping[str, int], chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis(
        chain_id, GENESIS_TIME_MS, tuple(Authority(n, pub(n), p) for n, p in powers.items())
    )


def powers_of(named: Mapping[str, int]) -> dict[bytes, int]:
    return {pub(n): p for n, p in named.items()}


# ------------------------------------------------------------------ tx bodies


def add_body(name: str, power: int = 1) -> dict[str, Any]:
    return {"public_key": pub(name), "name": name, "power": power}


def remove_body(name: str, reason: str = "key compromised") -> dict[str, Any]:
    return {"public_key": pub(name), "reason": reason}


def rotate_body(old: str, new: str) -> dict[str, Any]:
    return {"old_key": pub(old), "new_key": pub(new)}


OPS: dict[str, tuple[str, Callable[..., dict[str, Any]]]] = {
    "add": ("governance.add_authority", add_body),
    "remove": ("governance.remove_authority", remove_body),
    "rotate": ("governance.rotate_authority", rotate_body),
}


# ------------------------------------------------------------------ consensus votes


def vote(
    name: str,
    value: str | None,
    *,
    height: int = 7,
    round_: int = 0,
    kind: core.VoteKind = core.VoteKind.PREVOTE,
    chain_id: str = CHAIN_ID,
) -> core.Vote:
    """``name``'s vote for block ``value`` (``None`` = nil), signed with ``core.sign_vote``."""
    unsigned = core.Vote(
        kind, core.Height(height), core.Round(round_),
        None if value is None else core.BlockHash(block_hash(value)), core.ValidatorId(pub(name)),
    )
    return core.sign_vote(key(name), chain_id, unsigned)


def evidence_body(a: core.Vote, b: core.Vote) -> dict[str, Any]:
    return {"vote_a": a.to_map(), "vote_b": b.to_map()}


# ------------------------------------------------------------------ a chain of DictState


class Chain:
    """Committed state plus app hash and block height/time; ``commit`` adds one block."""

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
    def of(cls, powers: Mapping[str, int]) -> Chain:
        return cls(make_genesis(powers))

    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def powers(self) -> dict[bytes, int]:
        return authority_powers(self.state)

    def query(self, name: str) -> Any:
        return self.app.query(self.state, f"governance.{name}", {})

    def tx(self, name: str, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Tx:
        n = self.nonce(name) if nonce is None else nonce
        return sign_tx(key(name), self.app.chain_id, type_, n, body)

    def op(self, name: str, op: str, *args: Any, nonce: int | None = None) -> Tx:
        type_, build = OPS[op]
        return self.tx(name, type_, build(*args), nonce=nonce)

    def next_block(self) -> BlockInfo:
        return BlockInfo(
            self.app.chain_id, self.height + 1, self.time_ms + BLOCK_INTERVAL_MS, self.proposer
        )

    def execute(self, txs: Iterable[Tx]) -> Execution:
        return self.app.execute(self.state, self.next_block(), list(txs), self.app_hash)

    def commit(self, txs: Iterable[Tx] = ()) -> Execution:
        ex = self.execute(txs)
        self.state.apply(ex.writes)
        self.app_hash = ex.app_hash
        self.height += 1
        self.time_ms += BLOCK_INTERVAL_MS
        return ex

    def send(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        """Commit a block holding one tx of ``name`` (next nonce); return its receipt."""
        return self.commit([self.tx(name, type_, body)]).receipts[0]

    def send_op(self, name: str, op: str, *args: Any) -> Receipt:
        return self.commit([self.op(name, op, *args)]).receipts[0]

    def check(self, tx: Tx) -> None:
        """Mempool admission as a node runs it: stateless checks plus a dry run."""
        self.app.check_tx(self.state, tx, expected_nonce=self.nonce_of(tx))

    def nonce_of(self, tx: Tx) -> int:
        return App.nonce(self.state, tx.sender)
