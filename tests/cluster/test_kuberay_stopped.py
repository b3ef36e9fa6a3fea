"""Once KubeRay stops (docs/kuberay.md "Once KubeRay stops"): real apiserver, kube-scheduler (rayqueue-scheduler
calling the extender), the webhook, the extender/queue controller and the KubeRay 1.7 stand-in, invariants sampled.

* a finished job whose submitter Job still retries is charged that one 500m pod, not its 8.5-CPU reservation;
* a job Failed by its deadline under the legacy deletionStrategy, whose cluster KubeRay 1.7 keeps for ever
  (handleLegacyDeletionPolicy acts only on jobStatus SUCCEEDED/FAILED), leaves nothing running: rayqueue deletes the
  cluster ttlSecondsAfterFinished after it ended, with an event;
* a running job KubeRay refuses by a rule rayqueue does not model (the stand-in's `rayqueue.test/kuberay-refuses`)
  ends ValidationFailed with its cluster running; rayqueue deletes it, and the job waiting behind it in the same
  leaf runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from common import keys
from devcluster.cluster import ADMIN, LocalCluster
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import create, dequeued, events, get, pods_of, rayjob, sized_job

VIDEO = "root/algorithm/video"
REFUSES = "rayqueue.test/kuberay-refuses"  # the stand-in's TEST ONLY switch (docs/standin.md)
SUBMITTER_EXTRA = "rayqueue.test/submitter-extra-seconds"
LEGACY = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"}}


def used_cpu(cluster: LocalCluster) -> str:
    """What the controller last wrote as video's cpu usage in the tree's status."""
    status = get(cluster, "elasticquotatree", keys.QUOTA_TREE_NAME, "-n", keys.QUOTA_TREE_NAMESPACE).get("status") or {}
    return str((((status.get("nodes") or {}).get(VIDEO) or {}).get("used") or {}).get("cpu", "0"))  # "0" once gone


def status_of(cluster: LocalCluster, name: str) -> dict[str, Any]:
    return dict(rayjob(cluster, "video", name).get("status") or {})


def live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


def clusters_of(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    uid = rayjob(cluster, "video", name)["metadata"]["uid"]
    return [c for c in get(cluster, "raycluster", "-n", "video")["items"]
            if any(r.get("controller") and r["uid"] == uid for r in c["metadata"].get("ownerReferences") or [])]


def leftover_events(cluster: LocalCluster, name: str) -> list[dict[str, Any]]:
    return [e for e in events(cluster, "video", keys.EVENT_LEFTOVER_DELETED)
            if e["involvedObject"]["kind"] == keys.RAYJOB_KIND and e["involvedObject"]["name"] == name]


def test_a_finished_job_with_a_retrying_submitter_is_charged_only_that_pod(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """8.5 CPU admitted (head 4, worker 4, the default 500m submitter). The Ray job fails after 2 s but its
    submitter pod runs 20 s longer and fails, and the batch/v1 Job retries it (backoffLimit 3); the RayJob is
    Failed by activeDeadlineSeconds at 8 s, and KubeRay deletes the cluster (shutdownAfterJobFinishes, ttl 1 s) but
    not the submitter Job. While only a retried submitter pod lives, video is charged its 500m, not 8.5 CPU."""
    for i in range(3):
        nodes(f"stopped-sub-{i}")
    job = sized_job("video", workers=1, run_seconds=2)
    job["metadata"]["annotations"].update({keys.TEST_EXIT_CODE: "1", SUBMITTER_EXTRA: "20"})
    job["spec"].update(activeDeadlineSeconds=8, submitterConfig={"backoffLimit": 3})
    name = create(cluster, job)
    wait_for(lambda: dequeued(cluster, "video", name), 30.0, f"{name} admitted")
    wait_for(lambda: used_cpu(cluster) == "8500m", 60.0, "video charged the whole 8.5 CPU while it runs")
    wait_for(lambda: status_of(cluster, name).get("jobDeploymentStatus") == "Failed", 60.0, f"{name} Failed")
    assert status_of(cluster, name).get("reason") == "DeadlineExceeded"
    parents: set[str] = set()

    def only_a_retried_submitter_lives() -> bool:
        pods = pods_of(cluster, "video", name, parents)
        submitters = [p for p in pods if keys.RAY_CLUSTER not in p["metadata"].get("labels", {})]
        alive = live(pods)
        return (len(submitters) >= 2 and len(alive) == 1 and alive[0] in submitters
                and bool(alive[0]["spec"].get("nodeName")) and used_cpu(cluster) == "500m")

    wait_for(only_a_retried_submitter_lives, 90.0, "a retried submitter pod alone, charged its 500m")
    assert not clusters_of(cluster, name), "KubeRay deleted the cluster (shutdownAfterJobFinishes)"
    assert not leftover_events(cluster, name), "rayqueue deletes no cluster KubeRay deletes itself"


def test_a_job_failed_by_its_deadline_under_the_legacy_policy_leaves_nothing_running(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """HTTPMode (no submitter pod), legacy DeleteCluster/DeleteCluster, a 600 s Ray job, activeDeadlineSeconds 8:
    Failed (DeadlineExceeded) with jobStatus RUNNING, which KubeRay 1.7's handleLegacyDeletionPolicy ignores. rayqueue
    deletes the cluster at endTime + ttlSecondsAfterFinished (1 s): no pod of the job is left, video is charged
    nothing, and the RayJob carries the LeftoverClusterDeleted event naming the case."""
    for i in range(3):
        nodes(f"stopped-legacy-{i}")
    job = sized_job("video", workers=1, run_seconds=600)
    job["spec"].update(submissionMode="HTTPMode", deletionStrategy=LEGACY, activeDeadlineSeconds=8)
    name = create(cluster, job)
    wait_for(lambda: dequeued(cluster, "video", name), 30.0, f"{name} admitted")
    wait_for(lambda: status_of(cluster, name).get("jobDeploymentStatus") == "Failed", 60.0, f"{name} Failed")
    got = status_of(cluster, name)
    assert (got.get("reason"), got.get("jobStatus")) == ("DeadlineExceeded", "RUNNING"), got
    parents: set[str] = set()
    pods_of(cluster, "video", name, parents)
    wait_for(lambda: not clusters_of(cluster, name) and not live(pods_of(cluster, "video", name, parents)), 60.0,
             f"{name}'s cluster deleted and its pods gone")
    wait_for(lambda: used_cpu(cluster) == "0", 30.0, "video charged nothing")
    (event,) = leftover_events(cluster, name)
    assert event["type"] == "Normal"
    assert "the legacy deletionStrategy acts only on jobStatus SUCCEEDED or FAILED" in event["message"], event
    assert "ttlSecondsAfterFinished 1s after it stopped at" in event["message"], event


def test_a_running_job_kuberay_refuses_by_a_rule_rayqueue_does_not_model_releases_its_capacity(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """`refused` (12.5 CPU) runs in video (max 14); `behind` (12.5 CPU) waits. An admin sets the stand-in's switch on
    `refused`: KubeRay 1.7 validates on every pass, so the job goes ValidationFailed with its cluster running, and
    nothing of KubeRay's deletes it. rayqueue stamps the stop, deletes the cluster after ttlSecondsAfterFinished,
    the pods go, and `behind` runs. The QueueUnit of `refused` says what happened."""
    for i in range(4):
        nodes(f"stopped-refused-{i}")
    refused = create(cluster, sized_job("video", workers=2, run_seconds=600))
    wait_for(lambda: dequeued(cluster, "video", refused), 30.0, f"{refused} admitted")
    wait_for(lambda: status_of(cluster, refused).get("jobDeploymentStatus") == "Running", 60.0, f"{refused} Running")
    behind = create(cluster, sized_job("video", workers=2, run_seconds=3))
    time.sleep(3.0)
    assert not dequeued(cluster, "video", behind), f"{behind} fits beside {refused}"

    patch = {"metadata": {"annotations": {REFUSES: "a rule rayqueue does not model"}}}
    cluster.kubectl("patch", "rayjob", refused, "-n", "video", "--type=merge", "-p", json.dumps(patch), as_user=ADMIN)
    wait_for(lambda: status_of(cluster, refused).get("jobDeploymentStatus") == "ValidationFailed", 60.0,
             f"{refused} ValidationFailed")
    wait_for(lambda: dequeued(cluster, "video", behind), 90.0, f"{behind} admitted once {refused}'s pods are gone")
    assert not clusters_of(cluster, refused), f"{refused}'s cluster deleted"
    assert keys.KUBERAY_STOPPED_AT in rayjob(cluster, "video", refused)["metadata"]["annotations"]
    (event,) = leftover_events(cluster, refused)
    assert "the job is ValidationFailed" in event["message"], event
    unit = get(cluster, "queueunit", keys.queue_unit_name(refused), "-n", "video")["status"]
    assert unit["phase"] == "Failed", unit
    assert "The RayJob spec is invalid: a rule rayqueue does not model" in unit["message"], unit
    assert "rayqueue deletes its RayCluster at" in unit["message"], unit
    wait_for(lambda: status_of(cluster, behind).get("jobDeploymentStatus") in ("Running", "Complete"), 60.0,
             f"{behind} runs")
