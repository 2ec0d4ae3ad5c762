"""The real network: :class:`Libp2pNetwork`, py-libp2p 0.8.1 behind :class:`NetworkAPI`.

Theory of operation
-------------------
**Stack.** TCP, Noise (only: py-libp2p's default also offers TLS, SECIO and *plaintext*),
Yamux (only), optionally a private-network PSK layer under the security handshake. The
node's identity is its Ed25519 key, so its peer id derives from the same key as its
consensus identity (:func:`peer_id_from_public_key` maps a genesis public key to a peer
id). One connection per peer (``max_connections_per_peer=1``: higher values made
``host.connect`` wait ~250 ms per dial, DESIGN.md §5).

**Permissioning.** With an allowlist, the Noise transport is wrapped by
:class:`_AllowlistSecurity`: right after the handshake authenticates the remote peer id,
a peer not on the list is refused (the secured connection is closed and the upgrade
fails), inbound and outbound alike, before any stream, gossip or identify traffic.
Requests to peers off the list fail without dialling. :meth:`Libp2pNetwork.set_allowlist`
changes the list at run time (governance) and disconnects peers that fell off it.

**One key, one running node** (issue 9). A second process holding this node's key (a
restored backup beside its original, a copied datadir) must not sign beside it, and the
network is where it shows first. A connection, inbound or outbound, whose handshake
authenticates *our own* peer id is refused, and when it does not come from this very
process it is reported: counted in ``identity_conflicts``, logged at ERROR, and passed to
``on_identity_conflict`` (the node wires it to the consensus engine's
``report_key_elsewhere``, which stops signing). Two other sightings count the same way:

* a bootstrap entry carrying our own peer id at an address other than our listen
  addresses (a shared bootstrap list, a datadir moved to a new host with its config) is
  *probed*: dialled and handshaken like a peer (:meth:`Libp2pNetwork._probe_own_address`)
  every ``self_probe_interval_s``, every ``self_probe_repeat_s`` while someone answers
  there with our key, so the report keeps coming for as long as the other copy runs;
* a gossip message signed with our key that reached us from a peer, i.e. that this
  process did not publish (py-libp2p drops it after validation, silently). For
  ``self_echo_grace_s`` after start this is not reported: a peer's gossip cache can still
  offer a message of this node's previous run.

"This very process" is told by the Noise static key: it is made fresh for every network
instance, so by every process (:meth:`_build_host`), and both sides' are exchanged in the
handshake, so a probe that lands on our own listener (``0.0.0.0`` reached through an
interface address) sees its own Noise key and stops probing that address quietly. No
connection to our own peer id is ever kept. Another node cannot tell two processes with
one key apart (the gossip of one never reaches the other: gossipsub does not forward a
message to its origin's peer id), so the check runs where the key is.

**Gossip** runs gossipsub ``/meshsub/1.1.0`` (1.2.0 roughly doubled CPU per message,
DESIGN.md §5) with py-libp2p's defaults overridden where they lose messages or leak:

* spam protection off: its default (10 msgs/s per topic, the node's own publications
  included) silently discards everything above that rate (``GossipSub.__init__``
  ``spam_protection_enabled``, ``_check_spam_protection``);
* adaptive gossip off: below a "health" score it sets ``heartbeat_interval`` to at least
  30 s (``_adapt_heartbeat_parameters``), and a 4-node network never looks healthy
  against a degree of 6+; eclipse protection (IP diversity) off: all peers are known;
* per-peer outbound RPC queue enlarged from 32 (``rpc_queue.OutBoundQueueSize``, bound as
  a *default argument* of ``RpcQueue.__init__`` so patching the constant does nothing) via
  :class:`_SizedQueues`, a ``pubsub.peer_queues`` dict that sizes each queue as
  ``Pubsub._handle_new_peer`` inserts it; its ``max_message_size`` (1 MiB default) is
  raised to fit ``max_gossip_size``;
* the subscription channel enlarged from 32 (``pubsub.SUBSCRIPTION_CHANNEL_SIZE``, a
  module constant read at every ``subscribe()``): :func:`_raise_subscription_channel_size`
  raises it (never lowers it) process-wide when a network is constructed, and every
  subscription checks the size it got;
* message id = SHA-256 of the data (32 raw bytes), so the same bytes published by two
  nodes are one message network-wide and another implementation can match it
  (py-libp2p's default is the sender's peer-id bytes followed by the seqno);
* messages are signed (strict signing), so the origin passed to validators and
  consumers is authenticated; our own publications, which ``Pubsub.push_msg`` also
  delivers to our own subscription, are filtered out;
* ``_MedchainGossipSub`` counts dropped outbound publications, and disables two
  unbounded structures: ``equivocation_detection`` (every message ever seen, data
  included, keyed by sender and seqno, never pruned) and ``recent_message_deliveries``
  (one float per message, pruned only by adaptive gossip);
* ``publish`` applies soft back-pressure: while a peer's outbound queue is more than half
  full it waits (up to ``Libp2pTuning.publish_backpressure_s``) instead of letting the
  queue overflow;
* gossipsub's message cache is keyed by the message id (:class:`_ContentMessageCache`;
  py-libp2p keys it by ``from || seqno`` whatever the id function, so IWANTs for our ids
  went unserved and heartbeat IHAVEs advertised ids nobody had seen);
* a received message's id is computed once, and a copy of a message already seen is
  recognised by its signature without hashing its data (:class:`_MedchainPubsub`);
  what arrives, duplicates included, is counted per topic (``NetStats.wire_received``,
  ``wire_bytes``, ``duplicates``);
* bulk-topic messages (tx batches) that we forward are announced with IHAVE instead of
  pushed (``_MedchainGossipSub._announce``, ``Libp2pTuning.lazy_bulk_forwarding``): on
  the authorities' full mesh 2 of every 3 copies a node received were duplicates; a peer
  that lacks one asks with IWANT (py-libp2p's IHAVE/IWANT rate limits, 10 per second,
  are raised to ``max_ihave_iwant_per_s``). Our own publications are pushed as before;
* yamux receive credit is given as go-yamux gives it, once half the window has been read
  (:func:`~medchaind.net.libp2p_yamux.credit_after_half_window`), not after every read
  (py-libp2p 0.8.1 sent a WINDOW_UPDATE frame per read, even per byte of a varint length
  prefix).

A dedicated task per topic drains the libp2p subscription into the consumer's bounded
channel (:class:`~medchaind.net.shared.Subscription`), counting what overflows. When the
consumer closes its channel, delivery stops but the node stays in the topic's mesh
(still validating with the last validator and forwarding), so a later ``subscribe`` of
the same topic simply installs a new channel and validator.

**Request/response.** Each protocol ``name`` is the libp2p protocol
``/medchain/<chain_id>/<name>``, one request per stream. Frames: the request is
``uvarint(len) || bytes``; the response is ``status (1 byte: 0 ok, 1 error, 2 too large)
|| uvarint(len) || bytes`` (an error's bytes are a UTF-8 message). The server admits a
stream before it reads anything from it (:class:`~medchaind.net.shared.InboundRequests`:
at most ``max_inbound_requests`` in progress, ``max_inbound_requests_per_peer`` from one
peer; beyond that the stream gets a "busy" error, unread), then reads the length and
refuses a request above *its protocol's* limit (``NetLimits.request_limit``: 256 bytes
for ``sync/1``, not the 64 MiB a response may have) without reading the body. What a
peer can make us read is therefore bounded by the request limits times the admitted
streams. (py-libp2p's yamux still buffers up to its receive window, 256 KiB, of a
stream we do not read.) The requester therefore reads the response while it writes the
request (:meth:`Libp2pNetwork._exchange`): a refusal ends the writing.

**The muxer** is :class:`~medchaind.net.libp2p_yamux.MedchainYamux`: py-libp2p's yamux,
except that its read loop never waits for a write. The stock read loop awaited the
connection's write lock to ACK each inbound stream and answer each ping, so two peers whose
send buffers were both full stopped reading for good: a node that fell behind in a burst
stayed behind (issue 14). A connection whose writes make no progress for 30 s is closed,
and the loop below redials it.

**Connectivity.** Bootstrap peers are dialled at start and, while disconnected, redialled
with exponential backoff (``reconnect_initial_s`` doubling to ``reconnect_max_s``). The
swarm's own auto-connector is disabled (:class:`_NoAutoConnector`): it dials every
peerstore entry towards a target of 150 connections and logs each cycle; reconnection
policy has one owner, this module. The swarm's 60 s negative dial cache is cleared before
each bootstrap dial (``Swarm.unblock_peer``), otherwise a restarted peer could not be
redialled for a minute. When two nodes list each other, the one with the larger peer id
waits ``dial_yield_s`` before dialling, so they do not keep two connections (py-libp2p
trims surplus connections only after a 20 s grace period and only when yet another one
arrives). Connects and disconnects are logged at INFO. The resource manager is built
without its circuit breaker (five failures would deny every connection and stream for
60 s) and without "graceful degradation" (it shrinks limits under load).

**Listening is ours alone, or the node does not start.** py-libp2p 0.8 opens its TCP
listeners with ``SO_REUSEPORT`` (for hole punching, ``transport/tcp/tcp.py``
``_set_reuse_flags``), so a second node started on the same port also binds, both
LISTEN and the kernel splits inbound connections between them; and when another program
holds the port, ``Swarm.listen`` only logs the Errno 98, ``host.run`` ignores its
result and the node carried on with no listener at all. So this module (a) sets
``SO_REUSEADDR`` only on py-libp2p's listen sockets (we use no hole punching), which makes
any second bind of the port fail, and (b) after ``host.run`` checks that every configured
address has its listener, raising :class:`~medchaind.errors.ConfigError`
(``p2p.listen /ip4/…/tcp/26656: Address already in use …``) otherwise, as the metrics
port does. Port 0 (tests) always binds.

**Private network.** ``psk`` (32 bytes) enables py-libp2p's pnet layer
(``security/pnet/psk_conn.py``: Salsa20, 8-byte nonce). A peer with another key or none
does not get refused cleanly: both sides read ciphertext as multistream-select and the
dial stalls until a timeout. Note that go-libp2p's pnet uses a 24-byte (XSalsa20) nonce,
so this layer is not expected to interoperate with it.

**Shutdown.** py-libp2p's services run under a shield inside :meth:`Libp2pNetwork._serve`:
if they were cancelled together with ``run()``, their tasks would abort connection closes
half-way (sockets left open, the remote side still "connected"). Cancelling ``run()`` only
sets an event; ``_serve`` then stops our own tasks, disconnects every peer *first*
(stopping gossipsub with live peers raised "Nursery is closed to new arrivals"), stops
gossipsub, pubsub and the host, and joins the seen-cache's sweeper thread (which
py-libp2p never stops), all within ``2 * shutdown_timeout_s``.

**Whole messages, contained failures** (:class:`_MedchainPubsub`). py-libp2p's yamux
stream takes its write lock per *frame*, not per ``write()``, and gossipsub writes to a
peer's stream from several tasks (its per-peer queue, pending-message flushes, replies to
IWANT). Two messages larger than the send window then interleave on the wire and the
peer reads garbage: ``google.protobuf.message.DecodeError`` in ``continuously_read_stream``,
which ``Pubsub.stream_handler`` does not catch, so it killed the connection's swarm task
and with it the node (seen under the records bench; earlier logged as "yamux expected
65535 bytes but received 65481" on the other side). ``write_msg`` therefore holds a
per-stream lock for the whole message, and ``stream_handler`` turns any failure of one
peer's stream (a malformed RPC from a buggy or hostile peer included) into a reset of
that stream and a disconnect of that peer (the bootstrap loops reconnect), never an
exception out of the swarm.

Logging: ``import libp2p`` sets the ``libp2p`` logger to ``propagate=False``; this module
sets it back so libp2p's warnings reach the node's handlers, minus two ERROR records for
expected failures that this module reports itself (:class:`_ExpectedFailureFilter`).
libp2p's Prometheus metrics (a global registry) are never enabled.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import random
import socket
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import libp2p  # noqa: F401  (import first: it configures the "libp2p" logger, see below)

logging.getLogger("libp2p").propagate = True

import libp2p.pubsub.gossipsub as _libp2p_gossipsub  # noqa: E402
import libp2p.pubsub.pubsub as _libp2p_pubsub  # noqa: E402
import libp2p.transport.tcp.tcp as _libp2p_tcp  # noqa: E402
import multiaddr  # type: ignore[import-untyped]  # noqa: E402
import trio  # noqa: E402
from libp2p import new_host  # noqa: E402
from libp2p.abc import (  # noqa: E402
    IHost,
    INetConn,
    INetStream,
    INetwork,
    INotifee,
    IRawConnection,
    ISecureConn,
    ISecureTransport,
)
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair  # noqa: E402
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.host.exceptions import StreamFailure  # noqa: E402
from libp2p.network.auto_connector import AutoConnector  # noqa: E402
from libp2p.network.config import ConnectionConfig  # noqa: E402
from libp2p.network.swarm import Swarm  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr  # noqa: E402
from libp2p.peer.peerstore import env_to_send_in_RPC  # noqa: E402
from libp2p.protocol_muxer.exceptions import ProtocolNotSupportedError  # noqa: E402
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub  # noqa: E402
from libp2p.pubsub.mcache import CacheEntry, MessageCache  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402
from libp2p.pubsub.pubsub import Pubsub  # noqa: E402
from libp2p.pubsub.rpc_queue import RpcQueue  # noqa: E402
from libp2p.pubsub.utils import maybe_consume_signed_record  # noqa: E402
from libp2p.rcmgr import new_resource_manager  # noqa: E402
from libp2p.security.exceptions import HandshakeFailure  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID  # noqa: E402
from libp2p.security.noise.transport import Transport as NoiseTransport  # noqa: E402
from libp2p.security.pnet.protector import new_protected_conn  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID  # noqa: E402
from libp2p.tools.anyio_service import background_trio_service  # noqa: E402
from libp2p.utils.varint import encode_uvarint  # noqa: E402

from ..errors import ConfigError  # noqa: E402
from .api import (  # noqa: E402
    Handler,
    MessageTooLarge,
    NetLimits,
    NetStats,
    NetworkAPI,
    NetworkError,
    NotRunning,
    PeerId,
    PeerUnreachable,
    RemoteError,
    RequestTimeout,
    Validator,
    check_name,
)
from .libp2p_yamux import MedchainYamux  # noqa: E402
from .shared import (  # noqa: E402
    STATUS_OK,
    STATUS_TOO_LARGE,
    Counters,
    InboundRequests,
    Subscription,
    check_error_size,
    refuse,
    serve_request,
    too_large,
)

if TYPE_CHECKING:  # trio-typing's stubs (a libp2p dependency) shadow trio's own types
    from trio_typing import TaskStatus
else:
    from trio import TaskStatus

log = logging.getLogger(__name__)


class _ExpectedFailureFilter(logging.Filter):
    """Drops py-libp2p ERROR records for failures this module expects, handles and logs.

    A peer that is down makes every redial log "Failed to open TCP stream" at ERROR
    (``transport/tcp/tcp.py``), and a request for a protocol the peer does not serve logs
    a multi-line ERROR (``host/basic_host.py``), as does a stream to a peer that just went
    away (a failed multistream handshake, also logged by ``multiselect_client``); the
    bootstrap loop and ``request`` report these at the right level. A connection our
    allowlist refuses makes the swarm log "failed to upgrade security" at ERROR
    (``network/swarm.py``); the refusal itself is logged by this module. They are kept when libp2p debug logging is on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or logging.getLogger("libp2p").isEnabledFor(logging.DEBUG):
            return True
        text = str(record.msg)
        if text.startswith("Failed to open TCP stream:"):
            return False
        if text.startswith("failed to upgrade security for peer") and "handshake failed" in text:
            return False
        if text.startswith("MultiselectClient handshake:"):  # the peer went away; request() reports it
            return False
        return not (
            text.startswith("Failed to open stream to peer") and ("not supported" in text or "handshake" in text)
        )


