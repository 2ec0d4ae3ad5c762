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

from typing import Annotated, Any

from ... import codec, crypto
from ...app.module import Module, QuerySpec, TxContext, TxFailed, TxSpec
from ...app.schema import Bytes, Text, body, params
from ...app.state import StateReader

NAMESPACE = "anchor"
MAX_META = 8 * 1024


@body
class Commit:
    digest: Annotated[bytes, Bytes(32)]
    kind: Annotated[str, Text(64)]
    meta: Annotated[bytes | None, Bytes(max=MAX_META)] = None


def _commit(ctx: TxContext, b: Commit) -> None:
    key = b"a/" + b.digest
    if ctx.get(key) is not None:
        raise TxFailed("already_anchored", "this digest is already anchored")
    meta_hash = crypto.sha256(b.meta or b"")
    # keys in canonical order, so encoding skips cbor2's canonical sort (same bytes)
    ctx.put(key, {"kind": b.kind, "height": ctx.block.height, "sender": ctx.sender, "meta_hash": meta_hash})
    ctx.emit("anchored", digest=b.digest, kind=b.kind)


@params
class GetParams:
    digest: Annotated[bytes, Bytes(32)]


def _query_get(state: StateReader, p: GetParams) -> Any:
    """Who anchored a digest, with which kind, at which height."""
    raw = state.get(NAMESPACE, b"a/" + p.digest)
    if raw is None:
        return None
    a = codec.decode(raw)
    return {"digest": "0x" + p.digest.hex(), "sender": "0x" + a["sender"].hex(), "kind": a["kind"],
            "height": a["height"], "meta_hash": "0x" + a["meta_hash"].hex()}


class AnchorModule(Module):
    name = NAMESPACE

    def __init__(self) -> None:
        super().__init__()
        # stores the height, never judges by it (tests/mempool/test_mempool_block_independence.py)
        self.txs = {"commit": TxSpec(Commit, _commit, verdict_reads_block=False)}
        self.queries = {"get": QuerySpec(_query_get, GetParams, not_found="that digest is not anchored")}
