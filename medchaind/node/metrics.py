"""Prometheus metrics over HTTP (``[metrics] listen = "127.0.0.1:9464"``; off when empty).

Every value is read from the node at scrape time by one collector, inside the trio
thread, so a scrape sees a consistent snapshot and the hot paths carry no
instrumentation. The HTTP side is a deliberately small HTTP/1.0 server on
``trio.serve_tcp``: ``GET /metrics`` (Prometheus text format 0.0.4), ``GET /healthz``
(``ok``: the event loop answers; a liveness probe), ``GET /readyz`` (200 ``ready`` once
the node has started and is not catching up from peers, else 503 with the reason; a
readiness probe), anything else 404, malformed requests 400; a request must arrive within
:data:`REQUEST_TIMEOUT_S` and fit :data:`MAX_REQUEST` bytes. (prometheus_client's own
``start_http_server`` would serve from a thread and race the node's data structures.)

No label carries personal data: the labels are the chain id, the node's moniker and
public key, and the software version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..errors import ConfigError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from .node import Node
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
REQUEST_TIMEOUT_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:9464"``) -> ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"metrics.listen must be host:port, e.g. 127.0.0.1:9464 (got {value!r})")
    return host.strip("[]"), int(port)


class NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:  # noqa: C901 - one flat list of metrics
        n = self.node
        tip = n.ledger.tip
        c = n.counters

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"medchaind_{name}", doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"medchaind_{name}", doc, value=value)

        info = GaugeMetricFamily(
            "medchaind_info", "Node identity (value 1).", labels=["version", "chain_id", "moniker", "public_key"]
        )
        info.add_metric([__version__, n.genesis.chain_id, n.config.node.moniker, n.keys.public_key.hex()], 1)
        yield info
        yield gauge("chain_height", "Height of the last committed block.", n.ledger.height)
        yield gauge("chain_head_time_seconds", "Block time of the last committed block.", tip.time_ms / 1000)
        yield gauge(
            "last_block_age_seconds",
            "Wall-clock seconds since this node last committed a block (or started).",
            time.monotonic() - c.last_commit_monotonic,
        )
        yield counter("blocks_committed", "Blocks committed since start.", c.blocks)
        yield counter("txs_committed", "Transactions committed since start.", c.txs)
        yield counter("txs_failed", "Committed transactions whose receipt is not ok, since start.", c.txs_failed)
        yield gauge("authority", "1 if this node is an authority of the current set.",
                    1 if n.keys.public_key in tip.powers else 0)
        yield gauge("authorities", "Authorities in the current set.", len(tip.powers))
        yield gauge("voting_power_total", "Total voting power of the current set.", sum(tip.powers.values()))
        engine = getattr(n, "engine", None)
        if engine is not None:
            s = engine.status()
            yield gauge("consensus_height", "Height being decided.", s["height"])
            yield gauge("consensus_round", "Round of the height being decided.", s["round"])
            yield counter("evidence", "Equivocations this node has seen since start.", s["evidence"])
        sync = getattr(n, "sync", None)
        if sync is not None:
            yield gauge("syncing", "1 while catching up from peers.", 1 if sync.syncing else 0)
        m = n.mempool.statistics()
        yield gauge("mempool_txs", "Transactions in the mempool.", m.size)
        yield gauge("mempool_bytes", "Bytes of transactions in the mempool.", m.bytes)
        yield counter("mempool_admitted", "Transactions admitted since start.", m.admitted)
        yield counter("mempool_rejected", "Transactions refused at admission since start.", m.rejected)
        yield counter("mempool_evicted", "Transactions evicted for space since start.", m.evicted)
        yield counter("mempool_dropped", "Pending transactions invalidated by a block since start.", m.dropped)
        net = getattr(n, "net", None)
        if net is not None:
            yield gauge("peers", "Connected peers.", len(net.connected_peers()))
            ns = net.statistics()
            for field, doc in (
                ("published", "Gossip messages published"),
                ("received", "Gossip messages received"),
                ("rejected_by_validator", "Gossip messages rejected by validation"),
                ("dropped_full_buffer", "Gossip messages dropped because a buffer was full"),
                ("dropped_outbound", "Outbound messages dropped"),
                ("requests_sent", "Requests sent to peers"),
                ("requests_failed", "Requests to peers that failed"),
                ("requests_served", "Requests served to peers"),
                ("connections_refused", "Connections refused (not on the allowlist)"),
            ):
                yield counter(f"p2p_{field}", f"{doc} since start.", getattr(ns, field))
        ipc = getattr(n, "ipc_server", None)
        if ipc is not None:
            st = ipc.statistics()
            yield gauge("ipc_connections", "Open IPC connections.", st.connections)
            yield counter("ipc_accepted", "IPC connections accepted since start.", st.accepted)
            yield counter("ipc_rejected", "IPC connections refused over the limit since start.", st.rejected)
        blobs = getattr(n, "blobs", None)
        if blobs is not None:
            yield counter("blobs_fetched", "Record ciphertexts fetched from peers since start.", blobs.fetched)
            yield gauge("blobs_wanted", "Record ciphertexts this node lacks and is fetching.", len(blobs.wanted))


class MetricsServer:
    def __init__(self, node: Node, listen: str) -> None:
        self.node = node
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(node))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, *, task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            raise ConfigError(f"metrics.listen {self.host}:{self.port}: {exc.strerror or exc}") from None
        log.info("metrics listening addr=%s:%d", self.host, self.port)
        task_status.started(listeners)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                status, body, ctype = await self._respond(stream)
                head = (
                    f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def _respond(self, stream: trio.SocketStream) -> tuple[str, bytes, str]:
        data = b""
        with trio.move_on_after(REQUEST_TIMEOUT_S) as scope:
            while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) <= MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
        if scope.cancelled_caught:
            return "408 Request Timeout", b"request timeout\n", "text/plain"
        if len(data) > MAX_REQUEST:
            return "431 Request Header Fields Too Large", b"request too large\n", "text/plain"
        parts = data.split(b"\n", 1)[0].strip().split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", b"bad request\n", "text/plain"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if target == b"/metrics":
            body = self.render()
            return "200 OK", body if method == b"GET" else b"", CONTENT_TYPE
        if target == b"/healthz":
            return "200 OK", b"ok\n", "text/plain"
        if target == b"/readyz":
            sync = getattr(self.node, "sync", None)
            if not self.node.started.is_set():
                return "503 Service Unavailable", b"starting\n", "text/plain"
            if sync is not None and sync.syncing:
                return "503 Service Unavailable", b"syncing\n", "text/plain"
            return "200 OK", b"ready\n", "text/plain"
        return "404 Not Found", b"try /metrics\n", "text/plain"
