"""``medchaind bench --tx-type claims`` runs end to end on a tiny network (figures not asserted).

Setup registers, accredits and enrolls the providers and payers; every measured tx is a
``claims.submit`` of a generated de-identified claim with its encrypted document as the
blob sidecar, so every node must also end up holding every document.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from medchaind.testing.nodeproc import _cmd, free_port_range

pytestmark = pytest.mark.e2e


def test_claims_bench_commits_every_claim_and_replicates_the_documents() -> None:
    res = subprocess.run(
        _cmd("medchaind") + ["bench", "--validators", "2", "--txs", "200", "--tx-type", "claims",
                             "--connections", "2", "--base-port", str(free_port_range(2))],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["tx_type"] == "claims"
    assert out["txs_committed"] == out["txs_submitted"] == 200
    assert out["rejected"] == 0 and not out["stalled"], out["first_rejections"]
    assert len(out["nodes"]) == 2
    assert out["blob_bytes_mean"] > 0 and out["blobs_on_every_node_after_last_commit_s"] is not None
