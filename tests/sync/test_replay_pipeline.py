"""``medchaind import`` checks and executes block N+1 while block N's write is in flight.

:func:`medchaind.node.chainfile.import_records` (``pipeline=True``, the default) runs
block N+1's checks and execution against :class:`medchaind.ledger.PendingState` (N's
write-set and trie records over the committed state) while N's batch is written and
fsync'd. What must hold, and is checked here:

* it writes exactly what the serial import (``pipeline=False``) and the chain's own
  node wrote: every key and value of the database, byte for byte, on a chain whose
  blocks read what the block before wrote (nonces, identities), with failed txs;
* blocks are written one at a time and in order, each only once the ledger's tip is on
  the block before it (the state never runs ahead of the blocks);
* a bad block checked during the previous block's write changes nothing after the
  last good block: the database equals that of an import of the good prefix alone;
* PendingState answers as the committed state will (a model-based property).

Block sync takes the same pipeline (``BftEngine.submit_synced(following=...)``), checked
at the end on a Cluster (four authorities serving the chain, an empty observer syncing
it): the synced database equals the servers' byte for byte, pipelined or not; a bad
block mid-range is refused with the usual error and leaves exactly the prefix; peers
that answer garbage or never are survived; a crash with the next block checked keeps
the prefix and resumes.
"""

from __future__ import annotations

import functools
import io
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from medchaind import codec, crypto
from medchaind.app import Execution
from medchaind.app.trie import TrieDelta
from medchaind.chain import build_block
from medchaind.crypto import SigningKey
from medchaind.ledger import Ledger, PendingState, StoreState
from medchaind.modules import make_app
from medchaind.node.chainfile import (
    ChainFileError,
    import_chain,
    import_records,
    read_header,
    read_records,
    write_chain,
)
from medchaind.store import ChainStore, MemoryKV, open_store, schema
from medchaind.sync.wire import SYNC_PROTOCOL, decode_sync_request
from medchaind.testing.appkit import enc_key, key, make_genesis
from medchaind.testing.cluster import Cluster, ClusterNode
from medchaind.testing.wait import Changes
from medchaind.types import Block, Commit, Genesis, Header, Tx, sign_commit_vote, sign_tx

GENESIS = make_genesis({"A": 1, "B": 1, "C": 1})
CHAIN = GENESIS.chain_id
SIGNERS = tuple(key(n) for n in "ABC")
BLOCKS = 14  # more than the look-ahead (8)


def txs_for(h: int, chain: str = CHAIN) -> list[Tx]:
    """Three registrations; from block 2 on also an update by a patient the block before
    registered (reads its identity and nonce from that block's writes) and a tx with a
    nonce from the future (a failed receipt)."""
    out = [sign_tx(key(f"p{h}-{i}"), chain, "identity.register", 0,
                   {"role": "patient", "enc_key": enc_key(f"p{h}-{i}")}) for i in range(3)]
    if h > 1:
        out.append(sign_tx(key(f"p{h - 1}-0"), chain, "identity.update", 1, {"enc_key": enc_key(f"u{h}")}))
        out.append(sign_tx(key(f"p{h - 1}-1"), chain, "identity.update", 7, {"enc_key": enc_key(f"x{h}")}))
    return out


def sign_commit(block: Block, signers: Sequence[SigningKey] = SIGNERS) -> Commit:
    chain = block.header.chain
    sigs = sorted((sign_commit_vote(k, chain, block.height, 0, block.hash()) for k in signers),
                  key=lambda s: s.validator)
    return Commit(block.height, 0, block.hash(), tuple(sigs))


async def abuild(*, bad_app_hash_at: int = 0, genesis: Genesis = GENESIS, signers: Sequence[SigningKey] = SIGNERS,
                 blocks: int = BLOCKS, extra: dict[int, list[Tx]] | None = None) -> Ledger:
    """The chain, committed by its own node (``Ledger.commit``, no import); block
    ``bad_app_hash_at`` claims an app_hash its txs do not lead to (signed by all);
    ``extra``: more txs for some heights."""
    ledger = Ledger(ChainStore(MemoryKV()), make_app(genesis), genesis, commit_in_thread=False)
    for h in range(1, blocks + 1):
        tip = ledger.tip
        last = ledger.store.get_commit(tip.height) if tip.height else None
        txs = txs_for(h, genesis.chain_id) + (extra or {}).get(h, [])
        block, ex = build_block(ledger.app, ledger.state, tip, txs,
                                proposer=signers[0].public_key, time_ms=tip.time_ms + 1000, round_=0,
                                last_commit=last)
        if h == bad_app_hash_at:
            m = block.header.to_map()
            m["app_hash"] = crypto.sha256(b"not the state")
            header = Header(**m)
            block = Block(header, block.txs, block.last_commit, header.hash())
            commit = sign_commit(block, signers)
            ledger.store.commit_block(block, commit, ex.writes, ex.receipts)  # bypasses the checks
            return ledger
        await ledger.commit(block, sign_commit(block, signers), ex)
    return ledger


