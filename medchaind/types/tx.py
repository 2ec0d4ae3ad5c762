"""Transactions: the only way state changes.

Wire form (canonical CBOR map, ``docs/protocol.md §2``)::

    {"v": 1, "chain": str, "type": "<module>.<action>", "sender": bytes32,
     "nonce": uint, "body": map, "sig": bytes64}

``sig`` is the sender's Ed25519 signature, domain ``medchain/tx/v1`` and the chain id,
over the canonical encoding of the map without ``sig``. The tx hash is SHA-256 of the
full encoding. ``nonce`` is the sender's count of previously committed txs, so a tx
can be committed at most once and in order. Decoding checks shape and sizes only;
:meth:`Tx.verify_signature` is separate because it is the expensive part and is
cached by hash between mempool and block execution (DESIGN.md §9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .. import codec, crypto
from ..errors import DecodeError, ValidationError

TX_VERSION = 1
MAX_TX_BYTES = 64 * 1024
MAX_BODY_BYTES = 60 * 1024
MAX_NONCE = 2**63 - 1
TX_TYPE_RE = re.compile(r"^[a-z][a-z_]{0,31}\.[a-z][a-z_]{0,31}$")
CHAIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_TX_KEYS = frozenset({"v", "chain", "type", "sender", "nonce", "body", "sig"})


@dataclass(frozen=True, slots=True, eq=False)
class Tx:
    chain: str
    type: str
    sender: bytes
    nonce: int
    body: dict[str, Any]
    sig: bytes
    v: int = TX_VERSION
    #: canonical encoding and its SHA-256, fixed at construction
    encoded: bytes = field(default=b"", repr=False)
    hash: bytes = field(default=b"", repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tx) and other.encoded == self.encoded

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def module(self) -> str:
        return self.type.split(".", 1)[0]

    def unsigned_map(self) -> dict[str, Any]:
        return _unsigned(self.v, self.chain, self.type, self.sender, self.nonce, self.body)

    def to_map(self) -> dict[str, Any]:
        m = self.unsigned_map()
        m["sig"] = self.sig
        return m

    def signing_payload(self) -> bytes:
        return codec.encode_unchecked(self.unsigned_map())

    def verify_signature(self) -> None:
        """Raise SignatureError unless ``sig`` is the sender's signature for this chain."""
        crypto.require_valid(self.sender, self.sig, crypto.DOMAIN_TX, self.chain, self.signing_payload())

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": "0x" + self.hash.hex(),
            "chain": self.chain,
            "type": self.type,
            "sender": "0x" + self.sender.hex(),
            "nonce": self.nonce,
            "body": to_jsonable(self.body),
            "sig": "0x" + self.sig.hex(),
            "v": self.v,
            "raw": "0x" + self.encoded.hex(),
        }


def _unsigned(v: int, chain: str, type_: str, sender: bytes, nonce: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"v": v, "chain": chain, "type": type_, "sender": sender, "nonce": nonce, "body": body}


def _finish(m: dict[str, Any], encoded: bytes) -> Tx:
    return Tx(
        chain=m["chain"], type=m["type"], sender=m["sender"], nonce=m["nonce"], body=m["body"],
        sig=m["sig"], v=m["v"], encoded=encoded, hash=crypto.sha256(encoded),
    )


def sign_tx(key: crypto.SigningKey, chain: str, type_: str, nonce: int, body: dict[str, Any]) -> Tx:
    """Build and sign a transaction; the result passes :func:`tx_from_map`'s checks."""
    m = _unsigned(TX_VERSION, chain, type_, key.public_key, nonce, body)
    unsigned = codec.encode(m)
    m["sig"] = key.sign(crypto.DOMAIN_TX, chain, unsigned)
    tx = tx_from_map(m)
    return tx


def validate_tx_map(m: Any) -> None:
    """Stateless shape and size checks of a decoded tx map (CometBFT's ValidateBasic)."""
    if not isinstance(m, dict):
        raise ValidationError("tx: expected a map")
    if set(m) != _TX_KEYS:
        missing = sorted(_TX_KEYS - set(m))
        extra = sorted(set(m) - _TX_KEYS)
        raise ValidationError(f"tx: wrong fields (missing {missing}, unexpected {extra})")
    if m["v"] != TX_VERSION or type(m["v"]) is not int:
        raise ValidationError(f"tx: unsupported version {m['v']!r} (expected {TX_VERSION})")
    if not isinstance(m["chain"], str) or not CHAIN_ID_RE.fullmatch(m["chain"]):
        raise ValidationError("tx: chain id must match [a-z0-9][a-z0-9-]{0,63}")
    if not isinstance(m["type"], str) or not TX_TYPE_RE.fullmatch(m["type"]):
        raise ValidationError("tx: type must look like 'module.action' (lowercase)")
    if not isinstance(m["sender"], bytes) or len(m["sender"]) != crypto.PUBLIC_KEY_SIZE:
        raise ValidationError("tx: sender must be a 32-byte Ed25519 public key")
    if type(m["nonce"]) is not int or not 0 <= m["nonce"] <= MAX_NONCE:
        raise ValidationError("tx: nonce must be an unsigned 63-bit integer")
    if not isinstance(m["body"], dict):
        raise ValidationError("tx: body must be a map")
    if not isinstance(m["sig"], bytes) or len(m["sig"]) != crypto.SIGNATURE_SIZE:
        raise ValidationError("tx: sig must be 64 bytes")


def tx_from_map(m: Any, *, checked: bool = False) -> Tx:
    """A Tx from a decoded map; ``checked`` means ``m`` already passed the codec's
    data-model check (it came out of :func:`codec.decode`), so re-encoding skips it."""
    validate_tx_map(m)
    encoded = codec.encode_unchecked(m) if checked else codec.encode(m)
    if len(encoded) > MAX_TX_BYTES:
        raise ValidationError(f"tx: encoded size {len(encoded)} exceeds {MAX_TX_BYTES} bytes")
    if len(codec.encode_unchecked(m["body"])) > MAX_BODY_BYTES:
        raise ValidationError(f"tx: body exceeds {MAX_BODY_BYTES} bytes")
    return _finish(m, encoded)


def decode_tx(data: bytes) -> Tx:
    """The one entry point for tx bytes from outside: canonical, well-formed, bounded."""
    m = codec.decode(data, max_size=MAX_TX_BYTES)
    try:
        validate_tx_map(m)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None
    # ``data`` is canonical, so the body's encoding is a part of it: only a tx longer
    # than the body limit can hold a body over it (replay decodes every tx: skip the
    # re-encoding for all others)
    if len(data) > MAX_BODY_BYTES and len(codec.encode_unchecked(m["body"])) > MAX_BODY_BYTES:
        raise DecodeError(f"tx: body exceeds {MAX_BODY_BYTES} bytes")
    return _finish(m, bytes(data))


def to_jsonable(obj: Any) -> Any:
    """CBOR data model -> JSON: bytes become 0x-hex strings (IPC convention)."""
    if isinstance(obj, bytes):
        return "0x" + obj.hex()
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj
