"""The node releases a record's envelope and ciphertext only to a signed, fresh read
request, and to a reader other than the patient or the author only once that reader's
``records.access`` is committed (DESIGN.md §8, docs/protocol.md §18.5).

Each test builds a pre-state by committing blocks, asks ``records.get`` once, and checks
what was released (the envelope, and whether the node would attach the ciphertext) or
the error code. The limits are written out as the spec states them, not imported.
"""

from __future__ import annotations

from typing import Any

import pytest
from records_kit import (
    OTHER_CHAIN_ID,
    Chain,
    add_body,
    envelopes,
    grant_body,
    pub,
    read_request,
    sealed,
)

from medchaind.app import Attach, QueryError
from medchaind.modules.records import machine as records

#: a read request is judged against the node's clock: at most this old ...
MAX_AGE_MS = 60_000
#: ... and at most this far ahead of it
MAX_AHEAD_MS = 10_000
#: a committed records.access releases the record to its reader for this long
ACCESS_WINDOW_MS = 10 * 60_000


@pytest.fixture
def chain() -> Chain:
    return Chain.standard()


def shared(chain: Chain) -> bytes:
    """A record D1 wrote for P, with envelopes for P, D1 and D2; D2 may read it to TREAT."""
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    rid = chain.add("D1", add_body("P", recipients=["P", "D1", "D2"]))
    chain.grant("P", grant_body("D2", purposes=["TREAT"]))
    return rid


def refused(chain: Chain, params: dict[str, Any], time_ms: int | None = None) -> QueryError:
    with pytest.raises(QueryError) as info:
        chain.app.query(chain.state, "records.get", params, time_ms=chain.now() if time_ms is None else time_ms)
    return info.value


# ------------------------------------------------------------------ the gap


def test_an_unsigned_get_releases_neither_envelope_nor_ciphertext(chain: Chain) -> None:
    """The call that used to hand a consented reader its envelope and the ciphertext
    without any audit entry now says what to send instead."""
    rid = shared(chain)
    for params in (
        {"record_id": rid, "reader": pub("D2"), "purpose": "TREAT"},
        {"record_id": rid, "reader": pub("D2"), "purpose": "TREAT", "time_ms": chain.now()},
        {"record_id": rid, "reader": pub("P")},  # the patient too: the ciphertext is the same
    ):
        err = refused(chain, params)
        assert err.code == "signature_required", err
        assert "sig" in str(err) and "records.access" in str(err) and "protocol.md" in str(err)
    assert chain.query("records.audit", {"patient": pub("P")}) == []


def test_a_signed_get_before_the_access_commits_releases_nothing(chain: Chain) -> None:
    rid = shared(chain)
    with pytest.raises(QueryError, match="records.access") as info:
        chain.release(rid, "D2")
    assert info.value.code == "access_required"
    chain.access(rid, "D2")
    got, ciphertext = chain.release(rid, "D2")
    assert got["envelope"] == "0x" + sealed("D2", "r1").hex() and ciphertext
    (entry,) = chain.query("records.audit", {"patient": pub("P")})
    assert entry["reader"] == "0x" + pub("D2").hex() and entry["purpose"] == "TREAT"


def test_metadata_stays_available_without_a_request(chain: Chain) -> None:
    rid = shared(chain)
    got = chain.app.query(chain.state, "records.get", {"record_id": rid}, time_ms=chain.now())
    (listed,) = chain.query("records.list", {"patient": pub("P")})
    assert got == listed  # the same metadata as the listing: no envelope, no ciphertext
    assert "envelope" not in got and "ciphertext" not in got
    assert chain.app.query(chain.state, "records.get", {"record_id": b"\x07" * 32}, time_ms=0) is None


def test_patient_and_author_prove_their_key_but_record_no_access(chain: Chain) -> None:
    rid = shared(chain)
    for reader in ("P", "D1"):
        got, ciphertext = chain.release(rid, reader, purpose=None)
        assert got["envelope"] == "0x" + sealed(reader, "r1").hex() and ciphertext
        assert got["access"] == {"P": "patient", "D1": "author"}[reader]
    assert chain.query("records.audit", {"patient": pub("P")}) == []


def test_an_envelope_without_the_ciphertext_on_request(chain: Chain) -> None:
    rid = shared(chain)
    params = {**read_request(rid, "D1", chain.now(), purpose=None), "ciphertext": False}
    got = chain.app.query(chain.state, "records.get", params, time_ms=chain.now())
    assert got["envelope"] == "0x" + sealed("D1", "r1").hex()  # a plain answer: nothing attached


