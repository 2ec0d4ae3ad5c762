"""Replay checks signatures ahead of execution and still refuses every forgery (issue 14).

``medchaind import`` (:func:`medchaind.node.chainfile.import_records`) and block sync
(:class:`medchaind.sync.SyncService` feeding the engine) verify the tx and commit
signatures of the next blocks in worker threads (:class:`~medchaind.consensus.verify.
Lookahead`) while a block executes. The look-ahead decides nothing: a forged tx
signature, a forged precommit in a block's commit or in its ``last_commit``, or an
undecodable record still stops the replay at that height, with every block before it
committed, with the look-ahead on (``threads=True``) exactly as with it off.

The forged chains are built offline with :func:`medchaind.chain.build_block` (which
executes, it does not check signatures) and commits signed by the real authority keys,
so the forgery is the only thing wrong with them.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import trio

from medchaind import codec
from medchaind.chain import SigCache, build_block, validate_block
from medchaind.consensus.verify import Lookahead
from medchaind.crypto import SigningKey
from medchaind.errors import ValidationError
from medchaind.ledger import Ledger
from medchaind.modules import make_app
from medchaind.node.chainfile import ChainFileError, import_records, read_header, read_records, write_chain
from medchaind.store import ChainStore, MemoryKV, schema
from medchaind.testing.appkit import enc_key, key, make_genesis, pub
from medchaind.testing.cluster import Cluster
from medchaind.testing.wait import Changes
from medchaind.types import Commit, CommitSig, Genesis, Tx, sign_commit_vote, sign_tx, verify_commit
from medchaind.types.block import commit_sig_key
from medchaind.types.tx import tx_from_map

GENESIS = make_genesis({"A": 1, "B": 1, "C": 1})
CHAIN = GENESIS.chain_id
BLOCKS = 12  # more than the look-ahead (8), so a forgery is decoded and checked ahead


def register(name: str, chain: str = CHAIN) -> Tx:
    return sign_tx(key(name), chain, "identity.register", 0, {"role": "patient", "enc_key": enc_key(name)})


def forge_tx(tx: Tx) -> Tx:
    m = tx.to_map()
    m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    return tx_from_map(m)


def forge_commit(c: Commit) -> Commit:
    """``c`` with its first precommit signature corrupted (well formed, does not verify)."""
    first = c.signatures[0]
    bad = CommitSig(first.validator, bytes([first.signature[0] ^ 1]) + first.signature[1:])
    return Commit(c.height, c.round, c.block_hash, (bad, *c.signatures[1:]))


def fresh(*, threads: bool = False, genesis: Genesis = GENESIS) -> Ledger:
    """An empty ledger; with ``threads`` it commits in a worker thread, as ``medchaind
    import``'s does (the next records are decoded while a write is in flight)."""
    return Ledger(ChainStore(MemoryKV()), make_app(genesis), genesis, commit_in_thread=threads)


def build(**kw: Any) -> Ledger:
    return trio.run(functools.partial(abuild, **kw))


async def abuild(*, bad_tx_at: int = 0, bad_last_commit_at: int = 0, genesis: Genesis = GENESIS,
                 signers: Sequence[SigningKey] = tuple(key(n) for n in "ABC")) -> Ledger:
    """A chain of BLOCKS blocks of 3 registrations, each committed by every one of
    ``signers``; optionally block ``bad_tx_at`` carries a forged tx, or block
    ``bad_last_commit_at`` a forged ``last_commit`` (its header commits to it, and its
    own commit is signed by all)."""
    ledger = fresh(genesis=genesis)
    chain = genesis.chain_id

    def sign_commit(block: Any) -> Commit:
        sigs = sorted((sign_commit_vote(k, chain, block.height, 0, block.hash()) for k in signers),
                      key=lambda s: s.validator)
        return Commit(block.height, 0, block.hash(), tuple(sigs))

    for h in range(1, BLOCKS + 1):
        txs = [register(f"p{h}-{i}", chain) for i in range(3)]
        if h == bad_tx_at:
            txs[1] = forge_tx(txs[1])
        tip = ledger.tip
        last = ledger.store.get_commit(tip.height) if tip.height else None
        if h == bad_last_commit_at:
            assert last is not None
            last = forge_commit(last)
        block, ex = build_block(ledger.app, ledger.state, tip, txs, proposer=signers[0].public_key,
                                time_ms=tip.time_ms + 1000, round_=0, last_commit=last)
        await ledger.commit(block, sign_commit(block), ex)

    return ledger


