"""Logging setup: key=value lines (default) or JSON objects, to stderr.

Modules log with ``logging.getLogger(__name__)`` and stable messages whose variable
parts are ``key=value`` pairs. Never log PHI, tx bodies, RPC params or key material:
log hashes, heights, codes and counts.
"""

from __future__ import annotations

import json
import logging
import sys
import time


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        line = f"ts={ts}.{ms:03d}Z level={record.levelname.lower()} logger={record.name} msg=\"{record.getMessage()}\""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # libp2p sets its logger to propagate=False on import; route it through ours.
    lp = logging.getLogger("libp2p")
    lp.propagate = True
    lp.setLevel(max(logging.WARNING, root.level))
