"""``medchaind bench --tx-type claims``: providers, payers and claims to measure.

:func:`setup_pairs` registers providers and payers, accredits each by a 2/3+ vote of the
authorities and has each payer enroll its providers (``claims.enroll``: a billing NPI
and the pair key sealed to both), through a node's IPC socket, as a network would see
it. :func:`claim` generates a de-identified professional claim (an 837P's content:
synthetic member id, name, birth date and patient control number, 1-3 service lines of
common office-visit / lab / imaging codes in one month); :func:`submit_tx` is the
``claims.submit`` of it exactly as ``medchain claims submit`` builds one: every PHI value
blinded with the pair key, the canonical claim encrypted to the payer and the provider
and sent as the blob sidecar.

The generated claims name no encounter (the records module), so each line is committed
with the ``no_service_on_record`` hold, and every member id is new, so no line is a
duplicate: the bench measures the submit path with its detections, not a payer's review.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...client import Client
from ...crypto import KeyPair, random_bytes
from ...errors import MedchainError
from ...types import Tx, sign_tx
from ..records import encryption
from . import canonical, codes

#: the month of service of every generated line (CCYYMM)
MONTH = "202611"
#: (code, charge in cents) of common professional services
SERVICES = (("99213", 12_500), ("99214", 18_500), ("99203", 16_000), ("36415", 1_500), ("80053", 4_800),
            ("85025", 2_900), ("71046", 9_500), ("93000", 6_000), ("90471", 2_800), ("87880", 3_500))
DIAGNOSES = ("J069", "E119", "I10", "Z0000", "M545", "R079", "J029", "E785")


@dataclass(frozen=True, slots=True)
class Pair:
    """A provider enrolled with a payer under one billing NPI."""

    provider: KeyPair
    payer: KeyPair
    npi: str
    pair_key: bytes


def npi(stem: int) -> str:
    """A valid NPI (Luhn check digit with the 80840 prefix) from a number below 10^8."""
    first9 = f"1{stem:08d}"
    return first9 + codes.npi_check_digit(first9)


def _wait_all(ipcs: Sequence[Path], hashes: Sequence[str], what: str) -> None:
    for p in ipcs:
        with Client(p, timeout=120) as c:
            for h in hashes:
                st = c.wait(h, timeout_ms=60_000)
                if st.get("status") != "committed" or not st["receipt"]["ok"]:
                    raise MedchainError(f"setup ({what}) failed: {st}")


def setup_pairs(ipcs: Sequence[Path], chain: str, authorities: Sequence[KeyPair], n_providers: int,
                n_payers: int) -> list[Pair]:
    """``n_providers`` accredited providers, each enrolled with one of ``n_payers`` payers."""
    providers = [KeyPair.generate() for _ in range(n_providers)]
    payers = [KeyPair.generate() for _ in range(n_payers)]
    parties = [(k, "provider") for k in providers] + [(k, "payer") for k in payers]
    with Client(ipcs[0], timeout=120) as c:
        hashes = [c.submit(sign_tx(k.signing, chain, "identity.register", 0,
                                   {"role": role, "enc_key": k.encryption.public_key})) for k, role in parties]
    _wait_all(ipcs, hashes, "registration")
    votes = []
    quorum = len(authorities) * 2 // 3 + 1
    with Client(ipcs[0], timeout=120) as c:
        for a in authorities[:quorum]:
            nonce = c.next_nonce(a.public_key)
            for j, (k, role) in enumerate(parties):
                votes.append(c.submit(sign_tx(a.signing, chain, "governance.accredit", nonce + j,
                                              {"subject": k.public_key, "role": role})))
    _wait_all(ipcs[:1], votes, "accreditation")
    pairs = []
    nonces = [1] * n_payers
    with Client(ipcs[0], timeout=120) as c:
        hashes = []
        for i, prov in enumerate(providers):
            pay = payers[i % n_payers]
            key = random_bytes(canonical.PAIR_KEY_SIZE)
            pair = Pair(prov, pay, npi(1000 + i), key)
            envs = encryption.seal_data_key(key, {pay.public_key: pay.encryption.public_key,
                                                  prov.public_key: prov.encryption.public_key})
            hashes.append(c.submit(sign_tx(pay.signing, chain, "claims.enroll", nonces[i % n_payers], {
                "provider": prov.public_key, "npis": [pair.npi],
                "envelopes": [{"recipient": e["recipient"], "sealed_key": e["sealed_key"]} for e in envs]})))
            nonces[i % n_payers] += 1
            pairs.append(pair)
    _wait_all(ipcs, hashes, "enrollment")
    return pairs


def claim(pair: Pair, serial: int, rng: random.Random) -> dict[str, Any]:
    """A de-identified canonical professional claim (synthetic identifiers, no real person)."""
    lines = []
    for n, (code, charge) in enumerate(rng.sample(SERVICES, rng.randint(1, 3)), start=1):
        day = f"{MONTH}{rng.randint(1, 28):02d}"
        lines.append({"n": n, "code": code, "revenue": None, "modifiers": [], "units_milli": 1000,
                      "charge_cents": charge, "from": day, "to": day, "pos": None, "rendering_npi": None})
    return {
        "v": canonical.VERSION, "kind": "professional", "payer_id": "BENCHPAYER", "billing_npi": pair.npi,
        "rendering_npi": None, "member_id": f"BM{serial:010d}",
        "patient": {"last": f"SYNTH{serial % 997}", "first": "BENCH",
                    "birth_date": f"19{rng.randint(40, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
                    "sex": rng.choice("FM")},
        "pcn": f"BP{serial:010d}", "total_cents": sum(ln["charge_cents"] for ln in lines), "facility": "11",
        "frequency": codes.ORIGINAL, "original_icn": None, "sequence": "P",
        "diagnoses": rng.sample(DIAGNOSES, rng.randint(1, 2)), "lines": lines,
    }


def submit_tx(pair: Pair, chain: str, nonce: int, claim_: dict[str, Any]) -> tuple[Tx, bytes]:
    """``claims.submit`` of ``claim_`` and its encrypted document (the blob sidecar)."""
    recipients = {pair.payer.public_key: pair.payer.encryption.public_key,
                  pair.provider.public_key: pair.provider.encryption.public_key}
    enc = encryption.encrypt_record(canonical.document_bytes(claim_), recipients)
    body = canonical.submit_body(
        claim_, pair.pair_key, payer=pair.payer.public_key, content_hash=enc.content_hash, size=enc.size,
        envelopes=[{"recipient": e["recipient"], "sealed_key": e["sealed_key"]} for e in enc.envelopes])
    return sign_tx(pair.provider.signing, chain, "claims.submit", nonce, body), enc.ciphertext
