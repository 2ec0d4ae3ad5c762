"""The Grafana dashboard and the Prometheus rules in deploy/ (issue 16, Grafana part).

* The dashboard validates against a minimal JSON schema of Grafana dashboards
  (``grafana-dashboard.schema.json`` beside this file, written from Grafana's dashboard
  JSON model), its panels do not overlap, and it covers consensus, mempool, gossip, sync
  and IPC.
* The rules file parses (its body is JSON, which is YAML too: PyYAML is not a dependency)
  and has the shape Prometheus loads; the operator guide's example alerts are in it.
* Every ``medchaind_*`` name in a dashboard query or a rule expression is a metric that the
  node's collector (``node/metrics.py``) actually exports, and every label a query
  groups or joins by is one the metric carries (or a target label Prometheus adds).

No Grafana or Prometheus runs here: the Docker daemon is not available offline in this
environment, so loading the JSON into a real Grafana is left to the operator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from medchaind.net.api import NetStats
from medchaind.node.metrics import NodeCollector
from medchaind.node.node import NodeCounters

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "medchaind-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "medchaind-rules.yml"
SCHEMA = Path(__file__).with_name("grafana-dashboard.schema.json")

METRIC_RE = re.compile(r"\bmedchaind_[a-zA-Z0-9_]+\b")
GROUPING_RE = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LEGEND_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
#: labels Prometheus attaches to every scraped series
TARGET_LABELS = {"instance", "job"}
DURATION_RE = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def exported() -> dict[str, set[str]]:
    """Every sample name the node's collector exports, with its labels."""
    node = SimpleNamespace(
        genesis=SimpleNamespace(chain_id="medchain-test"),
        config=SimpleNamespace(node=SimpleNamespace(moniker="node0")),
        keys=SimpleNamespace(public_key=b"k" * 32),
        ledger=SimpleNamespace(height=3, tip=SimpleNamespace(time_ms=1_700_000_000_000, powers={b"k" * 32: 1})),
        counters=NodeCounters(last_commit_monotonic=0.0),
        engine=SimpleNamespace(status=lambda: {"height": 4, "round": 0, "evidence": 0, "started": False,
                                               "signing": {"validator": True, "signing": True}}),
        sync=SimpleNamespace(syncing=False),
        readiness=lambda: (True, "ready"),
        mempool=SimpleNamespace(statistics=lambda: SimpleNamespace(size=0, bytes=0, admitted=0, rejected=0,
                                                                    evicted=0, dropped=0)),
        net=SimpleNamespace(connected_peers=lambda: [], statistics=lambda: NetStats()),
        ipc_server=SimpleNamespace(statistics=lambda: SimpleNamespace(connections=0, accepted=0, rejected=0)),
        blobs=SimpleNamespace(fetched=0, wanted=set()),
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rules_doc() -> dict[str, Any]:
    """The rules file: YAML comment lines, then a JSON body (JSON is YAML)."""
    body = "\n".join(line for line in RULES.read_text().splitlines() if not line.lstrip().startswith("#"))
    data: dict[str, Any] = json.loads(body)
    return data


def queries(dash: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, expr, legendFormat) of every query target."""
    return [(p["title"], t["expr"], t.get("legendFormat", ""))
            for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def rule_exprs() -> list[tuple[str, str]]:
    return [(r["alert"], r["expr"]) for g in rules_doc()["groups"] for r in g["rules"]]


def check_expr(where: str, expr: str, metrics: dict[str, set[str]]) -> set[str]:
    """The metrics ``expr`` names; fails if one is not exported or a grouping label is unknown."""
    used = set(METRIC_RE.findall(expr))
    assert used, f"{where}: {expr!r} names no medchaind metric"
    unknown = sorted(used - set(metrics))
    assert not unknown, f"{where}: {expr!r} names metrics the node does not export: {unknown}"
    carried = set().union(*(metrics[m] for m in used)) | TARGET_LABELS
    for group in GROUPING_RE.findall(expr):
        labels = {x.strip() for x in group.split(",") if x.strip()}
        assert labels <= carried, f"{where}: {expr!r} groups by labels no metric carries: {labels - carried}"
    return used


def test_the_dashboard_validates_against_the_grafana_dashboard_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(dashboard())


def test_the_schema_refuses_what_grafana_would_not_show() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    good = dashboard()
    panel = next(p for p in good["panels"] if p["type"] == "timeseries")
    for broken in (
        {**good, "uid": "has spaces"},
        {**good, "panels": []},
        {**good, "panels": [{**panel, "targets": []}]},
        {**good, "panels": [{**panel, "gridPos": {**panel["gridPos"], "w": 30}}]},
        {**good, "panels": [{**panel, "type": "graph-from-2015"}]},
        {**good, "templating": {"list": [{"name": "instance", "type": "query"}]}},
    ):
        assert not validator.is_valid(broken)


def test_dashboard_panels_are_laid_out_without_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, f"{p['title']}: wider than the 24-column grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_every_metric_the_dashboard_queries_is_exported_by_the_node() -> None:
    metrics = exported()
    used: set[str] = set()
    for title, expr, legend in queries(dashboard()):
        names = check_expr(f"panel {title!r}", expr, metrics)
        used |= names
        carried = set().union(*(metrics[m] for m in names)) | TARGET_LABELS
        assert set(LEGEND_RE.findall(legend)) <= carried, f"panel {title!r}: legend {legend!r} names unknown labels"
        assert '{instance=~"$instance"}' in expr, f"panel {title!r}: {expr!r} ignores the node selector"
    # the list: consensus, mempool, gossip, sync, IPC
    for metric in ("medchaind_consensus_round", "medchaind_mempool_txs", "medchaind_p2p_published_total",
                   "medchaind_p2p_received_total", "medchaind_syncing", "medchaind_p2p_requests_sent_total",
                   "medchaind_ipc_connections", "medchaind_chain_height", "medchaind_ready"):
        assert metric in used, f"the dashboard shows no {metric}"
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert set(METRIC_RE.findall(variables["instance"]["definition"])) <= set(metrics)


def test_the_rules_file_parses_and_has_the_shape_prometheus_loads() -> None:
    doc = rules_doc()
    assert set(doc) == {"groups"}
    names = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
            assert DURATION_RE.match(rule["for"]), f"{rule['alert']}: 'for' {rule['for']!r} is not a duration"
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
            names.append(rule["alert"])
    assert len(names) == len(set(names)), "alert names must be unique"


@pytest.mark.parametrize("alert_expr", rule_exprs(), ids=lambda x: x[0])
def test_every_rule_expression_names_exported_metrics(alert_expr: tuple[str, str]) -> None:
    alert, expr = alert_expr
    check_expr(f"rule {alert}", expr, exported())


def test_the_operator_guides_example_alerts_are_rules_and_the_guide_names_the_files() -> None:
    exprs = {expr for _, expr in rule_exprs()}
    for example in ("max(medchaind_chain_height) - min(medchaind_chain_height) > 3", "medchaind_peers < 2",
                    "increase(medchaind_evidence_total[1h]) > 0", "medchaind_blobs_wanted > 0"):
        assert example in exprs, f"the operator guide's alert {example!r} is not in {RULES.name}"
    assert any("medchaind_ready == 0" in e for e in exprs)
    guide = (ROOT / "docs" / "operator-guide.md").read_text()
    assert "deploy/grafana/medchaind-dashboard.json" in guide
    assert "deploy/prometheus/medchaind-rules.yml" in guide
