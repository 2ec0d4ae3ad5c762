"""Identity's client helpers (sans-IO flows; :mod:`medchaind.flows`).

``Client.register_identity`` / ``Client.identity`` and their ``AsyncClient`` twins are
made from :data:`HELPERS`. :func:`encryption_key` is a flow other modules' helpers use
to seal data keys to an identity (it is not a client method).
"""

from __future__ import annotations

from typing import Any

from ...crypto import KeyPair
from ...flows import Call, Flow, helper, hexstr, send_flow, unhex


@helper
def register_identity(
    chain_id: str, keys: KeyPair, role: str, *, label: str | None = None, **kw: Any
) -> Flow[dict[str, Any]]:
    """``identity.register``: bind ``keys`` (signing key and encryption key) to ``role``.

    A patient is active at once; an organisation role waits for accreditation by
    governance. ``label`` is an organisation's public name (never for a patient).
    ``kw``: ``nonce``, ``wait``, ``timeout_ms`` as for ``send``.
    """
    body: dict[str, Any] = {"role": role, "enc_key": keys.encryption.public_key}
    if label is not None:
        body["label"] = label
    return (yield from send_flow(chain_id, keys.signing, "identity.register", body, **kw))


@helper
def identity(public_key: bytes | str) -> Flow[dict[str, Any]]:
    """The registered identity of ``public_key``: role, encryption key, status, label."""
    ident: dict[str, Any] = yield Call("identity_get", {"public_key": hexstr(public_key)})
    return ident


def encryption_key(public_key: bytes) -> Flow[bytes]:
    """The X25519 key data keys are sealed to for the identity ``public_key``."""
    ident = yield from identity(public_key)
    return unhex(ident["enc_key"])


HELPERS = [register_identity, identity]
