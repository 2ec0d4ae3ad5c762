"""Records: a tamper-evident index of encrypted health records with audited access.

Theory of operation
-------------------
Clinical content never touches the chain. A client encrypts a FHIR resource under a
fresh data key (XChaCha20-Poly1305), stores the ciphertext off chain (the node's blob
store), and sends ``records.add`` with

* ``content_hash`` -- SHA-256 of the **ciphertext** (never of plaintext: low-entropy
  PHI could be guessed from its hash),
* ``size`` -- the ciphertext's length, and
* ``envelopes`` -- the data key sealed to each recipient's X25519 key (opaque bytes).

The sender is the patient, or an accredited provider that the patient's consent permits
to ``write`` that resource type at block time (:func:`medchaind.app.consent.check`).
The record id is ``SHA-256(tx_hash)``.

Reading happens off chain (a reader fetches the ciphertext and opens its envelope), but
a reader other than the patient or the author first records ``records.access`` -- the
chain refuses it (``access_denied``) unless consent permits ``read`` for the stated
purpose, so every legitimate read of someone else's record leaves an audit entry.
The node enforces that order (see *Read release* below): it hands out a record's
envelope and ciphertext only to a signed read request, and to a reader other than the
patient or the author only within :data:`ACCESS_WINDOW_MS` after that reader's
``records.access`` for the same purpose committed.
``records.break_glass`` lets an accredited provider declare an emergency: it is always
allowed, audited with ``break_glass=True``, announced with a ``records.break_glass``
event, and opens a read window of :data:`BREAK_GLASS_MS` of block time on that record.

``records.add_envelopes`` lets the patient share an existing record (the client
re-wraps the data key for the grantee). ``records.erase`` (the patient's right to
erasure) deletes every envelope and break-glass window of the record and turns its
metadata into a tombstone that keeps ``content_hash``; the ``records.erased`` event
tells every node's host to delete the ciphertext blob (unless another live record
commits to the same ciphertext). An erased record refuses further shares and accesses
(``erased``).

Key release (how a permitted reader without an envelope gets the data key)
--------------------------------------------------------------------------
Only holders of an envelope can re-wrap a data key, and the chain cannot (it never
sees one). A reader who is *permitted* but holds no envelope -- an emergency
(break-glass) reader, or a reader allowed by a role-wide consent that no client could
enumerate at grant time -- therefore leaves a **key request** when its
``records.break_glass`` or ``records.access`` commits. The request is indexed by the
record's author, whose **custodian** (``medchain records custodian``, run by the
author's organisation next to its node, like a hospital's integration engine answers
emergency queries today) opens its own envelope and answers with
``records.add_envelopes``. The chain accepts envelopes from the author only for
recipients with an open request that is still permitted at block time (break-glass
window unexpired, or consent still permitting the request's purpose), so the custodian
cannot be used to hand keys to anyone else; the patient may share with anyone. The
answered request is removed; erasure removes all of them. The requests are indexed by
patient too, so the patient's app can answer while an author's custodian is down.
Trust stays where it was:
the author already holds the plaintext. (The alternative, escrow of every data key to
a threshold of authorities, would let any f+1 authorities read every record; it would
also survive the author going offline. See docs/protocol.md.)

Strict key release (a patient's choice)
---------------------------------------
An envelope placed at ``records.add`` or at a grant (the client re-wraps existing
records) sits in a block, and every member node holds every ciphertext: the reader's
organisation can open the record from its own node's disk without ever committing
``records.access``. A patient who sends ``records.set_policy {strict: true}`` closes
that: while strict, ``records.add`` may seal the data key to the patient and the
author only, and ``records.add_envelopes`` -- from the patient as from the author --
may only answer an open key request (or re-seal to the patient), so every other reader
gets its first envelope through a key request, that is after its audited access or
break-glass has committed (``strict_release`` otherwise). Envelopes given before the
switch stay: a delivered key cannot be taken back. The cost: a reader waits for a
custodian (the author's, or the patient's app) at its first read.

Read release (the ``records.get`` query)
---------------------------------------
``records.get {record_id}`` is metadata only (as ``records.list``), to anyone. The
envelope and the ciphertext need a **read request** ``{record_id, reader, purpose?,
time_ms}`` signed by the reader's key under :data:`READ_DOMAIN` and the chain id
(docs/protocol.md §18.5). The node releases them iff

1. the signature verifies (so the request is bound to this chain, record, reader,
   purpose and time, and only the reader can make one);
2. ``time_ms`` is within ``-READ_MAX_AHEAD_MS .. READ_MAX_AGE_MS`` of the node's clock
   (:class:`~medchaind.app.QueryContext`: a client on the node's host shares its clock);
3. the reader is permitted *now* (consent, authorship, or an open break-glass window);
4. the reader holds an envelope (otherwise the answer says so and releases nothing);
5. the reader is the patient or the author, or its latest ``records.access`` on the
   record is for the request's purpose and committed at most :data:`ACCESS_WINDOW_MS`
   before the node's "now".

The patient and the author record no access (their reads disclose nothing to anyone
new) but still sign: the ciphertext is the same for every reader, and without the
signature any socket user could fetch every ciphertext, which anyone who ever held an
envelope (a reader whose consent was revoked: envelopes stay in the blocks) could open
without an audit entry. A replayed request returns what its signer was entitled to:
the signer's envelope (sealed to the signer; public in its block anyway) and the
ciphertext, which without a data key shows only its length (``size`` is on chain
already). These are node rules, not consensus rules: a node's operator reads its own
disk (docs/operator-guide.md §8.3).

State (namespace ``records``)::

    r/<record_id>                       -> metadata {patient, author, resource_type,
                                           content_hash, size, created_height,
                                           created_ms, erased, erased_height, erased_ms}
    e/<record_id><recipient>            -> sealed_key (bytes)
    b/<record_id><provider>             -> {height, time_ms, expires_ms}   (break-glass)
    k/<author><record_id><reader>       -> {patient, purpose, height, time_ms, break_glass}
                                           (open key request)
    q/<patient><record_id><reader>      -> True   (the same requests, by patient)
    h/<content_hash><record_id>         -> True   (live records committing to a ciphertext)
    c/<patient>                         -> {next}   (records ever added for the patient)
    p/<patient><~seq 8B>                -> {record_id}   (index; inverted seq = newest first)
    a/<patient><height 8B><index 4B>    -> {reader, record_id, purpose, height, time_ms,
                                           break_glass, reason}
    l/<record_id><reader>               -> {purpose, height, time_ms}   (the reader's latest
                                           records.access: what a read release checks)
    s/<patient>                         -> {strict}   (key-release policy; absent = not strict)

Everything stored is a key, a hash, a sealed envelope, an integer, a boolean, a FHIR
resource type name or a purpose/reason code -- except the break-glass ``reason``, a
short declared text that clients must keep free of PHI (the chain cannot tell).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import (
    Attach,
    BlobSpec,
    DropBlob,
    HostEffect,
    Module,
    QueryContext,
    QueryError,
    QuerySpec,
    TopicSpec,
    TxContext,
    TxFailed,
    TxSpec,
    WantBlob,
    check_signed_request,
    hex_or_none,
)
from ...app.schema import Bool, Bytes, FieldError, Int, ListOf, Struct, Text, body, params
from ...app.state import StateReader
from ..consent import machine as consent
from ..identity import machine as identity

NAMESPACE = "records"
MAX_SIZE = 4 * 1024 * 1024
MIN_SEALED = 48
MAX_SEALED = 256
MAX_ENVELOPES_PER_TX = 32
#: envelopes one record may carry in total (bounds the cost of erasure)
MAX_ENVELOPES_PER_RECORD = 256
MAX_REASON = 256
BREAK_GLASS_MS = 24 * 60 * 60 * 1000
BREAK_GLASS_PURPOSE = "ETREAT"
MAX_TIME_MS = 2**63 - 1
_SEQ_MAX = 2**64 - 1

#: signing domain of a read request (docs/protocol.md §2.2, §18.5)
READ_DOMAIN = "medchain/records/read/v1"
#: a read request is fresh from ``time_ms`` until this much later by the node's clock ...
READ_MAX_AGE_MS = 60_000
#: ... and from this much earlier (a client on the node's host shares its clock)
READ_MAX_AHEAD_MS = 10_000
#: a committed ``records.access`` releases the record to its reader for this long
ACCESS_WINDOW_MS = 10 * 60_000
#: where a client finds how to build a read request
READ_SPEC = "docs/protocol.md §18.5"


def record_key(record_id: bytes) -> bytes:
    return b"r/" + record_id


def envelope_key(record_id: bytes, recipient: bytes) -> bytes:
    return b"e/" + record_id + recipient


def break_glass_key(record_id: bytes, provider: bytes) -> bytes:
    return b"b/" + record_id + provider


def key_request_key(author: bytes, record_id: bytes, reader: bytes) -> bytes:
    return b"k/" + author + record_id + reader


def patient_request_key(patient: bytes, record_id: bytes, reader: bytes) -> bytes:
    return b"q/" + patient + record_id + reader


def content_key(content_hash: bytes, record_id: bytes) -> bytes:
    return b"h/" + content_hash + record_id


def access_key(record_id: bytes, reader: bytes) -> bytes:
    return b"l/" + record_id + reader


def policy_key(patient: bytes) -> bytes:
    return b"s/" + patient


def is_strict(state: StateReader, patient: bytes) -> bool:
    """Whether ``patient`` chose strict key release (keys only after an audited access)."""
    raw = state.get(NAMESPACE, policy_key(patient))
    return raw is not None and bool(codec.decode(raw)["strict"])


def read_request(record_id: bytes, reader: bytes, purpose: str | None, time_ms: int) -> dict[str, Any]:
    """The map a read request signs (``purpose`` left out when None): protocol.md §18.5."""
    req: dict[str, Any] = {"record_id": record_id, "reader": reader, "time_ms": time_ms}
    if purpose is not None:
        req["purpose"] = purpose
    return req


def read_request_payload(record_id: bytes, reader: bytes, purpose: str | None, time_ms: int) -> bytes:
    """The signed payload of a read request: canonical CBOR of :func:`read_request`."""
    return codec.encode(read_request(record_id, reader, purpose, time_ms))


def get_record(state: StateReader, record_id: bytes) -> dict[str, Any] | None:
    raw = state.get(NAMESPACE, record_key(record_id))
    return None if raw is None else codec.decode(raw)


def content_in_use(state: StateReader, content_hash: bytes) -> bool:
    """Whether any live (not erased) record commits to the ciphertext ``content_hash``."""
    return any(True for _ in state.iterate(NAMESPACE, b"h/" + content_hash))


def live_content_hashes(state: StateReader) -> set[bytes]:
    """The ciphertext hashes every node should hold a blob for (one state scan)."""
    return {k[2:34] for k, _ in state.iterate(NAMESPACE, b"h/")}


# ------------------------------------------------------------------ tx bodies


@body
class Envelope:
    recipient: Annotated[bytes, Bytes(32)]
    sealed_key: Annotated[bytes, Bytes(min=MIN_SEALED, max=MAX_SEALED)]


ENVELOPES = ListOf(Struct(Envelope), min=1, max=MAX_ENVELOPES_PER_TX)


def _unique_recipients(envelopes: Sequence[Envelope]) -> None:
    if len({e.recipient for e in envelopes}) != len(envelopes):
        raise FieldError("envelope recipients must be unique")


@body
class Add:
    patient: Annotated[bytes, Bytes(32)]
    resource_type: Annotated[str, consent.RESOURCE_TYPE]
    content_hash: Annotated[bytes, Bytes(32)]
    size: Annotated[int, Int(1, MAX_SIZE)]
    envelopes: Annotated[tuple[Envelope, ...], ENVELOPES]
    purpose: Annotated[str | None, consent.CODE] = None

    def check(self) -> None:
        _unique_recipients(self.envelopes)
        if self.patient not in {e.recipient for e in self.envelopes}:
            raise FieldError("the envelopes must include the patient")


@body
class AddEnvelopes:
    record_id: Annotated[bytes, Bytes(32)]
    envelopes: Annotated[tuple[Envelope, ...], ENVELOPES]

    def check(self) -> None:
        _unique_recipients(self.envelopes)


@body
class Access:
    record_id: Annotated[bytes, Bytes(32)]
    purpose: Annotated[str, consent.CODE]


@body
class BreakGlass:
    record_id: Annotated[bytes, Bytes(32)]
    reason: Annotated[str, Text(MAX_REASON)]


@body
class Erase:
    record_id: Annotated[bytes, Bytes(32)]


@body
class SetPolicy:
    strict: Annotated[bool, Bool()]


# ------------------------------------------------------------------ read permission


def read_permission(
    state: StateReader,
    record_id: bytes,
    meta: dict[str, Any],
    reader: bytes,
    purpose: str | None,
    time_ms: int,
) -> tuple[bool, str, bool]:
    """``(allowed, reason, via_break_glass)`` for ``reader`` reading a (live) record.

    The patient and the author may always read. Otherwise the reader must not be a
    revoked identity, and either the patient's consent permits ``read`` or the reader
    holds an unexpired break-glass window on the record.
    """
    patient = meta["patient"]
    if reader == patient:
        return True, "patient", False
    if reader == meta["author"]:
        return True, "author", False
    ident = identity.get_identity(state, reader)
    if ident is not None and ident["status"] == identity.REVOKED:
        return False, "reader identity revoked", False
    allowed, reason = consent.check(state, patient, reader, "read", meta["resource_type"], record_id, purpose, time_ms)
    if allowed:
        return True, reason, False
    raw = state.get(NAMESPACE, break_glass_key(record_id, reader))
    if raw is not None and time_ms <= codec.decode(raw)["expires_ms"]:
        return True, "break-glass", True
    return False, reason, False


# ------------------------------------------------------------------ handlers


def _live_record(ctx: TxContext, record_id: bytes) -> dict[str, Any]:
    meta = ctx.get(record_key(record_id))
    if meta is None:
        raise TxFailed("unknown_record", "no such record")
    if meta["erased"]:
        raise TxFailed("erased", "the record has been erased")
    return dict(meta)


def _put_envelopes(ctx: TxContext, record_id: bytes, envs: Sequence[Envelope]) -> None:
    existing = {k for k, _ in ctx.iterate(b"e/" + record_id)}
    new = {envelope_key(record_id, e.recipient) for e in envs}
    if len(existing | new) > MAX_ENVELOPES_PER_RECORD:
        raise TxFailed("too_many_envelopes", f"a record carries at most {MAX_ENVELOPES_PER_RECORD} envelopes")
    for e in envs:
        ctx.put(envelope_key(record_id, e.recipient), e.sealed_key)


def _add(ctx: TxContext, body: Add) -> None:
    patient = body.patient
    p_ident = identity.get_identity(ctx.state, patient)
    if p_ident is None or p_ident["role"] != "patient" or p_ident["status"] != identity.ACTIVE:
        raise TxFailed("unknown_patient", "patient is not an active patient identity")
    if ctx.sender != patient:
        if not identity.is_accredited(ctx.state, ctx.sender, "provider"):
            raise TxFailed("unauthorized", "only the patient or an accredited provider adds records")
        allowed, reason = consent.check(
            ctx.state,
            patient,
            ctx.sender,
            "write",
            body.resource_type,
            None,
            body.purpose,
            ctx.block.time_ms,
        )
        if not allowed:
            raise TxFailed("consent_required", reason)
    if is_strict(ctx.state, patient):
        others = sorted(e.recipient for e in body.envelopes if e.recipient not in (patient, ctx.sender))
        if others:
            raise TxFailed(
                "strict_release",
                f"the patient releases keys only at access time: seal the data key to the patient and the "
                f"author only ({others[0].hex()[:16]} gets it through a key request after its records.access)",
            )
    record_id = crypto.sha256(ctx.tx_hash)
    if ctx.get(record_key(record_id)) is not None:  # pragma: no cover - tx hashes are unique
        raise TxFailed("duplicate_record", "record id already used")
    ctx.put(
        record_key(record_id),
        {
            "patient": patient,
            "author": ctx.sender,
            "resource_type": body.resource_type,
            "content_hash": body.content_hash,
            "size": body.size,
            "created_height": ctx.block.height,
            "created_ms": ctx.block.time_ms,
            "erased": False,
            "erased_height": None,
            "erased_ms": None,
        },
    )
    _put_envelopes(ctx, record_id, body.envelopes)
    ctx.put(content_key(body.content_hash, record_id), True)
    counter = ctx.get(b"c/" + patient) or {"next": 0}
    seq = counter["next"]
    ctx.put(b"c/" + patient, {"next": seq + 1})
    ctx.put(b"p/" + patient + (_SEQ_MAX - seq).to_bytes(8, "big"), {"record_id": record_id})
    ctx.emit(
        "added",
        record_id=record_id,
        patient=patient,
        author=ctx.sender,
        resource_type=body.resource_type,
        content_hash=body.content_hash,
    )


def _add_envelopes(ctx: TxContext, body: AddEnvelopes) -> None:
    record_id = body.record_id
    meta = _live_record(ctx, record_id)
    recipients = [e.recipient for e in body.envelopes]
    if ctx.sender == meta["patient"] and is_strict(ctx.state, meta["patient"]):
        # strict release: the patient too answers key requests only (or re-seals to itself)
        for reader in recipients:
            if reader != meta["patient"] and ctx.get(key_request_key(meta["author"], record_id, reader)) is None:
                raise TxFailed(
                    "strict_release",
                    f"the patient releases keys only at access time: {reader.hex()[:16]} has no open key request",
                )
    if ctx.sender != meta["patient"]:
        if ctx.sender != meta["author"]:
            raise TxFailed("unauthorized", "only the patient or the record's author shares a record")
        # the author answers key requests only, and only while the reader is still permitted
        for reader in recipients:
            request = ctx.get(key_request_key(meta["author"], record_id, reader))
            if request is None:
                raise TxFailed("no_key_request", f"no open key request from {reader.hex()[:16]}")
            allowed, reason, _ = read_permission(
                ctx.state, record_id, meta, reader, request["purpose"], ctx.block.time_ms
            )
            if not allowed:
                raise TxFailed("access_denied", f"{reader.hex()[:16]}: {reason}")
    _put_envelopes(ctx, record_id, body.envelopes)
    for reader in recipients:
        ctx.delete(key_request_key(meta["author"], record_id, reader))
        ctx.delete(patient_request_key(meta["patient"], record_id, reader))
    ctx.emit("shared", record_id=record_id, patient=meta["patient"], sender=ctx.sender, recipients=recipients)


def _request_key(ctx: TxContext, record_id: bytes, meta: dict[str, Any], purpose: str, break_glass: bool) -> None:
    """Leave a key request for the author's custodian if the reader holds no envelope."""
    reader = ctx.sender
    if reader in (meta["patient"], meta["author"]) or ctx.get(envelope_key(record_id, reader)) is not None:
        return
    ctx.put(patient_request_key(meta["patient"], record_id, reader), True)
    ctx.put(
        key_request_key(meta["author"], record_id, reader),
        {
            "patient": meta["patient"],
            "purpose": purpose,
            "height": ctx.block.height,
            "time_ms": ctx.block.time_ms,
            "break_glass": break_glass,
        },
    )
    ctx.emit(
        "key_requested",
        record_id=record_id,
        patient=meta["patient"],
        author=meta["author"],
        reader=reader,
        purpose=purpose,
        break_glass=break_glass,
    )


