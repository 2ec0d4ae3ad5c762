"""consent.grant / consent.revoke / consent.check (medchaind/app/consent.py).

The decision table drives :func:`check` through grants sent as real txs; a hypothesis
property compares :func:`check` with a naive reference evaluation written here.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records_kit import BLOCK_INTERVAL_MS, HOUR_MS, Chain, grant_body, pub

from medchaind import codec
from medchaind.app import DictState, QueryError
from medchaind.modules.consent import machine as consent_mod
from medchaind.modules.consent.machine import check
from medchaind.modules.identity.machine import ACCREDITED

R1 = b"\x01" * 32
R2 = b"\x02" * 32


@pytest.fixture(scope="module")
def base() -> Chain:
    return Chain.standard()


@pytest.fixture
def chain(base: Chain) -> Chain:
    c = Chain.__new__(Chain)
    c.__dict__.update(base.__dict__)
    c.state = DictState(base.state.data)
    return c


# ------------------------------------------------------------------ body validation

VALID = grant_body("D1")
INVALID_BODIES = [
    pytest.param({"actions": ["read"], "decision": "permit"}, id="no actor"),
    pytest.param({**grant_body("D1"), "actor_role": "provider"}, id="actor and actor_role"),
    pytest.param(grant_body(role="patient"), id="role patient"),
    pytest.param(grant_body(role="doctor"), id="unknown role"),
    pytest.param({**VALID, "actor": b"\x01" * 31}, id="short actor"),
    pytest.param(grant_body("D1", actions=[]), id="no actions"),
    pytest.param(grant_body("D1", actions=["read", "read"]), id="duplicate action"),
    pytest.param(grant_body("D1", actions=["delete"]), id="unknown action"),
    pytest.param(grant_body("D1", decision="maybe"), id="unknown decision"),
    pytest.param(grant_body("D1", resource_types=["observation"]), id="lowercase resource type"),
    pytest.param(grant_body("D1", resource_types=["Observation"] * 2), id="duplicate resource type"),
    pytest.param(
        grant_body("D1", resource_types=[f"T{chr(97 + i % 26) * (1 + i // 26)}" for i in range(33)]),
        id="33 resource types",
    ),
    pytest.param(grant_body("D1", resource_types=["O" + "b" * 64]), id="resource type of 65 chars"),
    pytest.param(grant_body("D1", record_ids=[b"\x01" * 33]), id="bad record id"),
    pytest.param(grant_body("D1", record_ids=[bytes([i]) * 32 for i in range(33)]), id="33 record ids"),
    pytest.param(grant_body("D1", purposes=[]), id="empty purposes"),
    pytest.param(grant_body("D1", purposes=["TREAT", "TREAT"]), id="duplicate purpose"),
    pytest.param(grant_body("D1", purposes=["T" * 65]), id="purpose of 65 chars"),
    pytest.param(grant_body("D1", purposes=["Jane Doe"]), id="purpose with a space"),
    pytest.param(grant_body("D1", purposes=[{"a": 1}]), id="unhashable purpose"),
    pytest.param(grant_body("D1", start_ms=-1), id="negative start"),
    pytest.param(grant_body("D1", end_ms=True), id="bool end"),
    pytest.param(grant_body("D1", start_ms=5, end_ms=4), id="start after end"),
    pytest.param({**VALID, "note": "x"}, id="unexpected field"),
]


@pytest.mark.parametrize("body", INVALID_BODIES)
def test_invalid_grant_bodies_are_refused(chain: Chain, body: dict[str, Any]) -> None:
    r = chain.send("P", "consent.grant", body)
    assert r.code == "invalid_body", r
    assert chain.keys("consent") == []


@pytest.mark.parametrize(
    ("sender", "body", "code"),
    [
        pytest.param("D1", grant_body("D2"), "unauthorized", id="a provider cannot grant"),
        pytest.param("P", grant_body("P"), "invalid_body", id="self grant"),
        pytest.param(
            "P",
            grant_body(
                "D1",
                resource_types=["O" + "b" * 63],
                purposes=["T" * 64],
                record_ids=[bytes([i]) * 32 for i in range(32)],
            ),
            "ok",
            id="limits exactly",
        ),
    ],
)
def test_grant_senders(chain: Chain, sender: str, body: dict[str, Any], code: str) -> None:
    assert chain.send(sender, "consent.grant", body).code == code


def test_grant_and_revoke(chain: Chain) -> None:
    r = chain.ok("P", "consent.grant", grant_body("D1", actions=["write", "read"]))
    ev = r.events[0]
    gid = ev["grant_id"]
    assert ev == {
        "type": "consent.granted",
        "patient": pub("P"),
        "grant_id": gid,
        "actor": pub("D1"),
        "actor_role": None,
        "decision": "permit",
    }
    assert chain.keys("consent") == [b"g/" + pub("P") + gid]
    assert chain.check("D1") == (True, f"permitted by consent {gid.hex()}")

    assert chain.send("Q", "consent.revoke", {"grant_id": gid}).code == "unknown_grant"  # not Q's
    r = chain.ok("P", "consent.revoke", {"grant_id": gid})
    assert r.events == ({"type": "consent.revoked", "patient": pub("P"), "grant_id": gid},)
    assert chain.check("D1") == (False, "no consent")
    assert chain.send("P", "consent.revoke", {"grant_id": gid}).code == "already_revoked"
    listed = chain.query("consent.list", {"patient": pub("P")})
    assert len(listed) == 1 and listed[0]["revoked_height"] == chain.height - 1  # kept for audit
    assert listed[0]["actions"] == ["read", "write"]
    assert chain.query("consent.list", {"patient": pub("P"), "include_revoked": False}) == []


def test_check_query(chain: Chain) -> None:
    gid = chain.grant("P", grant_body("D1"))
    params = {
        "patient": pub("P"),
        "actor": pub("D1"),
        "action": "read",
        "resource_type": "Observation",
        "time_ms": chain.time_ms,
    }
    assert chain.query("consent.check", params) == {"allowed": True, "reason": f"permitted by consent {gid.hex()}"}
    assert chain.query("consent.check", {**params, "action": "write"})["allowed"] is False
    with pytest.raises(QueryError, match="action"):
        chain.query("consent.check", {**params, "action": "erase"})
    with pytest.raises(QueryError, match="time_ms"):
        chain.query("consent.check", {**params, "time_ms": None})
    with pytest.raises(QueryError, match="patient"):
        chain.query("consent.list", {"patient": "P"})


# ------------------------------------------------------------------ the decision table

T0 = 1_764_000_000_000  # genesis time; checks below run at NOW
NOW = T0 + 100 * HOUR_MS

# (grants, request overrides, expected allowed, reason prefix)
CASES: list[Any] = [
    pytest.param([], {}, False, "no consent", id="nothing granted"),
    pytest.param([grant_body("D1")], {"actor": "P"}, True, "patient", id="patient always allowed"),
    pytest.param([grant_body("D1")], {}, True, "permitted", id="key permit"),
    pytest.param([grant_body("D1")], {"actor": "D2"}, False, "no consent", id="other key"),
    pytest.param([grant_body("D1")], {"action": "write"}, False, "no consent", id="action not granted"),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny")], {}, False, "denied", id="deny overrides permit"
    ),
    pytest.param(
        [grant_body("D1"), grant_body(role="provider", decision="deny")],
        {},
        False,
        "denied",
        id="role deny overrides key permit",
    ),
    pytest.param([grant_body(role="pharmacy")], {"actor": "PH"}, True, "permitted", id="role permit"),
    pytest.param([grant_body(role="pharmacy")], {"actor": "D1"}, False, "no consent", id="role mismatch"),
    pytest.param(
        [grant_body(role="provider")], {"actor": "X"}, False, "no consent", id="role permit needs accreditation"
    ),
    pytest.param(
        [grant_body(role="provider"), grant_body(role="pharmacy", decision="deny")],
        {"actor": "PH2"},
        False,
        "denied",
        id="role deny applies without accreditation",
    ),
    pytest.param([grant_body("D1", end_ms=NOW - 1)], {}, False, "no consent", id="expired"),
    pytest.param([grant_body("D1", end_ms=NOW)], {}, True, "permitted", id="end is inclusive"),
    pytest.param([grant_body("D1", start_ms=NOW + 1)], {}, False, "no consent", id="not yet started"),
    pytest.param([grant_body("D1", start_ms=NOW, end_ms=NOW)], {}, True, "permitted", id="start inclusive"),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny", end_ms=NOW - 1)],
        {},
        True,
        "permitted",
        id="expired deny no longer applies",
    ),
    pytest.param([grant_body("D1", purposes=["TREAT"])], {}, True, "permitted", id="purpose listed"),
    pytest.param(
        [grant_body("D1", purposes=["TREAT"])], {"purpose": "HRESCH"}, False, "no consent", id="purpose not listed"
    ),
    pytest.param(
        [grant_body("D1", purposes=["TREAT"])],
        {"purpose": None},
        False,
        "no consent",
        id="permit by purpose needs a purpose",
    ),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny", purposes=["HRESCH"])],
        {"purpose": None},
        False,
        "denied",
        id="omitting the purpose cannot evade a purpose deny",
    ),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny", purposes=["HRESCH"])],
        {},
        True,
        "permitted",
        id="purpose deny leaves other purposes",
    ),
    pytest.param([grant_body("D1", resource_types=["Observation"])], {}, True, "permitted", id="type in scope"),
    pytest.param(
        [grant_body("D1", resource_types=["Observation"])],
        {"resource_type": "Condition"},
        False,
        "no consent",
        id="type out of scope",
    ),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny", resource_types=["Condition"])],
        {"resource_type": "Condition"},
        False,
        "denied",
        id="type-scoped deny",
    ),
    pytest.param([grant_body("D1", record_ids=[R1])], {"record_id": R1}, True, "permitted", id="record in scope"),
    pytest.param([grant_body("D1", record_ids=[R1])], {"record_id": R2}, False, "no consent", id="record out of scope"),
    pytest.param(
        [grant_body("D1", record_ids=[R1])], {"record_id": None}, False, "no consent", id="record scope needs a record"
    ),
    pytest.param(
        [grant_body("D1"), grant_body("D1", decision="deny", record_ids=[R2])],
        {"record_id": R1},
        True,
        "permitted",
        id="record deny scoped to another record",
    ),
    pytest.param([grant_body("D1")], {"patient": "Q"}, False, "no consent", id="grants are per patient"),
]


@pytest.mark.parametrize(("grants", "request_", "allowed", "reason"), CASES)
def test_check_table(
    chain: Chain, grants: list[dict[str, Any]], request_: dict[str, Any], allowed: bool, reason: str
) -> None:
    for g in grants:
        chain.ok("P", "consent.grant", g)
    req: dict[str, Any] = {
        "actor": "D1",
        "action": "read",
        "resource_type": "Observation",
        "record_id": R1,
        "purpose": "TREAT",
        "patient": "P",
        **request_,
    }
    got = chain.check(req.pop("actor"), req.pop("action"), req.pop("resource_type"), time_ms=NOW, **req)
    assert got[0] is allowed, got
    assert got[1].startswith(reason), got


def test_revoked_deny_no_longer_applies(chain: Chain) -> None:
    chain.grant("P", grant_body("D1"))
    deny = chain.grant("P", grant_body("D1", decision="deny"))
    assert chain.check("D1")[0] is False
    chain.ok("P", "consent.revoke", {"grant_id": deny})
    assert chain.check("D1")[0] is True


def test_revoked_accreditation_loses_role_permit(chain: Chain) -> None:
    chain.grant("P", grant_body(role="pharmacy"))
    assert chain.check("PH")[0] is True
    chain.ok("A", "governance.revoke", {"subject": pub("PH"), "reason": "licence withdrawn"})
    assert chain.check("PH") == (False, "no consent")


# ------------------------------------------------------------------ property: check == naive reference

ACTORS = ["D1", "D2", "X", "PH", "PH2"]
ROLES_OF = {"D1": "provider", "D2": "provider", "X": "provider", "PH": "pharmacy", "PH2": "pharmacy"}
ACCREDITED_ACTORS = {"D1", "D2", "PH"}
TYPES = ["Observation", "Condition"]
PURPOSES = ["TREAT", "HRESCH"]
TIMES = [T0, T0 + 10, T0 + 20]


def _ordered_period(g: dict[str, Any]) -> bool:
    return bool(g["start"] is None or g["end"] is None or g["start"] <= g["end"])


grant_st: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {
        "who": st.one_of(
            st.sampled_from(ACTORS).map(lambda a: ("key", a)),
            st.sampled_from(["provider", "pharmacy"]).map(lambda r: ("role", r)),
        ),
        "actions": st.lists(st.sampled_from(["read", "write"]), min_size=1, max_size=2, unique=True),
        "types": st.lists(st.sampled_from(TYPES), max_size=2, unique=True),
        "records": st.lists(st.sampled_from([R1, R2]), max_size=2, unique=True),
        "purposes": st.none() | st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2, unique=True),
        "start": st.none() | st.sampled_from(TIMES),
        "end": st.none() | st.sampled_from(TIMES),
        "decision": st.sampled_from(["permit", "deny"]),
        "revoked": st.booleans(),
    }
).filter(_ordered_period)


def _reference(
    grants: list[dict[str, Any]], actor: str, action: str, rtype: str, record: bytes | None, purpose: str | None, t: int
) -> bool:
    """The FHIR Consent rules, spelled out independently of the module."""

    def applies(g: dict[str, Any]) -> bool:
        deny = g["decision"] == "deny"
        kind, who = g["who"]
        if kind == "key" and who != actor:
            return False
        if kind == "role" and (ROLES_OF[actor] != who or (not deny and actor not in ACCREDITED_ACTORS)):
            return False
        if g["revoked"] or (g["start"] is not None and t < g["start"]) or (g["end"] is not None and t > g["end"]):
            return False
        if action not in g["actions"] or (g["types"] and rtype not in g["types"]):
            return False
        if g["records"] and record not in g["records"]:
            return False
        if g["purposes"] is not None and purpose not in g["purposes"]:
            return purpose is None and deny
        return True

    matching = [g for g in grants if applies(g)]
    if any(g["decision"] == "deny" for g in matching):
        return False
    return any(g["decision"] == "permit" for g in matching)


def _state_with(grants: list[dict[str, Any]]) -> DictState:
    """Grants written straight into a state holding the cast's identities (no tx per example)."""
    data: dict[tuple[str, bytes], bytes] = {}
    for name, role in ROLES_OF.items():
        data[("identity", b"id/" + pub(name))] = codec.encode(
            {
                "role": role,
                "enc_key": b"\x00" * 32,
                "status": ACCREDITED if name in ACCREDITED_ACTORS else "pending",
                "label": None,
                "registered_at": 1,
                "changed_at": 1,
            }
        )
    for i, g in enumerate(grants):
        kind, who = g["who"]
        data[(consent_mod.NAMESPACE, consent_mod.grant_key(pub("P"), i.to_bytes(32, "big")))] = codec.encode(
            {
                "actor": pub(who) if kind == "key" else None,
                "actor_role": who if kind == "role" else None,
                "actions": g["actions"],
                "resource_types": g["types"],
                "record_ids": g["records"],
                "purposes": g["purposes"],
                "start_ms": g["start"],
                "end_ms": g["end"],
                "decision": g["decision"],
                "created_height": 1,
                "created_ms": T0,
                "revoked_height": 2 if g["revoked"] else None,
                "revoked_ms": T0 if g["revoked"] else None,
            }
        )
    return DictState(data)


