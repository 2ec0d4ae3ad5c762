"""The network seam: what consensus, the mempool and sync may ask of the network.

Theory of operation
-------------------
A node sees the network as two services carrying opaque ``bytes``:

* **Gossip topics** (``subscribe`` / ``publish``): best-effort broadcast to every
  connected peer that is subscribed to the topic. Encodings and validity belong to the
  caller; the network only runs the caller's *validator* on every message from another
  peer before accepting it (libp2p: before forwarding it), so an invalid message neither
  reaches the consumer nor spreads.
* **Request/response protocols** (``set_handler`` / ``request``): one request, one
  response, over a fresh stream per request; a handler that raises sends an error
  response to the requester and the server keeps serving.

Two implementations honour this contract and are checked by one contract suite
(``tests/net/test_net_contract.py``), so the simulation fake cannot drift from the real
network: :class:`~medchaind.net.memory.MemoryEndpoint` (deterministic, for simulations
under a mock clock) and :class:`~medchaind.net.libp2p_net.Libp2pNetwork` (TCP, Noise,
Yamux, gossipsub).

The contract, precisely:

* **Names.** Topic and protocol names are short relative names such as ``"tx/1"`` or
  ``"sync/1"`` (:func:`check_name`). The libp2p backend prefixes them with
  ``/medchain/<chain_id>/``; the memory backend uses them as they are.
* **Delivery.** A published message reaches each peer that is connected and subscribed
  when it is published, at most once: delivery is deduplicated by content (the message id
  is SHA-256 of the data) for ``NetLimits.seen_ttl`` seconds, so publishing bytes that a
  node has already published or received within that window is a no-op. Messages are
  never delivered back to their publisher. There is no delivery guarantee and no order
  across publishers: never depend on gossip for correctness (a node that missed
  something catches up through sync).
* **Origin.** The :data:`PeerId` yielded with a message, and passed to the validator,
  is the peer that *published* it (libp2p authenticates it with the message signature).
* **Validator.** ``validator(origin, data) -> bool`` runs synchronously, once per
  message accepted from another peer, before delivery. ``False`` or an exception rejects
  the message (not delivered, not forwarded, counted in ``rejected_by_validator``). It
  must be fast and must not block.
* **Back-pressure.** Each subscription has a bounded buffer; a message that arrives while
  the buffer is full is dropped and counted in ``dropped_full_buffer``, never lost
  silently. Consumers drain their channel in a dedicated task. Closing the receive
  channel ends the subscription; the topic may then be subscribed again.
* **Requests.** ``request`` raises a :class:`NetworkError` subclass on timeout
  (:class:`RequestTimeout`), unknown or unreachable peer (:class:`PeerUnreachable`), a
  handler error or a missing handler at the peer (:class:`RemoteError`) and a request or
  response above ``NetLimits.max_request_size`` (:class:`MessageTooLarge`). An error
  response whose message announces more than :data:`MAX_ERROR_MESSAGE` bytes is refused
  without reading it (:class:`MalformedResponse`, docs/protocol.md §13.1), and a server
  never sends one.
* **Inbound requests are admitted before they are read.** A server takes an inbound
  request only while fewer than ``NetLimits.max_inbound_requests`` are in progress in
  all and fewer than ``max_inbound_requests_per_peer`` from that peer; otherwise it
  answers "busy" (:class:`RemoteError` at the requester) without reading the request.
  An admitted request is read up to its protocol's own limit
  (``NetLimits.request_limit(protocol)``) and no further: a larger one is answered with
  :class:`MessageTooLarge` after reading only its length prefix.
* **Lifecycle.** ``run()`` is a trio service: it starts, calls ``task_status.started()``,
  serves until cancelled and shuts down cleanly on cancellation. ``subscribe`` and
  ``set_handler`` may be called before or after ``run`` starts; ``publish`` and
  ``request`` need a running node.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, NewType

import trio

from ..errors import DecodeError, MedchainError

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

PeerId = NewType("PeerId", str)
"""A peer's identity: the base58 libp2p peer id (libp2p), the endpoint name (memory)."""