@pytest.fixture(scope="module")
def good() -> Ledger:
    return trio.run(abuild)


def export(ledger: Ledger, last: int | None = None) -> bytes:
    buf = io.BytesIO()
    write_chain(ledger.store, GENESIS, buf, 1, ledger.store.head_height() if last is None else last)
    return buf.getvalue()


def dump(ledger: Ledger | ClusterNode) -> dict[bytes, bytes]:
    """Every key and value of the ledger's (or cluster node's) database."""
    kv = ledger.kv if isinstance(ledger, ClusterNode) else ledger.store.kv
    return dict(kv.iterate(b""))


async def replay(data: bytes, *, pipeline: bool, kv: MemoryKV | None = None) -> Ledger:
    copy = Ledger(ChainStore(kv or MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=True)
    records = read_records(io.BytesIO(data))
    read_header(records, GENESIS, "export")
    await import_records(copy, records, pipeline=pipeline)
    return copy


async def test_the_pipelined_import_writes_what_the_serial_import_and_the_node_wrote(
    good: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    data = export(good)
    with caplog.at_level(logging.WARNING, logger="medchaind.node.chainfile"):
        piped = await replay(data, pipeline=True)
    assert not caplog.records  # every block ahead was checked against the tip it got
    serial = await replay(data, pipeline=False)
    assert piped.height == serial.height == BLOCKS
    assert piped.tip == serial.tip == good.tip
    # blocks, commits, receipts, tx locations, state, trie records and values, head
    assert dump(piped) == dump(serial) == dump(good)
    failed = [r for h in range(2, BLOCKS + 1) for t in good.store.get_block(h).txs  # type: ignore[union-attr]
              if (r := good.store.get_receipt(t.hash)) is not None and not r.ok]
    assert len(failed) == BLOCKS - 1  # the future nonces: the chain has failed txs too


class OrderedKV(MemoryKV):
    """Records each block write: its height, whether another write was in flight, and
    the ledger's height when it began."""

    def __init__(self) -> None:
        super().__init__()
        self.ledger: Ledger | None = None
        self.lock = threading.Lock()
        self.events: list[tuple[int, bool, int]] = []

    def write(self, puts: Any, deletes: Any = (), *, sync: bool = True) -> None:
        puts = list(puts.items()) if isinstance(puts, dict) else list(puts)
        head = [v for k, v in puts if k == schema.meta_key("head")]
        if not head or self.ledger is None:
            super().write(puts, deletes, sync=sync)
            return
        busy = not self.lock.acquire(blocking=False)
        try:
            self.events.append((int.from_bytes(head[0], "big"), busy, self.ledger.height))
            super().write(puts, deletes, sync=sync)
        finally:
            if not busy:
                self.lock.release()


async def test_blocks_are_written_one_at_a_time_in_order_after_the_tip_moved(good: Ledger) -> None:
    kv = OrderedKV()
    copy = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=True)
    kv.ledger = copy
    records = read_records(io.BytesIO(export(good)))
    read_header(records, GENESIS, "export")
    await import_records(copy, records, pipeline=True)
    assert [h for h, _, _ in kv.events] == list(range(1, BLOCKS + 1))
    assert not any(busy for _, busy, _ in kv.events)
    # block h's write begins only once the tip is on h - 1 (its write returned)
    assert [at for _, _, at in kv.events] == list(range(0, BLOCKS))


@pytest.mark.parametrize("pipeline", [True, False])
async def test_a_bad_block_checked_beside_the_last_write_changes_nothing_after_it(pipeline: bool) -> None:
    bad_at = 10
    forged = await abuild(bad_app_hash_at=bad_at)
    copy = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=True)
    records = read_records(io.BytesIO(export(forged)))
    read_header(records, GENESIS, "export")
    with pytest.raises(ChainFileError, match=f"block {bad_at} rejected: app_hash differs"):
        await import_records(copy, records, pipeline=pipeline)
    assert copy.height == bad_at - 1 == copy.store.head_height()
    prefix = await replay(export(forged, last=bad_at - 1), pipeline=False)
    assert dump(copy) == dump(prefix)  # not one key of block 10 or of its execution


