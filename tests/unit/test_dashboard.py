"""The Grafana dashboard (manifests/monitoring/) queries only metrics and labels the services really export.

The metric sets come from the services' own metric classes, registered in fresh registries, so a renamed
metric or label in the code fails this test until the dashboard follows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from extender import controller, scheduling
from webhook import server

DASHBOARD = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "rayqueue-dashboard.json"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",), "summary": ("_count", "_sum", "_created")}
PROMQL_WORDS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "by", "on", "without",
                "label_values", "ignoring", "count"}


def exported() -> dict[str, set[str]]:
    """Every series name the services export -> its label names (``le`` for histogram buckets)."""
    registry = CollectorRegistry()
    controller._Metrics(registry)
    scheduling._Metrics(registry)
    server._Metrics(registry)
    names: dict[str, set[str]] = {}
    for family in registry.collect():
        labels = set(getattr(registry._names_to_collectors[family.name + ("_total" if family.type == "counter" else "")],
                             "_labelnames", ()))
        for suffix in SUFFIXES[family.type]:
            names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_metric_sets_are_the_services_own() -> None:
    """Guards the test itself: the registries really hold the services' metrics, with their labels."""
    names = exported()
    assert names["rayqueue_admissions_total"] == {"quota"}
    assert names["rayqueue_extender_verb_seconds_bucket"] == {"verb", "le"}
    assert "rayqueue_webhook_requests_total" in names
    assert "rayqueue_admissions" not in names  # a counter is exported with _total only


def problems_of(expr: str, names: dict[str, set[str]]) -> list[str]:
    """What is wrong with one query: metrics not exported, label matchers or groupings on labels none has."""
    problems = []
    stripped = re.sub(r'"[^"]*"', '""', expr)
    metrics = sorted(set(re.findall(r"\b(rayqueue_[a-z_]+)\b", stripped)))
    problems += [f"{expr}: {m} is not exported" for m in metrics if m not in names]
    for metric, selector in re.findall(r"\b(rayqueue_[a-z_]+)\{([^}]*)\}", expr):
        for label in re.findall(r"([a-z_]+)\s*!?=~?", selector):
            if metric in names and label not in names[metric]:
                problems.append(f"{expr}: {metric} has no label {label}")
    known = [m for m in metrics if m in names]
    for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
        for label in (g.strip() for g in group.split(",")):
            if known and not any(label in names[m] for m in known):
                problems.append(f"{expr}: no metric of the query has label {label}")
    return problems


def test_every_dashboard_query_names_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    assert [p for expr in queries(dashboard) for p in problems_of(expr, names)] == []
    used = {m for expr in queries(dashboard) for m in re.findall(r"\b(rayqueue_[a-z_]+)\b", expr)}
    # The panels: queue lengths, quota, admissions, reclaims, gang waits, verb latency.
    for wanted in ("rayqueue_queue_length", "rayqueue_quota", "rayqueue_admissions_total", "rayqueue_reclaims_total",
                   "rayqueue_gang_bind_wait_seconds_bucket", "rayqueue_extender_verb_seconds_bucket"):
        assert wanted in used


@pytest.mark.parametrize(
    "expr",
    [
        "rate(rayqueue_admission_total[5m])",
        'rayqueue_quota{tenant="x"}',
        "sum by (tenant) (rayqueue_queue_length)",
        "rate(rayqueue_admissions[5m])",
    ],
    ids=["a misspelt metric", "an unknown label matcher", "a grouping by an unknown label",
         "a counter without _total"],
)
def test_the_check_catches_a_wrong_query(expr: str) -> None:
    assert problems_of(expr, exported()) != []
