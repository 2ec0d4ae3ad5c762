"""Governance: decisions that need a supermajority of the authorities.

An authority expresses a decision by sending a governance tx; each tx is one vote for
one *action* (e.g. "accredit subject S as provider"). Identical actions share an id
(SHA-256 of the canonical action), so votes accumulate; when authorities holding more
than 2/3 of the voting power have voted, the action executes in that same tx and its
tally is cleared (so the same action can happen again later, e.g. re-accreditation).
With one authority every vote executes at once. Votes of an authority that leaves the
set stop counting: tallies are recomputed against the current set at every vote.

State (namespace ``governance``): ``b"auth/" + public_key`` -> ``{name, power}``;
``b"vote/" + action_id`` -> ``{action, voters}`` (voters sorted).
"""

from __future__ import annotations

from typing import Any

from .. import codec, crypto
from ..types.genesis import Genesis
from . import identity
from .module import (
    Module,
    TxContext,
    TxFailed,
    TxSpec,
    require_bytes,
    require_fields,
    require_text,
)
from .state import StateReader

MAX_REASON = 256


def authority_powers(state: StateReader) -> dict[bytes, int]:
    return {k[5:]: codec.decode(v)["power"] for k, v in state.iterate("governance", b"auth/")}


def action_id(action: dict[str, Any]) -> bytes:
    return crypto.sha256(codec.encode(action))


def _vote(ctx: TxContext, action: dict[str, Any]) -> bool:
    """Record the sender's vote; return True when the action reaches 2/3+ and must run."""
    powers = authority_powers(ctx.state)
    if ctx.sender not in powers:
        raise TxFailed("unauthorized", "only authorities vote on governance actions")
    aid = action_id(action)
    key = b"vote/" + aid
    tally = ctx.get(key) or {"action": action, "voters": []}
    voters = set(tally["voters"])
    if ctx.sender in voters:
        raise TxFailed("duplicate_vote", "this authority already voted for this action")
    voters.add(ctx.sender)
    voters &= set(powers)
    power = sum(powers[v] for v in voters)
    total = sum(powers.values())
    if 3 * power > 2 * total:
        ctx.delete(key)
        ctx.emit("executed", action_id=aid, power=power, total=total)
        return True
    ctx.put(key, {"action": action, "voters": sorted(voters)})
    ctx.emit("voted", action_id=aid, voter=ctx.sender, power=power, total=total)
    return False


def _subject(ctx: TxContext, body: dict[str, Any]) -> dict[str, Any]:
    ident = identity.get_identity(ctx.state, body["subject"])
    if ident is None:
        raise TxFailed("unknown_subject", "subject is not a registered identity")
    return ident


def _validate_accredit(body: dict[str, Any]) -> None:
    require_fields(body, {"subject", "role"})
    require_bytes(body, "subject", 32)
    if not isinstance(body["role"], str) or body["role"] not in identity.ACCREDITED_ROLES:
        raise TxFailed("invalid_body", f"role must be one of {', '.join(sorted(identity.ACCREDITED_ROLES))}")


def _accredit(ctx: TxContext, body: dict[str, Any]) -> None:
    ident = _subject(ctx, body)
    if ident["role"] != body["role"]:
        raise TxFailed("role_mismatch", f"subject registered as {ident['role']}, not {body['role']}")
    if ident["status"] == identity.ACCREDITED:
        raise TxFailed("already_accredited", "subject is already accredited")
    if _vote(ctx, {"op": "accredit", "subject": body["subject"], "role": body["role"]}):
        identity.set_status(ctx, body["subject"], identity.ACCREDITED)
        ctx.emit("accredited", subject=body["subject"], role=body["role"])


def _validate_revoke(body: dict[str, Any]) -> None:
    require_fields(body, {"subject", "reason"})
    require_bytes(body, "subject", 32)
    require_text(body, "reason", MAX_REASON)


def _revoke(ctx: TxContext, body: dict[str, Any]) -> None:
    ident = _subject(ctx, body)
    if ident["status"] != identity.ACCREDITED:
        raise TxFailed("not_accredited", f"subject is {ident['status']}, not accredited")
    # The reason is part of the vote's record but not of the action id, so authorities
    # may word it differently and still agree on the revocation.
    if _vote(ctx, {"op": "revoke", "subject": body["subject"]}):
        identity.set_status(ctx, body["subject"], identity.REVOKED)
        ctx.emit("revoked", subject=body["subject"], reason=body["reason"])


def _query_authorities(state: StateReader, params: dict[str, Any]) -> Any:
    out = []
    for k, v in state.iterate("governance", b"auth/"):
        a = codec.decode(v)
        out.append({"public_key": "0x" + k[5:].hex(), "name": a["name"], "power": a["power"]})
    return out


def _query_pending(state: StateReader, params: dict[str, Any]) -> Any:
    out = []
    for k, v in state.iterate("governance", b"vote/"):
        t = codec.decode(v)
        action = {a: ("0x" + b.hex() if isinstance(b, bytes) else b) for a, b in t["action"].items()}
        out.append({"action_id": "0x" + k[5:].hex(), "action": action,
                    "voters": ["0x" + x.hex() for x in t["voters"]]})
    return out


class GovernanceModule(Module):
    name = "governance"

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            "accredit": TxSpec(_validate_accredit, _accredit, requires_identity=False),
            "revoke": TxSpec(_validate_revoke, _revoke, requires_identity=False),
        }
        self.queries = {"authorities": _query_authorities, "pending": _query_pending}

    def genesis_writes(self, genesis: Genesis) -> dict[bytes, Any]:
        return {b"auth/" + a.public_key: {"name": a.name, "power": a.power} for a in genesis.authorities}
