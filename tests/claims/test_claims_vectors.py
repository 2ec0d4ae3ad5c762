"""The claims test vectors of docs/protocol.md §22.1, computed the way the spec writes them
(HMAC-SHA-256 and SHA-256 over canonical CBOR, written out here) and by the implementation."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from medchaind import codec
from medchaind.modules.claims import canonical, codes, x12

KEY = bytes([1]) * 32
DATA = Path(__file__).parent / "data"


def spec_blind(label: str, *parts: object) -> str:
    return hmac.new(KEY, codec.encode([f"medchain/claims/{label}/v1", *parts]), hashlib.sha256).hexdigest()


VECTORS = {
    "pcn": ("74c7e126a0f7d45748f301178d7463435948769d4cd6611edc9d7bee99d7efcc", ("PCNQX0001",)),
    "icn": ("08c7cdb54711fbfc1c661820c741397c145cc0d6d66f980b20a7dac7fbbdfde7", ("ICNQX0001",)),
    "trace": ("0384956ea408be78e64e619bec5d56184b780f90f67ed20fc0edb3d98c8f8ccc", ("EFTQX20240125",)),
    "patient": ("9067c2ea0572daeaf020b5c1de73109d6171304b15f8dbe487758803f6aced40",
                ("QXM90011234", "19800214", 202401)),
    "dos": ("f0b0b399d5a52955b44b9e3905730d81bf46dc36facf9347a7a16ee0fd7df8e8",
            ("QXM90011234", "19800214", "20240110")),
}


def test_blind_value_vectors() -> None:
    impl = {"pcn": canonical.pcn_key(KEY, "PCNQX0001"), "icn": canonical.icn_key(KEY, "ICNQX0001"),
            "trace": canonical.trace_key(KEY, "EFTQX20240125"),
            "patient": canonical.patient_token(KEY, "QXM90011234", "19800214", 202401),
            "dos": canonical.day_key(KEY, "QXM90011234", "19800214", "20240110")}
    for label, (expected, parts) in VECTORS.items():
        assert spec_blind(label, *parts) == expected == impl[label].hex(), label
    assert codec.encode(["medchain/claims/pcn/v1", "PCNQX0001"]).hex() == (
        "82766d6564636861696e2f636c61696d732f70636e2f76316950434e515830303031")


def test_commitment_and_duplicate_key_vectors() -> None:
    claim = x12.parse_837((DATA / "837p_batch.txt").read_text())[0]
    assert spec_blind("claim", codec.encode(claim)) == (
        "7b7a45972ee38e085886a632ea24ce2ae9535b2beaebbdc5f07611031eab8775") == canonical.commitment(KEY, claim).hex()
    day = bytes.fromhex(VECTORS["dos"][0])
    exact = hashlib.sha256(codec.encode(["medchain/claims/exact/v1", "1234567893", "1245319599", [day], "99213", "",
                                         [], 1000, 12500, "11"])).hexdigest()
    assert exact == "71bf7d6998a985711d94693fba7572e7c1272dff217002f41843ef08d4dbe909"
    assert codes.exact_key("1234567893", "1245319599", [day], "99213", None, [], 1000, 12500, "11").hex() == exact
    suspect = hashlib.sha256(codec.encode(["medchain/claims/suspect/v1", day, "99213"])).hexdigest()
    assert suspect == "269b92bc674c8b11a05430846b401452fb812083e0cf553eed1fecfbc7d49683"
    assert codes.suspect_key(day, "99213").hex() == suspect
