"""``medchaind bench --tx-type supply``: trading partners and event captures to measure.

:func:`setup_manufacturers` registers, accredits (a 2/3+ vote of the authorities) and
binds to a GLN and a GTIN each sender of the bench, through a node's IPC socket, as a
network would see it. :func:`capture_tx` is one ``supply.capture`` of one EPCIS
commissioning event of ``units`` serialised units (blind ids under the sender's index
key), the most common event of a packaging line.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...client import Client
from ...crypto import KeyPair
from ...errors import MedchainError
from ...types import Tx, sign_tx
from . import gs1
from .machine import gs1_check_digit, index_key_check

LOT = "BENCH-LOT"
EXPIRY = 20301231


@dataclass(frozen=True, slots=True)
class Manufacturer:
    keys: KeyPair
    gln: str
    gtin: str
    index_key: bytes

    @property
    def lot_id(self) -> bytes:
        return gs1.lot_id(self.index_key, self.gtin, LOT)


def _with_check(digits: str) -> str:
    return digits + str(gs1_check_digit(digits))


def _wait_all(ipcs: Sequence[Path], hashes: Sequence[str], what: str) -> None:
    for p in ipcs:
        with Client(p, timeout=120) as c:
            for h in hashes:
                st = c.wait(h, timeout_ms=60_000)
                if st.get("status") != "committed" or not st["receipt"]["ok"]:
                    raise MedchainError(f"setup ({what}) failed: {st}")


def setup_manufacturers(ipcs: Sequence[Path], chain: str, authorities: Sequence[KeyPair],
                        n: int) -> list[Manufacturer]:
    """``n`` accredited manufacturers, each with a GLN and a registered GTIN."""
    makers = [Manufacturer(KeyPair.generate(), _with_check(f"7{i:011d}"), _with_check(f"0{i + 100_000:012d}"),
                           gs1.new_index_key()[0]) for i in range(n)]
    with Client(ipcs[0], timeout=120) as c:
        hashes = [c.submit(sign_tx(m.keys.signing, chain, "identity.register", 0,
                                   {"role": "manufacturer", "enc_key": m.keys.encryption.public_key}))
                  for m in makers]
    _wait_all(ipcs, hashes, "registration")
    votes = []
    quorum = len(authorities) * 2 // 3 + 1
    with Client(ipcs[0], timeout=120) as c:
        for a in authorities[:quorum]:
            nonce = c.next_nonce(a.public_key)
            for j, m in enumerate(makers):
                votes.append(c.submit(sign_tx(a.signing, chain, "governance.accredit", nonce + j,
                                              {"subject": m.keys.public_key, "role": "manufacturer"})))
    _wait_all(ipcs[:1], votes, "accreditation")
    with Client(ipcs[0], timeout=120) as c:
        hashes = []
        for m in makers:
            hashes.append(c.submit(sign_tx(m.keys.signing, chain, "supply.register_party", 1, {"gln": m.gln})))
            hashes.append(c.submit(sign_tx(m.keys.signing, chain, "supply.register_product", 2, {
                "gtin": m.gtin, "key_check": index_key_check(m.index_key)})))
    _wait_all(ipcs, hashes, "parties and products")
    return makers


def capture_tx(m: Manufacturer, chain: str, nonce: int, serial_no: int, units: int = 1) -> Tx:
    """``supply.capture`` of one commissioning event of ``units`` new units."""
    serials = [f"B{serial_no:09d}-{u}" for u in range(units)]
    t = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=serial_no)
    event = {
        "hash": gs1.sgtin_oid(m.index_key, m.gtin, "event/" + serials[0])[1:],  # a stand-in canonical hash
        "type": "ObjectEvent", "action": "ADD", "biz_step": "commissioning", "disposition": "active",
        "time_ms": int(t.timestamp()) * 1000,
        "epcs": [gs1.sgtin_oid(m.index_key, m.gtin, s) for s in serials],
        "gtin": m.gtin, "lot_id": m.lot_id, "expiry": EXPIRY,
    }
    return sign_tx(m.keys.signing, chain, "supply.capture", nonce, {"events": [event]})
