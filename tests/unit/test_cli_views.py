"""The kubectl plugin's pure part: reports from API objects, with the services' own rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from common import keys
from rayqueue_cli import views
from tests.unit.builders import make_rayjob

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
NOW = 1_736_472_984 * 10**9


def seed_tree(used_video_cpu: str = "12500m") -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    tree = copy.deepcopy(next(d for d in docs if d and d.get("kind") == keys.QUOTA_TREE_KIND))
    used = {"cpu": used_video_cpu, "memory": "12Gi"}
    tree["status"] = {"nodes": {n: {"used": used, "request": {}} for n in
                                ("root", "root/algorithm", "root/algorithm/video")}}
    return tree


def test_top_lists_every_node_with_used_min_max_and_a_bar() -> None:
    report = views.top_report(seed_tree())
    video = next(r for r in report["nodes"] if r["node"] == "root/algorithm/video")
    assert video["resources"]["cpu"] == {"used": 12500, "min": 12000, "max": 14000}
    assert [r["node"] for r in report["nodes"]][:2] == ["root", "root/algorithm"]
    text = views.render(report)
    line = next(x for x in text.splitlines() if x.strip().startswith("video"))
    assert "12500m" in line and line.endswith("[" + "#" * 17 + "|..]")  # 12.5 of max 14, min 12 at the mark


def test_whatif_refuses_with_the_ledgers_reason_and_fits_elsewhere() -> None:
    job = make_rayjob("new", "video").submission_mode("HTTPMode").head(cpu="2", memory="1Gi").obj()
    report = views.whatif_report(job, seed_tree(), None, "video", now_ns=NOW)
    assert report["admitted"] is False and report["rule"] == "max"
    assert report["message"] == "root/algorithm/video: cpu used 12500m + request 2 > max 14"
    small = make_rayjob("new", "video").submission_mode("HTTPMode").head(cpu="1", memory="1Gi").obj()
    assert views.whatif_report(small, seed_tree(), None, "video", now_ns=NOW)["admitted"] is True
    unbound = views.whatif_report(job, seed_tree(), None, "nowhere", now_ns=NOW)
    assert unbound["queued"] is False


def test_whatif_counts_the_waiting_jobs_of_equal_or_higher_priority_ahead() -> None:
    queue = {"status": {"queueItemDetails": {
        "active": [{"name": "a-ray-qu", "namespace": "video", "priority": 10, "position": 1},
                   {"name": "b-ray-qu", "namespace": "video", "priority": 0, "position": 2}],
        "backoff": [{"name": "c-ray-qu", "namespace": "video", "priority": 0, "position": 1}]}}}
    job = make_rayjob("new", "video").submission_mode("HTTPMode").head(cpu="1", memory="1Gi").obj()
    report = views.whatif_report(job, seed_tree(), queue, "video", now_ns=NOW)
    assert (report["position"], report["admitted"]) == (4, False)
    urgent = make_rayjob("new", "video").submission_mode("HTTPMode").head(cpu="1", memory="1Gi").priority(20).obj()
    assert views.whatif_report(urgent, seed_tree(), queue, "video", now_ns=NOW)["position"] == 1


def test_queue_shows_estimates_of_readable_units_only() -> None:
    queue = {"metadata": {"name": "root-algorithm-video-abcde"}, "spec": {"queuePolicy": "Round"},
             "status": {"queueItemDetails": {"active": [
                 {"name": "a-ray-qu", "namespace": "video", "priority": 0, "position": 1},
                 {"name": "b-ray-qu", "namespace": "other", "priority": 0, "position": 2}], "backoff": []}}}
    unit = {"status": {"estimatedStartTime": "2025-01-10T01:40:24Z", "estimate": "after 1 running job ..."}}
    report = views.queue_report("root/algorithm/video", queue, {("video", "a-ray-qu"): unit}, NOW)
    a, b = report["items"]
    assert (a["in"], a["estimate"], a["visible"]) == ("~4m0s", "after 1 running job ...", True)
    assert (b["in"], b["visible"]) == ("unknown", False)
    assert "(hidden)" in views.render(report)


def test_why_names_the_blocking_node_and_its_numbers() -> None:
    job = make_rayjob("b", "video").obj()
    unit = {"status": {"phase": "Backoff", "position": 1,
                       "message": "root/algorithm/video: cpu used 12500m + request 12500m > max 14",
                       "estimatedStartTime": "2025-01-10T01:37:24Z", "estimate": "after 1 running job"}}
    events = [{"type": "Normal", "reason": "Enqueued", "message": "queued", "lastTimestamp": "2025-01-10T01:36:20Z"}]
    report = views.why_report(job, unit, seed_tree(), events, NOW)
    assert report["blocking"] == "root/algorithm/video"
    assert report["blockingNode"]["resources"]["cpu"] == {"used": 12500, "min": 12000, "max": 14000}
    assert report["in"] == "~1m0s"
    text = views.render(report)
    assert "root/algorithm/video cpu: used 12500m, min 12, max 14" in text
    assert "Enqueued: queued" in text