# ------------------------------------------------------------------ PendingState

MODULES = ("auth", "identity")
_keys = st.binary(min_size=0, max_size=3)
# values above StoreState's value-cache bound (512 bytes) are read from the store
_values = st.one_of(st.binary(min_size=1, max_size=8), st.binary(min_size=600, max_size=700))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from(MODULES), _keys), _values, max_size=12),
       st.dictionaries(st.tuples(st.sampled_from(MODULES), _keys), st.one_of(st.none(), _values), max_size=12),
       st.binary(max_size=2))
def test_pending_state_reads_as_the_state_after_the_write(
    committed: dict[tuple[str, bytes], bytes], writes: dict[tuple[str, bytes], bytes | None], prefix: bytes
) -> None:
    kv = MemoryKV()
    kv.write([(schema.state_key(m, k), v) for (m, k), v in committed.items()])
    base = StoreState(ChainStore(kv))
    for m, k in committed:  # some of them cached, as a running node's are
        if len(k) % 2:
            base.get(m, k)
    trie_puts = {crypto.sha256(codec.encode(i)): codec.encode([i]) for i in range(3)}
    ex = Execution(writes, [], b"\x00" * 32, b"\x00" * 32, None)
    pending = PendingState(base, ex)
    after = {k: v for k, v in {**committed, **writes}.items() if v is not None}
    for m, k in set(committed) | set(writes) | {("auth", b"absent")}:
        assert pending.get(m, k) == after.get((m, k))
    for m in MODULES:
        want = sorted((k, v) for (mm, k), v in after.items() if mm == m and k.startswith(prefix))
        assert list(pending.iterate(m, prefix)) == want
    assert pending.trie_node(next(iter(trie_puts))) is None  # no trie delta: the store's (none)
    delta = TrieDelta(b"\x00" * 32, trie_puts, frozenset(), dict(trie_puts))
    with_trie = PendingState(base, Execution(writes, [], b"\x00" * 32, b"\x00" * 32, delta))
    assert all(with_trie.trie_node(h) == r and with_trie.trie_value(h) == r for h, r in trie_puts.items())


def test_build_is_deterministic() -> None:
    # the bad-block test compares a forged chain's prefix with an import of that prefix:
    # both are built from the same deterministic keys and times
    a, b = (trio.run(functools.partial(abuild, bad_app_hash_at=3)) for _ in range(2))
    assert dump(a) == dump(b)


# ------------------------------------------------------------------ crash safety

_CHILD = """
import sys
from pathlib import Path
from medchaind.node.chainfile import import_chain

stop_at = int(sys.argv[3])

def progress(h):
    print(h, flush=True)
    if h == stop_at:  # block h is durable and h + 1 is checked: wait here to be killed
        sys.stdin.readline()

import_chain(Path(sys.argv[1]), Path(sys.argv[2]), progress=progress)
"""


def _datadir(path: Path) -> Path:
    path.mkdir()
    (path / "genesis.json").write_text(GENESIS.to_json())
    return path


def _dump_datadir(datadir: Path) -> dict[bytes, bytes]:
    kv, _ = open_store(datadir)
    try:
        return dict(kv.iterate(b""))
    finally:
        kv.close()


@pytest.mark.parametrize("stop_at", [1, 6])
def test_a_kill_with_the_next_block_checked_keeps_the_prefix_and_resumes(
    good: Ledger, tmp_path: Path, stop_at: int
) -> None:
    """SIGKILL of a real ``import_chain`` (LevelDB, the write in its thread) right after
    block ``stop_at`` is durable, while block ``stop_at + 1`` has been checked and
    executed against the pending state: the database is exactly an import of blocks
    1..stop_at, and importing the file again completes the chain."""
    src = tmp_path / "chain.export"
    src.write_bytes(export(good))
    crashed = _datadir(tmp_path / "crashed")
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(crashed), str(src), str(stop_at)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        seen = [int(child.stdout.readline()) for _ in range(stop_at)]
        assert seen == list(range(1, stop_at + 1))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    prefix_file = tmp_path / "prefix.export"
    prefix_file.write_bytes(export(good, last=stop_at))
    clean = _datadir(tmp_path / "clean")
    assert import_chain(clean, prefix_file, pipeline=False)["height"] == stop_at
    assert _dump_datadir(crashed) == _dump_datadir(clean)
    done = import_chain(crashed, src)
    assert done["height"] == BLOCKS and done["head_hash"] == "0x" + good.tip.block_hash.hex()
    assert done["app_hash"] == "0x" + good.tip.app_hash.hex()


