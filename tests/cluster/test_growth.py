"""Elastic Ray clusters within quota (issue 11, docs/growth.md) on the real control plane: the real
kube-scheduler calling the extender, the KubeRay 1.7 stand-in reconciling worker replicas, the tenant (or the
Ray autoscaler's way of editing the RayCluster) growing a job beyond its admitted size. Every test samples the
quota invariants throughout and asserts on the worst seen."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from common import keys
from devcluster.cluster import TENANT, LocalCluster
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import create, dequeued, events, get, ray_pods, rayjob, sized_job

VIDEO = "root/algorithm/video"
INTERN = "root/algorithm/intern"
CPU = 1000  # milli-CPU per CPU


def cluster_name(cluster: LocalCluster, ns: str, job: str) -> str:
    wait_for(lambda: bool((rayjob(cluster, ns, job).get("status") or {}).get("rayClusterName")), 30.0,
             f"{job}'s RayCluster")
    return str(rayjob(cluster, ns, job)["status"]["rayClusterName"])


def workers(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["metadata"]["labels"].get(keys.RAY_NODE_TYPE) == "worker"]


def bound(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["spec"].get("nodeName")]


def live(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def scheduled_message(pod: dict[str, Any]) -> str:
    conditions = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    return str(conditions[0].get("message") or "") if conditions else ""


def quota_condition(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any] | None:
    status = get(cluster, "raycluster", name, "-n", ns).get("status") or {}
    found = [c for c in status.get("conditions") or [] if c["type"] == keys.RAYQUEUE_QUOTA_CONDITION]
    return found[0] if found else None


def scale(cluster: LocalCluster, ns: str, name: str, replicas: int, *, delete: list[str] | None = None,
          as_user: str = TENANT) -> None:
    """Set the first worker group's replicas (and, as the Ray autoscaler scales down, workersToDelete)."""
    ops: list[dict[str, Any]] = [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": replicas}]
    if delete is not None:
        ops.append({"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy",
                    "value": {"workersToDelete": delete}})
    cluster.kubectl("patch", "raycluster", name, "-n", ns, "--type=json", "-p", json.dumps(ops), as_user=as_user)


def used_cpu(cluster: LocalCluster, node: str) -> int:
    status = get(cluster, "elasticquotatree", "elasticquotatree", "-n", "kube-system").get("status") or {}
    text = str((((status.get("nodes") or {}).get(node) or {}).get("used") or {}).get("cpu") or "0")
    return int(text[:-1]) if text.endswith("m") else int(text) * CPU


def test_growth_beyond_the_admitted_size_waits_and_says_why_on_the_pods_and_the_raycluster(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """The issue's story on the guide's tree: a video RayJob of 1 head + 1 worker (8.5 CPU with its submitter) is
    admitted; the tenant patches its RayCluster's worker replicas 1 -> 4. One new worker fits video's max 14
    (12.5), the other two stay Pending: their PodScheduled message, the RayCluster's RayQueueQuota condition
    and a GrowthRefused event say why, with the numbers. A second job waits meanwhile; scaling back to 1
    frees the capacity, the condition turns to Fits, and the second job runs."""
    for i in range(4):
        nodes(f"grow-{i}")
    first = create(cluster, sized_job("video", workers=1, run_seconds=600))
    wait_for(lambda: len(bound(ray_pods(cluster, "video", first))) == 2, 60.0, f"{first}'s head and worker bound")
    name = cluster_name(cluster, "video", first)
    scale(cluster, "video", name, 4)  # the tenant, through kubectl, with rights on RayClusters

    def refused() -> list[dict[str, Any]]:
        pending = [p for p in workers(ray_pods(cluster, "video", first)) if not p["spec"].get("nodeName")]
        return [p for p in pending if "quota: root/algorithm/video: cpu used 12500m + request 4 > max 14"
                in scheduled_message(p)]

    wait_for(lambda: len(refused()) == 2, 90.0, "two growth workers refused by the quota, the reason on their pods")
    assert len(bound(workers(ray_pods(cluster, "video", first)))) == 2, "one growth worker fits: 12.5 of 14"

    def said_on_the_cluster() -> bool:  # the first refusal is written at once, the count's change within 10 s
        condition = quota_condition(cluster, "video", name)
        return condition is not None and condition["status"] == "True" and condition["message"].startswith("2 ")

    wait_for(said_on_the_cluster, 60.0, f"RayCluster {name}'s RayQueueQuota condition naming both pods")
    condition = quota_condition(cluster, "video", name)
    assert condition is not None and condition["reason"] == keys.REASON_QUOTA_EXCEEDED
    assert condition["message"].startswith(f"2 growth pods of RayJob video/{first} beyond its admitted size wait "
                                           "for quota: pod video/"), condition["message"]
    assert "quota: root/algorithm/video: cpu used 12500m + request 4 > max 14" in condition["message"]
    status = get(cluster, "raycluster", name, "-n", "video")["status"]
    assert {c["type"] for c in status["conditions"]} >= {"HeadPodReady", "RayClusterProvisioned",
                                                          keys.RAYQUEUE_QUOTA_CONDITION}, "KubeRay's kept"
    refusals = [e for e in events(cluster, "video", keys.EVENT_GROWTH_REFUSED)
                if e["involvedObject"]["kind"] == keys.RAYCLUSTER_KIND and e["involvedObject"]["name"] == name]
    assert refusals and refusals[0]["type"] == "Warning" and "max 14" in refusals[0]["message"]
    described = cluster.kubectl("describe", "raycluster", name, "-n", "video", as_user=TENANT).stdout
    assert keys.RAYQUEUE_QUOTA_CONDITION in described and keys.EVENT_GROWTH_REFUSED in described

    unit = keys.queue_unit_name(first)
    table = cluster.kubectl("get", "queueunit", unit, "-n", "video", as_user=TENANT).stdout
    assert table.split()[:11] == ["NAME", "PHASE", "QUEUE", "PRIORITY", "POSITION", "ETA", "ADMITTED", "CURRENT",
                                  "MAX", "MESSAGE", "AGE"], table

    def sizes() -> dict[str, str]:
        status = get(cluster, "queueunit", unit, "-n", "video").get("status") or {}
        return {k: str(status.get(k, "")) for k in ("admitted", "current", "maximum")}

    # the reservation (1 head + 1 worker + the submitter); now + 3 workers' 4 CPU, bound or pending
    wait_for(lambda: sizes()["current"].startswith("20500m/"), 30.0, f"{unit}'s current size")
    assert sizes()["admitted"].startswith("8500m/") and sizes()["admitted"] in table, (sizes(), table)
    assert sizes()["maximum"] == sizes()["admitted"], "no autoscaling: the maximum is the admitted size"

    second = create(cluster, sized_job("video", workers=0, run_seconds=3))  # 4.5 CPU: fits 8.5, not 12.5
    time.sleep(3)
    assert not dequeued(cluster, "video", second), f"{second} admitted while growth holds video"

    scale(cluster, "video", name, 1)  # scale-down: KubeRay deletes the extra workers
    wait_for(lambda: len(live(workers(ray_pods(cluster, "video", first)))) == 1, 60.0, "back to one worker")
    wait_for(lambda: dequeued(cluster, "video", second), 60.0, f"{second} admitted once the growth is gone")

    def fits() -> bool:
        condition = quota_condition(cluster, "video", name)
        return condition is not None and (condition["status"], condition["reason"]) == ("False", keys.REASON_FITS)

    wait_for(fits, 60.0, f"RayCluster {name}'s RayQueueQuota back to Fits")
    assert invariants.worst.peak[VIDEO].get("cpu", 0) <= 14 * CPU, invariants.worst.peak[VIDEO]


def test_an_autoscaling_job_oscillating_between_min_and_max_never_runs_past_the_quota(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """enableInTreeAutoscaling, minReplicas 1, maxReplicas 4: the loop does what the Ray autoscaler does (raise
    replicas to 4; lower them to 1 naming the newest workers in workersToDelete) while short jobs come and go
    in video and text. video's max (14 CPU) holds, so do the cluster and the gangs, throughout."""
    for i in range(4):
        nodes(f"osc-{i}", cpu="16")
    job = sized_job("video", workers=1, run_seconds=600)
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group.update(minReplicas=1, maxReplicas=4)
    job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True  # + the autoscaler's 500m on the head
    elastic = create(cluster, job)
    wait_for(lambda: len(bound(ray_pods(cluster, "video", elastic))) == 2, 60.0, f"{elastic}'s head and worker")
    name = cluster_name(cluster, "video", elastic)
    unit = keys.queue_unit_name(elastic)
    wait_for(lambda: (get(cluster, "queueunit", unit, "-n", "video").get("status") or {}).get("maximum", "")
             .startswith("21/"), 30.0, "the QueueUnit's maximum: head 4.5 + 4 workers + submitter")
    others: list[tuple[str, str]] = []
    seen_refused = False
    most_workers = 0
    for cycle in range(3):
        scale(cluster, "video", name, 4)
        others.append(("algorithm-text", create(cluster, sized_job("algorithm-text", workers=1, run_seconds=2))))
        others.append(("video", create(cluster, sized_job("video", workers=0, run_seconds=2))))
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            current = live(workers(ray_pods(cluster, "video", elastic)))
            most_workers = max(most_workers, len(bound(current)))
            condition = quota_condition(cluster, "video", name)
            seen_refused = seen_refused or bool(condition and condition["status"] == "True")
            if len(current) == 4 and seen_refused:
                break
            time.sleep(0.5)
        newest = sorted(live(workers(ray_pods(cluster, "video", elastic))),
                        key=lambda p: p["metadata"]["creationTimestamp"])[1:]
        scale(cluster, "video", name, 1, delete=[p["metadata"]["name"] for p in newest])
        wait_for(lambda: len(live(workers(ray_pods(cluster, "video", elastic)))) == 1, 60.0,
                 f"cycle {cycle}: back to minReplicas")
    for ns, other in others:
        wait_for(lambda ns=ns, other=other: (rayjob(cluster, ns, other).get("status") or {})
                 .get("jobDeploymentStatus") == "Complete", 120.0, f"{ns}/{other} ran")
    assert seen_refused, "growth beyond video's max was refused at some point, and said so on the RayCluster"
    # 9 admitted (head 4 + autoscaler 0.5 + worker 4 + submitter 0.5): one more worker fits 14, never two
    assert 1 <= most_workers <= 2, most_workers
    assert invariants.worst.peak[VIDEO].get("cpu", 0) <= 14 * CPU, invariants.worst.peak[VIDEO]


def test_growth_is_reclaimed_pod_by_pod_before_any_whole_job(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """intern (min 0) borrows: its job of 1 head + 2 workers (12.5 CPU) grows to 8 workers (36.5). A text job
    within text's min (12.5) arrives and the cluster (48 CPU) cannot hold both: the newest growth worker is
    deleted with a Preempted event on the pod and on the RayCluster, the intern job is NOT suspended, the text
    job runs; KubeRay recreates the deleted worker, which, being the newest pod, is growth and stays Pending
    with the quota reason."""
    for i in range(3):
        nodes(f"grec-{i}", cpu="16")
    intern = create(cluster, sized_job("intern", workers=2, run_seconds=600))
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", intern))) == 3, 60.0, f"{intern}'s 3 Ray pods bound")
    name = cluster_name(cluster, "intern", intern)
    scale(cluster, "intern", name, 8)
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", intern))) == 9, 90.0, "the intern job grown to 9 Ray pods")
    before = {p["metadata"]["uid"]: p for p in ray_pods(cluster, "intern", intern)}
    # newest first, by creationTimestamp (whole seconds: KubeRay makes the six within one or two, so any pod of
    # the latest second may be the one; the product breaks the tie by uid)
    latest = max(p["metadata"]["creationTimestamp"] for p in before.values())
    newest = {uid for uid, p in before.items() if p["metadata"]["creationTimestamp"] == latest}

    text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted after the growth reclaim")
    preempted = events(cluster, "intern", keys.EVENT_PREEMPTED)  # (the namespace outlives the module's tests)
    on_pods = [e for e in preempted if e["involvedObject"]["kind"] == "Pod" and e["involvedObject"]["uid"] in before]
    on_cluster = [e for e in preempted if e["involvedObject"]["kind"] == keys.RAYCLUSTER_KIND
                  and e["involvedObject"]["name"] == name]
    assert len(on_pods) == 1 and on_pods[0]["involvedObject"]["uid"] in newest, (on_pods, newest)
    victim = before[on_pods[0]["involvedObject"]["uid"]]
    assert on_cluster and on_cluster[0]["message"] == on_pods[0]["message"]
    message = on_pods[0]["message"]
    assert f"for algorithm-text/{text}, guaranteed in root/algorithm/text" in message, message
    assert f"growth pod intern/{victim['metadata']['name']} of RayJob intern/{intern}" in message, message
    job = rayjob(cluster, "intern", intern)
    assert job["spec"]["suspend"] is False and keys.DEQUEUE_TIMESTAMP in job["metadata"]["annotations"], (
        "the borrowing job itself is not suspended: its growth was enough")
    assert not [e for e in preempted if e["involvedObject"]["kind"] == keys.RAYJOB_KIND
                and e["involvedObject"]["name"] == intern]

    def recreated_and_waiting() -> bool:
        fresh = [p for p in ray_pods(cluster, "intern", intern) if p["metadata"]["uid"] not in before]
        return any(not p["spec"].get("nodeName") and "quota:" in scheduled_message(p) for p in fresh)

    wait_for(recreated_and_waiting, 90.0, "KubeRay's replacement worker Pending with the quota reason")
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 40 * CPU


def test_a_whole_job_is_suspended_only_after_all_the_growth_that_may_go(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """Two intern jobs borrow: A (1 head + 1 worker, 8.5) grown by 2 workers (16.5), then B (12.5). A text job
    of 28.5 (within text's min) needs 9.5 of the cluster's 48 CPU: A's growth (8) is not enough, so both
    growth workers are deleted and B, the newest borrower, is suspended too; A itself keeps running."""
    for i in range(3):
        nodes(f"gjob-{i}", cpu="16")
    a = create(cluster, sized_job("intern", workers=1, run_seconds=600))
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", a))) == 2, 60.0, f"{a}'s Ray pods bound")
    admitted = {p["metadata"]["uid"] for p in workers(ray_pods(cluster, "intern", a))}
    # creationTimestamp has whole seconds, and among pods created in the same second which one the
    # reservation covers is the uid's choice: grow in a later second, so the new workers are the growth.
    time.sleep(1.1)
    scale(cluster, "intern", cluster_name(cluster, "intern", a), 3)
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", a))) == 4, 60.0, f"{a} grown by two workers")
    grown = {p["metadata"]["uid"] for p in workers(ray_pods(cluster, "intern", a))} - admitted
    b = create(cluster, sized_job("intern", workers=2, run_seconds=600))
    wait_for(lambda: len(bound(ray_pods(cluster, "intern", b))) == 3, 60.0, f"{b}'s Ray pods bound")

    text = create(cluster, sized_job("algorithm-text", workers=6, run_seconds=3))
    wait_for(lambda: rayjob(cluster, "intern", b)["spec"]["suspend"] is True, 60.0, f"{b} suspended")
    ours = {a, b, *(p["metadata"]["uid"] for p in ray_pods(cluster, "intern", a))} | grown
    preempted = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED)
                 if e["involvedObject"]["uid"] in ours or e["involvedObject"]["name"] in ours]
    assert {e["involvedObject"]["uid"] for e in preempted if e["involvedObject"]["kind"] == "Pod"} == grown
    assert [e["involvedObject"]["name"] for e in preempted if e["involvedObject"]["kind"] == keys.RAYJOB_KIND] == [b]
    job_a = rayjob(cluster, "intern", a)
    assert job_a["spec"]["suspend"] is False and keys.DEQUEUE_TIMESTAMP in job_a["metadata"]["annotations"]
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 90.0, f"{text} admitted")
