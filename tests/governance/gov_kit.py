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
from collections.abc import Callable, Mapping
from typing import Any

from medchaind import core
from medchaind.modules.governance.machine import authority_powers
from medchaind.testing.appkit import (  # noqa: F401  (re-exported for the suites)
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    GENESIS_TIME_MS,
    OTHER_CHAIN_ID,
    AppChain,
    hx,
    key,
    make_genesis,
    pub,
)
from medchaind.types import Tx

FOUR = {"A": 1, "B": 1, "C": 1, "D": 1}


def block_hash(tag: str) -> bytes:
    """A stand-in 32-byte block hash (evidence never looks the block up)."""
    return hashlib.sha256(b"medchain-test/block/" + tag.encode()).digest()


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


# ------------------------------------------------------------------ the chain


class Chain(AppChain):
    """The harness chain plus governance shortcuts."""

    def powers(self) -> dict[bytes, int]:
        return authority_powers(self.state)

    def query(self, name: str, params: dict[str, Any] | None = None, *, time_ms: int | None = None) -> Any:  # type: ignore[override]
        path = name if "." in name else f"governance.{name}"
        return super().query(path, params, time_ms=time_ms)

    def op(self, name: str, op: str, *args: Any, nonce: int | None = None) -> Tx:
        type_, build = OPS[op]
        return self.tx(name, type_, build(*args), nonce=nonce)

    def send_op(self, name: str, op: str, *args: Any) -> Any:
        return self.commit([self.op(name, op, *args)]).receipts[0]

    def nonce_of(self, tx: Tx) -> int:
        from medchaind.app import App

        return App.nonce(self.state, tx.sender)