Validator = Callable[[PeerId, bytes], bool]
Handler = Callable[[PeerId, bytes], Awaitable[bytes]]

MiB = 1024 * 1024

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.\-]*(/[a-z0-9][a-z0-9_.\-]*)*")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid topic or protocol name, else raise ``ValueError``.

    Names are relative, lower-case ASCII path segments (``"tx/1"``, ``"sync/1"``), at
    most 64 characters, so that ``/medchain/<chain_id>/<name>`` is a well-formed libp2p
    topic or protocol id.
    """
    if len(name) > 64 or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} is invalid (expected lower-case segments such as 'tx/1', at most 64 characters)"
        )
    return name


class NetworkError(MedchainError):
    """A network operation failed: timeout, unreachable peer, remote error or oversize."""

    rpc_code = -32070


class RequestTimeout(NetworkError):
    """No response arrived within the request's timeout."""


class PeerUnreachable(NetworkError):
    """The peer is unknown, refused the connection or could not be dialled."""


class RemoteError(NetworkError):
    """The peer answered with an error: its handler raised or it serves no such protocol."""


class MessageTooLarge(NetworkError):
    """A gossip message, request or response exceeds the configured size limit."""


#: the longest message of an error or "too large" response (UTF-8 bytes, docs/protocol.md §13.1)
MAX_ERROR_MESSAGE = 1024


class MalformedResponse(NetworkError, DecodeError):
    """The peer broke the response framing (an error message above :data:`MAX_ERROR_MESSAGE`).

    Also a :class:`~medchaind.errors.DecodeError`: a requester that penalises a peer for a
    malformed answer (sync bans it, docs/protocol.md §13.3) does the same for this."""


class NotRunning(NetworkError):
    """The node's network service is not running (``run()`` has not started or has ended)."""


@dataclass(frozen=True, slots=True)
class NetLimits:
    """Size limits and timing knobs shared by both backends.

    ``max_request_size`` bounds requests and responses alike; a peer enforces its own
    limits on what it receives, so a sender with larger limits gets an error back.

    ``request_limits`` gives a protocol its own, smaller bound on inbound *requests*
    (``{"sync/1": 256}``): the protocols' requests are tiny (a height range, a few
    hashes) while their responses carry blocks, so one limit for both let a peer make a
    node read 64 MiB before the handler's own 256-byte check. The composition root sets
    it from the protocols' wire formats; a protocol not listed gets ``max_request_size``.

    ``max_inbound_requests`` bounds inbound requests in progress (read, handled or being
    answered) from all peers together, ``max_inbound_requests_per_peer`` from any one
    peer, so that one peer cannot take every slot.
    """

    max_gossip_size: int = 4 * MiB
    max_request_size: int = 64 * MiB
    seen_ttl: float = 120.0
    max_inbound_requests: int = 64
    max_inbound_requests_per_peer: int = 8
    request_limits: Mapping[str, int] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.max_gossip_size <= 0 or self.max_request_size <= 0:
            raise ValueError("NetLimits: size limits must be positive")
        if self.seen_ttl <= 0:
            raise ValueError("NetLimits: seen_ttl must be positive")
        if self.max_inbound_requests <= 0 or self.max_inbound_requests_per_peer <= 0:
            raise ValueError("NetLimits: max_inbound_requests(_per_peer) must be positive")
        for protocol, limit in self.request_limits.items():
            check_name("protocol", protocol)
            if type(limit) is not int or limit <= 0:
                raise ValueError(f"NetLimits: request limit of {protocol} must be a positive int, got {limit!r}")
        object.__setattr__(self, "request_limits", MappingProxyType(dict(self.request_limits)))

    def request_limit(self, protocol: str) -> int:
        """The largest inbound request of ``protocol`` a server reads."""
        return self.request_limits.get(protocol, self.max_request_size)


