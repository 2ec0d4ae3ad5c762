"""Gossip throughput of 4 in-process libp2p nodes on 127.0.0.1 (a script, not a test).

    .venv/bin/python tests/net/measure_gossip.py [--messages 2000] [--size 200] [--nodes 4] [--bulk]

Starts ``--nodes`` :class:`Libp2pNetwork` nodes (full mesh of connections, as the contract
suite builds them), then runs two rounds and prints one line per round:

* ``one-publisher``: node 0 publishes ``--messages`` messages as fast as ``publish``
  lets it; the clock stops when every other node has received all of them;
* ``all-publish``: every node publishes ``--messages / nodes`` messages concurrently; the
  clock stops when every node has received every other node's messages.

``msgs/s`` is distinct messages delivered to all subscribers per second of wall time,
CPU is this process's CPU time over the same interval (all nodes share one process and
one core, so this is a lower bound for one-process-per-node deployments). ``--bulk`` marks
the topic as bulk traffic, as TxGossip marks ``tx/1`` (lazy forwarding by IHAVE), and
adds the messages that arrived on the wire and the duplicates among them to each line.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from medchaind.net.api import PeerId  # noqa: E402
from medchaind.net.libp2p_net import Libp2pNetwork  # noqa: E402

TOPIC = "bench/1"


async def run(messages: int, size: int, nodes: int, bulk: bool = False) -> None:
    async with trio.open_nursery() as nursery:
        net: list[Libp2pNetwork] = []
        channels: list[trio.MemoryReceiveChannel[tuple[PeerId, bytes]]] = []
        addrs: list[str] = []
        for i in range(nodes):
            seed = hashlib.sha256(b"measure-gossip/%d" % i).digest()
            node = Libp2pNetwork(seed, ["/ip4/127.0.0.1/tcp/0"], bootstrap=list(addrs), chain_id="bench")
            if bulk:
                node.set_bulk_topic(TOPIC)
            channels.append(node.subscribe(TOPIC, buffer=messages + 1))
            await nursery.start(node.run)
            addrs.extend(node.listen_addrs())
            net.append(node)
        with trio.fail_after(30):
            for node in net:
                await node.wait_peers(nodes - 1)
                await node.wait_topic_peers(TOPIC, nodes - 1)

        async def consume(k: int, expected: int) -> None:
            for _ in range(expected):
                await channels[k].receive()

        def payload(publisher: int, i: int) -> bytes:
            head = b"%d:%d:%d:" % (round_no, publisher, i)
            return head + b"x" * (size - len(head))

        round_no = 0
        for name, publishers in (("one-publisher", [0]), ("all-publish", list(range(nodes)))):
            round_no += 1
            per_publisher = messages // len(publishers)

            async def publish(p: int, per_publisher: int = per_publisher) -> None:
                for i in range(per_publisher):
                    await net[p].publish(TOPIC, payload(p, i))

            start, cpu = time.perf_counter(), time.process_time()
            with trio.fail_after(300):
                async with trio.open_nursery() as inner:
                    for k in range(nodes):
                        others = sum(per_publisher for p in publishers if p != k)
                        inner.start_soon(consume, k, others)
                    for p in publishers:
                        inner.start_soon(publish, p)
            wall, used = time.perf_counter() - start, time.process_time() - cpu
            total = per_publisher * len(publishers)
            dropped = sum(n.statistics().dropped_outbound + n.statistics().dropped_full_buffer for n in net)
            wire = sum(n.statistics().wire_received for n in net)
            duplicates = sum(n.statistics().duplicates for n in net)
            print(
                f"{name:14s} nodes={nodes} size={size}B messages={total} wall={wall:.2f}s "
                f"msgs/s={total / wall:.0f} cpu={used:.2f}s dropped={dropped} "
                f"wire_received={wire} duplicates={duplicates} (both cumulative)",
                flush=True,
            )
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--bulk", action="store_true", help="mark the topic as bulk (lazy forwarding)")
    args = parser.parse_args()
    trio.run(run, args.messages, args.size, args.nodes, args.bulk)


if __name__ == "__main__":
    main()
