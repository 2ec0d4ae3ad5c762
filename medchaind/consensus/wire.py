"""Gossip and request/response encodings (``docs/protocol.md`` §12-13).

Topics (``<chain>`` is the chain id):

* ``/medchain/<chain>/consensus/1``: ``{"t": "vote", ...vote}`` or
  ``{"t": "proposal", ...proposal, "header", "tx_hashes", "last_commit"}``: a compact
  proposal (protocol 4) names its block's txs by hash; the receiver rebuilds the block
  from its mempool and fetches what it lacks over ``txs/1`` (:mod:`.compact`).
  An optional ``"resend": n`` marks the n-th periodic re-broadcast of the same message.
* ``/medchain/<chain>/tx/1``: ``{"txs": [<tx bytes>, ...]}``, a batch of txs a node
  admitted (batched by count and time, DESIGN.md §5).
* ``/medchain/<chain>/block/1`` and the sync protocol: encoded in ``sync/wire.py``
  (below consensus, DESIGN.md §2) and re-exported here.

Every decoder here is the one boundary for its message kind: it returns a validated
value or raises DecodeError/ValidationError, and the gossip validator rejects on error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import codec
from ..core import Message, Proposal
from ..errors import DecodeError, ValidationError
from ..sync.wire import MAX_SYNC_BLOCKS as MAX_SYNC_BLOCKS
from ..sync.wire import MAX_SYNC_BYTES as MAX_SYNC_BYTES
from ..sync.wire import SYNC_PROTOCOL as SYNC_PROTOCOL
from ..sync.wire import block_topic as block_topic
from ..sync.wire import decode_announce as decode_announce
from ..sync.wire import decode_blocks as decode_blocks
from ..sync.wire import decode_status as decode_status
from ..sync.wire import decode_sync_request as decode_sync_request
from ..sync.wire import encode_announce as encode_announce
from ..sync.wire import encode_blocks as encode_blocks
from ..sync.wire import encode_status as encode_status
from ..sync.wire import encode_sync_request as encode_sync_request
from ..types import Block, Tx
from ..types.block import MAX_BLOCK_BYTES
from .compact import Assembly, CompactBlock
from .wal import message_from_map, message_to_map

MAX_TX_BATCH = 1024
MAX_CONSENSUS_MSG = MAX_BLOCK_BYTES + 4096


# Topic names are relative: the libp2p adapter publishes them as
# ``/medchain/<chain>/<name>`` (the chain id comes from the network's configuration).


def consensus_topic(chain: str) -> str:
    return "consensus/1"


def tx_topic(chain: str) -> str:
    return "tx/1"


@dataclass(frozen=True, slots=True)
class ConsensusMsg:
    message: Message
    block: Block | None  # with proposals only, once rebuilt
    #: a proposal's compact block as it came (the txs it names may still be missing)
    compact: CompactBlock | None = None


_COMPACT_KEYS = ("header", "tx_hashes", "last_commit")


def encode_consensus(message: Message, block: Block | CompactBlock | None = None, resend: int = 0) -> bytes:
    """``resend`` > 0 marks a re-broadcast; it makes the bytes (and so the gossip message
    id) differ from the first send, so peers that deduplicate by content still get it.
    A proposal carries its block compactly (header, tx hashes, last_commit; §12.3)."""
    m = message_to_map(message)
    if resend:
        m["resend"] = resend
    if isinstance(message, Proposal):
        assert block is not None
        compact = block if isinstance(block, CompactBlock) else CompactBlock.of(block)
        m.update(compact.to_fields())
    return codec.encode_unchecked(m)


def decode_consensus_head(data: bytes) -> tuple[Message, CompactBlock | None]:
    """The message and, for a proposal, its compact block, of the right shape (§12.3;
    the rules that cost hashing are :func:`check_compact`'s).

    The gossip validator checks what is cheap first (height, signer, proposer of the
    round, signature) and only then rebuilds the block, so a flood of proposals that are
    not the signer's turn costs no lookups and no fetches.
    """
    d = codec.decode(data, max_size=MAX_CONSENSUS_MSG)
    if not isinstance(d, dict):
        raise DecodeError("consensus message: expected a map")
    resend = d.pop("resend", 0)
    if type(resend) is not int or resend < 0:
        raise DecodeError("consensus message: resend must be a non-negative integer")
    compact = None
    if d.get("t") == "proposal":
        if not all(k in d for k in _COMPACT_KEYS):
            raise DecodeError("proposal without its compact block (header, tx_hashes, last_commit)")
        fields = [d.pop(k) for k in _COMPACT_KEYS]
        try:
            compact = CompactBlock.from_fields(*fields)
        except ValidationError as exc:
            raise DecodeError(str(exc)) from None
    return message_from_map(d), compact


def check_compact(message: Message, compact: CompactBlock | None) -> None:
    """A proposal's compact block is the block it signs (same hash and height) and is
    consistent (``tx_root``, ``last_commit``: :meth:`CompactBlock.check`), §12.3."""
    if isinstance(message, Proposal):
        assert compact is not None
        if compact.hash() != message.block_hash or compact.height != message.height:
            raise ValidationError("proposal: block does not match the proposed hash and height")
        compact.check()


def attach_block(message: Message, compact: CompactBlock | None,
                 known: Callable[[bytes], Tx | None] | None = None) -> ConsensusMsg:
    """Bind a proposal to its block, rebuilt from ``known`` txs; ``block`` stays None
    while some are missing (``compact`` says which: :class:`~.compact.Assembly`)."""
    if not isinstance(message, Proposal):
        return ConsensusMsg(message, None)
    check_compact(message, compact)
    assert compact is not None
    asm = Assembly(compact, known or (lambda h: None))
    return ConsensusMsg(message, asm.block() if asm.complete else None, compact)


def decode_consensus(data: bytes, known: Callable[[bytes], Tx | None] | None = None) -> ConsensusMsg:
    message, compact = decode_consensus_head(data)
    return attach_block(message, compact, known)


#: the canonical encoding of a tx batch up to its array: a map of one key, "txs" (§12.4)
_TX_BATCH_HEAD = b"\xa1\x63txs"
MAX_TX_BATCH_BYTES = MAX_TX_BATCH * 70_000


def encode_tx_batch(txs: list[bytes]) -> bytes:
    return codec.encode_unchecked({"txs": txs})


def decode_tx_batch(data: bytes) -> list[bytes]:
    """The encoded txs of a tx batch (§12.4), each a byte string; the txs themselves
    are not decoded here (the gossip validator judges a batch by its shape alone).

    A batch's canonical encoding is a fixed head (``_TX_BATCH_HEAD``) and a canonical
    array of byte strings, which :func:`codec.split_bytes_array` checks from its heads
    without re-encoding a megabyte of txs; any other input goes through
    :func:`codec.decode`, which accepts exactly the same set and says what is wrong.
    """
    if type(data) is bytes and len(data) <= MAX_TX_BATCH_BYTES and data[:5] == _TX_BATCH_HEAD:
        txs = codec.split_bytes_array(data, 5, max_items=MAX_TX_BATCH)
        if txs is not None:
            return txs
    return _decode_tx_batch(data)


def _decode_tx_batch(data: bytes) -> list[bytes]:
    d = codec.decode(data, max_size=MAX_TX_BATCH_BYTES)
    if not isinstance(d, dict) or set(d) != {"txs"} or not isinstance(d["txs"], list):
        raise DecodeError("tx batch: expected {txs: [...]}")
    if len(d["txs"]) > MAX_TX_BATCH or not all(isinstance(t, bytes) for t in d["txs"]):
        raise DecodeError("tx batch: at most 1024 byte strings")
    return list(d["txs"])
