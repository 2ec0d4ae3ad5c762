"""Supply: the custody chain of serialised drug packages, recalls and DSCSA cases (see :mod:`.machine`)."""

from .machine import SupplyModule as SupplyModule
