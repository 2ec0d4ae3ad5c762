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


def _check(obj: object, depth: int, max_depth: int = MAX_DEPTH) -> None:
    if depth > max_depth:
        raise DecodeError(f"nesting deeper than {max_depth}")
    t = type(obj)
    if t is int:
        if not INT_MIN <= obj <= INT_MAX:  # type: ignore[operator]
            raise DecodeError("integer out of the 64-bit range")
    elif t is str:
        try:
            obj.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            raise DecodeError("text is not valid UTF-8 (lone surrogate)") from None
    elif t is bytes or t is bool or obj is None:
        return
    elif t is list:
        for item in obj:  # type: ignore[attr-defined]
            _check(item, depth + 1, max_depth)
    elif t is dict:
        for key, value in obj.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise DecodeError("map keys must be text strings")
            _check(key, depth + 1, max_depth)
            _check(value, depth + 1, max_depth)
    elif t is float:
        raise DecodeError("floats are not allowed")
    else:
        raise DecodeError(f"unsupported CBOR item ({t.__name__}); tags and simple values are not allowed")


def encode(obj: CBORValue) -> bytes:
    """Canonical encoding of ``obj``. Raises DecodeError if ``obj`` is outside the data model."""
    _check(obj, 0)
    return cbor2.dumps(obj, canonical=True)


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
    _check(obj, 0, max_depth)
    if cbor2.dumps(obj, canonical=True) != data:
        raise DecodeError("not the canonical encoding (RFC 8949 §4.2.1) or trailing bytes")
    return obj
