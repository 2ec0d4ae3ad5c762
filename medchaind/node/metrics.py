"""Prometheus metrics over HTTP (``[metrics] listen = "127.0.0.1:9464"``; off when empty).

Every value is read from the node at scrape time by one collector, inside the trio
thread, so a scrape sees a consistent snapshot and the hot paths carry no
instrumentation. The HTTP side is a deliberately small HTTP/1.0 server on
``trio.serve_tcp``: ``GET /metrics`` (Prometheus text format 0.0.4), ``GET /healthz``
(``ok``: the event loop answers; a liveness probe), ``GET /readyz`` (200 ``ready`` when
the node can serve and follow the chain, else 503 with the reason: :func:`assess_readiness`;
a readiness probe), anything else 404, malformed requests 400; a request must arrive within
:data:`REQUEST_TIMEOUT_S` and fit :data:`MAX_REQUEST` bytes. (prometheus_client's own
``start_http_server`` would serve from a thread and race the node's data structures.)

No label carries personal data: the labels are the chain id, the node's moniker and
public key, and the software version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..errors import ConfigError
from .config import parse_listen

if TYPE_CHECKING:
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

MAX_REQUEST = 8192
REQUEST_TIMEOUT_S = 5.0
READINESS_SAMPLE_S = 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


#: An authority whose height stays undecided for as long as this many rounds' timeouts
#: take is not ready (see :func:`assess_readiness`).
STALLED_ROUNDS = 3


def stall_after_s(consensus: Any) -> float:
    """Seconds that :data:`STALLED_ROUNDS` rounds take when each one runs into its timeouts.

    ``consensus`` is the ``[consensus]`` config section: round r waits at most
    ``propose + prevote + precommit`` timeouts, each grown by r times its delta.
    """
    c = consensus
    total_ms: int = sum(
        c.timeout_propose_ms + r * c.timeout_propose_delta_ms
        + c.timeout_prevote_ms + r * c.timeout_prevote_delta_ms
        + c.timeout_precommit_ms + r * c.timeout_precommit_delta_ms
        for r in range(STALLED_ROUNDS)
    )
    return total_ms / 1000


@dataclass(frozen=True, slots=True)
class ReadinessInputs:
    """What :func:`assess_readiness` looks at, read from the node at probe time."""

    started: bool
    syncing: bool
    #: the node has a P2P network (``p2p.listen`` set); without one it decides alone
    networked: bool
    listening: bool
    peers: frozenset[str]
    #: the current authority set: public key -> voting power
    powers: Mapping[bytes, int]
    own_key: bytes
    #: the peer id of each authority (public key -> peer id), for the connected power
    authority_peers: Mapping[bytes, str]
    #: the height consensus is deciding (None when idle: nothing to commit) and for how
    #: long it has been seen undecided
    deciding: int | None = None
    deciding_for_s: float = 0.0
    #: :func:`stall_after_s` of the node's consensus timeouts
    stall_after_s: float = 20.0


def assess_readiness(x: ReadinessInputs) -> tuple[bool, str]:
    """``(ready, reason)``: whether the node can serve and follow the chain now.

    ``/readyz`` is the readiness probe (``/healthz`` stays liveness: the event loop
    answers). Ready means, in this order:

    1. started (every service up);
    2. listening, when it has a network (a node whose P2P listener failed does not start
       at all; this guards the invariant);
    3. at least one peer, when it has a network, unless it holds more than 2/3 of the
       voting power itself (a chain it decides alone);
    4. not catching up from peers (sync);
    5. for an authority, **a quorum seen recently**, which is two checks:

       a. *reachable now*: the authorities it is connected to, plus itself, hold more
          than 2/3 of the voting power -- the power a commit needs. A crashed peer, or
          one cut off cleanly, drops off at once; and
       b. *not stalled*: a height it is deciding has been undecided for less than the
          time :data:`STALLED_ROUNDS` rounds take when every one of them times out
          (:func:`stall_after_s`; 19.5 s with the default timeouts). With a reachable
          quorum and at most f of 3f+1 authorities down, a height commits in its first
          round or, the proposer being one of the f, in the next (proposers rotate by
          round). Longer means the quorum is gone although connections linger: a link
          that silently drops packets keeps its TCP connections for minutes, and the
          round number does not even advance then, since a Tendermint round waits for
          2/3+ of the prevotes (paper, line 34) before its prevote timeout starts.

    Why not "a commit within N block intervals": with ``create_empty_blocks = false`` an
    idle chain commits nothing for hours while perfectly healthy. Why not "votes from
    2/3+ of the power recently": idle, there are no votes either. Check (b) speaks only
    when there is something to decide; check (a) covers the idle chain. An observer has
    no quorum of its own to check: peers and sync decide.
    """
    if not x.started:
        return False, "starting"
    if x.networked and not x.listening:
        return False, "not listening: no P2P listener"
    total = sum(x.powers.values())
    own = x.powers.get(x.own_key, 0)
    alone = total > 0 and 3 * own > 2 * total
    if x.networked and not x.peers and not alone:
        return False, "no peers"
    if x.syncing:
        return False, "syncing"
    if own > 0:
        reachable = own + sum(
            power for key, power in x.powers.items() if key != x.own_key and x.authority_peers.get(key) in x.peers
        )
        if 3 * reachable <= 2 * total:
            return False, (
                f"no quorum: connected authorities hold {reachable} of {total} voting power "
                "(more than 2/3 needed)"
            )
        if x.deciding is not None and x.deciding_for_s > x.stall_after_s:
            return False, f"no quorum: height {x.deciding} undecided for {x.deciding_for_s:.0f}s"
    return True, "ready"


class NodeCollector(Collector):
    """Reads the node's components at scrape time (each one a narrow source).

    ``node`` is anything with the component attributes used below (``genesis``,
    ``config``, ``keys``, ``ledger``, ``counters``, ``engine``, ``sync``, ``mempool``,
    ``net``, ``ipc_server``, ``blobs``): the collector reads, never calls into, them.
    """

    def __init__(self, node: Any) -> None:
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
        engine = n.engine
        s = engine.status()
        yield gauge("consensus_height", "Height being decided.", s["height"])
        yield gauge("consensus_round", "Round of the height being decided.", s["round"])
        yield counter("evidence", "Equivocations this node has seen since start.", s["evidence"])
        signing = s.get("signing") or {}
        yield gauge("consensus_signing", "1 if this node is an authority and signs now; 0 if it does not "
                    "(not an authority, or its key was seen elsewhere: consensus_status.signing.reason).",
                    1 if signing.get("validator") and signing.get("signing") else 0)
        sync = n.sync
        yield gauge("syncing", "1 while catching up from peers.", 1 if sync.syncing else 0)
        readiness = getattr(n, "readiness", None)
        if readiness is not None:
            yield gauge("ready", "1 when /readyz answers 200 (serving and following the chain).",
                        1 if readiness()[0] else 0)
        m = n.mempool.statistics()
        yield gauge("mempool_txs", "Transactions in the mempool.", m.size)
        yield gauge("mempool_bytes", "Bytes of transactions in the mempool.", m.bytes)
        yield counter("mempool_admitted", "Transactions admitted since start.", m.admitted)
        yield counter("mempool_rejected", "Transactions refused at admission since start.", m.rejected)
        yield counter("mempool_evicted", "Transactions evicted for space since start.", m.evicted)
        yield counter("mempool_dropped", "Pending transactions invalidated by a block since start.", m.dropped)
        net = n.net
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
            ("identity_conflicts", "Sightings of another process running with this node's key"),
            ("wire_received", "Gossip messages that arrived from peers, duplicates included,"),
            ("wire_bytes", "Data bytes of the gossip messages that arrived from peers"),
            ("duplicates", "Gossip messages that arrived again and were dropped as already seen"),
        ):
            yield counter(f"p2p_{field}", f"{doc} since start.", getattr(ns, field))
        ipc = n.ipc_server
        st = ipc.statistics()
        yield gauge("ipc_connections", "Open IPC connections.", st.connections)
        yield counter("ipc_accepted", "IPC connections accepted since start.", st.accepted)
        yield counter("ipc_rejected", "IPC connections refused over the limit since start.", st.rejected)
        blobs = n.blobs
        yield counter("blobs_fetched", "Record ciphertexts fetched from peers since start.", blobs.fetched)
        yield gauge("blobs_wanted", "Record ciphertexts this node lacks and is fetching.", len(blobs.wanted))


class MetricsServer:
    """``/metrics`` from ``collector``; ``/readyz`` asks ``ready()`` for ``(ready, reason)``."""

    def __init__(self, collector: Collector, listen: str, *, ready: Callable[[], tuple[bool, str]]) -> None:
        self.host, self.port = parse_listen(listen)
        self.ready = ready
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, *, task_status: TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            raise ConfigError(f"metrics.listen {self.host}:{self.port}: {exc.strerror or exc}") from None
        log.info("metrics listening addr=%s:%d", self.host, self.port)
        task_status.started(listeners)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sample_readiness)
            await trio.serve_listeners(self._handle, listeners)

    async def _sample_readiness(self) -> None:
        """Ask ``ready()`` every :data:`READINESS_SAMPLE_S` seconds, between probes too.

        Readiness measures how long a height has stayed undecided from the first call
        that saw it in progress; sampled here, a stall counts from when it began (within
        a second), not from whenever a prober happens to ask.
        """
        failed = False
        while True:
            try:
                self.ready()
            except Exception:  # a readiness bug must not stop the node; /readyz will show it
                if not failed:
                    log.exception("readiness check failed")
                failed = True
            await trio.sleep(READINESS_SAMPLE_S)

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
            ok, reason = self.ready()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, reason.encode() + b"\n", "text/plain"
        return "404 Not Found", b"try /metrics\n", "text/plain"
