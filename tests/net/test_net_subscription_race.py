"""A subscription made while a peer's pubsub stream is being set up still reaches it.

py-libp2p 0.8.1 builds the hello (our subscriptions) once the stream is open, writes it
(a checkpoint) and only then registers the peer; a ``subscribe`` during that write was
in neither the hello nor the announcement to registered peers, so the peer never learnt
of it (a 4-node contract test: two nodes each missing the other's subscription, ~1 run
in 5 under load). ``_MedchainPubsub._handle_new_peer`` re-announces the current set to
that peer when it changed during the set-up. Sans-IO: py-libp2p's set-up is replaced by
a stand-in that registers the peer, with or without a subscription happening meanwhile.
"""

from __future__ import annotations

from typing import Any

import libp2p.pubsub.pubsub as libp2p_pubsub
import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from medchaind.net.libp2p_net import _MedchainPubsub


class Queue:
    def __init__(self) -> None:
        self.pushed: list[rpc_pb2.RPC] = []

    def push(self, rpc: rpc_pb2.RPC) -> bool:
        self.pushed.append(rpc)
        return True


def pubsub(monkeypatch: pytest.MonkeyPatch, topics: list[str], joined_meanwhile: list[str],
           left_meanwhile: list[str]) -> tuple[_MedchainPubsub, ID, Queue]:
    ps = object.__new__(_MedchainPubsub)  # no host, no service: only what the method reads
    ps.subscribed_topics_receive = {t: object() for t in topics}  # type: ignore[assignment]
    ps.peers = {}
    ps.peer_queues = {}
    ps.host = object()  # type: ignore[assignment]
    peer = ID.from_pubkey(create_new_key_pair().public_key)
    queue = Queue()

    async def set_up(self: Pubsub, peer_id: ID) -> None:  # py-libp2p's: hello written, then registered
        for t in joined_meanwhile:
            self.subscribed_topics_receive[t] = object()  # type: ignore[index]
        for t in left_meanwhile:
            del self.subscribed_topics_receive[t]  # type: ignore[arg-type]
        self.peers[peer_id] = object()  # type: ignore[assignment]
        self.peer_queues[peer_id] = queue  # type: ignore[assignment]

    monkeypatch.setattr(Pubsub, "_handle_new_peer", set_up)
    monkeypatch.setattr(libp2p_pubsub, "env_to_send_in_RPC", lambda host: (b"record", False))
    return ps, peer, queue


async def test_subscriptions_that_changed_during_the_set_up_are_announced_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ps, peer, queue = pubsub(monkeypatch, ["a", "b"], joined_meanwhile=["c"], left_meanwhile=["b"])
    await ps._handle_new_peer(peer)
    assert len(queue.pushed) == 1
    rpc = queue.pushed[0]
    assert [(s.subscribe, s.topicid) for s in rpc.subscriptions] == [(True, "a"), (True, "c"), (False, "b")]
    assert rpc.senderRecord == b"record"


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "not-registered"])
async def test_nothing_more_is_sent_when_nothing_changed_or_the_peer_was_not_added(
    monkeypatch: pytest.MonkeyPatch, registered: bool,
) -> None:
    ps, peer, queue = pubsub(monkeypatch, ["a"], joined_meanwhile=[] if registered else ["c"], left_meanwhile=[])
    if not registered:
        real: Any = Pubsub._handle_new_peer

        async def fails(self: Pubsub, peer_id: ID) -> None:
            self.subscribed_topics_receive["c"] = object()  # type: ignore[index]

        monkeypatch.setattr(Pubsub, "_handle_new_peer", fails)
        assert real is not fails
    await ps._handle_new_peer(peer)
    assert queue.pushed == []
