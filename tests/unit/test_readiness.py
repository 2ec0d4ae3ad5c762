"""``/readyz``: the node can serve and follow the chain (issue 9, readiness gap).

Found by use: ``/readyz`` answered 200 with the quorum lost (two of four authorities
down or cut off), and with no P2P listener at all. ``Node.readiness`` is driven here
through stand-ins for the node's parts, one case per rule of
:func:`medchaind.node.metrics.assess_readiness`; ``tests/e2e/test_readiness.py`` checks
the same on real processes. Authorities are named "A".."D" (equal power 1) as in
geth's clique tests; "OBS" is an observer.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing

import medchaind.node.node as node_mod
from medchaind.errors import MedchainError
from medchaind.net.libp2p_net import peer_id_from_public_key
from medchaind.node.config import ConsensusSection
from medchaind.node.metrics import stall_after_s
from medchaind.node.node import Node
from medchaind.testing.appkit import pub

A, B, C, D, OBS = (pub(n) for n in "ABCDO")
FOUR = {A: 1, B: 1, C: 1, D: 1}
STALL_S = stall_after_s(ConsensusSection())  # 19.5 s: 3 rounds of default timeouts


class FakeNet:
    """A libp2p network as readiness sees it: listen addresses and connected peers."""

    def __init__(self, peers: list[bytes], listening: bool = True) -> None:
        self.peers = [peer_id_from_public_key(k) for k in peers]
        self.listening = listening
        self.stopped = False

    def listen_addrs(self) -> list[str]:
        if self.stopped:
            raise MedchainError("not running")
        return ["/ip4/10.0.0.1/tcp/26656/p2p/x"] if self.listening else []

    def connected_peers(self) -> list[str]:
        return self.peers


class MemoryNet:
    """No P2P network configured (a chain the node decides alone): no listen_addrs."""

    def connected_peers(self) -> list[str]:
        return []


def node(me: bytes, net: Any, powers: dict[bytes, int] | None = None, *, syncing: bool = False,
         deciding: bool = False, height: int = 7, round: int = 0, started: bool = True,
         undecided_for: float | None = None) -> Any:
    ev = trio.Event()
    if started:
        ev.set()
    n = SimpleNamespace(
        started=ev, sync=SimpleNamespace(syncing=syncing), net=net, keys=SimpleNamespace(public_key=me),
        ledger=SimpleNamespace(tip=SimpleNamespace(powers=FOUR if powers is None else powers)),
        engine=SimpleNamespace(status=lambda: {"started": deciding, "height": height, "round": round}),
        config=SimpleNamespace(consensus=ConsensusSection()),
    )
    n.undecided_for = undecided_for
    return n


def ready(n: Any) -> tuple[bool, str]:
    if getattr(n, "undecided_for", None) is not None:  # an earlier probe saw the height that long ago
        height = n.engine.status()["height"]
        n._undecided_since = (height, node_mod.time.monotonic() - n.undecided_for)
        n.undecided_for = None
    return Node.readiness(n)  # type: ignore[arg-type]


NO_QUORUM_2_OF_4 = (False, "no quorum: connected authorities hold 2 of 4 voting power (more than 2/3 needed)")

CASES = [
    # A sees B and C: 3 of 4 voting power with itself, idle
    ("quorum connected, idle", node(A, FakeNet([B, C])), (True, "ready")),
    # A sees everyone; the height has taken 5 s (B, round 0's proposer, was slow)
    ("quorum, one failed round", node(A, FakeNet([B, C, D]), deciding=True, round=1, undecided_for=5),
     (True, "ready")),
    # the 2/2 partition, cut cleanly: A sees only B -- 2 of 4 is not more than 2/3
    ("partition 2/2", node(A, FakeNet([B])), NO_QUORUM_2_OF_4),
    # two authorities crashed, A sees C only (and the observer, which has no power)
    ("two authorities down", node(A, FakeNet([C, OBS])), NO_QUORUM_2_OF_4),
    # connections linger (a link that silently drops packets) but the height stays
    # undecided -- in round 0: without 2/3+ prevotes a round never times out
    ("stalled height", node(A, FakeNet([B, C, D]), deciding=True, height=12, undecided_for=100),
     (False, "no quorum: height 12 undecided for 100s")),
    # idle: nothing to decide, whatever an earlier probe saw
    ("idle after a stall", node(A, FakeNet([B, C]), deciding=False, undecided_for=100), (True, "ready")),
    # weighted power: A (3) with B (1) is 4 of 6 = exactly 2/3: not enough
    ("exactly two thirds", node(A, FakeNet([B]), {A: 3, B: 1, C: 2}),
     (False, "no quorum: connected authorities hold 4 of 6 voting power (more than 2/3 needed)")),
    ("observer with a peer", node(OBS, FakeNet([A])), (True, "ready")),
    ("observer without peers", node(OBS, FakeNet([])), (False, "no peers")),
    ("authority without peers", node(A, FakeNet([])), (False, "no peers")),
    ("not listening", node(A, FakeNet([B, C, D], listening=False)), (False, "not listening: no P2P listener")),
    ("syncing", node(A, FakeNet([B, C, D]), syncing=True), (False, "syncing")),
    ("starting", node(A, FakeNet([B, C, D]), started=False), (False, "starting")),
    # one authority, no P2P network: it is its own quorum
    ("dev chain", node(A, MemoryNet(), {A: 1}), (True, "ready")),
    # one authority with a P2P network for observers, none connected yet
    ("lone authority, networked", node(A, FakeNet([]), {A: 1}), (True, "ready")),
    # an authority of four without a network cannot decide anything
    ("no network, 1 of 4", node(A, MemoryNet()),
     (False, "no quorum: connected authorities hold 1 of 4 voting power (more than 2/3 needed)")),
]


@pytest.mark.parametrize(("case", "n", "expected"), CASES, ids=[c[0] for c in CASES])
def test_readiness(case: str, n: Any, expected: tuple[bool, str]) -> None:
    assert ready(n) == expected


def test_a_height_counts_as_stalled_from_the_first_probe_that_saw_it(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(node_mod.time, "monotonic", lambda: now[0])
    status = {"started": True, "height": 12, "round": 0}
    n = node(A, FakeNet([B, C, D]))
    n.engine = SimpleNamespace(status=lambda: status)
    assert ready(n) == (True, "ready")  # first seen deciding 12: the clock starts
    now[0] += STALL_S
    assert ready(n) == (True, "ready")
    now[0] += 1
    assert ready(n) == (False, "no quorum: height 12 undecided for 20s")
    status["height"] = 13  # it committed: the next height starts its own clock
    assert ready(n) == (True, "ready")
    now[0] += STALL_S + 1
    status["started"] = False  # idle: nothing to decide
    assert ready(n) == (True, "ready")
    status["started"] = True  # a tx arrives hours later: a fresh clock, no false alarm
    assert ready(n) == (True, "ready")


def test_the_stall_window_follows_the_consensus_timeouts() -> None:
    assert STALL_S == 19.5
    slow = ConsensusSection(timeout_propose_ms=10_000, timeout_propose_delta_ms=0, timeout_prevote_ms=0,
                            timeout_prevote_delta_ms=0, timeout_precommit_ms=0, timeout_precommit_delta_ms=0)
    assert stall_after_s(slow) == 30.0


def test_a_network_shutting_down_is_not_listening() -> None:
    net = FakeNet([B, C, D])
    n = node(A, net)
    assert ready(n) == (True, "ready")
    net.stopped = True
    assert ready(n) == (False, "not listening: no P2P listener")


async def test_the_metrics_server_samples_readiness_between_probes(autojump_clock: trio.testing.MockClock) -> None:
    """So that a stall is timed from when it began, not from the first probe after it."""
    from medchaind.node.metrics import READINESS_SAMPLE_S, MetricsServer

    calls: list[float] = []

    def ready() -> tuple[bool, str]:
        calls.append(trio.current_time())
        if len(calls) == 2:
            raise RuntimeError("a readiness bug")  # logged once; sampling (and the node) go on
        return True, "ready"

    server = MetricsServer.__new__(MetricsServer)
    server.ready = ready
    with trio.move_on_after(5 * READINESS_SAMPLE_S + 0.5):
        await server._sample_readiness()
    assert len(calls) == 6 and calls[-1] - calls[0] == 5 * READINESS_SAMPLE_S
