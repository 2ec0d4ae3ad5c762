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

Everything stored is a key, a hash, a sealed envelope, an integer, a boolean, a FHIR
resource type name or a purpose/reason code -- except the break-glass ``reason``, a
short declared text that clients must keep free of PHI (the chain cannot tell).

``records.get`` is a query, not a tx: it cannot be audited on chain and its ``reader``
is not authenticated. Its permission check is a convenience for honest clients; the
envelope it returns is sealed to the reader and useless to anyone else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from .. import codec, crypto
from . import consent, identity
from .module import (
    Module,
    QueryError,
    TxContext,
    TxFailed,
    TxSpec,
    hex_or_none,
    query_key,
    require_bytes,
    require_fields,
    require_text,
)
from .state import StateReader

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
_SEQ_MAX = 2**64 - 1


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


def get_record(state: StateReader, record_id: bytes) -> dict[str, Any] | None:
    raw = state.get(NAMESPACE, record_key(record_id))
    return None if raw is None else codec.decode(raw)


def content_in_use(state: StateReader, content_hash: bytes) -> bool:
    """Whether any live (not erased) record commits to the ciphertext ``content_hash``."""
    return any(True for _ in state.iterate(NAMESPACE, b"h/" + content_hash))


def live_content_hashes(state: StateReader) -> set[bytes]:
    """The ciphertext hashes every node should hold a blob for (one state scan)."""
    return {k[2:34] for k, _ in state.iterate(NAMESPACE, b"h/")}


# ------------------------------------------------------------------ validation


def _require_envelopes(body: dict[str, Any]) -> list[dict[str, Any]]:
    envs = body.get("envelopes")
    if not isinstance(envs, list) or not 1 <= len(envs) <= MAX_ENVELOPES_PER_TX:
        raise TxFailed("invalid_body", f"envelopes must be a list of 1..{MAX_ENVELOPES_PER_TX}")
    seen: set[bytes] = set()
    for env in envs:
        if not isinstance(env, dict) or set(env) != {"recipient", "sealed_key"}:
            raise TxFailed("invalid_body", "an envelope is {recipient, sealed_key}")
        require_bytes(env, "recipient", 32)
        sk = env["sealed_key"]
        if not isinstance(sk, bytes) or not MIN_SEALED <= len(sk) <= MAX_SEALED:
            raise TxFailed("invalid_body", f"sealed_key must be {MIN_SEALED}..{MAX_SEALED} bytes")
        if env["recipient"] in seen:
            raise TxFailed("invalid_body", "envelope recipients must be unique")
        seen.add(env["recipient"])
    return envs


def _require_purpose(body: dict[str, Any]) -> str:
    p = body.get("purpose")
    if not consent.is_code(p):
        raise TxFailed("invalid_body", "purpose must be a purpose-of-use code")
    assert isinstance(p, str)
    return p


def _validate_add(body: dict[str, Any]) -> None:
    require_fields(body, {"patient", "resource_type", "content_hash", "size", "envelopes"}, {"purpose"})
    patient = require_bytes(body, "patient", 32)
    if not consent.is_resource_type(body["resource_type"]):
        raise TxFailed("invalid_body", "resource_type must be a FHIR resource type name")
    require_bytes(body, "content_hash", 32)
    size = body["size"]
    if type(size) is not int or not 1 <= size <= MAX_SIZE:
        raise TxFailed("invalid_body", f"size must be 1..{MAX_SIZE} bytes")
    envs = _require_envelopes(body)
    if patient not in {e["recipient"] for e in envs}:
        raise TxFailed("invalid_body", "the envelopes must include the patient")
    if "purpose" in body:
        _require_purpose(body)


def _validate_add_envelopes(body: dict[str, Any]) -> None:
    require_fields(body, {"record_id", "envelopes"})
    require_bytes(body, "record_id", 32)
    _require_envelopes(body)


def _validate_access(body: dict[str, Any]) -> None:
    require_fields(body, {"record_id", "purpose"})
    require_bytes(body, "record_id", 32)
    _require_purpose(body)


def _validate_break_glass(body: dict[str, Any]) -> None:
    require_fields(body, {"record_id", "reason"})
    require_bytes(body, "record_id", 32)
    require_text(body, "reason", MAX_REASON)