def _audit(ctx: TxContext, patient: bytes, entry: dict[str, Any]) -> None:
    prefix = b"a/" + patient + ctx.block.height.to_bytes(8, "big")
    index = sum(1 for _ in ctx.iterate(prefix))
    ctx.put(prefix + index.to_bytes(4, "big"), entry)


def _access(ctx: TxContext, body: Access) -> None:
    record_id = body.record_id
    meta = _live_record(ctx, record_id)
    allowed, reason, via_bg = read_permission(
        ctx.state, record_id, meta, ctx.sender, body.purpose, ctx.block.time_ms
    )
    if not allowed:
        raise TxFailed("access_denied", reason)
    # the reader's latest access: what the node checks before releasing the record to it
    ctx.put(
        access_key(record_id, ctx.sender),
        {"purpose": body.purpose, "height": ctx.block.height, "time_ms": ctx.block.time_ms},
    )
    _audit(
        ctx,
        meta["patient"],
        {
            "reader": ctx.sender,
            "record_id": record_id,
            "purpose": body.purpose,
            "height": ctx.block.height,
            "time_ms": ctx.block.time_ms,
            "break_glass": via_bg,
            "reason": None,
        },
    )
    ctx.emit(
        "accessed",
        record_id=record_id,
        patient=meta["patient"],
        reader=ctx.sender,
        purpose=body.purpose,
        break_glass=via_bg,
    )
    _request_key(ctx, record_id, meta, body.purpose, via_bg)


