"""``medchaind bench`` presets and option checks (no network is started here)."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from medchaind.cli.benchpresets import PRESETS, resolve_preset
from medchaind.cli.daemon import main
from medchaind.errors import MedchainError

DEFAULTS: dict[str, Any] = {"validators": (4,), "txs": 20_000, "tx_size": 1024, "rate": 0.0, "tx_type": "anchor",
                            "soak": False, "sample_every": 100_000}


@pytest.mark.parametrize(
    ("preset", "explicit", "given", "expect"),
    [
        # no preset: the options as given
        (None, set(), {}, DEFAULTS),
        # the 10-minute run: 4 authorities, 480,000 x 1 KiB at 800 tx/s
        ("sustained", set(), {}, {**DEFAULTS, "txs": 480_000, "rate": 800.0}),
        # an explicit option wins over the preset (a shorter sustained run)
        ("sustained", {"txs"}, {"txs": 48_000}, {**DEFAULTS, "txs": 48_000, "rate": 800.0}),
        # the soak: a million txs, a sample every 100,000
        ("soak", set(), {}, {**DEFAULTS, "txs": 1_000_000, "soak": True}),
        ("soak", {"validators", "sample_every"}, {"validators": (1,), "sample_every": 20_000},
         {**DEFAULTS, "validators": (1,), "txs": 1_000_000, "soak": True, "sample_every": 20_000}),
        ("single", set(), {}, {**DEFAULTS, "validators": (1,), "txs": 50_000, "tx_type": "identity"}),
    ],
)
def test_resolve_preset(preset: str | None, explicit: set[str], given: dict[str, Any],
                        expect: dict[str, Any]) -> None:
    assert resolve_preset(preset, {**DEFAULTS, **given}, explicit) == expect


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(MedchainError, match="unknown preset 'nope'; one of: burst"):
        resolve_preset("nope", DEFAULTS, set())


def test_help_lists_every_preset() -> None:
    res = CliRunner().invoke(main, ["bench", "--help"])
    assert res.exit_code == 0, res.output
    listed = res.output.split("Presets (--preset NAME", 1)[1]
    assert all(f"  {name} " in listed for name in PRESETS)
    assert "480,000 x 1 KiB at 800 tx/s" in listed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--validators", "4,x"], "give a number of authorities or a comma-separated list"),
        (["--validators", "4,40"], "each number of authorities must be 1..32"),
        (["--validators", ","], "each number of authorities must be 1..32"),
        (["--soak", "--validators", "1,2"], "--soak runs one network: give one --validators size"),
        (["--soak", "--tx-type", "identity"], "--soak commits anchor txs"),
        (["--preset", "soak", "--validators", "1,2"], "--soak runs one network"),
    ],
)
def test_bad_bench_options_fail_before_starting_anything(args: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["bench", *args])
    assert res.exit_code != 0
    assert message in res.output


def test_a_sweep_records_a_failed_size_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from medchaind.cli import benchmodes

    calls: list[tuple[int, int]] = []

    def fake_bench(*, validators: int, base_port: int, datadir: object, **kw: Any) -> dict[str, Any]:
        calls.append((validators, base_port))
        if validators == 7:
            raise MedchainError("setup: sender registration not committed")
        return {"validators": validators, "txs_committed": 10, "load_average_1m": [1.0, 2.0],
                "nodes": [{"cpu_us_per_committed_tx": 100, "peak_rss_mib": 90.0},
                          {"cpu_us_per_committed_tx": 300, "peak_rss_mib": 95.5}]}

    monkeypatch.setattr(benchmodes, "run_bench", fake_bench)
    rows = benchmodes.run_sweep([4, 7, 2], base_port=30000, n_txs=10)
    # each network on its own ports: base plus the sizes before it
    assert calls == [(4, 30000), (7, 30004), (2, 30011)]
    assert [r["validators"] for r in rows] == [4, 7, 2]
    assert rows[1] == {"validators": 7, "error": "setup: sender registration not committed"}
    assert (rows[0]["cpu_us_per_tx_per_node_mean"], rows[0]["peak_rss_mib_max"]) == (200, 95.5)
    assert (rows[0]["load_1m_start"], rows[0]["load_1m_end"], rows[0]["error"]) == (1.0, 2.0, None)
