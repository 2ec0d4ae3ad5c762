"""Older versions of the state: kept, pruned, read and proven (docs/protocol.md §23.8).

A ledger with retention keeps the state trie of every height from its horizon to its
head and of its kept snapshots (trie records and leaf values); pruning drops exactly
what no kept version holds (a record that leaves and re-enters the trie, as a key added
and deleted again restores its parent's record, is covered at the store:
tests/store/test_chain_store.py and tests/store/test_trie_retention.py). Queries with
``"height"`` answer on the older state with a proof that verifies against that header;
``tx_nonce`` proves a sender's nonce (membership and absence).
"""

from __future__ import annotations

from typing import Any

import pytest
from state_kit import hexs
from test_state_store import GENESIS, commit, register, stored_state, stored_trie

from medchaind.app import trie
from medchaind.app.proofs import Witness, verify_key
from medchaind.errors import ProofError
from medchaind.flows import Call, LightVerifier, verified_nonce_flow
from medchaind.ipc import RPCError
from medchaind.ledger import Ledger, Retention
from medchaind.modules import make_app
from medchaind.node.queries import ModuleQueries, query_methods
from medchaind.store import ChainStore, MemoryKV, schema
from medchaind.store.chain_store import split_trie_entry
from medchaind.testing.appkit import enc_key, key, pub
from medchaind.testing.layouts import to_older_layout
from medchaind.types import sign_tx


def update(name: str, nonce: int, enc: str) -> Any:
    return sign_tx(key(name), GENESIS.chain_id, "identity.update", nonce, {"enc_key": enc_key(enc)})


def plan() -> list[list[Any]]:
    """Blocks whose state goes back and forth (records leave and come back)."""
    return [
        [register("P"), register("Q")],
        [update("P", 1, "x")],
        [update("P", 2, "P")],           # P's key as in block 1 again (not its leaf: changed_at moved)
        [],
        [register("R")],
        [update("R", 1, "y"), update("Q", 1, "z")],
        [update("R", 2, "R"), update("Q", 2, "Q")],
        [update("P", 3, "x")],
    ]


async def grow(ledger: Ledger, states: dict[int, dict[bytes, bytes]], blocks: list[list[Any]] | None = None) -> None:
    """Commit ``blocks`` (default: the whole :func:`plan`), noting each height's state."""
    states.setdefault(0, stored_state(ledger.store))
    for txs in plan() if blocks is None else blocks:
        await commit(ledger, txs)
        states[ledger.height] = stored_state(ledger.store)


@pytest.mark.parametrize("recent", [1, 2, 20])
@pytest.mark.parametrize("converted_at", [2, 3])
async def test_a_store_in_the_older_layout_reads_and_prunes_as_before(recent: int, converted_at: int) -> None:
    """A datadir written before receipts and births were folded into other entries needs
    no migration: converted to the older layout after block 2 or 3 and then run on, it
    answers every tx and receipt as a store that never changed layout, and pruning keeps
    exactly the retained versions, dropping the older births with their records. (A
    record that leaves and comes back: tests/store/test_chain_store.py.)"""
    kv = MemoryKV()
    ledger = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=recent))
    states: dict[int, dict[bytes, bytes]] = {}
    await grow(ledger, states, plan()[:converted_at])
    assert all(split_trie_entry(v)[1] is not None for _, v in kv.iterate(schema.TRIE_PREFIX))
    to_older_layout(kv)
    assert all(split_trie_entry(v)[1] is None for _, v in kv.iterate(schema.TRIE_PREFIX))
    ledger = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=recent))
    await grow(ledger, states, plan()[converted_at:])
    same = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False,
                  retention=Retention(recent=recent))
    await grow(same, {})
    head = ledger.height
    assert head == same.height and ledger.tip.app_hash == same.tip.app_hash
    for h in range(1, head + 1):
        block = ledger.store.get_block(h)
        assert block is not None
        for i, tx in enumerate(block.txs):
            assert ledger.store.get_tx_location(tx.hash) == same.store.get_tx_location(tx.hash) == (h, i)
            assert ledger.store.has_tx(tx.hash)
            got = ledger.store.get_receipt(tx.hash)
            assert got is not None and got == same.store.get_receipt(tx.hash)
    kept: dict[bytes, bytes] = {}
    for h in range(ledger.oldest_version(), head + 1):
        built = trie.build(states[h])
        assert ledger.root_at(h) == built.root
        kept.update(built.puts)
    assert stored_trie(ledger.store) == kept == stored_trie(same.store)
    assert ledger.store.trie_node(ledger.tip.app_hash) == kept[ledger.tip.app_hash]
    # the births of pruned bare records went with them (no record of this plan is pruned
    # after coming back on the new layout, which would leave its older birth behind)
    born = {k[len(schema.TRIE_BORN_PREFIX):] for k, _ in kv.iterate(schema.TRIE_BORN_PREFIX)}
    assert born <= kept.keys()


