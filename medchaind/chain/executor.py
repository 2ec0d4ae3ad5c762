"""Building and validating blocks: from a decided block to state changes and receipts.

Pure and synchronous. The consensus engine (medchaind.consensus.bft) decides *which*
block is next; this module says what a block must look like given its parent
(:class:`Tip`) and what executing it does. Proposer and validators run the same
:func:`execute_block`, so a proposal whose header disagrees with the re-execution is
rejected.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from ..app import App, BlockInfo, Execution, StateReader
from ..errors import InvalidBlock, SignatureError
from ..types import EMPTY_HASH, Block, Commit, Header, Tx, tx_root, validators_hash, verify_commit


@dataclass(frozen=True, slots=True)
class Tip:
    """The last committed block as seen by the next one (height 0 is genesis)."""

    height: int
    block_hash: bytes
    app_hash: bytes
    time_ms: int
    #: the authority set of the *next* height (it signs the next block)
    powers: dict[bytes, int]
    #: the authority set that signed this block (None at genesis, or when not known: a
    #: node restarted right after a set change); a light client checks the block's commit
    #: with it (docs/protocol.md §23.5)
    block_powers: dict[bytes, int] | None = None


class SigCache:
    """Hashes of txs whose signatures verified, so each tx is verified once per node.

    What it serves: a tx is verified when it reaches the node (admission, gossip, a
    proposal or a synced block, often in worker threads ahead of use) and its hash is
    looked up when the tx is admitted and when its block is validated. Once the tx is
    committed no one asks again (a committed tx is refused before any signature check),
    so the owner calls :meth:`discard` with a committed block's hashes and the cache holds
    about what the mempool and the blocks in flight hold, not the chain's history.
    ``capacity`` (oldest first out) bounds what is never committed: txs verified and
    then refused, dropped or evicted. ~150 bytes per hash with overhead.

    Eviction costs time, never safety: a hash that is not here is verified again
    (:meth:`verify`); only a hash whose signature verified is ever added.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("SigCache capacity must be at least 1")
        self.capacity = capacity
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def add(self, tx_hash: bytes) -> None:
        self._seen[tx_hash] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def discard(self, tx_hashes: Iterable[bytes]) -> None:
        """Forget ``tx_hashes`` (those of a committed block): absent ones are ignored."""
        pop = self._seen.pop
        for h in tx_hashes:
            pop(h, None)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, tx: Tx) -> None:
        """Raise SignatureError unless the tx's signature is (or was) verified."""
        if tx.hash in self._seen:
            self.hits += 1
            return
        self.misses += 1
        tx.verify_signature()
        self.add(tx.hash)


def next_time_ms(tip: Tip, now_ms: int) -> int:
    """Block time is the proposer's clock, but strictly after the parent's."""
    return max(now_ms, tip.time_ms + 1)


def build_block(
    app: App,
    state: StateReader,
    tip: Tip,
    txs: Sequence[Tx],
    *,
    proposer: bytes,
    time_ms: int,
    round_: int,
    last_commit: Commit | None,
) -> tuple[Block, Execution]:
    height = tip.height + 1
    info = BlockInfo(app.chain_id, height, time_ms, proposer)
    ex = app.execute(state, info, txs, tip.app_hash)
    header = Header(
        chain=app.chain_id, height=height, round=round_, time_ms=time_ms,
        prev_hash=tip.block_hash, tx_root=tx_root(txs), app_hash=ex.app_hash,
        results_hash=ex.results_hash, validators_hash=validators_hash(tip.powers),
        proposer=proposer,
        last_commit_hash=EMPTY_HASH if last_commit is None else last_commit.hash(),
    )
    return Block(header, tuple(txs), last_commit, header.hash()), ex


def validate_block(
    app: App, state: StateReader, tip: Tip, block: Block, sigs: SigCache, *, max_txs: int, max_bytes: int,
    basic_checked: bool = False,
) -> Execution:
    """Check ``block`` against its parent and re-execute it; raise InvalidBlock on any mismatch.

    ``basic_checked``: the caller got ``block`` from :func:`~medchaind.types.decode_block`
    (replay: ``medchaind import``, block sync), which already ran ``validate_basic`` (its
    tx root is a SHA-256 per tx and per Merkle node, ~1.6 us per tx), and nothing can
    have changed it since (a Block is frozen). Every other rule is checked here."""
    h = block.header
    if not basic_checked:
        try:
            block.validate_basic()
        except Exception as exc:
            raise InvalidBlock(str(exc)) from None
    if h.chain != app.chain_id:
        raise InvalidBlock(f"block for chain {h.chain!r}")
    if h.height != tip.height + 1:
        raise InvalidBlock(f"height {h.height}, expected {tip.height + 1}")
    if h.prev_hash != tip.block_hash:
        raise InvalidBlock("prev_hash does not match the last committed block")
    if h.time_ms <= tip.time_ms:
        raise InvalidBlock("block time does not advance")
    if h.validators_hash != validators_hash(tip.powers):
        raise InvalidBlock("validators_hash does not match the authority set")
    if h.proposer not in tip.powers:
        raise InvalidBlock("proposer is not an authority")
    if len(block.txs) > max_txs or sum(len(t.encoded) for t in block.txs) > max_bytes:
        raise InvalidBlock("block exceeds the size limits")
    seen: set[bytes] = set()
    for t in block.txs:
        if t.hash in seen:
            raise InvalidBlock("duplicate tx in block")
        seen.add(t.hash)
        try:
            sigs.verify(t)
        except SignatureError:
            raise InvalidBlock(f"tx 0x{t.hash.hex()} has an invalid signature") from None
    ex = app.execute(state, BlockInfo(app.chain_id, h.height, h.time_ms, h.proposer), block.txs, tip.app_hash)
    if ex.app_hash != h.app_hash:
        raise InvalidBlock("app_hash differs from re-execution (state divergence)")
    if ex.results_hash != h.results_hash:
        raise InvalidBlock("results_hash differs from re-execution")
    return ex


@dataclass(frozen=True, slots=True)
class Checked:
    """A decided block that passed every check against its parent ``tip``, with its
    execution: what replay commits once the ledger's tip is ``tip``."""

    block: Block
    commit: Commit
    ex: Execution
    tip: Tip


def check_decided_block(
    app: App, state: StateReader, tip: Tip, prev_powers: dict[bytes, int], block: Block, commit: Commit,
    sigs: SigCache, *, max_txs: int, max_bytes: int, verified: Container[tuple[str, bytes, bytes, bytes]] = (),
    basic_checked: bool = False,
) -> Checked:
    """Every check of a block that arrives decided, with the commit that decides it
    (replay: ``medchaind import``, block sync; docs/protocol.md §13, §19): ``commit``
    carries more than 2/3 of ``tip.powers`` (the set of the block's height), the
    block's ``last_commit`` more than 2/3 of ``prev_powers`` (the set that signed the
    parent), and :func:`validate_block` (which re-executes it). Raises ValidationError or
    InvalidBlock. ``verified``: precommit signatures already checked (``verify_commit``'s
    argument: the quorum and set rules still apply); ``basic_checked``: validate_block's."""
    h = block.height
    verify_commit(commit, app.chain_id, tip.powers, block.hash(), h, verified=verified)
    if block.last_commit is not None:
        verify_commit(block.last_commit, app.chain_id, prev_powers, block.header.prev_hash, h - 1, verified=verified)
    ex = validate_block(app, state, tip, block, sigs, max_txs=max_txs, max_bytes=max_bytes,
                        basic_checked=basic_checked)
    return Checked(block, commit, ex, tip)
