"""A RayCluster created directly by a tenant (an interactive cluster, a notebook's) in a bound namespace is queued like
a RayJob (issue 11, item 4): suspended at create, a QueueUnit `<name>-rc-qu`, admitted as a whole, reclaimed as a
whole for a guaranteed claimant, resumed when capacity frees; the tenant cannot resume it. On the real control plane,
the real kube-scheduler calling the extender, and the KubeRay 1.7 stand-in; the quota invariants sampled throughout."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from common import keys
from devcluster.cluster import TENANT, LocalCluster
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler
from tests.cluster.journey import (
    bare_cluster,
    cluster_pods,
    condition,
    create,
    delete_and_wait,
    dequeued,
    events,
    get,
    raycluster,
    rayjob,
    sized_job,
)

INTERN = "root/algorithm/intern"


@pytest.fixture
def no_clusters(cluster: LocalCluster) -> Iterator[None]:
    """Delete the test's RayJobs and RayClusters (and so their pods) from the tree's namespaces, and wait until the
    clusters are gone (a running RayJob's cluster would be made again). Request it after `cleanup`: it is torn
    down first."""
    yield
    delete_and_wait(cluster, "rayjob,raycluster", "raycluster", "the test's RayClusters to be gone")


def tenant_cluster(namespace: str, name: str, *, workers: int, cpu: str = "4") -> dict[str, Any]:
    """The guide's Ray cluster spec (sized) as a tenant's own RayCluster: no ownerReference, not suspended."""
    return bare_cluster(sized_job(namespace, workers=workers, cpu=cpu), name)


def queue_unit(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", "queueunit", name, "-n", ns, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def bound(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")]


def admitted(cluster: LocalCluster, ns: str, name: str) -> bool:
    rc = raycluster(cluster, ns, name)
    return keys.DEQUEUE_TIMESTAMP in rc["metadata"].get("annotations", {}) and rc["spec"].get("suspend") is False


def test_a_tenant_s_raycluster_is_queued_admitted_reclaimed_as_a_whole_and_resumed(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, no_clusters: None,
    invariants: QuotaSampler,
) -> None:
    """alice's notebook cluster in intern (min 0): 1 head + 8 workers of 4 CPU = 36 CPU, borrowed. Suspended at
    create, it gets `notebook-rc-qu` and is admitted, its 9 pods bound. A text job within text's min (12.5 CPU)
    does not fit the 48-CPU cluster beside it: the whole RayCluster is suspended (KubeRay deletes its pods), the
    Preempted event on it names the claimant, its QueueUnit says it waits again; the text job runs once the pods
    are gone; when it is done the cluster is resumed with its original enqueue stamp and its pods come back."""
    for i in range(6):
        nodes(f"bare-{i}")
    out = cluster.kubectl("create", "-f", "-", "-o", "json", as_user=TENANT,
                          input=json.dumps(tenant_cluster("intern", "notebook", workers=8)))
    rc = json.loads(out.stdout)  # as stored: after the webhook's mutation
    name = rc["metadata"]["name"]
    assert rc["spec"]["suspend"] is True, "suspended at create"
    enqueued = rc["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP]
    assert rc["metadata"]["labels"][keys.QUOTA_NAME] == "algorithm-intern"

    unit = wait_for(lambda: queue_unit(cluster, "intern", "notebook-rc-qu"), 30.0, "the QueueUnit notebook-rc-qu")
    assert unit["spec"]["consumerRef"] == {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": name,
                                           "namespace": "intern"}
    assert unit["spec"]["resource"]["cpu"] == "36"
    (owner,) = unit["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("RayCluster", rc["metadata"]["uid"])
    wait_for(lambda: admitted(cluster, "intern", name), 30.0, "the notebook admitted")
    wait_for(lambda: len(bound(cluster_pods(cluster, "intern", name))) == 9, 60.0, "its 9 pods bound")
    first = {p["metadata"]["uid"] for p in cluster_pods(cluster, "intern", name)}
    wait_for(lambda: ((queue_unit(cluster, "intern", "notebook-rc-qu") or {}).get("status") or {}).get("phase")
             == "Running", 30.0, "the QueueUnit Running once KubeRay calls the cluster ready")
    size = json.loads(raycluster(cluster, "intern", name)["metadata"]["annotations"][keys.ADMITTED_REPLICAS])
    assert size == {"small-group": 8}

    text = create(cluster, sized_job("algorithm-text", workers=2, run_seconds=3))  # 12.5 CPU, within text's min 32

    def reclaimed() -> bool:
        got = raycluster(cluster, "intern", name)
        annotations = got["metadata"]["annotations"]
        return got["spec"]["suspend"] is True and keys.DEQUEUE_TIMESTAMP not in annotations

    wait_for(reclaimed, 30.0, "the notebook suspended for the guaranteed text job")
    assert raycluster(cluster, "intern", name)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] == enqueued
    (preempted,) = [e for e in events(cluster, "intern", keys.EVENT_PREEMPTED)
                    if e["involvedObject"]["name"] == name]
    assert preempted["involvedObject"]["kind"] == "RayCluster"
    assert f"algorithm-text/{text}" in preempted["message"] and INTERN in preempted["message"]
    status = wait_for(lambda: (s := (queue_unit(cluster, "intern", "notebook-rc-qu") or {}).get("status") or {})
                      .get("phase") in ("Enqueued", "Backoff") and s, 30.0, "the QueueUnit waiting again")
    # why it waits, naming its quota: its pods still terminate, or the guaranteed text job comes first
    assert status["message"].startswith(f"{INTERN}: "), status
    wait_for(lambda: not [p for p in cluster_pods(cluster, "intern", name) if p["metadata"]["uid"] in first], 60.0,
             "KubeRay deleted every pod of the suspended cluster")

    def suspended_cluster() -> dict[str, Any] | None:
        got = raycluster(cluster, "intern", name)
        return got if (condition(got, "RayClusterSuspended") or {}).get("status") == "True" else None

    suspended = wait_for(suspended_cluster, 30.0, "the cluster Suspended")
    assert suspended["status"]["state"] == "suspended"
    wait_for(lambda: dequeued(cluster, "algorithm-text", text), 60.0, "the text job admitted once the pods are gone")

    wait_for(lambda: admitted(cluster, "intern", name), 120.0, "the notebook resumed when the text job is done")
    assert raycluster(cluster, "intern", name)["metadata"]["annotations"][keys.ENQUEUE_TIMESTAMP] == enqueued
    wait_for(lambda: len(bound(cluster_pods(cluster, "intern", name))) == 9, 90.0, "its 9 pods bound again")
    assert not first & {p["metadata"]["uid"] for p in cluster_pods(cluster, "intern", name)}, "new pods"
    assert invariants.worst.peak[INTERN].get("cpu", 0) <= 36000, invariants.worst.peak[INTERN]


def test_a_tenant_cannot_resume_their_own_queued_raycluster(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, no_clusters: None,
    invariants: QuotaSampler,
) -> None:
    """A 16-CPU RayCluster in video (max 14) waits, its QueueUnit naming the numbers. alice's patches to start it
    (spec.suspend false) or to stamp it dequeued are refused with the rule named; a RayCluster claiming a RayJob
    controller that does not exist is refused; a RayJob beside it runs, and its own RayCluster is no queued job."""
    for i in range(3):
        nodes(f"bare-wait-{i}")
    name = create(cluster, tenant_cluster("video", "too-big", workers=3))  # 4 + 3 x 4 = 16 CPU
    unit = wait_for(lambda: (u := queue_unit(cluster, "video", "too-big-rc-qu")) and (u.get("status") or {})
                    .get("message") and u, 30.0, "the QueueUnit with its reason")
    assert "root/algorithm/video" in unit["status"]["message"] and "max 14" in unit["status"]["message"], unit["status"]

    refused = cluster.kubectl("patch", "raycluster", name, "-n", "video", "--type", "merge", "-p",
                              '{"spec":{"suspend":false}}', as_user=TENANT, check=False)
    assert refused.returncode != 0
    assert ('admission webhook "rayclusters.validate.rayqueue.io" denied the request: rayqueue: RayCluster '
            "video/too-big is queued in queue root-algorithm-video (quota root/algorithm/video): rule resume: only "
            "the queue controller may set spec.suspend true -> false") in refused.stderr, refused.stderr
    stamp = json.dumps({"metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: "2025-01-10 01:36:25 +0000 UTC"}},
                        "spec": {"suspend": False}})
    forged = cluster.kubectl("patch", "raycluster", name, "-n", "video", "--type", "merge", "-p", stamp,
                             as_user=TENANT, check=False)
    assert forged.returncode != 0 and "rule controller-annotations" in forged.stderr, forged.stderr
    assert raycluster(cluster, "video", name)["spec"]["suspend"] is True
    assert not cluster_pods(cluster, "video", name)

    fake = tenant_cluster("video", "not-a-jobs", workers=1)
    fake["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayJob", "name": "nobody",
                                            "uid": "00000000-0000-0000-0000-000000000000", "controller": True}]
    claimed = cluster.kubectl("create", "-f", "-", as_user=TENANT, check=False, input=json.dumps(fake))
    assert claimed.returncode != 0
    assert ("rule raycluster-owner: its controller ownerReference names RayJob video/nobody, which does not "
            "exist") in claimed.stderr, claimed.stderr

    job = create(cluster, sized_job("video", workers=1, run_seconds=600))  # 8.5 CPU: fits beside the waiting one
    wait_for(lambda: dequeued(cluster, "video", job), 30.0, f"{job} admitted")
    (rc,) = wait_for(lambda: [c for c in get(cluster, "raycluster", "-n", "video")["items"]
                              if any(r.get("uid") == rayjob(cluster, "video", job)["metadata"]["uid"]
                                     for r in c["metadata"].get("ownerReferences") or [])], 30.0, f"{job}'s cluster")
    # KubeRay copies the RayJob's annotations (the queue's stamps among them) onto its cluster
    # (constructRayClusterForRayJob); with the RayJob as its controller it is no queued job of its own.
    assert not rc["spec"].get("suspend"), "the webhook left KubeRay's cluster of an admitted RayJob alone"
    assert len(bound(cluster_pods(cluster, "video", rc["metadata"]["name"]))) == 2
    assert queue_unit(cluster, "video", f"{rc['metadata']['name']}-rc-qu") is None
    assert queue_unit(cluster, "video", f"{job}-ray-qu") is not None


def test_a_gang_raycluster_is_admitted_and_placed_as_one_gang(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, no_clusters: None,
    invariants: QuotaSampler,
) -> None:
    """A tenant's RayCluster asking for gang scheduling (`ray.io/gang-scheduling-enabled: "true"`): the webhook puts
    min-available 3 (head + 2 workers) into its templates, its pods are one gang named after the cluster, and the
    three are bound together once it is admitted."""
    for i in range(2):
        nodes(f"bare-gang-{i}")
    spec = tenant_cluster("video", "gang-notebook", workers=2, cpu="2")
    spec["metadata"].setdefault("labels", {})[keys.GANG_ENABLED_LABEL] = "true"
    name = create(cluster, spec)
    wait_for(lambda: admitted(cluster, "video", name), 30.0, "the gang cluster admitted")

    def three_bound() -> list[dict[str, Any]] | None:
        found = bound(cluster_pods(cluster, "video", name))
        return found if len(found) == 3 else None

    pods = wait_for(three_bound, 60.0, "its 3 pods bound")
    labels = [p["metadata"]["labels"] for p in pods]
    assert {(lb[keys.POD_GROUP_NAME], lb[keys.POD_GROUP_MIN_AVAILABLE]) for lb in labels} == {(name, "3")}
    wait_for(lambda: ((queue_unit(cluster, "video", f"{name}-rc-qu") or {}).get("status") or {}).get("phase")
             == "Running", 30.0, "its QueueUnit Running")
    wait_for(lambda: invariants.worst.samples >= 5, 30.0, "the sampler to see the bound gang")
    assert invariants.worst.partly_bound == [], "a gang is bound whole (the sampler checks again at the end)"
