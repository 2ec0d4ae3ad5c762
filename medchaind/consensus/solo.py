"""The decision step of a single-authority chain.

With one authority, proposing *is* deciding: the authority builds a block from the
mempool, signs its precommit (a one-signature commit certificate, the same structure a
BFT commit has) and commits it. The multi-authority engine replaces this class; the
block building (``chain.build_block``), the ledger and the mempool stay the same.

Liveness: the engine sleeps on the mempool, so a pending tx wakes it at once; with
``create_empty_blocks`` it also produces a block every ``empty_block_interval``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

from ..chain import build_block, next_time_ms
from ..crypto import SigningKey
from ..mempool import Mempool
from ..node.ledger import Ledger
from ..types import Commit, sign_commit_vote

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    create_empty_blocks: bool = False
    empty_block_interval_ms: int = 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SoloEngine:
    def __init__(
        self,
        ledger: Ledger,
        mempool: Mempool,
        key: SigningKey,
        config: EngineConfig | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.ledger = ledger
        self.mempool = mempool
        self.key = key
        self.config = config or EngineConfig()
        self.clock_ms = clock_ms
        self.last_commit: Commit | None = ledger.store.get_commit(ledger.height) if ledger.height else None

    def is_authority(self) -> bool:
        return set(self.ledger.tip.powers) == {self.key.public_key}

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.is_authority():
            raise RuntimeError(
                "solo mode needs this node's key to be the only authority in genesis"
            )
        task_status.started()
        log.info("solo engine started height=%d authority=%s", self.ledger.height, self.key.public_key.hex()[:16])
        while True:
            if self.config.create_empty_blocks:
                with trio.move_on_after(self.config.empty_block_interval_ms / 1000):
                    await self.mempool.wait_for_txs()
            else:
                await self.mempool.wait_for_txs()
            await self.produce_block()

    async def produce_block(self) -> None:
        params = self.ledger.genesis.params
        tip = self.ledger.tip
        txs = self.mempool.reap(params.max_block_txs, params.max_block_bytes)
        block, ex = build_block(
            self.ledger.app, self.ledger.state, tip, txs,
            proposer=self.key.public_key, time_ms=next_time_ms(tip, self.clock_ms()),
            round_=0, last_commit=self.last_commit,
        )
        sig = sign_commit_vote(self.key, block.header.chain, block.height, 0, block.hash())
        commit = Commit(block.height, 0, block.hash(), (sig,))
        await self.ledger.commit(block, commit, ex)
        self.last_commit = commit
        self.mempool.update(txs)
        log.info("committed block height=%d txs=%d hash=%s", block.height, len(txs), block.hash().hex()[:16])
