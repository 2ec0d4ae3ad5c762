"""Consent's client helpers (sans-IO flows; :mod:`medchaind.flows`).

``grant`` is a records helper (:mod:`medchaind.modules.records.client`): with
``share_existing`` it re-wraps the data keys of the patient's existing records for the
grantee, which is records' business, and records sits above consent (its state machine
reads consent; consent knows nothing of records). Both clients serve it all the same.
"""

from __future__ import annotations

from typing import Any

from ...crypto import KeyPair
from ...flows import Flow, helper, send_flow


@helper
def revoke_consent(chain_id: str, patient: KeyPair, grant_id: bytes, **kw: Any) -> Flow[dict[str, Any]]:
    """``consent.revoke``: end the patient's grant ``grant_id`` (kept, stamped revoked).

    Keys already delivered under the grant cannot be taken back; no new ones are sealed.
    ``kw``: ``nonce``, ``wait``, ``timeout_ms`` as for ``send``.
    """
    return (yield from send_flow(chain_id, patient.signing, "consent.revoke", {"grant_id": grant_id}, **kw))


HELPERS = [revoke_consent]
