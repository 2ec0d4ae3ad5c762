"""Deterministic transaction receipts.

A receipt says what executing a committed tx did: ``code`` is ``"ok"`` or a stable
error name (``"bad_nonce"``, ``"unauthorized"``, ...), ``reason`` is a human-readable
explanation, ``events`` are small maps modules emit for subscribers and indexes. All
three are produced by the pure state machine, so every node computes the same bytes.

The block header's ``results_hash`` commits to each receipt's *result*, ``{code,
events}``, not to ``reason`` (protocol version 3, docs/protocol.md §7): the reason is
free text that another implementation could not reproduce byte for byte, as CometBFT
leaves ``log`` and ``info`` out of its results hash. The stored and served receipt keeps
all three fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import codec, crypto
from ..errors import DecodeError

OK = "ok"


@dataclass(frozen=True, slots=True)
class Receipt:
    code: str = OK
    reason: str = ""
    events: tuple[dict[str, Any], ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_map(self) -> dict[str, Any]:
        # keys in canonical order (and events built in it by TxContext.emit): codec.encode
        # then skips cbor2's canonical sort; the bytes are the same
        return {"code": self.code, "events": list(self.events), "reason": self.reason}

    def encode(self) -> bytes:
        return codec.encode(self.to_map())

    def result_map(self) -> dict[str, Any]:
        """What ``results_hash`` commits to: the code and the events, not the reason."""
        return {"code": self.code, "events": list(self.events)}


def decode_receipt(data: bytes) -> Receipt:
    m = codec.decode(data, max_size=1024 * 1024)
    if not isinstance(m, dict) or set(m) != {"code", "reason", "events"}:
        raise DecodeError("receipt: wrong fields")
    if not isinstance(m["code"], str) or not isinstance(m["reason"], str) or not isinstance(m["events"], list):
        raise DecodeError("receipt: wrong field types")
    if not all(isinstance(e, dict) for e in m["events"]):
        raise DecodeError("receipt: events must be maps")
    return Receipt(m["code"], m["reason"], tuple(m["events"]))


def results_hash(receipts: list[Receipt]) -> bytes:
    """``H(enc([{code, events}, ...]))`` in tx order (docs/protocol.md §7)."""
    return crypto.sha256(codec.encode([r.result_map() for r in receipts]))