def _validate_erase(body: dict[str, Any]) -> None:
    require_fields(body, {"record_id"})
    require_bytes(body, "record_id", 32)


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


def _put_envelopes(ctx: TxContext, record_id: bytes, envs: list[dict[str, Any]]) -> None:
    existing = {k for k, _ in ctx.iterate(b"e/" + record_id)}
    new = {envelope_key(record_id, e["recipient"]) for e in envs}
    if len(existing | new) > MAX_ENVELOPES_PER_RECORD:
        raise TxFailed("too_many_envelopes", f"a record carries at most {MAX_ENVELOPES_PER_RECORD} envelopes")
    for e in envs:
        ctx.put(envelope_key(record_id, e["recipient"]), e["sealed_key"])


def _add(ctx: TxContext, body: dict[str, Any]) -> None:
    patient: bytes = body["patient"]
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
            body["resource_type"],
            None,
            body.get("purpose"),
            ctx.block.time_ms,
        )
        if not allowed:
            raise TxFailed("consent_required", reason)
    record_id = crypto.sha256(ctx.tx_hash)
    if ctx.get(record_key(record_id)) is not None:  # pragma: no cover - tx hashes are unique
        raise TxFailed("duplicate_record", "record id already used")
    ctx.put(
        record_key(record_id),
        {
            "patient": patient,
            "author": ctx.sender,
            "resource_type": body["resource_type"],
            "content_hash": body["content_hash"],
            "size": body["size"],
            "created_height": ctx.block.height,
            "created_ms": ctx.block.time_ms,
            "erased": False,
            "erased_height": None,
            "erased_ms": None,
        },
    )
    _put_envelopes(ctx, record_id, body["envelopes"])
    ctx.put(content_key(body["content_hash"], record_id), True)
    counter = ctx.get(b"c/" + patient) or {"next": 0}
    seq = counter["next"]
    ctx.put(b"c/" + patient, {"next": seq + 1})
    ctx.put(b"p/" + patient + (_SEQ_MAX - seq).to_bytes(8, "big"), {"record_id": record_id})
    ctx.emit(
        "added",
        record_id=record_id,
        patient=patient,
        author=ctx.sender,
        resource_type=body["resource_type"],
        content_hash=body["content_hash"],
    )


def _add_envelopes(ctx: TxContext, body: dict[str, Any]) -> None:
    record_id: bytes = body["record_id"]
    meta = _live_record(ctx, record_id)
    recipients = [e["recipient"] for e in body["envelopes"]]
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
    _put_envelopes(ctx, record_id, body["envelopes"])
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


def _access(ctx: TxContext, body: dict[str, Any]) -> None:
    record_id: bytes = body["record_id"]
    meta = _live_record(ctx, record_id)
    allowed, reason, via_bg = read_permission(
        ctx.state, record_id, meta, ctx.sender, body["purpose"], ctx.block.time_ms
    )
    if not allowed:
        raise TxFailed("access_denied", reason)
    _audit(
        ctx,
        meta["patient"],
        {
            "reader": ctx.sender,
            "record_id": record_id,
            "purpose": body["purpose"],
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
        purpose=body["purpose"],
        break_glass=via_bg,
    )
    _request_key(ctx, record_id, meta, body["purpose"], via_bg)


def _break_glass(ctx: TxContext, body: dict[str, Any]) -> None:
    record_id: bytes = body["record_id"]
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
            "reason": body["reason"],
        },
    )
    ctx.emit(
        "break_glass",
        record_id=record_id,
        patient=meta["patient"],
        provider=ctx.sender,
        reason=body["reason"],
        expires_ms=expires_ms,
    )
    _request_key(ctx, record_id, meta, BREAK_GLASS_PURPOSE, True)


def _erase(ctx: TxContext, body: dict[str, Any]) -> None:
    record_id: bytes = body["record_id"]
    meta = _live_record(ctx, record_id)
    if ctx.sender != meta["patient"]:
        raise TxFailed("unauthorized", "only the patient erases a record")
    doomed = [k for k, _ in ctx.iterate(b"e/" + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"b/" + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"k/" + meta["author"] + record_id)]
    doomed += [k for k, _ in ctx.iterate(b"q/" + meta["patient"] + record_id)]
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


