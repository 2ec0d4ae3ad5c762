"""The consensus write-ahead log (medchaind/consensus/wal.py).

The WAL is what stops a restarted authority from signing two different messages for
one (height, round, step): every vote and proposal is appended and fsync'd before it is
signed, and on restart the entries of the current height go back into the core. So the
properties that matter are durability and order (reopen gives back exactly what was
appended, in order), recovery from a crash mid-append (a torn last record is cut off
and the log stays usable), and refusing to guess (a damaged record anywhere else is an
error naming the file and offset, never a silent loss).

Record format: ``u32 big-endian length || canonical CBOR {"h": height, "m": message}``;
a block record sets the length word's top bit; a prune is a mark ``{"h": below, "k":
keep_precommits_from or null}``, and the dropped records leave the file when it is compacted.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from consensus_kit import CHAIN_ID, proposal, value, vote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medchaind import codec, core
from medchaind.consensus import wal as wal_mod
from medchaind.consensus.wal import MAX_RECORD, WAL, message_to_map
from medchaind.errors import StoreError

PREVOTE, PRECOMMIT = core.VoteKind.PREVOTE, core.VoteKind.PRECOMMIT


def record(height: int, message: core.Message) -> bytes:
    body = codec.encode({"h": height, "m": message_to_map(message)})
    return struct.pack(">I", len(body)) + body


def block_record(height: int, block: bytes) -> bytes:
    body = codec.encode({"h": height, "b": block})
    return struct.pack(">I", 0x8000_0000 | len(body)) + body


def mark_record(below: int, keep: int | None = None) -> bytes:
    body = codec.encode({"h": below, "k": keep})
    return struct.pack(">I", len(body)) + body


def offsets(path: Path) -> list[int]:
    """Start offset of every complete record in the file."""
    data = path.read_bytes()
    out, off = [], 0
    while off + 4 <= len(data):
        (n,) = struct.unpack_from(">I", data, off)
        if off + 4 + n > len(data):
            break
        out.append(off)
        off += 4 + n
    return out


def reread(path: Path, height: int) -> tuple[object, ...]:
    """The entries of ``height`` as a restarted node reads them (a fresh WAL, closed after)."""
    w = WAL(path)
    try:
        return w.entries(height)
    finally:
        w.close()


def file_records(path: Path) -> list[bytes]:
    """Every complete record of the file, length word included."""
    data = path.read_bytes()
    out, off = [], 0
    while off + 4 <= len(data):
        end = off + 4 + (struct.unpack_from(">I", data, off)[0] & 0x7FFF_FFFF)
        assert end <= len(data), "a torn record"
        out.append(data[off:end])
        off = end
    return out


def ends_on_a_record_boundary(path: Path) -> bool:
    data = path.read_bytes()
    off = 0
    while off + 4 <= len(data):
        off += 4 + struct.unpack_from(">I", data, off)[0]
    return off == len(data)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "consensus.wal"


# What a proposer and a validator append at heights 5 and 6, in signing order.
H5 = (
    proposal("A", value("b5"), height=5),
    vote("A", "b5", height=5),
    vote("A", "b5", height=5, kind=PRECOMMIT),
    vote("A", None, height=5, round_=1),  # nil prevote in round 1
    proposal("A", value("b5"), height=5, round_=2, pol_round=0),  # re-proposal with a POL
)
H6 = (vote("A", "b6", height=6), vote("A", "b6", height=6, kind=PRECOMMIT))


def fill(w: WAL) -> None:
    # heights interleave in the file: a late message of 5 after the first of 6
    w.append(5, H5[0])
    w.append(5, H5[1])
    w.append(6, H6[0])
    for m in H5[2:]:
        w.append(5, m)
    w.append(6, H6[1])


def test_entries_are_grouped_by_height_in_append_order(path: Path) -> None:
    w = WAL(path)
    assert w.entries(5) == ()
    fill(w)
    assert w.entries(5) == H5
    assert w.entries(6) == H6
    assert w.entries(4) == () and w.entries(7) == ()
    w.close()


def test_a_missing_file_is_an_empty_log_and_is_created(path: Path) -> None:
    w = WAL(path)
    assert path.exists() and path.read_bytes() == b""
    w.close()


def test_reopen_restores_every_entry_in_order(path: Path) -> None:
    w = WAL(path)
    fill(w)
    w.close()
    again = WAL(path)
    assert again.entries(5) == H5
    assert again.entries(6) == H6
    again.close()


def test_votes_and_proposals_round_trip_signed_and_unsigned(path: Path) -> None:
    msgs: list[core.Message] = [
        vote("B", "x", height=9, round_=3, kind=PREVOTE),
        vote("B", None, height=9, round_=3, kind=PRECOMMIT),
        vote("B", "x", height=9, signed=False),  # the core hands the WAL unsigned messages
        proposal("B", value("x"), height=9, round_=4, pol_round=2),
        proposal("B", value("x"), height=9, signed=False),
    ]
    w = WAL(path)
    for m in msgs:
        w.append(9, m)
    w.close()
    got = reread(path, 9)
    assert got == tuple(msgs)
    # not just equal: the same types, the same kind enum, signatures that still verify
    assert [type(m) for m in got] == [type(m) for m in msgs]
    v0, v1, v2, p3, p4 = got
    assert isinstance(v0, core.Vote) and isinstance(v1, core.Vote) and isinstance(v2, core.Vote)
    assert isinstance(p3, core.Proposal) and isinstance(p4, core.Proposal)
    assert v0.kind is PREVOTE and v1.kind is PRECOMMIT
    assert core.verify_vote(CHAIN_ID, v0) and core.verify_proposal(CHAIN_ID, p3)
    assert v2.signature == b"" and p4.signature == b""


def test_the_file_is_exactly_the_sequence_of_records(path: Path) -> None:
    w = WAL(path)
    fill(w)
    w.close()
    expected = b"".join(record(5, m) for m in H5[:2]) + record(6, H6[0])
    expected += b"".join(record(5, m) for m in H5[2:]) + record(6, H6[1])
    assert path.read_bytes() == expected


class _OsWithFsync:
    """``os`` as the WAL module sees it, with ``fsync`` recorded."""

    def __init__(self, fsync: Callable[[int], None]) -> None:
        self.fsync = fsync

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors of every fsync the WAL module makes from now on (each still done)."""
    fds: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fds.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(wal_mod, "os", _OsWithFsync(fsync))
    return fds


