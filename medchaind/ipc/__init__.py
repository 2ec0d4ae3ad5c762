"""Local IPC: JSON-RPC 2.0 over a Unix-domain socket (DESIGN.md §7).

Server side: :class:`Dispatcher` (method table; ``dispatcher.hub`` is the
:class:`SubscriptionHub`), :class:`IPCServer` (socket, connections), :class:`Connection`.
Client side: :class:`Client` (blocking) and :class:`AsyncClient` (anyio: trio or asyncio).
Both sides share :class:`RPCError` and the error-code constants. Who may call what:
:mod:`medchaind.ipc.access` (:class:`AccessPolicy`, :func:`grant_for`).
"""

from __future__ import annotations

from .access import AccessPolicy, AccessRule, Grant, grant_for, namespace_of
from .client import AsyncClient, AsyncSubscription, Client, Subscription
from .errors import (
    ACCESS_DENIED,
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
    ConnectionLimits,
    Dispatcher,
    IPCServer,
    IPCServerStatistics,
    SubscriptionHub,
    TopicSubscription,
    bind_params,
)

__all__ = [
    "ACCESS_DENIED",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_EXCEEDED",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "AccessPolicy",
    "AccessRule",
    "AsyncClient",
    "AsyncSubscription",
    "Client",
    "Connection",
    "ConnectionLimits",
    "Dispatcher",
    "Grant",
    "IPCBindError",
    "IPCServer",
    "IPCServerStatistics",
    "RPCError",
    "Subscription",
    "SubscriptionHub",
    "SubscriptionOverflowError",
    "TopicSubscription",
    "bind_params",
    "grant_for",
    "namespace_of",
]
