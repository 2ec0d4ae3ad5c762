"""A seeded discrete-event simulator that runs N consensus cores and checks them.

Everything random lives here, never in the core: one ``random.Random`` for the scenario
(who is Byzantine and how, when the network partitions and heals, who crashes) and one
for the network (delays, drops), both seeded from ``(seed, n)``. Simulated time is an
integer number of milliseconds; events sit in a priority queue ordered by
``(time_ms, seq)``, so a run is a pure function of ``(seed, n)`` and of the core:
``python -m medchaind.testing.sim --seed N --n 4`` replays it exactly.

The model
=========

* **Hosts.** Each node is a host around one core (``medchaind.core.apply``) doing what
  the consensus service will do: carry out effects in order, sign (a fast fake signer,
  or real Ed25519 with ``crypto=True``, which also verifies every incoming signature and
  every decided commit with ``types.block.verify_commit``), loop its own signed
  messages back, run timers, build blocks on ``RequestValue``, persist decisions and
  WAL entries, and start the next height after ``Decide``.
* **Network.** Before GST (global stabilisation time): random delays up to a per-seed
  maximum (which can exceed the timeouts), random drops, and partitions (a side of the
  nodes cut off from the rest for a while). From GST on: no drops, no partitions,
  delays of at most :data:`POST_GST_MAX_DELAY_MS`.
* **Gossip.** Dropped messages are not retransmitted by the network. Instead, as in
  CometBFT's consensus reactor, each honest node periodically sends every peer at its
  height the votes and proposals the peer's core would count now (peer state is read
  from the peer's core, like CometBFT's HasVote bookkeeping), and sends a peer that is
  behind the commit certificate (proposal + precommits) of the peer's height. This is
  the paper's gossip assumption: after GST whatever a correct node holds reaches every
  correct node. Byzantine nodes do not gossip: they send only what their behaviour
  dictates.
* **Crashes.** Honest nodes crash (possibly right after a WAL append, before the
  signature leaves) and restart from their persisted WAL and block store with
  ``StartHeight(h, validators, wal)``. Every crashed node is up again at GST.
* **Byzantine nodes** (f of n = 3f+1, never more), one or two traits each per seed
  (:data:`TRAIT_MIXES`):

  - *equivocate*: sign two versions of every proposal and vote; per height a favoured
    set of peers gets the first, the rest the other, and the precommit set is a subset
    of the prevote set (some nodes see a polka, fewer a commit);
  - *silent*; *invalid proposals* (its blocks are ones the honest hosts reject,
    ``valid=False``); *prevote nil*; *prevote random* hashes;
  - *amnesia*: forget lock and valid value before every input, so it prevotes any
    valid proposal and proposes fresh blocks every round;
  - *fork*: the coordinated attacker (:attr:`Behaviour.FORK`), amnesiac, denies other
    nodes the commit of a value a muted node is deciding and stays at that height
    pushing its own values; only locking stops it from splitting the decision.
* **Nemesis.** Before GST an adaptive adversary may mute an honest node right after it
  signs a precommit for a value (what it sends is lost, packets in flight included; it
  still hears), one node at a time: it can decide on the others' precommits while they
  never see its own, the schedule lock-violation attacks need.

Invariants, checked as each step happens (so the trace ends at the offending step):

1. agreement: at most one decided block hash per height across honest nodes
   (including decisions made before a crash);
2. no honest double-sign: an honest validator never signs two different messages for
   the same (height, round, step), across restarts;
3. validity: a decided hash was proposed and is a valid block;
4. no false accusation: evidence is only ever found against Byzantine validators;
5. liveness: after GST every honest node decides the height the network was at plus
   ``liveness_heights - 1`` more, within :meth:`Simulation.liveness_bound_ms`.

A violation raises :class:`SimulationFailure` carrying the seed, the command that
replays it and the last events.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ..core import driver
from ..core.effects import (
    Broadcast,
    Decide,
    Effect,
    EvidenceFound,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    WALAppend,
)
from ..core.inputs import (
    BlockReady,
    Input,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
)
from ..core.messages import (
    NIL_ROUND,
    BlockHash,
    Height,
    Message,
    Proposal,
    Signer,
    ValidatorId,
    Vote,
    VoteKind,
    WALEntry,
    verify_proposal,
    verify_vote,
)
from ..core.state import LastSigned, State, Step, initial_state
from ..core.timeouts import TimeoutConfig, TimeoutKind
from ..core.votes import COUNTED
from ..crypto import DOMAIN_PROPOSAL, DOMAIN_VOTE, sha256
from ..errors import ValidationError
from ..types.block import verify_commit
from .cast import Cast

#: Timeouts of simulated nodes: small, so that many rounds fit in a short run.
SIM_TIMEOUTS = TimeoutConfig(propose_ms=200, propose_delta_ms=100, prevote_ms=100,
                             prevote_delta_ms=50, precommit_ms=100, precommit_delta_ms=50)
POST_GST_MAX_DELAY_MS = 30
GOSSIP_INTERVAL_MS = 150
BUILD_MAX_DELAY_MS = 10
MAX_EVENTS = 3_000_000

ApplyFn = Callable[[State, Input], tuple[State, list[Effect]]]


class Behaviour(Enum):
    """A Byzantine trait; a Byzantine node has one or two (see :data:`TRAIT_MIXES`)."""

    EQUIVOCATE = "equivocate"
    SILENT = "silent"
    INVALID_PROPOSALS = "invalid-proposals"
    PREVOTE_NIL = "prevote-nil"
    PREVOTE_RANDOM = "prevote-random"
    #: Forgets lockedValue/validValue before every input: proposes fresh blocks and
    #: prevotes whatever valid proposal it sees (CometBFT's "amnesia attack").
    AMNESIA = "amnesia"
    #: The coordinated attacker (it knows the nemesis schedule and the honest nodes'
    #: heights, as the adversary of the partial-synchrony model may): amnesiac; it
    #: precommits a value it did not propose only towards muted nodes (nil to everyone
    #: else), so that a muted node decides a value the others are denied; it stays at a
    #: height while any honest node is still there, pushing its own fresh values. Only
    #: locking (L23, L29) stops that from becoming a fork.
    FORK = "fork"


Traits = frozenset[Behaviour]
HONEST: Traits = frozenset()
_B = Behaviour
#: The trait sets a Byzantine node is drawn from: each behaviour alone, and the mixes
#: that make sense together (silence excludes everything else).
TRAIT_MIXES: tuple[Traits, ...] = (
    frozenset({_B.EQUIVOCATE}), frozenset({_B.SILENT}), frozenset({_B.INVALID_PROPOSALS}),
    frozenset({_B.PREVOTE_NIL}), frozenset({_B.PREVOTE_RANDOM}), frozenset({_B.AMNESIA}),
    frozenset({_B.EQUIVOCATE, _B.AMNESIA}), frozenset({_B.EQUIVOCATE, _B.INVALID_PROPOSALS}),
    frozenset({_B.AMNESIA, _B.PREVOTE_RANDOM}), frozenset({_B.AMNESIA, _B.INVALID_PROPOSALS}),
    frozenset({_B.FORK}),
)


def describe_traits(traits: Traits) -> str:
    return "+".join(sorted(b.value for b in traits)) or "honest"


@dataclass(frozen=True, slots=True)
class Partition:
    """From ``start_ms`` to ``end_ms`` no message crosses between ``side`` and the rest;
    if ``one_way``, only messages *from* ``side`` are lost (it hears, but is not heard)."""

    start_ms: int
    end_ms: int
    side: tuple[int, ...]
    one_way: bool = False

    def blocks(self, src: int, dst: int, now: int) -> bool:
        return (self.start_ms <= now < self.end_ms and (src in self.side) != (dst in self.side)
                and (not self.one_way or src in self.side))


@dataclass(frozen=True, slots=True)
class Crash:
    """Node ``node`` crashes at ``at_ms`` (or, if ``on_wal``, at its next WAL append
    after that) and restarts at ``restart_ms``."""

    node: int
    at_ms: int
    restart_ms: int
    on_wal: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    n: int
    behaviours: tuple[Traits, ...]
    gst_ms: int
    drop_percent: int
    max_delay_ms: int
    #: Share of pre-GST messages that are very late (heavy tail): 1..5x max_delay_ms + 500.
    slow_percent: int
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    #: Adaptive nemesis: the chance (percent) that an honest node that signs a precommit
    #: for a value before GST is *muted* for ``isolate_ms``: everything it sends is lost,
    #: in-flight packets included, while it still hears the others. It can then decide
    #: on the others' precommits while they never see its own: the schedule behind
    #: lock-violation attacks, where the rest must not decide anything else.
    isolate_percent: int = 0
    isolate_ms: int = 0

    @classmethod
    def generate(cls, seed: int, n: int) -> Scenario:
        """The fault schedule of ``seed``: f = (n-1)//3 Byzantine nodes, partitions, crashes."""
        rng = random.Random(f"medchaind-sim/{seed}/{n}/scenario")
        f = (n - 1) // 3
        byzantine = rng.sample(range(n), f)
        behaviours = tuple(rng.choice(TRAIT_MIXES) if i in byzantine else HONEST
                           for i in range(n))
        gst = rng.randint(500, 4000)
        partitions = []
        for _ in range(rng.randint(0, 6) if n > 1 else 0):
            start = rng.randint(0, gst - 100)
            end = min(gst, start + rng.randint(50, 1500))
            side = tuple(sorted(rng.sample(range(n), rng.randint(1, n - 1))))
            partitions.append(Partition(start, end, side))
        crashes = []
        for i in range(n):
            if not behaviours[i] and rng.random() < 0.3:
                at = rng.randint(0, gst - 50)
                crashes.append(Crash(i, at, rng.randint(at + 1, gst), rng.random() < 0.5))
        return cls(n, behaviours, gst, rng.choice((0, 5, 15, 30)),
                   rng.choice((20, 100, 400)), rng.choice((0, 10, 30)), tuple(partitions),
                   tuple(crashes), rng.choice((0, 20, 50)), rng.randint(300, 3000))

    def describe(self, names: tuple[str, ...]) -> str:
        byz = ", ".join(f"{names[i]}={describe_traits(b)}"
                        for i, b in enumerate(self.behaviours) if b) or "none"
        parts = "; ".join(f"{p.start_ms}-{p.end_ms}ms {''.join(names[i] for i in p.side)}|rest"
                          for p in self.partitions) or "none"
        crashes = "; ".join(f"{names[c.node]} {c.at_ms}{'+wal' if c.on_wal else ''}"
                            f"->{c.restart_ms}ms" for c in self.crashes) or "none"
        if self.isolate_percent:
            crashes += (f". nemesis: mute precommitters {self.isolate_percent}% "
                        f"for {self.isolate_ms}ms")
        return (f"byzantine: {byz}. gst={self.gst_ms}ms drop={self.drop_percent}% "
                f"delay<={self.max_delay_ms}ms slow={self.slow_percent}%. partitions: {parts}. "
                f"crashes: {crashes}")


class SimulationFailure(AssertionError):
    """An invariant broke. ``kind``: agreement, double-sign, validity, accusation,
    liveness or stalled."""

    def __init__(self, kind: str, seed: int, n: int, detail: str, scenario: str,
                 trace: list[str], replay: str) -> None:
        self.kind, self.seed, self.n, self.detail = kind, seed, n, detail
        lines = [f"{kind} violated (seed={seed}, n={n}): {detail}",
                 f"replay: {replay}", f"scenario: {scenario}", "last events:"]
        lines += [f"  {t}" for t in trace]
        super().__init__("\n".join(lines))


@dataclass(slots=True)
class SimResult:
    seed: int
    n: int
    events: int
    end_ms: int
    gst_ms: int
    heights: dict[str, int]
    max_round: int
    evidence: int
    liveness_ms: int
    liveness_bound_ms: int


class FakeSigner:
    """Deterministic 64-byte stand-in signatures: fast, and never verified."""

    __slots__ = ("_key",)

    def __init__(self, key: ValidatorId) -> None:
        self._key = key

    @property
    def public_key(self) -> ValidatorId:
        return self._key

    def sign_vote(self, vote: Vote) -> Vote:
        return vote.with_signature(sha256(DOMAIN_VOTE.encode() + self._key + vote.payload()) * 2)

    def sign_proposal(self, proposal: Proposal) -> Proposal:
        return proposal.with_signature(
            sha256(DOMAIN_PROPOSAL.encode() + self._key + proposal.payload()) * 2)


