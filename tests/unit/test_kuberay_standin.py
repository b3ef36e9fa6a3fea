"""The KubeRay stand-in's pure rules (devcluster/kuberay_standin/), each against the KubeRay v1.7.0 function it models."""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
from typing import Any
from unittest import mock

import pytest

from devcluster.kuberay_standin import MODEL_13, MODEL_17, OperatorConfig
from devcluster.kuberay_standin.caches import Caches
from devcluster.kuberay_standin.cluster_status import calculate_status
from devcluster.kuberay_standin.model import cluster_spec_with_defaults, desired_workers, with_crd_defaults
from devcluster.kuberay_standin.multihost import plan_multi_host_group
from devcluster.kuberay_standin.pods import head_pod_body, worker_pod_body
from devcluster.kuberay_standin.rayjob import RayJobReconciler
from devcluster.kuberay_standin.running_checks import (
    record_status_check_failure,
    status_check_timeout,
    submitter_finished_timeout,
    transition_grace_period,
)
from devcluster.kuberay_standin.validation import (
    job_restart_policy_problem,
    runtime_env_problem,
    validate_cluster_spec,
    validate_cluster_upgrade_options,
    validate_rayjob,
)

Obj = dict[str, Any]
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TYPE = "types.RuntimeEnvType"


def stamp(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def group(name: str = "workers", **fields: Any) -> Obj:
    return {"groupName": name, "replicas": 2, "minReplicas": 0, "maxReplicas": 10,
            "template": {"metadata": {"labels": {"team": "video", "tier": "template"}},
                         "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.9.0"}]}}, **fields}


def cluster_spec(**fields: Any) -> Obj:
    return {"headGroupSpec": {"template": {"metadata": {"labels": {"tier": "template"}},
                                           "spec": {"containers": [{"name": "ray", "image": "rayproject/ray:2.9.0"}]}}},
            "workerGroupSpecs": [group()], **fields}


def rayjob(name: str = "job", annotations: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": name, "namespace": "ns", "uid": "u1", "annotations": annotations or {}},
            "spec": {"entrypoint": "python x.py", "shutdownAfterJobFinishes": True, "rayClusterSpec": cluster_spec(),
                     **spec}}


def raycluster(labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "job-x2k4z", "namespace": "ns", "uid": "c1", "labels": labels or {}},
            "spec": cluster_spec(**spec)}


# ------------------------------------------------------------------ validateRayJob: runtimeEnvYAML and the switch
@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("- pip\n- numpy\n", "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array "
                     f"into Go value of type {TYPE}", id="a list is refused (it is no map)"),
        pytest.param("pip", f"json: cannot unmarshal string into Go value of type {TYPE}", id="a string is refused"),
        pytest.param("3", f"json: cannot unmarshal number into Go value of type {TYPE}", id="a number is refused"),
        pytest.param("true", f"json: cannot unmarshal bool into Go value of type {TYPE}", id="a bool is refused"),
        pytest.param("pip: [numpy\n", "error converting YAML to JSON: yaml: ", id="text that is not YAML is refused"),
    ],
)
def test_unmarshal_runtime_env_yaml_wants_a_map(text: str, message: str) -> None:
    problem = runtime_env_problem(text)
    assert problem is not None and problem.startswith(f"failed to unmarshal RuntimeEnvYAML: {text}: ")
    assert message in problem


@pytest.mark.parametrize("text", ["", "null", "pip: [numpy]\nenv_vars: {A: '1'}\n"],
                         ids=["empty text", "YAML null", "a map"])
def test_unmarshal_runtime_env_yaml_accepts_a_map_or_nothing(text: str) -> None:
    assert runtime_env_problem(text) is None


@pytest.mark.parametrize("model", [MODEL_17, MODEL_13])
def test_a_runtime_env_list_fails_validate_ray_job_spec_in_both_models(model: str) -> None:
    refusal = validate_rayjob(with_crd_defaults(rayjob(runtimeEnvYAML="- pip\n")), model)
    assert refusal is not None and refusal[0] == "InvalidRayJobSpec"
    assert f"cannot unmarshal array into Go value of type {TYPE}" in refusal[1]


def test_the_test_switch_refuses_a_job_by_a_rule_rayqueue_does_not_model() -> None:
    job = rayjob(annotations={"rayqueue.test/kuberay-refuses": "entrypoint must not mention x.py"})
    assert validate_rayjob(with_crd_defaults(job), MODEL_17) == (
        "InvalidRayJobSpec", "The RayJob spec is invalid: entrypoint must not mention x.py")
    assert validate_rayjob(with_crd_defaults(rayjob()), MODEL_17) is None


