"""The proposer's execution budget (consensus/bft.py ExecBudget): a block it proposes
should execute within about ``budget_ms`` here, judged from recent blocks; never fewer
than FLOOR txs (progress), never more than genesis ``max_block_txs``; off under a mock
clock (simulations stay deterministic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind.consensus.bft import ExecBudget


@pytest.mark.parametrize(
    ("samples", "max_txs", "expected"),
    [
        ([], 5000, ExecBudget.START),                  # no estimate yet: a first, modest block
        ([], 100, 100),
        ([(1000, 0.5)], 5000, 2000),                   # 500 us/tx, 1 s budget
        ([(1000, 3.5)], 5000, 285),                    # claims on a loaded node: 3.5 ms/tx
        ([(1000, 0.01)], 5000, 5000),                  # cheap txs: the genesis cap holds
        ([(1000, 100.0)], 5000, ExecBudget.FLOOR),     # absurdly slow: still FLOOR txs
        ([(1000, 100.0)], 10, 10),                     # ...but never above max_block_txs
        ([(8, 10.0)], 5000, ExecBudget.START),         # a small block is not a sample
        ([(1000, 1.0), (1000, 0.5)], 5000, 1333),      # moving estimate: 750 us/tx
        ([(1000, 0.0)], 5000, 5000),                   # a clock too coarse to see it: no limit
        ([(1000, 5e-324)], 5000, 5000),                # found by hypothesis: no overflow
    ],
)
def test_limit_table(samples, max_txs, expected):
    b = ExecBudget(1000)
    for txs, seconds in samples:
        b.observe(txs, seconds)
    assert b.limit(max_txs) == expected


def test_disabled_budget_never_limits():
    b = ExecBudget(1000, enabled=False)
    b.observe(1000, 100.0)
    assert b.us_per_tx is None and b.limit(5000) == 5000


@given(st.lists(st.tuples(st.integers(0, 10_000), st.floats(0, 60, allow_nan=False)), max_size=20),
       st.integers(1, 10_000), st.integers(1, 60_000))
def test_limit_is_within_floor_and_cap(samples, max_txs, budget_ms):
    b = ExecBudget(budget_ms)
    for txs, seconds in samples:
        b.observe(txs, seconds)
    assert min(max_txs, ExecBudget.FLOOR, ExecBudget.START) <= b.limit(max_txs) <= max_txs



# ---------------------------------------------------------------- work, not waiting
# Issue 14, session 5: on a shared 2-core machine validating a block took 5-17 times its
# CPU time in wall time, and a wall estimate cut blocks to 800-1,300 txs while 7,000-9,000
# waited. The estimate is now CPU time; wall time only guards against the propose timeout.


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([(2000, 0.1, 2.1)], 2857),           # 50 us/tx of work, 1,050 us/tx of wall: only the
        #                                       3 s guard holds (a wall estimate against 1 s: 952)
        ([(2000, 0.1, 0.5)], 5000),           # the same work, less waiting: not cut at all
        ([(2000, 0.1, 8.0)], 750),            # 4 ms/tx of wall: the 3 s guard holds a block to 750
        ([(1000, 0.5, 0.5)], 2000),           # work 500 us/tx: the CPU budget cuts, as before
        ([(1000, 0.5, None)], 2000),          # no wall sample: the CPU budget alone
        ([(1000, 0.01, 100.0)], ExecBudget.FLOOR),  # starved: still FLOOR txs
        ([(8, 0.0, 60.0)], ExecBudget.START),       # a small block is no sample of either
    ],
)
def test_limit_from_work_with_wall_guard(samples: list[tuple[int, float, float | None]], expected: int) -> None:
    b = ExecBudget(1000, wall_ms=3000)
    for txs, cpu, wall in samples:
        b.observe(txs, cpu, wall)
    assert b.limit(5000) == expected


def test_default_clock_counts_work_not_waiting() -> None:
    """The engine times execution with the budget's clock: the executing thread's CPU
    time, which a thread that waits (descheduled, blocked) does not accumulate."""
    import time

    b = ExecBudget(1000)
    assert b.clock is time.thread_time
    before = b.clock()
    time.sleep(0.2)  # waiting is the subject here, not a synchronisation
    assert b.clock() - before < 0.1


async def test_engine_sizes_blocks_by_the_budget_clock(autojump_clock: Any, tmp_path: Path) -> None:
    """A real engine (one authority, in-memory network): the blocks it proposes follow
    the CPU time its budget's clock reports for the blocks it executed, whatever the
    wall time (here: a clock that says every execution cost 10 s of CPU)."""
    import trio

    from medchaind.testing.cluster import Cluster
    from tests.sim.test_cluster import register_tx, wait_committed

    c = Cluster(1, wal_dir=tmp_path, seed=5)
    node = c.nodes[0]
    ticks = iter(range(0, 10**6, 10))
    node.engine.exec_budget = ExecBudget(1000, wall_ms=3000, clock=lambda: float(next(ticks)))
    chain = c.genesis.chain_id
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        first = [register_tx(chain) for _ in range(100)]
        for tx in first:
            node.submit(tx)
        with trio.fail_after(60):
            await wait_committed(node, first)
        assert node.engine.exec_budget.us_per_tx == 10e6 / 100  # one sample: 10 s of "CPU" for 100 txs
        h = node.height
        more = [register_tx(chain) for _ in range(200)]
        for tx in more:
            node.submit(tx)
        with trio.fail_after(60):
            await wait_committed(node, more)
        nursery.cancel_scope.cancel()
    store = node.ledger.store  # (is_committed reads the store, which is written before the tip moves)
    sizes = [len(store.get_block(i).txs) for i in range(h + 1, store.head_height() + 1)]  # type: ignore[union-attr]
    assert sizes == [ExecBudget.FLOOR] * 3 + [200 - 3 * ExecBudget.FLOOR]
