"""Hashes, domain-separated signatures, sealed boxes, AEAD and the keystore
(docs/protocol.md §2 and §10)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nacl.pwhash
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind import crypto, files
from medchaind.errors import KeystoreError, SignatureError

SEED = bytes(range(32))
# RFC 8032 §7.1 TEST 1: secret key -> public key.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
FAST_KDF = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}


@pytest.fixture
def key() -> crypto.SigningKey:
    return crypto.SigningKey(SEED)


def test_sha256_known_answer() -> None:
    assert crypto.sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert crypto.sha256(b"").hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_public_key_derivation_matches_rfc8032() -> None:
    k = crypto.SigningKey(RFC8032_SEED)
    assert k.public_key == RFC8032_PUB
    assert k.seed == RFC8032_SEED


def test_signing_message_layout() -> None:
    assert crypto.signing_message("medchain/tx/v1", "c-1", b"\x01\x02") == (
        b"medchain/tx/v1\x00c-1\x00\x01\x02"
    )


def test_sign_verify(key: crypto.SigningKey) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "medchain-dev", b"payload")
    assert len(sig) == crypto.SIGNATURE_SIZE
    assert crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "medchain-dev", b"payload")
    crypto.require_valid(key.public_key, sig, crypto.DOMAIN_TX, "medchain-dev", b"payload")
    # Ed25519 is deterministic: vectors depend on it.
    assert key.sign(crypto.DOMAIN_TX, "medchain-dev", b"payload") == sig


def test_signature_is_plain_ed25519_over_the_signing_message(key: crypto.SigningKey) -> None:
    import nacl.signing

    msg = crypto.signing_message(crypto.DOMAIN_VOTE, "c", b"x")
    sig = key.sign(crypto.DOMAIN_VOTE, "c", b"x")
    nacl.signing.VerifyKey(key.public_key).verify(msg, sig)  # raises if not


@pytest.mark.parametrize(
    "other_domain",
    [crypto.DOMAIN_VOTE, crypto.DOMAIN_PROPOSAL, "medchain/tx/v2", "", "medchain/tx"],
)
def test_domain_separation(key: crypto.SigningKey, other_domain: str) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "c", b"payload")
    assert not crypto.verify(key.public_key, sig, other_domain, "c", b"payload")
    with pytest.raises(SignatureError, match="invalid"):
        crypto.require_valid(key.public_key, sig, other_domain, "c", b"payload")


@pytest.mark.parametrize("other_chain", ["medchain-prod", "medchain-dev2", "medchain-de", ""])
def test_chain_id_separation(key: crypto.SigningKey, other_chain: str) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "medchain-dev", b"payload")
    assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, other_chain, b"payload")


def test_chain_and_payload_boundary_is_unambiguous(key: crypto.SigningKey) -> None:
    # moving a byte between chain id and payload changes the message
    sig = key.sign(crypto.DOMAIN_TX, "ab", b"c")
    assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "a", b"bc")
    assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "abc", b"")


@given(st.binary(max_size=200), st.data())
def test_tampered_payload_or_signature_fails(payload: bytes, data: st.DataObject) -> None:
    key = crypto.SigningKey(SEED)
    sig = key.sign(crypto.DOMAIN_TX, "c", payload)
    if payload:
        i = data.draw(st.integers(0, len(payload) - 1))
        bad = bytearray(payload)
        bad[i] ^= 1 << data.draw(st.integers(0, 7))
        assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "c", bytes(bad))
    assert not crypto.verify(key.public_key, sig, crypto.DOMAIN_TX, "c", payload + b"\x00")
    j = data.draw(st.integers(0, 63))
    bad_sig = bytearray(sig)
    bad_sig[j] ^= 1 << data.draw(st.integers(0, 7))
    assert not crypto.verify(key.public_key, bytes(bad_sig), crypto.DOMAIN_TX, "c", payload)


def test_other_key_fails(key: crypto.SigningKey) -> None:
    other = crypto.SigningKey(bytes(32))
    sig = key.sign(crypto.DOMAIN_TX, "c", b"p")
    assert not crypto.verify(other.public_key, sig, crypto.DOMAIN_TX, "c", b"p")


@pytest.mark.parametrize("n", [0, 1, 31, 33, 64])
def test_wrong_length_public_key_returns_false(key: crypto.SigningKey, n: int) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "c", b"p")
    pk = (key.public_key * 3)[:n]
    assert crypto.verify(pk, sig, crypto.DOMAIN_TX, "c", b"p") is False


@pytest.mark.parametrize("n", [0, 1, 63, 65, 128])
def test_wrong_length_signature_returns_false(key: crypto.SigningKey, n: int) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "c", b"p")
    assert crypto.verify(key.public_key, (sig * 2)[:n], crypto.DOMAIN_TX, "c", b"p") is False


@pytest.mark.parametrize("pk", [b"\xff" * 32, b"\x00" * 32, bytes.fromhex("01" + "00" * 31)])
def test_degenerate_public_keys_return_false(key: crypto.SigningKey, pk: bytes) -> None:
    sig = key.sign(crypto.DOMAIN_TX, "c", b"p")
    assert crypto.verify(pk, sig, crypto.DOMAIN_TX, "c", b"p") is False
    assert crypto.verify(pk, bytes(64), crypto.DOMAIN_TX, "c", b"p") is False


def test_signing_key_rejects_bad_seed_length() -> None:
    for n in (0, 31, 33, 64):
        with pytest.raises(KeystoreError):
            crypto.SigningKey(bytes(n))
    with pytest.raises(KeystoreError):
        crypto.EncryptionKey(bytes(31))


def test_reprs_hide_secrets(key: crypto.SigningKey) -> None:
    ek = crypto.EncryptionKey(bytes(range(32, 64)))
    pair = crypto.KeyPair(key, ek)
    for text in (repr(key), str(key), repr(ek), str(ek), repr(pair), str(pair)):
        assert SEED.hex() not in text
        assert SEED.hex()[:16] not in text
        assert ek.secret.hex()[:16] not in text
        assert repr(SEED) not in text
    assert key.public_key.hex()[:16] in repr(key)


def test_generate_gives_distinct_keys() -> None:
    a, b = crypto.SigningKey.generate(), crypto.SigningKey.generate()
    assert a.public_key != b.public_key
    assert crypto.KeyPair.generate().public_key != crypto.KeyPair.generate().public_key
    assert len(crypto.random_bytes(24)) == 24


# -------------------------------------------------------------------- sealed boxes


def test_sealed_box_round_trip() -> None:
    recipient = crypto.EncryptionKey(bytes(range(32)))
    sealed = crypto.seal(recipient.public_key, b"data key")
    assert b"data key" not in sealed
    assert recipient.unseal(sealed) == b"data key"
    # anonymous sealing uses a fresh ephemeral key each time
    assert crypto.seal(recipient.public_key, b"data key") != sealed


def test_sealed_box_wrong_recipient_or_tamper() -> None:
    recipient = crypto.EncryptionKey(bytes(range(32)))
    other = crypto.EncryptionKey(bytes(32))
    sealed = crypto.seal(recipient.public_key, b"secret")
    with pytest.raises(SignatureError, match="does not open"):
        other.unseal(sealed)
    for i in (0, 31, 32, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(SignatureError):
            recipient.unseal(bytes(bad))
    with pytest.raises(SignatureError):
        recipient.unseal(sealed[:-1])
    with pytest.raises(SignatureError):
        recipient.unseal(b"")


# ---------------------------------------------------------------------------- AEAD

AEAD_KEY = bytes(range(100, 132))


@given(st.binary(max_size=300), st.binary(max_size=40))
def test_aead_round_trip(plaintext: bytes, aad: bytes) -> None:
    ct = crypto.aead_encrypt(AEAD_KEY, plaintext, aad)
    assert len(ct) == crypto.AEAD_NONCE_SIZE + len(plaintext) + 16
    assert crypto.aead_decrypt(AEAD_KEY, ct, aad) == plaintext


def test_aead_random_nonce() -> None:
    a = crypto.aead_encrypt(AEAD_KEY, b"same")
    b = crypto.aead_encrypt(AEAD_KEY, b"same")
    assert a[: crypto.AEAD_NONCE_SIZE] != b[: crypto.AEAD_NONCE_SIZE]
    assert a != b


@given(st.binary(min_size=1, max_size=100), st.data())
def test_aead_tamper_detected(plaintext: bytes, data: st.DataObject) -> None:
    ct = bytearray(crypto.aead_encrypt(AEAD_KEY, plaintext, b"aad"))
    i = data.draw(st.integers(0, len(ct) - 1))  # nonce, ciphertext or tag
    ct[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SignatureError):
        crypto.aead_decrypt(AEAD_KEY, bytes(ct), b"aad")


def test_aead_aad_mismatch_wrong_key_and_short_input() -> None:
    ct = crypto.aead_encrypt(AEAD_KEY, b"record", b"record-id-1")
    with pytest.raises(SignatureError, match="does not authenticate"):
        crypto.aead_decrypt(AEAD_KEY, ct, b"record-id-2")
    with pytest.raises(SignatureError, match="does not authenticate"):
        crypto.aead_decrypt(AEAD_KEY, ct)
    with pytest.raises(SignatureError, match="does not authenticate"):
        crypto.aead_decrypt(bytes(32), ct, b"record-id-1")
    with pytest.raises(SignatureError, match="too short"):
        crypto.aead_decrypt(AEAD_KEY, ct[: crypto.AEAD_NONCE_SIZE + 15], b"record-id-1")
    assert crypto.aead_decrypt(AEAD_KEY, ct, b"record-id-1") == b"record"


# ------------------------------------------------------------------------ keystore


@pytest.fixture
def pair() -> crypto.KeyPair:
    return crypto.KeyPair(crypto.SigningKey(SEED), crypto.EncryptionKey(bytes(range(64, 96))))


@pytest.fixture
def keyfile(tmp_path: Path, pair: crypto.KeyPair) -> Path:
    path = tmp_path / "keys" / "node.json"
    files.save_keystore(path, pair, "correct horse", label="node0", **FAST_KDF)
    return path


def test_keystore_round_trip(keyfile: Path, pair: crypto.KeyPair) -> None:
    loaded = files.load_keystore(keyfile, "correct horse")
    assert loaded.signing.seed == pair.signing.seed
    assert loaded.encryption.secret == pair.encryption.secret
    assert loaded.public_key == pair.public_key
    assert loaded.encryption.public_key == pair.encryption.public_key


def test_keystore_default_kdf_parameters_round_trip(tmp_path: Path, pair: crypto.KeyPair) -> None:
    path = tmp_path / "k.json"
    files.save_keystore(path, pair, "pw")
    doc = json.loads(path.read_text())
    assert doc["kdf"]["opslimit"] == nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
    assert doc["kdf"]["memlimit"] == nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
    assert files.load_keystore(path, "pw").public_key == pair.public_key


def test_keystore_file_mode_is_0600(keyfile: Path) -> None:
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    # no temporary file left behind
    assert [p.name for p in keyfile.parent.iterdir()] == [keyfile.name]


def test_keystore_overwrite_replaces_a_world_readable_file(
    tmp_path: Path, pair: crypto.KeyPair
) -> None:
    path = tmp_path / "k.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    files.save_keystore(path, pair, "pw", **FAST_KDF)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert files.load_keystore(path, "pw").public_key == pair.public_key


def test_keystore_format(keyfile: Path, pair: crypto.KeyPair) -> None:
    doc = json.loads(keyfile.read_text())
    assert set(doc) == {
        "version",
        "label",
        "public_key",
        "encryption_public_key",
        "kdf",
        "cipher",
        "ciphertext",
    }
    assert doc["version"] == 1
    assert doc["cipher"] == "xsalsa20-poly1305"
    assert doc["kdf"]["name"] == "argon2id"
    assert len(bytes.fromhex(doc["kdf"]["salt"])) == nacl.pwhash.argon2id.SALTBYTES
    # nonce(24) || secretbox(seed(32) || x25519 secret(32)) with a 16-byte tag
    assert len(bytes.fromhex(doc["ciphertext"])) == 24 + 16 + 64


def test_keystore_never_contains_secret_material(keyfile: Path, pair: crypto.KeyPair) -> None:
    raw = keyfile.read_bytes()
    text = raw.decode().lower()
    for secret in (pair.signing.seed, pair.encryption.secret):
        assert secret not in raw
        assert secret.hex() not in text
        assert secret.hex()[:16] not in text
        import base64

        assert base64.b64encode(secret).decode().lower()[:16] not in text


def test_keystore_wrong_passphrase(keyfile: Path) -> None:
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        files.load_keystore(keyfile, "Correct horse")
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        files.load_keystore(keyfile, "")


def test_read_keystore_public_needs_no_passphrase(keyfile: Path, pair: crypto.KeyPair) -> None:
    pub = files.read_keystore_public(keyfile)
    assert pub == {
        "label": "node0",
        "public_key": pair.public_key.hex(),
        "encryption_public_key": pair.encryption.public_key.hex(),
    }


def _rewrite(path: Path, mutate: object) -> None:
    doc = json.loads(path.read_text())
    mutate(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda d: d.__setitem__("version", 2), "unsupported keystore version"),
        (lambda d: d.pop("version"), "unsupported keystore version"),
        (lambda d: d.pop("ciphertext"), "missing 'ciphertext'"),
        (lambda d: d.pop("kdf"), "missing 'kdf'"),
        (lambda d: d.pop("public_key"), "missing 'public_key'"),
        (lambda d: d.__setitem__("kdf", "argon2id"), "malformed"),
        (lambda d: d["kdf"].__setitem__("name", "scrypt"), "malformed"),
        (lambda d: d["kdf"].pop("salt"), "malformed"),
        (lambda d: d["kdf"].__setitem__("salt", "not hex"), "malformed"),
        (lambda d: d["kdf"].__setitem__("opslimit", "many"), "malformed"),
        (lambda d: d.__setitem__("ciphertext", "zz"), "malformed"),
        (lambda d: d.__setitem__("public_key", "00" * 32), "does not match"),
    ],
)
def test_keystore_malformed_fields(keyfile: Path, mutate: object, msg: str) -> None:
    _rewrite(keyfile, mutate)
    with pytest.raises(KeystoreError, match=msg):
        files.load_keystore(keyfile, "correct horse")


def test_keystore_flipped_ciphertext_fails(keyfile: Path) -> None:
    doc = json.loads(keyfile.read_text())
    ct = bytearray(bytes.fromhex(doc["ciphertext"]))
    ct[-1] ^= 1
    doc["ciphertext"] = ct.hex()
    keyfile.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError):
        files.load_keystore(keyfile, "correct horse")


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"version": 1}']
)
def test_keystore_corrupted_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.json"
    path.write_bytes(content)
    with pytest.raises(KeystoreError):
        files.load_keystore(path, "pw")
    with pytest.raises(KeystoreError):
        files.read_keystore_public(path)


def test_keystore_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="no such keystore"):
        files.load_keystore(tmp_path / "absent.json", "pw")
    with pytest.raises(KeystoreError):
        files.load_keystore(tmp_path, "pw")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["kdf"].__setitem__("salt", "00"),
        lambda d: d["kdf"].__setitem__("opslimit", 0),
        lambda d: d["kdf"].__setitem__("memlimit", 0),
        lambda d: d.__setitem__("ciphertext", "ab"),
    ],
    ids=["short-salt", "opslimit-0", "memlimit-0", "truncated-ciphertext"],
)
def test_keystore_malformed_kdf_is_not_reported_as_wrong_passphrase(
    keyfile: Path, mutate: object
) -> None:
    _rewrite(keyfile, mutate)
    with pytest.raises(KeystoreError) as info:
        files.load_keystore(keyfile, "correct horse")
    assert "wrong passphrase" not in str(info.value)
