"""Chain export and import (``medchaind export`` / ``medchaind import``).

A portable copy of a chain, independent of the database: the blocks and their commits,
in order, in canonical CBOR (docs/protocol.md §19). Import checks every block exactly as
block sync does: its commit must carry more than 2/3 of the voting power of the
authority set *at that height* (which the imported chain itself changes through
governance), the block's ``last_commit`` the set before it, and the block must
re-execute to the ``app_hash`` and ``results_hash`` in its header. A file that was
tampered with stops the import at the first bad block with the height and the reason;
every block before it stays committed (each one is one atomic write), so an import can
be resumed. Record ciphertexts are not chain data and are not exported: a node fetches
them from its peers.

File format::

    u32be len || enc({"format": "medchain-export", "v": 1, "chain_id", "genesis_hash",
                      "from": first height, "to": last height})
    then per height: u32be len || enc({"h": height, "b": block, "c": commit})
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import trio

from .. import codec
from ..app import StateReader
from ..chain import Checked, SigCache, Tip, check_decided_block
from ..consensus.verify import LOOKAHEAD_BLOCKS, Ahead, Lookahead
from ..errors import ConfigError, InvalidBlock, MedchainError
from ..files import load_genesis
from ..ledger import Ledger
from ..modules import make_app
from ..store import ChainStore, open_store
from ..types import Block, Commit, Genesis, decode_block
from ..types.block import decode_commit

log = logging.getLogger(__name__)

FORMAT = "medchain-export"
VERSION = 1
_LEN = struct.Struct(">I")
#: a record holds a block (at most max_block_bytes, 8 MiB by default) and its commit
MAX_RECORD = 80 * 1024 * 1024


class ChainFileError(MedchainError):
    """A malformed, foreign or tampered chain file."""


def _write_record(f: IO[bytes], obj: Any) -> int:
    data = codec.encode(obj)
    f.write(_LEN.pack(len(data)) + data)
    return 4 + len(data)


def read_records(f: IO[bytes]) -> Iterator[Any]:
    offset = 0
    while True:
        head = f.read(4)
        if not head:
            return
        if len(head) < 4:
            raise ChainFileError(f"truncated record length at offset {offset}")
        (n,) = _LEN.unpack(head)
        if n > MAX_RECORD:
            raise ChainFileError(f"record of {n} bytes at offset {offset} is over the limit")
        data = f.read(n)
        if len(data) < n:
            raise ChainFileError(f"truncated record at offset {offset}")
        try:
            yield codec.decode(data, max_size=MAX_RECORD)
        except MedchainError as exc:
            raise ChainFileError(f"malformed record at offset {offset}: {exc}") from None
        offset += 4 + n


def write_chain(store: ChainStore, genesis: Genesis, f: IO[bytes], first: int, last: int) -> int:
    """Write the header and blocks ``first..last`` of ``store`` to ``f``; bytes written."""
    size = _write_record(f, {"format": FORMAT, "v": VERSION, "chain_id": genesis.chain_id,
                             "genesis_hash": genesis.hash(), "from": first, "to": last})
    for h in range(first, last + 1):
        block, commit = store.get_block(h), store.get_commit(h)
        if block is None or commit is None:
            raise ConfigError(f"the store has no block or commit at height {h}")
        size += _write_record(f, {"h": h, "b": block.encode(), "c": commit.encode()})
    return size


def export_chain(datadir: Path, out: Path, *, first: int = 1, last: int | None = None) -> dict[str, Any]:
    """Write blocks ``first..last`` (default: to the head) of a *stopped* node to ``out``."""
    genesis = load_genesis(datadir / "genesis.json")
    kv, store = open_store(datadir)
    try:
        head = store.head_height()
        last = head if last is None else last
        if not 1 <= first <= max(last, 1) or last > head:
            raise ConfigError(f"heights {first}..{last} are not within this chain's 1..{head}")
        # 0600 like every other file the node writes (the chain holds pseudonymous
        # identifiers and commitments, not for everyone on the machine); O_EXCL: never
        # overwrite an existing file
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                size = write_chain(store, genesis, f, first, last)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            out.unlink(missing_ok=True)  # ours (O_EXCL): no half-written export is left behind
            raise
    finally:
        kv.close()
    return {"chain_id": genesis.chain_id, "from": first, "to": last, "blocks": max(0, last - first + 1),
            "bytes": size, "path": str(out)}


def read_header(records: Iterator[Any], genesis: Genesis, name: str) -> None:
    """Consume and check the header record: a medchain export of this genesis's chain."""
    header = next(records, None)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ChainFileError(f"{name} is not a medchain export")
    if header.get("v") != VERSION:
        raise ChainFileError(f"export format version {header.get('v')!r} is not supported (need {VERSION})")
    if header.get("genesis_hash") != genesis.hash():
        raise ChainFileError(
            f"{name} is a chain with another genesis ({header.get('chain_id')!r}); "
            "initialise the datadir with that chain's genesis.json"
        )


