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
from ..types.block import PRECOMMIT, PREVOTE, vote_payload
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
#: Voting power per authority. The weighted proposer rotation precomputes a cycle of
#: at most 16384 slots (sum of powers / their gcd), so powers stay small.
MAX_POWER = 100
MAX_AUTHORITIES = 128


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


def _require_authority(ctx: TxContext) -> None:
    if ctx.sender not in authority_powers(ctx.state):
        raise TxFailed("unauthorized", "only authorities vote on governance actions")


def _accredit(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_authority(ctx)
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
    _require_authority(ctx)
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
            "add_authority": TxSpec(_validate_add, _add_authority, requires_identity=False),
            "remove_authority": TxSpec(_validate_remove, _remove_authority, requires_identity=False),
            "rotate_authority": TxSpec(_validate_rotate, _rotate_authority, requires_identity=False),
            "evidence": TxSpec(_validate_evidence, _evidence, requires_identity=False),
        }
        self.queries = {
            "authorities": _query_authorities, "pending": _query_pending,
            "scheduled": _query_scheduled, "evidence": _query_evidence,
        }

    def end_block(self, ctx: TxContext) -> None:
        _end_block(ctx)

    def genesis_writes(self, genesis: Genesis) -> dict[bytes, Any]:
        return {b"auth/" + a.public_key: {"name": a.name, "power": a.power} for a in genesis.authorities}


# ---------------------------------------------------------------- authority-set changes
#
# A change voted in block V takes effect for height V + 2: it is applied at the end of
# block V + 1, so the authority set of every height is fixed one block in advance and
# every node (including one that syncs) knows which set must sign each commit.

CHANGE_DELAY = 2


def _sched_key(height: int, aid: bytes) -> bytes:
    return b"sched/" + height.to_bytes(8, "big") + b"/" + aid


def _schedule(ctx: TxContext, change: dict[str, Any]) -> None:
    effective = ctx.block.height + CHANGE_DELAY
    ctx.put(_sched_key(effective, action_id(change)), change)
    ctx.emit("authority_change_scheduled", effective_height=effective, **change)


def _validate_add(body: dict[str, Any]) -> None:
    require_fields(body, {"public_key", "name", "power"})
    require_bytes(body, "public_key", 32)
    require_text(body, "name", 64)
    # bounded so the proposer rotation (core/validators.py) stays small: see MAX_POWER
    if type(body["power"]) is not int or not 1 <= body["power"] <= MAX_POWER:
        raise TxFailed("invalid_body", f"power must be an integer in 1..{MAX_POWER}")