def _break_glass(ctx: TxContext, body: BreakGlass) -> None:
    record_id = body.record_id
    if not identity.is_accredited(ctx.state, ctx.sender, "provider"):
        raise TxFailed("unauthorized", "only an accredited provider may break the glass")
    meta = _live_record(ctx, record_id)
    expires_ms = ctx.block.time_ms + BREAK_GLASS_MS
    ctx.put(
        break_glass_key(record_id, ctx.sender),
        {"height": ctx.block.height, "time_ms": ctx.block.time_ms, "expires_ms": expires_ms},
    )
    _audit(
        ctx,
        meta["patient"],
        {
            "reader": ctx.sender,
            "record_id": record_id,
            "purpose": BREAK_GLASS_PURPOSE,
            "height": ctx.block.height,
            "time_ms": ctx.block.time_ms,
            "break_glass": True,
            "reason": body.reason,
        },
    )
    ctx.emit(
        "break_glass",
        record_id=record_id,
        patient=meta["patient"],
        provider=ctx.sender,
        reason=body.reason,
        expires_ms=expires_ms,
    )
    _request_key(ctx, record_id, meta, BREAK_GLASS_PURPOSE, True)


def _erase(ctx: TxContext, body: Erase) -> None:
    record_id = body.record_id
    meta = _live_record(ctx, record_id)
    if ctx.sender != meta["patient"]:
        raise TxFailed("unauthorized", "only the patient erases a record")
    doomed = [k for k, _ in ctx.iterate(b"e/" + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"b/" + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"k/" + meta["author"] + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"q/" + meta["patient"] + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"l/" + record_id)]
    doomed.append(content_key(meta["content_hash"], record_id))
    for k in doomed:
        ctx.delete(k)
    meta.update(erased=True, erased_height=ctx.block.height, erased_ms=ctx.block.time_ms)
    ctx.put(record_key(record_id), meta)
    ctx.emit(
        "erased",
        record_id=record_id,
        patient=meta["patient"],
        content_hash=meta["content_hash"],
        content_in_use=any(True for _ in ctx.iterate(b"h/" + meta["content_hash"])),
    )


