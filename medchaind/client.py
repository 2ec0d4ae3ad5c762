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

The helpers that take several round trips (send, records, consent, the custodian) are
written once, as generators that yield :class:`_Call` requests and receive the
results (sans-IO); :class:`Client` and :class:`AsyncClient` each only drive them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .crypto import KeyPair, SigningKey
from .ipc import AsyncClient as _AsyncTransport
from .ipc import Client as _Transport
from .ipc import RPCError as RPCError
from .types import Tx, sign_tx

__all__ = ["AsyncClient", "Client", "RPCError", "hexstr"]


def hexstr(b: bytes | str) -> str:
    return b if isinstance(b, str) else "0x" + b.hex()


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


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


# ---------------------------------------------------------------------- sans-IO flows

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Call:
    """One JSON-RPC call a flow needs; ``wait_s`` is how long the node may hold it."""

    method: str
    params: Any = None
    wait_s: float = 0.0

    def timeout(self, default: float | None) -> float | None:
        """The transport timeout: the client's default, stretched for a long poll."""
        if not self.wait_s:
            return None  # the client's default applies
        return None if default is None else max(default, self.wait_s + 5)


Flow = Generator[_Call, Any, T]


def _wait_tx_flow(tx_hash: bytes | str, timeout_ms: int) -> Flow[dict[str, Any]]:
    status: dict[str, Any] = yield _Call(
        "tx_wait", {"hash": hexstr(tx_hash), "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    return status


def _wait_height_flow(height: int, timeout_ms: int) -> Flow[dict[str, Any] | None]:
    head: dict[str, Any] | None = yield _Call(
        "chain_waitHeight", {"height": height, "timeout_ms": timeout_ms}, wait_s=timeout_ms / 1000
    )
    return head


def _send_flow(
    chain_id: str, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
    wait: bool = True, timeout_ms: int = 30_000, blob: bytes | None = None,
) -> Flow[dict[str, Any]]:
    if nonce is None:
        nonce = int((yield _Call("tx_nonce", {"sender": hexstr(key.public_key)}))["next"])
    tx = sign_tx(key, chain_id, type_, nonce, body)
    params = {"tx": hexstr(tx.encoded)}
    if blob is not None:
        params["blob"] = hexstr(blob)
    h = yield _Call("tx_submit", params)
    if not wait:
        return {"hash": h, "status": "pending"}
    return (yield from _wait_tx_flow(h, timeout_ms))


def _ok(st: dict[str, Any]) -> bool:
    return bool((st.get("receipt") or {}).get("ok"))


def _enc_key_flow(public_key: bytes) -> Flow[bytes]:
    ident = yield _Call("identity_get", {"public_key": hexstr(public_key)})
    return _unhex(ident["enc_key"])


def _add_record_flow(
    chain_id: str, author: KeyPair, patient: bytes, resource: dict[str, Any] | str | bytes,
    share_with: Sequence[bytes], purpose: str | None, kw: dict[str, Any],
) -> Flow[dict[str, Any]]:
    from . import fhir, records_crypto

    resource_type, plaintext = fhir.validate_and_canonicalize(resource)
    recipients = {}
    for pk in dict.fromkeys([patient, author.public_key, *share_with]):
        recipients[pk] = yield from _enc_key_flow(pk)
    enc = records_crypto.encrypt_record(plaintext, recipients)
    body = records_crypto.records_add_body(patient, resource_type, enc)
    if purpose is not None:
        body["purpose"] = purpose
    st = yield from _send_flow(chain_id, author.signing, "records.add", body, blob=enc.ciphertext, **kw)
    for ev in (st.get("receipt") or {}).get("events", []):
        if ev.get("type") == "records.added":
            st["record_id"] = ev["record_id"]
    return st


def _read_record_flow(
    chain_id: str, reader: KeyPair, record_id: bytes | str, purpose: str, wait_key_s: float,
) -> Flow[dict[str, Any]]:
    from . import records_crypto

    rid = record_id if isinstance(record_id, bytes) else _unhex(record_id)
    get = _Call("records_get", {"record_id": hexstr(rid), "reader": hexstr(reader.public_key), "purpose": purpose})
    rec = yield get
    if rec.get("erased"):
        raise RPCError(-32020, "record erased", {"code": "erased"})
    if reader.public_key.hex() not in (rec["patient"][2:], rec["author"][2:]):
        st = yield from _send_flow(chain_id, reader.signing, "records.access", {"record_id": rid, "purpose": purpose})
        if not _ok(st):
            raise RPCError(-32010, f"access refused: {st.get('receipt')}", st.get("receipt"))
    # A permitted reader without an envelope (break-glass, role-wide consent) waits for
    # the author's custodian to answer its key request; a blob still on its way from a
    # peer is waited for the same way.
    deadline = time.monotonic() + wait_key_s
    while True:
        # the head is read before the record, so an answer committed after this read
        # lands at a later height and wakes the wait below (no missed wake-up)
        head = yield _Call("chain_head")
        height = 0 if head is None else head["height"]
        rec = yield get
        if rec.get("erased"):
            raise RPCError(-32020, "record erased", {"code": "erased"})
        if rec.get("envelope") is not None and rec.get("ciphertext") is not None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = "no envelope for this reader yet" if rec.get("envelope") is None else "ciphertext not here yet"
            raise RPCError(-32020, f"{what} (the record's custodian answers key requests)", {"code": "unavailable"})
        step = min(remaining, 1.0 if rec.get("envelope") is not None else remaining)
        yield _Call("chain_waitHeight", {"height": height + 1, "timeout_ms": int(step * 1000)}, wait_s=step)
    plaintext = records_crypto.open_record(
        reader, _unhex(rec["envelope"]), _unhex(rec["ciphertext"]), _unhex(rec["content_hash"])
    )
    return json.loads(plaintext)  # type: ignore[no-any-return]


def _grant_flow(
    chain_id: str, patient: KeyPair, body: dict[str, Any], share_existing: bool, kw: dict[str, Any],
) -> Flow[dict[str, Any]]:
    from . import records_crypto

    st = yield from _send_flow(chain_id, patient.signing, "consent.grant", body, **kw)
    actor = body.get("actor")
    if actor is None or body["decision"] != "permit" or "read" not in body["actions"] or not share_existing:
        return st
    if kw.get("wait", True) and not _ok(st):
        return st
    # Re-wrap only for a grant in force now: keys sealed early (start_ms ahead) or late
    # (end_ms passed) would outlive the consent. A reader whose grant starts later gets
    # its key through a key request, answered by the record's custodian.
    head = yield _Call("chain_head")
    now = 0 if head is None else head["time_ms"]
    if body.get("start_ms", now) > now or body.get("end_ms", now) < now:
        return st
    types = body.get("resource_types") or ()
    grantee = {actor: (yield from _enc_key_flow(actor))}
    records: list[dict[str, Any]] = []
    while True:  # every record, a page at a time
        page = yield _Call("records_list", {"patient": hexstr(patient.public_key), "limit": 1000,
                                            "offset": len(records)})
        records.extend(page)
        if len(page) < 1000:
            break
    for rec in records:
        if rec["erased"] or (types and rec["resource_type"] not in types):
            continue
        mine = yield _Call("records_get", {"record_id": rec["record_id"], "reader": hexstr(patient.public_key)})
        if mine.get("envelope") is None:
            continue
        envs = records_crypto.rewrap(patient, _unhex(mine["envelope"]), grantee)
        share = records_crypto.records_add_envelopes_body(_unhex(rec["record_id"]), envs)
        yield from _send_flow(chain_id, patient.signing, "records.add_envelopes", share)
    return st


def _grant_body(
    actor: bytes | None, actor_role: str | None, actions: Sequence[str], decision: str,
    resource_types: Sequence[str], purposes: Sequence[str], start_ms: int | None, end_ms: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"actions": list(actions), "decision": decision}
    optional = {"actor": actor, "actor_role": actor_role, "start_ms": start_ms, "end_ms": end_ms,
                "resource_types": list(resource_types) or None, "purposes": list(purposes) or None}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def _answer_key_requests_flow(
    chain_id: str, author: KeyPair, limit: int, as_: str = "author"
) -> Flow[list[dict[str, Any]]]:
    """One custodian pass: re-wrap this key's data keys for permitted requesters.

    ``as_="author"`` answers requests on the records this key wrote; ``as_="patient"``
    those on this patient's records (a patient's app answering while an author's
    custodian is down; the chain lets the patient share with anyone).

    Every answer is submitted first and waited for afterwards (one block for all of
    them, not one block each). A refused answer (the reader lost permission since the
    query) is reported with its code; the pass carries on.
    """
    from . import records_crypto

    if as_ not in ("author", "patient"):
        raise ValueError("as_ is 'author' or 'patient'")
    requests = yield _Call("records_keyRequests", {as_: hexstr(author.public_key), "limit": limit})
    by_record: dict[str, list[str]] = {}
    for req in requests:
        if req["permitted"]:
            by_record.setdefault(req["record_id"], []).append(req["reader"])
    answered: list[dict[str, Any]] = []
    submitted: list[tuple[str, list[str], str]] = []
    for rid, readers in by_record.items():
        mine = yield _Call("records_get", {"record_id": rid, "reader": hexstr(author.public_key)})
        if mine.get("envelope") is None:
            continue  # erased meanwhile, or an author that never kept an envelope
        for i in range(0, len(readers), records_crypto.MAX_ENVELOPES_PER_TX):
            batch = readers[i : i + records_crypto.MAX_ENVELOPES_PER_TX]
            keys = {}
            for r in batch:
                keys[_unhex(r)] = yield from _enc_key_flow(_unhex(r))
            envs = records_crypto.rewrap(author, _unhex(mine["envelope"]), keys)
            body = records_crypto.records_add_envelopes_body(_unhex(rid), envs)
            try:
                st = yield from _send_flow(chain_id, author.signing, "records.add_envelopes", body, wait=False)
            except RPCError as exc:
                code = exc.data.get("code") if isinstance(exc.data, dict) else None
                answered.append({"record_id": rid, "readers": batch, "hash": None, "ok": False,
                                 "code": code or "refused"})
                continue
            submitted.append((rid, batch, st["hash"]))
    for rid, batch, h in submitted:
        st = yield from _wait_tx_flow(h, 30_000)
        receipt = st.get("receipt") or {}
        answered.append({"record_id": rid, "readers": batch, "hash": h,
                         "ok": bool(receipt.get("ok")), "code": receipt.get("code") or st.get("status")})
    return answered


class Client(_Transport):
    """Blocking client with typed helpers over the JSON-RPC methods."""

    _chain_id: str | None = None

    def _drive(self, flow: Flow[T]) -> T:
        """Run a sans-IO flow over this connection."""
        try:
            call = next(flow)
            while True:
                try:
                    result = self.call(call.method, call.params, timeout=call.timeout(self.timeout))
                except RPCError as exc:
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

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

    def wait_height(self, height: int, *, timeout_ms: int = 30_000) -> dict[str, Any] | None:
        """Block until the chain reaches ``height`` (or the timeout passes); the head."""
        return self._drive(_wait_height_flow(height, timeout_ms))

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
        return self._drive(_wait_tx_flow(tx_hash, timeout_ms))

    def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        """Build, sign, submit; with ``wait`` return the committed status and receipt."""
        return self._drive(_send_flow(self.chain_id, key, type_, body, nonce=nonce, wait=wait, timeout_ms=timeout_ms))

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
        """Yield notifications of ``topic`` (``newHeads``, ``tx``, ``patient``) until closed."""
        with self.subscribe({"topic": topic, **filters}) as sub:
            yield from sub

    # --------------------------------------------------------------- records and consent

    def add_record(
        self, author: KeyPair, patient: bytes, resource: dict[str, Any] | str | bytes, *,
        share_with: Sequence[bytes] = (), purpose: str | None = None, **kw: Any,
    ) -> dict[str, Any]:
        """Validate a FHIR resource, encrypt it client-side and submit ``records.add``.

        The data key is sealed to the patient, the author and ``share_with`` (identity
        keys); only the ciphertext leaves this process, as the tx's blob sidecar. The
        returned status carries ``record_id`` once committed.
        """
        return self._drive(_add_record_flow(self.chain_id, author, patient, resource, share_with, purpose, kw))

    def read_record(
        self, reader: KeyPair, record_id: bytes | str, *, purpose: str = "TREAT", wait_key_s: float = 0.0,
    ) -> dict[str, Any]:
        """Fetch, decrypt and verify a record; the FHIR resource as a dict.

        Reading someone else's record first commits a ``records.access`` audit event
        (HIPAA §164.312(b)); a read the patient's consent does not allow is refused. A
        permitted reader without an envelope (break-glass, role-wide consent) leaves a
        key request; ``wait_key_s`` is how long to wait for the author's custodian to
        answer it.
        """
        return self._drive(_read_record_flow(self.chain_id, reader, record_id, purpose, wait_key_s))

    def grant(
        self, patient: KeyPair, *, actor: bytes | None = None, actor_role: str | None = None,
        actions: Sequence[str] = ("read",), decision: str = "permit", resource_types: Sequence[str] = (),
        purposes: Sequence[str] = (), start_ms: int | None = None, end_ms: int | None = None,
        share_existing: bool = True, **kw: Any,
    ) -> dict[str, Any]:
        """``consent.grant``; with a permit for an actor key, also re-wrap the data keys of
        the patient's existing records (of the granted types) for that actor."""
        body = _grant_body(actor, actor_role, actions, decision, resource_types, purposes, start_ms, end_ms)
        return self._drive(_grant_flow(self.chain_id, patient, body, share_existing, kw))

    def revoke_consent(self, patient: KeyPair, grant_id: bytes, **kw: Any) -> dict[str, Any]:
        return self.send(patient.signing, "consent.revoke", {"grant_id": grant_id}, **kw)

    def break_glass(self, provider: KeyPair, record_id: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        return self.send(provider.signing, "records.break_glass", {"record_id": record_id, "reason": reason}, **kw)

    def erase_record(self, patient: KeyPair, record_id: bytes, **kw: Any) -> dict[str, Any]:
        return self.send(patient.signing, "records.erase", {"record_id": record_id}, **kw)

    def key_requests(self, author: bytes, *, limit: int = 100, as_: str = "author") -> list[dict[str, Any]]:
        """Open key requests on records ``author`` wrote (or, with ``as_="patient"``, of that
        patient); ``permitted`` ones get answered."""
        return self.call("records_keyRequests", {as_: hexstr(author), "limit": limit})  # type: ignore[no-any-return]

    def answer_key_requests(self, author: KeyPair, *, limit: int = 100, as_: str = "author") -> list[dict[str, Any]]:
        """One custodian pass: seal this key's data keys to every permitted requester."""
        return self._drive(_answer_key_requests_flow(self.chain_id, author, limit, as_))

    def serve_key_requests(
        self, author: KeyPair, *, on_answer: Callable[[dict[str, Any]], None] | None = None,
        poll_ms: int = 30_000, stop: Callable[[], bool] = lambda: False, as_: str = "author",
    ) -> None:
        """The custodian loop: answer, then sleep until the next block; until ``stop()``."""
        while not stop():
            head = self.head()
            try:
                answers = self.answer_key_requests(author, as_=as_)
            except (RPCError, TimeoutError) as exc:  # a bad pass; the next block brings another
                answers = [{"error": str(exc)}]
            for answer in answers:
                if on_answer is not None:
                    on_answer(answer)
            self.wait_height((0 if head is None else head["height"]) + 1, timeout_ms=poll_ms)


class AsyncClient(_AsyncTransport):
    """anyio client with the same helpers as :class:`Client` (all ``async``)."""

    _chain_id: str | None = None

    async def _drive(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                try:
                    result = await self.call(call.method, call.params, timeout=call.timeout(self.timeout))
                except RPCError as exc:
                    call = flow.throw(exc)
                else:
                    call = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def node_info(self) -> dict[str, Any]:
        return await self.call("node_info")  # type: ignore[no-any-return]

    async def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = (await self.node_info())["chain_id"]
        assert self._chain_id is not None
        return self._chain_id

    async def head(self) -> dict[str, Any] | None:
        return await self.call("chain_head")  # type: ignore[no-any-return]

    async def wait_height(self, height: int, *, timeout_ms: int = 30_000) -> dict[str, Any] | None:
        return await self._drive(_wait_height_flow(height, timeout_ms))

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
        return await self._drive(_wait_tx_flow(tx_hash, timeout_ms))

    async def send(
        self, key: SigningKey, type_: str, body: dict[str, Any], *, nonce: int | None = None,
        wait: bool = True, timeout_ms: int = 30_000,
    ) -> dict[str, Any]:
        flow = _send_flow(await self.chain_id(), key, type_, body, nonce=nonce, wait=wait, timeout_ms=timeout_ms)
        return await self._drive(flow)

    async def register_identity(self, keys: KeyPair, role: str, *, label: str | None = None, **kw: Any) -> dict[str, Any]:
        return await self.send(keys.signing, "identity.register", _register_body(keys, role, label), **kw)

    async def identity(self, public_key: bytes | str) -> dict[str, Any]:
        return await self.call("identity_get", {"public_key": hexstr(public_key)})  # type: ignore[no-any-return]

    async def accredit(self, authority: SigningKey, subject: bytes, role: str, **kw: Any) -> dict[str, Any]:
        return await self.send(authority, "governance.accredit", {"subject": subject, "role": role}, **kw)

    async def revoke(self, authority: SigningKey, subject: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        return await self.send(authority, "governance.revoke", {"subject": subject, "reason": reason}, **kw)

    # records and consent: the same flows as Client

    async def add_record(
        self, author: KeyPair, patient: bytes, resource: dict[str, Any] | str | bytes, *,
        share_with: Sequence[bytes] = (), purpose: str | None = None, **kw: Any,
    ) -> dict[str, Any]:
        chain_id = await self.chain_id()
        return await self._drive(_add_record_flow(chain_id, author, patient, resource, share_with, purpose, kw))

    async def read_record(
        self, reader: KeyPair, record_id: bytes | str, *, purpose: str = "TREAT", wait_key_s: float = 0.0,
    ) -> dict[str, Any]:
        return await self._drive(_read_record_flow(await self.chain_id(), reader, record_id, purpose, wait_key_s))

    async def grant(
        self, patient: KeyPair, *, actor: bytes | None = None, actor_role: str | None = None,
        actions: Sequence[str] = ("read",), decision: str = "permit", resource_types: Sequence[str] = (),
        purposes: Sequence[str] = (), start_ms: int | None = None, end_ms: int | None = None,
        share_existing: bool = True, **kw: Any,
    ) -> dict[str, Any]:
        body = _grant_body(actor, actor_role, actions, decision, resource_types, purposes, start_ms, end_ms)
        return await self._drive(_grant_flow(await self.chain_id(), patient, body, share_existing, kw))

    async def revoke_consent(self, patient: KeyPair, grant_id: bytes, **kw: Any) -> dict[str, Any]:
        return await self.send(patient.signing, "consent.revoke", {"grant_id": grant_id}, **kw)

    async def break_glass(self, provider: KeyPair, record_id: bytes, reason: str, **kw: Any) -> dict[str, Any]:
        body = {"record_id": record_id, "reason": reason}
        return await self.send(provider.signing, "records.break_glass", body, **kw)

    async def erase_record(self, patient: KeyPair, record_id: bytes, **kw: Any) -> dict[str, Any]:
        return await self.send(patient.signing, "records.erase", {"record_id": record_id}, **kw)

    async def key_requests(self, author: bytes, *, limit: int = 100, as_: str = "author") -> list[dict[str, Any]]:
        return await self.call("records_keyRequests", {as_: hexstr(author), "limit": limit})  # type: ignore[no-any-return]

    async def answer_key_requests(
        self, author: KeyPair, *, limit: int = 100, as_: str = "author"
    ) -> list[dict[str, Any]]:
        return await self._drive(_answer_key_requests_flow(await self.chain_id(), author, limit, as_))

    async def serve_key_requests(
        self, author: KeyPair, *, on_answer: Callable[[dict[str, Any]], None] | None = None, poll_ms: int = 30_000,
        as_: str = "author",
    ) -> None:
        """The custodian loop; runs until cancelled."""
        while True:
            head = await self.head()
            try:
                answers = await self.answer_key_requests(author, as_=as_)
            except (RPCError, TimeoutError) as exc:  # a bad pass; the next block brings another
                answers = [{"error": str(exc)}]
            for answer in answers:
                if on_answer is not None:
                    on_answer(answer)
            await self.wait_height((0 if head is None else head["height"]) + 1, timeout_ms=poll_ms)
