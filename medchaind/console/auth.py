"""The console's gate: an access token kept in the datadir.

``<datadir>/console.token`` (0600, created at the first start with the console on) holds
a random token. A request is let in when it carries the token as a bearer header
(``Authorization: Bearer <token>``, for scripts) or the console's session cookie; a
browser opens the URL ``medchaind dev`` prints, ``/?token=<token>`` once, and is
redirected to the same page without the token in its address, with the cookie set
(HttpOnly, SameSite=Strict, so no other site can use it). Everything else is 401.

The cookie holds a hash of the token, not the token. Who can read the token file (the
node's user, root) can use the console; rotating the token is deleting the file and
restarting the node.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..errors import ConfigError
from ..files import write_private_file

TOKEN_FILE = "console.token"
COOKIE = "medchain_console"

#: every response carries these (the console serves only its own script and styles)
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def load_token(datadir: Path) -> str:
    """The console token of ``datadir``, created (0600) if there is none yet."""
    path = datadir / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        write_private_file(path, (token + "\n").encode())
        return token
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the console token ({exc.strerror})") from None
    if len(token) < 16:
        raise ConfigError(f"{path}: the console token is shorter than 16 characters; delete the file to get a new one")
    return token


def cookie_value(token: str) -> str:
    return hashlib.sha256(b"medchain-console/cookie/" + token.encode()).hexdigest()


class TokenGate:
    """ASGI middleware: lets through requests with the token, answers 401 otherwise."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie_value(token)

    def _allowed(self, scope: dict[str, Any]) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, cred = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(cred.strip(), self.token):
                    return True
            elif name == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == COOKIE and hmac.compare_digest(v, self.cookie):
                        return True
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return

        async def send_secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if hmac.compare_digest(given[0], self.token):
                rest = urlencode([(k, v) for k, v in query if k != "token"])
                location = scope.get("root_path", "") + scope["path"] + ("?" + rest if rest else "")
                await _respond(send_secured, 303, b"", [
                    (b"location", location.encode("latin-1")),
                    (b"set-cookie", f"{COOKIE}={self.cookie}; HttpOnly; SameSite=Strict; Path=/".encode()),
                ])
                return
        elif self._allowed(scope):
            await self.app(scope, receive, send_secured)
            return
        await _respond(send_secured, 401, UNAUTHORIZED, [(b"content-type", b"text/html; charset=utf-8"),
                                                          (b"www-authenticate", b'Bearer realm="medchain console"')])


UNAUTHORIZED = (
    b"<!doctype html><meta charset=utf-8><title>medchain console: token needed</title>"
    b"<h1>401: the console needs its access token</h1>"
    b"<p>Open the URL that <code>medchaind dev</code> printed, or add <code>?token=...</code> with the token "
    b"from <code>&lt;datadir&gt;/console.token</code> (readable only by the node's user). Scripts send "
    b"<code>Authorization: Bearer &lt;token&gt;</code>.</p>\n"
)


async def _respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
