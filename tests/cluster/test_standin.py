"""The KubeRay stand-in as a model of KubeRay 1.7 (and 1.1-1.3): each behaviour rayqueue depends on, on the real
local control plane (kube-apiserver, kube-controller-manager's job and garbage collectors, kube-scheduler)."""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from common import keys
from devcluster.cluster import LocalCluster
from devcluster.kuberay_standin import MODEL_13, MODEL_17, MODELS, KubeRayStandIn, OperatorConfig
from devcluster.kuberay_standin.model import generate_cluster_name, managed_elsewhere, with_crd_defaults
from devcluster.kuberay_standin.names import CLUSTER_SUSPENDED, CLUSTER_SUSPENDING
from devcluster.kuberay_standin.validation import validate_rayjob
from devcluster.procs import ManagedProcess
from devcluster.waiting import wait_for
from tests.cluster import journey
from tests.cluster.conftest import wait_standin_synced
from tests.cluster.test_harness import (
    as_json,
    core,
    custom,
    deployment_status,
    get_rayjob,
    pods,
    rayclusters_of,
    running_pods_of,
    small_rayjob,
    unsuspend,
)

pytestmark = pytest.mark.cluster

NODES = ("standin-node-1", "standin-node-2", "standin-node-3")
KUBERAY_MODELS = [pytest.param(m, id=f"kuberay-{m}") for m in MODELS]
CONFIGURED = "configured"  # the serve label of the stand-in with operator settings
HEAD_SIDECAR = {"name": "log-shipper", "image": "fluent/fluent-bit:3.0",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
WORKER_SIDECAR = {"name": "metrics-agent", "image": "prom/node-exporter:1.8",
                  "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}


@pytest.fixture(scope="module")
def nodes(cluster: LocalCluster) -> Iterator[tuple[str, ...]]:
    for name in NODES:
        cluster.create_node(name, cpu="8", memory="16Gi")
    yield NODES
    for name in NODES:
        cluster.delete_node(name)


@pytest.fixture
def ray(cluster: LocalCluster, nodes: tuple[str, ...], default_scheduler: ManagedProcess) -> LocalCluster:
    """Fake nodes and the default kube-scheduler; the stand-in comes with `model_namespace`."""
    return cluster


@pytest.fixture(scope="module")
def configured_standin(cluster: LocalCluster) -> Iterator[ManagedProcess]:
    """A 1.7 stand-in run as an operator with head/worker sidecars, `batchScheduler: volcano` and
    ENABLE_INIT_CONTAINER_INJECTION=false, plus a real kube-scheduler answering to `volcano`."""
    operator_config = {"apiVersion": "config.ray.io/v1alpha1", "kind": "Configuration", "batchScheduler": "volcano",
                       "headSidecarContainers": [HEAD_SIDECAR], "workerSidecarContainers": [WORKER_SIDECAR]}
    cluster.start_scheduler({"profiles": [{"schedulerName": "volcano"}]}, name="volcano")
    proc = wait_standin_synced(cluster.start_standin(
        "kuberay-standin-configured", operator_config=operator_config,
        env={"ENABLE_INIT_CONTAINER_INJECTION": "False"}, extra_args=("--serve-label", CONFIGURED)))
    yield proc
    cluster.stop_process(proc.name)
    cluster.stop_scheduler("volcano")


def status(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_rayjob(cluster, namespace, name).get("status") or {})


def events(cluster: LocalCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    found = as_json(core(cluster).list_namespaced_event(namespace, field_selector=f"reason={reason}",
                                                        _preload_content=False))["items"]
    return list(found)


def patch_rayjob(cluster: LocalCluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    cluster.kubectl("patch", "rayjob", name, "-n", namespace, "--type", "merge", "-p", json.dumps({"spec": spec}))


def ray_pods(cluster: LocalCluster, namespace: str, rc_name: str, node_type: str | None = None) -> list[dict[str, Any]]:
    selector = f"{keys.RAY_CLUSTER}={rc_name}" + (f",{keys.RAY_NODE_TYPE}={node_type}" if node_type else "")
    return pods(cluster, namespace, selector)


def live(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def started(cluster: LocalCluster, namespace: str, name: str, workers: int = 2) -> str:
    """Wait for the RayJob's cluster with head + `workers` Running; its name."""
    (rc,) = wait_for(lambda: rayclusters_of(cluster, namespace, name), 30, f"the RayCluster of {name}")
    rc_name = str(rc["metadata"]["name"])
    wait_for(lambda: running_pods_of(cluster, namespace, rc_name, workers + 1), 60, f"{workers + 1} Running pods")
    return rc_name


# ------------------------------------------------------------------------------------------------ naming
@pytest.mark.parametrize(
    ("model", "pattern"),
    [pytest.param(MODEL_17, r"video-job-[bcdfghjklmnpqrstvwxz2456789]{5}", id="1.7: <job>-<5>"),
     pytest.param(MODEL_13, r"video-job-raycluster-[bcdfghjklmnpqrstvwxz2456789]{5}", id="1.3: <job>-raycluster-<5>")],
)
def test_cluster_names_follow_generate_ray_cluster_name(model: str, pattern: str) -> None:
    names = {generate_cluster_name("video-job", model, random.Random(seed)) for seed in range(20)}
    assert all(re.fullmatch(pattern, n) for n in names), names
    assert len(names) == 20


# ------------------------------------------------------------------------------------------------ validation
def valid_job(name: str = "job", **spec: Any) -> dict[str, Any]:
    job = small_rayjob(name, suspend=False)
    job["spec"].update(spec)
    return job


@pytest.mark.parametrize(
    ("job", "message"),
    [
        pytest.param(valid_job("a" * 48), "The RayJob metadata is invalid: RayJob name should be no more than 47 characters",
                     id="a name of 48 characters"),
        pytest.param(valid_job("Job_1"), "The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label",
                     id="a name that is no DNS-1035 label"),
        pytest.param(valid_job(suspend=True, shutdownAfterJobFinishes=False),
                     "The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false is not allowed "
                     "to be suspended", id="suspend without shutdownAfterJobFinishes"),
        pytest.param(valid_job(suspend=True, clusterSelector={"ray.io/cluster": "shared"}),
                     "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation",
                     id="suspend with clusterSelector"),
        pytest.param(valid_job(deletionStrategy={"deletionRules": [
                         {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]}),
                     "The RayJob spec is invalid: spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules "
                     "are mutually exclusive", id="shutdownAfterJobFinishes with deletionRules"),
        pytest.param(valid_job(submissionMode="SidecarMode", submitterPodTemplate={"spec": {"containers": []}}),
                     "Currently, SidecarMode doesn't support SubmitterPodTemplate", id="SidecarMode with a submitter"),
        pytest.param(valid_job(submissionMode="InteractiveMode", backoffLimit=1),
                     "The RayJob spec is invalid: BackoffLimit is incompatible with InteractiveMode",
                     id="InteractiveMode with backoffLimit"),
    ],
)
def test_kuberay_1_7_refuses_what_validate_ray_job_refuses(job: dict[str, Any], message: str) -> None:
    job["metadata"]["namespace"] = "ns"
    refusal = validate_rayjob(with_crd_defaults(job), MODEL_17)
    assert refusal is not None and refusal[1].startswith(message), refusal


def test_min_above_max_replicas_is_refused_since_1_6_only() -> None:
    job = valid_job()
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(minReplicas=3, maxReplicas=2)
    assert validate_rayjob(with_crd_defaults(job), MODEL_17) == (
        "InvalidRayJobSpec", "The RayJob spec is invalid: worker group workers has minReplicas 3 greater than "
        "maxReplicas 2")
    assert validate_rayjob(with_crd_defaults(job), MODEL_13) is None
    assert validate_rayjob(with_crd_defaults(valid_job()), MODEL_17) is None


@pytest.mark.parametrize("kuberay_model", KUBERAY_MODELS, indirect=True)
def test_suspend_without_shutdown_is_refused_and_1_7_keeps_it_refused(ray: LocalCluster, model_namespace: str,
                                                                      kuberay_model: str) -> None:
    """A RayJob suspended without shutdownAfterJobFinishes: 1.7 sets ValidationFailed with KubeRay's reason and
    message and a Warning event, and stays there once the spec is fixed and the job unsuspended (no case of the
    state machine leaves it); 1.3 only records the event, and the fixed job proceeds."""
    ns = model_namespace
    job = small_rayjob("refused", suspend=True)
    job["spec"]["shutdownAfterJobFinishes"] = False
    ray.create(job, namespace=ns)
    message = "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"
    (event,) = wait_for(lambda: events(ray, ns, "InvalidRayJobSpec"), 30, "the InvalidRayJobSpec event")
    assert event["type"] == "Warning" and message in event["message"]
    if kuberay_model == MODEL_17:
        wait_for(lambda: status(ray, ns, "refused").get("jobDeploymentStatus") == "ValidationFailed", 30,
                 "ValidationFailed")
        got = status(ray, ns, "refused")
        assert (got["reason"], got["message"]) == ("ValidationFailed", f"The RayJob spec is invalid: {message}")
    else:
        assert status(ray, ns, "refused").get("jobDeploymentStatus", "") == ""

    patch_rayjob(ray, ns, "refused", {"shutdownAfterJobFinishes": True, "suspend": False})
    if kuberay_model == MODEL_13:
        wait_for(lambda: rayclusters_of(ray, ns, "refused"), 30, "the fixed job's RayCluster")
        return
    time.sleep(4)  # the 1.3 branch shows the stand-in would have made a cluster by now
    assert status(ray, ns, "refused").get("jobDeploymentStatus") == "ValidationFailed"
    assert rayclusters_of(ray, ns, "refused") == []


def test_a_name_of_48_characters_fails_validation(ray: LocalCluster, model_namespace: str) -> None:
    name = "n" * 48
    ray.create(small_rayjob(name, suspend=False), namespace=model_namespace)
    wait_for(lambda: status(ray, model_namespace, name).get("jobDeploymentStatus") == "ValidationFailed", 30,
             "ValidationFailed")
    assert status(ray, model_namespace, name)["message"] == (
        "The RayJob metadata is invalid: RayJob name should be no more than 47 characters")
    assert rayclusters_of(ray, model_namespace, name) == []


# ------------------------------------------------------------------------------------------------ containers
def test_workers_get_wait_gcs_ready_and_an_autoscaling_head_gets_the_autoscaler(ray: LocalCluster,
                                                                                model_namespace: str) -> None:
    """enableInTreeAutoscaling: the head gets the `autoscaler` container (500m/512Mi requests = limits) and runs as
    the cluster-named ServiceAccount the stand-in creates; every worker gets `wait-gcs-ready` (200m/256Mi)."""
    ns = model_namespace
    job = small_rayjob("scaled", suspend=False, run_seconds="600")
    job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "scaled")
    (head,) = ray_pods(ray, ns, rc_name, "head")
    assert [c["name"] for c in head["spec"]["containers"]] == ["ray", "autoscaler"]
    assert head["spec"]["containers"][1]["resources"] == {
        "requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    assert head["spec"]["serviceAccountName"] == rc_name
    account = as_json(core(ray).read_namespaced_service_account(rc_name, ns, _preload_content=False))
    assert [o["name"] for o in account["metadata"]["ownerReferences"]] == [rc_name]
    for worker in ray_pods(ray, ns, rc_name, "worker"):
        assert [(c["name"], c["resources"]["requests"]) for c in worker["spec"]["initContainers"]] == [
            ("wait-gcs-ready", {"cpu": "200m", "memory": "256Mi"})]
        assert [c["name"] for c in worker["spec"]["containers"]] == ["ray"]


def test_operator_sidecars_and_the_batch_scheduler_come_from_the_operator_config(
        ray: LocalCluster, configured_standin: ManagedProcess) -> None:
    """The Configuration's headSidecarContainers/workerSidecarContainers are appended to every head/worker;
    `batchScheduler: volcano` overwrites schedulerName on the Ray pods and the submitter's pod;
    ENABLE_INIT_CONTAINER_INJECTION=False drops wait-gcs-ready."""
    ns = ray.create_namespace(f"configured-{random.randrange(16**4):04x}", {keys.TEST_KUBERAY_STANDIN: CONFIGURED})
    try:
        job = small_rayjob("sidecars", suspend=False, run_seconds="600")
        job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["schedulerName"] = "default-scheduler"
        ray.create(job, namespace=ns)
        rc_name = started(ray, ns, "sidecars")
        (head,) = ray_pods(ray, ns, rc_name, "head")
        workers = ray_pods(ray, ns, rc_name, "worker")
        assert [c["name"] for c in head["spec"]["containers"]] == ["ray", HEAD_SIDECAR["name"]]
        assert head["spec"]["containers"][1]["resources"] == HEAD_SIDECAR["resources"]
        for worker in workers:
            assert [c["name"] for c in worker["spec"]["containers"]] == ["ray", WORKER_SIDECAR["name"]]
            assert "initContainers" not in worker["spec"]
        assert {p["spec"]["schedulerName"] for p in [head, *workers]} == {"volcano"}
        (submitter,) = wait_for(lambda: [p for p in pods(ray, ns, f"{keys.JOB_NAME_LABEL}=sidecars")
                                         if p["spec"].get("nodeName")], 60, "the submitter pod bound")
        assert submitter["spec"]["schedulerName"] == "volcano"
        assert submitter["spec"]["nodeName"] in NODES  # bound by the `volcano` kube-scheduler
    finally:
        ray.delete_namespace(ns)


def test_operator_config_is_checked_as_kuberay_checks_it() -> None:
    both = {"apiVersion": "config.ray.io/v1alpha1", "kind": "Configuration", "batchScheduler": "volcano",
            "enableBatchScheduler": True}
    with pytest.raises(ValueError, match="both feature flags enable-batch-scheduler"):
        OperatorConfig.parse(both, {})
    with pytest.raises(ValueError, match="scheduler is not supported, name=slurm"):
        OperatorConfig.parse({**both, "enableBatchScheduler": False, "batchScheduler": "slurm"}, {})
    plugins = OperatorConfig.parse({**both, "enableBatchScheduler": False, "batchScheduler": "scheduler-plugins"},
                                   {"ENABLE_INIT_CONTAINER_INJECTION": "true"})
    assert (plugins.scheduler_name, plugins.init_container_injection) == ("scheduler-plugins-scheduler", True)
    legacy = OperatorConfig.parse({**both, "batchScheduler": ""}, {"ENABLE_INIT_CONTAINER_INJECTION": "FALSE"})
    assert (legacy.scheduler_name, legacy.init_container_injection) == ("volcano", False)


# ------------------------------------------------------------------------------------------------ pods
def test_pods_are_created_one_by_one_and_a_refused_create_is_retried(ray: LocalCluster, model_namespace: str) -> None:
    """A ResourceQuota lets the head and one big worker in: the second big worker is refused, which ends the pass,
    so the small group after it is not even tried (it would fit); the cluster reports ReplicaFailure
    FailedCreateWorkerPod. Once the quota is raised, the backed-off retry creates the rest."""
    ns = model_namespace
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "cpu"},
             "spec": {"hard": {"requests.cpu": "1700m"}}}
    ray.create(quota, namespace=ns)
    wait_for(lambda: as_json(core(ray).read_namespaced_resource_quota("cpu", ns, _preload_content=False))
             .get("status", {}).get("hard"), 30, "the quota's status")
    job = json.loads(json.dumps(small_rayjob("quota", suspend=False, run_seconds="600")))  # unshare the containers
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    groups[0]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1"
    small = copy.deepcopy(groups[0])
    small.update(groupName="small", replicas=1)
    small["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "100m"  # counts 200m (init)
    groups.append(small)
    ray.create(job, namespace=ns)
    (rc,) = wait_for(lambda: rayclusters_of(ray, ns, "quota"), 30, "the RayCluster of quota")
    rc_name = rc["metadata"]["name"]

    def replica_failure() -> dict[str, Any] | None:
        (cluster,) = rayclusters_of(ray, ns, "quota")
        return next((c for c in (cluster.get("status") or {}).get("conditions") or []
                     if c["type"] == "ReplicaFailure"), None)

    failure = wait_for(replica_failure, 30, "the ReplicaFailure condition")
    assert failure["reason"] == "FailedCreateWorkerPod" and "exceeded quota" in failure["message"]
    time.sleep(2)  # several backed-off retries
    groups_seen = sorted(p["metadata"]["labels"][keys.RAY_GROUP_LABEL] for p in ray_pods(ray, ns, rc_name))
    assert groups_seen == ["headgroup", "workers"]
    assert events(ray, ns, "FailedToCreateWorkerPod")

    core(ray).patch_namespaced_resource_quota("cpu", ns, {"spec": {"hard": {"requests.cpu": "10"}}})
    wait_for(lambda: running_pods_of(ray, ns, rc_name, 4), 60, "head + 2 big + 1 small worker Running")
    wait_for(lambda: replica_failure() is None, 30, "ReplicaFailure cleared")


def test_a_failed_worker_or_head_is_deleted_and_recreated(ray: LocalCluster, model_namespace: str) -> None:
    """shouldDeletePod: a Failed pod (head or worker) is deleted and a new one created in its place."""
    ns = model_namespace
    ray.create(small_rayjob("flaky", suspend=False, run_seconds="600"), namespace=ns)
    rc_name = started(ray, ns, "flaky")
    for node_type in ("worker", "head"):
        victim = ray_pods(ray, ns, rc_name, node_type)[0]["metadata"]["name"]
        core(ray).patch_namespaced_pod_status(victim, ns, {"status": {"phase": "Failed"}})

        def replaced(victim: str = victim, node_type: str = node_type) -> bool:
            now = live(ray_pods(ray, ns, rc_name, node_type))
            names = {p["metadata"]["name"] for p in now}
            return victim not in names and len(now) == (2 if node_type == "worker" else 1)

        wait_for(replaced, 60, f"the failed {node_type} {victim} replaced")
    wait_for(lambda: running_pods_of(ray, ns, rc_name, 3), 60, "3 Running pods again")


def test_changing_replicas_adds_and_removes_workers(ray: LocalCluster, model_namespace: str) -> None:
    ns = model_namespace
    ray.create(small_rayjob("elastic", suspend=False, run_seconds="600"), namespace=ns)
    rc_name = started(ray, ns, "elastic")
    for replicas in (3, 1):
        ray.kubectl("patch", "raycluster", rc_name, "-n", ns, "--type", "json", "-p", json.dumps(
            [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": replicas}]))
        wait_for(lambda r=replicas: len(live(ray_pods(ray, ns, rc_name, "worker"))) == r
                 and running_pods_of(ray, ns, rc_name, r + 1), 60, f"{replicas} workers")


def test_with_autoscaling_only_the_workers_to_delete_go_and_a_foreign_condition_is_kept(
        ray: LocalCluster, model_namespace: str) -> None:
    """reconcilePods@v1.7.0 with enableInTreeAutoscaling: lowering `replicas` deletes nothing (the autoscaler is
    the sole decision-maker); the pods named in scaleStrategy.workersToDelete are deleted. calculateStatus
    deep-copies the status and Status().Update carries the resourceVersion: a condition another writer put on
    the RayCluster survives the stand-in's own status writes."""
    ns = model_namespace
    job = small_rayjob("scaler", suspend=False, run_seconds="600")
    job["spec"]["rayClusterSpec"]["enableInTreeAutoscaling"] = True
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "scaler")
    def add_condition() -> bool:  # read-modify-write, as rayqueue's controller does; a 409: read again
        rc = as_json(client.CustomObjectsApi(ray.api_client).get_namespaced_custom_object(
            keys.RAY_GROUP, keys.RAY_VERSION, ns, keys.RAYCLUSTER_PLURAL, rc_name, _preload_content=False))
        rc["status"]["conditions"].append({"type": keys.RAYQUEUE_QUOTA_CONDITION, "status": "True",
                                           "reason": keys.REASON_QUOTA_EXCEEDED, "message": "from another writer",
                                           "lastTransitionTime": "2026-12-02T00:00:00Z"})
        try:
            client.CustomObjectsApi(ray.api_client).replace_namespaced_custom_object_status(
                keys.RAY_GROUP, keys.RAY_VERSION, ns, keys.RAYCLUSTER_PLURAL, rc_name, rc)
        except client.exceptions.ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    wait_for(add_condition, 30, "our condition written beside the stand-in's status writes")
    ray.kubectl("patch", "raycluster", rc_name, "-n", ns, "--type", "json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}]))
    time.sleep(3)
    workers = live(ray_pods(ray, ns, rc_name, "worker"))
    assert len(workers) == 2, "autoscaling on: replicas alone deletes no worker"
    doomed = workers[0]["metadata"]["name"]
    ray.kubectl("patch", "raycluster", rc_name, "-n", ns, "--type", "json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": [doomed]}}]))
    wait_for(lambda: [p["metadata"]["name"] for p in live(ray_pods(ray, ns, rc_name, "worker"))]
             == [workers[1]["metadata"]["name"]], 60, f"{doomed} deleted, the other worker kept")
    wait_for(lambda: as_json(client.CustomObjectsApi(ray.api_client).get_namespaced_custom_object(
        keys.RAY_GROUP, keys.RAY_VERSION, ns, keys.RAYCLUSTER_PLURAL, rc_name, _preload_content=False))
        ["status"].get("readyWorkerReplicas") == 1, 60, "the stand-in's own status write (1 ready worker)")
    final = as_json(client.CustomObjectsApi(ray.api_client).get_namespaced_custom_object(
        keys.RAY_GROUP, keys.RAY_VERSION, ns, keys.RAYCLUSTER_PLURAL, rc_name, _preload_content=False))
    kept = [c for c in final["status"]["conditions"] if c["type"] == keys.RAYQUEUE_QUOTA_CONDITION]
    assert [c["message"] for c in kept] == ["from another writer"]
    assert {"HeadPodReady", "RayClusterProvisioned"} <= {c["type"] for c in final["status"]["conditions"]}


@pytest.mark.parametrize("kuberay_model", KUBERAY_MODELS, indirect=True)
def test_suspended_pods_terminate_after_their_grace_and_outlive_suspended(ray: LocalCluster, model_namespace: str,
                                                                          kuberay_model: str) -> None:
    """Suspending waits only for the RayCluster and the submitter Job objects: at Suspended, rayClusterName is
    cleared while the pods (deleted by the garbage collector) are still there, terminating; they are gone after
    their `terminate-seconds` (5 s). A pod whose terminationGracePeriodSeconds is 1 goes after 1 s instead of
    the 600 s it asks for."""
    ns = model_namespace
    job = small_rayjob("graceful", suspend=False, run_seconds="600")
    job["metadata"]["annotations"][keys.TEST_TERMINATE_SECONDS] = "5"
    quick = {"terminationGracePeriodSeconds": 1}
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"].update(quick)
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"] = {
        "annotations": {keys.TEST_TERMINATE_SECONDS: "600"}}
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "graceful")
    wait_for(lambda: pods(ray, ns, f"{keys.JOB_NAME_LABEL}=graceful"), 60, "the submitter pod")

    patch_rayjob(ray, ns, "graceful", {"suspend": True})
    wait_for(lambda: deployment_status(ray, ns, "graceful") == "Suspended", 30, "Suspended")
    got = status(ray, ns, "graceful")
    assert got.get("rayClusterName", "") == "" and got.get("jobStatus", "") == ""
    assert rayclusters_of(ray, ns, "graceful") == []
    assert ray_pods(ray, ns, rc_name, "head"), "the head pod is gone before its 5 s"
    (head,) = wait_for(lambda: [p for p in ray_pods(ray, ns, rc_name, "head") if p["metadata"].get("deletionTimestamp")],
                       5, "the head pod terminating")
    assert head["metadata"]["deletionGracePeriodSeconds"] == 30  # the pod's default grace: KubeRay deletes plainly
    wait_for(lambda: not ray_pods(ray, ns, rc_name, "worker"), 10, "the workers gone after their 1 s grace")
    assert ray_pods(ray, ns, rc_name, "head"), "the head outlived the workers"
    wait_for(lambda: not ray_pods(ray, ns, rc_name), 30, "the head gone after its 5 s")
    wait_for(lambda: not pods(ray, ns, f"{keys.JOB_NAME_LABEL}=graceful"), 30, "the submitter pod gone")


# ------------------------------------------------------------------------------------------------ the state machine
def test_backoff_limit_retries_with_a_new_cluster(ray: LocalCluster, model_namespace: str) -> None:
    """backoffLimit 1 and a Ray job that exits 1: Failed -> Retrying -> New gives a second RayCluster with a new
    name; its failure is final: Failed, `failed: 2`."""
    ns = model_namespace
    job = small_rayjob("retried", suspend=False, run_seconds="1")
    job["metadata"]["annotations"][keys.TEST_EXIT_CODE] = "1"
    job["spec"].update(backoffLimit=1, submitterConfig={"backoffLimit": 0})
    ray.create(job, namespace=ns)
    wait_for(lambda: status(ray, ns, "retried").get("failed") == 2
             and deployment_status(ray, ns, "retried") == "Failed", 120, "the second failure")
    created = [e["message"] for e in events(ray, ns, "CreatedRayCluster")]
    names = sorted(m.rsplit("/", 1)[1] for m in created)
    assert len(names) == 2 and names[0] != names[1], created
    final = status(ray, ns, "retried")
    assert final["rayClusterName"] in names and final["jobStatus"] == "FAILED"
    assert final["reason"] in ("AppFailed", "SubmissionFailed")


def test_interactive_mode_waits_for_the_job_id_and_cannot_be_suspended_there(ray: LocalCluster,
                                                                             model_namespace: str) -> None:
    ns = model_namespace
    job = small_rayjob("interactive", suspend=False, run_seconds="2")
    job["spec"]["submissionMode"] = "InteractiveMode"
    ray.create(job, namespace=ns)
    wait_for(lambda: deployment_status(ray, ns, "interactive") == "Waiting", 60, "Waiting")
    assert status(ray, ns, "interactive").get("jobId", "") == ""
    assert not pods(ray, ns, f"{keys.JOB_NAME_LABEL}=interactive")
    patch_rayjob(ray, ns, "interactive", {"suspend": True})
    time.sleep(3)
    assert deployment_status(ray, ns, "interactive") == "Waiting"
    assert rayclusters_of(ray, ns, "interactive")
    patch_rayjob(ray, ns, "interactive", {"suspend": False, "jobId": "my-driver"})
    wait_for(lambda: deployment_status(ray, ns, "interactive") == "Complete", 60, "Complete")
    assert status(ray, ns, "interactive")["jobId"] == "my-driver"


def test_delete_workers_rule_keeps_the_head(ray: LocalCluster, model_namespace: str) -> None:
    """deletionRules DeleteWorkers on SUCCEEDED: suspendWorkerGroups sets `suspend` on every worker group, the
    workers are deleted and the head and the RayCluster stay."""
    ns = model_namespace
    job = small_rayjob("thrifty", suspend=False, run_seconds="3")
    job["spec"]["shutdownAfterJobFinishes"] = False
    job["spec"]["deletionStrategy"] = {"deletionRules": [
        {"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}}]}
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "thrifty")
    wait_for(lambda: deployment_status(ray, ns, "thrifty") == "Complete", 60, "Complete")
    wait_for(lambda: not ray_pods(ray, ns, rc_name, "worker"), 30, "the workers deleted")
    (cluster,) = rayclusters_of(ray, ns, "thrifty")
    assert [g.get("suspend") for g in cluster["spec"]["workerGroupSpecs"]] == [True]
    assert live(ray_pods(ray, ns, rc_name, "head"))


def test_a_deleted_rayjob_loses_its_finalizer_and_its_cluster(ray: LocalCluster, model_namespace: str) -> None:
    ns = model_namespace
    ray.create(small_rayjob("gone", suspend=False, run_seconds="600"), namespace=ns)
    rc_name = started(ray, ns, "gone")
    assert get_rayjob(ray, ns, "gone")["metadata"]["finalizers"] == ["ray.io/rayjob-finalizer"]
    custom(ray).delete_namespaced_custom_object(keys.RAY_GROUP, keys.RAY_VERSION, ns, keys.RAYJOB_PLURAL, "gone")

    def rayjob_gone() -> bool:
        try:
            get_rayjob(ray, ns, "gone")
        except client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(rayjob_gone, 30, "the RayJob deleted")
    wait_for(lambda: not rayclusters_of(ray, ns, "gone"), 30, "its RayCluster garbage-collected")
    wait_for(lambda: not ray_pods(ray, ns, rc_name), 30, "its pods garbage-collected")


def test_unsuspending_a_job_created_suspended_makes_its_first_cluster(ray: LocalCluster, model_namespace: str) -> None:
    ns = model_namespace
    ray.create(small_rayjob("later", suspend=True), namespace=ns)
    wait_for(lambda: deployment_status(ray, ns, "later") == "Suspended", 30, "Suspended")
    assert status(ray, ns, "later").get("rayClusterName", "") == ""
    unsuspend(ray, ns, "later")
    rc_name = started(ray, ns, "later")
    assert status(ray, ns, "later")["rayClusterName"] == rc_name


def test_a_bare_raycluster_suspends_and_resumes_as_kuberay_1_7_does(ray: LocalCluster, model_namespace: str) -> None:
    """reconcilePods / calculateStatus@v1.7.0 with RayClusterStatusConditions on: `spec.suspend` first sets
    RayClusterSuspending, then every pod is deleted (a DeletedPod event), and only once the last one is gone
    (its 3 s termination included) RayClusterSuspended is True, Provisioned False and the state `suspended`.
    Resumed, Suspended goes False and the head and workers are created again; created suspended, a cluster
    never gets a pod."""
    ns = model_namespace
    job = small_rayjob("notebook", suspend=False)
    job["metadata"]["annotations"][keys.TEST_TERMINATE_SECONDS] = "3"
    ray.create(journey.bare_cluster(job), namespace=ns)
    wait_for(lambda: running_pods_of(ray, ns, "notebook", 3), 60, "head + 2 workers Running")
    first = {p["metadata"]["uid"] for p in ray_pods(ray, ns, "notebook")}
    wait_for(lambda: (journey.condition(journey.raycluster(ray, ns, "notebook"), CLUSTER_SUSPENDED) or {}).get("status")
             == "False", 30, "Suspended False on a running cluster")

    ray.kubectl("patch", "raycluster", "notebook", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":true}}')
    suspending = wait_for(lambda: (journey.condition(journey.raycluster(ray, ns, "notebook"), CLUSTER_SUSPENDING) or {})
                          .get("status") == "True" and journey.raycluster(ray, ns, "notebook"), 30, "Suspending")
    assert (journey.condition(suspending, CLUSTER_SUSPENDED) or {}).get("status") == "False"
    wait_for(lambda: all(p["metadata"].get("deletionTimestamp") for p in ray_pods(ray, ns, "notebook")), 30,
             "every pod deleted")
    assert any(e["message"] == f"Deleted Pods for RayCluster {ns}/notebook due to suspension"
               for e in events(ray, ns, "DeletedPod"))
    rc = journey.raycluster(ray, ns, "notebook")
    if ray_pods(ray, ns, "notebook"):  # still terminating: not yet Suspended
        assert (journey.condition(rc, CLUSTER_SUSPENDED) or {}).get("status") != "True"
    done = wait_for(lambda: (journey.condition(journey.raycluster(ray, ns, "notebook"), CLUSTER_SUSPENDED) or {})
                    .get("status") == "True" and journey.raycluster(ray, ns, "notebook"), 30, "Suspended")
    assert ray_pods(ray, ns, "notebook") == []
    assert done["status"]["state"] == "suspended"
    assert (journey.condition(done, CLUSTER_SUSPENDING) or {}).get("status") == "False"
    provisioned = journey.condition(done, "RayClusterProvisioned") or {}
    assert (provisioned.get("status"), provisioned.get("message")) == ("False", "RayCluster has been suspended")

    ray.kubectl("patch", "raycluster", "notebook", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: running_pods_of(ray, ns, "notebook", 3), 60, "head + 2 workers Running again")
    assert not first & {p["metadata"]["uid"] for p in ray_pods(ray, ns, "notebook")}, "new pods, not the old ones"
    resumed = wait_for(lambda: (rc := journey.raycluster(ray, ns, "notebook"))["status"].get("state") == "ready" and rc,
                       30, "ready again")
    assert (journey.condition(resumed, CLUSTER_SUSPENDED) or {}).get("status") == "False"

    ray.create({**journey.bare_cluster(job, "parked"), "spec": {**job["spec"]["rayClusterSpec"], "suspend": True}},
               namespace=ns)
    parked = wait_for(lambda: (journey.condition(journey.raycluster(ray, ns, "parked"), CLUSTER_SUSPENDED) or {})
                      .get("status") == "True" and journey.raycluster(ray, ns, "parked"), 30, "created Suspended")
    assert parked["status"]["state"] == "suspended" and ray_pods(ray, ns, "parked") == []


def test_sidecar_mode_runs_the_submitter_in_the_head(ray: LocalCluster, model_namespace: str) -> None:
    """SidecarMode (constructRayClusterForRayJob): the head gets the `ray-job-submitter` container with
    KubeRay's submitter resources and restartPolicy Never, the cluster `ray.io/disable-provisioned-head-restart`;
    there is no submitter Job; the RayJob completes when that container exits 0."""
    ns = model_namespace
    job = small_rayjob("sidecar", suspend=False, run_seconds="4")
    job["spec"]["submissionMode"] = "SidecarMode"
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "sidecar")
    (head,) = ray_pods(ray, ns, rc_name, "head")
    assert [c["name"] for c in head["spec"]["containers"]] == ["ray", "ray-job-submitter"]
    assert head["spec"]["containers"][1]["resources"] == {
        "requests": keys.DEFAULT_SUBMITTER_REQUESTS, "limits": keys.DEFAULT_SUBMITTER_LIMITS}
    assert head["spec"]["restartPolicy"] == "Never"
    (cluster,) = rayclusters_of(ray, ns, "sidecar")
    assert cluster["metadata"]["annotations"]["ray.io/disable-provisioned-head-restart"] == "true"
    wait_for(lambda: deployment_status(ray, ns, "sidecar") == "Complete", 60, "Complete")
    assert status(ray, ns, "sidecar")["jobStatus"] == "SUCCEEDED"
    assert as_json(client.BatchV1Api(ray.api_client).list_namespaced_job(ns, _preload_content=False))["items"] == []


def offline_standin(**settings: Any) -> KubeRayStandIn:
    """A stand-in that is never started: its pod builders are plain functions of the objects."""
    return KubeRayStandIn(client.ApiClient(), operator_config=OperatorConfig(**settings), namespace="ns")


def ray_cluster(labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    job = small_rayjob("job", suspend=False)
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "job-x2k4z", "namespace": "ns", "uid": "u1", "labels": labels or {}},
            "spec": {**job["spec"]["rayClusterSpec"], **spec}}


def test_scheduler_plugins_names_its_instance_and_labels_gang_pods_with_their_parent() -> None:
    standin = offline_standin(batch_scheduler="scheduler-plugins")
    gang = ray_cluster({keys.GANG_ENABLED_LABEL: "true"})
    spec = gang["spec"]
    worker = standin._worker_pod_body(gang, spec, spec["workerGroupSpecs"][0], 0)
    head = standin._head_pod_body(gang, spec)
    for pod in (worker, head):
        assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
        assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "job-x2k4z"
    plain = ray_cluster()
    assert "scheduling.x-k8s.io/pod-group" not in standin._head_pod_body(plain, plain["spec"])["metadata"]["labels"]
    assert "schedulerName" not in offline_standin()._head_pod_body(plain, plain["spec"])["spec"]


def test_autoscaler_options_resources_replace_the_autoscaler_defaults() -> None:
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    cluster = ray_cluster(enableInTreeAutoscaling=True, autoscalerOptions={"resources": resources})
    head = offline_standin()._head_pod_body(cluster, cluster["spec"])
    (autoscaler,) = [c for c in head["spec"]["containers"] if c["name"] == "autoscaler"]
    assert autoscaler["resources"] == resources
    assert head["spec"]["serviceAccountName"] == "job-x2k4z"


def test_objects_managed_by_another_controller_are_left_alone() -> None:
    assert managed_elsewhere({"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}})
    assert not managed_elsewhere({"spec": {"managedBy": "ray.io/kuberay-operator"}})
    assert not managed_elsewhere({"spec": {}})


# ------------------------------------------------------------------------------------------------ issue 23, item 6
TIMEOUTS = "timeouts"  # the serve label of the stand-in with short Running-state timeouts


@pytest.fixture(scope="module")
def timeouts_standin(cluster: LocalCluster) -> Iterator[ManagedProcess]:
    """A 1.7 stand-in with KubeRay's Running-state timeouts shortened through KubeRay's own environment variables
    (RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS, RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS: 3 s)."""
    proc = wait_standin_synced(cluster.start_standin(
        "kuberay-standin-timeouts", extra_args=("--serve-label", TIMEOUTS),
        env={"RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS": "3", "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS": "3"}))
    yield proc
    cluster.stop_process(proc.name)


def pod_labels(found: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [p["metadata"]["labels"] for p in found]


@pytest.mark.parametrize("edit", ["runtimeEnvYAML list", "refusal switch"])
def test_a_running_job_refused_on_a_later_reconcile_fails_validation_and_keeps_its_cluster(
        ray: LocalCluster, model_namespace: str, edit: str) -> None:
    """validateRayJob runs on every reconcile (Reconcile@v1.7.0): a Running job edited to a runtimeEnvYAML that is
    a YAML list (UnmarshalRuntimeEnvYAML decodes into a map), or annotated with the stand-in's refusal switch (a
    rule rayqueue does not model), goes ValidationFailed with KubeRay's message; nothing deletes its RayCluster,
    whose pods run on."""
    ns = model_namespace
    ray.create(small_rayjob("edited", suspend=False, run_seconds="600"), namespace=ns)
    rc_name = started(ray, ns, "edited")
    wait_for(lambda: deployment_status(ray, ns, "edited") == "Running", 30, "Running")
    if edit == "runtimeEnvYAML list":
        patch_rayjob(ray, ns, "edited", {"runtimeEnvYAML": "- pip\n- numpy\n"})
        message = ("failed to unmarshal RuntimeEnvYAML: - pip\n- numpy\n: error unmarshaling JSON: while decoding "
                   "JSON: json: cannot unmarshal array into Go value of type types.RuntimeEnvType")
    else:
        ray.kubectl("annotate", "rayjob", "edited", "-n", ns, "rayqueue.test/kuberay-refuses=workers must be even")
        message = "The RayJob spec is invalid: workers must be even"
    wait_for(lambda: deployment_status(ray, ns, "edited") == "ValidationFailed", 30, "ValidationFailed")
    got = status(ray, ns, "edited")
    assert (got["reason"], got["message"]) == ("ValidationFailed", message)
    assert any(message in e["message"] for e in events(ray, ns, "InvalidRayJobSpec"))
    time.sleep(3)
    assert [c["metadata"]["name"] for c in rayclusters_of(ray, ns, "edited")] == [rc_name]
    assert running_pods_of(ray, ns, rc_name, 3), "the refused job's head and 2 workers still run"


def test_upgrade_strategy_on_a_rayjobs_cluster_stops_the_raycluster_controller(ray: LocalCluster,
                                                                             model_namespace: str) -> None:
    """constructRayClusterForRayJob copies rayClusterSpec whole; rayClusterReconcile then refuses the cluster
    (ValidateRayClusterUpgradeOptions: a RayJob's cluster may not set upgradeStrategy): a Warning event, no pod,
    and the job waits in Initializing for a cluster that never becomes ready."""
    ns = model_namespace
    job = small_rayjob("upgrading", suspend=False)
    job["spec"]["rayClusterSpec"]["upgradeStrategy"] = {"type": "Recreate"}
    ray.create(job, namespace=ns)
    (rc,) = wait_for(lambda: rayclusters_of(ray, ns, "upgrading"), 30, "the RayCluster of upgrading")
    rc_name = rc["metadata"]["name"]
    (event,) = wait_for(lambda: events(ray, ns, "InvalidRayClusterSpec"), 30, "the InvalidRayClusterSpec event")
    assert event["type"] == "Warning" and event["involvedObject"]["name"] == rc_name
    assert event["message"] == (f"The RayCluster UpgradeStrategy is invalid {ns}/{rc_name}: upgradeStrategy cannot be "
                                "set when RayCluster is created by RayJob")
    time.sleep(3)
    assert ray_pods(ray, ns, rc_name) == []
    assert deployment_status(ray, ns, "upgrading") == "Initializing"


def test_a_bare_raycluster_of_60_characters_gets_a_warning_and_no_pods(ray: LocalCluster, model_namespace: str) -> None:
    """rayClusterReconcile: ValidateRayClusterMetadata (53 characters at most) refuses it with a Warning event;
    no pod is ever made."""
    ns, name = model_namespace, "c" * 60
    ray.create(journey.bare_cluster(small_rayjob(name, suspend=False)), namespace=ns)
    (event,) = wait_for(lambda: events(ray, ns, "InvalidRayClusterMetadata"), 30, "the InvalidRayClusterMetadata event")
    assert event["message"] == (f"The RayCluster metadata is invalid {ns}/{name}: RayCluster name should be no more "
                                "than 53 characters")
    time.sleep(3)
    assert ray_pods(ray, ns, name) == []


def test_the_legacy_deletion_policy_acts_only_on_succeeded_or_failed_ray_jobs(ray: LocalCluster,
                                                                             model_namespace: str) -> None:
    """handleLegacyDeletionPolicy@v1.7.0 picks onSuccess/onFailure by jobStatus SUCCEEDED/FAILED only: a job Failed
    by activeDeadlineSeconds while its Ray job is RUNNING keeps its cluster for ever (shutdownAfterJobFinishes
    is not consulted once a deletionStrategy is set); the same policy deletes the cluster of a job that succeeds."""
    ns = model_namespace
    legacy = {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteCluster"}}
    late = small_rayjob("late", suspend=False, run_seconds="600")
    late["spec"].update(deletionStrategy=legacy, activeDeadlineSeconds=10)
    quick = small_rayjob("quick", suspend=False, run_seconds="2")
    quick["spec"]["deletionStrategy"] = legacy
    ray.create(late, namespace=ns)
    ray.create(quick, namespace=ns)
    rc_name = started(ray, ns, "late")
    wait_for(lambda: deployment_status(ray, ns, "late") == "Failed", 60, "late Failed by its deadline")
    got = status(ray, ns, "late")
    assert (got["reason"], got["jobStatus"]) == ("DeadlineExceeded", "RUNNING")
    wait_for(lambda: deployment_status(ray, ns, "quick") == "Complete", 60, "quick Complete")
    wait_for(lambda: not rayclusters_of(ray, ns, "quick"), 30, "quick's cluster deleted by onSuccess DeleteCluster")
    assert [c["metadata"]["name"] for c in rayclusters_of(ray, ns, "late")] == [rc_name]
    assert running_pods_of(ray, ns, rc_name, 3), "late's cluster runs on"


@pytest.mark.parametrize(
    ("template", "event"),
    [
        pytest.param({"spec": {"containers": [{"name": "submit", "image": "rayproject/ray:2.36.1"}]}},
                     'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"',
                     id="no restartPolicy: the apiserver refuses the Job"),
        pytest.param({"spec": {"containers": [], "restartPolicy": "Never"}}, None,
                     id="no containers: getSubmitterTemplate panics"),
    ],
)
def test_a_submitter_template_kuberay_cannot_use_leaves_the_job_initializing_with_no_job(
        ray: LocalCluster, model_namespace: str, template: dict[str, Any], event: str | None) -> None:
    """createK8sJobIfNeed@v1.7.0 on every pass once the cluster is ready: a batch/v1 Job whose pod template has no
    restartPolicy Never/OnFailure is refused by the apiserver (FailedToCreateRayJobSubmitter, in a modern
    apiserver's words), one with no containers panics in getSubmitterTemplate; either way no Job, the job stays
    Initializing and its ready cluster runs on."""
    ns = model_namespace
    job = small_rayjob("submitter", suspend=False)
    job["spec"]["submitterPodTemplate"] = template
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "submitter")
    if event is not None:
        (found,) = wait_for(lambda: events(ray, ns, "FailedToCreateRayJobSubmitter"), 30, "the refusal event")
        assert found["message"] == f'Failed to create new Kubernetes Job {ns}/submitter: Job.batch "submitter" is ' \
                                   f"invalid: {event}"
    time.sleep(4)
    assert as_json(client.BatchV1Api(ray.api_client).list_namespaced_job(ns, _preload_content=False))["items"] == []
    assert deployment_status(ray, ns, "submitter") == "Initializing"
    assert running_pods_of(ray, ns, rc_name, 3)


def test_group_labels_override_template_labels_and_num_of_hosts_zero_makes_no_worker(
        ray: LocalCluster, model_namespace: str) -> None:
    """DefaultHeadPodTemplate / DefaultWorkerPodTemplate@v1.7.0: mergeLabels puts headGroupSpec.labels and
    workerGroupSpecs[].labels over the template's (KubeRay's own cluster/group/node-type labels still win);
    GetWorkerGroupDesiredReplicas is replicas x numOfHosts, so a group of numOfHosts 0 has no pod."""
    ns = model_namespace
    job = small_rayjob("labelled", suspend=False, run_seconds="600")
    spec = job["spec"]["rayClusterSpec"]
    spec["headGroupSpec"]["template"]["metadata"] = {"labels": {"tier": "template"}}
    spec["headGroupSpec"]["labels"] = {"tier": "head-group"}
    workers = spec["workerGroupSpecs"][0]
    workers["template"]["metadata"] = {"labels": {"tier": "template", "team": "video"}}
    workers["labels"] = {"tier": "worker-group", "ray.io/group": "elsewhere"}
    spec["workerGroupSpecs"].append({**copy.deepcopy(workers), "groupName": "hostless", "numOfHosts": 0})
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "labelled")
    (head,) = ray_pods(ray, ns, rc_name, "head")
    assert head["metadata"]["labels"]["tier"] == "head-group"
    found = live(ray_pods(ray, ns, rc_name, "worker"))
    assert {(w["ray.io/group"], w["tier"], w["team"]) for w in pod_labels(found)} == {("workers", "worker-group",
                                                                                        "video")}
    assert len(found) == 2, "the numOfHosts: 0 group has no pod"
    wait_for(lambda: journey.raycluster(ray, ns, rc_name)["status"].get("state") == "ready", 30, "ready")


def test_a_multi_host_replica_is_deleted_whole_when_one_of_its_pods_goes(ray: LocalCluster,
                                                                        model_namespace: str) -> None:
    """reconcileMultiHostWorkerGroup@v1.7.0: a group of numOfHosts 2 makes each replica's 2 pods with one
    `ray.io/worker-group-replica-name` and host indices 0 and 1; when someone deletes one of them, the other is
    deleted too (an incomplete replica), and a new replica of 2 pods takes its place."""
    ns = model_namespace
    job = small_rayjob("hosts", suspend=False, run_seconds="600")
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas=1, numOfHosts=2)
    ray.create(job, namespace=ns)
    rc_name = started(ray, ns, "hosts")
    first = live(ray_pods(ray, ns, rc_name, "worker"))
    labels = pod_labels(first)
    assert len({w["ray.io/worker-group-replica-name"] for w in labels}) == 1
    assert sorted(w["ray.io/replica-host-index"] for w in labels) == ["0", "1"]
    old = labels[0]["ray.io/worker-group-replica-name"]
    ray.kubectl("delete", "pod", first[0]["metadata"]["name"], "-n", ns, "--wait=false")

    def replaced() -> bool:
        now = ray_pods(ray, ns, rc_name, "worker")
        names = {w["ray.io/worker-group-replica-name"] for w in pod_labels(now)}
        return len(now) == 2 and old not in names and all(p["status"].get("phase") == "Running" for p in now)

    wait_for(replaced, 60, "the whole replica replaced by a new one")
    assert not {p["metadata"]["uid"] for p in first} & {p["metadata"]["uid"] for p in ray_pods(ray, ns, rc_name)}


def test_workers_to_delete_deletes_a_pod_of_the_namespace_that_is_no_worker(ray: LocalCluster,
                                                                           model_namespace: str) -> None:
    """reconcilePods@v1.7.0 deletes each name of scaleStrategy.workersToDelete as a pod of the cluster's namespace,
    without checking that it belongs to the group (or to the cluster)."""
    ns = model_namespace
    ray.create(small_rayjob("deleter", suspend=False, run_seconds="600"), namespace=ns)
    rc_name = started(ray, ns, "deleter")
    core(ray).create_namespaced_pod(ns, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bystander"},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    ray.kubectl("patch", "raycluster", rc_name, "-n", ns, "--type", "json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": ["bystander"]}}]))
    wait_for(lambda: not [p for p in pods(ray, ns, "") if p["metadata"]["name"] == "bystander"
                          and not p["metadata"].get("deletionTimestamp")], 30, "the bystander pod deleted")
    assert any(e["message"] == f"Deleted pod {ns}/bystander" for e in events(ray, ns, "DeletedWorkerPod"))
    assert running_pods_of(ray, ns, rc_name, 3), "the cluster's own pods are untouched"


@pytest.mark.parametrize(
    ("annotations", "deployment", "job_status", "reason", "message"),
    [
        pytest.param({"rayqueue.test/dashboard-unreachable": "true"}, "Failed", "",
                     "JobStatusCheckTimeoutExceeded", "Job status checks have been failing since ",
                     id="GetJobInfo failing for 3 s: JobStatusCheckTimeoutExceeded"),
        pytest.param({"rayqueue.test/run-seconds": "2", "rayqueue.test/submitter-extra-seconds": "60"}, "Complete",
                     "SUCCEEDED", "JobDeploymentStatusTransitionGracePeriodExceeded",
                     "JobDeploymentStatus does not transition to Complete or Failed within the grace period",
                     id="a submitter outliving its Ray job by 60 s: the 3 s transition grace period"),
        pytest.param({"rayqueue.test/run-seconds": "90", "rayqueue.test/submitter-extra-seconds": "-88"}, "Failed",
                     "FAILED", "JobDeploymentStatusTransitionGracePeriodExceeded", "The RayJob submitter finished at ",
                     id="a Ray job 30 s past its submitter: DefaultSubmitterFinishedTimeout"),
    ],
)
def test_the_running_state_timeouts_end_a_job_kuberay_cannot_follow(
        ray: LocalCluster, timeouts_standin: ManagedProcess, annotations: dict[str, str], deployment: str,
        job_status: str, reason: str, message: str) -> None:
    """Case Running of Reconcile@v1.7.0: checkJobStatusCheckTimeoutAndUpdateStatusIfNeeded,
    checkTransitionGracePeriodAndUpdateStatusIfNeeded and checkSubmitterFinishedTimeoutAndUpdateStatusIfNeeded."""
    ns = ray.create_namespace(f"timeouts-{random.randrange(16**4):04x}", {keys.TEST_KUBERAY_STANDIN: TIMEOUTS})
    try:
        job = small_rayjob("timed", suspend=False, run_seconds="600")
        job["metadata"]["annotations"].update(annotations)
        ray.create(job, namespace=ns)
        started(ray, ns, "timed")
        wait_for(lambda: deployment_status(ray, ns, "timed") == deployment, 90, deployment)
        got = status(ray, ns, "timed")
        assert (got.get("jobStatus", ""), got["reason"]) == (job_status, reason)
        assert got["message"].startswith(message), got["message"]
    finally:
        ray.delete_namespace(ns)
