"""`medchaind bench` runs end to end on a small network (figures are not asserted)."""

from __future__ import annotations

import json
import subprocess

import pytest

from medchaind.testing.nodeproc import _cmd, free_port_range

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("validators", "tx_type", "submit"),
                         [(1, "identity", "cbor"), (1, "identity", "json"), (2, "anchor", "cbor"),
                          (2, "records", "cbor")])
def test_bench_commits_everything_it_submits(validators: int, tx_type: str, submit: str) -> None:
    res = subprocess.run(
        _cmd("medchaind") + ["bench", "--validators", str(validators), "--txs", "300", "--tx-type", tx_type,
                             "--connections", "2", "--base-port", str(free_port_range(validators, start=41000)),
                             "--submit", submit],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["txs_committed"] == out["txs_submitted"] == 300
    assert out["rejected"] == 0 and not out["stalled"]
    assert out["submit"] == submit
    assert len(out["nodes"]) == validators
    for node in out["nodes"]:  # the resident set in its two parts; the anonymous one's peak
        assert node["rss_anon_mib"] > 0 and node["rss_file_mib"] > 0
        assert abs(node["rss_anon_mib"] + node["rss_file_mib"] - node["rss_mib"]) <= 1.0
        assert node["rss_anon_mib"] <= node["peak_rss_anon_mib"] <= node["peak_rss_mib"]
    assert out["ed25519_verify_per_s_one_core"] > 0
    if tx_type == "records":  # every node ended up holding every ciphertext
        assert out["blobs_on_every_node_after_last_commit_s"] is not None
