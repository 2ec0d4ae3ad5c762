#!/usr/bin/env python3
"""CPU per tx of what an entry node does with a submission before admission (issue 14):
frame the request line, parse the JSON, decode the bytes param and the tx, for a batch
of ``--batch`` txs of ``--tx-size`` bytes sent as (a) a JSON-RPC batch of ``tx_submit``
calls (0x-hex per tx), (b) one ``tx_submitBatch`` call (base64 of a CBOR array), and,
for comparison, (c) one call with the same array as 0x-hex. Uses the node's own
functions (``ipc.framing``, ``node.rpc``); prints microseconds of CPU per tx (best of
``--repeat``). Figures only, nothing asserted.

    .venv/bin/python scripts/submit_decode_cost.py --batch 200 --tx-size 1024
"""

from __future__ import annotations

import argparse
import base64
import json
import time

from medchaind import codec, crypto
from medchaind.ipc.framing import JSONStreamDecoder
from medchaind.node.rpc import b64_bytes, decode_submit_batch, hex_bytes
from medchaind.types import decode_tx, sign_tx


def _frame(line: bytes) -> object:
    d = JSONStreamDecoder(64 << 20)
    for i in range(0, len(line), 65536):  # as the server reads: 64 KiB at a time
        d.feed(line[i : i + 65536])
    return d.next_event().value  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--tx-size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    key = crypto.SigningKey.generate()
    txs = [sign_tx(key, "bench", "anchor.commit", n, {"digest": crypto.random_bytes(32), "kind": "bench",
                                                       "meta": crypto.random_bytes(max(0, a.tx_size - 250))})
           for n in range(a.batch)]
    per_tx = json.dumps([{"jsonrpc": "2.0", "id": i, "method": "tx_submit", "params": {"tx": "0x" + t.encoded.hex()}}
                         for i, t in enumerate(txs)]).encode()
    arr = codec.encode([t.encoded for t in txs])
    as_b64 = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tx_submitBatch",
                         "params": {"txs": base64.b64encode(arr).decode()}}).encode()
    as_hex = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"txs": "0x" + arr.hex()}}).encode()

    def old() -> None:
        for r in _frame(per_tx):  # type: ignore[attr-defined]
            decode_tx(hex_bytes(r["params"], "tx", max_size=128 * 1024))

    def new() -> None:
        decode_submit_batch(b64_bytes(_frame(as_b64)["params"], "txs", 8 << 20), None)  # type: ignore[index]

    def hexed() -> None:
        raw = hex_bytes(_frame(as_hex)["params"], "txs", max_size=8 << 20)  # type: ignore[index]
        [decode_tx(x) for x in codec.decode(raw, max_size=8 << 20)]  # type: ignore[union-attr]

    print(f"{a.batch} txs of {len(txs[0].encoded)} bytes; request bytes: tx_submit batch {len(per_tx)}, "
          f"tx_submitBatch {len(as_b64)}, hex array {len(as_hex)}")
    modes = (("tx_submit x N (hex)", old), ("tx_submitBatch (base64 CBOR)", new), ("one call, hex CBOR", hexed))
    for name, fn in modes:
        best = min(_cpu(fn, max(1, 2000 // a.batch)) for _ in range(a.repeat))
        print(f"{name:30s} {best * 1e6 / a.batch:7.1f} us CPU per tx")


def _cpu(fn: object, n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.process_time() - t0) / n


if __name__ == "__main__":
    main()
