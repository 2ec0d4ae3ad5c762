"""Block announcements and the sync protocol (``docs/protocol.md`` §12-13).

* ``/medchain/<chain>/block/1``: ``{"height": h, "hash": <32 bytes>}``, announced after
  each commit so a node that fell behind learns it and syncs.
* request/response ``/medchain/<chain>/sync/1``: ``{"op": "status"}`` -> ``{"height",
  "hash"}``; ``{"op": "blocks", "from", "to"}`` -> ``{"blocks": [[block, commit], ...]}``.

They live here, below ``consensus/`` (DESIGN.md §2), because sync serves and decodes
them; the consensus engine only publishes announcements, and ``consensus/wire.py``
re-exports these names beside the other gossip encodings. Every decoder is the one
boundary for its message kind: it returns a validated value or raises DecodeError.
"""

from __future__ import annotations

from typing import Any

from .. import codec
from ..errors import DecodeError
from ..types import Block, Commit, decode_block, decode_commit


def block_topic(chain: str) -> str:
    return "block/1"


SYNC_PROTOCOL = "sync/1"


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


def encode_status(height: int, head_hash: bytes, base: int = 1) -> bytes:
    """``base`` (the lowest block the server holds, §13.4) is sent only when above 1, so
    a node that holds every block answers exactly as before."""
    if base > 1:
        return codec.encode_unchecked({"height": height, "hash": head_hash, "base": base})
    return codec.encode_unchecked({"height": height, "hash": head_hash})


def decode_status_base(data: bytes) -> tuple[int, bytes, int]:
    """``(height, head hash, base)``; base 1 when the answer has none."""
    d = codec.decode(data, max_size=128)
    if (not isinstance(d, dict) or set(d) - {"base"} != {"height", "hash"} or type(d["height"]) is not int
            or d["height"] < 0 or not isinstance(d["hash"], bytes) or len(d["hash"]) != 32):
        raise DecodeError("sync status: expected {height, hash} (and base)")
    base = d.get("base", 1)
    if "base" in d and (type(base) is not int or not 2 <= base <= d["height"]):
        raise DecodeError("sync status: base must be an integer in 2..height")
    return d["height"], d["hash"], base


def decode_status(data: bytes) -> tuple[int, bytes]:
    height, head, _ = decode_status_base(data)
    return height, head


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
