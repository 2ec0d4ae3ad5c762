"""Anchor: tamper-evident commitments to data kept off chain.

An organisation (or a patient) anchors the digest of something it keeps elsewhere:
the head of its local hash-chained audit log (HIPAA §164.312(b)), a batch of lab
results, a document. The chain records who anchored which digest at which height, so
anyone holding the data can later prove it existed unchanged at that time.

``meta`` is opaque bytes for the anchoring application (a ciphertext, a key id, a
sequence number). It must never be plaintext personal data: the chain cannot tell,
so this is the client's obligation, stated in ``docs/client-guide.md``.

State (namespace ``anchor``): ``b"a/" + digest`` -> ``{sender, kind, height, meta_hash}``
(the first anchor of a digest wins; re-anchoring the same digest is refused).
"""

from __future__ import annotations

from typing import Any

from .. import codec, crypto
from .module import Module, TxContext, TxFailed, TxSpec, query_key, require_bytes, require_fields, require_text
from .state import StateReader

MAX_META = 8 * 1024


def _validate(body: dict[str, Any]) -> None:
    require_fields(body, {"digest", "kind"}, {"meta"})
    require_bytes(body, "digest", 32)
    require_text(body, "kind", 64)
    meta = body.get("meta", b"")
    if not isinstance(meta, bytes) or len(meta) > MAX_META:
        raise TxFailed("invalid_body", f"meta must be at most {MAX_META} bytes")


def _commit(ctx: TxContext, body: dict[str, Any]) -> None:
    key = b"a/" + body["digest"]
    if ctx.get(key) is not None:
        raise TxFailed("already_anchored", "this digest is already anchored")
    meta_hash = crypto.sha256(body.get("meta", b""))
    ctx.put(key, {"sender": ctx.sender, "kind": body["kind"], "height": ctx.block.height, "meta_hash": meta_hash})
    ctx.emit("anchored", digest=body["digest"], kind=body["kind"])


def _query_get(state: StateReader, params: dict[str, Any]) -> Any:
    digest = query_key(params, "digest")
    raw = state.get("anchor", b"a/" + digest)
    if raw is None:
        return None
    a = codec.decode(raw)
    return {"digest": "0x" + digest.hex(), "sender": "0x" + a["sender"].hex(), "kind": a["kind"],
            "height": a["height"], "meta_hash": "0x" + a["meta_hash"].hex()}


class AnchorModule(Module):
    name = "anchor"

    def __init__(self) -> None:
        super().__init__()
        self.txs = {"commit": TxSpec(_validate, _commit)}
        self.queries = {"get": _query_get}