async def import_records(
    ledger: Ledger, records: Iterator[Any], progress: Callable[[int], None] = lambda h: None, *,
    threads: bool = True, pipeline: bool = True,
) -> int:
    """Verify and commit the block records that follow ``ledger``'s head; how many.

    Pipelined (issue 14): the next :data:`LOOKAHEAD_BLOCKS` records are decoded and
    their tx and commit signatures checked in worker threads
    (:class:`~medchaind.consensus.verify.Lookahead`) while the current block executes.
    Every check still runs for every block, in order: a record that fails to decode,
    a gap or a bad signature is reported when its height is reached, after every block
    before it was committed, exactly as without the look-ahead. Each block is still one
    atomic, fsync'd write (an import cut short, even by a power failure, keeps a
    prefix of the chain: the module docstring); with a ledger that commits in a worker
    thread the next records are decoded while it is in flight.

    ``pipeline`` (issue 14, session 4): while block N's write is in flight, block N+1 is
    also checked and executed, against the state N leaves (:class:`PendingState`: N's
    write-set and trie records over the committed state) and the tip N makes. Nothing
    of N+1 is written before N's write returned and the ledger's tip moved to N, and
    :meth:`Ledger.commit` still writes one block at a time, in order: so a crash keeps a
    prefix of the chain and the state never runs ahead of the blocks, and a block N+1
    that fails is reported after N is committed, with nothing of it written. The tip a
    block was checked against must equal the ledger's when its turn comes (else it is
    checked again). What overlaps is the write's I/O (LevelDB's write and fsync release
    the GIL) with N+1's execution; the Python work is still serial."""
    chain_id = ledger.genesis.chain_id
    params = ledger.genesis.params
    sigs = SigCache()
    ahead = Lookahead(sigs, chain_id, threads=threads)
    queue: deque[_Queued] = deque()
    it = iter(records)
    next_h = ledger.height + 1
    prev_powers = dict(ledger.tip.powers)
    imported = 0

    def fill() -> None:
        nonlocal next_h
        while len(queue) < LOOKAHEAD_BLOCKS and (not queue or queue[-1].error is None):
            try:
                rec = next(it, None)
                if rec is None:
                    return
                if not isinstance(rec, dict) or set(rec) != {"h", "b", "c"} or type(rec["h"]) is not int:
                    raise ChainFileError("a block record is {h, b, c}")
                h = rec["h"]
                if h < next_h:
                    continue  # already here: resuming, or a file that overlaps the chain
                if h != next_h:
                    raise ChainFileError(f"height {h} follows {next_h - 1}: the file has a gap")
                next_h += 1
                try:
                    block = decode_block(rec["b"])
                    commit = decode_commit(rec["c"])
                    if block.height != h:
                        raise InvalidBlock(f"record for height {h} holds block {block.height}")
                except MedchainError as exc:
                    raise ChainFileError(f"block {h} rejected: {exc}") from None
            except ChainFileError as exc:  # reported once the blocks before it are committed
                queue.append(_Queued(None, None, None, exc))
                return
            queue.append(_Queued(block, commit, ahead.submit(block, commit), None))

    def take() -> _Queued | None:
        """The next decoded record (None at the end of the file); raises its error."""
        fill()
        if not queue:
            return None
        item = queue.popleft()
        if item.error is not None:
            raise item.error
        return item

    def check(item: _Queued, state: StateReader, tip: Tip) -> Checked:
        """Every check of one block against its parent ``tip`` and the state after it."""
        block, commit = item.block, item.commit
        assert block is not None and commit is not None
        try:
            votes = ahead.collect_nowait(item.ahead)
            # decode_block (fill) ran the block's validate_basic
            return check_decided_block(ledger.app, state, tip, prev_powers, block, commit, sigs,
                                       max_txs=params.max_block_txs, max_bytes=params.max_block_bytes,
                                       verified=votes, basic_checked=True)
        except MedchainError as exc:
            raise ChainFileError(f"block {block.height} rejected: {exc}") from None

    ready: Checked | None = None  # checked against the state the ledger is about to have

    def check_next(cur: Checked) -> None:
        """While block ``cur``'s write and fsync are in flight: decode the next records,
        and check the block after it against the state ``cur`` leaves (PendingState)
        and the tip it makes. An error is raised once ``cur`` is committed."""
        nonlocal ready
        item = take()
        if item is None:
            return
        ready = check(item, *ledger.pending(cur.block, cur.ex))

    try:
        while True:
            if ready is None:
                item = take()
                if item is None:
                    return imported
                ready = check(item, ledger.state, ledger.tip)
                await trio.lowlevel.checkpoint()
            cur, ready = ready, None
            if cur.tip != ledger.tip:  # never expected (the parent of a check ahead is exact)
                log.warning("import: block %d was checked against another tip; checking it again",
                            cur.block.height)
                cur = check(_Queued(cur.block, cur.commit, None, None), ledger.state, ledger.tip)
            h = cur.block.height
            prev_powers = dict(ledger.tip.powers)  # the set that signs block h
            meanwhile = functools.partial(check_next, cur) if pipeline else fill
            try:
                await ledger.commit(cur.block, cur.commit, cur.ex, meanwhile=meanwhile)
            finally:
                if ledger.height == h:  # committed (the next block's check may have failed)
                    sigs.discard(t.hash for t in cur.block.txs)  # only the blocks ahead need theirs
                    imported += 1
                    progress(h)
    finally:
        ahead.close()


