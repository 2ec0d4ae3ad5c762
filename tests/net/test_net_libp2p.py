"""Libp2pNetwork only: identity, permissioning, reconnects, shutdown, PSK, forwarding.

Real sockets on 127.0.0.1 and the real clock: every wait is a condition inside
``trio.fail_after``; no test sleeps for a fixed time to let something happen.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.peer.id import ID
from net_kit import CHAIN, TIMEOUT, Cluster, node_seed

from medchaind.crypto import SigningKey
from medchaind.errors import ConfigError
from medchaind.net import MessageTooLarge, NetLimits, NetworkError, PeerId, PeerUnreachable
from medchaind.net.libp2p_net import Libp2pNetwork, _BufferedRawConn, peer_id_from_public_key
from medchaind.net.libp2p_yamux import MedchainYamux
from medchaind.testing.wait import poll_until

LOCAL = ["/ip4/127.0.0.1/tcp/0"]
TOPIC = "block/1"


def make(index: int, *, bootstrap: list[str] | None = None, **kwargs: object) -> Libp2pNetwork:
    return Libp2pNetwork(node_seed(index, "libp2p"), LOCAL, bootstrap=bootstrap or [], chain_id=CHAIN, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def running(*nodes: Libp2pNetwork) -> AsyncIterator[Cluster]:
    """Start ``nodes`` in order (so later ones may bootstrap to earlier ones); stop on exit."""
    async with trio.open_nursery() as nursery:
        group = Cluster(nursery, list(nodes))
        for i in range(len(nodes)):
            await group.start(i)
        try:
            yield group
        finally:
            nursery.cancel_scope.cancel()


def peer_of(index: int) -> PeerId:
    """The peer id node ``index`` will have (derived from its key, as for authorities)."""
    return peer_id_from_public_key(SigningKey(node_seed(index, "libp2p")).public_key)


async def echo(peer: PeerId, data: bytes) -> bytes:
    return data


async def test_peer_id_derives_from_the_ed25519_node_key() -> None:
    a = make(1)
    assert a.peer_id == peer_of(1)
    assert a.peer_id.startswith("12D3KooW")  # identity multihash of an Ed25519 key
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs())
        c.nodes.append(b)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            await b.wait_peers(1)
        # The peer id the remote authenticated (Noise) is the one derived from the key.
        assert b.connected_peers() == [peer_of(1)]
        # Both ends multiplex with the yamux whose read loop never waits for a write.
        for node, other in ((a, b), (b, a)):
            assert node._state is not None
            conns = node._state.host.get_network().get_connections(ID.from_base58(other.peer_id))
            assert conns and all(isinstance(conn.muxed_conn, MedchainYamux) for conn in conns)
            # Noise reads through the buffered raw connection (one receive for many frames)
            assert all(isinstance(conn.muxed_conn.secured_conn.conn.read_writer.read_write_closer,
                                  _BufferedRawConn) for conn in conns)
        assert all(addr.endswith(f"/p2p/{a.peer_id}") for addr in a.listen_addrs())
    with pytest.raises(ValueError):
        peer_id_from_public_key(b"\x00" * 31)


async def test_allowlist_refuses_other_peers_in_both_directions() -> None:
    a = make(1, allowlist={peer_of(2)})
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs())
        outsider = make(3, bootstrap=a.listen_addrs())
        c.nodes.extend([b, outsider])
        await c.start(1)
        await c.start(2)
        with trio.fail_after(TIMEOUT):
            await a.wait_peers(1)
            # Inbound: the outsider keeps dialling (bootstrap) and is refused at the handshake.
            await poll_until(lambda: a.statistics().connections_refused >= 2)
        assert a.connected_peers() == [b.peer_id]
        assert outsider.connected_peers() == []
        with pytest.raises(PeerUnreachable, match="allowlist"):
            await a.request(outsider.peer_id, "echo/1", b"x")

        # Outbound: a node connected to the outsider drops it when its allowlist changes and
        # stops redialling it (a dial would only be refused); allowed again, it reconnects.
        d = make(4, bootstrap=outsider.listen_addrs())
        c.nodes.append(d)
        await c.start(3)
        with trio.fail_after(TIMEOUT):
            await d.wait_peers(1)
            d.set_allowlist({b.peer_id})
            await poll_until(lambda: not d.connected_peers())
        assert outsider.peer_id not in d.connected_peers()
        assert d.statistics().connections_refused == 0  # no redial against its own allowlist
        with trio.fail_after(TIMEOUT):
            d.set_allowlist({b.peer_id, outsider.peer_id})
            await d.wait_peers(1)
        assert d.connected_peers() == [outsider.peer_id]


def test_configuration_errors_say_what_is_wrong() -> None:
    seed = node_seed(1, "libp2p")
    with pytest.raises(ConfigError, match="32 bytes"):
        Libp2pNetwork(b"short", LOCAL)
    with pytest.raises(ConfigError, match="psk"):
        Libp2pNetwork(seed, LOCAL, psk=b"too short")
    with pytest.raises(ConfigError, match="/p2p/"):
        Libp2pNetwork(seed, LOCAL, bootstrap=["/ip4/127.0.0.1/tcp/1"])
    with pytest.raises(ConfigError, match="not a valid multiaddr"):
        Libp2pNetwork(seed, ["not-an-address"])
    other = make(2)
    with pytest.raises(ConfigError, match="not on the allowlist"):
        Libp2pNetwork(seed, LOCAL, bootstrap=[f"/ip4/127.0.0.1/tcp/1/p2p/{other.peer_id}"], allowlist=set())


async def test_bootstrap_reconnects_after_the_peer_restarts() -> None:
    a = make(1)
    async with running(a) as c:
        listen = a.listen_addrs()[0]
        port = listen.split("/tcp/")[1].split("/")[0]
        b = make(2, bootstrap=[listen])
        inbox = b.subscribe(TOPIC)
        c.nodes.append(b)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            await b.wait_peers(1)
        await c.stop(0)
        with trio.fail_after(TIMEOUT):
            await poll_until(lambda: not b.connected_peers())
        # Same key, same port: the bootstrap address b holds is valid again.
        restarted = Libp2pNetwork(node_seed(1, "libp2p"), [f"/ip4/127.0.0.1/tcp/{port}"], chain_id=CHAIN)
        c.nodes[0] = restarted
        await c.start(0)
        with trio.fail_after(TIMEOUT):
            await b.wait_peers(1)
            await restarted.wait_topic_peers(TOPIC, 1)
        assert b.connected_peers() == [restarted.peer_id]
        await restarted.publish(TOPIC, b"back")
        with trio.fail_after(TIMEOUT):
            assert await inbox.receive() == (restarted.peer_id, b"back")


async def test_clean_shutdown_with_connected_peers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    threads_before = threading.active_count()
    for round_no in range(5):
        caplog.clear()
        async with trio.open_nursery() as nursery:
            nodes: list[Libp2pNetwork] = []
            addrs: list[str] = []
            for i in range(3):
                node = Libp2pNetwork(node_seed(i, f"shutdown-{round_no}"), LOCAL, bootstrap=list(addrs), chain_id=CHAIN)
                node.subscribe(TOPIC)
                node.set_handler("echo/1", echo)
                await nursery.start(node.run)
                addrs.extend(node.listen_addrs())
                nodes.append(node)
            with trio.fail_after(TIMEOUT):
                for node in nodes:
                    await node.wait_peers(2)
                    await node.wait_topic_peers(TOPIC, 2)
                await nodes[2].publish(TOPIC, b"in flight at shutdown")
                assert await nodes[1].request(nodes[0].peer_id, "echo/1", b"x") == b"x"
            started = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - started < 10
        assert all(node.connected_peers() == [] for node in nodes)
        problems = [
            r.getMessage()
            for r in caplog.records
            if r.levelno >= logging.ERROR or "Nursery is closed" in r.getMessage()
        ]
        assert problems == [], f"round {round_no}: {problems}"
    assert threading.active_count() <= threads_before + 1  # seen-cache sweeper threads are stopped


async def test_private_network_psk() -> None:
    psk = bytes(range(32))
    a = make(1, psk=psk)
    async with running(a) as c:
        member = make(2, bootstrap=a.listen_addrs(), psk=psk)
        stranger = make(3, bootstrap=a.listen_addrs(), psk=bytes(32))
        open_node = make(4, bootstrap=a.listen_addrs())
        c.nodes.extend([member, stranger, open_node])
        a.set_handler("echo/1", echo)
        for i in (1, 2, 3):
            await c.start(i)
        failures: list[NetworkError] = []

        async def knock(outsider: Libp2pNetwork) -> None:
            # A PSK mismatch stalls the handshake (both sides read ciphertext as
            # multistream-select) until a timeout; it never connects.
            try:
                await outsider.request(a.peer_id, "echo/1", b"let me in", timeout=1.0)
            except NetworkError as exc:
                failures.append(exc)

        with trio.fail_after(TIMEOUT):
            await member.wait_peers(1)
            assert await member.request(a.peer_id, "echo/1", b"inside") == b"inside"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(knock, stranger)
                nursery.start_soon(knock, open_node)
        assert len(failures) == 2
        assert a.connected_peers() == [member.peer_id]
        assert stranger.connected_peers() == [] and open_node.connected_peers() == []


async def test_rejected_messages_are_not_forwarded() -> None:
    """Line a - b - c: b's validator rejects, so c never sees what a published."""
    a = make(1)
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs())
        c.nodes.append(b)
        await c.start(1)
        tail = make(3, bootstrap=b.listen_addrs())
        c.nodes.append(tail)
        a.subscribe(TOPIC)
        b.subscribe(TOPIC, lambda origin, data: not data.startswith(b"bad"))
        at_tail = tail.subscribe(TOPIC)
        await c.start(2)
        with trio.fail_after(TIMEOUT):
            await b.wait_peers(2)
            await a.wait_topic_peers(TOPIC, 1)
            await b.wait_topic_peers(TOPIC, 2)
            await tail.wait_topic_peers(TOPIC, 1)
        assert a.peer_id not in tail.connected_peers()
        await a.publish(TOPIC, b"bad: must stop at b")
        await a.publish(TOPIC, b"good: relayed by b")
        with trio.fail_after(TIMEOUT):
            assert await at_tail.receive() == (a.peer_id, b"good: relayed by b")
        with pytest.raises(trio.WouldBlock):
            at_tail.receive_nowait()
        assert b.statistics().rejected_by_validator == 1
        assert tail.statistics().rejected_by_validator == 0