@dataclass(slots=True)
class Node:
    index: int
    name: str
    me: ValidatorId
    traits: Traits
    signer: Signer
    state: State
    up: bool = True
    incarnation: int = 0
    crash_on_wal: bool = False
    wal: list[WALEntry] = field(default_factory=list)
    decided: dict[int, BlockHash] = field(default_factory=dict)
    certificates: dict[int, tuple[Proposal, tuple[Vote, ...]]] = field(default_factory=dict)
    queue: deque[Input] = field(default_factory=deque)
    draining: bool = False
    #: Equivocators: signed primary message -> (its conflicting twin, the peers that get
    #: the primary, or None for the per-height split of :meth:`Simulation._favoured`).
    twins: dict[Message, tuple[Message, tuple[int, ...] | None]] = field(default_factory=dict)
    #: Values this node proposed (the fork attacker backs only these).
    own_values: dict[BlockHash, None] = field(default_factory=dict)
    #: Equivocators: height -> (peers favoured for proposals/prevotes, for precommits).
    favoured: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def honest(self) -> bool:
        return not self.traits


# Event kinds in the queue: (time_ms, seq, kind, node_index, payload)
_DELIVER, _TIMER, _GOSSIP, _CRASH, _RESTART, _GST, _DEADLINE, _PART = range(8)


