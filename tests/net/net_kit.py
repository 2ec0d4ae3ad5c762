"""Clusters of connected nodes on either network backend, for the contract suite.

:func:`cluster` yields ``n`` running nodes that are all connected to each other: memory
endpoints on one :class:`MemoryNetwork` hub, or :class:`Libp2pNetwork` nodes on
127.0.0.1 where node ``i`` bootstraps to nodes ``0..i-1`` (a full mesh of connections,
dialled in one direction only). Nodes can be stopped and started again by index.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Literal

import trio

from medchaind.net import MemoryNetwork, NetLimits, NetworkAPI, PeerId

Backend = Literal["memory", "libp2p"]
BACKENDS: tuple[Backend, ...] = ("memory", "libp2p")
CHAIN = "test-chain"
TIMEOUT = 15.0  # every wait in these tests is a condition wait inside trio.fail_after(TIMEOUT)


def node_seed(index: int, salt: str = "") -> bytes:
    """The 32-byte Ed25519 seed of test node ``index`` (deterministic)."""
    return hashlib.sha256(f"net-tests/{salt}/{index}".encode()).digest()


class Cluster:
    """Running nodes plus the means to stop and restart them."""

    def __init__(self, nursery: trio.Nursery, nodes: list[NetworkAPI]) -> None:
        self.nodes = nodes
        self._nursery = nursery
        self._scopes: dict[int, trio.CancelScope] = {}
        self._stopped: dict[int, trio.Event] = {}

    def __getitem__(self, index: int) -> NetworkAPI:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def ids(self) -> list[PeerId]:
        return [node.peer_id for node in self.nodes]

    async def start(self, index: int) -> None:
        await self._nursery.start(self._run, index)

    async def _run(self, index: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        done = self._stopped[index] = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scopes[index] = scope
                await self.nodes[index].run(task_status=task_status)
        finally:
            done.set()

    async def stop(self, index: int) -> None:
        """Cancel node ``index``'s ``run()`` and wait until it has returned."""
        self._scopes[index].cancel()
        await self._stopped[index].wait()

    async def wait_connected(self) -> None:
        with trio.fail_after(TIMEOUT):
            for node in self.nodes:
                await node.wait_peers(len(self.nodes) - 1)

    def subscribe_all(
        self, topic: str, validator: Callable[[PeerId, bytes], bool] | None = None, *, buffer: int = 4096
    ) -> list[trio.MemoryReceiveChannel[tuple[PeerId, bytes]]]:
        return [node.subscribe(topic, validator, buffer=buffer) for node in self.nodes]

    async def wait_topic(self, topic: str) -> None:
        """Wait until every node's publications on ``topic`` reach every other node."""
        try:
            with trio.fail_after(TIMEOUT):
                for node in self.nodes:
                    await node.wait_topic_peers(topic, len(self.nodes) - 1)
        except trio.TooSlowError:
            raise AssertionError(f"topic {topic!r}: meshes not complete: {self._meshes(topic)}") from None

    def _meshes(self, topic: str) -> list[dict[str, object]]:
        """Each libp2p node's view of ``topic`` (who is in its mesh, who it knows is
        subscribed, whom it backs off from), for a failure message."""
        out: list[dict[str, object]] = []
        names = {str(other.peer_id): j for j, other in enumerate(self.nodes)}

        def short(peer: object) -> object:
            return names.get(str(peer), str(peer)[-6:])

        for i, node in enumerate(self.nodes):
            state = getattr(node, "_state", None)
            if state is None:
                out.append({"node": i})
                continue
            tid = node._topic_id(topic)  # type: ignore[attr-defined]
            out.append({
                "node": i,
                "mesh": sorted(map(str, (short(p) for p in state.router.mesh.get(tid, ())))),
                "subscribed": sorted(map(str, (short(p) for p in state.pubsub.peer_topics.get(tid, ())))),
                "backoff": sorted(map(str, (short(p) for p in state.router.back_off.get(tid, {})))),
                "connected": len(state.host.get_connected_peers()),
            })
        return out


@asynccontextmanager
async def cluster(
    backend: Backend, n: int, *, limits: NetLimits | None = None, seed: int = 1, salt: str = ""
) -> AsyncIterator[Cluster]:
    """``n`` started, mutually connected nodes of ``backend``; all stopped on exit."""
    async with trio.open_nursery() as nursery:
        if backend == "memory":
            hub = MemoryNetwork(seed, limits=limits)
            group = Cluster(nursery, [hub.endpoint(f"n{i}") for i in range(n)])
            for i in range(n):
                await group.start(i)
        else:
            from medchaind.net.libp2p_net import Libp2pNetwork

            group = Cluster(nursery, [])
            addrs: list[str] = []
            for i in range(n):
                node = Libp2pNetwork(
                    node_seed(i, salt), ["/ip4/127.0.0.1/tcp/0"], bootstrap=list(addrs), chain_id=CHAIN, limits=limits
                )
                group.nodes.append(node)
                await group.start(i)
                addrs.extend(node.listen_addrs())
        await group.wait_connected()
        try:
            yield group
        finally:
            nursery.cancel_scope.cancel()


def unknown_peer(backend: Backend) -> PeerId:
    """A well-formed peer id that no node in the cluster has."""
    if backend == "memory":
        return PeerId("nobody")
    from medchaind.crypto import SigningKey
    from medchaind.net.libp2p_net import peer_id_from_public_key

    return peer_id_from_public_key(SigningKey(node_seed(999, "unknown")).public_key)


async def receive_n(
    channel: trio.MemoryReceiveChannel[tuple[PeerId, bytes]], n: int
) -> list[tuple[PeerId, bytes]]:
    """Receive exactly ``n`` messages (the caller bounds the wait with fail_after)."""
    return [await channel.receive() for _ in range(n)]
