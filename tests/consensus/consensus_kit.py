"""Builders for the consensus storage and wire tests: named deterministic keys, signed
votes and proposals (``core.sign_vote`` / ``core.sign_proposal``) and real blocks built
by :func:`medchaind.chain.build_block` over a one-authority genesis.

Names map to fixed Ed25519 seeds (the scheme of ``tests/app/app_kit.py``), so every run
and every hypothesis example signs the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from medchaind import core, crypto
from medchaind.app import DictState
from medchaind.chain import Tip, build_block
from medchaind.modules import make_app
from medchaind.types import Authority, Block, Commit, Genesis, Tx, sign_commit_vote, sign_tx

CHAIN_ID = "medchain-test"
GENESIS_TIME_MS = 1_764_000_000_000


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def value(tag: str) -> core.BlockHash:
    """A stand-in block hash for messages that never meet their block."""
    return core.BlockHash(hashlib.sha256(b"medchain-test/block/" + tag.encode()).digest())


def vote(
    name: str,
    tag: str | None,
    *,
    height: int = 5,
    round_: int = 0,
    kind: core.VoteKind = core.VoteKind.PREVOTE,
    signed: bool = True,
) -> core.Vote:
    v = core.Vote(kind, core.Height(height), core.Round(round_), None if tag is None else value(tag),
                  core.ValidatorId(pub(name)))
    return core.sign_vote(key(name), CHAIN_ID, v) if signed else v


def proposal(
    name: str,
    block_hash: bytes,
    *,
    height: int = 5,
    round_: int = 0,
    pol_round: int = core.NIL_ROUND,
    signed: bool = True,
) -> core.Proposal:
    p = core.Proposal(core.Height(height), core.Round(round_), core.BlockHash(block_hash),
                      core.Round(pol_round), core.ValidatorId(pub(name)))
    return core.sign_proposal(key(name), CHAIN_ID, p) if signed else p


@dataclass(frozen=True)
class Built:
    block: Block
    commit: Commit


def build_chain(n: int = 2) -> list[Built]:
    """``n`` real consecutive blocks of a one-authority ("A") chain with their commits.

    Block 1 registers an identity (one tx); later blocks are empty and carry the
    previous block's commit as ``last_commit``.
    """
    genesis = Genesis(CHAIN_ID, GENESIS_TIME_MS, (Authority("A", pub("A"), 1),))
    app = make_app(genesis)
    writes, app_hash = app.genesis_state()
    state = DictState()
    state.apply(writes)
    tip = Tip(0, genesis.hash(), app_hash, GENESIS_TIME_MS, genesis.powers())
    last_commit: Commit | None = None
    out: list[Built] = []
    for h in range(1, n + 1):
        txs: list[Tx] = []
        if h == 1:
            txs = [sign_tx(key("P"), CHAIN_ID, "identity.register", 0,
                           {"role": "patient", "enc_key": b"\x01" * 32})]
        block, ex = build_block(app, state, tip, txs, proposer=pub("A"), time_ms=tip.time_ms + 1000,
                                round_=0, last_commit=last_commit)
        state.apply(ex.writes)
        tip = Tip(h, block.hash(), ex.app_hash, block.header.time_ms, tip.powers)
        commit = Commit(h, 0, block.hash(), (sign_commit_vote(key("A"), CHAIN_ID, h, 0, block.hash()),))
        out.append(Built(block, commit))
        last_commit = commit
    return out
