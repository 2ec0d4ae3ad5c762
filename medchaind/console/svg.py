"""Server-rendered SVG: the operator charts and the module graphs (no JavaScript).

Every string that reaches the SVG goes through :func:`esc`; sizes are integers, so a
chart renders the same bytes for the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .kit import Graph

TONES = {"ok": "#2e7d32", "warn": "#b26a00", "bad": "#c62828", "info": "#1565c0"}


def esc(s: object) -> str:
    return escape(str(s), quote=True)


def bar_chart(title: str, values: Sequence[float], *, unit: str = "", width: int = 380, height: int = 120,
              labels: tuple[str, str] = ("-60 min", "now"), tone: str = "info") -> str:
    """Bars for ``values`` (oldest first), scaled to the largest; the max is labelled."""
    top = max(values, default=0.0) or 1.0
    n = max(len(values), 1)
    plot_h = height - 30
    bw = (width - 50) / n
    bars = []
    for i, v in enumerate(values):
        h = int(round(plot_h * v / top))
        if h <= 0:
            continue
        x = 45 + int(i * bw)
        bars.append(f'<rect x="{x}" y="{10 + plot_h - h}" width="{max(int(bw) - 1, 1)}" height="{h}">'
                    f"<title>{v:.3g}{esc(unit)}</title></rect>")
    peak = max(values, default=0.0)
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{esc(title)}">'
        f"<title>{esc(title)}</title>"
        f'<line x1="44" y1="{10 + plot_h}" x2="{width - 4}" y2="{10 + plot_h}" class="axis"/>'
        f'<text x="40" y="18" text-anchor="end" class="tick">{peak:.3g}</text>'
        f'<text x="40" y="{10 + plot_h}" text-anchor="end" class="tick">0</text>'
        f'<g fill="{TONES.get(tone, TONES["info"])}">{"".join(bars)}</g>'
        f'<text x="45" y="{height - 4}" class="tick">{esc(labels[0])}</text>'
        f'<text x="{width - 4}" y="{height - 4}" text-anchor="end" class="tick">{esc(labels[1])}</text>'
        "</svg>"
    )


def _box(x: int, y: int, w: int, label: str, sub: str, tone: str, href: str | None) -> str:
    color = TONES.get(tone, TONES["info"])
    inner = (f'<rect x="{x}" y="{y}" width="{w}" height="44" rx="6" fill="#fff" stroke="{color}" '
             f'stroke-width="2"/>'
             f'<text x="{x + w // 2}" y="{y + 18}" text-anchor="middle" class="gl">{esc(label[:28])}</text>'
             f'<text x="{x + w // 2}" y="{y + 35}" text-anchor="middle" class="gs">{esc(sub[:34])}</text>')
    if href:
        return f'<a href="{esc(href)}">{inner}</a>'
    return inner


def graph(g: Graph) -> str:
    """A module's :class:`~medchaind.console.kit.Graph` as SVG (chain or tree layout)."""
    if not g.nodes:
        return ""
    w, gap_x, gap_y = 180, 60, 30
    pos: dict[str, tuple[int, int]] = {}
    if g.layout == "tree":
        children: dict[str, list[str]] = {}
        has_parent = set()
        for e in g.edges:
            children.setdefault(e.src, []).append(e.dst)
            has_parent.add(e.dst)
        roots = [n.id for n in g.nodes if n.id not in has_parent]
        column = [0]

        def place(nid: str, depth: int, seen: frozenset[str]) -> int:
            kids = [k for k in children.get(nid, []) if k not in seen and k not in pos]
            if not kids:
                y = column[0]
                column[0] += 1
            else:
                ys = [place(k, depth + 1, seen | {nid}) for k in kids]
                y = (ys[0] + ys[-1]) // 2
            pos[nid] = (depth, y)
            return y

        for r in roots or [g.nodes[0].id]:
            if r not in pos:
                place(r, 0, frozenset())
        for n in g.nodes:  # cycles or unreachable: a row of their own
            if n.id not in pos:
                pos[n.id] = (0, column[0])
                column[0] += 1
        coords = {k: (20 + d * (w + gap_x), 20 + r * (44 + gap_y)) for k, (d, r) in pos.items()}
    else:
        coords = {n.id: (20 + i * (w + gap_x), 40) for i, n in enumerate(g.nodes)}
    width = max(x for x, _ in coords.values()) + w + 20
    height = max(y for _, y in coords.values()) + 44 + 40
    parts = []
    for e in g.edges:
        if e.src not in coords or e.dst not in coords:
            continue
        (x1, y1), (x2, y2) = coords[e.src], coords[e.dst]
        if g.layout == "tree":
            sx, sy, ex, ey = x1 + w, y1 + 22, x2, y2 + 22
        else:
            sx, sy, ex, ey = x1 + w, y1 + 22, x2, y2 + 22
        parts.append(f'<line x1="{sx}" y1="{sy}" x2="{ex - 4}" y2="{ey}" class="edge" marker-end="url(#arrow)"/>')
        if e.label:
            parts.append(f'<text x="{(sx + ex) // 2}" y="{(sy + ey) // 2 - 6}" text-anchor="middle" '
                         f'class="el">{esc(e.label[:20])}</text>')
    for n in g.nodes:
        x, y = coords[n.id]
        parts.append(_box(x, y, w, n.label, n.sub, n.tone, n.href))
    return (
        f'<svg class="graph" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{esc(g.title)}"><title>{esc(g.title)}</title>'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>'
        + "".join(parts) + "</svg>"
    )
