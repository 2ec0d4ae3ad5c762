"""SIGKILL a process that is committing blocks; the reopened store holds whole blocks only.

DESIGN.md §6: committing block h is one sync'd write batch, so after a crash the node
sees block h entirely or not at all. A child process (``crash_child.py``) commits
blocks in a loop, each a ~300 KB batch (block, commit, indexes, receipts, 300 state
writes, head), so most of its time is spent inside ``commit_block``. The parent waits
until the child reports a randomly chosen height, kills it with SIGKILL after a random
delay of up to two blocks' time, reopens the database and checks with
``assert_chain_complete`` that every height up to the head is complete and that no
trace of a higher height exists. Then it restarts the child on the same database,
which resumes from the head, and repeats.

Replay a failure with ``STORE_CRASH_SEED=<seed printed on failure>``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_factories import assert_chain_complete

from medchaind.store import ChainStore, LevelDBKV

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = 8
N_TXS = 3
N_FILL = 300


def run_until_killed(
    path: Path, head: int, target: int, delay: float, env: dict[str, str]
) -> int:
    """Start the writer, SIGKILL it ``delay`` seconds after it reports ``target``; return
    the last height it reported as committed.

    The delay is not synchronisation (we have already waited on the ``committed``
    line): it is where the fault lands. Without it the kill would almost always hit
    the cheap block-building step that follows a print, never the write batch.
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), str(N_TXS), str(N_FILL)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()
        assert first == f"resumed {head}\n", (first, proc.stderr.read())
        reported = head
        while reported < target:
            line = proc.stdout.readline()
            assert line.startswith("committed "), (line, proc.stderr.read())
            reported = int(line.split()[1])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # Lines the child printed between our read and the kill: also committed.
        for line in proc.stdout.read().splitlines():
            if line.startswith("committed "):
                reported = int(line.split()[1])
        return reported
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.timeout(120)
def test_sigkill_while_committing_leaves_whole_blocks(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    seed = int(os.environ.get("STORE_CRASH_SEED", random.randrange(2**32)))
    print(f"STORE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    path = tmp_path / "chaindata"
    head = 0
    in_flight_landed = 0
    for _ in range(ROUNDS):
        target = head + rng.randint(1, 5)
        # One block takes ~2.5 ms here (~75% of it inside commit_block).
        delay = rng.uniform(0.0, 0.005)
        reported = run_until_killed(path, head, target, delay, child_env)
        with LevelDBKV.open(path) as kv:
            store = ChainStore(kv)
            new_head = store.head_height()
            # Everything reported is durable; at most the one block in flight may have
            # landed without being reported (killed between write and print).
            assert reported <= new_head <= reported + 1, (seed, reported, new_head)
            assert_chain_complete(store, new_head, N_TXS, N_FILL)
        in_flight_landed += new_head - reported
        head = new_head
    assert head >= ROUNDS
    print(f"rounds={ROUNDS} head={head} unreported_commits_found={in_flight_landed}")
