"""Identity: who is who on the chain (see :mod:`.machine`)."""

from .machine import IdentityModule as IdentityModule
