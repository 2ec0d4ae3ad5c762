"""The app-test harness: named keys, a genesis, and a chain of blocks over a DictState.

Every state-machine test (one module's or several) is written the way
ethereum/consensus-specs writes its operation tests: a **pre-state** built by committing
blocks, one **operation** (a tx, or a block of txs), and the **post-state** or the
receipt's error code. :class:`AppChain` is that harness; it runs the real
:class:`medchaind.app.App` with the modules of the registry (plus any extra module a
test brings), so nothing here duplicates module logic.

Actors are named ("A", "B", "P", "D1", ...) as in geth clique's snapshot tests: a name
maps to a fixed Ed25519 seed, so every run and every hypothesis example signs the same
bytes, and the same name is the same key in every suite.

Usage::

    c = AppChain.of({"A": 1})           # authority A, genesis state
    c.register("P", "patient")          # a block with P's identity.register
    r = c.send("P", "anchor.commit", {...})
    assert r.ok and c.query("anchor.get", {...}) == ...
    c.fails("X", "anchor.commit", {...}, code="unregistered_sender")
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import crypto
from ..app import App, Attach, BlockInfo, DictState, Execution, Module
from ..types import Authority, Genesis, Receipt, Tx, sign_tx

CHAIN_ID = "medchain-test"
OTHER_CHAIN_ID = "medchain-other"
GENESIS_TIME_MS = 1_764_000_000_000
BLOCK_INTERVAL_MS = 1_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def key(name: str) -> crypto.SigningKey:
    """The signing key of actor ``name`` (deterministic)."""
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def hx(name: str) -> str:
    return "0x" + pub(name).hex()


def enc_key(tag: str) -> bytes:
    """A 32-byte stand-in for an X25519 public key (the state machine only checks its size)."""
    return hashlib.sha256(b"medchain-test/enc/" + tag.encode()).digest()


def digest(tag: str) -> bytes:
    """A stand-in 32-byte hash named by ``tag`` (a document, a ciphertext, a block)."""
    return hashlib.sha256(b"medchain-test/digest/" + tag.encode()).digest()


def make_genesis(powers: Mapping[str, int], chain_id: str = CHAIN_ID) -> Genesis:
    return Genesis(chain_id, GENESIS_TIME_MS, tuple(Authority(n, pub(n), p) for n, p in powers.items()))


def make_app(genesis: Genesis, extra: Sequence[Module] = ()) -> App:
    """The registry's modules (fresh instances) plus ``extra`` test modules."""
    from ..modules import load_modules

    return App(genesis, [*load_modules([]), *extra])


