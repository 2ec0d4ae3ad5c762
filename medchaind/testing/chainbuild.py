"""Build a long chain offline, fast: for end-to-end tests and benchmarks of sync.

Real consensus on a loaded test machine makes about one block a second, so a network
"with thousands of blocks" is built here instead: blocks made by
:func:`medchaind.chain.build_block`, finalised by precommits of the given authority keys
(enough of them for a 2/3+ commit), executed and committed through a real
:class:`~medchaind.ledger.Ledger` (with the retention the nodes will run with, so the
snapshot versions are kept) on a memory store, then written into LevelDB datadirs in
one batch. The nodes started on those datadirs continue the chain by consensus.
Every block is valid by the same rules block sync checks.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from ..chain import build_block
from ..crypto import SigningKey
from ..ledger import Ledger, Retention
from ..modules import make_app
from ..store import ChainStore, LevelDBKV, MemoryKV
from ..store.blobs import FileBlobStore
from ..types import Commit, Genesis, Tx, sign_commit_vote


def build_chain(genesis: Genesis, signers: Sequence[SigningKey], blocks: int, *,
                txs: Mapping[int, Sequence[Tx]] | None = None, retention: Retention | None = None,
                step_ms: int = 1) -> MemoryKV:
    """A memory store holding ``blocks`` blocks of ``genesis``'s chain (``txs[h]`` in
    block ``h``, empty blocks otherwise), each ``step_ms`` after the previous one."""
    kv = MemoryKV()
    ledger = Ledger(ChainStore(kv), make_app(genesis), genesis, commit_in_thread=False, retention=retention)
    proposer = genesis.authorities[0].public_key
    chain = genesis.chain_id

    async def run() -> None:
        for _ in range(blocks):
            tip = ledger.tip
            block, ex = build_block(ledger.app, ledger.state, tip, list((txs or {}).get(tip.height + 1, ())),
                                    proposer=proposer, time_ms=tip.time_ms + step_ms, round_=0,
                                    last_commit=ledger.store.get_commit(tip.height) if tip.height else None)
            h = block.hash()
            sigs = sorted((sign_commit_vote(k, chain, block.height, 0, h) for k in signers),
                          key=lambda s: s.validator)
            await ledger.commit(block, Commit(block.height, 0, h, tuple(sigs)), ex)

    trio.run(run)
    return kv


def write_datadirs(kv: MemoryKV, datadirs: Sequence[Path], *, blobs: Mapping[bytes, bytes] | None = None) -> None:
    """Write the store into ``<datadir>/chaindata`` of the first datadir, copy it to the
    others; ``blobs`` (content hash -> record ciphertext, the sidecars of the chain's
    ``records.add`` txs) go into each datadir's blob store, as if the nodes had held them
    all along."""
    for d in datadirs:
        store = FileBlobStore(d / "blobs")
        for h, blob in (blobs or {}).items():
            store.put_blob(h, blob)
    first = datadirs[0] / "chaindata"
    if first.exists():
        shutil.rmtree(first)
    db = LevelDBKV.open(first)
    try:
        db.write(list(kv.iterate(b"")), sync=True)
    finally:
        db.close()
    for d in datadirs[1:]:
        if (d / "chaindata").exists():
            shutil.rmtree(d / "chaindata")
        shutil.copytree(first, d / "chaindata")
