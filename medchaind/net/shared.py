"""Machinery both network backends share: counters, subscriptions, the seen-cache.

Theory of operation
-------------------
Each backend instance owns one :class:`Counters` (mutated only from trio tasks of that
instance, so no locks) and one :class:`Subscription` per subscribed topic. A subscription
is the single place where the contract's acceptance rules live:

* :meth:`Subscription.accept` runs the caller's validator and turns ``False`` *or an
  exception* into a counted rejection: a bad peer message never kills a task;
* :meth:`Subscription.deliver` puts an accepted message into the consumer's bounded
  channel with ``send_nowait``; a full buffer is a counted drop; once the consumer has
  closed its receive channel the subscription is no longer open (:attr:`is_open`).

Keeping these rules here means the memory and libp2p backends cannot disagree on them.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import trio

from .api import (
    MAX_ERROR_MESSAGE,
    Handler,
    MalformedResponse,
    NetLimits,
    NetStats,
    PeerId,
    TopicStats,
    Validator,
)

log = logging.getLogger(__name__)

# Response status codes of the request/response protocols (also the libp2p wire values).
STATUS_OK = 0
STATUS_ERROR = 1
STATUS_TOO_LARGE = 2


def error_message(text: str) -> bytes:
    """``text`` as the message of a status-1/2 response: UTF-8, cut to at most
    :data:`MAX_ERROR_MESSAGE` bytes on a character boundary (docs/protocol.md §13.1)."""
    return text.encode()[:MAX_ERROR_MESSAGE].decode("utf-8", "ignore").encode()


def check_error_size(peer: PeerId, protocol: str, status: int, size: int) -> None:
    """Refuse, before reading it, an error response whose message is over the limit."""
    if status != STATUS_OK and size > MAX_ERROR_MESSAGE:
        raise MalformedResponse(f"peer {peer} ({protocol}): a status-{status} message of {size} bytes "
                                f"(at most {MAX_ERROR_MESSAGE}); not read")


@dataclass(slots=True)
class _TopicCounters:
    published: int = 0
    received: int = 0
    rejected_by_validator: int = 0
    dropped_full_buffer: int = 0
    wire_received: int = 0
    wire_bytes: int = 0
    duplicates: int = 0


class Counters:
    """Monotonic network counters of one node; :meth:`snapshot` freezes them."""

    def __init__(self) -> None:
        self.dropped_outbound = 0
        self.requests_sent = 0
        self.requests_failed = 0
        self.requests_served = 0
        self.requests_errored = 0
        self.connections_refused = 0
        self.identity_conflicts = 0
        self._topics: dict[str, _TopicCounters] = {}

    def topic(self, topic: str) -> _TopicCounters:
        counters = self._topics.get(topic)
        if counters is None:
            counters = self._topics[topic] = _TopicCounters()
        return counters

    def snapshot(self) -> NetStats:
        topics = {
            name: TopicStats(c.published, c.received, c.rejected_by_validator, c.dropped_full_buffer,
                             c.wire_received, c.wire_bytes, c.duplicates)
            for name, c in sorted(self._topics.items())
        }
        return NetStats(
            published=sum(t.published for t in topics.values()),
            received=sum(t.received for t in topics.values()),
            rejected_by_validator=sum(t.rejected_by_validator for t in topics.values()),
            dropped_full_buffer=sum(t.dropped_full_buffer for t in topics.values()),
            dropped_outbound=self.dropped_outbound,
            requests_sent=self.requests_sent,
            requests_failed=self.requests_failed,
            requests_served=self.requests_served,
            requests_errored=self.requests_errored,
            connections_refused=self.connections_refused,
            identity_conflicts=self.identity_conflicts,
            wire_received=sum(t.wire_received for t in topics.values()),
            wire_bytes=sum(t.wire_bytes for t in topics.values()),
            duplicates=sum(t.duplicates for t in topics.values()),
            topics=topics,
        )


class Subscription:
    """One topic's consumer: validator, bounded channel and the acceptance rules."""

    def __init__(self, topic: str, validator: Validator | None, buffer: int, counters: Counters) -> None:
        if buffer < 1:
            raise ValueError(f"subscription buffer for topic {topic!r} must be at least 1, got {buffer}")
        self.topic = topic
        self._validator = validator
        self._counters = counters.topic(topic)
        self._send, self.receive = trio.open_memory_channel[tuple[PeerId, bytes]](buffer)

    @property
    def is_open(self) -> bool:
        """False once the consumer has closed its receive channel (and every clone of it)."""
        return self._send.statistics().open_receive_channels > 0

    def accept(self, origin: PeerId, data: bytes) -> bool:
        """Run the validator on a message from another peer; count a rejection."""
        if self._validator is None:
            return True
        try:
            ok = bool(self._validator(origin, data))
        except Exception as exc:  # a faulty validator rejects; it never kills the network task
            log.warning("gossip validator raised topic=%s origin=%s error=%r", self.topic, origin, exc)
            ok = False
        if not ok:
            self._counters.rejected_by_validator += 1
        return ok

    def deliver(self, origin: PeerId, data: bytes) -> None:
        """Hand an accepted message to the consumer, or count it as dropped."""
        try:
            self._send.send_nowait((origin, data))
        except trio.WouldBlock:
            self._counters.dropped_full_buffer += 1
            if self._counters.dropped_full_buffer & (self._counters.dropped_full_buffer - 1) == 0:
                # log at powers of two: visible, but never a log line per dropped message
                log.warning(
                    "gossip subscriber buffer full, message dropped topic=%s dropped_total=%d",
                    self.topic,
                    self._counters.dropped_full_buffer,
                )
        except trio.BrokenResourceError:
            pass  # the consumer closed its channel between is_open and now: nobody to tell
        else:
            self._counters.received += 1


