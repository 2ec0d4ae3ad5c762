"""The raw connection under Noise reads what the socket holds and serves the next reads
from memory (``_BufferedRawConn`` in medchaind/net/libp2p_net.py).

Whatever the chunks the socket delivers and whatever sizes the reader asks for, the
reads return the same bytes in the same order, none longer than asked; reads of frames
that arrived together cost one receive from the socket, not two per frame. The live
connections of the libp2p tests run over it (tests/net/test_net_libp2p.py)."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind.net.libp2p_net import RAW_READ_CHUNK, _BufferedRawConn


class Chunks:
    """A raw connection that delivers ``chunks`` (at most ``n`` bytes of each per read), then EOF."""

    is_initiator = True

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [c for c in chunks if c]
        self.reads = 0
        self.asked: list[int | None] = []

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        self.asked.append(n)
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        head = self.chunks[0]
        take = head if n is None else head[:n]
        rest = head[len(take):]
        self.chunks[0:1] = [rest] if rest else []
        return take

    def conn_state(self) -> str:
        return "chunks"


def buffered(inner: Any) -> _BufferedRawConn:
    return _BufferedRawConn(inner)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=12),
       st.lists(st.one_of(st.none(), st.integers(0, 400)), min_size=1, max_size=40)
       .filter(lambda sizes: any(n != 0 for n in sizes)))
def test_reads_return_the_stream_in_order_and_never_more_than_asked(
        chunks: list[bytes], sizes: list[int | None]) -> None:
    stream = b"".join(chunks)

    async def main() -> bytes:
        conn = buffered(Chunks(chunks))
        got = b""
        i = 0
        while True:
            n = sizes[i % len(sizes)]
            i += 1
            part = await conn.read(n)
            if n == 0:
                assert part == b""
                continue
            if n is not None:
                assert len(part) <= n
            if not part:
                return got
            got += part

    assert trio.run(main) == stream


def test_frames_that_arrived_together_take_one_receive() -> None:
    frames = [len(body).to_bytes(2, "big") + body for body in (b"a" * 100, b"b" * 3000, b"c" * 7)]

    async def main() -> tuple[list[bytes], Chunks]:
        inner = Chunks([b"".join(frames)])
        conn = buffered(inner)
        out = []
        for _ in frames:
            size = int.from_bytes(await conn.read(2), "big")
            out.append(size.to_bytes(2, "big") + await conn.read(size))
        assert await conn.read(2) == b""  # then EOF, passed through
        return out, inner

    out, inner = trio.run(main)
    assert out == frames
    assert inner.reads == 2  # the frames, then EOF; unbuffered it was six reads, then EOF
    assert inner.asked[0] == RAW_READ_CHUNK


def test_everything_but_reading_is_the_wrapped_connection() -> None:
    inner = Chunks([])
    conn = buffered(inner)
    assert conn.is_initiator is True
    assert conn.conn_state() == "chunks"  # what read_exactly's error message asks for
