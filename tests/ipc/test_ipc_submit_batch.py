"""``tx_submitBatch`` and the ``dropped`` status on a real in-process node, over its socket
(issue 14): a batch is one base64 param holding a canonical CBOR array of encoded txs,
admitted through the same path as ``tx_submit`` with per-tx results in order; malformed
or oversize input is one clear error and admits nothing; a tx the mempool lets go is
reported ``dropped`` with its reason by ``tx_status``/``tx_wait``/the ``tx`` topic.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from ipc_harness import RawConn, req
from node_kit import running_node, state_of

from medchaind import codec, crypto
from medchaind.cli.bench import _record_tx
from medchaind.client import AsyncClient, TxDropped
from medchaind.flows import submit_batches
from medchaind.ipc import INTERNAL_ERROR, INVALID_PARAMS
from medchaind.node.node import Node
from medchaind.node.rpc import MAX_BATCH_TXS
from medchaind.types import Tx, sign_tx

WAIT = 30


@pytest.fixture
async def node(short_dir: Path) -> Any:
    async with running_node(short_dir) as n:
        yield n


def _register(node: Node, key: crypto.SigningKey | None = None, nonce: int = 0) -> Tx:
    key = key or crypto.SigningKey.generate()
    return sign_tx(key, node.genesis.chain_id, "identity.register", nonce,
                   {"role": "patient", "enc_key": crypto.random_bytes(32)})


def b64(items: list[Any]) -> str:
    return base64.b64encode(codec.encode(items)).decode()


async def _conn(node: Node) -> RawConn:
    return RawConn(await trio.open_unix_socket(str(node.config.ipc_path)))


async def test_a_batch_is_admitted_in_order_and_commits(node: Node) -> None:
    txs = [_register(node) for _ in range(50)]
    c = await _conn(node)
    reply = await c.call(req("tx_submitBatch", {"txs": b64([t.encoded for t in txs])}))
    assert reply["result"] == [{"hash": "0x" + t.hash.hex(), "ok": True} for t in txs]
    with trio.fail_after(WAIT):
        for t in txs:
            st = (await c.call(req("tx_wait", {"hash": "0x" + t.hash.hex(), "timeout_ms": 20_000})))["result"]
            assert st["status"] == "committed" and st["receipt"]["ok"], st
    # the same batch again: each tx is refused as tx_submit refuses it, in order
    again = (await c.call(req("tx_submitBatch", {"txs": b64([t.encoded for t in txs[:3]])})))["result"]
    assert [(r["ok"], r["code"]) for r in again] == [(False, "already_committed")] * 3
    await c.aclose()


async def test_refusals_are_per_tx_and_do_not_stop_the_batch(node: Node) -> None:
    good, twin = _register(node), _register(node)
    key = crypto.SigningKey.generate()
    same_nonce = [_register(node, key), sign_tx(key, node.genesis.chain_id, "identity.register", 0,
                                                 {"role": "provider", "enc_key": crypto.random_bytes(32)})]
    c = await _conn(node)
    sent = [good, same_nonce[0], same_nonce[1], twin, twin]
    out = (await c.call(req("tx_submitBatch", {"txs": b64([t.encoded for t in sent])})))["result"]
    assert [r["hash"] for r in out] == ["0x" + t.hash.hex() for t in sent]
    assert [r["ok"] for r in out] == [True, True, False, True, True]  # a repeat is not an error (tx_submit)
    assert out[2]["code"] == "nonce_pending" and out[2]["reason"]
    await c.aclose()


async def test_a_bad_signature_is_refused_after_batch_preverification(node: Node) -> None:
    tx = _register(node)
    m = tx.to_map()
    m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    bad = codec.encode(m)
    c = await _conn(node)
    out = (await c.call(req("tx_submitBatch", {"txs": b64([bad, _register(node).encoded])})))["result"]
    assert [(r["ok"], r.get("code")) for r in out] == [(False, "bad_signature"), (True, None)]
    await c.aclose()


async def test_busy_is_reported_per_tx_with_a_retry_hint(short_dir: Path) -> None:
    # busy_txs = 1: the first tx fills the pool up to the backpressure mark
    async with running_node(short_dir, mempool={"busy_txs": 1}) as node:
        txs = [_register(node) for _ in range(3)]
        c = await _conn(node)
        out = (await c.call(req("tx_submitBatch", {"txs": b64([t.encoded for t in txs])})))["result"]
        assert out[0]["ok"] is True
        for r in out[1:]:
            assert (r["ok"], r["code"]) == (False, "busy") and r["retry_after_ms"] > 0
        await c.aclose()


def _hostile() -> list[tuple[str, Any, int, str]]:
    """(case, params from ``good``: a valid tx of the node's chain, error code, message)."""
    return [
        ("not a string", lambda g: {"txs": 42}, INVALID_PARAMS, "txs must be a base64 string"),
        ("hex, not base64", lambda g: {"txs": "0x" + codec.encode([g]).hex()}, INVALID_PARAMS,
         "txs is not valid base64"),
        ("line breaks", lambda g: {"txs": b64([g])[:8] + "\n" + b64([g])[8:]}, INVALID_PARAMS, "not valid base64"),
        ("no padding", lambda g: {"txs": "AA"}, INVALID_PARAMS, "not valid base64"),
        ("non-ASCII", lambda g: {"txs": "é" * 8}, INVALID_PARAMS, "not valid base64"),
        ("empty", lambda g: {"txs": ""}, INVALID_PARAMS, "txs is not one canonical CBOR array"),
        ("not an array", lambda g: {"txs": base64.b64encode(codec.encode(7)).decode()}, INVALID_PARAMS,
         "txs must be a non-empty CBOR array"),
        ("empty array", lambda g: {"txs": b64([])}, INVALID_PARAMS, "txs must be a non-empty CBOR array"),
        ("an item not bytes", lambda g: {"txs": b64([g, 5])}, INVALID_PARAMS, "txs[1] must be a byte string"),
        ("too deep", lambda g: {"txs": b64([g, [[b"x"]]])}, INVALID_PARAMS, "not one canonical CBOR array"),
        ("trailing bytes", lambda g: {"txs": base64.b64encode(codec.encode([g]) + b"\x00").decode()},
         INVALID_PARAMS, "canonical"),
        ("too many txs", lambda g: {"txs": b64([g] * (MAX_BATCH_TXS + 1))}, INVALID_PARAMS,
         f"at most {MAX_BATCH_TXS} per call"),
        ("oversize", lambda g: {"txs": "A" * (12 << 20)}, INVALID_PARAMS, "txs is longer than 8388608 bytes decoded"),
        ("a malformed tx", lambda g: {"txs": b64([g, b"\xa0"])}, -32001, "malformed tx at txs[1]"),
        ("blobs misaligned", lambda g: {"txs": b64([g, g]), "blobs": b64([None])}, INVALID_PARAMS,
         "blobs holds 1 entries for 2 txs"),
        ("a blob not bytes", lambda g: {"txs": b64([g]), "blobs": b64([3])}, INVALID_PARAMS, "blobs[0] must be null"),
        ("blobs not base64", lambda g: {"txs": b64([g]), "blobs": 7}, INVALID_PARAMS, "blobs must be a base64"),
        ("unknown param", lambda g: {"txs": b64([g]), "tx": "0x00"}, INVALID_PARAMS, "unknown param(s) ['tx']"),
        ("positional", lambda g: [b64([g])], INVALID_PARAMS, "params must be an object"),
    ]


@pytest.mark.parametrize(("case", "params", "code", "message"), _hostile(), ids=[h[0] for h in _hostile()])
async def test_malformed_or_oversize_input_is_one_clear_error_and_admits_nothing(
        node: Node, case: str, params: Any, code: int, message: str) -> None:
    good = _register(node)  # valid on its own: a bad batch must not admit it either
    before = state_of(node)
    c = await _conn(node)
    err = (await c.call(req("tx_submitBatch", params(good.encoded))))["error"]
    assert err["code"] != INTERNAL_ERROR
    assert err["code"] == code, (case, err)
    assert message in err["message"], (case, err)
    assert len(err["message"]) < 400
    assert state_of(node) == before
    assert good.hash not in node.mempool
    await c.aclose()


async def test_an_evicted_tx_is_reported_dropped_and_wakes_its_waiters(short_dir: Path) -> None:
    """A pool of 3 held by K's txs stuck behind a nonce gap (K never sends nonce 1): L's
    registration evicts K's highest nonce. The waiter on it wakes with ``dropped``, its
    subscriber hears it, and the client library raises :class:`TxDropped`."""
    async with running_node(short_dir, mempool={"max_txs": 3, "max_per_sender": 3}) as node:
        k = crypto.SigningKey.generate()
        c = await _conn(node)
        reg = _register(node, k)
        assert (await c.call(req("tx_submitBatch", {"txs": b64([reg.encoded])})))["result"][0]["ok"]
        st = await c.call(req("tx_wait", {"hash": "0x" + reg.hash.hex(), "timeout_ms": 20_000}))
        assert st["result"]["status"] == "committed"
        gapped = [sign_tx(k, node.genesis.chain_id, "identity.update", n, {"enc_key": crypto.random_bytes(32)})
                  for n in (2, 3, 4)]
        out = (await c.call(req("tx_submitBatch", {"txs": b64([t.encoded for t in gapped])})))["result"]
        assert [r["ok"] for r in out] == [True, True, True], out
        victim = "0x" + gapped[-1].hash.hex()
        sub = await _conn(node)
        assert "result" in await sub.call(req("subscribe", {"topic": "tx", "hash": victim}))
        waiter = await _conn(node)
        results: dict[str, Any] = {}

        async def wait_raw() -> None:
            results["tx_wait"] = (await waiter.call(req("tx_wait", {"hash": victim, "timeout_ms": 60_000})))["result"]

        async def wait_client() -> None:
            async with AsyncClient(str(node.config.ipc_path)) as cl:
                with pytest.raises(TxDropped) as exc:
                    await cl.wait(victim, timeout_ms=60_000)
                results["client"] = exc.value

        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_raw)
                nursery.start_soon(wait_client)
                await trio.testing.wait_all_tasks_blocked()
                assert gapped[-1].hash in node._tx_waiters  # both waiters are waiting, not polling
                newcomer = _register(node)
                r = (await c.call(req("tx_submitBatch", {"txs": b64([newcomer.encoded])})))["result"]
                assert r == [{"hash": "0x" + newcomer.hash.hex(), "ok": True}]
            note = await sub.read_json()
        assert results["tx_wait"] == {"hash": victim, "status": "dropped", "reason": "evicted"}
        assert (results["client"].tx_hash, results["client"].reason) == (victim, "evicted")
        assert note["params"]["result"]["status"] == "dropped" and note["params"]["result"]["reason"] == "evicted"
        assert note["params"]["result"]["hash"] == victim
        status = (await c.call(req("chain_getTx", {"hash": victim})))["result"]
        assert status == {"hash": victim, "status": "dropped", "reason": "evicted"}
        assert (await c.call(req("mempool_status")))["result"]["evicted"] == 1
        for conn in (c, sub, waiter):
            await conn.aclose()


