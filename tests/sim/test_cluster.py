"""Service-level simulations: full nodes (mempool, BFT engine, sync, tx gossip, store)
over the MemoryNetwork under autojump_clock. Waits are on conditions with deadlines in
virtual time; nothing sleeps to synchronise."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import trio

from medchaind import crypto
from medchaind.testing.cluster import Cluster, ClusterNode
from medchaind.testing.wait import wait_for
from medchaind.types import Tx, sign_tx


def register_tx(chain: str) -> Tx:
    kp = crypto.KeyPair.generate()
    return sign_tx(kp.signing, chain, "identity.register", 0, {"role": "patient", "enc_key": kp.encryption.public_key})


async def commit_txs(c: Cluster, txs: list[Tx], nodes: list[int], *, via: list[int] | None = None,
                     deadline: float = 120) -> None:
    via = via or nodes
    for i, tx in enumerate(txs):
        c.nodes[via[i % len(via)]].submit(tx)
    with trio.fail_after(deadline):
        for i in nodes:
            await wait_committed(c.nodes[i], txs)


async def wait_block_by_block(node: ClusterNode, predicate: Callable[[], bool]) -> None:
    """Until ``predicate()`` holds, re-checked after each block ``node`` commits."""
    await wait_for(predicate, lambda: node.ledger.wait_height(node.height + 1))


async def wait_committed(node: ClusterNode, txs: list[Tx]) -> None:
    await wait_block_by_block(node, lambda: all(node.ledger.is_committed(t.hash) for t in txs))


def has_evidence(node: ClusterNode) -> bool:
    return bool(node.ledger.app.query(node.ledger.state, "governance.evidence", {}))


async def add_observer_as_authority(c: Cluster) -> None:
    """Authorities 0-2 vote node 4 (an observer) in as "v4"; push blocks until it counts
    (a change takes effect two heights after the block that decides it)."""
    chain = c.genesis.chain_id
    votes = [sign_tx(c.keys[i].signing, chain, "governance.add_authority", 0,
                     {"public_key": c.keys[4].public_key, "name": "v4", "power": 1}) for i in range(3)]
    await commit_txs(c, votes, [0, 1, 2, 3, 4])
    for _ in range(3):
        await commit_txs(c, [register_tx(chain)], [0, 1, 2, 3, 4])


@pytest.mark.parametrize("n", [4, 7, 10])
async def test_authorities_commit_and_agree(autojump_clock: trio.abc.Clock, tmp_path: Path, n: int) -> None:
    c = Cluster(n, wal_dir=tmp_path, seed=n)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        txs = [register_tx(c.genesis.chain_id) for _ in range(3 * n)]
        await commit_txs(c, txs, list(range(n)))
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_thirty_two_authorities(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(32, wal_dir=tmp_path, seed=32, latency_ms=(2, 10))
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id) for _ in range(10)], list(range(32)), deadline=300)
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_idle_network_makes_no_blocks(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=3)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        h = c.nodes[0].height
        await trio.sleep(60)  # a minute of virtual time with nothing to do
        assert [n.height for n in c.nodes] == [h] * 4
        # and one tx wakes it
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        assert c.nodes[0].height == h + 1
        nursery.cancel_scope.cancel()


async def test_empty_blocks_when_configured(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=4, create_empty_blocks=True)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(5)
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_one_crashed_of_four_keeps_committing_and_catches_up(autojump_clock: trio.abc.Clock,
                                                                   tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=5)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id) for _ in range(4)], [0, 1, 2, 3])
        c.nodes[3].crash()
        alive = [0, 1, 2]
        for _ in range(3):
            await commit_txs(c, [register_tx(c.genesis.chain_id) for _ in range(3)], alive)
        assert c.nodes[3].height < c.nodes[0].height
        await c.restart(3)
        with trio.fail_after(120):
            await c.nodes[3].ledger.wait_height(c.nodes[0].height)
        # and it takes part again: commit with node 3 submitting
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3], via=[3])
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_two_two_partition_halts_without_fork_then_resumes(autojump_clock: trio.abc.Clock,
                                                                 tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=6)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0, 1, 2, 3])
        h = c.nodes[0].height
        c.hub.partition({"n0", "n1"}, {"n2", "n3"})
        pending = [register_tx(c.genesis.chain_id) for _ in range(4)]
        c.nodes[0].submit(pending[0])
        c.nodes[2].submit(pending[1])
        await trio.sleep(120)  # two minutes of virtual time, rounds keep failing
        assert [n.height for n in c.nodes] == [h] * 4, "no side may commit without 2/3+"
        c.hub.heal()
        with trio.fail_after(300):
            for n in c.nodes:
                await wait_committed(n, pending[:2])
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_observer_follows_without_voting(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=7)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        txs = [register_tx(c.genesis.chain_id) for _ in range(5)]
        await commit_txs(c, txs, [0, 1, 2, 3, 4], via=[4])  # submitted at the observer, gossiped
        c.check_agreement()
        for h in range(1, c.nodes[4].height + 1):
            commit = c.nodes[4].ledger.store.get_commit(h)
            assert commit is not None
            assert c.keys[4].public_key not in {s.validator for s in commit.signatures}
        nursery.cancel_scope.cancel()


async def test_authority_added_by_governance_starts_voting(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=8)
    newcomer = c.keys[4].public_key
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        chain = c.genesis.chain_id
        await add_observer_as_authority(c)
        assert newcomer in c.nodes[0].ledger.tip.powers
        assert len(c.nodes[0].ledger.tip.powers) == 5
        # now a block needs 4 of 5; kill one original authority: the newcomer is needed
        c.nodes[3].crash()
        await commit_txs(c, [register_tx(chain)], [0, 1, 2, 4])
        top = c.nodes[0].height
        commit = c.nodes[0].ledger.store.get_commit(top)
        assert commit is not None and newcomer in {s.validator for s in commit.signatures}
        nursery.cancel_scope.cancel()


async def test_equivocation_is_captured_gossiped_and_committed(autojump_clock: trio.abc.Clock,
                                                                tmp_path: Path) -> None:
    """Authority 3 signs two different prevotes for one (height, round): the others turn
    the pair into a governance.evidence tx, which every node ends up committing."""
    from medchaind import core
    from medchaind.consensus.wire import consensus_topic, encode_consensus

    c = Cluster(4, wal_dir=tmp_path, seed=9)
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        chain = c.genesis.chain_id
        await commit_txs(c, [register_tx(chain)], [0, 1, 2, 3])
        c.nodes[3].crash()  # the byzantine node stops running honest code ...
        with trio.fail_after(60):
            await c.nodes[3].wait_stopped()
        # The others go on to the next height: every node committed the same last block,
        # and no virtual time passes before the conflicting votes are out, so no block can
        # commit in between (the evidence's height is checked below).
        h = c.nodes[0].height + 1
        c.nodes[0].submit(register_tx(chain))
        signer = core.Ed25519Signer(c.keys[3].signing, chain)
        a = signer.sign_vote(core.Vote(core.VoteKind.PREVOTE, core.Height(h), core.Round(0),
                                       core.BlockHash(b"\x01" * 32), core.ValidatorId(c.keys[3].public_key)))
        b = signer.sign_vote(core.Vote(core.VoteKind.PREVOTE, core.Height(h), core.Round(0),
                                       core.BlockHash(b"\x02" * 32), core.ValidatorId(c.keys[3].public_key)))
        # ... and publishes conflicting votes from its network endpoint (still up)
        ep = c.nodes[3].net
        async with trio.open_nursery() as n2:
            await n2.start(ep.run)
            await ep.publish(consensus_topic(chain), encode_consensus(a))
            await ep.publish(consensus_topic(chain), encode_consensus(b))
            with trio.fail_after(120):
                for node in c.nodes[:3]:
                    await wait_block_by_block(node, partial(has_evidence, node))
            n2.cancel_scope.cancel()
        for node in c.nodes[:3]:
            (ev,) = node.ledger.app.query(node.ledger.state, "governance.evidence", {})
            assert ev["validator"] == "0x" + c.keys[3].public_key.hex() and ev["height"] == h
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_single_authority_crash_after_locking_resumes_with_the_same_block(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """A lone authority that crashed after proposing and precommitting a block, before
    committing it, must re-propose that block after restart. The WAL keeps the block next
    to the messages naming it; without it the node halted ("cannot broadcast a proposal
    without its block", a round change forever)."""
    c = Cluster(1, wal_dir=tmp_path, seed=11)
    node = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        await commit_txs(c, [register_tx(c.genesis.chain_id)], [0])
        h = node.height

        real_commit = node.ledger.commit
        crashed = trio.Event()

        async def crash_instead(*args: object, **kw: object) -> None:
            node.crash()  # the process dies between its precommit and the block's commit
            crashed.set()
            await trio.sleep_forever()

        node.ledger.commit = crash_instead  # type: ignore[method-assign]
        pending = register_tx(c.genesis.chain_id)
        node.submit(pending)
        with trio.fail_after(60):
            await crashed.wait()
        signed = [m for m in node.wal.entries(h + 1)]
        assert signed and len(node.wal.blocks(h + 1)) == 1  # its block sits in the WAL with its votes
        proposed = next(m.block_hash for m in signed if hasattr(m, "proposer"))
        assert node.height == h and real_commit is not None

        await c.restart(0)  # a fresh engine and mempool: the tx is only in the WAL's block
        with trio.fail_after(120):
            await c.nodes[0].ledger.wait_height(h + 1)
        block = c.nodes[0].ledger.store.get_block(h + 1)
        assert block is not None and block.hash() == bytes(proposed)
        assert c.nodes[0].ledger.is_committed(pending.hash)
        nursery.cancel_scope.cancel()


async def test_export_import_follows_authority_changes(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """An export of a chain whose authority set changed re-imports block by block, each
    commit checked against the set of its own height; a commit signed by the old set
    for a height the new set decides is rejected."""
    import io

    from medchaind.ledger import Ledger
    from medchaind.modules import make_app
    from medchaind.node.chainfile import ChainFileError, import_records, read_header, read_records, write_chain
    from medchaind.store import ChainStore, MemoryKV
    from medchaind.types.block import Commit, decode_block

    c = Cluster(4, observers=1, wal_dir=tmp_path, seed=12)
    newcomer = c.keys[4].public_key
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        chain = c.genesis.chain_id
        await add_observer_as_authority(c)
        c.nodes[3].crash()  # from here a block needs the newcomer's precommit
        await commit_txs(c, [register_tx(chain)], [0, 1, 2, 4])
        nursery.cancel_scope.cancel()

    src = c.nodes[0].ledger
    top = src.height
    buf = io.BytesIO()
    write_chain(src.store, c.genesis, buf, 1, top)

    def fresh() -> Ledger:
        return Ledger(ChainStore(MemoryKV()), make_app(c.genesis), c.genesis, commit_in_thread=False)

    copy = fresh()
    records = read_records(io.BytesIO(buf.getvalue()))
    read_header(records, c.genesis, "export")
    assert await import_records(copy, records) == top
    assert copy.tip.block_hash == src.tip.block_hash and len(copy.tip.powers) == 5

    # forge the last commit: keep only the signatures of the four original authorities
    last_block = src.store.get_block(top)
    last_commit = src.store.get_commit(top)
    assert last_block is not None and last_commit is not None
    old_only = Commit(last_commit.height, last_commit.round, last_commit.block_hash,
                      tuple(s for s in last_commit.signatures if s.validator != newcomer))
    recs = list(read_records(io.BytesIO(buf.getvalue())))[1:]
    recs[-1] = {"h": top, "b": last_block.encode(), "c": old_only.encode()}
    victim = fresh()
    with pytest.raises(ChainFileError, match=f"block {top} rejected"):
        await import_records(victim, iter(recs))
    assert victim.height == top - 1 and decode_block(recs[-2]["b"]).hash() == victim.tip.block_hash
