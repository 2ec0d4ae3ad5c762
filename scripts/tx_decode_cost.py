#!/usr/bin/env python3
"""CPU per tx of turning tx bytes into a :class:`~medchaind.types.Tx` (issue 14, lever A).

For three tx kinds (a ~1 KiB ``anchor.commit``, an ``identity.register``, a
``claims.submit`` as ``medchaind bench --tx-type claims`` builds it) prints, in
microseconds of CPU per tx (best of ``--repeat``):

* ``codec.decode``: the canonical CBOR decode alone;
* ``decode_tx``: the whole boundary decoder (what IPC ``tx_submit`` runs per tx);
* ``submitBatch``: :func:`medchaind.node.rpc.decode_submit_batch` of ``--batch`` txs,
  per tx (what ``tx_submitBatch`` runs after base64);
* ``gossip``: a received tx batch of ``--batch`` txs through
  :meth:`TxGossip.validate` (the libp2p validator) and ``TxGossip._admit`` with a
  mempool stub that accepts everything and no verifier, per tx: the decode work of the
  gossip path and nothing of the mempool's;
* ``signing_payload``: ``decode_tx`` and then the payload the verifier signs over
  (subtract the ``decode_tx`` line for the payload alone).

Uses only the node's public entry points, so the same script measures any revision.
Figures only, nothing asserted.

    .venv/bin/python scripts/tx_decode_cost.py --batch 500 --repeat 9
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

import trio

from medchaind import codec, crypto
from medchaind.consensus.wire import encode_tx_batch
from medchaind.node.rpc import decode_submit_batch
from medchaind.node.txgossip import TxGossip
from medchaind.types import Tx, decode_tx, sign_tx

CHAIN = "medchain-bench"


def make_txs(kind: str, n: int) -> list[Tx]:
    key = crypto.SigningKey.generate()
    if kind == "anchor":
        return [sign_tx(key, CHAIN, "anchor.commit", i, {"digest": crypto.random_bytes(32), "kind": "bench",
                                                          "meta": crypto.random_bytes(1024 - 250)})
                for i in range(n)]
    if kind == "identity":
        return [sign_tx(crypto.SigningKey.generate(), CHAIN, "identity.register", 0,
                        {"role": "patient", "enc_key": crypto.random_bytes(32)}) for _ in range(n)]
    from medchaind.modules.claims.benchkit import Pair, claim, npi, submit_tx

    provider, payer = crypto.KeyPair.generate(), crypto.KeyPair.generate()
    pair = Pair(provider, payer, npi(1000), crypto.random_bytes(32))
    rng = random.Random(0)
    return [submit_tx(pair, CHAIN, 1 + i, claim(pair, i, rng))[0] for i in range(n)]


class _Pool:
    """Mempool stub: holds nothing, admits everything."""

    def __contains__(self, h: object) -> bool:
        return False

    def add(self, tx: Tx) -> bool:
        return True


def _cpu(fn: Callable[[], Any], loops: int) -> float:
    t0 = time.process_time()
    for _ in range(loops):
        fn()
    return (time.process_time() - t0) / loops


def measure(kind: str, gossip: TxGossip, batch_size: int, repeat: int) -> None:
    txs = make_txs(kind, batch_size)
    raws = [t.encoded for t in txs]
    batch = encode_tx_batch(raws)
    arr = codec.encode(raws)
    one = raws[0]
    loops = max(1, 10_000 // batch_size)

    def gossip_path() -> None:
        assert TxGossip.validate(None, batch)  # type: ignore[arg-type]
        trio.run(gossip._admit, batch)

    modes: list[tuple[str, Callable[[], Any], int, int]] = [
        ("codec.decode", lambda: codec.decode(one, max_size=64 * 1024), 5_000, 1),
        ("decode_tx", lambda: decode_tx(one), 5_000, 1),
        ("submitBatch", lambda: decode_submit_batch(arr, None), loops, batch_size),
        ("gossip", gossip_path, loops, batch_size),
        ("signing_payload", lambda: decode_tx(one).signing_payload(), 5_000, 1),
    ]
    sizes = sorted(len(r) for r in raws)
    print(f"{kind}: {len(txs)} txs, {sizes[0]}-{sizes[-1]} bytes")
    for name, fn, n, per in modes:
        best = min(_cpu(fn, n) for _ in range(repeat))
        print(f"  {name:16s} {best * 1e6 / per:7.2f} us CPU per tx")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--kinds", default="anchor,identity,claims")
    a = ap.parse_args()
    gossip = TxGossip.__new__(TxGossip)  # only what _admit reads: no network, no publisher
    gossip.mempool, gossip.verifier, gossip._on_admitted = _Pool(), None, None  # type: ignore[assignment]
    gossip.received = gossip.refused = 0
    for kind in a.kinds.split(","):
        measure(kind, gossip, a.batch, a.repeat)


if __name__ == "__main__":
    main()
