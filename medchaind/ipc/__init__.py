"""Local IPC: JSON-RPC 2.0 over a Unix-domain socket (DESIGN.md §7).

Server side: :class:`Dispatcher` (method table; ``dispatcher.hub`` is the
:class:`SubscriptionHub`), :class:`IPCServer` (socket, connections), :class:`Connection`.
Client side: :class:`Client` (blocking) and :class:`AsyncClient` (anyio: trio or asyncio).
Both sides share :class:`RPCError` and the error-code constants.
"""

from __future__ import annotations

from .client import AsyncClient, AsyncSubscription, Client, Subscription
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LIMIT_EXCEEDED,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    IPCBindError,
    RPCError,
    SubscriptionOverflowError,
)
from .server import (
    Connection,
    Dispatcher,
    IPCServer,
    IPCServerStatistics,
    SubscriptionHub,
    TopicSubscription,
    bind_params,
)

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_EXCEEDED",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "AsyncClient",
    "AsyncSubscription",
    "Client",
    "Connection",
    "Dispatcher",
    "IPCBindError",
    "IPCServer",
    "IPCServerStatistics",
    "RPCError",
    "Subscription",
    "SubscriptionHub",
    "SubscriptionOverflowError",
    "TopicSubscription",
    "bind_params",
]
