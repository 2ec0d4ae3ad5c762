"""JSON-RPC error codes and the errors of the IPC layer.

:class:`RPCError` is shared by the server (handlers raise it to choose the error a client
sees) and the clients (they raise it when a response carries an error), so a client can
catch exactly what a handler raised::

    try:
        client.call("tx_submit", {"tx": "0x…"})
    except RPCError as exc:
        if exc.code == TX_REJECTED: ...

Code ranges (JSON-RPC 2.0 §5.1): -32768..-32000 are reserved; -32700 and
-32600..-32603 are the protocol errors below; -32000..-32099 are application errors,
whose codes come from ``MedchainError.rpc_code`` (see :mod:`medchaind.errors`).
"""

from __future__ import annotations

from ..errors import MedchainError as MedchainError
from ..errors import RPCError as RPCError

#: Invalid JSON was received (the request could not be framed or parsed).
PARSE_ERROR = -32700
#: The JSON sent is not a valid Request object (also: request too large, empty batch).
INVALID_REQUEST = -32600
#: The method does not exist on this node.
METHOD_NOT_FOUND = -32601
#: Invalid method parameters (raised by handlers).
INVALID_PARAMS = -32602
#: A handler failed unexpectedly; the node log has the traceback.
INTERNAL_ERROR = -32603
#: The caller's uid/gid may not call this method's namespace (``[ipc.access]``); the
#: message names the namespace and what the caller may call. Application range.
ACCESS_DENIED = -32004
#: A limit was hit: subscriptions per connection, connections per server, reply size,
#: unread output, read or idle timeout. Application range; same meaning as EIP-1474's
#: "limit exceeded".
LIMIT_EXCEEDED = -32005


class IPCBindError(MedchainError):
    """The IPC socket could not be created (path too long, in use, not a socket, ...)."""


class SubscriptionOverflowError(MedchainError):
    """A client-side subscription buffered more notifications than allowed.

    Raised by a client's subscription iterator when the consumer fell too far behind;
    notifications after the limit were dropped, so the stream has a gap. Re-subscribe
    (and re-read state) to recover.
    """
