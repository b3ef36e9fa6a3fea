"""rayqueue end to end on the real control plane: webhook + extender/queue controller + kube-scheduler
(rayqueue-scheduler, calling the extender) + the KubeRay stand-in, driven with kubectl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from common import keys
from devcluster.cluster import LocalCluster
from devcluster.procs import ManagedProcess
from devcluster.services import SCHEDULER_NAME, Extender, start_extender
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import (
    create,
    dequeued,
    events,
    get,
    pods_of,
    queues,
    ray_pods,
    rayjob,
    seed_job,
    sized_job,
)


def test_one_queue_per_leaf_in_the_seed_shape(cluster: LocalCluster, rayqueue: Any) -> None:
    """Seed fact 2: a Queue per leaf in kube-queue, named root-<path>-xxxxx, with the guide's annotations, label,
    policy and status lists; `kubectl get queue` lists them."""
    by_quota = queues(cluster)
    assert sorted(by_quota) == ["root/algorithm/intern", "root/algorithm/text", "root/algorithm/video",
                                "root/devops", "root/infrastructure/devops"]
    video = by_quota["root/algorithm/video"]
    meta = video["metadata"]
    assert meta["generateName"] == "root-algorithm-video-"
    assert meta["name"].startswith("root-algorithm-video-") and len(meta["name"]) == len("root-algorithm-video-") + 5
    assert meta["annotations"][keys.PARENT_QUOTA_FULLNAME] == "algorithm"
    assert meta["labels"] == {keys.CREATED_BY_KUBEQUEUE: "true"}
    assert video["spec"] == {"queuePolicy": "Round"}
    assert by_quota["root/devops"]["metadata"]["annotations"][keys.PARENT_QUOTA_FULLNAME] == "root"
    printed = cluster.kubectl("get", "queue", "-n", "kube-queue").stdout.splitlines()
    assert printed[0].split()[:3] == ["NAME", "POLICY", "QUOTA"]
    assert sorted(line.split()[0] for line in printed[1:]) == sorted(q["metadata"]["name"] for q in by_quota.values())


@pytest.mark.parametrize("seed_model", ["1.7", "1.3"], indirect=True)
def test_the_seed_video_example(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], seed_model: str, cleanup: None,
    invariants: QuotaSampler,
) -> None:
    """Seed facts 3 and 4: two copies of the 12-CPU job in video (max 14 CPU): the first runs, the second waits
    with only its enqueue stamp, in the Queue's backoff list, saying why; when the first completes, the second
    starts by itself."""
    for i in range(3):
        nodes(f"video-{i}")
    first = create(cluster, seed_job(run_seconds=6))
    wait_for(lambda: dequeued(cluster, "video", first), 30.0, f"{first} to be dequeued")
    second = create(cluster, seed_job(run_seconds=2))

    def bound_running() -> bool:
        pods = ray_pods(cluster, "video", first)
        return len(pods) == 3 and all(p["spec"].get("nodeName") and p["status"].get("phase") == "Running" for p in pods)

    wait_for(bound_running, 60.0, "the first job's head and 2 workers bound by rayqueue-scheduler and Running")
    for pod in pods_of(cluster, "video", first):
        assert pod["spec"]["schedulerName"] == SCHEDULER_NAME
        assert pod["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-video"

    table = {line.split()[0]: line for line in cluster.kubectl("get", "rayjob", "-n", "video").stdout.splitlines()[1:]}
    assert "Suspended" in table[second] and "Suspended" not in table[first]
    assert "Initializing" in table[first] or "Running" in table[first], table[first]
    waiting = rayjob(cluster, "video", second)
    assert waiting["spec"]["suspend"] is True
    assert set(waiting["metadata"]["annotations"]) >= {keys.ENQUEUE_TIMESTAMP}
    assert keys.DEQUEUE_TIMESTAMP not in waiting["metadata"]["annotations"]

    def in_backoff() -> bool:
        status = queues(cluster)["root/algorithm/video"].get("status") or {}
        return [i["name"] for i in (status.get("queueItemDetails") or {}).get("backoff") or []] == [f"{second}-ray-qu"]

    wait_for(in_backoff, 30.0, f"{second}-ray-qu in the video Queue's backoff list")
    tree_status = get(cluster, "elasticquotatree", "elasticquotatree", "-n", "kube-system")["status"]["nodes"]
    assert tree_status["root/algorithm/video"]["used"]["cpu"] == "12500m", tree_status["root/algorithm/video"]
    assert tree_status["root/algorithm/video"]["request"]["cpu"] == "12500m", "the waiting job's request"
    item = queues(cluster)["root/algorithm/video"]["status"]["queueItemDetails"]["backoff"][0]
    assert (item["namespace"], item["position"]) == ("video", 1)
    unit = get(cluster, "queueunit", f"{second}-ray-qu", "-n", "video")
    assert unit["status"]["message"].startswith("root/algorithm/video: cpu used 12500m + request 12500m > max 14")
    assert unit["spec"]["queue"] == queues(cluster)["root/algorithm/video"]["metadata"]["name"]
    printed = cluster.kubectl("get", "queueunit", "-n", "video").stdout
    assert f"{second}-ray-qu" in printed and "cpu used 12500m + request 12500m > max 14" in printed

    wait_for(lambda: dequeued(cluster, "video", second), 90.0, f"{second} to start by itself after {first} completes")
    assert rayjob(cluster, "video", first)["status"]["jobDeploymentStatus"] == "Complete"


def test_the_seed_gang_is_placed_whole_or_not_at_all(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, namespace: str,
    default_scheduler: ManagedProcess, invariants: QuotaSampler,
) -> None:
    """Seed fact 5: 1 head + 30 workers, min-available 31. The quota admits the job (31.5 CPU of 40), but 4 CPU of
    the 32 the nodes have are held by a pod outside any queue: no pod of the gang may be bound, and every member
    gets a GangFailedScheduling event. Adding a node lets all 31 bind together."""
    for i in range(4):
        nodes(f"gang-{i}")
    filler = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "filler", "namespace": namespace},
              "spec": {"containers": [{"name": "c", "image": "busybox",
                                       "resources": {"requests": {"cpu": "4"}, "limits": {"cpu": "4"}}}]}}
    cluster.kubectl("create", "-f", "-", input=yaml.safe_dump(filler))
    wait_for(lambda: bool(get(cluster, "pod", "filler", "-n", namespace)["spec"].get("nodeName")), 30.0,
             "the filler pod (outside any queue) to be placed by default-scheduler")

    job = seed_job("gang-rayjob.yaml", run_seconds=600)
    name = create(cluster, job)
    wait_for(lambda: dequeued(cluster, "algorithm-text", name), 30.0, f"{name} admitted by the quota")
    wait_for(lambda: len(ray_pods(cluster, "algorithm-text", name)) == 31, 60.0, "the 31 gang pods to exist")
    pods = ray_pods(cluster, "algorithm-text", name)
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert labels[keys.POD_GROUP_MIN_AVAILABLE] == "31"
        assert labels[keys.POD_GROUP_NAME] == labels[keys.POD_GROUP_X] == labels[keys.RAY_CLUSTER]
        assert labels[keys.QUOTA_NAME] == "algorithm-text"

    def every_member_warned() -> bool:
        warned = {e["involvedObject"]["name"] for e in events(cluster, "algorithm-text", keys.EVENT_GANG_FAILED)}
        bound = [p for p in ray_pods(cluster, "algorithm-text", name) if p["spec"].get("nodeName")]
        assert not bound, f"a partial gang was bound: {[p['metadata']['name'] for p in bound]}"
        return len(warned) == 31

    wait_for(every_member_warned, 90.0, "a GangFailedScheduling event on each of the 31 members, none bound")
    warnings = events(cluster, "algorithm-text", keys.EVENT_GANG_FAILED)
    assert all(e["type"] == "Warning" and " in gang failed to be scheduled in cycle " in e["message"] for e in warnings)
    shortfall = [e["message"] for e in warnings if "free on 4 schedulable nodes: cpu 28" in e["message"]]
    assert shortfall, "an event names the numbers: " + warnings[-1]["message"]

    nodes("gang-extra")

    def all_bound() -> bool:
        bound = [p for p in ray_pods(cluster, "algorithm-text", name) if p["spec"].get("nodeName")]
        return len(bound) == 31

    wait_for(all_bound, 90.0, "all 31 members bound once capacity was added")
    times = sorted(
        c["lastTransitionTime"] for p in ray_pods(cluster, "algorithm-text", name)
        for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled" and c["status"] == "True")
    assert len(times) == 31
    assert times[0][:16] == times[-1][:16] or len(set(times)) <= 2, f"bound over a spread of times: {times[0]}..{times[-1]}"


@pytest.mark.parametrize("seed_model", ["1.7", "1.3"], indirect=True)
def test_borrowed_capacity_is_reclaimed_for_a_guaranteed_job(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], seed_model: str, cleanup: None,
    invariants: QuotaSampler,
) -> None:
    """Seed fact 1: intern (min 0) borrows; a text job within text's min arrives and does not fit the cluster
    (48 CPU): the intern job is suspended and requeued keeping its enqueue time, the text job runs, and the
    intern job resumes when capacity frees."""
    for i in range(6):
        nodes(f"reclaim-{i}")
    intern = create(cluster, sized_job("intern", workers=8, run_seconds=600))  # 36.5 CPU
    wait_for(lambda: dequeued(cluster, "intern", intern), 30.0, "the intern job to borrow and run")
    wait_for(lambda: len([p for p in ray_pods(cluster, "intern", intern) if p["spec"].get("nodeName")]) == 9, 60.0,
             "the intern job's 9 Ray pods bound")
    enqueued = rayjob(cluster, "intern", intern)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]

    text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))  # 12.5 CPU, within text's min 32

    def intern_suspended() -> bool:
        job = rayjob(cluster, "intern", intern)
        return job["spec"]["suspend"] is True and keys.DEQUEUE_TIMESTAMP not in job["metadata"]["annotations"]

    wait_for(intern_suspended, 30.0, "the intern job to be suspended for the guaranteed text job")
    assert rayjob(cluster, "intern", intern)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] == enqueued
    (preempted,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED) if e["involvedObject"]["name"] == intern]
    assert f"algorithm-text/{text}" in preempted["message"]
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 60.0, "the text job to run once the intern pods are gone")
    wait_for(lambda: dequeued(cluster, "intern", intern), 90.0, "the intern job to resume when the text job is done")
    assert rayjob(cluster, "intern", intern)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] == enqueued


def test_priority_orders_the_queue_and_a_raise_jumps_ahead(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """A later higher-priority job is dequeued first; raising a waiting job's priority moves it ahead."""
    for i in range(3):
        nodes(f"prio-{i}")
    running = create(cluster, sized_job("video", workers=2, run_seconds=8))  # 12.5 of video's 14 CPU
    wait_for(lambda: dequeued(cluster, "video", running), 30.0, "the first job to run")
    low = create(cluster, sized_job("video", workers=2, run_seconds=2))
    bumped = create(cluster, sized_job("video", workers=2, run_seconds=2))
    urgent_job = sized_job("video", workers=2, run_seconds=2)
    urgent_job["metadata"]["annotations"][keys.PRIORITY_OVERRIDE] = "10"
    urgent = create(cluster, urgent_job, user="admin")
    cluster.kubectl("annotate", "rayjob", bumped, "-n", "video", f"{keys.PRIORITY_OVERRIDE}=5")

    def order() -> list[str]:
        stamps = {}
        for name in (low, bumped, urgent):
            ann = rayjob(cluster, "video", name)["metadata"]["annotations"]
            if keys.DEQUEUE_TIMESTAMP in ann:
                stamps[name] = ann[keys.DEQUEUE_TIMESTAMP]
        return sorted(stamps, key=stamps.__getitem__)

    wait_for(lambda: len(order()) == 3, 150.0, "all three waiting jobs to run one after another")
    assert order() == [urgent, bumped, low]
    (changed,) = [e for e in events(cluster, "video", keys.EVENT_PRIORITY_CHANGED) if e["involvedObject"]["name"] == bumped]
    assert "changed priority 0 -> 5" in changed["message"]