def _set_policy(ctx: TxContext, body: SetPolicy) -> None:
    ident = identity.get_identity(ctx.state, ctx.sender)
    if ident is None or ident["role"] != "patient":
        raise TxFailed("unauthorized", "only a patient sets its key-release policy")
    if body.strict:
        ctx.put(policy_key(ctx.sender), {"strict": True})
    else:
        ctx.delete(policy_key(ctx.sender))
    ctx.emit("policy", patient=ctx.sender, strict=body.strict)


# ------------------------------------------------------------------ queries


def record_json(record_id: bytes, m: dict[str, Any]) -> dict[str, Any]:
    return {
        "record_id": hex_or_none(record_id),
        "patient": hex_or_none(m["patient"]),
        "author": hex_or_none(m["author"]),
        "resource_type": m["resource_type"],
        "content_hash": hex_or_none(m["content_hash"]),
        "size": m["size"],
        "created_height": m["created_height"],
        "created_ms": m["created_ms"],
        "erased": m["erased"],
        "erased_height": m["erased_height"],
        "erased_ms": m["erased_ms"],
    }


MAX_OFFSET = 2**63 - 1


@params
class ListParams:
    patient: Annotated[bytes, Bytes(32)]
    limit: Annotated[int, Int(1, 1000)] = 100
    offset: Annotated[int, Int(0, MAX_OFFSET)] = 0


