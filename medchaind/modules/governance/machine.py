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

from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import Module, QuerySpec, TxContext, TxFailed, TxSpec
from ...app.schema import Bytes, Enum, FieldError, Int, Nullable, OneOf, Struct, Text, body, encode_body, params
from ...app.state import StateReader
from ...types.block import PRECOMMIT, PREVOTE, vote_payload
from ...types.genesis import Genesis
from ..identity import machine as identity

NAMESPACE = "governance"
MAX_REASON = 256
#: Voting power per authority. The weighted proposer rotation precomputes a cycle of
#: at most 16384 slots (sum of powers / their gcd), so powers stay small.
MAX_POWER = 100
MAX_AUTHORITIES = 128


def authority_powers(state: StateReader) -> dict[bytes, int]:
    return {k[5:]: codec.decode(v)["power"] for k, v in state.iterate(NAMESPACE, b"auth/")}


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


def _subject(ctx: TxContext, subject: bytes) -> dict[str, Any]:
    ident = identity.get_identity(ctx.state, subject)
    if ident is None:
        raise TxFailed("unknown_subject", "subject is not a registered identity")
    return ident


@body
class Accredit:
    subject: Annotated[bytes, Bytes(32)]
    role: Annotated[str, Enum(sorted(identity.ACCREDITED_ROLES))]


@body
class Revoke:
    subject: Annotated[bytes, Bytes(32)]
    reason: Annotated[str, Text(MAX_REASON)]


def _require_authority(ctx: TxContext) -> None:
    if ctx.sender not in authority_powers(ctx.state):
        raise TxFailed("unauthorized", "only authorities vote on governance actions")


def _accredit(ctx: TxContext, b: Accredit) -> None:
    _require_authority(ctx)
    ident = _subject(ctx, b.subject)
    if ident["role"] != b.role:
        raise TxFailed("role_mismatch", f"subject registered as {ident['role']}, not {b.role}")
    if ident["status"] == identity.ACCREDITED:
        raise TxFailed("already_accredited", "subject is already accredited")
    if _vote(ctx, {"op": "accredit", "subject": b.subject, "role": b.role}):
        identity.set_status(ctx, b.subject, identity.ACCREDITED)
        ctx.emit("accredited", subject=b.subject, role=b.role)


def _revoke(ctx: TxContext, b: Revoke) -> None:
    _require_authority(ctx)
    ident = _subject(ctx, b.subject)
    if ident["status"] != identity.ACCREDITED:
        raise TxFailed("not_accredited", f"subject is {ident['status']}, not accredited")
    # The reason is part of the vote's record but not of the action id, so authorities
    # may word it differently and still agree on the revocation.
    if _vote(ctx, {"op": "revoke", "subject": b.subject}):
        identity.set_status(ctx, b.subject, identity.REVOKED)
        ctx.emit("revoked", subject=b.subject, reason=b.reason)


@params
class NoParams:
    pass


def _query_authorities(state: StateReader, p: NoParams) -> Any:
    """The current authorities: public key, name, voting power."""
    out = []
    for k, v in state.iterate(NAMESPACE, b"auth/"):
        a = codec.decode(v)
        out.append({"public_key": "0x" + k[5:].hex(), "name": a["name"], "power": a["power"]})
    return out


def _query_pending(state: StateReader, p: NoParams) -> Any:
    """Actions with votes but no supermajority yet, with their voters."""
    out = []
    for k, v in state.iterate(NAMESPACE, b"vote/"):
        t = codec.decode(v)
        action = {a: ("0x" + b.hex() if isinstance(b, bytes) else b) for a, b in t["action"].items()}
        out.append({"action_id": "0x" + k[5:].hex(), "action": action,
                    "voters": ["0x" + x.hex() for x in t["voters"]]})
    return out


class GovernanceModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {
            # votes on accreditation read the authority set, the tally and the subject, and
            # store the height only (tests/mempool/test_mempool_block_independence.py)
            "accredit": TxSpec(Accredit, _accredit, requires_identity=False, verdict_reads_block=False),
            "revoke": TxSpec(Revoke, _revoke, requires_identity=False, verdict_reads_block=False),
            "add_authority": TxSpec(AddAuthority, _add_authority, requires_identity=False),
            "remove_authority": TxSpec(RemoveAuthority, _remove_authority, requires_identity=False),
            "rotate_authority": TxSpec(RotateAuthority, _rotate_authority, requires_identity=False),
            "evidence": TxSpec(Evidence, _evidence, requires_identity=False),
        }
        self.queries = {
            "authorities": QuerySpec(_query_authorities, NoParams),
            "pending": QuerySpec(_query_pending, NoParams),
            "scheduled": QuerySpec(_query_scheduled, NoParams),
            "evidence": QuerySpec(_query_evidence, NoParams),
        }

    def end_block(self, ctx: TxContext) -> None:
        _end_block(ctx)

    def genesis_writes(self, genesis: Genesis) -> dict[bytes, Any]:
        return {b"auth/" + a.public_key: {"name": a.name, "power": a.power} for a in genesis.authorities}

    def authority_powers(self, state: StateReader) -> dict[bytes, int]:
        return authority_powers(state)

    def evidence_tx(self, vote_a: dict[str, Any], vote_b: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "evidence", {"vote_a": vote_a, "vote_b": vote_b}


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


@body
class AddAuthority:
    public_key: Annotated[bytes, Bytes(32)]
    name: Annotated[str, Text(64)]
    # bounded so the proposer rotation (core/validators.py) stays small: see MAX_POWER
    power: Annotated[int, Int(1, MAX_POWER)]


def _add_authority(ctx: TxContext, b: AddAuthority) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if b.public_key in powers:
        raise TxFailed("already_authority", "that key is already an authority")
    if len(powers) >= MAX_AUTHORITIES:
        raise TxFailed("too_many_authorities", f"at most {MAX_AUTHORITIES} authorities")
    change = {"op": "add_authority", "public_key": b.public_key, "name": b.name, "power": b.power}
    if _vote(ctx, change):
        _schedule(ctx, change)


@body
class RemoveAuthority:
    public_key: Annotated[bytes, Bytes(32)]
    reason: Annotated[str, Text(MAX_REASON)]


def _remove_authority(ctx: TxContext, b: RemoveAuthority) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if b.public_key not in powers:
        raise TxFailed("not_authority", "that key is not an authority")
    if len(powers) == 1:
        raise TxFailed("last_authority", "the last authority cannot be removed")
    change = {"op": "remove_authority", "public_key": b.public_key}
    if _vote(ctx, change):
        _schedule(ctx, change)


@body
class RotateAuthority:
    old_key: Annotated[bytes, Bytes(32)]
    new_key: Annotated[bytes, Bytes(32)]

    def check(self) -> None:
        if self.old_key == self.new_key:
            raise FieldError("new_key must differ from old_key")


def _rotate_authority(ctx: TxContext, b: RotateAuthority) -> None:
    _require_authority(ctx)
    powers = authority_powers(ctx.state)
    if b.old_key not in powers:
        raise TxFailed("not_authority", "old_key is not an authority")
    if b.new_key in powers:
        raise TxFailed("already_authority", "new_key is already an authority")
    change = {"op": "rotate_authority", "old_key": b.old_key, "new_key": b.new_key}
    if _vote(ctx, change):
        _schedule(ctx, change)


def _apply_change(ctx: TxContext, change: dict[str, Any]) -> None:
    powers = authority_powers(ctx.state)
    op = change["op"]
    # the table never exceeds MAX_AUTHORITIES: two additions voted while it had room for
    # one are both scheduled, and the later one (in action_id order) is dropped here
    if op == "add_authority" and change["public_key"] not in powers and len(powers) < MAX_AUTHORITIES:
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


@body
class SignedVote:
    """A signed vote as it appears in evidence (docs/protocol.md §15.3)."""

    kind: Annotated[int, OneOf(PREVOTE, PRECOMMIT)]
    height: Annotated[int, Int(1, 2**63 - 1)]
    round: Annotated[int, Int(0, 2**63 - 1)]
    block: Annotated[bytes | None, Nullable(Bytes(32))]
    validator: Annotated[bytes, Bytes(32)]
    # any length: a signature of the wrong size is evidence that does not verify
    # (receipt ``bad_evidence``), as chains already committed recorded it
    signature: Annotated[bytes, Bytes(max=128 * 1024)]


@body
class Evidence:
    vote_a: Annotated[SignedVote, Struct(SignedVote)]
    vote_b: Annotated[SignedVote, Struct(SignedVote)]

    def check(self) -> None:
        a, b = self.vote_a, self.vote_b
        if (a.validator, a.kind, a.height, a.round) != (b.validator, b.kind, b.height, b.round):
            raise FieldError("the two votes must be by one validator for one (height, round, kind)")
        if a.block == b.block:
            raise FieldError("the two votes must be for different values")


def _evidence(ctx: TxContext, ev: Evidence) -> None:
    a, b = ev.vote_a, ev.vote_b
    if a.validator not in authority_powers(ctx.state):
        raise TxFailed("not_authority", "evidence must concern a current authority")
    for v in (a, b):
        payload = vote_payload(v.kind, v.height, v.round, v.block)
        if not crypto.verify(v.validator, v.signature, crypto.DOMAIN_VOTE, ctx.block.chain_id, payload):
            raise TxFailed("bad_evidence", "a vote signature does not verify")
    key = b"evidence/" + a.validator + a.height.to_bytes(8, "big") + a.round.to_bytes(8, "big") + bytes([a.kind])
    if ctx.get(key) is not None:
        raise TxFailed("duplicate_evidence", "this equivocation is already on record")
    ctx.put(key, {"vote_a": encode_body(a), "vote_b": encode_body(b), "reported_by": ctx.sender,
                  "recorded_at": ctx.block.height})
    ctx.emit("equivocation", validator=a.validator, height=a.height, round=a.round, kind=a.kind)


def _query_evidence(state: StateReader, p: NoParams) -> Any:
    """Equivocation evidence on record: validator, height, round, vote kind, reporter."""
    out = []
    for _k, v in state.iterate(NAMESPACE, b"evidence/"):
        e = codec.decode(v)
        a = e["vote_a"]
        out.append({"validator": "0x" + a["validator"].hex(), "height": a["height"], "round": a["round"],
                    "kind": a["kind"], "recorded_at": e["recorded_at"],
                    "reported_by": "0x" + e["reported_by"].hex()})
    return out


def _query_scheduled(state: StateReader, p: NoParams) -> Any:
    """Authority-set changes decided and waiting for their effective height."""
    out = []
    for k, v in state.iterate(NAMESPACE, b"sched/"):
        change = codec.decode(v)
        out.append({"effective_height": int.from_bytes(k[6:14], "big"),
                    **{a: ("0x" + b.hex() if isinstance(b, bytes) else b) for a, b in change.items()}})
    return out
