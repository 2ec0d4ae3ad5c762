"""Give the memory a committed block freed back to the operating system (glibc only).

Theory of operation. A block's life allocates many small objects at once (decoded txs,
receipts, trie records, the write batch) and frees them together once it is committed.
CPython hands blocks above 512 bytes, and its own 256 KiB pools once empty, to the C
allocator; glibc's malloc keeps what is freed in its heap (``brk``) and its per-thread
arenas for reuse, and only returns memory from the *top* of the main heap on its own
(``M_TRIM_THRESHOLD``). One long-lived object above the freed region (a mempool entry, a
cached record) pins everything below it, so the resident set of a node creeps up with
the chain although the live heap does not. ``malloc_trim(0)`` walks every arena and
``madvise(MADV_DONTNEED)`` on each whole free page (glibc >= 2.8), which is the known
remedy for this fragmentation (measured: docs/benchmarks.md, issue 14).

It runs off the event loop (a worker thread: ctypes releases the GIL, and the call takes
each arena's lock in turn) and at most every ``interval_s`` seconds, after a block was
committed: a node that commits nothing frees nothing and is not woken. Why not after
every block: one call walks every free chunk, ~12 ms of CPU on a fragmented ~200 MiB
heap even when there is nothing left to release, i.e. ~12 us per tx at 1,000 tx/s if
it ran every second, while under steady load the pages it releases are touched again
at once (measured: 5-7 MiB per call under load, ~36 MiB once a burst is over). The
default (``node.malloc_trim_ms``, 10 s) keeps the cost near 1 ms/s and still hands a
burst's leftovers back soon after the load drops. Where there
is no glibc (musl, macOS) :func:`load_malloc_trim` returns None and nothing runs.
Nothing here is consensus-visible: it changes where freed memory lives, never a value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)


def load_malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` as a callable that says whether memory was released;
    None where the C library has no such function (not glibc, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int

    def trim() -> bool:
        return bool(fn(0))

    return trim


class MemoryTrimmer:
    """Calls ``trim`` in a worker thread after commits, at most every ``interval_s``.

    :meth:`committed` is called (on the loop) for every committed block; :meth:`run` is
    the service task. ``trims`` counts the calls made (statistics, and tests).
    ``run_sync`` runs ``trim`` off the loop (tests pass one that runs it inline, so a
    mock clock sees no thread in flight).
    """

    def __init__(self, trim: Callable[[], bool] | None, interval_s: float, *,
                 run_sync: Callable[[Callable[[], bool]], Awaitable[bool]] = trio.to_thread.run_sync) -> None:
        self.trim = trim
        self.interval_s = interval_s
        self._run_sync = run_sync
        self.trims = 0
        self._pending = trio.Event()

    @property
    def enabled(self) -> bool:
        return self.trim is not None and self.interval_s > 0

    def committed(self) -> None:
        """A block was committed: trim once the interval since the last trim has passed."""
        self._pending.set()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        trim = self.trim
        if trim is None or self.interval_s <= 0:
            if trim is None and self.interval_s > 0:
                log.info("memory trimming off: no glibc malloc_trim on this platform")
            return
        while True:
            await self._pending.wait()
            self._pending = trio.Event()
            await self._run_sync(trim)
            self.trims += 1
            await trio.sleep(self.interval_s)  # a rate limit, not a synchronisation
