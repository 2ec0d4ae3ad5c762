"""records.add / add_envelopes / access / break_glass / erase and their queries
(medchaind/app/records.py), with consent from medchaind/app/consent.py.

Cast (records_kit.Chain.standard): patients P, Q; accredited providers D1, D2; pending
provider X; accredited pharmacy PH.
"""

from __future__ import annotations

from typing import Any

import pytest
from records_kit import (
    BLOCK_INTERVAL_MS,
    HOUR_MS,
    Chain,
    add_body,
    ciphertext_hash,
    envelopes,
    grant_body,
    pub,
    sealed,
)

from medchaind import codec
from medchaind.app import DictState, QueryError
from medchaind.errors import TxRejected
from medchaind.modules.records.machine import BREAK_GLASS_MS, MAX_SIZE
from medchaind.types import decode_tx


@pytest.fixture(scope="module")
def base() -> Chain:
    return Chain.standard()


@pytest.fixture
def chain(base: Chain) -> Chain:
    c = Chain.__new__(Chain)
    c.__dict__.update(base.__dict__)
    c.state = DictState(base.state.data)
    return c


def _envelope_keys(c: Chain, record_id: bytes) -> list[bytes]:
    return [k for k in c.keys("records") if k.startswith(b"e/" + record_id)]


# ------------------------------------------------------------------ records.add

ADD_CASES = [
    # (sender, grants P gives first, body overrides, expected code)
    pytest.param("P", [], {}, "ok", id="patient adds own record"),
    pytest.param("D1", [grant_body("D1", actions=["write"])], {}, "ok", id="permitted provider"),
    pytest.param("D1", [grant_body(role="provider", actions=["write"])], {}, "ok", id="role-permitted provider"),
    pytest.param("D1", [], {}, "consent_required", id="no consent"),
    pytest.param("D1", [grant_body("D1", actions=["read"])], {}, "consent_required", id="read-only consent"),
    pytest.param("D2", [grant_body("D1", actions=["write"])], {}, "consent_required", id="consent for another"),
    pytest.param(
        "D1",
        [grant_body("D1", actions=["write"]), grant_body("D1", actions=["write"], decision="deny")],
        {},
        "consent_required",
        id="deny overrides permit",
    ),
    pytest.param(
        "D1",
        [grant_body("D1", actions=["write"], resource_types=["Condition"])],
        {},
        "consent_required",
        id="type out of scope",
    ),
    pytest.param(
        "D1",
        [grant_body("D1", actions=["write"], purposes=["TREAT"])],
        {"purpose": "TREAT"},
        "ok",
        id="purpose-restricted with purpose",
    ),
    pytest.param(
        "D1",
        [grant_body("D1", actions=["write"], purposes=["TREAT"])],
        {},
        "consent_required",
        id="purpose-restricted without purpose",
    ),
    pytest.param("X", [grant_body("X", actions=["write"])], {}, "unauthorized", id="non-accredited provider"),
    pytest.param("PH", [grant_body("PH", actions=["write"])], {}, "unauthorized", id="pharmacy cannot add"),
    pytest.param("Q", [], {}, "unauthorized", id="another patient"),
    pytest.param(
        "P", [], {"patient": pub("D1"), "envelopes": envelopes("D1")}, "unknown_patient", id="subject is not a patient"
    ),
    # -- body validation
    pytest.param("P", [], {"resource_type": "observation"}, "invalid_body", id="lowercase type"),
    pytest.param("P", [], {"resource_type": "O"}, "invalid_body", id="one-letter type"),
    pytest.param("P", [], {"resource_type": "Obs ervation"}, "invalid_body", id="type with space"),
    pytest.param("P", [], {"content_hash": b"\x00" * 31}, "invalid_body", id="short hash"),
    pytest.param("P", [], {"size": 0}, "invalid_body", id="size 0"),
    pytest.param("P", [], {"size": MAX_SIZE}, "ok", id="size 4 MiB"),
    pytest.param("P", [], {"size": MAX_SIZE + 1}, "invalid_body", id="size over 4 MiB"),
    pytest.param("P", [], {"size": True}, "invalid_body", id="size bool"),
    pytest.param("P", [], {"envelopes": []}, "invalid_body", id="no envelopes"),
    pytest.param("P", [], {"envelopes": envelopes("D1")}, "invalid_body", id="patient envelope missing"),
    pytest.param("P", [], {"envelopes": envelopes("P") * 2}, "invalid_body", id="duplicate recipient"),
    pytest.param(
        "P",
        [],
        {"envelopes": [{"recipient": pub("P"), "sealed_key": b"\x00" * 47}]},
        "invalid_body",
        id="sealed key 47 bytes",
    ),
    pytest.param(
        "P",
        [],
        {"envelopes": [{"recipient": pub("P"), "sealed_key": b"\x00" * 257}]},
        "invalid_body",
        id="sealed key 257 bytes",
    ),
    pytest.param(
        "P", [], {"envelopes": [{"recipient": pub("P"), "sealed_key": b"\x00" * 256}]}, "ok", id="sealed key 256 bytes"
    ),
    pytest.param(
        "P",
        [],
        {"envelopes": [{"recipient": pub("P"), "sealed_key": b"\x00" * 48, "x": 1}]},
        "invalid_body",
        id="envelope with extra field",
    ),
    pytest.param(
        "P", [], {"envelopes": envelopes("P", *[f"R{i}" for i in range(32)])}, "invalid_body", id="33 envelopes"
    ),
    pytest.param("P", [], {"purpose": "treat me"}, "invalid_body", id="bad purpose"),
    pytest.param("P", [], {"note": "x"}, "invalid_body", id="unexpected field"),
]


