"""Bounded buffers between the gossip validator and the consensus core.

Why they are shaped this way
============================

A proposal carries its block, so one signed gossip message can be megabytes. Before
these bounds, the engine parked up to 10,000 messages for the next height, and judged
(executed) and cached the block of every parked proposal when that height started,
whoever signed it: sixty signed 3.7 MiB proposals from one authority, most of them for
rounds that were not its turn, raised honest nodes' memory by 763 MiB (issue 9, defect
2). The memory a peer can pin here must not depend on how many messages it signs. The
bound has three layers, each the size of what an honest authority legitimately sends:

1. The gossip validator rejects a proposal whose signer is not ``proposer(h, r)``
   (CometBFT checks the proposer before it reads a proposal's block parts), so a
   Byzantine authority can only propose in its own turns.
2. :class:`InboxQuota`: the bytes of messages accepted by the validator but not yet taken
   by the engine task are bounded in total and per signer (the channel between them
   counts messages only). A message over the quota is not queued; gossip and the
   proposer's own re-broadcasts deliver what matters again.
3. :class:`FutureBuffer`: messages for the next height, parked until it starts, are
   bounded in messages and bytes, in total and per signer; it keeps at most one proposal
   per (height, round, proposer) and at most :data:`FUTURE_PROPOSALS_PER_SIGNER` per signer
   (the catch-up round quota of the core, :mod:`medchaind.core.proposals`), preferring
   the lowest rounds, since round 0 is the one a healthy network decides in. When the
   total is full, room is made by evicting from the signer that holds the most bytes, so
   f Byzantine signers cannot crowd out the honest ones.

Blocks are judged only for proposals the core will keep (:func:`medchaind.core.admits_proposal`),
so the engine's block cache is bounded by the core's own bounds (at most three proposals
per round, two catch-up rounds per proposer).

Both structures are touched by the gossip validator and the engine task, which run in
the same trio thread; every method is synchronous, so there is no interleaving inside a
call and no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..core import Proposal, Vote
from .wire import ConsensusMsg

MiB = 1024 * 1024

#: proposals kept per signer for the next height: the core keeps two catch-up rounds per
#: proposer (MAX_FUTURE_ROUNDS_PER_VALIDATOR), and a height's round 0 needs one
FUTURE_PROPOSALS_PER_SIGNER = 2
#: messages kept per signer for the next height: a prevote and a precommit for a few
#: rounds (a peer one height ahead has rarely gone through more), plus its proposals
FUTURE_MESSAGES_PER_SIGNER = 32


@dataclass(frozen=True, slots=True)
class BufferStats:
    messages: int
    bytes: int
    #: messages refused or evicted since construction
    dropped: int
    #: the most bytes any one signer holds
    largest_signer_bytes: int


class InboxQuota:
    """Bytes reserved by messages on their way from the validator to the engine task."""

    def __init__(self, *, max_bytes: int, signer_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.signer_bytes = signer_bytes
        self._by_signer: dict[bytes, int] = {}
        self._total = 0
        self.dropped = 0

    def try_reserve(self, signer: bytes, size: int) -> bool:
        held = self._by_signer.get(signer, 0)
        if self._total + size > self.max_bytes or held + size > self.signer_bytes:
            self.dropped += 1
            return False
        self._by_signer[signer] = held + size
        self._total += size
        return True

    def release(self, signer: bytes, size: int) -> None:
        held = self._by_signer.get(signer, 0) - size
        if held > 0:
            self._by_signer[signer] = held
        else:
            self._by_signer.pop(signer, None)
        self._total = max(0, self._total - size)

    def statistics(self) -> BufferStats:
        return BufferStats(len(self._by_signer), self._total, self.dropped,
                           max(self._by_signer.values(), default=0))


@dataclass(frozen=True, slots=True)
class _Parked:
    msg: ConsensusMsg
    size: int
    signer: bytes
    seq: int

    @property
    def order(self) -> tuple[int, int, int]:
        """What is evicted first: the highest (height, round), a proposal before a vote."""
        m = self.msg.message
        return (m.height, m.round, 1 if isinstance(m, Proposal) else 0)


def _signer(msg: ConsensusMsg) -> bytes:
    m = msg.message
    return m.proposer if isinstance(m, Proposal) else m.validator


def _key(msg: ConsensusMsg) -> tuple[object, ...]:
    m = msg.message
    if isinstance(m, Proposal):
        # one proposal per (height, round, proposer): a second one is an equivocation the
        # core would not keep before a polka justifies it, and then gossip brings it again
        return ("p", m.height, m.round, m.proposer)
    assert isinstance(m, Vote)
    # both votes of an equivocating pair are kept (the core turns them into evidence);
    # the per-signer quota bounds how many a signer can park
    return ("v", m.height, m.round, int(m.kind), m.validator, m.block_hash)


class FutureBuffer:
    """Verified consensus messages for heights the engine has not started, bounded.

    Iterating yields the parked messages in arrival order.
    """

    def __init__(self, *, max_bytes: int, max_messages: int, signer_bytes: int,
                 signer_messages: int = FUTURE_MESSAGES_PER_SIGNER,
                 signer_proposals: int = FUTURE_PROPOSALS_PER_SIGNER) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.signer_bytes = signer_bytes
        self.signer_messages = signer_messages
        self.signer_proposals = signer_proposals
        self._parked: dict[tuple[object, ...], _Parked] = {}
        self._signer_bytes: dict[bytes, int] = {}
        self._bytes = 0
        self._seq = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._parked)

    def __iter__(self) -> Iterator[ConsensusMsg]:
        return iter([p.msg for p in sorted(self._parked.values(), key=lambda p: p.seq)])

    def has_height(self, height: int) -> bool:
        return any(p.msg.message.height == height for p in self._parked.values())

    def add(self, msg: ConsensusMsg, size: int) -> bool:
        """Park ``msg`` (``size``: its bytes on the wire); False if it was refused."""
        key = _key(msg)
        if key in self._parked:
            return False  # a re-broadcast of what we hold
        self._seq += 1
        new = _Parked(msg, size, _signer(msg), self._seq)
        self._parked[key] = new
        self._bytes += size
        self._signer_bytes[new.signer] = self._signer_bytes.get(new.signer, 0) + size
        # per signer first, then the totals; each eviction removes the least useful
        # message of the signer that is over (possibly the new one)
        while self._signer_over(new.signer):
            if self._evict(self._worst_of(new.signer)) is new:
                return False
        while len(self._parked) > self.max_messages or self._bytes > self.max_bytes:
            heaviest = max(self._signer_bytes, key=lambda s: (self._signer_bytes[s], s))
            if self._evict(self._worst_of(heaviest)) is new:
                return False
        return True

    def take(self, height: int) -> list[ConsensusMsg]:
        """Remove and return the messages of ``height`` (arrival order); drop lower heights."""
        out = [p for p in self._parked.values() if p.msg.message.height == height]
        for key in [k for k, p in self._parked.items() if p.msg.message.height <= height]:
            self._remove(key)
        return [p.msg for p in sorted(out, key=lambda p: p.seq)]

    def statistics(self) -> BufferStats:
        return BufferStats(len(self._parked), self._bytes, self.dropped,
                           max(self._signer_bytes.values(), default=0))

    # ------------------------------------------------------------ internals

    def _of(self, signer: bytes) -> list[_Parked]:
        return [p for p in self._parked.values() if p.signer == signer]

    def _signer_over(self, signer: bytes) -> bool:
        mine = self._of(signer)
        proposals = sum(1 for p in mine if isinstance(p.msg.message, Proposal))
        return (len(mine) > self.signer_messages or proposals > self.signer_proposals
                or self._signer_bytes.get(signer, 0) > self.signer_bytes)

    def _worst_of(self, signer: bytes) -> _Parked:
        mine = self._of(signer)
        proposals = [p for p in mine if isinstance(p.msg.message, Proposal)]
        pool = proposals if len(proposals) > self.signer_proposals else mine
        # highest (height, round) goes first; among equals the latest arrival
        return max(pool, key=lambda p: (p.order, p.seq))

    def _evict(self, victim: _Parked) -> _Parked:
        self._remove(_key(victim.msg))
        self.dropped += 1
        return victim

    def _remove(self, key: tuple[object, ...]) -> None:
        p = self._parked.pop(key)
        self._bytes -= p.size
        left = self._signer_bytes[p.signer] - p.size
        if left > 0 or any(q.signer == p.signer for q in self._parked.values()):
            self._signer_bytes[p.signer] = left
        else:
            del self._signer_bytes[p.signer]
