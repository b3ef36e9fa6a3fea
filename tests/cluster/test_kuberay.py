"""The quota stays true against current KubeRay (the stand-in's 1.7 model): cluster names, terminating pods,
retries, refused specs, injected containers and spoofed labels, on the real control plane with the real
kube-scheduler calling the extender. Every test samples the quota invariants throughout."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from common import keys
from devcluster.cluster import ADMIN, TENANT, LocalCluster
from devcluster.services import SCHEDULER_NAME
from devcluster.waiting import wait_for
from tests.cluster.invariants import QuotaSampler, pod_requests
from tests.cluster.journey import create, dequeued, get, pods_of, rayjob, sized_job

VIDEO = "root/algorithm/video"
TEXT = "root/algorithm/text"


def used(cluster: LocalCluster, node: str) -> dict[str, str]:
    """What the controller last wrote as the node's usage in the tree's status."""
    status = get(cluster, "elasticquotatree", "elasticquotatree", "-n", "kube-system").get("status") or {}
    return dict(((status.get("nodes") or {}).get(node) or {}).get("used") or {})


def bound(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["spec"].get("nodeName")]


def deployment(cluster: LocalCluster, ns: str, name: str) -> str:
    return str((rayjob(cluster, ns, name).get("status") or {}).get("jobDeploymentStatus") or "")


def patch_job(cluster: LocalCluster, ns: str, name: str, spec: str) -> None:
    cluster.kubectl("patch", "rayjob", name, "-n", ns, "--type=merge", "-p", spec, as_user=ADMIN)


def test_a_suspended_job_s_terminating_pods_stay_charged_once_until_they_are_gone(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """KubeRay 1.7 reports Suspended (and clears status.rayClusterName) once the RayCluster and submitter Job
    objects are gone, while their pods still take 10 s to stop. Those pods stay the job's: video is charged
    for them once the whole time, and the other job waiting for video is not admitted beside them."""
    for i in range(3):
        nodes(f"susp-{i}")
    job = sized_job("video", workers=1, run_seconds=600)  # 4 + 4 + the 500m submitter = 8.5 of video's 14 CPU
    job["metadata"]["annotations"][keys.TEST_TERMINATE_SECONDS] = "10"
    first = create(cluster, job)
    parents: set[str] = set()  # its RayCluster and submitter Job: gone at Suspended, their pods not yet
    wait_for(lambda: len(bound(pods_of(cluster, "video", first, parents))) == 3, 60.0, f"{first}'s 3 pods bound")
    wait_for(lambda: used(cluster, VIDEO).get("cpu") == "8500m", 30.0, "video charged 8.5 CPU")
    old = {p["metadata"]["uid"] for p in pods_of(cluster, "video", first, parents)}
    patch_job(cluster, "video", first, '{"spec":{"suspend":true}}')  # an admin takes it back
    second = create(cluster, sized_job("video", workers=1, run_seconds=3))

    def still(uids: set[str]) -> list[dict[str, Any]]:
        return [p for p in get(cluster, "pod", "-n", "video")["items"] if p["metadata"]["uid"] in uids]

    at_suspended: list[dict[str, Any]] = []

    def suspended_with_pods_left() -> bool:
        status = rayjob(cluster, "video", first).get("status") or {}
        if status.get("jobDeploymentStatus") == "Suspended" and still(old):
            at_suspended.append(status)
            return True
        return False

    wait_for(suspended_with_pods_left, 30.0, f"{first} Suspended while its pods still terminate")
    assert not at_suspended[0].get("rayClusterName"), "KubeRay 1.7 clears it at Suspended"
    seen: list[str] = []
    deadline = time.monotonic() + 60.0  # the pods take 10 s; bounded either way
    while still(old) and time.monotonic() < deadline:
        seen.append(used(cluster, VIDEO).get("cpu", "0"))
        assert not dequeued(cluster, "video", second), f"{second} admitted while {first}'s pods still hold video"
    # 8.5: the old pods, charged once to their job (never 0, never twice: 17); 12.5: the job may be admitted
    # again meanwhile (it keeps its place in the queue), its old pods keeping their places, and its new head
    # binding beside them as growth, within video's max.
    assert not still(old), f"{first}'s old pods still there after 60 s"
    assert seen and set(seen) <= {"8500m", "12500m"}, f"video's usage while the pods terminated: {seen}"
    assert seen[0] == "8500m", seen
    wait_for(lambda: dequeued(cluster, "video", first), 60.0, f"{first}, first in the queue, admitted again")
    assert not dequeued(cluster, "video", second), "video holds only one of them"


def test_a_retrying_job_is_never_charged_twice(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """backoffLimit 1: the first attempt fails, KubeRay 1.7 goes Retrying -> New and makes a new cluster
    (another name) while the old pods still terminate for 8 s. video (max 14) cannot hold the 12.5-CPU job
    twice, nor its new head beside the old pods: the new pods are growth until the old ones are gone, so
    video is charged 12.5 CPU, once, throughout, and never has more than that bound."""
    for i in range(4):
        nodes(f"retry-{i}")
    job = sized_job("video", workers=2, run_seconds=2)
    job["metadata"]["annotations"][keys.TEST_EXIT_CODE] = "1"
    job["metadata"]["annotations"][keys.TEST_TERMINATE_SECONDS] = "8"
    job["spec"]["backoffLimit"] = 1
    job["spec"]["submitterConfig"] = {"backoffLimit": 0}
    name = create(cluster, job)
    wait_for(lambda: dequeued(cluster, "video", name), 30.0, f"{name} admitted")
    clusters: set[str] = set()
    usage: set[str] = set()

    def retried() -> bool:
        status = rayjob(cluster, "video", name).get("status") or {}
        if status.get("rayClusterName"):
            clusters.add(status["rayClusterName"])
        usage.add(used(cluster, VIDEO).get("cpu", "0"))
        return len(clusters) >= 2 and status.get("jobDeploymentStatus") in ("Failed", "Complete")

    wait_for(retried, 150.0, f"{name} retried on a new cluster and finished")
    assert int(rayjob(cluster, "video", name)["status"].get("failed") or 0) == 2
    cpus = {int(u[:-1]) if u.endswith("m") else int(u) * 1000 for u in usage}
    assert max(cpus) <= 12500, f"video's usage seen while the job retried: {sorted(usage)}"
    assert invariants.worst.peak[VIDEO].get("cpu", 0) <= 12500, invariants.worst.peak[VIDEO]


def test_a_runtime_env_kuberay_would_refuse_is_refused_at_create_and_on_edit_of_a_running_job(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """A runtimeEnvYAML that is not YAML used to pass admission and end ValidationFailed in KubeRay 1.5+ after it
    was admitted. The webhook now decodes it as KubeRay's UnmarshalRuntimeEnvYAML does and refuses it at create, in
    KubeRay's words (rule kuberay-validation), so it never holds a claim, and the next job in video runs. Once that
    one runs, the tenant's edit of it to a runtimeEnvYAML that is YAML but a list (UnmarshalRuntimeEnvYAML decodes
    into a map: KubeRay would set it ValidationFailed on its next reconcile) is refused too, and the job runs on
    unchanged. (A job KubeRay refuses by a rule rayqueue does not model: test_kuberay_stopped.py.)"""
    for i in range(3):
        nodes(f"invalid-{i}")
    broken = sized_job("video", workers=2, run_seconds=600)  # 12.5 of 14 CPU
    broken["spec"]["runtimeEnvYAML"] = "pip: [unclosed"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        create(cluster, broken)
    assert "rule kuberay-validation: KubeRay would refuse this job after admission" in refused.value.stderr
    assert "failed to unmarshal RuntimeEnvYAML" in refused.value.stderr
    waiting = create(cluster, sized_job("video", workers=2, run_seconds=600))
    wait_for(lambda: dequeued(cluster, "video", waiting), 60.0, f"{waiting} admitted at once")
    wait_for(lambda: (rayjob(cluster, "video", waiting).get("status") or {}).get("jobDeploymentStatus") == "Running",
             90.0, f"{waiting} running")
    before = rayjob(cluster, "video", waiting)["spec"].get("runtimeEnvYAML")
    edit = cluster.kubectl("patch", "rayjob", waiting, "-n", "video", "--type=merge",
                           "-p", '{"spec": {"runtimeEnvYAML": "- pip\\n- numpy\\n"}}', as_user=TENANT, check=False)
    assert edit.returncode != 0, edit.stdout
    assert "rule kuberay-validation: this change would make KubeRay refuse the job" in edit.stderr, edit.stderr
    assert "cannot unmarshal array into Go value of type types.RuntimeEnvType" in edit.stderr, edit.stderr
    after = rayjob(cluster, "video", waiting)
    assert after["spec"].get("runtimeEnvYAML") == before, after["spec"].get("runtimeEnvYAML")
    assert after["status"]["jobDeploymentStatus"] == "Running"


def test_worker_init_containers_and_the_autoscaler_sidecar_are_charged(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], cleanup: None, invariants: QuotaSampler
) -> None:
    """Workers of 100m / 128Mi get KubeRay's wait-gcs-ready (200m / 256Mi), the head its autoscaler sidecar
    (500m / 512Mi): the QueueUnit's request and the tree's usage are what the pods really request. The
    autoscaler makes the job elastic with a floor of minReplicas = 0 (docs/elastic.md), so the QueueUnit
    reserves head + sidecar + submitter; the two workers are growth, each charged at its init container's
    size once bound."""
    for i in range(2):
        nodes(f"inject-{i}")
    job = sized_job("video", workers=2, cpu="100m", memory="128Mi", run_seconds=600)
    spec = job["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    spec["enableInTreeAutoscaling"] = True
    name = create(cluster, job)
    # reserved: head 1 + 0.5 autoscaler, the submitter 0.5 CPU; memory 1Gi + 512Mi, 200Mi (the floor: no worker)
    unit = get(cluster, "queueunit", f"{name}-ray-qu", "-n", "video")
    assert unit["spec"]["resource"] == {"cpu": "2", "memory": "1736Mi"}, unit["spec"]
    wait_for(lambda: len(bound(pods_of(cluster, "video", name))) == 4, 60.0, f"{name}'s 4 pods bound")
    pods = pods_of(cluster, "video", name)
    workers = [p for p in pods if p["metadata"]["labels"].get(keys.RAY_NODE_TYPE) == "worker"]
    assert all("wait-gcs-ready" in [c["name"] for c in p["spec"].get("initContainers") or []] for p in workers)
    (head_pod,) = [p for p in pods if p["metadata"]["labels"].get(keys.RAY_NODE_TYPE) == "head"]
    assert "autoscaler" in [c["name"] for c in head_pod["spec"]["containers"]]
    real = {"cpu": 0, "memory": 0}
    for pod in pods:
        for resource, amount in pod_requests(pod).items():
            real[resource] = real.get(resource, 0) + amount
    # bound: the reservation plus 2 workers at the init container's 0.2 CPU / 256Mi
    assert real == {"cpu": 2400, "memory": (1024 + 512 + 512 + 200) * 2**20}
    wait_for(lambda: used(cluster, VIDEO).get("cpu") == "2400m", 30.0, "video charged what the pods request")


@pytest.mark.parametrize(
    ("seed_model", "where"),
    [("1.7", "algorithm-text"), ("1.7", "video"), ("1.3", "video")],
    indirect=["seed_model"],
)
def test_a_pod_spoofing_another_job_s_cluster_label_is_charged_to_its_own_namespace(
    cluster: LocalCluster, rayqueue: Any, nodes: Callable[..., str], seed_model: str, cleanup: None,
    invariants: QuotaSampler, where: str,
) -> None:
    """alice's pod carries the running video job's `ray.io/cluster` label but no ownerReference of its
    cluster: it is charged to its own namespace's leaf like any pod, and never covered by the job. In
    video itself, one such 4-CPU pod fits beside the job (8.5 + 4 of 14) and a second is refused."""
    for i in range(3):
        nodes(f"spoof-{i}")
    job = create(cluster, sized_job("video", workers=1, run_seconds=600))
    wait_for(lambda: len(bound(pods_of(cluster, "video", job))) == 3, 60.0, f"{job}'s pods bound")
    cluster_name = rayjob(cluster, "video", job)["status"]["rayClusterName"]
    legacy = cluster_name.startswith(f"{job}-raycluster-")
    assert legacy is (seed_model == "1.3"), f"KubeRay 1.4+ names it <job>-<5 chars>, 1.1-1.3 <job>-raycluster-<5>: {cluster_name}"

    def spoof(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": where,
                             "labels": {keys.RAY_CLUSTER: cluster_name, keys.RAY_NODE_TYPE: "worker"}},
                "spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.9.0",
                                         "resources": {"requests": {"cpu": "4", "memory": "1Gi"},
                                                       "limits": {"cpu": "4", "memory": "1Gi"}}}]}}

    cluster.kubectl("create", "-f", "-", as_user=TENANT, input=yaml.safe_dump(spoof("spoof-1")))
    wait_for(lambda: bool(get(cluster, "pod", "spoof-1", "-n", where)["spec"].get("nodeName")), 30.0,
             "the spoofing pod bound by rayqueue-scheduler as an ordinary pod")
    assert get(cluster, "pod", "spoof-1", "-n", where)["spec"]["schedulerName"] == SCHEDULER_NAME
    if where == "video":
        wait_for(lambda: used(cluster, VIDEO).get("cpu") == "12500m", 30.0, "video: the job's 8.5 + the pod's 4")
        cluster.kubectl("create", "-f", "-", as_user=TENANT, input=yaml.safe_dump(spoof("spoof-2")))

        def refused() -> bool:
            pod = get(cluster, "pod", "spoof-2", "-n", "video")
            conditions = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
            return bool(conditions) and "cpu used 12500m + request 4 > max 14" in (conditions[0].get("message") or "")

        wait_for(refused, 60.0, "the second spoofing pod refused by the quota, the reason on its PodScheduled")
        assert not get(cluster, "pod", "spoof-2", "-n", "video")["spec"].get("nodeName")
    else:
        wait_for(lambda: used(cluster, TEXT).get("cpu") == "4", 30.0, "text charged the pod's 4 CPU")
        assert used(cluster, VIDEO).get("cpu") == "8500m", "video still holds only its job"
