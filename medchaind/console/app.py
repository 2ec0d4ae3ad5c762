"""The console's ASGI app: starlette routes, jinja2 pages, one server-sent-event stream.

Theory of operation
-------------------
Every page is rendered on the server from the node's read-only query layer
(:class:`~medchaind.console.source.NodeSource`): a GET runs a few in-process JSON-RPC
handlers (no socket, no LevelDB of its own) and fills a template. The app is read-only:
it registers GET routes only, and its source has no method that writes.

Live parts: ``/events`` is a ``text/event-stream`` fed by the ledger's commit listener.
Each connected browser gets a bounded channel; a browser that does not read loses
events (the page still works on reload) and never holds up the node. The script
(``static/console.js``) only adds rows and counters to pages that work without it.

Modules: a module package may have ``console.py`` with ``VIEWS`` (a
:class:`~medchaind.console.kit.ModuleConsole`), found through the registry by
convention; its views are served under ``/m/<module>/<view>`` and its panels are added to
the core pages they name. Nothing here names a module.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import trio
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import svg
from .auth import TokenGate
from .history import History, backfill
from .kit import (
    BadArgument,
    Badge,
    Fields,
    Graph,
    Hex,
    Link,
    ModuleConsole,
    Note,
    Page,
    QueryFailed,
    Table,
    Time,
    Timeline,
)
from .source import BlockSummary

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
#: events a slow browser may have waiting before it loses some
SSE_BUFFER = 64
#: a comment line every this many seconds keeps proxies and the browser's timer happy
SSE_KEEPALIVE_S = 15.0
RECENT_BLOCKS = 20
PAGE_BLOCKS = 50


class Source(Protocol):
    """What the console needs from a node (see :class:`~medchaind.console.source.NodeSource`)."""

    chain_id: str
    modules: list[str]

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any: ...

    def on_commit(self, listener: Any) -> None: ...

    def block_summary(self, height: int, *, receipts: bool = True) -> BlockSummary | None: ...

    def mempool(self) -> dict[str, Any]: ...

    def peers(self) -> dict[str, Any]: ...


def module_consoles(module_names: Sequence[str]) -> list[ModuleConsole]:
    """The ``VIEWS`` of each module's ``console.py``, in registry order (the registry
    knows the module classes; their packages hold the views)."""
    from ..modules import module_classes

    out = []
    for cls in module_classes():
        pkg = cls.__module__.rpartition(".")[0]
        try:
            mod = importlib.import_module(f"{pkg}.console")
        except ModuleNotFoundError as exc:
            if exc.name != f"{pkg}.console":
                raise
            continue
        views = getattr(mod, "VIEWS", None)
        if isinstance(views, ModuleConsole) and views.module in module_names:
            out.append(views)
    return out


# ------------------------------------------------------------------ template helpers


def fmt_time(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_age(ms: int | None, now_ms: int | None = None) -> str:
    if ms is None:
        return "—"
    d = ((now_ms if now_ms is not None else time.time_ns() // 1_000_000) - ms) / 1000
    if d < 0:
        return "in " + fmt_duration(-d)
    return fmt_duration(d) + " ago"


def fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


def short(h: Any, n: int = 10) -> str:
    s = str(h or "")
    if not s:
        return "—"
    return s if len(s) <= n + 5 else f"{s[:n]}…{s[-4:]}"


def render_value(v: Any) -> Markup:
    """A kit value as HTML (escaped)."""
    from markupsafe import escape

    if v is None:
        return Markup('<span class="muted">—</span>')
    if isinstance(v, Link):
        return Markup('<a href="{}">{}</a>').format(v.href, v.text)
    if isinstance(v, Hex):
        inner = Markup('<code title="{}">{}</code>').format(v.value, short(v.value))
        return Markup('<a href="{}">{}</a>').format(v.href, inner) if v.href else inner
    if isinstance(v, Time):
        return Markup('<time title="{}">{}</time>').format(v.ms if v.ms is not None else "", fmt_time(v.ms))
    if isinstance(v, Badge):
        return Markup('<span class="badge {}">{}</span>').format(v.tone, v.text)
    if isinstance(v, bool):
        return Markup("yes" if v else "no")
    if isinstance(v, list | tuple):
        return Markup(", ").join(render_value(x) for x in v) if v else Markup('<span class="muted">—</span>')
    if isinstance(v, str) and v.startswith("0x") and len(v) > 24:
        return Markup('<code title="{}">{}</code>').format(v, short(v))
    return escape(str(v))


def make_env() -> Environment:
    env = Environment(loader=ChoiceLoader([FileSystemLoader(HERE / "templates")]),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters.update(time=fmt_time, age=fmt_age, short=short, value=render_value, dumps=_pretty_json)
    env.globals.update(graph_svg=lambda g: Markup(svg.graph(g)))
    return env


def _pretty_json(v: Any) -> str:
    return json.dumps(v, indent=2, sort_keys=True)


# ------------------------------------------------------------------ the app


class Console:
    """Routes and state of one console (one per node)."""

    def __init__(self, source: Source, token: str, *, consoles: Sequence[ModuleConsole] | None = None) -> None:
        self.source = source
        self.token = token
        self.env = make_env()
        self.consoles = list(module_consoles(source.modules) if consoles is None else consoles)
        self.history = History()
        self._listeners: set[trio.MemorySendChannel[BlockSummary]] = set()
        self.dropped_events = 0
        source.on_commit(self._on_commit)
        routes = [
            Route("/", self.overview),
            Route("/blocks", self.blocks),
            Route("/block/{ref}", self.block),
            Route("/tx/{hash}", self.tx),
            Route("/consensus", self.consensus),
            Route("/authorities", self.authorities),
            Route("/peers", self.peers),
            Route("/mempool", self.mempool),
            Route("/sync", self.sync),
            Route("/search", self.search),
            Route("/events", self.events),
            Route("/m", self.modules_index),
            Route("/m/{module}", self.module_index),
            Route("/m/{module}/{view}", self.module_view),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.starlette = Starlette(routes=routes, exception_handlers={404: self._not_found, 500: self._error})
        self.app = TokenGate(self.starlette, token)
        self._backfilled = False

    # ---------------------------------------------------------------- plumbing

    def _on_commit(self, b: BlockSummary) -> None:
        self.history.add(b)
        for ch in list(self._listeners):
            try:
                ch.send_nowait(b)
            except trio.WouldBlock:
                self.dropped_events += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._listeners.discard(ch)

    async def backfill(self, head: int) -> None:
        """Fill the charts' hour from the store (once, in the background after a start)."""
        if not self._backfilled:
            self._backfilled = True
            await backfill(self.history, head, lambda h: self.source.block_summary(h, receipts=False),
                           time.time_ns() // 1_000_000)

    def page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        tpl = self.env.get_template(template)
        html = tpl.render(request=request, chain_id=self.source.chain_id, consoles=self.consoles,
                          now_ms=time.time_ns() // 1_000_000, **ctx)
        return HTMLResponse(html, status_code=status)

    async def q(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self.source.call(method, params)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self.page(request, "error.html", 404, title="Not found", message="There is no such page.")

    async def _error(self, request: Request, exc: Exception) -> Response:
        log.error("console page failed path=%s error=%s", request.url.path, type(exc).__name__)
        return self.page(request, "error.html", 500, title="Error", message="The page failed; see the node's log.")

    def _panels(self, page: str) -> list[tuple[ModuleConsole, Any]]:
        return [(c, p) for c in self.consoles for name, p in c.panels.items() if name == page]

    async def _panel_pages(self, page: str) -> list[Page]:
        out = []
        for c, load in self._panels(page):
            try:
                out.append(await load(self.q, {}))
            except QueryFailed as exc:
                out.append(Page(c.title, [Note(exc.message, "warn")]))
        return out

    # ---------------------------------------------------------------- operator views

    async def overview(self, request: Request) -> Response:
        info = await self.q("node_info")
        consensus = await self.q("consensus_status")
        mempool = await self.q("mempool_status")
        syncing = await self.q("node_syncing")
        recent = self.history.recent(RECENT_BLOCKS)
        if len(recent) < RECENT_BLOCKS and info["height"] > len(recent):
            recent = self._read_recent(info["height"], RECENT_BLOCKS)
        return self.page(request, "overview.html", title="Overview", info=info, consensus=consensus,
                         mempool=mempool, syncing=syncing, recent=recent, charts=self._charts(),
                         panels=await self._panel_pages("overview"))

    def _read_recent(self, head: int, n: int, before: int | None = None) -> list[BlockSummary]:
        top = head if before is None else min(head, before - 1)
        out = []
        for h in range(top, max(top - n, 0), -1):
            b = self.source.block_summary(h)
            if b is not None:
                out.append(b)
        return out

    def _charts(self) -> list[tuple[str, Markup]]:
        s = self.history.series(time.time_ns() // 1_000_000)
        return [
            ("Transactions per second", Markup(svg.bar_chart("tx/s per minute, last hour", s["tps"], unit=" tx/s"))),
            ("Block time", Markup(svg.bar_chart("mean block interval per minute (s)", s["block_time"], unit=" s",
                                                tone="ok"))),
            ("Round changes", Markup(svg.bar_chart("round changes per minute", s["rounds"], tone="warn"))),
        ]

    async def blocks(self, request: Request) -> Response:
        info = await self.q("node_info")
        before = _int_arg(request, "before")
        rows = self._read_recent(info["height"], PAGE_BLOCKS, before)
        older = rows[-1].height if rows and rows[-1].height > 1 else None
        return self.page(request, "blocks.html", title="Blocks", rows=rows, older=older, head=info["height"])

    async def block(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        params: dict[str, Any]
        if ref.isdigit():
            params = {"height": int(ref)}
        elif ref.startswith("0x") and len(ref) == 66:
            params = {"hash": ref}
        else:
            return self._bad(request, "a block is named by its height or its 0x hash")
        try:
            block = await self.q("chain_getBlock", {**params, "full": True})
        except QueryFailed as exc:
            return self._failed(request, exc)
        height = block["header"]["height"]
        receipts = {}
        for t in block["txs"]:
            try:
                st = await self.q("chain_getTx", {"hash": t["hash"]})
                receipts[t["hash"]] = st.get("receipt")
            except QueryFailed:
                receipts[t["hash"]] = None
        types: dict[str, int] = {}
        for t in block["txs"]:
            types[t["type"]] = types.get(t["type"], 0) + 1
        commit = block.get("commit") or {}
        head = (await self.q("node_info"))["height"]
        return self.page(request, "block.html", title=f"Block {height}", block=block, header=block["header"],
                         receipts=receipts, types=types, commit=commit, head=head)

    async def tx(self, request: Request) -> Response:
        h = request.path_params["hash"]
        if not (h.startswith("0x") and len(h) == 66):
            return self._bad(request, "a transaction is named by its 0x hash (32 bytes)")
        try:
            st = await self.q("chain_getTx", {"hash": h})
        except QueryFailed as exc:
            return self._failed(request, exc)
        tx = st["tx"]
        body = [(k, v) for k, v in sorted((tx.get("body") or {}).items())]
        return self.page(request, "tx.html", title="Transaction", st=st, tx=tx, body=body)

    async def consensus(self, request: Request) -> Response:
        c = await self.q("consensus_status")
        votes = {kind: {v["validator"]: v["block"] for v in c.get("votes", {}).get(kind, [])}
                 for kind in ("prevote", "precommit")}
        return self.page(request, "consensus.html", title="Consensus", c=c, votes=votes)

    async def authorities(self, request: Request) -> Response:
        c = await self.q("consensus_status")
        return self.page(request, "authorities.html", title="Authorities", c=c,
                         panels=await self._panel_pages("authorities"))

    async def peers(self, request: Request) -> Response:
        net = await self.q("node_network")
        return self.page(request, "peers.html", title="Peers", net=net, p=self.source.peers())

    async def mempool(self, request: Request) -> Response:
        m = await self.q("mempool_status")
        return self.page(request, "mempool.html", title="Mempool", m=m, x=self.source.mempool())

    async def sync(self, request: Request) -> Response:
        s = await self.q("node_syncing")
        total = max(int(s.get("target_height") or 0), 1)
        pct = min(100, math.floor(100 * int(s.get("height") or 0) / total))
        return self.page(request, "sync.html", title="Sync", s=s, pct=pct)

    async def search(self, request: Request) -> Response:
        q = (request.query_params.get("q") or "").strip()
        if q.isdigit():
            return RedirectResponse(f"/block/{int(q)}", 303)
        if q.startswith("0x") and len(q) == 66:
            try:
                await self.q("chain_getTx", {"hash": q})
                return RedirectResponse(f"/tx/{q}", 303)
            except QueryFailed:
                return RedirectResponse(f"/block/{q}", 303)
        return self._bad(request, "search for a block height, a block hash or a tx hash (0x…)")

    def _bad(self, request: Request, message: str) -> HTMLResponse:
        return self.page(request, "error.html", 400, title="Bad request", message=message)

    def _failed(self, request: Request, exc: QueryFailed) -> HTMLResponse:
        if exc.not_found:
            return self.page(request, "error.html", 404, title="Not found", message=exc.message)
        return self.page(request, "error.html", 400, title="Refused", message=exc.message)

    # ---------------------------------------------------------------- live

    async def events(self, request: Request) -> Response:
        send, recv = trio.open_memory_channel[BlockSummary](SSE_BUFFER)
        self._listeners.add(send)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    with trio.move_on_after(SSE_KEEPALIVE_S):
                        b = await recv.receive()
                        data = json.dumps(b.to_json(), separators=(",", ":"))
                        yield f"event: block\nid: {b.height}\ndata: {data}\n\n".encode()
                        continue
                    yield b": keepalive\n\n"
            finally:
                self._listeners.discard(send)
                send.close()
                recv.close()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    # ---------------------------------------------------------------- module views

    def _console(self, name: str) -> ModuleConsole | None:
        return next((c for c in self.consoles if c.module == name), None)

    async def modules_index(self, request: Request) -> Response:
        return self.page(request, "modules.html", title="Applications")

    async def module_index(self, request: Request) -> Response:
        c = self._console(request.path_params["module"])
        if c is None:
            return await self._not_found(request, Exception())
        return self.page(request, "module.html", title=c.title, c=c)

    async def module_view(self, request: Request) -> Response:
        c = self._console(request.path_params["module"])
        view = None if c is None else c.view(request.path_params["view"])
        if c is None or view is None:
            return await self._not_found(request, Exception())
        args = dict(request.query_params)
        missing = [a.label for a in view.args if a.required and not (args.get(a.name) or "").strip()]
        if missing:
            return self.page(request, "module.html", 400, title=c.title, c=c,
                             error=f"{view.title}: give {', '.join(missing)}")
        try:
            page = await view.load(self.q, args)
        except BadArgument as exc:
            return self.page(request, "module.html", 400, title=c.title, c=c, error=f"{view.title}: {exc}")
        except QueryFailed as exc:
            return self._failed(request, exc)
        return self.page(request, "view.html", title=page.title, c=c, view=view, p=page)


def _int_arg(request: Request, name: str) -> int | None:
    v = request.query_params.get(name)
    return int(v) if v is not None and v.isdigit() and len(v) < 19 else None


# kinds a template switches on (kept here so a typo in a module's section fails loudly)
SECTION_KINDS = {cls.__name__.lower(): cls for cls in (Fields, Table, Timeline, Graph, Note)}
