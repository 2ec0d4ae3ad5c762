"""A GRAFT for a topic the router has not joined is ignored, not answered with a PRUNE.

py-libp2p's ``Pubsub.subscribe`` announces a subscription before ``router.join`` creates
the topic's mesh; a peer's GRAFT arriving in between was answered with a PRUNE, after
which the sender backed off this peer for ``prune_back_off`` (60 s) and the two stayed
out of each other's mesh (go-libp2p-pubsub ignores such GRAFTs). Sans-IO: the router's
handler is driven directly, without a host.
"""

from __future__ import annotations

from typing import Any

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from medchaind.net.libp2p_net import _MedchainGossipSub

TOPIC = "medchain/test/1"


def router(monkeypatch: pytest.MonkeyPatch) -> tuple[_MedchainGossipSub, list[tuple[str, ID]]]:
    r = _MedchainGossipSub(on_dropped=lambda rpc, reason: None, on_mesh_change=lambda: None,
                           protocols=[], degree=8, degree_low=6, degree_high=12)
    pruned: list[tuple[str, ID]] = []

    async def emit_prune(topic: str, peer: ID, *args: Any) -> None:
        pruned.append((topic, peer))

    monkeypatch.setattr(r, "emit_prune", emit_prune)
    return r, pruned


def peer() -> ID:
    return ID.from_pubkey(create_new_key_pair().public_key)


async def test_a_graft_for_a_topic_not_joined_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    r, pruned = router(monkeypatch)
    p = peer()
    await r.handle_graft(rpc_pb2.ControlGraft(topicID=TOPIC), p)
    assert pruned == []  # no PRUNE, hence no 60 s back-off at the sender
    assert TOPIC not in r.mesh and not r.back_off.get(TOPIC)


async def test_a_graft_for_a_joined_topic_adds_the_peer_to_the_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    r, pruned = router(monkeypatch)
    r.mesh[TOPIC] = set()  # what router.join leaves
    p = peer()
    await r.handle_graft(rpc_pb2.ControlGraft(topicID=TOPIC), p)
    assert pruned == [] and r.mesh[TOPIC] == {p}
