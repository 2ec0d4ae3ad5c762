"""Declarative field schemas: typed tx bodies and query parameters in one small language.

A module declares each tx body and each query's parameters as a frozen dataclass whose
fields carry a *field type* in ``Annotated``::

    @body
    class Register:
        role: Annotated[str, Enum(ROLES)]
        enc_key: Annotated[bytes, Bytes(32)]
        label: Annotated[str | None, Text(128)] = None

    @params
    class GetParams:
        public_key: Annotated[bytes, Bytes(32)]

:func:`decode_body` turns the CBOR map of a tx body into an instance, once, before any
handler runs: it refuses missing and unexpected keys, checks every value's type and
bounds exactly (an ``int`` is never a ``bool``, text has no control characters), runs the
class's ``check()`` for rules that span fields, and raises :class:`FieldError` with a
message that names the field. A body field with a default is optional and its default
is ``None``: an absent key is the only encoding of "not given", so one typed body has
one CBOR encoding (docs/protocol.md §3). :func:`encode_body` is the inverse (what a
client signs).

Query parameters use the same field types from JSON (:func:`decode_json_params`):
bytes travel as ``0x``-hex there, and optional parameters may default to any value.
The node's JSON-RPC layer decodes every module query with that one function, so every
query has the same error shape (-32602, the parameter named).

Pure: no I/O, no clock; used by the state machine, the node and the clients alike.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = [
    "Bool", "Bytes", "Custom", "Enum", "Field", "FieldError", "Int", "ListOf", "Nullable", "OneOf", "Struct", "Text",
    "body", "decode_body", "decode_json_params", "decode_native_params", "encode_body", "fields_of",
    "params", "to_json",
]

T = TypeVar("T")


class FieldError(ValueError):
    """A value does not fit its field type; the message names the field."""


class Field(abc.ABC):
    """A field type: checks a value decoded from CBOR (``native``) or from JSON (``json``)."""

    @abc.abstractmethod
    def native(self, value: Any, name: str) -> Any:
        """The checked value of a field decoded from CBOR; FieldError naming ``name`` if it does not fit."""

    def json(self, value: Any, name: str) -> Any:
        return self.native(value, name)

    def to_json(self, value: Any) -> Any:
        return value

    @abc.abstractmethod
    def describe(self) -> str:
        """The field type in words, for docs and error messages."""


class Bytes(Field):
    """A byte string of exactly ``size`` bytes, or of ``min``..``max`` bytes."""

    def __init__(self, size: int | None = None, *, min: int = 0, max: int | None = None) -> None:
        if (size is None) == (max is None):
            raise TypeError("give Bytes a size or a max")
        self.size, self.min, self.max = size, min, max

    def native(self, value: Any, name: str) -> bytes:
        if not isinstance(value, bytes):
            raise FieldError(self._msg(name))
        if self.size is not None:
            if len(value) != self.size:
                raise FieldError(self._msg(name))
        elif not self.min <= len(value) <= (self.max or 0):
            raise FieldError(self._msg(name))
        return value

    def _msg(self, name: str) -> str:
        if self.size is not None:
            return f"{name} must be {self.size} bytes"
        if self.min == 0:
            return f"{name} must be at most {self.max} bytes"
        return f"{name} must be {self.min}..{self.max} bytes"

    def json(self, value: Any, name: str) -> bytes:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise FieldError(f"{name} must be a 0x-prefixed hex string")
        limit = self.size if self.size is not None else (self.max or 0)
        if len(value) > 2 + 2 * limit:
            raise FieldError(self._msg(name))
        try:
            raw = bytes.fromhex(value[2:])
        except ValueError:
            raise FieldError(f"{name} is not valid hex") from None
        return self.native(raw, name)

    def to_json(self, value: Any) -> Any:
        return "0x" + value.hex()

    def describe(self) -> str:
        if self.size is not None:
            return f"{self.size} bytes"
        return f"{self.min}..{self.max} bytes"


#: the characters :class:`Text` refuses (ord < 0x20)
_CONTROL = re.compile("[\x00-\x1f]")


class Text(Field):
    """Text of ``min``..``max`` characters without control characters (optionally a pattern).

    ``native`` (a subclass's too) is a pure function of the value that returns an accepted
    text unchanged: decoding remembers accepted texts (:func:`_filler`).
    """

    def __init__(self, max: int, *, min: int = 1, pattern: str | None = None, what: str | None = None) -> None:
        self.max, self.min = max, min
        self.pattern = re.compile(pattern) if pattern else None
        self.what = what

    def native(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not self.min <= len(value) <= self.max:
            if self.what:
                raise FieldError(f"{name} must be {self.what}")
            raise FieldError(f"{name} must be text of {self.min}..{self.max} characters")
        if _CONTROL.search(value) is not None:
            raise FieldError(f"{name} must not contain control characters")
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            raise FieldError(f"{name} must be {self.what or 'of the form ' + self.pattern.pattern}")
        return value

    def describe(self) -> str:
        return self.what or f"text, {self.min}..{self.max} characters"


class Int(Field):
    """An integer in ``lo``..``hi`` (never a boolean, never a float)."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def native(self, value: Any, name: str) -> int:
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise FieldError(f"{name} must be an integer in {self.lo}..{self.hi}")
        return value

    def describe(self) -> str:
        return f"integer {self.lo}..{self.hi}"


class Bool(Field):
    def native(self, value: Any, name: str) -> bool:
        if not isinstance(value, bool):
            raise FieldError(f"{name} must be a boolean")
        return value

    def describe(self) -> str:
        return "boolean"


class Enum(Field):
    """One of a fixed set of strings."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = tuple(values)
        self._set = frozenset(values)

    def native(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in self._set:
            raise FieldError(f"{name} must be one of {', '.join(self.values)}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(self.values)


class ListOf(Field):
    """A list of ``min``..``max`` items of one field type (a tuple once decoded)."""

    def __init__(self, item: Field, *, max: int, min: int = 0, unique: bool = False) -> None:
        self.item, self.min, self.max, self.unique = item, min, max, unique

    def _check(self, value: Any, name: str, one: Callable[[Any, str], Any]) -> tuple[Any, ...]:
        if not isinstance(value, list) or not self.min <= len(value) <= self.max:
            raise FieldError(f"{name} must be a list of {self.min}..{self.max} items")
        out = tuple([one(v, name) for v in value])
        if self.unique:
            try:
                distinct = len(set(out)) == len(out)
            except TypeError:  # unhashable items (structs): compare their encodings
                distinct = len({repr(v) for v in out}) == len(out)
            if not distinct:
                raise FieldError(f"{name} has duplicate items")
        return out

    def native(self, value: Any, name: str) -> tuple[Any, ...]:
        return self._check(value, name, self.item.native)

    def json(self, value: Any, name: str) -> tuple[Any, ...]:
        return self._check(value, name, self.item.json)

    def to_json(self, value: Any) -> Any:
        return [self.item.to_json(v) for v in value]

    def describe(self) -> str:
        return f"list of {self.min}..{self.max} ({self.item.describe()})"


class Struct(Field):
    """A nested map decoded into another ``@body`` class."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def native(self, value: Any, name: str) -> Any:
        return _decode(self.cls, value, name, json=False)

    def json(self, value: Any, name: str) -> Any:
        return _decode(self.cls, value, name, json=True)

    def to_json(self, value: Any) -> Any:
        return to_json(value)

    def describe(self) -> str:
        return "{" + ", ".join(f.name for f in fields_of(self.cls)) + "}"


class Nullable(Field):
    """A required key whose value may be null (e.g. a vote for no block)."""

    def __init__(self, inner: Field) -> None:
        self.inner = inner

    def native(self, value: Any, name: str) -> Any:
        return None if value is None else self.inner.native(value, name)

    def json(self, value: Any, name: str) -> Any:
        return None if value is None else self.inner.json(value, name)

    def to_json(self, value: Any) -> Any:
        return None if value is None else self.inner.to_json(value)

    def describe(self) -> str:
        return self.inner.describe() + " or null"


class OneOf(Field):
    """One of a fixed set of integers (never a boolean)."""

    def __init__(self, *values: int) -> None:
        self.values = frozenset(values)

    def native(self, value: Any, name: str) -> int:
        if type(value) is not int or value not in self.values:
            raise FieldError(f"{name} must be one of {', '.join(map(str, sorted(self.values)))}")
        return value

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, sorted(self.values)))


