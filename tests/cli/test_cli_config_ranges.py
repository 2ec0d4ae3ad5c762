"""Values that cannot work are refused at startup, naming the setting, the allowed range and
where the value came from (issue 13, item 5: ``mempool.max_txs = -5`` was accepted and
then every tx refused ``mempool_full``); the daemon's options are range- and
enum-checked by the CLI. ``[ipc]`` has its own table in tests/unit/test_ipc_access.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medchaind.errors import ConfigError
from medchaind.node.config import RANGES, load_config, render_config
from medchaind.testing.nodeproc import _cmd

PEER = "12D3KooWMNViDdDTJu4EGNHDDgXTXV4HEV24CZUhWNLELypLeusp"


def _load(tmp_path: Path, toml: str) -> None:
    (tmp_path / "config.toml").write_text(toml)
    load_config(tmp_path, env={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[mempool]\nmax_txs = -5", "mempool.max_txs must be in 1..10000000 (got -5)"),
        ("[mempool]\nmax_txs = 0", "mempool.max_txs must be in 1..10000000 (got 0)"),
        ("[mempool]\nmax_bytes = 1000", "mempool.max_bytes must be in 65536..68719476736 (got 1000)"),
        ("[mempool]\nmax_per_sender = 0", "mempool.max_per_sender must be in 1..10000000 (got 0)"),
        ("[mempool]\nmax_txs = 10\nmax_per_sender = 11",
         "mempool.max_per_sender must be in 1..10: at most mempool.max_txs"),
        ("[mempool]\nsender_rate = 0", "mempool.sender_rate must be in 1..1000000 (got 0)"),
        ("[mempool]\nsender_burst = -1", "mempool.sender_burst must be in 1..10000000 (got -1)"),
        ("[mempool]\nbusy_txs = 0", "mempool.busy_txs must be in 1..10000000 (got 0)"),
        ("[mempool]\nbusy_bytes = 1024", "mempool.busy_bytes must be in 65536..68719476736 (got 1024)"),
        ("[mempool]\ndropped_history = -1", "mempool.dropped_history must be in 0..10000000 (got -1)"),
        ("[consensus]\ntimeout_propose_ms = 0", "consensus.timeout_propose_ms must be in 10..600000 (got 0)"),
        ("[consensus]\ntimeout_propose_delta_ms = -1", "consensus.timeout_propose_delta_ms must be in 0..600000"),
        ("[consensus]\ntimeout_prevote_ms = 600001",
         "consensus.timeout_prevote_ms must be in 0..600000 (got 600001)"),
        ("[consensus]\ntimeout_prevote_delta_ms = -1", "consensus.timeout_prevote_delta_ms must be in 0..600000"),
        ("[consensus]\ntimeout_precommit_ms = -1", "consensus.timeout_precommit_ms must be in 0..600000"),
        ("[consensus]\ntimeout_precommit_delta_ms = -1",
         "consensus.timeout_precommit_delta_ms must be in 0..600000"),
        ("[consensus]\nempty_block_interval_ms = 5",
         "consensus.empty_block_interval_ms must be in 10..3600000 (got 5)"),
        ("[consensus]\nmin_block_interval_ms = 2001",
         "consensus.min_block_interval_ms must be in 0..2000 (got 2001)"),
        ("[consensus]\ndouble_sign_check_height = -1", "consensus.double_sign_check_height must be in 0..100000"),
        ('[node]\nmoniker = ""', "node.moniker must be 1..64 letters"),
        ('[node]\nmoniker = "a b"', "(got 'a b')"),
        ('[key]\npath = ""', "key.path must name the node keystore file"),
        ('[log]\nlevel = "loud"', "log.level must be debug, info, warning or error (got 'loud')"),
        ('[log]\nformat = "xml"', "log.format must be text or json (got 'xml')"),
        ('[metrics]\nlisten = "127.0.0.1:0"', "metrics.listen must be host:port"),
        ('[metrics]\nlisten = "9464"', "metrics.listen must be host:port"),
        ('[p2p]\nlisten = "/ip4/0.0.0.0/tcp/70000"', "p2p.listen: the TCP port must be in 0..65535 (got '70000'"),
        ('[p2p]\nlisten = "0.0.0.0:26656"', "p2p.listen: '0.0.0.0:26656' is not a multiaddr"),
        (f'[p2p]\nbootstrap = "/ip4/10.0.0.2/tcp/0/p2p/{PEER}"',
         "p2p.bootstrap: the TCP port must be in 1..65535 (got '0'"),
        ('[p2p]\nobservers = "node4"', "p2p.observers: 'node4' is not a libp2p peer id"),
        ("[ipc]\nmax_connections = -1", "ipc.max_connections must be in 1..65536 (got -1)"),
        ("[node]\nmalloc_mmap_threshold = -1",
         "node.malloc_mmap_threshold must be in 0..33554432 (0 keeps glibc's sliding threshold) (got -1)"),
        ("[node]\nmalloc_mmap_threshold = 33554433", "node.malloc_mmap_threshold must be in 0..33554432"),
        ("[node]\ngc_threshold = -1",
         "node.gc_threshold must be in 0..1000000 (0 leaves Python's collector settings) (got -1)"),
    ],
)
def test_bad_settings_name_the_setting_and_the_range(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, toml)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'config.toml'}: "), "the error says where the value is"


def test_every_integer_setting_has_a_range() -> None:
    """A new integer setting must get a range here (or in [ipc]'s table)."""
    from medchaind.node.config import _IPC_RANGES, _SECTION_CLASSES, _field_types

    ints = {f"{s}.{k}" for s, cls in _SECTION_CLASSES.items() for k, t in _field_types(cls).items() if t is int}
    covered = set(RANGES) | {f"ipc.{k}" for k in _IPC_RANGES} | {
        "ipc.reserved_connections", "ipc.send_queue_bytes", "ipc.send_queue_total_bytes"}
    assert ints - covered == set()


def test_defaults_and_edges_are_accepted(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    (tmp_path / "config.toml").write_text(render_config(cfg))  # what init writes loads
    load_config(tmp_path, env={})
    _load(tmp_path, "[mempool]\nmax_txs = 1\nmax_per_sender = 1\n[consensus]\ntimeout_prevote_ms = 0\n"
                    f'[p2p]\nlisten = "/ip4/127.0.0.1/tcp/0"\nobservers = "{PEER}"')


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ("", {}, 131_072),  # the default: glibc's initial threshold, fixed (memtrim.py)
        ("[node]\nmalloc_mmap_threshold = 0", {}, 0),
        ("[node]\nmalloc_mmap_threshold = 33554432", {}, 32 << 20),
        ("[node]\nmalloc_mmap_threshold = 0", {"MEDCHAIND_NODE_MALLOC_MMAP_THRESHOLD": "65536"}, 65_536),
    ],
)
def test_malloc_mmap_threshold_parses(tmp_path: Path, toml: str, env: dict[str, str], expected: int) -> None:
    (tmp_path / "config.toml").write_text(toml)
    cfg = load_config(tmp_path, env=env)
    assert cfg.node.malloc_mmap_threshold == expected
    (tmp_path / "config.toml").write_text(render_config(cfg))  # what init writes says it
    assert load_config(tmp_path, env={}).node.malloc_mmap_threshold == expected