async def test_receiver_enforces_its_own_request_limit() -> None:
    strict = make(1, limits=NetLimits(max_request_size=1024))
    async with running(strict) as c:
        lenient = make(2, bootstrap=strict.listen_addrs(), limits=NetLimits(max_request_size=1 << 20))
        c.nodes.append(lenient)
        strict.set_handler("echo/1", echo)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            with pytest.raises(MessageTooLarge, match="max_request_size=1024"):
                await lenient.request(strict.peer_id, "echo/1", b"x" * 2048)
            assert await lenient.request(strict.peer_id, "echo/1", b"x" * 1024) == b"x" * 1024
        assert strict.statistics().requests_errored == 1


async def test_default_limits_carry_a_4_mib_gossip_message_and_large_requests() -> None:
    """py-libp2p's own defaults cap an RPC at 1 MiB (RpcQueue.max_message_size and
    Pubsub.max_inbound_rpc_size); the adapter raises both to fit max_gossip_size."""
    a = make(1)
    a.subscribe(TOPIC)
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs())
        inbox = b.subscribe(TOPIC)
        c.nodes.append(b)
        a.set_handler("blob/1", echo)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            await a.wait_topic_peers(TOPIC, 1)
        block = bytes(range(256)) * (4 * 1024 * 4)  # exactly 4 MiB, the default limit
        await a.publish(TOPIC, block)
        blob = b"\x5a" * (16 * 1024 * 1024)
        with trio.fail_after(TIMEOUT):
            assert await inbox.receive() == (a.peer_id, block)
            assert await b.request(a.peer_id, "blob/1", blob) == blob
        assert a.statistics().dropped_outbound == 0