@pytest.mark.parametrize("recent", [0, 1, 2, 3, 20])
async def test_the_store_keeps_exactly_the_versions_from_the_horizon(recent: int) -> None:
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=recent))
    states: dict[int, dict[bytes, bytes]] = {}
    await grow(ledger, states)
    head = ledger.height
    oldest = ledger.oldest_version()
    assert oldest == max(0, head - recent)
    kept: dict[bytes, bytes] = {}
    for h in range(oldest, head + 1):
        built = trie.build(states[h])
        root = ledger.root_at(h)
        assert root == built.root
        kept.update(built.puts)
        # every entry of that version reads back through the kept records and values
        reader = ledger.version_reader(root)
        got = {m.encode() + b"/" + k: v for m in ("auth", "identity", "governance")
               for k, v in reader.iterate(m)}
        assert got == states[h]
    # nothing older than the horizon is left, nothing needed is gone
    assert stored_trie(ledger.store) == kept
    values = {k[len(schema.TRIE_VALUE_PREFIX):] for k, _ in ledger.store.kv.iterate(schema.TRIE_VALUE_PREFIX)}
    assert values == {h for h, r in kept.items() if r[0] == 0}
    if oldest > 0:
        assert ledger.root_at(oldest - 1) is None


async def test_the_recent_window_and_the_snapshots_are_kept_not_the_heights_between() -> None:
    r = Retention(recent=2, snapshot_interval=3, snapshot_keep=2)
    assert r.snapshot_heights(8) == [6, 3]
    assert r.horizon(8) == 6
    assert [h for h in range(10) if r.keeps(h, 8)] == [3, 6, 7, 8]
    assert r.snapshot_releases(8) == {6: 10, 3: 7}  # dropped when the head reaches 12 and 9
    assert r.snapshot_heights(2) == []
    assert r.horizon(2) == 0
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False, retention=r)
    states: dict[int, dict[bytes, bytes]] = {}
    await grow(ledger, states)
    assert ledger.height == 8
    assert ledger.snapshot_heights() == [6, 3]
    assert ledger.oldest_version() == 6 and ledger.kept_snapshots() == [3]
    kept: dict[bytes, bytes] = {}
    for h in range(9):
        root = ledger.root_at(h)
        if not r.keeps(h, 8):
            assert root is None
            continue
        built = trie.build(states[h])
        assert root == built.root
        kept.update(built.puts)
        reader = ledger.version_reader(root)
        assert {m.encode() + b"/" + k: v for m in ("auth", "identity", "governance")
                for k, v in reader.iterate(m)} == states[h]
    # the records of heights 4 and 5 that neither 3 nor 6..8 holds are gone (pinned
    # extras aside: records that came back, see tests/store/test_trie_retention.py)
    pinned = {k[len(schema.TRIE_PIN_PREFIX):] for k, _ in ledger.store.kv.iterate(schema.TRIE_PIN_PREFIX)}
    have = set(stored_trie(ledger.store))
    assert set(kept) <= have <= set(kept) | pinned
    between = {h for v in (4, 5) for h in trie.build(states[v]).puts} - set(kept) - pinned
    assert between and not between & have
    with pytest.raises(RPCError, match=r"heights 6\.\.8 and the snapshot height 3"):
        _queries(ledger).version(4)


async def test_switching_retention_off_drops_what_it_kept() -> None:
    kv = MemoryKV()
    ledger = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=50))
    states: dict[int, dict[bytes, bytes]] = {}
    await grow(ledger, states)
    again = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    assert stored_trie(again.store) == trie.build(states[again.height]).puts
    assert not again.store.has_stale_trie()


def _queries(ledger: Ledger) -> ModuleQueries:
    return ModuleQueries(ledger.app, ledger.state, lambda: ledger.tip, lambda h: None, versions=ledger)


