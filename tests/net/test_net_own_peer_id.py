"""Libp2pNetwork only: another process with this node's key is seen and reported (issue 9).

"One key, one running authority": a restored backup ran beside its original with the same
key and nothing noticed. The network layer now refuses any connection that authenticates
our own peer id and reports it (``on_identity_conflict``, ``identity_conflicts``) unless
it is this very process (a bootstrap entry that names us at an address that is ours).
The memory backend has no such case: an endpoint's name is its identity and is unique.

Real sockets on 127.0.0.1 and the real clock; every wait is a condition in fail_after.
"""

from __future__ import annotations

import logging

import pytest
import trio
from net_kit import CHAIN, TIMEOUT, Cluster, node_seed

from medchaind.net.libp2p_net import Libp2pNetwork
from medchaind.testing.nodeproc import free_port_range
from medchaind.testing.wait import poll_until

SEED = node_seed(1, "own-peer-id")


async def test_a_second_process_with_our_key_is_refused_and_reported_on_both_sides() -> None:
    reports: dict[str, list[str]] = {"first": [], "copy": []}
    first = Libp2pNetwork(SEED, ["/ip4/127.0.0.1/tcp/0"], chain_id=CHAIN,
                          on_identity_conflict=reports["first"].append)
    async with trio.open_nursery() as nursery:
        group = Cluster(nursery, [first])
        await group.start(0)
        # the copy's bootstrap list names the original: same peer id, another address
        copy = Libp2pNetwork(SEED, ["/ip4/127.0.0.1/tcp/0"], bootstrap=first.listen_addrs(), chain_id=CHAIN,
                             on_identity_conflict=reports["copy"].append)
        group.nodes.append(copy)
        await group.start(1)
        with trio.fail_after(TIMEOUT):
            await poll_until(lambda: reports["first"] and reports["copy"])
            # while the copy runs, it keeps being seen (self_probe_repeat_s)
            await poll_until(lambda: len(reports["copy"]) >= 2)
        assert copy.peer_id == first.peer_id
        assert "connected from 127.0.0.1:" in reports["first"][0]
        assert "answered at 127.0.0.1:" in reports["copy"][0] and "not this process" in reports["copy"][0]
        assert first.statistics().identity_conflicts >= 1 and copy.statistics().identity_conflicts >= 2
        assert first.connected_peers() == [] and copy.connected_peers() == []  # never kept
        nursery.cancel_scope.cancel()


async def test_our_own_listener_named_in_the_bootstrap_list_is_not_a_conflict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A shared bootstrap list names every node, this one included, at an address that is
    # not literally its listen address (0.0.0.0 vs 127.0.0.1): the probe lands on our own
    # listener, sees its own Noise key and stops without a report.
    port = free_port_range(1)
    reports: list[str] = []
    peer = Libp2pNetwork(SEED, ["/ip4/127.0.0.1/tcp/0"], chain_id=CHAIN).peer_id
    node = Libp2pNetwork(SEED, [f"/ip4/0.0.0.0/tcp/{port}"], chain_id=CHAIN,
                         bootstrap=[f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"], on_identity_conflict=reports.append)
    caplog.set_level(logging.DEBUG, logger="medchaind.net.libp2p_net")
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(TIMEOUT):
            await poll_until(lambda: "with this node's peer id is this node" in caplog.text)
        nursery.cancel_scope.cancel()
    assert reports == [] and node.statistics().identity_conflicts == 0
    assert "another process is running with this node's key" not in caplog.text
