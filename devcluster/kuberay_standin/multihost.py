"""KubeRay's multi-host worker groups (raycluster_controller.go:reconcileMultiHostWorkerGroup@v1.7.0), as a plan."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from devcluster.kuberay_standin.model import desired_workers, should_delete_pod
from devcluster.kuberay_standin.names import WORKER_REPLICA_INDEX_LABEL, WORKER_REPLICA_NAME_LABEL, Obj
from devcluster.kuberay_standin.wire import int_or, labels_of, meta_of, random_suffix


@dataclass
class MultiHostPlan:
    """One pass over a multi-host group: pods to delete (each with KubeRay's reason), replicas to create (a new
    replica's name and index, one pod per host), and the error that ends the pass (a requeue), if any."""

    delete: list[tuple[Obj, str]] = field(default_factory=list)
    create: list[tuple[str, int]] = field(default_factory=list)
    error: str | None = None


def is_multi_host(group: Obj) -> bool:
    """reconcilePods@v1.7.0: `NumOfHosts > 1 && features.Enabled(RayMultiHostIndexing)` (the gate is on by default)."""
    return int(group.get("numOfHosts", 1)) > 1


def plan_multi_host_group(group: Obj, pods: list[Obj], autoscaling: bool, rng: random.Random) -> MultiHostPlan:
    """reconcileMultiHostWorkerGroup on `pods`, the group's pods (terminating ones included), `group` with the CRD
    defaults. A replica is the pods sharing one `ray.io/worker-group-replica-name`; a pod without that label is
    no replica's: it is neither counted nor deleted here, so new replicas are made beside it. Go ranges over maps
    in random order; this plan takes replicas by name."""
    hosts = int(group.get("numOfHosts", 1))
    name = str(group.get("groupName", ""))
    replicas: dict[str, list[Obj]] = {}
    for pod in sorted(pods, key=lambda p: str(meta_of(p)["name"])):
        replica = labels_of(pod).get(WORKER_REPLICA_NAME_LABEL)
        if replica is not None:
            replicas.setdefault(replica, []).append(pod)
    plan = MultiHostPlan()
    # 2. A replica missing a pod (deleted by someone else) is deleted whole, and the pass ends.
    for replica, members in sorted(replicas.items()):
        if len(members) < hosts:
            plan.delete = [(p, "cleanup of incomplete multi-host group") for p in members]
            plan.error = f"cleaned up incomplete replica group {replica}, requeueing"
            return plan
    # 3. One unhealthy pod deletes its whole replica; the pass goes on.
    deleted: set[str] = set()
    for pod in sorted(pods, key=lambda p: str(meta_of(p)["name"])):
        if meta_of(pod)["name"] in deleted:
            continue
        unhealthy, reason = should_delete_pod(pod, "worker")
        replica = labels_of(pod).get(WORKER_REPLICA_NAME_LABEL)
        if not unhealthy or replica not in replicas:
            continue
        plan.delete.extend((p, reason) for p in replicas[replica])
        deleted.update(str(meta_of(p)["name"]) for p in replicas[replica])
    # 4. A pod the autoscaler names (only the group's own pods here) deletes its whole replica; the pass ends.
    named = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
    by_autoscaler: dict[str, Obj] = {}
    for pod in pods:
        if meta_of(pod)["name"] in named:
            for member in replicas.get(str(labels_of(pod).get(WORKER_REPLICA_NAME_LABEL)), []):
                by_autoscaler[str(meta_of(member)["name"])] = member
    if by_autoscaler:
        plan.delete.extend((p, "autoscaler scale-down request") for _, p in sorted(by_autoscaler.items()))
        plan.error = f"deleted {len(by_autoscaler)} worker Pods based on ScaleStrategy, requeueing"
        return plan
    # 5. Whole replicas up or down to the desired count.
    valid = {r: m for r, m in replicas.items() if not deleted & {str(meta_of(p)["name"]) for p in m}}
    expected = desired_workers(group)
    if expected % hosts:
        plan.error = (f"desired worker pods ({expected}) is not a multiple of NumOfHosts ({hosts}) for group "
                      f"{name}")
        return plan
    missing = expected // hosts - len(valid)
    if missing > 0:
        used = {int_or(labels_of(m[0]).get(WORKER_REPLICA_INDEX_LABEL), -1) for m in valid.values()}
        index = 0
        for _ in range(missing):
            while index in used:
                index += 1
            used.add(index)
            plan.create.append((f"{name}-{random_suffix(rng)}", index))
    elif missing < 0 and not autoscaling:  # ENABLE_RANDOM_POD_DELETE keeps its default (off)
        for replica in sorted(valid)[:-missing]:
            plan.delete.extend((p, "scaling down") for p in valid[replica])
    return plan
