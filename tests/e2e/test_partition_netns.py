"""A 2/2 partition made of real links: four authorities in network namespaces (issue 9).

Unlike ``test_network.py``'s partition (``admin_banPeer``: connections are closed at
once, cleanly), this one cuts links under live TCP connections, as a failed switch
does: packets to the other side vanish and connections linger. Checked: neither half
commits a height while cut, both halves say so on ``/readyz`` (503), and after the heal
commits resume, every node holds the same chain and ``/readyz`` is 200 again.

Runs only as root where ``ip netns``, veth and bridges work (skipped with the reason
otherwise); everything it creates is deleted at the end, and every wait has a deadline.
``scripts/partition.py`` runs the longer scenarios (3/1, isolated proposer, link flaps).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_kit import NetnsLab, committed_on, netns_unusable, register_tx, same_chain, submit

from medchaind.testing.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the waits below add up to 540 s at most

WHY_NOT = netns_unusable()
CHAIN = "medchain-netns"


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    if WHY_NOT is not None:
        pytest.skip(WHY_NOT)
    root = Path(tempfile.mkdtemp(prefix="mcnetns-"))
    lab = NetnsLab(root, 4, chain_id=CHAIN)
    try:
        lab.start()
        wait_until(lambda: all(len(n.call("node_peers")) >= 3 for n in lab.nodes), timeout=60,
                   what="the four authorities to connect")
        yield lab
    finally:
        lab.close()
        print(lab.logs())  # shown by pytest only when the test failed
        shutil.rmtree(root, ignore_errors=True)


def test_a_two_two_cut_commits_nothing_on_either_side_and_heals(lab: NetnsLab) -> None:
    nodes = lab.nodes
    first = submit(nodes[0], register_tx(CHAIN))
    wait_until(lambda: committed_on(nodes, [first]), timeout=60, what="a first commit on every node")
    wait_until(lambda: all(n.readyz() == (200, "ready") for n in nodes), timeout=60, what="every node ready")
    h0 = max(n.height() for n in nodes)

    lab.partition([0, 1])  # {0, 1} | {2, 3}: 2 of 4 voting power on each side
    pending = [submit(nodes[0], register_tx(CHAIN)), submit(nodes[2], register_tx(CHAIN))]

    # Conditions, not timers: every authority is deciding the next height, and each one's
    # /readyz reports that it has stayed undecided for as long as 3 rounds' timeouts take
    # (19.5 s): each half has had every chance to commit on its own. (The rounds do not
    # even advance: a round waits for 2/3+ of the prevotes before its prevote timeout.)
    def deciding(i: int) -> bool:
        s = nodes[i].call("consensus_status")
        return bool(s["started"]) and s["height"] == h0 + 1

    wait_until(lambda: all(deciding(i) for i in range(4)), timeout=60, what="both halves to start height h0+1")
    wait_until(lambda: all(n.readyz()[0] == 503 for n in nodes), timeout=120, interval=0.5,
               what="every node's /readyz to report the lost quorum")
    heights = [n.height() for n in nodes]
    assert heights == [h0] * 4, f"no half may commit without more than 2/3 of the power: {heights} vs {h0}"
    assert not committed_on(nodes[:1], pending[:1]) and not committed_on(nodes[2:3], pending[1:])
    for n in nodes:
        status, reason = n.readyz()
        assert status == 503 and reason.startswith("no quorum"), (n.ns, status, reason)

    lab.heal()
    # resuming can take a while: the connections lingered through the cut, and TCP backs
    # off its retransmissions (30-40 s after a 30 s cut, scripts/partition.py measures)
    wait_until(lambda: committed_on(nodes, pending), timeout=120, what="commits to resume after the heal")
    assert same_chain(nodes)
    wait_until(lambda: all(n.readyz() == (200, "ready") for n in nodes), timeout=60, what="every node ready again")
