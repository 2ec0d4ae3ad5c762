"""Hashes, signatures, key agreement, authenticated encryption and keystore encryption.

The only module that imports PyNaCl. Everything here is synchronous and does no I/O
(keystore *files* are read and written by :mod:`medchaind.files`); key generation and
salts read the OS RNG, which the state machine never calls.

Signatures are Ed25519 over a domain-separated message::

    domain (ASCII) || 0x00 || chain_id (ASCII) || 0x00 || payload

so a signature made for one purpose (``medchain/tx/v1``) or one chain can never be
replayed as another. Domains and chain ids never contain NUL (chain ids are validated
against ``[a-z0-9][a-z0-9-]{0,63}`` by ``types.genesis``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from .errors import KeystoreError, SignatureError

DOMAIN_TX = "medchain/tx/v1"
DOMAIN_VOTE = "medchain/vote/v1"
DOMAIN_PROPOSAL = "medchain/proposal/v1"

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
HASH_SIZE = 32
AEAD_KEY_SIZE = 32
AEAD_NONCE_SIZE = 24


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signing_message(domain: str, chain_id: str, payload: bytes) -> bytes:
    return domain.encode("ascii") + b"\x00" + chain_id.encode("ascii") + b"\x00" + payload


class SigningKey:
    """An Ed25519 private key. Its ``repr`` never shows key material."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise KeystoreError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(nacl.utils.random(32))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, domain: str, chain_id: str, payload: bytes) -> bytes:
        return self._key.sign(signing_message(domain, chain_id, payload)).signature

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_key.hex()[:16]}…)"


def verify(public_key: bytes, signature: bytes, domain: str, chain_id: str, payload: bytes) -> bool:
    """True iff ``signature`` is ``public_key``'s signature of the domain-separated payload."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(
            signature + signing_message(domain, chain_id, payload), public_key
        )
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.RuntimeError, ValueError):
        return False
    return True


def require_valid(public_key: bytes, signature: bytes, domain: str, chain_id: str, payload: bytes) -> None:
    if not verify(public_key, signature, domain, chain_id, payload):
        raise SignatureError(f"invalid {domain} signature for chain {chain_id!r}")


class EncryptionKey:
    """An X25519 private key for sealing data keys to a participant."""

    __slots__ = ("_key", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise KeystoreError("an X25519 secret key is 32 bytes")
        self._key = nacl.public.PrivateKey(secret)
        self.public_key: bytes = bytes(self._key.public_key)

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(nacl.utils.random(32))

    @property
    def secret(self) -> bytes:
        return bytes(self._key)

    def unseal(self, sealed: bytes) -> bytes:
        try:
            return nacl.public.SealedBox(self._key).decrypt(sealed)
        except nacl.exceptions.CryptoError:
            raise SignatureError("sealed box does not open with this key") from None

    def __repr__(self) -> str:
        return f"EncryptionKey(public={self.public_key.hex()[:16]}…)"


def seal(recipient_public_key: bytes, data: bytes) -> bytes:
    """Anonymous sealed box (X25519 + XSalsa20-Poly1305) to a recipient's public key."""
    return nacl.public.SealedBox(nacl.public.PublicKey(recipient_public_key)).encrypt(data)


def aead_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """XChaCha20-Poly1305 with a random nonce; returns nonce || ciphertext."""
    nonce = nacl.utils.random(AEAD_NONCE_SIZE)
    ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
    return nonce + ct


def aead_decrypt(key: bytes, data: bytes, aad: bytes = b"") -> bytes:
    if len(data) < AEAD_NONCE_SIZE + 16:
        raise SignatureError("ciphertext too short")
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[AEAD_NONCE_SIZE:], aad, data[:AEAD_NONCE_SIZE], key
        )
    except nacl.exceptions.CryptoError:
        raise SignatureError("ciphertext does not authenticate under this key") from None


def random_bytes(n: int) -> bytes:
    return nacl.utils.random(n)


# --------------------------------------------------------------------------- keystore

KEYSTORE_VERSION = 1


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A participant's keys: Ed25519 for signing, X25519 for receiving sealed data keys."""

    signing: SigningKey
    encryption: EncryptionKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(SigningKey.generate(), EncryptionKey.generate())

    @property
    def public_key(self) -> bytes:
        return self.signing.public_key


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )


def encrypt_keystore(
    keys: KeyPair,
    passphrase: str,
    *,
    label: str = "",
    opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
    memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
) -> dict[str, Any]:
    """The keystore document of ``keys`` under ``passphrase`` (argon2id -> secretbox).

    Public keys are kept in clear so tools can list keys without the passphrase. The
    file itself is written by :mod:`medchaind.files` (this module does no I/O).
    """
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase.encode(), salt, opslimit, memlimit))
    secret = keys.signing.seed + keys.encryption.secret
    sealed = box.encrypt(secret)
    return {
        "version": KEYSTORE_VERSION,
        "label": label,
        "public_key": keys.signing.public_key.hex(),
        "encryption_public_key": keys.encryption.public_key.hex(),
        "kdf": {"name": "argon2id", "salt": salt.hex(), "opslimit": opslimit, "memlimit": memlimit},
        "cipher": "xsalsa20-poly1305",
        "ciphertext": bytes(sealed).hex(),
    }


def check_keystore(doc: object, source: str) -> dict[str, Any]:
    """A parsed keystore document, checked for the fields every version-1 keystore has."""
    if not isinstance(doc, dict) or doc.get("version") != KEYSTORE_VERSION:
        raise KeystoreError(f"{source}: unsupported keystore version (expected {KEYSTORE_VERSION})")
    for field in ("public_key", "encryption_public_key", "kdf", "ciphertext"):
        if field not in doc:
            raise KeystoreError(f"{source}: keystore is missing {field!r}")
    return doc


def decrypt_keystore(doc: dict[str, Any], passphrase: str, source: str) -> KeyPair:
    """The keys inside a (checked) keystore document; KeystoreError names ``source``."""
    kdf = doc["kdf"]
    try:
        if not isinstance(kdf, dict) or kdf.get("name") != "argon2id":
            raise ValueError("kdf must be argon2id")
        salt = bytes.fromhex(kdf["salt"])
        opslimit, memlimit = int(kdf["opslimit"]), int(kdf["memlimit"])
        ciphertext = bytes.fromhex(str(doc["ciphertext"]))
        if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
            raise ValueError("salt has the wrong length")
        if not nacl.pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE:
            raise ValueError("opslimit out of range")
        # cap memory so a tampered file cannot make loading allocate gigabytes
        if not nacl.pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= nacl.pwhash.argon2id.MEMLIMIT_MODERATE:
            raise ValueError("memlimit out of range")
        if len(ciphertext) != nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES + 64:
            raise ValueError("ciphertext has the wrong length")
    except (KeyError, ValueError, TypeError) as exc:
        raise KeystoreError(f"{source}: malformed keystore ({exc})") from None
    key = _derive(passphrase.encode(), salt, opslimit, memlimit)
    try:
        secret = nacl.secret.SecretBox(key).decrypt(ciphertext)
    except nacl.exceptions.CryptoError:
        raise KeystoreError(f"{source}: wrong passphrase") from None
    keys = KeyPair(SigningKey(secret[:32]), EncryptionKey(secret[32:]))
    if keys.signing.public_key.hex() != doc["public_key"]:
        raise KeystoreError(f"{source}: public key does not match the encrypted secret")
    return keys
