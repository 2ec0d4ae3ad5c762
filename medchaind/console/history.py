"""The last hour of blocks, kept in memory for the operator charts and the live list.

Fed by the ledger's commit listener (one :class:`~medchaind.console.source.BlockSummary`
per block) and, at start, back-filled from the store through the source, so the charts
are full right after a restart. Bounded: at most :data:`MAX_BLOCKS` summaries, and none
older than :data:`WINDOW_MS` before the newest block time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from .source import BlockSummary

WINDOW_MS = 3_600_000
MAX_BLOCKS = 20_000
BUCKETS = 60
#: blocks read back from the store at start (at most)
BACKFILL = 3_600


class History:
    def __init__(self) -> None:
        self.blocks: deque[BlockSummary] = deque(maxlen=MAX_BLOCKS)

    def add(self, b: BlockSummary) -> None:
        if self.blocks and b.height <= self.blocks[-1].height:
            return
        self.blocks.append(b)
        while self.blocks and self.blocks[0].time_ms < b.time_ms - WINDOW_MS:
            self.blocks.popleft()
    def prepend(self, older: list[BlockSummary]) -> None:
        """Put blocks read back from the store (oldest first) before the ones already here."""
        first = self.blocks[0].height if self.blocks else None
        keep = [b for b in older if first is None or b.height < first]
        newest = self.blocks[-1].time_ms if self.blocks else (keep[-1].time_ms if keep else 0)
        self.blocks.extendleft(reversed([b for b in keep if b.time_ms >= newest - WINDOW_MS]))
        while len(self.blocks) > MAX_BLOCKS:
            self.blocks.popleft()

    def recent(self, n: int) -> list[BlockSummary]:
        return list(self.blocks)[-n:][::-1]

    def series(self, now_ms: int) -> dict[str, Sequence[float]]:
        """Per minute over the hour before ``now_ms``: tx/s, mean block interval (s), round changes."""
        start = now_ms - WINDOW_MS
        width = WINDOW_MS // BUCKETS
        txs = [0] * BUCKETS
        intervals: list[list[int]] = [[] for _ in range(BUCKETS)]
        rounds = [0] * BUCKETS
        prev: BlockSummary | None = None
        for b in self.blocks:
            i = (b.time_ms - start) // width
            if 0 <= i < BUCKETS:
                txs[i] += b.txs
                rounds[i] += b.round
                if prev is not None and prev.height == b.height - 1:
                    intervals[i].append(b.time_ms - prev.time_ms)
            prev = b
        return {
            "tps": [t / (width / 1000) for t in txs],
            "block_time": [sum(x) / len(x) / 1000 if x else 0.0 for x in intervals],
            "rounds": [float(r) for r in rounds],
        }


async def backfill(history: History, head: int, read: Callable[[int], BlockSummary | None],
                   now_ms: int) -> None:
    """Read blocks ``head``, ``head-1``, … (at most :data:`BACKFILL`, none older than an hour
    before ``now_ms``) and prepend them: the charts are full right after a restart. Yields
    to the node's other tasks every few blocks."""
    import trio.lowlevel

    got: list[BlockSummary] = []
    h = head
    while h >= 1 and len(got) < BACKFILL:
        b = read(h)
        if b is None or b.time_ms < now_ms - WINDOW_MS:
            break
        got.append(b)
        h -= 1
        if len(got) % 32 == 0:
            await trio.lowlevel.checkpoint()
    history.prepend(got[::-1])
