"""The supply identifier vectors printed in docs/protocol.md §20.1, so another
implementation can check its blind indexes against them."""

from __future__ import annotations

from pathlib import Path

from medchaind.modules.supply import gs1
from medchaind.modules.supply.machine import expiry_end_ms, index_key_check

K = bytes([1]) * 32
VECTORS = {
    "key_check": (index_key_check(K), "6e06ba174a7258113e838b18b757d65c85f22d24d477c348ef83cdf783be063c"),
    "sgtin": (gs1.sgtin_oid(K, "00300012345671", "S0000001"),
              "01b162f5dcff52f14dfb2ed76eb244cc2f7925b9afed890370fa23af9c9a657436"),
    "lot": (gs1.lot_id(K, "00300012345671", "LOT-2506A"),
            "4c0c1300abafc8bef3d1b33f102b657ae0a070f910cce2f41734f6599009575d"),
    "sscc": (gs1.sscc_oid("106141410000000019"),
             "02e0aecb2c32fc75aaec7866da5d2bbf80692bdfb9677cd5874e4e841db1632af5"),
}


def test_vectors() -> None:
    for name, (got, want) in VECTORS.items():
        assert got.hex() == want, name
    assert expiry_end_ms(20270531) == 1_811_808_000_000  # 2027-06-01T00:00:00Z


def test_the_protocol_spec_prints_them() -> None:
    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for name, (_, want) in VECTORS.items():
        assert want in spec, name


def test_calendar_arithmetic_matches_the_proleptic_gregorian_calendar() -> None:
    # the pure layer has no datetime; its integer calendar must agree with it
    import datetime

    from hypothesis import given
    from hypothesis import strategies as st

    from medchaind.modules.supply.machine import civil_from_days, days_from_civil, days_in_month, iso_ms

    epoch = datetime.date(1970, 1, 1)

    @given(st.dates(min_value=datetime.date(1600, 1, 1), max_value=datetime.date(2400, 12, 31)),
           st.integers(0, 86_399_999))
    def check(d: datetime.date, ms: int) -> None:
        z = (d - epoch).days
        assert days_from_civil(d.year, d.month, d.day) == z
        assert civil_from_days(z) == (d.year, d.month, d.day)
        nxt = datetime.date(d.year + d.month // 12, d.month % 12 + 1, 1)
        assert days_in_month(d.year, d.month) == (nxt - datetime.date(d.year, d.month, 1)).days
        t = datetime.datetime(d.year, d.month, d.day, tzinfo=datetime.UTC) + datetime.timedelta(milliseconds=ms)
        assert iso_ms(z * 86_400_000 + ms) == t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"

    check()
