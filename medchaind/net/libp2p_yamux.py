"""Yamux as the node uses it: py-libp2p 0.8.1's muxer, with a read loop that never waits for a write.

Theory of operation
-------------------
One yamux connection carries all streams between two nodes (gossip, ``txs/1``,
``sync/1``, ...) over one Noise session. py-libp2p's :class:`~libp2p.stream_muxer.yamux.
yamux.Yamux` serialises writes with one lock (``_write_lock``), and its read loop
(``handle_incoming``) answers some frames itself: it ACKs (or RSTs) each stream the peer
opens and answers each ping, and it *awaits* each of those 12-byte writes. If the lock is
held by a task whose write is blocked because the TCP send buffer is full, the read loop
waits behind it and stops reading. When the peer is in the same state, neither side reads,
both send buffers stay full, and the connection is dead for good while both nodes still
count each other as connected: no error, no reconnect. Requests to that peer time out one
by one; py-libp2p's ``BasicHost.new_stream`` then resets the failed stream in a shielded
scope, which waits for the same lock with no deadline at all. This is how a node that fell
behind in a 4-authority burst stayed behind (docs/benchmarks.md, issue 14): its sync round's
status request to that peer never returned. ``tests/net/test_net_yamux.py`` reproduces the
deadlock with the stock class on a socket pair with small buffers, and shows this class
completing the same exchange.

go-yamux does not write from its receive loop: control frames go to the send loop's queue
(``sendNoWait``), and a write that makes no progress for ``ConnectionWriteTimeout`` ends the
session. :class:`MedchainYamux` does the same:

* **Header-only frames are queued, not awaited** (:meth:`MedchainYamux._write_frame`): a
  stream's SYN, ACK, FIN and RST, window updates and ping answers are appended to a queue
  and the call returns at once, from the read loop or from any other task. Two header-only
  frames are still written by the task that sends them, since nothing in the read loop
  does: GO_AWAY, which our own close follows at once, and a ping request, which py-libp2p
  times from the end of its write.
* **One order on the wire.** A frame with a body (DATA) is written under the lock after
  everything queued so far, in one write; a writer task (:meth:`MedchainYamux._drain`)
  writes the queue when no data writer takes it first. So each task's frames keep the order
  in which it asked for them: a stream's SYN before its data, its data before its FIN.
* **A connection that cannot write is closed**: a write that has not completed after
  :data:`WRITE_TIMEOUT_S`, or a queue of more than :data:`MAX_QUEUED_CONTROL_FRAMES`
  (a peer that keeps opening streams or pinging while reading nothing of ours), closes the
  secured connection. The read loop then ends as on any broken connection, the swarm drops
  the peer, and the node's reconnect loop redials it (``libp2p_net``, "Connectivity").

What this changes for callers: ``stream.close()``, ``stream.reset()`` and window updates
return before their frame is on the wire (a TCP write never promised delivery either);
a write to a connection already shutting down raises :class:`RawConnError` as before.
The frames themselves, and so the wire protocol, are unchanged.

The module also installs :func:`credit_after_half_window`, go-yamux's rule for receive
credit, in place of py-libp2p's per-read window updates.

How it is installed, and what catches a library upgrade that breaks it:

* py-libp2p 0.8.1 builds ``Yamux`` by name when a connection negotiates yamux (whatever
  ``muxer_opt`` says), so this module rebinds that name in
  ``libp2p.stream_muxer.muxer_multistream``; ``tests/net/test_net_libp2p.py`` checks that
  live connections are :class:`MedchainYamux`;
* the subclass overrides ``_write_frame`` (every frame goes through it),
  ``handle_incoming`` (to run the writer task beside the read loop) and ``__init__``;
  ``tests/net/test_net_yamux.py`` shows the stock class deadlocking and ours completing
  the same exchange, so it fails if either stops being true.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import struct
from typing import Any

import libp2p.stream_muxer.muxer_multistream as _libp2p_muxer_multistream
import trio
from libp2p.network.connection.exceptions import RawConnError
from libp2p.stream_muxer.yamux.yamux import (
    FLAG_SYN,
    HEADER_SIZE,
    TYPE_GO_AWAY,
    TYPE_PING,
    YAMUX_HEADER_FORMAT,
    Yamux,
    YamuxStream,
)

__all__ = ["MAX_QUEUED_CONTROL_FRAMES", "WRITE_TIMEOUT_S", "MedchainYamux", "credit_after_half_window"]

log = logging.getLogger(__name__)

#: a write to the connection (one frame, plus the control frames queued before it) that
#: has not completed after this many seconds closes the connection. go-yamux's
#: ``ConnectionWriteTimeout`` is 10 s; ours is longer because a node of a 2-core host under
#: load may not read for seconds while it executes a large block, and a needless close
#: costs a reconnect and a gossip mesh rebuild.
WRITE_TIMEOUT_S = 30.0

#: control frames (12 bytes each) that may wait for the connection; beyond this the peer
#: is sending much while reading nothing of ours, and the connection is closed
MAX_QUEUED_CONTROL_FRAMES = 4096


def _written_by_sender(frame: bytes) -> bool:
    """Header-only frames that the task sending them waits for (see the module doc)."""
    _version, typ, flags, _stream_id, _length = struct.unpack(YAMUX_HEADER_FORMAT, frame)
    return typ == TYPE_GO_AWAY or (typ == TYPE_PING and bool(flags & FLAG_SYN))


class MedchainYamux(Yamux):
    """py-libp2p's Yamux whose read loop never waits for a write (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._control: collections.deque[bytes] = collections.deque()
        self._control_queued = trio.Event()
        self._failed = False

    async def handle_incoming(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain)
            try:
                await super().handle_incoming()
            finally:
                nursery.cancel_scope.cancel()

    async def _write_frame(self, data: bytes) -> None:
        if self._failed or self.event_closed.is_set():
            raise RawConnError("yamux connection is closed")
        if len(data) == HEADER_SIZE and not _written_by_sender(data):
            if len(self._control) >= MAX_QUEUED_CONTROL_FRAMES:
                await self._fail(f"{len(self._control)} control frames waiting to be written")
            self._control.append(data)
            self._control_queued.set()
            await trio.lowlevel.checkpoint()
            return
        async with self._write_lock:
            await self._send(data)
        await trio.lowlevel.checkpoint()

    async def _drain(self) -> None:
        """Write queued control frames that no data writer took first."""
        while True:
            await self._control_queued.wait()
            self._control_queued = trio.Event()
            async with self._write_lock:
                if not self._control:
                    continue
                try:
                    await self._send(b"")
                except RawConnError:
                    return  # closed by _fail; the read loop ends with the connection
                except Exception as error:  # a broken connection: end it here, not in the nursery
                    await self._close(f"a write failed: {type(error).__name__}")
                    return

    async def _send(self, frame: bytes) -> None:
        """Write the queued control frames and then ``frame``; the caller holds the lock."""
        queued = b"".join(self._control)
        self._control.clear()
        with trio.move_on_after(WRITE_TIMEOUT_S) as deadline:
            await self.secured_conn.write(queued + frame)
        if deadline.cancelled_caught:
            await self._fail(f"a write made no progress for {WRITE_TIMEOUT_S:.0f} s")

    async def _fail(self, reason: str) -> None:
        """Close the connection and raise to the writer."""
        await self._close(reason)
        raise RawConnError(f"yamux connection is closed: {reason}")

    async def _close(self, reason: str) -> None:
        """Close the secured connection once; the read loop's next read fails and it cleans up."""
        if not self._failed:
            self._failed = True
            level = logging.DEBUG if self.event_shutting_down.is_set() else logging.WARNING
            log.log(level, "closing the connection to %s: %s", self.peer_id, reason)
            with contextlib.suppress(Exception):
                await self.secured_conn.close()


