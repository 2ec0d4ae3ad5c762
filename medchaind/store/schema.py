"""The key schema: the only place where storage keys are built (DESIGN.md §6).

Every key lives under the version prefix ``v1/`` so that a future layout can be written
next to this one and migrated in place. One namespace per kind of record::

    v1/blk/<height:8 BE>             -> Block.encode()
    v1/cmt/<height:8 BE>             -> Commit.encode()   (the commit finalising that height)
    v1/bhash/<block hash:32>         -> <height:8 BE>
    v1/tx/<tx hash:32>               -> codec.encode([height, index in block, Receipt.encode()])
    v1/rcpt/<tx hash:32>             -> Receipt.encode()     (older stores only; now inside v1/tx/)
    v1/state/<module>/<key>          -> module-defined bytes
    v1/trie/<node hash:32>           -> 0x02 <height:8 BE> <state-trie node record> (medchaind.app.trie):
                                        the record, and the height it last (re)entered the trie
                                        (older stores: the bare record)
    v1/tval/<leaf hash:32>           -> the value of that trie leaf (state of older versions)
    v1/stale/<height:8 BE><hash:32>  -> 0x00 leaf / 0x01 inner: the record left the trie at that height;
                                        or that flag || <departure height:8 BE>: it left then, and a
                                        kept snapshot holds it until the horizon reaches this height
    v1/pin/<node hash:32>            -> <height:8 BE>: a kept snapshot an older life of the record is in
    v1/born/<node hash:32>           -> <height:8 BE>: the birth of a bare record (older stores only)
    v1/blob/<content hash:32>        -> blob bytes (ciphertext; erasable)
    v1/meta/<name>                   -> small values (``head`` = <height:8 BE>)

Invariants:

* Heights are unsigned 64-bit big-endian, so bytewise key order is height order and a
  reverse scan of ``BLOCK_PREFIX`` starts at the highest block.
* Hashes are exactly 32 bytes, so a hash key never is a prefix of another key.
* ``v1/trie/`` holds the nodes of the state trie whose root is the head's ``app_hash``
  (the genesis app hash before block 1), and of the older versions the node retains:
  records are content addressed and written in the batch that commits the state they
  belong to. Without retention a replaced record is deleted in that batch; with it the
  batch writes a ``v1/stale/`` entry instead, and pruning deletes the record once no
  retained version holds it (the birth height tells a record that came back from one
  that did not: ``ChainStore.prune_trie``). ``v1/tval/`` follows its leaf's lifetime.
  A record a kept snapshot still holds when its stale entry comes due is re-filed to come
  due when that snapshot is dropped, with a ``v1/pin/`` entry naming the snapshot, so that
  the record is not deleted at the end of a later life either (it can come back).
  Receipts and births were entries of their own (``v1/rcpt/``, ``v1/born/``) until
  issue 14's session 8 folded them into the tx's and the record's entries (fewer
  entries for LevelDB to compact); readers take both forms, see chain_store.py.
* Module names match ``[a-z][a-z_]{0,31}`` (the module part of a tx type) and in
  particular contain no ``/``: ``state_prefix(m)`` therefore covers the keys of module
  ``m`` and of no other module.

Builders raise ValueError on arguments outside these rules (a programming error, never
peer input).
"""

from __future__ import annotations

import functools
import re

from .. import crypto

VERSION_PREFIX = b"v1/"

BLOCK_PREFIX = VERSION_PREFIX + b"blk/"
COMMIT_PREFIX = VERSION_PREFIX + b"cmt/"
BLOCK_HASH_PREFIX = VERSION_PREFIX + b"bhash/"
TX_PREFIX = VERSION_PREFIX + b"tx/"
RECEIPT_PREFIX = VERSION_PREFIX + b"rcpt/"
STATE_PREFIX = VERSION_PREFIX + b"state/"
TRIE_PREFIX = VERSION_PREFIX + b"trie/"
TRIE_VALUE_PREFIX = VERSION_PREFIX + b"tval/"
TRIE_STALE_PREFIX = VERSION_PREFIX + b"stale/"
TRIE_BORN_PREFIX = VERSION_PREFIX + b"born/"
TRIE_PIN_PREFIX = VERSION_PREFIX + b"pin/"
NONCE_UNUSED_PREFIX = VERSION_PREFIX + b"nnu/"
BLOB_PREFIX = VERSION_PREFIX + b"blob/"
META_PREFIX = VERSION_PREFIX + b"meta/"

#: Human-readable namespace names, used in error messages about corrupt entries.
NAMESPACES: dict[bytes, str] = {
    BLOCK_PREFIX: "blocks",
    COMMIT_PREFIX: "commits",
    BLOCK_HASH_PREFIX: "block-hash index",
    TX_PREFIX: "tx index",
    RECEIPT_PREFIX: "receipts",
    STATE_PREFIX: "state",
    TRIE_PREFIX: "state trie",
    TRIE_VALUE_PREFIX: "state trie values",
    TRIE_STALE_PREFIX: "state trie stale index",
    TRIE_BORN_PREFIX: "state trie birth index",
    TRIE_PIN_PREFIX: "state trie snapshot pins",
    NONCE_UNUSED_PREFIX: "tx index: first inclusions that did not use their nonce",
    BLOB_PREFIX: "blobs",
    META_PREFIX: "metadata",
}

