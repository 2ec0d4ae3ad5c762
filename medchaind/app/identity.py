"""Identity: who is who on the chain.

A participant is its Ed25519 signing key (the tx sender). Registering binds it to a
role and an X25519 encryption key (for sealed data keys). Patients are active at once;
organisation roles start ``pending`` and become ``accredited`` only by governance
(2/3+ of the authorities), which may later ``revoke`` them.

Privacy: a patient identity carries nothing but keys and a role. Organisations may
carry a public label (their organisation name), patients never: a label would be PHI.

State (namespace ``identity``): ``b"id/" + public_key`` -> ``{role, enc_key, status,
label, registered_at, changed_at}``.
"""

from __future__ import annotations

from typing import Any

from .. import codec
from .module import (
    Module,
    QueryError,
    TxContext,
    TxFailed,
    TxSpec,
    query_key,
    require_bytes,
    require_fields,
    require_text,
)
from .state import StateReader

ROLES = (
    "patient", "provider", "pharmacy", "manufacturer", "distributor",
    "payer", "sponsor", "regulator", "auditor",
)
#: roles whose holders act on behalf of an organisation and need accreditation
ACCREDITED_ROLES = frozenset(ROLES) - {"patient"}

PENDING = "pending"
ACTIVE = "active"
ACCREDITED = "accredited"
REVOKED = "revoked"

MAX_LABEL = 128


def identity_key(public_key: bytes) -> bytes:
    return b"id/" + public_key


def get_identity(state: StateReader, public_key: bytes) -> dict[str, Any] | None:
    raw = state.get("identity", identity_key(public_key))
    return None if raw is None else codec.decode(raw)


def is_accredited(state: StateReader, public_key: bytes, role: str | None = None) -> bool:
    ident = get_identity(state, public_key)
    return (
        ident is not None
        and ident["status"] == ACCREDITED
        and (role is None or ident["role"] == role)
    )


def identity_json(public_key: bytes, ident: dict[str, Any]) -> dict[str, Any]:
    return {
        "public_key": "0x" + public_key.hex(),
        "role": ident["role"],
        "status": ident["status"],
        "enc_key": "0x" + ident["enc_key"].hex(),
        "label": ident["label"],
        "registered_at": ident["registered_at"],
        "changed_at": ident["changed_at"],
    }


def _validate_register(body: dict[str, Any]) -> None:
    require_fields(body, {"role", "enc_key"}, {"label"})
    role = body["role"]
    if role not in ROLES:
        raise TxFailed("invalid_body", f"role must be one of {', '.join(ROLES)}")
    require_bytes(body, "enc_key", 32)
    if "label" in body:
        if role == "patient":
            raise TxFailed("invalid_body", "patients carry no label (it would be personal data on chain)")
        require_text(body, "label", MAX_LABEL)


def _register(ctx: TxContext, body: dict[str, Any]) -> None:
    key = identity_key(ctx.sender)
    if ctx.get(key) is not None:
        raise TxFailed("already_registered", "this key is already registered")
    role = body["role"]
    status = PENDING if role in ACCREDITED_ROLES else ACTIVE
    ctx.put(key, {
        "role": role, "enc_key": body["enc_key"], "status": status,
        "label": body.get("label"), "registered_at": ctx.block.height,
        "changed_at": ctx.block.height,
    })
    ctx.emit("registered", subject=ctx.sender, role=role, status=status)


def _validate_update(body: dict[str, Any]) -> None:
    require_fields(body, {"enc_key"})
    require_bytes(body, "enc_key", 32)


def _update(ctx: TxContext, body: dict[str, Any]) -> None:
    key = identity_key(ctx.sender)
    ident = ctx.get(key)
    assert ident is not None  # requires_identity guarantees registration
    if ident["status"] == REVOKED:
        raise TxFailed("revoked", "a revoked identity cannot change its keys")
    ident["enc_key"] = body["enc_key"]
    ident["changed_at"] = ctx.block.height
    ctx.put(key, ident)
    ctx.emit("updated", subject=ctx.sender)


def set_status(ctx: TxContext, subject: bytes, status: str) -> None:
    """Used by governance (which runs with the identity namespace's context)."""
    key = identity_key(subject)
    raw = ctx.state.get("identity", key)
    assert raw is not None
    ident = codec.decode(raw)
    ident["status"] = status
    ident["changed_at"] = ctx.block.height
    ctx.state.set("identity", key, codec.encode(ident))


def _query_get(state: StateReader, params: dict[str, Any]) -> Any:
    pk = query_key(params, "public_key")
    ident = get_identity(state, pk)
    return None if ident is None else identity_json(pk, ident)


def _query_list(state: StateReader, params: dict[str, Any]) -> Any:
    role = params.get("role")
    limit = params.get("limit", 100)
    if not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise QueryError("limit must be 1..1000")
    out = []
    for k, v in state.iterate("identity", b"id/"):
        ident = codec.decode(v)
        if role is None or ident["role"] == role:
            out.append(identity_json(k[3:], ident))
            if len(out) >= limit:
                break
    return out


class IdentityModule(Module):
    name = "identity"

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "register": TxSpec(_validate_register, _register, requires_identity=False),
            "update": TxSpec(_validate_update, _update),
        }
        self.queries = {"get": _query_get, "list": _query_list}

