"""Notes: a member pins a short public note under a 32-byte tag (pure state machine).

State (namespace ``notes``): ``b"n/" + tag`` -> ``{author, text, height}``; the first
note of a tag wins, a second is refused with ``tag_taken``.
"""

from __future__ import annotations

from typing import Annotated, Any

from medchaind import codec
from medchaind.app.module import Module, QuerySpec, TopicSpec, TxContext, TxFailed, TxSpec
from medchaind.app.schema import Bytes, Text, body, params
from medchaind.app.state import StateReader

NAMESPACE = "notes"


@body
class Pin:
    tag: Annotated[bytes, Bytes(32)]
    text: Annotated[str, Text(140)]


def _pin(ctx: TxContext, b: Pin) -> None:
    key = b"n/" + b.tag
    if ctx.get(key) is not None:
        raise TxFailed("tag_taken", "a note is already pinned under this tag")
    ctx.put(key, {"author": ctx.sender, "text": b.text, "height": ctx.block.height})
    ctx.emit("pinned", tag=b.tag, author=ctx.sender)


@params
class GetParams:
    tag: Annotated[bytes, Bytes(32)]


def _query_get(state: StateReader, p: GetParams) -> Any:
    """The note pinned under a tag: author, text, height."""
    raw = state.get(NAMESPACE, b"n/" + p.tag)
    if raw is None:
        return None
    n = codec.decode(raw)
    return {"tag": "0x" + p.tag.hex(), "author": "0x" + n["author"].hex(), "text": n["text"],
            "height": n["height"]}


class NotesModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        self.txs = {"pin": TxSpec(Pin, _pin)}
        self.queries = {"get": QuerySpec(_query_get, GetParams, not_found="no note under that tag")}
        self.topics = {"notes": TopicSpec("tag", doc="notes pinned under one tag")}
