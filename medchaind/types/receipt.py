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
    #: :meth:`encode`'s bytes, kept on first use: the block's ``results_hash`` is cut out
    #: of them and the store writes them, one data-model walk and encoding per receipt
    _encoded: bytes = field(default=b"", init=False, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.code == OK

    def to_map(self) -> dict[str, Any]:
        # keys in canonical order (and events built in it by TxContext.emit): codec.encode
        # then skips cbor2's canonical sort; the bytes are the same
        return {"code": self.code, "events": list(self.events), "reason": self.reason}

    def encode(self) -> bytes:
        enc = self._encoded
        if not enc:
            enc = codec.encode(self.to_map())
            object.__setattr__(self, "_encoded", enc)  # a memo of immutable fields
        return enc

    def result_encoding(self) -> bytes:
        """``enc(result_map())``, cut out of :meth:`encode`'s bytes: the canonical map
        ``{code, events, reason}`` is its head, then its entries in key order (``code``,
        ``events``, ``reason``: shorter first, then bytewise), so dropping the last entry
        and writing the head of a map of two gives the canonical ``{code, events}``."""
        try:
            enc = self.encode()
        except DecodeError:  # e.g. a reason that is not UTF-8: the result may still encode
            return codec.encode(self.result_map())
        tail = _REASON_KEY + codec.encode_unchecked(self.reason)
        cut = len(enc) - len(tail)
        if enc[0] != 0xA3 or enc[cut:] != tail:  # not that shape: encode it on its own
            return codec.encode(self.result_map())
        return b"\xa2" + enc[1:cut]

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


#: the encoded key of a receipt's last entry
_REASON_KEY = b"\x66reason"


def results_hash(receipts: list[Receipt]) -> bytes:
    """``H(enc([{code, events}, ...]))`` in tx order (docs/protocol.md §7).

    The canonical encoding of an array is its head then its items' canonical encodings,
    so the items are the receipts' :meth:`~Receipt.result_encoding`, cut out of the
    encodings the store writes (replay, issue 14: one walk and encoding per receipt, not
    two). tests/unit/test_receipt.py holds it to the direct encoding."""
    items = [r.result_encoding() for r in receipts]
    return crypto.sha256(_array_head(len(items)) + b"".join(items))


def _array_head(n: int) -> bytes:
    """The shortest-form head of a CBOR array of ``n`` items (RFC 8949 §4.2.1)."""
    if n < 24:
        return bytes((0x80 + n,))
    if n < 1 << 8:
        return b"\x98" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\x99" + n.to_bytes(2, "big")
    if n < 1 << 32:
        return b"\x9a" + n.to_bytes(4, "big")
    return b"\x9b" + n.to_bytes(8, "big")
