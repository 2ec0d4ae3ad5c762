"""MemoryTrimmer (medchaind/node/memtrim.py): after a commit, glibc's ``malloc_trim`` runs
in a worker thread at most once per interval; never without a commit, never where
there is no glibc, never when the interval is 0."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

import pytest
import trio
import trio.testing

from medchaind.node.memtrim import M_MMAP_THRESHOLD, MemoryTrimmer, load_malloc_trim, set_mmap_threshold


async def inline(fn: Callable[[], bool]) -> bool:
    """Run the trim on the loop: under the mock clock a worker thread would let time jump."""
    await trio.lowlevel.checkpoint()
    return fn()


async def test_trims_once_after_a_commit_and_not_while_idle(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[int] = []

    def trim() -> bool:
        calls.append(1)
        return True

    trimmer = MemoryTrimmer(trim, interval_s=1.0, run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(trimmer.run)
        await trio.sleep(10)  # idle: no commit, no trim
        assert calls == [] and trimmer.trims == 0
        trimmer.committed()
        await trio.sleep(0.1)
        assert calls == [1] and trimmer.trims == 1
        await trio.sleep(10)  # still one: nothing committed since
        assert trimmer.trims == 1
        nursery.cancel_scope.cancel()


async def test_commits_within_the_interval_make_one_more_trim(autojump_clock: trio.testing.MockClock) -> None:
    trimmer = MemoryTrimmer(lambda: True, interval_s=5.0, run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(trimmer.run)
        trimmer.committed()
        await trio.sleep(0.1)
        assert trimmer.trims == 1
        for _ in range(50):  # a burst of blocks inside one interval
            trimmer.committed()
            await trio.sleep(0.05)
        assert trimmer.trims == 1  # rate-limited
        await trio.sleep(5)
        assert trimmer.trims == 2  # the burst is trimmed once, after the interval
        await trio.sleep(20)
        assert trimmer.trims == 2
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("trim, interval", [(None, 1.0), (lambda: True, 0.0)])
async def test_off_without_glibc_or_with_interval_zero(trim: object, interval: float) -> None:
    trimmer = MemoryTrimmer(trim, interval)  # type: ignore[arg-type]
    assert not trimmer.enabled
    trimmer.committed()
    with trio.fail_after(5):
        await trimmer.run()  # returns at once: nothing to run
    assert trimmer.trims == 0


def test_load_malloc_trim_on_this_machine() -> None:
    trim = load_malloc_trim()
    if not sys.platform.startswith("linux"):
        assert trim is None
        return
    libc_name = ctypes.util.find_library("c") or ""
    if "musl" in libc_name:  # pragma: no cover - the test machines run glibc
        assert trim is None
        return
    assert trim is not None
    assert trim() in (True, False)  # it runs, and says whether it released memory


def test_load_malloc_trim_is_none_where_it_cannot_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert load_malloc_trim() is None
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert load_malloc_trim() is None


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def test_set_mmap_threshold_on_this_machine() -> None:
    """A heap that must grow for a block at or above the threshold maps it on its own
    (mallinfo2's hblks counts it), below it grows the heap; 0 or less changes nothing."""
    if not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""):
        assert set_mmap_threshold(128 * 1024) is False  # pragma: no cover - the test machines run glibc
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallinfo2.restype = _Mallinfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    assert set_mmap_threshold(0) is False and set_mmap_threshold(-1) is False
    size = 20 << 20  # larger than any free chunk a test process's heaps hold
    try:
        assert set_mmap_threshold(128 * 1024) is True
        before = libc.mallinfo2().hblks
        p = libc.malloc(size)
        assert libc.mallinfo2().hblks == before + 1  # mapped on its own, not from a heap
        libc.free(p)
        assert libc.mallinfo2().hblks == before  # and unmapped when freed
        assert set_mmap_threshold(32 << 20) is True
        p = libc.malloc(size)
        assert libc.mallinfo2().hblks == before  # below the threshold now: from a heap
        libc.free(p)
    finally:
        assert set_mmap_threshold(128 * 1024) is True  # the node's default, for later tests


def test_set_mmap_threshold_is_false_where_it_cannot_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    assert M_MMAP_THRESHOLD == -3  # glibc malloc.h
    monkeypatch.setattr(sys, "platform", "darwin")
    assert set_mmap_threshold(128 * 1024) is False
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name: str) -> None:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert set_mmap_threshold(128 * 1024) is False


def test_tune_collector_sets_generation_0_only_and_0_leaves_it() -> None:
    import gc

    from medchaind.node.memtrim import tune_collector

    saved = gc.get_threshold()
    try:
        assert tune_collector(0) is False
        assert gc.get_threshold() == saved
        assert tune_collector(5_000) is True
        assert gc.get_threshold() == (5_000, saved[1], saved[2])
    finally:
        gc.set_threshold(*saved)


def test_freeze_long_lived_moves_the_survivors_out_of_later_passes() -> None:
    import gc

    from medchaind.node.memtrim import freeze_long_lived

    assert gc.get_freeze_count() == 0
    kept = [[i] for i in range(1000)]  # tracked containers alive at the freeze
    try:
        frozen = freeze_long_lived()
        assert frozen == gc.get_freeze_count() >= len(kept)
        assert all(gc.is_tracked(x) for x in kept)
        assert gc.get_count()[2] == 0 and sum(map(len, (gc.get_objects(g) for g in range(3)))) < frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