@params
class AuditParams:
    patient: Annotated[bytes, Bytes(32)]
    limit: Annotated[int, Int(1, 1000)] = 1000
    offset: Annotated[int, Int(0, MAX_OFFSET)] = 0


@params
class GetParams:
    """``record_id`` alone: the metadata. With ``reader``: a read request (see the module doc)."""

    record_id: Annotated[bytes, Bytes(32)]
    reader: Annotated[bytes | None, Bytes(32)] = None
    purpose: Annotated[str | None, consent.CODE] = None
    #: the request's time (the signer's clock, ms since the epoch), not a time to read at
    time_ms: Annotated[int | None, Int(0, MAX_TIME_MS)] = None
    sig: Annotated[bytes | None, Bytes(64)] = None
    #: False: the envelope without the ciphertext (a custodian or a re-wrap needs no more)
    ciphertext: Annotated[bool, Bool()] = True

    def check(self) -> None:
        if self.reader is None and (self.purpose, self.time_ms, self.sig) != (None, None, None):
            raise FieldError("reader: a read request names its reader (send record_id alone for the metadata)")


@params
class PolicyParams:
    patient: Annotated[bytes, Bytes(32)]


@params
class KeyRequestsParams:
    time_ms: Annotated[int, Int(0, MAX_TIME_MS)]
    author: Annotated[bytes | None, Bytes(32)] = None
    patient: Annotated[bytes | None, Bytes(32)] = None
    limit: Annotated[int, Int(1, 1000)] = 100

    def check(self) -> None:
        if (self.author is None) == (self.patient is None):
            raise FieldError("give exactly one of author or patient")


