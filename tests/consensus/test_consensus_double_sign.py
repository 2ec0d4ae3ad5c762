"""One key, one running authority (issue 9): before it signs after a start, an authority
looks through recent commits for its own precommits that its WAL does not hold, and it
watches gossip and new commits for its key signing elsewhere; while it sees any, it
only follows the chain (CometBFT's ``double_sign_check_height``, signguard.py).

The cluster scenarios use the in-memory network under ``autojump_clock``; "A" is
authority 0 of four unless said otherwise.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import trio

from medchaind import core
from medchaind.consensus.signguard import DoubleSignGuard
from medchaind.consensus.wal import WAL
from medchaind.store import MemoryKV
from medchaind.testing.cluster import Cluster, ClusterNode

K = 10  # BftConfig's default double_sign_check_height


# ------------------------------------------------------------------ the guard alone


def test_a_foreign_signature_stops_signing_until_the_chain_is_k_heights_past_it() -> None:
    g = DoubleSignGuard(look_back=10, grace_s=2.0)
    assert g.may_sign(0.0, head=50)
    g.on_start(0.0, foreign=[47, 49], unexplained=[])
    assert not g.may_sign(100.0, head=50) and not g.may_sign(100.0, head=58)
    assert g.may_sign(0.0, head=59) and g.resume_height() == 59
    assert "47..49" in (g.reason or "")
    g.foreign(70, "seen again")  # a second process keeps signing: the window moves
    assert not g.may_sign(0.0, head=79) and g.may_sign(0.0, head=80)


def test_unexplained_signatures_hold_signing_for_the_grace_period_only() -> None:
    g = DoubleSignGuard(look_back=10, grace_s=2.0)
    g.on_start(5.0, foreign=[], unexplained=[49, 50])
    assert not g.may_sign(6.9, head=50) and g.hold_until() == 7.0
    assert g.may_sign(7.0, head=50)
    # ... unless the key shows up elsewhere during the hold
    g2 = DoubleSignGuard(look_back=10, grace_s=2.0)
    g2.on_start(5.0, foreign=[], unexplained=[50])
    g2.foreign(51, "a prevote signed with this key arrived from the network")
    assert not g2.may_sign(100.0, head=55) and g2.hold_until() is None


def test_classify_foreign_needs_the_wal_to_cover_the_height() -> None:
    g = DoubleSignGuard(look_back=10, grace_s=1.0)
    # the WAL holds our precommits of 41..45: 43 missing there is foreign; 48 is above
    assert g.classify([43, 48], wal_created=False, wal_precommits=[41, 42, 44, 45]) == ([43], [48])
    # a WAL that never existed knows no signature of ours: all foreign
    assert g.classify([43, 48], wal_created=True, wal_precommits=[]) == ([43, 48], [])
    # an old WAL with nothing retained (written before retention existed): all unexplained
    assert g.classify([43, 48], wal_created=False, wal_precommits=[]) == ([], [43, 48])


def test_look_back_zero_turns_every_check_off() -> None:
    g = DoubleSignGuard(look_back=0, grace_s=1.0)
    g.on_start(0.0, foreign=[5], unexplained=[6])
    assert not g.foreign(7, "x") and g.may_sign(0.0, head=7)


def test_the_wal_keeps_own_non_nil_precommits_of_the_window_when_pruned(tmp_path: Path) -> None:
    path = tmp_path / "consensus.wal"
    w = WAL(path)
    assert w.created
    me = b"\x01" * 32
    for h in range(1, 8):
        v = b"\x02" * 32
        for kind, value in ((core.VoteKind.PREVOTE, v), (core.VoteKind.PRECOMMIT, v), (core.VoteKind.PRECOMMIT, None)):
            w.append(h, core.Vote(kind, core.Height(h), core.Round(0), None if value is None else core.BlockHash(value),
                                  core.ValidatorId(me)))
        w.append_block(h, b"block %d" % h)
    w.prune(7, keep_precommits_from=4)
    assert w.precommit_heights() == [4, 5, 6, 7]
    assert w.knows_precommit(5, 0, b"\x02" * 32) and not w.knows_precommit(3, 0, b"\x02" * 32)
    assert len(w.entries(5)) == 1 and len(w.entries(7)) == 3 and w.blocks(6) == ()
    w.close()
    again = WAL(path)
    assert not again.created and again.precommit_heights() == [4, 5, 6, 7]
    again.close()


# ------------------------------------------------------------------ full nodes


class CountingSigner:
    """Wraps an engine's signer and counts what it is asked to sign (by height)."""

    def __init__(self, inner: core.Signer) -> None:
        self.inner = inner
        self.heights: list[int] = []

    @property
    def public_key(self) -> core.ValidatorId:
        return self.inner.public_key

    def sign_vote(self, vote: core.Vote) -> core.Vote:
        self.heights.append(vote.height)
        return self.inner.sign_vote(vote)

    def sign_proposal(self, proposal: core.Proposal) -> core.Proposal:
        self.heights.append(proposal.height)
        return self.inner.sign_proposal(proposal)


