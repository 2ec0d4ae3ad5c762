"""The mempool: admitted, not yet committed transactions.

Admission (``add``) runs, cheapest first: de-duplication, the already-committed check,
the sender's rate limit, the signature (verified once: the hash goes into the shared
:class:`~medchaind.chain.SigCache`, so block execution does not verify it again), the
app's stateful checks and the nonce window, then the caps. Refusals raise
:class:`~medchaind.errors.TxRejected` with a stable code and a reason and change
nothing.

Ordering: txs are proposed in arrival order, but a sender's txs only in nonce order
from its committed nonce on (a tx whose predecessor is missing waits). Caps: a total
count and byte budget; when full, a newcomer may evict the highest-nonce tx of the
sender holding the most txs, if that sender holds more than the newcomer's sender, so
one flooding sender cannot lock others out. After each block, ``update`` removes
what was committed and anything the new state made invalid.

The re-check after a block, bounded by what the block wrote (issue 14). A pending tx's
verdict (pass, or the refusal's code) is a function of the tx, the state its check
read, its sender's committed nonce, whether an earlier pending tx registers the
sender, and -- for a type whose :attr:`~medchaind.app.TxSpec.verdict_reads_block` is
True -- the BlockInfo the dry run sees. Only a sender's *next* tx (nonce = committed
nonce) is dry-run; later ones wait and are judged once they are next. So each next tx
keeps the read set of its last passed check (a :class:`_ReadRecorder` around the state:
the keys of ``get``, the prefixes of ``iterate``, at most ``READ_SET_LIMIT`` each),
indexed by key and by prefix. ``update`` gets the block's write-set and re-runs exactly
what the full walk over the pool (every sender's nonce read, every next tx re-checked)
would have found changed:

* every pending tx of a sender whose nonce key the block wrote (or who has a tx in the
  block) goes through the per-sender logic (used nonces dropped ``nonce_used``, the
  next tx checked, gap expiry), as before for every sender. This is the only way a
  tx becomes next or stale, and the only way ``registration_pending`` can change for a
  next tx (a registering tx with a lower nonce stays pending only until that nonce
  is used);
* a next tx whose read set meets the write-set: an exact key, or a written key that
  starts with an iterated prefix (each written key is looked up under each prefix
  length the index holds for its module);
* every next tx whose type may depend on the block, or whose check read more than the
  limit: re-checked after every block, as before.

Every other next tx read only keys whose values the block left alone, under a verdict
that ignores the block, so its check would pass again: it is not run. The work per
block is O(txs and writes of the block + txs re-checked), not O(pool).

The index has a price per admitted tx (a recording reader around its check, the index
entries, their removal on commit: ~23,500 instructions per ``anchor.commit``, ~4% of a
node's CPU per tx in a bench whose pool holds few senders), and it only pays when many
senders wait. So it is kept only while more than ``recheck_index_above`` senders
(default 256) have pending txs: below that, ``update`` walks every sender, as before,
which is at most that many checks per block whatever the pool holds, and nothing is
recorded. ``update`` switches: on, its walk records every next tx's reads (admissions
record from then on); off, it forgets them all and walks.
``nonce_gap_expired``: a tx that is not its sender's next and arrived more than
``gap_ttl_s`` ago is dropped at the first ``update`` after that (as before). The sweep
walks an arrival-order queue only over its expired front (the clock never goes back, so
the first young tx ends it); an expired tx that is its sender's next leaves the queue
for good (the committed nonce only grows: it can never wait behind a gap again), so a
backlog of old next txs is walked once, not every block. Drops of one ``update`` may
reach ``on_dropped`` and the dropped-record FIFO in another order than the full walk's
(the set and the codes are the same). ``update(txs, None)`` (write-set unknown; after a
snapshot restore) runs the per-sender logic for every sender, and a next tx whose
sender's nonce moved without its write-set (a block not passed) is caught by the nonce
read before its check. Tests: tests/mempool/test_mempool_recheck_model.py drives this
and the full walk side by side; tests/mempool/test_mempool_block_independence.py
proves each ``verdict_reads_block=False`` declaration.

Lanes (:data:`medchaind.app.module.LANES`): a tx type declares its lane. Txs of the
``priority`` lane (a recall, a suspect-product notice, a consent revocation) are
proposed before every ``default`` tx, so they go into the next block however much bulk
traffic waits. The ``default`` lane may fill the pool only up to the caps minus a
reserve (``priority_reserve_txs`` / ``_bytes``, kept where a cap is at least ten times
it), so a priority tx finds room in a full pool; should the reserve be used up too, a
priority newcomer evicts default txs (the highest nonce of the sender holding the
most), and a default newcomer never evicts a priority tx. One sender may hold at most
``max_priority_per_sender`` priority txs, so the reserve cannot be hogged by one key.

Dropped txs are remembered (issue 14: an admitted tx is never silently lost). A tx that
leaves the pool without being committed (evicted for a newcomer: ``evicted``; removed by
``update`` because another tx used its nonce: ``nonce_used``, because it waited behind a
nonce gap longer than ``gap_ttl_s``: ``nonce_gap_expired``, or because the re-check
against the new state refused it: that check's code) goes into a bounded FIFO of the last
``dropped_history`` hashes with its reason code (:meth:`Mempool.dropped_reason`), and
the ``on_dropped`` callback hears of it, so ``tx_status`` / ``tx_wait`` and the ``tx``
subscription can report ``dropped`` instead of ``unknown``. A dropped tx that is admitted
again leaves the record. The record is node-local and volatile (lost on restart, like
the pool itself): a status, never an input to consensus.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import trio

from ..app import App, BlockInfo, StateReader
from ..app.app import NONCE_NS, nonce_sender
from ..app.state import StateKey
from ..chain import SigCache
from ..errors import SignatureError, TxRejected
from ..types import Tx

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class MempoolConfig:
    max_txs: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    max_per_sender: int = 20_000
    max_nonce_ahead: int = 20_000
    #: token bucket per sender: sustained txs/s and burst size
    sender_rate: float = 5_000.0
    sender_burst: int = 20_000
    #: a tx that cannot be proposed (its predecessor nonce never came) is dropped after this
    gap_ttl_s: float = 600.0
    #: room only the priority lane may use (default-lane txs fill up to the caps minus this;
    #: kept only where the cap is at least ten times the reserve)
    priority_reserve_txs: int = 1_000
    priority_reserve_bytes: int = 4 * 1024 * 1024
    #: pending priority-lane txs one sender may hold
    max_priority_per_sender: int = 64
    #: backpressure: above this many pending txs or bytes a client's default-lane tx is
    #: refused ``busy`` with a retry hint (:meth:`Mempool.refuse_if_busy`), so the pool
    #: holds what the next few blocks take and never becomes the queue clients wait in;
    #: gossip and the priority lane still go up to the caps
    busy_txs: int = 10_000
    busy_bytes: int = 8 * 1024 * 1024
    busy_retry_ms: int = 500
    #: hashes of dropped or evicted txs remembered with their reason (FIFO; ~150 bytes each)
    dropped_history: int = 100_000
    #: the re-check after a block indexes what each sender's next tx read only while more
    #: than this many senders have pending txs; with fewer, it re-checks every sender's
    #: next tx (at most this many checks per block, and no bookkeeping per admitted tx)
    recheck_index_above: int = 256


@dataclass(frozen=True, slots=True)
class MempoolStats:
    size: int
    bytes: int
    admitted: int
    rejected: int
    evicted: int
    dropped: int


class _ReadRecorder:
    """A StateReader that passes reads through and notes what was read: the keys of
    ``get`` and the prefixes of ``iterate`` (noted when ``iterate`` is called, whether or
    not the iterator is consumed: a superset of what the check looked at, never less).
    Past ``limit`` entries it stops noting and says so (:attr:`overflow`): the tx is then
    re-checked after every block, as if its verdict depended on the block."""

    __slots__ = ("state", "keys", "prefixes", "limit", "overflow")

    def __init__(self, state: StateReader, limit: int) -> None:
        self.state = state
        self.keys: list[StateKey] = []
        self.prefixes: list[StateKey] = []
        self.limit = limit
        self.overflow = False

    def get(self, module: str, key: bytes) -> bytes | None:
        keys = self.keys
        if len(keys) < self.limit:
            keys.append((module, key))
        else:
            self.overflow = True
        return self.state.get(module, key)

    def iterate(self, module: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        if len(self.prefixes) < self.limit:
            self.prefixes.append((module, prefix))
        else:
            self.overflow = True
        return self.state.iterate(module, prefix)


class _Bucket:
    __slots__ = ("tokens", "stamp")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class Mempool:
    def __init__(
        self,
        app: App,
        state: Callable[[], StateReader],
        sigs: SigCache,
        committed: Callable[[bytes], bool],
        config: MempoolConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        block_info: Callable[[], BlockInfo] | None = None,
        on_dropped: Callable[[Tx, str], None] | None = None,
        used_its_nonce: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._block_info = block_info
        #: ``ChainStore.used_its_nonce``: True if a committed tx with this hash used its
        #: nonce, so a committed nonce at or below the tx's rules it out without reading
        #: the tx index (None: read it for every tx)
        self._used_its_nonce = used_its_nonce
        #: told of every tx that leaves the pool uncommitted, with its reason code
        self._on_dropped = on_dropped
        self.app = app
        self._state = state
        self.sigs = sigs
        self._committed = committed
        self.config = config or MempoolConfig()
        self._clock = clock
        self._txs: dict[bytes, Tx] = {}  # arrival order
        self._by_sender: dict[bytes, dict[int, bytes]] = {}
        self._buckets: dict[bytes, _Bucket] = {}
        self._arrived: dict[bytes, float] = {}
        #: lowest nonce of a pending tx that registers its sender, per sender
        self._register_nonce: dict[bytes, int] = {}
        self._bytes = 0
        #: the priority lane: its tx hashes in arrival order, their bytes, per-sender counts
        self._priority: dict[bytes, None] = {}
        self._priority_bytes = 0
        self._priority_by_sender: dict[bytes, int] = {}
        #: admitted but not yet proposable: their sidecar is being written (:meth:`add`)
        self._held: set[bytes] = set()
        self._admitted = self._rejected = self._evicted = self._dropped = 0
        self.busy_refusals = 0
        self._inserted = trio.Event()
        #: the last ``dropped_history`` txs that left the pool uncommitted: hash -> reason code
        self._gone: OrderedDict[bytes, str] = OrderedDict()
        # The re-check's bookkeeping (see update). Each pending tx that is its sender's
        # next and whose verdict ignores the block has its last check's read set here
        # (keys of gets, (module, prefix) of iterates), indexed by key and by prefix; a
        # key or prefix read by one tx maps to its hash, by several to a set of them.
        self._reads: dict[bytes, tuple[tuple[StateKey, ...], tuple[StateKey, ...]]] = {}
        self._key_readers: dict[StateKey, bytes | set[bytes]] = {}
        self._prefix_readers: dict[StateKey, bytes | set[bytes]] = {}
        #: module -> {length of an indexed prefix: how many indexed prefixes have it}
        self._prefix_lens: dict[str, dict[int, int]] = {}
        #: next txs re-checked after every block: their verdict may depend on the block
        #: (TxSpec.verdict_reads_block) or their check read more than READ_SET_LIMIT keys
        self._always: dict[bytes, None] = {}
        #: pending txs that may still expire behind a nonce gap, in arrival order (a tx
        #: found to be its sender's next once it is older than gap_ttl_s leaves it: the
        #: committed nonce only grows, so it can never wait behind a gap again)
        self._expiry: OrderedDict[bytes, None] = OrderedDict()
        #: whether next txs' read sets are recorded and indexed (update decides, from the
        #: number of pending senders against ``recheck_index_above``)
        self._indexing = self.config.recheck_index_above <= 0

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def pending_bytes(self) -> int:
        """Encoded bytes of the pending txs."""
        return self._bytes

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> Tx | None:
        return self._txs.get(tx_hash)

    def age_s(self, tx_hash: bytes) -> float | None:
        """Seconds since a pending tx arrived (on the pool's clock); None if not pending."""
        arrived = self._arrived.get(tx_hash)
        return None if arrived is None else max(0.0, self._clock() - arrived)

    def txs(self) -> list[Tx]:
        """The pending txs, in arrival order (a copy)."""
        return list(self._txs.values())

    def has_nonce(self, sender: bytes, nonce: int) -> bool:
        return nonce in self._by_sender.get(sender, ())

    def dropped_reason(self, tx_hash: bytes) -> str | None:
        """The reason code of a tx this pool dropped or evicted (among the last
        ``dropped_history``) and has not admitted again since; None otherwise."""
        return self._gone.get(tx_hash)

    def statistics(self) -> MempoolStats:
        return MempoolStats(len(self._txs), self._bytes, self._admitted, self._rejected, self._evicted,
                            self._dropped)

    async def wait_for_txs(self) -> None:
        """Return once some pending tx can go into the next block (always a checkpoint).

        A tx waiting behind a nonce gap does not count, so an idle proposer does not
        spin out empty blocks for it.
        """
        await trio.lowlevel.checkpoint()
        while not self.reap(1, 1 << 62):
            if self._inserted.is_set():
                self._inserted = trio.Event()
            await self._inserted.wait()

    # ------------------------------------------------------------------ admission

    def busy(self) -> bool:
        """Whether client submissions of default-lane txs are refused now (backpressure)."""
        return len(self._txs) >= self.config.busy_txs or self._bytes >= self.config.busy_bytes

    def refuse_if_busy(self, tx: Tx) -> None:
        """Backpressure for client submissions: raise TxRejected ``busy`` (with
        ``retry_after_ms``) while the pool holds more than ``busy_txs`` / ``busy_bytes``.

        Called before :meth:`add` for txs from clients only (a tx a peer admitted
        already is not refused for load). Priority-lane txs are never busy. Nothing is
        evicted or changed: the client keeps the tx and sends it again later.
        """
        cfg = self.config
        if not self.busy() or tx.hash in self._txs:
            return
        if self.app.lane(tx) == "priority":
            return
        self.busy_refusals += 1
        raise TxRejected("busy", f"{len(self._txs)} txs ({self._bytes >> 20} MiB) are waiting for blocks; "
                         f"retry in {cfg.busy_retry_ms} ms", retry_after_ms=cfg.busy_retry_ms)

    def add(self, tx: Tx, *, held: bool = False) -> bool:
        """Admit ``tx``; False if it is already pending. Raises TxRejected otherwise.

        ``held``: admitted (every check done, it counts against the caps) but not
        proposed by :meth:`reap` until :meth:`release` -- the node holds a client's tx
        while its sidecar is written, so a refused tx never leaves a file behind and an
        admitted one is never in a block before its sidecar is durable here."""
        try:
            new = self._add(tx)
        except TxRejected:
            self._rejected += 1
            raise
        if new and held:
            self._held.add(tx.hash)
        return new

    def release(self, tx_hash: bytes) -> bool:
        """Make a held tx proposable; False if it is no longer pending (dropped meanwhile)."""
        self._held.discard(tx_hash)
        if tx_hash not in self._txs:
            return False
        self._inserted.set()  # proposable now: wake wait_for_txs
        return True

    def drop(self, tx_hash: bytes, reason: str) -> None:
        """Remove a pending tx that will not be committed from here (a reason code the
        submitter sees in its status, as for the pool's own drops)."""
        if tx_hash in self._txs:
            self._drop(tx_hash, reason)
            self._dropped += 1

    def _add(self, tx: Tx) -> bool:
        if tx.hash in self._txs:
            return False
        state = self._state()
        committed_nonce = self.app.nonce(state, tx.sender)
        # A committed tx used its nonce (nonces only grow), unless its first inclusion was
        # one of the few that did not: so the tx index is read only when the nonce cannot
        # tell (a LevelDB read per admitted tx, 8.8% of a lone authority's main thread).
        used = self._used_its_nonce
        if (used is None or tx.nonce < committed_nonce or not used(tx.hash)) and self._committed(tx.hash):
            raise TxRejected("already_committed", "this exact tx is already in a block")
        cfg = self.config
        pending = self._by_sender.get(tx.sender, {})
        if len(pending) >= cfg.max_per_sender:
            raise TxRejected("sender_limit", f"sender already has {len(pending)} pending txs")
        priority = self.app.lane(tx) == "priority"
        if priority and self._priority_by_sender.get(tx.sender, 0) >= cfg.max_priority_per_sender:
            raise TxRejected("sender_limit", f"sender already has {cfg.max_priority_per_sender} pending "
                             "priority-lane txs")
        # Signature before the rate limit: a forger must not spend a victim's budget.
        try:
            self.sigs.verify(tx)
        except SignatureError:
            raise TxRejected("bad_signature", "signature does not verify for this sender and chain id") from None
        self._take_token(tx.sender)
        if tx.nonce in pending:
            raise TxRejected("nonce_pending", f"another tx with nonce {tx.nonce} is already pending")
        if tx.nonce > committed_nonce + cfg.max_nonce_ahead:
            raise TxRejected("nonce_too_high", f"nonce {tx.nonce} is too far ahead (next is {committed_nonce})")
        block = self._block_info() if self._block_info else None
        is_next = tx.nonce == committed_nonce
        rec: _ReadRecorder | None = None
        if is_next:  # the handler's dry run runs: note what it reads
            rec = self._check_next(state, tx, committed_nonce, block)
        else:
            self.app.check_tx(state, tx, expected_nonce=committed_nonce, committed_nonce=committed_nonce,
                              registration_pending=self._registration_pending(tx), block=block)
        victims = self._plan_evictions(tx.sender, len(tx.encoded), priority)
        if victims is None:
            self.app.bodies.discard((tx.hash,))  # check_tx kept its typed body for a pool it never joins
            raise TxRejected("mempool_full", "the mempool is full; retry later")
        for h in victims:
            self._drop(h, "evicted")
            self._evicted += 1
        self._insert(tx)
        if is_next and self._indexing:
            self._note_reads(tx, rec)
        self._admitted += 1
        return True

    def _take_token(self, sender: bytes) -> None:
        cfg = self.config
        now = self._clock()
        b = self._buckets.get(sender)
        if b is None:
            b = self._buckets[sender] = _Bucket(float(cfg.sender_burst), now)
        b.tokens = min(float(cfg.sender_burst), b.tokens + (now - b.stamp) * cfg.sender_rate)
        b.stamp = now
        if b.tokens < 1.0:
            raise TxRejected("rate_limited", f"sender exceeds {cfg.sender_rate:g} txs/s; slow down")
        b.tokens -= 1.0
        if len(self._buckets) > 4 * self.config.max_txs:
            # forget senders idle long enough to have refilled: same as never seen
            def refilled(v: _Bucket) -> bool:
                return v.tokens + (now - v.stamp) * cfg.sender_rate >= cfg.sender_burst

            for k in [k for k, v in self._buckets.items() if refilled(v)]:
                del self._buckets[k]

    def _insert(self, tx: Tx) -> None:
        self._txs[tx.hash] = tx
        if self._gone:
            self._gone.pop(tx.hash, None)
        self._arrived[tx.hash] = self._clock()
        self._expiry[tx.hash] = None
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = tx.hash
        self._bytes += len(tx.encoded)
        if self.app.lane(tx) == "priority":
            self._priority[tx.hash] = None
            self._priority_bytes += len(tx.encoded)
            self._priority_by_sender[tx.sender] = self._priority_by_sender.get(tx.sender, 0) + 1
        if self.app.registers_sender(tx):
            self._register_nonce[tx.sender] = min(tx.nonce, self._register_nonce.get(tx.sender, tx.nonce))
        self._inserted.set()

    def _remove(self, tx_hash: bytes) -> None:
        tx = self._txs.pop(tx_hash)
        self.app.bodies.discard((tx_hash,))  # committed or dropped: its typed body is not needed here again
        self._arrived.pop(tx_hash, None)
        self._expiry.pop(tx_hash, None)
        self._forget_reads(tx_hash)
        self._held.discard(tx_hash)
        self._bytes -= len(tx.encoded)
        if tx_hash in self._priority:
            del self._priority[tx_hash]
            self._priority_bytes -= len(tx.encoded)
            left = self._priority_by_sender.pop(tx.sender) - 1
            if left:
                self._priority_by_sender[tx.sender] = left
        per = self._by_sender[tx.sender]
        del per[tx.nonce]
        if not per:
            del self._by_sender[tx.sender]
        if self.app.registers_sender(tx) and self._register_nonce.get(tx.sender) == tx.nonce:
            del self._register_nonce[tx.sender]
            rest = [n for n, h in per.items() if self.app.registers_sender(self._txs[h])]
            if rest:
                self._register_nonce[tx.sender] = min(rest)

    def _drop(self, tx_hash: bytes, reason: str) -> None:
        """Remove a pending tx that will not be committed from here, and remember why."""
        tx = self._txs[tx_hash]
        self._remove(tx_hash)
        gone = self._gone
        gone.pop(tx_hash, None)
        gone[tx_hash] = reason
        while len(gone) > self.config.dropped_history:
            gone.popitem(last=False)
        if self._on_dropped is not None:
            self._on_dropped(tx, reason)

    def _registration_pending(self, tx: Tx) -> bool:
        """Whether an earlier pending tx of the sender registers its identity (O(1))."""
        n = self._register_nonce.get(tx.sender)
        return n is not None and n < tx.nonce

    def _plan_evictions(self, sender: bytes, size: int, priority: bool = False) -> list[bytes] | None:
        """Txs to evict so a tx of ``size`` bytes from ``sender`` fits; None if it can't.

        Nothing is removed here, so a refused newcomer evicts nothing. Each step takes
        the highest nonce of the sender holding the most txs, and only while that
        sender holds more than the newcomer's sender would after admission (a priority
        newcomer needs no such majority). Only default-lane txs are ever evicted; a
        sender whose highest nonce is a priority tx is passed over (evicting below it
        would strand it behind a gap). A default newcomer must also fit in the caps
        less the priority reserve.
        """
        cfg = self.config
        need_count = len(self._txs) + 1 - cfg.max_txs
        need_bytes = self._bytes + size - cfg.max_bytes
        if not priority:
            # a cap smaller than ten times its reserve keeps none (tiny pools, tests)
            reserve_txs = cfg.priority_reserve_txs if cfg.max_txs >= 10 * cfg.priority_reserve_txs else 0
            reserve_bytes = cfg.priority_reserve_bytes if cfg.max_bytes >= 10 * cfg.priority_reserve_bytes else 0
            need_count = max(need_count, len(self._txs) - len(self._priority) + 1 - (cfg.max_txs - reserve_txs))
            need_bytes = max(need_bytes, self._bytes - self._priority_bytes + size - (cfg.max_bytes - reserve_bytes))
        if need_count <= 0 and need_bytes <= 0:
            return []
        counts = {s: len(per) for s, per in self._by_sender.items()}
        order: dict[bytes, list[int]] = {}
        mine = counts.get(sender, 0)
        victims: list[bytes] = []
        while need_count > 0 or need_bytes > 0:
            victim = max(counts, key=lambda s: counts[s], default=None)
            if victim is None or victim == sender or (not priority and counts[victim] <= mine + 1):
                if priority and victim == sender:
                    del counts[victim]
                    continue
                return None
            nonces = order.setdefault(victim, sorted(self._by_sender[victim]))
            h = self._by_sender[victim][nonces[-1]] if nonces else None
            if h is None or h in self._priority:
                del counts[victim]
                continue
            nonces.pop()
            victims.append(h)
            counts[victim] -= 1
            need_count -= 1
            need_bytes -= len(self._txs[h].encoded)
        return victims

    # ------------------------------------------------------------------ proposing

    def reap(self, max_txs: int, max_bytes: int) -> list[Tx]:
        """Txs for the next block: the priority lane first, then arrival order; each
        sender's nonces contiguous (a priority tx behind a sender's default tx waits for
        it in the second pass); a held tx (:meth:`add`) and the sender's later ones wait."""
        state = self._state()
        next_nonce: dict[bytes, int] = {}
        out: list[Tx] = []
        taken: set[bytes] = set()
        held = self._held
        size = 0

        def take(txs: Iterable[Tx]) -> bool:
            """Add what fits; False once the block is full."""
            nonlocal size
            for tx in txs:
                if tx.hash in taken or tx.hash in held:
                    continue
                n = next_nonce.get(tx.sender)
                if n is None:
                    n = self.app.nonce(state, tx.sender)
                if tx.nonce != n:
                    continue
                if len(out) >= max_txs or size + len(tx.encoded) > max_bytes:
                    return False
                out.append(tx)
                taken.add(tx.hash)
                size += len(tx.encoded)
                next_nonce[tx.sender] = n + 1
            return True

        if not self._priority or take([self._txs[h] for h in self._priority]):
            take(self._txs.values())
        return out

    # ------------------------------------------------------------------ after a block

    def update(self, committed: Iterable[Tx], writes: Iterable[StateKey] | None = None) -> None:
        """Drop committed txs, then re-check what the new state may have made invalid.

        ``writes``: every ``(module, key)`` the block wrote or deleted (its
        :attr:`~medchaind.app.Execution.writes`, begin- and end-block work included).
        The caller must pass the write-set of every committed block, in order, or None,
        which re-checks every pending sender (after a snapshot restore, or when the
        write-set is unknown). The result is the same either way (module docstring,
        "The re-check after a block"); only the work differs.
        """
        by_sender = self._by_sender
        moved: set[bytes] = set()  # senders of the block's txs: their nonce moved, unless bad_nonce
        for tx in committed:
            if tx.hash in self._txs:
                self._remove(tx.hash)
            moved.add(tx.sender)
        senders = {s for s in moved if s in by_sender}
        state = self._state()
        block = self._block_info() if self._block_info else None
        now = self._clock()
        stale: dict[bytes, str] = {}
        indexing = len(by_sender) > self.config.recheck_index_above
        full = writes is None or not indexing or not self._indexing
        if indexing != self._indexing:
            # on: the full walk below records every next tx's reads; off: forget them all
            self._indexing = indexing
            if not indexing:
                self._forget_all_reads()
        if full or writes is None:
            for sender in list(by_sender):
                self._recheck_sender(state, sender, now, block, stale)
        else:
            hit = self._readers_of(writes, senders)
            for sender in senders:
                self._recheck_sender(state, sender, now, block, stale)
            for h in [*self._always, *hit]:
                nxt = self._txs.get(h)
                if nxt is None or nxt.sender in senders or h in stale:
                    continue
                committed_nonce = self.app.nonce(state, nxt.sender)
                if nxt.nonce != committed_nonce:  # a block whose writes were not passed
                    senders.add(nxt.sender)
                    self._recheck_sender(state, nxt.sender, now, block, stale)
                else:
                    self._recheck_next(state, nxt, committed_nonce, block, stale)
            self._sweep_gaps(state, now, stale)
        if stale:
            reasons: dict[str, int] = {}
            for h, code in stale.items():
                self._drop(h, code)
                reasons[code] = reasons.get(code, 0) + 1
            self._dropped += len(stale)
            log.info("mempool dropped txs invalidated by the last block count=%d reasons=%s", len(stale), reasons)

    def _readers_of(self, writes: Iterable[StateKey], senders: set[bytes]) -> set[bytes]:
        """The next txs whose noted read set meets ``writes`` (exact keys, and prefixes of
        iterates: each written key is looked up under each indexed prefix length of its
        module); adds to ``senders`` the pending senders whose nonce key was written."""
        hit: set[bytes] = set()
        key_readers, prefix_readers, prefix_lens = self._key_readers, self._prefix_readers, self._prefix_lens
        by_sender = self._by_sender
        for k in writes:
            module, key = k
            if module == NONCE_NS:
                sender = nonce_sender(key)
                if sender is not None and sender in by_sender:
                    senders.add(sender)
            r = key_readers.get(k)
            if r is not None:
                if isinstance(r, bytes):
                    hit.add(r)
                else:
                    hit.update(r)
            if not prefix_lens:
                continue
            lens = prefix_lens.get(module)
            if lens:
                for n in lens:
                    if n <= len(key):
                        r = prefix_readers.get((module, key[:n]))
                        if r is not None:
                            if isinstance(r, bytes):
                                hit.add(r)
                            else:
                                hit.update(r)
        return hit

    def _recheck_sender(self, state: StateReader, sender: bytes, now: float, block: BlockInfo | None,
                        stale: dict[bytes, str]) -> None:
        """One sender's pending txs against the new state: a used nonce is dropped, a tx
        waiting behind a gap longer than ``gap_ttl_s`` too, the next tx gets the full
        admission check (handler dry run included). Later txs only had nonce-independent
        checks at admission; the state can only matter to them once they are next."""
        committed_nonce = self.app.nonce(state, sender)
        ttl = self.config.gap_ttl_s
        for nonce, h in self._by_sender[sender].items():
            if nonce < committed_nonce:
                stale[h] = "nonce_used"
                continue
            if nonce != committed_nonce:
                if now - self._arrived.get(h, now) > ttl:
                    stale[h] = "nonce_gap_expired"
                continue
            self._recheck_next(state, self._txs[h], committed_nonce, block, stale)

    def _recheck_next(self, state: StateReader, tx: Tx, committed_nonce: int, block: BlockInfo | None,
                      stale: dict[bytes, str]) -> None:
        """Check a sender's next tx again: noted in ``stale`` with its code if refused,
        else its new read set is indexed."""
        try:
            rec = self._check_next(state, tx, committed_nonce, block)
        except TxRejected as exc:
            stale[tx.hash] = exc.code
            return
        if self._indexing:
            self._note_reads(tx, rec)

    def _sweep_gaps(self, state: StateReader, now: float, stale: dict[bytes, str]) -> None:
        """Drop ``nonce_gap_expired`` the txs older than ``gap_ttl_s`` that are not their
        sender's next, walking only the expired front of :attr:`_expiry` (arrival order:
        the clock never goes back). A next tx found there leaves the queue for good."""
        ttl = self.config.gap_ttl_s
        arrived = self._arrived
        nonces: dict[bytes, int] = {}
        settled: list[bytes] = []
        for h in self._expiry:
            if now - arrived[h] <= ttl:
                break
            if h in stale:
                continue
            tx = self._txs[h]
            n = nonces.get(tx.sender)
            if n is None:
                n = nonces[tx.sender] = self.app.nonce(state, tx.sender)
            if tx.nonce > n:
                stale[h] = "nonce_gap_expired"
            elif tx.nonce == n:
                settled.append(h)
            else:  # only after a block whose writes were not passed
                stale[h] = "nonce_used"
        for h in settled:
            del self._expiry[h]

    # ------------------------------------------------------------------ read sets

    #: a check that reads more keys (or iterates more prefixes) than this is not indexed:
    #: its tx is re-checked after every block instead (bounds the index's memory per tx)
    READ_SET_LIMIT = 32

    def _check_next(self, state: StateReader, tx: Tx, committed_nonce: int,
                    block: BlockInfo | None) -> _ReadRecorder | None:
        """The full admission check of ``tx``, its sender's next tx (raises TxRejected).
        Returns what it read (None: not recorded, the tx's verdict may depend on the block)."""
        if not self._indexing or self.app.verdict_reads_block(tx):
            rec = None
        else:
            rec = _ReadRecorder(state, self.READ_SET_LIMIT)
        self.app.check_tx(state if rec is None else rec, tx, expected_nonce=committed_nonce,
                          committed_nonce=committed_nonce, registration_pending=self._registration_pending(tx),
                          block=block)
        return rec

    def _note_reads(self, tx: Tx, rec: _ReadRecorder | None) -> None:
        """Index the read set of ``tx``'s passed check (it is pending and its sender's next)."""
        h = tx.hash
        if h in self._reads or h in self._always:
            self._forget_reads(h)
        if rec is None or rec.overflow:
            self._always[h] = None
            return
        keys = rec.keys
        keys_t = tuple(keys) if len(keys) < 2 else tuple(dict.fromkeys(keys))  # each key once
        prefixes = rec.prefixes
        prefixes_t = tuple(prefixes) if len(prefixes) < 2 else tuple(dict.fromkeys(prefixes))
        self._reads[h] = (keys_t, prefixes_t)
        index = self._key_readers
        for k in keys_t:
            _index_add(index, k, h)
        for p in prefixes_t:
            _index_add(self._prefix_readers, p, h)
            lens = self._prefix_lens.setdefault(p[0], {})
            lens[len(p[1])] = lens.get(len(p[1]), 0) + 1

    def _forget_all_reads(self) -> None:
        self._reads.clear()
        self._key_readers.clear()
        self._prefix_readers.clear()
        self._prefix_lens.clear()
        self._always.clear()

    def _forget_reads(self, h: bytes) -> None:
        entry = self._reads.pop(h, None)
        if entry is None:
            if h in self._always:
                del self._always[h]
            return
        keys, prefixes = entry
        index = self._key_readers
        for k in keys:
            if index.get(k) == h:  # the key's only reader (a set of readers never equals bytes)
                del index[k]
            else:
                _index_discard(index, k, h)
        for p in prefixes:
            _index_discard(self._prefix_readers, p, h)
            lens = self._prefix_lens[p[0]]
            n = len(p[1])
            lens[n] -= 1
            if not lens[n]:
                del lens[n]
                if not lens:
                    del self._prefix_lens[p[0]]


def _index_add(index: dict[StateKey, bytes | set[bytes]], k: StateKey, h: bytes) -> None:
    cur = index.get(k)
    if cur is None:
        index[k] = h
    elif isinstance(cur, bytes):
        if cur != h:
            index[k] = {cur, h}
    else:
        cur.add(h)


def _index_discard(index: dict[StateKey, bytes | set[bytes]], k: StateKey, h: bytes) -> None:
    cur = index.get(k)
    if cur is None:
        return
    if isinstance(cur, bytes):
        if cur == h:
            del index[k]
        return
    cur.discard(h)
    if len(cur) == 1:
        index[k] = next(iter(cur))
