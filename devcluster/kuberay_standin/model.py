"""KubeRay's pure rules on plain objects: CRD defaults, names and labels, desired replicas, pod deletion, backoff."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping

from devcluster.kuberay_standin.names import (
    APPLICATION_NAME,
    AUTOSCALER_V2,
    COMPONENT_NAME,
    INT32_MAX,
    K8S_JOB_MODE,
    KUBERAY_CONTROLLER,
    KUBERNETES_APP_NAME_LABEL,
    KUBERNETES_CREATED_BY_LABEL,
    MODEL_13,
    MODEL_17,
    POD_NAME_PREFIX_MAX,
    RAY_CLUSTER_LABEL,
    RAY_GROUP_LABEL,
    RAY_IDENTIFIER_LABEL,
    RAY_IS_RAY_NODE_LABEL,
    RAY_NODE_TYPE_LABEL,
    SUBMITTER_CONTAINER,
    SUBMITTER_LIMITS,
    SUBMITTER_REQUESTS,
    TEST_RUN_SECONDS,
    Obj,
)
from devcluster.kuberay_standin.wire import annotations_of, meta_of, random_suffix, seconds_or


def with_crd_defaults(rayjob: Obj) -> Obj:
    """A copy of the RayJob with the defaults KubeRay's CRD schema would have stored."""
    job = copy.deepcopy(rayjob)
    spec = job.setdefault("spec", {})
    spec.setdefault("submissionMode", K8S_JOB_MODE)
    spec.setdefault("backoffLimit", 0)
    spec.setdefault("ttlSecondsAfterFinished", 0)
    if spec.get("rayClusterSpec") is not None:
        spec["rayClusterSpec"] = cluster_spec_with_defaults(spec["rayClusterSpec"])
    return job


def cluster_spec_with_defaults(cluster_spec: Obj) -> Obj:
    spec = copy.deepcopy(cluster_spec)
    for group in spec.get("workerGroupSpecs") or []:
        group.setdefault("replicas", 0)
        group.setdefault("minReplicas", 0)
        group.setdefault("maxReplicas", INT32_MAX)
        group.setdefault("numOfHosts", 1)
    return spec


def desired_workers(group: Obj, model: str = MODEL_17) -> int:
    """utils.GetWorkerGroupDesiredReplicas: clamp(replicas, min, max) x numOfHosts, 0 when suspended.
    1.7 clamps to min first; 1.3 uses max when min > max. `numOfHosts: 0` wants 0 pods (the product is 0; only
    reconcilePods' later arithmetic takes max(1, numOfHosts)); a missing numOfHosts is the CRD default, 1."""
    if group.get("suspend"):
        return 0
    low = int(group.get("minReplicas") or 0)
    high = INT32_MAX if group.get("maxReplicas") is None else int(group["maxReplicas"])
    replicas = group.get("replicas")
    if model == MODEL_13 and low > high:
        count = high
    elif replicas is None or int(replicas) < low:
        count = low
    elif int(replicas) > high:
        count = high
    else:
        count = int(replicas)
    hosts = group.get("numOfHosts")
    return count * (1 if hosts is None else max(0, int(hosts)))


def generate_cluster_name(rayjob_name: str, model: str, rng: random.Random) -> str:
    """utils.GenerateRayClusterName: `<job>-<5>` since v1.4, `<job>-raycluster-<5>` up to v1.3."""
    infix = "-raycluster-" if model == MODEL_13 else "-"
    return f"{rayjob_name}{infix}{random_suffix(rng)}"


def pod_name_prefix(prefix: str, node_type: str) -> str:
    """utils.PodName with isGenerateName: the prefix cut at 50 characters, `-<type>-`."""
    return f"{prefix[:POD_NAME_PREFIX_MAX]}-{node_type}-".lower()


def check_label(value: str) -> str:
    """utils.CheckLabel: over 63 characters, keep the last 63; a leading punctuation becomes `r`."""
    if len(value) > 63:
        value = value[len(value) - 63:]
    if value and not value[0].isalnum():
        value = "r" + value[1:]
    return value


