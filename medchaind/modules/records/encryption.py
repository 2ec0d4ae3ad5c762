"""Client-side encryption of health records and the data-key envelopes that share them.

A record is a canonical FHIR resource (:func:`medchaind.modules.records.fhir.validate_and_canonicalize`)
encrypted under a fresh 32-byte **data key** with XChaCha20-Poly1305 (random 24-byte
nonce, associated data :data:`RECORD_AAD`). The chain and the blob store only ever see:

* the ciphertext (``nonce || ciphertext || tag``),
* ``content_hash = SHA-256(ciphertext)`` -- a commitment to the *ciphertext*, never to
  the plaintext (a hash of low-entropy PHI could be brute-forced), and
* one **envelope** per recipient: ``{"recipient": <Ed25519 identity key>,
  "sealed_key": SealedBox(<recipient X25519 key>, data_key)}``.

Granting access to an existing record re-wraps the data key (:func:`rewrap`): a holder
opens their own envelope and seals the same key to each grantee; the ciphertext is
unchanged. Revocation cannot take back a key already delivered; it only stops new
envelopes (see DESIGN §8).

Nothing in this module logs, and no ``repr`` shows plaintext or key material:
:class:`EncryptedRecord` prints only sizes and the content hash.

The tx-body helpers build exactly the bodies ``medchaind.modules.records.machine`` validates
(``records.add`` and ``records.add_envelopes``) and enforce its limits client-side so a
doomed transaction is refused before it is signed.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict

from ...crypto import (
    AEAD_KEY_SIZE,
    HASH_SIZE,
    PUBLIC_KEY_SIZE,
    KeyPair,
    aead_decrypt,
    aead_encrypt,
    random_bytes,
    seal,
    sha256,
)
from ...errors import SignatureError, ValidationError

#: Associated data bound into every record ciphertext (domain separation / versioning).
RECORD_AAD: Final = b"medchain/record/v1"
#: Limits mirrored from ``medchaind.modules.records.machine`` (the chain re-checks them).
MAX_CIPHERTEXT_SIZE: Final = 4 * 1024 * 1024
MAX_ENVELOPES_PER_TX: Final = 32
#: Length of a SealedBox of a 32-byte key: 32 (ephemeral pk) + 16 (MAC) + 32.
SEALED_KEY_SIZE: Final = 80


class RecordCryptoError(SignatureError):
    """A record or envelope that does not open: wrong key, tampered bytes, bad commitment."""


class Envelope(TypedDict):
    """A data key sealed to one recipient, keyed by the recipient's Ed25519 identity."""

    recipient: bytes
    sealed_key: bytes


@dataclass(frozen=True, slots=True)
class EncryptedRecord:
    """The output of :func:`encrypt_record`.

    ``data_key`` stays on the client (it is what envelopes wrap); keep it only as long
    as you need to add envelopes without reopening one. ``repr`` never shows it, nor the
    ciphertext bytes.
    """

    ciphertext: bytes
    content_hash: bytes
    data_key: bytes = field(repr=False)
    envelopes: tuple[Envelope, ...]

    @property
    def size(self) -> int:
        """Ciphertext length in bytes (the ``size`` the chain records)."""
        return len(self.ciphertext)

    def __repr__(self) -> str:
        recipients = ", ".join(e["recipient"].hex()[:16] + "…" for e in self.envelopes)
        return (
            f"EncryptedRecord(content_hash={self.content_hash.hex()}, size={len(self.ciphertext)}, "
            f"recipients=[{recipients}])"
        )

    __str__ = __repr__


def _check_recipients(recipients: Mapping[bytes, bytes]) -> None:
    if not recipients:
        raise ValidationError("at least one recipient is required")
    for identity, x25519_pub in recipients.items():
        if not isinstance(identity, bytes) or len(identity) != PUBLIC_KEY_SIZE:
            raise ValidationError("a recipient's identity key is 32 bytes (Ed25519 public key)")
        if not isinstance(x25519_pub, bytes) or len(x25519_pub) != PUBLIC_KEY_SIZE:
            raise ValidationError(f"recipient {identity.hex()[:16]}…: encryption key is 32 bytes (X25519 public key)")


def seal_data_key(data_key: bytes, recipients: Mapping[bytes, bytes]) -> list[Envelope]:
    """Seal ``data_key`` to each recipient (``{ed25519_identity: x25519_public_key}``)."""
    if len(data_key) != AEAD_KEY_SIZE:
        raise ValidationError(f"a data key is {AEAD_KEY_SIZE} bytes")
    _check_recipients(recipients)
    return [Envelope(recipient=ident, sealed_key=seal(x_pub, data_key)) for ident, x_pub in recipients.items()]


