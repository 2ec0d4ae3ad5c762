"""Snapshot sync: serve the kept state snapshots, and start a new node from one.

Request/response protocol ``/medchain/<chain>/snapshot/1`` (docs/protocol.md §13.4):
``{"op": "list"}`` -> ``{"snapshots": [{"height", "root", "manifest", "chunks",
"validators"}, ...]}``; ``{"op": "manifest", "height"}`` -> the manifest;
``{"op": "chunk", "height", "index"}`` -> the chunk (:mod:`medchaind.app.snapshot`).

Theory of operation
-------------------
**Serving** (:class:`SnapshotServer`). The ledger keeps the state trie of every
``snapshot_interval``-th height (the last ``snapshot_keep`` of them, §23.8). Once the
block after a snapshot height ``S`` is committed (a joining node checks that block's
commit), the server plans the snapshot in a worker thread (one walk over the trie:
:func:`~medchaind.app.snapshot.plan_snapshot`) and lists it; chunks are read from the
kept records and leaf values on request. Nothing is written for a snapshot: it is a
kept version of the trie plus an in-memory manifest (recomputed after a restart).

**Joining** (:class:`SnapshotFetcher`). A node with an empty chain and snapshot sync on:

1. asks its peers for their lists and groups the offers by ``(height, root, manifest
   hash, validators)``, highest height first (several peers offering one snapshot can
   share its chunks; a peer offering a different manifest of the same state cannot);
2. gets blocks ``S`` and ``S+1`` with their commits over ``sync/1`` and checks them as a
   light client that trusts the genesis authority set (§23.5): block ``S+1``'s commit
   carries more than 2/3 of the offer's ``validators`` (which must hash to the header's
   ``validators_hash``) and, if that is not the genesis set, signers holding more than
   1/3 of the genesis power; block ``S+1`` names block ``S`` as its parent; block ``S``
   was signed by the same set (a snapshot at a height whose block changed the set is
   skipped: the first synced block's ``last_commit`` must verify against it); its
   ``app_hash`` is the offer's root. So the root is as trustworthy as a light client's
   header, from genesis alone;
3. fetches the manifest (its hash must be the offer's) and checks it against the root;
4. fetches the chunks from every peer of the offer in parallel, one worker per peer
   taking the next missing chunk; each chunk is verified on arrival. A chunk that does
   not decode or verify is a *fault*: the peer is banned (``fault``, the sync peer book)
   and the chunk goes back to the queue for another peer; a timeout or a vanished peer
   puts it back too (two of them and that peer is dropped for this snapshot). When no
   peer is left the next offer is tried;
5. hands the verified state (entries, records, values) with blocks ``S`` to the node,
   which writes it in one batch (:meth:`medchaind.ledger.Ledger.restore_snapshot`) and
   then block-syncs from ``S+1``, re-executing every block.

When no offer works out within the discovery time (no peer serves snapshots, they are
all bad, the authority set moved beyond what genesis can vouch for) the node falls
back to block sync from genesis by itself. Record ciphertexts are not in the state:
the blob reconciliation (medchaind.node.blobs) fetches the live ones afterwards.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from .. import codec
from ..app.snapshot import (
    Manifest,
    SnapshotError,
    chunk_entries,
    decode_chunk,
    decode_manifest,
    encode_chunk,
    plan_snapshot,
    split_tree_key,
    verify_chunk,
    verify_manifest,
)
from ..app.trie import node_hash
from ..errors import DecodeError, MedchainError, ProofError, ValidationError
from ..types import Block, Commit, validators_hash, verify_commit
from .wire import SYNC_PROTOCOL, decode_blocks, encode_sync_request

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from ..ledger import Committed, Ledger
    from ..net.api import NetworkAPI, PeerId
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)

SNAPSHOT_PROTOCOL = "snapshot/1"
#: the largest request (they are tiny maps)
MAX_SNAPSHOT_REQUEST = 256
MAX_LISTED = 16
MAX_VALIDATORS = 1024


# ----------------------------------------------------------------------- wire


def encode_snapshot_request(op: str, **fields: Any) -> bytes:
    return codec.encode({"op": op, **fields})


def decode_snapshot_request(data: bytes) -> dict[str, Any]:
    d = codec.decode(data, max_size=MAX_SNAPSHOT_REQUEST)
    if not isinstance(d, dict):
        raise DecodeError("snapshot request: expected a map")
    op = d.get("op")
    shapes = {"list": {"op"}, "manifest": {"op", "height"}, "chunk": {"op", "height", "index"}}
    want = shapes.get(op) if isinstance(op, str) else None
    if want is None or set(d) != want:
        raise DecodeError("snapshot request: {op: list} | {op: manifest, height} | {op: chunk, height, index}")
    for k in want - {"op"}:
        if type(d[k]) is not int or d[k] < (1 if k == "height" else 0):
            raise DecodeError(f"snapshot request: {k} must be an integer >= {1 if k == 'height' else 0}")
    return d


@dataclass(frozen=True, slots=True)
class Offer:
    """One snapshot a peer lists (a claim until checked)."""

    height: int
    root: bytes
    manifest: bytes
    chunks: int
    #: the authority set of height ``height + 1`` (in the snapshot's state)
    validators: tuple[tuple[bytes, int], ...]

    def to_map(self) -> dict[str, Any]:
        return {"height": self.height, "root": self.root, "manifest": self.manifest, "chunks": self.chunks,
                "validators": [[k, p] for k, p in self.validators]}


def encode_list(offers: list[Offer]) -> bytes:
    return codec.encode({"snapshots": [o.to_map() for o in offers]})


def decode_list(data: bytes) -> list[Offer]:
    d = codec.decode(data, max_size=1 << 20)
    if not isinstance(d, dict) or set(d) != {"snapshots"} or not isinstance(d["snapshots"], list):
        raise DecodeError("snapshot list: expected {snapshots: [...]}")
    if len(d["snapshots"]) > MAX_LISTED:
        raise DecodeError(f"snapshot list: at most {MAX_LISTED} snapshots")
    out = []
    for o in d["snapshots"]:
        if (not isinstance(o, dict) or set(o) != {"height", "root", "manifest", "chunks", "validators"}
                or type(o["height"]) is not int or o["height"] < 1 or type(o["chunks"]) is not int
                or o["chunks"] < 0 or not isinstance(o["root"], bytes) or len(o["root"]) != 32
                or not isinstance(o["manifest"], bytes) or len(o["manifest"]) != 32
                or not isinstance(o["validators"], list) or not 1 <= len(o["validators"]) <= MAX_VALIDATORS):
            raise DecodeError("snapshot list: malformed entry")
        vals = []
        for v in o["validators"]:
            if (not isinstance(v, list) or len(v) != 2 or not isinstance(v[0], bytes) or len(v[0]) != 32
                    or type(v[1]) is not int or v[1] < 1):
                raise DecodeError("snapshot list: validators are [[32-byte key, power >= 1], ...]")
            vals.append((v[0], v[1]))
        out.append(Offer(o["height"], o["root"], o["manifest"], o["chunks"], tuple(sorted(vals))))
    return out


# ----------------------------------------------------------------------- serving


@dataclass(slots=True)
class _Planned:
    offer: Offer
    manifest: Manifest
    encoded: bytes


class SnapshotServer:
    """Serves the ledger's kept snapshots (see the module docstring)."""

    def __init__(self, ledger: Ledger, net: NetworkAPI, *, chunk_bytes: int = 1 << 20,
                 in_thread: bool = True, corrupt_chunks: bool = False) -> None:
        self.ledger = ledger
        self.net = net
        self.chunk_bytes = chunk_bytes
        self.in_thread = in_thread
        #: FAULT INJECTION ([sync] fault_corrupt_snapshot_chunks): serve corrupted chunks
        self.corrupt_chunks = corrupt_chunks
        self.planned: dict[int, _Planned] = {}
        self.chunks_served = 0
        self._wake = trio.Event()
        net.set_handler(SNAPSHOT_PROTOCOL, self._serve)
        ledger.add_listener(self._on_commit)
        if corrupt_chunks:
            log.warning("FAULT INJECTION: this node serves corrupted snapshot chunks "
                        "([sync] fault_corrupt_snapshot_chunks); never set it outside tests")

    def _on_commit(self, committed: Committed) -> None:
        self._wake.set()

    async def _run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.in_thread:
            return await trio.to_thread.run_sync(fn, *args)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.plan_due()
            await self._wake.wait()
            self._wake = trio.Event()

    async def plan_due(self) -> None:
        """Plan the servable snapshots not planned yet; forget the pruned ones."""
        heights = self.ledger.snapshot_heights()
        for h in [h for h in self.planned if h not in heights]:
            del self.planned[h]
        for h in heights:
            if h in self.planned:
                continue
            root = self.ledger.root_at(h)
            if root is None:
                continue
            try:
                planned = await self._run_sync(self._plan, h, root)
            except ProofError as exc:  # pruned meanwhile
                log.warning("snapshot not planned height=%d reason=%s", h, exc)
                continue
            self.planned[h] = planned
            log.info("snapshot ready height=%d chunks=%d manifest_bytes=%d", h, planned.offer.chunks,
                     len(planned.encoded))

    def _plan(self, height: int, root: bytes) -> _Planned:
        state = self.ledger.state
        store = self.ledger.store

        def value_size(leaf: bytes) -> int:
            v = store.trie_value(leaf)
            if v is None:
                raise ProofError(f"no value for trie leaf {leaf.hex()}")
            return len(v)

        manifest = plan_snapshot(height, root, state.trie_node, value_size, max_chunk_bytes=self.chunk_bytes)
        powers = self.ledger.app.authority_powers(self.ledger.version_reader(root))
        encoded = manifest.encode()
        offer = Offer(height, root, manifest.hash(), len(manifest.chunks), tuple(sorted(powers.items())))
        return _Planned(offer, manifest, encoded)

    def offers(self) -> list[Offer]:
        return [p.offer for _, p in sorted(self.planned.items(), reverse=True)][:MAX_LISTED]

    async def _serve(self, peer: PeerId, data: bytes) -> bytes:
        req = decode_snapshot_request(data)
        if req["op"] == "list":
            return encode_list(self.offers())
        planned = self.planned.get(req["height"])
        if planned is None:
            raise MedchainError(f"no snapshot of height {req['height']} here")
        if req["op"] == "manifest":
            return planned.encoded
        index = req["index"]
        if index >= len(planned.manifest.chunks):
            raise MedchainError(f"snapshot {req['height']} has {len(planned.manifest.chunks)} chunks")
        chunk = await self._run_sync(chunk_entries, planned.manifest, index, self.ledger.state.trie_node,
                                     self.ledger.store.trie_value)
        if self.corrupt_chunks:
            (k, v), *rest = chunk[0]
            chunk = (((k, v + b"\x00"), *rest), *chunk[1:])
        self.chunks_served += 1
        return encode_chunk(chunk)


