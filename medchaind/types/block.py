"""Headers, votes, commit certificates and blocks.

A block at height h is *final* once authorities holding more than 2/3 of the voting
power have signed a precommit vote for its hash in some round; those signatures form
its :class:`Commit`, which is stored with the block and carried as ``last_commit`` in
block h+1 (as in Tendermint). The single-authority chain uses exactly the same
structures: its commit holds one signature.

Headers use immediate execution: ``app_hash`` is the state commitment *after* this
block's transactions (and ``results_hash`` commits to their receipts), so a header
and its commit are enough to trust a receipt.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import codec, crypto
from ..errors import DecodeError, ValidationError
from .merkle import merkle_root
from .tx import CHAIN_ID_RE, Tx, decode_tx

MAX_BLOCK_BYTES = 32 * 1024 * 1024
PREVOTE = 1
PRECOMMIT = 2
EMPTY_HASH = crypto.sha256(b"")

_HEADER_KEYS = frozenset(
    {"chain", "height", "round", "time_ms", "prev_hash", "tx_root", "app_hash",
     "results_hash", "validators_hash", "proposer", "last_commit_hash"}
)


def _is_hash(x: Any) -> bool:
    return isinstance(x, bytes) and len(x) == crypto.HASH_SIZE


def _is_uint(x: Any) -> bool:
    return type(x) is int and 0 <= x < 2**63


@dataclass(frozen=True, slots=True)
class Header:
    chain: str
    height: int
    round: int
    time_ms: int
    prev_hash: bytes
    tx_root: bytes
    app_hash: bytes
    results_hash: bytes
    validators_hash: bytes
    proposer: bytes
    last_commit_hash: bytes

    def to_map(self) -> dict[str, Any]:
        return {
            "chain": self.chain, "height": self.height, "round": self.round,
            "time_ms": self.time_ms, "prev_hash": self.prev_hash, "tx_root": self.tx_root,
            "app_hash": self.app_hash, "results_hash": self.results_hash,
            "validators_hash": self.validators_hash, "proposer": self.proposer,
            "last_commit_hash": self.last_commit_hash,
        }

    def hash(self) -> bytes:
        return crypto.sha256(codec.encode_unchecked(self.to_map()))

    @classmethod
    def from_map(cls, m: Any) -> Header:
        if not isinstance(m, dict) or set(m) != _HEADER_KEYS:
            raise ValidationError("header: wrong fields")
        if not isinstance(m["chain"], str) or not CHAIN_ID_RE.fullmatch(m["chain"]):
            raise ValidationError("header: bad chain id")
        for k in ("height", "round", "time_ms"):
            if not _is_uint(m[k]):
                raise ValidationError(f"header: {k} must be an unsigned integer")
        if m["height"] < 1:
            raise ValidationError("header: height starts at 1")
        for k in ("prev_hash", "tx_root", "app_hash", "results_hash", "validators_hash", "last_commit_hash"):
            if not _is_hash(m[k]):
                raise ValidationError(f"header: {k} must be 32 bytes")
        if not isinstance(m["proposer"], bytes) or len(m["proposer"]) != crypto.PUBLIC_KEY_SIZE:
            raise ValidationError("header: proposer must be a 32-byte public key")
        return cls(**m)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.to_map().items():
            out[k] = "0x" + v.hex() if isinstance(v, bytes) else v
        out["hash"] = "0x" + self.hash().hex()
        return out


@functools.lru_cache(maxsize=4096, typed=True)
def vote_payload(kind: int, height: int, round_: int, block_hash: bytes | None) -> bytes:
    """What an authority signs (domain ``medchain/vote/v1``) when it votes.

    Memoised (a pure function of its arguments): every vote of a step names one of very
    few values, so a node checking n votes would otherwise encode the same payload n
    times. ``typed``: ``True`` and ``1`` are equal keys otherwise, and encode differently."""
    return codec.encode_unchecked({"type": kind, "height": height, "round": round_, "block": block_hash})


@dataclass(frozen=True, slots=True)
class CommitSig:
    validator: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Commit:
    """2/3+ precommits for ``block_hash`` at (height, round): the block's finality proof."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]

    def to_map(self) -> dict[str, Any]:
        return {
            "height": self.height, "round": self.round, "block_hash": self.block_hash,
            "signatures": [[s.validator, s.signature] for s in self.signatures],
        }

    def hash(self) -> bytes:
        return crypto.sha256(codec.encode_unchecked(self.to_map()))

    def encode(self) -> bytes:
        return codec.encode_unchecked(self.to_map())

    @classmethod
    def from_map(cls, m: Any) -> Commit:
        if not isinstance(m, dict) or set(m) != {"height", "round", "block_hash", "signatures"}:
            raise ValidationError("commit: wrong fields")
        if not _is_uint(m["height"]) or m["height"] < 1 or not _is_uint(m["round"]):
            raise ValidationError("commit: bad height or round")
        if not _is_hash(m["block_hash"]):
            raise ValidationError("commit: block_hash must be 32 bytes")
        sigs = m["signatures"]
        if not isinstance(sigs, list) or not sigs or len(sigs) > 1024:
            raise ValidationError("commit: needs 1..1024 signatures")
        out = []
        seen: set[bytes] = set()
        for s in sigs:
            if (
                not isinstance(s, list) or len(s) != 2
                or not isinstance(s[0], bytes) or len(s[0]) != crypto.PUBLIC_KEY_SIZE
                or not isinstance(s[1], bytes) or len(s[1]) != crypto.SIGNATURE_SIZE
            ):
                raise ValidationError("commit: each signature is [public_key(32), sig(64)]")
            if s[0] in seen:
                raise ValidationError("commit: duplicate validator")
            seen.add(s[0])
            out.append(CommitSig(s[0], s[1]))
        return cls(m["height"], m["round"], m["block_hash"], tuple(out))

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height, "round": self.round, "block_hash": "0x" + self.block_hash.hex(),
            "signatures": [
                {"validator": "0x" + s.validator.hex(), "signature": "0x" + s.signature.hex()}
                for s in self.signatures
            ],
        }


