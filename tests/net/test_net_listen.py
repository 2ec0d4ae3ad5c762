"""A P2P listen address that is not ours alone stops the network from starting (issue 9).

Found by use: py-libp2p sets SO_REUSEPORT on its listeners, so a second node bound the
same port and both listened (the kernel splitting inbound connections between them);
when another program held the port, py-libp2p logged Errno 98, the node came up with
``listen=[]`` and said "node ready". Now ``run()`` raises ConfigError naming the address
and the reason, as a metrics-port clash does. Real sockets on 127.0.0.1.
"""

from __future__ import annotations

import socket

import pytest
import trio
from net_kit import CHAIN, TIMEOUT, node_seed

from medchaind.errors import ConfigError
from medchaind.net.libp2p_net import Libp2pNetwork


def make(index: int, port: int) -> Libp2pNetwork:
    return Libp2pNetwork(node_seed(index, "listen"), [f"/ip4/127.0.0.1/tcp/{port}"], chain_id=CHAIN)


def held_port(*, reuseport: bool) -> socket.socket:
    """A socket listening on a free 127.0.0.1 port (the caller closes it)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:  # what py-libp2p does, i.e. what another node used to hold the port with
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


async def start_fails(net: Libp2pNetwork) -> str:
    """``net.run()`` raises ConfigError (itself, not in an exception group) before it starts."""
    with trio.fail_after(TIMEOUT), pytest.raises(ConfigError) as err:
        await net.run()  # returns only by raising: a started network serves until cancelled
    return str(err.value)


@pytest.mark.parametrize("reuseport", [False, True], ids=["plain socket", "SO_REUSEPORT socket"])
async def test_a_port_another_program_listens_on_is_a_startup_error(reuseport: bool) -> None:
    with held_port(reuseport=reuseport) as busy:
        port = busy.getsockname()[1]
        message = await start_fails(make(1, port))
    assert message.startswith(f"p2p.listen /ip4/127.0.0.1/tcp/{port}: Address already in use")
    assert "another medchaind" in message and "free port" in message


async def test_a_second_node_on_the_same_port_does_not_start() -> None:
    with held_port(reuseport=False) as probe:
        port = probe.getsockname()[1]
    first = make(1, port)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            await nursery.start(first.run)
        assert first.listen_addrs() == [f"/ip4/127.0.0.1/tcp/{port}/p2p/{first.peer_id}"]
        message = await start_fails(make(2, port))
        assert f"tcp/{port}: Address already in use" in message
        # the first node is unaffected and still the only listener
        assert first.listen_addrs() == [f"/ip4/127.0.0.1/tcp/{port}/p2p/{first.peer_id}"]
        nursery.cancel_scope.cancel()


async def test_an_address_this_host_does_not_have_is_a_startup_error() -> None:
    net = Libp2pNetwork(node_seed(3, "listen"), ["/ip4/192.0.2.1/tcp/26656"], chain_id=CHAIN)  # TEST-NET-1
    message = await start_fails(net)
    assert message.startswith("p2p.listen /ip4/192.0.2.1/tcp/26656: Cannot assign requested address")


async def test_a_node_restarted_on_its_port_binds_again() -> None:
    """SO_REUSEADDR stays: connections of the previous run in TIME_WAIT do not block it."""
    with held_port(reuseport=False) as probe:
        port = probe.getsockname()[1]
    for _ in range(2):
        net = make(1, port)
        async with trio.open_nursery() as nursery:
            with trio.fail_after(TIMEOUT):
                await nursery.start(net.run)
                peer = Libp2pNetwork(
                    node_seed(5, "listen"), ["/ip4/127.0.0.1/tcp/0"], bootstrap=net.listen_addrs(), chain_id=CHAIN
                )
                await nursery.start(peer.run)
                await net.wait_peers(1)
            nursery.cancel_scope.cancel()  # the node stops first: its side of the connection waits in TIME_WAIT