class AppChain:
    """Committed state, app hash and block height/time; ``commit`` adds one block."""

    def __init__(self, genesis: Genesis, extra: Sequence[Module] = ()) -> None:
        self.genesis = genesis
        self.app = make_app(genesis, extra)
        writes, self.app_hash = self.app.genesis_state()
        self.state = DictState()
        self.state.apply(writes)
        self.height = 0
        self.time_ms = genesis.genesis_time_ms
        self.proposer = genesis.authorities[0].public_key

    @classmethod
    def of(cls, powers: Mapping[str, int] | None = None, extra: Sequence[Module] = ()) -> AppChain:
        return cls(make_genesis(powers or {"A": 1}), extra)

    # -------------------------------------------------------------- txs

    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def tx(self, name: str, type_: str, body: dict[str, Any], *, nonce: int | None = None,
           chain: str | None = None) -> Tx:
        """A tx signed by ``name``; by default with its next committed nonce."""
        n = self.nonce(name) if nonce is None else nonce
        return sign_tx(key(name), chain or self.app.chain_id, type_, n, body)

    def txs(self, specs: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Tx]:
        """Txs for one block, each sender's nonces counting up from its committed one."""
        nonces: dict[str, int] = {}
        out = []
        for name, type_, body in specs:
            n = nonces.get(name, self.nonce(name))
            nonces[name] = n + 1
            out.append(sign_tx(key(name), self.app.chain_id, type_, n, body))
        return out

    # -------------------------------------------------------------- blocks

    def next_block(self) -> BlockInfo:
        return BlockInfo(self.app.chain_id, self.height + 1, self.time_ms + BLOCK_INTERVAL_MS, self.proposer)

    def execute(self, txs: Iterable[Tx]) -> Execution:
        """Execute the next block without committing it."""
        return self.app.execute(self.state, self.next_block(), list(txs), self.app_hash)

    def commit(self, txs: Iterable[Tx] = ()) -> Execution:
        ex = self.execute(txs)
        self.state.apply(ex.writes, ex.trie)
        self.app_hash = ex.app_hash
        self.height += 1
        self.time_ms += BLOCK_INTERVAL_MS
        return ex

    def advance(self, ms: int) -> None:
        """Let block time pass (only the next block's time counts; no empty blocks needed)."""
        self.time_ms += ms

    # -------------------------------------------------------------- one tx per block

    def send(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        """Commit a block holding one tx of ``name`` (next nonce); return its receipt."""
        return self.commit([self.tx(name, type_, body)]).receipts[0]

    def ok(self, name: str, type_: str, body: dict[str, Any]) -> Receipt:
        """``send`` that must succeed."""
        r = self.send(name, type_, body)
        assert r.ok, r
        return r

    def fails(self, name: str, type_: str, body: dict[str, Any], code: str) -> Receipt:
        """``send`` that must fail with ``code`` and leave every module's state untouched.

        The sender's nonce is the only write a failed tx keeps (consumed, as on chain).
        """
        before = self.snapshot()
        r = self.send(name, type_, body)
        assert r.code == code, r
        after = self.snapshot()
        assert {k: v for k, v in after.items() if k[0] != "auth"} == {
            k: v for k, v in before.items() if k[0] != "auth"
        }, f"{type_} failed with {code} but changed state"
        return r

    def check(self, tx: Tx) -> None:
        """Mempool admission as a node runs it: stateless checks plus a dry run."""
        self.app.check_tx(self.state, tx, expected_nonce=App.nonce(self.state, tx.sender),
                          block=self.next_block())

    # -------------------------------------------------------------- common setup

    def register(self, name: str, role: str, enc: str | None = None, label: str | None = None) -> None:
        body: dict[str, Any] = {"role": role, "enc_key": enc_key(enc if enc is not None else name)}
        if label is not None:
            body["label"] = label
        self.ok(name, "identity.register", body)

    def accredit(self, name: str, role: str, *, by: str | None = None) -> None:
        """Accredit ``name`` as ``role`` by every authority's vote (or only ``by``'s)."""
        voters = [by] if by is not None else [a.name for a in self.genesis.authorities]
        for voter in voters:
            self.send(voter, "governance.accredit", {"subject": pub(name), "role": role})
        ident = self.query("identity.get", {"public_key": pub(name)})
        assert ident is not None and ident["status"] == "accredited", ident

    def cast(self, members: Iterable[tuple[str, str]], accredited: Iterable[tuple[str, str]] = ()) -> None:
        """Register every ``(name, role)`` of ``members`` and accredit those of ``accredited``."""
        for name, role in members:
            self.register(name, role)
        for name, role in accredited:
            self.accredit(name, role)

    # -------------------------------------------------------------- reading state

    def query(self, path: str, params: dict[str, Any] | None = None, *, time_ms: int | None = None) -> Any:
        """Run module query ``path`` (Python values); tip-time queries see the next block's time.

        An answer the node would complete with a blob (:class:`medchaind.app.Attach`) is
        returned as its value: the state machine's part of the answer.
        """
        answer = self.app.query(self.state, path, params or {},
                                time_ms=self.time_ms + BLOCK_INTERVAL_MS if time_ms is None else time_ms)
        return answer.value if isinstance(answer, Attach) else answer

    def snapshot(self) -> dict[tuple[str, bytes], bytes]:
        """Every committed state entry (for before/after comparisons)."""
        return dict(self.state.data)

    def keys(self, module: str) -> list[bytes]:
        return sorted(k for (m, k) in self.state.data if m == module)
