"""Canonical CBOR: the one encoding of everything that is hashed, signed or stored.

Encoding follows RFC 8949 §4.2.1 (core deterministic encoding): shortest integer and
length heads, definite lengths only, map keys sorted by the bytewise order of their
encodings. cbor2's ``canonical=True`` sorts keys length-first then bytewise, which is
the same order for our maps because every key is a text string (the head of a text
string encodes its length, so bytewise order of encoded keys *is* length-first order).

The data model is deliberately small: ``int`` (within [-2**63, 2**64-1]), ``bytes``,
``str``, ``bool``, ``None``, ``list`` and ``dict`` with ``str`` keys. No floats (not
deterministic across implementations), no tags (no dates, no bignums), no undefined.

:func:`decode` is the only way bytes from outside become objects. It refuses:
non-canonical bytes (checked by re-encoding and comparing), duplicate map keys,
indefinite lengths, floats, tags, trailing bytes, nesting deeper than ``MAX_DEPTH``
and input longer than the caller's ``max_size``. Each refusal raises
:class:`~medchaind.errors.DecodeError` with a message that says which rule was broken.
"""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import DecodeError

MAX_DEPTH = 16
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
#: Default cap on an object's encoded size; callers pass tighter limits per message kind.
DEFAULT_MAX_SIZE = 8 * 1024 * 1024

CBORValue = Any  # int | bytes | str | bool | None | list[CBORValue] | dict[str, CBORValue]


def _check(obj: object, depth: int, max_depth: int = MAX_DEPTH) -> bool:
    """Raise DecodeError unless ``obj`` is in the data model (see the module docstring).

    Returns whether every map in ``obj`` has text keys in ASCII that are already in
    canonical order (shorter first, then bytewise): then cbor2's plain encoding is the
    canonical one (in this data model canonical mode only sorts map keys), and
    :func:`encode` / :func:`decode` skip its slower canonical mode.

    The scalar items of a list or map are checked inline rather than by a recursive call
    (most items are scalars, and a call per item was most of the cost of encoding a
    state value); the checks and their order, hence every error, are those of the
    recursive definition: an item of a container at ``depth`` is at ``depth + 1``.
    """
    if depth > max_depth:
        raise DecodeError(f"nesting deeper than {max_depth}")
    t = type(obj)
    ordered = True
    if t is int:
        if not INT_MIN <= obj <= INT_MAX:  # type: ignore[operator]
            raise DecodeError("integer out of the 64-bit range")
    elif t is str:
        if not obj.isascii():  # type: ignore[attr-defined]
            _check_text(obj)  # type: ignore[arg-type]
    elif t is bytes or t is bool or obj is None:
        pass
    elif t is list:
        child = depth + 1
        for item in obj:  # type: ignore[attr-defined]
            if child > max_depth:
                raise DecodeError(f"nesting deeper than {max_depth}")
            ti = type(item)
            if ti is bytes or ti is bool or item is None:
                continue
            if ti is int:
                if not INT_MIN <= item <= INT_MAX:
                    raise DecodeError("integer out of the 64-bit range")
            elif ti is str:
                if not item.isascii():
                    _check_text(item)
            elif not _check(item, child, max_depth):
                ordered = False
    elif t is dict:
        child = depth + 1
        prev_len, prev = -1, ""
        for key, value in obj.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise DecodeError("map keys must be text strings")
            if child > max_depth:
                raise DecodeError(f"nesting deeper than {max_depth}")
            if key.isascii():
                n = len(key)
                if n < prev_len or (n == prev_len and key < prev):
                    ordered = False
                prev_len, prev = n, key
            else:
                _check_text(key)
                ordered = False
            tv = type(value)
            if tv is bytes or tv is bool or value is None:
                continue
            if tv is int:
                if not INT_MIN <= value <= INT_MAX:
                    raise DecodeError("integer out of the 64-bit range")
            elif tv is str:
                if not value.isascii():
                    _check_text(value)
            elif not _check(value, child, max_depth):
                ordered = False
    elif t is float:
        raise DecodeError("floats are not allowed")
    else:
        raise DecodeError(f"unsupported CBOR item ({t.__name__}); tags and simple values are not allowed")
    return ordered


def _check_text(text: str) -> None:
    # an ASCII string is always valid UTF-8; only others can hold a lone surrogate
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DecodeError("text is not valid UTF-8 (lone surrogate)") from None


def encode(obj: CBORValue) -> bytes:
    """Canonical encoding of ``obj``. Raises DecodeError if ``obj`` is outside the data model."""
    return cbor2.dumps(obj) if _check(obj, 0) else cbor2.dumps(obj, canonical=True)


def encode_unchecked(obj: CBORValue) -> bytes:
    """Canonical encoding for objects built by this package (already in the data model).

    Skips the type walk; use only on values constructed from validated fields.
    """
    return cbor2.dumps(obj, canonical=True)


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE, *, max_depth: int = MAX_DEPTH) -> CBORValue:
    """Decode exactly one canonical CBOR item from ``data`` or raise DecodeError.

    ``max_depth`` is counted from ``data``'s top-level item; containers that embed
    objects (a block embeds txs two levels down) pass the embedded limit plus that offset.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"encoded size {len(data)} exceeds the limit of {max_size} bytes")
    if not data:
        raise DecodeError("empty input")
    try:
        obj = cbor2.loads(
            data,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=max_depth + 1,
            semantic_decoders={},
        )
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise DecodeError(f"malformed CBOR: {exc}") from None
    ordered = _check(obj, 0, max_depth)
    if (cbor2.dumps(obj) if ordered else cbor2.dumps(obj, canonical=True)) != data:
        raise DecodeError("not the canonical encoding (RFC 8949 §4.2.1) or trailing bytes")
    return obj


def decode_stored(data: bytes) -> CBORValue:
    """Decode a state value that :func:`encode` wrote (a read of the committed state).

    Not for bytes from outside: it skips :func:`decode`'s data-model walk and canonical
    re-encoding, which were most of the cost of every state read (a trial's record is
    read by every enrolment). The invariant that makes this safe: every value in the
    state was produced by :func:`encode` in a handler or at genesis (so it is already
    canonical and in the data model), and a state that arrives from peers in a
    snapshot is accepted only when its trie root equals a verified ``app_hash``, i.e.
    holds exactly the values the chain committed (docs/protocol.md §23).
    """
    return cbor2.loads(data)
