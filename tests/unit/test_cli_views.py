"""The kubectl plugin's pure part: reports from API objects, with the services' own rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.explain import Explain, Stuck, advice, render
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
    unit = {"status": {"estimatedStartTime": "2025-01-10T01:40:24Z", "estimatedStartTimeLatest": "2025-01-10T01:47:24Z",
                       "estimate": "after 1 running job ..."}}
    report = views.queue_report("root/algorithm/video", queue, {("video", "a-ray-qu"): unit}, NOW)
    a, b = report["items"]
    assert (a["in"], a["estimate"], a["visible"]) == ("~4m, by 11m", "after 1 running job ...", True)
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
    assert report["in"] == "not before ~1m"  # no P90 published: a lower bound only
    text = views.render(report)
    assert "estimated start: not before ~1m (at 2025-01-10T01:37:24Z)" in text
    unit["status"]["estimatedStartTimeLatest"] = "2025-01-10T01:46:24Z"
    text = views.render(views.why_report(job, unit, seed_tree(), events, NOW))
    assert "estimated start: ~1m, by 10m (P50 at 2025-01-10T01:37:24Z, P90 by 2025-01-10T01:46:24Z)" in text
    assert "root/algorithm/video cpu: used 12500m, min 12, max 14" in text
    assert "Enqueued: queued" in text


# --- a job stuck in a liveness case: which case, and what to do ------------------------------------------------

TIMED_OUT = ("not started within 20s of admission: 3 of 4 pods not placed; worker video/x-w-q2x: 0/12 nodes are "
             "available: 12 node(s) didn't match node selector. Timeout 1 of 3: suspended and requeued with its "
             "enqueue time, after a backoff")
PARKED = ("not started within 20s of admission: 3 of 4 pods not placed. Parked after 3 admission timeouts in a row "
          "(rayqueue.io/admission-retries 3): fix the cause, then retry with `kubectl rayqueue retry x -n video`")
REFUSED = ("KubeRay refused the job (jobDeploymentStatus ValidationFailed): invalid runtimeEnvYAML; it will never "
           "run and holds no quota once its pods are gone: fix the spec and create it again")


def _unit(phase: str, message: str, current: str = "-") -> dict[str, Any]:
    return {"status": {"phase": phase, "message": message, "admitted": "-", "current": current, "maximum": "4/1Gi"}}


def _stuck_job(*, timeouts: str | None = None, deployment: str | None = None, managed_by: str | None = None,
               status_message: str = "") -> dict[str, Any]:
    b = make_rayjob("x", "video").head(cpu="4")
    if timeouts is not None:
        b.annotate(keys.ADMISSION_TIMEOUTS, timeouts)
    if deployment is not None:
        b.set("status.jobDeploymentStatus", deployment).set("status.message", status_message)
    if managed_by is not None:
        b.set("spec.managedBy", managed_by)
    return b.obj()


@pytest.mark.parametrize(
    ("job", "unit", "case", "why", "todo"),
    [
        pytest.param(_stuck_job(timeouts="1"), _unit("Backoff", TIMED_OUT), "admission-timeout", TIMED_OUT,
                     "it is tried again after its backoff", id="an admission timeout names the pods and is retried"),
        pytest.param(_stuck_job(timeouts="3"), _unit("Parked", PARKED), "parked", PARKED,
                     "then retry it: `kubectl rayqueue retry x -n video`", id="a parked job says the retry command"),
        pytest.param(_stuck_job(deployment="ValidationFailed", status_message="invalid runtimeEnvYAML"),
                     _unit("Failed", REFUSED), "kuberay-refused", REFUSED, "delete the job and create it again",
                     id="a job KubeRay refused quotes KubeRay's message"),
        pytest.param(_stuck_job(deployment="ValidationFailed", status_message="invalid runtimeEnvYAML"), None,
                     "kuberay-refused", "invalid runtimeEnvYAML", "fix the spec as KubeRay's message says",
                     id="without a QueueUnit, KubeRay's own status message is the why"),
        pytest.param(_stuck_job(managed_by="kueue.x-k8s.io/multikueue"), None, "managed-by",
                     "not queued: spec.managedBy 'kueue.x-k8s.io/multikueue' names another controller than KubeRay",
                     "create it again without spec.managedBy", id="a job another controller manages is not queued"),
        pytest.param(_stuck_job(deployment="Complete"), _unit("Succeed", "finished: jobDeploymentStatus Complete",
                                                              current="4/1Gi"), "draining",
                     "finished: jobDeploymentStatus Complete", "delete it to free the quota now",
                     id="a finished job whose pods still run is draining"),
        pytest.param(_stuck_job(deployment="Complete"), _unit("Succeed", "finished: jobDeploymentStatus Complete"),
                     None, "finished: jobDeploymentStatus Complete", None,
                     id="a finished job with no pod left is stuck in no case"),
        pytest.param(_stuck_job(), _unit("Enqueued", "root/algorithm/video: cpu used 12500m + request 4 > max 14"),
                     None, "root/algorithm/video: cpu used 12500m", None,
                     id="a job waiting for quota is stuck in no liveness case"),
    ],
)
def test_why_says_which_liveness_case_a_stuck_job_is_in_and_what_to_do(
        job: dict[str, Any], unit: dict[str, Any] | None, case: Stuck | None, why: str, todo: str | None) -> None:
    report = views.why_report(job, unit, seed_tree(), [], NOW)
    assert report["case"] == case
    assert report["message"].startswith(why), report["message"]
    if todo is None:
        assert report["todo"] is None and report["caseWords"] is None
        assert "  do: " not in views.render(report)
        return
    assert case is not None
    expected = advice(case, "video/x")
    assert (report["caseWords"], report["todo"]) == (expected.what, expected.todo)
    assert todo in report["todo"]
    text = views.render(report).splitlines()
    assert text[1:4] == [f"  case: {expected.what}", f"  why: {report['message']}", f"  do: {expected.todo}"]


def test_why_a_managed_by_job_names_the_leaf_its_pods_are_charged_to_and_says_not_queued() -> None:
    report = views.why_report(_stuck_job(managed_by="example.com/mine"), None, seed_tree(), [], NOW)
    assert report["message"] == render(Explain(why="managed-by", text="example.com/mine", node="root/algorithm/video"))
    assert "any pods it gets in root/algorithm/video are charged one by one" in report["message"]
    assert views.render(report).splitlines()[0] == "RayJob video/x: not queued"
    assert views.why_report(_stuck_job(managed_by="ray.io/kuberay-operator"), None, None, [], NOW)["case"] is None


def test_why_a_job_that_does_not_exist_is_the_case_of_a_refused_create() -> None:
    report = views.missing_report("video", "y" * 60, keys.RAYCLUSTER_KIND)
    assert report["case"] == "refused-at-create"
    lines = views.render(report).splitlines()
    assert lines[0] == (f"no RayCluster video/{'y' * 60}: a create the webhook refused leaves nothing behind (no "
                        "object, no QueueUnit, no claim)")
    assert lines[1].startswith("  do: the denial kubectl printed names the rule, the field and KubeRay's words")


def test_why_a_parked_bare_cluster_is_retried_with_raycluster() -> None:
    cluster = make_rayjob("x", "video").head(cpu="4").annotate(keys.ADMISSION_TIMEOUTS, "3").as_raycluster()
    report = views.why_report(cluster, _unit("Parked", PARKED), None, [], NOW, keys.RAYCLUSTER_KIND)
    assert report["case"] == "parked" and "`kubectl rayqueue retry x -n video --raycluster`" in report["todo"]
    assert views.render(report).startswith("RayCluster video/x: Parked")