logging.getLogger("libp2p.transport.tcp.tcp").addFilter(_ExpectedFailureFilter())
logging.getLogger("libp2p.host.basic_host").addFilter(_ExpectedFailureFilter())
logging.getLogger("libp2p.network.swarm").addFilter(_ExpectedFailureFilter())
logging.getLogger("libp2p.protocol_muxer.multiselect_client").addFilter(_ExpectedFailureFilter())

def _listen_socket_flags(sock: Any) -> None:
    """py-libp2p's ``_set_reuse_flags`` minus ``SO_REUSEPORT`` (see "Listening" in the module doc).

    ``SO_REUSEADDR`` stays: a restarted node must rebind while its old connections sit in
    TIME_WAIT. Without ``SO_REUSEPORT`` a port that any other socket listens on fails to
    bind (EADDRINUSE), which :meth:`Libp2pNetwork._listening_error` turns into a startup error.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


if hasattr(_libp2p_tcp, "_set_reuse_flags"):  # tests/net/test_net_listen.py fails if this stops applying
    _libp2p_tcp._set_reuse_flags = _listen_socket_flags


#: a peer's signed peer record that verified is taken again without checks for this long
#: (seconds); then it is consumed again, which also renews its addresses' 2-hour TTL
PEER_RECORD_RECHECK_S = 60.0
#: the listen addresses in the outgoing peer record are read again at most this often (seconds)
OUTGOING_ADDRS_RECHECK_S = 5.0


class _PeerRecords:
    """What py-libp2p 0.8.1's pubsub does with signed peer records, once per record.

    Every pubsub RPC carries the sender's signed peer record (``senderRecord``: an
    Ed25519-signed envelope of its peer id and addresses), and every RPC received is
    checked twice (``Pubsub.continuously_read_stream`` and ``GossipSub.handle_rpc`` each
    call ``maybe_consume_signed_record``): decode the envelope, verify its signature,
    replace the peer's addresses in the peerstore. Sending rebuilt the local record's
    address set and re-serialised the envelope for every RPC. With the bulk of a node's
    RPCs small (votes, IHAVE/IWANT, light-load tx batches) that was ~13% of py-libp2p's
    CPU per message in a 4-node gossip micro-bench, 2 of the 3 signature checks per
    received message (docs/benchmarks.md, "Issue 14, session 4").

    The record a peer sends is the same bytes until its addresses change, and the check
    is a pure function of those bytes and the peer id they came from, so a record that
    verified from that peer is accepted again without checks for ``PEER_RECORD_RECHECK_S``;
    different bytes, or a record that failed, go through py-libp2p's check every time.
    The outgoing envelope is serialised once per local record and address set, and the
    address set is read at most every ``OUTGOING_ADDRS_RECHECK_S``: ``host.get_addrs()``
    builds a Multiaddr per listener (a base58 peer id decoded each time), ~4% of the
    event loop's busy time on a 4-authority network deciding empty blocks as fast as it
    can (issue 14, session 6), and listen addresses change only when the node starts.
    Kept per
    host (a WeakKeyDictionary keyed by the host: nothing outlives its node); peer records
    play no part in who may connect (the allowlist checks the Noise-authenticated peer id).
    """

    def __init__(self) -> None:
        self.accepted: dict[ID, tuple[bytes, float]] = {}
        #: (local record, listen addresses, envelope, when the addresses were last read)
        self.outgoing: tuple[object, frozenset[Any], bytes, float] | None = None


_peer_records: weakref.WeakKeyDictionary[IHost, _PeerRecords] = weakref.WeakKeyDictionary()
_consume_signed_record = maybe_consume_signed_record
_env_to_send = env_to_send_in_RPC


def _records_of(host: IHost) -> _PeerRecords:
    records = _peer_records.get(host)
    if records is None:
        records = _peer_records[host] = _PeerRecords()
    return records


def _consume_signed_record_once(msg: rpc_pb2.RPC, host: IHost, peer_id: ID) -> bool:
    if not msg.HasField("senderRecord"):
        return True
    records = _records_of(host)
    raw = msg.senderRecord
    now = time.monotonic()
    known = records.accepted.get(peer_id)
    if known is not None and known[0] == raw and now - known[1] < PEER_RECORD_RECHECK_S:
        return True
    ok = bool(_consume_signed_record(msg, host, peer_id))
    if ok:
        records.accepted[peer_id] = (raw, now)
    else:
        records.accepted.pop(peer_id, None)
    return ok


def _env_to_send_once(host: IHost) -> tuple[bytes, bool]:
    records = _records_of(host)
    local = host.get_peerstore().get_local_record()
    cached = records.outgoing if local is not None else None
    if cached is not None and cached[0] is not local:
        cached = None  # built for another local record
    now = time.monotonic()
    # the listen addresses are asked for at most every OUTGOING_ADDRS_RECHECK_S
    if cached is not None and now - cached[3] < OUTGOING_ADDRS_RECHECK_S:
        return cached[2], False
    addrs = frozenset(host.get_addrs())
    if cached is not None and cached[1] == addrs:
        records.outgoing = (local, addrs, cached[2], now)
        return cached[2], False
    raw, created = _env_to_send(host)
    records.outgoing = (host.get_peerstore().get_local_record(), addrs, raw, now)
    return raw, created


# tests/net/test_net_peer_records.py checks that these apply
for _module in (_libp2p_pubsub, _libp2p_gossipsub):
    if hasattr(_module, "maybe_consume_signed_record"):
        _module.maybe_consume_signed_record = _consume_signed_record_once  # type: ignore[attr-defined]
    if hasattr(_module, "env_to_send_in_RPC"):
        _module.env_to_send_in_RPC = _env_to_send_once  # type: ignore[attr-defined]


def _probe_listen(maddr: multiaddr.Multiaddr) -> OSError | None:
    """Why binding ``maddr`` (``/ip4|ip6/<addr>/tcp/<port>``) fails now, or None.

    Binds a plain socket with SO_REUSEADDR and without SO_REUSEPORT, so that a socket
    listening on that port -- with SO_REUSEPORT or not -- makes it fail.
    """
    try:
        port = int(maddr.value_for_protocol("tcp"))
    except Exception:
        return None
    for proto, family in (("ip4", socket.AF_INET), ("ip6", socket.AF_INET6)):
        try:
            host = maddr.value_for_protocol(proto)
        except Exception:
            continue
        if host is None or port == 0:
            return None
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                return exc
        return None
    return None


#: content hashes of this process's own publications kept to recognise them when a peer
#: echoes one after the seen cache forgot it (~100 bytes each)
OWN_PUBLISHED_KEPT = 65_536

# Room for the RPC envelope around one gossip message (topic, seqno, from, signature,
# public key, sender record): generous, the limit guards memory, not exact framing.
_RPC_OVERHEAD = 64 * 1024
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True, slots=True)
class Libp2pTuning:
    """Knobs with safe defaults; change them only with a measurement in hand."""

    mesh_degree: int = 8
    mesh_degree_low: int = 6
    mesh_degree_high: int = 12
    heartbeat_interval_s: int = 1
    outbound_queue_size: int = 8192
    subscription_channel_size: int = 8192
    publish_backpressure_s: float = 1.0
    dial_timeout_s: float = 5.0
    dial_yield_s: float = 0.5
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 10.0
    request_read_timeout_s: float = 30.0
    startup_timeout_s: float = 30.0
    shutdown_timeout_s: float = 5.0
    max_connections: int = 256
    #: a bootstrap address with our own peer id is probed this often (see "One key")...
    self_probe_interval_s: float = 10.0
    #: ...and this often while another process answers there with our key
    self_probe_repeat_s: float = 1.0
    #: after start, gossip signed with our key may still be our previous run's
    self_echo_grace_s: float = 10.0
    #: forward bulk-topic messages (tx batches) as IHAVE announcements, not copies
    #: (``_MedchainGossipSub._announce``); our own publications are always pushed
    lazy_bulk_forwarding: bool = True
    #: IHAVE (per peer and topic) and IWANT (per peer) messages accepted per second
    max_ihave_iwant_per_s: float = 1000.0


def peer_id_from_public_key(ed25519_pub: bytes) -> PeerId:
    """The libp2p peer id of the node whose Ed25519 public key is ``ed25519_pub``.

    Authorities' peer ids therefore follow from the genesis public keys: a peer id is the
    identity multihash of the protobuf-encoded public key, base58 (``12D3KooW...``).
    """
    if len(ed25519_pub) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(ed25519_pub)}")
    return PeerId(ID.from_pubkey(Ed25519PublicKey.from_bytes(ed25519_pub)).to_base58())


def content_message_id(msg: rpc_pb2.Message) -> bytes:
    """Gossip message id: the 32-byte SHA-256 digest of the message data."""
    return hashlib.sha256(msg.data).digest()


def _raise_subscription_channel_size(size: int) -> None:
    """Raise (never lower) py-libp2p's module-level subscription channel size."""
    if _libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE < size:
        _libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE = size


