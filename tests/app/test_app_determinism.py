"""Determinism of execution (medchaind/app/app.py).

Every node re-executes every block, so equal inputs (committed state, block info, txs,
previous app hash) must give byte-identical write-sets, receipts and hashes, and any
difference in the resulting state must show in ``app_hash``. ``app_hash`` commits to the
*state change*, not to the tx order (``tx_root`` does that): reordering independent txs
keeps it, reordering dependent ones changes it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from app_kit import (
    Chain,
    accredit_body,
    make_genesis,
    register_body,
    revoke_body,
    update_body,
)
from hypothesis import event, given, settings
from hypothesis import strategies as st

from medchaind import codec
from medchaind.app import trie
from medchaind.modules.identity.machine import ROLES
from medchaind.types import Tx, decode_tx

AUTHORITIES = {"A": 2, "B": 1}  # A alone has 2/3, not more: accreditation needs both


def _workload(c: Chain) -> list[Tx]:
    """A block mixing successes and failures of every tx type."""
    return [
        c.tx("X", "identity.register", register_body("provider", label="Clinic"), nonce=0),
        c.tx("P", "identity.register", register_body("patient"), nonce=0),
        c.tx("P", "identity.update", update_body("2"), nonce=1),
        c.tx("A", "governance.accredit", accredit_body("X"), nonce=0),
        c.tx("A", "governance.accredit", accredit_body("X"), nonce=1),  # duplicate_vote
        c.tx("B", "governance.accredit", accredit_body("X"), nonce=0),  # executes
        c.tx("P", "identity.register", register_body("patient"), nonce=2),  # already_registered
        c.tx("Q", "identity.update", update_body("3"), nonce=0),  # unregistered_sender
        c.tx("Q", "identity.update", update_body("3"), nonce=7),  # bad_nonce
    ]


def test_same_txs_on_two_separate_nodes_give_identical_results() -> None:
    node1 = Chain(make_genesis(AUTHORITIES))
    node2 = Chain(make_genesis(AUTHORITIES))
    assert node1.app_hash == node2.app_hash
    txs = _workload(node1)

    ex1 = node1.commit(txs)
    ex2 = node2.commit([decode_tx(t.encoded) for t in txs])  # as received from the wire

    assert [r.code for r in ex1.receipts] == [
        "ok",
        "ok",
        "ok",
        "ok",
        "duplicate_vote",
        "ok",
        "already_registered",
        "unregistered_sender",
        "bad_nonce",
    ]
    assert ex1 == ex2
    assert codec.encode([r.to_map() for r in ex1.receipts]) == codec.encode(
        [r.to_map() for r in ex2.receipts]
    )
    assert node1.state.data == node2.state.data
    assert node1.status("X") == "accredited"


def test_one_different_tx_changes_the_app_hash() -> None:
    c = Chain(make_genesis(AUTHORITIES))
    txs = _workload(c)
    base = c.execute(txs)
    changed = list(txs)
    changed[2] = c.tx("P", "identity.update", update_body("other"), nonce=1)
    assert c.execute(changed).app_hash != base.app_hash


def test_dependent_reorder_changes_the_app_hash() -> None:
    c = Chain(make_genesis(AUTHORITIES))
    txs = _workload(c)
    base = c.execute(txs)
    swapped = [txs[0], txs[2], txs[1], *txs[3:]]  # P's update before P's register
    ex = c.execute(swapped)
    assert ex.receipts[1].code == "bad_nonce"
    assert ex.app_hash != base.app_hash
    assert ex.results_hash != base.results_hash


def test_independent_reorder_keeps_app_hash_but_not_results_hash() -> None:
    c = Chain(make_genesis(AUTHORITIES))
    x = c.tx("X", "identity.register", register_body("provider"))
    p = c.tx("P", "identity.register", register_body("patient"))
    ex1, ex2 = c.execute([x, p]), c.execute([p, x])
    assert ex1.writes == ex2.writes
    assert ex1.app_hash == ex2.app_hash
    assert ex1.results_hash != ex2.results_hash  # receipts are in tx order


def test_app_hash_is_the_root_of_the_state_not_a_chain() -> None:
    # Protocol 2 (docs/protocol.md §20): app_hash commits to the state itself, so a block
    # that changes nothing keeps it, and it is the root of the state rebuilt from scratch.
    c = Chain(make_genesis(AUTHORITIES))
    genesis_hash = c.app_hash
    empty1 = c.commit([])
    empty2 = c.commit([])
    assert empty1.writes == {} and empty2.writes == {}
    assert genesis_hash == empty1.app_hash == empty2.app_hash
    busy = c.commit(_workload(c))
    assert busy.app_hash != genesis_hash
    assert busy.app_hash == trie.compute_root({trie.tree_key(m, k): v for (m, k), v in c.state.data.items()})


def test_genesis_state_depends_on_the_genesis() -> None:
    a = Chain(make_genesis({"A": 1}))
    b = Chain(make_genesis({"A": 2}))
    assert a.app_hash != b.app_hash
    assert Chain(make_genesis({"A": 1})).app_hash == a.app_hash
    # the same state on another chain has the same root: the chain id is bound by the
    # header's ``chain`` and, through prev_hash, by the genesis hash
    c = Chain(make_genesis({"A": 1}, chain_id="medchain-other"))
    assert c.app_hash == a.app_hash and c.genesis.hash() != a.genesis.hash()


# ---------------------------------------------------------------- hypothesis

KEYS = ["A", "B", "K", "L", "M"]

_nonce_offset = st.sampled_from([0, 0, 0, 0, 0, 0, 0, 0, 1, -1, 3])  # from the sender's next nonce
op_st = st.one_of(
    st.tuples(  # identity txs from anyone
        st.sampled_from(KEYS),
        st.sampled_from(["register", "register", "update"]),
        st.just(""),
        st.sampled_from(["provider", "provider", "provider", "patient", "patient", *ROLES]),
        st.integers(0, 3),  # enc_key variant
        _nonce_offset,
    ),
    st.tuples(  # governance votes, mostly from the authorities, on the non-authorities
        st.sampled_from(["A", "A", "B", "B", "K"]),
        st.sampled_from(["accredit", "accredit", "revoke"]),
        st.sampled_from(["K", "L", "M"]),
        st.sampled_from(["provider", "provider", "pharmacy"]),
        st.just(0),
        _nonce_offset,
    ),
)


# K and L register as providers and M as a patient first, so votes have subjects.
PRELUDE = [
    ("K", "register", "", "provider", 0, 0),
    ("L", "register", "", "provider", 0, 0),
    ("M", "register", "", "patient", 0, 0),
]


def _build(
    ops: list[tuple[str, str, str, str, int, int]],
) -> tuple[list[Tx], list[bool], dict[str, int]]:
    """Signed txs, whether each carries the sender's right nonce, and the final nonces."""
    signer = Chain(make_genesis(AUTHORITIES))
    nonces: Counter[str] = Counter()
    txs, right = [], []
    for sender, op, subject, role, enc, offset in [*PRELUDE, *ops]:
        body: dict[str, Any]
        if op == "register":
            body = register_body(role, enc=str(enc))
        elif op == "update":
            body = update_body(str(enc))
        elif op == "accredit":
            body = accredit_body(subject, role if role != "patient" else "provider")
        else:
            body = revoke_body(subject)
        nonce = nonces[sender] + offset
        if offset != 0 and nonce < 0:
            nonce = nonces[sender] + 1
        txs.append(
            signer.tx(
                sender,
                f"{'identity' if op in ('register', 'update') else 'governance'}.{op}",
                body,
                nonce=nonce,
            )
        )
        right.append(offset == 0)
        if offset == 0:
            nonces[sender] += 1
    return txs, right, dict(nonces)


