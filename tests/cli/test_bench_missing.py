"""``medchaind bench``'s report on submitted txs it did not count as committed, and its
wait for the last txs, which takes a node's ``dropped`` as final only if no other node
still holds the tx.

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
    "n3": {H[0]: {"status": "dropped", "reason": "nonce_gap_expired"}},
    "n4": {},
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

    def wait_height(self, height: int, timeout_ms: int) -> None:
        return None  # no new block: the wait asks for the txs by status

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


@pytest.mark.parametrize(
    ("others", "settled"),
    [
        ([], True),  # a lone node's drop is the network's
        (["n1"], False),  # pending on the node it was submitted to: it may still commit
        (["gone"], True),  # a node that does not answer does not hold the run up
        (["n3"], True),  # dropped there too
        (["n4"], True),  # never seen there
    ],
)
def test_a_drop_settles_the_wait_only_if_no_other_node_holds_the_tx(
        monkeypatch: pytest.MonkeyPatch, others: list[str], settled: bool) -> None:
    monkeypatch.setattr(bench, "STALL_S", 0.05)
    with FakeClient(Path("n0"), timeout=1) as c:
        stalled = bench._wait_settled(c, [H[0]], 0, {}, [Path(o) for o in others])
    assert stalled is not settled


def test_a_tx_committed_on_the_asked_node_settles_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "STALL_S", 0.05)
    with FakeClient(Path("n1"), timeout=1) as c:
        assert bench._wait_settled(c, [H[1]], 0, {}, [Path("n0")]) is False
        assert bench._wait_settled(c, [H[0]], 0, {}, []) is True  # pending: the wait stalls
