"""What a module's console views are made of (the ``console views`` layer).

A module contributes pages to the web console with an optional ``console.py`` beside its
``machine.py`` (found by convention through the registry, as ``cli.py`` is), holding
``VIEWS``: a :class:`ModuleConsole`. Its views are async functions that get a
:data:`Query` (the node's own query layer, the one the IPC server serves: JSON params in,
JSON answers out) and the request's arguments, and return a :class:`Page` of typed
sections. The console renders every section with its own templates and escapes every
value, so a module writes no HTML, and the node and the console name no module.

Nothing here imports the node: a view sees the chain only through ``Query``, and only
what any IPC caller with the module's namespace sees (commitments, pseudonyms, codes,
states). The console holds no patient key, so no view can show plaintext PHI.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: ``await query("supply_unit", {"oid": "0x…"})``: a JSON-RPC method of the node's query
#: layer; raises :class:`QueryFailed` (not found, bad params).
Query = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class QueryFailed(Exception):
    """A query the node refused: ``code`` is the JSON-RPC error code (-32020 not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.code == -32020


class BadArgument(ValueError):
    """An argument of a view's URL or form is malformed: the console answers 400 with it."""


# ------------------------------------------------------------------ values inside sections


@dataclass(frozen=True, slots=True)
class Link:
    """Text linking to another console page (``href`` relative to the console root, "/...")."""

    text: str
    href: str


@dataclass(frozen=True, slots=True)
class Hex:
    """A hash or key: shown shortened, in full on hover; optionally a link."""

    value: str
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Time:
    """A time in ms since the epoch (block time or an event's own time), shown in UTC."""

    ms: int | None


@dataclass(frozen=True, slots=True)
class Badge:
    """A short status word, coloured by ``tone``: ok, warn, bad or info."""

    text: str
    tone: str = "info"


Value = str | int | bool | None | Link | Hex | Time | Badge | Sequence["Value"]


# ------------------------------------------------------------------ sections


@dataclass(frozen=True, slots=True)
class Fields:
    """Label / value pairs."""

    title: str
    items: Sequence[tuple[str, Value]]
    kind: str = "fields"


@dataclass(frozen=True, slots=True)
class Row:
    cells: Sequence[Value]
    #: highlight the row: ok, warn, bad (e.g. an outcome that was switched)
    tone: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Row]
    empty: str = "nothing yet"
    kind: str = "table"


@dataclass(frozen=True, slots=True)
class Entry:
    """One point of a timeline: when, what, detail, and a tone for the marker."""

    time_ms: int | None
    label: str
    detail: Sequence[tuple[str, Value]] = ()
    height: int | None = None
    tone: str = "info"


@dataclass(frozen=True, slots=True)
class Timeline:
    title: str
    entries: Sequence[Entry]
    empty: str = "no events"
    kind: str = "timeline"


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    label: str
    sub: str = ""
    tone: str = "info"
    href: str | None = None


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    label: str = ""


@dataclass(frozen=True, slots=True)
class Graph:
    """Nodes and directed edges, drawn as an SVG: ``layout="tree"`` (each node under its
    parent, for a container tree) or ``"chain"`` (left to right in order, for custody)."""

    title: str
    nodes: Sequence[Node]
    edges: Sequence[Edge]
    layout: str = "chain"
    empty: str = "nothing to draw"
    kind: str = "graph"


@dataclass(frozen=True, slots=True)
class Note:
    text: str
    tone: str = "info"
    kind: str = "note"


Section = Fields | Table | Timeline | Graph | Note


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    sections: Sequence[Section]
    subtitle: str = ""


# ------------------------------------------------------------------ declarations


@dataclass(frozen=True, slots=True)
class Arg:
    """A named argument of a view, asked for by its search form."""

    name: str
    label: str
    placeholder: str = ""
    required: bool = True


View = Callable[[Query, Mapping[str, str]], Awaitable[Page]]


@dataclass(frozen=True, slots=True)
class ConsoleView:
    """A page of a module at ``/m/<module>/<name>?arg=…``; ``args`` make its search form
    on the module's index page (a view without args is listed as a link)."""

    name: str
    title: str
    load: View
    args: Sequence[Arg] = ()
    doc: str = ""


@dataclass(frozen=True, slots=True)
class ModuleConsole:
    module: str
    title: str
    views: Sequence[ConsoleView] = field(default_factory=tuple)
    doc: str = ""
    #: sections this module adds to a core page: ``{"authorities": view, "overview": view}``
    #: (each a view called without arguments; its page's sections are appended)
    panels: Mapping[str, View] = field(default_factory=dict)

    def view(self, name: str) -> ConsoleView | None:
        return next((v for v in self.views if v.name == name), None)


# ------------------------------------------------------------------ helpers for views

_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


def hex_arg(args: Mapping[str, str], name: str, size: int | None = 32) -> str:
    """``args[name]`` as 0x-hex of ``size`` bytes (the 0x is optional in a form)."""
    v = (args.get(name) or "").strip()
    if v and not v.startswith("0x"):
        v = "0x" + v
    if not _HEX.fullmatch(v) or (size is not None and len(v) != 2 + 2 * size):
        what = f"{size} bytes of hex" if size else "hex"
        raise BadArgument(f"{name} must be {what} (0x…)")
    return v.lower()


def text_arg(args: Mapping[str, str], name: str, max_len: int = 200) -> str:
    v = (args.get(name) or "").strip()
    if not v or len(v) > max_len:
        raise BadArgument(f"{name} must be 1..{max_len} characters")
    return v


def short(h: str | None, n: int = 10) -> str:
    if not h:
        return "—"
    return h if len(h) <= n + 4 else f"{h[:n]}…{h[-4:]}"


def party(p: Mapping[str, Any] | None) -> Value:
    """A party ``{"key", "gln", "role"}`` as the console shows it."""
    if not p:
        return None
    label = p.get("gln") or short(p.get("key"))
    role = p.get("role")
    return f"{label} ({role})" if role else str(label)


def flatten(value: Any) -> Value:
    """A JSON value as a cell: hex strings become :class:`Hex`, lists are joined."""
    if isinstance(value, str) and _HEX.fullmatch(value) and len(value) >= 34:
        return Hex(value)
    if isinstance(value, list):
        return [flatten(v) for v in value]
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value  # type: ignore[no-any-return]
