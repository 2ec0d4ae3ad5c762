"""Governance's client helpers (sans-IO flows; :mod:`medchaind.flows`).

Each helper sends one authority's vote; the action executes once authorities holding
more than 2/3 of the power have voted (see :mod:`.machine`).
"""

from __future__ import annotations

from typing import Any

from ...crypto import SigningKey
from ...flows import Flow, helper, send_flow


@helper
def accredit(chain_id: str, authority: SigningKey, subject: bytes, role: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``governance.accredit``: vote to accredit identity ``subject`` in ``role``.

    ``kw``: ``nonce``, ``wait``, ``timeout_ms`` as for ``send``.
    """
    body = {"subject": subject, "role": role}
    return (yield from send_flow(chain_id, authority, "governance.accredit", body, **kw))


@helper
def revoke(chain_id: str, authority: SigningKey, subject: bytes, reason: str, **kw: Any) -> Flow[dict[str, Any]]:
    """``governance.revoke``: vote to revoke the accreditation of identity ``subject``.

    ``kw``: ``nonce``, ``wait``, ``timeout_ms`` as for ``send``.
    """
    body = {"subject": subject, "reason": reason}
    return (yield from send_flow(chain_id, authority, "governance.revoke", body, **kw))


HELPERS = [accredit, revoke]
