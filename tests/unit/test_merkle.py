"""RFC 6962 Merkle trees (docs/protocol.md §8).

``reference_root`` below is an independent implementation: it builds the tree bottom-up,
level by level, carrying an unpaired last node up unchanged. For RFC 6962 trees this
is equivalent to the RFC's recursive split at the largest power of two below n, which
is what the module does, so agreement checks both.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind.types.merkle import merkle_proof, merkle_root, verify_merkle_proof


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def reference_root(items: list[bytes]) -> bytes:
    if not items:
        return H(b"")
    level = [H(b"\x00" + x) for x in items]
    while len(level) > 1:
        nxt = [H(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def leaves(n: int) -> list[bytes]:
    return [H(i.to_bytes(4, "big")) for i in range(n)]


# Certificate Transparency reference test data (RFC 6962 implementations share it).
CT_LEAVES = [
    bytes.fromhex(x)
    for x in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(41))
def test_root_matches_reference(n: int) -> None:
    assert merkle_root(leaves(n)) == reference_root(leaves(n))


def test_ct_known_answers() -> None:
    assert (
        merkle_root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    for n, root in enumerate(CT_ROOTS, start=1):
        assert merkle_root(CT_LEAVES[:n]).hex() == root


def test_small_trees_by_hand() -> None:
    a, b, c = b"a", b"b", b"c"
    la, lb, lc = H(b"\x00a"), H(b"\x00b"), H(b"\x00c")
    assert merkle_root([a]) == la
    assert merkle_root([a, b]) == H(b"\x01" + la + lb)
    assert merkle_root([a, b, c]) == H(b"\x01" + H(b"\x01" + la + lb) + lc)
    assert merkle_proof([a, b, c], 2) == [H(b"\x01" + la + lb)]
    assert merkle_proof([a, b, c], 0) == [lb, lc]


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # a 64-byte leaf equal to two child hashes must not collide with their parent
    la, lb = H(b"\x00a"), H(b"\x00b")
    assert merkle_root([la + lb]) != merkle_root([b"a", b"b"])


@pytest.mark.parametrize("n", range(1, 41))
def test_every_proof_verifies(n: int) -> None:
    items = leaves(n)
    root = merkle_root(items)
    for i in range(n):
        proof = merkle_proof(items, i)
        assert len(proof) <= max(1, (n - 1).bit_length())
        assert verify_merkle_proof(items[i], i, n, proof, root)


def test_proof_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        merkle_proof(leaves(3), 3)
    with pytest.raises(IndexError):
        merkle_proof(leaves(3), -1)
    with pytest.raises(IndexError):
        merkle_proof([], 0)
    root = merkle_root(leaves(3))
    assert not verify_merkle_proof(leaves(3)[0], 3, 3, [], root)
    assert not verify_merkle_proof(leaves(3)[0], -1, 3, [], root)
    assert not verify_merkle_proof(b"", 0, 0, [], merkle_root([]))


@given(st.integers(1, 40), st.data())
def test_tampered_proofs_fail(n: int, data: st.DataObject) -> None:
    items = leaves(n)
    root = merkle_root(items)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle_proof(items, i)
    assert verify_merkle_proof(items[i], i, n, proof, root)

    tamper = data.draw(
        st.sampled_from(["leaf", "root", "element", "drop", "extend", "index", "swap"])
    )
    leaf, idx, prf, rt = items[i], i, list(proof), root
    if tamper == "leaf":
        leaf = leaf[:-1] + bytes([leaf[-1] ^ 1])
    elif tamper == "root":
        rt = H(root)
    elif tamper == "element":
        if not prf:
            prf = [H(b"x")]
        else:
            j = data.draw(st.integers(0, len(prf) - 1))
            prf[j] = prf[j][:5] + bytes([prf[j][5] ^ 0x10]) + prf[j][6:]
    elif tamper == "drop":
        if not prf:
            rt = H(b"other")
        else:
            prf = prf[:-1]
    elif tamper == "extend":
        prf.append(data.draw(st.sampled_from([H(b"y"), root, items[0]])))
    elif tamper == "index":
        if n == 1:
            idx = 1
        else:
            idx = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
    else:  # swap two path elements
        if len(prf) < 2 or prf[0] == prf[1]:
            rt = H(b"other")
        else:
            prf[0], prf[1] = prf[1], prf[0]
    assert not verify_merkle_proof(leaf, idx, n, prf, rt)


@given(st.lists(st.binary(max_size=40), max_size=40))
def test_root_property(items: list[bytes]) -> None:
    assert merkle_root(items) == reference_root(items)
    root = merkle_root(items)
    for i in range(len(items)):
        assert verify_merkle_proof(items[i], i, len(items), merkle_proof(items, i), root)