class Simulation:
    def __init__(
        self,
        seed: int,
        n: int = 4,
        *,
        crypto: bool = False,
        scenario: Scenario | None = None,
        timeouts: TimeoutConfig = SIM_TIMEOUTS,
        liveness_heights: int = 2,
        apply: ApplyFn | None = None,
        trace_len: int = 40,
    ) -> None:
        if n < 1:
            raise ValueError("simulation: n >= 1")
        self.seed, self.n, self.crypto = seed, n, crypto
        self.scenario = scenario if scenario is not None else Scenario.generate(seed, n)
        self.timeouts = timeouts
        self.liveness_heights = liveness_heights
        # Looked up at call time so tests can monkeypatch the core.
        self._apply: ApplyFn = apply if apply is not None else (
            lambda s, i: driver.apply(s, i))
        self.cast = Cast(n)
        self.validators = self.cast.validators
        self.net = random.Random(f"medchaind-sim/{seed}/{n}/network")
        self.now = 0
        self._seq = 0
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self.trace: deque[tuple[int, str, Any]] = deque(maxlen=trace_len)
        self.events = 0
        self.nodes: list[Node] = []
        for i, name in enumerate(self.cast.names):
            me = self.cast.id(name)
            signer: Signer = self.cast.signers[name] if crypto else FakeSigner(me)
            self.nodes.append(Node(i, name, me, self.scenario.behaviours[i], signer,
                                   initial_state(me, timeouts)))
        # Global bookkeeping for the invariants.
        self.blocks: dict[BlockHash, bool] = {}
        self.proposed: dict[BlockHash, None] = {}
        self.decisions: dict[int, tuple[BlockHash, str]] = {}
        self.signed: dict[tuple[bytes, int, int, int], Message] = {}
        self.evidence_found = 0
        self.max_round = 0
        self.target_height: int | None = None
        self.deadline_ms: int | None = None
        self.done_ms: int | None = None
        self._block_counter = 0
        self._gossip_memo: dict[tuple[int, int], tuple[object, ...]] = {}
        self.partitions: list[Partition] = list(self.scenario.partitions)
        self.nemesis = random.Random(f"medchaind-sim/{seed}/{n}/nemesis")

    # ------------------------------------------------------------------ running

    def replay_command(self) -> str:
        cmd = f"python -m medchaind.testing.sim --seed {self.seed} --n {self.n}"
        return cmd + (" --crypto" if self.crypto else "")

    def fail(self, kind: str, detail: str) -> SimulationFailure:
        return SimulationFailure(kind, self.seed, self.n, detail,
                                 self.scenario.describe(self.cast.names),
                                 [self._format(e) for e in self.trace], self.replay_command())

    def run(self) -> SimResult:
        sc = self.scenario
        self._push(sc.gst_ms, _GST, -1, None)
        for c in sc.crashes:
            self._push(c.at_ms, _CRASH, c.node, c.on_wal)
            self._push(c.restart_ms, _RESTART, c.node, None)
        for p in sc.partitions:
            self._push(p.start_ms, _PART, -1, ("split", p.side))
            self._push(p.end_ms, _PART, -1, ("heal", p.side))
        for node in self.nodes:
            self._start(node)
        while self._queue:
            t, _, kind, idx, payload = heapq.heappop(self._queue)
            self.now = t
            self.events += 1
            if self.events > MAX_EVENTS:
                raise self.fail("stalled", f"more than {MAX_EVENTS} events")
            if kind == _DELIVER:
                self._deliver(self.nodes[idx], payload)
            elif kind == _TIMER:
                node = self.nodes[idx]
                incarnation, inp = payload
                if node.up and node.incarnation == incarnation:
                    self.trace.append((t, "timer", (node.name, inp)))
                    self._feed(node, inp)
            elif kind == _GOSSIP:
                node = self.nodes[idx]
                if node.up and node.incarnation == payload:
                    self._gossip(node)
                    self._push(t + GOSSIP_INTERVAL_MS, _GOSSIP, idx, payload)
            elif kind == _CRASH:
                node = self.nodes[idx]
                if payload:
                    node.crash_on_wal = True
                else:
                    self._crash(node)
            elif kind == _RESTART:
                node = self.nodes[idx]
                if node.up:  # a crash-on-WAL that never hit a WAL append: crash now
                    self._crash(node)
                self._restart(node)
            elif kind == _PART:
                self.trace.append((t, "partition", payload))
            elif kind == _GST:
                self._on_gst()
            elif kind == _DEADLINE:
                self._check_liveness_deadline()
            if self.done_ms is not None:
                break
        assert self.target_height is not None and self.deadline_ms is not None
        return SimResult(
            self.seed, self.n, self.events, self.now, sc.gst_ms,
            {nd.name: max(nd.decided, default=0) for nd in self.nodes},
            self.max_round, self.evidence_found,
            (self.done_ms or self.now) - sc.gst_ms, self.deadline_ms - sc.gst_ms,
        )

    def _push(self, t: int, kind: int, idx: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, idx, payload))

    # ------------------------------------------------------------------ network

    def _partitioned(self, src: int, dst: int) -> bool:
        return any(p.blocks(src, dst, self.now) for p in self.partitions)

    def _send(self, src: Node, dst: Node, msg: Message) -> None:
        if self.now < self.scenario.gst_ms:
            if self._partitioned(src.index, dst.index):
                return
            if self.net.randrange(100) < self.scenario.drop_percent:
                return
            delay = self.net.randint(1, self.scenario.max_delay_ms)
            if self.net.randrange(100) < self.scenario.slow_percent:
                delay = self.net.randint(self.scenario.max_delay_ms,
                                         5 * self.scenario.max_delay_ms + 500)
        else:
            delay = self.net.randint(1, POST_GST_MAX_DELAY_MS)
        self._push(self.now + delay, _DELIVER, dst.index, (src.index, msg))

    def _broadcast(self, src: Node, msg: Message) -> None:
        for dst in self.nodes:
            if dst is not src:
                self._send(src, dst, msg)

    def _deliver(self, node: Node, payload: tuple[int, Message]) -> None:
        src, msg = payload
        if not node.up or msg.height != node.state.height:
            return
        if self.now < self.scenario.gst_ms and self._partitioned(src, node.index):
            return  # a partition also loses the packets in flight
        if self.crypto:
            ok = verify_proposal(self.cast.chain_id, msg) if isinstance(msg, Proposal) else (
                verify_vote(self.cast.chain_id, msg))
            if not ok:
                return
        self.trace.append((self.now, "deliver", (self.nodes[src].name, node.name, msg)))
        if isinstance(msg, Proposal):
            self._feed(node, ProposalReceived(msg, self.blocks.get(msg.block_hash, False)))
        else:
            self._feed(node, VoteReceived(msg))

    def _gossip(self, x: Node) -> None:
        """Anti-entropy: send each peer what its core is missing (see module docstring)."""
        if x.traits:
            return  # Byzantine nodes send only what their behaviour dictates
        xs = x.state
        for y in self.nodes:
            if y is x or not y.up:
                continue
            ys = y.state
            if ys.height == xs.height:
                key = (x.index, y.index)
                snapshot = (xs.votes, xs.proposals, ys.votes, ys.proposals)
                memo = self._gossip_memo.get(key)
                if memo is not None and all(a is b for a, b in zip(memo, snapshot, strict=True)):
                    continue
                # What y's core would count now (CometBFT: HasVote / VoteSetBits).
                missing: list[Message] = [
                    v for v in xs.votes.all_votes()
                    if not ys.votes.contains(v) and ys.votes.classify(v, ys.round) in COUNTED
                ]
                missing += [p for p in xs.proposals.all_proposals()
                            if ys.proposals.classify(p, ys.validators, ys.votes, ys.round)
                            in COUNTED]
                if missing:
                    self._gossip_memo.pop(key, None)
                    for m in missing:
                        self._send(x, y, m)
                else:
                    self._gossip_memo[key] = snapshot
            elif ys.height < xs.height and ys.height in x.certificates:
                proposal, votes = x.certificates[ys.height]
                for v in votes:
                    if ys.votes.classify(v, ys.round) in COUNTED:
                        self._send(x, y, v)
                if ys.proposals.classify(proposal, ys.validators, ys.votes, ys.round) in COUNTED:
                    self._send(x, y, proposal)

    # ------------------------------------------------------------------ hosts

    def _start(self, node: Node) -> None:
        h = max(node.decided, default=0) + 1
        wal = tuple(e for e in node.wal if e.height == h)
        self._push(self.now + self.net.randint(1, GOSSIP_INTERVAL_MS), _GOSSIP, node.index,
                   node.incarnation)
        self._feed(node, StartHeight(Height(h), self.validators, wal))

    def _crash(self, node: Node) -> None:
        if not node.up:
            return
        self.trace.append((self.now, "crash", node.name))
        node.up = False
        node.crash_on_wal = False
        node.incarnation += 1
        node.queue.clear()
        node.twins.clear()

    def _restart(self, node: Node) -> None:
        if node.up:
            return
        self.trace.append((self.now, "restart", node.name))
        node.up = True
        node.state = initial_state(node.me, self.timeouts)
        self._start(node)

    def _feed(self, node: Node, inp: Input) -> None:
        """Apply ``inp`` and carry out the effects; own inputs they produce are queued
        (like CometBFT's internal queue) and applied after the current effect list."""
        if not node.up:
            return
        node.queue.append(inp)
        if node.draining:
            return
        node.draining = True
        try:
            while node.queue and node.up:
                if Behaviour.AMNESIA in node.traits or Behaviour.FORK in node.traits:
                    node.state = replace(node.state, locked_value=None, locked_round=NIL_ROUND,
                                         valid_value=None, valid_round=NIL_ROUND)
                node.state, effects = self._apply(node.state, node.queue.popleft())
                if node.state.round > self.max_round:
                    self.max_round = node.state.round
                for effect in effects:
                    if not node.up:
                        break  # crashed in the middle of the effect list
                    self._effect(node, effect)
        finally:
            node.draining = False

    def _effect(self, node: Node, effect: Effect) -> None:
        match effect:
            case WALAppend(entry=entry):
                node.wal.append(entry)
                if node.crash_on_wal:
                    self._crash(node)  # the entry is durable, the signature never leaves
            case SignVote(vote=vote):
                self._sign_vote(node, vote)
            case SignProposal(proposal=proposal):
                self._sign_proposal(node, proposal)
            case Broadcast(message=msg):
                if Behaviour.SILENT in node.traits:
                    return
                equivocation = node.twins.pop(msg, None)
                if equivocation is None:
                    self._broadcast(node, msg)
                else:
                    # Equivocation: the favoured peers get one version, the rest the twin.
                    twin, favoured = equivocation
                    if favoured is None:
                        favoured = self._favoured(node, msg)
                    for o in self.nodes:
                        if o is not node:
                            self._send(node, o, msg if o.index in favoured else twin)
            case ScheduleTimeout(kind=kind, height=h, round=r, duration_ms=ms):
                self._push(self.now + ms, _TIMER, node.index,
                           (node.incarnation, TimeoutFired(kind, h, r)))
            case RequestValue(height=h, round=r):
                value = self._new_block(node, h, r,
                                        valid=Behaviour.INVALID_PROPOSALS not in node.traits)
                self._push(self.now + self.net.randint(1, BUILD_MAX_DELAY_MS), _TIMER,
                           node.index, (node.incarnation, BlockReady(h, r, value)))
            case Decide():
                self._on_decide(node, effect)
            case EvidenceFound(evidence=ev):
                self.evidence_found += 1
                culprit = self.nodes[self.validators.index(ev.validator)]
                if culprit.honest:
                    raise self.fail("accusation", f"{node.name} found evidence against honest "
                                    f"{culprit.name}: {ev}")

    def _favoured(self, node: Node, msg: Message) -> tuple[int, ...]:
        """The peers an equivocator sends the first version of ``msg`` to.

        Per height it orders its peers at random and picks k1 >= k2 >= 1: proposals and
        prevotes go to the first k1, precommits to the first k2. Nested sets let some
        nodes see a polka and lock, and fewer of them complete a commit.
        """
        split = node.favoured.get(msg.height)
        if split is None:
            order = [o.index for o in self.nodes if o is not node]
            self.net.shuffle(order)
            k1 = self.net.randint(1, len(order))
            k2 = self.net.randint(1, k1)
            split = (tuple(order[:k1]), tuple(order[:k2]))
            node.favoured = {msg.height: split}
        if isinstance(msg, Vote) and msg.kind == VoteKind.PRECOMMIT:
            return split[1]
        return split[0]

    def _new_block(self, node: Node, h: int, r: int, valid: bool) -> BlockHash:
        self._block_counter += 1
        value = BlockHash(sha256(f"sim/{self.seed}/{node.name}/{h}/{r}/"
                                 f"{self._block_counter}".encode()))
        self.blocks[value] = valid
        return value

    def _random_hash(self) -> BlockHash:
        return BlockHash(sha256(b"sim-random/%d" % self.net.getrandbits(64)))

    def _record_signature(self, node: Node, msg: Message) -> None:
        """Invariant 2: an honest validator never signs two messages for one (h, r, step)."""
        if not node.honest:
            return
        ls = LastSigned.of(msg)
        key = (node.me, ls.height, ls.round, int(ls.step))
        prior = self.signed.get(key)
        if prior is None:
            self.signed[key] = ls.message
        elif prior != ls.message:
            raise self.fail("double-sign", f"honest {node.name} signed {prior!r} and then "
                            f"{ls.message!r}")

    def _sign_vote(self, node: Node, vote: Vote) -> None:
        b = node.traits
        if Behaviour.PREVOTE_NIL in b and vote.kind == VoteKind.PREVOTE:
            vote = Vote(vote.kind, vote.height, vote.round, None, vote.validator)
        elif Behaviour.PREVOTE_RANDOM in b and vote.kind == VoteKind.PREVOTE:
            vote = Vote(vote.kind, vote.height, vote.round, self._random_hash(), vote.validator)
        signed = node.signer.sign_vote(vote)
        self._record_signature(node, signed)
        if node.honest and vote.kind == VoteKind.PRECOMMIT and vote.block_hash is not None:
            self._maybe_isolate(node)
        self.trace.append((self.now, "sign", (node.name, signed)))
        if Behaviour.EQUIVOCATE in b:
            alt = None if vote.block_hash is not None else self._random_hash()
            node.twins[signed] = (node.signer.sign_vote(
                Vote(vote.kind, vote.height, vote.round, alt, vote.validator)), None)
        elif (Behaviour.FORK in b and vote.kind == VoteKind.PRECOMMIT
              and vote.block_hash is not None and vote.block_hash not in node.own_values):
            muted = tuple(p.side[0] for p in self.partitions
                          if p.one_way and p.start_ms <= self.now < p.end_ms)
            node.twins[signed] = (node.signer.sign_vote(
                Vote(vote.kind, vote.height, vote.round, None, vote.validator)), muted)
        self._feed(node, VoteReceived(signed))

    def _sign_proposal(self, node: Node, proposal: Proposal) -> None:
        signed = node.signer.sign_proposal(proposal)
        node.own_values[proposal.block_hash] = None
        self._record_signature(node, signed)
        self.proposed[proposal.block_hash] = None
        self.trace.append((self.now, "sign", (node.name, signed)))
        if Behaviour.EQUIVOCATE in node.traits:
            alt = self._new_block(node, proposal.height, proposal.round, valid=True)
            twin = node.signer.sign_proposal(
                Proposal(proposal.height, proposal.round, alt, proposal.pol_round,
                         proposal.proposer))
            self.proposed[alt] = None
            node.twins[signed] = (twin, None)
        self._feed(node, ProposalReceived(signed, True))

    # ------------------------------------------------------------------ decisions

    def _on_decide(self, node: Node, d: Decide) -> None:
        if Behaviour.FORK in node.traits and self._honest_still_at(d.height):
            # The attacker ignores its decision and keeps attacking the honest laggards.
            node.state = replace(node.state, step=Step.PRECOMMIT, decision=None)
            return
        self.trace.append((self.now, "decide", (node.name, d)))
        if node.honest:
            prior = self.decisions.get(d.height)
            if prior is None:
                self.decisions[d.height] = (d.block_hash, node.name)
            elif prior[0] != d.block_hash:
                raise self.fail("agreement", f"height {d.height}: {prior[1]} decided "
                                f"{prior[0].hex()[:8]}, {node.name} decided "
                                f"{d.block_hash.hex()[:8]}")
            if d.block_hash not in self.proposed or not self.blocks.get(d.block_hash, False):
                raise self.fail("validity", f"{node.name} decided {d.block_hash.hex()[:8]} at "
                                f"height {d.height}, which was never proposed as a valid block")
            if self.crypto:
                try:
                    verify_commit(d.to_commit(), self.cast.chain_id, self.validators.powers(),
                                  d.block_hash, d.height)
                except ValidationError as exc:
                    raise self.fail("validity",
                                    f"{node.name}'s commit does not verify: {exc}") from None
        node.decided[d.height] = d.block_hash
        node.certificates[d.height] = (d.proposal, d.commit_votes)
        self._check_done()
        self._feed(node, StartHeight(Height(d.height + 1), self.validators))
        if node.honest:
            self._release_attackers(d.height)

    def _honest_still_at(self, height: int) -> bool:
        return any(nd.honest and height not in nd.decided for nd in self.nodes)

    def _release_attackers(self, height: int) -> None:
        """Fork attackers that held back at ``height`` follow once no honest node is left."""
        if self._honest_still_at(height):
            return
        for nd in self.nodes:
            if (Behaviour.FORK in nd.traits and nd.up and nd.state.height == height
                    and height in self.decisions):
                nd.decided[height] = self.decisions[height][0]
                self._feed(nd, StartHeight(Height(height + 1), self.validators))

    def _maybe_isolate(self, node: Node) -> None:
        sc = self.scenario
        if any(p.one_way and p.end_ms > self.now for p in self.partitions):
            return  # one muted node at a time: muting more only freezes everyone
        if self.now < sc.gst_ms and self.nemesis.randrange(100) < sc.isolate_percent:
            end = min(sc.gst_ms, self.now + sc.isolate_ms)
            self.partitions.append(Partition(self.now, end, (node.index,), one_way=True))
            self.trace.append((self.now, "partition", ("mute", (node.index,))))

    def liveness_bound_ms(self, max_round: int) -> int:
        """How long after GST every honest node may take to reach the target height.

        A round r costs at most its three timeouts plus a few message delays and a gossip
        period. A lagging honest node may have to time out through every round up to the
        highest round R any honest node reached, and then up to n + 2 more rounds until
        an honest proposer's round finds the honest nodes together; every later height
        starts again at round 0 and needs at most n + 2 rounds.
        """
        def round_ms(r: int) -> int:
            return (sum(self.timeouts.duration_ms(k, r) for k in TimeoutKind)
                    + 4 * POST_GST_MAX_DELAY_MS + GOSSIP_INTERVAL_MS)
        first = sum(round_ms(r) for r in range(max_round + self.n + 3))
        later = sum(round_ms(r) for r in range(self.n + 3))
        return first + (self.liveness_heights - 1) * later

    def _on_gst(self) -> None:
        self.trace.append((self.now, "gst", None))
        for c in self.scenario.crashes:
            node = self.nodes[c.node]
            node.crash_on_wal = False
            if not node.up:
                self._restart(node)
        honest = [nd for nd in self.nodes if nd.honest]
        top = max(nd.state.height for nd in honest)
        self.target_height = top + self.liveness_heights - 1
        max_round = max(nd.state.round for nd in honest)
        self.deadline_ms = self.now + self.liveness_bound_ms(max_round)
        self._push(self.deadline_ms, _DEADLINE, -1, None)
        self._check_done()

    def _check_done(self) -> None:
        if self.target_height is None:
            return
        t = self.target_height
        if all(t in nd.decided for nd in self.nodes if nd.honest):
            self.done_ms = self.now

    def _check_liveness_deadline(self) -> None:
        if self.done_ms is not None:
            return
        status = ", ".join(f"{nd.name}@h{nd.state.height}r{nd.state.round}"
                           f"{nd.state.step.name[:4].lower()}" for nd in self.nodes if nd.honest)
        bound = (self.deadline_ms or self.now) - self.scenario.gst_ms
        raise self.fail("liveness", f"honest nodes did not all decide height "
                        f"{self.target_height} within {bound}ms after GST: {status}")

    # ------------------------------------------------------------------ tracing

    def _format(self, entry: tuple[int, str, Any]) -> str:
        t, kind, data = entry
        c = self.cast
        if kind == "deliver":
            src, dst, msg = data
            return f"t={t} {src}->{dst} {c.describe_message(msg)}"
        if kind == "sign":
            name, msg = data
            return f"t={t} {name} signs {c.describe_message(msg)}"
        if kind == "timer":
            name, inp = data
            if isinstance(inp, TimeoutFired):
                return f"t={t} {name} timeout {inp.kind.name.lower()} h{inp.height} r{inp.round}"
            return f"t={t} {name} built block for h{inp.height} r{inp.round}"
        if kind == "decide":
            name, d = data
            return f"t={t} {name} decides h{d.height} {c.describe(d)}"
        if kind == "partition":
            what, side = data
            return f"t={t} partition {what} {''.join(c.names[i] for i in side)}|rest"
        return f"t={t} {kind} {data if data is not None else ''}".rstrip()


