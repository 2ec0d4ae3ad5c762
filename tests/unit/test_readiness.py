"""``/readyz``: the node can serve and follow the chain (issue 9, readiness gap).

Found by use: ``/readyz`` answered 200 with the quorum lost (two of four authorities
down or cut off), and with no P2P listener at all. ``Node.readiness`` is driven here
through stand-ins for the node's parts, one case per rule of
:func:`medchaind.node.metrics.assess_readiness`; ``tests/e2e/test_readiness.py`` checks
the same on real processes. Authorities are named "A".."D" (equal power 1) as in
geth's clique tests; "O" is an observer.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import trio

from medchaind.errors import MedchainError
from medchaind.net.libp2p_net import peer_id_from_public_key
from medchaind.node.metrics import STALLED_ROUNDS
from medchaind.node.node import Node
from medchaind.testing.appkit import pub

A, B, C, D, O = (pub(n) for n in "ABCDO")
FOUR = {A: 1, B: 1, C: 1, D: 1}


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
         deciding: bool = False, height: int = 7, round: int = 0, started: bool = True) -> Any:
    ev = trio.Event()
    if started:
        ev.set()
    return SimpleNamespace(
        started=ev, sync=SimpleNamespace(syncing=syncing), net=net, keys=SimpleNamespace(public_key=me),
        ledger=SimpleNamespace(tip=SimpleNamespace(powers=FOUR if powers is None else powers)),
        engine=SimpleNamespace(status=lambda: {"started": deciding, "height": height, "round": round}),
    )


def ready(n: Any) -> tuple[bool, str]:
    return Node.readiness(n)  # type: ignore[arg-type]


CASES = [
    # A sees B and C: 3 of 4 voting power with itself, idle
    ("quorum connected, idle", node(A, FakeNet([B, C])), (True, "ready")),
    # A sees everyone and the height is being decided in round 1 (B, its proposer, was slow)
    ("quorum, one failed round", node(A, FakeNet([B, C, D]), deciding=True, round=1), (True, "ready")),
    # the 2/2 partition: A sees only B -- 2 of 4 is not more than 2/3
    ("partition 2/2", node(A, FakeNet([B])),
     (False, "no quorum: connected authorities hold 2 of 4 voting power (more than 2/3 needed)")),
    # two authorities crashed, A sees C only (and the observer, which has no power)
    ("two authorities down", node(A, FakeNet([C, O])),
     (False, "no quorum: connected authorities hold 2 of 4 voting power (more than 2/3 needed)")),
    # connections linger (a link that silently drops packets) but the height keeps failing
    ("stalled height", node(A, FakeNet([B, C, D]), deciding=True, height=12, round=STALLED_ROUNDS),
     (False, f"no quorum: height 12 undecided after {STALLED_ROUNDS} rounds")),
    # a stale round number while idle says nothing
    ("idle, old round", node(A, FakeNet([B, C]), deciding=False, round=9), (True, "ready")),
    # weighted power: A (3) with B (1) is 4 of 6 = exactly 2/3: not enough
    ("exactly two thirds", node(A, FakeNet([B]), {A: 3, B: 1, C: 2}),
     (False, "no quorum: connected authorities hold 4 of 6 voting power (more than 2/3 needed)")),
    ("observer with a peer", node(O, FakeNet([A])), (True, "ready")),
    ("observer without peers", node(O, FakeNet([])), (False, "no peers")),
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


def test_a_network_shutting_down_is_not_listening() -> None:
    net = FakeNet([B, C, D])
    n = node(A, net)
    assert ready(n) == (True, "ready")
    net.stopped = True
    assert ready(n) == (False, "not listening: no P2P listener")