class Custom(Field):
    """A value checked by a function (returns the decoded value or raises FieldError)."""

    def __init__(
        self, check: Callable[[Any, str], Any], what: str, *, to_json: Callable[[Any], Any] | None = None,
        memo: bool = False,
    ) -> None:
        self._check, self.what, self._to_json = check, what, to_json
        #: ``check`` is a pure function of the value that returns a text it accepts
        #: unchanged: decoding may remember accepted texts (schema._filler)
        self.memo = memo

    def native(self, value: Any, name: str) -> Any:
        return self._check(value, name)

    def to_json(self, value: Any) -> Any:
        return value if self._to_json is None else self._to_json(value)

    def describe(self) -> str:
        return self.what


# ---------------------------------------------------------------------- compiled classes


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: Field
    required: bool
    default: Any


_SPECS: dict[type, tuple[FieldSpec, ...]] = {}
#: per class: the field names and the required ones (decoding checks a map against them)
_NAMES: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The compiled field list of a ``@body`` / ``@params`` class."""
    try:
        return _SPECS[cls]
    except KeyError:
        raise TypeError(f"{cls.__name__} is not a @body or @params class") from None


def _compile(cls: type, *, canonical: bool) -> tuple[FieldSpec, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        meta = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Field)]
        if len(meta) != 1:
            raise TypeError(f"{cls.__name__}.{f.name}: annotate with exactly one field type")
        has_default = f.default is not dataclasses.MISSING
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: no default factories (immutable values only)")
        if canonical and has_default and f.default is not None:
            raise TypeError(f"{cls.__name__}.{f.name}: an optional body field defaults to None (one encoding)")
        out.append(FieldSpec(f.name, meta[0], not has_default, f.default if has_default else None))
    return tuple(out)


def body(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass and a tx body type (optional fields default to None)."""
    dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
    _register(dc, _compile(dc, canonical=True))
    return dc