# ------------------------------------------------------------------ block sync

# Block sync takes the same pipeline (BftEngine.submit_synced's ``following``): while
# block N's write is in flight the engine checks and executes N+1 against
# Ledger.pending(N). Four authorities of a Cluster hold the chain above (built offline
# with their keys, so every server holds the same commits) and an empty observer
# syncs it over the MemoryNetwork; the look-ahead's worker threads on or off.


#: a governance vote in block 5 adds authority "E" from height 7 (docs/protocol.md §15):
#: commits from 7 on are checked against the new set, which the pipeline reads from
#: the state block 6 leaves while block 6 is written
ADD_AT = 5


def add_authority(c: Cluster) -> dict[int, list[Tx]]:
    change = {"public_key": key("E").public_key, "name": "E", "power": 1}
    return {ADD_AT: [sign_tx(c.keys[i].signing, c.genesis.chain_id, "governance.add_authority", 0, change)
                     for i in range(3)]}


async def cluster_with_chain(tmp_path: Path, *, bad_app_hash_at: int = 0,
                             set_change: bool = False) -> tuple[Cluster, Ledger]:
    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=5)
    chain = await abuild(genesis=c.genesis, signers=[k.signing for k in c.keys[:4]],
                         bad_app_hash_at=bad_app_hash_at, extra=add_authority(c) if set_change else None)
    if set_change:  # the chain did change its authority set
        assert key("E").public_key in chain.tip.powers and len(chain.tip.powers) == 5
    entries = dump(chain)
    for node in c.nodes[:4]:
        node.kv = MemoryKV()  # exactly the chain's database (not over the node's own genesis)
        node.kv.write(list(entries.items()), sync=True)
        node.restart_state()
        assert node.height == chain.store.head_height()
    return c, chain


def observe(c: Cluster, *, pipeline: bool, threads: bool) -> tuple[ClusterNode, list[str], Changes]:
    """The observer, set up; the reasons of the faults it records, and their changes."""
    observer = c.nodes[4]
    observer.sync.pipeline = pipeline
    observer.engine.lookahead.threads = threads
    observer.engine.verifier.threads = threads
    reasons: list[str] = []
    faults = Changes()
    real_fault = observer.sync._fault

    def fault(peer: Any, why: str) -> None:
        real_fault(peer, why)
        reasons.append(why)
        faults.notify()

    observer.sync._fault = fault  # type: ignore[method-assign]
    return observer, reasons, faults


MODES = [(True, True), (True, False), (False, True)]  # (pipeline, threads); False: the old path


@pytest.mark.parametrize("set_change", [False, True], ids=["same set", "authority added mid-range"])
@pytest.mark.parametrize(("pipeline", "threads"), MODES)
async def test_block_sync_writes_what_the_node_that_made_the_chain_wrote(
    autojump_clock: trio.abc.Clock, tmp_path: Path, pipeline: bool, threads: bool, set_change: bool
) -> None:
    """Byte for byte: the synced observer's database is its servers' (blocks, commits,
    receipts, tx locations, state, trie records and values, head), pipelined or not,
    also across an authority-set change."""
    c, chain = await cluster_with_chain(tmp_path, set_change=set_change)
    observer, reasons, _ = observe(c, pipeline=pipeline, threads=threads)
    observer.sync.span = 5  # several ranges: the pipeline restarts at each one
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(300):
            await observer.ledger.wait_height(BLOCKS)
        nursery.cancel_scope.cancel()
    assert not reasons and observer.ledger.tip == chain.tip
    assert dump(observer) == dump(chain) == dump(c.nodes[0])
    # every block but the first of each range was checked during its parent's write
    assert observer.engine.synced_checked_ahead >= (BLOCKS - 4 if pipeline else 0)
    assert pipeline or observer.engine.synced_checked_ahead == 0


