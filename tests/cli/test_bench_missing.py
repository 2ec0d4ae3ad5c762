"""``medchaind bench``'s report on submitted txs it did not count as committed.

A run that counts fewer committed txs than it submitted asks every node what became of
a sample of the missing ones (``missing`` in the JSON): a tx one node dropped may be
pending on another and commit later. The nodes here are stand-ins for the IPC client
(the end-to-end bench runs are in docs/benchmarks.md); what is tested is the tally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medchaind.cli import bench
from medchaind.errors import RPCError

H = [bytes([i]) * 32 for i in range(5)]

#: what each node knows: tx hash -> chain_getTx's answer (absent: "not found")
NODES: dict[str, dict[bytes, dict[str, Any]]] = {
    "n0": {H[0]: {"status": "dropped", "reason": "evicted"}, H[1]: {"status": "pending"}},
    "n1": {H[0]: {"status": "pending"}, H[1]: {"status": "committed", "height": 9}},
}


class FakeClient:
    def __init__(self, path: Path, timeout: float) -> None:
        if path.name not in NODES:
            raise OSError("no such socket")
        self.known = NODES[path.name]

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def tx(self, h: bytes) -> dict[str, Any]:
        if h not in self.known:
            raise RPCError(-32602, "unknown tx")
        return self.known[h]


@pytest.fixture(autouse=True)
def fake_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "Client", FakeClient)


def test_each_node_says_what_became_of_the_missing_txs() -> None:
    report = bench.missing_report([Path("n0"), Path("n1"), Path("gone")], [H[0], H[1], H[2]])
    assert report["count"] == 3 and report["asked"] == 3
    n0, n1, gone = report["nodes"]
    assert n0 == {"dropped:evicted": 1, "pending": 1, "unknown": 1}
    assert n1 == {"pending": 1, "committed": 1, "unknown": 1}
    assert list(gone) == ["unreachable: no such socket"] and gone["unreachable: no such socket"] == 3


def test_only_a_sample_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "MISSING_SAMPLE", 2)
    report = bench.missing_report([Path("n1")], H)
    assert report == {"count": 5, "asked": 2, "nodes": [{"pending": 1, "committed": 1}]}
