"""What sync knows about its peers: claimed heads, scores, faults, bans.

Why it is shaped this way
=========================

A peer's status (``{"height", "hash"}``) and its block announcements are *claims*: any
peer, an authority included, can claim height 2^62. Sync once followed the single
highest claim, took an empty answer as "nothing to do" and dropped a peer only for an
invalid block, so one Byzantine authority that claimed 2^62 and served nothing kept a
restarted observer stuck, and every honest node reported 2^62 as its target (issue 9,
defect 1). The rules here, in the spirit of CometBFT's blocksync pool (which times out
and removes peers that do not deliver what they claimed) and Ethereum's peer scoring:

* **A claim is a fault when it is not backed.** A peer that claims height H must serve
  the block after ours (it has it) and, asked for block H, that block with a commit for
  H. An empty, short, non-contiguous or invalid answer, or a head that does not match
  the claimed hash, is a *fault*: the peer is banned for a while (doubling per fault up
  to :data:`MAX_BAN_S`) and its claim is forgotten. A timeout costs score only: an honest
  peer can be slow.
* **Scores order the peers** we fetch from: backed claims first, then score, then a
  rotation, so load spreads and a peer that keeps losing to the others is asked last.
* **No single peer sets the target.** The target a node reports is its own height, the
  (f+1)-th highest claim (f from the authority set: at least one honest peer claims that
  much), or a claim whose commit we verified against the authority set, whichever is
  highest. A lone liar can neither raise it nor hold sync on itself.

Pure: no clock (``now`` is passed in), no I/O; :class:`~medchaind.sync.SyncService` owns
one instance and is its only writer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

P = TypeVar("P", bound=str)  # a peer id (net.api.PeerId is a NewType of str)

BAN_S = 30.0
MAX_BAN_S = 600.0
MAX_SCORE = 100
#: a fault: an unbacked claim or an invalid block
FAULT_PENALTY = 20
#: a timeout or a network error
SLOW_PENALTY = 2


@dataclass(frozen=True, slots=True)
class Claim:
    height: int
    block_hash: bytes
    #: the lowest block the peer holds (above 1 for a node restored from a snapshot)
    base: int = 1
    #: the claim includes an answer to our status request (see :meth:`PeerBook.reported`)
    answered: bool = False


class PeerBook:
    def __init__(self) -> None:
        self._claims: dict[str, Claim] = {}
        self._verified: dict[str, int] = {}  # heights whose commit a peer proved
        self._scores: dict[str, int] = {}
        self._faults: dict[str, int] = {}
        self._banned_until: dict[str, float] = {}
        self._rotation = 0
        self.faults_total = 0

    # ------------------------------------------------------------ observations

    def note_claim(self, peer: str, height: int, block_hash: bytes, base: int = 1) -> None:
        """A status answer (replaces the claim) or an announcement (raises it)."""
        self._claims[peer] = Claim(height, block_hash, base, answered=True)
        if self._verified.get(peer, 0) > height:
            self._verified[peer] = height

    def note_announce(self, peer: str, height: int, block_hash: bytes) -> None:
        current = self._claims.get(peer)
        if current is None or height > current.height:
            self._claims[peer] = (Claim(height, block_hash) if current is None
                                  else Claim(height, block_hash, current.base, current.answered))

    def verified(self, peer: str, height: int) -> None:
        """``peer`` served block ``height`` with a commit that verified."""
        self._verified[peer] = max(self._verified.get(peer, 0), height)

    def reward(self, peer: str) -> None:
        self._scores[peer] = min(MAX_SCORE, self._scores.get(peer, 0) + 1)

    def slow(self, peer: str) -> None:
        self._scores[peer] = self._scores.get(peer, 0) - SLOW_PENALTY

    def fault(self, peer: str, now: float) -> float:
        """Ban ``peer``; returns the ban's length in seconds."""
        n = self._faults.get(peer, 0) + 1
        self._faults[peer] = n
        self.faults_total += 1
        self._scores[peer] = self._scores.get(peer, 0) - FAULT_PENALTY
        ban = min(MAX_BAN_S, BAN_S * (1 << min(n - 1, 16)))
        self._banned_until[peer] = now + ban
        self._claims.pop(peer, None)
        self._verified.pop(peer, None)
        return ban

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the claims of peers that are gone (scores and bans are kept)."""
        keep = set(keep)
        for peer in [p for p in self._claims if p not in keep]:
            del self._claims[peer]
            self._verified.pop(peer, None)

    # ------------------------------------------------------------ queries

    def banned(self, peer: str, now: float) -> bool:
        return self._banned_until.get(peer, 0.0) > now

    def claim(self, peer: str) -> Claim | None:
        return self._claims.get(peer)

    def reported(self, peer: str) -> Claim | None:
        """The peer's claim once it has answered a status request, else None.

        An announcement alone is not a report of the peer's head: gossip delivers
        announcements late and out of order (a node that just connected is sent the
        recent ones again), so right after a restart the first claim of a peer at height
        5 can be its announcement of height 2. ``node_syncing`` lists reports only, and
        ``medchaind status --wait-sync`` judges "caught up" by them."""
        c = self._claims.get(peer)
        return c if c is not None and c.answered else None

    def score(self, peer: str) -> int:
        return self._scores.get(peer, 0)

    def corroborated(self, peers: Iterable[str], k: int) -> int:
        """The k-th highest claim among ``peers`` (0 if fewer than k claim anything)."""
        heights = sorted((c.height for p in peers if (c := self._claims.get(p)) is not None), reverse=True)
        return heights[k - 1] if k >= 1 and len(heights) >= k else 0

    def proven(self, peers: Iterable[str]) -> int:
        """The highest height a peer proved with a verified commit."""
        return max((self._verified.get(p, 0) for p in peers), default=0)

    def backed(self, peer: str, corroborated: int) -> bool:
        c = self._claims.get(peer)
        return c is not None and (c.height <= corroborated or self._verified.get(peer, 0) >= c.height)

    def ranked(self, peers: Iterable[P], above: int, corroborated: int) -> list[P]:
        """Peers claiming more than ``above`` and holding block ``above + 1`` (a peer
        restored from a snapshot has nothing below its base): backed claims first, best
        score first, equals in a rotating order (so load spreads over them)."""
        cands = sorted(p for p in peers
                       if (c := self._claims.get(p)) is not None and c.height > above and c.base <= above + 1)
        if not cands:
            return []
        self._rotation += 1
        n = len(cands)
        return sorted(cands, key=lambda p: (not self.backed(p, corroborated), -self.score(p),
                                            (cands.index(p) - self._rotation) % n))
