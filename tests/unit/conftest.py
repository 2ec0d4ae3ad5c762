"""Shared setup for the unit tests."""

from __future__ import annotations

from hypothesis import settings

# Property tests here are CPU-bound and deterministic in what they check; a per-example
# deadline only adds flakiness on a loaded machine.
settings.register_profile("medchaind-unit", deadline=None)
settings.load_profile("medchaind-unit")
