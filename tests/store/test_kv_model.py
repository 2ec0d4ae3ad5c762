"""Each KVStore backend against a plain dict model under random operation sequences.

Keys are drawn from a tiny alphabet that includes 0x00 and 0xff, so prefixes overlap
constantly and the edge cases of prefix bounds (``a\\xff``, all-``\\xff`` prefixes,
``start`` outside the prefix range) come up in almost every run. The LevelDB machine
also closes and reopens the database, checking that what was written persists.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from store_factories import new_kv

from medchaind.store import KVStore

key_st = st.lists(st.sampled_from([0x00, 0x01, 0x61, 0xFE, 0xFF]), max_size=4).map(bytes)
value_st = st.binary(max_size=8)
bad_value_st = st.one_of(st.text(max_size=2), st.integers(), st.none(), st.builds(bytearray))


def model_scan(
    model: dict[bytes, bytes], prefix: bytes, start: bytes | None, reverse: bool
) -> list[tuple[bytes, bytes]]:
    keys = sorted(k for k in model if k.startswith(prefix))
    if start is not None:
        keys = [k for k in keys if (k <= start if reverse else k >= start)]
    if reverse:
        keys.reverse()
    return [(k, model[k]) for k in keys]


class KVModelMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="kvmodel-"))
        self.kv: KVStore = new_kv(self.backend, self.dir / "db")
        self.model: dict[bytes, bytes] = {}

    def teardown(self) -> None:
        self.kv.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        puts=st.dictionaries(key_st, value_st, max_size=6),
        deletes=st.lists(key_st, max_size=4),
        sync=st.booleans(),
    )
    def write(self, puts: dict[bytes, bytes], deletes: list[bytes], sync: bool) -> None:
        self.kv.write(puts, deletes, sync=sync)
        for k in deletes:
            self.model.pop(k, None)
        self.model.update(puts)

    @rule(
        puts=st.lists(st.tuples(key_st, value_st), max_size=4),
        bad=st.tuples(key_st, bad_value_st),
        at=st.integers(min_value=0, max_value=4),
        deletes=st.lists(key_st, max_size=3),
    )
    def rejected_write(
        self, puts: list[tuple[bytes, bytes]], bad: tuple[bytes, Any], at: int, deletes: list[bytes]
    ) -> None:
        puts.insert(min(at, len(puts)), bad)
        with pytest.raises(TypeError):
            self.kv.write(puts, deletes)

    @rule(key=key_st)
    def get(self, key: bytes) -> None:
        assert self.kv.get(key) == self.model.get(key)

    @rule(prefix=key_st, start=st.none() | key_st, reverse=st.booleans())
    def scan(self, prefix: bytes, start: bytes | None, reverse: bool) -> None:
        got = list(self.kv.iterate(prefix, start=start, reverse=reverse))
        assert got == model_scan(self.model, prefix, start, reverse)

    @rule(data=st.data(), reverse=st.booleans())
    def scan_from_stored_key(self, data: st.DataObject, reverse: bool) -> None:
        # start == an existing key is where inclusive/exclusive bound bugs show.
        if not self.model:
            return
        start = data.draw(st.sampled_from(sorted(self.model)))
        prefix = start[: data.draw(st.integers(min_value=0, max_value=len(start)))]
        got = list(self.kv.iterate(prefix, start=start, reverse=reverse))
        assert got == model_scan(self.model, prefix, start, reverse)

    @rule()
    def reopen(self) -> None:
        if self.backend == "leveldb":
            self.kv.close()
            self.kv = new_kv(self.backend, self.dir / "db")

    @invariant()
    def full_scan_matches(self) -> None:
        assert list(self.kv.iterate(b"")) == sorted(self.model.items())


_SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class MemoryKVModel(KVModelMachine):
    backend = "memory"


class LevelDBKVModel(KVModelMachine):
    backend = "leveldb"


TestMemoryKVAgainstModel = MemoryKVModel.TestCase
TestMemoryKVAgainstModel.settings = _SETTINGS
TestLevelDBKVAgainstModel = LevelDBKVModel.TestCase
TestLevelDBKVAgainstModel.settings = _SETTINGS
