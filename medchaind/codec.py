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

Tags are refused *while* parsing, before the tagged item is built
(:data:`_NO_TAGS`), not by the data-model walk afterwards: cbor2 resolves value sharing
(tags 28/29) and string references (tags 25/256) itself, so a few hundred bytes of
shared references decoded to an object graph whose walk and re-encoding took seconds to
hours of CPU (24 lists of 24 references to one list, five levels deep: 368 bytes, 7.5 s).

:func:`split_bytes_array` reads the one shape that carries bulk bytes between nodes
and from clients, a canonical array of byte strings (a tx batch, ``tx_submitBatch``),
by its heads alone: no re-encoding of megabytes to prove them canonical.
"""

from __future__ import annotations

from functools import partial
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


def encode_built(obj: CBORValue) -> bytes:
    """Canonical encoding of a value this package's own code built, in canonical key
    order, from checked parts: cbor2's plain mode, without :func:`encode`'s data-model
    walk (the walk was about half of encoding a claim's record, ~15% of a ``claims.submit``).

    The caller guarantees what the walk would have checked: only data-model items
    (``list``, never ``tuple``; no floats; integers within 64 bits; text without lone
    surrogates) and the keys of every map already in canonical order (built so, e.g. with
    :func:`medchaind.app.module.canonical_order`, or decoded from canonical bytes and
    changed only by assigning keys it already had). Then cbor2's plain encoding *is* the
    canonical one (in this data model canonical mode only sorts map keys), so the bytes
    equal ``encode(obj)``. A value that breaks either rule is encoded without an error but
    not canonically, so anything else (values from outside, maps that gained a key) goes
    through :func:`encode`. ``tests/unit/test_codec_built.py`` checks the equality by
    hypothesis, and ``tests/conftest.py`` makes every call in the test suite check itself
    against :func:`encode`.
    """
    return cbor2.dumps(obj)


def encode_unchecked(obj: CBORValue) -> bytes:
    """Canonical encoding for objects built by this package (already in the data model).

    Skips the type walk; use only on values constructed from validated fields.
    """
    return cbor2.dumps(obj, canonical=True)


def _reject_tag(tag: int, decoder: object, value: object = None) -> None:
    raise DecodeError(f"tags are not allowed (tag {tag})")


class _RejectTags(dict[int, Any]):
    """cbor2 ``semantic_decoders`` that refuse every tag: cbor2 looks each tag it meets
    up here before its built-in decoders (value sharing, string references, dates,
    bignums, ...) and before ``tag_hook``, so no tag is ever resolved. Holds nothing."""

    def __missing__(self, tag: int) -> Any:
        return partial(_reject_tag, tag)


_NO_TAGS = _RejectTags()


def decode(data: bytes, max_size: int = DEFAULT_MAX_SIZE, *, max_depth: int = MAX_DEPTH) -> CBORValue:
    """Decode exactly one canonical CBOR item from ``data`` or raise DecodeError.

    ``max_depth`` is counted from ``data``'s top-level item; containers that embed
    objects (a block embeds txs two levels down) pass the embedded limit plus that offset.
    """
    data, obj = parse(data, max_size, max_depth=max_depth)
    require_canonical(obj, data, ordered=_check(obj, 0, max_depth))
    return obj


def parse(data: bytes, max_size: int = DEFAULT_MAX_SIZE, *, max_depth: int = MAX_DEPTH) -> tuple[bytes, CBORValue]:
    """The first half of :func:`decode`: ``data`` as ``bytes`` and the item cbor2 read
    from it under the size and depth limits, with no tag, indefinite length or
    duplicate key. The item is *not* yet known to be in the data model nor ``data`` to
    be its canonical encoding (nor free of trailing bytes): a decoder that checks its
    top level itself (``decode_tx``) walks the rest with :func:`check_model` and must
    end with :func:`require_canonical`. Everything else calls :func:`decode`."""
    if type(data) is not bytes:
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
            semantic_decoders=_NO_TAGS,
        )
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        if isinstance(exc.__cause__, DecodeError):  # a tag (_reject_tag), wrapped by cbor2
            raise exc.__cause__ from None
        raise DecodeError(f"malformed CBOR: {exc}") from None
    return data, obj


#: the data-model walk of :func:`decode` (``_check``) for decoders built on :func:`parse`:
#: ``check_model(item, depth)`` for an item at ``depth``, returns whether its maps are ordered
check_model = _check


def require_canonical(obj: CBORValue, data: bytes, *, ordered: bool) -> None:
    """The second half of :func:`decode`: raise unless ``data`` is the canonical encoding
    of ``obj``. ``ordered`` says every map in ``obj`` already has its keys in canonical
    order (:func:`check_model`'s answer for all of ``obj``); wrong, it lets unsorted
    maps through, so pass it only as that answer."""
    if (cbor2.dumps(obj) if ordered else cbor2.dumps(obj, canonical=True)) != data:
        raise DecodeError("not the canonical encoding (RFC 8949 §4.2.1) or trailing bytes")


def split_bytes_array(
    data: bytes, start: int = 0, *, max_items: int = 2**64 - 1, nulls: bool = False
) -> list[Any] | None:
    """The items of ``data[start:]`` if it is exactly the canonical encoding of an array
    of at most ``max_items`` byte strings (and, with ``nulls``, nulls); else None.

    Reads only the heads (RFC 8949 §4.2.1: shortest form, definite lengths) and slices
    the items out, so its cost grows with the number of items, not their bytes: the
    canonical encoding of such an array is its head and each item's head and bytes,
    nothing else, which is what this checks. None means "not that shape", not an
    error: a caller falls back to :func:`decode` for the precise one (and for shapes
    with other items). ``data`` is trusted to be ``bytes`` only by type.
    """
    if type(data) is not bytes:
        return None
    end = len(data)
    got = _read_head(data, start, end)
    if got is None or got[0] != 4 or got[1] > max_items:
        return None
    _, count, pos = got
    out: list[Any] = []
    append = out.append
    for _ in range(count):
        if pos + 3 <= end:  # the common heads inline (a call per item was most of the cost)
            ib = data[pos]
            if ib == 0x59:  # byte string, 2-byte length (256 .. 65535 bytes)
                n = data[pos + 1] << 8 | data[pos + 2]
                if n < 0x100:
                    return None
                pos += 3
            elif ib == 0x58:  # 1-byte length (24 .. 255 bytes)
                n = data[pos + 1]
                if n < 24:
                    return None
                pos += 2
            elif 0x40 <= ib <= 0x57:  # length in the initial byte
                n, pos = ib - 0x40, pos + 1
            elif ib == 0x5A or ib == 0x5B:
                got = _read_head(data, pos, end)
                if got is None:
                    return None
                _, n, pos = got
            elif ib == 0xF6 and nulls:
                append(None)
                pos += 1
                continue
            else:
                return None
        else:  # the last bytes: a short item, or truncated
            got = _read_head(data, pos, end)
            if got is None:
                return None
            major, n, pos = got
            if major == 7 and n == 22 and nulls:  # 0xf6, null
                append(None)
                continue
            if major != 2:
                return None
        nxt = pos + n
        if nxt > end:
            return None
        append(data[pos:nxt])
        pos = nxt
    return out if pos == end else None


#: bytes after the initial byte, and the least argument that needs them (shortest form)
_ARG_SIZES = {24: (1, 24), 25: (2, 1 << 8), 26: (4, 1 << 16), 27: (8, 1 << 32)}


def _read_head(data: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """``(major type, argument, position after the head)`` of the definite-length head
    in shortest form at ``data[pos]``, or None (truncated, indefinite, reserved or not
    the shortest form)."""
    if pos >= end:
        return None
    ib = data[pos]
    info = ib & 0x1F
    if info < 24:
        return ib >> 5, info, pos + 1
    size = _ARG_SIZES.get(info)
    if size is None or pos + 1 + size[0] > end:
        return None
    arg = int.from_bytes(data[pos + 1 : pos + 1 + size[0]], "big")
    if arg < size[1]:
        return None
    return ib >> 5, arg, pos + 1 + size[0]


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
