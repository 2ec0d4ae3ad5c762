"""RFC 6962 (Certificate Transparency) Merkle tree over transaction hashes.

Leaf hash ``H(0x00 || leaf)``, interior ``H(0x01 || left || right)``, the empty tree
``H("")``; a tree of n > 1 leaves splits at the largest power of two below n. An
audit path lets a client check that a tx is in a block from the header's ``tx_root``
alone (§2.1.1 of the RFC).
"""

from __future__ import annotations

from hashlib import sha256


def _leaf(data: bytes) -> bytes:
    return sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = _split(n)
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(items: list[bytes]) -> bytes:
    if not items:
        return sha256(b"").digest()
    return _root([_leaf(x) for x in items])


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return _path(index, leaves[:k]) + [_root(leaves[k:])]
    return _path(index - k, leaves[k:]) + [_root(leaves[:k])]


def merkle_proof(items: list[bytes], index: int) -> list[bytes]:
    """Audit path for ``items[index]``, leaf-side sibling first."""
    if not 0 <= index < len(items):
        raise IndexError("leaf index out of range")
    return _path(index, [_leaf(x) for x in items])


def verify_merkle_proof(item: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2 verification of an inclusion proof."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = _leaf(item)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
