"""Read-only queries: identity.get / identity.list / governance.authorities / governance.pending."""

from __future__ import annotations

import pytest
from app_kit import Chain, accredit_body, enc_key, make_genesis, pub

from medchaind.app import QueryError


@pytest.fixture
def chain() -> Chain:
    c = Chain(make_genesis({"A": 1, "B": 2, "C": 1}))
    c.register("X", "provider", enc="x", label="Clinic")
    c.register("P", "patient", enc="p")
    c.register("Y", "pharmacy", enc="y")
    return c


def test_identity_get(chain: Chain) -> None:
    assert chain.app.query(chain.state, "identity.get", {"public_key": pub("X")}) == {
        "public_key": "0x" + pub("X").hex(),
        "role": "provider",
        "status": "pending",
        "enc_key": "0x" + enc_key("x").hex(),
        "label": "Clinic",
        "registered_at": 1,
        "changed_at": 1,
    }
    patient = chain.app.query(chain.state, "identity.get", {"public_key": pub("P")})
    assert (patient["status"], patient["label"]) == ("active", None)


def test_identity_get_of_an_unknown_key_is_none(chain: Chain) -> None:
    assert chain.app.query(chain.state, "identity.get", {"public_key": pub("Nobody")}) is None


@pytest.mark.parametrize(
    "params", [{}, {"public_key": b"\x01" * 31}, {"public_key": "0x" + "00" * 32}]
)
def test_identity_get_needs_a_32_byte_key(chain: Chain, params: dict[str, object]) -> None:
    with pytest.raises(QueryError, match="public_key"):
        chain.app.query(chain.state, "identity.get", params)


def test_identity_list(chain: Chain) -> None:
    everyone = chain.app.query(chain.state, "identity.list", {})
    keys = sorted(pub(n) for n in "XPY")
    assert [e["public_key"] for e in everyone] == ["0x" + k.hex() for k in keys]  # key order
    assert [
        e["public_key"] for e in chain.app.query(chain.state, "identity.list", {"role": "provider"})
    ] == ["0x" + pub("X").hex()]
    assert chain.app.query(chain.state, "identity.list", {"role": "payer"}) == []
    assert chain.app.query(chain.state, "identity.list", {"limit": 2}) == everyone[:2]


@pytest.mark.parametrize("limit", [0, 1001, "10", None])
def test_identity_list_limit_bounds(chain: Chain, limit: object) -> None:
    with pytest.raises(QueryError, match="limit"):
        chain.app.query(chain.state, "identity.list", {"limit": limit})


def test_governance_authorities(chain: Chain) -> None:
    got = chain.app.query(chain.state, "governance.authorities", {})
    want = sorted(
        (
            {"public_key": "0x" + pub(n).hex(), "name": n, "power": p}
            for n, p in {"A": 1, "B": 2, "C": 1}.items()
        ),
        key=lambda a: a["public_key"],
    )
    assert got == want


def test_governance_pending_lists_open_tallies(chain: Chain) -> None:
    assert chain.app.query(chain.state, "governance.pending", {}) == []
    r = chain.send("A", "governance.accredit", accredit_body("X"))
    assert r.ok
    aid = r.events[0]["action_id"]
    assert chain.app.query(chain.state, "governance.pending", {}) == [
        {
            "action_id": "0x" + aid.hex(),
            "action": {"op": "accredit", "subject": "0x" + pub("X").hex(), "role": "provider"},
            "voters": ["0x" + pub("A").hex()],
        }
    ]
    # total power 4: A (1) + C (1) = 2/4 is not enough; B (2) brings it to 4/4
    chain.send("C", "governance.accredit", accredit_body("X"))
    (tally,) = chain.app.query(chain.state, "governance.pending", {})
    assert tally["voters"] == sorted(["0x" + pub("A").hex(), "0x" + pub("C").hex()])
    chain.send("B", "governance.accredit", accredit_body("X"))
    assert chain.app.query(chain.state, "governance.pending", {}) == []
    assert chain.status("X") == "accredited"


@pytest.mark.parametrize("path", ["identity.nope", "nope.get", "identity", "", "auth.nonce"])
def test_unknown_query(chain: Chain, path: str) -> None:
    with pytest.raises(QueryError, match="unknown query"):
        chain.app.query(chain.state, path, {})
