"""Signature verification off the event loop: batches of txs checked in worker threads.

Ed25519 verification is the largest single cost per tx (~57 us on one core of the bench
machine, DESIGN.md §9) and libsodium releases the GIL while it runs, so a batch split
over worker threads overlaps with the event loop (consensus, gossip, IPC keep running)
and uses the other cores. :meth:`Verifier.preverify` only *adds* to the
:class:`~.executor.SigCache`: a tx whose signature verifies is recorded there, so the
admission or block check that follows finds it and does not verify again; a tx that
fails is left out and the usual check refuses it with its usual error. Nothing is
decided here, so a pre-verification that is skipped (simulations under a mock clock run
without threads) changes no outcome, only where the work happens.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from .. import crypto
from ..chain.executor import SigCache
from ..errors import SignatureError
from ..types import Block, Commit, Tx
from ..types.block import commit_sig_key

#: txs per worker-thread call: large enough that the hand-off (~0.1 ms) is small beside
#: the work (~4 ms), small enough that both cores share a gossip batch or a block
CHUNK = 64
#: fewer unverified txs than this are left to the admission or block check that follows,
#: which verifies them on the event loop (at most a few hundred microseconds): a thread
#: hand-off costs ~100-200 us of CPU whatever the batch, as much as verifying one or two
#: signatures. A paced client (the bench at 200 tx/s sends 2 txs a call) and the small
#: gossip batches of a lightly loaded network paid it on every call (issue 14, session 4).
MIN_THREADED = 8


def verified_hashes(txs: Sequence[Tx]) -> list[bytes]:
    """The hashes of the txs in ``txs`` whose signature verifies (runs in a worker thread)."""
    ok = []
    for tx in txs:
        try:
            tx.verify_signature()
        except SignatureError:
            continue
        ok.append(tx.hash)
    return ok


class Verifier:
    """Pre-verifies tx signatures in worker threads, at most ``workers`` at a time."""

    def __init__(self, sigs: SigCache, *, threads: bool = True, workers: int | None = None) -> None:
        self.sigs = sigs
        self.threads = threads
        self._limiter = trio.CapacityLimiter(workers or os.cpu_count() or 1)
        self.verified = 0  # signatures checked here (statistics)

    async def preverify(self, txs: Sequence[Tx]) -> None:
        """Verify the signatures of ``txs`` not already in the cache; record the good ones
        (not when fewer than ``MIN_THREADED`` are left: see there)."""
        if not self.threads:
            return
        todo = [t for t in txs if t.hash not in self.sigs]
        if len(todo) < MIN_THREADED:
            return
        chunks = [todo[i : i + CHUNK] for i in range(0, len(todo), CHUNK)]
        results: list[list[bytes]] = []

        async def run(chunk: list[Tx]) -> None:
            results.append(await trio.to_thread.run_sync(verified_hashes, chunk, limiter=self._limiter))

        if len(chunks) == 1:
            await run(chunks[0])
        else:
            async with trio.open_nursery() as nursery:
                for chunk in chunks:
                    nursery.start_soon(run, chunk)
        self.verified += len(todo)
        for hashes in results:
            for h in hashes:
                self.sigs.add(h)


# ---------------------------------------------------------------- replay look-ahead

#: blocks whose signatures ``medchaind import`` checks ahead of the one it executes
#: (block sync queues the range it fetched, at most 64 blocks)
LOOKAHEAD_BLOCKS = 8

VoteKey = tuple[str, bytes, bytes, bytes]


def verified_commit_sigs(chain: str, commits: Sequence[Commit | None]) -> set[VoteKey]:
    """The :func:`~medchaind.types.block.commit_sig_key` of the precommit signatures in
    ``commits`` that verify (runs in a worker thread; the quorum rules stay with
    :func:`~medchaind.types.verify_commit`)."""
    ok: set[VoteKey] = set()
    for c in commits:
        if c is None:
            continue
        for s in c.signatures:
            key = commit_sig_key(chain, c, s)
            if crypto.verify(s.validator, s.signature, crypto.DOMAIN_VOTE, chain, key[3]):
                ok.add(key)
    return ok


@dataclass(slots=True)
class Ahead:
    """The signature checks of one block queued in the look-ahead pool: each job with
    its arguments, so that the caller can take over a job the pool has not started."""

    chain: str
    txs: list[tuple[concurrent.futures.Future[list[bytes]], list[Tx]]]
    votes: tuple[concurrent.futures.Future[set[VoteKey]], list[Commit | None]]
    #: what :meth:`results` found, kept: block sync's pipeline collects a block while
    #: the one before it is written, and sync collects it again before submitting it
    outcome: tuple[list[bytes], set[VoteKey]] | None = None

    def results(self) -> tuple[list[bytes], set[VoteKey]]:
        """What verified. A job not started yet is cancelled and run on this thread
        instead (the pool is behind: this thread would only wait); a running one is
        waited for (it ends within one chunk). No thread hand-off or idle wait per block.
        A second call answers from the first."""
        if self.outcome is not None:
            return self.outcome
        hashes: list[bytes] = []
        for fut, chunk in self.txs:
            hashes.extend(verified_hashes(chunk) if fut.cancel() else fut.result())
        job, commits = self.votes
        votes = verified_commit_sigs(self.chain, commits) if job.cancel() else job.result()
        self.outcome = (hashes, votes)
        return self.outcome

    def cancel(self) -> None:
        """Drop the jobs not started yet (the block will not be replayed)."""
        for fut, _ in self.txs:
            fut.cancel()
        self.votes[0].cancel()


class Lookahead:
    """Checks the signatures of blocks about to be replayed while earlier ones execute.

    Theory of operation. Replay (``medchaind import``, block sync) executes blocks in
    order on the event loop's thread, and executing holds the GIL without a checkpoint
    for the whole block. Threads handed out by ``trio.to_thread`` (:class:`Verifier`)
    would verify one chunk and then wait for the loop to give them the next, so they
    would mostly idle while a block executes. Here each block's checks are queued at
    once on a plain thread pool (:meth:`submit`: its txs in chunks over ``workers``
    threads, its commit and ``last_commit`` signatures in one more job); libsodium
    releases the GIL, so the pool verifies blocks N+1..N+k on the other cores while
    block N executes. :meth:`collect` takes one block's results and adds what verified
    to the :class:`~.executor.SigCache` and to :attr:`votes`; when the pool is behind
    (blocks that execute faster than they verify, e.g. empty ones whose only signatures
    are their commits) it runs the jobs not started yet itself rather than hand off to
    a thread and wait, which on a loaded machine costs more than the work.

    Like :class:`Verifier`, nothing is decided here: a signature that fails is simply
    not recorded, and the usual check (``validate_block``, ``verify_commit``) verifies it
    again and rejects the block with its usual error. So a tampered block is refused
    exactly as without the look-ahead, and skipping it (``threads=False``) changes
    nothing but where the work runs.
    """

    def __init__(self, sigs: SigCache, chain: str, *, threads: bool = True, workers: int | None = None) -> None:
        self.sigs = sigs
        self.chain = chain
        self.threads = threads
        self.workers = workers or os.cpu_count() or 1
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: the precommit signatures of the last collected block (its commit and
        #: last_commit) that verified: pass to ``verify_commit(verified=...)``
        self.votes: set[VoteKey] = set()
        self.verified = 0  # tx signatures checked here (statistics)

    def submit(self, block: Block, commit: Commit | None) -> Ahead | None:
        """Queue the checks of ``block`` (and its commit); None without threads."""
        if not self.threads:
            return None
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="replay-verify")
        todo = [t for t in block.txs if t.hash not in self.sigs]
        self.verified += len(todo)
        # one chunk per worker (at least CHUNK txs each): few hand-offs, both cores busy
        size = max(CHUNK, -(-len(todo) // self.workers))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        commits = [commit, block.last_commit]
        return Ahead(self.chain, [(self._pool.submit(verified_hashes, c), c) for c in chunks],
                     (self._pool.submit(verified_commit_sigs, self.chain, commits), commits))

    async def collect(self, ahead: Ahead | None) -> None:
        """:meth:`collect_nowait`, then checkpoint."""
        if ahead is None:
            return
        self.collect_nowait(ahead)
        await trio.lowlevel.checkpoint()

    def collect_nowait(self, ahead: Ahead | None) -> set[VoteKey]:
        """Record what of ``ahead``'s checks verified (:meth:`Ahead.results`: finishing
        on this thread what the pool has not started); the precommit signatures that
        verified (also left in :attr:`votes`). For a caller that cannot checkpoint
        (``medchaind import`` checks block N+1 while N's write is in flight)."""
        if ahead is None:
            return set()
        hashes, votes = ahead.results()
        for h in hashes:
            self.sigs.add(h)
        # the signatures of this block's commit and last_commit, the next ones checked
        self.votes = votes
        return votes

    def close(self, *, wait: bool = True) -> None:
        """Drop the checks not started yet and let the pool's threads end (after the
        running jobs; ``wait``: return once they did). The next :meth:`submit` starts a
        new pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
