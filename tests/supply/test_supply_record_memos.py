"""The memoised projections of stored records answer as decoding the record does.

``identity._status_role``, supply's ``_party_gln`` and ``_product_owner`` and claims'
``_enrolled_npis`` are pure functions of a record's stored bytes (memoised: every capture
or claim of a party reads the same records). Checked against the decoded record for every
such record a real scenario leaves in the state, and through the handlers: a revoked
manufacturer's next capture is refused, re-accredited it captures again (new bytes, new
answer), and a product of another owner is still refused.
"""

from __future__ import annotations

from supply_kit import GTIN_B, SupplyChain, commission, sgtin

from medchaind import codec
from medchaind.modules.identity import machine as identity
from medchaind.modules.supply import machine as supply
from medchaind.testing.appkit import pub


def test_projections_equal_the_decoded_records() -> None:
    c = SupplyChain.cast()
    c.captured("M", commission(sgtin("m1")))
    seen = {"identity": 0, "party": 0, "product": 0}
    for (module, key), raw in c.state.data.items():
        if module == "identity" and key.startswith(b"id/"):
            rec = codec.decode_stored(raw)
            assert identity._status_role(raw) == (rec["status"], rec["role"])
            assert identity.status_role(c.state, key[3:]) == (rec["status"], rec["role"])
            seen["identity"] += 1
        elif module == "supply" and key.startswith(b"P/"):
            assert supply._party_gln(raw) == codec.decode_stored(raw)["gln"]
            seen["party"] += 1
        elif module == "supply" and key.startswith(b"G/"):
            assert supply._product_owner(raw) == codec.decode_stored(raw)["owner"]
            seen["product"] += 1
    assert seen["identity"] >= 8 and seen["party"] >= 7 and seen["product"] >= 2
    assert identity.status_role(c.state, b"\x09" * 32) is None


def test_a_revoked_party_is_refused_and_a_reaccredited_one_captures() -> None:
    c = SupplyChain.cast()
    c.captured("M", commission(sgtin("r1")))
    for a in c.genesis.authorities:
        c.send(a.name, "governance.revoke", {"subject": pub("M"), "reason": "inspection"})
    assert identity.status_role(c.state, pub("M")) == ("revoked", "manufacturer")
    c.fails("M", "supply.capture", {"events": [commission(sgtin("r2"))]}, "not_a_party")
    c.accredit("M", "manufacturer")
    c.captured("M", commission(sgtin("r3")))
    # N owns GTIN_B, M does not
    c.fails("M", "supply.capture", {"events": [commission(sgtin("r4"), gtin=GTIN_B)]}, "not_product_owner")
