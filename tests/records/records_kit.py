"""Builders for the records/consent tests: tx-body helpers and the cast, on the shared
harness :mod:`medchaind.testing.appkit` (keys, genesis, one-block-per-call chain).

Actors: ``A`` the sole authority, ``P`` / ``Q`` patients, ``D1`` / ``D2`` accredited
providers, ``X`` a registered but not accredited provider, ``PH`` an accredited pharmacy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from medchaind import codec
from medchaind.app import Attach
from medchaind.modules.consent.machine import check
from medchaind.testing.appkit import (  # noqa: F401  (re-exported for the suites)
    BLOCK_INTERVAL_MS,
    CHAIN_ID,
    GENESIS_TIME_MS,
    HOUR_MS,
    OTHER_CHAIN_ID,
    AppChain,
    enc_key,
    key,
    make_genesis,
    pub,
)

#: the signing domain of a read request, written out as docs/protocol.md §18.5 gives it
#: (not imported from the module: the suite checks the implementation against the spec)
READ_DOMAIN = "medchain/records/read/v1"


def sealed(recipient: str, tag: str = "k") -> bytes:
    """A 80-byte stand-in for a data key sealed to ``recipient`` (opaque to the chain)."""
    return hashlib.sha512(b"sealed/" + recipient.encode() + b"/" + tag.encode()).digest()[:48] + b"\x00" * 32


def ciphertext_hash(tag: str) -> bytes:
    return hashlib.sha256(b"ciphertext/" + tag.encode()).digest()


def read_request(
    record_id: bytes,
    reader: str,
    time_ms: int,
    *,
    purpose: str | None = "TREAT",
    signer: str | None = None,
    chain_id: str = CHAIN_ID,
) -> dict[str, Any]:
    """``records_get`` params of a read request signed by ``signer`` (default: the reader).

    The signed payload is the canonical CBOR map of the request's fields (``purpose``
    left out when None), under :data:`READ_DOMAIN` and the chain id (protocol.md §18.5).
    """
    req: dict[str, Any] = {"record_id": record_id, "reader": pub(reader), "time_ms": time_ms}
    if purpose is not None:
        req["purpose"] = purpose
    sig = key(signer or reader).sign(READ_DOMAIN, chain_id, codec.encode(req))
    return {**req, "sig": sig}


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

    def now(self) -> int:
        """The node's "now" as a query sees it: the time the next block would have."""
        return self.time_ms + BLOCK_INTERVAL_MS

    def release(
        self, record_id: bytes, reader: str, purpose: str | None = "TREAT", time_ms: int | None = None, **kw: Any
    ) -> tuple[dict[str, Any], bool]:
        """A signed ``records.get`` by ``reader`` at ``time_ms`` (default: now): the answer,
        and whether the node would attach the ciphertext to it."""
        now = self.now() if time_ms is None else time_ms
        params = read_request(record_id, reader, now, purpose=purpose, **kw)
        answer = self.app.query(self.state, "records.get", params, time_ms=now)
        if isinstance(answer, Attach):
            return answer.value, True
        return answer, False

    def get(self, record_id: bytes, reader: str, purpose: str | None = "TREAT", time_ms: int | None = None) -> Any:
        """A signed ``records.get`` by ``reader`` (what the reader's own client sends)."""
        return self.release(record_id, reader, purpose, time_ms)[0]

    def access(self, record_id: bytes, reader: str, purpose: str = "TREAT") -> Any:
        """Commit ``reader``'s ``records.access`` (the audit entry a release needs)."""
        return self.ok(reader, "records.access", {"record_id": record_id, "purpose": purpose})

    def read(self, record_id: bytes, reader: str, purpose: str = "TREAT") -> dict[str, Any]:
        """What an honest client does: commit the access, then ask with a signed request."""
        self.access(record_id, reader, purpose)
        return self.get(record_id, reader, purpose)  # type: ignore[no-any-return]

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