@pytest.mark.parametrize(("sender", "grants", "overrides", "code"), ADD_CASES)
def test_add(chain: Chain, sender: str, grants: list[dict[str, Any]], overrides: dict[str, Any], code: str) -> None:
    for g in grants:
        chain.ok("P", "consent.grant", g)
    body = {**add_body("P", recipients=["P", sender] if sender != "P" else ["P"]), **overrides}
    r = chain.send(sender, "records.add", body)
    assert r.code == code, r
    if code == "ok":
        (ev,) = r.events
        assert ev["type"] == "records.added" and ev["author"] == pub(sender)
        listed = chain.query("records.list", {"patient": pub("P")})
        assert [x["record_id"] for x in listed] == ["0x" + ev["record_id"].hex()]
    else:
        assert chain.keys("records") == []


def test_permitted_provider_adds_and_reads_others_do_not(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", "Condition", recipients=["P", "D1"]))
    meta = chain.get(rid, "D1")
    assert meta["envelope"] == "0x" + sealed("D1", "r1").hex()
    assert meta["author"] == "0x" + pub("D1").hex() and meta["resource_type"] == "Condition"
    assert chain.get(rid, "P")["envelope"] == "0x" + sealed("P", "r1").hex()
    for reader in ["D2", "X", "PH", "Q"]:
        with pytest.raises(QueryError, match="not permitted: no consent"):
            chain.get(rid, reader)
    r = chain.send("D2", "records.access", {"record_id": rid, "purpose": "TREAT"})
    assert (r.code, r.reason) == ("access_denied", "no consent")


def test_shared_reader_gets_its_envelope_and_audit_entries(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    gid = chain.grant("P", grant_body("D2", purposes=["TREAT"]))
    r = chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2", tag="w")})
    assert r.events[0]["type"] == "records.shared" and r.events[0]["recipients"] == [pub("D2")]
    with pytest.raises(QueryError, match="not permitted"):
        chain.get(rid, "D2", purpose="HRESCH")

    heights = []
    for purpose in ["TREAT", "TREAT"]:
        r = chain.ok("D2", "records.access", {"record_id": rid, "purpose": purpose})
        heights.append(chain.height)
        assert r.events[0] == {
            "type": "records.accessed",
            "record_id": rid,
            "patient": pub("P"),
            "reader": pub("D2"),
            "purpose": "TREAT",
            "break_glass": False,
        }
    assert chain.get(rid, "D2")["envelope"] == "0x" + sealed("D2", "w").hex()
    assert chain.get(rid, "D2")["access"] == f"permitted by consent {gid.hex()}"
    assert chain.send("D2", "records.access", {"record_id": rid, "purpose": "HRESCH"}).code == "access_denied"
    chain.ok("P", "records.access", {"record_id": rid, "purpose": "TREAT"})  # the patient may record too
    audit = chain.query("records.audit", {"patient": pub("P")})
    assert [(a["reader"], a["height"], a["break_glass"]) for a in audit] == [
        ("0x" + pub("D2").hex(), heights[0], False),
        ("0x" + pub("D2").hex(), heights[1], False),
        ("0x" + pub("P").hex(), chain.height, False),
    ]
    assert chain.query("records.audit", {"patient": pub("Q")}) == []


def test_audit_trail_pages_with_offset(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    chain.grant("P", grant_body("D1"))
    for purpose in ("TREAT", "HPAYMT", "TREAT"):
        chain.ok("D1", "records.access", {"record_id": rid, "purpose": purpose})
    trail = chain.query("records.audit", {"patient": pub("P")})
    assert [e["purpose"] for e in trail] == ["TREAT", "HPAYMT", "TREAT"]
    assert chain.query("records.audit", {"patient": pub("P"), "offset": 1, "limit": 1}) == trail[1:2]
    with pytest.raises(QueryError, match="offset"):
        chain.query("records.audit", {"patient": pub("P"), "offset": "1"})


def test_two_accesses_in_one_block_get_distinct_audit_entries(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    chain.grant("P", grant_body("D1"))
    chain.grant("P", grant_body("D2"))
    ex = chain.commit([chain.tx(n, "records.access", {"record_id": rid, "purpose": "TREAT"}) for n in ["D1", "D2"]])
    assert all(r.ok for r in ex.receipts)
    keys = [k for k in chain.keys("records") if k.startswith(b"a/")]
    assert keys == [b"a/" + pub("P") + chain.height.to_bytes(8, "big") + i.to_bytes(4, "big") for i in (0, 1)]


def test_revocation_stops_access(chain: Chain) -> None:
    rid = chain.add("P", add_body("P", recipients=["P", "D1"]))
    gid = chain.grant("P", grant_body("D1"))
    assert chain.read(rid, "D1")["envelope"] is not None
    chain.ok("P", "consent.revoke", {"grant_id": gid})
    with pytest.raises(QueryError, match="no consent"):
        chain.get(rid, "D1")
    assert chain.send("D1", "records.access", {"record_id": rid, "purpose": "TREAT"}).code == "access_denied"
    assert chain.send("D1", "records.add", add_body("P", recipients=["P", "D1"], tag="r2")).code == "consent_required"


def test_deny_overrides_permit_for_reads(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    chain.grant("P", grant_body(role="provider"))
    deny = chain.grant("P", grant_body("D2", decision="deny"))
    chain.get(rid, "D1")
    with pytest.raises(QueryError, match=f"denied by consent {deny.hex()}"):
        chain.get(rid, "D2")


def test_consent_period(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    t = chain.time_ms
    chain.grant("P", grant_body("D1", start_ms=t + 2 * HOUR_MS, end_ms=t + 4 * HOUR_MS))
    assert chain.send("D1", "records.access", {"record_id": rid, "purpose": "TREAT"}).code == "access_denied"
    chain.advance(2 * HOUR_MS)
    chain.ok("D1", "records.access", {"record_id": rid, "purpose": "TREAT"})
    chain.advance(2 * HOUR_MS)
    r = chain.send("D1", "records.access", {"record_id": rid, "purpose": "TREAT"})
    assert (r.code, r.reason) == ("access_denied", "no consent")  # block time past end_ms
    with pytest.raises(QueryError):
        chain.get(rid, "D1")


def test_record_id_scope(chain: Chain) -> None:
    r1 = chain.add("P", add_body("P", tag="a"))
    r2 = chain.add("P", add_body("P", tag="b"))
    chain.grant("P", grant_body("D1", record_ids=[r1]))
    chain.get(r1, "D1")
    with pytest.raises(QueryError):
        chain.get(r2, "D1")


def test_role_grant_for_pharmacy(chain: Chain) -> None:
    rid = chain.add("P", add_body("P", "MedicationRequest", recipients=["P", "PH"]))
    other = chain.add("P", add_body("P", "Condition", tag="c"))
    chain.grant("P", grant_body(role="pharmacy", resource_types=["MedicationRequest"], purposes=["TREAT"]))
    assert chain.read(rid, "PH")["envelope"] == "0x" + sealed("PH", "r1").hex()
    for rec, reader in [(other, "PH"), (rid, "PH2"), (rid, "D1")]:
        with pytest.raises(QueryError):
            chain.get(rec, reader)


def test_add_envelopes_rules(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    assert (
        chain.send("D1", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D1")}).code
        == "unauthorized"
    )
    assert (
        chain.send("P", "records.add_envelopes", {"record_id": b"\x09" * 32, "envelopes": envelopes("D1")}).code
        == "unknown_record"
    )
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("P", tag="rotated")})
    assert chain.get(rid, "P")["envelope"] == "0x" + sealed("P", "rotated").hex()  # replaced
    assert len(_envelope_keys(chain, rid)) == 1


def test_list_newest_first_with_limit(chain: Chain) -> None:
    ids = [chain.add("P", add_body("P", tag=str(i))) for i in range(3)]
    listed = chain.query("records.list", {"patient": pub("P")})
    assert [x["record_id"] for x in listed] == ["0x" + r.hex() for r in reversed(ids)]
    assert len(chain.query("records.list", {"patient": pub("P"), "limit": 2})) == 2
    page2 = chain.query("records.list", {"patient": pub("P"), "limit": 2, "offset": 2})
    assert [x["record_id"] for x in page2] == ["0x" + ids[0].hex()]
    assert chain.query("records.list", {"patient": pub("P"), "offset": 3}) == []
    with pytest.raises(QueryError, match="limit"):
        chain.query("records.list", {"patient": pub("P"), "limit": 0})
    with pytest.raises(QueryError, match="offset"):
        chain.query("records.list", {"patient": pub("P"), "offset": -1})
    assert chain.query("records.get", {"record_id": b"\x07" * 32, "reader": pub("P"), "time_ms": 0}) is None


# ------------------------------------------------------------------ break-glass


def test_break_glass(chain: Chain) -> None:
    rid = chain.add("P", add_body("P", recipients=["P", "D2"]))
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2")})
    chain.grant("P", grant_body("D2", decision="deny"))  # even an explicit deny yields to an emergency
    with pytest.raises(QueryError):
        chain.get(rid, "D2")
    for sender, code in [("X", "unauthorized"), ("PH", "unauthorized"), ("Q", "unauthorized")]:
        assert chain.send(sender, "records.break_glass", {"record_id": rid, "reason": "unconscious"}).code == code
    assert chain.send("D2", "records.break_glass", {"record_id": rid, "reason": ""}).code == "invalid_body"
    assert chain.send("D2", "records.break_glass", {"record_id": rid, "reason": "x" * 257}).code == "invalid_body"

    r = chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG-UNCONSCIOUS"})
    t = chain.time_ms
    assert r.events == (
        {
            "type": "records.break_glass",
            "record_id": rid,
            "patient": pub("P"),
            "provider": pub("D2"),
            "reason": "EMERG-UNCONSCIOUS",
            "expires_ms": t + BREAK_GLASS_MS,
        },
    )
    (entry,) = chain.query("records.audit", {"patient": pub("P")})
    assert entry["break_glass"] is True and entry["reason"] == "EMERG-UNCONSCIOUS" and entry["purpose"] == "ETREAT"
    r = chain.ok("D2", "records.access", {"record_id": rid, "purpose": "ETREAT"})
    assert r.events[0]["break_glass"] is True
    assert chain.query("records.audit", {"patient": pub("P")})[-1]["break_glass"] is True
    got = chain.get(rid, "D2", "ETREAT")
    assert got["access"] == "break-glass" and got["envelope"] == "0x" + sealed("D2", "k").hex()
    with pytest.raises(QueryError):
        chain.get(rid, "D1")  # the window is the breaker's alone

    # the last moment of the window: an access committed then releases the record then
    chain.advance(BREAK_GLASS_MS - BLOCK_INTERVAL_MS - (chain.time_ms - t))
    chain.ok("D2", "records.access", {"record_id": rid, "purpose": "ETREAT"})
    assert chain.time_ms == t + BREAK_GLASS_MS
    assert chain.get(rid, "D2", "ETREAT", time_ms=t + BREAK_GLASS_MS)["access"] == "break-glass"
    with pytest.raises(QueryError, match="not permitted"):
        chain.get(rid, "D2", "ETREAT", time_ms=t + BREAK_GLASS_MS + 1)
    assert chain.send("D2", "records.access", {"record_id": rid, "purpose": "ETREAT"}).code == "access_denied"


# ------------------------------------------------------------------ key requests (custodian release)


def _requests(chain: Chain, author: str) -> list[dict[str, Any]]:
    return chain.query(  # type: ignore[no-any-return]
        "records.key_requests", {"author": pub(author), "time_ms": chain.time_ms + BLOCK_INTERVAL_MS}
    )


def test_break_glass_leaves_a_key_request_the_author_answers(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"]))
    assert _requests(chain, "D1") == []
    # before any request, the author cannot hand the key to anyone
    env_d2 = {"record_id": rid, "envelopes": envelopes("D2", tag="bg")}
    assert chain.send("D1", "records.add_envelopes", env_d2).code == "no_key_request"

    r = chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    assert r.events[-1] == {
        "type": "records.key_requested",
        "record_id": rid,
        "patient": pub("P"),
        "author": pub("D1"),
        "reader": pub("D2"),
        "purpose": "ETREAT",
        "break_glass": True,
    }
    (req,) = _requests(chain, "D1")
    assert (req["record_id"], req["reader"], req["permitted"], req["break_glass"]) == (
        "0x" + rid.hex(), "0x" + pub("D2").hex(), True, True,
    )
    assert _requests(chain, "D2") == []  # indexed by author only

    # a stranger (not author, not patient) may not answer it; the author may, once, for the requester only
    assert chain.send("D2", "records.add_envelopes", env_d2).code == "unauthorized"
    both = {"record_id": rid, "envelopes": envelopes("D2", "PH", tag="bg")}
    assert chain.send("D1", "records.add_envelopes", both).code == "no_key_request"
    r = chain.ok("D1", "records.add_envelopes", env_d2)
    assert r.events[0]["sender"] == pub("D1") and r.events[0]["recipients"] == [pub("D2")]
    assert _requests(chain, "D1") == []
    # the answered request is gone: re-sending is refused; a reader with an envelope requests nothing
    assert chain.send("D1", "records.add_envelopes", env_d2).code == "no_key_request"
    r = chain.ok("D2", "records.access", {"record_id": rid, "purpose": "ETREAT"})
    assert [e["type"] for e in r.events] == ["records.accessed"]
    assert chain.get(rid, "D2", "ETREAT")["envelope"] == "0x" + sealed("D2", "bg").hex()


def test_key_requests_are_listed_by_patient_too(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"]))
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    t = chain.time_ms + BLOCK_INTERVAL_MS
    (by_patient,) = chain.query("records.key_requests", {"patient": pub("P"), "time_ms": t})
    (by_author,) = chain.query("records.key_requests", {"author": pub("D1"), "time_ms": t})
    assert by_patient == by_author and by_patient["author"] == "0x" + pub("D1").hex()
    with pytest.raises(QueryError, match="exactly one"):
        chain.query("records.key_requests", {"patient": pub("P"), "author": pub("D1"), "time_ms": t})
    # the patient answers (its app, while the author's custodian is down): both indexes clear
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2", tag="p")})
    assert chain.query("records.key_requests", {"patient": pub("P"), "time_ms": t}) == []
    assert _requests(chain, "D1") == []


def test_expired_window_or_revoked_consent_blocks_the_answer(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))  # the patient is the author: its own custodian
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    gid = chain.grant("P", grant_body("D1"))
    chain.ok("D1", "records.access", {"record_id": rid, "purpose": "TREAT"})  # role-less reader without envelope
    reqs = {r["reader"]: r for r in _requests(chain, "P")}
    assert set(reqs) == {"0x" + pub("D1").hex(), "0x" + pub("D2").hex()}
    assert not reqs["0x" + pub("D1").hex()]["break_glass"] and reqs["0x" + pub("D1").hex()]["purpose"] == "TREAT"

    chain.ok("P", "consent.revoke", {"grant_id": gid})
    chain.advance(BREAK_GLASS_MS)
    assert all(not r["permitted"] for r in _requests(chain, "P"))
    # the patient may still share with anyone (its own choice); that clears the request
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D1", tag="p")})
    assert [r["reader"] for r in _requests(chain, "P")] == ["0x" + pub("D2").hex()]


def test_author_answers_are_checked_against_permission_at_block_time(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"]))
    gid = chain.grant("P", grant_body("D2", purposes=["TREAT"]))
    chain.ok("D2", "records.access", {"record_id": rid, "purpose": "TREAT"})
    chain.ok("P", "consent.revoke", {"grant_id": gid})
    r = chain.send("D1", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2")})
    assert r.code == "access_denied"
    assert _requests(chain, "D1")[0]["permitted"] is False


def test_erasure_clears_key_requests(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    assert len(_requests(chain, "P")) == 1
    chain.ok("P", "records.erase", {"record_id": rid})
    assert _requests(chain, "P") == []
    assert not any(k.startswith(b"q/") for k in chain.keys("records"))
    with pytest.raises(QueryError, match="time_ms"):
        chain.app.query(chain.state, "records.key_requests", {"author": pub("P")})  # no tip time given


def test_shared_ciphertext_is_in_use_until_its_last_record_is_erased(chain: Chain) -> None:
    a = chain.add("P", add_body("P", tag="same"))
    b = chain.add("P", add_body("P", tag="same"))
    assert chain.send("P", "records.erase", {"record_id": a}).events[0]["content_in_use"] is True
    assert chain.send("P", "records.erase", {"record_id": b}).events[0]["content_in_use"] is False


# ------------------------------------------------------------------ erasure


def test_erasure(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"], tag="blob"))
    keep = chain.add("P", add_body("P", recipients=["P", "D1"], tag="other"))
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2", "PH")})
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    assert len(_envelope_keys(chain, rid)) == 4

    assert chain.send("D1", "records.erase", {"record_id": rid}).code == "unauthorized"  # even the author
    r = chain.ok("P", "records.erase", {"record_id": rid})
    assert r.events == (
        {
            "type": "records.erased",
            "record_id": rid,
            "patient": pub("P"),
            "content_hash": ciphertext_hash("blob"),
            "content_in_use": False,
        },
    )
    keys = chain.keys("records")
    assert not any(k.startswith((b"e/" + rid, b"b/" + rid, b"k/" + pub("D1") + rid)) for k in keys)
    assert not any(k.startswith(b"h/" + ciphertext_hash("blob")) for k in keys)
    assert len(_envelope_keys(chain, keep)) == 2  # other records untouched
    assert not any(sealed(n, "blob") in v for (m, _), v in chain.state.data.items() for n in ["P", "D1", "D2", "PH"])
    meta = codec.decode(chain.state.data[("records", b"r/" + rid)])
    assert meta["erased"] is True and meta["erased_height"] == chain.height
    assert meta["content_hash"] == ciphertext_hash("blob")

    got = chain.get(rid, "Q")  # the tombstone: metadata, no envelope, to anyone
    assert (got["erased"], got["envelope"], got["content_hash"]) == (True, None, "0x" + ciphertext_hash("blob").hex())
    assert chain.get(rid, "P")["envelope"] is None
    refused: list[tuple[str, str, dict[str, Any]]] = [
        ("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D1")}),
        ("D1", "records.access", {"record_id": rid, "purpose": "TREAT"}),
        ("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"}),
        ("P", "records.erase", {"record_id": rid}),
    ]
    for sender, type_, body in refused:
        assert chain.send(sender, type_, body).code == "erased", type_
    assert chain.query("records.list", {"patient": pub("P")})[1]["erased"] is True


# ------------------------------------------------------------------ determinism and privacy


def _workload() -> list[list[tuple[str, str, dict[str, Any]]]]:
    """Blocks of (sender, type, body) mixing successes and failures."""
    return [
        [
            ("P", "consent.grant", grant_body("D1", actions=["read", "write"])),
            ("P", "consent.grant", grant_body(role="pharmacy", purposes=["TREAT"])),
        ],
        [
            ("P", "records.add", add_body("P", recipients=["P", "PH"], tag="x")),
            ("D1", "records.add", add_body("P", recipients=["P", "D1"], tag="z")),
            ("D2", "records.add", add_body("P", tag="y")),
        ],  # consent_required
    ]


def test_two_apps_agree() -> None:
    n1, n2 = Chain.standard(), Chain.standard()
    assert n1.app_hash == n2.app_hash
    for _ in range(2):
        for specs in _workload():
            block = n1.txs(specs)
            e1 = n1.commit(block)
            e2 = n2.commit([decode_tx(t.encoded) for t in block])
            assert e1.writes == e2.writes and e1.receipts == e2.receipts and e1.app_hash == e2.app_hash
    rid = n1.query("records.list", {"patient": pub("P")})[0]["record_id"]
    rid_b = bytes.fromhex(rid[2:])
    later: list[tuple[str, str, dict[str, Any]]] = [
        ("D1", "records.access", {"record_id": rid_b, "purpose": "TREAT"}),
        ("D2", "records.break_glass", {"record_id": rid_b, "reason": "EMERG"}),
        ("P", "records.erase", {"record_id": rid_b}),
    ]
    for body_tx in later:
        e1 = n1.commit([n1.tx(*body_tx)])
        e2 = n2.commit([n2.tx(*body_tx)])
        assert e1.receipts[0].ok and e1.app_hash == e2.app_hash
    assert n1.state.data == n2.state.data


def test_erasure_changes_the_app_hash(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    plain = chain.app.execute(chain.state, chain.next_block(), [], chain.app_hash)
    erase = chain.app.execute(
        chain.state, chain.next_block(), [chain.tx("P", "records.erase", {"record_id": rid})], chain.app_hash
    )
    assert plain.app_hash != erase.app_hash


HASH_FIELDS = {"patient", "author", "reader", "actor", "record_id", "content_hash"}
TEXT_FIELDS = {"resource_type", "purpose", "reason", "decision", "actor_role"}
TEXT_LIST_FIELDS = {"actions", "resource_types", "purposes"}


def _check_value(ns: str, key: bytes, value: Any) -> None:
    if ns == "records" and key.startswith(b"e/"):
        assert isinstance(value, bytes) and 48 <= len(value) <= 256  # a sealed envelope
        return
    if ns == "records" and key.startswith(b"h/"):
        assert value is True and len(key) == 2 + 32 + 32  # content index: two hashes, no value
        return
    if ns == "records" and key.startswith(b"q/"):
        assert value is True and len(key) == 2 + 32 + 32 + 32  # requests by patient: keys only
        return
    assert isinstance(value, dict), (key, value)
    for name, v in value.items():
        if isinstance(v, bytes):
            assert name in HASH_FIELDS and len(v) == 32, (key, name)
        elif isinstance(v, str):
            assert name in TEXT_FIELDS, (key, name)
        elif isinstance(v, list):
            if name == "record_ids":
                assert all(isinstance(x, bytes) and len(x) == 32 for x in v)
            else:
                assert name in TEXT_LIST_FIELDS and all(isinstance(x, str) for x in v), (key, name)
        else:
            assert v is None or type(v) in (int, bool), (key, name, v)


def test_privacy_only_keys_hashes_envelopes_and_codes_on_chain(chain: Chain) -> None:
    for specs in _workload():
        assert [r.code for r in chain.commit(chain.txs(specs)).receipts] != []
    rid = bytes.fromhex(chain.query("records.list", {"patient": pub("P")})[0]["record_id"][2:])
    chain.ok("D1", "records.access", {"record_id": rid, "purpose": "TREAT"})
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG-TRAUMA"})
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D1")})
    chain.grant("P", grant_body("D2", record_ids=[rid], start_ms=1, end_ms=2, decision="deny"))
    chain.ok("Q", "records.set_policy", {"strict": True})
    seen = {"records": 0, "consent": 0}
    for (ns, k), raw in chain.state.data.items():
        if ns in seen:
            seen[ns] += 1
            _check_value(ns, k, codec.decode(raw))
    assert seen["records"] >= 8 and seen["consent"] == 3
    # key layout: every key is a one-letter tag, '/', then fixed-size binary parts
    for k in chain.keys("records") + chain.keys("consent"):
        assert k[1:2] == b"/" and k[:1] in b"rebcpagkhqls" and len(k) in (34, 42, 46, 66, 98)


def test_block_interval_constant_is_what_checks_assume() -> None:
    assert BLOCK_INTERVAL_MS == 1_000


def test_admission_dry_run_agrees_with_execution(chain: Chain) -> None:
    """``App.check_tx`` runs the handler on a scratch overlay (block height 0, time 0)."""
    tx = chain.tx("D1", "records.add", add_body("P", recipients=["P", "D1"]))
    with pytest.raises(TxRejected) as exc:
        chain.app.check_tx(chain.state, tx, expected_nonce=chain.nonce("D1"))
    assert exc.value.code == "consent_required"
    chain.grant("P", grant_body("D1", actions=["write"]))
    tx = chain.tx("D1", "records.add", add_body("P", recipients=["P", "D1"]))
    chain.app.check_tx(chain.state, tx, expected_nonce=chain.nonce("D1"))
    assert chain.commit([tx]).receipts[0].ok
