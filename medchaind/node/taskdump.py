"""What every task of a running node is waiting on (``kill -USR1 <pid>``).

Theory of operation. A node that stops making progress while its event loop sits idle
(no CPU, no log lines) is waiting on something: a request, a lock, a channel, another
task. Its threads' stacks (``py-spy dump``) show only the loop waiting in ``epoll``; the
answer is in the suspended coroutines of its trio tasks. Go prints every goroutine's
stack on SIGQUIT for the same reason. On SIGUSR1 the daemon walks trio's task tree from
the root task (each task's child nurseries, their tasks, recursively) and writes, per
task, its name and the chain of coroutines it is suspended in (``cr_await``), innermost
last, to ``<datadir>/debug/tasks-<UTC time>.txt`` (owner-only), and logs the path. The
node keeps running; nothing in its state changes.

What a dump holds: task names (function names) and code locations (file, line,
function). No local variable, argument or message is read, so no PHI, key or tx content
can reach the file (issue 14, session 6: a node that fell behind in a burst stayed
behind with an idle loop, and nothing showed what it waited on).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import CoroutineType, FrameType
from typing import Any

import trio

#: coroutine links followed per task at most (a guard against a cycle)
MAX_DEPTH = 200


def _frame_of(awaitable: Any) -> FrameType | None:
    for attr in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, attr, None)
        if frame is not None:
            return frame  # type: ignore[no-any-return]
    return None


def _awaited_by(awaitable: Any) -> Any:
    for attr in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, attr, None)
        if inner is not None:
            return inner
    return None


def coroutine_chain(coro: CoroutineType[Any, Any, Any] | Any) -> list[str]:
    """``file:line function`` of each coroutine ``coro`` is suspended in, outermost first."""
    out: list[str] = []
    current = coro
    for _ in range(MAX_DEPTH):
        if current is None:
            break
        frame = _frame_of(current)
        if frame is not None:
            code = frame.f_code
            out.append(f"{_short(code.co_filename)}:{frame.f_lineno} {code.co_name}")
        current = _awaited_by(current)
    return out


def _short(filename: str) -> str:
    """A library's path from its package, ours from ``medchaind/``, anything else whole."""
    i = filename.rfind("site-packages/")
    if i >= 0:
        return filename[i + len("site-packages/"):]
    i = filename.rfind("medchaind/")
    return filename[i:] if i >= 0 else filename


def walk_tasks(root: trio.lowlevel.Task) -> Iterator[tuple[int, trio.lowlevel.Task]]:
    """Every task under ``root`` (included), depth first, with its depth in the tree."""
    stack: list[tuple[int, trio.lowlevel.Task]] = [(0, root)]
    while stack:
        depth, task = stack.pop()
        yield depth, task
        children = [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        stack.extend((depth + 1, child) for child in sorted(children, key=lambda t: t.name, reverse=True))


def format_tasks(root: trio.lowlevel.Task) -> tuple[str, int]:
    """The dump's text and how many tasks it lists."""
    lines: list[str] = []
    n = 0
    for depth, task in walk_tasks(root):
        n += 1
        indent = "  " * depth
        lines.append(f"{indent}- {task.name}")
        lines.extend(f"{indent}    {where}" for where in coroutine_chain(task.coro))
    return "\n".join(lines) + "\n", n


def write_task_dump(datadir: Path, *, now: float | None = None) -> tuple[Path, int]:
    """Write the task tree of the running trio loop under ``datadir/debug``; returns the
    file and the number of tasks. Call from a task of that loop."""
    text, n = format_tasks(trio.lowlevel.current_root_task())
    folder = datadir / "debug"
    folder.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    path = folder / f"tasks-{stamp}.txt"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path, n
