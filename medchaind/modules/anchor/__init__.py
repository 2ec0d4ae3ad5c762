"""Anchor: tamper-evident commitments to data kept off chain (see :mod:`.machine`)."""

from .machine import AnchorModule as AnchorModule