async def test_client_submit_many_splits_by_the_limits_and_keeps_the_order(node: Node) -> None:
    txs = [_register(node) for _ in range(5)]
    async with AsyncClient(str(node.config.ipc_path)) as cl:
        out = await cl.submit_many(txs)
        assert out == [{"hash": "0x" + t.hash.hex(), "ok": True} for t in txs]
        again = await cl.submit_many([t.encoded for t in txs[:2]])  # bytes work too; already pending
        assert [r["ok"] for r in again] == [True, True]
        with trio.fail_after(WAIT):
            st = await cl.wait(txs[-1].hash, timeout_ms=20_000)
        assert st["status"] == "committed"


@pytest.mark.parametrize(
    ("sizes", "blobs", "calls"),
    [
        ([100] * 5, None, [5]),  # one call
        ([100] * 2500, None, [1000, 1000, 500]),  # the tx count limit
        ([60_000] * 300, None, [139, 139, 22]),  # the byte limit: 8 MiB / (60,000 + 9)
        ([100] * 5, [b"x" * (4 << 20)] * 4 + [None], [2, 3]),  # the blobs' byte limit: 12 MiB per call
    ],
)
def test_submit_batches_splits_by_count_and_bytes(sizes: list[int], blobs: list[bytes | None] | None,
                                                  calls: list[int]) -> None:
    raws = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    params = submit_batches(raws, blobs)
    decoded = [codec.decode(base64.b64decode(p["txs"]), max_size=1 << 24) for p in params]
    assert [len(d) for d in decoded] == calls
    assert [x for d in decoded for x in d] == raws  # every tx once, in order
    if blobs is not None:
        got = [x for p in params for x in codec.decode(base64.b64decode(p["blobs"]), max_size=1 << 24)]
        assert got == blobs
    for p in params:
        assert len(base64.b64decode(p["txs"])) <= 8 << 20