class _SizedQueues(dict[ID, RpcQueue]):
    """``Pubsub.peer_queues`` that sizes every per-peer outbound queue as it is inserted.

    ``Pubsub._handle_new_peer`` builds each queue with ``RpcQueue()`` defaults (32 RPCs,
    1 MiB) and stores it here before its sending task starts, so adjusting it in
    ``__setitem__`` is race-free and affects only this node.
    """

    def __init__(self, max_size: int, max_message_size: int) -> None:
        super().__init__()
        self._max_size = max_size
        self._max_message_size = max_message_size

    def __setitem__(self, peer: ID, queue: RpcQueue) -> None:
        queue._queue.max_size = self._max_size
        queue.max_message_size = self._max_message_size
        super().__setitem__(peer, queue)


#: signatures of recently seen gossip messages kept to drop duplicates without hashing them
SEEN_SIGNATURES_KEPT = 8192


class _MedchainPubsub(Pubsub):
    """Pubsub with whole-message writes, per-stream failure containment (see the module
    doc) and a cheaper path for each received message.

    **One message id per message.** py-libp2p computes the message id of a received
    message three times in ``push_msg`` (seen check, validation cache, mark seen) and again
    in the router (message cache, IDONTWANT), and ours is a SHA-256 of the data: ~0.8 ms
    and a copy of the data per MiB each time. The id is computed once per ``push_msg`` and
    handed to the others while it runs (``_ids``, by object identity).

    **Duplicates without hashing.** On a full mesh each tx batch arrives once from its
    publisher and once from every other peer; those copies are dropped as seen. Strict
    signing means a copy carries the very signature of the message we validated, and an
    Ed25519 signature names its signed bytes (origin, seqno, data, topics), so
    a signature we recorded (``_by_signature``, ``SEEN_SIGNATURES_KEPT``) whose content id
    is still in the seen cache marks a duplicate without hashing the data. The outcome is
    the seen check's: a message with a copied signature but other content would fail
    signature validation and be dropped just the same; anything not recorded takes the
    full path.

    **Wire counters.** Every message from a peer is reported to ``on_wire`` (the message,
    its data size, whether it was a duplicate) for :class:`~medchaind.net.api.NetStats`.
    (Not ``ByteSize()``: upb serialises the message for it, ~170 us per MiB.)
    """

    def __init__(
        self, *args: Any, on_wire: Callable[[rpc_pb2.Message, int, bool], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._write_locks: weakref.WeakKeyDictionary[Any, trio.Lock] = weakref.WeakKeyDictionary()
        self.stream_failures = 0
        self._on_wire = on_wire
        self._ids: dict[int, tuple[rpc_pb2.Message, bytes, int]] = {}  # id(msg) -> (msg, id, data size)
        # signature -> (id, data size); FIFO: an OrderedDict, whose oldest entry goes in O(1)
        # (a plain dict's next(iter(d)) scans the deleted slots at its front: ~20 us at 8,192)
        self._by_signature: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()
        self._msg_id_constructor = self._message_id

    def _message_id(self, msg: rpc_pb2.Message) -> bytes:
        known = self._ids.get(id(msg))
        if known is not None and known[0] is msg:
            return known[1]
        return content_message_id(msg)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        own = msg_forwarder == self.my_id
        if not own:
            signature = msg.signature
            known = self._by_signature.get(signature) if signature else None
            if known is not None and self.seen_messages.has(known[0]):
                self._wire(msg, known[1], duplicate=True)
                return
        data = msg.data  # a copy (upb): taken once
        msg_id = hashlib.sha256(data).digest()  # content_message_id
        if not own:
            duplicate = self.seen_messages.has(msg_id)
            self._wire(msg, len(data), duplicate=duplicate)
            if duplicate:
                return
        key = id(msg)
        self._ids[key] = (msg, msg_id, len(data))
        try:
            await super().push_msg(msg_forwarder, msg)
        finally:
            self._ids.pop(key, None)

    def _mark_msg_seen(self, msg: rpc_pb2.Message) -> None:
        # called by push_msg after the signature and the validators accepted msg
        known = self._ids.get(id(msg))
        if known is None or known[0] is not msg:
            known = (msg, content_message_id(msg), len(msg.data))
        self.seen_messages.add(known[1])
        signature = msg.signature
        if signature:
            kept = self._by_signature
            kept[signature] = (known[1], known[2])
            if len(kept) > SEEN_SIGNATURES_KEPT:
                kept.popitem(last=False)

    def _wire(self, msg: rpc_pb2.Message, size: int, *, duplicate: bool) -> None:
        if self._on_wire is not None:
            self._on_wire(msg, size, duplicate)

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        lock = self._write_locks.get(stream)
        if lock is None:
            lock = self._write_locks[stream] = trio.Lock()
        async with lock:
            return await super().write_msg(stream, rpc_msg)

    async def _handle_new_peer(self, peer_id: ID) -> None:
        """Open our pubsub stream to a new peer; then, if our subscriptions changed while
        it was being set up, announce them again to that peer.

        py-libp2p 0.8.1 builds the hello (our subscriptions) after the stream is open,
        writes it (a checkpoint), and only then registers the peer. A ``subscribe`` that
        runs during that write is in neither: its announcement goes to the registered
        peers only, and the hello was built before it. The peer then never learns that
        we joined the topic, never grafts us, and our publications reach it only through
        others (a 4-node contract test found two nodes each missing the other's
        subscription, ~1 run in 5 on a loaded machine). SUBSCRIBE is idempotent, so
        sending the current set once more when it changed costs one small message in
        that case and nothing otherwise.
        """
        before = set(self.topic_ids)
        await super()._handle_new_peer(peer_id)
        queue = self.peer_queues.get(peer_id)
        now = set(self.topic_ids)
        if queue is None or peer_id not in self.peers or now == before:
            return
        packet = self.get_hello_packet()  # every current subscription, and our peer record
        packet.subscriptions.extend(rpc_pb2.RPC.SubOpts(subscribe=False, topicid=t) for t in sorted(before - now))
        if not queue.push(packet):
            log.debug("subscriptions not re-announced (queue full) peer=%s", peer_id)

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except Exception as exc:  # one peer's bad stream must never end the swarm (and the node)
            self.stream_failures += 1
            peer_id = stream.muxed_conn.peer_id
            log.warning("dropping a pubsub stream that failed peer=%s error=%r", peer_id, exc)
            with contextlib.suppress(Exception):
                await stream.reset()
            with contextlib.suppress(Exception):
                self._handle_dead_peer(peer_id)
            # start over on a fresh connection (the bootstrap loops redial), rather than
            # keep one whose pubsub state no longer matches the peer's
            with contextlib.suppress(Exception):
                await self.host.disconnect(peer_id)


class _ContentMessageCache(MessageCache):
    """Gossipsub's message cache keyed by the pubsub's message id, as IHAVE/IWANT are.

    py-libp2p 0.8.1's ``MessageCache.put`` keys by ``from || seqno`` whatever the message-id
    function, while ``handle_ihave`` checks the seen cache and ``handle_iwant`` looks up the
    cache with the ids it receives. With content ids (docs/protocol.md §12.2) an IWANT for
    an advertised content id was never served, and our heartbeat IHAVEs advertised
    ``from || seqno`` ids that no receiver had seen, so a non-mesh peer asked for, and got,
    every message of the gossip window again.
    """

    def __init__(self, window_size: int, history_size: int, msg_id: Callable[[rpc_pb2.Message], bytes]) -> None:
        super().__init__(window_size, history_size)
        self._msg_id = msg_id

    def put(self, msg: rpc_pb2.Message) -> None:
        mid = self._msg_id(msg)
        if mid in self.msgs:
            return
        self.msgs[mid] = msg
        self.history[0].append(CacheEntry(mid, msg.topicIDs))


class _MedchainGossipSub(GossipSub):
    """GossipSub that counts outbound drops and keeps no unbounded per-message state."""

    def __init__(
        self, on_dropped: Callable[[rpc_pb2.RPC, str], None], on_mesh_change: Callable[[], None], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._on_dropped = on_dropped
        self._on_mesh_change = on_mesh_change

    def _handle_dropped_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, reason: str) -> None:
        self._on_dropped(rpc, reason)
        super()._handle_dropped_rpc(peer_id, rpc, reason)

    async def handle_graft(self, graft_msg: rpc_pb2.ControlGraft, sender_peer_id: ID) -> None:
        # A GRAFT for a topic this router has not joined is ignored, as go-libp2p-pubsub
        # does ("spam hardening: ignore GRAFTs for unknown topics"). py-libp2p 0.8.1
        # answers it with a PRUNE, and the sender then backs off this peer for
        # prune_back_off (60 s). Pubsub.subscribe announces the subscription *before*
        # router.join creates the topic's mesh, so a peer's GRAFT that raced our own join
        # kept the two out of each other's mesh for a minute (a contract test waiting
        # 15 s for the mesh timed out on loaded machines). Ignored, the sender's mesh
        # holds us and our join grafts it back, so both meshes agree.
        if graft_msg.topicID not in self.mesh:
            return
        await super().handle_graft(graft_msg, sender_peer_id)

    #: topic ids of bulk traffic (tx gossip, :meth:`Libp2pNetwork.set_bulk_topic`)
    bulk_topics: frozenset[str] = frozenset()

    def send_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, priority: bool = False) -> None:
        # Channel priorities (CometBFT's consensus vs mempool channels): a message of any
        # topic but a bulk one -- votes, proposals, block announcements -- goes into the
        # peer's priority queue, ahead of queued tx batches, whether we publish or forward
        # it. Under a tx flood, FIFO queues held votes behind hundreds of batches for tens
        # of seconds, and a height waited for them with no timeout running.
        if not priority and self.bulk_topics:
            priority = not any(t in self.bulk_topics for m in rpc.publish for t in m.topicIDs)
        super().send_rpc(peer_id, rpc, priority)

    def _check_equivocation(self, msg: rpc_pb2.Message) -> bool:
        # The base class stores every message forever to detect (from, seqno) reuse with
        # different data. Strict signing already binds data to (from, seqno), and our
        # message ids are content hashes, so the map would only grow.
        return True

    def _notify_mesh_peer_added(self, peer_id: ID, topic: str) -> None:
        super()._notify_mesh_peer_added(peer_id, topic)
        self._on_mesh_change()

    #: announce, rather than push, bulk messages we forward (``Libp2pTuning.lazy_bulk_forwarding``)
    lazy_bulk_forwarding = False

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        pubsub = self.pubsub
        if (
            self.lazy_bulk_forwarding
            and pubsub is not None
            and msg_forwarder != pubsub.my_id
            and pubsub_msg.topicIDs
            and all(t in self.bulk_topics for t in pubsub_msg.topicIDs)
        ):
            await self._announce(msg_forwarder, pubsub_msg, pubsub)
            return
        await super().publish(msg_forwarder, pubsub_msg)
        # Only adaptive gossip (disabled) reads this list, and only it prunes it.
        self.recent_message_deliveries.clear()

    async def _announce(self, msg_forwarder: ID, msg: rpc_pb2.Message, pubsub: Pubsub) -> None:
        """Forward a bulk message lazily: IHAVE to the peers it would be pushed to.

        On a full mesh (the authorities) every peer already has it from its publisher, so
        pushing it again only made duplicates (2 of every 3 tx batches a node received on
        4 authorities, each read, decrypted, parsed and dropped); a peer that lacks it (an
        observer behind this node, a peer the publisher does not reach) answers IWANT and
        gets it from the message cache, one round trip later. Both are gossipsub v1.1
        messages: peers that forward eagerly interoperate unchanged.
        """
        self.mcache.put(msg)
        msg_id = pubsub.get_message_id(msg)
        for peer in self._get_peers_to_send(msg.topicIDs, msg_forwarder=msg_forwarder, origin=ID(msg.from_id),
                                            msg_id=msg_id):
            if peer in pubsub.peers:
                for topic in msg.topicIDs:
                    await self.emit_ihave(topic, [msg_id], peer)


class _OwnPeerId(HandshakeFailure):
    """A handshake authenticated our own peer id: this process (``same_process``) or another one."""

    def __init__(self, message: str, *, same_process: bool) -> None:
        super().__init__(message)
        self.same_process = same_process


def _own_peer_id_error(exc: BaseException) -> _OwnPeerId | None:
    """The :class:`_OwnPeerId` behind a failed security upgrade, if that was the reason."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _OwnPeerId):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _remote_noise_key(secured: ISecureConn) -> bytes | None:
    """The remote's Noise static key (py-libp2p 0.8 keeps it as the session's remote
    "permanent" key); None if this connection does not expose one."""
    try:
        return bytes(secured.get_remote_public_key().to_bytes())
    except Exception:
        return None


class _NoAutoConnector(AutoConnector):
    """The swarm's auto-connector, switched off: reconnects belong to the bootstrap loop."""

    async def maybe_connect(self) -> None:
        await trio.lowlevel.checkpoint()


