"""Networking: the :class:`NetworkAPI` seam and its backends.

* :mod:`medchaind.net.api`: the contract (gossip topics, request/response, errors, stats);
* :mod:`medchaind.net.memory`: :class:`MemoryNetwork`, deterministic, for simulations;
* :mod:`medchaind.net.libp2p_net`: :class:`~medchaind.net.libp2p_net.Libp2pNetwork`
  (TCP + Noise + Yamux + gossipsub), with :mod:`medchaind.net.libp2p_yamux` (its muxer).
  Import it explicitly: these two are the only modules that import libp2p, which is slow
  to import and unnecessary for simulations.
"""

from .api import (
    MAX_ERROR_MESSAGE,
    MalformedResponse,
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
    TopicStats,
)
from .memory import MemoryEndpoint, MemoryNetwork

__all__ = [
    "MAX_ERROR_MESSAGE",
    "MalformedResponse",
    "MemoryEndpoint",
    "MemoryNetwork",
    "MessageTooLarge",
    "NetLimits",
    "NetStats",
    "NetworkAPI",
    "NetworkError",
    "NotRunning",
    "PeerId",
    "PeerUnreachable",
    "RemoteError",
    "RequestTimeout",
    "TopicStats",
]