def export(ledger: Ledger, edit: Callable[[list[dict[str, Any]]], None] | None = None) -> bytes:
    buf = io.BytesIO()
    write_chain(ledger.store, GENESIS, buf, 1, ledger.height)
    if edit is None:
        return buf.getvalue()
    recs = list(read_records(io.BytesIO(buf.getvalue())))
    body = recs[1:]
    edit(body)
    out = io.BytesIO()
    for r in [recs[0], *body]:
        data = codec.encode(r)
        out.write(len(data).to_bytes(4, "big") + data)
    return out.getvalue()


async def replay(data: bytes, *, threads: bool) -> Ledger:
    copy = fresh(threads=threads)
    records = read_records(io.BytesIO(data))
    read_header(records, GENESIS, "export")
    await import_records(copy, records, threads=threads)
    return copy


@pytest.fixture(scope="module")
def good() -> Ledger:
    return build()


@pytest.fixture(scope="module")
def forged() -> dict[str, Ledger]:
    return {"a forged tx signature": build(bad_tx_at=7),
            "a forged precommit in the block's last_commit": build(bad_last_commit_at=9)}


@pytest.mark.parametrize("threads", [True, False])
async def test_an_honest_export_imports_with_and_without_the_lookahead(good: Ledger, threads: bool) -> None:
    copy = await replay(export(good), threads=threads)
    assert copy.height == BLOCKS and copy.tip.block_hash == good.tip.block_hash
    assert copy.tip.app_hash == good.tip.app_hash


# each case: what to forge, at which height the import stops, the reason it gives
CASES = [
    ("a forged tx signature", 7, "invalid signature"),
    ("a forged precommit in the block's commit", 5, "commit: invalid precommit signature"),
    ("a forged precommit in the block's last_commit", 9, "commit: invalid precommit signature"),
    ("an undecodable block record", 10, "rejected"),
]


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize(("what", "at", "reason"), CASES, ids=[c[0] for c in CASES])
async def test_a_forgery_stops_the_import_at_its_height_after_the_blocks_before_it(
    good: Ledger, forged: dict[str, Ledger], what: str, at: int, reason: str, threads: bool
) -> None:
    if what in forged:
        data = export(forged[what])
    else:
        def edit(body: list[dict[str, Any]]) -> None:
            rec = body[at - 1]
            assert rec["h"] == at
            if what == "an undecodable block record":
                rec["b"] = rec["b"][:-7]
            else:
                commit = good.store.get_commit(at)
                assert commit is not None
                rec["c"] = forge_commit(commit).encode()
        data = export(good, edit)
    copy = fresh(threads=threads)
    records = read_records(io.BytesIO(data))
    read_header(records, GENESIS, "export")
    with pytest.raises(ChainFileError, match=f"block {at} rejected: .*{reason}" if reason != "rejected"
                       else f"block {at} rejected"):
        await import_records(copy, records, threads=threads)
    # everything before the forgery is committed, nothing from it on
    assert copy.height == at - 1
    before = good.store.get_block(at - 1)
    assert before is not None and copy.tip.block_hash == before.hash()
    assert copy.store.get_block(at) is None