def test_a_permitted_reader_without_an_envelope_learns_that_and_nothing_more(chain: Chain) -> None:
    rid = chain.add("P", add_body("P"))
    chain.grant("P", grant_body(role="provider"))
    got, ciphertext = chain.release(rid, "D2")  # no access needed: nothing to release
    assert got["envelope"] is None and not ciphertext and got["access"].startswith("permitted by consent")


# ------------------------------------------------------------------ the request


def test_freshness_is_judged_against_the_nodes_clock(chain: Chain) -> None:
    rid = shared(chain)
    now = chain.now()
    for t in (now - MAX_AGE_MS, now, now + MAX_AHEAD_MS):
        params = read_request(rid, "P", t)
        chain.app.query(chain.state, "records.get", params, time_ms=now)  # accepted
    for t in (now - MAX_AGE_MS - 1, now + MAX_AHEAD_MS + 1, 0):
        err = refused(chain, read_request(rid, "P", t), now)
        assert err.code == "stale_request" and "sign a new request" in str(err), err


def test_a_request_signed_by_anyone_else_or_for_anything_else_is_refused(chain: Chain) -> None:
    rid = shared(chain)
    other = chain.add("P", add_body("P", recipients=["P", "D2"], tag="other"))
    chain.access(rid, "D2")
    chain.access(other, "D2")
    now = chain.now()
    forged = [
        read_request(rid, "D2", now, signer="D1"),  # another member's key
        read_request(rid, "D2", now, signer="Q"),  # a stranger's key
        read_request(rid, "D2", now, chain_id=OTHER_CHAIN_ID),  # signed for another chain
        {**read_request(rid, "D2", now), "record_id": other},  # bound to one record ...
        {**read_request(rid, "D2", now), "purpose": "HPAYMT"},  # ... and one purpose
        {**read_request(rid, "D2", now), "time_ms": now - 1},  # ... and one time
        {**read_request(rid, "D2", now), "sig": b"\x00" * 64},
    ]
    for params in forged:
        err = refused(chain, params, now)
        assert err.code == "bad_signature" and "reader's key" in str(err), (params, err)
    with pytest.raises(QueryError, match="sig"):
        chain.app.query(chain.state, "records.get", {**read_request(rid, "D2", now), "sig": b"\x00" * 63},
                        time_ms=now)


def test_a_captured_request_only_ever_serves_its_signer(chain: Chain) -> None:
    """Replaying D2's request returns D2's envelope (sealed to D2) for the record D2
    accessed, within the request's minute: nothing that another reader can open, and
    the request cannot be moved to another record, purpose or reader."""
    rid = shared(chain)
    chain.access(rid, "D2")
    captured = read_request(rid, "D2", chain.now())
    got = chain.app.query(chain.state, "records.get", captured, time_ms=chain.now())
    assert isinstance(got, Attach) and got.value["envelope"] == "0x" + sealed("D2", "r1").hex()
    assert refused(chain, {**captured, "reader": pub("D1")}).code == "bad_signature"
    assert refused(chain, captured, chain.now() + MAX_AGE_MS + 1).code == "stale_request"


# ------------------------------------------------------------------ the access


def test_the_access_must_be_recent_and_for_the_same_purpose(chain: Chain) -> None:
    rid = shared(chain)
    chain.grant("P", grant_body("D2", purposes=["HPAYMT"]))
    chain.access(rid, "D2", "HPAYMT")
    with pytest.raises(QueryError, match="TREAT") as info:
        chain.release(rid, "D2", "TREAT")
    assert info.value.code == "access_required"
    assert chain.release(rid, "D2", "HPAYMT")[1]
    chain.access(rid, "D2", "TREAT")  # the latest access counts
    assert chain.release(rid, "D2", "TREAT")[1]
    accessed = chain.time_ms
    assert chain.release(rid, "D2", time_ms=accessed + ACCESS_WINDOW_MS)[1]
    with pytest.raises(QueryError) as info:
        chain.release(rid, "D2", time_ms=accessed + ACCESS_WINDOW_MS + 1)
    assert info.value.code == "access_required" and "10 minutes" in str(info.value)


def test_permission_is_checked_now_not_at_the_access(chain: Chain) -> None:
    rid = chain.add("P", add_body("P", recipients=["P", "D2"]))
    gid = chain.grant("P", grant_body("D2"))
    chain.access(rid, "D2")
    assert chain.release(rid, "D2")[1]
    chain.ok("P", "consent.revoke", {"grant_id": gid})
    with pytest.raises(QueryError, match="not permitted: no consent") as info:
        chain.release(rid, "D2")  # the access is recent, the consent is gone
    assert info.value.code == "not_permitted"


