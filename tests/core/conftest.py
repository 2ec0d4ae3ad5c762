"""Shared setup for the consensus-core tests.

Like ``tests/unit``: fall back to the repository root on ``sys.path`` when the editable
install of ``medchaind`` is missing, so ``.venv/bin/pytest tests/core`` always imports the
package under test.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("medchaind") is None:  # pragma: no cover - environment guard
    sys.path.insert(0, str(ROOT))
