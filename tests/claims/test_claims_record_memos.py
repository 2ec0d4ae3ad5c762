"""``_enrolled_npis`` (a memoised pure function of a stored enrollment's bytes) answers as
decoding the enrollment does, and a re-enrollment that changes the NPIs changes what
``claims.submit`` accepts at once (new bytes, new answer). The identity projection the
claims handlers use (``identity.is_accredited``) is checked in
tests/supply/test_supply_record_memos.py.
"""

from __future__ import annotations

from claims_kit import BILLING, RENDERING2, ClaimsChain, claim, submit_body

from medchaind import codec
from medchaind.modules.claims import machine


def test_enrolled_npis_equal_the_decoded_enrollments() -> None:
    c = ClaimsChain.setup()
    found = 0
    for (module, key), raw in c.state.data.items():
        if module == "claims" and key.startswith(b"e/"):
            assert machine._enrolled_npis(raw) == frozenset(codec.decode_stored(raw)["npis"])
            found += 1
    assert found == 3


def test_a_reenrollment_changes_the_accepted_npis() -> None:
    c = ClaimsChain.setup()
    c.submit(claim("PCN0001"))
    c.enroll("PAY", "PRV", [RENDERING2])  # BILLING is no longer PRV's with PAY
    c.fails("PRV", "claims.submit", submit_body(claim("PCN0002")), code="npi_not_enrolled")
    c.submit(claim("PCN0003", billing=RENDERING2))
    c.enroll("PAY", "PRV", [BILLING, RENDERING2])
    c.submit(claim("PCN0004"))
