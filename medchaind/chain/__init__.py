"""Block construction, validation and execution (pure)."""

from .executor import Checked as Checked
from .executor import SigCache as SigCache
from .executor import Tip as Tip
from .executor import build_block as build_block
from .executor import check_decided_block as check_decided_block
from .executor import next_time_ms as next_time_ms
from .executor import validate_block as validate_block