async def test_the_lookahead_records_only_what_verifies(good: Ledger) -> None:
    """It caches the good tx signatures and precommits of a block; a forged one is left
    out, for the block check to refuse with its usual error."""
    block, commit = good.store.get_block(4), good.store.get_commit(4)
    assert block is not None and commit is not None and block.last_commit is not None
    forged = forge_commit(commit)
    sigs = SigCache()
    ahead = Lookahead(sigs, CHAIN, threads=True, workers=2)
    try:
        await ahead.collect(ahead.submit(block, forged))
    finally:
        ahead.close()
    assert all(t.hash in sigs for t in block.txs)
    keys = {commit_sig_key(CHAIN, forged, s) for s in forged.signatures}
    assert ahead.votes == {commit_sig_key(CHAIN, c, s) for c in (forged, block.last_commit)
                           for s in c.signatures} - {commit_sig_key(CHAIN, forged, forged.signatures[0])}
    assert len(keys & ahead.votes) == 2
    with pytest.raises(ValidationError, match="invalid precommit signature"):
        verify_commit(forged, CHAIN, GENESIS.powers(), block.hash(), 4, verified=ahead.votes)
    verify_commit(block.last_commit, CHAIN, GENESIS.powers(), block.header.prev_hash, 3, verified=ahead.votes)


async def test_a_pool_that_is_behind_hands_its_unstarted_checks_to_the_caller(good: Ledger) -> None:
    """With the only worker busy, collecting a block runs its checks on the caller's
    thread (no idle wait), with the same outcome: good signatures cached, a forged
    precommit left out."""
    block, commit = good.store.get_block(6), good.store.get_commit(6)
    assert block is not None and commit is not None
    forged = forge_commit(commit)
    sigs = SigCache()
    ahead = Lookahead(sigs, CHAIN, threads=True, workers=1)
    release = threading.Event()
    try:
        first = ahead.submit(block, forged)  # starts the pool
        assert first is not None and ahead._pool is not None
        busy = ahead._pool.submit(release.wait)
        pending = ahead.submit(block, forged)
        assert pending is not None
        await ahead.collect(pending)  # the worker is still busy: taken over here
        assert not busy.done() and all(f.cancelled() for f, _ in pending.txs) and pending.votes[0].cancelled()
        assert all(t.hash in sigs for t in block.txs)
        assert commit_sig_key(CHAIN, forged, forged.signatures[0]) not in ahead.votes
        assert commit_sig_key(CHAIN, forged, forged.signatures[1]) in ahead.votes
    finally:
        release.set()
        ahead.close()


async def test_the_lookahead_without_threads_does_nothing(good: Ledger) -> None:
    block, commit = good.store.get_block(2), good.store.get_commit(2)
    assert block is not None
    sigs = SigCache()
    ahead = Lookahead(sigs, CHAIN, threads=False)
    pending = ahead.submit(block, commit)
    await ahead.collect(pending)
    assert pending is None and not ahead.votes and not any(t.hash in sigs for t in block.txs)


def test_verified_signatures_still_obey_the_quorum_and_the_authority_set(good: Ledger) -> None:
    """``verified`` only skips the Ed25519 check: a signer outside the set, a duplicate
    or too little power is refused all the same."""
    block, commit = good.store.get_block(3), good.store.get_commit(3)
    assert block is not None and commit is not None
    everything = {commit_sig_key(CHAIN, commit, s) for s in commit.signatures}
    only_a = {pub("A"): 1}
    with pytest.raises(ValidationError, match="non-authority"):
        verify_commit(commit, CHAIN, only_a, block.hash(), 3, verified=everything)
    one = Commit(commit.height, commit.round, commit.block_hash, commit.signatures[:1])
    with pytest.raises(ValidationError, match="needs > 2/3"):
        verify_commit(one, CHAIN, GENESIS.powers(), block.hash(), 3, verified=everything)
    twice = Commit(commit.height, commit.round, commit.block_hash, (commit.signatures[0],) * 3)
    with pytest.raises(ValidationError, match="duplicate"):
        verify_commit(twice, CHAIN, GENESIS.powers(), block.hash(), 3, verified=everything)
    verify_commit(commit, CHAIN, GENESIS.powers(), block.hash(), 3, verified=everything)


class Killed(Exception):
    """The write failed (a full disk, a dying process)."""


