"""The e2e helpers' cheap keystores (medchaind/testing/nodeproc.py) are real keystores.

``start_testnet`` and ``Medchain.key`` re-encrypt the keystores a test makes at argon2id's
minimum cost, so that each ``medchain --key`` command and each node start opens its key
in microseconds; the file must still be a keystore the product opens, with the same
keys, label and passphrase (and the wrong passphrase must still fail).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medchaind.crypto import KeyPair
from medchaind.errors import KeystoreError
from medchaind.files import load_keystore, read_keystore_public, save_keystore
from medchaind.testing.nodeproc import TEST_KDF, cheapen_keystore


@pytest.mark.parametrize("known", [True, False], ids=["keys-given", "keys-opened"])
def test_a_cheapened_keystore_opens_to_the_same_keys(tmp_path: Path, known: bool) -> None:
    path = tmp_path / "k.json"
    kp = KeyPair.generate()
    save_keystore(path, kp, "a long test passphrase", label="clinic")
    cheapen_keystore(path, "a long test passphrase", kp if known else None)

    doc = json.loads(path.read_text())
    assert {k: doc["kdf"][k] for k in TEST_KDF} == TEST_KDF and doc["kdf"]["name"] == "argon2id"
    assert read_keystore_public(path)["label"] == "clinic"
    back = load_keystore(path, "a long test passphrase")
    assert back.signing.seed == kp.signing.seed and back.encryption.secret == kp.encryption.secret
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        load_keystore(path, "another passphrase")
