"""Networking: the :class:`NetworkAPI` seam and its backends.

* :mod:`medchaind.net.api`: the contract (gossip topics, request/response, errors, stats);
* :mod:`medchaind.net.memory`: :class:`MemoryNetwork`, deterministic, for simulations;
* :mod:`medchaind.net.libp2p_net`: :class:`~medchaind.net.libp2p_net.Libp2pNetwork`
  (TCP + Noise + Yamux + gossipsub). Import it explicitly: it is the only module that
  imports libp2p, which is slow to import and unnecessary for simulations.
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