def run(seed: int, n: int = 4, **kwargs: Any) -> SimResult:
    """Run one seeded simulation; raise :class:`SimulationFailure` on a violation."""
    return Simulation(seed, n, **kwargs).run()


def sweep(seeds: range, n: int, **kwargs: Any) -> list[SimResult]:
    return [run(s, n, **kwargs) for s in seeds]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medchaind.testing.sim",
        description="Replay (or sweep) seeded consensus simulations and check invariants.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=4, help="number of validators (3f+1)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="run this many consecutive seeds starting at --seed")
    parser.add_argument("--crypto", action="store_true",
                        help="real Ed25519 signatures, verified on receipt and in commits")
    parser.add_argument("--trace", type=int, default=40, help="events kept for a failure report")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    worst = 0
    for seed in range(args.seed, args.seed + args.seeds):
        try:
            result = run(seed, args.n, crypto=args.crypto, trace_len=args.trace)
        except SimulationFailure as exc:
            print(exc, file=sys.stderr)
            return 1
        worst = max(worst, result.liveness_ms)
        if args.seeds == 1:
            sim_scenario = Scenario.generate(seed, args.n)
            print(f"seed={seed} n={args.n} ok: {sim_scenario.describe(Cast(args.n).names)}")
            print(f"  heights={result.heights} max_round={result.max_round} "
                  f"evidence={result.evidence} events={result.events} end={result.end_ms}ms")
            print(f"  decided after GST in {result.liveness_ms}ms "
                  f"(bound {result.liveness_bound_ms}ms)")
    if args.seeds > 1:
        print(f"{args.seeds} seeds from {args.seed}, n={args.n}: ok; slowest post-GST "
              f"decision {worst}ms; {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