class SeenCache:
    """Message ids seen within the last ``ttl`` seconds of trio time (content dedupe).

    Insertion order is expiry order because the TTL is fixed and trio time is monotonic,
    so expiring is popping from the front: O(1) amortised per message.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        expiry = self._expiry
        while expiry:
            key = next(iter(expiry))
            if expiry[key] > now:
                break
            del expiry[key]

    def __contains__(self, msg_id: bytes) -> bool:
        # expiring only removes ids, so an id that is not held is not seen either way:
        # only a hit needs the clock (most lookups, of new messages, are misses)
        if msg_id not in self._expiry:
            return False
        self._expire(trio.current_time())
        return msg_id in self._expiry

    def add(self, msg_id: bytes) -> None:
        now = trio.current_time()
        self._expire(now)
        self._expiry.pop(msg_id, None)
        self._expiry[msg_id] = now + self._ttl

    def clear(self) -> None:
        self._expiry.clear()


class InboundRequests:
    """Admission of inbound requests, decided *before* a byte of the request is read.

    At most ``max_inbound_requests`` in progress in all and
    ``max_inbound_requests_per_peer`` from one peer (NetLimits). A request holds its
    place from admission until its response is written (or the stream fails), so a
    peer that opens streams and trickles, or never sends, uses up its own places and
    no one else's. Synchronous and owned by one backend instance (trio tasks only).
    """

    def __init__(self, limits: NetLimits) -> None:
        self._limits = limits
        self._total = 0
        self._per_peer: dict[PeerId, int] = {}

    def admit(self, peer: PeerId) -> str | None:
        """Take a place for a request from ``peer``; the refusal text when there is none."""
        if self._total >= self._limits.max_inbound_requests:
            return f"busy: more than {self._limits.max_inbound_requests} requests in progress"
        mine = self._per_peer.get(peer, 0)
        if mine >= self._limits.max_inbound_requests_per_peer:
            return f"busy: more than {self._limits.max_inbound_requests_per_peer} requests in progress from this peer"
        self._total += 1
        self._per_peer[peer] = mine + 1
        return None

    def release(self, peer: PeerId) -> None:
        """Give back the place :meth:`admit` took for ``peer``."""
        self._total -= 1
        left = self._per_peer[peer] - 1
        if left:
            self._per_peer[peer] = left
        else:
            del self._per_peer[peer]

    def in_progress(self, peer: PeerId | None = None) -> int:
        return self._total if peer is None else self._per_peer.get(peer, 0)


def refuse(counters: Counters, protocol: str, peer: PeerId, reason: str) -> tuple[int, bytes]:
    """The error response for a request that was not admitted (counted, logged at DEBUG)."""
    counters.requests_errored += 1
    log.debug("inbound request refused protocol=%s peer=%s reason=%s", protocol, peer, reason)
    return STATUS_ERROR, error_message(reason)


def too_large(counters: Counters, limits: NetLimits, protocol: str, size: int) -> tuple[int, bytes]:
    """The response for a request whose announced or actual size is over its protocol's limit."""
    counters.requests_errored += 1
    if protocol in limits.request_limits:
        text = f"request of {size} bytes exceeds the {protocol} request limit ({limits.request_limit(protocol)})"
    else:
        text = f"request of {size} bytes exceeds max_request_size={limits.max_request_size}"
    return STATUS_TOO_LARGE, error_message(text)


async def serve_request(
    handler: Handler | None,
    peer: PeerId,
    protocol: str,
    data: bytes,
    limits: NetLimits,
    counters: Counters,
) -> tuple[int, bytes]:
    """Run one *admitted* inbound request through ``handler``; return ``(status, payload)``.

    Shared by both backends so their error semantics are identical: a missing handler, a
    handler exception, a non-bytes result and an oversize response all become error
    responses (counted in ``requests_errored``); nothing propagates. Admission
    (:class:`InboundRequests`) and the request size check come first, in the backend.
    """
    status, payload = STATUS_ERROR, b""
    if handler is None:
        payload = error_message(f"no handler for protocol {protocol}")
    else:
        try:
            result = await handler(peer, data)
        except Exception as exc:  # handler errors become error responses, never crash the node
            log.info("request handler raised protocol=%s peer=%s error=%r", protocol, peer, exc)
            payload = error_message(f"handler error: {type(exc).__name__}: {exc}")
        else:
            if not isinstance(result, bytes):
                payload = error_message(f"handler returned {type(result).__name__}, not bytes")
            elif len(result) > limits.max_request_size:
                status = STATUS_TOO_LARGE
                payload = error_message(
                    f"response of {len(result)} bytes exceeds max_request_size={limits.max_request_size}"
                )
            else:
                status, payload = STATUS_OK, result
    if status == STATUS_OK:
        counters.requests_served += 1
    else:
        counters.requests_errored += 1
    return status, payload
