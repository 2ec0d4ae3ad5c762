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

The mmap threshold (:func:`set_mmap_threshold`, ``node.malloc_mmap_threshold``). When no
free chunk fits a request and a heap would have to grow, glibc serves a request of at
least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with its own ``mmap`` instead,
unmapped again by ``free``. By default the threshold *slides*: each time such a
block is freed, the threshold rises to its size (up to 32 MiB), so from then on the
node's large, short-lived buffers (LevelDB's compaction and table blocks, a block's
write batch and encodings, multi-MiB IPC and gossip payloads) are carved out of the
heaps and arenas instead, and whatever small long-lived object lands after them keeps
the space from being trimmed. On a node over a 1,000,000-tx chain that free-but-kept
space was most of the anonymous memory beyond the live heap (``mallinfo2``: 117 MiB
free against 65 MiB in use, after 60,000 txs). Fixing the threshold at 128 KiB (which
also stops the sliding) keeps those buffers in their own mappings: peak anonymous RSS
over 60,000 txs fell from 261/281 to 196/198 MiB, idle from 203/227 to 177/172 MiB. The
possible price is CPU (each large buffer's pages fault in fresh): +20-160 us/tx on a
loaded machine, none visible in quieter alternated pairs (docs/benchmarks.md, issue 14
session 4, "Memory per node"); 0 restores glibc's behaviour. It is set once, at node start, before the
database is opened.

The cyclic collector (:func:`tune_collector`, ``node.gc_threshold``; the daemon only, never
a process that merely embeds a :class:`~medchaind.node.node.Node`, such as the tests).
CPython's collector runs a generation-0 pass every 700 net container allocations, and a
full pass, which visits every tracked object of the process, whenever the survivors of the
younger passes have grown by a quarter. A node allocates thousands of short-lived
containers per block, so on a 4-authority burst the collector took ~0.54 s of a node's
~8.1 s of CPU, 0.32-0.39 s of it in 6-7 full passes (docs/benchmarks.md, issue 14
session 5). Two changes, both about when the collector looks, neither about what is
garbage: (1) the generation-0 threshold is raised (default 5,000), so most of a block's
temporaries are freed by reference counting before a pass sees them and fewer survive
into the older generations, whose growth is what triggers full passes; (2) once the node
is ready, one full collection runs and ``gc.freeze()`` moves the ~110,000 objects that
survive it (modules, classes, functions, the node's long-lived structures) to the
permanent generation, which no later pass visits. Measured together: full passes 8 ->
2 per burst, the collector's CPU ~0.54 -> ~0.2 s per node, -3 to -5% CPU per tx. The
price: cyclic garbage waits up to 5,000 allocations instead of 700 before it is found,
and objects frozen at start are never collected (they live as long as the process
anyway). ``0`` leaves the collector as Python sets it and freezes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)


def _glibc_function(name: str, argtypes: list[Any]) -> Any | None:
    """The C library's function ``name`` returning int, or None where it has none (not
    Linux, or not glibc: musl has neither ``malloc_trim`` nor ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


def load_malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` as a callable that says whether memory was released;
    None where the C library has no such function (not glibc, or not Linux)."""
    fn = _glibc_function("malloc_trim", [ctypes.c_size_t])
    if fn is None:
        return None

    def trim() -> bool:
        return bool(fn(0))

    return trim


#: mallopt() parameter number of M_MMAP_THRESHOLD (glibc malloc.h)
M_MMAP_THRESHOLD = -3


def set_mmap_threshold(nbytes: int) -> bool:
    """Fix glibc's ``M_MMAP_THRESHOLD`` at ``nbytes`` (which also stops it sliding up);
    True if set. False, changing nothing, where there is no glibc ``mallopt`` (not Linux,
    or another C library) or glibc refuses the value (config.py keeps it <= 32 MiB,
    glibc's documented maximum on 64-bit).
    ``nbytes`` <= 0 changes nothing either (glibc's sliding threshold stays)."""
    fn = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int]) if nbytes > 0 else None
    return fn is not None and bool(fn(M_MMAP_THRESHOLD, nbytes))


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


def tune_collector(threshold0: int) -> bool:
    """Set the cyclic collector's generation-0 threshold (0: leave Python's settings);
    True if it changed anything. Process-wide: for the daemon's process only."""
    if threshold0 <= 0:
        return False
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(threshold0, g1, g2)
    return True


def freeze_long_lived() -> int:
    """Collect once, then move every object that survives to the collector's permanent
    generation, which no later pass visits (``gc.freeze``); returns how many are frozen.
    Call once the node is ready: what exists then lives as long as the process."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

