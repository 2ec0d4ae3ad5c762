"""Client library for applications that talk to a local medchaind node.

Two flavours with the same methods: :class:`Client` (blocking) and
:class:`AsyncClient` (anyio: works under trio and asyncio). Transactions are built and
signed here with the caller's key; the node never sees a client's private key::

    from medchaind.client import Client
    from medchaind.crypto import KeyPair

    me = KeyPair.generate()
    with Client("/run/medchaind/medchaind.ipc") as node:
        result = node.register_identity(me, "patient")      # waits for commit
        assert result["receipt"]["ok"]
        print(node.identity(me.public_key))

Nonces: by default each send asks the node for the sender's next nonce (committed
plus contiguous pending). A client that submits many txs quickly can keep the nonces
itself and pass ``nonce=`` (see :meth:`Client.build_tx`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from .crypto import KeyPair, SigningKey
from .ipc import AsyncClient as _AsyncTransport
from .ipc import Client as _Transport
from .ipc import RPCError as RPCError
from .types import Tx, sign_tx

__all__ = ["AsyncClient", "Client", "RPCError", "hexstr"]


def hexstr(b: bytes | str) -> str:
    return b if isinstance(b, str) else "0x" + b.hex()


def _block_params(height: int | None, hash: bytes | str | None, full: bool) -> dict[str, Any]:
    if (height is None) == (hash is None):
        raise ValueError("give exactly one of height or hash")
    p: dict[str, Any] = {"full": full}
    if height is not None:
        p["height"] = height
    else:
        assert hash is not None
        p["hash"] = hexstr(hash)
    return p


def _register_body(keys: KeyPair, role: str, label: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, "enc_key": keys.encryption.public_key}
    if label is not None:
        body["label"] = label
    return body


class Client(_Transport):
    """Blocking client with typed helpers over the JSON-RPC methods."""

    _chain_id: str | None = None

    # --------------------------------------------------------------- node / chain

    def node_info(self) -> dict[str, Any]:
        return self.call("node_info")  # type: ignore[no-any-return]

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = self.node_info()["chain_id"]
        assert self._chain_id is not None
        return self._chain_id

    def head(self) -> dict[str, Any] | None:
        return self.call("chain_head")  # type: ignore[no-any-return]

    def block(self, *, height: int | None = None, hash: bytes | str | None = None, full: bool = False) -> dict[str, Any]:
        return self.call("chain_getBlock", _block_params(height, hash, full))  # type: ignore[no-any-return]

    def tx(self, tx_hash: bytes | str) -> dict[str, Any]:
        return self.call("chain_getTx", {"hash": hexstr(tx_hash)})  # type: ignore[no-any-return]

    # --------------------------------------------------------------- transactions

    def next_nonce(self, sender: bytes) -> int:
        return int(self.call("tx_nonce", {"sender": hexstr(sender)})["next"])

    def build_tx(self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Tx:
        if nonce is None:
            nonce = self.next_nonce(key.public_key)
        return sign_tx(key, self.chain_id, type_, nonce, body)

    def submit(self, tx: Tx | bytes) -> str:
        raw = tx.encoded if isinstance(tx, Tx) else tx
        return self.call("tx_submit", {"tx": hexstr(raw)})  # type: ignore[no-any-return]

    def wait(self, tx_hash: bytes | str, *, timeout_ms: int = 30_000) -> dict[str, Any]:
        """Wait until the tx is committed (or the timeout passes); returns its status."""
        timeout = None if self.timeout is None else max(self.timeout, timeout_ms / 1000 + 5)
        return self.call("tx_wait", {"hash": hexstr(tx_hash), "timeout_ms": timeout_ms}, timeout=timeout)  # type: ignore[no-any-return]

    def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        """Build, sign, submit; with ``wait`` return the committed status and receipt."""
        tx = self.build_tx(key, type_, body, nonce=nonce)
        h = self.submit(tx)
        if not wait:
            return {"hash": h, "status": "pending"}
        return self.wait(h, timeout_ms=timeout_ms)

    # --------------------------------------------------------------- identity / governance

    def register_identity(self, keys: KeyPair, role: str, *, label: str | None = None, **kw: Any) -> dict[str, Any]:
        return self.send(keys.signing, "identity.register", _register_body(keys, role, label), **kw)

    def identity(self, public_key: bytes | str) -> dict[str, Any]:
        return self.call("identity_get", {"public_key": hexstr(public_key)})  # type: ignore[no-any-return]

    def accredit(self, authority: SigningKey, subject: bytes, role: str, **kw: Any) -> dict[str, Any]:
        return self.send(authority, "governance.accredit", {"subject": subject, "role": role}, **kw)

    def revoke(self, authority: SigningKey, subject: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        return self.send(authority, "governance.revoke", {"subject": subject, "reason": reason}, **kw)

    # --------------------------------------------------------------- subscriptions

    def watch(self, topic: str, **filters: Any) -> Iterator[Any]:
        """Yield notifications of ``topic`` (``newHeads`` or ``tx``) until closed."""
        with self.subscribe({"topic": topic, **filters}) as sub:
            yield from sub


    # --------------------------------------------------------------- records and consent

    def _enc_key(self, public_key: bytes) -> bytes:
        return bytes.fromhex(self.identity(public_key)["enc_key"][2:])

    def add_record(
        self, author: KeyPair, patient: bytes, resource: dict[str, Any] | str | bytes, *,
        share_with: Sequence[bytes] = (), purpose: str | None = None, **kw: Any,
    ) -> dict[str, Any]:
        """Validate a FHIR resource, encrypt it client-side and submit ``records.add``.

        The data key is sealed to the patient, the author and ``share_with`` (identity
        keys); only the ciphertext leaves this process, as the tx's blob sidecar. The
        returned status carries ``record_id`` once committed.
        """
        from . import fhir, records_crypto

        resource_type, plaintext = fhir.validate_and_canonicalize(resource)
        recipients = {pk: self._enc_key(pk) for pk in {patient, author.public_key, *share_with}}
        enc = records_crypto.encrypt_record(plaintext, recipients)
        body = records_crypto.records_add_body(patient, resource_type, enc)
        if purpose is not None:
            body["purpose"] = purpose
        tx = self.build_tx(author.signing, "records.add", body, nonce=kw.pop("nonce", None))
        h = self.call("tx_submit", {"tx": hexstr(tx.encoded), "blob": hexstr(enc.ciphertext)})
        if not kw.get("wait", True):
            return {"hash": h, "status": "pending"}
        st = self.wait(h, timeout_ms=kw.get("timeout_ms", 30_000))
        for ev in (st.get("receipt") or {}).get("events", []):
            if ev.get("type") == "records.added":
                st["record_id"] = ev["record_id"]
        return st

    def read_record(self, reader: KeyPair, record_id: bytes | str, *, purpose: str = "TREAT") -> dict[str, Any]:
        """Fetch, decrypt and verify a record; the FHIR resource as a dict.

        Reading someone else's record first commits a ``records.access`` audit event
        (HIPAA §164.312(b)); a read the patient's consent does not allow is refused.
        """
        from . import records_crypto

        rid = record_id if isinstance(record_id, bytes) else bytes.fromhex(record_id[2:])
        rec = self.call("records_get", {"record_id": hexstr(rid), "reader": hexstr(reader.public_key),
                                        "purpose": purpose})
        if rec.get("erased"):
            raise RPCError(-32020, "record erased", {"code": "erased"})
        if reader.public_key.hex() not in (rec["patient"][2:], rec["author"][2:]):
            st = self.send(reader.signing, "records.access", {"record_id": rid, "purpose": purpose})
            if not (st.get("receipt") or {}).get("ok"):
                raise RPCError(-32010, f"access refused: {st.get('receipt')}", st.get("receipt"))
        if rec.get("envelope") is None or rec.get("ciphertext") is None:
            raise RPCError(-32020, "no envelope or ciphertext for this reader yet", {"code": "unavailable"})
        plaintext = records_crypto.open_record(reader, bytes.fromhex(rec["envelope"][2:]),
                                               bytes.fromhex(rec["ciphertext"][2:]),
                                               bytes.fromhex(rec["content_hash"][2:]))
        return json.loads(plaintext)  # type: ignore[no-any-return]

    def grant(
        self, patient: KeyPair, *, actor: bytes | None = None, actor_role: str | None = None,
        actions: Sequence[str] = ("read",), decision: str = "permit", resource_types: Sequence[str] = (),
        purposes: Sequence[str] = (), start_ms: int | None = None, end_ms: int | None = None,
        share_existing: bool = True, **kw: Any,
    ) -> dict[str, Any]:
        """``consent.grant``; with a permit for an actor key, also re-wrap the data keys of
        the patient's existing records (of the granted types) for that actor."""
        from . import records_crypto

        body: dict[str, Any] = {"actions": list(actions), "decision": decision}
        if actor is not None:
            body["actor"] = actor
        if actor_role is not None:
            body["actor_role"] = actor_role
        if resource_types:
            body["resource_types"] = list(resource_types)
        if purposes:
            body["purposes"] = list(purposes)
        if start_ms is not None:
            body["start_ms"] = start_ms
        if end_ms is not None:
            body["end_ms"] = end_ms
        st = self.send(patient.signing, "consent.grant", body, **kw)
        if actor is not None and decision == "permit" and "read" in actions and share_existing:
            grantee = {actor: self._enc_key(actor)}
            for rec in self.call("records_list", {"patient": hexstr(patient.public_key)}):
                if rec["erased"] or (resource_types and rec["resource_type"] not in resource_types):
                    continue
                mine = self.call("records_get", {"record_id": rec["record_id"], "reader": hexstr(patient.public_key)})
                if mine.get("envelope") is None:
                    continue
                envs = records_crypto.rewrap(patient, bytes.fromhex(mine["envelope"][2:]), grantee)
                rid = bytes.fromhex(rec["record_id"][2:])
                self.send(patient.signing, "records.add_envelopes",
                          records_crypto.records_add_envelopes_body(rid, envs))
        return st

    def revoke_consent(self, patient: KeyPair, grant_id: bytes, **kw: Any) -> dict[str, Any]:
        return self.send(patient.signing, "consent.revoke", {"grant_id": grant_id}, **kw)

    def break_glass(self, provider: KeyPair, record_id: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        return self.send(provider.signing, "records.break_glass", {"record_id": record_id, "reason": reason}, **kw)

    def erase_record(self, patient: KeyPair, record_id: bytes, **kw: Any) -> dict[str, Any]:
        return self.send(patient.signing, "records.erase", {"record_id": record_id}, **kw)


class AsyncClient(_AsyncTransport):
    """anyio client with the same helpers as :class:`Client` (all ``async``)."""

    _chain_id: str | None = None

    async def node_info(self) -> dict[str, Any]:
        return await self.call("node_info")  # type: ignore[no-any-return]

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = (await self.node_info())["chain_id"]
        assert self._chain_id is not None
        return self._chain_id

    async def head(self) -> dict[str, Any] | None:
        return await self.call("chain_head")  # type: ignore[no-any-return]

    async def block(self, *, height: int | None = None, hash: bytes | str | None = None, full: bool = False) -> dict[str, Any]:
        return await self.call("chain_getBlock", _block_params(height, hash, full))  # type: ignore[no-any-return]

    async def tx(self, tx_hash: bytes | str) -> dict[str, Any]:
        return await self.call("chain_getTx", {"hash": hexstr(tx_hash)})  # type: ignore[no-any-return]

    async def next_nonce(self, sender: bytes) -> int:
        return int((await self.call("tx_nonce", {"sender": hexstr(sender)}))["next"])

    async def build_tx(self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None) -> Tx:
        if nonce is None:
            nonce = await self.next_nonce(key.public_key)
        return sign_tx(key, await self.chain_id(), type_, nonce, body)

    async def submit(self, tx: Tx | bytes) -> str:
        raw = tx.encoded if isinstance(tx, Tx) else tx
        return await self.call("tx_submit", {"tx": hexstr(raw)})  # type: ignore[no-any-return]

    async def wait(self, tx_hash: bytes | str, *, timeout_ms: int = 30_000) -> dict[str, Any]:
        timeout = None if self.timeout is None else max(self.timeout, timeout_ms / 1000 + 5)
        return await self.call("tx_wait", {"hash": hexstr(tx_hash), "timeout_ms": timeout_ms}, timeout=timeout)  # type: ignore[no-any-return]

    async def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        tx = await self.build_tx(key, type_, body, nonce=nonce)
        h = await self.submit(tx)
        if not wait:
            return {"hash": h, "status": "pending"}
        return await self.wait(h, timeout_ms=timeout_ms)

    async def register_identity(self, keys: KeyPair, role: str, *, label: str | None = None, **kw: Any) -> dict[str, Any]:
        return await self.send(keys.signing, "identity.register", _register_body(keys, role, label), **kw)

    async def identity(self, public_key: bytes | str) -> dict[str, Any]:
        return await self.call("identity_get", {"public_key": hexstr(public_key)})  # type: ignore[no-any-return]

    async def accredit(self, authority: SigningKey, subject: bytes, role: str, **kw: Any) -> dict[str, Any]:
        return await self.send(authority, "governance.accredit", {"subject": subject, "role": role}, **kw)

    async def revoke(self, authority: SigningKey, subject: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        return await self.send(authority, "governance.revoke", {"subject": subject, "reason": reason}, **kw)
