"""Compact proposals: a proposal names its block's txs by hash (``docs/protocol.md``
§12.3), and a receiver rebuilds the block from the txs it holds, fetching only the ones
it lacks over ``/medchain/<chain>/txs/1`` (§13.5).

Why they are shaped this way
============================

A proposal used to carry its whole block: up to ~2 MiB gossiped to every authority
although each tx in it had already gone around in ``tx/1`` batches, and every receiver
decoded it again. On py-libp2p, which writes one RPC at a time per peer, votes waited
behind those megabytes until round timeouts fired (docs/benchmarks.md, issue 14). As
Bitcoin's BIP 152 (``cmpctblock`` / ``getblocktxn``) and CometBFT's block parts do, the
proposal now carries the header, the ``last_commit`` and the ordered tx hashes (34 bytes
a tx instead of ~1 KiB), and the receiver:

1. checks the compact block statelessly (:meth:`CompactBlock.check`): its header
   hash is the signed ``block``, ``tx_root`` is the Merkle root of the listed hashes and
   ``last_commit`` fits the header, so whatever txs are filled in later, the rebuilt
   block is the one the proposer signed, or its hashes would differ;
2. rebuilds it (:class:`Assembly`) from the decoded, signature-checked txs it already
   holds (mempool, this height's blocks), reusing the objects;
3. fetches only what is missing, first from the peer that sent the proposal, then from
   any connected peer (:func:`fetch_missing`): by hashes (``txs``) when few are missing,
   the whole block by hash (``block``) when most are. Every answer is checked entry by
   entry against the requested hash, so a peer can delay a proposal but never change it.

A proposal whose txs cannot be obtained before the round's propose timeout is as if it
had never arrived (the round times out and prevotes nil), never an invalid proposal:
an honest proposer whose txs a partition kept from us must not look Byzantine.

One form only. A full-body form for small blocks or re-publications would be a second
acceptance rule for every implementation and saves nothing that matters: the compact
form is smaller for any block with a tx (a hash is 34 bytes, a tx at least ~150), and a
peer lacking txs pays one round trip to the proposer, who always holds them.

Everything here but :func:`fetch_missing` is pure (no trio, no network): the engine
(:mod:`.bft`) decides when to assemble and fetch, the node serves ``txs/1``
(:func:`serve_txs`) from the engine's lookups.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from .. import codec, crypto
from ..errors import DecodeError, MedchainError, ValidationError
from ..types import Block, Commit, Header, Tx, decode_block
from ..types.block import MAX_BLOCK_BYTES, check_last_commit
from ..types.merkle import merkle_root
from ..types.tx import decode_tx

if TYPE_CHECKING:
    from ..net.api import NetworkAPI, PeerId

log = logging.getLogger(__name__)

TxLookup = Callable[[bytes], "Tx | None"]

#: the request/response protocol of §13.5 (``/medchain/<chain>/txs/1`` on libp2p)
TXS_PROTOCOL = "txs/1"
#: hashes in one ``txs`` request at most
MAX_TXS_PER_REQUEST = 1024
#: a ``txs`` request's encoding at most: the map, the op and 1024 hashes of 34 bytes
TXS_REQUEST_LIMIT = 64 + 34 * MAX_TXS_PER_REQUEST
#: a server stops adding txs to a ``txs`` answer before their bytes exceed this (it
#: always sends the first one it holds); a requester refuses a larger answer
MAX_TXS_ANSWER_BYTES = 8 * 1024 * 1024
#: the encoding of a ``txs`` answer at most (1024 txs of 64 KiB never fit in it)
MAX_TXS_RESPONSE = MAX_TXS_ANSWER_BYTES + 64 * 1024 + 4 * MAX_TXS_PER_REQUEST
#: the encoding of a ``block`` answer at most
MAX_BLOCK_RESPONSE = MAX_BLOCK_BYTES + 64
#: hashes a compact proposal lists at most (the genesis ``max_block_txs`` applies when
#: the block is judged; this bounds what is decoded before that)
MAX_COMPACT_TXS = 65_536
#: ask for the whole block, not its txs, when more than this share of them is missing
#: (or more than one request's worth): one round trip, and the block's own encoding
BLOCK_FETCH_SHARE = 0.5
#: one request to one peer waits at most this long (seconds) in the first pass over the
#: peers; each further pass doubles it (a loaded proposer answers late, not never)
REQUEST_TIMEOUT_S = 2.0
#: passes over the peers at most (timeouts 2, 4, 8, 16 s: ~30 s per silent peer)
FETCH_PASSES = 4


def _is_hash(x: Any) -> bool:
    return isinstance(x, bytes) and len(x) == crypto.HASH_SIZE


# ---------------------------------------------------------------- the compact block


@dataclass(frozen=True, slots=True)
class CompactBlock:
    """A block as a proposal carries it: header, tx hashes in block order, last_commit."""

    header: Header
    tx_hashes: tuple[bytes, ...]
    last_commit: Commit | None

    @classmethod
    def of(cls, block: Block) -> CompactBlock:
        return cls(block.header, tuple(t.hash for t in block.txs), block.last_commit)

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    def to_fields(self) -> dict[str, Any]:
        """The keys a proposal message adds to the proposal map (§12.3)."""
        return {
            "header": self.header.to_map(),
            "tx_hashes": list(self.tx_hashes),
            "last_commit": None if self.last_commit is None else self.last_commit.to_map(),
        }

    @classmethod
    def from_fields(cls, header: Any, tx_hashes: Any, last_commit: Any) -> CompactBlock:
        """The shape (§4, §5, §12.3); raises ValidationError. The rules that cost hashing
        are :meth:`check`'s, run once the proposal's signer and signature passed."""
        h = Header.from_map(header)
        if not isinstance(tx_hashes, list) or len(tx_hashes) > MAX_COMPACT_TXS:
            raise ValidationError(f"proposal: tx_hashes must be a list of at most {MAX_COMPACT_TXS} hashes")
        if not all(_is_hash(x) for x in tx_hashes):
            raise ValidationError("proposal: each of tx_hashes is 32 bytes")
        lc = None if last_commit is None else Commit.from_map(last_commit)
        return cls(h, tuple(tx_hashes), lc)

    def check(self) -> None:
        """§12.3's stateless rules: ``tx_root`` is the Merkle root of ``tx_hashes`` and
        ``last_commit`` fits the header (§6 rules 3-4). Raises ValidationError."""
        if merkle_root(list(self.tx_hashes)) != self.header.tx_root:
            raise ValidationError("proposal: tx_root is not the Merkle root of tx_hashes")
        check_last_commit(self.header, self.last_commit)


# ---------------------------------------------------------------- rebuilding


class Assembly:
    """Rebuilds the block a :class:`CompactBlock` names from txs supplied by hash.

    ``known(hash)`` gives the txs this node holds (decoded, signature-checked); the rest
    are :meth:`missing` until :meth:`add_tx` or :meth:`add_block` supplies them. Every
    supplied tx is checked against the hash at its place, so :meth:`block` is exactly
    the proposed block (its hash is the header's and the header binds ``tx_root``).
    """

    def __init__(self, compact: CompactBlock, known: TxLookup) -> None:
        self.compact = compact
        self._txs: list[Tx | None] = []
        self._missing: dict[bytes, list[int]] = {}  # hash -> its places, in block order
        for i, h in enumerate(compact.tx_hashes):
            tx = known(h)
            if tx is not None and tx.hash != h:  # pragma: no cover - a lookup by hash
                tx = None
            self._txs.append(tx)
            if tx is None:
                self._missing.setdefault(h, []).append(i)

    @property
    def complete(self) -> bool:
        return not self._missing

    def missing(self) -> list[bytes]:
        """The hashes still needed, each once, in block order."""
        return list(self._missing)

    def add_tx(self, raw: bytes) -> None:
        """Fill a missing tx from its encoding; raises DecodeError if the bytes are not a
        tx or not one this block misses (a wrong answer)."""
        h = crypto.sha256(raw)
        places = self._missing.get(h)
        if places is None:
            raise DecodeError("txs answer: a tx the proposal does not miss")
        tx = decode_tx(raw, tx_hash=h)
        for i in places:
            self._txs[i] = tx
        del self._missing[h]

    def add_block(self, block: Block) -> None:
        """Fill every place from the whole block; raises DecodeError unless it is the
        proposed block."""
        if block.hash() != self.compact.hash() or tuple(t.hash for t in block.txs) != self.compact.tx_hashes:
            raise DecodeError("block answer: not the proposed block")
        self._txs = list(block.txs)
        self._missing = {}

    def block(self) -> Block:
        """The rebuilt block (needs :attr:`complete`); ValidationError if a tx is for
        another chain (the one rule of §6's ``validate_basic`` that needs the txs)."""
        assert self.complete, "Assembly.block() before every tx is in"
        txs = tuple(t for t in self._txs if t is not None)
        c = self.compact
        for t in txs:
            if t.chain != c.header.chain:
                raise ValidationError("block: tx for another chain")
        return Block(c.header, txs, c.last_commit, c.hash())


# ---------------------------------------------------------------- txs/1 (§13.5)


def encode_txs_request(hashes: list[bytes]) -> bytes:
    return codec.encode_unchecked({"op": "txs", "hashes": hashes})


def encode_block_request(block_hash: bytes) -> bytes:
    return codec.encode_unchecked({"op": "block", "hash": block_hash})


def decode_txs_request(data: bytes) -> tuple[str, list[bytes]]:
    """``("txs", hashes)`` or ``("block", [hash])``; DecodeError otherwise."""
    d = codec.decode(data, max_size=TXS_REQUEST_LIMIT)
    if isinstance(d, dict) and d.get("op") == "txs" and set(d) == {"op", "hashes"}:
        hs = d["hashes"]
        if (not isinstance(hs, list) or not 1 <= len(hs) <= MAX_TXS_PER_REQUEST
                or not all(_is_hash(x) for x in hs)):
            raise DecodeError(f"txs request: hashes must be 1..{MAX_TXS_PER_REQUEST} hashes of 32 bytes")
        return "txs", list(hs)
    if isinstance(d, dict) and d.get("op") == "block" and set(d) == {"op", "hash"} and _is_hash(d["hash"]):
        return "block", [d["hash"]]
    raise DecodeError("txs/1 request: expected {op: txs, hashes} or {op: block, hash}")


def serve_txs(data: bytes, find_tx: TxLookup, find_block: Callable[[bytes], Block | None]) -> bytes:
    """The server side of §13.5: a request's answer from what this node holds."""
    op, hashes = decode_txs_request(data)
    if op == "block":
        block = find_block(hashes[0])
        return codec.encode_unchecked({"block": None if block is None else block.encode()})
    out: list[bytes | None] = []
    size = 0
    for h in hashes:
        tx = find_tx(h)
        if tx is not None:
            if size and size + len(tx.encoded) > MAX_TXS_ANSWER_BYTES:
                break  # the rest in a further request
            size += len(tx.encoded)
        out.append(None if tx is None else tx.encoded)
    return codec.encode_unchecked({"txs": out})


def decode_txs_answer(data: bytes, asked: list[bytes]) -> list[bytes | None]:
    """A ``txs`` answer: a prefix of ``asked``, each entry that tx's encoding or null.
    DecodeError if it is malformed, too large, longer than asked or names another tx."""
    d = codec.decode(data, max_size=MAX_TXS_RESPONSE)
    if not isinstance(d, dict) or set(d) != {"txs"} or not isinstance(d["txs"], list):
        raise DecodeError("txs answer: expected {txs: [tx bytes | null, ...]}")
    got = d["txs"]
    if len(got) > len(asked):
        raise DecodeError("txs answer: more entries than hashes asked")
    size = 0
    for raw, h in zip(got, asked, strict=False):
        if raw is None:
            continue
        if not isinstance(raw, bytes) or crypto.sha256(raw) != h:
            raise DecodeError("txs answer: an entry is not the tx asked for")
        size += len(raw)
    if size > MAX_TXS_ANSWER_BYTES + 64 * 1024:
        raise DecodeError("txs answer: above its byte limit")
    return list(got)


def decode_block_answer(data: bytes) -> Block | None:
    d = codec.decode(data, max_size=MAX_BLOCK_RESPONSE)
    if not isinstance(d, dict) or set(d) != {"block"} or not (d["block"] is None or isinstance(d["block"], bytes)):
        raise DecodeError("block answer: expected {block: block bytes | null}")
    return None if d["block"] is None else decode_block(d["block"])


# ---------------------------------------------------------------- fetching


async def fetch_missing(net: NetworkAPI, asm: Assembly, peers: list[PeerId], *,
                        on_fault: Callable[[PeerId, str], None] | None = None,
                        request_timeout_s: float = REQUEST_TIMEOUT_S, passes: int = FETCH_PASSES) -> bool:
    """Ask ``peers`` in order for what ``asm`` misses until it is complete; True if it is.

    Up to ``passes`` passes over the peers, the per-request timeout doubling each pass
    (a proposer on a loaded machine answers late; one that lacked txs may have them by
    then). The caller bounds the whole fetch (a cancel scope: the engine ends it once
    the height is decided). A peer that times out, is unreachable or lacks txs is passed
    over; one whose answer is malformed or names other bytes (a wrong tx, an oversize
    answer) is reported to ``on_fault`` and left out of the later passes.
    """
    faulty: set[PeerId] = set()
    for n in range(passes):
        if await _fetch_pass(net, asm, [p for p in peers if p not in faulty], faulty, on_fault,
                             request_timeout_s * 2**n):
            return True
    return asm.complete


async def _fetch_pass(net: NetworkAPI, asm: Assembly, peers: list[PeerId], faulty: set[PeerId],
                      on_fault: Callable[[PeerId, str], None] | None, request_timeout_s: float) -> bool:
    for peer in peers:
        while not asm.complete:
            missing = asm.missing()
            total = len(asm.compact.tx_hashes)
            try:
                if len(missing) > MAX_TXS_PER_REQUEST or len(missing) > BLOCK_FETCH_SHARE * total:
                    raw = await net.request(peer, TXS_PROTOCOL, encode_block_request(asm.compact.hash()),
                                            timeout=request_timeout_s)
                    block = decode_block_answer(raw)
                    if block is None:
                        break  # this peer does not hold it: the next one
                    asm.add_block(block)
                    continue
                ask = missing[:MAX_TXS_PER_REQUEST]
                raw = await net.request(peer, TXS_PROTOCOL, encode_txs_request(ask), timeout=request_timeout_s)
                got = decode_txs_answer(raw, ask)
                for entry in got:
                    if entry is not None:
                        asm.add_tx(entry)
                if not got or all(entry is None for entry in got):
                    break  # nothing we need here
            except DecodeError as exc:
                log.warning("proposal fetch: bad answer peer=%s reason=%s", peer, exc)
                faulty.add(peer)
                if on_fault is not None:
                    on_fault(peer, f"bad txs/1 answer ({exc})")
                break
            except MedchainError as exc:  # timeout, unreachable, busy, too large
                log.debug("proposal fetch: no answer peer=%s reason=%s", peer, exc)
                break
        if asm.complete:
            return True
        await trio.lowlevel.checkpoint()
    return asm.complete