def sign_commit_vote(key: crypto.SigningKey, chain: str, height: int, round_: int, block_hash: bytes) -> CommitSig:
    sig = key.sign(crypto.DOMAIN_VOTE, chain, vote_payload(PRECOMMIT, height, round_, block_hash))
    return CommitSig(key.public_key, sig)


def commit_sig_key(chain: str, commit: Commit, s: CommitSig) -> tuple[str, bytes, bytes, bytes]:
    """What a precommit signature in ``commit`` signs, by whom: the key of a set of
    signatures already checked (:func:`verify_commit`'s ``verified``)."""
    return chain, s.validator, s.signature, vote_payload(PRECOMMIT, commit.height, commit.round, commit.block_hash)


def verify_commit(commit: Commit, chain: str, powers: dict[bytes, int], block_hash: bytes, height: int, *,
                  verified: Container[tuple[str, bytes, bytes, bytes]] = ()) -> None:
    """Raise ValidationError unless ``commit`` finalises ``block_hash`` at ``height``.

    ``powers`` is the authority set of that height. More than 2/3 of the total power
    must have signed a valid precommit; signatures by non-authorities are rejected.
    ``verified`` holds :func:`commit_sig_key` of signatures whose Ed25519 check already
    passed (replay checks them in worker threads ahead of time,
    medchaind.consensus.verify); every other rule is checked here all the same.
    """
    if commit.height != height or commit.block_hash != block_hash:
        raise ValidationError("commit: does not refer to this block")
    total = sum(powers.values())
    signed = 0
    payload = vote_payload(PRECOMMIT, commit.height, commit.round, commit.block_hash)
    seen: set[bytes] = set()
    for s in commit.signatures:
        if s.validator in seen:
            raise ValidationError("commit: duplicate validator")
        seen.add(s.validator)
        if s.validator not in powers:
            raise ValidationError("commit: signature by a non-authority")
        if (chain, s.validator, s.signature, payload) not in verified and not crypto.verify(
                s.validator, s.signature, crypto.DOMAIN_VOTE, chain, payload):
            raise ValidationError("commit: invalid precommit signature")
        signed += powers[s.validator]
    if 3 * signed <= 2 * total:
        raise ValidationError(f"commit: only {signed} of {total} voting power signed (needs > 2/3)")