#: bytes one receive on a connection may take from the socket (:class:`_BufferedRawConn`);
#: CPython allocates this much for each ``recv`` before it trims the result, and 256 KiB
#: (above glibc's mmap threshold) tripled the node's mmap/munmap calls
RAW_READ_CHUNK = 64 * 1024


class _BufferedRawConn(IRawConnection):
    """A raw (TCP) connection whose reads take what the socket holds, up to
    :data:`RAW_READ_CHUNK`, and serve the reads after them from memory.

    Noise reads each frame as two exact reads from the raw connection: its 2-byte length,
    then its body. Unbuffered, that is two receives per frame, each a ``recv`` syscall
    behind py-libp2p's per-read lock, and more when a frame arrives in pieces. Under load
    several frames wait in the socket at once. With this buffer, one receive takes them
    all and the next reads cost no syscall. Bytes come out in the order they came in, and
    each read still returns at most ``n`` bytes, so nothing above can tell the
    difference. One task reads a connection at a time: the Noise session's reader, on
    behalf of yamux's read loop. Everything but reading is the wrapped connection's."""

    def __init__(self, inner: IRawConnection) -> None:
        self._inner = inner  # is_initiator too is the wrapped connection's (pnet's has none)
        self._buf = b""
        self._pos = 0

    async def read(self, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        if self._pos >= len(self._buf):
            data = await self._inner.read(max(n or 0, RAW_READ_CHUNK))
            if n is None or len(data) <= n:
                return data  # EOF (b"") included
            self._buf, self._pos = data, 0
        end = len(self._buf) if n is None else self._pos + n
        out = self._buf[self._pos:end]
        self._pos += len(out)
        if self._pos >= len(self._buf):
            self._buf, self._pos = b"", 0
        return out

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._inner.get_remote_address()

    def get_transport_addresses(self) -> list[multiaddr.Multiaddr]:
        return self._inner.get_transport_addresses()

    def get_connection_type(self) -> Any:
        return self._inner.get_connection_type()

    def __getattr__(self, name: str) -> Any:  # anything else py-libp2p asks of the connection
        return getattr(self._inner, name)


class _AllowlistSecurity(ISecureTransport):
    """Noise over a :class:`_BufferedRawConn`, plus a refusal of authenticated peers
    that are not on the allowlist."""

    def __init__(self, inner: ISecureTransport, net: Libp2pNetwork) -> None:
        self._inner = inner
        self._net = net

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return await self._check(await self._inner.secure_inbound(_BufferedRawConn(conn)), "inbound")

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return await self._check(await self._inner.secure_outbound(_BufferedRawConn(conn), peer_id), "outbound")

    async def _check(self, secured: ISecureConn, direction: str) -> ISecureConn:
        remote = secured.get_remote_peer()
        if remote == self._net._id:
            await self._net._refuse_own_peer_id(secured, direction)
        if self._net.is_allowed(PeerId(remote.to_base58())):
            return secured
        self._net._counters.connections_refused += 1
        # one INFO line per peer per minute: a banned peer that keeps dialling is no news
        now = time.monotonic()
        last = self._net._refusal_logged.get(remote)
        level = logging.INFO if last is None or now - last >= 60 else logging.DEBUG
        if level == logging.INFO:
            self._net._refusal_logged[remote] = now
        log.log(level, "connection refused: peer not on allowlist peer=%s direction=%s", remote, direction)
        try:
            await secured.close()
        except Exception as exc:  # the refusal stands whether or not the close succeeds
            log.debug("closing refused connection failed peer=%s error=%r", remote, exc)
        raise HandshakeFailure(f"peer {remote} is not on the allowlist")


class _ConnectionWatcher(INotifee):
    """Logs connects/disconnects and wakes waiters on any change."""

    def __init__(self, net: Libp2pNetwork) -> None:
        self._net = net
        self._peers: set[ID] = set()  # peers we logged as connected (one line per transition)

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if peer not in self._peers:
            self._peers.add(peer)
            log.info("peer connected peer=%s", peer)
        self._net._changed()
        await trio.lowlevel.checkpoint()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer = conn.muxed_conn.peer_id
        if peer in self._peers and not network.get_connections(peer):
            self._peers.discard(peer)
            log.info("peer disconnected peer=%s", peer)
        self._net._changed()
        await trio.lowlevel.checkpoint()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        await trio.lowlevel.checkpoint()

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        await trio.lowlevel.checkpoint()


@dataclass(slots=True)
class _Running:
    """What exists only while ``run()`` runs."""

    host: IHost
    pubsub: Pubsub
    router: _MedchainGossipSub
    nursery: trio.Nursery
    drained: set[str]


class Libp2pNetwork(NetworkAPI):
    """:class:`NetworkAPI` over py-libp2p: TCP + Noise + Yamux, gossipsub, stream protocols."""

    def __init__(
        self,
        key_seed: bytes,
        listen: Iterable[str],
        bootstrap: Iterable[str] = (),
        allowlist: set[PeerId] | None = None,
        psk: bytes | None = None,
        chain_id: str = "medchain",
        *,
        limits: NetLimits | None = None,
        tuning: Libp2pTuning | None = None,
        on_identity_conflict: Callable[[str], None] | None = None,
    ) -> None:
        if len(key_seed) != 32:
            raise ConfigError(f"node key: an Ed25519 seed is 32 bytes, got {len(key_seed)}")
        if psk is not None and len(psk) != 32:
            raise ConfigError(f"private network key (psk): expected 32 bytes, got {len(psk)}")
        try:
            check_name("chain id", chain_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._limits = limits or NetLimits()
        self._tuning = tuning or Libp2pTuning()
        self._key_pair = create_new_key_pair(key_seed)
        self._id = ID.from_pubkey(self._key_pair.public_key)
        self._id_bytes = self._id.to_bytes()
        self._peer_id = PeerId(self._id.to_base58())
        self._chain_id = chain_id
        self._psk = psk
        self._listen = [self._parse_addr("listen", a) for a in listen]
        parsed = [self._parse_peer_addr(a) for a in bootstrap]
        self._bootstrap = [info for info in parsed if info.peer_id != self._id]
        # our own peer id at an address that is not ours: probed ("One key" in the module doc)
        own = {str(a) for a in self._listen}
        self._self_probes = list(dict.fromkeys(
            str(addr) for info in parsed if info.peer_id == self._id for addr in info.addrs if str(addr) not in own
        ))
        self._on_identity_conflict = on_identity_conflict
        self._noise_key = create_new_x25519_key_pair()  # fresh per instance: tells us from a copy
        self._conflict_logged: dict[str, float] = {}
        self._started_at: float | None = None
        self._allowlist = frozenset(allowlist) if allowlist is not None else None
        for info in self._bootstrap:
            if not self.is_allowed(PeerId(info.peer_id.to_base58())):
                raise ConfigError(f"bootstrap peer {info.peer_id} is not on the allowlist")
        self._counters = Counters()
        self._subs: dict[str, Subscription] = {}
        self._bulk_topics: frozenset[str] = frozenset()
        self._topic_names: dict[str, str] = {}  # libp2p topic id -> our topic name (subscribed ones)
        #: content hashes of what this process published, newest last (OWN_PUBLISHED_KEPT)
        self._own_published: OrderedDict[bytes, None] = OrderedDict()  # FIFO (see _by_signature)
        self._handlers: dict[str, Handler] = {}
        self._change = trio.Event()
        self._refusal_logged: dict[ID, float] = {}
        self._origins: dict[bytes, PeerId] = {}
        self._state: _Running | None = None
        self._serving = False
        self._inbound = InboundRequests(self._limits)
        _raise_subscription_channel_size(self._tuning.subscription_channel_size)

    # --- identity and configuration -----------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    def is_allowed(self, peer: PeerId) -> bool:
        return self._allowlist is None or peer in self._allowlist

    def set_allowlist(self, allowlist: set[PeerId] | None) -> None:
        """Replace the allowlist; connected peers that are no longer allowed are disconnected."""
        self._allowlist = frozenset(allowlist) if allowlist is not None else None
        self._changed()  # bootstrap loops waiting for a peer to be allowed again
        state = self._state
        if state is not None:
            for peer in self.connected_peers():
                if not self.is_allowed(peer):
                    log.info("disconnecting peer removed from allowlist peer=%s", peer)
                    state.nursery.start_soon(state.host.disconnect, ID.from_base58(peer))

    def listen_addrs(self) -> list[str]:
        """Our listen addresses with ``/p2p/<peer id>`` (after ``run`` has started)."""
        state = self._require_running()
        return [f"{addr}/p2p/{self._peer_id}" for addr in state.host.get_transport_addrs()]

    @staticmethod
    def _parse_addr(kind: str, text: str) -> multiaddr.Multiaddr:
        try:
            return multiaddr.Multiaddr(text)
        except Exception as exc:
            raise ConfigError(f"{kind} address {text!r} is not a valid multiaddr: {exc}") from None

    @classmethod
    def _parse_peer_addr(cls, text: str) -> PeerInfo:
        try:
            return info_from_p2p_addr(cls._parse_addr("bootstrap", text))
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"bootstrap address {text!r} must end with /p2p/<peer id> "
                f"(e.g. /ip4/10.0.0.1/tcp/26656/p2p/12D3KooW...): {exc}"
            ) from None

    def _topic_id(self, topic: str) -> str:
        return f"/medchain/{self._chain_id}/{topic}"

    def set_bulk_topic(self, topic: str) -> None:
        """Mark ``topic`` as bulk traffic: its messages wait in each peer's outbound queue
        behind those of every other topic (see ``_MedchainGossipSub.send_rpc``)."""
        self._bulk_topics = self._bulk_topics | {self._topic_id(check_name("topic", topic))}
        if self._state is not None:
            self._state.router.bulk_topics = self._bulk_topics

    def bulk_backlog(self) -> int:
        """Bulk RPCs waiting in the fullest peer outbound queue (0 when not running).

        A bulk publisher that waits for this to fall sends fewer, larger messages instead
        of piling them up in front of a slow peer connection (TxGossip does).
        """
        state = self._state
        if state is None:
            return 0
        return max((len(getattr(q._queue, "_non_priority", ())) for q in state.pubsub.peer_queues.values()),
                   default=0)

    def _protocol_id(self, protocol: str) -> TProtocol:
        return TProtocol(f"/medchain/{self._chain_id}/{protocol}")

    def _changed(self) -> None:
        self._change.set()
        self._change = trio.Event()

    def _origin(self, from_id: bytes) -> PeerId:
        origin = self._origins.get(from_id)
        if origin is None:
            if len(self._origins) >= 4096:
                self._origins.clear()
            origin = self._origins[from_id] = PeerId(ID(from_id).to_base58())
        return origin

    def _require_running(self) -> _Running:
        if self._state is None:
            raise NotRunning(f"libp2p network {self._peer_id} is not running")
        return self._state

    # --- service ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._serving:
            raise RuntimeError(f"libp2p network {self._peer_id} is already running")
        # py-libp2p's tasks live under _serve's shield: cancelling them together with us
        # would abort their connection closes half-way (sockets left open, peers still
        # "connected" on the other side). Our cancellation only sets `stopping`; _serve
        # then disconnects every peer before it stops anything else.
        stopping = trio.Event()
        self._serving = True
        startup_error: ConfigError | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    await nursery.start(self._serve, stopping)
                except ConfigError as exc:  # e.g. the listen port: raised bare, not in a group
                    startup_error = exc
                else:
                    task_status.started()
                    await trio.sleep_forever()
                finally:
                    stopping.set()
        finally:
            self._serving = False
        if startup_error is not None:
            raise startup_error

    async def _serve(self, stopping: trio.Event, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Build and run host, pubsub and router under a shield until ``stopping`` is set."""
        host = self._build_host()
        router = _MedchainGossipSub(
            on_dropped=self._on_dropped,
            on_mesh_change=self._changed,
            protocols=[PROTOCOL_ID_V11],
            degree=self._tuning.mesh_degree,
            degree_low=self._tuning.mesh_degree_low,
            degree_high=self._tuning.mesh_degree_high,
            heartbeat_interval=self._tuning.heartbeat_interval_s,
            spam_protection_enabled=False,
            adaptive_gossip_enabled=False,
            eclipse_protection_enabled=False,
        )
        router.bulk_topics = self._bulk_topics
        router.lazy_bulk_forwarding = self._tuning.lazy_bulk_forwarding
        # py-libp2p ignores IHAVEs beyond 10 per second per peer and topic, and IWANTs
        # beyond 10 per second per peer: lazy forwarding sends one per bulk message
        router.max_ihave_messages_per_second = self._tuning.max_ihave_iwant_per_s
        router.max_iwant_requests_per_second = self._tuning.max_ihave_iwant_per_s
        pubsub = _MedchainPubsub(
            host,
            router,
            seen_ttl=max(1, round(self._limits.seen_ttl)),
            strict_signing=True,
            msg_id_constructor=content_message_id,
            # Validity can depend on state (a nonce gap closes later): never cache verdicts.
            validation_cache_ttl=0,
            validation_cache_size=1,
            max_inbound_rpc_size=self._limits.max_gossip_size + _RPC_OVERHEAD,
            on_wire=self._on_wire,
        )
        router.mcache = _ContentMessageCache(router.mcache.window_size, router.mcache.history_size,
                                             pubsub.get_message_id)
        pubsub.peer_queues = _SizedQueues(
            self._tuning.outbound_queue_size, self._limits.max_gossip_size + _RPC_OVERHEAD
        )
        for protocol in self._handlers:
            host.set_stream_handler(self._protocol_id(protocol), self._stream_handler(protocol))
        host.get_network().register_notifee(_ConnectionWatcher(self))
        started = False
        listen_error: ConfigError | None = None
        with trio.CancelScope(shield=True) as shield:
            shield.deadline = trio.current_time() + self._tuning.startup_timeout_s
            try:
                async with host.run(self._listen), background_trio_service(pubsub), background_trio_service(router):
                    # checked here, raised below: raised inside py-libp2p's service nurseries it
                    # would reach the caller wrapped in exception groups
                    listen_error = self._listening_error(host)
                    if listen_error is None:
                        await pubsub.wait_until_ready()
                        async with trio.open_nursery() as nursery:
                            state = self._state = _Running(host, pubsub, router, nursery, set())
                            for topic in self._subs:
                                self._start_drain(state, topic)
                            for info in self._bootstrap:
                                nursery.start_soon(self._keep_connected, state, info)
                            self._started_at = trio.current_time()
                            for addr in self._self_probes:
                                nursery.start_soon(self._probe_own_address, state, addr)
                            log.info("libp2p network started peer_id=%s listen=%s", self._peer_id,
                                     self.listen_addrs())
                            self._changed()
                            shield.deadline = math.inf
                            task_status.started()
                            started = True
                            await stopping.wait()
                            self._state = None
                            # Everything below, context exits included, gets a bounded time.
                            shield.deadline = trio.current_time() + 2 * self._tuning.shutdown_timeout_s
                            nursery.cancel_scope.cancel()  # our own tasks first
                        await self._shutdown(state)
            finally:
                self._state = None
                pubsub.seen_messages.stop()  # py-libp2p never stops this sweeper thread
                self._changed()
        if listen_error is not None:
            raise listen_error
        if not started:
            raise NetworkError(
                f"libp2p network {self._peer_id} did not start within {self._tuning.startup_timeout_s}s"
            )
        if shield.cancelled_caught:
            log.warning("libp2p shutdown exceeded its time bound peer_id=%s", self._peer_id)
        log.info("libp2p network stopped peer_id=%s", self._peer_id)

    def _listening_error(self, host: IHost) -> ConfigError | None:
        """The startup error when a configured listen address has no listener of its own."""
        listeners = getattr(host.get_network(), "listeners", {})
        for maddr in self._listen:
            if str(maddr) in listeners and listeners[str(maddr)].get_addrs():
                continue
            error = _probe_listen(maddr)
            if error is None:
                return ConfigError(f"p2p.listen {maddr}: the listener did not start (see the libp2p error above)")
            if error.errno == errno.EADDRINUSE:
                return ConfigError(
                    f"p2p.listen {maddr}: {error.strerror} (another program, or another "
                    "medchaind, listens on that port); stop it or set p2p.listen to a free port"
                )
            return ConfigError(f"p2p.listen {maddr}: {error.strerror or error}")
        return None

    def _build_host(self) -> IHost:
        noise = NoiseTransport(self._key_pair, noise_privkey=self._noise_key.private_key)
        # Always gated, even without an allowlist: set_allowlist() may install one later.
        security = _AllowlistSecurity(noise, self)
        host = new_host(
            key_pair=self._key_pair,
            sec_opt={NOISE_PROTOCOL_ID: security},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): MedchainYamux},
            listen_addrs=self._listen,
            psk=self._psk.hex() if self._psk is not None else None,
            connection_config=ConnectionConfig(
                max_connections=self._tuning.max_connections,
                high_watermark=self._tuning.max_connections,
                max_connections_per_peer=1,
                dial_timeout=self._tuning.dial_timeout_s,
            ),
            resource_manager=new_resource_manager(
                enable_metrics=False,
                enable_circuit_breaker=False,  # 5 failures would deny all resources for 60 s
                enable_graceful_degradation=False,  # would shrink limits under load
            ),
            enable_metrics=False,
        )
        swarm = host.get_network()
        if isinstance(swarm, Swarm):
            swarm.auto_connector = _NoAutoConnector(swarm)
        return host

    async def _shutdown(self, state: _Running) -> None:
        """Disconnect peers first, then stop gossip and the host; bounded in time."""
        with trio.move_on_after(self._tuning.shutdown_timeout_s) as scope:
            for peer in list(state.host.get_connected_peers()):
                try:
                    await state.host.disconnect(peer)
                except Exception as exc:  # shutting down: log and carry on
                    log.debug("disconnect during shutdown failed peer=%s error=%r", peer, exc)
            await state.router.manager.stop()
            await state.pubsub.manager.stop()
            await state.host.close()
        if scope.cancelled_caught:
            log.warning("libp2p shutdown exceeded %.1fs; abandoning the rest", self._tuning.shutdown_timeout_s)

    def _on_wire(self, msg: rpc_pb2.Message, size: int, duplicate: bool) -> None:
        """Count a gossip message of ``size`` data bytes that arrived from a peer (``NetStats.wire_received``)."""
        for topic_id in msg.topicIDs:
            topic = self._topic_names.get(topic_id)
            if topic is None:
                continue
            counters = self._counters.topic(topic)
            counters.wire_received += 1
            counters.wire_bytes += size
            if duplicate:
                counters.duplicates += 1

    def _on_dropped(self, rpc: rpc_pb2.RPC, reason: str) -> None:
        if not rpc.publish:
            return  # control messages: gossipsub retries GRAFT/PRUNE itself
        before = self._counters.dropped_outbound
        self._counters.dropped_outbound += len(rpc.publish)
        if before.bit_length() != self._counters.dropped_outbound.bit_length():  # log at powers of two
            log.warning(
                "gossip messages dropped on the way out reason=%s dropped_total=%d",
                reason,
                self._counters.dropped_outbound,
            )

    # --- one key, one running node -----------------------------------------------------

    async def _refuse_own_peer_id(self, secured: ISecureConn, direction: str) -> None:
        """A handshake authenticated our own peer id: close it, report it unless it is us."""
        same = _remote_noise_key(secured) == bytes(self._noise_key.public_key.to_bytes())
        where = secured.get_remote_address()
        try:
            await secured.close()
        except Exception as exc:  # refused whether or not the close succeeds
            log.debug("closing a connection to our own peer id failed error=%r", exc)
        if same:
            raise _OwnPeerId("connected to this node itself", same_process=True)
        address = f"{where[0]}:{where[1]}" if where else "an unknown address"
        if direction == "inbound":
            why = f"a peer with this node's own peer id {self._peer_id} connected from {address}"
        else:
            why = f"this node's own peer id {self._peer_id} answered at {address}, which is not this process"
        self._identity_conflict(why, key=f"{direction}/{where[0] if where else '?'}")
        raise _OwnPeerId(why, same_process=False)

    def _gossip_signed_with_our_key(self, forwarder: ID, topic: str) -> None:
        started = self._started_at
        if started is None or trio.current_time() - started < self._tuning.self_echo_grace_s:
            log.debug("gossip signed with this node's key from peer=%s during the start grace", forwarder)
            return
        self._identity_conflict(
            f"a {topic} gossip message signed with this node's key {self._peer_id}, not published by "
            f"this process, arrived from peer {forwarder}", key=f"gossip/{forwarder}")

    def _identity_conflict(self, why: str, *, key: str) -> None:
        """Another process holds our key: count, log (once a minute per source), report."""
        self._counters.identity_conflicts += 1
        now = time.monotonic()
        last = self._conflict_logged.get(key)
        if last is None or now - last >= 60:
            if len(self._conflict_logged) >= 1024:
                self._conflict_logged.clear()
            self._conflict_logged[key] = now
            log.error(
                "another process is running with this node's key: %s. Two nodes with one key sign "
                "conflicting votes (equivocation); this node refuses to sign while it sees the other one "
                "(consensus_status.signing says why and until when). Stop the other copy (a restored "
                "backup, a copied datadir), or give it a key of its own", why)
        if self._on_identity_conflict is not None:
            try:
                self._on_identity_conflict(why)
            except Exception:  # reporting must never break the connection handling
                log.exception("identity conflict handler failed")

    async def _probe_own_address(self, state: _Running, addr: str) -> None:
        """Dial ``addr``, a bootstrap address that names our own peer id, and handshake.

        Our listener there (``0.0.0.0`` reached through an interface address): stop. Another
        process with our key: reported by :meth:`_refuse_own_peer_id` (outbound), and probed
        again every ``self_probe_repeat_s``. Nobody: try again with backoff up to
        ``self_probe_interval_s``, since a copy may start later.
        """
        delay = self._tuning.reconnect_initial_s
        while True:
            outcome = await self._probe_once(state, multiaddr.Multiaddr(addr))
            if outcome == "self":
                log.debug("bootstrap address with this node's peer id is this node addr=%s", addr)
                return
            if outcome == "other":
                delay = self._tuning.self_probe_repeat_s
            else:
                delay = min(max(delay * 2, self._tuning.reconnect_initial_s), self._tuning.self_probe_interval_s)
            await trio.sleep(delay)

    async def _probe_once(self, state: _Running, maddr: multiaddr.Multiaddr) -> str:
        """``"self"``, ``"other"`` (another process has our key) or ``"none"``."""
        swarm = state.host.get_network()
        raw: Any = None
        try:
            with trio.fail_after(self._tuning.dial_timeout_s):
                transport = swarm.transport_manager.transport_for_dialing(maddr)  # type: ignore[attr-defined]
                if transport is None:
                    return "none"
                raw = await transport.dial(maddr)
                if self._psk is not None:
                    raw = new_protected_conn(raw, self._psk.hex())
                secured = await swarm.upgrader.upgrade_security(raw, True, self._id)  # type: ignore[attr-defined]
        except Exception as exc:  # refused (the expected outcome), unreachable, timed out
            own = _own_peer_id_error(exc)
            if own is not None:
                return "self" if own.same_process else "other"
            log.debug("probe of a bootstrap address with this node's peer id failed addr=%s error=%r", maddr, exc)
            return "none"
        finally:
            if raw is not None:
                with contextlib.suppress(Exception):
                    await raw.close()
        with contextlib.suppress(Exception):  # unreachable: _check refuses our own peer id
            await secured.close()
        return "none"

    # --- connectivity -------------------------------------------------------------------

    async def _keep_connected(self, state: _Running, info: PeerInfo) -> None:
        """Dial a bootstrap peer whenever we are not connected to it, with backoff.

        Two nodes that list each other would dial each other at the same moment (at start,
        and again when their connection drops) and keep *two* connections: py-libp2p only
        trims surplus connections past a 20 s grace period, and only when yet another
        connection arrives. So the node with the larger peer id first yields for
        ``dial_yield_s``, redialling only if the other side has not connected by then.
        """
        delay = self._tuning.reconnect_initial_s
        failures = 0
        swarm = state.host.get_network()
        yields = self._id.to_bytes() > info.peer_id.to_bytes()
        while True:
            change = self._change
            if swarm.get_connections(info.peer_id):
                delay, failures = self._tuning.reconnect_initial_s, 0
                await change.wait()
                continue
            if not self.is_allowed(PeerId(info.peer_id.to_base58())):
                # banned, or no longer an authority: dialling would only be refused
                delay, failures = self._tuning.reconnect_initial_s, 0
                await change.wait()
                continue
            if yields and failures == 0:
                with trio.move_on_after(self._tuning.dial_yield_s):
                    while not swarm.get_connections(info.peer_id):
                        await self._change.wait()
                if swarm.get_connections(info.peer_id):
                    continue
            if isinstance(swarm, Swarm):
                swarm.unblock_peer(info.peer_id)
            try:
                with trio.fail_after(self._tuning.dial_timeout_s):
                    await state.host.connect(info)
            except Exception as exc:  # any dial failure (refused, timeout, handshake): retry later
                failures += 1
                level = logging.INFO if failures == 1 else logging.DEBUG
                log.log(level, "bootstrap dial failed peer=%s error=%r retry_in=%.2fs", info.peer_id, exc, delay)
                await trio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._tuning.reconnect_max_s)

    def connected_peers(self) -> list[PeerId]:
        state = self._state
        if state is None:
            return []
        return sorted(PeerId(p.to_base58()) for p in state.host.get_connected_peers())

    async def wait_peers(self, n: int) -> None:
        while True:
            change = self._change
            if len(self.connected_peers()) >= n:
                await trio.lowlevel.checkpoint()
                return
            await change.wait()

    async def wait_topic_peers(self, topic: str, n: int) -> None:
        topic_id = self._topic_id(check_name("topic", topic))
        while True:
            change = self._change
            if self._topic_peer_count(topic_id) >= n:
                await trio.lowlevel.checkpoint()
                return
            # Mesh additions and connection changes wake us; subscription announcements
            # have no hook in py-libp2p, so also re-check every 50 ms.
            with trio.move_on_after(0.05):
                await change.wait()

    def _topic_peer_count(self, topic_id: str) -> int:
        state = self._state
        if state is None:
            return 0
        connected = set(state.host.get_connected_peers())
        if topic_id in state.router.mesh:
            peers = state.router.mesh[topic_id]
        else:
            peers = state.pubsub.peer_topics.get(topic_id, set())
        return len(connected.intersection(peers).intersection(state.pubsub.peers))

    # --- gossip -----------------------------------------------------------------------

    def subscribe(
        self, topic: str, validator: Validator | None = None, *, buffer: int = 4096
    ) -> trio.MemoryReceiveChannel[tuple[PeerId, bytes]]:
        check_name("topic", topic)
        current = self._subs.get(topic)
        if current is not None and current.is_open:
            raise ValueError(f"topic {topic!r} is already subscribed; close its channel first")
        sub = Subscription(topic, validator, buffer, self._counters)
        self._subs[topic] = sub
        if self._state is not None:
            self._start_drain(self._state, topic)
        return sub.receive

    def _start_drain(self, state: _Running, topic: str) -> None:
        # One drain task per topic and run; a re-subscription swaps the Subscription it reads.
        if topic in state.drained:
            return
        state.drained.add(topic)
        topic_id = self._topic_id(topic)
        self._topic_names[topic_id] = topic
        state.pubsub.set_topic_validator(topic_id, self._validator_for(topic), is_async_validator=False)
        state.nursery.start_soon(self._drain, state, topic)

    def _validator_for(self, topic: str) -> Callable[[ID, rpc_pb2.Message], bool]:
        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            if msg.from_id == self._id_bytes:
                # signed with our key, published by another process -- unless a peer sends
                # back our own message after the seen cache forgot it (a queue that held it
                # longer than seen_ttl under load: that once stopped two of four authorities)
                if forwarder != self._id and hashlib.sha256(msg.data).digest() not in self._own_published:
                    self._gossip_signed_with_our_key(forwarder, topic)
                return True  # our own publication: the caller built it (py-libp2p drops the other)
            if len(msg.data) > self._limits.max_gossip_size:
                return False  # fits the RPC size cap (limit + envelope room) but not ours
            return self._subs[topic].accept(self._origin(msg.from_id), msg.data)

        return validate

    async def _drain(self, state: _Running, topic: str) -> None:
        subscription = await state.pubsub.subscribe(self._topic_id(topic))
        receive = subscription.receive_channel  # type: ignore[attr-defined]
        got = receive.statistics().max_buffer_size
        if got < self._tuning.subscription_channel_size:
            log.warning("libp2p subscription channel smaller than configured topic=%s size=%s", topic, got)
        self._changed()
        async for msg in receive:
            if msg.from_id == self._id_bytes:
                continue  # Pubsub.push_msg delivers our own publications to us too
            sub = self._subs[topic]
            if sub.is_open:
                sub.deliver(self._origin(msg.from_id), msg.data)

    async def publish(self, topic: str, data: bytes) -> None:
        check_name("topic", topic)
        state = self._require_running()
        if len(data) > self._limits.max_gossip_size:
            raise MessageTooLarge(
                f"gossip message of {len(data)} bytes exceeds max_gossip_size={self._limits.max_gossip_size}"
            )
        msg_id = hashlib.sha256(data).digest()
        if state.pubsub.seen_messages.has(msg_id):
            await trio.lowlevel.checkpoint()
            return  # content already seen: pubsub would drop it too
        await self._wait_outbound_room(state)
        own = self._own_published
        own[msg_id] = None
        if len(own) > OWN_PUBLISHED_KEPT:
            own.popitem(last=False)
        try:
            await state.pubsub.publish(self._topic_id(topic), data)
        except Exception as exc:  # libp2p internals: surface as our error type
            raise NetworkError(f"publish on {topic} failed: {exc!r}") from exc
        self._counters.topic(topic).published += 1

    async def _wait_outbound_room(self, state: _Running) -> None:
        high = self._tuning.outbound_queue_size // 2
        deadline = trio.current_time() + self._tuning.publish_backpressure_s
        # py-libp2p's RpcQueue has no "space available" event to wait on, so poll briefly.
        while any(len(q) > high for q in state.pubsub.peer_queues.values()) and trio.current_time() < deadline:  # noqa: ASYNC110
            await trio.sleep(0.002)

    # --- request/response -------------------------------------------------------------

    def set_handler(self, protocol: str, handler: Handler) -> None:
        self._handlers[check_name("protocol", protocol)] = handler
        if self._state is not None:
            self._state.host.set_stream_handler(self._protocol_id(protocol), self._stream_handler(protocol))

    def _stream_handler(self, protocol: str) -> Callable[[INetStream], Any]:
        async def handle(stream: INetStream) -> None:
            await self._serve_stream(protocol, stream)

        return handle

    async def _serve_stream(self, protocol: str, stream: INetStream) -> None:
        peer = PeerId(stream.muxed_conn.peer_id.to_base58())
        # Admission first, before a byte of the request is read: a peer over its share
        # (or a node over its total) gets "busy" and the stream is left unread.
        refusal = self._inbound.admit(peer)
        if refusal is not None:
            await self._respond(stream, protocol, peer, *refuse(self._counters, protocol, peer, refusal))
            return
        try:
            limit = self._limits.request_limit(protocol)
            try:
                with trio.fail_after(self._tuning.request_read_timeout_s):
                    size = await _read_uvarint(stream)
                    if size > limit:  # refused on the announced length: the body is never read
                        response = too_large(self._counters, self._limits, protocol, size)
                        await self._respond(stream, protocol, peer, *response)
                        return
                    data = await _read_exactly(stream, size)
            except Exception as exc:  # a bad peer or stream (or trio.TooSlowError) never kills the node
                log.debug("request stream failed protocol=%s peer=%s error=%r", protocol, peer, exc)
                await _reset_quietly(stream)
                return
            status, payload = await serve_request(
                self._handlers.get(protocol), peer, protocol, data, self._limits, self._counters
            )
            await self._respond(stream, protocol, peer, status, payload)
        finally:
            self._inbound.release(peer)

    async def _respond(self, stream: INetStream, protocol: str, peer: PeerId, status: int, payload: bytes) -> None:
        """Write one response and close our side; reset the stream if that fails or stalls."""
        try:
            with trio.fail_after(self._tuning.request_read_timeout_s):
                await stream.write(bytes([status]) + encode_uvarint(len(payload)) + payload)
                await stream.close()
        except Exception as exc:  # the peer went away or stopped reading: never kills the node
            log.debug("request stream failed protocol=%s peer=%s error=%r", protocol, peer, exc)
            await _reset_quietly(stream)

    async def request(  # the deadline is part of the NetworkAPI contract
        self, peer: PeerId, protocol: str, data: bytes, *, timeout: float = 10.0  # noqa: ASYNC109
    ) -> bytes:
        check_name("protocol", protocol)
        self._counters.requests_sent += 1
        try:
            return await self._request(peer, protocol, data, timeout)
        except NetworkError as exc:
            self._counters.requests_failed += 1
            log.debug("request failed protocol=%s peer=%s error=%s", protocol, peer, exc)
            raise

    async def _request(self, peer: PeerId, protocol: str, data: bytes, timeout: float) -> bytes:  # noqa: ASYNC109
        state = self._require_running()
        limit = self._limits.max_request_size
        if len(data) > limit:
            raise MessageTooLarge(f"request of {len(data)} bytes exceeds max_request_size={limit}")
        if peer == self._peer_id:
            raise PeerUnreachable("cannot send a request to this node itself")
        if not self.is_allowed(peer):
            raise PeerUnreachable(f"peer {peer} is not on the allowlist")
        try:
            peer_id = ID.from_base58(peer)
        except Exception:
            raise PeerUnreachable(f"{peer!r} is not a valid peer id") from None
        stream: INetStream | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                stream = await state.host.new_stream(peer_id, [self._protocol_id(protocol)])
            except StreamFailure as exc:
                if _protocol_unsupported(exc):
                    raise RemoteError(f"peer {peer} does not serve {protocol}") from exc
                raise PeerUnreachable(f"cannot open a {protocol} stream to {peer}: {exc}") from exc
            except Exception as exc:
                raise PeerUnreachable(f"cannot reach peer {peer}: {exc!r}") from exc
            try:
                status, payload, sent = await self._exchange(stream, peer, protocol, data, limit)
            except NetworkError:
                await _reset_quietly(stream)
                raise
            except Exception as exc:
                await _reset_quietly(stream)
                raise NetworkError(f"{protocol} exchange with {peer} failed: {exc!r}") from exc
            if sent:
                await _close_quietly(stream)
            else:  # refused before the server read it all: the rest of the request is moot
                await _reset_quietly(stream)
            if status == STATUS_OK:
                return payload
            message = payload.decode("utf-8", "replace")
            if status == STATUS_TOO_LARGE:
                raise MessageTooLarge(f"peer {peer} ({protocol}): {message}")
            raise RemoteError(f"peer {peer} ({protocol}): {message}")
        assert scope.cancelled_caught
        if stream is not None:
            await _reset_quietly(stream)
        raise RequestTimeout(f"request {protocol} to {peer} timed out after {timeout}s")

    @staticmethod
    async def _exchange(
        stream: INetStream, peer: PeerId, protocol: str, data: bytes, limit: int
    ) -> tuple[int, bytes, bool]:
        """Write the request while reading the response: ``(status, payload, request sent whole)``.

        A server refuses an oversize request, or one it has no place for, without reading
        it (see "Request/response" in the module doc), so the part beyond the yamux
        receive window is never credited and a writer that waited for that credit before
        reading would wait until py-libp2p gives up (5 s). The response ends the writing.
        """
        failures: list[Exception] = []
        response: list[tuple[int, bytes]] = []
        sent = False

        async def write(cancel_scope: trio.CancelScope) -> None:
            nonlocal sent
            try:
                await stream.write(encode_uvarint(len(data)) + data)
                sent = True
            except Exception as exc:  # reported below, after the reader stopped too
                failures.append(exc)
                cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, nursery.cancel_scope)
            try:
                status = (await _read_exactly(stream, 1))[0]
                size = await _read_uvarint(stream)
                if status == STATUS_OK and size > limit:
                    raise MessageTooLarge(f"response of {size} bytes exceeds max_request_size={limit}")
                check_error_size(peer, protocol, status, size)
                response.append((status, await _read_exactly(stream, size)))
            except Exception as exc:  # raised outside the nursery, not wrapped in a group
                failures.append(exc)
            nursery.cancel_scope.cancel()  # a refused request is not read: stop writing it
        if response:  # an answer stands; "ok" means the server read the whole request
            status, payload = response[0]
            return status, payload, sent or status == STATUS_OK
        raise failures[0]

    def statistics(self) -> NetStats:
        return self._counters.snapshot()


def _protocol_unsupported(exc: BaseException) -> bool:
    """Whether a stream failure was the peer answering "na" to our protocol."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ProtocolNotSupportedError) or "not supported" in str(cause):
            return True
        cause = cause.__cause__
    return False


async def _read_exactly(stream: INetStream, n: int) -> bytes:
    """Read exactly ``n`` bytes (libp2p's ``read_exactly`` gives up after 100 short reads)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise NetworkError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def _read_uvarint(stream: INetStream) -> int:
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        byte = (await _read_exactly(stream, 1))[0]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value
    raise NetworkError("malformed length prefix (varint longer than 10 bytes)")


async def _reset_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception as exc:
            log.debug("stream reset failed error=%r", exc)


async def _close_quietly(stream: INetStream) -> None:
    with trio.move_on_after(1.0):
        try:
            await stream.close()
        except Exception as exc:
            log.debug("stream close failed error=%r", exc)
