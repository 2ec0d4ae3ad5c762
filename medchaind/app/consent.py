"""Consent: patient-controlled access rules (FHIR Consent semantics).

Theory of operation
-------------------
A patient (identity role ``patient``, status ``active``) states rules about who may do
what with their records by sending ``consent.grant``. A grant is one FHIR Consent
provision:

* **actor** -- either one identity key (``actor``) or every identity of a role
  (``actor_role``, e.g. ``"pharmacy"``); exactly one of the two;
* **actions** -- a non-empty subset of ``read`` / ``write``;
* **scope** -- optional FHIR resource types and/or record ids (empty/absent = all);
* **purposes** -- optional purpose-of-use codes (``TREAT``, ``ETREAT``, ``HPAYMT``,
  ``HRESCH`` ...; absent = any purpose);
* **period** -- optional ``start_ms`` / ``end_ms`` (block time, both inclusive);
* **decision** -- ``permit`` or ``deny``.

The grant id is ``SHA-256(tx_hash)``; the grant is stored under
``b"g/" + patient + grant_id``. ``consent.revoke`` never deletes a grant: it stamps
``revoked_height`` / ``revoked_ms`` so the audit trail keeps what was allowed when.

:func:`check` decides one request ``(patient, actor, action, resource_type, record_id,
purpose, time_ms)``:

1. the patient is always allowed on their own data;
2. the *active* grants are those not revoked and with ``start_ms <= time_ms <= end_ms``
   (missing bounds are open);
3. a grant matches when its actor matches, the action is listed, and the resource type,
   record id and purpose fall into its scope;
4. any matching ``deny`` wins ("denied by consent <id>"); else any matching ``permit``
   allows ("permitted by consent <id>"); else "no consent".

The matching rules err on the side of the patient where information is missing:

* a role grant matches an actor whose *registered* role is that role; a **permit** by
  role additionally needs the actor to be ``accredited`` (registering as "pharmacy"
  alone must not open a patient's records), while a **deny** by role applies to every
  identity registered with that role, whatever its status;
* ``purpose=None`` (the requester did not state one) matches purpose-restricted
  **denies** but not purpose-restricted **permits**, so omitting the purpose can never
  evade a deny;
* ``record_id=None`` (e.g. writing a new record) matches only grants without a
  record-id scope.

Grants are evaluated in grant-id order and the first matching deny / permit is the one
named in the reason, so the answer and its reason are deterministic.

Privacy: a grant carries keys, hashes (record ids), role names, resource-type names,
purpose codes and integers only -- nothing that identifies a person beyond the
pseudonymous keys. Every list holds at most :data:`MAX_ITEMS` items and every text at
most :data:`MAX_TEXT` characters.
"""

from __future__ import annotations

import re
from typing import Any

from .. import codec, crypto
from . import identity
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
)
from .state import StateReader

NAMESPACE = "consent"
ACTIONS = ("read", "write")
DECISIONS = ("permit", "deny")
PERMIT = "permit"
DENY = "deny"
MAX_ITEMS = 32
MAX_TEXT = 64
#: non-revoked grants a patient may hold at once (bounds the cost of :func:`check`)
MAX_ACTIVE_GRANTS = 256
MAX_TIME_MS = 2**63 - 1

#: FHIR resource type names: "Observation", "MedicationRequest", ...
RESOURCE_TYPE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}")
#: purpose-of-use / reason codes (HL7 v3 PurposeOfUse style: "TREAT", "ETREAT", ...)
CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

GRANT_ROLES = tuple(r for r in identity.ROLES if r != "patient")


def grant_key(patient: bytes, grant_id: bytes) -> bytes:
    return b"g/" + patient + grant_id


# ------------------------------------------------------------------ validation helpers


def is_resource_type(v: object) -> bool:
    return isinstance(v, str) and RESOURCE_TYPE_RE.fullmatch(v) is not None


def is_code(v: object) -> bool:
    return isinstance(v, str) and CODE_RE.fullmatch(v) is not None


def _is_int(v: object) -> bool:
    return type(v) is int


def _require_list(body: dict[str, Any], name: str, *, min_items: int = 0) -> list[Any]:
    v = body.get(name)
    if not isinstance(v, list) or not min_items <= len(v) <= MAX_ITEMS:
        raise TxFailed("invalid_body", f"{name} must be a list of {min_items}..{MAX_ITEMS} items")
    try:
        unique = len(set(v)) == len(v)
    except TypeError:
        raise TxFailed("invalid_body", f"{name} items have the wrong type") from None
    if not unique:
        raise TxFailed("invalid_body", f"{name} has duplicate items")
    return v