@dataclass(frozen=True, slots=True)
class TopicStats:
    """One topic's counters (see :class:`NetStats`)."""

    published: int = 0
    received: int = 0
    rejected_by_validator: int = 0
    dropped_full_buffer: int = 0
    wire_received: int = 0
    wire_bytes: int = 0
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class NetStats:
    """A snapshot of a node's network counters (monotonic since construction).

    ``published`` counts publications actually sent (re-publishing bytes already seen is
    a no-op and not counted). ``dropped_outbound`` counts gossip messages the transport
    discarded on the way out (libp2p: a peer's outbound queue was full); the memory
    backend never drops locally. ``requests_failed`` counts our requests that raised;
    ``requests_errored`` counts inbound requests answered with an error.
    ``connections_refused`` counts handshakes refused by the allowlist (libp2p only).
    ``identity_conflicts`` counts sightings of another process holding this node's key
    (a peer authenticated with our own peer id, a gossip message signed with our key
    that this process did not publish; libp2p only: memory endpoint names are unique).
    ``wire_received`` counts gossip messages that arrived from peers, duplicates
    included, ``wire_bytes`` their data bytes, and ``duplicates`` those of them already
    seen (dropped before validation): what the transport carried, against ``received``
    (what reached the consumer). libp2p only: the memory backend delivers each message once.
    """

    published: int = 0
    received: int = 0
    rejected_by_validator: int = 0
    dropped_full_buffer: int = 0
    dropped_outbound: int = 0
    requests_sent: int = 0
    requests_failed: int = 0
    requests_served: int = 0
    requests_errored: int = 0
    connections_refused: int = 0
    identity_conflicts: int = 0
    wire_received: int = 0
    wire_bytes: int = 0
    duplicates: int = 0
    topics: Mapping[str, TopicStats] = field(default_factory=dict)


class NetworkAPI(ABC):
    """A node's view of the network: gossip topics and request/response protocols (bytes only).

    Message encodings and validation semantics belong to the callers (consensus, mempool,
    sync). See the module docstring for the full contract.
    """

    @property
    @abstractmethod
    def peer_id(self) -> PeerId:
        """This node's identity."""

    @abstractmethod
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started()`` once ready; clean shutdown on cancel."""

    @abstractmethod
    def subscribe(
        self, topic: str, validator: Validator | None = None, *, buffer: int = 4096
    ) -> trio.MemoryReceiveChannel[tuple[PeerId, bytes]]:
        """Subscribe to ``topic``; messages from other peers arrive as ``(origin, data)``.

        Raises ``ValueError`` if the topic is already subscribed and its channel is open.
        """

    @abstractmethod
    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to every connected peer subscribed to ``topic`` (never to ourselves).

        Raises :class:`MessageTooLarge` above ``max_gossip_size`` and :class:`NotRunning`.
        """

    @abstractmethod
    def set_handler(self, protocol: str, handler: Handler) -> None:
        """Serve ``protocol``: ``handler(peer, request) -> response``; replaces any previous handler."""

    @abstractmethod
    async def request(  # a per-request deadline is part of the contract
        self, peer: PeerId, protocol: str, data: bytes, *, timeout: float = 10.0  # noqa: ASYNC109
    ) -> bytes:
        """Send one request to ``peer`` and return its response, or raise :class:`NetworkError`."""

    @abstractmethod
    def connected_peers(self) -> list[PeerId]:
        """The peers we are connected to now, sorted."""

    @abstractmethod
    async def wait_peers(self, n: int) -> None:
        """Return once at least ``n`` peers are connected."""

    @abstractmethod
    async def wait_topic_peers(self, topic: str, n: int) -> None:
        """Return once a publication on ``topic`` would reach at least ``n`` connected peers.

        Connection alone is not enough on libp2p: a peer's subscription must have arrived
        and the peer must be in our gossip mesh for the topic. Use before relying on a
        first publication (tests, start-up announcements).
        """

    @abstractmethod
    def statistics(self) -> NetStats:
        """A snapshot of this node's counters."""
