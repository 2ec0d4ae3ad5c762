"""Serving the console inside the node's process: hypercorn's trio worker.

Why in the node and not a process of its own: the console reads the node's in-process
query layer and its commit listener (no second client on the socket, no polling, no
second copy of the chain), it starts and stops with the node, and an operator enables
it the way the metrics endpoint is enabled (``[console] listen``, ``--console-listen``,
``MEDCHAIND_CONSOLE_LISTEN``). Its handlers are short reads on the node's trio loop, as
IPC requests are; it is off by default.

The listening socket is bound before the node reports itself started, so a port in use
stops the node at startup with ``console.listen HOST:PORT: Address already in use``,
as ``metrics.listen`` does.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ..errors import ConfigError
from .app import Console
from .auth import load_token
from .source import NodeSource

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..node.node import Node
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)


class ConsoleServer:
    """Binds ``listen`` and serves the console that ``make()`` builds (called in
    :meth:`serve`, once the node is open)."""

    def __init__(self, make: Callable[[], Console], listen: str) -> None:
        self.make = make
        self.console: Console | None = None
        host, _, port = listen.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.url = ""
        #: called with the URL (token included) once the console listens (``medchaind dev``)
        self.announce: Any = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"console.listen {self.host}:{self.port}: {exc.strerror or exc}") from None
        return sock

    async def serve(self, *, task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config as HyperConfig
        from hypercorn.config import Sockets
        from hypercorn.trio.run import worker_serve
        from hypercorn.utils import wrap_app

        sock = self._bind()
        self.console = console = self.make()
        port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}/"
        config = HyperConfig()
        config.accesslog = None  # the URL can hold a token once: never log requests
        config.errorlog = logging.getLogger("medchaind.console.http")
        config.graceful_timeout = 0.5  # open event streams must not hold up a shutdown
        config.keep_alive_timeout = 30
        head = await console.source.call("node_info")
        log.info("console listening url=%s", self.url)
        task_status.started(self.url)
        if self.announce is not None:
            self.announce(self.url + "?token=" + console.token)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(console.backfill, int(head["height"]))
            # TokenGate is a plain ASGI callable (hypercorn's types name each event precisely)
            await worker_serve(wrap_app(console.app, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
                               config, sockets=Sockets([], [sock], []))


def attach_console(node: Node, announce: Any = None) -> ConsoleServer | None:
    """Add the console to ``node``'s services if its config enables one (``console.listen``).

    ``announce(url)`` is called with the URL and token once it listens (``medchaind dev``).
    """
    cfg = node.config
    if not cfg.console.listen:
        return None
    token = load_token(cfg.datadir)
    server = ConsoleServer(lambda: Console(NodeSource(node), token), cfg.console.listen)
    server.announce = announce
    node.services.append(server.serve)
    return server
