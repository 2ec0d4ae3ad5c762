"""identity.register / identity.update (medchaind/app/identity.py).

Each register case runs twice: through admission (``App.check_tx`` with the sender's
next nonce, which dry-runs the handler) and through block execution. Both must agree:
a tx refused at admission with code C gets a receipt with code C if a proposer includes
it anyway, and consumes the sender's nonce without creating an identity.
"""

from __future__ import annotations

from typing import Any

import pytest
from app_kit import Chain, enc_key, pub, register_body, update_body

from medchaind.errors import TxRejected
from medchaind.modules.identity.machine import ACCREDITED_ROLES, ROLES

E = enc_key("1")

REGISTER_CASES = [
    # -- roles
    pytest.param({"role": "patient", "enc_key": E}, "ok", "active", id="patient is active at once"),
    *(
        pytest.param({"role": r, "enc_key": E}, "ok", "pending", id=f"{r} waits for accreditation")
        for r in sorted(ACCREDITED_ROLES)
    ),
    pytest.param({"role": "doctor", "enc_key": E}, "invalid_body", None, id="unknown role"),
    pytest.param({"role": 7, "enc_key": E}, "invalid_body", None, id="role is not text"),
    pytest.param(
        {"role": "Patient", "enc_key": E}, "invalid_body", None, id="roles are case-sensitive"
    ),
    # -- labels: public organisation names, never on a patient (it would be PHI)
    pytest.param(
        {"role": "provider", "enc_key": E, "label": "St Mary's Hospital"},
        "ok",
        "pending",
        id="organisation may carry a label",
    ),
    pytest.param(
        {"role": "pharmacy", "enc_key": E, "label": "x" * 128},
        "ok",
        "pending",
        id="label of exactly 128 characters",
    ),
    pytest.param(
        {"role": "patient", "enc_key": E, "label": "Jane Doe"},
        "invalid_body",
        None,
        id="patient label refused",
    ),
    pytest.param(
        {"role": "provider", "enc_key": E, "label": "x" * 129},
        "invalid_body",
        None,
        id="label too long",
    ),
    pytest.param(
        {"role": "provider", "enc_key": E, "label": ""}, "invalid_body", None, id="empty label"
    ),
    pytest.param(
        {"role": "provider", "enc_key": E, "label": "a\nb"},
        "invalid_body",
        None,
        id="label with a control character",
    ),
    pytest.param(
        {"role": "provider", "enc_key": E, "label": b"bytes"},
        "invalid_body",
        None,
        id="label is not text",
    ),
    # -- the encryption key
    pytest.param(
        {"role": "patient", "enc_key": E[:31]}, "invalid_body", None, id="enc_key 31 bytes"
    ),
    pytest.param(
        {"role": "patient", "enc_key": E + b"\x00"}, "invalid_body", None, id="enc_key 33 bytes"
    ),
    pytest.param(
        {"role": "patient", "enc_key": E.hex()}, "invalid_body", None, id="enc_key as hex text"
    ),
    # -- shape
    pytest.param({"role": "patient"}, "invalid_body", None, id="missing enc_key"),
    pytest.param({"enc_key": E}, "invalid_body", None, id="missing role"),
    pytest.param({}, "invalid_body", None, id="empty body"),
    pytest.param(
        {"role": "patient", "enc_key": E, "name": "Jane"}, "invalid_body", None, id="extra field"
    ),
]


@pytest.mark.parametrize(("body", "code", "status"), REGISTER_CASES)
def test_register(body: dict[str, Any], code: str, status: str | None) -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", body)

    if code == "ok":
        c.app.check_tx(c.state, tx, expected_nonce=0)
    else:
        with pytest.raises(TxRejected) as err:
            c.app.check_tx(c.state, tx, expected_nonce=0)
        assert err.value.code == code
        assert err.value.reason

    receipt = c.commit([tx]).receipts[0]
    assert receipt.code == code
    assert c.status("X") == status
    assert c.nonce("X") == 1  # consumed whether or not the handler succeeded
    if code == "ok":
        ident = c.identity("X")
        assert ident is not None
        assert ident["role"] == body["role"]
        assert ident["enc_key"] == E
        assert ident["label"] == body.get("label")
        assert ident["registered_at"] == ident["changed_at"] == 1
        assert receipt.events == (
            {
                "type": "identity.registered",
                "subject": pub("X"),
                "role": body["role"],
                "status": status,
            },
        )
    else:
        assert receipt.reason
        assert receipt.events == ()