def ray_pod_labels(cluster: str, node_type: str, group: str, template_labels: Mapping[str, str]) -> dict[str, str]:
    """common/pod.go:labelPod: KubeRay's labels; the template may override all but node-type, group, cluster."""
    labels = {
        RAY_IS_RAY_NODE_LABEL: "yes",
        RAY_CLUSTER_LABEL: cluster,
        RAY_NODE_TYPE_LABEL: node_type,
        RAY_GROUP_LABEL: group,
        RAY_IDENTIFIER_LABEL: check_label(f"{cluster}-{node_type}"),
        KUBERNETES_APP_NAME_LABEL: APPLICATION_NAME,
        KUBERNETES_CREATED_BY_LABEL: COMPONENT_NAME,
    }
    for key, value in template_labels.items():
        if key not in (RAY_NODE_TYPE_LABEL, RAY_GROUP_LABEL, RAY_CLUSTER_LABEL):
            labels[key] = value
    return labels


def autoscaling_enabled(cluster_spec: Obj | None) -> bool:
    """utils.IsAutoscalingEnabled."""
    return bool(cluster_spec and cluster_spec.get("enableInTreeAutoscaling"))


def autoscaling_v2(cluster_spec: Obj | None) -> bool:
    """utils.IsAutoscalingV2Enabled@v1.7.0: `autoscalerOptions.version: v2` (whether autoscaling is on or not)."""
    return bool(cluster_spec) and ((cluster_spec or {}).get("autoscalerOptions") or {}).get("version") == AUTOSCALER_V2


def merge_labels(template_labels: Mapping[str, str] | None, group_labels: Mapping[str, str] | None) -> dict[str, str]:
    """common/pod.go:mergeLabels@v1.7.0: the pod template's labels, then the group's top-level `labels` over them."""
    return {**(template_labels or {}), **(group_labels or {})}


def should_delete_pod(pod: Obj, node_type: str) -> tuple[bool, str]:
    """raycluster_controller.go:shouldDeletePod@v1.7.0, head and worker alike."""
    meta, spec, status = meta_of(pod), pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        return True, (f"The {node_type} Pod {meta.get('name')} status is {phase} which is a terminal state. KubeRay "
                      "will delete the Pod and create new Pods in the next reconciliation if necessary.")
    ray_container = ((spec.get("containers") or [{}])[0]).get("name")
    terminated = next((s.get("state", {}).get("terminated") for s in status.get("containerStatuses") or []
                       if s.get("name") == ray_container), None)
    if phase == "Running" and terminated and spec.get("restartPolicy") == "Never":
        return True, (f"The Pod status of the {node_type} Pod {meta.get('name')} is Running, and the Ray container "
                      "terminated; it cannot restart due to its restart policy Never, so KubeRay will delete it.")
    return False, ""


def submitter_container(rayjob: Obj, cluster_spec: Obj) -> Obj:
    """common/job.go:GetDefaultSubmitterContainer + configureSubmitterContainer (command abridged)."""
    head = ((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    status = rayjob.get("status") or {}
    entrypoint = str((rayjob.get("spec") or {}).get("entrypoint") or "").strip()
    return {
        "name": SUBMITTER_CONTAINER,
        "image": ((head.get("containers") or [{}])[0]).get("image", ""),
        "command": ["/bin/bash", "-ce", "--"],
        "args": [f"ray job submit --address http://{status.get('dashboardURL', '')} --submission-id "
                 f"{status.get('jobId', '')} -- {entrypoint}"],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "RAY_DASHBOARD_ADDRESS", "value": str(status.get("dashboardURL", ""))},
                {"name": "RAY_JOB_SUBMISSION_ID", "value": str(status.get("jobId", ""))}],
        "resources": {"requests": dict(SUBMITTER_REQUESTS), "limits": dict(SUBMITTER_LIMITS)},
    }


def managed_elsewhere(obj: Obj) -> bool:
    """utils.ManagedByExternalController: `spec.managedBy` set to anything but KubeRay's own controller."""
    manager = (obj.get("spec") or {}).get("managedBy")
    return bool(manager) and manager != KUBERAY_CONTROLLER


def backoff_seconds(failures: int, cap: float) -> float:
    """controller-runtime's default ItemExponentialFailureRateLimiter (5 ms x 2^n), capped."""
    return float(min(0.005 * 2 ** min(failures, 40), cap))


def run_seconds(rayjob: Obj, default: float) -> float:
    """TEST ONLY: how long the RayJob's "Ray job" runs (its `rayqueue.test/run-seconds`, else `default`)."""
    return seconds_or(annotations_of(rayjob).get(TEST_RUN_SECONDS), default)


def with_status(rayjob: Obj, status: Obj) -> Obj:
    """The RayJob as it will be once `status` is written (what KubeRay's in-memory object holds)."""
    return {**rayjob, "status": status}


class PassError(Exception):
    """A RayCluster pass ended early (reconcilePods returned an error); `reason` is KubeRay's ReplicaFailure reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
