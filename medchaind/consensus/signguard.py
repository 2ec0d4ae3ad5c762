"""One key, one running authority: whether this authority may sign now (DESIGN.md §8).

Theory of operation
-------------------
The WAL and the last-signed guard stop *one* process from signing two different votes
for one (height, round, step). They cannot stop a second process holding the same key:
a backup restored beside its still-running original, a standby started by mistake, a
datadir copied to a new machine. Both would sign, and every conflicting pair is an
equivocation by this authority (with a single authority, a fork). So an authority
looks for its own signatures made by someone else, and while it sees any, it does not
sign: it stays a follower (the core runs with no key), keeps committing what the others
decide, and says why in its log.

Where such signatures show up, and what each means:

* **Recent commits at start** (CometBFT's ``double_sign_check_height``): the commits and
  ``last_commit`` of the last ``look_back`` committed heights, compared with the
  precommits the WAL holds (the WAL keeps this key's precommits of those heights,
  :meth:`WAL.prune`). A precommit of ours that the WAL does not hold is
  - *foreign* when the WAL would have to hold it: the WAL is new (it never recorded a
    signature, e.g. a datadir restored or copied without it), or the height lies
    between the lowest and highest heights at which the WAL holds our precommits;
  - *unexplained* otherwise: it is above everything the WAL knows. A WAL copied before
    its chain (``node/backup.py`` copies the WAL first, so the copied chain can hold a
    few blocks more) or a WAL written by an older version explains it as well as a second
    process does. The authority then *holds* its signature for ``grace_s`` while it
    watches for the signs below; with none, it signs (a lone authority restored from a
    backup has no one to wait for).
* **Consensus messages from peers** signed with our key that our WAL does not hold, for
  the height we decide or the next one: another process is signing right now.
* **Commits of new blocks** (decided or synced) that carry a precommit of ours the WAL
  does not hold, and evidence of our own key equivocating.

Each is *foreign* at its height h. Signing stays off while a foreign signature lies in
the last ``look_back`` committed heights, i.e. until the chain has advanced ``look_back``
heights past it without a new one (CometBFT asks the operator to restart after that many
blocks; here the node resumes by itself). A live second process keeps producing foreign
signatures at the top of the chain, so the node never signs beside it. ``look_back = 0``
turns every check off.

The guard is pure: no clock (``now`` is passed in), no I/O; the engine gathers the
signatures and asks :meth:`may_sign`.
"""

from __future__ import annotations

from collections.abc import Iterable


class DoubleSignGuard:
    def __init__(self, look_back: int, grace_s: float) -> None:
        if look_back < 0:
            raise ValueError("double_sign_check_height must be >= 0")
        self.look_back = look_back
        self.grace_s = grace_s
        self._foreign_top: int | None = None
        self._hold_until: float | None = None
        self.reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.look_back > 0

    def classify(self, unknown: Iterable[int], *, wal_created: bool,
                 wal_precommits: list[int]) -> tuple[list[int], list[int]]:
        """Split the heights of precommits of ours that the WAL lacks into (foreign, unexplained)."""
        lo = min(wal_precommits, default=None)
        hi = max(wal_precommits, default=None)
        foreign, unexplained = [], []
        for h in sorted(set(unknown)):
            if wal_created or (lo is not None and hi is not None and lo <= h <= hi):
                foreign.append(h)
            else:
                unexplained.append(h)
        return foreign, unexplained

    def on_start(self, now: float, foreign: list[int], unexplained: list[int]) -> None:
        """The look-back at start found these heights (see :meth:`classify`)."""
        if not self.enabled:
            return
        if foreign:
            self.foreign(max(foreign), f"this key's precommits at heights {_span(foreign)} are in recent "
                                       "commits but not in consensus.wal")
        elif unexplained:
            self._hold_until = now + self.grace_s
            self.reason = (f"this key's precommits at heights {_span(unexplained)} are in recent commits but "
                           f"above what consensus.wal holds; watching {self.grace_s:g} s for another process "
                           "signing with this key before signing")

    def foreign(self, height: int, why: str) -> bool:
        """Another process signed with our key at ``height``; True if this is news."""
        if not self.enabled:
            return False
        news = self._foreign_top is None or height > self._foreign_top
        self._foreign_top = height if self._foreign_top is None else max(self._foreign_top, height)
        self._hold_until = None
        self.reason = why
        return news

    def may_sign(self, now: float, head: int) -> bool:
        """Whether signing is allowed with the chain committed up to ``head``."""
        if not self.enabled:
            return True
        if self._foreign_top is not None and head - self._foreign_top < self.look_back:
            return False
        return self._hold_until is None or now >= self._hold_until

    def hold_until(self) -> float | None:
        """When a hold at start ends (None: no hold pending)."""
        return None if self._foreign_top is not None else self._hold_until

    def resume_height(self) -> int | None:
        """The committed height from which a foreign signature no longer stops signing."""
        return None if self._foreign_top is None else self._foreign_top + self.look_back


def _span(heights: list[int]) -> str:
    return str(heights[0]) if len(heights) == 1 else f"{heights[0]}..{heights[-1]}"
