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
from functools import lru_cache
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
#: the same keys in canonical order (docs/protocol.md §1.2: shorter first, then bytewise)
_TX_ORDER = ("v", "sig", "body", "type", "chain", "nonce", "sender")
#: how a canonical tx encoding begins: a map of 7, "v": 1, then "sig": a 64-byte string
_SIGNED_HEAD = b"\xa7\x61v\x01\x63sig\x58\x40"
_SIGNED_HEAD_LEN = len(_SIGNED_HEAD)


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
        """``enc(tx without "sig")`` (docs/protocol.md §3), cut out of ``encoded``.

        In the canonical map the ``v`` entry comes first and ``sig`` second (keys sort
        shorter first), and dropping an entry changes only the map's head, so the
        payload is ``0xa6``, the ``v`` entry and everything after the ``sig`` entry: no
        re-encoding in canonical mode (which sorts every map again, ~4x the plain
        encoding; once per tx per node, by the verifier). ``encoded`` is the canonical
        encoding of these fields for every Tx built here (decode_tx, tx_from_map); a Tx
        constructed by hand without it is encoded as before.
        """
        e = self.encoded
        if e[:_SIGNED_HEAD_LEN] == _SIGNED_HEAD:
            return b"\xa6" + e[1:4] + e[_SIGNED_HEAD_LEN + crypto.SIGNATURE_SIZE :]
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


# ``Tx(...)`` goes through the frozen dataclass's ``__init__``: a keyword call and an
# ``object.__setattr__`` per field, about half of what building a decoded tx cost. The
# slots' own descriptors fill a bare instance directly (what ``object.__setattr__``
# ends in, minus the lookups); the instance is as frozen as any other (assignment still
# raises). tests/unit/test_decode_fastpaths.py checks that this sets every field.
_new = object.__new__
_set_chain, _set_type, _set_sender, _set_nonce, _set_body, _set_sig, _set_v, _set_encoded, _set_hash = (
    Tx.__dict__[name].__set__ for name in ("chain", "type", "sender", "nonce", "body", "sig", "v", "encoded", "hash")
)


def _finish(m: dict[str, Any], encoded: bytes, tx_hash: bytes | None = None) -> Tx:
    """The Tx of a validated map ``m`` whose canonical encoding is ``encoded`` (and
    whose SHA-256 is ``tx_hash`` when the caller already computed it)."""
    tx = _new(Tx)
    _set_chain(tx, m["chain"])
    _set_type(tx, m["type"])
    _set_sender(tx, m["sender"])
    _set_nonce(tx, m["nonce"])
    _set_body(tx, m["body"])
    _set_sig(tx, m["sig"])
    _set_v(tx, m["v"])
    _set_encoded(tx, encoded)
    _set_hash(tx, crypto.sha256(encoded) if tx_hash is None else tx_hash)
    return tx


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
    if m.keys() != _TX_KEYS:
        missing = sorted(_TX_KEYS - set(m))
        extra = sorted(set(m) - _TX_KEYS)
        raise ValidationError(f"tx: wrong fields (missing {missing}, unexpected {extra})")
    v = m["v"]
    if type(v) is not int or v != TX_VERSION:
        raise ValidationError(f"tx: unsupported version {v!r} (expected {TX_VERSION})")
    chain = m["chain"]
    if not isinstance(chain, str) or not _is_chain_id(chain):
        raise ValidationError("tx: chain id must match [a-z0-9][a-z0-9-]{0,63}")
    type_ = m["type"]
    if not isinstance(type_, str) or not _is_tx_type(type_):
        raise ValidationError("tx: type must look like 'module.action' (lowercase)")
    sender = m["sender"]
    if not isinstance(sender, bytes) or len(sender) != crypto.PUBLIC_KEY_SIZE:
        raise ValidationError("tx: sender must be a 32-byte Ed25519 public key")
    nonce = m["nonce"]
    if type(nonce) is not int or not 0 <= nonce <= MAX_NONCE:
        raise ValidationError("tx: nonce must be an unsigned 63-bit integer")
    if not isinstance(m["body"], dict):
        raise ValidationError("tx: body must be a map")
    sig = m["sig"]
    if not isinstance(sig, bytes) or len(sig) != crypto.SIGNATURE_SIZE:
        raise ValidationError("tx: sig must be 64 bytes")


# A network carries one chain id and a few dozen tx types: remember which strings match
# (bounded memo of a pure function; a regex match cost more than the cache lookup).
@lru_cache(maxsize=64)
def _is_chain_id(s: str) -> bool:
    return CHAIN_ID_RE.fullmatch(s) is not None


@lru_cache(maxsize=256)
def _is_tx_type(s: str) -> bool:
    return TX_TYPE_RE.fullmatch(s) is not None


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


def decode_tx(data: bytes, *, tx_hash: bytes | None = None) -> Tx:
    """The one entry point for tx bytes from outside: canonical, well-formed, bounded.

    ``tx_hash``: ``sha256(data)``, when the caller computed it to look the tx up (a
    block's or a compact proposal's txs), so it is not computed twice.

    Accepts and refuses exactly as ``codec.decode`` followed by :func:`validate_tx_map`
    (tests/unit/test_decode_fastpaths.py holds that reference): when the top level is a
    map with the seven keys in canonical order and passes the field rules, those rules
    have checked it against the data model too, so only the body is walked before the
    canonical comparison. Any other input takes the general path, whose errors (and
    their order) are the reference's.
    """
    raw, m = codec.parse(data, max_size=MAX_TX_BYTES)
    if type(m) is dict and tuple(m) == _TX_ORDER:
        try:
            validate_tx_map(m)
        except ValidationError:
            pass  # the general path below says what is wrong, canonical form first
        else:
            codec.require_canonical(m, raw, ordered=codec.check_model(m["body"], 1))
            return _finish_decoded(m, raw, tx_hash)
    m = codec.decode(raw, max_size=MAX_TX_BYTES)
    try:
        validate_tx_map(m)
    except ValidationError as exc:
        raise DecodeError(str(exc)) from None
    return _finish_decoded(m, raw, tx_hash)


def _finish_decoded(m: dict[str, Any], raw: bytes, tx_hash: bytes | None = None) -> Tx:
    # ``raw`` is canonical, so the body's encoding is a part of it: only a tx longer
    # than the body limit can hold a body over it (replay decodes every tx: skip the
    # re-encoding for all others)
    if len(raw) > MAX_BODY_BYTES and len(codec.encode_unchecked(m["body"])) > MAX_BODY_BYTES:
        raise DecodeError(f"tx: body exceeds {MAX_BODY_BYTES} bytes")
    return _finish(m, raw, tx_hash)


def to_jsonable(obj: Any) -> Any:
    """CBOR data model -> JSON: bytes become 0x-hex strings (IPC convention)."""
    if isinstance(obj, bytes):
        return "0x" + obj.hex()
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    return obj
