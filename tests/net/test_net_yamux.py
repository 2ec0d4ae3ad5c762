"""MedchainYamux: the read loop never waits for a write (medchaind/net/libp2p_yamux.py).

The exchange tests run two muxers over a real socket pair whose kernel buffers are 4 KiB,
so that writes block as they do on a congested connection: each side opens streams and
writes 200 KB on each while it accepts and reads the other side's. The stock py-libp2p
class deadlocks there (both read loops wait to write an ACK behind a blocked data write);
the same exchange completes with ours. The unit tests use an in-memory connection that
records each write, or one whose writes never complete, on trio's mock clock.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest
import trio
import trio.testing
from libp2p.network.connection.exceptions import RawConnError
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedStreamEOF
from libp2p.stream_muxer.yamux.yamux import (
    FLAG_ACK,
    FLAG_SYN,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)

from medchaind.net.libp2p_yamux import MAX_QUEUED_CONTROL_FRAMES, WRITE_TIMEOUT_S, MedchainYamux
from medchaind.node.taskdump import coroutine_chain, walk_tasks
from medchaind.testing.wait import poll_until

CLIENTS = 4  # concurrent writers per side
STREAMS = 3  # streams each writer opens, one after the other
PAYLOAD = 200_000  # bytes written on each stream (under the 256 KiB initial window)


def frame(typ: int, flags: int = 0, stream_id: int = 1, length: int = 0, body: bytes = b"") -> bytes:
    return struct.pack(YAMUX_HEADER_FORMAT, 0, typ, flags, stream_id, length or len(body)) + body


class SocketConn:
    """The part of a secured connection that Yamux uses, over a trio socket stream."""

    def __init__(self, sock: socket.socket, initiator: bool) -> None:
        self.stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.is_initiator = initiator

    async def read(self, n: int | None = None) -> bytes:
        return await self.stream.receive_some(n or 65536)

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self) -> None:
        await self.stream.aclose()

    def get_remote_address(self) -> None:
        return None


class RecordingConn:
    """Records each write; ``stuck`` makes writes wait until the connection is closed."""

    is_initiator = True

    def __init__(self, *, stuck: bool = False, broken: bool = False) -> None:
        self.writes: list[bytes] = []
        self.stuck = stuck
        self.broken = broken
        self.closed = trio.Event()

    async def read(self, n: int | None = None) -> bytes:
        await self.closed.wait()
        return b""

    async def write(self, data: bytes) -> None:
        if self.broken:
            raise trio.BrokenResourceError("connection reset by peer")
        if self.stuck:
            await self.closed.wait()
            raise trio.ClosedResourceError
        self.writes.append(data)

    async def close(self) -> None:
        self.closed.set()

    def get_remote_address(self) -> None:
        return None


def socket_pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a, b


async def exchange(mux: Yamux, received: list[int], written: list[int]) -> None:
    """Open streams and write on them while accepting and reading the peer's streams.

    ``received`` gets the bytes read so far, then each stream's total as it ends;
    ``written`` the bytes written."""
    all_read = trio.Event()

    async def read_all(stream: object) -> None:
        n = 0
        while True:
            try:
                chunk = await stream.read(65536)  # type: ignore[attr-defined]
            except MuxedStreamEOF:
                break
            n += len(chunk)
            received[0] += len(chunk)
        received.append(n)
        if len(received) == 1 + CLIENTS * STREAMS:
            all_read.set()

    async def serve(nursery: trio.Nursery) -> None:
        while True:
            nursery.start_soon(read_all, await mux.accept_stream())

    async def client() -> None:
        for _ in range(STREAMS):
            stream = await mux.open_stream()
            await stream.write(b"x" * PAYLOAD)
            written[0] += PAYLOAD
            await stream.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve, nursery)
        async with trio.open_nursery() as clients:
            for _ in range(CLIENTS):
                clients.start_soon(client)
        await all_read.wait()
        nursery.cancel_scope.cancel()


Progress = list[list[int]]  # received by a, received by b, written by a, written by b


async def run_exchange(cls: type[Yamux], until: Callable[[Progress], bool]) -> tuple[bool, Progress]:
    """Run :func:`exchange` on both sides of a socket pair; stop when it ends or ``until`` holds."""
    a, b = socket_pair()
    muxers = [cls(SocketConn(a, True), ID(b"a")), cls(SocketConn(b, False), ID(b"b"))]  # type: ignore[arg-type]
    progress: Progress = [[0], [0], [0], [0]]
    done = [False]
    async with trio.open_nursery() as nursery:
        for mux in muxers:
            nursery.start_soon(mux.start)
        for mux in muxers:
            await mux.event_started.wait()

        async def both() -> None:
            async with trio.open_nursery() as inner:
                inner.start_soon(exchange, muxers[0], progress[0], progress[2])
                inner.start_soon(exchange, muxers[1], progress[1], progress[3])
            done[0] = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(both)
        with trio.fail_after(60):
            await poll_until(lambda: done[0] or until(progress), interval=0.05)
        nursery.cancel_scope.cancel()
    return done[0], progress


def read_loops_waiting_to_write() -> int:
    """How many yamux read loops are suspended inside a frame write right now."""
    count = 0
    for _, task in walk_tasks(trio.lowlevel.current_root_task()):
        chain = coroutine_chain(task.coro)
        if any("handle_incoming" in line for line in chain) and any("_write_frame" in line for line in chain):
            count += 1
    return count


async def test_stock_yamux_deadlocks_when_both_sides_write() -> None:
    """The upstream defect this module works around. If this fails, py-libp2p's read loop no
    longer waits for writes: MedchainYamux may be removable (see its module doc)."""
    stalled_since: list[float] = []

    def deadlocked(progress: Progress) -> bool:
        if read_loops_waiting_to_write() < 2:
            stalled_since.clear()
            return False
        snapshot = float(sum(p[0] for p in progress))
        if not stalled_since or stalled_since[0] != snapshot:
            stalled_since[:] = [snapshot, trio.current_time()]
            return False
        return trio.current_time() - stalled_since[1] > 1.0  # both parked, nothing moved for 1 s

    completed, _ = await run_exchange(Yamux, deadlocked)
    assert not completed, "py-libp2p's Yamux completed the exchange: re-check MedchainYamux"


async def test_medchain_yamux_completes_the_same_exchange() -> None:
    completed, progress = await run_exchange(MedchainYamux, lambda progress: False)
    assert completed
    expected = CLIENTS * STREAMS * PAYLOAD
    for side in (0, 1):
        assert progress[side][0] == expected
        assert progress[side][1:] == [PAYLOAD] * (CLIENTS * STREAMS)
        assert progress[2 + side] == [expected]


async def test_control_frames_are_queued_and_go_out_before_the_next_data_frame() -> None:
    conn = RecordingConn()
    mux = MedchainYamux(conn, ID(b"peer"))
    ack = frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id=2)
    fin = frame(TYPE_WINDOW_UPDATE, 0x4, stream_id=3)
    data = frame(TYPE_DATA, stream_id=5, body=b"payload")
    async with mux._write_lock:  # another writer holds the connection
        with trio.fail_after(1):
            await mux._write_frame(ack)
            await mux._write_frame(fin)
        assert conn.writes == []
    await mux._write_frame(data)
    assert conn.writes == [ack + fin + data]  # one write, in the order asked


async def test_the_drain_task_writes_control_frames_when_no_data_follows() -> None:
    conn = RecordingConn()
    mux = MedchainYamux(conn, ID(b"peer"))
    frames = [frame(TYPE_PING, FLAG_ACK, stream_id=0, length=7), frame(TYPE_WINDOW_UPDATE, 0, 1, 4096)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mux._drain)
        for f in frames:
            await mux._write_frame(f)
        await trio.testing.wait_all_tasks_blocked()
        assert b"".join(conn.writes) == b"".join(frames)
        nursery.cancel_scope.cancel()


async def test_a_broken_connection_ends_the_drain_task_and_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = RecordingConn(broken=True)
    mux = MedchainYamux(conn, ID(b"peer"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mux._drain)
        await mux._write_frame(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id=2))
        with trio.fail_after(5):
            await conn.closed.wait()  # the task returned instead of raising into the nursery
    assert "a write failed: BrokenResourceError" in caplog.text
    with pytest.raises(RawConnError):
        await mux._write_frame(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id=4))


@pytest.mark.parametrize(
    "sent_by_its_task",
    [frame(TYPE_GO_AWAY, 0, 0, 0), frame(TYPE_PING, FLAG_SYN, 0, 1)],
    ids=["go_away", "ping_request"],
)
async def test_go_away_and_ping_requests_wait_for_the_connection(sent_by_its_task: bytes) -> None:
    conn = RecordingConn()
    mux = MedchainYamux(conn, ID(b"peer"))
    async with trio.open_nursery() as nursery:
        async with mux._write_lock:
            nursery.start_soon(mux._write_frame, sent_by_its_task)
            await trio.testing.wait_all_tasks_blocked()
            assert conn.writes == []
        await trio.testing.wait_all_tasks_blocked()
        assert conn.writes == [sent_by_its_task]


async def test_a_write_that_makes_no_progress_closes_the_connection(autojump_clock: trio.testing.MockClock) -> None:
    conn = RecordingConn(stuck=True)
    mux = MedchainYamux(conn, ID(b"peer"))
    start = trio.current_time()
    with pytest.raises(RawConnError, match="no progress"):
        await mux._write_frame(frame(TYPE_DATA, stream_id=1, body=b"x" * 100))
    assert trio.current_time() - start == pytest.approx(WRITE_TIMEOUT_S)
    assert conn.closed.is_set()
    with pytest.raises(RawConnError, match="closed"):  # later writes fail at once
        await mux._write_frame(frame(TYPE_WINDOW_UPDATE, FLAG_ACK, 3))


async def test_a_peer_that_never_reads_cannot_grow_the_queue_without_bound() -> None:
    conn = RecordingConn()
    mux = MedchainYamux(conn, ID(b"peer"))
    ack = frame(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id=2)
    async with mux._write_lock:
        for _ in range(MAX_QUEUED_CONTROL_FRAMES):
            await mux._write_frame(ack)
        with pytest.raises(RawConnError, match="control frames waiting"):
            await mux._write_frame(ack)
    assert conn.closed.is_set()


async def test_a_shielded_stream_reset_returns_while_a_write_is_stuck(autojump_clock: trio.testing.MockClock) -> None:
    """py-libp2p's BasicHost.new_stream resets a failed stream in a shielded scope; with the
    stock class that reset waited for the write lock with no deadline."""
    conn = RecordingConn()
    mux = MedchainYamux(conn, ID(b"peer"))
    stream = await mux.open_stream()
    conn.stuck = True
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mux._write_frame, frame(TYPE_DATA, stream_id=9, body=b"stuck"))
        await trio.testing.wait_all_tasks_blocked()
        assert mux._write_lock.locked()
        start = trio.current_time()
        with trio.CancelScope(shield=True):
            await stream.reset()
        assert trio.current_time() == start
        assert stream.closed
        nursery.cancel_scope.cancel()