@pytest.mark.parametrize(("pipeline", "threads"), MODES)
async def test_block_sync_refuses_a_bad_block_mid_range_and_keeps_exactly_the_blocks_before_it(
    autojump_clock: trio.abc.Clock, tmp_path: Path, pipeline: bool, threads: bool
) -> None:
    """Block 10 of a fetched range claims a wrong app_hash (its commit is genuine). The
    pipeline checks it during block 9's write and fails; at its turn it is checked
    again and refused with the same error as without the pipeline; every server of it
    is banned, and the database is exactly that of the chain's first 9 blocks."""
    bad_at = 10
    c, _ = await cluster_with_chain(tmp_path, bad_app_hash_at=bad_at)
    observer, reasons, faults = observe(c, pipeline=pipeline, threads=threads)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(300):
            await faults.wait_for(lambda: observer.sync.book.faults_total >= 4)
        nursery.cancel_scope.cancel()
    assert reasons and all(
        r == f"served an invalid block at height {bad_at} (app_hash differs from re-execution (state divergence))"
        for r in reasons), reasons
    assert observer.height == bad_at - 1 == observer.ledger.store.head_height()
    prefix = await abuild(genesis=c.genesis, signers=[k.signing for k in c.keys[:4]], blocks=bad_at - 1)
    assert dump(observer) == dump(prefix)  # not one key of block 10


async def test_block_sync_past_a_peer_that_sends_garbage_and_one_that_stalls(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """Servers 0 and 1 claim the chain (their status is honest) but answer every range
    with garbage (0) or never (1). The observer bans 0, gives up on 1 after the deadline,
    and once 2 and 3 are up syncs everything from them, pipelined, byte for byte."""
    c, chain = await cluster_with_chain(tmp_path)
    observer, reasons, faults = observe(c, pipeline=True, threads=True)
    stalled = Changes()
    asked_stalled: list[int] = []

    def serve(node: ClusterNode, how: str) -> None:
        real = node.sync._serve

        async def handler(peer: Any, data: bytes) -> bytes:
            if decode_sync_request(data)["op"] != "blocks":
                return await real(peer, data)
            if how == "garbage":
                return b"\xff\x00garbage"
            asked_stalled.append(1)
            stalled.notify()
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        node.net.set_handler(SYNC_PROTOCOL, handler)

    serve(c.nodes[0], "garbage")
    serve(c.nodes[1], "stall")
    async with trio.open_nursery() as nursery:
        await c.start(nursery, which=[0, 1, 4])
        with trio.fail_after(300):
            await faults.wait_for(lambda: bool(reasons))
            await stalled.wait_for(lambda: bool(asked_stalled))
        assert observer.height == 0
        await c.start(nursery, which=[2, 3])
        with trio.fail_after(300):
            await observer.ledger.wait_height(BLOCKS)
        nursery.cancel_scope.cancel()
    assert reasons and all(r.startswith("malformed blocks answer") for r in reasons), reasons
    assert observer.sync.book.banned(c.nodes[0].net.peer_id, trio.current_time())
    assert dump(observer) == dump(chain)
    assert observer.engine.synced_checked_ahead >= BLOCKS - 2


async def test_a_crash_with_the_next_synced_block_checked_keeps_the_prefix_and_resumes(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """The observer stops (every task cancelled) right after block 6 is written, while
    block 7 has been checked and executed against the pending state: its store is
    exactly the chain's first 6 blocks (nothing of 7; the tip reloads to 6), and after
    a restart it syncs the rest, byte for byte."""
    stop_at = 6
    c, chain = await cluster_with_chain(tmp_path)
    observer, reasons, _ = observe(c, pipeline=True, threads=True)
    engine = observer.engine
    real_check = engine._check_following

    def check_then_crash(cur: Any, following: Any, *, basic_checked: bool) -> None:
        real_check(cur, following, basic_checked=basic_checked)
        if cur.block.height == stop_at:
            assert engine._synced_ahead is not None and engine._synced_ahead.block.height == stop_at + 1
            observer.crash()

    engine._check_following = check_then_crash  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(300):
            await observer.wait_stopped()
        prefix = await abuild(genesis=c.genesis, signers=[k.signing for k in c.keys[:4]], blocks=stop_at)
        assert observer.ledger.store.head_height() == stop_at
        assert dump(observer) == dump(prefix)
        await c.restart(4)
        assert observer.height == stop_at and observer.ledger.tip == prefix.tip
        with trio.fail_after(300):
            await observer.ledger.wait_height(BLOCKS)
        nursery.cancel_scope.cancel()
    assert not reasons
    assert dump(observer) == dump(chain)
