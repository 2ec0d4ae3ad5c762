"""End-to-end: ``/readyz`` follows the quorum on real processes (issue 9, readiness gap).

Found by use: with two of four authorities down, the survivors' ``/readyz`` still
answered 200 although no block could be committed. Four ``medchaind run`` authorities on
127.0.0.1; node 0 serves metrics. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator

import pytest

from medchaind.client import Client
from medchaind.testing.nodeproc import NodeProcess, free_port_range, start_testnet
from medchaind.testing.wait import wait_until

pytestmark = pytest.mark.e2e


def readyz(port: int) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode().strip()


def healthz(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        return int(s.recv(4096).split()[1])


@pytest.fixture
def four() -> Iterator[tuple[list[NodeProcess], int]]:
    metrics = free_port_range(1)
    with start_testnet(4, chain_id="medchain-ready", prefix="mcready-", connect=False, log_lines=20,
                       env=lambda i: {"MEDCHAIND_METRICS_LISTEN": f"127.0.0.1:{metrics}"} if i == 0 else None) as net:
        yield net.nodes, metrics


def test_readyz_turns_503_when_the_quorum_is_lost_and_200_when_it_returns(
    four: tuple[list[NodeProcess], int],
) -> None:
    nodes, port = four
    wait_until(lambda: readyz(port) == (200, "ready"), timeout=60, what="node 0 ready with all four up")
    # ready needs a quorum only (node 0 and two peers): wait until node 0 sees node 1 as
    # well, or killing nodes 2 and 3 can leave it with no peer at all ("no peers")
    with Client(nodes[0].ipc, timeout=30) as c:
        wait_until(lambda: len(c.call("node_peers")) == 3, timeout=60, what="node 0 connected to all three peers")

    for n in nodes[2:]:
        n.stop(signal.SIGKILL)  # 2 of 4 left: no commit is possible any more
    wait_until(lambda: readyz(port)[0] == 503, timeout=60, what="/readyz to notice the lost quorum")
    status, reason = readyz(port)
    assert reason == "no quorum: connected authorities hold 2 of 4 voting power (more than 2/3 needed)"
    assert healthz(port) == 200  # liveness is unaffected: the process is fine, restarting it helps nobody

    nodes[2].start()  # 3 of 4: a quorum again
    wait_until(lambda: readyz(port) == (200, "ready"), timeout=60, what="/readyz to recover with 3 of 4")