# ------------------------------------------------------------------ ValidateRayClusterUpgradeOptions, autoscaler v2
@pytest.mark.parametrize(
    ("labels", "strategy", "message"),
    [
        pytest.param({"ray.io/originated-from-crd": "RayJob"}, {"type": "Recreate"},
                     "upgradeStrategy cannot be set when RayCluster is created by RayJob", id="a RayJob's cluster"),
        pytest.param({}, {"type": "Rolling"}, "The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value Rolling "
                     "is invalid, valid options are Recreate or None", id="an unknown type"),
        pytest.param({}, {"type": "Recreate"}, None, id="a bare cluster may recreate"),
        pytest.param({"ray.io/originated-from-crd": "RayJob"}, {}, None, id="a strategy without a type is no strategy"),
    ],
)
def test_validate_ray_cluster_upgrade_options(labels: dict[str, str], strategy: Obj, message: str | None) -> None:
    assert validate_cluster_upgrade_options(raycluster(labels, upgradeStrategy=strategy)) == message


def test_autoscaler_v2_wants_restart_policy_never_on_every_group() -> None:
    spec = cluster_spec(enableInTreeAutoscaling=True, autoscalerOptions={"version": "v2"})
    spec["workerGroupSpecs"][0]["template"]["spec"]["restartPolicy"] = "Always"
    assert validate_cluster_spec(cluster_spec_with_defaults(spec)) == (
        "restartPolicy for worker group workers should be Never or unset when using autoscaler V2")
    spec["headGroupSpec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert validate_cluster_spec(cluster_spec_with_defaults(spec)) == (
        "restartPolicy for head Pod should be Never or unset when using autoscaler V2")


# ------------------------------------------------------------------ the submitter Job, as the apiserver judges it
@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        pytest.param(None, 'Job.batch "job" is invalid: spec.template.spec.restartPolicy: Required value: valid values: '
                     '"OnFailure", "Never"', id="unset (defaulted to Always) is refused"),
        pytest.param("Always", 'Job.batch "job" is invalid: spec.template.spec.restartPolicy: Required value: valid '
                     'values: "OnFailure", "Never"', id="Always is refused"),
        pytest.param("Sometimes", 'Job.batch "job" is invalid: spec.template.spec.restartPolicy: Unsupported value: '
                     '"Sometimes": supported values: "OnFailure", "Never"', id="an unknown value is refused"),
        pytest.param("Never", None, id="Never is accepted"),
        pytest.param("OnFailure", None, id="OnFailure is accepted"),
    ],
)
def test_a_submitter_job_wants_restart_policy_never_or_on_failure(policy: str | None, problem: str | None) -> None:
    template: Obj = {"spec": {"containers": [{"name": "submitter"}]}}
    if policy is not None:
        template["spec"]["restartPolicy"] = policy
    job = {"metadata": {"name": "job", "namespace": "ns"}, "spec": {"template": template}}
    assert job_restart_policy_problem(job) == problem


# ------------------------------------------------------------------ replicas, labels, containers of the Ray pods
def test_num_of_hosts_zero_wants_no_pods_and_counts_nothing() -> None:
    zero = group(numOfHosts=0, minReplicas=1)
    assert desired_workers(zero) == 0
    assert desired_workers(group()) == 2 and desired_workers(group(numOfHosts=3)) == 6
    status = calculate_status(raycluster(workerGroupSpecs=[zero]), [], None, MODEL_17, stamp(0))
    assert (status["desiredWorkerReplicas"], status["minWorkerReplicas"], status["maxWorkerReplicas"]) == (0, 0, 0)


def test_group_labels_override_template_labels_but_not_kuberay_s_own() -> None:
    cluster = raycluster()
    spec = cluster["spec"]
    spec["headGroupSpec"]["labels"] = {"tier": "head-group", "ray.io/node-type": "worker"}
    spec["workerGroupSpecs"][0]["labels"] = {"tier": "worker-group", "ray.io/group": "other"}
    head = head_pod_body(cluster, spec, OperatorConfig())["metadata"]["labels"]
    worker = worker_pod_body(cluster, spec, spec["workerGroupSpecs"][0], 0, OperatorConfig(), MODEL_17)
    labels = worker["metadata"]["labels"]
    assert (head["tier"], head["ray.io/node-type"]) == ("head-group", "head")
    assert (labels["tier"], labels["team"], labels["ray.io/group"]) == ("worker-group", "video", "workers")
    old = worker_pod_body(cluster, spec, spec["workerGroupSpecs"][0], 0, OperatorConfig(), MODEL_13)
    assert old["metadata"]["labels"]["tier"] == "template", "1.3 has no group-level labels"


