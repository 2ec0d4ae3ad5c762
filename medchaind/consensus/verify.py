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

import os
from collections.abc import Sequence

import trio

from ..chain.executor import SigCache
from ..errors import SignatureError
from ..types import Tx

#: txs per worker-thread call: large enough that the hand-off (~0.1 ms) is small beside
#: the work (~4 ms), small enough that both cores share a gossip batch or a block
CHUNK = 64


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
        """Verify the signatures of ``txs`` not already in the cache; record the good ones."""
        if not self.threads:
            return
        todo = [t for t in txs if t.hash not in self.sigs]
        if not todo:
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