@settings(max_examples=300, deadline=None)
@given(
    grants=st.lists(grant_st, max_size=6),
    actor=st.sampled_from(ACTORS),
    action=st.sampled_from(["read", "write"]),
    rtype=st.sampled_from(TYPES),
    record=st.none() | st.sampled_from([R1, R2]),
    purpose=st.none() | st.sampled_from(PURPOSES),
    t=st.sampled_from([T0 - 1, *TIMES, T0 + 30]),
)
def test_check_equals_reference(
    grants: list[dict[str, Any]], actor: str, action: str, rtype: str, record: bytes | None, purpose: str | None, t: int
) -> None:
    state = _state_with(grants)
    allowed, reason = check(state, pub("P"), pub(actor), action, rtype, record, purpose, t)
    assert allowed == _reference(grants, actor, action, rtype, record, purpose, t), reason
    assert reason.startswith("permitted" if allowed else ("denied", "no consent"))


def test_grants_sent_as_txs_get_the_same_answers(chain: Chain) -> None:
    """The tx path stores what the property's direct state writes assume."""
    gid = chain.grant(
        "P",
        grant_body(
            role="pharmacy",
            actions=["read"],
            purposes=["TREAT"],
            start_ms=chain.time_ms,
            end_ms=chain.time_ms + BLOCK_INTERVAL_MS * 10,
        ),
    )
    g = codec.decode(chain.state.data[("consent", b"g/" + pub("P") + gid)])
    assert set(g) == {
        "actor",
        "actor_role",
        "actions",
        "resource_types",
        "record_ids",
        "purposes",
        "start_ms",
        "end_ms",
        "decision",
        "created_height",
        "created_ms",
        "revoked_height",
        "revoked_ms",
    }
    assert chain.check("PH")[0] is True
    assert chain.check("PH", time_ms=chain.time_ms + BLOCK_INTERVAL_MS * 11)[0] is False