def _add_authority(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if body["public_key"] in powers:
        raise TxFailed("already_authority", "that key is already an authority")
    if len(powers) >= MAX_AUTHORITIES:
        raise TxFailed("too_many_authorities", f"at most {MAX_AUTHORITIES} authorities")
    change = {"op": "add_authority", "public_key": body["public_key"], "name": body["name"], "power": body["power"]}
    if _vote(ctx, change):
        _schedule(ctx, change)


def _validate_remove(body: dict[str, Any]) -> None:
    require_fields(body, {"public_key", "reason"})
    require_bytes(body, "public_key", 32)
    require_text(body, "reason", MAX_REASON)


def _remove_authority(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if body["public_key"] not in powers:
        raise TxFailed("not_authority", "that key is not an authority")
    if len(powers) == 1:
        raise TxFailed("last_authority", "the last authority cannot be removed")
    change = {"op": "remove_authority", "public_key": body["public_key"]}
    if _vote(ctx, change):
        _schedule(ctx, change)


def _validate_rotate(body: dict[str, Any]) -> None:
    require_fields(body, {"old_key", "new_key"})
    require_bytes(body, "old_key", 32)
    require_bytes(body, "new_key", 32)
    if body["old_key"] == body["new_key"]:
        raise TxFailed("invalid_body", "new_key must differ from old_key")


def _rotate_authority(ctx: TxContext, body: dict[str, Any]) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if body["old_key"] not in powers:
        raise TxFailed("not_authority", "old_key is not an authority")
    if body["new_key"] in powers:
        raise TxFailed("already_authority", "new_key is already an authority")
    change = {"op": "rotate_authority", "old_key": body["old_key"], "new_key": body["new_key"]}
    if _vote(ctx, change):
        _schedule(ctx, change)


def _apply_change(ctx: TxContext, change: dict[str, Any]) -> None:
    powers = authority_powers(ctx.state)
    op = change["op"]
    if op == "add_authority" and change["public_key"] not in powers:
        ctx.put(b"auth/" + change["public_key"], {"name": change["name"], "power": change["power"]})
    elif op == "remove_authority" and change["public_key"] in powers and len(powers) > 1:
        ctx.delete(b"auth/" + change["public_key"])
    elif op == "rotate_authority" and change["old_key"] in powers and change["new_key"] not in powers:
        rec = ctx.get(b"auth/" + change["old_key"])
        ctx.delete(b"auth/" + change["old_key"])
        ctx.put(b"auth/" + change["new_key"], rec)


def _end_block(ctx: TxContext) -> None:
    prefix = b"sched/" + (ctx.block.height + 1).to_bytes(8, "big") + b"/"
    for key, change in list(ctx.iterate(prefix)):
        _apply_change(ctx, change)
        ctx.delete(key)


# ---------------------------------------------------------------- equivocation evidence


def _validate_evidence(body: dict[str, Any]) -> None:
    require_fields(body, {"vote_a", "vote_b"})
    for name in ("vote_a", "vote_b"):
        v = body[name]
        if (not isinstance(v, dict) or set(v) != {"kind", "height", "round", "block", "validator", "signature"}
                or v["kind"] not in (PREVOTE, PRECOMMIT) or type(v["height"]) is not int
                or type(v["round"]) is not int or not 1 <= v["height"] < 2**63 or not 0 <= v["round"] < 2**63
                or not isinstance(v["validator"], bytes)
                or not isinstance(v["signature"], bytes)
                or not (v["block"] is None or (isinstance(v["block"], bytes) and len(v["block"]) == 32))):
            raise TxFailed("invalid_body", f"{name} must be a signed vote")
    a, b = body["vote_a"], body["vote_b"]
    if (a["validator"], a["kind"], a["height"], a["round"]) != (b["validator"], b["kind"], b["height"], b["round"]):
        raise TxFailed("invalid_body", "the two votes must be by one validator for one (height, round, kind)")
    if a["block"] == b["block"]:
        raise TxFailed("invalid_body", "the two votes must be for different values")


def _evidence(ctx: TxContext, body: dict[str, Any]) -> None:
    a, b = body["vote_a"], body["vote_b"]
    if a["validator"] not in authority_powers(ctx.state):
        raise TxFailed("not_authority", "evidence must concern a current authority")
    for v in (a, b):
        payload = vote_payload(v["kind"], v["height"], v["round"], v["block"])
        if not crypto.verify(v["validator"], v["signature"], crypto.DOMAIN_VOTE, ctx.block.chain_id, payload):
            raise TxFailed("bad_evidence", "a vote signature does not verify")
    key = b"evidence/" + a["validator"] + a["height"].to_bytes(8, "big") + a["round"].to_bytes(8, "big") + bytes(
        [a["kind"]])
    if ctx.get(key) is not None:
        raise TxFailed("duplicate_evidence", "this equivocation is already on record")
    ctx.put(key, {"vote_a": a, "vote_b": b, "reported_by": ctx.sender, "recorded_at": ctx.block.height})
    ctx.emit("equivocation", validator=a["validator"], height=a["height"], round=a["round"], kind=a["kind"])


def _query_evidence(state: StateReader, params: dict[str, Any]) -> Any:
    out = []
    for _k, v in state.iterate("governance", b"evidence/"):
        e = codec.decode(v)
        a = e["vote_a"]
        out.append({"validator": "0x" + a["validator"].hex(), "height": a["height"], "round": a["round"],
                    "kind": a["kind"], "recorded_at": e["recorded_at"],
                    "reported_by": "0x" + e["reported_by"].hex()})
    return out


def _query_scheduled(state: StateReader, params: dict[str, Any]) -> Any:
    out = []
    for k, v in state.iterate("governance", b"sched/"):
        change = codec.decode(v)
        out.append({"effective_height": int.from_bytes(k[6:14], "big"),
                    **{a: ("0x" + b.hex() if isinstance(b, bytes) else b) for a, b in change.items()}})
    return out