def test_a_multi_host_worker_carries_its_replica_name_and_host_index() -> None:
    cluster = raycluster()
    multi = group(numOfHosts=2)
    labels = worker_pod_body(cluster, cluster["spec"], multi, 3, OperatorConfig(), MODEL_17, "workers-abcde", 1)[
        "metadata"]["labels"]
    assert (labels["ray.io/worker-group-replica-index"], labels["ray.io/worker-group-replica-name"],
            labels["ray.io/replica-host-index"]) == ("3", "workers-abcde", "1")
    single = worker_pod_body(cluster, cluster["spec"], group(), 0, OperatorConfig(), MODEL_17)["metadata"]["labels"]
    assert "ray.io/worker-group-replica-name" not in single and single["ray.io/worker-group-replica-index"] == "0"


def test_autoscaler_resources_set_to_nothing_request_nothing() -> None:
    cluster = raycluster(enableInTreeAutoscaling=True, autoscalerOptions={"resources": {}})
    head = head_pod_body(cluster, cluster["spec"], OperatorConfig())
    (autoscaler,) = [c for c in head["spec"]["containers"] if c["name"] == "autoscaler"]
    assert autoscaler["resources"] == {}
    default = raycluster(enableInTreeAutoscaling=True)
    (defaulted,) = [c for c in head_pod_body(default, default["spec"], OperatorConfig())["spec"]["containers"]
                    if c["name"] == "autoscaler"]
    assert defaulted["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}


def test_autoscaler_v2_forces_restart_policy_never_on_head_and_workers() -> None:
    cluster = raycluster(enableInTreeAutoscaling=True, autoscalerOptions={"version": "v2"})
    spec = cluster["spec"]
    assert head_pod_body(cluster, spec, OperatorConfig())["spec"]["restartPolicy"] == "Never"
    worker = worker_pod_body(cluster, spec, spec["workerGroupSpecs"][0], 0, OperatorConfig(), MODEL_17)
    assert worker["spec"]["restartPolicy"] == "Never"
    v1 = raycluster(enableInTreeAutoscaling=True)
    assert "restartPolicy" not in head_pod_body(v1, v1["spec"], OperatorConfig())["spec"]


# ------------------------------------------------------------------ reconcileMultiHostWorkerGroup
def pod(name: str, replica: str | None, index: int = 0, phase: str = "Running") -> Obj:
    labels = {"ray.io/worker-group-replica-index": str(index)}
    if replica is not None:
        labels["ray.io/worker-group-replica-name"] = replica
    return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "ray"}]},
            "status": {"phase": phase}}


def names(plan_pods: list[tuple[Obj, str]]) -> list[str]:
    return [p["metadata"]["name"] for p, _ in plan_pods]


def two_host(replicas: int = 2, **fields: Any) -> Obj:
    return cluster_spec_with_defaults({"workerGroupSpecs": [group(numOfHosts=2, replicas=replicas, **fields)]})[
        "workerGroupSpecs"][0]


def test_a_replica_missing_a_host_is_deleted_whole_and_the_pass_ends() -> None:
    pods = [pod("a1", "w-a"), pod("a2", "w-a"), pod("b1", "w-b", 1)]
    plan = plan_multi_host_group(two_host(), pods, False, random.Random(0))
    assert names(plan.delete) == ["b1"] and plan.create == []
    assert plan.error == "cleaned up incomplete replica group w-b, requeueing"


def test_one_unhealthy_host_deletes_its_whole_replica_which_is_made_again() -> None:
    pods = [pod("a1", "w-a"), pod("a2", "w-a"), pod("b1", "w-b", 1, phase="Failed"), pod("b2", "w-b", 1)]
    plan = plan_multi_host_group(two_host(), pods, False, random.Random(0))
    assert names(plan.delete) == ["b1", "b2"] and plan.error is None
    assert [index for _, index in plan.create] == [1], "replica w-a keeps index 0; the new one takes 1"


def test_a_worker_the_autoscaler_names_deletes_its_whole_replica() -> None:
    pods = [pod("a1", "w-a"), pod("a2", "w-a"), pod("b1", "w-b", 1), pod("b2", "w-b", 1)]
    plan = plan_multi_host_group(two_host(1, scaleStrategy={"workersToDelete": ["b2"]}), pods, True, random.Random(0))
    assert names(plan.delete) == ["b1", "b2"]
    assert plan.error == "deleted 2 worker Pods based on ScaleStrategy, requeueing"


def test_pods_without_a_replica_name_are_no_replica_so_replicas_are_made_beside_them() -> None:
    pods = [pod("x1", None), pod("x2", None)]
    plan = plan_multi_host_group(two_host(1), pods, False, random.Random(0))
    assert plan.delete == [] and plan.error is None
    ((replica, index),) = plan.create
    assert replica.startswith("workers-") and len(replica) == len("workers-") + 5 and index == 0


