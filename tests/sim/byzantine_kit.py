"""Byzantine peers for in-process cluster simulations (issue 9): a sync liar and a
proposal flooder, plus the measurements the scenarios assert on.

Used by ``tests/sim/test_byzantine.py`` (short, seeded, in the suite) and by
``scripts/byzantine.py`` (longer runs that print figures). Everything runs over the
MemoryNetwork under a mock clock: no sockets, no wall-clock waits.

The faults are injected at a node's network endpoint (Malachite's "middleware" idea):
the Byzantine node keeps running its honest engine, and only what it serves or
publishes on top of that is hostile.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import trio

from medchaind import core, crypto
from medchaind.consensus.wire import block_topic, consensus_topic, encode_consensus
from medchaind.sync.wire import SYNC_PROTOCOL, decode_sync_request, encode_announce, encode_blocks, encode_status
from medchaind.testing.cluster import Cluster, ClusterNode
from medchaind.types import Block, Commit, CommitSig, Header, Tx, sign_tx, tx_root
from medchaind.types.tx import MAX_BODY_BYTES

HUGE = 2**62
FAKE_HEAD = hashlib.sha256(b"a head that does not exist").digest()


def make_sync_liar(node: ClusterNode, *, mode: str, height: int = HUGE) -> None:
    """``node`` answers sync status with ``height`` and then serves no blocks:
    ``"empty"`` answers every blocks request with an empty list, ``"silent"`` never answers."""
    if mode not in ("empty", "silent"):
        raise ValueError(f"unknown liar mode {mode!r}")

    async def handler(peer: str, data: bytes) -> bytes:
        req = decode_sync_request(data)
        if req["op"] == "status":
            return encode_status(height, FAKE_HEAD)
        if mode == "empty":
            return encode_blocks([])
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    node.net.set_handler(SYNC_PROTOCOL, handler)


async def announce_lies(node: ClusterNode, *, height: int = HUGE, every_s: float = 0.5) -> None:
    """Publish block announcements for ``height`` (+ a counter, so gossip does not
    deduplicate them) on the block topic, forever."""
    i = 0
    while True:
        if node.running:
            await node.net.publish(block_topic(node.genesis.chain_id), encode_announce(height + i, FAKE_HEAD))
            i += 1
        await trio.sleep(every_s)


def silence_consensus(node: ClusterNode) -> None:
    """``node`` stops publishing its consensus messages (it stops voting, as seen by others)."""

    async def publish_nothing(*args: object) -> None:
        await trio.lowlevel.checkpoint()

    node.engine._publish = publish_nothing  # type: ignore[method-assign,assignment]


# ---------------------------------------------------------------- proposal flood


def junk_txs(chain: str, total_bytes: int) -> tuple[Tx, ...]:
    """Well-formed signed txs (not executable) of about ``total_bytes`` in all."""
    key = crypto.SigningKey(hashlib.sha256(b"junk sender").digest())
    pad = MAX_BODY_BYTES - 64
    return tuple(sign_tx(key, chain, "junk.pad", i, {"pad": bytes(pad)})
                 for i in range(max(1, total_bytes // pad)))


def junk_block(chain: str, height: int, proposer: bytes, txs: tuple[Tx, ...], salt: int) -> Block:
    """A block that decodes (shape, tx root, last_commit binding) but is invalid to
    execute; ``salt`` makes each one distinct (another hash, another cache entry)."""
    last_commit = None
    last_commit_hash = hashlib.sha256(b"").digest()
    prev = hashlib.sha256(b"prev %d" % height).digest()
    if height > 1:
        last_commit = Commit(height - 1, 0, prev, (CommitSig(proposer, bytes(64)),))
        last_commit_hash = last_commit.hash()
    z = hashlib.sha256(b"salt %d" % salt).digest()
    header = Header(chain, height, 0, 1_700_000_000_000 + salt, prev, tx_root(txs), z, z, z, proposer,
                    last_commit_hash)
    return Block(header, txs, last_commit, header.hash())


def flood_messages(c: Cluster, flooder: int, height: int, rounds: int, block_bytes: int) -> list[bytes]:
    """Signed proposals from authority ``flooder`` for rounds 0..rounds-1 of ``height``,
    each carrying its own ~``block_bytes`` block: most rounds are not its turn."""
    chain = c.genesis.chain_id
    key = c.keys[flooder].signing
    txs = junk_txs(chain, block_bytes)
    out = []
    for r in range(rounds):
        block = junk_block(chain, height, key.public_key, txs, salt=height * 1000 + r)
        p = core.Proposal(core.Height(height), core.Round(r), core.BlockHash(block.hash()), core.NIL_ROUND,
                          core.ValidatorId(key.public_key))
        out.append(encode_consensus(core.sign_proposal(key, chain, p), block))
    return out


async def publish_all(node: ClusterNode, messages: list[bytes]) -> None:
    topic = consensus_topic(node.genesis.chain_id)
    for m in messages:
        await node.net.publish(topic, m)


@dataclass
class Held:
    """What one honest engine holds of the flooder's proposals (works on any version of
    the engine: it only reads the parked messages, the block cache and the channel)."""

    parked_proposals: int = 0
    parked_bytes: int = 0
    cached_blocks: int = 0
    cached_bytes: int = 0
    queued: int = 0

    def peak(self, other: Held) -> Held:
        return Held(*(max(a, b) for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.parked_proposals, self.parked_bytes, self.cached_blocks, self.cached_bytes, self.queued)


def held_of(node: ClusterNode, flooder_key: bytes) -> Held:
    engine = node.engine
    parked = [m for m in engine._future if isinstance(m.message, core.Proposal) and m.message.proposer == flooder_key]
    cached = [b for b, _ in engine._blocks.values() if b.header.proposer == flooder_key and b.txs
              and b.txs[0].type == "junk.pad"]
    return Held(
        parked_proposals=len(parked),
        parked_bytes=sum(len(m.block.encode()) for m in parked if m.block is not None),
        cached_blocks=len(cached),
        cached_bytes=sum(len(b.encode()) for b in cached),
        queued=engine._recv.statistics().current_buffer_used,
    )


async def wait_until(cond: Callable[[], bool], *, timeout_s: float, step_s: float = 0.05) -> None:
    """Poll ``cond`` in virtual time (the mock clock jumps) until true, or TooSlowError.

    Polling on purpose: ``cond`` samples what the engines hold (the peak is the point),
    and nothing signals an event when a buffer changes."""
    with trio.fail_after(timeout_s):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(step_s)


def consensus_seen(node: ClusterNode) -> int:
    """Consensus messages that reached this node's validator (accepted or rejected)."""
    t = node.net.statistics().topics.get(consensus_topic(node.genesis.chain_id))
    return 0 if t is None else t.received + t.rejected_by_validator
