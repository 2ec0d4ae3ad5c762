"""Signed peer records in pubsub RPCs, checked once per record (net/libp2p_net.py
``_PeerRecords``, issue 14 session 4): py-libp2p's own check runs on the first copy of a
peer's record and on anything that differs or failed; an identical record from the same
peer is accepted again without it until ``PEER_RECORD_RECHECK_S`` has passed. Real
envelopes, real Ed25519, a real PeerStore.
"""

from __future__ import annotations

from typing import Any

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
import multiaddr  # type: ignore[import-untyped]
import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore, create_signed_peer_record
from libp2p.pubsub.pb import rpc_pb2

from medchaind.net import libp2p_net


class Host:
    """What the record functions use of a host: its peerstore, id and listen addresses."""

    def __init__(self) -> None:
        self.key = create_new_key_pair()
        self.store = PeerStore()
        self.addrs = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/31190")]

    def get_peerstore(self) -> PeerStore:
        return self.store

    def get_id(self) -> ID:
        return ID.from_pubkey(self.key.public_key)

    def get_addrs(self) -> list[Any]:
        return list(self.addrs)

    def get_private_key(self) -> Any:
        return self.key.private_key


def record_of(peer: Host, port: int = 31191) -> bytes:
    addr = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")
    return bytes(create_signed_peer_record(peer.get_id(), [addr], peer.key.private_key).marshal_envelope())


def rpc_with(record: bytes) -> rpc_pb2.RPC:
    rpc = rpc_pb2.RPC()
    rpc.senderRecord = record
    return rpc


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The records py-libp2p's own check was run on."""
    seen: list[bytes] = []
    inner = libp2p_net._consume_signed_record

    def counting(msg: rpc_pb2.RPC, host: Any, peer_id: ID) -> bool:
        seen.append(bytes(msg.senderRecord))
        return bool(inner(msg, host, peer_id))

    monkeypatch.setattr(libp2p_net, "_consume_signed_record", counting)
    return seen


def test_the_patches_apply() -> None:
    for module in (libp2p_pubsub, libp2p_gossipsub):
        assert module.maybe_consume_signed_record is libp2p_net._consume_signed_record_once
        assert module.env_to_send_in_RPC is libp2p_net._env_to_send_once


def test_a_record_is_checked_once_per_peer_until_it_changes(checks: list[bytes]) -> None:
    me, peer, other = Host(), Host(), Host()
    good = record_of(peer)
    for _ in range(3):  # every RPC carries it; py-libp2p checks each one twice
        assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    assert checks == [good]
    assert me.store.get_peer_record(peer.get_id()) is not None  # consumed for real the first time
    # the same bytes from another peer are that peer's claim: checked (and refused: not its id)
    assert not libp2p_net._consume_signed_record_once(rpc_with(good), me, other.get_id())  # type: ignore[arg-type]
    # a new record of the peer (its addresses changed) is checked again
    newer = record_of(peer, port=31192)
    assert libp2p_net._consume_signed_record_once(rpc_with(newer), me, peer.get_id())  # type: ignore[arg-type]
    assert checks == [good, good, newer]
    # an RPC without a record is accepted, as py-libp2p accepts it
    assert libp2p_net._consume_signed_record_once(rpc_pb2.RPC(), me, peer.get_id())  # type: ignore[arg-type]


def test_a_bad_record_is_refused_every_time(checks: list[bytes]) -> None:
    me, peer = Host(), Host()
    good = record_of(peer)
    forged = bytearray(good)
    forged[-1] ^= 1  # the signature's last byte
    for _ in range(2):
        assert not libp2p_net._consume_signed_record_once(rpc_with(bytes(forged)), me, peer.get_id())  # type: ignore[arg-type]
    assert checks == [bytes(forged)] * 2
    # a good record accepted earlier does not let a forged one through either
    assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    assert not libp2p_net._consume_signed_record_once(rpc_with(bytes(forged)), me, peer.get_id())  # type: ignore[arg-type]
    # ... and after a failure the good one is checked again
    assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    assert checks == [bytes(forged)] * 2 + [good, bytes(forged), good]


def test_a_record_is_checked_again_after_the_recheck_interval(
    checks: list[bytes], monkeypatch: pytest.MonkeyPatch,
) -> None:
    me, peer = Host(), Host()
    good = record_of(peer)
    now = [1000.0]
    monkeypatch.setattr(libp2p_net.time, "monotonic", lambda: now[0])
    assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    now[0] += libp2p_net.PEER_RECORD_RECHECK_S - 1
    assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    now[0] += 2  # renews the addresses' TTL in the peerstore
    assert libp2p_net._consume_signed_record_once(rpc_with(good), me, peer.get_id())  # type: ignore[arg-type]
    assert checks == [good, good]


def test_the_outgoing_record_is_built_once_per_address_set(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    clock = [1000.0]
    monkeypatch.setattr(libp2p_net.time, "monotonic", lambda: clock[0])
    first, created = libp2p_net._env_to_send_once(host)  # type: ignore[arg-type]
    assert created and first
    again, created = libp2p_net._env_to_send_once(host)  # type: ignore[arg-type]
    assert again == first and not created
    assert again == libp2p_net._env_to_send(host)[0]  # what py-libp2p would send: the same bytes
    host.addrs.append(multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/31193"))  # a new listen address
    asked: list[int] = []
    real_get_addrs = host.get_addrs
    host.get_addrs = lambda: asked.append(1) or real_get_addrs()  # type: ignore[method-assign]
    clock[0] += libp2p_net.OUTGOING_ADDRS_RECHECK_S / 2
    assert libp2p_net._env_to_send_once(host) == (first, False)  # type: ignore[arg-type]
    assert asked == []  # the addresses are not read again within the recheck interval
    clock[0] += libp2p_net.OUTGOING_ADDRS_RECHECK_S
    changed, created = libp2p_net._env_to_send_once(host)  # type: ignore[arg-type]
    assert asked  # read again after it
    assert created and changed != first
    # the new record names the new address set and verifies
    other = Host()
    assert libp2p_net._consume_signed_record_once(rpc_with(changed), other, host.get_id())  # type: ignore[arg-type]
