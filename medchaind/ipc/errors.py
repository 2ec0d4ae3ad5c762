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

from typing import Any

from ..errors import MedchainError

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
#: A per-connection limit was hit (subscriptions per connection, connections per server).
#: Application range; same meaning as EIP-1474's "limit exceeded".
LIMIT_EXCEEDED = -32005


class RPCError(MedchainError):
    """A JSON-RPC error object: ``{"code": code, "message": message, "data"?: data}``.

    Raised by a handler, it becomes the error response verbatim (``data`` only if not
    ``None``; it must be JSON-able). Raised by a client, it is the error the node sent.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        # Instance attribute shadows MedchainError.rpc_code, so generic code that maps
        # MedchainError -> rpc_code gets the specific code of this error.
        self.rpc_code = code

    def to_json(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member for this error."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    def __repr__(self) -> str:
        return f"RPCError({self.code}, {self.message!r}, {self.data!r})"


class IPCBindError(MedchainError):
    """The IPC socket could not be created (path too long, in use, not a socket, ...)."""


class SubscriptionOverflowError(MedchainError):
    """A client-side subscription buffered more notifications than allowed.

    Raised by a client's subscription iterator when the consumer fell too far behind;
    notifications after the limit were dropped, so the stream has a gap. Re-subscribe
    (and re-read state) to recover.
    """