def count_signatures(node: ClusterNode) -> CountingSigner:
    assert node.engine.signer is not None
    counting = CountingSigner(node.engine.signer)
    node.engine.signer = counting  # type: ignore[assignment]
    return counting


def signed_at(node: ClusterNode, height: int) -> bool:
    """Whether ``node``'s key signed the stored commit of ``height`` (seen from node 1)."""
    assert node.keys is not None
    return any(s.validator == node.keys.public_key for s in node.ledger.store.get_commit(height).signatures)  # type: ignore[union-attr]


def last_height_signed_by(node: ClusterNode, key: bytes) -> int:
    """The highest stored height whose commit (or the next block's last_commit) has ``key``."""
    store, top = node.ledger.store, 0
    for h in range(1, node.height + 1):
        nxt = store.get_block(h + 1)
        commits = [store.get_commit(h), nxt.last_commit if nxt is not None else None]
        if any(cm is not None and any(s.validator == key for s in cm.signatures) for cm in commits):
            top = h
    return top


async def test_an_authority_whose_wal_was_lost_follows_and_signs_again_k_heights_later(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=31, create_empty_blocks=True)
    a = c.nodes[0]
    assert a.keys is not None
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(6)
        a.crash()
        await a.wait_stopped()
        a.wal_path.unlink()  # e.g. a datadir restored without consensus.wal
        a.restart_state()
        signed = count_signatures(a)
        await nursery.start(a.run)
        resume = last_height_signed_by(a, a.keys.public_key) + K
        with trio.fail_after(120):
            await c.wait_height(resume - 1)
        assert signed.heights == []  # it signed nothing at all...
        assert a.height >= resume - 1  # ... and kept following the chain
        status = a.engine.signing_status()
        assert status["validator"] and not status["signing"] and status["resume_height"] == resume
        assert "not in consensus.wal" in status["reason"]
        with trio.fail_after(120):
            await c.wait_height(resume + 4)
        assert a.engine.signing_status()["signing"]
        assert signed.heights and min(signed.heights) >= resume, "signs again once the window has passed"
        assert all(not n.engine.evidence for n in c.nodes)
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_a_restored_copy_beside_its_running_original_never_signs(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """The issue's scenario: a backup (WAL copied first, then the chain, as node/backup.py
    does) is started while the original keeps running with the same key."""
    c = Cluster(4, wal_dir=tmp_path, seed=32, create_empty_blocks=True)
    original = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(5)
        shutil.copy(original.wal_path, tmp_path / "copy.wal")
        with trio.fail_after(60):
            await c.wait_height(original.height + 2, [0])
        kv = MemoryKV()
        kv.write(list(original.kv.iterate(b"")))
        copy = ClusterNode("copy-of-n0", c.keys[0], c.genesis, c.hub, tmp_path / "copy.wal", original.config)
        copy.kv = kv
        copy.restart_state()
        start_head = copy.height
        signed = count_signatures(copy)
        await nursery.start(copy.run)
        with trio.fail_after(120):
            await c.wait_height(start_head + 8)
            await copy.ledger.wait_height(start_head + 8)
        assert signed.heights == []  # the copy never signed anything
        assert all(not n.engine.evidence for n in [*c.nodes, copy])  # no equivocation by the key
        assert any(signed_at(c.nodes[1], h) for h in range(start_head + 1, start_head + 8))  # the original did
        assert not copy.engine.signing_status()["signing"]
        assert "this key" in copy.engine.signing_status()["reason"]
        nursery.cancel_scope.cancel()


async def test_a_lone_authority_restored_from_a_backup_signs_after_watching_briefly(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """The legitimate restore (the original stopped for good): the copied chain holds a few
    precommits above what the copied WAL knows; nobody else is signing with the key, so
    after the grace period the authority signs, and a single-authority chain goes on."""
    c = Cluster(1, wal_dir=tmp_path, seed=33, create_empty_blocks=True)
    original = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(4)
        shutil.copy(original.wal_path, tmp_path / "copy.wal")
        with trio.fail_after(60):
            await c.wait_height(original.height + 2)
        kv = MemoryKV()
        kv.write(list(original.kv.iterate(b"")))
        original.crash()
        await original.wait_stopped()
        restored = ClusterNode("restored", c.keys[0], c.genesis, c.hub, tmp_path / "copy.wal", original.config)
        restored.kv = kv
        restored.restart_state()
        head = restored.height
        t0 = trio.current_time()
        await nursery.start(restored.run)
        assert not restored.engine.signing_status()["signing"]
        with trio.fail_after(60):
            await restored.ledger.wait_height(head + 3)
        held = trio.current_time() - t0
        grace = restored.engine.sign_guard.grace_s
        assert held >= grace and restored.engine.signing_status()["signing"]
        nursery.cancel_scope.cancel()


async def test_a_plain_restart_signs_at_once(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(4, wal_dir=tmp_path, seed=34, create_empty_blocks=True)
    a = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(K + 3)
        a.crash()
        await a.wait_stopped()
        await c.restart(0)
        assert a.engine.signing_status()["signing"]  # every recent precommit is in its WAL
        h = c.nodes[1].height
        with trio.fail_after(60):
            await c.wait_height(h + 4)
        assert any(signed_at(c.nodes[1], x) for x in range(h + 1, h + 5))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("look_back", [0])
async def test_double_sign_check_height_zero_turns_the_check_off(
        autojump_clock: trio.abc.Clock, tmp_path: Path, look_back: int) -> None:
    """The operator's way out when they know the WAL was lost and no other copy runs."""
    c = Cluster(4, wal_dir=tmp_path, seed=35, create_empty_blocks=True)
    a = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(6)
        a.crash()
        await a.wait_stopped()
        a.wal_path.unlink()
        a.config = dataclasses.replace(a.config, double_sign_check_height=look_back)
        await c.restart(0)
        assert a.engine.signing_status()["signing"]
        nursery.cancel_scope.cancel()


async def test_a_signing_authority_stops_mid_height_when_its_key_signs_elsewhere(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """A copy that skips the check (double_sign_check_height = 0) signs beside the
    original: the original sees messages signed with its key that its WAL lacks and
    stops signing at once, in the middle of a height, and keeps following the chain."""
    c = Cluster(4, wal_dir=tmp_path, seed=36, create_empty_blocks=True)
    original = c.nodes[0]
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(5)
        kv = MemoryKV()
        kv.write(list(original.kv.iterate(b"")))
        reckless = ClusterNode("reckless-copy", c.keys[0], c.genesis, c.hub, tmp_path / "reckless.wal",
                               dataclasses.replace(original.config, double_sign_check_height=0))
        reckless.kv = kv
        reckless.restart_state()
        await nursery.start(reckless.run)
        with trio.fail_after(60):
            while original.engine.signing_status()["signing"]:
                await original.ledger.wait_height(original.height + 1)
        assert "this key" in original.engine.signing_status()["reason"]
        signed = count_signatures(original)
        h = c.nodes[1].height
        with trio.fail_after(120):
            await c.wait_height(h + 5, [0, 1, 2, 3])
        assert signed.heights == []  # not one more signature from the original
        c.check_agreement()
        nursery.cancel_scope.cancel()


async def test_its_own_past_prevote_relayed_by_a_peer_does_not_stop_signing(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """A peer re-sends a proof of lock, or re-gossips, with this key's prevote of a height
    already decided: the WAL no longer holds that prevote (it keeps only non-nil
    precommits of past heights), which is no evidence of another signer. (Seen as a
    28 s stall in a 3/1 partition run before the fix.)"""
    c = Cluster(4, wal_dir=tmp_path, seed=37, create_empty_blocks=True)
    a = c.nodes[0]
    assert a.keys is not None
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        with trio.fail_after(60):
            await c.wait_height(5)
        past = a.engine.next_height - 3
        prevote = core.sign_vote(a.keys.signing, c.genesis.chain_id, core.Vote(
            core.VoteKind.PREVOTE, core.Height(past), core.Round(0), core.BlockHash(b"\x11" * 32),
            core.ValidatorId(a.keys.public_key)))
        a.engine._check_own_message(prevote)
        assert a.engine.signing_status()["signing"], a.engine.signing_status()
        with trio.fail_after(60):
            await c.wait_height(a.height + 2)
        assert a.engine.signing_status()["signing"]
        nursery.cancel_scope.cancel()
