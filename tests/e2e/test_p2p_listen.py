"""End-to-end: a P2P port the node cannot have to itself is a startup error (issue 9).

Found by use: with the P2P port held by another program the node logged Errno 98, ended
with ``listen=[]``, said "node ready" and ``/readyz`` answered 200; a second medchaind on
the same port bound it too (py-libp2p sets SO_REUSEPORT) and both listened. Now the
process exits 1 with ``p2p.listen <addr>: Address already in use ...``, as a metrics
port clash already did.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from medchaind.testing.nodeproc import NodeProcess, free_port_range

pytestmark = pytest.mark.e2e


def p2p_env(port: int) -> dict[str, str]:
    return {"MEDCHAIND_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{port}"}


def assert_refused(n: NodeProcess, port: int) -> None:
    with pytest.raises(AssertionError, match="node exited with 1"):
        n.start(timeout=60)
    log = n.log()
    assert f"p2p.listen /ip4/127.0.0.1/tcp/{port}: Address already in use" in log, log[-3000:]
    assert "node ready" not in log and "Traceback" not in log


def test_a_p2p_port_held_by_another_program_stops_the_node(short_tmp: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_refused(NodeProcess(short_tmp / "node", short_tmp / "node.log", env=p2p_env(port)), port)


def test_a_second_medchaind_on_the_same_p2p_port_does_not_start(short_tmp: Path) -> None:
    port = free_port_range(1, start=41000)
    first = NodeProcess(short_tmp / "a", short_tmp / "a.log", env=p2p_env(port))
    first.start()
    try:
        assert_refused(NodeProcess(short_tmp / "b", short_tmp / "b.log", env=p2p_env(port)), port)
        with first.client() as c:  # the first node is unaffected
            assert c.node_info()["height"] >= 0
    finally:
        first.stop(signal.SIGTERM)
