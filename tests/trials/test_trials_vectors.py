"""The trials vectors of docs/protocol.md §21.1: the doc and the code agree."""

from __future__ import annotations

import re
from pathlib import Path

from medchaind import codec
from medchaind.modules.trials import outcomes as oc
from medchaind.modules.trials.machine import consent_purpose, randomisation_commitment, trial_id

SECTION = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text().split("## 21. Clinical trials")[1]


def in_doc(hex_: str) -> bool:
    return re.search(rf"\b{hex_}\b", SECTION) is not None


def test_vectors_in_protocol_md() -> None:
    assert in_doc(trial_id("NCT09000001").hex())
    enc = codec.encode([oc.normalize("Change From Baseline in Body Weight"), None, oc.normalize("Baseline, Week 26")])
    assert in_doc(enc.hex())
    assert in_doc(oc.fingerprint("Change From Baseline in Body Weight", "Baseline, Week 26").hex())
    assert in_doc(oc.fingerprint("HbA1c", "Week 12", "mean change").hex())
    assert in_doc(randomisation_commitment(bytes(32), b"\x01" * 32).hex())
    assert "`CLINTRCH.<registry id>.v<version>`" in SECTION
    assert consent_purpose("NCT09000001", 2) == "CLINTRCH.NCT09000001.v2"
