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
written once per block, in the same write and fsync as the first message that names it
and just before it; a block record has
the top bit of its length word set (``0x80000000 | length``), so each kind keeps its
own size limit and a damaged length is still recognised as damage. Without the block a
restarted authority that proposed, or is locked on, a value could not propose it again
(Tendermint re-proposes its valid value), and a single authority would halt. A torn last
record (crash mid-write) is cut off on open; anything else malformed is an error that
names the file and offset, because silently losing a signed message could let the node
equivocate.

Entries below the committed height are pruned with a **mark**, a message-length record
``{"h": below, "k": keep_precommits_from or null}`` appended without an fsync:
reading the file applies each mark to the records before it, so the log a restarted node
reads is the one this process saw. The records a mark drops stay in the file until they
add up to ``compact_after_bytes`` (4 MiB); then :meth:`WAL.compact` rewrites the live
records atomically (temporary file, fsync, rename, fsync of the directory). A rewrite per
committed height (as before issue 14) cost two fsyncs and a re-encoding of what was kept,
on the engine's path from one height to the next. A mark lost in a crash
(it is not fsync'd) loses only the prune: the entries of committed heights it dropped come
back, as they did when a node crashed between its commit and its prune, and the next
prune drops them again. Everything read back is this key's own history either way.

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
#: bytes of dropped records (and marks) after which :attr:`WAL.compaction_due` is True
COMPACT_AFTER_BYTES = 4 * 1024 * 1024

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
    def __init__(self, path: Path, *, durable: bool = True, compact_after_bytes: int = COMPACT_AFTER_BYTES) -> None:
        self.path = path
        #: fsync every append and compaction (a node always does). ``durable=False`` is for
        #: in-process simulations only (medchaind.testing.cluster): there one process plays
        #: n machines, so the n fsyncs of a step, which would run in parallel on n disks,
        #: are serialised and dominate the wall time; a simulated crash cancels tasks and
        #: loses nothing the page cache holds.
        self.durable = durable
        self.compact_after_bytes = compact_after_bytes
        # (height, entry, size of its record in the file), in file order
        self._entries: list[tuple[int, WALEntry, int]] = []
        self._blocks: list[tuple[int, bytes, int]] = []
        self._file: Any = None
        #: bytes in the file (records the log still holds, dropped ones and prune marks)
        self._size = 0
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
                    self._blocks.append((rec["h"], rec["b"], 4 + n))
                elif not is_block and set(rec) == {"h", "m"}:
                    self._entries.append((rec["h"], entry_from_map(rec["m"]), 4 + n))
                elif not is_block and set(rec) == {"h", "k"} and (rec["k"] is None or type(rec["k"]) is int):
                    self._drop(rec["h"], rec["k"])  # a prune mark
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
        self._size = good

    def _write(self, data: bytes, *, sync: bool) -> None:
        self._file.write(data)
        self._file.flush()
        if sync and self.durable:
            os.fsync(self._file.fileno())
        self._size += len(data)

    def _block_record(self, height: int, block: bytes) -> bytes:
        rec = codec.encode({"h": height, "b": block})
        if len(rec) > MAX_BLOCK_RECORD:
            raise StoreError(f"{self.path}: a block of {len(block)} bytes is over the WAL's limit")
        return _LEN.pack(_BLOCK_FLAG | len(rec)) + rec

    @staticmethod
    def _entry_record(height: int, message: WALEntry) -> bytes:
        rec = codec.encode({"h": height, "m": message_to_map(message)})
        return _LEN.pack(len(rec)) + rec

    def append_block(self, height: int, block: bytes) -> None:
        """Make ``block`` (encoded) durable for ``height`` before a message names it."""
        data = self._block_record(height, block)
        self._write(data, sync=True)
        self._blocks.append((height, block, len(data)))

    def blocks(self, height: int) -> tuple[bytes, ...]:
        """The encoded blocks written for ``height``, in order."""
        return tuple(b for h, b, _ in self._blocks if h == height)

    def max_height(self) -> int | None:
        """The highest height with an entry, or None for an empty log."""
        return max((h for h, _, _ in self._entries), default=None)

    def entries(self, height: int) -> tuple[WALEntry, ...]:
        return tuple(m for h, m, _ in self._entries if h == height)

    def append(self, height: int, message: WALEntry, *, block: bytes | None = None) -> None:
        """Make ``message`` durable for ``height``: one write and one fsync.

        ``block``: the encoded block the message names, when the log does not hold it yet;
        its record goes first, in the same write and under the same fsync (the two records
        are exactly those of :meth:`append_block` then :meth:`append`).
        """
        head = b"" if block is None else self._block_record(height, block)
        rec = self._entry_record(height, message)
        self._write(head + rec, sync=True)
        if block is not None:
            self._blocks.append((height, block, len(head)))
        self._entries.append((height, message, len(rec)))

    def knows_precommit(self, height: int, round_: int, block_hash: bytes) -> bool:
        """Whether this log holds this key's precommit for ``block_hash`` at (height, round)."""
        return any(
            h == height and isinstance(m, Vote) and m.kind == VoteKind.PRECOMMIT
            and m.round == round_ and m.block_hash == block_hash
            for h, m, _ in self._entries
        )

    def precommit_heights(self) -> list[int]:
        """The heights at which this log holds a non-nil precommit of this key, ascending."""
        return sorted({h for h, m, _ in self._entries
                       if isinstance(m, Vote) and m.kind == VoteKind.PRECOMMIT and m.block_hash is not None})

    def _drop(self, below: int, keep_precommits_from: int | None) -> bool:
        """Drop what a prune to ``below`` drops from the log's view; whether anything went."""

        def kept(h: int, m: WALEntry) -> bool:
            if h >= below:
                return True
            return (keep_precommits_from is not None and h >= keep_precommits_from and isinstance(m, Vote)
                    and m.kind == VoteKind.PRECOMMIT and m.block_hash is not None)

        keep = [e for e in self._entries if kept(e[0], e[1])]
        keep_blocks = [b for b in self._blocks if b[0] >= below]
        if len(keep) == len(self._entries) and len(keep_blocks) == len(self._blocks):
            return False
        self._entries, self._blocks = keep, keep_blocks
        return True

    def prune(self, below: int, *, keep_precommits_from: int | None = None) -> None:
        """Drop entries of heights < ``below`` (they are committed).

        With ``keep_precommits_from``, non-nil precommits of heights >= that bound are
        kept too (blocks, proposals and proofs of lock below ``below`` still go): the
        double-sign check needs them, and nothing else reads heights below ``below``.

        Cheap: the log's view changes at once, and the file gets a prune mark (one small
        write, no fsync; see the module docstring). The dropped records leave the file
        when :meth:`compact` runs, which the caller does once :attr:`compaction_due`.
        """
        if not self._drop(below, keep_precommits_from):
            return
        mark = codec.encode({"h": below, "k": keep_precommits_from})
        self._write(_LEN.pack(len(mark)) + mark, sync=False)

    def _live(self) -> int:
        """Bytes of the records the log still holds (a few heights' worth: summed on demand)."""
        return sum(e[2] for e in self._entries) + sum(b[2] for b in self._blocks)

    @property
    def compaction_due(self) -> bool:
        """Whether the file holds ``compact_after_bytes`` or more of dropped records and marks."""
        dropped = self._size - self._live()
        return dropped > 0 and dropped >= self.compact_after_bytes

    def compact(self) -> None:
        """Rewrite the file with only the records the log holds, atomically (it fsyncs)."""
        if self._size == self._live():
            return
        tmp = self.path.with_suffix(".tmp")
        # blocks first: a message never precedes its block
        blocks = [(h, b, self._block_record(h, b)) for h, b, _ in self._blocks]
        entries = [(h, m, self._entry_record(h, m)) for h, m, _ in self._entries]
        data = b"".join(r for _, _, r in blocks) + b"".join(r for _, _, r in entries)
        with open(tmp, "wb") as f:
            f.write(data)
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
        self._blocks = [(h, b, len(r)) for h, b, r in blocks]
        self._entries = [(h, m, len(r)) for h, m, r in entries]
        self._size = len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