def test_submit_batches_refuses_misaligned_blobs() -> None:
    with pytest.raises(ValueError, match="2 blobs for 1 txs"):
        submit_batches([b"x"], [None, None])


async def test_sidecars_ride_along_aligned_by_index(node: Node) -> None:
    patient = crypto.KeyPair.generate()
    reg = sign_tx(patient.signing, node.genesis.chain_id, "identity.register", 0,
                  {"role": "patient", "enc_key": patient.encryption.public_key})
    (rec, blob), (other, other_blob) = (_record_tx(patient, node.genesis.chain_id, n, 600) for n in (1, 2))
    c = await _conn(node)
    txs = [reg, rec, other]
    params = {"txs": b64([t.encoded for t in txs]), "blobs": b64([None, blob, blob])}  # the third: not its blob
    out = (await c.call(req("tx_submitBatch", params)))["result"]
    assert [(r["ok"], r.get("code")) for r in out] == [(True, None), (True, None), (False, "blob_mismatch")]
    with trio.fail_after(WAIT):
        st = await c.call(req("tx_wait", {"hash": "0x" + rec.hash.hex(), "timeout_ms": 20_000}))
    assert st["result"]["status"] == "committed" and st["result"]["receipt"]["ok"]
    assert node.blob_store.has_blob(crypto.sha256(blob))
    assert not node.blob_store.has_blob(crypto.sha256(other_blob))
    await c.aclose()


async def test_a_refused_tx_leaves_no_sidecar_on_disk(node: Node) -> None:
    """The sidecar is written only for a tx that passed every admission check (the tx
    is held, not proposable, until its file is durable): a refusal leaves nothing."""
    stranger = crypto.KeyPair.generate()  # never registered: its record is refused by check_tx
    (rec, blob), (single, single_blob) = (_record_tx(stranger, node.genesis.chain_id, n, 600) for n in (0, 1))
    c = await _conn(node)
    out = (await c.call(req("tx_submitBatch", {"txs": b64([rec.encoded]), "blobs": b64([blob])})))["result"]
    assert out[0]["ok"] is False and out[0]["code"] not in ("blob_mismatch", "busy")
    one = await c.call(req("tx_submit", {"tx": "0x" + single.encoded.hex(), "blob": "0x" + single_blob.hex()}))
    assert "error" in one
    assert list(node.blob_store.entries()) == []  # neither blob, nor a temp file
    await c.aclose()
