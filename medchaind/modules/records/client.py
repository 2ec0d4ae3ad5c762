"""Records' client helpers (sans-IO flows; :mod:`medchaind.flows`).

Everything that touches a record's plaintext or keys happens here, in the client's
process: FHIR validation and canonicalisation (:mod:`.fhir`), encryption and the
data-key envelopes (:mod:`.encryption`). The node only ever sees ciphertext, hashes and
sealed keys.

Helpers (methods of both :class:`~medchaind.client.Client` and
:class:`~medchaind.client.AsyncClient`): :func:`add_record`, :func:`read_record`,
:func:`grant`, :func:`break_glass`, :func:`erase_record`, :func:`key_requests`,
:func:`answer_key_requests`, :func:`serve_key_requests`, :func:`set_record_policy`
and :func:`record_policy`.

Every ``records_get`` that asks for an envelope or a ciphertext is a **read request**
signed by the reader's key (:func:`read_request_params`, fresh at each call; protocol.md
§18.5): the node releases nothing to an unsigned call, and nothing to a reader other
than the patient or the author before that reader's ``records.access`` has committed.

``grant`` is declared here, not in consent's client: a permit for a key also re-wraps
the patient's existing records for the grantee, and records sits above consent.

The custodian loop
------------------
:func:`serve_key_requests` is a *loop* helper (``@helper(loop=True)``): its flow is one
round (note the head, run one :func:`answer_key_requests` pass, report each answer,
wait for the next block), and the clients repeat it: ``Client.serve_key_requests(...,
stop=...)`` until ``stop()`` returns true, ``AsyncClient.serve_key_requests(...)`` until
cancelled. So the round is written once and each client keeps its own way of ending a
loop. A failed pass (a refused call, a timeout) is reported to ``on_answer`` as
``{"error": ...}`` and the loop carries on: the next block brings another pass.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from ... import flows
from ...crypto import KeyPair, SigningKey
from ...errors import ClientTimeout
from ...flows import Call, Flow, helper, hexstr, ok, send_flow, unhex, wait_height_flow, wait_tx_flow
from ..identity.client import encryption_key
from . import encryption
from .machine import READ_DOMAIN, read_request_payload


def read_request_params(
    chain_id: str, reader: SigningKey, record_id: bytes, purpose: str | None = None, *,
    time_ms: int | None = None, ciphertext: bool = True,
) -> dict[str, Any]:
    """``records_get`` params of a read request signed by ``reader`` (protocol.md §18.5).

    ``time_ms`` defaults to this host's clock: the node accepts a request from 10 s
    ahead of its own clock to 60 s behind it, so sign one per call. ``ciphertext=False``
    asks for the envelope only (a custodian or a re-wrap needs no more).
    """
    t = time.time_ns() // 1_000_000 if time_ms is None else time_ms
    sig = reader.sign(READ_DOMAIN, chain_id, read_request_payload(record_id, reader.public_key, purpose, t))
    params: dict[str, Any] = {"record_id": hexstr(record_id), "reader": hexstr(reader.public_key), "time_ms": t,
                              "sig": hexstr(sig)}
    if purpose is not None:
        params["purpose"] = purpose
    if not ciphertext:
        params["ciphertext"] = False
    return params


def _code(exc: flows.RPCError) -> str | None:
    return exc.data.get("code") if isinstance(exc.data, dict) else None


def _record_access(chain_id: str, reader: KeyPair, record_id: bytes, purpose: str) -> Flow[None]:
    """Commit ``records.access`` (the audit entry); a refused one raises."""
    st = yield from send_flow(chain_id, reader.signing, "records.access", {"record_id": record_id, "purpose": purpose})
    if not ok(st):
        raise flows.RPCError(-32010, f"access refused: {st.get('receipt')}", st.get("receipt"))


@helper
def add_record(
    chain_id: str, author: KeyPair, patient: bytes, resource: dict[str, Any] | str | bytes, *,
    share_with: Sequence[bytes] = (), purpose: str | None = None, **kw: Any,
) -> Flow[dict[str, Any]]:
    """Validate a FHIR resource, encrypt it client-side and submit ``records.add``.

    The data key is sealed to the patient, the author and ``share_with`` (identity
    keys); only the ciphertext leaves this process, as the tx's blob sidecar. The
    returned status carries ``record_id`` once committed.
    """
    from . import fhir  # fhir.resources takes a while to import; only adding a record needs it

    resource_type, plaintext = fhir.validate_and_canonicalize(resource)
    recipients = {}
    for pk in dict.fromkeys([patient, author.public_key, *share_with]):
        recipients[pk] = yield from encryption_key(pk)
    enc = encryption.encrypt_record(plaintext, recipients)
    body = encryption.records_add_body(patient, resource_type, enc)
    if purpose is not None:
        body["purpose"] = purpose
    st = yield from send_flow(chain_id, author.signing, "records.add", body, blob=enc.ciphertext, **kw)
    for ev in (st.get("receipt") or {}).get("events", []):
        if ev.get("type") == "records.added":
            st["record_id"] = ev["record_id"]
    return st


@helper
def read_record(
    chain_id: str, reader: KeyPair, record_id: bytes | str, *, purpose: str = "TREAT", wait_key_s: float = 0.0,
) -> Flow[dict[str, Any]]:
    """Fetch, decrypt and verify a record; the FHIR resource as a dict.

    Reading someone else's record first commits a ``records.access`` audit event
    (HIPAA §164.312(b)), and the node releases the envelope and the ciphertext only
    after it has (to requests signed by ``reader``); a read the patient's consent does
    not allow is refused before anything is recorded. A permitted reader without an
    envelope (break-glass, role-wide consent, a patient's strict release) leaves a key
    request; ``wait_key_s`` is how long to wait for the author's custodian to answer it.
    """
    rid = record_id if isinstance(record_id, bytes) else unhex(record_id)

    def get(ciphertext: bool = True) -> Call:
        return Call("records_get", read_request_params(chain_id, reader.signing, rid, purpose, ciphertext=ciphertext))

    # may this reader read now? (refused here, nothing is recorded; no ciphertext yet)
    try:
        first = yield get(ciphertext=False)
    except flows.RPCError as exc:
        if _code(exc) != "access_required":
            raise
        first = None  # permitted, holds an envelope, has no recent access: not the patient nor the author
    if first is not None and first.get("erased"):
        raise flows.RPCError(-32020, "record erased", {"code": "erased"})
    own = first is not None and reader.public_key.hex() in (first["patient"][2:], first["author"][2:])
    if not own:
        yield from _record_access(chain_id, reader, rid, purpose)
    # A permitted reader without an envelope (break-glass, role-wide consent) waits for
    # the author's custodian to answer its key request; a blob still on its way from a
    # peer is waited for the same way.
    deadline = time.monotonic() + wait_key_s
    renewed = False
    while True:
        # the head is read before the record, so an answer committed after this read
        # lands at a later height and wakes the wait below (no missed wake-up)
        head = yield Call("chain_head")
        height = 0 if head is None else head["height"]
        try:
            rec = yield get()
        except flows.RPCError as exc:
            if own or renewed or _code(exc) != "access_required":
                raise
            # the key came after the node's access window closed (a slow custodian):
            # this read is recorded again, once
            yield from _record_access(chain_id, reader, rid, purpose)
            renewed = True
            continue
        if rec.get("erased"):
            raise flows.RPCError(-32020, "record erased", {"code": "erased"})
        if rec.get("envelope") is not None and rec.get("ciphertext") is not None:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            what = ("the record's custodian to release its key to this reader (the key request stays open)"
                    if rec.get("envelope") is None else "the record's ciphertext to arrive from a peer")
            raise ClientTimeout(f"gave up after {wait_key_s:g} s waiting for {what}; try again later, "
                                "or wait longer (--wait-key / wait_key_s)")
        step = min(remaining, 1.0 if rec.get("envelope") is not None else remaining)
        yield Call("chain_waitHeight", {"height": height + 1, "timeout_ms": int(step * 1000)}, wait_s=step)
    plaintext = encryption.open_record(
        reader, unhex(rec["envelope"]), unhex(rec["ciphertext"]), unhex(rec["content_hash"])
    )
    return json.loads(plaintext)  # type: ignore[no-any-return]


def grant_body(
    actor: bytes | None, actor_role: str | None, actions: Sequence[str], decision: str,
    resource_types: Sequence[str], purposes: Sequence[str], start_ms: int | None, end_ms: int | None,
) -> dict[str, Any]:
    """The ``consent.grant`` body (absent options left out)."""
    body: dict[str, Any] = {"actions": list(actions), "decision": decision}
    optional = {"actor": actor, "actor_role": actor_role, "start_ms": start_ms, "end_ms": end_ms,
                "resource_types": list(resource_types) or None, "purposes": list(purposes) or None}
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


@helper
def grant(
    chain_id: str, patient: KeyPair, *, actor: bytes | None = None, actor_role: str | None = None,
    actions: Sequence[str] = ("read",), decision: str = "permit", resource_types: Sequence[str] = (),
    purposes: Sequence[str] = (), start_ms: int | None = None, end_ms: int | None = None,
    share_existing: bool = True, **kw: Any,
) -> Flow[dict[str, Any]]:
    """``consent.grant``; with a permit for an actor key, also re-wrap the data keys of
    the patient's existing records (of the granted types) for that actor."""
    body = grant_body(actor, actor_role, actions, decision, resource_types, purposes, start_ms, end_ms)
    st = yield from send_flow(chain_id, patient.signing, "consent.grant", body, **kw)
    if actor is None or decision != "permit" or "read" not in body["actions"] or not share_existing:
        return st
    if kw.get("wait", True) and not ok(st):
        return st
    # A patient with strict release shares no key ahead of an audited access: the
    # grantee gets its keys through key requests, answered by a custodian.
    policy = yield Call("records_policy", {"patient": hexstr(patient.public_key)})
    if policy.get("strict"):
        return st
    # Re-wrap only for a grant in force now: keys sealed early (start_ms ahead) or late
    # (end_ms passed) would outlive the consent. A reader whose grant starts later gets
    # its key through a key request, answered by the record's custodian.
    head = yield Call("chain_head")
    now = 0 if head is None else head["time_ms"]
    if body.get("start_ms", now) > now or body.get("end_ms", now) < now:
        return st
    types = body.get("resource_types") or ()
    grantee = {actor: (yield from encryption_key(actor))}
    records: list[dict[str, Any]] = []
    while True:  # every record, a page at a time
        page = yield Call("records_list", {"patient": hexstr(patient.public_key), "limit": 1000,
                                           "offset": len(records)})
        records.extend(page)
        if len(page) < 1000:
            break
    for rec in records:
        if rec["erased"] or (types and rec["resource_type"] not in types):
            continue
        rid = unhex(rec["record_id"])
        mine = yield Call("records_get", read_request_params(chain_id, patient.signing, rid, ciphertext=False))
        if mine.get("envelope") is None:
            continue
        envs = encryption.rewrap(patient, unhex(mine["envelope"]), grantee)
        share = encryption.records_add_envelopes_body(rid, envs)
        yield from send_flow(chain_id, patient.signing, "records.add_envelopes", share)
    return st


@helper
def break_glass(chain_id: str, provider: KeyPair, record_id: bytes, reason: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``records.break_glass``: emergency access to a record, audited and flagged.

    The provider gets no envelope at once: its key request is answered by the record's
    custodian (read with ``read_record(..., wait_key_s=...)``).
    """
    body = {"record_id": record_id, "reason": reason}
    return (yield from send_flow(chain_id, provider.signing, "records.break_glass", body, **kw))


@helper
def erase_record(chain_id: str, patient: KeyPair, record_id: bytes, **kw: Any) -> Flow[dict[str, Any]]:
    """``records.erase``: the patient erases a record (every node shreds its ciphertext)."""
    return (yield from send_flow(chain_id, patient.signing, "records.erase", {"record_id": record_id}, **kw))


@helper
def key_requests(author: bytes, *, limit: int = 100, as_: str = "author") -> Flow[list[dict[str, Any]]]:
    """Open key requests on records ``author`` wrote (or, with ``as_="patient"``, of that
    patient); ``permitted`` ones get answered."""
    requests: list[dict[str, Any]] = yield Call("records_keyRequests", {as_: hexstr(author), "limit": limit})
    return requests


@helper
def answer_key_requests(
    chain_id: str, author: KeyPair, *, limit: int = 100, as_: str = "author"
) -> Flow[list[dict[str, Any]]]:
    """One custodian pass: seal this key's data keys to every permitted requester.

    ``as_="author"`` answers requests on the records this key wrote; ``as_="patient"``
    those on this patient's records (a patient's app answering while an author's
    custodian is down; the chain lets the patient share with anyone).

    Every answer is submitted first and waited for afterwards (one block for all of
    them, not one block each). A refused answer (the reader lost permission since the
    query) is reported with its code; the pass carries on.
    """
    if as_ not in ("author", "patient"):
        raise ValueError("as_ is 'author' or 'patient'")
    requests = yield from key_requests(author.public_key, limit=limit, as_=as_)
    by_record: dict[str, list[str]] = {}
    for req in requests:
        if req["permitted"]:
            by_record.setdefault(req["record_id"], []).append(req["reader"])
    answered: list[dict[str, Any]] = []
    submitted: list[tuple[str, list[str], str]] = []
    for rid, readers in by_record.items():
        mine = yield Call("records_get", read_request_params(chain_id, author.signing, unhex(rid), ciphertext=False))
        if mine.get("envelope") is None:
            continue  # erased meanwhile, or an author that never kept an envelope
        for i in range(0, len(readers), encryption.MAX_ENVELOPES_PER_TX):
            batch = readers[i : i + encryption.MAX_ENVELOPES_PER_TX]
            keys = {}
            for r in batch:
                keys[unhex(r)] = yield from encryption_key(unhex(r))
            envs = encryption.rewrap(author, unhex(mine["envelope"]), keys)
            body = encryption.records_add_envelopes_body(unhex(rid), envs)
            try:
                st = yield from send_flow(chain_id, author.signing, "records.add_envelopes", body, wait=False)
            except flows.RPCError as exc:
                code = exc.data.get("code") if isinstance(exc.data, dict) else None
                answered.append({"record_id": rid, "readers": batch, "hash": None, "ok": False,
                                 "code": code or "refused"})
                continue
            submitted.append((rid, batch, st["hash"]))
    for rid, batch, h in submitted:
        st = yield from wait_tx_flow(h, 30_000)
        receipt = st.get("receipt") or {}
        answered.append({"record_id": rid, "readers": batch, "hash": h,
                         "ok": bool(receipt.get("ok")), "code": receipt.get("code") or st.get("status")})
    return answered


@helper
def set_record_policy(chain_id: str, patient: KeyPair, strict: bool, **kw: Any) -> Flow[dict[str, Any]]:
    """``records.set_policy``: with ``strict``, this patient's data keys reach other readers
    only through key requests, that is after their ``records.access`` (or break-glass)
    has committed: no envelope at ``add_record`` for others, no re-wrap at ``grant``."""
    return (yield from send_flow(chain_id, patient.signing, "records.set_policy", {"strict": strict}, **kw))


@helper
def record_policy(patient: bytes | str) -> Flow[dict[str, Any]]:
    """A patient's key-release policy: ``{"patient", "strict"}``."""
    policy: dict[str, Any] = yield Call("records_policy", {"patient": hexstr(patient)})
    return policy


@helper(loop=True)
def serve_key_requests(
    chain_id: str, author: KeyPair, *, on_answer: Callable[[dict[str, Any]], None] | None = None,
    poll_ms: int = 30_000, as_: str = "author",
) -> Flow[None]:
    """The custodian loop: answer, then sleep until the next block.

    ``Client`` runs until ``stop()`` (a keyword argument) returns true, ``AsyncClient``
    until cancelled. Give it a connection of its own: it long-polls.
    """
    head = yield Call("chain_head")
    try:
        answers = yield from answer_key_requests(chain_id, author, as_=as_)
    except (flows.RPCError, TimeoutError) as exc:  # a bad pass; the next block brings another
        answers = [{"error": str(exc)}]
    for answer in answers:
        if on_answer is not None:
            on_answer(answer)
    yield from wait_height_flow((0 if head is None else head["height"]) + 1, poll_ms)


HELPERS = [
    add_record, read_record, grant, break_glass, erase_record, key_requests, answer_key_requests, serve_key_requests,
    set_record_policy, record_policy,
]
