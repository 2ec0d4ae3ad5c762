"""medchaind.modules.records.encryption: record encryption, envelopes, commitments, re-wrapping, tx bodies."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from records_client_kit import MARKER, keypair, recipients, resource

from medchaind import codec
from medchaind.app.schema import decode_body
from medchaind.crypto import KeyPair
from medchaind.errors import SignatureError, ValidationError
from medchaind.modules.records.encryption import (
    RECORD_AAD,
    SEALED_KEY_SIZE,
    EncryptedRecord,
    RecordCryptoError,
    decrypt_record,
    encrypt_record,
    open_envelope,
    open_record,
    records_add_body,
    records_add_envelopes_body,
    rewrap,
)
from medchaind.modules.records.fhir import validate_and_canonicalize

PATIENT, DOCTOR, NURSE, STRANGER, GRANTEE = (keypair(n) for n in ("patient", "doctor", "nurse", "stranger", "grantee"))


def _plaintext() -> bytes:
    doc = resource("Observation", note=[{"text": MARKER}])
    _, raw = validate_and_canonicalize(doc)
    assert MARKER.encode() in raw
    return raw


def _envelope_for(enc: EncryptedRecord, who: KeyPair) -> bytes:
    (sealed,) = [e["sealed_key"] for e in enc.envelopes if e["recipient"] == who.public_key]
    return sealed


@pytest.fixture
def plaintext() -> bytes:
    return _plaintext()


@pytest.fixture
def enc(plaintext: bytes) -> EncryptedRecord:
    return encrypt_record(plaintext, recipients(PATIENT, DOCTOR, NURSE))


# ------------------------------------------------------------------ round trip and envelopes


def test_every_recipient_opens_and_decrypts(enc: EncryptedRecord, plaintext: bytes) -> None:
    assert [e["recipient"] for e in enc.envelopes] == [PATIENT.public_key, DOCTOR.public_key, NURSE.public_key]
    for who in (PATIENT, DOCTOR, NURSE):
        sealed = _envelope_for(enc, who)
        assert len(sealed) == SEALED_KEY_SIZE
        key = open_envelope(who, sealed)
        assert key == enc.data_key
        assert decrypt_record(enc.ciphertext, key, enc.content_hash) == plaintext
        assert open_record(who, sealed, enc.ciphertext, enc.content_hash) == plaintext


def test_non_recipient_cannot_open_any_envelope(enc: EncryptedRecord) -> None:
    for env in enc.envelopes:
        with pytest.raises(RecordCryptoError):
            open_envelope(STRANGER, env["sealed_key"])
        with pytest.raises(SignatureError):  # also the base class raised by crypto.unseal
            STRANGER.encryption.unseal(env["sealed_key"])


def test_recipient_cannot_open_another_recipients_envelope(enc: EncryptedRecord) -> None:
    with pytest.raises(RecordCryptoError):
        open_envelope(DOCTOR, _envelope_for(enc, NURSE))


def test_tampered_envelope_fails(enc: EncryptedRecord) -> None:
    sealed = bytearray(_envelope_for(enc, DOCTOR))
    sealed[-1] ^= 1
    with pytest.raises(RecordCryptoError):
        open_envelope(DOCTOR, bytes(sealed))


def test_each_record_gets_a_fresh_key_and_nonce(plaintext: bytes) -> None:
    a = encrypt_record(plaintext, recipients(PATIENT))
    b = encrypt_record(plaintext, recipients(PATIENT))
    assert a.data_key != b.data_key
    assert a.ciphertext[:24] != b.ciphertext[:24]
    assert a.content_hash != b.content_hash


# ------------------------------------------------------------------ commitment


def test_content_hash_is_sha256_of_ciphertext(enc: EncryptedRecord, plaintext: bytes) -> None:
    assert enc.content_hash == hashlib.sha256(enc.ciphertext).digest()
    assert enc.content_hash != hashlib.sha256(plaintext).digest()
    assert enc.size == len(enc.ciphertext) == len(plaintext) + 24 + 16


def test_ciphertext_does_not_contain_plaintext(enc: EncryptedRecord, plaintext: bytes) -> None:
    marker = MARKER.encode()
    assert marker not in enc.ciphertext
    assert marker.hex().encode() not in enc.ciphertext
    assert marker.hex().encode() not in enc.ciphertext.hex().encode()
    assert plaintext[:32] not in enc.ciphertext
    for env in enc.envelopes:
        assert enc.data_key not in env["sealed_key"]


@pytest.mark.parametrize("where", [0, 23, 24, -1])
def test_tampered_ciphertext_fails_the_commitment(enc: EncryptedRecord, where: int) -> None:
    bad = bytearray(enc.ciphertext)
    bad[where] ^= 0x80
    with pytest.raises(RecordCryptoError, match="content hash"):
        decrypt_record(bytes(bad), enc.data_key, enc.content_hash)


def test_truncated_ciphertext_fails(enc: EncryptedRecord) -> None:
    with pytest.raises(RecordCryptoError):
        decrypt_record(enc.ciphertext[:-1], enc.data_key, enc.content_hash)


def test_wrong_expected_hash_fails(enc: EncryptedRecord) -> None:
    for bad_hash in (b"\x00" * 32, enc.content_hash[:31], b""):
        with pytest.raises(RecordCryptoError):
            decrypt_record(enc.ciphertext, enc.data_key, bad_hash)


def test_tampered_ciphertext_with_recomputed_hash_fails_authentication(enc: EncryptedRecord) -> None:
    bad = bytearray(enc.ciphertext)
    bad[30] ^= 1
    with pytest.raises(RecordCryptoError, match="does not decrypt"):
        decrypt_record(bytes(bad), enc.data_key, hashlib.sha256(bytes(bad)).digest())


def test_wrong_data_key_fails(enc: EncryptedRecord, plaintext: bytes) -> None:
    other = encrypt_record(plaintext, recipients(PATIENT))
    with pytest.raises(RecordCryptoError, match="does not decrypt"):
        decrypt_record(enc.ciphertext, other.data_key, enc.content_hash)
    with pytest.raises(RecordCryptoError):
        decrypt_record(enc.ciphertext, enc.data_key[:16], enc.content_hash)


def test_aad_binds_the_record_domain(enc: EncryptedRecord, plaintext: bytes) -> None:
    from medchaind.crypto import aead_decrypt

    assert aead_decrypt(enc.data_key, enc.ciphertext, RECORD_AAD) == plaintext
    with pytest.raises(SignatureError):
        aead_decrypt(enc.data_key, enc.ciphertext, b"")


# ------------------------------------------------------------------ rewrap


def test_rewrap_grants_access_and_keeps_old_envelopes(enc: EncryptedRecord, plaintext: bytes) -> None:
    new = rewrap(PATIENT, _envelope_for(enc, PATIENT), recipients(GRANTEE))
    assert [e["recipient"] for e in new] == [GRANTEE.public_key]
    assert open_record(GRANTEE, new[0]["sealed_key"], enc.ciphertext, enc.content_hash) == plaintext
    for who in (PATIENT, DOCTOR, NURSE):
        assert open_record(who, _envelope_for(enc, who), enc.ciphertext, enc.content_hash) == plaintext
    with pytest.raises(RecordCryptoError):
        open_envelope(STRANGER, new[0]["sealed_key"])


def test_rewrap_by_a_non_holder_fails(enc: EncryptedRecord) -> None:
    with pytest.raises(RecordCryptoError):
        rewrap(STRANGER, _envelope_for(enc, PATIENT), recipients(GRANTEE))


def test_rewrap_to_several_grantees(enc: EncryptedRecord, plaintext: bytes) -> None:
    new = rewrap(DOCTOR, _envelope_for(enc, DOCTOR), recipients(GRANTEE, STRANGER))
    for env, who in zip(new, (GRANTEE, STRANGER), strict=True):
        assert open_envelope(who, env["sealed_key"]) == enc.data_key


# ------------------------------------------------------------------ input checks


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {b"\x01" * 31: b"\x02" * 32},
        {b"\x01" * 32: b"\x02" * 31},
        {"not-bytes": b"\x02" * 32},
    ],
)
def test_bad_recipients_rejected(bad: dict[Any, Any], plaintext: bytes) -> None:
    with pytest.raises(ValidationError):
        encrypt_record(plaintext, bad)


def test_empty_or_non_bytes_plaintext_rejected() -> None:
    with pytest.raises(ValidationError):
        encrypt_record(b"", recipients(PATIENT))
    with pytest.raises(ValidationError):
        encrypt_record("text", recipients(PATIENT))  # type: ignore[arg-type]


# ------------------------------------------------------------------ no secrets in reprs


def test_repr_hides_keys_and_plaintext(enc: EncryptedRecord) -> None:
    for text in (repr(enc), str(enc), f"{enc}", f"{enc!r}"):
        assert enc.data_key.hex() not in text
        assert repr(enc.data_key) not in text
        assert enc.ciphertext.hex()[:40] not in text
        assert MARKER not in text
        for env in enc.envelopes:
            assert env["sealed_key"].hex()[:40] not in text
        assert enc.content_hash.hex() in text
        assert str(len(enc.ciphertext)) in text


def test_key_reprs_hide_secrets() -> None:
    for text in (repr(PATIENT), repr(PATIENT.signing), repr(PATIENT.encryption)):
        assert PATIENT.signing.seed.hex() not in text
        assert PATIENT.encryption.secret.hex() not in text


def test_errors_do_not_echo_keys(enc: EncryptedRecord) -> None:
    with pytest.raises(RecordCryptoError) as info:
        decrypt_record(enc.ciphertext + b"x", enc.data_key, enc.content_hash)
    assert enc.data_key.hex() not in str(info.value)


def test_record_is_frozen(enc: EncryptedRecord) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.data_key = b"\x00" * 32  # type: ignore[misc]


# ------------------------------------------------------------------ tx bodies


def test_records_add_body_shape(enc: EncryptedRecord) -> None:
    body = records_add_body(PATIENT.public_key, "Observation", enc)
    assert set(body) == {"patient", "resource_type", "content_hash", "size", "envelopes"}
    assert body["patient"] == PATIENT.public_key
    assert body["resource_type"] == "Observation"
    assert body["content_hash"] == enc.content_hash
    assert body["size"] == len(enc.ciphertext)
    assert body["envelopes"] == [dict(e) for e in enc.envelopes]
    assert all(set(e) == {"recipient", "sealed_key"} for e in body["envelopes"])
    assert codec.decode(codec.encode(body)) == body  # canonical CBOR data model
    assert MARKER.encode() not in codec.encode(body)


def test_records_add_body_requires_the_patient(enc: EncryptedRecord) -> None:
    with pytest.raises(ValidationError, match="include the patient"):
        records_add_body(STRANGER.public_key, "Observation", enc)
    with pytest.raises(ValidationError):
        records_add_body(b"\x00" * 31, "Observation", enc)


def test_records_add_body_limits_envelopes(plaintext: bytes) -> None:
    many = [keypair(f"r{i}") for i in range(33)]
    enc = encrypt_record(plaintext, recipients(PATIENT, *many))
    with pytest.raises(ValidationError, match="1..32"):
        records_add_body(PATIENT.public_key, "Observation", enc)


def test_records_add_body_passes_the_chain_validator(enc: EncryptedRecord) -> None:
    from medchaind.modules.records import machine as chain_records

    decode_body(chain_records.Add, records_add_body(PATIENT.public_key, "Observation", enc))


def test_records_add_envelopes_body(enc: EncryptedRecord) -> None:
    from medchaind.modules.records import machine as chain_records

    new = rewrap(PATIENT, _envelope_for(enc, PATIENT), recipients(GRANTEE))
    body = records_add_envelopes_body(b"\x07" * 32, new)
    assert body == {"record_id": b"\x07" * 32, "envelopes": [dict(e) for e in new]}
    decode_body(chain_records.AddEnvelopes, body)
    with pytest.raises(ValidationError):
        records_add_envelopes_body(b"\x07" * 31, new)
    with pytest.raises(ValidationError, match="unique"):
        records_add_envelopes_body(b"\x07" * 32, new + new)


# ------------------------------------------------------------------ property


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(min_size=1, max_size=4096), n=st.integers(1, 4), pick=st.integers(0, 3))
def test_round_trip_random_payloads(payload: bytes, n: int, pick: int) -> None:
    keys = [PATIENT, DOCTOR, NURSE, GRANTEE][:n]
    enc = encrypt_record(payload, recipients(*keys))
    who = keys[pick % n]
    assert open_record(who, _envelope_for(enc, who), enc.ciphertext, enc.content_hash) == payload
    assert enc.content_hash == hashlib.sha256(enc.ciphertext).digest()
    if len(payload) >= 8:
        assert payload not in enc.ciphertext
