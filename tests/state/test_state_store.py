"""The state trie in the chain database: written with each block, always the head's trie.

Through the real :class:`medchaind.ledger.Ledger` and :class:`ChainStore` (memory and
LevelDB backends): after genesis and after every committed block, ``v1/trie/`` holds
exactly the records of the trie rebuilt from the stored state, whose root is the head's
``app_hash``; the node's query layer proves answers from it that a client verifies; a
datadir of protocol 1 is refused with a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from state_kit import hexs

from medchaind import codec
from medchaind.app import trie
from medchaind.app.app import PROTOCOL_VERSION
from medchaind.app.proofs import Witness, WitnessState
from medchaind.chain import build_block
from medchaind.errors import ConfigError
from medchaind.ledger import Ledger
from medchaind.modules import make_app
from medchaind.node.queries import ModuleQueries, query_methods
from medchaind.store import PROTOCOL_META, ChainStore, LevelDBKV, MemoryKV, schema
from medchaind.store.chain_store import GENESIS_APP_HASH_META, split_trie_entry
from medchaind.testing.appkit import enc_key, key, make_genesis, pub
from medchaind.types import Commit, sign_commit_vote, sign_tx

GENESIS = make_genesis({"A": 1, "B": 1, "C": 1})


def stored_trie(store: ChainStore) -> dict[bytes, bytes]:
    """The trie records in the store by hash (each entry's record, without its birth height)."""
    out: dict[bytes, bytes] = {}
    for k, v in store.kv.iterate(schema.TRIE_PREFIX):
        record, _ = split_trie_entry(v)
        assert record is not None
        out[k[len(schema.TRIE_PREFIX):]] = record
    return out


def stored_state(store: ChainStore) -> dict[bytes, bytes]:
    cut = len(schema.STATE_PREFIX)
    return {k[cut:]: v for k, v in store.kv.iterate(schema.STATE_PREFIX)}


def assert_trie_is_the_heads(ledger: Ledger) -> None:
    rebuilt = trie.build(stored_state(ledger.store))  # tree key = module/key = the state key's tail
    assert rebuilt.root == ledger.tip.app_hash
    assert stored_trie(ledger.store) == rebuilt.puts


async def commit(ledger: Ledger, txs: list[Any]) -> None:
    tip = ledger.tip
    block, ex = build_block(ledger.app, ledger.state, tip, txs, proposer=pub("A"), time_ms=tip.time_ms + 1000,
                            round_=0, last_commit=ledger.store.get_commit(tip.height))
    sigs = sorted((sign_commit_vote(key(n), GENESIS.chain_id, block.height, 0, block.hash()) for n in "ABC"),
                  key=lambda s: s.validator)
    await ledger.commit(block, Commit(block.height, 0, block.hash(), tuple(sigs)), ex)


def register(name: str, nonce: int = 0, enc: str | None = None) -> Any:
    return sign_tx(key(name), GENESIS.chain_id, "identity.register", nonce,
                   {"role": "patient", "enc_key": enc_key(enc or name)})


@pytest.mark.parametrize("backend", ["memory", "leveldb"])
async def test_every_commit_leaves_exactly_the_heads_trie(backend: str, tmp_path: Path) -> None:
    kv = MemoryKV() if backend == "memory" else LevelDBKV.open(tmp_path / "chaindata")
    try:
        ledger = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
        assert_trie_is_the_heads(ledger)
        await commit(ledger, [register(n) for n in ("P", "Q", "R")])
        assert_trie_is_the_heads(ledger)
        await commit(ledger, [])  # nothing changes: the same root, the same records
        assert_trie_is_the_heads(ledger)
        await commit(ledger, [sign_tx(key("P"), GENESIS.chain_id, "identity.update", 1, {"enc_key": enc_key("p2")}),
                              register("S")])
        assert_trie_is_the_heads(ledger)
        assert ledger.tip.block_powers == GENESIS.powers()
        if backend == "leveldb":  # a restarted node finds the same trie and knows who signed the head
            kv.close()
            kv = LevelDBKV.open(tmp_path / "chaindata")
            again = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS)
            assert again.tip.app_hash == ledger.tip.app_hash
            assert again.tip.block_powers == GENESIS.powers()
            assert_trie_is_the_heads(again)
            ledger = again
        # the node's query layer proves from the stored trie; the witness checks out
        queries = ModuleQueries(ledger.app, ledger.state, lambda: ledger.tip, lambda h: None)
        spec = {m.name: m.spec for m in query_methods(ledger.app)}["identity_get"]
        out = queries.run(spec, {"public_key": hexs(pub("P")), "prove": True})
        assert out["result"]["enc_key"] == hexs(enc_key("p2"))
        assert out["proof"]["height"] == ledger.height
        ident = WitnessState(ledger.tip.app_hash, Witness.from_json(out["proof"])).get("identity", b"id/" + pub("P"))
        assert ident is not None and codec.decode(ident)["enc_key"] == enc_key("p2")
    finally:
        kv.close()


async def test_a_protocol_1_datadir_is_refused() -> None:
    kv = MemoryKV()
    store = ChainStore(kv)
    Ledger(store, make_app(GENESIS), GENESIS, commit_in_thread=False)
    # what protocol 1 stored as the genesis app hash: a hash chain value, not a trie root
    kv.put(schema.meta_key(GENESIS_APP_HASH_META), b"\x11" * 32)
    with pytest.raises(ConfigError, match="protocol 1"):
        Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)



async def test_the_datadir_records_its_protocol_and_another_one_is_refused() -> None:
    """protocol.md Appendix B: protocol 3 hashes receipts differently, so a chain made by
    another version can be neither replayed nor extended: the node says so at start."""
    kv = MemoryKV()
    ledger = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    assert kv.get(schema.meta_key(PROTOCOL_META)) == str(PROTOCOL_VERSION).encode()
    await commit(ledger, [register("P")])
    again = Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)  # same version: fine
    assert again.height == 1
    # a datadir made by another version
    kv.put(schema.meta_key(PROTOCOL_META), b"7")
    with pytest.raises(ConfigError, match="made by protocol 7, and this medchaind speaks protocol"):
        Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    # blocks but no mark: a datadir of protocol 2 or earlier
    kv.delete(schema.meta_key(PROTOCOL_META))
    with pytest.raises(ConfigError, match="protocol 2 or earlier"):
        Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    assert kv.get(schema.meta_key(PROTOCOL_META)) is None, "a refused datadir is not changed"


async def test_a_genesis_only_datadir_without_the_mark_gets_it() -> None:
    kv = MemoryKV()
    Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    kv.delete(schema.meta_key(PROTOCOL_META))
    Ledger(ChainStore(kv), make_app(GENESIS), GENESIS, commit_in_thread=False)
    assert kv.get(schema.meta_key(PROTOCOL_META)) is not None