async def test_a_write_that_fails_in_its_thread_stops_the_import_and_leaves_the_prefix(good: Ledger) -> None:
    """The next records are decoded while a block's write is in flight; a write that
    fails still stops the import with its error, the tip on the last written block."""

    class FailingKV(MemoryKV):
        writes = 0
        fail_at = -1

        def write(self, puts: Any, deletes: Any = (), *, sync: bool = True) -> None:
            self.writes += 1
            if self.writes == self.fail_at:
                raise Killed
            super().write(puts, deletes, sync=sync)

    kv = FailingKV()
    copy = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=True)
    kv.fail_at = kv.writes + 4  # blocks 1..3 are written, block 4's write fails
    records = read_records(io.BytesIO(export(good)))
    read_header(records, GENESIS, "export")
    with pytest.raises(Killed):
        await import_records(copy, records)
    assert copy.height == 3 and copy.store.head_height() == 3 and copy.store.get_block(4) is None
    block3 = good.store.get_block(3)
    assert block3 is not None and copy.tip.block_hash == block3.hash()


SYNC_CASES = [("a forged tx signature", 7), ("a forged precommit in the block's last_commit", 9),
              ("a forged precommit in the block's commit", 5)]


@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize(("what", "at"), SYNC_CASES, ids=[c[0] for c in SYNC_CASES])
async def test_block_sync_stops_at_a_forged_block_and_bans_its_servers(
    autojump_clock: trio.abc.Clock, tmp_path: Any, what: str, at: int, threads: bool
) -> None:
    """Four authorities hold a chain whose block ``at`` is forged (their own keys signed
    its commit) or whose commit for ``at`` is; an empty observer block-syncs from them
    with the look-ahead on (``threads``) or off. It commits every block before the
    forgery, refuses that one (a fault of the peer that served it: before issue 14,
    session 2, the refusal was raised inside the consensus engine's task and stopped the
    observer's engine) and never gets past it."""
    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=3)
    kw = {"a forged tx signature": {"bad_tx_at": at},
          "a forged precommit in the block's last_commit": {"bad_last_commit_at": at}}.get(what, {})
    chain = await abuild(genesis=c.genesis, signers=[k.signing for k in c.keys[:4]], **kw)
    entries = dict(chain.store.kv.iterate(b""))
    if not kw:  # the servers hold (and serve) a commit with a corrupted precommit
        commit = chain.store.get_commit(at)
        assert commit is not None
        entries[schema.commit_key(at)] = forge_commit(commit).encode()
    for node in c.nodes[:4]:
        node.kv.write(list(entries.items()), sync=True)
        node.restart_state()
        assert node.height == BLOCKS
    observer = c.nodes[4]
    observer.engine.lookahead.threads = threads
    observer.engine.verifier.threads = threads
    faults = Changes()
    real_fault = observer.sync._fault

    def fault(peer: Any, why: str) -> None:
        real_fault(peer, why)
        faults.notify()

    observer.sync._fault = fault  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(300):
            # every one of the four servers gets to serve the forgery, and is refused
            await faults.wait_for(lambda: observer.sync.book.faults_total >= 4)
        assert observer.height == at - 1
        before = chain.store.get_block(at - 1)
        assert before is not None and observer.ledger.tip.block_hash == before.hash()
        assert observer.ledger.store.get_block(at) is None
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("threads", [True, False])
async def test_an_error_while_the_write_is_in_flight_leaves_the_tip_on_the_written_block(
    good: Ledger, threads: bool
) -> None:
    """``Ledger.commit(meanwhile=...)``: an error of the work done beside the write is
    raised after the tip has moved to the block the write made durable, so the ledger
    never lags its store."""
    block, commit = good.store.get_block(1), good.store.get_commit(1)
    assert block is not None and commit is not None
    copy = fresh(threads=threads)
    ex = validate_block(copy.app, copy.state, copy.tip, block, SigCache(), max_txs=10_000, max_bytes=1 << 24)

    def boom() -> None:
        raise Killed

    with pytest.raises(Killed):
        await copy.commit(block, commit, ex, meanwhile=boom)
    assert copy.height == 1 == copy.store.head_height() and copy.tip.block_hash == block.hash()
