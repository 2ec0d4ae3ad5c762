"""Claims: X12 837 / FHIR Claim in, claim lifecycle to the 835, duplicate and
no-service-on-record detection, no PHI on chain (see :mod:`.machine`)."""

from .machine import ClaimsModule as ClaimsModule
