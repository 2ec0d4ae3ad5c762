"""Waiting on conditions in tests, never on fixed sleeps (STYLE.md, "Tests").

In order of preference:

1. An event of the code under test, awaited directly: ``ledger.wait_height(h)``,
   ``net.wait_peers(n)``, ``conn.wait_closed()``, a subscription's channel.
2. :func:`wait_for`: a richer predicate, re-checked each time such a notification
   fires, e.g. every node committed these txs::

       await wait_for(lambda: ledger.is_committed(h), lambda: ledger.wait_height(ledger.height + 1))

   :class:`Changes` is a notification a test raises itself, from a thin wrapper around
   the code under test (a blob service that notifies after ``save``).
3. Polling, only where nothing can notify, each in one place:

   * :func:`wait_until` (blocking) for another process: a ``medchaind`` node seen
     through its socket or its files, with a deadline of its own;
   * :func:`poll_until` (trio) for state that a third-party stack changes without any
     hook, such as py-libp2p dropping a connection or counting a refused handshake.

   Both re-check at a short interval and return as soon as the condition holds; the
   interval is the polling period of a condition wait, never a delay to let things happen.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio


class WaitTimeout(AssertionError):
    """:func:`wait_until` ran out of time (an AssertionError, so pytest reports it as a failure)."""


async def wait_for(predicate: Callable[[], bool], changed: Callable[[], Awaitable[object]]) -> None:
    """Return once ``predicate()`` holds, re-checking it each time ``changed()`` returns.

    ``changed`` waits for the next notification that can make the predicate true (a new
    block, a closed connection, a :meth:`Changes.wait`). It is called right after a false
    check, with no checkpoint in between, so no notification is missed. No deadline of
    its own: wrap the call in ``trio.fail_after``.
    """
    await trio.lowlevel.checkpoint()
    while not predicate():
        await changed()


class Changes:
    """A broadcast notification: :meth:`notify` wakes every task waiting in :meth:`wait`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        """Until the next :meth:`notify`."""
        await self._event.wait()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds, re-checked after each :meth:`notify`."""
        await wait_for(predicate, self.wait)


async def poll_until(predicate: Callable[[], bool], *, interval: float = 0.01) -> None:
    """Re-check ``predicate`` every ``interval`` seconds until it holds.

    Only for state that nothing notifies (see the module docstring); anything with an
    event uses :func:`wait_for`. No deadline of its own: wrap the call in ``trio.fail_after``.
    """
    await trio.lowlevel.checkpoint()
    while not predicate():  # noqa: ASYNC110 - polling is the point: nothing notifies this state
        await trio.sleep(interval)


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Block until ``predicate()`` holds; raise :class:`WaitTimeout` after ``timeout`` seconds.

    For another process's state (end-to-end tests). ``what`` completes the failure
    message "timed out after 60s waiting for ...". An exception from ``predicate``
    propagates (e.g. the node process died). From trio, run it in a worker thread:
    ``await trio.to_thread.run_sync(functools.partial(wait_until, ...))``.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
