"""Governance: decisions of a supermajority of the authorities (see :mod:`.machine`)."""

from .machine import GovernanceModule as GovernanceModule
