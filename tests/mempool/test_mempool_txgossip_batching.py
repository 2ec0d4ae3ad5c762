"""When TxGossip publishes (node/txgossip.py, issue 14 session 4): a batch smaller than
``MIN_BATCH_TXS`` / ``MIN_BATCH_BYTES`` waits for company until its oldest tx has been
queued ``MAX_BATCH_DELAY``; a batch worth a message goes out after ``BATCH_INTERVAL``;
what a full batch leaves behind follows one interval later. Virtual time
(``autojump_clock``) over a MemoryNetwork with a fixed 1 ms latency; every queued tx
reaches the peer exactly once, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
from mempool_kit import Harness

from medchaind.consensus.wire import decode_tx_batch, tx_topic
from medchaind.net import MemoryNetwork
from medchaind.node import txgossip
from medchaind.node.txgossip import BATCH_INTERVAL, MAX_BATCH_DELAY, MIN_BATCH_TXS, TxGossip
from medchaind.types import Tx

#: slack for the scheduler and the 1 ms link (virtual seconds)
SLACK = 0.01

async def published(txs: list[Tx], feed: Callable[[TxGossip, list[Tx]], Awaitable[None]],
                    ) -> tuple[float, list[tuple[float, list[bytes]]]]:
    """(when the feed began, [(when, encoded txs)] of every batch node a published)."""
    a = Harness()
    hub = MemoryNetwork(seed=5, latency_ms=(1, 1))
    net_a, net_b = hub.endpoint("a"), hub.endpoint("b")
    gossip = TxGossip(net_a, a.pool, a.genesis.chain_id)
    topic = tx_topic(a.genesis.chain_id)
    got: list[tuple[float, list[bytes]]] = []
    async with trio.open_nursery() as nursery:
        for net in (net_a, net_b):
            await nursery.start(net.run)
        await nursery.start(gossip.run)
        inbox = net_b.subscribe(topic, TxGossip.validate)
        await net_a.wait_topic_peers(topic, 1)
        start = trio.current_time()
        nursery.start_soon(feed, gossip, txs)
        with inbox:
            while sum(len(batch) for _, batch in got) < len(txs):
                _peer, data = await inbox.receive()
                got.append((trio.current_time(), decode_tx_batch(data)))
        nursery.cancel_scope.cancel()
    assert [raw for _, batch in got for raw in batch] == [t.encoded for t in txs]  # each once, in order
    return start, got


def txs_of(n: int) -> list[Tx]:
    h = Harness()
    return [h.update("R", nonce=i, tag=f"r{i}") for i in range(1, n + 1)]


async def all_at_once(gossip: TxGossip, txs: list[Tx]) -> None:
    for tx in txs:
        gossip.queue(tx)


async def one_every_10ms(gossip: TxGossip, txs: list[Tx]) -> None:
    for tx in txs:
        gossip.queue(tx)
        await trio.sleep(0.01)


async def test_a_lone_tx_waits_for_company_until_the_delay(autojump_clock: trio.abc.Clock) -> None:
    start, got = await published(txs_of(1), all_at_once)
    [(when, _)] = got
    assert start + MAX_BATCH_DELAY <= when <= start + MAX_BATCH_DELAY + SLACK


async def test_a_trickle_goes_out_as_one_message_per_delay(autojump_clock: trio.abc.Clock) -> None:
    # 15 txs over 150 ms: the old policy sent one message per 50 ms (3-4 messages)
    start, got = await published(txs_of(15), one_every_10ms)
    assert [len(batch) for _, batch in got] == [15]
    assert got[0][0] <= start + MAX_BATCH_DELAY + SLACK


async def test_a_trickle_longer_than_the_delay_is_cut_at_the_delay(autojump_clock: trio.abc.Clock) -> None:
    # 30 txs over 300 ms: the first batch leaves when its oldest tx has waited the delay
    start, got = await published(txs_of(30), one_every_10ms)
    assert len(got) == 2
    first_when, first = got[0]
    assert start + MAX_BATCH_DELAY <= first_when <= start + MAX_BATCH_DELAY + SLACK
    assert len(first) in range(19, 22)  # those queued within the delay


async def test_a_batch_worth_a_message_goes_out_after_one_interval(autojump_clock: trio.abc.Clock) -> None:
    start, got = await published(txs_of(MIN_BATCH_TXS), all_at_once)
    [(when, batch)] = got
    assert len(batch) == MIN_BATCH_TXS
    assert start + BATCH_INTERVAL <= when <= start + BATCH_INTERVAL + SLACK < start + MAX_BATCH_DELAY


async def test_the_rest_of_a_full_batch_follows_without_waiting(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(txgossip, "MAX_TX_BATCH", MIN_BATCH_TXS + 8)
    start, got = await published(txs_of(MIN_BATCH_TXS + 10), all_at_once)
    assert [len(batch) for _, batch in got] == [MIN_BATCH_TXS + 8, 2]
    # the 2 left over are as old as the full batch: one interval later, not the delay
    assert got[1][0] <= got[0][0] + BATCH_INTERVAL + SLACK < start + MAX_BATCH_DELAY
