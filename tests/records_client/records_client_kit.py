"""Shared fixtures for the records-client tests: minimal valid R4B resources and keys."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from medchaind.crypto import EncryptionKey, KeyPair, SigningKey

#: A marker that must never appear in ciphertext (nor its hex) -- see the crypto tests.
MARKER = "MEDCHAIN-PLAINTEXT-MARKER-7f3a9c"

PATIENT_REF = {"reference": "Patient/example"}

MINIMAL: dict[str, dict[str, Any]] = {
    "Patient": {"resourceType": "Patient", "gender": "female", "birthDate": "1980-02-28"},
    "Observation": {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}], "text": "Body weight"},
        "subject": PATIENT_REF,
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    },
    "Condition": {
        "resourceType": "Condition",
        "subject": PATIENT_REF,
        "code": {"text": "Hypertension"},
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
    },
    "MedicationRequest": {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Amoxicillin 500 mg"},
        "subject": PATIENT_REF,
    },
    "AllergyIntolerance": {
        "resourceType": "AllergyIntolerance",
        "patient": PATIENT_REF,
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}
            ]
        },
    },
    "Immunization": {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"text": "MMR"},
        "patient": PATIENT_REF,
        "occurrenceDateTime": "2021-05-01",
    },
    "DiagnosticReport": {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "CBC"}},
    "Procedure": {"resourceType": "Procedure", "status": "completed", "subject": PATIENT_REF},
    "Encounter": {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    },
    "DocumentReference": {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "content": [{"attachment": {"contentType": "text/plain", "title": "note"}}],
    },
}


def resource(resource_type: str, **overrides: Any) -> dict[str, Any]:
    """A deep copy of the minimal valid resource of ``resource_type`` with ``overrides``."""
    doc = copy.deepcopy(MINIMAL[resource_type])
    doc.update(overrides)
    return doc


def keypair(name: str) -> KeyPair:
    """A deterministic named key pair (distinct signing and encryption secrets)."""
    seed = hashlib.sha256(b"records-client/sign/" + name.encode()).digest()
    secret = hashlib.sha256(b"records-client/enc/" + name.encode()).digest()
    return KeyPair(SigningKey(seed), EncryptionKey(secret))


def recipients(*keys: KeyPair) -> dict[bytes, bytes]:
    """``{ed25519 identity: x25519 public key}`` for ``keys``."""
    return {k.public_key: k.encryption.public_key for k in keys}
