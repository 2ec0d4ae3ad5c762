"""Gossip and request/response encodings (``docs/protocol.md`` §12-13).

Topics (``<chain>`` is the chain id):

* ``/medchain/<chain>/consensus/1``: ``{"t": "vote", ...vote}`` or
  ``{"t": "proposal", ...proposal, "body": <block bytes>}``; a proposal carries the
  block it proposes, so a validator can judge valid(v) without another round trip.
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
from ..types import Block, Tx, decode_block
from ..types.block import MAX_BLOCK_BYTES
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
    block: Block | None  # with proposals only


def encode_consensus(message: Message, block: Block | None = None, resend: int = 0) -> bytes:
    """``resend`` > 0 marks a re-broadcast; it makes the bytes (and so the gossip message
    id) differ from the first send, so peers that deduplicate by content still get it."""
    m = message_to_map(message)
    if resend:
        m["resend"] = resend
    if isinstance(message, Proposal):
        assert block is not None
        # splice the block's canonical bytes in as a byte string
        m["body"] = block.encode()
    return codec.encode_unchecked(m)


def decode_consensus_head(data: bytes) -> tuple[Message, bytes | None]:
    """The message and, for a proposal, its block's bytes, *not yet decoded*.

    Decoding a block (every tx in it) is the expensive part of a proposal; the gossip
    validator first checks what is cheap (height, signer, proposer of the round,
    signature) and only then calls :func:`attach_block`, so a flood of proposals that
    are not the signer's turn costs no block decoding.
    """
    d = codec.decode(data, max_size=MAX_CONSENSUS_MSG)
    if not isinstance(d, dict):
        raise DecodeError("consensus message: expected a map")
    resend = d.pop("resend", 0)
    if type(resend) is not int or resend < 0:
        raise DecodeError("consensus message: resend must be a non-negative integer")
    raw = None
    if d.get("t") == "proposal":
        raw = d.pop("body", None)
        if not isinstance(raw, bytes):
            raise DecodeError("proposal without its block")
    return message_from_map(d), raw


def attach_block(message: Message, raw: bytes | None,
                 known: Callable[[bytes], Tx | None] | None = None) -> ConsensusMsg:
    """Decode a proposal's block (``raw`` from :func:`decode_consensus_head`) and bind it."""
    if not isinstance(message, Proposal):
        return ConsensusMsg(message, None)
    assert raw is not None
    block = decode_block(raw, known)
    if block.hash() != message.block_hash or block.height != message.height:
        raise ValidationError("proposal: block does not match the proposed hash and height")
    return ConsensusMsg(message, block)


def decode_consensus(data: bytes, known: Callable[[bytes], Tx | None] | None = None) -> ConsensusMsg:
    message, raw = decode_consensus_head(data)
    return attach_block(message, raw, known)


def encode_tx_batch(txs: list[bytes]) -> bytes:
    return codec.encode_unchecked({"txs": txs})


def decode_tx_batch(data: bytes) -> list[bytes]:
    d = codec.decode(data, max_size=MAX_TX_BATCH * 70_000)
    if not isinstance(d, dict) or set(d) != {"txs"} or not isinstance(d["txs"], list):
        raise DecodeError("tx batch: expected {txs: [...]}")
    if len(d["txs"]) > MAX_TX_BATCH or not all(isinstance(t, bytes) for t in d["txs"]):
        raise DecodeError("tx batch: at most 1024 byte strings")
    return list(d["txs"])
