"""Shared setup for the unit tests.

The editable install of ``medchaind`` is expected to put the checkout on ``sys.path``;
when it does not (a venv whose ``.pth`` file is missing), fall back to the repository
root so ``.venv/bin/pytest`` still imports the package under test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hypothesis import settings

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("medchaind") is None:  # pragma: no cover - environment guard
    sys.path.insert(0, str(ROOT))

# Property tests here are CPU-bound and deterministic in what they check; a per-example
# deadline only adds flakiness on a loaded machine.
settings.register_profile("medchaind-unit", deadline=None)
settings.load_profile("medchaind-unit")
