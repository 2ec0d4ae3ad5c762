"""End-to-end fixtures: real ``medchaind`` processes on real datadirs and sockets."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from medchaind.testing.nodeproc import NodeProcess


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="mce2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def node(short_tmp: Path) -> Iterator[NodeProcess]:
    n = NodeProcess(short_tmp / "node", short_tmp / "node.log")
    n.start()
    yield n
    if n.proc is not None and n.proc.poll() is None:
        n.stop(signal.SIGKILL)


