"""The bounded re-check after a block (``Mempool.update`` with the block's write-set) gives
the same result as the full walk it replaced: the same pool and the same dropped txs with
the same codes after every block.

:class:`ReferenceMempool` keeps the pre-change ``update`` verbatim (786226d): every pending
sender's committed nonce read, every sender's next tx re-checked, the whole pool walked
for ``nonce_gap_expired``. A hypothesis state machine drives it and the real pool through
the same random admissions and blocks over one chain, and compares them after each step.
The txs cover the cases the bounded re-check must not miss:

* a verdict that another sender's write changes: two senders anchoring the same digest
  (``already_anchored``), governance votes (the tally, ``already_accredited``), an
  identity update after governance revoked its sender (``revoked``), a consent grant
  (its check iterates the patient's grants: a prefix read);
* a registration queued behind another (``already_registered``) and txs that need an
  identity queued behind it (``registration_pending``);
* nonce gaps, txs a foreign block makes stale (``nonce_used``) and expiries, with an
  injected clock (``gap_ttl_s`` = 10 s);
* a tx whose verdict depends on the block (``probe.deadline``, a test module's type
  keeping the default ``verdict_reads_block=True``: it fails past a height).

Named keys as in mempool_kit: P, Q, R patients, X, Y providers (pending accreditation),
authorities A, B, C, D, unknown Z and W.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Annotated, Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from mempool_kit import CHAIN_ID, GENESIS_TIME_MS, FakeClock, enc, genesis_chain, key, pub

from medchaind import crypto
from medchaind.app import App, BlockInfo, Module, TxContext, TxFailed, TxSpec
from medchaind.app.schema import Int, body
from medchaind.app.state import StateKey
from medchaind.chain import SigCache
from medchaind.errors import TxRejected
from medchaind.mempool import Mempool, MempoolConfig
from medchaind.modules import load_modules
from medchaind.types import Authority, Genesis, Tx, sign_tx

GAP_TTL_S = 10.0
AUTHORITIES = "ABCD"
SENDERS = ["P", "P", "Q", "Q", "R", "X", "Y", "Z", "W", "A", "B", "C", "D"]
DIGESTS = [hashlib.sha256(b"digest %d" % i).digest() for i in range(3)]
KINDS = ["update", "register", "anchor", "accredit", "revoke", "grant", "ungrant", "deadline"]


@body
class Deadline:
    until: Annotated[int, Int(0, 1 << 40)]


def _deadline(ctx: TxContext, b: Deadline) -> None:
    if ctx.block.height > b.until:
        raise TxFailed("too_late", f"height {ctx.block.height} is past {b.until}")
    ctx.put(b"d/" + ctx.sender, {"height": ctx.block.height})


class ProbeModule(Module):
    """A test module with a block-dependent verdict (the flag left at its default)."""

    name = "probe"

    def __init__(self) -> None:
        super().__init__()
        self.txs = {"deadline": TxSpec(Deadline, _deadline)}


class ReferenceMempool(Mempool):
    """The mempool with the pre-change ``update`` (786226d), kept verbatim as the reference."""

    def update(self, committed: Iterable[Tx], writes: Iterable[StateKey] | None = None) -> None:
        for tx in committed:
            if tx.hash in self._txs:
                self._remove(tx.hash)
        state = self._state()
        stale: list[tuple[bytes, str]] = []
        now = self._clock()
        block = self._block_info() if self._block_info else None
        for sender, per in self._by_sender.items():
            committed_nonce = self.app.nonce(state, sender)
            for nonce, h in per.items():
                if nonce < committed_nonce:
                    stale.append((h, "nonce_used"))
                    continue
                if nonce != committed_nonce:
                    if nonce > committed_nonce and now - self._arrived.get(h, now) > self.config.gap_ttl_s:
                        stale.append((h, "nonce_gap_expired"))
                    continue
                tx = self._txs[h]
                try:
                    self.app.check_tx(state, tx, expected_nonce=committed_nonce,
                                      committed_nonce=committed_nonce,
                                      registration_pending=self._registration_pending(tx), block=block)
                except TxRejected as exc:
                    stale.append((h, exc.code))
        for h, code in stale:
            self._drop(h, code)
        self._dropped += len(stale)


def new_app(genesis: Genesis) -> App:
    return App(genesis, [*load_modules(), ProbeModule()])


class Chain:
    """One chain (DictState) and two pools over it: the real one and the reference."""

    def __init__(self, config: MempoolConfig) -> None:
        self.genesis = Genesis(CHAIN_ID, GENESIS_TIME_MS, tuple(Authority(n, pub(n), 1) for n in AUTHORITIES))
        self.app = new_app(self.genesis)
        self.state, self.app_hash = genesis_chain(self.app)
        self.height = 0
        self.time_ms = GENESIS_TIME_MS
        self.committed: set[bytes] = set()
        #: ids of the consent grants committed so far
        self.grants: list[bytes] = []
        self.clock = FakeClock()
        self.dropped: dict[str, list[tuple[bytes, str]]] = {"new": [], "ref": []}
        self.new = self._pool(Mempool, "new", config)
        self.ref = self._pool(ReferenceMempool, "ref", config)
        prelude = [self.tx(n, "identity.register", {"role": "patient", "enc_key": enc(n)}, 0) for n in "PQR"]
        prelude += [self.tx(n, "identity.register", {"role": "provider", "enc_key": enc(n)}, 0) for n in "XY"]
        ex = self.commit(prelude)
        assert all(r.ok for r in ex.receipts)

    def _pool(self, cls: type[Mempool], name: str, config: MempoolConfig) -> Mempool:
        return cls(new_app(self.genesis), lambda: self.state, SigCache(), lambda h: h in self.committed,
                   config, clock=self.clock, block_info=self.next_block,
                   on_dropped=lambda tx, code: self.dropped[name].append((tx.hash, code)))

    def next_block(self) -> BlockInfo:
        return BlockInfo(CHAIN_ID, self.height + 1, self.time_ms + 1000, b"")

    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def tx(self, name: str, type_: str, body_: dict[str, Any], nonce: int) -> Tx:
        return sign_tx(key(name), CHAIN_ID, type_, nonce, body_)

    def commit(self, txs: list[Tx]) -> Any:
        self.height += 1
        self.time_ms += 1000
        ex = self.app.execute(self.state, BlockInfo(CHAIN_ID, self.height, self.time_ms, pub("A")), txs,
                              self.app_hash)
        self.state.apply(ex.writes)
        self.app_hash = ex.app_hash
        self.committed.update(t.hash for t in txs)
        self.grants += [crypto.sha256(t.hash) for t, r in zip(txs, ex.receipts, strict=True)
                        if t.type == "consent.grant" and r.ok]
        return ex


def make_tx(chain: Chain, kind: str, sender: str, nonce: int, pick: int) -> Tx:
    """A tx of ``kind``; ``pick`` (0..5) chooses among a few variants of its body
    (``ungrant``: a consent revocation of a committed grant, or of an unknown one)."""
    if kind == "update":
        return chain.tx(sender, "identity.update", {"enc_key": enc(f"{sender}{pick % 3}")}, nonce)
    if kind == "register":
        role = "patient" if pick % 2 else "provider"
        return chain.tx(sender, "identity.register", {"role": role, "enc_key": enc(f"r{pick}")}, nonce)
    if kind == "anchor":
        return chain.tx(sender, "anchor.commit", {"digest": DIGESTS[pick % 3], "kind": "audit-head"}, nonce)
    if kind == "accredit":
        subject = "XYZ"[pick % 3]
        role = "patient" if pick == 5 else "provider"
        return chain.tx(sender, "governance.accredit", {"subject": pub(subject), "role": role}, nonce)
    if kind == "revoke":
        return chain.tx(sender, "governance.revoke", {"subject": pub("XY"[pick % 2]), "reason": "audit"}, nonce)
    if kind == "grant":
        return chain.tx(sender, "consent.grant", {"actions": ["read"], "decision": "permit",
                                                  "actor": pub("QXP"[pick % 3])}, nonce)
    if kind == "ungrant":
        grant_id = chain.grants[pick % len(chain.grants)] if chain.grants and pick else DIGESTS[0]
        return chain.tx(sender, "consent.revoke", {"grant_id": grant_id}, nonce)
    assert kind == "deadline"
    return chain.tx(sender, "probe.deadline", {"until": max(0, chain.height + pick - 2)}, nonce)


def outcome(pool: Mempool, tx: Tx) -> str:
    try:
        return "admitted" if pool.add(tx) else "pending"
    except TxRejected as exc:
        return exc.code


tx_args = st.tuples(st.sampled_from(KINDS), st.sampled_from(SENDERS), st.sampled_from([0, 0, 0, 1, 2, -1]),
                    st.integers(0, 5))
#: txs from elsewhere: mostly the kinds that invalidate another sender's pending tx
foreign_args = st.tuples(st.sampled_from(["anchor", "anchor", "accredit", "revoke", "register", "update"]),
                         st.sampled_from(SENDERS), st.sampled_from([0, 0, 0, -1]), st.integers(0, 5))


def voter(kind: str, sender: str, pick: int) -> str:
    """Votes come mostly from authorities (one in six from whoever was drawn)."""
    return AUTHORITIES[pick % 4] if kind in ("accredit", "revoke") and pick != 5 else sender


class RecheckEquivalence(RuleBasedStateMachine):
    # 0: the read-set index is on from the first block; 2 and 4: it turns on and off
    # as the number of pending senders crosses the bound (recheck_index_above)
    @initialize(max_per_sender=st.sampled_from([3, 6]), index_above=st.sampled_from([0, 0, 2, 4]))
    def start(self, max_per_sender: int, index_above: int) -> None:
        self.c = Chain(MempoolConfig(gap_ttl_s=GAP_TTL_S, max_per_sender=max_per_sender, max_nonce_ahead=4,
                                     recheck_index_above=index_above))
        self.foreign = 0

    @rule(args=tx_args, wait=st.sampled_from([0.0, 0.0, 1.0, 4.0]))
    def add(self, args: tuple[str, str, int, int], wait: float) -> None:
        c = self.c
        kind, sender, ahead, pick = args
        c.clock.now += wait
        sender = voter(kind, sender, pick)
        tx = make_tx(c, kind, sender, max(0, c.nonce(sender) + ahead), pick)
        got = outcome(c.new, tx)
        assert got == outcome(c.ref, tx), (kind, sender, got)
        event(f"add {kind}: {got}")

    @rule(take=st.sampled_from([0, 0, 1, 2, 3, 6]),
          foreign=st.lists(foreign_args, min_size=1, max_size=3) | st.just([]),
          wait=st.sampled_from([0.0, 1.0, 6.0, 11.0]))
    def commit_block(self, take: int, foreign: list[tuple[str, str, int, int]], wait: float) -> None:
        """A block: a prefix of what this pool proposes, plus txs from elsewhere (a
        foreign tx takes the sender's next nonce in the block, or a nearby one and fails
        ``bad_nonce``), then time passes and both pools update."""
        c = self.c
        reaped = c.new.reap(take, 1 << 30)
        assert [t.hash for t in reaped] == [t.hash for t in c.ref.reap(take, 1 << 30)]
        block = list(reaped)
        used: dict[bytes, int] = {}
        for t in block:
            used[t.sender] = used.get(t.sender, 0) + 1
        for kind, sender, ahead, pick in foreign:
            self.foreign += 1
            sender = voter(kind, sender, pick)
            nonce = max(0, c.nonce(sender) + used.get(pub(sender), 0) + min(ahead, 0))
            used[pub(sender)] = used.get(pub(sender), 0) + 1
            block.append(make_tx(c, kind, sender, nonce, pick))
        self._commit_and_compare(block, wait)

    @rule(index=st.integers(0, 63), wait=st.sampled_from([0.0, 1.0, 11.0]))
    def rival_block(self, index: int, wait: float) -> None:
        """A block from elsewhere written to invalidate one pending next tx through
        *other* senders' writes: the same digest anchored by another sender, the same
        vote cast by the other authorities, the sender's accreditation granted and
        revoked (its identity.update then fails ``revoked``)."""
        c = self.c
        nexts = [t for t in c.new._txs.values() if t.nonce == App.nonce(c.state, t.sender)]
        if not nexts:
            return
        tx = nexts[index % len(nexts)]
        used: dict[str, int] = {}

        def from_(name: str, type_: str, body_: dict[str, Any]) -> Tx:
            nonce = c.nonce(name) + used.get(name, 0)
            used[name] = used.get(name, 0) + 1
            return c.tx(name, type_, body_, nonce)

        others = [n for n in AUTHORITIES if pub(n) != tx.sender]
        block: list[Tx] = []
        if tx.type == "anchor.commit":
            rival = next(n for n in "PQR" if pub(n) != tx.sender)
            block = [from_(rival, "anchor.commit", {"digest": tx.body["digest"], "kind": "rival"})]
        elif tx.type in ("governance.accredit", "governance.revoke"):
            block = [from_(n, tx.type, dict(tx.body)) for n in others[:3]]
        elif tx.type == "identity.update":
            subject = {"subject": tx.sender, "role": "provider"}
            block = [from_(n, "governance.accredit", subject) for n in others[:3]]
            block += [from_(n, "governance.revoke", {"subject": tx.sender, "reason": "rival"}) for n in others[:3]]
        event(f"rival block for {tx.type}")
        self._commit_and_compare(block, wait)

    def _commit_and_compare(self, block: list[Tx], wait: float) -> None:
        c = self.c
        block = list({t.hash: t for t in block if t.hash not in c.committed}.values())
        ex = c.commit(block)
        c.clock.now += wait
        c.dropped["new"].clear()
        c.dropped["ref"].clear()
        c.new.update(block, ex.writes)
        c.ref.update(block)
        assert sorted(c.dropped["new"]) == sorted(c.dropped["ref"])
        event(f"block of {min(len(block), 3)}+ txs")
        for _, code in c.dropped["new"]:
            event(f"dropped: {code}")

    @invariant()
    def same_pool_and_same_records(self) -> None:
        new, ref = self.c.new, self.c.ref
        assert list(new._txs) == list(ref._txs)
        assert {s: dict(per) for s, per in new._by_sender.items()} == {
            s: dict(per) for s, per in ref._by_sender.items()}
        assert dict(new._gone) == dict(ref._gone)
        assert new.statistics() == ref.statistics()
        assert new.reap(1000, 1 << 30) == ref.reap(1000, 1 << 30)

    @invariant()
    def every_next_tx_and_only_those_have_a_read_set(self) -> None:
        c, pool = self.c, self.c.new
        nexts = {h for s, per in pool._by_sender.items()
                 for n, h in per.items() if n == App.nonce(c.state, s)}
        if pool._indexing:
            assert set(pool._reads) | set(pool._always) == nexts
            assert not set(pool._reads) & set(pool._always)
        else:  # below recheck_index_above: nothing recorded, every next tx re-checked
            assert not pool._reads and not pool._always and not pool._key_readers
        event(f"indexing: {pool._indexing}")
        # the expiry queue: pending txs in arrival order; those it let go are next and expired
        assert set(pool._expiry) <= set(pool._txs)
        assert list(pool._expiry) == [h for h in pool._txs if h in pool._expiry]
        for h in set(pool._txs) - set(pool._expiry):
            assert h in nexts and c.clock.now - pool._arrived[h] > GAP_TTL_S


RecheckEquivalence.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_bounded_recheck_matches_the_full_walk = RecheckEquivalence.TestCase


def test_a_block_touching_one_sender_rechecks_only_what_it_wrote_and_the_block_dependent() -> None:
    """200 pending registrations (their verdict ignores the block) and one block-dependent
    tx; a block that registers one other key re-checks two txs: the block-dependent one
    and nothing else (the old walk re-checked all 201)."""
    c = Chain(MempoolConfig(gap_ttl_s=GAP_TTL_S, recheck_index_above=0))
    regs = [sign_tx(key(f"k{i}"), CHAIN_ID, "identity.register", 0,
                    {"role": "patient", "enc_key": enc(f"k{i}")}) for i in range(200)]
    for t in regs:
        assert c.new.add(t)
    probe = make_tx(c, "deadline", "P", c.nonce("P"), 5)
    assert c.new.add(probe)
    checked: list[bytes] = []
    real = c.new.app.check_tx

    def counting(state: Any, tx: Tx, **kw: Any) -> None:
        checked.append(tx.hash)
        real(state, tx, **kw)

    c.new.app.check_tx = counting  # type: ignore[method-assign]
    other = sign_tx(key("other"), CHAIN_ID, "identity.register", 0, {"role": "patient", "enc_key": enc("o")})
    ex = c.commit([regs[0], other])
    c.new.update([regs[0], other], ex.writes)
    assert checked == [probe.hash]
    assert len(c.new) == 200 and regs[0].hash not in c.new


def test_a_write_by_another_sender_drops_the_tx_it_invalidates() -> None:
    """P's pending anchor of a digest is dropped ``already_anchored`` once a block
    carries Q's anchor of it: only P's tx read that key."""
    c = Chain(MempoolConfig(gap_ttl_s=GAP_TTL_S, recheck_index_above=0))
    mine, theirs = make_tx(c, "anchor", "P", c.nonce("P"), 0), make_tx(c, "anchor", "Q", c.nonce("Q"), 0)
    untouched = make_tx(c, "anchor", "R", c.nonce("R"), 1)
    assert c.new.add(mine) and c.new.add(untouched)
    ex = c.commit([theirs])
    assert ex.receipts[0].ok
    c.new.update([theirs], ex.writes)
    assert c.dropped["new"] == [(mine.hash, "already_anchored")]
    assert list(c.new._txs) == [untouched.hash]


def test_the_gap_sweep_walks_only_the_expired_front() -> None:
    """Txs behind a nonce gap expire after gap_ttl_s; the sweep stops at the first young
    tx, and a next tx it passes (older than the TTL, waiting for room in a block) leaves
    the queue for good."""
    c = Chain(MempoolConfig(gap_ttl_s=GAP_TTL_S, recheck_index_above=0))
    old_next = make_tx(c, "update", "P", c.nonce("P"), 0)
    gapped = make_tx(c, "update", "Q", c.nonce("Q") + 2, 0)
    assert c.new.add(old_next) and c.new.add(gapped)
    c.clock.now += GAP_TTL_S + 1
    young = make_tx(c, "update", "R", c.nonce("R") + 1, 0)
    assert c.new.add(young)
    ex = c.commit([])
    c.new.update([], ex.writes)
    assert c.dropped["new"] == [(gapped.hash, "nonce_gap_expired")]
    assert list(c.new._expiry) == [young.hash]  # old_next settled, young not yet expired
    assert list(c.new._txs) == [old_next.hash, young.hash]