async def test_a_malformed_pubsub_rpc_resets_that_stream_and_nothing_else() -> None:
    """A peer (buggy or hostile) that writes garbage on the gossipsub protocol: py-libp2p's
    unhandled protobuf DecodeError used to end the connection's swarm task and the node."""
    from libp2p.peer.id import ID
    from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11

    a = make(1)
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs())
        inbox = a.subscribe(TOPIC)
        b.subscribe(TOPIC)
        c.nodes.append(b)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            await b.wait_topic_peers(TOPIC, 1)
        assert b._state is not None
        stream = await b._state.host.new_stream(ID.from_base58(a.peer_id), [PROTOCOL_ID_V11])
        await stream.write(b"\x05\xff\xff\xff\xff\xff")  # a varint length, then bytes that are not an RPC
        pubsub = a._state.pubsub  # type: ignore[union-attr]
        with trio.fail_after(TIMEOUT):
            await poll_until(lambda: pubsub.stream_failures >= 1)
        # a is still running and still hears b on its ordinary streams
        with trio.fail_after(TIMEOUT):
            await a.wait_peers(1)
            await b.wait_topic_peers(TOPIC, 1)
            while True:
                await b.publish(TOPIC, b"still here")
                with trio.move_on_after(0.5):
                    _, data = await inbox.receive()
                    assert data == b"still here"
                    break


async def test_concurrent_large_messages_arrive_whole() -> None:
    """Several messages larger than a yamux window, published at once, arrive intact.

    This checks integrity only: the interleaving that whole-message writes prevent needs
    a second writer on the same stream (gossipsub's IWANT replies or pending-message
    flushes), which this two-node setup does not force; `medchaind bench --tx-type
    records` reproduced it (docs/benchmarks.md)."""
    limits = NetLimits(max_gossip_size=4 << 20)
    a = make(1, limits=limits)
    async with running(a) as c:
        b = make(2, bootstrap=a.listen_addrs(), limits=limits)
        inbox = b.subscribe(TOPIC)
        a.subscribe(TOPIC)
        c.nodes.append(b)
        await c.start(1)
        with trio.fail_after(TIMEOUT):
            await a.wait_topic_peers(TOPIC, 1)
        payloads = [bytes([i]) * (1_500_000 + i) for i in range(6)]
        async with trio.open_nursery() as nursery:
            for p in payloads:
                nursery.start_soon(a.publish, TOPIC, p)
        got = set()
        with trio.fail_after(60):
            while len(got) < len(payloads):
                _, data = await inbox.receive()
                got.add(data)
        assert got == set(payloads)
        assert a.connected_peers() == [b.peer_id]
