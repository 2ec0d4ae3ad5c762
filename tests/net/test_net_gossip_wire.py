"""Libp2pNetwork's transport economies: yamux credit, message ids, duplicates, wire counters.

The yamux credit rule is checked on a stand-in stream (a table of reads); the rest on
real nodes on 127.0.0.1, each wait a condition inside ``trio.fail_after``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest
import trio
from libp2p.pubsub.pb import rpc_pb2
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from net_kit import TIMEOUT, Cluster, cluster, node_seed

from medchaind.net import PeerId
from medchaind.net.libp2p_net import (
    Libp2pNetwork,
    _ContentMessageCache,
    content_message_id,
)
from medchaind.net.libp2p_yamux import credit_after_half_window
from medchaind.testing.wait import poll_until

KiB = 1024
WINDOW = 256 * KiB
TOPIC = "block/1"
BULK = "tx/1"


@dataclass
class _Conn:
    stream_buffers: dict[int, bytearray] = field(default_factory=dict)


@dataclass
class _Stream:
    """What ``credit_after_half_window`` uses of a YamuxStream."""

    conn: _Conn
    stream_id: int = 1
    target_recv_window: int = WINDOW
    recv_window: int = WINDOW
    window_lock: trio.Lock = field(default_factory=trio.Lock)
    updates: list[int] = field(default_factory=list)

    def _apply_autotune_epoch(self, buffered: int) -> int:
        return 0

    async def send_window_update(self, increment: int, skip_lock: bool = False) -> None:
        self.updates.append(increment)


def test_the_yamux_credit_rule_is_installed() -> None:
    assert YamuxStream._auto_tune_and_send_window_update is credit_after_half_window


@pytest.mark.parametrize(
    ("arrivals_and_reads", "updates"),
    [
        # a gossip RPC of 1 KiB: varint bytes then the body; no update (py-libp2p sent 3)
        ([(1026, 1), (0, 1), (0, 1024)], []),
        # reads add up: the update comes when half the window has been read, and gives it all
        ([(100 * KiB, 100 * KiB), (28 * KiB, 27 * KiB), (0, 1 * KiB)], [128 * KiB]),
        # a 1 MiB message through a 256 KiB window: one update per half window read
        ([(WINDOW, 64 * KiB)] + [(0, 64 * KiB)] * 3, [128 * KiB, 128 * KiB]),
        # nothing read (a refused request): no credit, however much is buffered
        ([(WINDOW, 0)], []),
    ],
)
async def test_credit_is_given_once_half_the_window_is_read(
    arrivals_and_reads: list[tuple[int, int]], updates: list[int]
) -> None:
    conn = _Conn({1: bytearray()})
    stream = _Stream(conn)
    for arrived, read in arrivals_and_reads:
        conn.stream_buffers[1].extend(b"x" * arrived)
        stream.recv_window -= arrived  # what Yamux.handle_incoming does
        del conn.stream_buffers[1][:read]
        await credit_after_half_window(stream, bytes_read=read)  # type: ignore[arg-type]
    assert stream.updates == updates
    # the credit never exceeds what was read: the sender's window stays within the target
    assert stream.recv_window + len(conn.stream_buffers[1]) <= stream.target_recv_window


def test_the_message_cache_is_keyed_by_the_content_id() -> None:
    cache = _ContentMessageCache(3, 5, content_message_id)
    msg = rpc_pb2.Message(data=b"batch", topicIDs=["t"], from_id=b"origin", seqno=(7).to_bytes(8, "big"))
    cache.put(msg)
    cache.put(msg)
    mid = hashlib.sha256(b"batch").digest()
    assert cache.get(mid) is msg
    assert cache.get(b"origin" + (7).to_bytes(8, "big")) is None  # py-libp2p's default key
    assert cache.window("t") == [mid]


async def _publish_from_node_0(
    net: Cluster, topic: str, payloads: list[bytes]
) -> list[trio.MemoryReceiveChannel[tuple[PeerId, bytes]]]:
    """Subscribe every node, publish ``payloads`` from node 0, wait until every other
    node has received each of them; return the inboxes."""
    inboxes = net.subscribe_all(topic)
    await net.wait_topic(topic)
    for data in payloads:
        await net[0].publish(topic, data)
    with trio.fail_after(TIMEOUT):
        for inbox in inboxes[1:]:
            got = [await inbox.receive() for _ in payloads]
            assert sorted(data for _, data in got) == sorted(payloads)
    return inboxes


async def test_duplicates_on_a_full_mesh_are_counted_and_delivered_once() -> None:
    """3 nodes, all connected: each batch reaches a receiver from its publisher and again
    from the third node; the copy is counted as a duplicate and delivered once."""
    async with cluster("libp2p", 3, salt="wire") as net:
        payloads = [bytes([i]) * (100 * KiB) for i in range(1, 5)]
        inboxes = await _publish_from_node_0(net, TOPIC, payloads)
        with trio.fail_after(TIMEOUT):
            # the third node's copies come after the deliveries: wire counters notify nothing
            await poll_until(
                lambda: all(n.statistics().topics[TOPIC].wire_received >= 2 * len(payloads) for n in net.nodes[1:])
            )
        for node, inbox in zip(net.nodes[1:], inboxes[1:], strict=True):
            stats = node.statistics().topics[TOPIC]
            assert stats.received == len(payloads)
            assert stats.wire_received == 2 * len(payloads)
            assert stats.duplicates == len(payloads)
            assert stats.wire_bytes == 2 * sum(map(len, payloads))
            with pytest.raises(trio.WouldBlock):
                inbox.receive_nowait()
        assert net[0].statistics().topics[TOPIC].wire_received == 0  # peers never send us our own


async def test_bulk_messages_on_a_full_mesh_are_announced_not_pushed_again() -> None:
    """A bulk topic (tx batches): a receiver announces what it forwards (IHAVE) instead of
    pushing it, so every batch is delivered once and most second copies never travel."""
    async with cluster("libp2p", 4, salt="wire-bulk") as net:
        for node in net.nodes:
            node.set_bulk_topic(BULK)  # type: ignore[attr-defined]
        payloads = [bytes([i]) * (100 * KiB) for i in range(1, 9)]
        inboxes = await _publish_from_node_0(net, BULK, payloads)
        wire = duplicates = 0
        for node, inbox in zip(net.nodes[1:], inboxes[1:], strict=True):
            stats = node.statistics().topics[BULK]
            assert stats.received == len(payloads)
            assert stats.wire_received == len(payloads) + stats.duplicates
            wire += stats.wire_received
            duplicates += stats.duplicates
            with pytest.raises(trio.WouldBlock):
                inbox.receive_nowait()
        # eager forwarding makes each of the 3 receivers get each batch 3 times (2
        # duplicates: 48 here); only an IHAVE that overtakes the publisher's own copy
        # still brings one
        assert duplicates <= 3 * len(payloads), (wire, duplicates)


async def test_a_line_still_relays_large_messages() -> None:
    """a - b - c (an observer behind one authority): c gets a's batches through b,
    pushed (a normal topic) or announced and fetched (a bulk topic, see above)."""
    seeds = [node_seed(i, "wire-line") for i in range(3)]
    a = Libp2pNetwork(seeds[0], ["/ip4/127.0.0.1/tcp/0"], chain_id="test-chain")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        b = Libp2pNetwork(seeds[1], ["/ip4/127.0.0.1/tcp/0"], bootstrap=a.listen_addrs(), chain_id="test-chain")
        await nursery.start(b.run)
        c = Libp2pNetwork(seeds[2], ["/ip4/127.0.0.1/tcp/0"], bootstrap=b.listen_addrs(), chain_id="test-chain")
        for node in (a, b, c):
            node.set_bulk_topic(BULK)
        a.subscribe(TOPIC)
        b.subscribe(TOPIC)
        at_c = c.subscribe(TOPIC)
        a.subscribe(BULK)
        b.subscribe(BULK)
        bulk_at_c = c.subscribe(BULK)
        await nursery.start(c.run)
        with trio.fail_after(TIMEOUT):
            await b.wait_topic_peers(TOPIC, 2)
            await c.wait_topic_peers(TOPIC, 1)
            await a.wait_topic_peers(TOPIC, 1)
            await b.wait_topic_peers(BULK, 2)
            await c.wait_topic_peers(BULK, 1)
            await a.wait_topic_peers(BULK, 1)
        assert a.peer_id not in c.connected_peers()
        payloads = [bytes([i]) * (700 * KiB) for i in range(1, 4)]
        for data in payloads:
            await a.publish(TOPIC, data)
            await a.publish(BULK, data + b"bulk")
        with trio.fail_after(TIMEOUT):
            got = [await at_c.receive() for _ in payloads]
            bulk_got = sorted([await bulk_at_c.receive() for _ in payloads])
        assert got == [(a.peer_id, data) for data in payloads]
        assert bulk_got == sorted((a.peer_id, data + b"bulk") for data in payloads)
        for topic in (TOPIC, BULK):
            assert c.statistics().topics[topic].duplicates == 0
        nursery.cancel_scope.cancel()