@dataclass(frozen=True, slots=True)
class _Queued:
    """A decoded record waiting for its turn, or the error to report at its height."""

    block: Block | None
    commit: Commit | None
    ahead: Ahead | None
    error: ChainFileError | None


def import_chain(datadir: Path, src: Path, *, progress: Callable[[int], None] = lambda h: None,
                 pipeline: bool = True) -> dict[str, Any]:
    """Verify and commit the blocks of ``src`` that follow this (stopped) node's head
    (``pipeline``: :func:`import_records`'s)."""
    genesis = load_genesis(datadir / "genesis.json")
    kv, store = open_store(datadir)
    try:
        # each block is still one fsync'd write; in a worker thread, so that decoding the
        # next records overlaps with it (Ledger.commit's ``meanwhile``)
        ledger = Ledger(store, make_app(genesis), genesis, commit_in_thread=True)
        start = ledger.height
        with open(src, "rb") as f:
            records = read_records(f)
            read_header(records, genesis, str(src))
            try:
                imported = trio.run(functools.partial(import_records, ledger, records, progress, pipeline=pipeline))
            except ChainFileError as exc:
                raise ChainFileError(f"{exc}; the chain stays at height {ledger.height}") from None
        return {"chain_id": genesis.chain_id, "from_height": start, "height": ledger.height, "imported": imported,
                "head_hash": "0x" + ledger.tip.block_hash.hex(), "app_hash": "0x" + ledger.tip.app_hash.hex()}
    finally:
        kv.close()
