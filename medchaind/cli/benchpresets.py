"""Named runs of ``medchaind bench`` (``--preset NAME``), importable without the bench itself.

The presets fix the issue-14 commands, so every report of "the 10-minute sustained run"
or "the soak" runs the same thing. An option given explicitly on the command line wins
over its preset value (:func:`resolve_preset`).
"""

from __future__ import annotations

from typing import Any

from ..errors import MedchainError

#: Named runs (``medchaind bench --preset NAME``); an option given explicitly wins over
#: its preset value. ``sustained`` and ``overload`` are the issue's 10-minute runs.
PRESETS: dict[str, dict[str, Any]] = {
    "burst": {"validators": (4,), "txs": 20_000, "tx_size": 1024, "rate": 0.0},
    "sustained": {"validators": (4,), "txs": 480_000, "tx_size": 1024, "rate": 800.0},
    "overload": {"validators": (4,), "txs": 960_000, "tx_size": 1024, "rate": 1600.0},
    "open-loop-2000": {"validators": (4,), "txs": 50_000, "tx_size": 1024, "rate": 2000.0},
    "single": {"validators": (1,), "txs": 50_000, "tx_type": "identity", "rate": 0.0},
    "soak": {"validators": (4,), "txs": 1_000_000, "tx_size": 1024, "soak": True, "sample_every": 100_000},
}

PRESET_HELP = {
    "burst": "4 authorities, 20,000 x 1 KiB, as fast as possible (the default run)",
    "sustained": "4 authorities, 480,000 x 1 KiB at 800 tx/s: 10 minutes of sustained load",
    "overload": "4 authorities, 960,000 x 1 KiB at 1,600 tx/s: twice the sustained rate, must shed load",
    "open-loop-2000": "4 authorities, 50,000 x 1 KiB at 2,000 tx/s (open-loop latency)",
    "single": "1 authority, 50,000 identity txs, as fast as possible",
    "soak": "--soak, 4 authorities, 1,000,000 x 1 KiB, a sample every 100,000 committed txs",
}


def resolve_preset(preset: str | None, values: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """``values`` with the preset's settings for every option not in ``explicit``.

    Raises ``MedchainError`` for an unknown preset name.
    """
    if preset is None:
        return dict(values)
    if preset not in PRESETS:
        raise MedchainError(f"unknown preset {preset!r}; one of: {', '.join(PRESETS)}")
    out = dict(values)
    out.update({k: v for k, v in PRESETS[preset].items() if k not in explicit})
    return out
