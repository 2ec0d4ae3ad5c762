"""systemd readiness and watchdog notifications (``sd_notify(3)``), without libsystemd.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace). The node sends ``READY=1`` once its database is open, its network
started and its IPC socket listening; ``STOPPING=1`` when shutdown begins; and, when the
unit sets ``WatchdogSec=``, ``WATCHDOG=1`` every half period from the trio event loop,
so a wedged loop gets the node restarted. Without ``NOTIFY_SOCKET`` every call is a
no-op. A send that fails is logged once and otherwise ignored: notifications must never
stop a node.
"""

from __future__ import annotations

import logging
import os
import socket

import trio

log = logging.getLogger(__name__)


class SdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1_000_000
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.sendto(state.encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify failed socket=%s error=%s", self.address.lstrip("\0"), exc)
            return False

    async def watchdog(self) -> None:
        """Ping the watchdog every half period until cancelled (no-op without one)."""
        if self.address is None or self.watchdog_s is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await trio.sleep(self.watchdog_s / 2)
