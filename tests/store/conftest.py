"""Fixtures for the store tests: every KVStore test runs once per backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_factories import BACKENDS, new_kv

from medchaind.store import KVStore

_REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def kv(backend: str, tmp_path: Path) -> Iterator[KVStore]:
    """A fresh, empty store of each backend, closed after the test."""
    store = new_kv(backend, tmp_path / "kv")
    yield store
    store.close()


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child Python processes that import medchaind from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env