def _param_limit(params: dict[str, Any], default: int) -> int:
    limit = params.get("limit", default)
    if type(limit) is not int or not 1 <= limit <= 1000:
        raise QueryError("limit must be 1..1000")
    return limit


def _page(state: StateReader, prefix: bytes, params: dict[str, Any], default_limit: int) -> Iterator[bytes]:
    """The values under ``prefix``, paged by the query's ``offset`` and ``limit``."""
    limit = _param_limit(params, default_limit)
    offset = _param_offset(params)
    return (raw for _, raw in itertools.islice(state.iterate(NAMESPACE, prefix), offset, offset + limit))


def _query_list(state: StateReader, params: dict[str, Any]) -> Any:
    """A patient's records, newest first: ``limit`` of them after skipping ``offset``."""
    patient = query_key(params, "patient")
    out = []
    for raw in _page(state, b"p/" + patient, params, 100):
        rid = codec.decode(raw)["record_id"]
        meta = get_record(state, rid)
        assert meta is not None
        out.append(record_json(rid, meta))
    return out


def _query_get(state: StateReader, params: dict[str, Any]) -> Any:
    record_id = query_key(params, "record_id")
    reader = query_key(params, "reader")
    purpose = params.get("purpose")
    if purpose is not None and not consent.is_code(purpose):
        raise QueryError("purpose must be a purpose-of-use code")
    time_ms = params.get("time_ms")
    if type(time_ms) is not int or time_ms < 0:
        raise QueryError("time_ms must be a non-negative integer")
    meta = get_record(state, record_id)
    if meta is None:
        return None
    out = record_json(record_id, meta)
    if meta["erased"]:
        out.update(envelope=None, access="erased")
        return out
    allowed, reason, _ = read_permission(state, record_id, meta, reader, purpose, time_ms)
    if not allowed:
        raise QueryError(f"not permitted: {reason}")
    sealed = state.get(NAMESPACE, envelope_key(record_id, reader))
    out.update(envelope=None if sealed is None else hex_or_none(codec.decode(sealed)), access=reason)
    return out


def _param_offset(params: dict[str, Any]) -> int:
    offset = params.get("offset", 0)
    if type(offset) is not int or offset < 0:
        raise QueryError("offset must be a non-negative integer")
    return offset


def _query_audit(state: StateReader, params: dict[str, Any]) -> Any:
    """A patient's audit trail, oldest first: ``limit`` entries after skipping ``offset``."""
    patient = query_key(params, "patient")
    out = []
    for raw in _page(state, b"a/" + patient, params, 1000):
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


def _query_key_requests(state: StateReader, params: dict[str, Any]) -> Any:
    """Open key requests on the records written by ``author``, or of ``patient`` (give one).

    ``permitted`` is the reader's permission at ``time_ms`` (the custodian answers only
    those; the chain re-checks at block time). Oldest record first.
    """
    if ("author" in params) == ("patient" in params):
        raise QueryError("give exactly one of author or patient")
    limit = _param_limit(params, 100)
    time_ms = params.get("time_ms")
    if type(time_ms) is not int or time_ms < 0:
        raise QueryError("time_ms must be a non-negative integer")
    if "author" in params:
        prefix = b"k/" + query_key(params, "author")
    else:
        prefix = b"q/" + query_key(params, "patient")
    out = []
    for k, _ in state.iterate(NAMESPACE, prefix):
        record_id, reader = k[len(prefix) : len(prefix) + 32], k[len(prefix) + 32 :]
        meta = get_record(state, record_id)
        assert meta is not None and not meta["erased"]
        raw = state.get(NAMESPACE, key_request_key(meta["author"], record_id, reader))
        assert raw is not None
        req = codec.decode(raw)
        allowed, reason, _ = read_permission(state, record_id, meta, reader, req["purpose"], time_ms)
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
        if len(out) >= limit:
            break
    return out


class RecordsModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "add": TxSpec(_validate_add, _add),
            "add_envelopes": TxSpec(_validate_add_envelopes, _add_envelopes),
            "access": TxSpec(_validate_access, _access),
            "break_glass": TxSpec(_validate_break_glass, _break_glass),
            "erase": TxSpec(_validate_erase, _erase),
        }
        self.queries = {
            "list": _query_list,
            "get": _query_get,
            "audit": _query_audit,
            "key_requests": _query_key_requests,
        }
