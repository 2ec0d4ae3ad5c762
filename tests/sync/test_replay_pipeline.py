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
"""

from __future__ import annotations

import functools
import io
import logging
import signal
import subprocess
import sys
import threading
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
from medchaind.testing.appkit import enc_key, key, make_genesis
from medchaind.types import Block, Commit, Header, Tx, sign_commit_vote, sign_tx

GENESIS = make_genesis({"A": 1, "B": 1, "C": 1})
CHAIN = GENESIS.chain_id
SIGNERS = tuple(key(n) for n in "ABC")
BLOCKS = 14  # more than the look-ahead (8)


def txs_for(h: int) -> list[Tx]:
    """Three registrations; from block 2 on also an update by a patient the block before
    registered (reads its identity and nonce from that block's writes) and a tx with a
    nonce from the future (a failed receipt)."""
    out = [sign_tx(key(f"p{h}-{i}"), CHAIN, "identity.register", 0,
                   {"role": "patient", "enc_key": enc_key(f"p{h}-{i}")}) for i in range(3)]
    if h > 1:
        out.append(sign_tx(key(f"p{h - 1}-0"), CHAIN, "identity.update", 1, {"enc_key": enc_key(f"u{h}")}))
        out.append(sign_tx(key(f"p{h - 1}-1"), CHAIN, "identity.update", 7, {"enc_key": enc_key(f"x{h}")}))
    return out


def sign_commit(block: Block) -> Commit:
    sigs = sorted((sign_commit_vote(k, CHAIN, block.height, 0, block.hash()) for k in SIGNERS),
                  key=lambda s: s.validator)
    return Commit(block.height, 0, block.hash(), tuple(sigs))


async def abuild(*, bad_app_hash_at: int = 0) -> Ledger:
    """The chain, committed by its own node (``Ledger.commit``, no import); block
    ``bad_app_hash_at`` claims an app_hash its txs do not lead to (signed by all)."""
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False)
    for h in range(1, BLOCKS + 1):
        tip = ledger.tip
        last = ledger.store.get_commit(tip.height) if tip.height else None
        block, ex = build_block(ledger.app, ledger.state, tip, txs_for(h), proposer=SIGNERS[0].public_key,
                                time_ms=tip.time_ms + 1000, round_=0, last_commit=last)
        if h == bad_app_hash_at:
            m = block.header.to_map()
            m["app_hash"] = crypto.sha256(b"not the state")
            header = Header(**m)
            block = Block(header, block.txs, block.last_commit, header.hash())
            commit = sign_commit(block)
            ledger.store.commit_block(block, commit, ex.writes, ex.receipts)  # bypasses the checks
            return ledger
        await ledger.commit(block, sign_commit(block), ex)
    return ledger


@pytest.fixture(scope="module")
def good() -> Ledger:
    return trio.run(abuild)


def export(ledger: Ledger, last: int | None = None) -> bytes:
    buf = io.BytesIO()
    write_chain(ledger.store, GENESIS, buf, 1, ledger.store.head_height() if last is None else last)
    return buf.getvalue()


def dump(ledger: Ledger) -> dict[bytes, bytes]:
    """Every key and value of the ledger's database."""
    return dict(ledger.store.kv.iterate(b""))


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
