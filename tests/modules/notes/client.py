"""Notes' client helpers: ``Client.pin_note`` and ``Client.note`` (and their async twins)."""

from __future__ import annotations

from typing import Any

from medchaind.crypto import SigningKey
from medchaind.flows import Call, Flow, helper, hexstr, send_flow


@helper
def pin_note(chain_id: str, key: SigningKey, tag: bytes, text: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``notes.pin``: pin ``text`` under ``tag`` (32 bytes)."""
    return (yield from send_flow(chain_id, key, "notes.pin", {"tag": tag, "text": text}, **kw))


@helper
def note(tag: bytes | str) -> Flow[dict[str, Any]]:
    """The note pinned under ``tag``."""
    found: dict[str, Any] = yield Call("notes_get", {"tag": hexstr(tag)})
    return found


HELPERS = [pin_note, note]
