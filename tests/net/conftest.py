"""Fixtures for the network tests: the contract suite runs once per backend.

The memory backend runs under a mock clock that jumps whenever every task is blocked
(no real I/O is in flight there); the libp2p backend uses real sockets on 127.0.0.1 and
the real clock, so its waits are conditions bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import pytest
from net_kit import BACKENDS, Backend
from trio.testing import MockClock


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture
def backend_clock(backend: Backend) -> MockClock | None:
    """Request this in a contract test: pytest-trio runs the test on the clock it returns.

    An autojumping MockClock for the memory backend; ``None`` (the real clock) for libp2p.
    """
    return MockClock(autojump_threshold=0) if backend == "memory" else None