# ----------------------------------------------------------------------- joining


def verify_snapshot_blocks(chain_id: str, trusted: dict[bytes, int], offer: Offer,
                           items: list[tuple[Block, Commit]]) -> None:
    """Check blocks ``S``, ``S+1`` and commits for an offer (step 2 of the module
    docstring); ProofError if they do not make the offer's root trustworthy."""
    if len(items) != 2:
        raise ProofError(f"expected blocks {offer.height} and {offer.height + 1}")
    (b0, c0), (b1, c1) = items
    if b0.height != offer.height or b1.height != offer.height + 1:
        raise ProofError("the peer sent other heights")
    if b1.header.chain != chain_id or b0.header.chain != chain_id:
        raise ProofError("the blocks are of another chain")
    if b1.header.prev_hash != b0.hash():
        raise ProofError(f"block {b1.height} does not extend block {b0.height}")
    if b0.header.app_hash != offer.root:
        raise ProofError("the snapshot's root is not the app_hash of its block")
    named = dict(offer.validators)
    vh = validators_hash(named)
    if vh != b1.header.validators_hash:
        raise ProofError("the offer's authority set is not the one that signs the next block")
    if vh != b0.header.validators_hash:
        raise ProofError("the authority set changed with the snapshot's block (use another snapshot)")
    try:
        for b, c in ((b1, c1), (b0, c0)):
            if c.height != b.height or c.block_hash != b.hash():
                raise ProofError("a commit is not for its block")
            verify_commit(c, chain_id, named, b.hash(), b.height)
    except ValidationError as exc:
        raise ProofError(f"a snapshot block is not final: {exc}") from None
    if named != trusted:
        vouched = sum(trusted.get(s.validator, 0) for s in c1.signatures)
        if 3 * vouched <= sum(trusted.values()):
            raise ProofError("the snapshot's authority set is not vouched for by 1/3 of the genesis authorities")