def params(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass and a query-parameter type."""
    dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
    _register(dc, _compile(dc, canonical=False))
    return dc


def _register(cls: type, specs: tuple[FieldSpec, ...]) -> None:
    if hasattr(cls, "__post_init__"):
        _BY_INIT.add(cls)
    _SPECS[cls] = specs
    _NAMES[cls] = (frozenset(s.name for s in specs), frozenset(s.name for s in specs if s.required))


#: (class, where, json) -> per field: its name, the method that checks it and its label in
#: error messages (``where.name``), made once: a body's nesting is fixed, so the set of
#: ``where`` values is bounded by the schemas (the per-field f-string and branch were a
#: tenth of decoding a claim)
#: Each step also carries the field's slot setter and its default: the instance is filled
#: through its slots' own descriptors (what the frozen dataclass's ``__init__`` ends in,
#: by ``object.__setattr__`` per field, which cost ~5x as much: a tenth of decoding a
#: claim) -- every field set exactly once, absent optional ones to their default, and no
#: class here has a ``__post_init__`` (:func:`_register` keeps those on ``__init__``).
_Step = tuple[str, Callable[[Any, str], Any], str, Callable[[Any, Any], None], Any]
_PLANS: dict[tuple[type, str | None, bool], tuple[_Step, ...]] = {}
#: classes whose instances are built by ``__init__`` (they have a ``__post_init__``)
_BY_INIT: set[type] = set()


def _slot(cls: type, name: str) -> Any:
    """The slot descriptor of field ``name`` (on ``cls`` or the base class that declares it)."""
    return next(k.__dict__[name] for k in cls.__mro__ if name in k.__dict__)


def _plan(cls: type, specs: tuple[FieldSpec, ...], where: str | None, json: bool) -> tuple[_Step, ...]:
    found = _PLANS.get((cls, where, json))
    if found is None:
        found = _PLANS[(cls, where, json)] = tuple(
            (s.name, s.type.json if json else s.type.native, f"{where}.{s.name}" if where else s.name,
             _slot(cls, s.name).__set__, s.default)
            for s in specs)
    return found


_ABSENT = object()
_new = object.__new__

#: a bounded accept-memo's size: past it the set starts again from empty
MEMO_MAX = 4096


def _fast_test(ft: Field, i: int, env: dict[str, Any]) -> str | None:
    """A Python expression over ``v`` that is true only if ``ft.native(v, label)`` would
    return ``v`` itself without raising (None: no such shortcut for this field type).

    Exact types only (``type(ft) is Bytes``, never a subclass such as supply's OidField,
    whose ``native`` checks more); the expression mirrors the first lines of the class's
    own ``native``. A value the shortcut does not pass goes to ``native`` itself, so every
    refusal, and its message, is the one ``native`` gives.
    """
    t = type(ft)
    if t is Bytes:
        assert isinstance(ft, Bytes)
        if ft.size is not None:
            return f"(type(v) is bytes and len(v) == {ft.size})"
        return f"(type(v) is bytes and {ft.min} <= len(v) <= {ft.max or 0})"
    if t is Int:
        assert isinstance(ft, Int)
        return f"(type(v) is int and {ft.lo} <= v <= {ft.hi})"
    if t is Enum:
        assert isinstance(ft, Enum)
        env[f"set_{i}"] = ft._set
        return f"(type(v) is str and v in set_{i})"
    if t is OneOf:
        assert isinstance(ft, OneOf)
        env[f"set_{i}"] = ft.values
        return f"(type(v) is int and v in set_{i})"
    if t is Bool:
        return "(type(v) is bool)"
    if t is Nullable:
        assert isinstance(ft, Nullable)
        inner = _fast_test(ft.inner, i, env)
        return None if inner is None else f"(v is None or {inner})"
    return None


def _remembering(check: Callable[[Any, str], Any], ok: set[str]) -> Callable[[Any, str], Any]:
    """``check`` that adds every text it accepts (and returns unchanged) to ``ok``."""
    def remember(v: Any, label: str) -> Any:
        out = check(v, label)
        if type(v) is str and out is v:
            if len(ok) >= MEMO_MAX:
                ok.clear()
            ok.add(v)
        return out
    return remember


#: (class, where) -> the function that fills an instance from a map that passed the key checks
_FILLERS: dict[tuple[type, str | None], Callable[[dict[str, Any]], Any]] = {}


def _filler(cls: type, where: str | None) -> Callable[[dict[str, Any]], Any]:
    """The fill step of :func:`_decode` (CBOR path, classes without ``__post_init__``),
    generated once per class and nesting label.

    Why generated: the plan's loop (a ``dict.get``, a call to the field's ``native`` and a
    tuple unpacking per field) was most of the cost of decoding a typed body, ~0.4 us a
    field and ~45 fields in a ``claims.submit``. The generated function does per field
    what that loop does, in the plan's order: required fields are present (the caller
    checked the keys), an absent optional one gets its default, a value goes through its
    field type's ``native`` unless the inline shortcut of :func:`_fast_test` shows
    ``native`` would return it unchanged, and the slot descriptor sets it. Text fields
    (and :class:`Custom` fields made with ``memo=True``) keep a bounded set of the values
    their ``native`` accepted, a pure function of the value, so a repeated procedure
    code, GTIN or NPI is one set lookup. Same instances, same errors: the tests compare
    it with the plan's loop on the ``__init__`` path, every field type at its bounds
    (tests/app/test_app_schema_fill.py).
    """
    key = (cls, where)
    found = _FILLERS.get(key)
    if found is not None:
        return found
    env: dict[str, Any] = {"_new": _new, "_ABSENT": _ABSENT, "cls": cls}
    lines = ["def fill(value):", "    get = value.get", "    obj = _new(cls)"]
    for i, (s, (name, check_field, label, set_slot, default)) in enumerate(
            zip(fields_of(cls), _plan(cls, fields_of(cls), where, False), strict=True)):
        env[f"name_{i}"], env[f"label_{i}"], env[f"set_{i}_slot"], env[f"default_{i}"] = name, label, set_slot, default
        ft = s.type
        test = _fast_test(ft, i, env)
        memo = isinstance(ft, Text) or (type(ft) is Custom and ft.memo)
        if test is None and memo:
            ok: set[str] = set()
            env[f"ok_{i}"] = ok
            test = f"(type(v) is str and v in ok_{i})"
            check_field = _remembering(check_field, ok)
        env[f"check_{i}"] = check_field
        check = f"v = check_{i}(v, label_{i})"
        if s.required:  # present: the caller checked the keys
            lines.append(f"    v = value[name_{i}]")
            lines.append(f"    if not {test}: {check}" if test else f"    {check}")
        else:
            lines.append(f"    v = get(name_{i}, _ABSENT)")
            lines.append(f"    if v is _ABSENT: v = default_{i}")
            lines.append(f"    elif not {test}: {check}" if test else f"    else: {check}")
        lines.append(f"    set_{i}_slot(obj, v)")
    lines.append("    return obj")
    exec("\n".join(lines), env)  # noqa: S102 -- source built above from the schema alone
    fill: Callable[[dict[str, Any]], Any] = env["fill"]
    _FILLERS[key] = fill
    return fill


def _decode(cls: type[T], value: Any, where: str | None, *, json: bool, what: str = "field") -> T:
    specs = fields_of(cls)
    if not isinstance(value, dict):
        raise FieldError(f"{where} must be a map" if where else "must be a map of named fields")
    names, required = _NAMES[cls]
    if not value.keys() >= required:
        missing = sorted(n for n in required if n not in value)
        raise FieldError(f"missing {what}(s) {missing}" + (f" in {where}" if where else ""))
    if not names.issuperset(value):
        extra = sorted(str(k) for k in value if k not in names)
        raise FieldError(f"unexpected {what}(s) {extra}" + (f" in {where}" if where else ""))
    if not json and cls not in _BY_INIT:
        filled: T = (_FILLERS.get((cls, where)) or _filler(cls, where))(value)
        check = getattr(filled, "check", None)
        if check is not None:
            check()
        return filled
    plan = _plan(cls, specs, where, json)
    if cls in _BY_INIT:
        kwargs = {}
        for name, check_field, label, _, _ in plan:
            v = value.get(name, _ABSENT)
            if v is not _ABSENT:
                kwargs[name] = check_field(v, label)
        obj = cls(**kwargs)
    else:
        obj = _new(cls)
        for name, check_field, label, set_slot, default in plan:
            v = value.get(name, _ABSENT)
            set_slot(obj, default if v is _ABSENT else check_field(v, label))
    check = getattr(obj, "check", None)
    if check is not None:
        check()
    return obj


def decode_body(cls: type[T], value: Any) -> T:
    """A tx body from its CBOR-decoded map; raises FieldError."""
    return _decode(cls, value, None, json=False)


def decode_native_params(cls: type[T], value: Any) -> T:
    """Query parameters given as Python values (bytes as bytes), e.g. by tests and the node."""
    return _decode(cls, {} if value is None else value, None, json=False, what="parameter")


def decode_json_params(cls: type[T], value: Any) -> T:
    """Query parameters from a JSON-RPC request (bytes as 0x-hex); raises FieldError."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise FieldError("params must be an object with named fields")
    return _decode(cls, value, None, json=True, what="parameter")


def encode_body(obj: Any) -> dict[str, Any]:
    """The CBOR map of a ``@body`` instance (None-valued optional fields left out)."""
    out: dict[str, Any] = {}
    for s in fields_of(type(obj)):
        v = getattr(obj, s.name)
        if v is None and not s.required:
            continue
        out[s.name] = _encode_value(s.type, v)
    return out


def _encode_value(ft: Field, v: Any) -> Any:
    if isinstance(ft, Nullable):
        return None if v is None else _encode_value(ft.inner, v)
    if isinstance(ft, Struct):
        return encode_body(v)
    if isinstance(ft, ListOf):
        return [_encode_value(ft.item, x) for x in v]
    return v


def to_json(obj: Any) -> dict[str, Any]:
    """A ``@body`` / ``@params`` instance as JSON (bytes as 0x-hex; None kept as null)."""
    return {s.name: (None if getattr(obj, s.name) is None else s.type.to_json(getattr(obj, s.name)))
            for s in fields_of(type(obj))}