@pytest.mark.parametrize("role", ROLES)
def test_every_role_registers_with_its_initial_status(role: str) -> None:
    c = Chain.with_authorities()
    c.register("X", role)
    assert c.status("X") == ("active" if role == "patient" else "pending")


def test_registering_twice_is_refused_at_admission_and_in_a_block() -> None:
    c = Chain.with_authorities()
    c.register("X", "patient", enc="1")
    again = c.tx("X", "identity.register", register_body("provider", enc="2"))

    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, again, expected_nonce=c.nonce("X"))
    assert err.value.code == "already_registered"

    ex = c.commit([again])
    assert ex.receipts[0].code == "already_registered"
    # the failed handler consumed the nonce and changed nothing else
    assert list(ex.writes) == [("auth", b"n/" + pub("X"))]
    assert c.identity("X") is not None
    assert c.identity("X")["role"] == "patient"  # type: ignore[index]
    assert c.identity("X")["enc_key"] == enc_key("1")  # type: ignore[index]


def test_two_registrations_in_one_block_second_fails() -> None:
    c = Chain.with_authorities()
    first = c.tx("X", "identity.register", register_body("patient", enc="1"), nonce=0)
    second = c.tx("X", "identity.register", register_body("patient", enc="2"), nonce=1)
    receipts = c.commit([first, second]).receipts
    assert [r.code for r in receipts] == ["ok", "already_registered"]
    assert c.identity("X")["enc_key"] == enc_key("1")  # type: ignore[index]
    assert c.nonce("X") == 2


def test_update_changes_the_encryption_key() -> None:
    c = Chain.with_authorities()
    c.register("X", "provider", enc="old", label="Clinic")
    c.commit([])  # an empty block, so changed_at moves on
    receipt = c.send("X", "identity.update", update_body("new"))

    assert receipt.ok
    assert receipt.events == ({"type": "identity.updated", "subject": pub("X")},)
    ident = c.identity("X")
    assert ident is not None
    assert ident["enc_key"] == enc_key("new")
    assert (ident["registered_at"], ident["changed_at"]) == (1, 3)
    # nothing else about the identity changed
    assert (ident["role"], ident["status"], ident["label"]) == ("provider", "pending", "Clinic")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing enc_key"),
        pytest.param({"enc_key": b"\x01" * 16}, id="short enc_key"),
        pytest.param({"enc_key": enc_key("2"), "role": "payer"}, id="role cannot change"),
    ],
)
def test_update_with_a_bad_body_is_refused(body: dict[str, Any]) -> None:
    c = Chain.with_authorities()
    c.register("X", "patient")
    tx = c.tx("X", "identity.update", body)
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx, expected_nonce=1)
    assert err.value.code == "invalid_body"
    assert c.commit([tx]).receipts[0].code == "invalid_body"
    assert c.identity("X")["enc_key"] == enc_key("1")  # type: ignore[index]


def test_update_from_an_unregistered_sender() -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.update", update_body("2"))

    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx)
    assert err.value.code == "unregistered_sender"

    ex = c.commit([tx])
    assert ex.receipts[0].code == "unregistered_sender"
    assert c.identity("X") is None
    assert list(ex.writes) == [("auth", b"n/" + pub("X"))]  # nonce consumed, nothing else


def test_revoked_identity_cannot_update_its_key() -> None:
    c = Chain.with_authorities({"A": 1})
    c.register("X", "provider", enc="1")
    assert c.send("A", "governance.accredit", {"subject": pub("X"), "role": "provider"}).ok
    assert c.send("A", "governance.revoke", {"subject": pub("X"), "reason": "fraud"}).ok

    tx = c.tx("X", "identity.update", update_body("2"))
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx, expected_nonce=c.nonce("X"))
    assert err.value.code == "revoked"
    assert c.commit([tx]).receipts[0].code == "revoked"
    assert c.identity("X")["enc_key"] == enc_key("1")  # type: ignore[index]
