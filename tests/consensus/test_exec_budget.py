"""The proposer's execution budget (consensus/bft.py ExecBudget): a block it proposes
should execute within about ``budget_ms`` here, judged from recent blocks; never fewer
than FLOOR txs (progress), never more than genesis ``max_block_txs``; off under a mock
clock (simulations stay deterministic)."""

from __future__ import annotations

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

