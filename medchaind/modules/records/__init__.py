"""Records: encrypted FHIR records with patient consent and audited access (see :mod:`.machine`)."""

from .machine import RecordsModule as RecordsModule
