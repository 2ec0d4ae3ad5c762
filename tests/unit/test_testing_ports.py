"""``free_port_range``: the ports test networks bind, per pytest-xdist worker band."""

from __future__ import annotations

import socket

from medchaind.testing import nodeproc
from medchaind.testing.nodeproc import PORT_BAND_SIZE, PORT_BANDS_START, free_port_range


def test_successive_ranges_are_free_disjoint_and_inside_the_band() -> None:
    a = free_port_range(4)
    b = free_port_range(4)
    assert not set(range(a, a + 4)) & set(range(b, b + 4))
    for base in (a, b):
        assert PORT_BANDS_START <= base and base + 4 <= PORT_BANDS_START + 2 * PORT_BAND_SIZE
        for port in range(base, base + 4):  # still free: each one binds
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))


def test_a_busy_port_is_skipped(monkeypatch) -> None:
    monkeypatch.setattr(nodeproc, "_cursor", {})
    first = free_port_range(3)
    monkeypatch.setattr(nodeproc, "_cursor", {})  # the same process starts at the same place
    with socket.socket() as held:
        held.bind(("127.0.0.1", first + 1))
        held.listen()
        again = free_port_range(3)
    assert not set(range(again, again + 3)) & {first + 1}
