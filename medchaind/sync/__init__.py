"""Block sync: a node that is behind fetches committed blocks from its peers.

Request/response protocol ``/medchain/<chain>/sync/1`` (``docs/protocol.md`` §13):
``{"op": "status"}`` -> ``{"height", "hash"}``; ``{"op": "blocks", "from", "to"}`` ->
``{"blocks": [[block, commit], ...]}`` (at most 64 blocks and 48 MiB per answer).

Theory of operation
-------------------
The catch-up loop runs every ``interval`` and at once when a block announcement shows a
peer ahead of us (at most ten rounds per interval, so a flood of announcements cannot
keep it busy). A round:

1. asks every connected peer that is not banned for its status; each answer, like each
   announcement, is only a *claim* (:mod:`.peers`);
2. probes, in the background, claims that no one corroborates: the claimer must serve
   its claimed head block with a commit for that height; a wrong or missing head is a
   fault (ban), a commit that verifies against the authority set proves the claim;
3. pulls blocks in ranges of up to 64 from the peers that claim more than we have, best
   ranked first, *hedged*: if the first peer has not answered well within ``hedge_s``
   (or answered badly), the next is asked too, up to ``fanout`` at once, and the first
   good answer wins. An empty or broken answer from a peer that claimed those blocks is
   a fault. Each block goes to the consensus engine (:meth:`BftEngine.submit_synced`),
   which verifies its commit against the authority set of that height and re-executes
   it before the ledger takes it; an invalid block is a fault of its server. Pipelined
   as ``medchaind import`` is: the signatures of the range are checked in worker
   threads ahead of execution, and block N+1 is checked and executed while block N's
   write and fsync are in flight (:meth:`BftEngine.submit_synced`'s ``following``);
   still one atomic write per block, in order, each after the one before it.

   The range is adaptive (:attr:`SyncService.span`): it halves, down to one block,
   when every peer asked let the deadline pass, and grows back towards 64 by a quarter
   after each good answer (TCP's additive increase, multiplicative decrease: a link that
   carries k blocks in time costs one timeout per few good answers, not every other). A
   full range can be 48 MiB; on a starved machine or a thin link such an answer may
   never arrive within ``blocks_timeout_s``, and asking for the same range again and
   again would leave the node behind for good (it was seen: an authority held at height
   9 while its peers passed 30, reporting ``syncing: false``).

The target a node reports (``node_syncing``) is never one peer's word: its own height,
the (f+1)-th highest claim, or a claim proven by a verified commit. So one Byzantine
peer, an authority included, can neither hold sync on itself nor make honest nodes
report its 2^62 (issue 9, defect 1); the worst it can do is cost a hedge delay per
range until its score puts it last. Nothing here trusts a peer.

A node restored from a state snapshot (:mod:`.snapshots`) has no block below its *base*;
its status answer says so (``base``, docs/protocol.md §13.4) and peers do not rank it for
ranges below it, so asking it is never mistaken for an unbacked claim.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from ..errors import DecodeError, MedchainError, ValidationError
from ..net.api import RequestTimeout
from ..types import Block, Commit, verify_commit
from .peers import PeerBook
from .wire import (
    MAX_SYNC_BLOCKS,
    MAX_SYNC_BYTES,
    SYNC_PROTOCOL,
    decode_announce,
    decode_blocks,
    decode_status_base,
    decode_sync_request,
    encode_blocks,
    encode_status,
    encode_sync_request,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..consensus.bft import BftEngine
    from ..ledger import Ledger
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

_Answer = list[tuple[Block, Commit]]


class SyncService:
    def __init__(self, ledger: Ledger, engine: BftEngine, net: NetworkAPI, *, interval: float = 1.0,
                 fanout: int = 3, hedge_s: float = 2.0, status_timeout_s: float = 5.0,
                 blocks_timeout_s: float = 30.0, pipeline: bool = True) -> None:
        self.ledger = ledger
        self.engine = engine
        self.net = net
        self.interval = interval
        #: peers asked for one range at once, at most
        self.fanout = fanout
        #: ask the next peer when the ones asked have not answered well within this
        self.hedge_s = hedge_s
        self.status_timeout_s = status_timeout_s
        self.blocks_timeout_s = blocks_timeout_s
        #: check and execute each fetched block while the one before it is written
        #: (BftEngine.submit_synced's ``following``; as ``medchaind import`` does)
        self.pipeline = pipeline
        self.target_height = 0
        self.syncing = False
        self.blocks_synced = 0
        #: blocks asked for in one range (adaptive, 1..MAX_SYNC_BLOCKS; see the module docstring)
        self.span = MAX_SYNC_BLOCKS
        self.book = PeerBook()
        self._poke = trio.Event()
        self._probing: set[str] = set()
        #: what snapshot sync did or does (set by the node: medchaind.sync.snapshots)
        self.snapshot_status: Any = lambda: None
        net.set_handler(SYNC_PROTOCOL, self._serve)

    def status(self) -> dict[str, Any]:
        """``node_syncing``. ``peers``: the head each connected peer last reported (its
        claim, unverified, once it has answered a status request: PeerBook.reported), so a
        caller can tell "caught up" from "not asked yet" (right after a restart the target
        is still our own height until the peers answer);
        ``claims_needed``: how many agreeing claims make a target (see the docstring)."""
        reported = [
            {"peer_id": str(p), "height": c.height}
            for p in self.net.connected_peers() if (c := self.book.reported(p)) is not None
        ]
        return {
            "syncing": self.syncing,
            "height": self.ledger.height,
            "target_height": max(self.target_height, self.ledger.height),
            "blocks_synced": self.blocks_synced,
            "peers": reported,
            "claims_needed": self._quorum_of_claims(),
            # the lowest block this node holds and serves: above 1 after a snapshot sync
            "base_height": self.ledger.base,
            "snapshot": self.snapshot_status(),
        }

    def statistics(self) -> dict[str, Any]:
        return {"peer_faults": self.book.faults_total, "blocks_synced": self.blocks_synced}

    def fault(self, peer: PeerId, why: str) -> None:
        """A peer served something invalid (a snapshot chunk, ...): ban it like a sync fault."""
        self._fault(peer, why)

    def banned(self, peer: PeerId) -> bool:
        return self.book.banned(peer, trio.current_time())

    # ------------------------------------------------------------ serving

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        req = decode_sync_request(data)
        store = self.ledger.store
        if req["op"] == "status":
            return encode_status(self.ledger.height, self.ledger.tip.block_hash, self.ledger.base)
        items: list[tuple[bytes, bytes]] = []
        size = 0
        top = min(req["to"], self.ledger.height, req["from"] + MAX_SYNC_BLOCKS - 1)
        for h in range(req["from"], top + 1):
            stored = store.get_encoded(h)  # served as stored: the requester decodes and checks it
            if stored is None:
                break
            b, c = stored
            if items and size + len(b) + len(c) > MAX_SYNC_BYTES - 1024:
                break
            items.append((b, c))
            size += len(b) + len(c)
        return encode_blocks(items)

    def on_announce(self, peer: PeerId, data: bytes) -> bool:
        """Gossip validator of the block topic: a claim by its publisher, and a wake-up.

        It never sets the target by itself (see the module docstring)."""
        try:
            height, block_hash = decode_announce(data)
        except MedchainError:
            return False
        self.book.note_announce(peer, height, block_hash)
        if height > self.ledger.height + 1 and not self.book.banned(peer, trio.current_time()):
            self._poke.set()  # a banned peer's announcements wake nothing up
        return True

    def poke(self) -> None:
        self._poke.set()

    # ------------------------------------------------------------ catching up

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                with trio.move_on_after(self.interval):
                    await self._poke.wait()
                self._poke = trio.Event()
                try:
                    await self.catch_up(nursery)
                except MedchainError as exc:
                    log.warning("sync round failed: %s", exc)
                # however many announcements arrive, at most ten rounds per interval
                await trio.sleep(self.interval / 10)

    def _quorum_of_claims(self) -> int:
        """How many peers must claim a height before it is the target: f+1 of the
        authority set (one of them is honest), and never fewer than two."""
        f = (len(self.ledger.tip.powers) - 1) // 3
        return max(f + 1, 2)

    def _refresh_target(self, peers: list[PeerId]) -> int:
        corroborated = self.book.corroborated(peers, self._quorum_of_claims())
        self.target_height = max(self.ledger.height, corroborated, self.book.proven(peers))
        return corroborated

    async def _peer_status(self, peer: PeerId) -> None:
        try:
            raw = await self.net.request(peer, SYNC_PROTOCOL, encode_sync_request("status"),
                                         timeout=self.status_timeout_s)
            height, head, base = decode_status_base(raw)
        except DecodeError as exc:
            self._fault(peer, f"malformed status answer ({exc})")
        except MedchainError:
            self.book.slow(peer)
        else:
            self.book.note_claim(peer, height, head, base)

    async def catch_up(self, background: trio.Nursery | None = None) -> None:
        """One round: statuses, probes of uncorroborated claims, then fetching."""
        now = trio.current_time()
        connected = self.net.connected_peers()
        self.book.forget(connected)
        peers = [p for p in connected if not self.book.banned(p, now)]
        if not peers:
            self._refresh_target([])
            return
        async with trio.open_nursery() as n:
            for p in peers:
                n.start_soon(self._peer_status, p)
        peers = [p for p in peers if not self.book.banned(p, trio.current_time())]  # a bad status bans
        corroborated = self._refresh_target(peers)
        if background is not None:
            for p in peers:
                claim = self.book.claim(p)
                if (claim is not None and claim.height > max(corroborated, self.ledger.height) + 1
                        and not self.book.backed(p, corroborated) and p not in self._probing):
                    self._probing.add(p)
                    background.start_soon(self._probe, p, claim.height, claim.block_hash)
        try:
            while True:
                now = trio.current_time()
                usable = [p for p in peers if not self.book.banned(p, now)]
                corroborated = self._refresh_target(usable)
                ranked = self.book.ranked(usable, self.ledger.height, corroborated)
                if not ranked:
                    return
                if self.book.backed(ranked[0], corroborated):
                    self.syncing = True
                start = self.ledger.height + 1
                if not await self._fetch_range(start, ranked, corroborated):
                    return
                self.syncing = True
                log.info("sync progress height=%d target=%d", self.ledger.height, self.target_height)
        finally:
            self.syncing = False
            self._refresh_target([p for p in peers if not self.book.banned(p, trio.current_time())])

    async def _probe(self, peer: PeerId, height: int, head: bytes) -> None:
        """A claim no one corroborates must be backed by its head block and a commit."""
        try:
            raw = await self.net.request(peer, SYNC_PROTOCOL,
                                         encode_sync_request("blocks", **{"from": height, "to": height}),
                                         timeout=self.status_timeout_s)
            items = decode_blocks(raw)
        except DecodeError as exc:
            self._fault(peer, f"malformed answer for its claimed head {height} ({exc})")
            return
        except RequestTimeout:
            self._fault(peer, f"claimed height {height} but did not serve that block within "
                              f"{self.status_timeout_s:g} s")
            return
        except MedchainError:
            self.book.slow(peer)  # unreachable or busy: it stays uncorroborated, so it changes nothing
            return
        finally:
            self._probing.discard(peer)
        if len(items) != 1:
            self._fault(peer, f"claimed height {height} but did not serve that block")
            return
        block, commit = items[0]
        if (block.height != height or block.hash() != head or commit.height != height
                or commit.block_hash != block.hash()):
            self._fault(peer, f"claimed head {height} but served another block or commit")
            return
        try:
            # Against the set we know: right unless the set changed since our head, in
            # which case the claim stays unproven (not a fault)
            verify_commit(commit, self.ledger.genesis.chain_id, self.ledger.tip.powers, block.hash(), height)
        except ValidationError:
            return
        self.book.verified(peer, height)
        self._poke.set()

    def _fault(self, peer: PeerId, why: str) -> None:
        ban = self.book.fault(peer, trio.current_time())
        log.warning("sync: peer fault, banned for %.0f s peer=%s reason=%s", ban, peer, why)

    def _check_answer(self, peer: PeerId, start: int, result: _Answer | MedchainError,
                      backed: bool) -> _Answer | None:
        """A blocks answer from a peer that claimed height >= start: usable, or a verdict."""
        if isinstance(result, DecodeError):
            self._fault(peer, f"malformed blocks answer ({result})")
            return None
        if isinstance(result, RequestTimeout) and not backed:
            # a claim no one else makes, and no block within the deadline: not backed
            self._fault(peer, f"claimed height >= {start} but sent no block within {self.status_timeout_s:g} s")
            return None
        if isinstance(result, MedchainError):
            self.book.slow(peer)
            return None
        if not result:
            self._fault(peer, f"claimed height >= {start} but served no block from {start}")
            return None
        for i, (block, commit) in enumerate(result):
            if block.height != start + i or commit.height != block.height or commit.block_hash != block.hash():
                self._fault(peer, "served blocks out of order or with a commit for another block")
                return None
        return result

    async def _fetch_range(self, start: int, ranked: list[PeerId], corroborated: int) -> bool:
        """Fetch blocks from ``start`` from the ranked peers (hedged); True on progress.

        A peer whose claim is backed (corroborated or proven) gets the full time for a
        large answer; one whose claim no one else makes gets the status deadline, so a
        silent liar holds a round for seconds, not half a minute."""
        request = encode_sync_request("blocks", **{"from": start, "to": start + self.span - 1})
        backed = {p: self.book.backed(p, corroborated) for p in ranked}
        send, recv = trio.open_memory_channel["tuple[PeerId, _Answer | MedchainError]"](len(ranked))
        winner: tuple[PeerId, _Answer] | None = None
        asked: list[PeerId] = []
        answered: set[PeerId] = set()
        timed_out: set[PeerId] = set()

        async def ask(peer: PeerId) -> None:
            result: _Answer | MedchainError
            try:
                raw = await self.net.request(peer, SYNC_PROTOCOL, request,
                                             timeout=self.blocks_timeout_s if backed[peer] else self.status_timeout_s)
                result = decode_blocks(raw)
            except MedchainError as exc:
                result = exc
            await send.send((peer, result))

        async with trio.open_nursery() as n:

            def launch() -> None:
                peer = ranked[len(asked)]
                asked.append(peer)
                n.start_soon(ask, peer)

            launch()
            while len(answered) < len(asked):
                pending = len(asked) - len(answered)
                can_hedge = len(asked) < len(ranked) and pending < self.fanout
                with trio.move_on_after(self.hedge_s if can_hedge else math.inf):
                    peer, result = await recv.receive()
                    answered.add(peer)
                    if isinstance(result, RequestTimeout):
                        timed_out.add(peer)
                    items = self._check_answer(peer, start, result, backed[peer])
                    if items is not None:
                        winner = (peer, items)
                        n.cancel_scope.cancel()
                        break
                    if len(asked) < len(ranked):
                        launch()  # a bad answer: ask the next one at once
                    continue
                launch()  # nobody answered well within hedge_s: ask one more
        for peer in asked:
            if peer not in answered:
                self.book.slow(peer)  # lost the race without answering
        if winner is None:
            if timed_out and timed_out == answered:  # nobody could send this much in time
                self.span = max(1, self.span // 2)
                log.info("sync: no range answer in time, asking for %d blocks at once", self.span)
            return False
        self.span = min(MAX_SYNC_BLOCKS, self.span + max(1, self.span // 4))
        peer, items = winner
        # every block's tx and commit signatures are checked in worker threads, in order,
        # while the blocks before it execute (the engine still checks every rule)
        lookahead = self.engine.lookahead
        ahead = [lookahead.submit(block, commit) if block.height > self.ledger.height else None
                 for block, commit in items]
        try:
            for i, ((block, commit), checks) in enumerate(zip(items, ahead, strict=True)):
                if block.height <= self.ledger.height:
                    continue  # consensus got there first
                if block.height != self.ledger.height + 1:
                    break
                await lookahead.collect(checks)
                # pipelined: the next block is checked and executed while this one is written
                following = ((*items[i + 1], ahead[i + 1]) if self.pipeline and i + 1 < len(items) else None)
                try:
                    # decode_blocks ran each block's validate_basic
                    await self.engine.submit_synced(block, commit, basic_checked=True, following=following)
                except MedchainError as exc:
                    self._fault(peer, f"served an invalid block at height {block.height} ({exc})")
                    break
                self.blocks_synced += 1
        finally:
            for checks in ahead:  # the blocks not replayed: drop their checks not started yet
                if checks is not None:
                    checks.cancel()
        if self.ledger.height >= start:
            self.book.reward(peer)
            return True
        return False