def test_environment_and_option_errors_say_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^environment MEDCHAIND_MEMPOOL_MAX_TXS: mempool.max_txs must be in"):
        load_config(tmp_path, env={"MEDCHAIND_MEMPOOL_MAX_TXS": "-5"})
    with pytest.raises(ConfigError, match=r"^option metrics.listen: metrics.listen must be host:port"):
        load_config(tmp_path, env={}, overrides={"metrics.listen": "localhost"})


def _medchaind(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(_cmd("medchaind") + list(args), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--log-level", "loud"], "'loud' is not one of 'debug', 'info', 'warning', 'error'"),
        (["run", "--log-format", "xml"], "'xml' is not one of 'text', 'json'"),
        (["testnet", "-n", "4", "-o", "/tmp/never", "--base-port", "70000"], "70000 is not in the range 1<=x<=65535"),
        (["testnet", "-n", "0", "-o", "/tmp/never"], "0 is not in the range 1<=x<=64"),
        (["dev", "--base-port", "0"], "0 is not in the range 1<=x<=65535"),
        (["bench", "--txs", "0"], "0 is not in the range 1<=x<=10000000"),
        (["bench", "--connections", "0"], "0 is not in the range 1<=x<=1024"),
        (["bench", "--rate", "-1"], "-1.0 is not in the range x>=0"),
        (["bench", "--tx-type", "bogus"], "'bogus' is not one of"),
        (["status", "--wait-sync", "--timeout", "0"], "0.0 is not in the range x>0"),
        (["export", "--out", "/tmp/never.chain", "--from", "0"], "0 is not in the range x>=1"),
    ],
)
def test_daemon_options_are_checked(args: list[str], message: str) -> None:
    res = _medchaind(*args)
    assert res.returncode == 2, res
    assert message in res.stderr


@pytest.mark.e2e
def test_run_refuses_a_bad_setting_from_the_environment(short_tmp: Path) -> None:
    assert _medchaind("init", "--datadir", str(short_tmp / "n")).returncode == 0
    res = _medchaind("run", "--datadir", str(short_tmp / "n"), env={"MEDCHAIND_MEMPOOL_MAX_TXS": "-5"})
    assert res.returncode == 1
    assert res.stderr.strip() == (
        "medchaind: error: environment MEDCHAIND_MEMPOOL_MAX_TXS: mempool.max_txs must be in 1..10000000 (got -5)"
    )
    testnet = _medchaind("testnet", "-n", "4", "-o", str(short_tmp / "net"), "--base-port", "65534")
    assert testnet.returncode == 1 and "--base-port must be in 1..65532" in testnet.stderr


def test_min_block_interval_reaches_the_engine(tmp_path: Path) -> None:
    """consensus.min_block_interval_ms, from the environment, is the engine's hold
    (its effect: tests/sim/test_block_interval.py)."""
    from medchaind.node.init import init_datadir
    from medchaind.node.node import Node

    _, genesis, keys = init_datadir(tmp_path / "node")
    cfg = load_config(tmp_path / "node", env={"MEDCHAIND_CONSENSUS_MIN_BLOCK_INTERVAL_MS": "250"})
    assert cfg.consensus.min_block_interval_ms == 250
    node = Node(cfg, genesis, keys)
    node.open()
    try:
        assert node.engine.config.min_block_interval_ms == 250
    finally:
        node.close()
