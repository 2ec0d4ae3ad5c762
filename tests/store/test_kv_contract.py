"""The KVStore contract, written once and run against every backend (``kv`` fixture).

Mirrors py-evm's DatabaseAPITestSuite: if MemoryKV and LevelDBKV both pass this file
they are interchangeable, so simulations on MemoryKV say something about real nodes.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from store_factories import new_kv

from medchaind.errors import StoreError
from medchaind.store import KVStore
from medchaind.store.kv import prefix_upper_bound

KEYS = [b"a", b"a\x00", b"a\x01", b"a\xff", b"a\xff\xff", b"ab", b"abc", b"b", b"\xff", b"\xff\xff"]


def fill(kv: KVStore) -> None:
    kv.write({k: b"v:" + k for k in KEYS})


def keys(it: Iterator[tuple[bytes, bytes]]) -> list[bytes]:
    return [k for k, _ in it]


# -- get / put / delete -------------------------------------------------------------------


def test_get_missing_is_none(kv: KVStore) -> None:
    assert kv.get(b"nope") is None


def test_put_get_overwrite_delete(kv: KVStore) -> None:
    kv.put(b"k", b"1")
    assert kv.get(b"k") == b"1"
    kv.put(b"k", b"2", sync=False)
    assert kv.get(b"k") == b"2"
    kv.delete(b"k")
    assert kv.get(b"k") is None
    kv.delete(b"k")  # deleting an absent key is a no-op
    assert kv.get(b"k") is None


def test_empty_key_and_value(kv: KVStore) -> None:
    kv.put(b"", b"")
    assert kv.get(b"") == b""
    assert list(kv.iterate(b"")) == [(b"", b"")]
    kv.put(b"a", b"A")
    # the empty key as an inclusive bound, both directions (plyvel gets reverse wrong)
    assert list(kv.iterate(b"", start=b"", reverse=True)) == [(b"", b"")]
    assert list(kv.iterate(b"", start=b"")) == [(b"", b""), (b"a", b"A")]
    assert list(kv.iterate(b"", reverse=True)) == [(b"a", b"A"), (b"", b"")]


def test_binary_keys_and_large_value(kv: KVStore) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    kv.write([(b"\x00\xff\x00", big), (b"\xff", b"\x00")])
    assert kv.get(b"\x00\xff\x00") == big
    assert kv.get(b"\xff") == b"\x00"


# -- iteration ----------------------------------------------------------------------------


def test_iterate_prefix_forward_sorted(kv: KVStore) -> None:
    fill(kv)
    assert keys(kv.iterate(b"a")) == [
        b"a", b"a\x00", b"a\x01", b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert keys(kv.iterate(b"a\xff")) == [b"a\xff", b"a\xff\xff"]
    assert keys(kv.iterate(b"")) == sorted(KEYS)
    assert keys(kv.iterate(b"\xff")) == [b"\xff", b"\xff\xff"]
    assert keys(kv.iterate(b"zz")) == []
    assert all(v == b"v:" + k for k, v in kv.iterate(b""))


def test_iterate_prefix_reverse(kv: KVStore) -> None:
    fill(kv)
    assert keys(kv.iterate(b"a", reverse=True)) == [
        b"a\xff\xff", b"a\xff", b"abc", b"ab", b"a\x01", b"a\x00", b"a"]
    assert keys(kv.iterate(b"", reverse=True)) == sorted(KEYS, reverse=True)
    assert keys(kv.iterate(b"\xff", reverse=True)) == [b"\xff\xff", b"\xff"]


def test_reverse_scan_whose_top_key_is_the_lower_bound(kv: KVStore) -> None:
    # plyvel 1.5 returns nothing here when given start=<lower bound>; LevelDBKV works
    # around it. The key equal to the prefix is real: state_key(m, b"") == state_prefix(m).
    kv.write({b"a": b"A", b"b": b"B"})
    assert list(kv.iterate(b"b", reverse=True)) == [(b"b", b"B")]
    assert list(kv.iterate(b"a", reverse=True)) == [(b"a", b"A")]
    assert list(kv.iterate(b"", start=b"a", reverse=True)) == [(b"a", b"A")]
    assert list(kv.iterate(b"b", start=b"b", reverse=True)) == [(b"b", b"B")]


def test_iterate_start_forward_is_inclusive_lower_bound(kv: KVStore) -> None:
    fill(kv)
    assert keys(kv.iterate(b"a", start=b"ab")) == [b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert keys(kv.iterate(b"a", start=b"a\xff")) == [b"a\xff", b"a\xff\xff"]
    # start between keys, before the prefix, after the prefix range
    assert keys(kv.iterate(b"a", start=b"a\x02")) == [b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert keys(kv.iterate(b"a", start=b"0")) == keys(kv.iterate(b"a"))
    assert keys(kv.iterate(b"a", start=b"b")) == []
    assert keys(kv.iterate(b"\xff", start=b"\xff\x00")) == [b"\xff\xff"]


def test_iterate_start_reverse_is_inclusive_upper_bound(kv: KVStore) -> None:
    fill(kv)
    assert keys(kv.iterate(b"a", start=b"ab", reverse=True)) == [b"ab", b"a\x01", b"a\x00", b"a"]
    assert keys(kv.iterate(b"a", start=b"a\xff", reverse=True)) == [
        b"a\xff", b"abc", b"ab", b"a\x01", b"a\x00", b"a"]
    assert keys(kv.iterate(b"a", start=b"a\x02", reverse=True)) == [b"a\x01", b"a\x00", b"a"]
    assert keys(kv.iterate(b"a", start=b"b", reverse=True)) == keys(kv.iterate(b"a", reverse=True))
    assert keys(kv.iterate(b"a", start=b"0", reverse=True)) == []
    assert keys(kv.iterate(b"", start=b"a\x00", reverse=True)) == [b"a\x00", b"a"]
    assert keys(kv.iterate(b"\xff", start=b"\xff\xff\xff", reverse=True)) == [b"\xff\xff", b"\xff"]


def test_iterator_sees_snapshot_at_call(kv: KVStore) -> None:
    fill(kv)
    it = kv.iterate(b"a")
    kv.write({b"aa": b"new", b"a": b"changed"}, [b"abc"])
    got = list(it)
    assert keys(iter(got)) == [b"a", b"a\x00", b"a\x01", b"ab", b"abc", b"a\xff", b"a\xff\xff"]
    assert got[0] == (b"a", b"v:a")


def test_big_endian_heights_iterate_in_numeric_order(kv: KVStore) -> None:
    heights = [0, 1, 255, 256, 65535, 2**32, 2**63]
    kv.write({b"h/" + h.to_bytes(8, "big"): b"" for h in reversed(heights)})
    assert [int.from_bytes(k[2:], "big") for k, _ in kv.iterate(b"h/")] == heights


# -- write semantics and atomicity -------------------------------------------------------


def test_write_accepts_mapping_and_pairs(kv: KVStore) -> None:
    kv.write({b"m": b"1"})
    kv.write([(b"p", b"2")])
    kv.write(((k, v) for k, v in [(b"g", b"3")]))
    assert (kv.get(b"m"), kv.get(b"p"), kv.get(b"g")) == (b"1", b"2", b"3")


def test_deletes_are_applied_before_puts(kv: KVStore) -> None:
    kv.write({b"x": b"old", b"y": b"old"})
    kv.write({b"x": b"new"}, [b"x", b"y"])
    assert kv.get(b"x") == b"new"  # in both: the put wins
    assert kv.get(b"y") is None


def test_duplicate_puts_last_wins(kv: KVStore) -> None:
    kv.write([(b"d", b"1"), (b"d", b"2")])
    assert kv.get(b"d") == b"2"
    assert keys(kv.iterate(b"d")) == [b"d"]


@pytest.mark.parametrize(
    "puts, deletes",
    [
        ([(b"ok1", b"1"), (b"bad", "not bytes"), (b"ok2", b"2")], []),
        ([(b"ok1", b"1"), ("strkey", b"v")], []),
        ([(b"ok1", b"1"), (b"ok2", bytearray(b"x"))], []),
        ([(b"ok1", b"1")], [b"pre", 7]),
        ([(b"ok1", b"1"), (b"ok2",)], []),
    ],
    ids=["str-value", "str-key", "bytearray-value", "int-delete", "not-a-pair"],
)
def test_invalid_write_changes_nothing(kv: KVStore, puts: Any, deletes: Any) -> None:
    kv.put(b"pre", b"kept")
    with pytest.raises(TypeError):
        kv.write(puts, deletes)
    assert kv.get(b"pre") == b"kept"
    assert kv.get(b"ok1") is None and kv.get(b"ok2") is None
    assert keys(kv.iterate(b"")) == [b"pre"]


def test_input_iterable_raising_mid_way_changes_nothing(kv: KVStore) -> None:
    kv.put(b"pre", b"kept")

    def puts() -> Iterator[tuple[bytes, bytes]]:
        yield b"ok1", b"1"
        yield b"ok2", b"2"
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        kv.write(puts(), [b"pre"])
    assert list(kv.iterate(b"")) == [(b"pre", b"kept")]


def test_write_is_atomic_to_readers_on_other_threads(kv: KVStore) -> None:
    # Each write sets WIDTH keys to one value; a reader must never see them differ.
    rounds, width = 100, 256
    names = [b"pair/%03d" % i for i in range(width)]
    kv.write({n: b"0" for n in names})
    done = threading.Event()
    torn: list[set[bytes]] = []

    def writer() -> None:
        try:
            for i in range(1, rounds + 1):
                kv.write({n: str(i).encode() for n in names}, sync=False)
        finally:
            done.set()

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        thread = threading.Thread(target=writer)
        thread.start()
        while not done.is_set():
            seen = {v for _, v in kv.iterate(b"pair/")}
            if len(seen) != 1 and len(torn) < 5:
                torn.append(seen)
        thread.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert torn == []
    assert {v for _, v in kv.iterate(b"pair/")} == {str(rounds).encode()}


# -- close ---------------------------------------------------------------------------------


def test_operations_after_close_raise_store_error(kv: KVStore) -> None:
    kv.put(b"k", b"v")
    assert not kv.closed
    kv.close()
    assert kv.closed
    kv.close()  # idempotent
    with pytest.raises(StoreError):
        kv.get(b"k")
    with pytest.raises(StoreError):
        kv.put(b"k", b"v")
    with pytest.raises(StoreError):
        kv.write({}, [b"k"])
    with pytest.raises(StoreError):
        kv.iterate(b"")
    with pytest.raises(StoreError):
        kv.__enter__()


def test_open_iterator_fails_after_close(kv: KVStore) -> None:
    fill(kv)
    it = kv.iterate(b"")
    assert next(it)[0] == sorted(KEYS)[0]
    kv.close()
    with pytest.raises(StoreError):
        list(it)


def test_context_manager_closes(backend: str, tmp_path: Path) -> None:
    with new_kv(backend, tmp_path / "cm") as kv:
        kv.put(b"k", b"v")
        assert kv.get(b"k") == b"v"
    assert kv.closed


# -- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix, bound",
    [(b"", None), (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", None), (b"a\x00", b"a\x01")],
)
def test_prefix_upper_bound(prefix: bytes, bound: bytes | None) -> None:
    assert prefix_upper_bound(prefix) == bound
