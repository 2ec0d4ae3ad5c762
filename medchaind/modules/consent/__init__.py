"""Consent: patient-controlled access rules, FHIR Consent semantics (see :mod:`.machine`)."""

from .machine import ConsentModule as ConsentModule
