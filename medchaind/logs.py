"""Logging setup: key=value lines (default) or JSON objects, to stderr.

Modules log with ``logging.getLogger(__name__)`` and stable messages whose variable
parts are ``key=value`` pairs. Never log PHI, tx bodies, RPC params or key material:
log hashes, heights, codes and counts.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        line = f"ts={ts}.{ms:03d}Z level={record.levelname.lower()} logger={record.name} msg=\"{record.getMessage()}\""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


_FIELD = re.compile(r'\s([A-Za-z_][A-Za-z0-9_.]*)=("(?:[^"\\]|\\.)*"|\S*)')
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc"})


def split_fields(message: str) -> tuple[str, dict[str, Any]]:
    """``"node ready ipc=/x height=3"`` -> ``("node ready", {"ipc": "/x", "height": 3})``.

    The stable text is what comes before the first ``key=value`` pair; values that are
    decimal integers become numbers, quoted values lose their quotes. A message without
    pairs is all text.
    """
    first = _FIELD.search(message)
    if first is None:
        return message, {}
    fields: dict[str, Any] = {}
    for m in _FIELD.finditer(message, first.start()):
        key, raw = m.group(1), m.group(2)
        value: Any = raw
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            value = raw[1:-1].replace('\\"', '"')
        elif re.fullmatch(r"-?[0-9]{1,18}", raw):
            value = int(raw)
        fields[f"field_{key}" if key in _RESERVED else key] = value
    return message[: first.start()], fields


class JSONFormatter(logging.Formatter):
    """One JSON object per line; a message's ``key=value`` pairs become keys of their own
    (so a log pipeline can query ``height`` or ``peer``), the stable text is ``msg``."""

    def format(self, record: logging.LogRecord) -> str:
        text, fields = split_fields(record.getMessage())
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": text,
            **fields,
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
