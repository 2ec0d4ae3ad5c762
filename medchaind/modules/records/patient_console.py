"""``medchain console --key PATIENT``: a patient's own records in a browser, decrypted in
the patient's process (issue 16's patient view).

The node's console (medchaind/console) holds no patient key and shows no content. This
one runs on the patient's side: a small web app served on 127.0.0.1 by the ``medchain``
process that holds the patient's key, talking to the node over the IPC socket like any
client. It lists the patient's records, opens one (fetch the ciphertext and the
patient's envelope with a request signed by the patient's key, decrypt and verify here:
``read_record``; the patient's own reads leave no audit entry, as on the CLI), and shows
the patient's consents and who read what, when and why (break-glass flagged).

It is read-only (no route sends a tx) and gated like the node's console: a random token
printed with the URL, accepted once as ``?token=`` (then an HttpOnly, SameSite=Strict
cookie) or as a bearer header; nothing is served without it. Plaintext exists only in
this process and in the page the patient's browser shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ...crypto import KeyPair

COOKIE = "medchain_patient"

TEMPLATES = {
    "base.html": """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }} · my medchain records</title>
<style>
body{margin:0;font:14px/1.45 "DejaVu Sans",sans-serif;color:#1b1f24;background:#f6f8fa}
header{padding:8px 18px;background:#2d1b45;color:#fff}header a{color:#e5dbf7;margin-right:14px}
main{padding:14px 18px;max-width:1100px}.card{background:#fff;border:1px solid #d8dee4;border-radius:8px;
padding:12px 14px;margin-bottom:14px;overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #d8dee4}th{font-size:12px;color:#6a737d}
code,pre{font-family:"DejaVu Sans Mono",monospace;font-size:12px}pre{white-space:pre-wrap}
.bad{color:#c62828;font-weight:bold}.muted{color:#6a737d}
</style></head><body><header><b>my medchain records</b> · <code>{{ me[:14] }}…</code> &nbsp;
<a href="/">Records</a><a href="/access">Consents and access</a></header><main><h1>{{ title }}</h1>
{% block content %}{% endblock %}</main></body></html>""",
    "index.html": """{% extends "base.html" %}{% block content %}
<section class="card"><table id="records"><thead><tr><th>record</th><th>type</th><th>author</th><th>created</th>
<th>size</th></tr></thead><tbody>
{% for r in records %}<tr><td><a href="/record/{{ r.record_id }}"><code>{{ r.record_id[:18] }}…</code></a></td>
<td>{{ r.resource_type }}</td><td><code>{{ r.author[:14] }}…</code></td><td>{{ r.created_ms|time }}</td>
<td>{{ r.size }}</td></tr>{% else %}<tr><td colspan="5" class="muted">no records</td></tr>{% endfor %}
</tbody></table></section>{% endblock %}""",
    "record.html": """{% extends "base.html" %}{% block content %}
<section class="card"><p>{{ rec.resource_type }} · decrypted and verified in this process</p>
<pre id="resource">{{ body }}</pre></section>{% endblock %}""",
    "access.html": """{% extends "base.html" %}{% block content %}
<section class="card"><h2>Who read my records</h2><table id="reads"><thead><tr><th>when</th><th>reader</th>
<th>record</th><th>purpose</th><th>break-glass</th></tr></thead><tbody>
{% for a in reads %}<tr><td>{{ a.time_ms|time }}</td><td><code>{{ a.reader[:14] }}…</code></td>
<td><code>{{ a.record_id[:14] }}…</code></td><td>{{ a.purpose }}</td>
<td>{% if a.break_glass %}<span class="bad">yes: {{ a.reason }}</span>{% else %}no{% endif %}</td></tr>
{% else %}<tr><td colspan="5" class="muted">nobody has read your records</td></tr>{% endfor %}
</tbody></table></section>
<section class="card"><h2>My consents</h2><table id="consents"><thead><tr><th>granted</th><th>to</th>
<th>actions</th><th>decision</th><th>revoked</th></tr></thead><tbody>
{% for g in grants %}<tr><td>{{ g.created_ms|time }}</td>
<td><code>{{ (g.actor or g.actor_role or "")[:14] }}</code></td>
<td>{{ g.actions|join(", ") }}</td><td>{{ g.decision }}</td>
<td>{{ g.revoked_ms|time if g.revoked_ms else "—" }}</td></tr>
{% else %}<tr><td colspan="5" class="muted">no consents</td></tr>{% endfor %}
</tbody></table></section>{% endblock %}""",
    "error.html": """{% extends "base.html" %}{% block content %}<p class="bad" id="error">{{ message }}</p>
{% endblock %}""",
}

UNAUTHORIZED = (b"<!doctype html><meta charset=utf-8><title>token needed</title><h1>401: open the URL "
                b"`medchain console` printed (it carries the token)</h1>\n")
HEADERS = [(b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                        b"frame-ancestors 'none'; base-uri 'none'"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"), (b"cache-control", b"no-store"),
           (b"x-content-type-options", b"nosniff")]


def _time(ms: int | None) -> str:
    return "—" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def make_app(connect: Callable[[], Any], keys: KeyPair, token: str) -> Any:
    """The patient's app: ``connect()`` opens an :class:`medchaind.client.AsyncClient`."""
    from jinja2 import DictLoader, Environment, select_autoescape
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    env = Environment(loader=DictLoader(TEMPLATES), autoescape=select_autoescape(default=True,
                                                                                 default_for_string=True))
    env.filters["time"] = _time
    me = "0x" + keys.public_key.hex()

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(me=me, **ctx), status_code=status)

    async def index(request: Request) -> HTMLResponse:
        cl = await connect()
        try:
            records = await cl.query("records_list", {"patient": me})
        finally:
            await cl.aclose()
        return page("index.html", title="My records", records=records)

    async def record(request: Request) -> HTMLResponse:
        rid = request.path_params["rid"]
        if not (rid.startswith("0x") and len(rid) == 66):
            return page("error.html", 400, title="Bad request", message="a record id is 0x and 64 hex digits")
        cl = await connect()
        try:
            resource = await cl.read_record(keys, rid)
        except Exception as exc:  # a record the patient cannot open: say why, never a traceback
            return page("error.html", 404, title="Cannot open", message=str(exc) or type(exc).__name__)
        finally:
            await cl.aclose()
        rec = resource if isinstance(resource, dict) else {}
        return page("record.html", title="Record", rec={"resource_type": rec.get("resourceType", "")},
                    body=json.dumps(resource, indent=2, sort_keys=True))

    async def access(request: Request) -> HTMLResponse:
        cl = await connect()
        try:
            reads = await cl.query("records_audit", {"patient": me})
            grants = await cl.query("consent_list", {"patient": me})
        finally:
            await cl.aclose()
        return page("access.html", title="Consents and access", reads=reads, grants=grants)

    app = Starlette(routes=[Route("/", index), Route("/record/{rid}", record), Route("/access", access)])
    return _gate(app, token)


def _gate(app: Any, token: str) -> Any:
    cookie = hashlib.sha256(b"medchain-patient/cookie/" + token.encode()).hexdigest()

    async def gated(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        ok = False
        for name, value in scope.get("headers", []):
            v = value.decode("latin-1")
            if name == b"authorization" and hmac.compare_digest(v.partition(" ")[2].strip(), token):
                ok = True
            elif name == b"cookie" and any(hmac.compare_digest(p.strip(), f"{COOKIE}={cookie}") for p in v.split(";")):
                ok = True
        if given and hmac.compare_digest(given[0], token):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            headers = [(b"location", (scope["path"] + ("?" + rest if rest else "")).encode("latin-1")),
                       (b"set-cookie", f"{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/".encode()),
                       (b"content-length", b"0")]
            await secured({"type": "http.response.start", "status": 303, "headers": headers})
            await secured({"type": "http.response.body", "body": b""})
        elif ok and not given:
            await app(scope, receive, secured)
        else:
            await secured({"type": "http.response.start", "status": 401,
                           "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                       (b"content-length", str(len(UNAUTHORIZED)).encode())]})
            await secured({"type": "http.response.body", "body": UNAUTHORIZED})

    return gated


async def serve(ipc: Any, keys: KeyPair, listen: str, announce: Callable[[str], None]) -> None:
    """Serve the patient's console on ``listen`` until cancelled; ``announce(url)`` once it listens."""
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve as hyper_serve

    from ...client import AsyncClient

    token = secrets.token_urlsafe(32)
    config = Config()
    config.bind = [listen]
    config.accesslog = None  # the first URL carries the token
    config.graceful_timeout = 0.5

    async def connect() -> Any:
        return await AsyncClient.connect(ipc, timeout=60)

    app = make_app(connect, keys, token)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(hyper_serve, app, config)
        announce(f"{binds[0]}/?token={token}")