def _page(state: StateReader, prefix: bytes, limit: int, offset: int) -> Iterator[bytes]:
    """The values under ``prefix``, ``limit`` of them after skipping ``offset``."""
    return (raw for _, raw in itertools.islice(state.iterate(NAMESPACE, prefix), offset, offset + limit))


def _query_list(state: StateReader, p: ListParams) -> Any:
    """A patient's records (metadata only), newest first: ``limit`` after skipping ``offset``."""
    out = []
    for raw in _page(state, b"p/" + p.patient, p.limit, p.offset):
        rid = codec.decode(raw)["record_id"]
        meta = get_record(state, rid)
        assert meta is not None
        out.append(record_json(rid, meta))
    return out


SIGNATURE_REQUIRED = (
    "signature required: a record's envelope and ciphertext are released only to a read request signed by "
    "the reader: send record_id, reader, purpose, time_ms (your clock, ms) and sig (the reader's Ed25519 "
    f"signature of the request under {READ_DOMAIN!r} for this chain, {READ_SPEC}), after committing "
    "records.access unless the reader is the record's patient or author; send record_id alone for the metadata"
)


def _require_access(state: StateReader, record_id: bytes, reader: bytes, purpose: str | None, now_ms: int) -> None:
    """Raise ``access_required`` unless ``reader``'s latest access is for ``purpose`` and recent."""
    raw = state.get(NAMESPACE, access_key(record_id, reader))
    last = None if raw is None else codec.decode(raw)
    minutes = ACCESS_WINDOW_MS // 60_000
    if last is None:
        have = "the reader has committed no records.access on this record"
    elif last["purpose"] != purpose:
        have = f"the reader's latest records.access is for purpose {last['purpose']}, not {purpose}"
    elif now_ms - last["time_ms"] > ACCESS_WINDOW_MS:
        have = f"the reader's latest records.access (height {last['height']}) is more than {minutes} minutes old"
    else:
        return
    raise QueryError(
        f"access required: {have}; commit records.access {{record_id, purpose: {purpose}}} signed by the "
        f"reader, then ask again within {minutes} minutes of its block",
        "access_required",
    )


