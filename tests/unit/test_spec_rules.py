"""Rules docs/protocol.md states for issue 15's spec defects, pinned against the code.

Each test names the item of issue 15 and the section that answers it: a block is valid
from any authority of its height (§6, item 5), a height's commit is not unique (§5,
item 6), consensus gossip outside the receiver's window is dropped without a penalty
(§12.3, item 7), and the commit size limit can never decide on a well-formed commit,
standalone or embedded (§1.4/§5, item 11).
"""

from __future__ import annotations

import hashlib

import pytest
import trio

from medchaind import codec, core, crypto
from medchaind.app import DictState
from medchaind.chain import SigCache, Tip, build_block, validate_block
from medchaind.errors import InvalidBlock, ValidationError
from medchaind.modules import make_app
from medchaind.types import (
    Authority,
    Block,
    Commit,
    CommitSig,
    Genesis,
    decode_block,
    decode_commit,
    sign_commit_vote,
    verify_commit,
)

CHAIN = "medchain-test"
T0 = 1_764_000_000_000


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/spec/" + name.encode()).digest())


NAMES = ("A", "B", "C", "D")
GENESIS = Genesis(CHAIN, T0, tuple(Authority(n, key(n).public_key, 1) for n in NAMES))


def _first_block(proposer: bytes, round_: int = 0) -> tuple[Block, object, DictState, Tip]:
    app = make_app(GENESIS)
    writes, app_hash = app.genesis_state()
    state = DictState()
    state.apply(writes)
    tip = Tip(0, GENESIS.hash(), app_hash, T0, GENESIS.powers())
    block, ex = build_block(app, state, tip, [], proposer=proposer, time_ms=T0 + 1000, round_=round_,
                            last_commit=None)
    return block, ex, state, tip


def _validate(block: Block, state: DictState, tip: Tip) -> None:
    validate_block(make_app(GENESIS), state, tip, block, SigCache(), max_txs=10, max_bytes=1 << 20)


# ------------------------------------------------------------------ item 5, §6


def test_a_block_by_any_authority_is_valid_a_non_authority_is_not() -> None:
    vset = core.ValidatorSet.from_powers(GENESIS.powers())
    scheduled = vset.proposer(core.Height(1), core.Round(0))
    other = next(k for k in GENESIS.powers() if k != scheduled)
    for proposer in (scheduled, other):
        block, _, state, tip = _first_block(proposer)
        _validate(block, state, tip)  # §6: only "proposer is in the set" is a block rule
    block, _, state, tip = _first_block(key("outsider").public_key)
    with pytest.raises(InvalidBlock, match="proposer is not an authority"):
        _validate(block, state, tip)


# ------------------------------------------------------------------ item 6, §5


def test_a_heights_commit_is_not_unique() -> None:
    block, _, _, _ = _first_block(key("A").public_key)
    bh = block.hash()
    a = Commit(1, 0, bh, tuple(sorted((sign_commit_vote(key(n), CHAIN, 1, 0, bh) for n in "ABC"),
                                      key=lambda s: s.validator)))
    b = Commit(1, 0, bh, tuple(sorted((sign_commit_vote(key(n), CHAIN, 1, 0, bh) for n in "BCD"),
                                      key=lambda s: s.validator)))
    later = Commit(1, 1, bh, tuple(sign_commit_vote(key(n), CHAIN, 1, 1, bh) for n in "ABCD"))
    for c in (a, b, later):
        verify_commit(c, CHAIN, GENESIS.powers(), bh, 1)
    # all three finalise the same block; only (height, block_hash) may be compared
    assert len({a.hash(), b.hash(), later.hash()}) == 3
    assert {(c.height, c.block_hash) for c in (a, b, later)} == {(1, bh)}


# ------------------------------------------------------------------ item 11, §1.4 / §5

#: enc() of a commit with 1024 signatures and uint63-maximal height and round: the largest
#: commit §5's field rules allow
LARGEST_COMMIT = 103_515


def test_no_well_formed_commit_reaches_the_200_kib_limit() -> None:
    sigs = tuple(CommitSig(i.to_bytes(32, "big"), bytes(64)) for i in range(1024))
    big = Commit(2**63 - 1, 2**63 - 1, bytes(32), sigs)
    assert len(big.encode()) == LARGEST_COMMIT < 200 * 1024
    assert decode_commit(big.encode()) == big
    with pytest.raises(Exception, match="1024"):
        Commit.from_map({**big.to_map(), "signatures": big.to_map()["signatures"] + [[b"\xff" * 32, bytes(64)]]})


def test_an_embedded_last_commit_has_the_same_shape_rules() -> None:
    """A block's last_commit is checked by the commit rules of §5 (1..1024 signatures), not by
    a separate size limit; the largest one fits in a block (structurally; verify_commit is stateful)."""
    block, _, _, _ = _first_block(key("A").public_key)
    sigs = tuple(CommitSig(i.to_bytes(32, "big"), bytes(64)) for i in range(1024))
    lc = Commit(1, 0, block.hash(), sigs)
    m = block.to_map()
    m["header"] = {**m["header"], "height": 2, "prev_hash": block.hash(), "last_commit_hash": lc.hash()}
    m["last_commit"] = lc.to_map()
    decoded = decode_block(codec.encode(m))
    assert decoded.last_commit == lc and len(lc.encode()) <= LARGEST_COMMIT
    m["last_commit"] = {**lc.to_map(), "signatures": lc.to_map()["signatures"] + [[b"\xff" * 32, bytes(64)]]}
    with pytest.raises(Exception, match="1024"):
        decode_block(codec.encode(m))


