"""Stores in older on-disk layouts, for the tests that check a newer medchaind reads them.

Issue 14's session 8 folded two kinds of entries into others (store/schema.py): a trie
record's birth height, once ``v1/born/<hash>``, is now in the record's own entry, and a
tx's receipt, once ``v1/rcpt/<tx hash>``, is now in its ``v1/tx/`` entry. A store
written before that needs no migration; :func:`to_older_layout` rewrites a store as such
a node would have written it, so that tests can run on one.
"""

from __future__ import annotations

from .. import codec
from ..store import KVStore, schema
from ..store.chain_store import split_trie_entry


def to_older_layout(kv: KVStore, *, txs: bool = True) -> None:
    """Rewrite ``kv``'s trie entries as bare records with their births under
    ``v1/born/`` (entries already bare are left as they are) and, with ``txs``, its tx
    entries as ``[height, index]`` with their receipts under ``v1/rcpt/``."""
    puts: list[tuple[bytes, bytes]] = []
    for k, v in list(kv.iterate(schema.TRIE_PREFIX)):
        record, born = split_trie_entry(v)
        if born is not None and record is not None:
            puts += [(k, record), (schema.trie_born_key(k[len(schema.TRIE_PREFIX):]), schema.encode_height(born))]
    if txs:
        for k, v in list(kv.iterate(schema.TX_PREFIX)):
            height, index, receipt = codec.decode(v)
            puts += [(k, codec.encode([height, index])), (schema.receipt_key(k[len(schema.TX_PREFIX):]), receipt)]
    kv.write(puts)