def test_a_killed_extender_restarts_losing_nothing_and_admitting_nothing_twice(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """kill -9 the extender while a video job waits behind a running one and while a gang waits at the bind
    barrier (its head has a nodeSelector no node matches yet, so its 30 workers wait there for it). After a
    restart from the API alone: the waiting job is still queued, the running one is not admitted again, no
    gang member is bound; labelling the nodes then binds the whole gang, and the waiting job runs only after
    the running one is done."""
    import os
    import signal

    _, extender, _ = rayqueue
    made = [nodes(f"restart-{i}") for i in range(7)]
    running = create(cluster, seed_job(run_seconds=60))  # still running when the extender is killed
    wait_for(lambda: dequeued(cluster, "video", running), 30.0, "the first video job to run")
    stamp = rayjob(cluster, "video", running)["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP]
    waiting = create(cluster, seed_job(run_seconds=2))

    gang_job = seed_job("gang-rayjob.yaml", run_seconds=600)
    gang_job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["nodeSelector"] = {"rayqueue.test/head": "yes"}
    gang = create(cluster, gang_job)
    wait_for(lambda: dequeued(cluster, "algorithm-text", gang), 30.0, "the gang job admitted")

    wait_for(lambda: len(ray_pods(cluster, "algorithm-text", gang)) == 31, 60.0, "the 31 gang pods to exist")
    wait_for(lambda: _waiting_at_barrier(extender) >= 30, 60.0, "the 30 gang workers to wait at the bind barrier")
    import datetime as dt

    killed_at = dt.datetime.now(dt.UTC).isoformat()
    os.kill(extender.process.pid, signal.SIGKILL)
    wait_for(lambda: not extender.process.alive(), 10.0, "the extender to die")
    assert not [p for p in ray_pods(cluster, "algorithm-text", gang) if p["spec"].get("nodeName")], "partial gang"

    cluster.stop_process(extender.process.name)
    start_extender(cluster, port=extender.port)  # same name and port: the module's teardown stops it
    seen: list[Any] = []

    def still_queued() -> bool:
        unit = get(cluster, "queueunit", f"{waiting}-ray-qu", "-n", "video")
        seen.append(unit.get("status"))
        return (unit.get("status") or {}).get("phase") in ("Enqueued", "Backoff")

    try:
        wait_for(still_queued, 30.0, "the waiting job to still be queued after the restart")
    except AssertionError as exc:
        a, b = rayjob(cluster, "video", running), rayjob(cluster, "video", waiting)
        raise AssertionError(f"{exc}; QueueUnit status seen last: {seen[-1:]}; killed at {killed_at}; "
                             f"first: {a['metadata']['annotations']} {a.get('status')}; "
                             f"second: {b['metadata']['annotations']} {b.get('status')}") from None
    assert rayjob(cluster, "video", running)["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] == stamp
    assert not dequeued(cluster, "video", waiting)
    assert not [p for p in ray_pods(cluster, "algorithm-text", gang) if p["spec"].get("nodeName")], "partial gang"

    for node in made:
        cluster.kubectl("label", "node", node, "rayqueue.test/head=yes", "--overwrite")

    def gang_whole() -> bool:
        bound = [p for p in ray_pods(cluster, "algorithm-text", gang) if p["spec"].get("nodeName")]
        return len(bound) == 31

    wait_for(gang_whole, 120.0, "the whole gang to bind once its head can be placed")
    wait_for(lambda: dequeued(cluster, "video", waiting), 120.0, "the waiting job to run after the first")
    first = rayjob(cluster, "video", running)
    assert first["status"]["jobDeploymentStatus"] == "Complete"
    assert first["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] == stamp, "admitted once"


def _waiting_at_barrier(extender: Extender) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{extender.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("rayqueue_gang_bind_waiting ")]
    return values[0] if values else 0.0