def validators_hash(powers: dict[bytes, int]) -> bytes:
    return crypto.sha256(codec.encode_unchecked([[k, powers[k]] for k in sorted(powers)]))


def tx_root(txs: Sequence[Tx]) -> bytes:
    return merkle_root([t.hash for t in txs])


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    txs: tuple[Tx, ...]
    last_commit: Commit | None
    _hash: bytes = field(default=b"", repr=False, compare=False)

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self._hash or self.header.hash()

    def to_map(self) -> dict[str, Any]:
        return {
            "header": self.header.to_map(),
            # txs travel as their canonical encodings (opaque byte strings, as in
            # CometBFT): a receiver hashes each one and can reuse the decoded tx it
            # already holds in its mempool instead of decoding it again
            "txs": [t.encoded for t in self.txs],
            "last_commit": None if self.last_commit is None else self.last_commit.to_map(),
        }

    def encode(self) -> bytes:
        # Tx encodings are canonical already; splice them instead of re-encoding maps.
        return codec.encode_unchecked(self.to_map())

    def validate_basic(self) -> None:
        """Stateless checks: tx root matches, txs are for this chain, commit shape fits."""
        if tx_root(self.txs) != self.header.tx_root:
            raise ValidationError("block: tx_root does not match the transactions")
        for t in self.txs:
            if t.chain != self.header.chain:
                raise ValidationError("block: tx for another chain")
        check_last_commit(self.header, self.last_commit)


def check_last_commit(header: Header, last_commit: Commit | None) -> None:
    """docs/protocol.md §6 validate_basic rules 3-4: ``last_commit`` against its header
    (shared by a block and a compact proposal, §12.3, which carries the same two)."""
    if header.height == 1:
        if last_commit is not None:
            raise ValidationError("block: the first block has no last_commit")
        if header.last_commit_hash != EMPTY_HASH:
            raise ValidationError("block: last_commit_hash must be the empty hash at height 1")
    else:
        if last_commit is None or last_commit.height != header.height - 1:
            raise ValidationError("block: last_commit must finalise the previous height")
        if last_commit.hash() != header.last_commit_hash:
            raise ValidationError("block: last_commit_hash mismatch")
        if last_commit.block_hash != header.prev_hash:
            raise ValidationError("block: last_commit is not for prev_hash")


TxLookup = Callable[[bytes], "Tx | None"]


def block_from_map(m: Any, *, known: TxLookup | None = None) -> Block:
    """A Block from a decoded map; ``known(tx_hash)`` may supply already-decoded txs."""
    if not isinstance(m, dict) or set(m) != {"header", "txs", "last_commit"}:
        raise ValidationError("block: wrong fields")
    header = Header.from_map(m["header"])
    if not isinstance(m["txs"], list):
        raise ValidationError("block: txs must be a list")
    txs = []
    for raw in m["txs"]:
        if not isinstance(raw, bytes):
            raise ValidationError("block: each tx is the byte string of its canonical encoding")
        tx, h = None, None
        if known is not None:
            h = crypto.sha256(raw)
            tx = known(h)
        if tx is None or tx.encoded != raw:
            try:
                tx = decode_tx(raw, tx_hash=h)
            except DecodeError as exc:
                raise ValidationError(f"block: {exc}") from None
        txs.append(tx)
    lc = None if m["last_commit"] is None else Commit.from_map(m["last_commit"])
    block = Block(header, tuple(txs), lc, header.hash())
    block.validate_basic()
    return block


def decode_block(data: bytes, known: TxLookup | None = None) -> Block:
    m = codec.decode(data, max_size=MAX_BLOCK_BYTES)
    try:
        return block_from_map(m, known=known)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None


def decode_commit(data: bytes) -> Commit:
    m = codec.decode(data, max_size=1024 * 200)
    try:
        return Commit.from_map(m)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None