def encrypt_record(resource_json_bytes: bytes, recipients: Mapping[bytes, bytes]) -> EncryptedRecord:
    """Encrypt canonical resource bytes under a fresh data key sealed to ``recipients``.

    ``recipients`` maps each recipient's Ed25519 identity key to their X25519 encryption
    public key. The content hash commits to the ciphertext. Raises
    :class:`~medchaind.errors.ValidationError` on malformed keys or oversize input.
    """
    if not isinstance(resource_json_bytes, bytes | bytearray | memoryview):
        raise ValidationError("record plaintext must be bytes")
    plaintext = bytes(resource_json_bytes)
    if not plaintext:
        raise ValidationError("record plaintext is empty")
    _check_recipients(recipients)
    data_key = random_bytes(AEAD_KEY_SIZE)
    ciphertext = aead_encrypt(data_key, plaintext, aad=RECORD_AAD)
    if len(ciphertext) > MAX_CIPHERTEXT_SIZE:
        raise ValidationError(f"record ciphertext is {len(ciphertext)} bytes; the limit is {MAX_CIPHERTEXT_SIZE}")
    return EncryptedRecord(
        ciphertext=ciphertext,
        content_hash=sha256(ciphertext),
        data_key=data_key,
        envelopes=tuple(seal_data_key(data_key, recipients)),
    )


def open_envelope(my_keys: KeyPair, sealed_key: bytes) -> bytes:
    """The data key inside ``sealed_key``; raises :class:`RecordCryptoError` if not mine."""
    try:
        data_key = my_keys.encryption.unseal(bytes(sealed_key))
    except SignatureError:
        raise RecordCryptoError("envelope does not open with this key") from None
    except (TypeError, ValueError):
        raise RecordCryptoError("envelope is malformed") from None
    if len(data_key) != AEAD_KEY_SIZE:
        raise RecordCryptoError("envelope does not contain a data key")
    return data_key


def verify_commitment(ciphertext: bytes, expected_content_hash: bytes) -> None:
    """Raise :class:`RecordCryptoError` unless ``SHA-256(ciphertext) == expected_content_hash``."""
    if len(expected_content_hash) != HASH_SIZE or not hmac.compare_digest(sha256(ciphertext), expected_content_hash):
        raise RecordCryptoError("ciphertext does not match the record's content hash")


def decrypt_record(ciphertext: bytes, data_key: bytes, expected_content_hash: bytes) -> bytes:
    """Check the ciphertext against its on-chain commitment, then decrypt it.

    Raises :class:`RecordCryptoError` if the commitment does not match or the ciphertext
    does not authenticate under ``data_key``.
    """
    verify_commitment(ciphertext, expected_content_hash)
    if len(data_key) != AEAD_KEY_SIZE:
        raise RecordCryptoError(f"a data key is {AEAD_KEY_SIZE} bytes")
    try:
        return aead_decrypt(data_key, ciphertext, aad=RECORD_AAD)
    except SignatureError:
        raise RecordCryptoError("record does not decrypt under this data key") from None


def open_record(my_keys: KeyPair, sealed_key: bytes, ciphertext: bytes, expected_content_hash: bytes) -> bytes:
    """Convenience: :func:`open_envelope` then :func:`decrypt_record`."""
    return decrypt_record(ciphertext, open_envelope(my_keys, sealed_key), expected_content_hash)


def rewrap(my_keys: KeyPair, sealed_key_for_me: bytes, new_recipients: Mapping[bytes, bytes]) -> list[Envelope]:
    """Share an existing record: open my envelope and seal its data key to each grantee."""
    data_key = open_envelope(my_keys, sealed_key_for_me)
    return seal_data_key(data_key, new_recipients)


def _envelope_list(envelopes: Any) -> list[dict[str, bytes]]:
    envs = [{"recipient": bytes(e["recipient"]), "sealed_key": bytes(e["sealed_key"])} for e in envelopes]
    if not 1 <= len(envs) <= MAX_ENVELOPES_PER_TX:
        raise ValidationError(f"a transaction carries 1..{MAX_ENVELOPES_PER_TX} envelopes, not {len(envs)}")
    if len({e["recipient"] for e in envs}) != len(envs):
        raise ValidationError("envelope recipients must be unique")
    return envs


def records_add_body(patient_pub: bytes, resource_type: str, enc: EncryptedRecord) -> dict[str, Any]:
    """The ``records.add`` tx body for ``enc``: patient, resource_type, content_hash, size, envelopes.

    The envelopes must include the patient (the chain requires it).
    """
    if len(patient_pub) != PUBLIC_KEY_SIZE:
        raise ValidationError("patient is a 32-byte Ed25519 public key")
    envs = _envelope_list(enc.envelopes)
    if patient_pub not in {e["recipient"] for e in envs}:
        raise ValidationError("the envelopes must include the patient")
    return {
        "patient": bytes(patient_pub),
        "resource_type": resource_type,
        "content_hash": enc.content_hash,
        "size": len(enc.ciphertext),
        "envelopes": envs,
    }


def records_add_envelopes_body(record_id: bytes, envelopes: list[Envelope]) -> dict[str, Any]:
    """The ``records.add_envelopes`` tx body sharing ``record_id`` (e.g. from :func:`rewrap`)."""
    if len(record_id) != HASH_SIZE:
        raise ValidationError("record_id is 32 bytes")
    return {"record_id": bytes(record_id), "envelopes": _envelope_list(envelopes)}


__all__: list[str] = [
    "RECORD_AAD",
    "EncryptedRecord",
    "Envelope",
    "RecordCryptoError",
    "decrypt_record",
    "encrypt_record",
    "open_envelope",
    "open_record",
    "records_add_body",
    "records_add_envelopes_body",
    "rewrap",
    "seal_data_key",
    "verify_commitment",
]