def _validate_grant(body: dict[str, Any]) -> None:
    require_fields(
        body,
        {"actions", "decision"},
        {"actor", "actor_role", "resource_types", "record_ids", "purposes", "start_ms", "end_ms"},
    )
    if ("actor" in body) == ("actor_role" in body):
        raise TxFailed("invalid_body", "exactly one of actor / actor_role is required")
    if "actor" in body:
        require_bytes(body, "actor", 32)
    elif body["actor_role"] not in GRANT_ROLES:
        raise TxFailed("invalid_body", f"actor_role must be one of {', '.join(GRANT_ROLES)}")
    actions = _require_list(body, "actions", min_items=1)
    if any(a not in ACTIONS for a in actions):
        raise TxFailed("invalid_body", "actions must be read and/or write")
    if body["decision"] not in DECISIONS:
        raise TxFailed("invalid_body", "decision must be permit or deny")
    if "resource_types" in body:
        if not all(is_resource_type(t) for t in _require_list(body, "resource_types")):
            raise TxFailed("invalid_body", "resource_types must be FHIR resource type names")
    if "record_ids" in body:
        if not all(isinstance(r, bytes) and len(r) == 32 for r in _require_list(body, "record_ids")):
            raise TxFailed("invalid_body", "record_ids must be 32-byte ids")
    if "purposes" in body:
        if not all(is_code(p) for p in _require_list(body, "purposes", min_items=1)):
            raise TxFailed("invalid_body", f"purposes must be codes of 1..{MAX_TEXT} characters")
    for name in ("start_ms", "end_ms"):
        if name in body and not (_is_int(body[name]) and 0 <= body[name] <= MAX_TIME_MS):
            raise TxFailed("invalid_body", f"{name} must be a non-negative integer (ms)")
    if "start_ms" in body and "end_ms" in body and body["start_ms"] > body["end_ms"]:
        raise TxFailed("invalid_body", "start_ms is after end_ms")


def _require_patient(ctx: TxContext) -> None:
    ident = identity.get_identity(ctx.state, ctx.sender)
    if ident is None or ident["role"] != "patient" or ident["status"] != identity.ACTIVE:
        raise TxFailed("unauthorized", "only an active patient manages consent")


# ------------------------------------------------------------------ handlers


