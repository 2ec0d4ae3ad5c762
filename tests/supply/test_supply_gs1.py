"""GS1 identifiers: element strings (and biip's missing-separator trap), Digital Links,
EPC URNs, check digits and the blind indexes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medchaind.modules.supply import gs1
from medchaind.modules.supply.machine import gs1_check_digit, index_key_check

GTIN = "09501101530003"  # GS1's example GTIN
KEY = bytes(range(32))


def test_check_digits_of_known_keys() -> None:
    # GS1 General Specifications examples
    assert gs1_check_digit("0950110153000") == 3
    assert gs1_check_digit("061414112345") == 2  # GLN 0614141123452
    assert gs1_check_digit("10614141123456789") == 7  # SSCC 106141411234567897
    assert gs1.check_gtin("9501101530003") == GTIN  # GTIN-13 padded to 14
    with pytest.raises(gs1.GS1Error, match="bad check digit"):
        gs1.check_gtin("09501101530004")
    with pytest.raises(gs1.GS1Error, match="bad check digit"):
        gs1.check_gln("0614141123453")


def test_element_string_with_separator() -> None:
    pid = gs1.parse_element_string("]d201095011015300031714070410AB-123\x1d21SN0001XYZ")
    assert pid == gs1.ProductId(GTIN, "SN0001XYZ", "AB-123", 20140704)
    # the human-readable form parses the same
    assert gs1.parse_element_string("(01)09501101530003(17)140704(10)AB-123(21)SN0001XYZ") == pid


def test_missing_separator_trap_is_refused_with_its_cause() -> None:
    # without the GS after the lot, biip reads lot "ABC12321SN0001XYZ" and no serial
    with pytest.raises(gs1.GS1Error, match=r"GS separator .* missing.*serial was merged into the lot"):
        gs1.parse_element_string("010950110153000317140704" "10ABC123" "21SN0001XYZ")
    # serial first, lot after it, no separator: the lot is merged into the serial
    with pytest.raises(gs1.GS1Error, match="lot was merged into the serial"):
        gs1.parse_element_string("0109501101530003171407042112345" "10LOT9")


def test_dscsa_identifier_needs_all_four_ais() -> None:
    with pytest.raises(gs1.GS1Error, match=r"missing \(21\) serial"):
        gs1.parse_element_string("010950110153000317140704" "10AB")
    with pytest.raises(gs1.GS1Error):
        gs1.parse_element_string("not a barcode")
    with pytest.raises(gs1.GS1Error, match="bad check digit|check digit"):
        gs1.parse_element_string("01095011015300041714070410AB\x1d21SN")


def test_day_00_expiry_is_the_last_day_of_the_month() -> None:
    assert gs1.expiry_from_yymmdd("270200") == 20270228
    assert gs1.expiry_from_yymmdd("281200") == 20281231
    assert gs1.parse_element_string("01" + GTIN + "17280200" "10L\x1d21S").expiry == 20280229
    with pytest.raises(gs1.GS1Error):
        gs1.expiry_from_yymmdd("271301")


def test_digital_link_round_trip() -> None:
    pid = gs1.ProductId(GTIN, "SN/1", "AB-1", 20271231)
    uri = gs1.digital_link(pid)
    assert uri == "https://id.gs1.org/01/09501101530003/10/AB-1/21/SN%2F1?17=271231"
    epc = gs1.parse_digital_link(uri)
    assert (epc.kind, epc.gtin, epc.serial, epc.lot, epc.expiry) == ("sgtin", GTIN, "SN/1", "AB-1", 20271231)
    # any resolver domain; an SSCC link
    assert gs1.parse_epc("https://example.com/01/09501101530003/21/7").serial == "7"
    assert gs1.parse_epc("https://id.gs1.org/00/106141411234567897").sscc == "106141411234567897"
    with pytest.raises(gs1.GS1Error):
        gs1.parse_digital_link("https://id.gs1.org/01/09501101530004/21/7")  # bad check digit


def test_epc_urns() -> None:
    # GS1 Tag Data Standard example: urn:epc:id:sgtin:0614141.812345.6789 is GTIN 80614141123458
    assert gs1.sgtin_from_urn("urn:epc:id:sgtin:0614141.812345.6789") == ("80614141123458", "6789")
    assert gs1.sgtin_urn("80614141123458", "6789", 7) == "urn:epc:id:sgtin:0614141.812345.6789"
    assert gs1.sgtin_from_urn("urn:epc:id:sgtin:0614141.812345.A%2FB") == ("80614141123458", "A/B")
    assert gs1.sscc_from_urn("urn:epc:id:sscc:0614141.1234567890") == "106141412345678908"
    assert gs1.sscc_urn("106141412345678908", 7) == "urn:epc:id:sscc:0614141.1234567890"
    assert gs1.gln_from_party("urn:epc:id:pgln:0614141.00001") == "0614141000012"
    assert gs1.gln_from_party("urn:epc:id:sgln:0614141.00001.0") == "0614141000012"
    assert gs1.gln_from_party("https://id.gs1.org/417/0614141000012") == "0614141000012"
    with pytest.raises(gs1.GS1Error):
        gs1.parse_epc("urn:epc:id:grai:0614141.12345.400")


@given(st.integers(0, 10**13 - 1), st.text(alphabet="ABCXYZ0123456789-./", min_size=1, max_size=20),
       st.text(alphabet="ABC0123456789-", min_size=1, max_size=20), st.integers(6, 12))
def test_round_trips_with_check_digits(n: int, serial: str, lot: str, cp_len: int) -> None:
    digits = f"{n:013d}"
    gtin = digits + str(gs1_check_digit(digits))
    pid = gs1.ProductId(gtin, serial, lot, 20300115)
    assert gs1.parse_element_string(gs1.element_string(pid)) == pid
    assert gs1.parse_element_string(gs1.element_string(pid, human=True)) == pid
    epc = gs1.parse_digital_link(gs1.digital_link(pid))
    assert (epc.gtin, epc.serial, epc.lot, epc.expiry) == (gtin, serial, lot, 20300115)
    assert gs1.sgtin_from_urn(gs1.sgtin_urn(gtin, serial, cp_len)) == (gtin, serial)


def test_blind_indexes() -> None:
    a = gs1.sgtin_oid(KEY, GTIN, "S1")
    assert len(a) == 33 and a[0] == 0x01
    assert a == gs1.sgtin_oid(KEY, "9501101530003", "S1")  # same GTIN, other length
    assert a != gs1.sgtin_oid(bytes(32), GTIN, "S1")  # another product key
    assert gs1.lot_id(KEY, GTIN, "L1") != gs1.sgtin_oid(KEY, GTIN, "L1")[1:]  # domain-separated
    s = gs1.sscc_oid("106141412345678908")
    assert len(s) == 33 and s[0] == 0x02
    key, check = gs1.new_index_key()
    assert check == index_key_check(key) and len(key) == 32