# ------------------------------------------------------------------ item 7, §12.3


def test_consensus_gossip_outside_the_window_is_dropped() -> None:
    """Heights other than H and H+1 (H = next height) are not accepted, H-1 included."""
    from medchaind.consensus.bft import BftEngine
    from medchaind.consensus.wire import encode_consensus
    from medchaind.ledger import Ledger
    from medchaind.mempool import Mempool
    from medchaind.net.memory import MemoryNetwork
    from medchaind.store import ChainStore, MemoryKV

    block, ex, _, _ = _first_block(key("B").public_key)
    commit = Commit(1, 0, block.hash(), tuple(sign_commit_vote(key(n), CHAIN, 1, 0, block.hash()) for n in "ABC"))
    app = make_app(GENESIS)
    ledger = Ledger(ChainStore(MemoryKV()), app, GENESIS, commit_in_thread=False)
    trio.run(ledger.commit, block, commit, ex)
    mempool = Mempool(app, lambda: ledger.state, SigCache(), ledger.is_committed)
    engine = BftEngine(ledger, mempool, None, MemoryNetwork(seed=0).endpoint("x"), None)
    assert engine.next_height == 2

    def vote(height: int) -> bytes:
        v = core.Vote(core.VoteKind.PREVOTE, core.Height(height), core.Round(0), None,
                      core.ValidatorId(key("A").public_key))
        return encode_consensus(core.sign_vote(key("A"), CHAIN, v))

    accepted = {h: engine.on_consensus_gossip("peer", vote(h)) for h in (1, 2, 3, 4)}  # type: ignore[arg-type]
    assert accepted == {1: False, 2: True, 3: True, 4: False}
    forged = core.Vote(core.VoteKind.PREVOTE, core.Height(2), core.Round(0), None,
                       core.ValidatorId(key("outsider").public_key))
    assert engine.on_consensus_gossip("peer", encode_consensus(core.sign_vote(key("outsider"), CHAIN, forged))) is False  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Commit.from_map({"height": 1, "round": 0, "block_hash": bytes(32), "signatures": []})


# ------------------------------------------------------------------ item 3, §7.2


def test_the_event_index_names_every_event_the_modules_emit() -> None:
    """docs/protocol.md §7.2 lists every `ctx.emit(kind, **fields)` of every module."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    emitted: dict[str, set[str]] = {}
    for path in sorted((root / "medchaind" / "modules").glob("*/machine.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "emit"
                    and n.args and isinstance(n.args[0], ast.Constant)):
                kind = f"{path.parent.name}.{n.args[0].value}"
                emitted.setdefault(kind, set()).update(k.arg for k in n.keywords if k.arg)
    spec = (root / "docs" / "protocol.md").read_text()
    section = spec.split("### 7.2 Events", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+\.[a-z_]+)` \| (.*) \| §", line)
        if m:
            table[m.group(1)] = set(re.findall(r"`([a-z_]+)`", m.group(2)))
    assert sorted(table) == sorted(emitted)
    for kind, fields in emitted.items():
        assert fields <= table[kind], (kind, fields - table[kind])


# ------------------------------------------------------------------ item 4, §15.1 / §15.2


def test_authority_power_and_count_bounds() -> None:
    """add_authority: power 1..100 (invalid_body outside), at most 128 authorities, also when
    two additions are scheduled together while the table has room for one."""
    from medchaind.modules.governance.machine import MAX_AUTHORITIES, MAX_POWER, authority_powers
    from medchaind.testing.appkit import AppChain, pub

    assert (MAX_POWER, MAX_AUTHORITIES) == (100, 128)
    # A, B, C hold more than 2/3 of the power; 124 others make 127 authorities
    powers = {"A": 100, "B": 100, "C": 100, **{f"N{i}": 1 for i in range(124)}}
    chain = AppChain.of(powers)

    def add(name: str, power: int = 1) -> dict[str, object]:
        return {"public_key": pub(name), "name": name, "power": power}

    for bad in (0, 101):
        assert chain.send("A", "governance.add_authority", add("E", bad)).code == "invalid_body"
    ex = chain.commit(chain.txs([(v, "governance.add_authority", add(n)) for n in ("E", "F") for v in "ABC"]))
    assert [r.code for r in ex.receipts] == ["ok"] * 6
    chain.commit()  # end of V + 1: both additions apply in action_id order; only the first fits
    table = authority_powers(chain.state)
    assert len(table) == MAX_AUTHORITIES and len({pub("E"), pub("F")} & set(table)) == 1
    assert chain.send("A", "governance.add_authority", add("G")).code == "too_many_authorities"
