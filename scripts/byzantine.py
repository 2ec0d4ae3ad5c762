"""Byzantine-peer scenarios, longer than the suite's (issue 9): full nodes over the
in-memory network under trio's MockClock (virtual time; no sockets, nothing leaves the
process).

    .venv/bin/python scripts/byzantine.py [--seeds N] [--seed S] [--budget-s SECONDS] [--verbose]

For each seed:

* **sync lie**: 7 authorities and 1 observer; two authorities (f = 2) claim height 2^62
  over sync and in announcements, one answering blocks requests with nothing, the other
  not answering at all. The observer is stopped at height 30 and restarted at 100; a
  lagging authority is stopped at 10 and restarted at 100, after which both liars stop
  voting too (no height can be decided without the lagging authority). Prints the
  virtual seconds each needed to catch up, the targets the honest nodes report, and how
  many peer faults they recorded.
* **proposal flood**: 4 authorities; one signs 60 proposals with distinct 1 MiB blocks
  for each of the next two heights (most rounds are not its turn). Prints the most the
  honest engines held of it (parked for the next height, executed and cached) and the
  block bytes the flood carried.

Exits non-zero if a scenario fails (a deadline in virtual time, a liar's height reported
as a target, a buffer over its bound) or the real-time budget is exceeded. The short
versions run in the suite: tests/sim/test_byzantine.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "sim"))

from byzantine_kit import (  # noqa: E402
    HUGE,
    Held,
    announce_lies,
    consensus_seen,
    flood_messages,
    held_of,
    make_sync_liar,
    publish_all,
    silence_consensus,
    wait_until,
)

from medchaind import crypto  # noqa: E402
from medchaind.testing.cluster import Cluster  # noqa: E402
from medchaind.types import Tx, sign_tx  # noqa: E402

MiB = 1024 * 1024


def register_tx(chain: str) -> Tx:
    kp = crypto.KeyPair.generate()
    return sign_tx(kp.signing, chain, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key})


async def commit_one(c: Cluster, nodes: list[int], deadline_s: float = 120) -> None:
    tx = register_tx(c.genesis.chain_id)
    c.nodes[nodes[0]].submit(tx)
    with trio.fail_after(deadline_s):
        for i in nodes:
            n = c.nodes[i]
            while not n.ledger.is_committed(tx.hash):
                await n.ledger.wait_height(n.height + 1)


async def sync_lie(seed: int, wal_dir: Path) -> dict[str, object]:
    liars, obs, lag, honest = [5, 6], 7, 4, [0, 1, 2, 3]
    c = Cluster(7, observers=1, wal_dir=wal_dir, seed=seed, create_empty_blocks=True)
    out: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        make_sync_liar(c.nodes[liars[0]], mode="empty")
        make_sync_liar(c.nodes[liars[1]], mode="silent")
        for i in liars:
            nursery.start_soon(announce_lies, c.nodes[i])
        with trio.fail_after(600):
            await c.wait_height(10, [lag])
            c.nodes[lag].crash()
            await c.wait_height(30, [obs])
            c.nodes[obs].crash()
            await c.wait_height(100, [0])
        await c.nodes[obs].wait_stopped()
        t = trio.current_time()
        await c.restart(obs)
        with trio.fail_after(60):
            await c.nodes[obs].ledger.wait_height(c.nodes[0].height)
        out["observer catch-up s"] = round(trio.current_time() - t, 2)
        t = trio.current_time()
        await c.restart(lag)
        for i in liars:
            silence_consensus(c.nodes[i])
        h = c.nodes[0].height
        with trio.fail_after(120):
            await c.wait_height(h + 10, [*honest, lag, obs])
        out["lagging authority: 10 more heights without the liars, s"] = round(trio.current_time() - t, 2)
        top = max(n.height for n in c.nodes)
        targets = [c.nodes[i].sync.status()["target_height"] for i in [*honest, lag, obs]]
        out[f"honest targets (chain top {top})"] = targets
        out["peer faults recorded"] = [c.nodes[i].sync.book.faults_total for i in [*honest, lag, obs]]
        if any(t > top + 1 for t in targets) or any(t >= HUGE for t in targets):
            raise AssertionError(f"an honest node reports a liar's height: {targets}")
        c.check_agreement()
        nursery.cancel_scope.cancel()
    return out


async def proposal_flood(seed: int, wal_dir: Path, rounds: int = 60, block_bytes: int = MiB) -> dict[str, object]:
    flooder, honest = 3, [0, 1, 2]
    c = Cluster(4, wal_dir=wal_dir, seed=seed)
    key = c.keys[flooder].public_key
    out: dict[str, object] = {}
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_one(c, [0, 1, 2, 3])
        h = c.nodes[0].height + 1
        messages = flood_messages(c, flooder, h, rounds, block_bytes) + flood_messages(c, flooder, h + 1, rounds,
                                                                                    block_bytes)
        seen = {i: consensus_seen(c.nodes[i]) for i in honest}
        peak = {i: Held() for i in honest}

        def sample() -> bool:
            for i in honest:
                peak[i] = peak[i].peak(held_of(c.nodes[i], key))
            return all(consensus_seen(c.nodes[i]) >= seen[i] + len(messages)
                       and held_of(c.nodes[i], key).queued == 0 for i in honest)

        await publish_all(c.nodes[flooder], messages)
        await wait_until(sample, timeout_s=300, step_s=0.01)
        for _ in range(3):
            await commit_one(c, [0, 1, 2, 3])
        sample()
        out["flood"] = f"{len(messages)} proposals, {sum(len(m) for m in messages) / MiB:.0f} MiB"
        for i in honest:
            p = peak[i]
            out[f"node {i} peak held"] = (f"parked {p.parked_proposals} ({p.parked_bytes / MiB:.1f} MiB), "
                                          f"cached {p.cached_blocks} ({p.cached_bytes / MiB:.1f} MiB)")
            # two proposals of the largest valid block parked, a few judged at each height
            bound = 2 * (c.genesis.params.max_block_bytes + 4096) + 6 * (block_bytes + 64 * 1024)
            if p.parked_proposals > 2 or p.parked_bytes + p.cached_bytes > bound:
                raise AssertionError(f"node {i} holds more of the flood than its bound: {out[f'node {i} peak held']}")
        c.check_agreement()
        nursery.cancel_scope.cancel()
    return out


def _short(exc: BaseException) -> str:
    """The first leaf of an exception group: what failed, without the task tree."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return repr(exc)[:400]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=600.0, help="real-time budget for the whole run")
    ap.add_argument("--verbose", action="store_true", help="show the nodes' warnings (peer faults, invalid proposals)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL)
    started = time.monotonic()
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        for name, scenario in (("sync lie", sync_lie), ("proposal flood", proposal_flood)):
            t = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="mcbyz-") as d:
                try:
                    figures = trio.run(scenario, seed, Path(d), clock=trio.testing.MockClock(autojump_threshold=0))
                except Exception as exc:  # a failed scenario (often inside a nursery's ExceptionGroup)
                    failed += 1
                    print(f"seed {seed} {name}: FAILED {_short(exc)}")
                    continue
            print(f"seed {seed} {name}: ok in {time.monotonic() - t:.1f} s real")
            for k, v in figures.items():
                print(f"    {k}: {v}")
            if time.monotonic() - started > args.budget_s:
                print(f"real-time budget of {args.budget_s:.0f} s exceeded")
                return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