def _split(txs: list[Tx], cuts: list[int]) -> list[list[Tx]]:
    blocks, i = [], 0
    for n in cuts:
        if i >= len(txs):
            break
        blocks.append(txs[i : i + n])
        i += n
    blocks.append(txs[i:])
    return blocks


def _run(blocks: list[list[Tx]]) -> tuple[Chain, list[Any]]:
    c = Chain(make_genesis(AUTHORITIES))
    receipts = []
    for block in blocks:
        receipts.extend(c.commit(block).receipts)
    return c, receipts


def _without_heights(c: Chain) -> dict[Any, Any]:
    """State with the block heights identities record stripped (they depend on the split)."""
    out: dict[Any, Any] = {}
    for (m, k), v in c.state.data.items():
        if m == "auth":  # nonces: raw 8-byte big-endian counters
            out[(m, k)] = v
            continue
        value = codec.decode(v)
        if m == "identity":
            value = {f: x for f, x in value.items() if f not in ("registered_at", "changed_at")}
        out[(m, k)] = value
    return out


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(op_st, min_size=4, max_size=40), cuts=st.lists(st.integers(0, 6), max_size=8))
def test_execution_depends_only_on_the_txs_and_their_blocks(
    ops: list[tuple[str, str, str, str, int, int]], cuts: list[int]
) -> None:
    txs, right_nonce, final_nonces = _build(ops)
    blocks = _split(txs, cuts)

    node1, receipts1 = _run(blocks)
    node2, receipts2 = _run(blocks)
    assert node1.app_hash == node2.app_hash
    assert node1.state.data == node2.state.data
    assert receipts1 == receipts2

    for r, right in zip(receipts1, right_nonce, strict=True):
        event(r.code)
        for e in r.events:
            event(e["type"])
        assert r.ok or r.reason, r
        # exactly the txs with a wrong nonce fail on it
        assert (r.code == "bad_nonce") == (not right), r
    for name in KEYS:
        assert node1.nonce(name) == final_nonces.get(name, 0)

    # Block boundaries only show in the heights identities record: the same txs in a
    # single block give the same receipts and the same state apart from those heights.
    single, receipts_single = _run([txs])
    assert receipts_single == receipts1
    assert _without_heights(single) == _without_heights(node1)
