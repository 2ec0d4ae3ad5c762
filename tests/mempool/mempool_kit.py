"""A mempool over a DictState chain, with a fake clock, for the mempool tests.

Named deterministic keys ("P", "Q", ... as in geth clique's tests). The chain starts
with patients P, Q, R and provider X registered (their nonce is 1), authority A (and
optionally B, C, D) in genesis, and Z unknown. ``commit`` executes a block directly
(as if another node proposed it), records its tx hashes as committed and calls
``Mempool.update``, the way the node does after each block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from medchaind import crypto
from medchaind.app import App, BlockInfo, DictState, Execution
from medchaind.chain import SigCache, Tip
from medchaind.mempool import Mempool, MempoolConfig
from medchaind.modules import make_app
from medchaind.types import Authority, Genesis, Tx, sign_tx
from medchaind.types.tx import tx_from_map

CHAIN_ID = "medchain-test"
GENESIS_TIME_MS = 1_764_000_000_000


def key(name: str) -> crypto.SigningKey:
    return crypto.SigningKey(hashlib.sha256(b"medchain-test/signing/" + name.encode()).digest())


def pub(name: str) -> bytes:
    return key(name).public_key


def enc(tag: str) -> bytes:
    return hashlib.sha256(b"medchain-test/enc/" + tag.encode()).digest()


def forge(tx: Tx) -> Tx:
    """The same tx with a corrupted signature (a correctly shaped, unverifiable tx)."""
    m = tx.to_map()
    m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    return tx_from_map(m)


def genesis_chain(app: App) -> tuple[DictState, bytes]:
    """The genesis state of ``app``'s chain and its app hash."""
    writes, app_hash = app.genesis_state()
    state = DictState()
    state.apply(writes)
    return state, app_hash


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    PRELUDE = {"P": "patient", "Q": "patient", "R": "patient", "X": "provider"}

    def __init__(
        self, config: MempoolConfig | None = None, authorities: Mapping[str, int] | None = None,
        on_dropped: Callable[[Tx, str], None] | None = None,
    ) -> None:
        auths = authorities or {"A": 1}
        self.genesis = Genesis(
            CHAIN_ID, GENESIS_TIME_MS, tuple(Authority(n, pub(n), p) for n, p in auths.items())
        )
        self.app = make_app(self.genesis)
        self.state, self.app_hash = genesis_chain(self.app)
        self.height = 0
        self.time_ms = GENESIS_TIME_MS
        self.committed: set[bytes] = set()
        self.clock = FakeClock()
        self.sigs = SigCache()
        self.pool = Mempool(
            self.app,
            lambda: self.state,
            self.sigs,
            committed=lambda h: h in self.committed,
            config=config or MempoolConfig(),
            clock=self.clock,
            on_dropped=on_dropped,
        )
        self.prelude = [self.register(n, role, nonce=0) for n, role in self.PRELUDE.items()]
        ex = self.commit(self.prelude)
        assert all(r.ok for r in ex.receipts)

    # -- txs
    def nonce(self, name: str) -> int:
        return App.nonce(self.state, pub(name))

    def nonce_of(self, sender: bytes) -> int:
        return App.nonce(self.state, sender)

    def tx(
        self,
        name: str,
        type_: str,
        body: dict[str, Any],
        nonce: int | None = None,
        chain: str = CHAIN_ID,
    ) -> Tx:
        return sign_tx(key(name), chain, type_, self.nonce(name) if nonce is None else nonce, body)

    def update(self, name: str, nonce: int | None = None, tag: str = "new") -> Tx:
        return self.tx(name, "identity.update", {"enc_key": enc(tag)}, nonce)

    def register(
        self, name: str, role: str = "patient", nonce: int | None = None, **extra: Any
    ) -> Tx:
        return self.tx(
            name, "identity.register", {"role": role, "enc_key": enc(name), **extra}, nonce
        )

    # -- blocks
    def tip(self) -> Tip:
        return Tip(
            self.height,
            hashlib.sha256(b"block %d" % self.height).digest(),
            self.app_hash,
            self.time_ms,
            self.genesis.powers(),
        )

    def commit(self, txs: Iterable[Tx]) -> Execution:
        txs = list(txs)
        self.height += 1
        self.time_ms += 1000
        info = BlockInfo(
            CHAIN_ID, self.height, self.time_ms, self.genesis.authorities[0].public_key
        )
        ex = self.app.execute(self.state, info, txs, self.app_hash)
        self.state.apply(ex.writes)
        self.app_hash = ex.app_hash
        self.committed.update(t.hash for t in txs)
        self.pool.update(txs, ex.writes)
        return ex

    # -- observing the pool
    def snapshot(self) -> tuple[Any, ...]:
        p = self.pool
        st = p.statistics()
        return (list(p._txs), st.size, st.bytes, {s: dict(per) for s, per in p._by_sender.items()})

    def pending(self) -> list[tuple[str, int]]:
        """(sender name, nonce) of the pending txs in arrival order."""
        return names(self.pool._txs.values())


NAMES = ["P", "Q", "R", "X", "A", "B", "C", "D", "Z"]


def names(txs: Iterable[Tx]) -> list[tuple[str, int]]:
    """(sender name, nonce) of each tx, for readable assertions."""
    rev = {pub(n): n for n in NAMES}
    return [(rev[t.sender], t.nonce) for t in txs]
