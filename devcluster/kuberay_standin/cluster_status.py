"""KubeRay's RayCluster status (calculateStatus@v1.7.0): replica counts, state, conditions with their reasons."""

from __future__ import annotations

import copy

from devcluster.kuberay_standin.model import PassError, cluster_spec_with_defaults, desired_workers
from devcluster.kuberay_standin.names import (
    CLUSTER_SUSPENDED,
    CLUSTER_SUSPENDING,
    MODEL_17,
    RAY_NODE_TYPE_LABEL,
    Obj,
)
from devcluster.kuberay_standin.wire import (
    find_condition,
    labels_of,
    meta_of,
    running_and_ready,
    set_condition,
)


def suspend_status(cluster: Obj) -> str:
    """utils.FindRayClusterSuspendStatus@v1.7.0: the type of the Suspending or Suspended condition that is True,
    else ""."""
    for cond in (cluster.get("status") or {}).get("conditions") or []:
        if cond.get("type") in (CLUSTER_SUSPENDING, CLUSTER_SUSPENDED) and cond.get("status") == "True":
            return str(cond["type"])
    return ""


def set_suspend_conditions(conditions: list[Obj], suspending: str, suspend: bool, has_pods: bool, now: str) -> None:
    """calculateStatus@v1.7.0, the suspend switch: Suspending True once spec.suspend is seen; Suspending False,
    Suspended True (and RayClusterProvisioned False, "RayCluster has been suspended") once no pod is left, the
    terminating ones included; Suspended False once spec.suspend is false again."""
    if suspending == CLUSTER_SUSPENDING:
        if not has_pods:
            set_condition(conditions, {"type": "RayClusterProvisioned", "status": "False",
                                       "reason": "RayClusterPodsProvisioning",
                                       "message": "RayCluster has been suspended"}, now)
            set_condition(conditions, {"type": CLUSTER_SUSPENDING, "reason": CLUSTER_SUSPENDING, "status": "False"}, now)
            set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "True"}, now)
    elif suspending == CLUSTER_SUSPENDED:
        if not suspend:
            set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "False"}, now)
    else:
        set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "False"}, now)
        set_condition(conditions, {"type": CLUSTER_SUSPENDING, "reason": CLUSTER_SUSPENDING,
                                   "status": "True" if suspend else "False"}, now)


def calculate_status(cluster: Obj, pods: list[Obj], error: PassError | None, model: str, stamp: str) -> Obj:
    """calculateStatus: the RayCluster's new status (all but lastUpdateTime) from `pods`, every pod labelled with
    the cluster sorted by name, and this pass's `error`."""
    meta, spec = meta_of(cluster), cluster_spec_with_defaults(cluster.get("spec") or {})
    old = cluster.get("status") or {}
    workers = [p for p in pods if labels_of(p).get(RAY_NODE_TYPE_LABEL) == "worker"]
    groups = spec.get("workerGroupSpecs") or []
    desired = sum(desired_workers(g, model) for g in groups)
    new: Obj = copy.deepcopy(old)
    new.update({
        "desiredWorkerReplicas": desired,
        "minWorkerReplicas": sum(int(g.get("minReplicas") or 0) * int(g.get("numOfHosts", 1))
                                 for g in groups if not g.get("suspend")),
        "maxWorkerReplicas": sum(int(g.get("maxReplicas") or 0) * int(g.get("numOfHosts", 1))
                                 for g in groups if not g.get("suspend")),
        "readyWorkerReplicas": sum(1 for p in workers if running_and_ready(p)),
        "availableWorkerReplicas": sum(1 for p in workers if (p.get("status") or {}).get("phase") == "Running"),
        "observedGeneration": meta.get("generation", 0),
    })
    all_running = bool(pods) and all(running_and_ready(p) for p in pods)
    if error is None and len(pods) == desired + 1 and all_running:
        new["state"], new["reason"] = "ready", ""
    if spec.get("suspend") and not pods:
        new["state"] = "suspended"
    if model == MODEL_17:
        conditions = copy.deepcopy(list(old.get("conditions") or []))
        suspending = suspend_status(cluster)
        if error is not None and error.reason:
            set_condition(conditions, {"type": "ReplicaFailure", "status": "True", "reason": error.reason,
                                       "message": str(error)}, stamp)
        elif error is None:
            conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
        head = next((p for p in pods if labels_of(p).get(RAY_NODE_TYPE_LABEL) == "head"), None)
        if head is None:
            set_condition(conditions, {"type": "HeadPodReady", "status": "False", "reason": "HeadPodNotFound",
                                       "message": "Head Pod not found"}, stamp)
        else:
            ready = running_and_ready(head)
            set_condition(conditions, {"type": "HeadPodReady", "status": "True" if ready else "False",
                                       "reason": "HeadPodRunningAndReady" if ready else "HeadPodNotReady",
                                       "message": ""}, stamp)
        provisioned = find_condition(conditions, "RayClusterProvisioned")
        if (provisioned is None or provisioned.get("status") != "True") and suspending != CLUSTER_SUSPENDED:
            set_condition(conditions, {
                "type": "RayClusterProvisioned", "status": "True" if all_running else "False",
                "reason": "AllPodRunningAndReadyFirstTime" if all_running else "RayClusterPodsProvisioning",
                "message": ("All Ray Pods are ready for the first time" if all_running
                            else "RayCluster Pods are being provisioned for first time")}, stamp)
        set_suspend_conditions(conditions, suspending, bool(spec.get("suspend")), bool(pods), stamp)
        new["conditions"] = conditions
    if new.get("state") != old.get("state"):
        new.setdefault("stateTransitionTimes", {})[str(new.get("state"))] = stamp
    return new
