"""The SIGUSR1 task dump (medchaind/node/taskdump.py): every task, where it waits, no data."""

from __future__ import annotations

import stat
from pathlib import Path

import trio

from medchaind.node.taskdump import coroutine_chain, format_tasks, write_task_dump

SECRET = "patient-name-and-key-material"


async def _waits_on_event(event: trio.Event, secret: str) -> None:
    await _inner_wait(event)


async def _inner_wait(event: trio.Event) -> None:
    await event.wait()


async def test_the_dump_lists_every_task_and_the_coroutines_it_waits_in(tmp_path: Path) -> None:
    event = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(_waits_on_event, event, SECRET, name="alpha")
        async with trio.open_nursery() as inner:
            inner.start_soon(_waits_on_event, event, SECRET, name="beta")
            await trio.testing.wait_all_tasks_blocked()

            text, n = format_tasks(trio.lowlevel.current_root_task())
            path, written = write_task_dump(tmp_path, now=0)
            event.set()

    assert n == written and n >= 3  # the root, the test's own task, alpha, beta
    for name in ("- alpha", "- beta"):
        block = text[text.index(name):].split("\n- ")[0]
        # outermost first, innermost last: the task function, then the helper, then trio
        frames = [line.split()[-1] for line in block.splitlines()[1:]]
        assert frames.index("_waits_on_event") < frames.index("_inner_wait") < frames.index("wait")
    assert "test_taskdump.py:" in text
    # code locations only: no argument or local value reaches the file
    assert SECRET not in text
    assert path == tmp_path / "debug" / "tasks-19700101T000000Z.txt"
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_finished_or_foreign_awaitable_gives_an_empty_chain() -> None:
    async def done() -> None:
        return None

    coro = done()
    try:
        coro.send(None)
    except StopIteration:
        pass
    assert coroutine_chain(coro) == []
    assert coroutine_chain(object()) == []
    assert coroutine_chain(None) == []