def test_scaling_down_deletes_whole_replicas_unless_the_autoscaler_decides() -> None:
    pods = [pod("a1", "w-a"), pod("a2", "w-a"), pod("b1", "w-b", 1), pod("b2", "w-b", 1)]
    assert names(plan_multi_host_group(two_host(1), pods, False, random.Random(0)).delete) == ["a1", "a2"]
    assert plan_multi_host_group(two_host(1), pods, True, random.Random(0)).delete == []


# ------------------------------------------------------------------ the Running-state timeouts
def test_the_transition_grace_period_ends_a_running_job_whose_ray_job_ended() -> None:
    running = {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Running", "rayJobInfo": {"endTime": stamp(301)}}
    early = copy.deepcopy(running)
    early["rayJobInfo"]["endTime"] = stamp(299)
    assert not transition_grace_period(early, NOW, 300)
    assert transition_grace_period(running, NOW, 300)
    assert (running["jobDeploymentStatus"], running["reason"]) == (
        "Complete", "JobDeploymentStatusTransitionGracePeriodExceeded")
    failed = {"jobStatus": "FAILED", "jobDeploymentStatus": "Running", "rayJobInfo": {"endTime": stamp(5)}}
    assert transition_grace_period(failed, NOW, 0) and failed["jobDeploymentStatus"] == "Failed"
    assert not transition_grace_period({"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}, NOW, 0)


def test_failing_status_checks_fail_the_job_after_the_timeout() -> None:
    status: Obj = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
    assert record_status_check_failure(status, NOW - dt.timedelta(seconds=300))
    assert not record_status_check_failure(status, NOW), "only the first failure is stamped"
    assert not status_check_timeout(status, NOW - dt.timedelta(seconds=1), 300)
    assert status_check_timeout(status, NOW, 300)
    assert (status["jobDeploymentStatus"], status["reason"], status["message"]) == (
        "Failed", "JobStatusCheckTimeoutExceeded",
        "Job status checks have been failing since 2026-01-02 02:59:05; exceeded timeout of 300s")


def test_a_ray_job_that_outlives_its_submitter_by_30s_fails() -> None:
    status: Obj = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
    assert not submitter_finished_timeout(status, stamp(29), NOW)
    assert not submitter_finished_timeout(status, None, NOW)
    assert submitter_finished_timeout(status, stamp(31), NOW)
    assert (status["jobStatus"], status["jobDeploymentStatus"], status["reason"]) == (
        "FAILED", "Failed", "JobDeploymentStatusTransitionGracePeriodExceeded")
    assert status["message"] == ("The RayJob submitter finished at 2026-01-02 03:03:34 but the ray job did not reach "
                                 "terminal state within 30s")


@pytest.mark.parametrize(
    ("environ", "check", "grace"),
    [
        pytest.param({}, 300, 300, id="unset: both 300 s"),
        pytest.param({"RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS": "20",
                      "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS": "5"}, 20, 5, id="set"),
        pytest.param({"RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS": "0",
                      "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS": "0"}, 300, 0,
                     id="0: the status check keeps its default, the grace period takes it"),
        pytest.param({"RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS": "1m",
                      "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS": "x"}, 300, 300,
                     id="not an integer: defaults"),
    ],
)
def test_the_running_timeouts_come_from_kuberay_s_environment(environ: dict[str, str], check: int, grace: int) -> None:
    config = OperatorConfig.parse(None, environ)
    assert (config.status_check_timeout_seconds, config.transition_grace_period_seconds) == (check, grace)


# ------------------------------------------------------------------ Reconcile: managedBy before anything else
@pytest.mark.parametrize(("manager", "patched"), [("kueue.x-k8s.io/multikueue", False), (None, True)],
                         ids=["another controller's job keeps its finalizer", "KubeRay's own job loses it"])
def test_a_job_managed_elsewhere_is_skipped_before_the_deletion_branch(manager: str | None, patched: bool) -> None:
    job = rayjob(managedBy=manager) if manager else rayjob()
    job["metadata"].update(deletionTimestamp=stamp(1), finalizers=["ray.io/rayjob-finalizer"], resourceVersion="7")
    api = mock.MagicMock()
    api.custom.patch_namespaced_custom_object.return_value.data = json.dumps(
        {**job, "metadata": {**job["metadata"], "finalizers": [], "resourceVersion": "8"}})
    RayJobReconciler(api, Caches(), MODEL_17, OperatorConfig(), 3.0, random.Random(0)).reconcile(job, NOW)
    assert api.custom.patch_namespaced_custom_object.called is patched