async def test_a_query_at_an_older_height_answers_that_state_with_a_proof() -> None:
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=6))
    await grow(ledger, {})
    q = _queries(ledger)
    spec = {m.name: m.spec for m in query_methods(ledger.app)}["identity_get"]
    for h, enc in ((2, "x"), (3, "P"), (8, "x")):
        out = q.run(spec, {"public_key": hexs(pub("P")), "prove": True, "height": h})
        assert out["result"]["enc_key"] == hexs(enc_key(enc))
        header = ledger.store.get_block(h).header
        assert out["proof"]["height"] == h and out["proof"]["app_hash"] == hexs(header.app_hash)
        assert out["proof"]["validators"] == [[hexs(k), p] for k, p in sorted(GENESIS.powers().items())]
        # without a proof: the plain answer of that height
        assert q.run(spec, {"public_key": hexs(pub("P")), "height": h})["enc_key"] == hexs(enc_key(enc))
    with pytest.raises(RPCError, match="does not keep the state of height 1"):
        q.run(spec, {"public_key": hexs(pub("P")), "prove": True, "height": 1})
    with pytest.raises(RPCError, match="above the head"):
        q.run(spec, {"public_key": hexs(pub("P")), "height": 99})
    with pytest.raises(RPCError, match="height must be"):
        q.run(spec, {"public_key": hexs(pub("P")), "height": "3"})


class _NonceNode:
    """Answers tx_nonce (through the ChainAPI handler) and chain_getBlock; ``lie`` edits."""

    def __init__(self, ledger: Ledger, lie: Any = None) -> None:
        from medchaind.node.rpc import ChainAPI

        class Sub:
            def next_nonce(self, sender: bytes) -> tuple[int, int]:
                n = ledger.app.nonce(ledger.state, sender)
                return n, n

        self.ledger = ledger
        self.api = ChainAPI(ledger, None, None, Sub(), prove_key=_queries(ledger).prove_key)  # type: ignore[arg-type]
        self.lie = lie

    async def drive(self, flow: Any) -> Any:
        from medchaind.node.rpc import block_json

        result: Any = None
        try:
            call: Call = next(flow)
            while True:
                if call.method == "tx_nonce":
                    result = await self.api.tx_nonce(call.params, None)
                    if self.lie is not None:
                        result = self.lie(result)
                else:
                    h = call.params["height"]
                    doc = block_json(self.ledger.store.get_block(h), full=False)
                    c = self.ledger.store.get_commit(h)
                    doc["commit"] = {"height": c.height, "round": c.round, "block_hash": hexs(c.block_hash),
                                     "signatures": [{"validator": hexs(s.validator), "signature": hexs(s.signature)}
                                                    for s in c.signatures]}
                    result = doc
                call = flow.send(result)
        except StopIteration as done:
            return done.value


async def test_nonce_proofs_membership_absence_older_heights_and_lies() -> None:
    ledger = Ledger(ChainStore(MemoryKV()), make_app(GENESIS), GENESIS, commit_in_thread=False,
                    retention=Retention(recent=10))
    await grow(ledger, {})
    verifier = LightVerifier.from_genesis(GENESIS)
    node = _NonceNode(ledger)
    assert await node.drive(verified_nonce_flow(verifier, pub("P"))) == 4
    assert await node.drive(verified_nonce_flow(verifier, pub("P"), 2)) == 2
    assert await node.drive(verified_nonce_flow(verifier, pub("R"), 4)) == 0   # absent then: proven absence
    assert await node.drive(verified_nonce_flow(verifier, pub("nobody"))) == 0
    # the raw answer carries the witness of auth/n/<sender>
    out = await node.drive(iter_call({"sender": hexs(pub("Q")), "prove": True}))
    w = Witness.from_json(out["proof"])
    assert verify_key(ledger.tip.app_hash, "auth", b"n/" + pub("Q"), w) == (3).to_bytes(8, "big")

    def inflate(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "committed": r["committed"] + 1}

    def drop_nodes(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "proof": {**r["proof"], "nodes": r["proof"]["nodes"][:-1]}}

    def other_height(r: dict[str, Any]) -> dict[str, Any]:
        return {**r, "proof": {**r["proof"], "app_hash": hexs(ledger.store.get_block(3).header.app_hash)}}

    for lie in (inflate, drop_nodes, other_height):
        with pytest.raises(ProofError):
            await _NonceNode(ledger, lie).drive(verified_nonce_flow(LightVerifier.from_genesis(GENESIS), pub("P")))


def iter_call(params: dict[str, Any]) -> Any:
    return (yield Call("tx_nonce", params))
