"""The chain database: finalised blocks, their commits, indexes, receipts, state, blobs.

Theory of operation
-------------------
Blocks in medchaind are final the moment they are committed (BFT finality, DESIGN.md
§4), so the store is append-only at the head: :meth:`ChainStore.commit_block` accepts
exactly height ``head + 1`` and never rewrites a lower height. Everything that block h
changes is written in **one** atomic ``KVStore.write(..., sync=True)`` (DESIGN.md §6):

* the block (``v1/blk/h``) and the commit that finalised it (``v1/cmt/h``). The
  commit is stored next to the block because block h+1, which will carry it as
  ``last_commit``, does not exist yet;
* the block-hash index (``v1/bhash/<hash> -> h``);
* per transaction one entry, its location and its receipt
  (``v1/tx/<hash> -> [h, index, receipt]``);
* the state changes of executing the block (value None = delete);
* the state trie's new node records, each tagged with the height it entered the trie,
  and the deletion of the ones they replace (``v1/trie/<hash>``), so the stored trie is
  always the one whose root is the head's ``app_hash``;
* the new head (``v1/meta/head -> h``).

Hence, after a crash at any moment, for the head height H read back from
``v1/meta/head``: every height ``<= H`` is complete (block, commit, indexes, receipts,
state) and nothing of any height ``> H`` is present. Reopening needs no repair.

Before block 1, :meth:`ChainStore.init_genesis` writes the genesis state together with
the genesis hash and genesis app hash (meta ``genesis_hash``, ``genesis_app_hash``), in
one batch as well, so a datadir either has its genesis entirely or not at all.

A store is *not* always written block by block: an online backup copies every key of a
live store into a new one, in key order, over many batches. Such a copy is incomplete
until its last batch lands, and key order puts blocks before metadata and metadata before
state, so a copy cut short can hold blocks without a head or genesis record, or a head
without the state it implies. The copier therefore marks the new store with meta
``incomplete`` (:data:`INCOMPLETE_KEY`) before its first batch and deletes the mark in its
last one; :class:`ChainStore` refuses to open a marked store, and one whose blocks have no
head record, with :class:`IncompleteStoreError` saying what to do. (The ledger adds the
other half: chain data without a genesis record is never "a new datadir".)

Invariants this class keeps (it must be the only writer of these namespaces):

* ``head_height() == 0`` iff no block has been committed; otherwise blocks
  ``1..head_height()`` are all present and linked (``prev_hash`` of h+1 is the hash of
  h).
* ``head()`` is the header of block ``head_height()``, cached in memory and reloaded
  from disk on construction.
* A transaction hash maps to its *first* inclusion. A block may carry a tx that was
  already committed (replay that fails execution, e.g. with ``bad_nonce``); the index
  and receipt of the first inclusion are kept and the later copy is not indexed, so a
  successful tx's receipt can never be overwritten by its failed replay.
* A rejected ``commit_block`` (failed precondition, bad argument) writes nothing.
* Reads may run on other threads while one thread commits (the node commits from a
  worker thread): the backend makes the batch atomic to readers and the head cache is
  one ``(height, header)`` tuple replaced after the write, so ``head()`` never runs
  ahead of the data.

Every decode of stored bytes goes through :meth:`ChainStore._decode`:
a damaged entry raises :class:`~medchaind.errors.StoreError` naming its namespace and
key, never a raw cbor2 or validation error.

*Fewer entries per transaction.* A tx used to leave ~11 live entries in LevelDB, whose
compaction thread and the commit's write took ~90 of a node's ~470 us per tx under
sustained load (docs/benchmarks.md, issue 14 session 8). Two kinds of entry are folded
into others: a receipt into its tx's location entry, and a trie record's birth height
(``v1/born/``) into the record's own value (``0x02 || height || record``). That is a
third fewer entries and an 8.5% smaller database; the CPU per tx did not move beyond the
spread of runs. Stores written before keep both older forms, and every reader here takes
either (:func:`split_trie_entry`, :meth:`ChainStore.get_receipt`), so an
existing datadir needs no migration and its old entries leave with their records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from .. import codec, crypto
from ..errors import MedchainError, StoreError
from ..types import Block, Commit, Header, Receipt, decode_block, decode_commit, decode_receipt
from . import schema
from .kv import KVStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Meta name of the head height.
HEAD_META = "head"
#: Meta names written by :meth:`ChainStore.init_genesis`.
GENESIS_HASH_META = "genesis_hash"
GENESIS_APP_HASH_META = "genesis_app_hash"
#: Meta name of the protocol version that made this datadir's chain (medchaind.ledger).
PROTOCOL_META = "protocol"
#: Meta name of the mark of a copy in progress (see the module docstring).
INCOMPLETE_META = "incomplete"
#: Meta name of the lowest block a store restored from a state snapshot holds (absent: 1).
BASE_META = "base"
#: Meta mark: every leaf of the stored trie has its value under ``v1/tval/`` (stores
#: written before values were kept are filled in once, by ``ensure_trie_values``).
TRIE_VALUES_META = "trie_values"
#: Meta mark: ``v1/nnu/`` holds every committed tx whose first inclusion did not use its
#: nonce, up to the height in the mark (written by ``init_genesis``, moved by each
#: ``commit_block`` in its batch). A datadir made before the index has no mark, and one
#: that an older medchaind has since extended has a mark below its head; for both
#: :meth:`ChainStore.used_its_nonce` answers False for every tx.
NONCE_UNUSED_META = "nonce_unused_index"
#: The key of that mark: a copier puts it before its first batch and deletes it in its last.
INCOMPLETE_KEY = schema.meta_key(INCOMPLETE_META)
#: Maintained by ChainStore itself (or by a copier); ``put_meta`` refuses them.
RESERVED_META = frozenset({HEAD_META, GENESIS_HASH_META, GENESIS_APP_HASH_META, INCOMPLETE_META, BASE_META,
                           TRIE_VALUES_META, NONCE_UNUSED_META})

StateWrites = Mapping[tuple[str, bytes], bytes | None]
#: state-trie node records to add (hash -> record) and hashes of records to delete
TriePuts = Mapping[bytes, bytes]


class IncompleteStoreError(StoreError):
    """The database is an unfinished copy or lacks records every complete store has."""


def _where(kv: KVStore) -> str:
    path = getattr(kv, "path", None)
    return str(path) if path is not None else "the database"


class ChainStore:
    """Typed access to the chain database over any :class:`KVStore` (see module docstring)."""

    def __init__(self, kv: KVStore) -> None:
        """Wrap ``kv`` and load the head. Raises StoreError if the stored head is damaged."""
        self._kv = kv
        #: (height, header) of the head, replaced as one value. (0, None) when empty.
        self._head_state: tuple[int, Header | None] = (0, None)
        #: every stale entry due below this height is processed (prune_trie starts here
        #: instead of stepping over the deletions of earlier calls; 0 after a restart)
        self._stale_floor = 0
        #: hashes of the committed txs whose first inclusion did not use their nonce
        #: (``v1/nnu/``, a handful: only a faulty proposer includes such a tx); None for a
        #: datadir made before that index, which cannot tell
        self._nonce_unused: set[bytes] | None = None
        mark = kv.get(INCOMPLETE_KEY)
        if mark is not None:
            raise IncompleteStoreError(
                f"{_where(kv)} is an incomplete copy ({mark.decode('utf-8', 'replace')[:200]}): it was "
                "cut off before it finished, so it may lack blocks, state or its head. Do not run "
                "a node on it: take a new backup, restore a complete one (with BACKUP.json), or "
                "start from an empty chaindata to resync from peers"
            )
        raw = kv.get(schema.meta_key(HEAD_META))
        if raw is None:
            first = next(kv.iterate(schema.BLOCK_PREFIX), None)
            if first is not None:
                raise IncompleteStoreError(
                    f"{_where(kv)} holds blocks but no head record, so it is not a complete "
                    "database (an interrupted copy?). "
                    "Do not run a node on it: restore a complete backup (with BACKUP.json), or move "
                    "chaindata aside and start from an empty one to resync from peers"
                )
        else:
            height = self._decode(schema.meta_key(HEAD_META), raw, schema.decode_height)
            block = self.get_block(height)
            if block is None:
                raise StoreError(
                    f"the store's head is height {height} but that block is missing; "
                    "the database is damaged: restore the datadir from a backup or resync it"
                )
            self._head_state = (height, block.header)
        if kv.get(schema.meta_key(NONCE_UNUSED_META)) == schema.encode_height(self._head_state[0]):
            plen = len(schema.NONCE_UNUSED_PREFIX)
            self._nonce_unused = {k[plen:] for k, _ in kv.iterate(schema.NONCE_UNUSED_PREFIX)}
        log.debug("chain store opened head=%d", self._head_state[0])

    @property
    def kv(self) -> KVStore:
        """The underlying store, for tests and offline tooling. Writing through it
        bypasses this class's invariants and its head cache."""
        return self._kv

    # -- decoding guard ------------------------------------------------------------------

    @staticmethod
    def _decode(key: bytes, raw: bytes, decoder: Callable[[bytes], T]) -> T:
        try:
            return decoder(raw)
        except (MedchainError, ValueError, TypeError) as exc:
            ns = schema.namespace_of(key)
            raise StoreError(
                f"corrupt entry in the {ns} namespace (key {key!r}): {exc}; "
                "the database is damaged: restore the datadir from a backup or resync it"
            ) from None

    # -- head ------------------------------------------------------------------------------

    def head_height(self) -> int:
        """Height of the last committed block, 0 when the chain is empty."""
        return self._head_state[0]

    def head(self) -> Header | None:
        """Header of the last committed block, None when the chain is empty."""
        return self._head_state[1]

    # -- blocks and commits -------------------------------------------------------------------

    def get_block(self, height: int) -> Block | None:
        key = schema.block_key(height)
        raw = self._kv.get(key)
        if raw is None:
            return None
        block = self._decode(key, raw, decode_block)
        if block.height != height:
            raise StoreError(
                f"corrupt entry in the blocks namespace (key {key!r}): holds height "
                f"{block.height}; the database is damaged: restore the datadir from a backup "
                "or resync it"
            )
        return block

    def get_block_by_hash(self, block_hash: bytes) -> Block | None:
        key = schema.block_hash_key(block_hash)
        raw = self._kv.get(key)
        if raw is None:
            return None
        height = self._decode(key, raw, schema.decode_height)
        block = self.get_block(height)
        if block is None or block.hash() != block_hash:
            raise StoreError(
                f"corrupt entry in the block-hash index (key {key!r}): height {height} does not "
                "hold that block; the database is damaged: restore the datadir from a backup "
                "or resync it"
            )
        return block

    def get_encoded(self, height: int) -> tuple[bytes, bytes] | None:
        """The stored encodings of block ``height`` and its commit (None if not committed),
        as written by :meth:`commit_block`, without decoding them: for serving them to a
        peer (block sync), who decodes and checks every byte itself. A damaged entry is
        passed on as it is (the peer refuses it; LevelDB's own checksums catch a damaged
        disk block on the read)."""
        block, commit = self._kv.get(schema.block_key(height)), self._kv.get(schema.commit_key(height))
        if block is None or commit is None:
            return None
        return block, commit

    def get_commit(self, height: int) -> Commit | None:
        """The commit that finalised block ``height`` (None if not committed)."""
        key = schema.commit_key(height)
        raw = self._kv.get(key)
        if raw is None:
            return None
        return self._decode(key, raw, decode_commit)

    # -- transactions ---------------------------------------------------------------------------

    def get_tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, index in block.txs)`` of the tx's first inclusion, or None."""
        key = schema.tx_key(tx_hash)
        raw = self._kv.get(key)
        if raw is None:
            return None
        height, index, _ = self._decode(key, raw, _decode_tx_entry)
        return height, index

    def has_tx(self, tx_hash: bytes) -> bool:
        """Whether the tx is committed (its entry is not decoded)."""
        return self._kv.get(schema.tx_key(tx_hash)) is not None

    def get_receipt(self, tx_hash: bytes) -> Receipt | None:
        """Receipt of the tx's first inclusion, or None.

        It is the third item of the tx's entry; a store written before receipts moved
        there keeps it under ``v1/rcpt/<hash>`` instead."""
        key = schema.tx_key(tx_hash)
        raw = self._kv.get(key)
        if raw is None:
            return None
        _, _, receipt = self._decode(key, raw, _decode_tx_entry)
        if receipt is not None:
            return self._decode(key, receipt, decode_receipt)
        key = schema.receipt_key(tx_hash)
        raw = self._kv.get(key)
        if raw is None:
            return None
        return self._decode(key, raw, decode_receipt)

    # -- state ------------------------------------------------------------------------------

    def state_get(self, module: str, key: bytes) -> bytes | None:
        return self._kv.get(schema.state_key(module, key))

    def state_iterate(
        self, module: str, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of ``module``'s state whose key starts with ``prefix``, in key order.

        Keys are relative to the module (as passed to :meth:`state_get`); ``start`` is
        relative too and has the meaning of :meth:`KVStore.iterate`.
        """
        base = schema.state_prefix(module)
        cut = len(base)
        it = self._kv.iterate(
            base + prefix, start=None if start is None else base + start, reverse=reverse
        )
        return ((k[cut:], v) for k, v in it)

    def trie_node(self, node_hash: bytes) -> bytes | None:
        """The state trie's node record with this hash (None if the store has none)."""
        raw = self._kv.get(schema.trie_key(node_hash))
        return raw[_TRIE_ENTRY_HEAD:] if raw is not None and _tagged(raw) else raw

    def trie_value(self, leaf_hash: bytes) -> bytes | None:
        """The value of the trie leaf with this hash (None if the store has none)."""
        return self._kv.get(schema.trie_value_key(leaf_hash))

    def base_height(self) -> int:
        """The lowest block this store holds: 1, or the height of the state snapshot it
        was restored from (it has no block below; ``get_block`` returns None there)."""
        raw = self._kv.get(schema.meta_key(BASE_META))
        return 1 if raw is None else self._decode(schema.meta_key(BASE_META), raw, schema.decode_height)

    def ensure_trie_values(self) -> int:
        """Fill ``v1/tval/`` from the flat state if this store predates it; returns the
        number of values written (0 when already done). The flat state is the head's, and
        so is the stored trie, so every leaf's value is the flat value under its key."""
        from ..app.trie import leaf_hash, tree_key, value_hash  # the pure layer, no I/O

        if self.get_meta(TRIE_VALUES_META) is not None:
            return 0
        puts: list[tuple[bytes, bytes]] = []
        base = schema.STATE_PREFIX
        for k, v in self._kv.iterate(base):
            module, _, key = k[len(base):].partition(b"/")
            lh = leaf_hash(tree_key(module.decode("ascii"), key), value_hash(v))
            puts.append((schema.trie_value_key(lh), v))
        puts.append((schema.meta_key(TRIE_VALUES_META), b"\x01"))
        self._kv.write(puts, [], sync=True)
        return len(puts) - 1

    def prune_trie(self, horizon: int, *, snapshots: Mapping[int, int] | None = None,
                   limit: int = 50_000) -> int:
        """Delete the trie records (and leaf values) that no kept version holds; at most
        ``limit`` stale entries per call. Returns how many stale entries were processed.

        The kept versions are every height from ``horizon`` to the head, and the kept
        snapshots: ``snapshots`` maps each one's height to the horizon at which it is
        dropped. A stale entry ``(s, X)`` says record X left the trie at height ``s`` (it
        is in version ``s - 1``, not in ``s``); it comes due when ``s <= horizon``. Then,
        with ``b`` the height X last (re)entered the trie (the birth in its entry, or in
        ``v1/born/`` for a record stored before births were folded in):

        * ``b > s``: X came back (the same subtree can return, e.g. a key added and
          deleted again), so the entry is dropped and X kept; its next departure has an
          entry of its own. The life that ended at ``s`` may hold a kept snapshot below
          ``s``, so X is *pinned* to the newest one (``v1/pin/``): not deleted, at the end
          of any later life, while that snapshot is kept.
        * otherwise X was in versions ``b .. s - 1`` only. If a kept snapshot is among
          them, or X is pinned to a kept one, the entry is re-filed (with ``s`` in its
          value) to come due at the horizon where the newest such snapshot is dropped,
          and X is pinned to it. Else no kept version holds X, and it is deleted with
          its value and pin.

        Entries come due in height order, and the ones this call re-files come due only
        after it (a kept snapshot is dropped at a horizon above this one). A call starts
        where the last complete one ended, not at the first stale key: the deletions of
        earlier calls stay in LevelDB as tombstones until compaction, and stepping over
        them was a third of the pruning's time (issue 14, session 10).

        So a chain keeps its recent window and its snapshots' versions, not every version
        between the oldest snapshot and the head (issue 14, session 10). Idempotent, so it
        needs no sync'd write. (A record stored before births were folded in that comes
        back after the upgrade leaves its ``v1/born/`` entry behind when it is finally
        pruned: 48 bytes, never read again.)
        """
        releases = snapshots or {}
        kept = sorted(releases, reverse=True)
        puts: list[tuple[bytes, bytes]] = []
        deletes: list[bytes] = []
        pins: dict[bytes, int | None] = {}  # read or set in this call (None: no pin)

        def pin_of(node: bytes) -> int | None:
            if node not in pins:
                raw = self._kv.get(schema.trie_pin_key(node))
                pins[node] = None if raw is None else schema.decode_height(raw)
            return pins[node]

        def pin(node: bytes, k: int) -> None:
            now = pin_of(node)
            if now is None or now < k:
                pins[node] = k
                puts.append((schema.trie_pin_key(node), schema.encode_height(k)))

        done = 0
        prefix = schema.TRIE_STALE_PREFIX
        complete = True
        start = prefix + schema.encode_height(self._stale_floor)
        for key, value in self._kv.iterate(prefix, start=start):
            due = schema.decode_height(key[len(prefix):len(prefix) + schema.HEIGHT_SIZE])
            if due > horizon:
                break
            if done >= limit:
                complete = False
                break
            node = key[len(prefix) + schema.HEIGHT_SIZE:]
            done += 1
            deletes.append(key)
            flag = value[:1]
            left = due if len(value) == 1 else schema.decode_height(value[1:1 + schema.HEIGHT_SIZE])
            entry = self._kv.get(schema.trie_key(node))
            born = split_trie_entry(entry)[1]
            legacy = None
            if born is None:  # stored before births were folded in (or already gone)
                legacy = self._kv.get(schema.trie_born_key(node))
                born = 0 if legacy is None else schema.decode_height(legacy)
            below = next((k for k in kept if k < left), None)  # the newest kept snapshot X could be in
            if entry is not None and born > left:
                if below is not None:
                    pin(node, below)
                continue
            pinned = pin_of(node)
            held = None
            if entry is not None:
                held = below if below is not None and below >= born else None
                if pinned is not None and pinned in kept:
                    held = pinned if held is None else max(held, pinned)
            if held is not None:
                pin(node, held)
                puts.append((schema.trie_stale_key(max(releases[held], horizon + 1), node),
                             flag + schema.encode_height(left)))
                continue
            deletes.append(schema.trie_key(node))
            if legacy is not None:
                deletes.append(schema.trie_born_key(node))
            if pinned is not None:
                deletes.append(schema.trie_pin_key(node))
                pins[node] = None
            if flag == b"\x00":
                deletes.append(schema.trie_value_key(node))
        if deletes or puts:
            put_keys = {k for k, _ in puts}
            self._kv.write(puts, [k for k in deletes if k not in put_keys], sync=False)
        if complete:
            # entries written from now on come due above the head (a block's) or above
            # this horizon (re-filed), so the ones below stay processed: the next call
            # need not step over their deletions, which LevelDB keeps until compaction
            self._stale_floor = max(self._stale_floor, min(horizon, self.head_height()) + 1)
        return done

    def has_stale_trie(self) -> bool:
        return next(self._kv.iterate(schema.TRIE_STALE_PREFIX), None) is not None

    def drop_retained_trie(self) -> None:
        """Keep the head's version of the trie only (retention switched off): prune every
        stale entry, whenever it comes due (a re-filed one can be due above the head),
        then the pins left on live records."""
        while self.prune_trie(schema.MAX_HEIGHT):
            pass
        keys = [k for k, _ in self._kv.iterate(schema.TRIE_PIN_PREFIX)]
        if keys:
            self._kv.write([], keys, sync=False)

    # -- commit ---------------------------------------------------------------------------

    def commit_block(
        self,
        block: Block,
        commit: Commit,
        state_writes: StateWrites,
        receipts: Sequence[Receipt],
        *,
        trie_puts: TriePuts | None = None,
        trie_deletes: Iterable[bytes] = (),
        trie_values: TriePuts | None = None,
        trie_deleted_leaves: frozenset[bytes] = frozenset(),
        retain: bool = False,
        nonce_unused: Collection[bytes] = (),
    ) -> None:
        """Append ``block`` (finalised by ``commit``) and its execution results atomically.

        ``nonce_unused``: hashes of the block's txs whose execution did not use their
        nonce (``App.NONCE_UNUSED_CODES``); those that are first inclusions are indexed
        under ``v1/nnu/`` (:meth:`used_its_nonce`).

        ``trie_values`` are the new leaves' values (leaf hash -> value);
        ``trie_deleted_leaves`` the leaves among ``trie_deletes``. With ``retain`` the
        replaced records are kept for older versions (a stale entry at this height
        instead of a delete; :meth:`prune_trie` deletes them later).

        Preconditions, checked before anything is written (StoreError otherwise):
        ``block.height == head_height() + 1``; ``block.header.prev_hash`` is the head's
        hash (above height 1); ``len(receipts) == len(block.txs)``; ``commit`` is for
        ``block`` (same height and hash). ``state_writes`` maps ``(module, key)`` to the
        new value, None meaning delete; ``trie_puts`` / ``trie_deletes`` are the state
        trie's records to add and drop (:class:`medchaind.app.trie.TrieDelta`). One
        ``sync=True`` write; on return the block is durable and is the new head.
        """
        height = block.height
        block_hash = block.hash()
        head_height, head = self._head_state
        if height != head_height + 1:
            raise StoreError(f"commit_block: block height {height}, expected {head_height + 1}")
        if head is not None and block.header.prev_hash != head.hash():
            raise StoreError(
                f"commit_block: block {height} does not extend the head "
                f"(prev_hash {block.header.prev_hash.hex()}, head hash {head.hash().hex()})"
            )
        if len(receipts) != len(block.txs):
            raise StoreError(
                f"commit_block: {len(receipts)} receipts for {len(block.txs)} transactions"
            )
        if commit.height != height or commit.block_hash != block_hash:
            raise StoreError(
                f"commit_block: the commit is for height {commit.height} block "
                f"{commit.block_hash.hex()}, not for height {height} block {block_hash.hex()}"
            )

        height_bytes = schema.encode_height(height)
        puts: list[tuple[bytes, bytes]] = [
            (schema.block_key(height), block.encode()),
            (schema.commit_key(height), commit.encode()),
            (schema.block_hash_key(block_hash), height_bytes),
        ]
        indexed: set[bytes] = set()
        unused: list[bytes] = []
        for index, (tx, receipt) in enumerate(zip(block.txs, receipts, strict=True)):
            loc_key = schema.tx_key(tx.hash)
            if tx.hash in indexed or self._kv.get(loc_key) is not None:
                log.warning(
                    "tx already committed, keeping first inclusion tx=%s height=%d index=%d",
                    tx.hash.hex(), height, index,
                )
                continue
            indexed.add(tx.hash)
            puts.append((loc_key, codec.encode([height, index, receipt.encode()])))
            if tx.hash in nonce_unused:
                puts.append((schema.nonce_unused_key(tx.hash), b""))
                unused.append(tx.hash)
        deletes = _add_state_writes(puts, state_writes)
        if retain:
            _add_trie_writes(puts, deletes, trie_puts, (), trie_values, height_bytes)
            puts.extend((schema.trie_stale_key(height, h), b"\x00" if h in trie_deleted_leaves else b"\x01")
                        for h in trie_deletes)
        else:
            _add_trie_writes(puts, deletes, trie_puts, trie_deletes, trie_values, height_bytes)
            deletes.extend(schema.trie_value_key(h) for h in trie_deleted_leaves)
        puts.append((schema.meta_key(HEAD_META), height_bytes))
        if self._nonce_unused is not None:
            puts.append((schema.meta_key(NONCE_UNUSED_META), height_bytes))

        self._kv.write(puts, deletes, sync=True)
        if unused and self._nonce_unused is not None:
            self._nonce_unused.update(unused)
        self._head_state = (height, block.header)
        log.debug(
            "committed block height=%d txs=%d state_writes=%d",
            height, len(block.txs), len(state_writes),
        )

    def init_genesis(
        self, genesis_hash: bytes, app_hash: bytes, state_writes: StateWrites,
        *, trie_puts: TriePuts | None = None, trie_values: TriePuts | None = None,
    ) -> None:
        """Write the genesis state and record which genesis this datadir belongs to.

        One atomic ``sync=True`` write of ``state_writes`` (value None = delete), the
        genesis state trie's records (``trie_puts``, whose root is ``app_hash``) plus
        meta ``genesis_hash`` and ``genesis_app_hash``. Raises StoreError, writing
        nothing, if the store already has a genesis or any block. Comparing a stored
        ``genesis_hash`` with the configured genesis is the caller's job (read it with
        ``get_meta(GENESIS_HASH_META)``).
        """
        if self.head_height() != 0 or self.get_meta(GENESIS_HASH_META) is not None:
            raise StoreError(
                "init_genesis: this datadir already has a genesis "
                f"(head height {self.head_height()}); use a new datadir for a new chain"
            )
        for name, value in (("genesis hash", genesis_hash), ("genesis app hash", app_hash)):
            if type(value) is not bytes or len(value) != crypto.HASH_SIZE:
                raise StoreError(f"init_genesis: the {name} must be {crypto.HASH_SIZE} bytes")
        puts: list[tuple[bytes, bytes]] = []
        deletes = _add_state_writes(puts, state_writes)
        _add_trie_writes(puts, deletes, trie_puts, (), trie_values, schema.encode_height(0))
        puts.append((schema.meta_key(GENESIS_HASH_META), genesis_hash))
        puts.append((schema.meta_key(GENESIS_APP_HASH_META), app_hash))
        if trie_values is not None:
            puts.append((schema.meta_key(TRIE_VALUES_META), b"\x01"))
        puts.append((schema.meta_key(NONCE_UNUSED_META), schema.encode_height(0)))  # no tx yet: complete
        self._kv.write(puts, deletes, sync=True)
        self._nonce_unused = set()
        log.info("genesis state written state_writes=%d", len(state_writes))

    def used_its_nonce(self, tx_hash: bytes) -> bool:
        """True if ``tx_hash``, were it committed here, used its sender's nonce, so that a
        sender's committed nonce at or below the tx's says it is not committed (nonces
        only grow). False if it may be one of the few whose first inclusion did not use
        it (``wrong_chain``, ``unknown_type``, ``bad_nonce``: a faulty proposer's), and
        for every tx of a datadir made before that index (mempool admission then reads
        the tx index, as it always did). A store restored from a snapshot holds no txs
        below its base, so it answers as for txs it never saw."""
        unused = self._nonce_unused
        return unused is not None and tx_hash not in unused

    def restore_snapshot(
        self, block: Block, commit: Commit, state: Iterable[tuple[str, bytes, bytes]],
        trie_puts: TriePuts, trie_values: TriePuts,
    ) -> None:
        """Make a store at height 0 the state snapshot of ``block``'s height: the state
        (``(module, key, value)``), its trie's records and leaf values, the block and its
        commit as the head and ``base`` (no block below it). The caller verified all of it
        (medchaind.sync.snapshots). One atomic ``sync=True`` write: a crash leaves the
        genesis store or the restored one."""
        if self.head_height() != 0:
            raise StoreError(f"restore_snapshot: the store already has blocks (head {self.head_height()})")
        if commit.height != block.height or commit.block_hash != block.hash():
            raise StoreError("restore_snapshot: the commit is not for that block")
        deletes = [k for prefix in (schema.STATE_PREFIX, schema.TRIE_PREFIX, schema.TRIE_VALUE_PREFIX,
                                    schema.TRIE_STALE_PREFIX, schema.TRIE_BORN_PREFIX,
                                    schema.TRIE_PIN_PREFIX)
                   for k, _ in self._kv.iterate(prefix)]
        height = block.height
        hb = schema.encode_height(height)
        puts: list[tuple[bytes, bytes]] = [
            (schema.block_key(height), block.encode()),
            (schema.commit_key(height), commit.encode()),
            (schema.block_hash_key(block.hash()), hb),
        ]
        puts.extend((schema.state_key(m, k), v) for m, k, v in state)
        _add_trie_writes(puts, [], trie_puts, (), trie_values, hb)
        put_keys = {k for k, _ in puts}
        deletes = [k for k in deletes if k not in put_keys]
        puts.append((schema.meta_key(TRIE_VALUES_META), b"\x01"))
        puts.append((schema.meta_key(BASE_META), hb))
        puts.append((schema.meta_key(HEAD_META), hb))
        if self._nonce_unused is not None:  # no tx below the base: still complete
            puts.append((schema.meta_key(NONCE_UNUSED_META), hb))
        self._kv.write(puts, deletes, sync=True)
        self._head_state = (height, block.header)
        self._stale_floor = 0
        log.info("state snapshot restored height=%d entries=%d records=%d", height, len(trie_values), len(trie_puts))

    def is_empty(self) -> bool:
        """True when the store holds no key at all of the chain schema (a brand-new datadir)."""
        return next(self._kv.iterate(schema.VERSION_PREFIX), None) is None

    # -- metadata ---------------------------------------------------------------------------

    def get_meta(self, name: str) -> bytes | None:
        return self._kv.get(schema.meta_key(name))

    def put_meta(self, name: str, value: bytes) -> None:
        """Durably store a small named value. Names in RESERVED_META are refused."""
        if name in RESERVED_META:
            raise StoreError(f"put_meta: {name!r} is maintained by the chain store itself")
        self._kv.put(schema.meta_key(name), value, sync=True)

    # -- blobs ------------------------------------------------------------------------------

    def put_blob(self, content_hash: bytes, data: bytes, *, sync: bool = True) -> None:
        """Store a sidecar blob under its content hash.

        The caller checks that ``data`` matches ``content_hash`` (the binding rule
        belongs to the module that defines it); the store only files it.
        """
        self._kv.put(schema.blob_key(content_hash), data, sync=sync)

    def get_blob(self, content_hash: bytes) -> bytes | None:
        return self._kv.get(schema.blob_key(content_hash))

    def has_blob(self, content_hash: bytes) -> bool:
        return self._kv.get(schema.blob_key(content_hash)) is not None

    def delete_blob(self, content_hash: bytes, *, sync: bool = True) -> None:
        """Erase a blob (erasure keeps the chain's hash, drops the ciphertext). Idempotent."""
        self._kv.delete(schema.blob_key(content_hash), sync=sync)


def _add_state_writes(puts: list[tuple[bytes, bytes]], state_writes: StateWrites) -> list[bytes]:
    """Append the puts of ``state_writes`` to ``puts``; return its deletes (value None)."""
    deletes: list[bytes] = []
    for (module, key), value in state_writes.items():
        skey = schema.state_key(module, key)
        if value is None:
            deletes.append(skey)
        else:
            puts.append((skey, value))
    return deletes


#: first byte of a ``v1/trie/`` value that carries its record's birth height (a record
#: itself starts with 0x00, a leaf, or 0x01, an inner node: medchaind.app.trie)
TRIE_ENTRY_TAG = 0x02
_TRIE_ENTRY_HEAD = 1 + schema.HEIGHT_SIZE


def _tagged(raw: bytes) -> bool:
    """Whether a ``v1/trie/`` value carries its birth height (else it is the bare record
    of a store written before births were folded in)."""
    return bool(raw) and raw[0] == TRIE_ENTRY_TAG


def split_trie_entry(raw: bytes | None) -> tuple[bytes | None, int | None]:
    """``(record, birth height)`` of a ``v1/trie/`` value; the height is None for a
    value stored before births were folded in (the bare record: ``v1/born/`` has it)."""
    if raw is None or not _tagged(raw):
        return raw, None
    return raw[_TRIE_ENTRY_HEAD:], schema.decode_height(raw[1:_TRIE_ENTRY_HEAD])


def _add_trie_writes(
    puts: list[tuple[bytes, bytes]], deletes: list[bytes], trie_puts: TriePuts | None,
    trie_deletes: Iterable[bytes], trie_values: TriePuts | None, height_bytes: bytes,
) -> None:
    """Append the state trie's record puts (each with its birth height) and deletes
    (keys built by the schema)."""
    if trie_puts:
        head = bytes((TRIE_ENTRY_TAG,)) + height_bytes  # each value: 0x02 || height:8 BE || record
        puts.extend((schema.trie_key(h), head + record) for h, record in trie_puts.items())
    if trie_values:
        puts.extend((schema.trie_value_key(h), v) for h, v in trie_values.items())
    deletes.extend(schema.trie_key(h) for h in trie_deletes)


#: a tx entry's bound: its location and a receipt (decode_receipt's own bound)
_TX_ENTRY_MAX = 64 + 1024 * 1024


def _decode_tx_entry(raw: bytes) -> tuple[int, int, bytes | None]:
    """``(height, index, encoded receipt)`` of a ``v1/tx/`` value; the receipt is None
    in an entry stored before receipts moved in (``[height, index]``)."""
    obj: Any = codec.decode(raw, max_size=_TX_ENTRY_MAX)
    if (
        not isinstance(obj, list) or len(obj) not in (2, 3)
        or type(obj[0]) is not int or type(obj[1]) is not int
        or obj[0] < 1 or obj[1] < 0
        or (len(obj) == 3 and type(obj[2]) is not bytes)
    ):
        raise ValueError("a tx entry is [height >= 1, index >= 0, encoded receipt]")
    return obj[0], obj[1], obj[2] if len(obj) == 3 else None
