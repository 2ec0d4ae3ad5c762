"""Builders for the records/consent tests: tx-body helpers and the cast, on the shared
harness :mod:`medchaind.testing.appkit` (keys, genesis, one-block-per-call chain).

Actors: ``A`` the sole authority, ``P`` / ``Q`` patients, ``D1`` / ``D2`` accredited
providers, ``X`` a registered but not accredited provider, ``PH`` an accredited pharmacy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from medchaind.modules.consent.machine import check
from medchaind.testing.appkit import (  # noqa: F401  (re-exported for the suites)
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    GENESIS_TIME_MS,
    HOUR_MS,
    AppChain,
    enc_key,
    key,
    make_genesis,
    pub,
)


def sealed(recipient: str, tag: str = "k") -> bytes:
    """A 80-byte stand-in for a data key sealed to ``recipient`` (opaque to the chain)."""
    return hashlib.sha512(b"sealed/" + recipient.encode() + b"/" + tag.encode()).digest()[:48] + b"\x00" * 32


def ciphertext_hash(tag: str) -> bytes:
    return hashlib.sha256(b"ciphertext/" + tag.encode()).digest()


# ------------------------------------------------------------------ tx bodies


def grant_body(
    actor: str | None = None,
    *,
    role: str | None = None,
    actions: Iterable[str] = ("read",),
    decision: str = "permit",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"actions": list(actions), "decision": decision, **extra}
    if actor is not None:
        body["actor"] = pub(actor)
    if role is not None:
        body["actor_role"] = role
    return body


def envelopes(*names: str, tag: str = "k") -> list[dict[str, Any]]:
    return [{"recipient": pub(n), "sealed_key": sealed(n, tag)} for n in names]


def add_body(
    patient: str = "P",
    resource_type: str = "Observation",
    *,
    recipients: Iterable[str] | None = None,
    tag: str = "r1",
    **extra: Any,
) -> dict[str, Any]:
    names = list(recipients) if recipients is not None else [patient]
    return {
        "patient": pub(patient),
        "resource_type": resource_type,
        "content_hash": ciphertext_hash(tag),
        "size": 1234,
        "envelopes": envelopes(*names, tag=tag),
        **extra,
    }


class Chain(AppChain):
    """The harness chain with one authority ``A`` and the records/consent shortcuts."""

    def __init__(self, genesis: Any = None) -> None:
        super().__init__(genesis or make_genesis({"A": 1}))

    @classmethod
    def standard(cls) -> Chain:
        """The cast: patients P, Q; providers D1, D2 (accredited), X (pending); pharmacy PH."""
        c = cls()
        c.cast(
            [("P", "patient"), ("Q", "patient"), ("D1", "provider"), ("D2", "provider"),
             ("X", "provider"), ("PH", "pharmacy"), ("PH2", "pharmacy")],
            [("D1", "provider"), ("D2", "provider"), ("PH", "pharmacy")],
        )
        return c

    # -------------------------------------------------------------- domain shortcuts

    def grant(self, patient: str, body: dict[str, Any]) -> bytes:
        r = self.ok(patient, "consent.grant", body)
        return bytes(r.events[0]["grant_id"])

    def add(self, sender: str, body: dict[str, Any]) -> bytes:
        r = self.ok(sender, "records.add", body)
        return bytes(r.events[0]["record_id"])

    def get(self, record_id: bytes, reader: str, purpose: str | None = "TREAT", time_ms: int | None = None) -> Any:
        params: dict[str, Any] = {
            "record_id": record_id,
            "reader": pub(reader),
            "time_ms": self.time_ms if time_ms is None else time_ms,
        }
        if purpose is not None:
            params["purpose"] = purpose
        return self.query("records.get", params)

    def check(
        self,
        actor: str,
        action: str = "read",
        resource_type: str = "Observation",
        *,
        patient: str = "P",
        record_id: bytes | None = None,
        purpose: str | None = "TREAT",
        time_ms: int | None = None,
    ) -> tuple[bool, str]:
        return check(
            self.state,
            pub(patient),
            pub(actor),
            action,
            resource_type,
            record_id,
            purpose,
            self.time_ms + BLOCK_INTERVAL_MS if time_ms is None else time_ms,
        )

