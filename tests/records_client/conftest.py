"""Shared setup: make the checkout importable when the venv's editable install is not.

The venv's editable install of ``medchaind`` has no ``.pth`` file, so ``.venv/bin/pytest``
would not find the package; fall back to the repository root (harmless otherwise).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if importlib.util.find_spec("medchaind") is None:  # pragma: no cover - environment guard
    sys.path.insert(0, str(ROOT))
