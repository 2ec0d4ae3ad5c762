"""Builders for the records/consent tests: named keys, a one-block-per-call chain whose
App carries the consent and records modules, and tx-body helpers.

Actors (named as in ``tests/app/app_kit.py``; a name maps to a fixed Ed25519 seed):
``A`` the sole authority, ``P`` / ``Q`` patients, ``D1`` / ``D2`` accredited providers,
``X`` a registered but not accredited provider, ``PH`` an accredited pharmacy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from medchaind import crypto
from medchaind.app import App, BlockInfo, DictState, Execution
from medchaind.types import Authority, Genesis, Receipt, Tx, sign_tx

CHAIN_ID = "medchain-test"
GENESIS_TIME_MS = 1_764_000_000_000
BLOCK_INTERVAL_MS = 1_000
HOUR_MS = 3_600_000


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def enc_key(tag: str) -> bytes:
    return hashlib.sha256(b"medchain-test/enc/" + tag.encode()).digest()


def sealed(recipient: str, tag: str = "k") -> bytes:
    """A 80-byte stand-in for a data key sealed to ``recipient`` (opaque to the chain)."""
    return hashlib.sha512(b"sealed/" + recipient.encode() + b"/" + tag.encode()).digest()[:48] + b"\x00" * 32


def ciphertext_hash(tag: str) -> bytes:
    return hashlib.sha256(b"ciphertext/" + tag.encode()).digest()


def make_genesis() -> Genesis:
    return Genesis(CHAIN_ID, GENESIS_TIME_MS, (Authority("A", pub("A"), 1),))


def make_app(genesis: Genesis) -> App:
    return App(genesis)  # default_modules() includes consent and records


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


# ------------------------------------------------------------------ a chain of DictState


class Chain:
    """Committed state plus app hash and block height/time, one ``commit`` per block."""

    def __init__(self, genesis: Genesis | None = None) -> None:
        self.genesis = genesis or make_genesis()
        self.app = make_app(self.genesis)
        writes, self.app_hash = self.app.genesis_state()
        self.state = DictState()
        self.state.apply(writes)
        self.height = 0
        self.time_ms = self.genesis.genesis_time_ms
        self.proposer = self.genesis.authorities[0].public_key

    @classmethod
    def standard(cls) -> Chain:
        """The cast: patients P, Q; providers D1, D2 (accredited), X (pending); pharmacy PH."""
        c = cls()
        for name, role in [
            ("P", "patient"),
            ("Q", "patient"),
            ("D1", "provider"),
            ("D2", "provider"),
            ("X", "provider"),
            ("PH", "pharmacy"),
            ("PH2", "pharmacy"),
        ]:
            c.register(name, role)
        for name, role in [("D1", "provider"), ("D2", "provider"), ("PH", "pharmacy")]:
            r = c.send("A", "governance.accredit", {"subject": pub(name), "role": role})
            assert r.ok, r
        return c

    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def tx(self, name: str, type_: str, body: dict[str, Any]) -> Tx:
        return sign_tx(key(name), self.app.chain_id, type_, self.nonce(name), body)

    def txs(self, specs: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Tx]:
        """Txs for one block, each sender's nonces counting up from its committed one."""
        nonces: dict[str, int] = {}
        out = []
        for name, type_, body in specs:
            n = nonces.get(name, self.nonce(name))
            nonces[name] = n + 1
            out.append(sign_tx(key(name), self.app.chain_id, type_, n, body))
        return out

    def next_block(self) -> BlockInfo:
        return BlockInfo(self.app.chain_id, self.height + 1, self.time_ms + BLOCK_INTERVAL_MS, self.proposer)

    def commit(self, txs: Iterable[Tx]) -> Execution:
        ex = self.app.execute(self.state, self.next_block(), list(txs), self.app_hash)
        self.state.apply(ex.writes)
        self.app_hash = ex.app_hash
        self.height += 1
        self.time_ms += BLOCK_INTERVAL_MS
        return ex

    def send(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        return self.commit([self.tx(name, type_, body)]).receipts[0]

    def ok(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        r = self.send(name, type_, body)
        assert r.ok, r
        return r

    def register(self, name: str, role: str) -> None:
        self.ok(name, "identity.register", {"role": role, "enc_key": enc_key(name)})

    def advance(self, ms: int) -> None:
        """Let block time pass (empty blocks are not needed: only the next block's time counts)."""
        self.time_ms += ms

    # -------------------------------------------------------------- domain shortcuts

    def grant(self, patient: str, body: dict[str, Any]) -> bytes:
        r = self.ok(patient, "consent.grant", body)
        return bytes(r.events[0]["grant_id"])

    def add(self, sender: str, body: dict[str, Any]) -> bytes:
        r = self.ok(sender, "records.add", body)
        return bytes(r.events[0]["record_id"])

    def query(self, path: str, params: dict[str, Any]) -> Any:
        return self.app.query(self.state, path, params)

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
        from medchaind.app.consent import check

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

    def keys(self, module: str) -> list[bytes]:
        return sorted(k for (m, k) in self.state.data if m == module)