# py-libp2p 0.8.1's MuxerMultistream.new_conn builds ``Yamux`` by name for the yamux protocol,
# whatever class ``muxer_opt`` maps it to; tests/net/test_net_libp2p.py checks that live
# connections are MedchainYamux, so it fails if this stops applying.
if getattr(_libp2p_muxer_multistream, "Yamux", None) is Yamux:
    _libp2p_muxer_multistream.Yamux = MedchainYamux  # type: ignore[attr-defined]


async def credit_after_half_window(self: YamuxStream, *, bytes_read: int = 0) -> None:
    """Yamux receive credit as go-yamux gives it (``sendWindowUpdate``): only once the
    reader has consumed at least half the receive window, and then all of it.

    py-libp2p 0.8.1's ``_auto_tune_and_send_window_update`` sends a WINDOW_UPDATE frame
    (a Noise-encrypted write) after nearly every read: each byte of a gossip RPC's
    varint length prefix (read one byte at a time), then each chunk of its body. Measured
    on 4 authorities under tx load, that was ~6% of a node's event loop, and as many
    frames on the wire as data frames. Credit is still only given for bytes the reader
    took, so a stream nobody reads still holds at most its window (see "Request/response"
    in :mod:`medchaind.net.libp2p_net`); the window still grows (py-libp2p's auto-tuning, up to 16 MiB)
    while updates follow each other within 4 RTTs.
    """
    async with self.window_lock:
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        if delta <= 0 or delta < self.target_recv_window // 2:
            return
        self.recv_window += delta
        delta += self._apply_autotune_epoch(buffered)
    await self.send_window_update(delta, skip_lock=True)


if hasattr(YamuxStream, "_auto_tune_and_send_window_update"):  # tests/net/test_net_gossip_wire.py checks it applies
    YamuxStream._auto_tune_and_send_window_update = credit_after_half_window  # type: ignore[method-assign]
