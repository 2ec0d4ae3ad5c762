"""The example of docs/testing-guide.md §2, kept runnable: seven authorities, one cut
off and brought back, under autojump_clock."""

from __future__ import annotations

from pathlib import Path

import trio

from medchaind import crypto
from medchaind.testing.cluster import Cluster
from medchaind.types import Tx, sign_tx


def register(chain_id: str) -> Tx:
    kp = crypto.KeyPair.generate()
    return sign_tx(kp.signing, chain_id, "identity.register", 0,
                   {"role": "patient", "enc_key": kp.encryption.public_key})


async def test_a_cut_off_authority_catches_up(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    c = Cluster(7, wal_dir=tmp_path, seed=42, latency_ms=(5, 50))
    async with trio.open_nursery() as nursery:
        await c.start(nursery)
        c.hub.partition({f"n{i}" for i in range(6)}, {"n6"})  # n6 alone: 6 of 7 still decide
        tx = register(c.genesis.chain_id)
        c.nodes[0].submit(tx)
        with trio.fail_after(60):  # virtual seconds: autojump_clock skips idle time
            while not c.nodes[0].ledger.is_committed(tx.hash):
                await c.nodes[0].ledger.wait_height(c.nodes[0].height + 1)
        assert c.nodes[6].height < c.nodes[0].height
        c.hub.heal()
        with trio.fail_after(120):
            await c.nodes[6].ledger.wait_height(c.nodes[0].height)  # block sync catches it up
        c.check_agreement()  # at most one block per height, across every node
        nursery.cancel_scope.cancel()
