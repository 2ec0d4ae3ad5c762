"""Typed errors, grouped by the boundary that raises them.

Every error a user or a peer can trigger derives from :class:`MedchainError` and
carries a human-readable message saying what was wrong. IPC maps these to JSON-RPC
application codes (-32000..-32099); see ``medchaind.ipc.errors``.
"""

from __future__ import annotations

from typing import Any


class MedchainError(Exception):
    """Root of every medchaind error."""

    #: JSON-RPC application error code used when this error crosses the IPC boundary.
    rpc_code = -32000


class DecodeError(MedchainError):
    """Bytes that are not the canonical encoding of a well-formed object."""

    rpc_code = -32001


class ValidationError(MedchainError):
    """A decoded object that breaks a stateless rule (size, range, format)."""

    rpc_code = -32002


class SignatureError(ValidationError):
    """A signature that does not verify for the claimed key, domain and chain id."""

    rpc_code = -32003


class TxRejected(MedchainError):
    """The mempool refused a transaction. ``code`` is a stable machine-readable reason."""

    rpc_code = -32010

    def __init__(self, code: str, reason: str, *, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        #: for a refusal that is about load, not about the tx: when to try again
        self.retry_after_ms = retry_after_ms


class TxDropped(MedchainError):
    """Raised by the client library: the node's mempool let an admitted tx go without
    committing it (``reason``: ``evicted``, ``nonce_used``, ``nonce_gap_expired``, or the
    code of the re-check that refused it against a newer state). Nothing of it is on
    chain; the submitter may fix and resend it (docs/client-guide.md §3.4)."""

    def __init__(self, tx_hash: str, reason: str) -> None:
        super().__init__(f"tx {tx_hash} was dropped by the node's mempool: {reason}")
        self.tx_hash = tx_hash
        self.reason = reason


class ClientTimeout(MedchainError):
    """A client gave up waiting after its own timeout; the node refused nothing (what it
    waited for may still happen)."""


class NotFound(MedchainError):
    rpc_code = -32020


class KeystoreError(MedchainError):
    rpc_code = -32030


class ConfigError(MedchainError):
    rpc_code = -32040


class StoreError(MedchainError):
    rpc_code = -32050


class DatadirLockedError(StoreError):
    """Another process holds the datadir's LevelDB lock."""


class InvalidBlock(MedchainError):
    """A block that fails validation against its parent or its execution result."""

    rpc_code = -32060


class ProofError(MedchainError):
    """A state proof, or a state-trie node, that does not check out against its root: a
    missing or altered node, a witness too small for the query, or an answer that differs
    from the one the proof gives (docs/protocol.md §23). A client that sees it was given
    a wrong answer or an incomplete proof, and should not trust that node's answer."""

    rpc_code = -32080


class RPCError(MedchainError):
    """(Lives here, below the transport, so sans-IO client flows can catch it without
    importing the IPC layer; :mod:`medchaind.ipc.errors` re-exports it.)

    A JSON-RPC error object: ``{"code": code, "message": message, "data"?: data}``.

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
