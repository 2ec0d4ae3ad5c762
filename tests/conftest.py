"""Suite-wide fixtures.

``codec.encode_built`` skips :func:`codec.encode`'s data-model walk on the promise that
its caller built the value in canonical key order from data-model items; a broken
promise would store non-canonical bytes silently. Every test therefore runs with a
version that encodes both ways and fails on any difference (or on a value ``encode``
refuses), so each handler path the suite reaches proves its ``put_built`` sites.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from medchaind import codec

_encode_built = codec.encode_built


def checked_encode_built(obj: Any) -> bytes:
    fast = _encode_built(obj)
    slow = codec.encode(obj)
    assert fast == slow, f"encode_built differs from encode (a map out of canonical order?): {obj!r:.300}"
    return fast


@pytest.fixture(autouse=True)
def _check_encode_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(codec, "encode_built", checked_encode_built)
    yield
