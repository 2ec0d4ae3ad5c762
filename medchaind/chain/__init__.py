"""Block construction, validation and execution (pure)."""

from .executor import SigCache as SigCache, Tip as Tip, build_block as build_block, next_time_ms as next_time_ms, validate_block as validate_block