def test_a_break_glass_reader_needs_its_access_too(chain: Chain) -> None:
    rid = chain.add("P", add_body("P", recipients=["P", "D2"]))
    chain.ok("D2", "records.break_glass", {"record_id": rid, "reason": "EMERG"})
    with pytest.raises(QueryError) as info:
        chain.release(rid, "D2", "ETREAT")
    assert info.value.code == "access_required"
    chain.access(rid, "D2", "ETREAT")
    opened = chain.now()
    got, ciphertext = chain.release(rid, "D2", "ETREAT")
    assert got["access"] == "break-glass" and ciphertext
    chain.advance(records.BREAK_GLASS_MS)
    with pytest.raises(QueryError, match="not permitted: no consent") as info:
        chain.release(rid, "D2", "ETREAT")
    assert info.value.code == "not_permitted"
    # a request signed back when the window was open does not reopen it: the node judges
    # permission at its own time, and the old request is stale
    assert refused(chain, read_request(rid, "D2", opened, purpose="ETREAT")).code == "stale_request"


def test_erasure_removes_the_access_index(chain: Chain) -> None:
    rid = shared(chain)
    chain.access(rid, "D2")
    assert any(k.startswith(b"l/") for k in chain.keys("records"))
    chain.ok("P", "records.erase", {"record_id": rid})
    assert not any(k.startswith(b"l/") for k in chain.keys("records"))
    got, ciphertext = chain.release(rid, "D2")
    assert got["erased"] and got["envelope"] is None and not ciphertext


def test_the_spec_limits_are_the_modules() -> None:
    assert (records.READ_DOMAIN, records.READ_MAX_AGE_MS, records.READ_MAX_AHEAD_MS, records.ACCESS_WINDOW_MS) == (
        "medchain/records/read/v1", MAX_AGE_MS, MAX_AHEAD_MS, ACCESS_WINDOW_MS,
    )


# ------------------------------------------------------------------ strict key release


def strict(chain: Chain, patient: str = "P", on: bool = True) -> None:
    chain.ok(patient, "records.set_policy", {"strict": on})


def test_only_a_patient_sets_its_policy(chain: Chain) -> None:
    assert chain.query("records.policy", {"patient": pub("P")}) == {"patient": "0x" + pub("P").hex(), "strict": False}
    assert chain.send("D1", "records.set_policy", {"strict": True}).code == "unauthorized"
    r = chain.ok("P", "records.set_policy", {"strict": True})
    assert r.events[0] == {"type": "records.policy", "patient": pub("P"), "strict": True}
    assert chain.query("records.policy", {"patient": pub("P")})["strict"] is True
    assert chain.query("records.policy", {"patient": pub("Q")})["strict"] is False


def test_strict_patients_records_are_sealed_to_patient_and_author_only(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    strict(chain)
    r = chain.send("D1", "records.add", add_body("P", recipients=["P", "D1", "D2"]))
    assert r.code == "strict_release" and "access time" in r.reason
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"]))
    # nobody may pre-share: not the patient (except with itself), not the author
    assert chain.send("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2")}).code == (
        "strict_release"
    )
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("P", tag="rotated")})
    strict(chain, on=False)
    chain.ok("P", "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2")})


def test_strict_release_hands_the_key_over_only_after_the_access_commits(chain: Chain) -> None:
    chain.grant("P", grant_body("D1", actions=["read", "write"]))
    strict(chain)
    rid = chain.add("D1", add_body("P", recipients=["P", "D1"]))
    chain.grant("P", grant_body("D2"))
    got, ciphertext = chain.release(rid, "D2")
    assert got["envelope"] is None and not ciphertext  # consent alone releases nothing
    r = chain.access(rid, "D2")
    assert r.events[-1]["type"] == "records.key_requested"  # the audit entry comes first
    for answerer in ("P", "D1"):  # the patient's app or the author's custodian may answer
        snapshot = dict(chain.state.data)
        chain.ok(answerer, "records.add_envelopes", {"record_id": rid, "envelopes": envelopes("D2", tag="late")})
        got, ciphertext = chain.release(rid, "D2")
        assert got["envelope"] == "0x" + sealed("D2", "late").hex() and ciphertext
        chain.state.data.clear()
        chain.state.data.update(snapshot)


def test_the_read_request_vector_in_the_spec() -> None:
    """docs/protocol.md §18.5's vector: another implementation checks itself against it."""
    from pathlib import Path

    from medchaind import crypto

    k = crypto.SigningKey(b"\x42" * 32)
    payload = records.read_request_payload(b"\x11" * 32, k.public_key, "TREAT", 1_764_000_000_000)
    sig = k.sign(records.READ_DOMAIN, "medchain-test", payload)
    spec = "".join((Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text().split())
    for value in (k.public_key, payload, sig):
        assert value.hex() in spec