def test_an_append_is_on_disk_and_fsynced_before_append_returns(path: Path, synced: list[int]) -> None:
    w = WAL(path)
    w.append(5, H5[0])
    assert len(synced) == 1
    # a second reader (the restarted node) sees it without the writer closing
    assert reread(path, 5) == (H5[0],)
    w.append(5, H5[1])
    assert len(synced) == 2
    assert reread(path, 5) == H5[:2]
    w.close()


def test_a_message_and_the_block_it_names_are_one_write_and_one_fsync(path: Path, synced: list[int]) -> None:
    w = WAL(path)
    w.append(5, H5[0], block=b"block five")
    assert len(synced) == 1
    # the very records append_block + append write, block first
    assert path.read_bytes() == block_record(5, b"block five") + record(5, H5[0])
    w.append(5, H5[1])  # names the same block: no block this time
    assert len(synced) == 2
    w.close()
    again = WAL(path)
    assert again.blocks(5) == (b"block five",) and again.entries(5) == H5[:2]
    again.close()


def polka(tag: str, *, height: int = 5, round_: int = 1) -> core.PolkaRecord:
    """2f+1 (here: three of four) signed prevotes for ``tag``: a proof of lock."""
    votes = tuple(vote(n, tag, height=height, round_=round_) for n in "ABC")
    return core.PolkaRecord(core.Height(height), core.Round(round_), value(tag), votes)


def test_a_proof_of_lock_round_trips_among_the_messages(path: Path) -> None:
    w = WAL(path)
    w.append(5, H5[0])
    w.append(5, polka("b5", round_=0))
    w.append(5, H5[2])
    w.append(6, polka("b6", height=6, round_=2))
    w.close()
    again = WAL(path)
    assert again.entries(5) == (H5[0], polka("b5", round_=0), H5[2])
    assert again.entries(6) == (polka("b6", height=6, round_=2),)
    restored = again.entries(5)[1]
    assert isinstance(restored, core.PolkaRecord)
    assert all(core.verify_vote(CHAIN_ID, v) for v in restored.votes)  # still a proof
    again.prune(6)
    again.close()
    assert reread(path, 6) == (polka("b6", height=6, round_=2),)


def test_a_large_proof_of_lock_fits_in_a_record(path: Path) -> None:
    # a POL holds 2f+1 signed prevotes; with 100 authorities that is 67 votes
    votes = tuple(vote(f"V{i}", "b5", round_=1) for i in range(67))
    big = core.PolkaRecord(core.Height(5), core.Round(1), value("b5"), votes)
    w = WAL(path)
    w.append(5, big)
    w.close()
    assert reread(path, 5) == (big,)


# ------------------------------------------------------------------ torn tail


def _three(path: Path) -> tuple[list[int], int]:
    w = WAL(path)
    w.append(5, H5[0])
    w.append(5, H5[1])
    w.append(5, H5[2])
    w.close()
    offs = offsets(path)
    assert len(offs) == 3
    return offs, path.stat().st_size


# How much of the last record reached the disk before the crash.
TORN = [
    pytest.param(lambda start, end: start + 1, id="one byte of the length"),
    pytest.param(lambda start, end: start + 3, id="three bytes of the length"),
    pytest.param(lambda start, end: start + 4, id="the length and no body"),
    pytest.param(lambda start, end: start + 4 + (end - start - 4) // 2, id="half the body"),
    pytest.param(lambda start, end: end - 1, id="all but the last byte"),
]


@pytest.mark.parametrize("cut", TORN)
def test_a_torn_last_record_is_cut_off_and_the_log_stays_appendable(path: Path, cut: object) -> None:
    offs, size = _three(path)
    with open(path, "r+b") as f:
        f.truncate(cut(offs[2], size))  # type: ignore[operator]

    w = WAL(path)
    assert w.entries(5) == H5[:2]
    assert path.stat().st_size == offs[2]  # the partial record is gone from the file too
    w.append(5, H5[3])
    w.append(6, H6[0])
    w.close()

    again = WAL(path)
    assert again.entries(5) == (H5[0], H5[1], H5[3])
    assert again.entries(6) == (H6[0],)
    assert offsets(path)[-1] + len(record(6, H6[0])) == path.stat().st_size
    again.close()


def test_a_log_torn_inside_its_first_record_opens_empty(path: Path) -> None:
    offs, size = _three(path)
    with open(path, "r+b") as f:
        f.truncate(offs[1] - 5)
    w = WAL(path)
    assert w.entries(5) == ()
    assert path.stat().st_size == 0
    w.append(5, H5[0])
    w.close()
    assert reread(path, 5) == (H5[0],)


# ------------------------------------------------------------------ damaged records


def _damage_body(data: bytearray, off: int) -> None:
    data[off + 4] = 0xFF  # a CBOR "break" where the record map should start


def _damage_length_huge(data: bytearray, off: int) -> None:
    struct.pack_into(">I", data, off, MAX_RECORD + 1)


def _damage_length_short(data: bytearray, off: int) -> None:
    (n,) = struct.unpack_from(">I", data, off)
    struct.pack_into(">I", data, off, n - 3)


DAMAGE = [
    pytest.param(_damage_body, id="body is not CBOR"),
    pytest.param(_damage_length_huge, id="length above MAX_RECORD"),
    pytest.param(_damage_length_short, id="length too short"),
]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_record_in_the_middle_is_an_error_naming_file_and_offset(path: Path, damage: object) -> None:
    offs, _ = _three(path)
    data = bytearray(path.read_bytes())
    damage(data, offs[1])  # type: ignore[operator]
    path.write_bytes(bytes(data))

    with pytest.raises(StoreError) as exc:
        WAL(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert f"offset {offs[1]}" in msg
    assert path.read_bytes() == bytes(data)  # nothing was cut off or rewritten


WRONG_SHAPE = [
    pytest.param({"h": 5}, id="no message"),
    pytest.param({"h": 5, "k": "4"}, id="prune mark with a text bound"),
    pytest.param({"h": 5, "k": 4, "m": {"t": "vote", **H5[1].to_map()}}, id="prune mark with a message"),
    pytest.param({"h": "5", "m": {"t": "vote", **H5[1].to_map()}}, id="height as text"),
    pytest.param({"h": 5, "m": {"t": "vote", **H5[1].to_map()}, "x": 1}, id="extra field"),
    pytest.param({"h": 5, "m": {"t": "commit"}}, id="unknown message type"),
    pytest.param({"h": 5, "m": H5[1].to_map()}, id="message without type"),
    pytest.param({"h": 5, "m": {"t": "vote", **H5[1].to_map(), "kind": 3}}, id="vote of kind 3"),
    pytest.param({"h": 5, "m": {"t": "proposal", **H5[0].to_map(), "pol_round": 7}}, id="pol_round not below round"),
    pytest.param([5, "vote"], id="a list, not a map"),
    pytest.param({"h": 5, "m": {**message_to_map(polka("b5")), "extra": 0}}, id="polka with an extra field"),
    pytest.param({"h": 5, "m": {**message_to_map(polka("b5")), "votes": b""}}, id="polka votes not a list"),
    pytest.param(
        {"h": 5, "m": {**message_to_map(polka("b5")), "votes": [{**H5[1].to_map(), "kind": 9}]}},
        id="polka with a malformed vote",
    ),
]


@pytest.mark.parametrize("rec", WRONG_SHAPE)
def test_a_well_formed_cbor_record_of_the_wrong_shape_is_an_error(path: Path, rec: object) -> None:
    body = codec.encode(rec)
    bad = struct.pack(">I", len(body)) + body
    first = record(5, H5[0])
    path.write_bytes(first + bad + record(5, H5[2]))
    with pytest.raises(StoreError, match=f"offset {len(first)}"):
        WAL(path)


# BUG (medchaind/consensus/wal.py, _polka_from_map): the fields of a POL record are not
# checked, only its votes. A damaged record that is still well-formed CBOR loads as a
# PolkaRecord with a text height, a null round or a short hash; a null round can reach
# the core at restart (``driver._restore`` computes ``max(... p.round ...)``) and raise
# TypeError there instead of a StoreError naming the file and offset, as the WAL promises for
# anything malformed. Fix: validate height (uint >= 1), round (uint) and block (32
# bytes) like Vote.validate_basic, and that every vote is a prevote for that
# (height, round, block), raising ValidationError.
BAD_POLKA = [
    pytest.param({"round": None}, id="null round"),
    pytest.param({"height": "5"}, id="text height"),
    pytest.param({"block": b"\x01" * 31}, id="31-byte block hash"),
    pytest.param({"votes": [vote("A", "other", round_=1).to_map()]}, id="a vote for another value"),
]


@pytest.mark.parametrize("change", BAD_POLKA)
def test_a_malformed_proof_of_lock_is_an_error(path: Path, change: dict[str, object]) -> None:
    body = codec.encode({"h": 5, "m": {**message_to_map(polka("b5")), **change}})
    path.write_bytes(record(5, H5[0]) + struct.pack(">I", len(body)) + body)
    try:
        w = WAL(path)
    except StoreError as exc:
        assert f"offset {len(record(5, H5[0]))}" in str(exc)
        return
    w.close()
    pytest.fail(f"a malformed POL record loaded: {w.entries(5)[1]!r}")


def test_a_damaged_complete_last_record_is_an_error_not_a_torn_tail(path: Path) -> None:
    # A torn write leaves a *short* record; a full-length record that does not decode
    # is damage, and cutting it off could drop a message the node has signed.
    offs, _ = _three(path)
    data = bytearray(path.read_bytes())
    _damage_body(data, offs[2])
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=f"offset {offs[2]}"):
        WAL(path)


# ------------------------------------------------------------------ prune


def test_prune_keeps_only_heights_at_or_above_the_bound_and_survives_reopen(path: Path) -> None:
    w = WAL(path)
    w.append(3, vote("A", "b3", height=3))
    fill(w)
    w.append(4, vote("A", "b4", height=4))  # an old height appended late
    w.prune(5)
    assert w.entries(3) == () and w.entries(4) == ()
    assert w.entries(5) == H5 and w.entries(6) == H6
    w.close()

    again = WAL(path)
    assert again.entries(3) == () and again.entries(4) == ()
    assert again.entries(5) == H5 and again.entries(6) == H6
    assert not list(path.parent.glob("*.tmp"))  # the rewrite left nothing behind
    again.close()


def test_the_log_stays_appendable_after_a_prune(path: Path) -> None:
    w = WAL(path)
    fill(w)
    w.prune(6)
    w.append(6, vote("A", None, height=6, round_=1))
    w.append(7, vote("A", "b7", height=7))
    w.close()
    again = WAL(path)
    assert again.entries(5) == ()
    assert again.entries(6) == (*H6, vote("A", None, height=6, round_=1))
    assert again.entries(7) == (vote("A", "b7", height=7),)
    again.close()


def test_pruning_everything_then_compacting_leaves_an_empty_file(path: Path) -> None:
    w = WAL(path)
    fill(w)
    w.prune(100)
    assert reread(path, 5) == () and reread(path, 6) == ()  # the mark alone already prunes
    w.compact()
    assert path.read_bytes() == b""
    w.close()
    assert reread(path, 5) == ()


def test_a_prune_is_a_mark_without_fsync_or_rewrite(path: Path, synced: list[int]) -> None:
    w = WAL(path)
    fill(w)
    before, inode, appended = path.read_bytes(), path.stat().st_ino, len(synced)
    w.prune(6, keep_precommits_from=5)
    assert len(synced) == appended  # no fsync
    assert path.stat().st_ino == inode and path.read_bytes() == before + mark_record(6, 5)
    # the kept precommit of height 5 (non-nil, within the bound) and all of height 6
    assert w.entries(5) == (H5[2],) and w.entries(6) == H6
    w.close()
    again = WAL(path)
    assert again.entries(5) == (H5[2],) and again.entries(6) == H6
    again.close()


def test_a_lost_mark_gives_back_only_committed_heights_and_the_next_prune_drops_them(path: Path) -> None:
    w = WAL(path)
    fill(w)
    before = path.read_bytes()
    w.prune(6)
    w.close()
    path.write_bytes(before)  # a crash before the unsynced mark reached the disk
    again = WAL(path)
    assert again.entries(5) == H5 and again.entries(6) == H6  # as if the prune never ran
    again.prune(6)
    assert again.entries(5) == () and again.entries(6) == H6
    again.close()


def test_compaction_is_due_once_the_dropped_records_add_up_and_keeps_only_what_the_log_holds(path: Path) -> None:
    w = WAL(path, compact_after_bytes=len(record(5, H5[0])) * 3)
    w.append_block(5, b"block five")
    fill(w)
    assert not w.compaction_due
    w.prune(5)  # nothing to drop: no mark either
    assert not w.compaction_due and path.read_bytes().endswith(record(6, H6[1]))
    w.prune(6)
    assert w.compaction_due  # H5's five records and its block went
    inode = path.stat().st_ino
    w.compact()
    assert path.stat().st_ino != inode and not w.compaction_due
    assert path.read_bytes() == b"".join(record(6, m) for m in H6)
    assert not list(path.parent.glob("*.tmp"))
    w.append(7, vote("A", "b7", height=7), block=b"block seven")
    w.close()
    again = WAL(path)
    assert again.entries(6) == H6 and again.entries(7) == (vote("A", "b7", height=7),)
    assert again.blocks(7) == (b"block seven",) and again.blocks(5) == ()
    again.close()


def test_a_prune_with_nothing_to_drop_does_not_rewrite_the_file(path: Path) -> None:
    w = WAL(path)
    fill(w)
    inode = path.stat().st_ino
    w.prune(5)
    assert path.stat().st_ino == inode  # no atomic-rename rewrite happened
    w.close()


# ------------------------------------------------------------------ properties

msg_st = st.one_of(
    st.builds(lambda tag, r: polka(tag, height=1, round_=r), st.sampled_from(["x", "y"]), st.integers(0, 3)),
    st.builds(
        lambda tag, r, k, signed: vote("A", tag, height=1, round_=r, kind=k, signed=signed),
        st.sampled_from(["x", "y", None]), st.integers(0, 3), st.sampled_from([PREVOTE, PRECOMMIT]),
        st.booleans(),
    ),
    st.builds(
        lambda tag, r, signed: proposal("A", value(tag), height=1, round_=r, pol_round=r - 1, signed=signed),
        st.sampled_from(["x", "y"]), st.integers(0, 3), st.booleans(),
    ),
)
op_st = st.one_of(
    st.tuples(st.just("append"), st.integers(1, 6), msg_st, st.booleans()),
    st.tuples(st.just("prune"), st.integers(1, 7), st.one_of(st.none(), st.integers(0, 7)), st.none()),
    st.tuples(st.just("reopen"), st.none(), st.none(), st.none()),
    st.tuples(st.just("compact"), st.none(), st.none(), st.none()),
)


def model_kept(h: int, m: object, below: int, keep: int | None) -> bool:
    return h >= below or (keep is not None and h >= keep and isinstance(m, core.Vote)
                          and m.kind is PRECOMMIT and m.block_hash is not None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_st, max_size=14), st.sampled_from([0, 200, 1 << 30]))
