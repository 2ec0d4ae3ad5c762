"""The consensus service: runs the pure Tendermint core against the network and ledger.

Theory of operation
-------------------
One task owns the core's state (STYLE habit 4). Everything else talks to it through
one bounded channel of events:

* verified peer messages (the gossip validator already checked shape, signature and
  authority membership; a proposal comes with its block rebuilt: see below),
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

Proposals are compact (:mod:`.compact`, protocol 4): the block's txs by hash. The
gossip validator rebuilds the block from the mempool (and this height's blocks) when it
holds every tx; otherwise it starts one fetch task per proposed block, which asks the
proposal's publisher and then the other peers over ``txs/1`` for what is missing, and
queues the proposal once its block is complete. A proposal whose txs have not come by
the propose timeout is a lost one to the core (nil prevote); one completed later is a
late proposal (still decidable, L49). The engine serves ``txs/1`` from its mempool and block cache.

What a peer can make this node hold is bounded (:mod:`.buffers`): the gossip validator
drops proposals that are not their signer's turn before it decodes their block, the
bytes queued for the engine and parked for the next height are bounded in total and per
signer, and a block is judged (executed) and cached only for a proposal the core will
keep (:func:`core.admits_proposal`).

An authority signs only while :class:`~.signguard.DoubleSignGuard` allows it: after a
start it first looks through the commits of the last ``double_sign_check_height``
heights for its own precommits that its WAL does not hold, and it keeps watching gossip
and new commits for its key signing elsewhere. While signing is off the core runs
without a key (a follower), so nothing is logged, signed or proposed.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .. import core
from ..app import App
from ..chain import Checked, build_block, check_decided_block, next_time_ms, validate_block
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
    VoteKind,
    VoteReceived,
    WALAppend,
)
from ..crypto import SigningKey
from ..errors import InvalidBlock, MedchainError, ValidationError
from ..ledger import Ledger
from ..mempool import Mempool
from ..types import Block, Commit, Tx, decode_block, sign_tx, verify_commit
from ..types.block import MAX_BLOCK_BYTES, PRECOMMIT, vote_payload
from .buffers import FutureBuffer, InboxQuota
from .compact import TXS_PROTOCOL, Assembly, fetch_missing, serve_txs
from .signguard import DoubleSignGuard
from .verify import Ahead, Lookahead, Verifier
from .wal import WAL
from .wire import (
    ConsensusMsg,
    block_topic,
    check_compact,
    consensus_topic,
    decode_consensus_head,
    encode_announce,
    encode_consensus,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..app import Execution
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

#: capacity (in messages) of the channel from the gossip validator to the engine task;
#: its bytes are bounded separately (BftConfig.max_inbound_bytes, buffers.InboxQuota)
MAX_FUTURE_MESSAGES = 10_000
#: events the engine task handles in a row when they are already queued, before it
#: lets the scheduler run other tasks
EVENT_BATCH = 64
PUBLISH_TIMEOUT_S = 10.0
#: room for a proposal's own fields beside its block on the wire
PROPOSAL_OVERHEAD = 4096
#: proposed blocks whose missing txs are fetched at once, at most (the core keeps at most
#: three proposals a round; a fetch ends when its height is decided or gives up)
MAX_FETCHES = 8


def evidence_tx(app: App, key: SigningKey, chain_id: str, nonce: int, evidence: core.Evidence) -> Tx | None:
    """The tx that puts an equivocation on chain (the module that takes evidence builds it)."""
    found = app.evidence_tx(evidence.vote_a.to_map(), evidence.vote_b.to_map())
    if found is None:
        return None
    tx_type, body = found
    return sign_tx(key, chain_id, tx_type, nonce, body)


def counted_precommits(chain_id: str, keeper: core.VoteKeeper, commit: Commit) -> set[tuple[str, bytes, bytes, bytes]]:
    """The signatures of ``commit`` that ``keeper`` counted as precommits, signature for
    signature, as :func:`~medchaind.types.verify_commit`'s ``verified`` keys.

    A vote reaches a node's keeper only after that node's gossip validator checked its
    Ed25519 signature (or the node signed it), so these need no second check when the
    same precommits come back in the next proposal's ``last_commit``: with n authorities
    that is most of its 2n/3+ signatures, which every node checked twice per height.
    Anything else in the commit (another signature by the same validator, a precommit
    this node never counted) is verified as before; nothing is taken from another node.
    """
    if keeper.height != commit.height:
        return set()
    payload = vote_payload(PRECOMMIT, commit.height, commit.round, commit.block_hash)
    return {(chain_id, s.validator, s.signature, payload) for s in commit.signatures
            if keeper.contains(Vote(VoteKind.PRECOMMIT, core.Height(commit.height), core.Round(commit.round),
                                    core.BlockHash(commit.block_hash), core.ValidatorId(s.validator),
                                    s.signature))}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BftConfig:
    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    create_empty_blocks: bool = False
    empty_block_interval_ms: int = 1000
    #: while less than half a block is pending, start the next height no sooner than
    #: this after the last commit (CometBFT's ``timeout_commit``): fewer, larger blocks
    #: under load, for the latency it adds. Half a block pending (of what the proposer
    #: would take), or a peer's message of that height, still starts it at once, and the
    #: hold is capped at half the base propose timeout, so a peer that
    #: does not hold still gets our proposal in time. Only without ``create_empty_blocks``.
    #: 0: at once. The default, 250 ms, took a quarter off the CPU per tx of four
    #: authorities at 800 tx/s for ~0.2 s of median latency (docs/benchmarks.md, issue 14
    #: session 9): a height costs ~20-30 ms of CPU per node whatever it carries.
    min_block_interval_ms: int = 250
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
    #: this node proposes blocks it expects to execute in about this much CPU time at most
    #: (see :class:`ExecBudget`; wall time is only checked against the base propose
    #: timeout); None: a third of the base propose timeout, so that validators, which
    #: re-execute the block before they prevote, finish well within their propose timeout
    max_block_exec_ms: int | None = None
    #: look back this many committed heights for this key's precommits that consensus.wal
    #: does not hold before signing after a start, and keep this key's precommits of that
    #: many heights in the WAL (CometBFT's double_sign_check_height; 0 turns the check and
    #: the watch for this key signing elsewhere off; see signguard.py)
    double_sign_check_height: int = 10
    #: when the look-back finds precommits above what the WAL holds (a WAL copied before
    #: its chain, a WAL of an older version), watch this long for another process signing
    #: with this key before signing; None: one round of the base timeouts
    double_sign_grace_ms: int | None = None
    #: bytes of peer messages queued for the engine, and separately parked for the next
    #: height, at most (each signer gets at most two of the largest valid proposal)
    max_inbound_bytes: int = 64 * 1024 * 1024
    #: messages parked for the next height at most
    max_future_messages: int = 4096


class ExecBudget:
    """How many txs this node puts in a block it proposes, from how long recent blocks
    took to execute here (a proposer's policy, not a validity rule: nothing here is
    hashed or checked by other nodes).

    Genesis ``max_block_txs`` bounds a block by count, but a tx's execution cost varies
    tenfold between modules (a claim with its duplicate indexes against an identity
    registration): 2,000 claims took longer to re-execute than the round's propose
    timeout on a loaded 4-authority network, every validator prevoted nil, and the next
    proposer built an equally large block (issue 12's bench stalled). So the proposer
    keeps a moving estimate of execution cost per tx, from the blocks it built and the
    proposals it validated (of at least ``MIN_SAMPLE`` txs: small blocks are dominated by
    fixed costs), and reaps at most ``budget_ms / estimate`` txs, never fewer than
    ``FLOOR`` (progress under any estimate); before the first estimate, ``START``. Only
    for nodes doing real I/O: simulations under a mock clock stay deterministic
    (``enabled=False``).

    Two estimates, because wall time on a shared machine counts waiting, not work
    (issue 14, session 5: under sustained load on 2 cores, validating a block took
    5-17 times its CPU time, e.g. 2,142 ms of wall time for 125 ms of CPU, so a wall
    estimate of ~1 ms per tx cut blocks to 800-1,300 txs while 7,000-9,000 waited, and
    smaller blocks meant more heights, i.e. more per-height work, for the same txs):

    - the *work* per tx, in CPU time of the executing thread (``clock``, by default
      ``time.thread_time``: execution runs on the event loop's thread), against
      ``budget_ms``. It depends on the txs and the state, not on what else the machine
      runs, so it does not shrink blocks because another process had the core;
    - the *wall* time per tx, against ``wall_ms`` (the base propose timeout, for a
      node: a validator waits that long for a proposal), a guard only: a block that
      recent blocks say takes longer than that to execute here is not proposed, however
      cheap its work (a starved node still proposes blocks it can build in time).
    """

    MIN_SAMPLE = 16
    FLOOR = 64
    #: before any estimate (a fresh start): a block this large gives the first sample
    #: without risking a round on a block of unknown cost
    START = 256

    def __init__(self, budget_ms: int, *, wall_ms: int | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.thread_time) -> None:
        self.budget_ms = budget_ms
        #: None: no wall-time guard
        self.wall_ms = wall_ms
        self.enabled = enabled
        #: the CPU clock the engine reads around an execution (seconds)
        self.clock = clock
        self.us_per_tx: float | None = None
        self.wall_us_per_tx: float | None = None

    def observe(self, txs: int, seconds: float, wall_seconds: float | None = None) -> None:
        """A block of ``txs`` txs took ``seconds`` of CPU time (``clock``) and
        ``wall_seconds`` of wall time to execute (build or validate) here."""
        if not self.enabled or txs < self.MIN_SAMPLE:
            return
        sample = seconds * 1e6 / txs
        self.us_per_tx = sample if self.us_per_tx is None else 0.5 * self.us_per_tx + 0.5 * sample
        if wall_seconds is not None:
            wall = wall_seconds * 1e6 / txs
            self.wall_us_per_tx = wall if self.wall_us_per_tx is None else 0.5 * self.wall_us_per_tx + 0.5 * wall

    def limit(self, max_txs: int) -> int:
        """At most this many txs in the next block this node proposes."""
        if not self.enabled:
            return max_txs
        if self.us_per_tx is None:
            return min(max_txs, self.START)
        n = self._fit(max_txs, self.budget_ms, self.us_per_tx)
        if self.wall_ms is not None and self.wall_us_per_tx is not None:
            n = min(n, self._fit(max_txs, self.wall_ms, self.wall_us_per_tx))
        return n

    def _fit(self, max_txs: int, budget_ms: int, us_per_tx: float) -> int:
        budget_us = budget_ms * 1000
        if us_per_tx * max_txs <= budget_us:  # also a zero estimate (a clock too coarse)
            return max_txs
        return max(min(max_txs, self.FLOOR), int(budget_us / us_per_tx))


# ---------------------------------------------------------------- engine events


@dataclass(frozen=True, slots=True)
class _Peer:
    msg: ConsensusMsg
    signer: bytes
    size: int  # bytes on the wire, reserved in the inbox quota until the engine takes it


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
    #: the block came out of decode_block, which ran its validate_basic
    basic_checked: bool = False
    #: why the engine refused the block (handed back to the submitter, never raised in
    #: the engine's task: a peer's invalid block must not stop consensus)
    refused: list[MedchainError] = field(default_factory=list)
    #: the block sync fetched after it, with its look-ahead checks: checked and
    #: executed while this block's write is in flight (BftEngine._check_following)
    following: tuple[Block, Commit, Ahead | None] | None = None


@dataclass(frozen=True, slots=True)
class _SigningCheck:
    """Time to ask the double-sign guard again (a hold at start has run out)."""


_Event = _Peer | _Timeout | _TxsReady | _EmptyBlockDue | _Synced | _SigningCheck


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
        #: signatures of proposed and synced blocks (and, through the node, of gossiped
        #: txs) are checked in worker threads when the ledger does real I/O
        self.verifier = Verifier(mempool.sigs, threads=ledger.commit_in_thread)
        #: block sync checks the signatures of the blocks it fetched ahead of executing
        #: them (medchaind.sync), into the same caches
        self.lookahead = Lookahead(mempool.sigs, ledger.genesis.chain_id, threads=ledger.commit_in_thread)
        #: the synced block after the last one committed, checked and executed while that
        #: one was written (_check_following); used only if the tip is still its parent
        self._synced_ahead: Checked | None = None
        #: synced blocks committed with the check made during the previous one's write
        self.synced_checked_ahead = 0
        t = self.config.timeouts
        budget = self.config.max_block_exec_ms
        self.exec_budget = ExecBudget(t.propose_ms // 3 if budget is None else budget, wall_ms=t.propose_ms,
                                      enabled=ledger.commit_in_thread)
        grace_ms = self.config.double_sign_grace_ms
        if grace_ms is None:
            grace_ms = t.propose_ms + t.prevote_ms + t.precommit_ms
        self.sign_guard = DoubleSignGuard(self.config.double_sign_check_height if wal is not None else 0,
                                          grace_ms / 1000)
        # The core starts without a key: run() turns it on once the double-sign check
        # at start has passed (so even a restored WAL's messages are not re-signed before).
        self.state = core.initial_state(None, self.config.timeouts)
        self._send, self._recv = trio.open_memory_channel[_Event](MAX_FUTURE_MESSAGES)
        self._own: deque[core.Input] = deque()
        self._blocks: dict[bytes, tuple[Block, Execution | None]] = {}
        self._wal_blocks: set[bytes] = set()  # hashes whose block this height's WAL holds
        # the largest message a peer may legitimately send: a proposal of the largest
        # block genesis allows; each signer may hold two of them in each buffer
        max_msg = min(ledger.genesis.params.max_block_bytes, MAX_BLOCK_BYTES) + PROPOSAL_OVERHEAD
        total = max(self.config.max_inbound_bytes, 2 * max_msg)
        self._inbox_quota = InboxQuota(max_bytes=total, signer_bytes=2 * max_msg)
        self._future = FutureBuffer(max_bytes=total, max_messages=self.config.max_future_messages,
                                    signer_bytes=2 * max_msg)
        self._vset: tuple[int, ValidatorSet] | None = None  # (tip height, set of the next height)
        self._replay: list[ConsensusMsg] = []
        self._start_head = ledger.height
        self._own_msgs: list[tuple[Message, Block | None]] = []
        self.last_commit: Commit | None = ledger.store.get_commit(ledger.height) if ledger.height else None
        self._prev_powers: dict[bytes, int] = dict(ledger.tip.powers)
        self._nursery: trio.Nursery | None = None
        self.started_height = 0  # the height the core is working on (0: none)
        self.evidence: list[Any] = []
        self._resends = 0
        self._need_drain = False
        self.rounds_total = 0
        #: the vote keeper of the last height this node decided (_counted_precommits)
        self._decided_votes: core.VoteKeeper | None = None
        #: block hashes whose missing txs are being fetched (compact proposals)
        self._fetching: set[bytes] = set()
        #: txs fetched for this height's proposals (a later proposal may name them too)
        self._fetched_txs: dict[bytes, Tx] = {}
        #: compact proposals: rebuilt from local txs alone / after a fetch / given up
        self.proposals_stats = {"rebuilt": 0, "fetched": 0, "fetch_failed": 0, "txs_fetched": 0}
        #: a peer answered a txs/1 request with bytes it cannot have honestly (the node
        #: wires this to sync's peer book, which bans it for a while)
        self.on_peer_fault: Callable[[PeerId, str], None] | None = None
        net.set_handler(TXS_PROTOCOL, self._serve_txs)

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
            # (a node that has not loaded the set deciding its height yet, e.g. right after a
            # restart, has no proposer to name)
            "proposer": ("0x" + s.validators.proposer(s.height, s.round).hex()
                         if self.started_height and len(s.validators) else None),
            "locked_round": int(s.locked_round),
            "votes": votes,
            "evidence": len(self.evidence),
            "signing": self.signing_status(),
        }

    def signing_status(self) -> dict[str, Any]:
        """Whether this authority signs, and if not, why (double-sign guard)."""
        return {
            "validator": self._is_validator(),
            "signing": self.state.me is not None,
            "reason": None if self.state.me is not None or not self._is_validator() else self.sign_guard.reason,
            "resume_height": self.sign_guard.resume_height(),
        }

    def statistics(self) -> dict[str, Any]:
        """Sizes of what peers' messages hold in this engine (bounded, see buffers.py)."""
        return {
            "inbox": self._inbox_quota.statistics(),
            "future": self._future.statistics(),
            "blocks_cached": len(self._blocks),
            "blocks_cached_tx_bytes": sum(len(t.encoded) for b, _ in self._blocks.values() for t in b.txs),
            "proposals": dict(self.proposals_stats, fetching=len(self._fetching)),
        }

    def _validators_of(self, height: int) -> ValidatorSet:
        """The authority set that decides ``height`` (next height or the one after).

        For the height after next this is the current set too: a change scheduled by
        governance can make it wrong there, and a proposal dropped for that reason comes
        again (re-broadcast, or the round after) once the height has started.
        """
        tip = self.ledger.tip
        if self._vset is None or self._vset[0] != tip.height:
            self._vset = (tip.height, ValidatorSet.from_powers(tip.powers))
        return self._vset[1]

    def on_consensus_gossip(self, peer: PeerId, data: bytes) -> bool:
        """Gossip validator: shape, height, authority, proposer of the round, signature;
        then the proposal's block; queue if there is room. Cheap checks come first, so a
        flood of messages that fail them costs no block decoding."""
        try:
            m, raw = decode_consensus_head(data)
        except (MedchainError, ValueError) as exc:
            log.debug("rejecting consensus message from %s: %s", peer, exc)
            return False
        if m.height < self.next_height or m.height > self.next_height + 1:
            # old: useless; far future: sync will catch us up. Neither spreads further.
            return False
        signer_key = m.proposer if isinstance(m, Proposal) else m.validator
        if signer_key not in self.ledger.tip.powers:
            return False
        if isinstance(m, Proposal) and self._validators_of(m.height).proposer(m.height, m.round) != m.proposer:
            # not the signer's turn: the core would never keep it (L22/L28 "from
            # proposer(h_p, round_p)"), so it is invalid, and must not cost a block decode
            return False
        ok = core.verify_proposal(self.chain_id, m) if isinstance(m, Proposal) else core.verify_vote(self.chain_id, m)
        if not ok:
            return False
        msg = ConsensusMsg(m, None)
        if isinstance(m, Proposal):
            try:
                check_compact(m, raw)
                assert raw is not None
                cached = self._blocks.get(m.block_hash)
                if cached is not None:  # a re-publication, or a re-proposal of a block we hold
                    msg = ConsensusMsg(m, cached[0], raw)
                else:
                    asm = Assembly(raw, self._known_tx)
                    if not asm.complete:
                        self._start_fetch(peer, m, asm, signer_key)
                        return True  # valid: it spreads; it reaches the engine once complete
                    msg = ConsensusMsg(m, asm.block(), raw)
                    self.proposals_stats["rebuilt"] += 1
            except (MedchainError, ValueError) as exc:
                log.debug("rejecting a proposal from %s: %s", peer, exc)
                return False
        return self._queue(msg, signer_key, len(data))

    def _queue(self, msg: ConsensusMsg, signer_key: bytes, size: int) -> bool:
        """Hand a checked message to the engine task if its signer has room."""
        m = msg.message
        if not self._inbox_quota.try_reserve(signer_key, size):
            log.debug("consensus inbox: signer over its byte quota; dropping height=%d signer=%s",
                      m.height, signer_key.hex()[:16])
            return True  # valid, so it may spread; this node has no room for it now
        try:
            self._send.send_nowait(_Peer(msg, signer_key, size))
        except trio.WouldBlock:
            self._inbox_quota.release(signer_key, size)
            log.warning("consensus inbox full; dropping a message height=%d", m.height)
        return True

    # ------------------------------------------------------------ compact proposals

    def _known_tx(self, tx_hash: bytes) -> Tx | None:
        """A decoded, signature-checked tx this node holds: mempool first, then the txs
        fetched for this height's proposals."""
        return self.mempool.get(tx_hash) or self._fetched_txs.get(tx_hash)

    def _start_fetch(self, peer: PeerId, m: Proposal, asm: Assembly, signer: bytes) -> None:
        """Fetch what a proposal's block misses, once per block at a time (bounded)."""
        h = bytes(m.block_hash)
        if h in self._fetching or self._nursery is None:
            return
        if len(self._fetching) >= MAX_FETCHES:
            log.debug("proposal fetch: %d already running; not fetching height=%d round=%d",
                      len(self._fetching), m.height, m.round)
            return
        self._fetching.add(h)
        self._nursery.start_soon(self._fetch_proposal, peer, m, asm, signer)

    async def _fetch_proposal(self, origin: PeerId, m: Proposal, asm: Assembly, signer: bytes) -> None:
        """The missing txs from the publisher, then any connected peer (§12.3); then queue
        the proposal like one that came complete. Until the round's propose timeout the
        core waits for it; after that it has prevoted nil, as for a lost proposal, and a
        block completed later is taken like a late proposal (it may still be decided,
        L49). The fetch ends when the height is decided or the passes are used up."""
        wanted = len(asm.missing())
        try:
            peers = [origin] + [p for p in self.net.connected_peers() if p != origin]
            async with trio.open_nursery() as n:

                async def until_decided() -> None:
                    await self.ledger.wait_height(int(m.height))
                    n.cancel_scope.cancel()

                n.start_soon(until_decided)
                await fetch_missing(self.net, asm, peers, on_fault=self.on_peer_fault)
                n.cancel_scope.cancel()
        finally:
            self._fetching.discard(bytes(m.block_hash))
        if m.height < self.next_height:
            return  # decided meanwhile (with this block or another): nothing to deliver
        if not asm.complete:
            self.proposals_stats["fetch_failed"] += 1
            log.info("proposal txs unavailable height=%d round=%d missing=%d of %d; treated as not received",
                     m.height, m.round, len(asm.missing()), len(asm.compact.tx_hashes))
            return
        try:
            block = asm.block()
        except ValidationError as exc:
            log.debug("rejecting a fetched proposal height=%d: %s", m.height, exc)
            return
        self.proposals_stats["fetched"] += 1
        self.proposals_stats["txs_fetched"] += wanted
        if len(self._fetched_txs) > 4 * self.ledger.genesis.params.max_block_txs:
            self._fetched_txs = {}  # a height of many rounds: keep the bound, fetch again if needed
        for tx in block.txs:
            if tx.hash not in self.mempool:
                self._fetched_txs[tx.hash] = tx
        size = sum(len(tx.encoded) for tx in block.txs) + PROPOSAL_OVERHEAD
        self._queue(ConsensusMsg(m, block, asm.compact), signer, size)

    async def _serve_txs(self, peer: PeerId, data: bytes) -> bytes:
        """``txs/1`` (§13.5): txs by hash from the mempool and this height's blocks; a
        proposed (not yet committed) block by hash."""
        in_blocks: dict[bytes, Tx] | None = None

        def find_tx(h: bytes) -> Tx | None:
            nonlocal in_blocks
            tx = self._known_tx(h)
            if tx is None:
                if in_blocks is None:
                    in_blocks = {t.hash: t for b, _ in self._blocks.values() for t in b.txs}
                tx = in_blocks.get(h)
            return tx

        def find_block(h: bytes) -> Block | None:
            cached = self._blocks.get(h)
            return None if cached is None else cached[0]

        return serve_txs(data, find_tx, find_block)

    def rebase(self) -> None:
        """The ledger was restored from a state snapshot before :meth:`run` started
        (medchaind.sync.snapshots): take its head as the last decided height."""
        if self._nursery is not None:
            raise RuntimeError("rebase() is for an engine that has not started")
        self.last_commit = self.ledger.store.get_commit(self.ledger.height)
        self._prev_powers = dict(self.ledger.tip.powers)
        self._start_head = self.ledger.height
        self._vset = None

    async def submit_synced(self, block: Block, commit: Commit, *, basic_checked: bool = False,
                            following: tuple[Block, Commit, Ahead | None] | None = None) -> None:
        """Hand a block fetched by sync to the engine; returns once it was processed.
        Raises InvalidBlock / ValidationError if the engine refused it. ``basic_checked``:
        ``block`` came out of ``decode_block`` (validate_block's same argument).
        ``following``: the next fetched block, its commit and its look-ahead checks
        (also from ``decode_block``), to check and execute while this block is written
        (issue 14: block sync pipelined as ``medchaind import`` is); it is submitted next."""
        done = trio.Event()
        ev = _Synced(block, commit, done, basic_checked, following=following)
        await self._send.send(ev)
        await done.wait()
        if ev.refused:
            raise ev.refused[0]

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
            self._check_recent_commits()
            self._maybe_start_height(force=self._wal_has(self.next_height))
            await self._settle()
            async for ev in self._recv:
                await self._handle(ev)
                await self._settle()
                # then what is already queued (up to a bound), without a trip through
                # the scheduler per event: with n authorities a step brings ~n votes at once
                for _ in range(EVENT_BATCH - 1):
                    try:
                        ev = self._recv.receive_nowait()
                    except trio.WouldBlock:
                        break
                    await self._handle(ev)
                    await self._settle()

    # ------------------------------------------------------------ events

    def _is_validator(self) -> bool:
        return self.key is not None and self.key.public_key in self.ledger.tip.powers

    def _wal_has(self, height: int) -> bool:
        return self.wal is not None and bool(self.wal.entries(height))

    async def _handle(self, ev: _Event) -> None:
        if isinstance(ev, _Peer):
            self._inbox_quota.release(ev.signer, ev.size)
            m = ev.msg.message
            if self.key is not None and ev.signer == self.key.public_key:
                self._check_own_message(m)
            if m.height == self.next_height and not self.started_height:
                self._maybe_start_height(force=True)
            if m.height != self.started_height:
                if m.height >= self.next_height:
                    self._future.add(ev.msg, ev.size)
                return
            await self._feed_peer(ev.msg)
        elif isinstance(ev, _SigningCheck):
            pass  # _settle() asks the guard after every event
        elif isinstance(ev, _Timeout):
            if ev.height == self.started_height:
                await self._apply(TimeoutFired(ev.kind, core.Height(ev.height), core.Round(ev.round)))
        elif isinstance(ev, (_TxsReady, _EmptyBlockDue)):
            if ev.height == self.next_height and not self.started_height:
                self._maybe_start_height(force=True)
        elif isinstance(ev, _Synced):
            try:
                await self._commit_synced(ev.block, ev.commit, basic_checked=ev.basic_checked,
                                          following=ev.following)
            except (InvalidBlock, ValidationError) as exc:
                ev.refused.append(exc)  # the submitter's to judge (a fault of the peer that served it)
            finally:
                ev.done.set()

    async def _feed_peer(self, msg: ConsensusMsg) -> None:
        m = msg.message
        if isinstance(m, Proposal):
            assert msg.block is not None
            await self._apply_pending()  # a StartHeight queued by this very message comes first
            if not core.admits_proposal(self.state, m):
                # wrong proposer or round quota, a duplicate, an unjustified second
                # proposal, or already decided: the core would drop it, so its block is
                # neither executed nor cached (the bound on _blocks)
                return
            await self.verifier.preverify(msg.block.txs)  # the txs gossip did not bring us
            valid = self._judge(msg.block)
            await self._apply(ProposalReceived(m, valid))
        else:
            assert isinstance(m, Vote)
            await self._apply(VoteReceived(m))

    def _counted_precommits(self, commit: Commit) -> set[tuple[str, bytes, bytes, bytes]]:
        """The signatures in ``commit`` (a proposal's ``last_commit``) this node already
        verified (see :func:`counted_precommits`), from the keeper of the height it decided."""
        keeper = self._decided_votes
        return set() if keeper is None else counted_precommits(self.chain_id, keeper, commit)

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
                              block.header.prev_hash, block.height - 1,
                              verified=self._counted_precommits(block.last_commit))
            params = self.ledger.genesis.params
            cpu, started = self.exec_budget.clock(), time.perf_counter()
            ex = validate_block(self.ledger.app, self.ledger.state, self.ledger.tip, block, self.mempool.sigs,
                                max_txs=params.max_block_txs, max_bytes=params.max_block_bytes)
            self.exec_budget.observe(len(block.txs), self.exec_budget.clock() - cpu, time.perf_counter() - started)
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
        if not force and self.config.min_block_interval_ms > 0 and not self.config.create_empty_blocks:
            return  # _watch_mempool starts it when the hold is over (_hold_for_a_fuller_block)
        self.started_height = h
        self._blocks = {k: v for k, v in self._blocks.items() if v[0].height >= h}
        self._own_msgs = []
        self._wal_blocks = set()
        me = self._signing_id()
        if me != self.state.me:
            # sign from this height on, or stop: a core without a key is a follower
            self.state = core.initial_state(me, self.config.timeouts)
        vs = self._validators_of(h)  # built once per height (the gossip validator's set)
        # A core without a key signs nothing, so it needs no last-signed guard; the WAL's
        # entries go back in when it starts (or restarts) the height with the key again.
        wal = self.wal.entries(h) if self.wal is not None and self.state.me is not None else ()
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
        self._replay = self._future.take(h)
        # processed by the engine task itself, right after the current event: the core
        # and the ledger are only ever touched by that one task (no interleaved commits)
        self._need_drain = True

    async def _drain_if_needed(self) -> None:
        while self._need_drain:
            self._need_drain = False
            await self._drain_own()

    async def _settle(self) -> None:
        """After each event, at a point where no effects are half carried out: process
        what the event queued, then apply a change of the double-sign guard's verdict."""
        await self._drain_if_needed()
        if self.started_height and self.state.me != self._signing_id():
            self._update_signing()
            await self._drain_if_needed()

    async def _drain_own(self) -> None:
        await self._apply_pending()
        replay, self._replay = self._replay, []
        for m in replay:
            if m.message.height == self.started_height:
                await self._feed_peer(m)

    async def _watch_mempool(self) -> None:
        """Wake the engine when a tx becomes proposable, or when an empty block is due."""
        committed_at = -math.inf
        while True:
            h = self.next_height
            if self.config.create_empty_blocks:
                with trio.move_on_after(self.config.empty_block_interval_ms / 1000):
                    await self.mempool.wait_for_txs()
                await self._send.send(_EmptyBlockDue(h))
            else:
                await self.mempool.wait_for_txs()
                await self._hold_for_a_fuller_block(committed_at)
                await self._send.send(_TxsReady(h))
            await self.ledger.wait_height(h)  # one wake-up per height is enough
            committed_at = trio.current_time()

    #: how often a hold for a fuller block looks at the mempool
    HOLD_POLL_S = 0.05

    async def _hold_for_a_fuller_block(self, committed_at: float) -> None:
        """Wait until ``min_block_interval_ms`` after ``committed_at`` (trio time of the last
        commit), or less once half a block is pending (:attr:`BftConfig.min_block_interval_ms`)."""
        hold_ms = min(self.config.min_block_interval_ms, self.config.timeouts.propose_ms // 2)
        if hold_ms <= 0:
            return
        deadline = committed_at + hold_ms / 1000
        params = self.ledger.genesis.params
        # "full" as _build will cut it: the execution budget may take fewer than max_block_txs
        full_txs = self.exec_budget.limit(params.max_block_txs)
        full_bytes = min(params.max_block_bytes, self.config.max_proposal_bytes)
        while True:
            now = trio.current_time()  # read once: the clock moves between two reads
            if now >= deadline:
                return
            # Half a block is worth proposing at once: the height's fixed cost is spread
            # over enough txs, and under a backlog a hold would idle the pipeline once per
            # height (issue 14 session 9: at 2,000 tx/s offered, holding until a full block
            # committed ~10% less)
            if 2 * len(self.mempool) >= full_txs or 2 * self.mempool.pending_bytes >= full_bytes:
                return
            # an absolute wake-up: a relative one computed from a second clock read was
            # negative when the deadline passed in between, and trio.sleep raised (a node
            # died of it in an end-to-end test once the hold was on by default)
            await trio.sleep_until(min(deadline, now + self.HOLD_POLL_S))

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
        if isinstance(eff, WALAppend | SignVote | SignProposal | RequestValue) and self._signing_id() is None:
            # The guard stopped signing while this transition's effects were being carried
            # out (our key seen elsewhere); _settle() restarts the height without the key.
            log.debug("not signing: %s", self.sign_guard.reason)
            return
        if isinstance(eff, WALAppend):
            if self.wal is not None:
                named = self._wal_block(eff.entry)
                await self._wal_io(functools.partial(self.wal.append, eff.entry.height, eff.entry,
                                                     block=None if named is None else named[1]))
                if named is not None:
                    self._wal_blocks.add(named[0])
        elif isinstance(eff, SignVote):
            assert self.signer is not None and self.state.me is not None  # a core without a key never asks
            self._own.append(VoteReceived(self.signer.sign_vote(eff.vote)))
        elif isinstance(eff, SignProposal):
            assert self.signer is not None and self.state.me is not None
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
            if self.key is not None and eff.evidence.validator == self.key.public_key:
                self._note_foreign(int(eff.evidence.vote_a.height),
                                   "two different votes signed with this key for one step")
            if self.on_evidence is not None:
                try:
                    self.on_evidence(eff.evidence)
                except MedchainError as exc:
                    log.warning("could not submit evidence: %s", exc)

    async def _publish(self, message: Message, block: Block | None, resend: int = 0) -> None:
        if not self.net.connected_peers():
            return  # nobody to send to (a lone authority); a peer that connects gets the rebroadcast
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
        # The proof of lock behind our valid value (L36, L42): its 2f+1 prevotes. The
        # paper assumes that a message one correct node received reaches every correct
        # node (Tendermint's gossip forwards every vote), but here a node re-sends only
        # its own messages. If a Byzantine authority's prevote completed the POL for some
        # nodes and it then fell silent, a node that missed that prevote (it was still
        # catching up) could never accept the re-proposal of the locked value (L28), the
        # locked nodes never prevote anything else (L29), and the height halts. Re-sending
        # the POL (at most one vote per authority) restores the assumption.
        s = self.state
        if self.started_height and s.height == self.started_height and s.valid_value is not None:
            for v in s.votes.votes_for(s.valid_round, VoteKind.PREVOTE, s.valid_value):
                if v.validator != s.me:
                    self._nursery.start_soon(self._publish, v, None, self._resends)

    async def _regossip(self) -> None:
        """Re-broadcast while a height is stuck, backing off 1, 2, 4, 8 intervals.

        A height that decides quickly never re-sends anything. A re-sent proposal is
        compact (tx hashes), and a receiver that holds its block takes it from its cache.
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

    async def _wal_io(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a WAL write (it fsyncs) in a worker thread when the ledger does real I/O.

        The engine task still waits for it (a message is durable before it is signed),
        but the event loop does not: an fsync can take milliseconds (~4 ms on an earlier
        bench machine), and blocking the loop for it starved tx admission and gossip, so
        single-authority blocks shrank to a few dozen txs. Per height a node makes one
        such call per record (prevote, proof of lock, precommit, and the proposer's
        proposal: a named block goes with its message) and none for the prune, a mark written inline
        (:meth:`WAL.prune`), except when the file is due for compaction. Nothing else
        touches the WAL (only this task does). Simulations under a mock clock write inline.
        """
        if self.ledger.commit_in_thread:
            await trio.to_thread.run_sync(fn, *args)
        else:
            fn(*args)

    def _wal_block(self, entry: Any) -> tuple[bytes, bytes] | None:
        """The hash and encoding of the block a WAL entry names, if the WAL does not hold it
        yet: it goes into the WAL with the entry, in one write and one fsync (:meth:`WAL.append`)."""
        named = getattr(entry, "block_hash", None)
        if named is None or bytes(named) in self._wal_blocks:
            return None
        cached = self._blocks.get(bytes(named))
        if cached is None:  # pragma: no cover - the core only names blocks it was given
            return None
        return bytes(named), cached[0].encode()

    def _build(self, height: int, round_: int) -> bytes:
        assert self.key is not None and height == self.next_height
        params = self.ledger.genesis.params
        tip = self.ledger.tip
        budget = self.exec_budget
        limit = budget.limit(params.max_block_txs)
        txs = self.mempool.reap(limit, min(params.max_block_bytes, self.config.max_proposal_bytes))
        cpu, started = budget.clock(), time.perf_counter()
        block, ex = build_block(
            self.ledger.app, self.ledger.state, tip, txs, proposer=self.key.public_key,
            time_ms=next_time_ms(tip, self.clock_ms()), round_=round_, last_commit=self.last_commit,
        )
        budget.observe(len(txs), budget.clock() - cpu, time.perf_counter() - started)
        # a block below its budget's limit while txs wait was cut by bytes (max_proposal_bytes)
        log.debug("proposing height=%d round=%d txs=%d budget_limit=%d pending=%d cpu_us_per_tx=%s "
                  "wall_us_per_tx=%s", height, round_, len(txs), limit, len(self.mempool),
                  None if budget.us_per_tx is None else round(budget.us_per_tx),
                  None if budget.wall_us_per_tx is None else round(budget.wall_us_per_tx))
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

    async def _commit(self, block: Block, commit: Commit, ex: Execution, *,
                      meanwhile: Callable[[], None] | None = None) -> None:
        # before the WAL is pruned: does this block carry a precommit of ours we never made?
        # (heights up to the head at start were judged by the look-back already)
        for c in (commit, block.last_commit):
            if c is not None and c.height > self._start_head and self._unknown_own_precommit(c):
                self._note_foreign(c.height, f"a commit for height {c.height} carries a precommit "
                                             "signed with this key that consensus.wal does not hold")
        self._prev_powers = dict(self.ledger.tip.powers)
        # the precommits this node verified and counted for the block (see _counted_precommits)
        self._decided_votes = self.state.votes if self.state.votes.height == block.height else None
        self._synced_ahead = None  # checked against the tip this commit replaces
        await self.ledger.commit(block, commit, ex, meanwhile=meanwhile)
        self.last_commit = commit
        self.mempool.update(block.txs, ex.writes)  # the write-set bounds the re-check (mempool docstring)
        if self.wal is not None:
            # a prune is a mark (no fsync); the file is rewritten only once the dropped
            # records add up (WAL.compaction_due), not once per height
            look_back = self.sign_guard.look_back
            self.wal.prune(block.height + 1, keep_precommits_from=block.height - look_back if look_back else None)
            if self.wal.compaction_due:
                await self._wal_io(self.wal.compact)
        self.started_height = 0
        self._blocks = {k: v for k, v in self._blocks.items() if v[0].height > block.height}
        self._fetched_txs = {}
        log.info("committed block height=%d round=%d txs=%d hash=%s", block.height, commit.round,
                 len(block.txs), block.hash().hex()[:16])
        assert self._nursery is not None
        self._nursery.start_soon(self._announce, block.height, block.hash())
        if (self.sign_guard.reason is not None and self.state.me is None and self._is_validator()
                and self._signing_id() is not None):
            log.info("signing again from height=%d: this key was not seen signing elsewhere in the last %d "
                     "heights", self.next_height, self.sign_guard.look_back)
        self._maybe_start_height(force=self._future.has_height(self.next_height))

    # ------------------------------------------------------------ one key, one authority

    def _signing_id(self) -> core.ValidatorId | None:
        """This node's key for the core if it may sign now, else None (a follower)."""
        if self.key is None or not self.sign_guard.may_sign(trio.current_time(), self.ledger.height):
            return None
        return core.ValidatorId(self.key.public_key)

    def _unknown_own_precommit(self, commit: Commit) -> bool:
        if self.key is None or self.wal is None or not self.sign_guard.enabled:
            return False
        me = self.key.public_key
        return any(s.validator == me for s in commit.signatures) and not self.wal.knows_precommit(
            commit.height, commit.round, commit.block_hash)

    def _check_recent_commits(self) -> None:
        """Before the first signature after a start: this key's precommits in the commits
        of the last ``double_sign_check_height`` heights must all be in the WAL."""
        guard = self.sign_guard
        if not guard.enabled or self.wal is None or not self._is_validator():
            return
        store, head = self.ledger.store, self.ledger.height
        unknown: list[int] = []
        for h in range(max(1, head - guard.look_back + 1), head + 1):
            following = store.get_block(h + 1) if h < head else None
            for c in (store.get_commit(h), following.last_commit if following is not None else None):
                if c is not None and self._unknown_own_precommit(c):
                    unknown.append(h)
        if not unknown:
            return
        foreign, unexplained = guard.classify(unknown, wal_created=self.wal.created,
                                              wal_precommits=self.wal.precommit_heights())
        guard.on_start(trio.current_time(), foreign, unexplained)
        if foreign:
            log.error(
                "not signing: %s. Another node may be running with this authority key (a restored backup, "
                "a copied datadir). This node follows the chain and signs again once it has committed "
                "height %s without seeing the key elsewhere. If you are certain no other copy runs "
                "(e.g. consensus.wal was lost), restart with consensus.double_sign_check_height = 0",
                guard.reason, guard.resume_height())
        else:
            log.warning("not signing yet: %s", guard.reason)
            hold = guard.hold_until()
            assert hold is not None and self._nursery is not None
            self._nursery.start_soon(self._signing_check_at, hold)

    def _check_own_message(self, m: Message) -> None:
        """A peer relayed a message signed with our key: did we sign it?"""
        if self.wal is None or not self.sign_guard.enabled:
            return
        if m.height < self.next_height and not (
            isinstance(m, core.Vote) and m.kind == core.VoteKind.PRECOMMIT and m.block_hash is not None
            and m.height in self.wal.precommit_heights()
        ):
            # The WAL keeps a decided height's entries only as this key's non-nil
            # precommits (wal.prune): a prevote or proposal of ours for a past height that
            # a peer relays (a re-sent proof of lock, a lagging peer's re-gossip) cannot be
            # told from a foreign one, so only what the WAL still holds is judged.
            return
        if m.unsigned() not in self.wal.entries(m.height):
            self._note_foreign(int(m.height), f"a {type(m).__name__.lower()} for height {m.height} "
                                              "signed with this key arrived from the network and is "
                                              "not in consensus.wal")

    def report_key_elsewhere(self, why: str) -> None:
        """For the network layer: this node's identity was seen connected from elsewhere.
        Signing stops at once (before the next effect) and the height restarts without
        the key at the next event."""
        self._note_foreign(self.next_height, why)

    def _note_foreign(self, height: int, why: str) -> None:
        """Another process signed with our key at ``height``. Signing stops before the
        next effect (see _effect); _settle() then restarts the height without the key."""
        resume = self.sign_guard.resume_height()
        already = resume is not None and self.ledger.height < resume
        if self.sign_guard.foreign(height, why):
            # once per episode at ERROR; a second process keeps signing every height
            log.log(logging.DEBUG if already else logging.ERROR,
                    "not signing: %s. Another node is running with this authority key; this node "
                    "follows the chain and signs again once it has committed height %s without seeing "
                    "the key elsewhere. Stop the other copy", why, self.sign_guard.resume_height())

    def _update_signing(self) -> None:
        """Apply the guard's verdict to the started height: restart it with or without
        the key, so signing stops (or resumes) mid-height."""
        me = self._signing_id()
        if me == self.state.me or not self.started_height:
            return  # an unstarted height picks the key up when it starts
        if me is not None:
            log.info("signing from height=%d: no other process seen signing with this key", self.next_height)
        # Restart the height with the same message log: the WAL's entries restore the
        # last-signed guard, so nothing signed before can be contradicted; the votes and
        # proposals the old core held are fed again, so none has to be gossiped again.
        old = self.state
        self.state = core.initial_state(me, self.config.timeouts)
        self.started_height = 0
        self._maybe_start_height(force=True)
        for p in old.proposals.all_proposals():
            cached = self._blocks.get(p.block_hash)
            self._own.append(ProposalReceived(p, cached is not None and cached[1] is not None))
        for v in old.votes.all_votes():
            self._own.append(VoteReceived(v))

    async def _signing_check_at(self, when: float) -> None:
        await trio.sleep_until(when)
        await self._send.send(_SigningCheck())

    async def _announce(self, height: int, block_hash: bytes) -> None:
        if not self.net.connected_peers():
            return  # nobody to tell (a lone authority)
        try:
            await self.net.publish(block_topic(self.chain_id), encode_announce(height, block_hash))
        except MedchainError:
            pass

    async def _commit_synced(self, block: Block, commit: Commit, *, basic_checked: bool = False,
                             following: tuple[Block, Commit, Ahead | None] | None = None) -> None:
        """Check a block from sync (every rule: :func:`check_decided_block`) and commit it.

        Pipelined like ``medchaind import`` (issue 14): while its write and fsync are in
        flight (:meth:`Ledger.commit`'s ``meanwhile``), the ``following`` block is checked
        and executed against the state and tip this one leaves (:meth:`Ledger.pending`).
        Nothing of it is written then: it waits in :attr:`_synced_ahead` until sync
        submits it, and is used only if it is that very block and the ledger's tip is
        still the one it was checked against (consensus may have committed meanwhile:
        then it is checked again, as is a block whose check ahead failed, so a bad block
        is refused with its usual error, at its turn, after every block before it)."""
        if block.height != self.next_height:  # consensus got there first
            return
        tip = self.ledger.tip
        ahead, self._synced_ahead = self._synced_ahead, None
        if ahead is not None and ahead.block is block and ahead.commit is commit and ahead.tip == tip:
            checked = ahead
            self.synced_checked_ahead += 1
        else:
            try:
                await self.verifier.preverify(block.txs)
                params = self.ledger.genesis.params
                # the signatures sync checked ahead: every rule still applies
                checked = check_decided_block(self.ledger.app, self.ledger.state, tip, self._prev_powers, block,
                                              commit, self.mempool.sigs, max_txs=params.max_block_txs,
                                              max_bytes=params.max_block_bytes, verified=self.lookahead.votes,
                                              basic_checked=basic_checked)
            except (InvalidBlock, ValidationError) as exc:
                log.warning("sync: rejected block height=%d reason=%s", block.height, exc)
                raise
        # leave the height we were deciding: the network already decided it
        self.state = core.initial_state(self.state.me, self.config.timeouts)
        meanwhile = (None if following is None
                     else functools.partial(self._check_following, checked, following, basic_checked=basic_checked))
        await self._commit(block, commit, checked.ex, meanwhile=meanwhile)

    def _check_following(self, cur: Checked, following: tuple[Block, Commit, Ahead | None], *,
                         basic_checked: bool) -> None:
        """While ``cur``'s write is in flight: check the next synced block against the
        state and tip ``cur`` leaves; keep it for its turn if it passes (a block that
        fails is simply not kept: checked again at its turn, it is refused there). It
        runs before the tip moves, so ``_prev_powers`` is already the set that signed
        ``cur`` (``_commit`` set it), the one ``following``'s ``last_commit`` needs."""
        block, commit, checks = following
        if block.height != cur.block.height + 1:
            return
        params = self.ledger.genesis.params
        try:
            votes = self.lookahead.collect_nowait(checks)
            state, tip = self.ledger.pending(cur.block, cur.ex)
            self._synced_ahead = check_decided_block(
                self.ledger.app, state, tip, self._prev_powers, block, commit, self.mempool.sigs,
                max_txs=params.max_block_txs, max_bytes=params.max_block_bytes, verified=votes,
                basic_checked=basic_checked)
        except Exception as exc:  # noqa: BLE001 - checked again at its turn, which raises it as before
            # (raised here, it would surface from Ledger.commit and cut this block's _commit short)
            log.debug("sync: block height=%d failed its check ahead (checked again at its turn): %s",
                      block.height, exc)
