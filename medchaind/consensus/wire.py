"""Gossip and request/response encodings (``docs/protocol.md`` §12-13).

Topics (``<chain>`` is the chain id):

* ``/medchain/<chain>/consensus/1``: ``{"t": "vote", ...vote}`` or
  ``{"t": "proposal", ...proposal, "body": <block bytes>}``; a proposal carries the
  block it proposes, so a validator can judge valid(v) without another round trip.
  An optional ``"resend": n`` marks the n-th periodic re-broadcast of the same message.
* ``/medchain/<chain>/tx/1``: ``{"txs": [<tx bytes>, ...]}``, a batch of txs a node
  admitted (batched by count and time, DESIGN.md §5).
* ``/medchain/<chain>/block/1``: ``{"height": h, "hash": <32 bytes>}``, announced after
  each commit so a node that fell behind learns it and syncs.

Every decoder here is the one boundary for its message kind: it returns a validated
value or raises DecodeError/ValidationError, and the gossip validator rejects on error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import codec
from ..core import Message, Proposal
from ..errors import DecodeError, ValidationError
from ..types import Block, Commit, Tx, decode_block, decode_commit
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


def block_topic(chain: str) -> str:
    return "block/1"


SYNC_PROTOCOL = "sync/1"


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


def decode_consensus(data: bytes, known: Callable[[bytes], Tx | None] | None = None) -> ConsensusMsg:
    d = codec.decode(data, max_size=MAX_CONSENSUS_MSG)
    if not isinstance(d, dict):
        raise DecodeError("consensus message: expected a map")
    resend = d.pop("resend", 0)
    if type(resend) is not int or resend < 0:
        raise DecodeError("consensus message: resend must be a non-negative integer")
    block = None
    if d.get("t") == "proposal":
        raw = d.pop("body", None)
        if not isinstance(raw, bytes):
            raise DecodeError("proposal without its block")
        block = decode_block(raw, known)
    msg = message_from_map(d)
    if isinstance(msg, Proposal):
        assert block is not None
        if block.hash() != msg.block_hash or block.height != msg.height:
            raise ValidationError("proposal: block does not match the proposed hash and height")
    return ConsensusMsg(msg, block)


def encode_tx_batch(txs: list[bytes]) -> bytes:
    return codec.encode_unchecked({"txs": txs})


def decode_tx_batch(data: bytes) -> list[bytes]:
    d = codec.decode(data, max_size=MAX_TX_BATCH * 70_000)
    if not isinstance(d, dict) or set(d) != {"txs"} or not isinstance(d["txs"], list):
        raise DecodeError("tx batch: expected {txs: [...]}")
    if len(d["txs"]) > MAX_TX_BATCH or not all(isinstance(t, bytes) for t in d["txs"]):
        raise DecodeError("tx batch: at most 1024 byte strings")
    return list(d["txs"])


def encode_announce(height: int, block_hash: bytes) -> bytes:
    return codec.encode_unchecked({"height": height, "hash": block_hash})


def decode_announce(data: bytes) -> tuple[int, bytes]:
    d = codec.decode(data, max_size=128)
    if (not isinstance(d, dict) or set(d) != {"height", "hash"} or type(d["height"]) is not int
            or d["height"] < 1 or not isinstance(d["hash"], bytes) or len(d["hash"]) != 32):
        raise DecodeError("block announcement: expected {height, hash}")
    return d["height"], d["hash"]


# ---------------------------------------------------------------- sync protocol

MAX_SYNC_BLOCKS = 64
MAX_SYNC_BYTES = 48 * 1024 * 1024


def encode_sync_request(op: str, **fields: Any) -> bytes:
    return codec.encode({"op": op, **fields})


def decode_sync_request(data: bytes) -> dict[str, Any]:
    d = codec.decode(data, max_size=256)
    if not isinstance(d, dict) or d.get("op") not in ("status", "blocks"):
        raise DecodeError("sync request: op must be status or blocks")
    if d["op"] == "blocks":
        if set(d) != {"op", "from", "to"} or type(d["from"]) is not int or type(d["to"]) is not int:
            raise DecodeError("sync blocks request: expected {op, from, to}")
        if not 1 <= d["from"] <= d["to"]:
            raise DecodeError("sync blocks request: need 1 <= from <= to")
    elif set(d) != {"op"}:
        raise DecodeError("sync status request takes no fields")
    return d


def encode_status(height: int, head_hash: bytes) -> bytes:
    return codec.encode_unchecked({"height": height, "hash": head_hash})


def decode_status(data: bytes) -> tuple[int, bytes]:
    d = codec.decode(data, max_size=128)
    if (not isinstance(d, dict) or set(d) != {"height", "hash"} or type(d["height"]) is not int
            or d["height"] < 0 or not isinstance(d["hash"], bytes) or len(d["hash"]) != 32):
        raise DecodeError("sync status: expected {height, hash}")
    return d["height"], d["hash"]


def encode_blocks(items: list[tuple[bytes, bytes]]) -> bytes:
    return codec.encode_unchecked({"blocks": [[b, c] for b, c in items]})


def decode_blocks(data: bytes) -> list[tuple[Block, Commit]]:
    d = codec.decode(data, max_size=MAX_SYNC_BYTES, max_depth=codec.MAX_DEPTH)
    if not isinstance(d, dict) or set(d) != {"blocks"} or not isinstance(d["blocks"], list):
        raise DecodeError("sync blocks: expected {blocks: [[block, commit], ...]}")
    if len(d["blocks"]) > MAX_SYNC_BLOCKS:
        raise DecodeError(f"sync blocks: at most {MAX_SYNC_BLOCKS} per answer")
    out = []
    for item in d["blocks"]:
        if not isinstance(item, list) or len(item) != 2 or not all(isinstance(x, bytes) for x in item):
            raise DecodeError("sync blocks: each item is [block bytes, commit bytes]")
        out.append((decode_block(item[0]), decode_commit(item[1])))
    return out