def _query_get(state: StateReader, p: GetParams, ctx: QueryContext) -> Any:
    """A record's metadata; with a signed read request, the reader's sealed data key and the ciphertext.

    ``record_id`` alone: the metadata, to anyone. The envelope and the ciphertext go
    only to a fresh request signed by ``reader`` who is permitted now and, unless it is
    the patient or the author, whose ``records.access`` for ``purpose`` committed within
    the last 10 minutes (docs/protocol.md §18.5). Refusals carry ``data.code``:
    ``signature_required``, ``bad_signature``, ``stale_request``, ``not_permitted``,
    ``access_required``.
    """
    meta = get_record(state, p.record_id)
    if meta is None:
        return None
    out = record_json(p.record_id, meta)
    if p.reader is None:
        return out
    if p.sig is None or p.time_ms is None:
        raise QueryError(SIGNATURE_REQUIRED, "signature_required")
    check_signed_request(
        ctx, READ_DOMAIN, p.reader, read_request(p.record_id, p.reader, p.purpose, p.time_ms), p.sig,
        max_age_ms=READ_MAX_AGE_MS, max_ahead_ms=READ_MAX_AHEAD_MS, who="the reader's key", how=READ_SPEC,
    )
    if meta["erased"]:
        out.update(envelope=None, access="erased")
        return out
    allowed, reason, _ = read_permission(state, p.record_id, meta, p.reader, p.purpose, ctx.time_ms)
    if not allowed:
        raise QueryError(f"not permitted: {reason}", "not_permitted")
    out.update(envelope=None, access=reason)
    sealed = state.get(NAMESPACE, envelope_key(p.record_id, p.reader))
    if sealed is None:
        return out  # nothing to release (a key request waits for a custodian)
    if p.reader not in (meta["patient"], meta["author"]):
        _require_access(state, p.record_id, p.reader, p.purpose, ctx.time_ms)
    out["envelope"] = hex_or_none(codec.decode(sealed))
    return Attach(out, meta["content_hash"], "ciphertext") if p.ciphertext else out


