"""Per-sender nonces, chain ids and the admission checks of ``App.check_tx``.

Rules (medchaind/app/app.py): a tx executes only if its nonce equals the sender's count
of committed txs. A wrong nonce in a block gives a ``bad_nonce`` receipt and changes
nothing (not even the nonce); a tx whose handler fails consumes its nonce and changes
nothing else. Signatures are checked apart from the app (``Tx.verify_signature``).
"""

from __future__ import annotations

import pytest
from app_kit import Chain, accredit_body, key, pub, register_body, update_body

from medchaind.app import App, DictState
from medchaind.errors import SignatureError, TxRejected
from medchaind.modules.governance.machine import GovernanceModule
from medchaind.modules.identity.machine import IdentityModule
from medchaind.types import sign_tx
from medchaind.types.tx import tx_from_map


@pytest.mark.parametrize("nonce", [1, 5], ids=["one ahead", "far ahead"])
def test_wrong_nonce_in_a_block_changes_nothing(nonce: int) -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", register_body("patient"), nonce=nonce)
    ex = c.commit([tx])
    assert ex.receipts[0].code == "bad_nonce"
    assert ex.receipts[0].reason == f"nonce {nonce}, expected 0"
    assert ex.writes == {}
    assert c.nonce("X") == 0
    assert c.identity("X") is None


def test_bad_nonce_does_not_consume_so_the_right_nonce_still_works() -> None:
    c = Chain.with_authorities()
    late = c.tx("X", "identity.update", update_body("2"), nonce=1)
    reg = c.tx("X", "identity.register", register_body("patient"), nonce=0)
    # In the wrong order within one block: nonce 1 first fails, nonce 0 then executes.
    assert [r.code for r in c.commit([late, reg]).receipts] == ["bad_nonce", "ok"]
    assert c.nonce("X") == 1
    # The same nonce-1 tx in the next block now executes.
    assert c.commit([late]).receipts[0].ok
    assert c.identity("X")["enc_key"] == update_body("2")["enc_key"]  # type: ignore[index]


def test_replayed_nonce_in_a_later_block_is_bad_nonce() -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", register_body("patient"))
    assert c.commit([tx]).receipts[0].ok
    ex = c.commit([tx])
    assert ex.receipts[0].code == "bad_nonce"
    assert ex.writes == {}


def test_failed_handler_consumes_the_nonce_and_writes_nothing_else() -> None:
    c = Chain.with_authorities({"A": 1})
    # an accredit vote for an unknown subject fails in the handler
    ex = c.commit([c.tx("A", "governance.accredit", accredit_body("Nobody"))])
    assert ex.receipts[0].code == "unknown_subject"
    assert ex.writes == {("auth", b"n/" + pub("A")): (1).to_bytes(8, "big")}
    assert c.nonce("A") == 1


def test_invalid_body_in_a_block_consumes_the_nonce() -> None:
    c = Chain.with_authorities()
    ex = c.commit([c.tx("X", "identity.register", {"role": "patient"})])
    assert ex.receipts[0].code == "invalid_body"
    assert list(ex.writes) == [("auth", b"n/" + pub("X"))]


def test_replay_of_a_committed_tx_is_refused_at_admission() -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", register_body("patient"))
    c.app.check_tx(c.state, tx, expected_nonce=0)
    c.commit([tx])
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx, expected_nonce=1)
    assert err.value.code == "nonce_too_low"
    assert err.value.reason == "nonce 0 already used (next is 1)"


def test_future_nonce_passes_admission_without_a_dry_run() -> None:
    # Only the sender's next tx is dry-run: later ones depend on state not yet there.
    c = Chain.with_authorities()
    c.register("X", "patient")
    second_register = c.tx("X", "identity.register", register_body("patient"), nonce=2)
    c.app.check_tx(c.state, second_register, expected_nonce=1)  # would fail if dry-run
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(
            c.state, c.tx("X", "identity.register", register_body("patient")), expected_nonce=1
        )
    assert err.value.code == "already_registered"


def test_tx_signed_for_another_chain() -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", register_body("patient"), chain="other-chain")
    tx.verify_signature()  # a good signature, for the other chain
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx)
    assert err.value.code == "wrong_chain"
    assert "other-chain" in err.value.reason

    ex = c.commit([tx])
    assert ex.receipts[0].code == "wrong_chain"
    assert ex.writes == {}  # no nonce consumed on this chain


def test_unknown_tx_type() -> None:
    c = Chain.with_authorities()
    tx = sign_tx(key("X"), c.app.chain_id, "records.grant", 0, {})
    with pytest.raises(TxRejected) as err:
        c.app.check_tx(c.state, tx)
    assert err.value.code == "unknown_type"
    ex = c.commit([tx])
    assert ex.receipts[0].code == "unknown_type"
    assert ex.writes == {}


@pytest.mark.parametrize("field", ["sig", "nonce", "body", "chain", "sender"])
def test_tampered_tx_fails_signature_verification(field: str) -> None:
    c = Chain.with_authorities()
    tx = c.tx("X", "identity.register", register_body("patient"))
    tx.verify_signature()
    m = tx.to_map()
    if field == "sig":
        m["sig"] = bytes([m["sig"][0] ^ 1]) + m["sig"][1:]
    elif field == "nonce":
        m["nonce"] = 1
    elif field == "body":
        m["body"] = register_body("provider")
    elif field == "chain":
        m["chain"] = "other-chain"
    else:
        m["sender"] = pub("Y")
    with pytest.raises(SignatureError):
        tx_from_map(m).verify_signature()


def test_app_refuses_duplicate_or_reserved_module_names() -> None:
    genesis = Chain.with_authorities().genesis
    with pytest.raises(ValueError, match="duplicate"):
        App(genesis, [IdentityModule(), IdentityModule()])

    class Auth(GovernanceModule):
        name = "auth"  # the nonce namespace

    with pytest.raises(ValueError, match="reserved"):
        App(genesis, [Auth()])


def test_nonce_of_an_unknown_sender_is_zero() -> None:
    assert App.nonce(DictState(), pub("X")) == 0


@pytest.mark.parametrize("where", ["check_tx", "block"])
def test_accredit_with_an_unhashable_role_is_invalid_body(where: str) -> None:
    # A list is inside the CBOR data model, so such a tx decodes and signs fine. Today it
    # makes check_tx (mempool admission) and App.execute (block building and validation on
    # every node) raise TypeError instead of refusing the tx / giving a receipt.
    c = Chain.with_authorities({"A": 1})
    c.register("X", "provider")
    tx = c.tx("A", "governance.accredit", {"subject": pub("X"), "role": ["provider"]})
    if where == "check_tx":
        with pytest.raises(TxRejected) as err:
            c.app.check_tx(c.state, tx, expected_nonce=0)
        assert err.value.code == "invalid_body"
    else:
        assert c.commit([tx]).receipts[0].code == "invalid_body"
