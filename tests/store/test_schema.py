"""The key layout is a storage format: these are its test vectors."""

from __future__ import annotations

import pytest

from medchaind.store import schema

H = bytes(range(32))


@pytest.mark.parametrize(
    "key, expected",
    [
        (schema.block_key(1), b"v1/blk/\x00\x00\x00\x00\x00\x00\x00\x01"),
        (schema.block_key(2**64 - 1), b"v1/blk/" + b"\xff" * 8),
        (schema.commit_key(258), b"v1/cmt/\x00\x00\x00\x00\x00\x00\x01\x02"),
        (schema.block_hash_key(H), b"v1/bhash/" + H),
        (schema.tx_key(H), b"v1/tx/" + H),
        (schema.receipt_key(H), b"v1/rcpt/" + H),
        (schema.state_key("identity", b"k\x00"), b"v1/state/identity/k\x00"),
        (schema.state_key("consent", b""), b"v1/state/consent/"),
        (schema.state_prefix("records"), b"v1/state/records/"),
        (schema.blob_key(H), b"v1/blob/" + H),
        (schema.meta_key("head"), b"v1/meta/head"),
    ],
)
def test_key_vectors(key: bytes, expected: bytes) -> None:
    assert key == expected


def test_every_namespace_is_versioned_and_disjoint() -> None:
    prefixes = list(schema.NAMESPACES)
    assert all(p.startswith(schema.VERSION_PREFIX) and p.endswith(b"/") for p in prefixes)
    for a in prefixes:
        for b in prefixes:
            assert a == b or not a.startswith(b)


def test_height_keys_sort_numerically() -> None:
    heights = [0, 1, 9, 10, 255, 256, 2**32, 2**63]
    assert sorted(schema.block_key(h) for h in reversed(heights)) == [
        schema.block_key(h) for h in heights]
    assert schema.decode_height(schema.encode_height(2**40 + 5)) == 2**40 + 5


def test_namespace_of() -> None:
    assert schema.namespace_of(schema.block_key(3)) == "blocks"
    assert schema.namespace_of(schema.state_key("claims", b"x")) == "state"
    assert schema.namespace_of(b"v0/blk/") == "unknown"


@pytest.mark.parametrize(
    "build",
    [
        lambda: schema.block_key(-1),
        lambda: schema.commit_key(2**64),
        lambda: schema.block_key(True),
        lambda: schema.tx_key(b"\x00" * 31),
        lambda: schema.block_hash_key(b"\x00" * 33),
        lambda: schema.state_key("Identity", b"k"),
        lambda: schema.state_key("a/b", b"k"),
        lambda: schema.state_key("", b"k"),
        lambda: schema.state_key("identity", "k"),  # type: ignore[arg-type]
        lambda: schema.meta_key(""),
        lambda: schema.meta_key("a/b"),
        lambda: schema.decode_height(b"\x00" * 7),
    ],
)
def test_bad_arguments_raise_value_error(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]
