"""A deterministic in-memory network for simulations: :class:`MemoryNetwork` and its endpoints.

Theory of operation
-------------------
A :class:`MemoryNetwork` hub connects named :class:`MemoryEndpoint` objects (the peer id
*is* the name). Nothing touches a socket or the wall clock, so whole multi-node
simulations run under pytest-trio's ``autojump_clock`` in milliseconds of real time.

**Determinism.** Whether a message is lost and how long it takes are drawn from a
BLAKE2b digest of ``(seed, src, dst, send time, key)`` (send time counted
from the moment the hub's first endpoint started), where ``key`` is a
digest of the message's content (topic and data; protocol and data; the request's key,
status and payload for a response). Nothing depends on how trio happens to interleave
tasks that send at the same virtual instant, nor on any per-link sequence: the delivery
schedule is a pure function of the seed and of *what was sent when*. The price is that
a link does not keep order (two messages sent in a row may arrive swapped, as gossip over
several paths can); nothing may rely on gossip order anyway.

**Delivery.** Each running endpoint owns an inbox, a heap ordered by ``(due, src, key)``
(due times in integer microseconds, so equal times compare equal), and one pump task in
the endpoint's own nursery that sleeps until the earliest due time and dispatches
everything due, in heap order. Delivery order at a receiver is therefore a pure function
of the seed and the sends: the same seed replays the same deliveries at the same virtual
times. Request handlers run as tasks in the receiver's nursery; their responses travel
back with latency.

**Faults.** ``partition(*groups)`` splits endpoints into groups that cannot reach each
other (endpoints named in no group are isolated), ``heal()`` undoes it; ``cut(a, b)`` /
``restore(a, b)`` sever one pair in both directions; ``set_loss(p)`` drops each message
with probability ``p``. Reachability is checked when a message is sent *and* when it is
due, so a partition also swallows messages in flight. Cancelling an endpoint's ``run()``
crashes it: its inbox and in-flight handlers vanish with its nursery, messages sent to it
while it is down are dropped, its own pending requests fail with :class:`NotRunning`, and
it rejoins (with an empty seen-cache, like a restarted process) when ``run()`` is started
again. Subscriptions and handlers survive restarts, as they do for the libp2p backend.

**Gossip semantics** follow the contract in :mod:`medchaind.net.api` exactly: a
publication goes to every endpoint that is running, reachable and subscribed at publish
time (full mesh, no multi-hop); the receiver deduplicates by SHA-256 of the data for
``seen_ttl``, runs the validator, then delivers into the bounded channel.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from .api import (
    Handler,
    MessageTooLarge,
    NetLimits,
    NetStats,
    NetworkAPI,
    NetworkError,
    NotRunning,
    PeerId,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
    Validator,
    check_name,
)
from .shared import (
    STATUS_ERROR,
    STATUS_OK,
    STATUS_TOO_LARGE,
    Counters,
    InboundRequests,
    SeenCache,
    Subscription,
    check_error_size,
    refuse,
    serve_request,
    too_large,
)

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class _Gossip:
    topic: str
    data: bytes
    msg_id: bytes  # SHA-256 of the data, the gossip dedupe key
    key: bytes  # _gossip_key(topic, msg_id): computed once per publication, not per recipient


def _gossip_key(topic: str, msg_id: bytes) -> bytes:
    return hashlib.sha256(b"gossip\x00" + topic.encode() + b"\x00" + msg_id).digest()


@dataclass(frozen=True, slots=True)
class _Request:
    req_id: int  # matches the response to the requester's pending slot; never drives timing
    protocol: str
    data: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class _Response:
    req_id: int
    status: int
    payload: bytes
    key: bytes


_Item = _Gossip | _Request | _Response


def _request_key(protocol: str, data: bytes) -> bytes:
    return hashlib.sha256(b"request\x00" + protocol.encode() + b"\x00" + data).digest()


def _response_key(request_key: bytes, status: int, payload: bytes) -> bytes:
    return hashlib.sha256(b"response\x00" + request_key + bytes([status]) + payload).digest()


#: A pending delivery: ``(due, src, key, seq, item)``. ``due`` is in integer microseconds
#: of trio time (float sums would make ties order by rounding noise); the heap orders by
#: (due, src, key), and ``seq`` (per inbox) only breaks exact ties of one message sent
#: twice, so the item itself is never compared. A plain tuple: with n nodes an inbox sees
#: O(n) messages per step and tuple comparison is done in C.
_Envelope = tuple[int, str, bytes, int, _Item]


_TWO_64 = float(1 << 64)


def _now_us() -> int:
    return round(trio.current_time() * 1_000_000)


class _Inbox:
    """The pending deliveries of one running endpoint incarnation."""

    def __init__(self) -> None:
        self.heap: list[_Envelope] = []
        self.wakeup = trio.Event()
        self._seq = itertools.count()

    def push(self, due: int, src: str, item: _Item) -> None:
        entry = (due, src, item.key, next(self._seq), item)
        heapq.heappush(self.heap, entry)
        if self.heap[0] is entry:
            # a new earliest due time: the pump must wake earlier than it planned. Any
            # other push is due no sooner than what the pump already sleeps until (it
            # sleeps until the earliest due time, and only it pops), so waking it would
            # deliver nothing: with n nodes that was a wake-up (and a cancel scope) per
            # message, most of the network's cost per delivery.
            self.wakeup.set()


@dataclass(slots=True)
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    status: int = STATUS_ERROR
    payload: bytes = b""
    error: NetworkError | None = None


class MemoryNetwork:
    """The hub: endpoints, link state and the seeded, content-keyed randomness."""

    def __init__(
        self,
        seed: int,
        *,
        latency_ms: tuple[int, int] = (1, 5),
        loss: float = 0.0,
        limits: NetLimits | None = None,
    ) -> None:
        low, high = latency_ms
        if not 0 <= low <= high:
            raise ValueError(f"latency_ms must be (low, high) with 0 <= low <= high, got {latency_ms}")
        self._check_loss(loss)
        self.seed = seed
        self.latency_ms = (low, high)
        self.limits = limits or NetLimits()
        self._loss = loss
        self._endpoints: dict[str, MemoryEndpoint] = {}
        self._group_of: dict[str, int] | None = None
        self._cuts: set[frozenset[str]] = set()
        self._changed = trio.Event()
        self._epoch_us: int | None = None  # trio time when the first endpoint started

    # --- topology -------------------------------------------------------------------

    def endpoint(self, name: str) -> MemoryEndpoint:
        """Create the endpoint called ``name`` (its peer id)."""
        if not name or name in self._endpoints:
            raise ValueError(f"endpoint name {name!r} is empty or already taken")
        ep = MemoryEndpoint(self, name)
        self._endpoints[name] = ep
        return ep

    def partition(self, *groups: set[str]) -> None:
        """Only endpoints in the same group can reach each other; unnamed endpoints are isolated."""
        group_of: dict[str, int] = {}
        for index, group in enumerate(groups):
            for name in group:
                if name in group_of:
                    raise ValueError(f"endpoint {name!r} is in more than one partition group")
                group_of[name] = index
        self._group_of = group_of
        self._notify()

    def heal(self) -> None:
        """Remove the partition (per-link cuts stay until restored)."""
        self._group_of = None
        self._notify()

    def cut(self, a: str, b: str) -> None:
        self._cuts.add(frozenset((a, b)))
        self._notify()

    def restore(self, a: str, b: str) -> None:
        self._cuts.discard(frozenset((a, b)))
        self._notify()

    def set_loss(self, p: float) -> None:
        self._check_loss(p)
        self._loss = p

    def reachable(self, a: str, b: str) -> bool:
        """Whether a message from ``a`` to ``b`` would get through now (ignoring loss)."""
        if a == b or (self._cuts and frozenset((a, b)) in self._cuts):
            return False
        if self._group_of is not None:
            ga, gb = self._group_of.get(a), self._group_of.get(b)
            if ga is None or ga != gb:
                return False
        return True

    @staticmethod
    def _check_loss(p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"loss must be a probability in [0, 1], got {p}")

    def _notify(self) -> None:
        """Wake every waiter on topology or membership changes."""
        self._changed.set()
        self._changed = trio.Event()

    def _peers_of(self, name: str) -> list[str]:
        me = self._endpoints.get(name)
        if me is None or not me.running:
            return []
        return sorted(o for o, ep in self._endpoints.items() if ep.running and self.reachable(name, o))

    # --- transport --------------------------------------------------------------------

    def _started(self) -> None:
        if self._epoch_us is None:
            self._epoch_us = _now_us()

    def _send(self, src: str, dst: str, item: _Item, now: int | None = None) -> None:
        """Schedule ``item`` for delivery over the link, or drop it (unreachable, down, lost).

        ``now``: the current trio time in microseconds, if the caller already has it."""
        if not self.reachable(src, dst):
            return
        target = self._endpoints.get(dst)
        inbox = target.inbox if target is not None else None
        if inbox is None:
            return
        if now is None:
            now = _now_us()
        since = now - (self._epoch_us or 0)  # relative: a replay may start at another virtual time
        # One BLAKE2b digest per (message, link) gives both draws: 64 bits decide loss, 64 the
        # latency. (A seeded random.Random per draw cost ~10 us, most of a delivery's price.)
        draw = hashlib.blake2b(b"%d/%s/%s/%d/" % (self.seed, src.encode(), dst.encode(), since) + item.key,
                               digest_size=16).digest()
        if self._loss and int.from_bytes(draw[:8], "big") < self._loss * _TWO_64:
            return
        low, high = self.latency_ms
        delay_us = (low + int.from_bytes(draw[8:], "big") % (high - low + 1)) * 1000
        inbox.push(now + delay_us, src, item)


class MemoryEndpoint(NetworkAPI):
    """One node's :class:`~medchaind.net.api.NetworkAPI` on a :class:`MemoryNetwork`."""

    def __init__(self, hub: MemoryNetwork, name: str) -> None:
        self._hub = hub
        self._name = PeerId(name)
        self._limits = hub.limits
        self._counters = Counters()
        self._subs: dict[str, Subscription] = {}
        self._handlers: dict[str, Handler] = {}
        self._pending: dict[int, _Pending] = {}
        self._req_ids = itertools.count(1)
        self._seen = SeenCache(self._limits.seen_ttl)
        self._nursery: trio.Nursery | None = None
        self._inbound = InboundRequests(self._limits)
        self.inbox: _Inbox | None = None

    @property
    def peer_id(self) -> PeerId:
        return self._name

    @property
    def running(self) -> bool:
        return self.inbox is not None

    # --- service ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self.running:
            raise RuntimeError(f"memory endpoint {self._name} is already running")
        inbox = _Inbox()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.inbox = inbox
                self._seen.clear()
                self._hub._started()
                self._hub._notify()
                nursery.start_soon(self._pump, inbox)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.inbox = None
            for pending in self._pending.values():
                pending.error = NotRunning(f"memory endpoint {self._name} stopped")
                pending.done.set()
            self._hub._notify()

    async def _pump(self, inbox: _Inbox) -> None:
        while True:
            now = _now_us()
            while inbox.heap and inbox.heap[0][0] <= now:
                _, src, _, _, item = heapq.heappop(inbox.heap)
                if self._hub.reachable(src, self._name):
                    self._dispatch(src, item)
            inbox.wakeup = trio.Event()
            deadline = inbox.heap[0][0] / 1_000_000 if inbox.heap else math.inf
            with trio.move_on_at(deadline):
                await inbox.wakeup.wait()

    def _dispatch(self, src: str, item: _Item) -> None:
        if isinstance(item, _Gossip):
            self._on_gossip(PeerId(src), item)
        elif isinstance(item, _Request):
            assert self._nursery is not None  # the pump runs inside the nursery
            self._nursery.start_soon(self._serve, src, item)
        else:
            pending = self._pending.get(item.req_id)
            if pending is not None and not pending.done.is_set():
                pending.status, pending.payload = item.status, item.payload
                pending.done.set()

    # --- gossip -----------------------------------------------------------------------

    def subscribe(
        self, topic: str, validator: Validator | None = None, *, buffer: int = 4096
    ) -> trio.MemoryReceiveChannel[tuple[PeerId, bytes]]:
        check_name("topic", topic)
        current = self._subs.get(topic)
        if current is not None and current.is_open:
            raise ValueError(f"topic {topic!r} is already subscribed; close its channel first")
        sub = Subscription(topic, validator, buffer, self._counters)
        self._subs[topic] = sub
        self._hub._notify()
        return sub.receive

    def _subscription(self, topic: str) -> Subscription | None:
        sub = self._subs.get(topic)
        if sub is not None and not sub.is_open:
            del self._subs[topic]
            self._hub._notify()
            return None
        return sub

    async def publish(self, topic: str, data: bytes) -> None:
        check_name("topic", topic)
        self._require_running()
        if len(data) > self._limits.max_gossip_size:
            raise MessageTooLarge(
                f"gossip message of {len(data)} bytes exceeds max_gossip_size={self._limits.max_gossip_size}"
            )
        await trio.lowlevel.checkpoint()
        msg_id = hashlib.sha256(data).digest()
        if msg_id in self._seen:
            return  # content already seen: a no-op, as with libp2p's content-addressed ids
        self._seen.add(msg_id)
        self._counters.topic(topic).published += 1
        item = _Gossip(topic, bytes(data), msg_id, _gossip_key(topic, msg_id))
        now = _now_us()
        endpoints = self._hub._endpoints
        for name in self._hub._peers_of(self._name):
            # subscribed at publish time; whether the consumer still listens is asked on
            # arrival (_on_gossip), not twice per recipient: with n nodes that check was
            # a measurable share of a delivery's cost
            if topic in endpoints[name]._subs:
                self._hub._send(self._name, name, item, now)

    def _on_gossip(self, origin: PeerId, msg: _Gossip) -> None:
        sub = self._subscription(msg.topic)
        if sub is None or msg.msg_id in self._seen:
            return
        if not sub.accept(origin, msg.data):
            return
        self._seen.add(msg.msg_id)
        sub.deliver(origin, msg.data)

    # --- request/response -------------------------------------------------------------

    def set_handler(self, protocol: str, handler: Handler) -> None:
        self._handlers[check_name("protocol", protocol)] = handler

    async def request(  # the deadline is part of the NetworkAPI contract
        self, peer: PeerId, protocol: str, data: bytes, *, timeout: float = 10.0  # noqa: ASYNC109
    ) -> bytes:
        check_name("protocol", protocol)
        self._counters.requests_sent += 1
        try:
            return await self._request(peer, protocol, data, timeout)
        except NetworkError:
            self._counters.requests_failed += 1
            raise

    async def _request(self, peer: PeerId, protocol: str, data: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        self._require_running()
        if len(data) > self._limits.max_request_size:
            raise MessageTooLarge(
                f"request of {len(data)} bytes exceeds max_request_size={self._limits.max_request_size}"
            )
        if peer == self._name or peer not in self._hub._endpoints:
            raise PeerUnreachable(f"peer {peer} is unknown or is this node")
        req_id = next(self._req_ids)
        pending = self._pending[req_id] = _Pending()
        try:
            self._hub._send(self._name, peer, _Request(req_id, protocol, bytes(data), _request_key(protocol, data)))
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._pending[req_id]
        if not pending.done.is_set():
            raise RequestTimeout(f"request {protocol} to {peer} timed out after {timeout}s")
        if pending.error is not None:
            raise pending.error
        return self._unpack_response(peer, protocol, pending.status, pending.payload)

    def _unpack_response(self, peer: PeerId, protocol: str, status: int, payload: bytes) -> bytes:
        check_error_size(peer, protocol, status, len(payload))
        if status == STATUS_OK:
            if len(payload) > self._limits.max_request_size:
                raise MessageTooLarge(
                    f"response of {len(payload)} bytes exceeds max_request_size={self._limits.max_request_size}"
                )
            return payload
        message = payload.decode("utf-8", "replace")
        if status == STATUS_TOO_LARGE:
            raise MessageTooLarge(f"peer {peer} ({protocol}): {message}")
        raise RemoteError(f"peer {peer} ({protocol}): {message}")

    async def _serve(self, src: str, req: _Request) -> None:
        # the same order as the libp2p server: admission, then the protocol's request limit
        peer = PeerId(src)
        refusal = self._inbound.admit(peer)
        if refusal is not None:
            status, payload = refuse(self._counters, req.protocol, peer, refusal)
        else:
            try:
                if len(req.data) > self._limits.request_limit(req.protocol):
                    status, payload = too_large(self._counters, self._limits, req.protocol, len(req.data))
                else:
                    status, payload = await serve_request(
                        self._handlers.get(req.protocol), peer, req.protocol, req.data, self._limits, self._counters
                    )
            finally:
                self._inbound.release(peer)
        response = _Response(req.req_id, status, payload, _response_key(req.key, status, payload))
        self._hub._send(self._name, src, response)

    # --- membership -------------------------------------------------------------------

    def connected_peers(self) -> list[PeerId]:
        return [PeerId(p) for p in self._hub._peers_of(self._name)]

    async def wait_peers(self, n: int) -> None:
        while True:
            changed = self._hub._changed
            if len(self._hub._peers_of(self._name)) >= n:
                await trio.lowlevel.checkpoint()
                return
            await changed.wait()

    async def wait_topic_peers(self, topic: str, n: int) -> None:
        check_name("topic", topic)
        while True:
            changed = self._hub._changed
            subscribed = [
                p for p in self._hub._peers_of(self._name) if self._hub._endpoints[p]._subscription(topic) is not None
            ]
            if len(subscribed) >= n:
                await trio.lowlevel.checkpoint()
                return
            await changed.wait()

    def statistics(self) -> NetStats:
        return self._counters.snapshot()

    def _require_running(self) -> None:
        if not self.running:
            raise NotRunning(f"memory endpoint {self._name} is not running")