def _grant(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_patient(ctx)
    if body.get("actor") == ctx.sender:
        raise TxFailed("invalid_body", "a patient needs no consent from themself")
    active = sum(1 for _, g in ctx.iterate(b"g/" + ctx.sender) if g["revoked_height"] is None)
    if active >= MAX_ACTIVE_GRANTS:
        raise TxFailed("too_many_grants", f"at most {MAX_ACTIVE_GRANTS} unrevoked grants per patient")
    grant_id = crypto.sha256(ctx.tx_hash)
    grant = {
        "actor": body.get("actor"),
        "actor_role": body.get("actor_role"),
        "actions": sorted(body["actions"]),
        "resource_types": sorted(body.get("resource_types", [])),
        "record_ids": sorted(body.get("record_ids", [])),
        "purposes": sorted(body["purposes"]) if "purposes" in body else None,
        "start_ms": body.get("start_ms"),
        "end_ms": body.get("end_ms"),
        "decision": body["decision"],
        "created_height": ctx.block.height,
        "created_ms": ctx.block.time_ms,
        "revoked_height": None,
        "revoked_ms": None,
    }
    ctx.put(grant_key(ctx.sender, grant_id), grant)
    ctx.emit(
        "granted",
        patient=ctx.sender,
        grant_id=grant_id,
        actor=grant["actor"],
        actor_role=grant["actor_role"],
        decision=grant["decision"],
    )


def _validate_revoke(body: dict[str, Any]) -> None:
    require_fields(body, {"grant_id"})
    require_bytes(body, "grant_id", 32)


def _revoke(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_patient(ctx)
    key = grant_key(ctx.sender, body["grant_id"])
    grant = ctx.get(key)
    if grant is None:
        raise TxFailed("unknown_grant", "this patient has no such grant")
    if grant["revoked_height"] is not None:
        raise TxFailed("already_revoked", "the grant is already revoked")
    grant["revoked_height"] = ctx.block.height
    grant["revoked_ms"] = ctx.block.time_ms
    ctx.put(key, grant)
    ctx.emit("revoked", patient=ctx.sender, grant_id=body["grant_id"])


# ------------------------------------------------------------------ the decision


def grant_is_active(grant: dict[str, Any], time_ms: int) -> bool:
    if grant["revoked_height"] is not None:
        return False
    if grant["start_ms"] is not None and time_ms < grant["start_ms"]:
        return False
    return not (grant["end_ms"] is not None and time_ms > grant["end_ms"])


def grant_matches(
    grant: dict[str, Any],
    actor: bytes,
    actor_ident: dict[str, Any] | None,
    action: str,
    resource_type: str,
    record_id: bytes | None,
    purpose: str | None,
) -> bool:
    """Whether an (active) grant applies to the request; see the module docstring."""
    deny = grant["decision"] == DENY
    if grant["actor"] is not None:
        if grant["actor"] != actor:
            return False
    else:
        if actor_ident is None or actor_ident["role"] != grant["actor_role"]:
            return False
        if not deny and actor_ident["status"] != identity.ACCREDITED:
            return False
    if action not in grant["actions"]:
        return False
    if grant["resource_types"] and resource_type not in grant["resource_types"]:
        return False
    if grant["record_ids"] and (record_id is None or record_id not in grant["record_ids"]):
        return False
    if grant["purposes"] is not None:
        if purpose is None:
            return bool(deny)
        if purpose not in grant["purposes"]:
            return False
    return True


def check(
    state: StateReader,
    patient: bytes,
    actor: bytes,
    action: str,
    resource_type: str,
    record_id: bytes | None,
    purpose: str | None,
    time_ms: int,
) -> tuple[bool, str]:
    """Decide whether ``actor`` may ``action`` the patient's data; ``(allowed, reason)``."""
    if actor == patient:
        return True, "patient"
    actor_ident = identity.get_identity(state, actor)
    permit: bytes | None = None
    prefix = b"g/" + patient
    for k, raw in state.iterate(NAMESPACE, prefix):
        grant = codec.decode(raw)
        if not grant_is_active(grant, time_ms):
            continue
        if not grant_matches(grant, actor, actor_ident, action, resource_type, record_id, purpose):
            continue
        gid = k[len(prefix) :]
        if grant["decision"] == DENY:
            return False, f"denied by consent {gid.hex()}"
        if permit is None:
            permit = gid
    if permit is not None:
        return True, f"permitted by consent {permit.hex()}"
    return False, "no consent"


# ------------------------------------------------------------------ queries


def grant_json(patient: bytes, grant_id: bytes, g: dict[str, Any]) -> dict[str, Any]:
    return {
        "patient": hex_or_none(patient),
        "grant_id": hex_or_none(grant_id),
        "actor": hex_or_none(g["actor"]),
        "actor_role": g["actor_role"],
        "actions": g["actions"],
        "resource_types": g["resource_types"],
        "record_ids": [hex_or_none(r) for r in g["record_ids"]],
        "purposes": g["purposes"],
        "start_ms": g["start_ms"],
        "end_ms": g["end_ms"],
        "decision": g["decision"],
        "created_height": g["created_height"],
        "created_ms": g["created_ms"],
        "revoked_height": g["revoked_height"],
        "revoked_ms": g["revoked_ms"],
    }


def _query_list(state: StateReader, params: dict[str, Any]) -> Any:
    patient = query_key(params, "patient")
    include_revoked = params.get("include_revoked", True)
    if not isinstance(include_revoked, bool):
        raise QueryError("include_revoked must be a boolean")
    prefix = b"g/" + patient
    out = []
    for k, raw in state.iterate(NAMESPACE, prefix):
        g = codec.decode(raw)
        if include_revoked or g["revoked_height"] is None:
            out.append(grant_json(patient, k[len(prefix) :], g))
    return out


def _query_check(state: StateReader, params: dict[str, Any]) -> Any:
    patient = query_key(params, "patient")
    actor = query_key(params, "actor")
    action: Any = params.get("action")
    if action not in ACTIONS:
        raise QueryError("action must be read or write")
    resource_type: Any = params.get("resource_type")
    if not is_resource_type(resource_type):
        raise QueryError("resource_type must be a FHIR resource type name")
    record_id = params.get("record_id")
    if record_id is not None and not (isinstance(record_id, bytes) and len(record_id) == 32):
        raise QueryError("record_id must be 32 bytes (0x-hex)")
    purpose = params.get("purpose")
    if purpose is not None and not is_code(purpose):
        raise QueryError("purpose must be a purpose-of-use code")
    time_ms: Any = params.get("time_ms")
    if not _is_int(time_ms) or time_ms < 0:
        raise QueryError("time_ms must be a non-negative integer")
    allowed, reason = check(state, patient, actor, action, resource_type, record_id, purpose, time_ms)
    return {"allowed": allowed, "reason": reason}


class ConsentModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "grant": TxSpec(_validate_grant, _grant),
            "revoke": TxSpec(_validate_revoke, _revoke),
        }
        self.queries = {"list": _query_list, "check": _query_check}
