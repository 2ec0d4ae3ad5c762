"""Typed errors, grouped by the boundary that raises them.

Every error a user or a peer can trigger derives from :class:`MedchainError` and
carries a human-readable message saying what was wrong. IPC maps these to JSON-RPC
application codes (-32000..-32099); see ``medchaind.ipc.errors``.
"""

from __future__ import annotations


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

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


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
