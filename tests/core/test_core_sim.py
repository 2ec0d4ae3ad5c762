"""Seeded simulations of N cores: safety and liveness sweeps, and proof they can fail.

Seed counts: ``MEDCHAIND_SIM_SEEDS`` (default 1500) seeds for n = 4, and proportionally
fewer for the slower larger networks (n = 7: 4/15 of it, n = 10: 1/10): 2050 seeds in
all by default, about 30 s of CPU. Set it higher to search harder. Every seed has
f = (n-1)//3 Byzantine validators with mixed behaviours, partitions, drops, crashes and
restarts before GST, and must decide after GST within the simulator's liveness bound.
A failure message carries the seed and the command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medchaind.core import Decide, round_machine
from medchaind.testing import sim
from medchaind.testing.sim import Node, Partition, Scenario, Simulation, SimulationFailure

ROOT = Path(__file__).resolve().parents[2]
SEEDS = int(os.environ.get("MEDCHAIND_SIM_SEEDS", "1500"))
CHUNK = 250
SWEEP_SIZES = {4: SEEDS, 7: SEEDS * 4 // 15, 10: SEEDS // 10}
SWEEPS = [(n, start, min(start + CHUNK, count))
          for n, count in SWEEP_SIZES.items() for start in range(0, count, CHUNK)]


@pytest.mark.parametrize(("n", "first", "stop"), SWEEPS,
                         ids=[f"n{n}-seeds{a}-{b - 1}" for n, a, b in SWEEPS])
def test_sweep_safety_and_liveness(n: int, first: int, stop: int) -> None:
    for seed in range(first, stop):
        result = sim.run(seed, n)  # raises SimulationFailure (seed + replay) on a violation
        assert result.liveness_ms <= result.liveness_bound_ms


def test_real_signatures_end_to_end() -> None:
    # Real Ed25519: every message is signed, verified on receipt, and every decided
    # commit is checked with types.block.verify_commit.
    for seed in range(25):
        sim.run(seed, 4, crypto=True)
    sim.run(0, 7, crypto=True)


def test_dev_mode_single_validator() -> None:
    for seed in range(3):
        result = sim.run(seed, 1)
        assert result.heights["A"] > 1


# ------------------------------------------------------------- the tests can fail


def first_failure(n: int, seeds: range, **kwargs: object) -> SimulationFailure | None:
    for seed in seeds:
        try:
            sim.run(seed, n, **kwargs)
        except SimulationFailure as failure:
            return failure
    return None


def test_broken_locking_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Break the lock check of L23/L29 ("lockedRound <= vr or lockedValue = v"): a
    # locked node then prevotes any valid proposal. The sweep must find two honest
    # nodes deciding different blocks at one height.
    monkeypatch.setattr(round_machine, "is_lock_compatible", lambda state, value, vr: True)
    failure = first_failure(4, range(SEEDS))
    assert failure is not None, f"broken locking survived {SEEDS} seeds"
    assert failure.kind == "agreement", str(failure)
    assert f"replay: python -m medchaind.testing.sim --seed {failure.seed} --n 4" in str(failure)
    print(f"broken locking: agreement violated at seed {failure.seed}")
    monkeypatch.undo()
    sim.run(failure.seed, 4)  # the correct core survives the very same schedule


def test_ignoring_the_wal_is_caught() -> None:
    # A host that restarts without its WAL forgets what it signed: it must be caught
    # double-signing.
    class NoWal(Simulation):
        def _start(self, node: Node) -> None:
            node.wal.clear()
            super()._start(node)

    failure = None
    for seed in range(300):
        try:
            NoWal(seed, 4).run()
        except SimulationFailure as exc:
            failure = exc
            break
    assert failure is not None and failure.kind == "double-sign", failure


# --------------------------------------------------------------------- scenarios


def test_liveness_after_a_long_partition_heals() -> None:
    # Four honest nodes split 2|2 for the whole time before GST: neither side has a
    # quorum, so nothing may be decided; once it heals, all decide within the bound.
    decided_at: list[int] = []

    class Watch(Simulation):
        def _on_decide(self, node: Node, d: Decide) -> None:
            decided_at.append(self.now)
            super()._on_decide(node, d)

    honest = (sim.HONEST,) * 4
    scenario = Scenario(n=4, behaviours=honest, gst_ms=5000, drop_percent=0, max_delay_ms=50,
                        slow_percent=0, partitions=(Partition(0, 5000, (0, 1)),), crashes=())
    result = Watch(1, 4, scenario=scenario).run()
    assert decided_at and min(decided_at) >= 5000
    assert result.liveness_ms <= result.liveness_bound_ms
    assert all(h >= 2 for h in result.heights.values())


def test_crash_after_wal_append_then_restart() -> None:
    # B crashes right after logging a message it had not signed yet, restarts from its
    # WAL; no double-sign, and everyone decides after GST.
    honest = (sim.HONEST,) * 4
    scenario = Scenario(n=4, behaviours=honest, gst_ms=2000, drop_percent=10, max_delay_ms=100,
                        slow_percent=10, partitions=(),
                        crashes=(sim.Crash(1, 10, 900, True), sim.Crash(2, 400, 1500, False)))
    result = Simulation(2, 4, scenario=scenario).run()
    assert min(result.heights.values()) >= 2


def test_runs_are_deterministic() -> None:
    assert sim.run(11, 4) == sim.run(11, 4)
    assert sim.run(11, 4) != sim.run(12, 4)


def test_replay_cli_is_deterministic_across_processes() -> None:
    # The printed run (scenario, heights, rounds, events) must not depend on the
    # interpreter's hash seed: a failing seed replays exactly.
    outs = []
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run(
            [sys.executable, "-m", "medchaind.testing.sim", "--seed", "5", "--n", "4"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    assert outs[0].startswith("seed=5 n=4 ok")


def test_cli_reports_a_failure_with_its_replay_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(round_machine, "is_lock_compatible", lambda state, value, vr: True)
    failure = first_failure(4, range(SEEDS))
    assert failure is not None
    assert sim.main(["--seed", str(failure.seed), "--n", "4"]) == 1
    err = capsys.readouterr().err
    assert f"agreement violated (seed={failure.seed}, n=4)" in err
    assert "last events:" in err and " decides h" in err


# The core's purity (no trio, sockets, clock, disk, randomness, logging, floats or I/O
# calls) is checked with every other pure layer in tests/unit/test_layers.py.
