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
from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import Module, QuerySpec, TxContext, TxFailed, TxSpec, hex_or_none
from ...app.schema import Bool, Bytes, Enum, FieldError, Int, ListOf, Text, body, params
from ...app.state import StateReader
from ..identity import machine as identity

NAMESPACE = "consent"
ACTIONS = ("read", "write")
DECISIONS = ("permit", "deny")
PERMIT = "permit"
DENY = "deny"
MAX_ITEMS = 32
MAX_TEXT = 64
#: unrevoked grants per patient (bounds the cost of every consent check)
MAX_ACTIVE_GRANTS = 256
MAX_TIME_MS = 2**63 - 1
#: a FHIR resource type name (``Observation``, ``MedicationRequest``, ...)
RESOURCE_TYPE_PATTERN = r"[A-Z][A-Za-z]{1,63}"
#: a purpose-of-use / reason code (HL7 v3 ActReason style: ``TREAT``, ``ETREAT``, ...)
CODE_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"
RESOURCE_TYPE_RE = re.compile(RESOURCE_TYPE_PATTERN)
CODE_RE = re.compile(CODE_PATTERN)
GRANT_ROLES = tuple(r for r in identity.ROLES if r != "patient")

#: field types shared with the records module
RESOURCE_TYPE = Text(64, pattern=RESOURCE_TYPE_PATTERN, what="a FHIR resource type name")
CODE = Text(64, pattern=CODE_PATTERN, what="a purpose-of-use code")


def grant_key(patient: bytes, grant_id: bytes) -> bytes:
    return b"g/" + patient + grant_id


# ------------------------------------------------------------------ validation helpers


def is_resource_type(v: object) -> bool:
    return isinstance(v, str) and RESOURCE_TYPE_RE.fullmatch(v) is not None


def is_code(v: object) -> bool:
    return isinstance(v, str) and CODE_RE.fullmatch(v) is not None


@body
class Grant:
    actions: Annotated[tuple[str, ...], ListOf(Enum(ACTIONS), min=1, max=MAX_ITEMS, unique=True)]
    decision: Annotated[str, Enum(DECISIONS)]
    actor: Annotated[bytes | None, Bytes(32)] = None
    actor_role: Annotated[str | None, Enum(GRANT_ROLES)] = None
    resource_types: Annotated[tuple[str, ...] | None, ListOf(RESOURCE_TYPE, max=MAX_ITEMS, unique=True)] = None
    record_ids: Annotated[tuple[bytes, ...] | None, ListOf(Bytes(32), max=MAX_ITEMS, unique=True)] = None
    purposes: Annotated[tuple[str, ...] | None, ListOf(CODE, min=1, max=MAX_ITEMS, unique=True)] = None
    start_ms: Annotated[int | None, Int(0, MAX_TIME_MS)] = None
    end_ms: Annotated[int | None, Int(0, MAX_TIME_MS)] = None

    def check(self) -> None:
        if (self.actor is None) == (self.actor_role is None):
            raise FieldError("exactly one of actor / actor_role is required")
        if self.start_ms is not None and self.end_ms is not None and self.start_ms > self.end_ms:
            raise FieldError("start_ms is after end_ms")


@body
class RevokeGrant:
    grant_id: Annotated[bytes, Bytes(32)]


def _require_patient(ctx: TxContext) -> None:
    ident = identity.get_identity(ctx.state, ctx.sender)
    if ident is None or ident["role"] != "patient" or ident["status"] != identity.ACTIVE:
        raise TxFailed("unauthorized", "only an active patient manages consent")


# ------------------------------------------------------------------ handlers


def _grant(ctx: TxContext, b: Grant) -> None:
    _require_patient(ctx)
    if b.actor == ctx.sender:
        raise TxFailed("invalid_body", "a patient needs no consent from themself")
    active = sum(1 for _, g in ctx.iterate(b"g/" + ctx.sender) if g["revoked_height"] is None)
    if active >= MAX_ACTIVE_GRANTS:
        raise TxFailed("too_many_grants", f"at most {MAX_ACTIVE_GRANTS} unrevoked grants per patient")
    grant_id = crypto.sha256(ctx.tx_hash)
    grant = {
        "actor": b.actor,
        "actor_role": b.actor_role,
        "actions": sorted(b.actions),
        "resource_types": sorted(b.resource_types or ()),
        "record_ids": sorted(b.record_ids or ()),
        "purposes": sorted(b.purposes) if b.purposes is not None else None,
        "start_ms": b.start_ms,
        "end_ms": b.end_ms,
        "decision": b.decision,
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


def _revoke(ctx: TxContext, b: RevokeGrant) -> None:
    _require_patient(ctx)
    key = grant_key(ctx.sender, b.grant_id)
    grant = ctx.get(key)
    if grant is None:
        raise TxFailed("unknown_grant", "this patient has no such grant")
    if grant["revoked_height"] is not None:
        raise TxFailed("already_revoked", "the grant is already revoked")
    grant["revoked_height"] = ctx.block.height
    grant["revoked_ms"] = ctx.block.time_ms
    ctx.put(key, grant)
    ctx.emit("revoked", patient=ctx.sender, grant_id=b.grant_id)


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
        grant = codec.decode_stored(raw)
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


@params
class ListParams:
    patient: Annotated[bytes, Bytes(32)]
    include_revoked: Annotated[bool, Bool()] = True


@params
class CheckParams:
    patient: Annotated[bytes, Bytes(32)]
    actor: Annotated[bytes, Bytes(32)]
    action: Annotated[str, Enum(ACTIONS)]
    resource_type: Annotated[str, RESOURCE_TYPE]
    time_ms: Annotated[int, Int(0, MAX_TIME_MS)]
    record_id: Annotated[bytes | None, Bytes(32)] = None
    purpose: Annotated[str | None, CODE] = None


def _query_list(state: StateReader, p: ListParams) -> Any:
    """A patient's grants in grant-id order, revoked ones included unless asked not to."""
    prefix = b"g/" + p.patient
    out = []
    for k, raw in state.iterate(NAMESPACE, prefix):
        g = codec.decode(raw)
        if p.include_revoked or g["revoked_height"] is None:
            out.append(grant_json(p.patient, k[len(prefix) :], g))
    return out


def _query_check(state: StateReader, p: CheckParams) -> Any:
    """Whether the patient's consent lets an actor read or write, with the deciding grant."""
    allowed, reason = check(state, p.patient, p.actor, p.action, p.resource_type, p.record_id, p.purpose, p.time_ms)
    return {"allowed": allowed, "reason": reason}


class ConsentModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            # both store the block's height and time, never judge by them (a grant's period
            # is judged where it is used): tests/mempool/test_mempool_block_independence.py
            "grant": TxSpec(Grant, _grant, verdict_reads_block=False),
            # a revocation is never delayed behind bulk traffic
            "revoke": TxSpec(RevokeGrant, _revoke, lane="priority", verdict_reads_block=False),
        }
        self.queries = {
            "list": QuerySpec(_query_list, ListParams),
            "check": QuerySpec(_query_check, CheckParams, tip_time=True),
        }