HEIGHT_SIZE = 8
MAX_HEIGHT = 2**64 - 1
MODULE_RE = re.compile(r"^[a-z][a-z_]{0,31}$")
META_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def encode_height(height: int) -> bytes:
    """``height`` as 8 bytes big-endian (the order-preserving form used in keys and values)."""
    if type(height) is not int or not 0 <= height <= MAX_HEIGHT:
        raise ValueError(f"height must be an integer in [0, 2**64), got {height!r}")
    return height.to_bytes(HEIGHT_SIZE, "big")


def decode_height(data: bytes) -> int:
    """Inverse of :func:`encode_height`; ValueError unless ``data`` is exactly 8 bytes."""
    if len(data) != HEIGHT_SIZE:
        raise ValueError(f"a height is {HEIGHT_SIZE} bytes, got {len(data)}")
    return int.from_bytes(data, "big")


def _hash(h: bytes, what: str) -> bytes:
    if type(h) is not bytes or len(h) != crypto.HASH_SIZE:
        raise ValueError(f"{what} must be {crypto.HASH_SIZE} bytes")
    return h


def _module(module: str) -> bytes:
    if not isinstance(module, str) or not MODULE_RE.match(module):
        raise ValueError(f"module name must match {MODULE_RE.pattern}, got {module!r}")
    return module.encode("ascii")


def block_key(height: int) -> bytes:
    return BLOCK_PREFIX + encode_height(height)


def commit_key(height: int) -> bytes:
    return COMMIT_PREFIX + encode_height(height)


def block_hash_key(block_hash: bytes) -> bytes:
    return BLOCK_HASH_PREFIX + _hash(block_hash, "block hash")


def tx_key(tx_hash: bytes) -> bytes:
    return TX_PREFIX + _hash(tx_hash, "tx hash")


def nonce_unused_key(tx_hash: bytes) -> bytes:
    return NONCE_UNUSED_PREFIX + _hash(tx_hash, "tx hash")


def receipt_key(tx_hash: bytes) -> bytes:
    return RECEIPT_PREFIX + _hash(tx_hash, "tx hash")


def state_prefix(module: str) -> bytes:
    """The prefix of every state key of ``module`` (ends with ``/``)."""
    if type(module) is str:
        return _state_prefix(module)
    return STATE_PREFIX + _module(module) + b"/"  # raises: not a module name


@functools.lru_cache(maxsize=256)
def _state_prefix(module: str) -> bytes:
    # every state read and write builds its key (a regex match per call): a chain has a
    # few dozen modules, so remember the prefixes (a bad name raises and is not kept)
    return STATE_PREFIX + _module(module) + b"/"


def state_key(module: str, key: bytes) -> bytes:
    """Key of ``key`` in ``module``'s state. ``key`` is arbitrary bytes (may be empty)."""
    if type(key) is not bytes:
        raise ValueError(f"state keys are bytes, got {type(key).__name__}")
    return state_prefix(module) + key


def trie_key(node_hash: bytes) -> bytes:
    """Key of the state-trie node whose hash is ``node_hash``."""
    return TRIE_PREFIX + _hash(node_hash, "trie node hash")


def trie_value_key(leaf_hash: bytes) -> bytes:
    """Key of the value of the state-trie leaf whose hash is ``leaf_hash``."""
    return TRIE_VALUE_PREFIX + _hash(leaf_hash, "trie leaf hash")


def trie_stale_key(height: int, node_hash: bytes) -> bytes:
    """Key of "record ``node_hash`` left the trie at ``height``" (ordered by height)."""
    return TRIE_STALE_PREFIX + encode_height(height) + _hash(node_hash, "trie node hash")


def trie_born_key(node_hash: bytes) -> bytes:
    return TRIE_BORN_PREFIX + _hash(node_hash, "trie node hash")


def trie_pin_key(node_hash: bytes) -> bytes:
    """Key of "a kept snapshot holds an older life of record ``node_hash``"."""
    return TRIE_PIN_PREFIX + _hash(node_hash, "trie node hash")


def blob_key(content_hash: bytes) -> bytes:
    return BLOB_PREFIX + _hash(content_hash, "blob hash")


def meta_key(name: str) -> bytes:
    if not isinstance(name, str) or not META_NAME_RE.match(name):
        raise ValueError(f"meta name must match {META_NAME_RE.pattern}, got {name!r}")
    return META_PREFIX + name.encode("ascii")


def namespace_of(key: bytes) -> str:
    """Which namespace ``key`` belongs to, for error messages ("unknown" if none)."""
    for prefix, name in NAMESPACES.items():
        if key.startswith(prefix):
            return name
    return "unknown"
