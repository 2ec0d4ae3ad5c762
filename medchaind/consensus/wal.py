"""The consensus write-ahead log: every message this authority signs, made durable first.

The core emits ``WALAppend(m)`` before ``SignVote``/``SignProposal`` for ``m``; the
service appends and fsyncs here, then signs. After a crash, the entries of the height
being decided go back into the core (``StartHeight(..., wal=entries)``), which restores
the last-signed guard and re-signs exactly what was signed before, so a restarted
authority never signs two different messages for one (height, round, step).

File format (``<datadir>/consensus.wal``): a sequence of records
``u32 big-endian length || canonical CBOR {"h": height, "m": message}`` where message
is ``{"t": "vote", ...Vote.to_map()}``, ``{"t": "proposal", ...}`` or ``{"t": "polka", ...}``,
or ``{"h": height, "b": block}``: the encoded block a message of that height names,
written (once per block) before the first message that names it; a block record has
the top bit of its length word set (``0x80000000 | length``), so each kind keeps its
own size limit and a damaged length is still recognised as damage. Without the block a
restarted authority that proposed, or is locked on, a value could not propose it again
(Tendermint re-proposes its valid value), and a single authority would halt. A torn last
record (crash mid-write) is cut off on open; anything else malformed is an error that
names the file and offset, because silently losing a signed message could let the node
equivocate. Entries below the committed height are pruned by an atomic rewrite.

Pruning may keep this key's non-nil precommits of the last few committed heights
(``keep_precommits_from``): they are what the double-sign check after a start
(:mod:`medchaind.consensus.signguard`) compares the precommits in recent commits with. A
precommit of this key in a commit that the WAL does not hold was signed by something
other than this node's history: another process running the same key, or a copy of this
node started from a state that lacks the WAL (CometBFT's ``double_sign_check_height``).
``created`` tells whether the file was new when opened: a new WAL knows of no signature.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from .. import codec
from ..core import BlockHash, Height, Message, PolkaRecord, Proposal, Round, Vote, VoteKind
from ..errors import DecodeError, StoreError, ValidationError

_LEN = struct.Struct(">I")
MAX_RECORD = 1024 * 1024
#: a block record: the largest block genesis parameters allow (max_block_bytes), plus room
MAX_BLOCK_RECORD = 64 * 1024 * 1024
_BLOCK_FLAG = 0x8000_0000

WALEntry = Message | PolkaRecord


def message_to_map(m: WALEntry) -> dict[str, Any]:
    if isinstance(m, Vote):
        return {"t": "vote", **m.to_map()}
    if isinstance(m, PolkaRecord):
        return {"t": "polka", "height": m.height, "round": m.round, "block": m.block_hash,
                "votes": [v.to_map() for v in m.votes]}
    return {"t": "proposal", **m.to_map()}


def _polka_from_map(d: dict[str, Any]) -> PolkaRecord:
    if set(d) != {"t", "height", "round", "block", "votes"} or not isinstance(d["votes"], list):
        raise ValidationError("polka record: wrong fields")
    h, r, b = d["height"], d["round"], d["block"]
    if type(h) is not int or not 1 <= h < 2**63 or type(r) is not int or not 0 <= r < 2**63:
        raise ValidationError("polka record: bad height or round")
    if not isinstance(b, bytes) or len(b) != 32:
        raise ValidationError("polka record: block must be a 32-byte hash")
    votes = tuple(Vote.from_map(v) for v in d["votes"])
    for v in votes:
        if v.kind != VoteKind.PREVOTE or (v.height, v.round, v.block_hash) != (h, r, b):
            raise ValidationError("polka record: every vote must be a prevote for its (height, round, block)")
    return PolkaRecord(Height(h), Round(r), BlockHash(b), votes)


def entry_from_map(d: Any) -> WALEntry:
    if isinstance(d, dict) and d.get("t") == "polka":
        return _polka_from_map(d)
    return message_from_map(d)


def message_from_map(d: Any) -> Message:
    if not isinstance(d, dict) or "t" not in d:
        raise ValidationError("consensus message: missing type")
    body = {k: v for k, v in d.items() if k != "t"}
    if d["t"] == "vote":
        return Vote.from_map(body)
    if d["t"] == "proposal":
        return Proposal.from_map(body)
    raise ValidationError(f"consensus message: unknown type {d['t']!r}")


class WAL:
    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        #: fsync every append and prune (a node always does). ``durable=False`` is for
        #: in-process simulations only (medchaind.testing.cluster): there one process plays
        #: n machines, so the n fsyncs of a step, which would run in parallel on n disks,
        #: are serialised and dominate the wall time; a simulated crash cancels tasks and
        #: loses nothing the page cache holds.
        self.durable = durable
        self._entries: list[tuple[int, WALEntry]] = []
        self._blocks: list[tuple[int, bytes]] = []
        self._file: Any = None
        #: no file existed when opened: this log has never recorded any signature
        self.created = not path.exists()
        self._load()
        self._file = open(self.path, "ab")  # noqa: SIM115 (owned for the node's lifetime)

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        off = 0
        good = 0
        while off < len(data):
            if off + 4 > len(data):
                break
            (word,) = _LEN.unpack_from(data, off)
            is_block, n = bool(word & _BLOCK_FLAG), word & ~_BLOCK_FLAG
            if n > (MAX_BLOCK_RECORD if is_block else MAX_RECORD):
                raise StoreError(f"{self.path}: corrupt record length {n} at offset {off}")
            if off + 4 + n > len(data):
                break  # torn tail
            try:
                rec = codec.decode(data[off + 4 : off + 4 + n], max_size=MAX_BLOCK_RECORD if is_block else MAX_RECORD)
                if not isinstance(rec, dict) or type(rec.get("h")) is not int:
                    raise DecodeError("bad record")
                if is_block and set(rec) == {"h", "b"} and isinstance(rec["b"], bytes):
                    self._blocks.append((rec["h"], rec["b"]))
                elif not is_block and set(rec) == {"h", "m"}:
                    self._entries.append((rec["h"], entry_from_map(rec["m"])))
                else:
                    raise DecodeError("bad record")
            except (DecodeError, ValidationError) as exc:
                raise StoreError(f"{self.path}: corrupt record at offset {off} ({exc})") from None
            off += 4 + n
            good = off
        if good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())

    def append_block(self, height: int, block: bytes) -> None:
        """Make ``block`` (encoded) durable for ``height`` before a message names it."""
        rec = codec.encode({"h": height, "b": block})
        if len(rec) > MAX_BLOCK_RECORD:
            raise StoreError(f"{self.path}: a block of {len(block)} bytes is over the WAL's limit")
        self._file.write(_LEN.pack(_BLOCK_FLAG | len(rec)) + rec)
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._blocks.append((height, block))

    def blocks(self, height: int) -> tuple[bytes, ...]:
        """The encoded blocks written for ``height``, in order."""
        return tuple(b for h, b in self._blocks if h == height)

    def max_height(self) -> int | None:
        """The highest height with an entry, or None for an empty log."""
        return max((h for h, _ in self._entries), default=None)

    def entries(self, height: int) -> tuple[WALEntry, ...]:
        return tuple(m for h, m in self._entries if h == height)

    def append(self, height: int, message: WALEntry) -> None:
        rec = codec.encode({"h": height, "m": message_to_map(message)})
        self._file.write(_LEN.pack(len(rec)) + rec)
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._entries.append((height, message))

    def knows_precommit(self, height: int, round_: int, block_hash: bytes) -> bool:
        """Whether this log holds this key's precommit for ``block_hash`` at (height, round)."""
        return any(
            h == height and isinstance(m, Vote) and m.kind == VoteKind.PRECOMMIT
            and m.round == round_ and m.block_hash == block_hash
            for h, m in self._entries
        )

    def precommit_heights(self) -> list[int]:
        """The heights at which this log holds a non-nil precommit of this key, ascending."""
        return sorted({h for h, m in self._entries
                       if isinstance(m, Vote) and m.kind == VoteKind.PRECOMMIT and m.block_hash is not None})

    def prune(self, below: int, *, keep_precommits_from: int | None = None) -> None:
        """Drop entries of heights < ``below`` (they are committed), atomically.

        With ``keep_precommits_from``, non-nil precommits of heights >= that bound are
        kept too (blocks, proposals and proofs of lock below ``below`` still go): the
        double-sign check needs them, and nothing else reads heights below ``below``.
        """

        def kept(h: int, m: WALEntry) -> bool:
            if h >= below:
                return True
            return (keep_precommits_from is not None and h >= keep_precommits_from and isinstance(m, Vote)
                    and m.kind == VoteKind.PRECOMMIT and m.block_hash is not None)

        keep = [(h, m) for h, m in self._entries if kept(h, m)]
        keep_blocks = [(h, b) for h, b in self._blocks if h >= below]
        if len(keep) == len(self._entries) and len(keep_blocks) == len(self._blocks):
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for h, b in keep_blocks:  # blocks first: a message never precedes its block
                rec = codec.encode({"h": h, "b": b})
                f.write(_LEN.pack(_BLOCK_FLAG | len(rec)) + rec)
            for h, m in keep:
                rec = codec.encode({"h": h, "m": message_to_map(m)})
                f.write(_LEN.pack(len(rec)) + rec)
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self.path)
        if self.durable:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._entries = keep
        self._blocks = keep_blocks

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
