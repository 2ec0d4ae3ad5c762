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

import functools
from typing import Annotated, Any

from ... import codec
from ...app.module import Module, QuerySpec, TxContext, TxFailed, TxSpec
from ...app.schema import Bytes, Enum, FieldError, Int, Text, body, params
from ...app.state import StateReader

NAMESPACE = "identity"
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
    raw = state.get(NAMESPACE, identity_key(public_key))
    return None if raw is None else codec.decode_stored(raw)


@functools.lru_cache(maxsize=4096)
def _status_role(raw: bytes) -> tuple[str, str]:
    # a pure function of the stored bytes: every claims, supply and trials tx asks this of
    # the same few senders' and counterparties' records, and the decode was ~1.5 us a time
    ident = codec.decode_stored(raw)
    return ident["status"], ident["role"]


def status_role(state: StateReader, public_key: bytes) -> tuple[str, str] | None:
    """``(status, role)`` of ``public_key``'s identity, None if it has none."""
    raw = state.get(NAMESPACE, identity_key(public_key))
    return None if raw is None else _status_role(raw)


def is_accredited(state: StateReader, public_key: bytes, role: str | None = None) -> bool:
    found = status_role(state, public_key)
    return found is not None and found[0] == ACCREDITED and (role is None or found[1] == role)


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


# ------------------------------------------------------------------ tx bodies


@body
class Register:
    role: Annotated[str, Enum(ROLES)]
    enc_key: Annotated[bytes, Bytes(32)]
    label: Annotated[str | None, Text(MAX_LABEL)] = None

    def check(self) -> None:
        if self.label is not None and self.role == "patient":
            raise FieldError("patients carry no label (it would be personal data on chain)")


@body
class Update:
    enc_key: Annotated[bytes, Bytes(32)]


def _register(ctx: TxContext, b: Register) -> None:
    key = identity_key(ctx.sender)
    if ctx.get(key) is not None:
        raise TxFailed("already_registered", "this key is already registered")
    status = PENDING if b.role in ACCREDITED_ROLES else ACTIVE
    # keys in canonical order, so encoding skips cbor2's canonical sort (same bytes)
    ctx.put(key, {
        "role": b.role, "label": b.label, "status": status, "enc_key": b.enc_key,
        "changed_at": ctx.block.height, "registered_at": ctx.block.height,
    })
    ctx.emit("registered", subject=ctx.sender, role=b.role, status=status)


def _update(ctx: TxContext, b: Update) -> None:
    key = identity_key(ctx.sender)
    ident = ctx.get(key)
    assert ident is not None  # requires_identity guarantees registration
    if ident["status"] == REVOKED:
        raise TxFailed("revoked", "a revoked identity cannot change its keys")
    ident["enc_key"] = b.enc_key
    ident["changed_at"] = ctx.block.height
    ctx.put(key, ident)
    ctx.emit("updated", subject=ctx.sender)


def set_status(ctx: TxContext, subject: bytes, status: str) -> None:
    """Used by governance (which runs with the identity namespace's context)."""
    key = identity_key(subject)
    raw = ctx.state.get(NAMESPACE, key)
    assert raw is not None
    ident = codec.decode_stored(raw)
    ident["status"] = status
    ident["changed_at"] = ctx.block.height
    ctx.state.set(NAMESPACE, key, codec.encode(ident))


# ------------------------------------------------------------------ queries


@params
class GetParams:
    public_key: Annotated[bytes, Bytes(32)]


@params
class ListParams:
    role: Annotated[str | None, Enum(ROLES)] = None
    limit: Annotated[int, Int(1, 1000)] = 100


def _query_get(state: StateReader, p: GetParams) -> Any:
    """The identity registered for a public key: role, status, encryption key, label."""
    ident = get_identity(state, p.public_key)
    return None if ident is None else identity_json(p.public_key, ident)


def _query_list(state: StateReader, p: ListParams) -> Any:
    """Registered identities in key order, optionally of one role."""
    out = []
    for k, v in state.iterate(NAMESPACE, b"id/"):
        ident = codec.decode(v)
        if p.role is None or ident["role"] == p.role:
            out.append(identity_json(k[3:], ident))
            if len(out) >= p.limit:
                break
    return out


class IdentityModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            # both store the height and never judge by it (tests/mempool/test_mempool_block_independence.py)
            "register": TxSpec(Register, _register, requires_identity=False, registers_sender=True,
                               verdict_reads_block=False),
            "update": TxSpec(Update, _update, verdict_reads_block=False),
        }
        self.queries = {
            "get": QuerySpec(_query_get, GetParams, not_found="no identity registered for that key"),
            "list": QuerySpec(_query_list, ListParams),
        }

    def sender_registered(self, state: StateReader, sender: bytes) -> bool:
        return state.get(NAMESPACE, identity_key(sender)) is not None
