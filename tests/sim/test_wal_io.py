"""What the consensus WAL costs a height, in a 4-authority cluster with fsyncs on.

Each message an authority signs, and each proof of lock it acts on, is made durable first
(docs/protocol.md §17). Per height that is one write and one fsync per record: the block a
message names rides in the same write (``WAL.append(..., block=...)``), and the prune after
a commit is a mark without an fsync; the file is rewritten only once the dropped records
add up (``WAL.compaction_due``), not once per height (issue 14: each of those was a
worker-thread hand-off and fsyncs on the path from one height to the next).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from medchaind import crypto
from medchaind.consensus import wal as wal_mod
from medchaind.consensus.wal import WAL
from medchaind.core import VoteKind
from medchaind.testing.cluster import Cluster
from medchaind.types import sign_tx


class _CountingOs:
    """``os`` as the WAL module sees it, with fsync and replace counted."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.replaces = 0

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        os.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        self.replaces += 1
        os.replace(src, dst)

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


async def test_one_fsync_per_record_and_no_rewrite_per_height(
        autojump_clock: trio.abc.Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _CountingOs()
    monkeypatch.setattr(wal_mod, "os", counting)
    appends: list[tuple[int, bool]] = []  # (height, with a block)
    real_append = WAL.append

    def append(self: WAL, height: int, message: Any, *, block: bytes | None = None) -> None:
        appends.append((height, block is not None))
        real_append(self, height, message, **({} if block is None else {"block": block}))

    monkeypatch.setattr(WAL, "append", append)
    c = Cluster(4, wal_dir=tmp_path, seed=11, durable_wal=True)
    chain = c.genesis.chain_id
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        for i in range(6):
            kp = crypto.KeyPair.generate()
            c.nodes[i % 4].submit(sign_tx(kp.signing, chain, "identity.register", 0,
                                          {"role": "patient", "enc_key": kp.encryption.public_key}))
            with trio.fail_after(60):
                await c.wait_height(i + 1)
        c.check_agreement()
        nursery.cancel_scope.cancel()

    heights = c.nodes[0].height
    assert heights >= 6
    assert counting.fsyncs == len(appends)  # one per record appended, a named block included
    assert counting.replaces == 0  # no rewrite: the dropped records are far below the threshold
    # every authority logged each block it voted for, with the first message that named it
    for h in range(1, heights + 1):
        assert sum(with_block for height, with_block in appends if height == h) >= 3
    for node in c.nodes:
        # the view was pruned all the same: of committed heights only this key's non-nil
        # precommits (the double-sign check's window) are left, and no block
        for h in range(1, node.height + 1):
            assert node.wal.blocks(h) == ()
            assert all(m.kind is VoteKind.PRECOMMIT and m.block_hash is not None for m in node.wal.entries(h))
        node.wal.close()
        again = WAL(node.wal_path)  # and so does the file read again
        for h in range(1, node.height + 1):
            assert again.blocks(h) == () and again.entries(h) == node.wal.entries(h)
        again.close()
