"""Tx-body builders for the identity and governance state-machine tests.

The chain, the named keys and the genesis come from the shared harness
:mod:`medchaind.testing.appkit`; this file only adds the bodies these suites build.
"""

from __future__ import annotations

from typing import Any

from medchaind.modules.identity.machine import get_identity
from medchaind.testing.appkit import (  # noqa: F401  (re-exported for the suites)
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    GENESIS_TIME_MS,
    AppChain,
    enc_key,
    key,
    make_genesis,
    pub,
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



class Chain(AppChain):
    """The harness chain plus identity shortcuts."""

    @classmethod
    def with_authorities(cls, powers: dict[str, int] | None = None) -> Chain:
        return cls(make_genesis(powers or {"A": 1}))

    def identity(self, name: str) -> dict[str, Any] | None:
        return get_identity(self.state, pub(name))

    def status(self, name: str) -> str | None:
        ident = self.identity(name)
        return None if ident is None else str(ident["status"])

    def register(self, name: str, role: str, enc: str | None = "1", label: str | None = None) -> None:
        super().register(name, role, enc, label)