def test_the_log_behaves_like_a_list_of_height_message_pairs(
    ops: list[tuple[str, int | None, object, object]], compact_after: int,
) -> None:
    """Appends (some with a block), prunes (some keeping precommits), reopens and
    compactions in any order: the log, reopened or not, is always the model's list, and a
    compacted file holds exactly the records of what the log holds."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "consensus.wal"
        w = WAL(p, compact_after_bytes=compact_after)
        model: list[tuple[int, object]] = []
        blocks: list[tuple[int, bytes]] = []
        for op, h, arg, with_block in ops:
            if op == "append":
                assert h is not None and isinstance(arg, core.Vote | core.Proposal | core.PolkaRecord)
                block = b"block %d.%d" % (h, len(blocks)) if with_block else None
                w.append(h, arg, block=block)
                model.append((h, arg))
                if block is not None:
                    blocks.append((h, block))
            elif op == "prune":
                assert h is not None and (arg is None or isinstance(arg, int))
                w.prune(h, keep_precommits_from=arg)
                model = [(x, y) for x, y in model if model_kept(x, y, h, arg)]
                blocks = [(x, b) for x, b in blocks if x >= h]
            elif op == "reopen":
                w.close()
                w = WAL(p, compact_after_bytes=compact_after)
            if op == "compact" or w.compaction_due:
                w.compact()
                assert sorted(file_records(p)) == sorted([block_record(x, b) for x, b in blocks]
                                                         + [record(x, y) for x, y in model])  # type: ignore[arg-type]
            for height in range(1, 8):
                assert w.entries(height) == tuple(y for x, y in model if x == height)
                assert w.blocks(height) == tuple(b for x, b in blocks if x == height)
            assert w.precommit_heights() == sorted({x for x, y in model if isinstance(y, core.Vote)
                                                    and y.kind is PRECOMMIT and y.block_hash is not None})
        w.close()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_opening_any_file_gives_a_log_or_a_store_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "consensus.wal"
        p.write_bytes(record(5, H5[1]) + data)
        try:
            w = WAL(p)
        except StoreError:
            return
        # what loaded starts with the good record, and the file now ends on a record boundary
        assert w.entries(5)[:1] == (H5[1],)
        assert ends_on_a_record_boundary(p)
        w.append(9, H6[0])
        w.close()
        assert reread(p, 9) == (H6[0],)


def test_block_records_round_trip_prune_with_their_height_and_keep_their_own_limit(path: Path) -> None:
    """Blocks named by this node's messages are logged beside them (restart re-proposal)."""
    w = WAL(path)
    w.append_block(5, b"block five" * 1000)
    fill(w)
    w.append_block(6, b"block six")
    w.close()
    again = WAL(path)
    assert again.blocks(5) == (b"block five" * 1000,) and again.blocks(6) == (b"block six",)
    assert again.entries(5) == H5 and again.entries(6) == H6
    assert again.max_height() == 6
    again.prune(6)
    again.close()
    pruned = WAL(path)
    assert pruned.blocks(5) == () and pruned.blocks(6) == (b"block six",) and pruned.entries(6) == H6
    pruned.close()
    # a block record may be larger than a message record; a message record may not
    big = WAL(path)
    big.append_block(6, b"x" * (MAX_RECORD + 10))
    big.close()
    assert WAL(path).blocks(6)[-1] == b"x" * (MAX_RECORD + 10)
    body = codec.encode({"h": 6, "b": b"y"})
    path.write_bytes(path.read_bytes() + struct.pack(">I", len(body)) + body)  # a block without its flag
    with pytest.raises(StoreError, match="corrupt record"):
        WAL(path)