@dataclass(slots=True)
class Restored:
    """A verified snapshot, ready to be written (Ledger.restore_snapshot)."""

    block: Block
    commit: Commit
    state: list[tuple[str, bytes, bytes]]
    records: dict[bytes, bytes]
    values: dict[bytes, bytes]
    stats: dict[str, Any] = field(default_factory=dict)


class SnapshotFetcher:
    """Finds, checks and downloads a snapshot (see the module docstring)."""

    def __init__(self, net: NetworkAPI, chain_id: str, trusted: dict[bytes, int], *,
                 fault: Callable[[PeerId, str], None], banned: Callable[[PeerId], bool] = lambda p: False,
                 discovery_s: float = 10.0, request_timeout_s: float = 5.0, chunk_timeout_s: float = 30.0,
                 in_thread: bool = True) -> None:
        self.net = net
        self.chain_id = chain_id
        self.trusted = dict(trusted)
        self.fault = fault
        self.banned = banned
        self.discovery_s = discovery_s
        self.request_timeout_s = request_timeout_s
        self.chunk_timeout_s = chunk_timeout_s
        self.in_thread = in_thread
        #: what the node reports while it works (node_syncing's ``snapshot``)
        self.status: dict[str, Any] = {"state": "idle"}
        self.faults: dict[str, int] = {}

    def _fault(self, peer: PeerId, why: str) -> None:
        self.faults[str(peer)] = self.faults.get(str(peer), 0) + 1
        log.warning("snapshot sync: peer fault peer=%s reason=%s", peer, why)
        self.fault(peer, why)

    async def _run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.in_thread:
            return await trio.to_thread.run_sync(fn, *args)
        await trio.lowlevel.checkpoint()
        return fn(*args)

    def _usable(self) -> list[PeerId]:
        return [p for p in self.net.connected_peers() if not self.banned(p)]

    async def fetch(self) -> Restored | None:
        """A verified snapshot, or None when none works out within ``discovery_s``."""
        self.status = {"state": "discovering"}
        # an offer is tried again when peers that were not asked for it offer it too (the
        # first peers to connect may all be bad, or serve no snapshot)
        tried: dict[Offer, set[PeerId]] = {}
        with trio.move_on_after(self.discovery_s) as scope:
            while True:
                offers = await self._offers()
                todo = sorted(((o, ps) for o, ps in offers.items() if set(ps) - tried.get(o, set())),
                              key=lambda x: (-x[0].height, -len(x[1]), sorted(map(str, x[1]))))
                for offer, peers in todo:
                    tried.setdefault(offer, set()).update(peers)
                    # downloading may outlast discovery: only finding an offer is bounded
                    scope.deadline = trio.current_time() + 3600 * 24
                    got = await self._try(offer, peers)
                    if got is not None:
                        return got
                    scope.deadline = trio.current_time() + self.discovery_s / 2
                await trio.sleep(0.5)
        self.status = {"state": "fell back to block sync", "tried": len(tried), "faults": dict(self.faults)}
        return None

    async def _offers(self) -> dict[Offer, list[PeerId]]:
        out: dict[Offer, list[PeerId]] = {}

        async def ask(peer: PeerId) -> None:
            try:
                raw = await self.net.request(peer, SNAPSHOT_PROTOCOL, encode_snapshot_request("list"),
                                             timeout=self.request_timeout_s)
                offers = decode_list(raw)
            except DecodeError as exc:
                self._fault(peer, f"malformed snapshot list ({exc})")
                return
            except MedchainError:
                return  # unreachable, busy, or it serves no snapshots
            for o in offers:
                out.setdefault(o, []).append(peer)

        async with trio.open_nursery() as n:
            for p in self._usable():
                n.start_soon(ask, p)
        return out

    async def _blocks(self, offer: Offer, peers: list[PeerId]) -> tuple[Block, Commit] | None:
        req = encode_sync_request("blocks", **{"from": offer.height, "to": offer.height + 1})
        for peer in peers:
            try:
                items = decode_blocks(await self.net.request(peer, SYNC_PROTOCOL, req, timeout=self.request_timeout_s))
                verify_snapshot_blocks(self.chain_id, self.trusted, offer, items)
            except (DecodeError, ProofError) as exc:
                if isinstance(exc, ProofError) and "changed with the snapshot" in str(exc):
                    log.info("snapshot sync: skipping snapshot height=%d (%s)", offer.height, exc)
                    return None
                self._fault(peer, f"snapshot {offer.height}: bad blocks ({exc})")
                continue
            except MedchainError:
                continue
            return items[0]
        return None

    async def _manifest(self, offer: Offer, peers: list[PeerId]) -> Manifest | None:
        req = encode_snapshot_request("manifest", height=offer.height)
        for peer in peers:
            try:
                raw = await self.net.request(peer, SNAPSHOT_PROTOCOL, req, timeout=self.chunk_timeout_s)
                m = decode_manifest(raw)
                if m.hash() != offer.manifest or m.height != offer.height or len(m.chunks) != offer.chunks:
                    raise SnapshotError("the manifest is not the one the peer listed")
                await self._run_sync(verify_manifest, m, offer.root)
            except (DecodeError, ProofError) as exc:
                self._fault(peer, f"snapshot {offer.height}: bad manifest ({exc})")
                continue
            except MedchainError:
                continue
            return m
        return None

    async def _try(self, offer: Offer, peers: list[PeerId]) -> Restored | None:
        t0 = trio.current_time()
        self.status = {"state": "verifying", "height": offer.height, "peers": len(peers)}
        head = await self._blocks(offer, peers)
        if head is None:
            return None
        peers = [p for p in peers if not self.banned(p)]
        manifest = await self._manifest(offer, peers)
        if manifest is None:
            return None
        n = len(manifest.chunks)
        self.status = {"state": "fetching", "height": offer.height, "chunks": n, "done": 0}
        got: dict[int, tuple[dict[bytes, bytes], dict[bytes, bytes], Any]] = {}
        pending: deque[int] = deque(range(n))
        gone: set[PeerId] = set()
        served: dict[str, int] = {}
        byte_count = 0

        async def worker(peer: PeerId) -> None:
            nonlocal byte_count
            misses = 0
            while pending and not self.banned(peer):
                i = pending.popleft()
                req = encode_snapshot_request("chunk", height=offer.height, index=i)
                try:
                    raw = await self.net.request(peer, SNAPSHOT_PROTOCOL, req, timeout=self.chunk_timeout_s)
                    chunk = decode_chunk(raw)
                    records, values = await self._run_sync(verify_chunk, manifest, i, chunk)
                except (DecodeError, ProofError) as exc:
                    pending.append(i)
                    self._fault(peer, f"snapshot {offer.height} chunk {i}: {exc}")
                    return
                except MedchainError as exc:
                    pending.append(i)
                    misses += 1
                    if misses >= 2:
                        log.info("snapshot sync: dropping peer for this snapshot peer=%s reason=%s", peer, exc)
                        gone.add(peer)
                        return
                    continue
                got[i] = (records, values, chunk)
                served[str(peer)] = served.get(str(peer), 0) + 1
                byte_count += len(raw)
                self.status["done"] = len(got)

        while pending:
            usable = [p for p in peers if p not in gone and not self.banned(p)
                      and p in set(self.net.connected_peers())]
            if not usable:
                log.warning("snapshot sync: no peer left for snapshot height=%d (%d of %d chunks)",
                            offer.height, len(got), n)
                return None
            async with trio.open_nursery() as nursery:
                for p in usable:
                    nursery.start_soon(worker, p)
        records = {node_hash(r): r for r in manifest.nodes}
        values: dict[bytes, bytes] = {}
        state: list[tuple[str, bytes, bytes]] = []
        for i in range(n):
            rec, val, chunk = got[i]
            records.update(rec)
            values.update(val)
            for unit in chunk:
                for k, v in unit:
                    module, key = split_tree_key(k)
                    state.append((module, key, v))
        block, commit = head
        stats = {"height": offer.height, "chunks": n, "entries": len(state), "bytes": byte_count,
                 "seconds": round(trio.current_time() - t0, 3), "served_by": served,
                 "faults": dict(self.faults)}
        self.status = {"state": "restored", **stats}
        log.info("snapshot fetched height=%d chunks=%d entries=%d bytes=%d", offer.height, n, len(state), byte_count)
        return Restored(block, commit, state, records, values, stats)
