"""The consensus service: runs the pure Tendermint core against the network and ledger.

Theory of operation
-------------------
One task owns the core's state (STYLE habit 4). Everything else talks to it through
one bounded channel of events:

* verified peer messages (the gossip validator already checked shape, signature and
  authority membership; proposals carry their block),
* expired timeouts (one small timer task per ``ScheduleTimeout`` effect; stale ones
  are ignored by the core),
* "txs are ready" wake-ups from the mempool, and blocks handed over by sync.

For each event the engine calls ``core.apply`` and carries out the effects in order
(see :mod:`medchaind.core.driver`): WAL append + fsync before signing, sign and feed
back, broadcast, schedule timers, build a block on ``RequestValue``, commit on
``Decide``. valid(v) for a proposal is the full check of :func:`chain.validate_block`
(re-execution) plus the block's ``last_commit`` against the previous authority set;
the resulting Execution is cached by block hash so a decided block is committed
without executing it again.

Heights start lazily: after committing h, the engine starts h+1 only once there is
something to decide (a tx is ready in the mempool, a peer already sent a message for
h+1, or ``create_empty_blocks`` asks for a block every interval). An idle network
therefore produces no blocks, and one pending tx wakes it at once.

Gossip is an optimisation, never a correctness requirement: a node that missed
messages (crash, partition) is brought up to date by :mod:`medchaind.sync`, whose
blocks come through the same channel and are checked against the authority set
(commit signatures, re-execution) before the ledger takes them. Each round timeout
re-broadcasts this node's own messages of the height, so peers that missed them after
a heal still get them.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .. import core
from ..chain import build_block, next_time_ms, validate_block
from ..core import (
    BlockReady,
    Broadcast,
    Decide,
    Ed25519Signer,
    EvidenceFound,
    Message,
    Proposal,
    ProposalReceived,
    RequestValue,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    StartHeight,
    TimeoutConfig,
    TimeoutFired,
    TimeoutKind,
    ValidatorSet,
    Vote,
    VoteReceived,
    WALAppend,
)
from ..crypto import SigningKey
from ..errors import InvalidBlock, MedchainError, ValidationError
from ..mempool import Mempool
from ..node.ledger import Ledger
from ..types import Block, Commit, Tx, decode_block, sign_tx, verify_commit
from .wal import WAL
from .wire import ConsensusMsg, block_topic, consensus_topic, decode_consensus, encode_announce, encode_consensus

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..app import Execution
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

MAX_FUTURE_MESSAGES = 10_000
PUBLISH_TIMEOUT_S = 10.0


def evidence_tx(key: SigningKey, chain_id: str, nonce: int, evidence: core.Evidence) -> Tx:
    """The ``governance.evidence`` tx that puts an equivocation on chain."""
    return sign_tx(key, chain_id, "governance.evidence", nonce,
                   {"vote_a": evidence.vote_a.to_map(), "vote_b": evidence.vote_b.to_map()})


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BftConfig:
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    create_empty_blocks: bool = False
    empty_block_interval_ms: int = 1000
    #: a proposal whose block time is further ahead of our clock is invalid
    max_clock_drift_ms: int = 10_000
    #: while a height is undecided, re-broadcast our own messages this often, so peers
    #: that missed them (partition, restart) still get them: Tendermint assumes that
    #: messages between correct nodes are eventually delivered, and gossip alone drops
    regossip_interval_ms: int = 1000
    #: this node proposes blocks of at most this many bytes of txs (the consensus limit,
    #: genesis ``max_block_bytes``, may be larger); a proposal carries its block through
    #: gossip, so it must stay under the network's message limit
    max_proposal_bytes: int = 2 * 1024 * 1024


# ---------------------------------------------------------------- engine events


@dataclass(frozen=True, slots=True)
class _Peer:
    msg: ConsensusMsg


@dataclass(frozen=True, slots=True)
class _Timeout:
    kind: TimeoutKind
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class _TxsReady:
    height: int


@dataclass(frozen=True, slots=True)
class _EmptyBlockDue:
    height: int


@dataclass(frozen=True, slots=True)
class _Synced:
    block: Block
    commit: Commit
    done: trio.Event


_Event = _Peer | _Timeout | _TxsReady | _EmptyBlockDue | _Synced


class BftEngine:
    def __init__(
        self,
        ledger: Ledger,
        mempool: Mempool,
        key: SigningKey | None,
        net: NetworkAPI,
        wal: WAL | None,
        config: BftConfig | None = None,
        clock_ms: Callable[[], int] = wall_clock_ms,
        on_evidence: Callable[[core.Evidence], None] | None = None,
    ) -> None:
        self.on_evidence = on_evidence
        self.ledger = ledger
        self.mempool = mempool
        self.key = key
        self.net = net
        self.wal = wal
        self.config = config or BftConfig()
        self.clock_ms = clock_ms
        self.chain_id = ledger.genesis.chain_id
        self.signer = Ed25519Signer(key, self.chain_id) if key is not None else None
        me = core.ValidatorId(key.public_key) if key is not None else None
        self.state = core.initial_state(me, self.config.timeouts)
        self._send, self._recv = trio.open_memory_channel[_Event](MAX_FUTURE_MESSAGES)
        self._own: deque[core.Input] = deque()
        self._blocks: dict[bytes, tuple[Block, Execution | None]] = {}
        self._wal_blocks: set[bytes] = set()  # hashes whose block this height's WAL holds
        self._future: list[ConsensusMsg] = []
        self._own_msgs: list[tuple[Message, Block | None]] = []
        self.last_commit: Commit | None = ledger.store.get_commit(ledger.height) if ledger.height else None
        self._prev_powers: dict[bytes, int] = dict(ledger.tip.powers)
        self._nursery: trio.Nursery | None = None
        self.started_height = 0  # the height the core is working on (0: none)
        self.evidence: list[Any] = []
        self._resends = 0
        self._need_drain = False
        self.rounds_total = 0

    # ------------------------------------------------------------ public

    @property
    def next_height(self) -> int:
        return self.ledger.height + 1

    def status(self) -> dict[str, Any]:
        s = self.state
        votes: dict[str, list[dict[str, Any]]] = {"prevote": [], "precommit": []}
        if self.started_height:
            for v in s.votes.all_votes():
                if v.round == s.round:
                    votes[v.kind.name.lower()].append({
                        "validator": "0x" + bytes(v.validator).hex(),
                        "block": None if v.block_hash is None else "0x" + bytes(v.block_hash).hex(),
                    })
        return {
            "height": int(s.height) if self.started_height else self.next_height,
            "round": int(s.round),
            "step": s.step.name.lower(),
            "started": bool(self.started_height),
            "authorities": [
                {"public_key": "0x" + k.hex(), "power": p} for k, p in sorted(self.ledger.tip.powers.items())
            ],
            "proposer": "0x" + s.validators.proposer(s.height, s.round).hex() if self.started_height else None,
            "locked_round": int(s.locked_round),
            "votes": votes,
            "evidence": len(self.evidence),
        }

    def on_consensus_gossip(self, peer: PeerId, data: bytes) -> bool:
        """Gossip validator: decode, check signature and authority; queue if acceptable."""
        try:
            msg = decode_consensus(data, self.mempool.get)
        except (MedchainError, ValueError) as exc:
            log.debug("rejecting consensus message from %s: %s", peer, exc)
            return False
        m = msg.message
        if m.height < self.next_height or m.height > self.next_height + 1:
            # old: useless; far future: sync will catch us up. Neither spreads further.
            return False
        powers = self.ledger.tip.powers
        signer_key = m.proposer if isinstance(m, Proposal) else m.validator
        if signer_key not in powers:
            return False
        ok = core.verify_proposal(self.chain_id, m) if isinstance(m, Proposal) else core.verify_vote(self.chain_id, m)
        if not ok:
            return False
        try:
            self._send.send_nowait(_Peer(msg))
        except trio.WouldBlock:
            log.warning("consensus inbox full; dropping a message height=%d", m.height)
        return True

    async def submit_synced(self, block: Block, commit: Commit) -> None:
        """Hand a block fetched by sync to the engine; returns once it was processed."""
        done = trio.Event()
        await self._send.send(_Synced(block, commit, done))
        await done.wait()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_mempool)
            nursery.start_soon(self._regossip)
            task_status.started()
            log.info("consensus started height=%d authorities=%d validator=%s", self.next_height,
                     len(self.ledger.tip.powers), self._is_validator())
            wal_top = self.wal.max_height() if self.wal is not None else None
            if wal_top is not None and wal_top > self.next_height:
                # e.g. chaindata restored from a backup older than the WAL kept beside it
                log.warning(
                    "consensus.wal holds messages this key signed up to height %d, but the chain here "
                    "ends at %d: chaindata is older than the WAL (restored from an older backup?). "
                    "This node will not sign those heights again; it needs the missing blocks from peers",
                    wal_top, self.ledger.height,
                )
            self._maybe_start_height(force=self._wal_has(self.next_height))
            await self._drain_if_needed()
            async for ev in self._recv:
                await self._handle(ev)
                await self._drain_if_needed()

    # ------------------------------------------------------------ events

    def _is_validator(self) -> bool:
        return self.key is not None and self.key.public_key in self.ledger.tip.powers

    def _wal_has(self, height: int) -> bool:
        return self.wal is not None and bool(self.wal.entries(height))

    async def _handle(self, ev: _Event) -> None:
        if isinstance(ev, _Peer):
            m = ev.msg.message
            if m.height == self.next_height and not self.started_height:
                self._maybe_start_height(force=True)
            if m.height != self.started_height:
                if m.height > self.next_height - 1 and len(self._future) < MAX_FUTURE_MESSAGES:
                    self._future.append(ev.msg)
                return
            await self._feed_peer(ev.msg)
        elif isinstance(ev, _Timeout):
            if ev.height == self.started_height:
                await self._apply(TimeoutFired(ev.kind, core.Height(ev.height), core.Round(ev.round)))
        elif isinstance(ev, (_TxsReady, _EmptyBlockDue)):
            if ev.height == self.next_height and not self.started_height:
                self._maybe_start_height(force=True)
        elif isinstance(ev, _Synced):
            try:
                await self._commit_synced(ev.block, ev.commit)
            finally:
                ev.done.set()

    async def _feed_peer(self, msg: ConsensusMsg) -> None:
        m = msg.message
        if isinstance(m, Proposal):
            assert msg.block is not None
            valid = self._judge(msg.block)
            await self._apply(ProposalReceived(m, valid))
        else:
            assert isinstance(m, Vote)
            await self._apply(VoteReceived(m))

    def _judge(self, block: Block) -> bool:
        """valid(v): full validation and re-execution; caches the execution by hash."""
        h = block.hash()
        cached = self._blocks.get(h)
        if cached is not None:
            return cached[1] is not None
        ex: Execution | None
        try:
            if block.header.time_ms > self.clock_ms() + self.config.max_clock_drift_ms:
                raise InvalidBlock("block time is too far in the future")
            if block.last_commit is not None:
                verify_commit(block.last_commit, self.chain_id, self._prev_powers,
                              block.header.prev_hash, block.height - 1)
            params = self.ledger.genesis.params
            ex = validate_block(self.ledger.app, self.ledger.state, self.ledger.tip, block, self.mempool.sigs,
                                max_txs=params.max_block_txs, max_bytes=params.max_block_bytes)
        except (InvalidBlock, ValidationError) as exc:
            log.warning("invalid proposal height=%d hash=%s reason=%s", block.height, h.hex()[:16], exc)
            ex = None
        self._blocks[h] = (block, ex)
        return ex is not None

    # ------------------------------------------------------------ heights

    def _maybe_start_height(self, *, force: bool = False) -> None:
        h = self.next_height
        if self.started_height == h:
            return
        if not force and not self.config.create_empty_blocks and not self.mempool.reap(1, 1 << 62):
            return
        self.started_height = h
        self._blocks = {k: v for k, v in self._blocks.items() if v[0].height >= h}
        self._own_msgs = []
        self._wal_blocks = set()
        vs = ValidatorSet.from_powers(self.ledger.tip.powers)
        wal = self.wal.entries(h) if self.wal is not None else ()
        for raw in self.wal.blocks(h) if self.wal is not None else ():
            # blocks this node proposed or voted for before a restart: valid(v) again
            try:
                block = decode_block(raw, known=self.mempool.get)
            except MedchainError as exc:
                log.warning("ignoring an undecodable block in consensus.wal height=%d error=%s", h, exc)
                continue
            if block.height == h:
                self._judge(block)
                self._wal_blocks.add(block.hash())
        self._own.append(StartHeight(core.Height(h), vs, wal=wal))
        # deliver buffered messages of this height after the start
        future, self._future = self._future, [m for m in self._future if m.message.height > h]
        self._replay = [m for m in future if m.message.height == h]
        # processed by the engine task itself, right after the current event: the core
        # and the ledger are only ever touched by that one task (no interleaved commits)
        self._need_drain = True

    async def _drain_if_needed(self) -> None:
        while self._need_drain:
            self._need_drain = False
            await self._drain_own()

    async def _drain_own(self) -> None:
        await self._apply_pending()
        replay, self._replay = getattr(self, "_replay", []), []
        for m in replay:
            if m.message.height == self.started_height:
                await self._feed_peer(m)

    async def _watch_mempool(self) -> None:
        """Wake the engine when a tx becomes proposable, or when an empty block is due."""
        while True:
            h = self.next_height
            if self.config.create_empty_blocks:
                with trio.move_on_after(self.config.empty_block_interval_ms / 1000):
                    await self.mempool.wait_for_txs()
                await self._send.send(_EmptyBlockDue(h))
            else:
                await self.mempool.wait_for_txs()
                await self._send.send(_TxsReady(h))
            await self.ledger.wait_height(h)  # one wake-up per height is enough

    # ------------------------------------------------------------ the core

    async def _apply(self, inp: core.Input) -> None:
        self._own.append(inp)
        await self._apply_pending()

    async def _apply_pending(self) -> None:
        while self._own:
            inp = self._own.popleft()
            self.state, effects = core.apply(self.state, inp)
            for eff in effects:
                await self._effect(eff)

    async def _effect(self, eff: core.Effect) -> None:
        if isinstance(eff, WALAppend):
            if self.wal is not None:
                self._wal_block(eff.entry)
                self.wal.append(eff.entry.height, eff.entry)
        elif isinstance(eff, SignVote):
            assert self.signer is not None
            self._own.append(VoteReceived(self.signer.sign_vote(eff.vote)))
        elif isinstance(eff, SignProposal):
            assert self.signer is not None
            signed = self.signer.sign_proposal(eff.proposal)
            entry = self._blocks.get(signed.block_hash)
            self._own.append(ProposalReceived(signed, entry is not None and entry[1] is not None))
        elif isinstance(eff, Broadcast):
            block = None
            if isinstance(eff.message, Proposal):
                cached = self._blocks.get(eff.message.block_hash)
                if cached is None:
                    log.error("cannot broadcast a proposal without its block")
                    return
                block = cached[0]
            self._own_msgs.append((eff.message, block))
            # never let a slow or stuck peer connection hold up the state machine
            assert self._nursery is not None
            self._nursery.start_soon(self._publish, eff.message, block)
        elif isinstance(eff, ScheduleTimeout):
            assert self._nursery is not None
            self._nursery.start_soon(self._timer, eff.kind, int(eff.height), int(eff.round), eff.duration_ms)
            if eff.kind == TimeoutKind.PROPOSE and eff.round > 0:
                self.rounds_total += 1
                log.info("round change height=%d round=%d", eff.height, eff.round)
        elif isinstance(eff, RequestValue):
            block_hash = self._build(int(eff.height), int(eff.round))
            self._own.append(BlockReady(eff.height, eff.round, core.BlockHash(block_hash)))
        elif isinstance(eff, Decide):
            await self._decide(eff)
        elif isinstance(eff, EvidenceFound):
            self.evidence.append(eff.evidence)
            log.warning("equivocation detected evidence=%r", eff.evidence)
            if self.on_evidence is not None:
                try:
                    self.on_evidence(eff.evidence)
                except MedchainError as exc:
                    log.warning("could not submit evidence: %s", exc)

    async def _publish(self, message: Message, block: Block | None, resend: int = 0) -> None:
        try:
            with trio.move_on_after(PUBLISH_TIMEOUT_S):
                await self.net.publish(consensus_topic(self.chain_id), encode_consensus(message, block, resend))
        except MedchainError as exc:
            log.warning("publish failed: %s", exc)

    def _rebroadcast_own(self) -> None:
        assert self._nursery is not None
        self._resends += 1
        for message, block in self._own_msgs[-6:]:
            self._nursery.start_soon(self._publish, message, block, self._resends)

    async def _regossip(self) -> None:
        """Re-broadcast while a height is stuck, backing off 1, 2, 4, 8 intervals.

        A height that decides quickly never re-sends anything: a proposal carries its
        block, and every receiver would decode it again.
        """
        height, waited, backoff = 0, 0, 1
        while True:
            await trio.sleep(self.config.regossip_interval_ms / 1000)
            if self.started_height != height:
                height, waited, backoff = self.started_height, 0, 1
                continue
            waited += 1
            if height and self._own_msgs and waited >= backoff:
                self._rebroadcast_own()
                waited, backoff = 0, min(backoff * 2, 8)

    async def _timer(self, kind: TimeoutKind, height: int, round_: int, ms: int) -> None:
        await trio.sleep(ms / 1000)
        await self._send.send(_Timeout(kind, height, round_))

    def _wal_block(self, entry: Any) -> None:
        """Before a signed message that names a block: that block, once, in the WAL."""
        assert self.wal is not None
        named = getattr(entry, "block_hash", None)
        if named is None or bytes(named) in self._wal_blocks:
            return
        cached = self._blocks.get(bytes(named))
        if cached is None:  # pragma: no cover - the core only names blocks it was given
            return
        self.wal.append_block(int(entry.height), cached[0].encode())
        self._wal_blocks.add(bytes(named))

    def _build(self, height: int, round_: int) -> bytes:
        assert self.key is not None and height == self.next_height
        params = self.ledger.genesis.params
        tip = self.ledger.tip
        txs = self.mempool.reap(params.max_block_txs, min(params.max_block_bytes, self.config.max_proposal_bytes))
        block, ex = build_block(
            self.ledger.app, self.ledger.state, tip, txs, proposer=self.key.public_key,
            time_ms=next_time_ms(tip, self.clock_ms()), round_=round_, last_commit=self.last_commit,
        )
        self._blocks[block.hash()] = (block, ex)
        return block.hash()

    async def _decide(self, d: Decide) -> None:
        cached = self._blocks.get(d.block_hash)
        block, ex = cached if cached is not None else (None, None)
        if block is None or ex is None:
            # We never saw (a valid copy of) the decided block; sync fetches it from a
            # peer that committed it. Stay at this height until then.
            log.warning("decided a block we do not have height=%d hash=%s; waiting for sync",
                        d.height, bytes(d.block_hash).hex()[:16])
            return
        await self._commit(block, d.to_commit(), ex)

    async def _commit(self, block: Block, commit: Commit, ex: Execution) -> None:
        self._prev_powers = dict(self.ledger.tip.powers)
        await self.ledger.commit(block, commit, ex)
        self.last_commit = commit
        self.mempool.update(block.txs)
        if self.wal is not None:
            self.wal.prune(block.height + 1)
        self.started_height = 0
        self._blocks = {k: v for k, v in self._blocks.items() if v[0].height > block.height}
        log.info("committed block height=%d round=%d txs=%d hash=%s", block.height, commit.round,
                 len(block.txs), block.hash().hex()[:16])
        assert self._nursery is not None
        self._nursery.start_soon(self._announce, block.height, block.hash())
        has_next = any(m.message.height == self.next_height for m in self._future)
        self._maybe_start_height(force=has_next)

    async def _announce(self, height: int, block_hash: bytes) -> None:
        try:
            await self.net.publish(block_topic(self.chain_id), encode_announce(height, block_hash))
        except MedchainError:
            pass

    async def _commit_synced(self, block: Block, commit: Commit) -> None:
        if block.height != self.next_height:  # consensus got there first
            return
        tip = self.ledger.tip
        try:
            verify_commit(commit, self.chain_id, tip.powers, block.hash(), block.height)
            if block.last_commit is not None:
                verify_commit(block.last_commit, self.chain_id, self._prev_powers,
                              block.header.prev_hash, block.height - 1)
            params = self.ledger.genesis.params
            ex = validate_block(self.ledger.app, self.ledger.state, tip, block, self.mempool.sigs,
                                max_txs=params.max_block_txs, max_bytes=params.max_block_bytes)
        except (InvalidBlock, ValidationError) as exc:
            log.warning("sync: rejected block height=%d reason=%s", block.height, exc)
            raise
        # leave the height we were deciding: the network already decided it
        self.state = core.initial_state(self.state.me, self.config.timeouts)
        await self._commit(block, commit, ex)