def _query_policy(state: StateReader, p: PolicyParams) -> Any:
    """A patient's key-release policy: ``strict`` (keys only after an audited access) or not."""
    return {"patient": hex_or_none(p.patient), "strict": is_strict(state, p.patient)}


def _query_audit(state: StateReader, p: AuditParams) -> Any:
    """Who accessed a patient's records, when and why (break-glass flagged), oldest first."""
    out = []
    for raw in _page(state, b"a/" + p.patient, p.limit, p.offset):
        e = codec.decode(raw)
        out.append(
            {
                "reader": hex_or_none(e["reader"]),
                "record_id": hex_or_none(e["record_id"]),
                "purpose": e["purpose"],
                "height": e["height"],
                "time_ms": e["time_ms"],
                "break_glass": e["break_glass"],
                "reason": e["reason"],
            }
        )
    return out


def _query_key_requests(state: StateReader, p: KeyRequestsParams) -> Any:
    """Open key requests on the records written by ``author``, or of ``patient`` (give one).

    ``permitted`` is the reader's permission at ``time_ms`` (the custodian answers only
    those; the chain re-checks at block time). Oldest record first.
    """
    prefix = b"k/" + p.author if p.author is not None else b"q/" + (p.patient or b"")
    out = []
    for k, _ in state.iterate(NAMESPACE, prefix):
        record_id, reader = k[len(prefix) : len(prefix) + 32], k[len(prefix) + 32 :]
        meta = get_record(state, record_id)
        assert meta is not None and not meta["erased"]
        raw = state.get(NAMESPACE, key_request_key(meta["author"], record_id, reader))
        assert raw is not None
        req = codec.decode(raw)
        allowed, reason, _ = read_permission(state, record_id, meta, reader, req["purpose"], p.time_ms)
        out.append(
            {
                "record_id": hex_or_none(record_id),
                "reader": hex_or_none(reader),
                "author": hex_or_none(meta["author"]),
                "patient": hex_or_none(req["patient"]),
                "purpose": req["purpose"],
                "height": req["height"],
                "time_ms": req["time_ms"],
                "break_glass": req["break_glass"],
                "permitted": allowed,
                "reason": reason,
            }
        )
        if len(out) >= p.limit:
            break
    return out


class RecordsModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "add": TxSpec(Add, _add, blob=BlobSpec("content_hash", "size", max_size=MAX_SIZE)),
            "add_envelopes": TxSpec(AddEnvelopes, _add_envelopes),
            "access": TxSpec(Access, _access),
            "break_glass": TxSpec(BreakGlass, _break_glass),
            "erase": TxSpec(Erase, _erase),
            "set_policy": TxSpec(SetPolicy, _set_policy),
        }
        self.queries = {
            "list": QuerySpec(_query_list, ListParams),
            "get": QuerySpec(_query_get, GetParams, context=True, not_found="no such record"),
            "audit": QuerySpec(_query_audit, AuditParams, aliases=("audit_log",)),
            "key_requests": QuerySpec(_query_key_requests, KeyRequestsParams, tip_time=True),
            "policy": QuerySpec(_query_policy, PolicyParams),
        }
        self.topics = {
            "patient": TopicSpec("patient", "a patient's record, consent and access events"),
        }

    def host_effects(self, event: dict[str, Any]) -> Sequence[HostEffect]:
        kind = event.get("type")
        if kind == "records.added":
            return (WantBlob(event["content_hash"]),)
        if kind == "records.erased" and not event["content_in_use"]:
            return (DropBlob(event["content_hash"]),)
        return ()

    def live_blobs(self, state: StateReader) -> set[bytes]:
        return live_content_hashes(state)
