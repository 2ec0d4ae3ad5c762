"""Named validators and blocks for consensus tests ("A", "B", ... and "X", "Y", ...).

Keys are derived from fixed seeds and the names are handed out in *sorted public-key
order*, so that with equal powers the proposer rotation reads alphabetically:
``proposer(h, r)`` is the validator at index ``(h + r) mod n``, i.e. at height 1 "B"
proposes round 0, "C" round 1, and so on. Blocks are named too: ``block("X")`` is a
fixed 32-byte hash.

``describe`` turns effects into short strings for scenario tables, e.g.
``"sign prevote r0 X"`` or ``"decide r1 X by A,B,D"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..core.effects import (
    Broadcast,
    Decide,
    Effect,
    EvidenceFound,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    WALAppend,
)
from ..core.messages import (
    NIL_ROUND,
    BlockHash,
    Ed25519Signer,
    Height,
    Message,
    PolkaRecord,
    Proposal,
    Round,
    ValidatorId,
    Vote,
    VoteKind,
)
from ..core.validators import ValidatorSet
from ..crypto import SigningKey, sha256

NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TEST_CHAIN_ID = "medchain-test"


def block(name: str) -> BlockHash:
    """The hash standing for block ``name`` in tests."""
    return BlockHash(sha256(b"medchaind-test-block:" + name.encode()))


class Cast:
    """``n`` named validators with real Ed25519 keys (deterministic)."""

    def __init__(self, n: int, powers: Sequence[int] | None = None,
                 chain_id: str = TEST_CHAIN_ID) -> None:
        if not 1 <= n <= len(NAMES):
            raise ValueError(f"cast: 1..{len(NAMES)} validators")
        keys = [SigningKey(sha256(b"medchaind-test-validator:%d" % i)) for i in range(n)]
        keys.sort(key=lambda k: k.public_key)
        self.chain_id = chain_id
        self.names: tuple[str, ...] = tuple(NAMES[:n])
        self.keys: dict[str, SigningKey] = dict(zip(self.names, keys, strict=True))
        self.ids: dict[str, ValidatorId] = {
            name: ValidatorId(k.public_key) for name, k in self.keys.items()
        }
        self._by_id: dict[bytes, str] = {v: k for k, v in self.ids.items()}
        self.signers: dict[str, Ed25519Signer] = {
            name: Ed25519Signer(k, chain_id) for name, k in self.keys.items()
        }
        weights = list(powers) if powers is not None else [1] * n
        self.validators = ValidatorSet.from_powers(
            {self.ids[name]: w for name, w in zip(self.names, weights, strict=True)}
        )
        self._blocks: dict[bytes, str] = {}

    def id(self, name: str) -> ValidatorId:
        return self.ids[name]

    def name(self, key: bytes) -> str:
        return self._by_id.get(key, key.hex()[:8])

    def block(self, name: str) -> BlockHash:
        h = block(name)
        self._blocks[h] = name
        return h

    def block_name(self, h: bytes | None) -> str:
        if h is None:
            return "nil"
        return self._blocks.get(h, h.hex()[:8])

    def vote(self, kind: VoteKind, who: str, height: int, round_: int,
             value: str | None) -> Vote:
        v = Vote(kind, Height(height), Round(round_),
                 None if value is None else self.block(value), self.id(who))
        return self.signers[who].sign_vote(v)

    def prevote(self, who: str, height: int, round_: int, value: str | None) -> Vote:
        return self.vote(VoteKind.PREVOTE, who, height, round_, value)

    def precommit(self, who: str, height: int, round_: int, value: str | None) -> Vote:
        return self.vote(VoteKind.PRECOMMIT, who, height, round_, value)

    def proposal(self, who: str, height: int, round_: int, value: str,
                 pol_round: int = NIL_ROUND) -> Proposal:
        p = Proposal(Height(height), Round(round_), self.block(value), Round(pol_round),
                     self.id(who))
        return self.signers[who].sign_proposal(p)

    # ---------------------------------------------------------------- descriptions

    def describe_message(self, m: Message) -> str:
        if isinstance(m, Proposal):
            pol = "" if m.pol_round == NIL_ROUND else f" pol{m.pol_round}"
            return (f"proposal {self.name(m.proposer)} r{m.round} "
                    f"{self.block_name(m.block_hash)}{pol}")
        kind = "prevote" if m.kind == VoteKind.PREVOTE else "precommit"
        return f"{kind} {self.name(m.validator)} r{m.round} {self.block_name(m.block_hash)}"

    def describe(self, effect: Effect) -> str:
        """A one-line, table-friendly description of an effect."""
        match effect:
            case WALAppend(entry=PolkaRecord(round=r, block_hash=h, votes=votes)):
                signers = ",".join(self.name(v.validator) for v in votes)
                return f"wal polka r{r} {self.block_name(h)} by {signers}"
            case WALAppend(entry=Proposal() | Vote() as m):
                return "wal " + self._own(m)
            case SignVote(vote=v):
                return "sign " + self._own(v)
            case SignProposal(proposal=p):
                return "sign " + self._own(p)
            case Broadcast(message=m):
                return "broadcast " + self.describe_message(m)
            case ScheduleTimeout(kind=kind, round=r, duration_ms=ms):
                return f"timeout {kind.name.lower()} r{r} {ms}ms"
            case RequestValue(round=r):
                return f"request value r{r}"
            case Decide(round=r, block_hash=h, commit_votes=votes):
                signers = ",".join(self.name(v.validator) for v in votes)
                return f"decide r{r} {self.block_name(h)} by {signers}"
            case EvidenceFound(evidence=ev):
                a, b = ev.vote_a, ev.vote_b
                step = "prevote" if a.kind == VoteKind.PREVOTE else "precommit"
                return (f"evidence {self.name(a.validator)} {step} r{a.round} "
                        f"{self.block_name(a.block_hash)}/{self.block_name(b.block_hash)}")
        raise TypeError(f"not an effect: {effect!r}")

    def _own(self, m: Message) -> str:
        # "prevote r0 X" for the node's own message (the signer is implied).
        if isinstance(m, Proposal):
            pol = "" if m.pol_round == NIL_ROUND else f" pol{m.pol_round}"
            return f"proposal r{m.round} {self.block_name(m.block_hash)}{pol}"
        kind = "prevote" if m.kind == VoteKind.PREVOTE else "precommit"
        return f"{kind} r{m.round} {self.block_name(m.block_hash)}"

    def describe_all(self, effects: Sequence[Effect]) -> list[str]:
        return [self.describe(e) for e in effects]

    def powers(self) -> Mapping[str, int]:
        return {self.name(v.public_key): v.power for v in self.validators}
