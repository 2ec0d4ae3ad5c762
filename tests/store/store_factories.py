"""Deterministic chains for the store tests (also imported by ``crash_child.py``).

Everything here is a pure function of the height: keys come from fixed seeds and
Ed25519 signatures are deterministic, so block h built twice is the same bytes. That
lets a test (or a crash-recovery check in another process) recompute exactly what the
store must hold for every height without sharing state with the writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medchaind import crypto, types
from medchaind.store import ChainStore, KVStore, LevelDBKV, MemoryKV, StateWrites, schema
from medchaind.types import Block, Commit, Header, Receipt

CHAIN = "test-chain"
PROPOSER = crypto.SigningKey(crypto.sha256(b"store-tests/proposer"))
USER = crypto.SigningKey(crypto.sha256(b"store-tests/user"))
REPO_ROOT = Path(__file__).resolve().parents[2]
FILL_VALUE = b"\xab" * 1024
BACKENDS = ("memory", "leveldb")


def new_kv(backend: str, path: Path) -> KVStore:
    """A fresh store of ``backend`` ("memory" or "leveldb"; LevelDB lives in ``path``)."""
    if backend == "memory":
        return MemoryKV()
    if backend == "leveldb":
        return LevelDBKV.open(path)
    raise ValueError(f"unknown backend {backend!r}")


@dataclass(frozen=True, slots=True)
class BlockFixture:
    """A block with everything ChainStore.commit_block takes alongside it."""

    block: Block
    commit: Commit
    state_writes: StateWrites
    receipts: tuple[Receipt, ...]


def h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


def make_txs(height: int, n_txs: int) -> tuple[types.Tx, ...]:
    # Nonces unique per (height, index), so every tx hash in a chain is distinct.
    return tuple(
        types.sign_tx(USER, CHAIN, "identity.register", (height << 16) + i,
                      {"name": f"user-{height}-{i}", "role": "patient"})
        for i in range(n_txs)
    )


def make_receipts(n_txs: int) -> tuple[Receipt, ...]:
    return tuple(
        Receipt() if i % 3 else Receipt("bad_nonce", "nonce too low", ({"index": i},))
        for i in range(n_txs)
    )


def make_state_writes(height: int, n_fill: int = 0) -> dict[tuple[str, bytes], bytes | None]:
    """State written by block ``height``.

    identity/blk/<h> is added by every block, identity/counter always holds the head,
    records/tmp/<h> replaces records/tmp/<h-1> (a delete and a put in one block) and
    records/fill/<h><i> pads the write batch for the crash test.
    """
    writes: dict[tuple[str, bytes], bytes | None] = {
        ("identity", b"blk/" + h8(height)): b"block-" + str(height).encode(),
        ("identity", b"counter"): h8(height),
        ("records", b"tmp/" + h8(height)): b"tmp",
    }
    if height > 1:
        writes[("records", b"tmp/" + h8(height - 1))] = None
    for i in range(n_fill):
        writes[("records", b"fill/" + h8(height) + i.to_bytes(2, "big"))] = FILL_VALUE
    return writes


def make_block(
    height: int,
    prev: Block | None,
    prev_commit: Commit | None,
    n_txs: int = 3,
    n_fill: int = 0,
    txs: tuple[types.Tx, ...] | None = None,
) -> BlockFixture:
    """Block ``height`` on top of ``prev`` (None at height 1), with its commit and results.

    ``txs`` overrides the generated transactions (``n_txs`` is then ignored).
    """
    if txs is None:
        txs = make_txs(height, n_txs)
    receipts = make_receipts(len(txs))
    header = Header(
        chain=CHAIN,
        height=height,
        round=height % 2,
        time_ms=1_700_000_000_000 + height * 1000,
        prev_hash=bytes(32) if prev is None else prev.hash(),
        tx_root=types.tx_root(txs),
        app_hash=crypto.sha256(b"app" + h8(height)),
        results_hash=types.results_hash(list(receipts)),
        validators_hash=types.validators_hash({PROPOSER.public_key: 1}),
        proposer=PROPOSER.public_key,
        last_commit_hash=types.EMPTY_HASH if prev_commit is None else prev_commit.hash(),
    )
    block = Block(header, txs, prev_commit)
    block.validate_basic()
    block_hash = block.hash()
    sig = types.sign_commit_vote(PROPOSER, CHAIN, height, header.round, block_hash)
    commit = Commit(height, header.round, block_hash, (sig,))
    return BlockFixture(block, commit, make_state_writes(height, n_fill), receipts)


def make_chain(n_blocks: int, n_txs: int = 3, n_fill: int = 0) -> Iterator[BlockFixture]:
    """Blocks 1..n_blocks, each linked to the previous one."""
    prev: BlockFixture | None = None
    for height in range(1, n_blocks + 1):
        prev = make_block(
            height,
            None if prev is None else prev.block,
            None if prev is None else prev.commit,
            n_txs, n_fill,
        )
        yield prev


def commit_fixture(store: ChainStore, fx: BlockFixture) -> None:
    store.commit_block(fx.block, fx.commit, fx.state_writes, fx.receipts)


def assert_chain_complete(store: ChainStore, head: int, n_txs: int, n_fill: int) -> None:
    """Check the store holds exactly blocks 1..head of ``make_chain`` and nothing above.

    Every height <= head must be entirely present (block, commit, hash index, tx
    locations, receipts, state) and no trace of any height > head may exist.
    """
    assert store.head_height() == head
    kv = store.kv
    fx: BlockFixture | None = None
    for fx in make_chain(head, n_txs, n_fill):
        h = fx.block.height
        got = store.get_block(h)
        assert got is not None, f"block {h} missing"
        assert got.encode() == fx.block.encode(), f"block {h} differs"
        assert store.get_block_by_hash(fx.block.hash()) == got
        commit = store.get_commit(h)
        assert commit is not None and commit.encode() == fx.commit.encode(), f"commit {h}"
        for i, (tx, receipt) in enumerate(zip(fx.block.txs, fx.receipts, strict=True)):
            assert store.get_tx_location(tx.hash) == (h, i), f"tx {h}/{i} location"
            assert store.get_receipt(tx.hash) == receipt, f"tx {h}/{i} receipt"
        assert store.state_get("identity", b"blk/" + h8(h)) == b"block-" + str(h).encode()
        fills = list(store.state_iterate("records", b"fill/" + h8(h)))
        assert len(fills) == n_fill, f"state fill of block {h}"
    if head == 0:
        assert store.head() is None
    else:
        assert fx is not None and store.head() == fx.block.header
        assert store.state_get("identity", b"counter") == h8(head)
        assert [k for k, _ in store.state_iterate("records", b"tmp/")] == [b"tmp/" + h8(head)]
    # Nothing above the head, in any namespace.
    assert store.get_block(head + 1) is None and store.get_commit(head + 1) is None

    def count(prefix: bytes) -> int:
        return sum(1 for _ in kv.iterate(prefix))

    assert count(schema.BLOCK_PREFIX) == head
    assert count(schema.COMMIT_PREFIX) == head
    assert count(schema.BLOCK_HASH_PREFIX) == head
    assert count(schema.TX_PREFIX) == head * n_txs
    assert count(schema.RECEIPT_PREFIX) == 0  # receipts live in the tx entries
    assert count(schema.state_prefix("identity") + b"blk/") == head
    assert count(schema.state_prefix("records") + b"fill/") == head * n_fill
