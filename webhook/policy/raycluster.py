"""RayCluster admission: a bare one (no controller) is queued like a RayJob; a RayJob's own is checked to be its."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common import jobkind, keys
from common.kuberay_rules import managed_by_foreign_controller
from common.rayjob import JobInfo
from common.wire import ShapeError
from webhook.jsonpatch import diff
from webhook.policy import guards
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.kuberay import managed_by_verdict, raycluster_kuberay_verdict
from webhook.policy.objects import Draft, annotations_of, controller, rayjob_controller
from webhook.review import Request, Verdict, allow, deny

__all__ = ["RAYCLUSTER", "mutate_raycluster", "owner_target", "validate_raycluster"]

RAYCLUSTER = guards.QueuedKind(kind=keys.RAYCLUSTER_KIND, noun="cluster", cluster_at=jobkind.RAYCLUSTER.cluster_at,
                        submitter_at=jobkind.RAYCLUSTER.submitter_at,
                        convert=JobInfo.from_raycluster, owned_annotations=keys.CLUSTER_CONTROLLER_OWNED_ANNOTATIONS,
                        unit_name=keys.cluster_queue_unit_name)


def _queued_bare(obj: Mapping[str, Any]) -> bool:
    """A bare RayCluster (no controller) that carries the enqueue stamp: queued on its own."""
    return controller(obj) is None and keys.ENQUEUE_TIMESTAMP in annotations_of(obj)


def owner_target(req: Request, facts: ClusterFacts) -> str | None:
    """`namespace/name` of the RayJob a RayCluster's CREATE in a bound namespace names as its controller: the
    adapter reads it (one GET) into `ClusterFacts.owner_jobs` before validation (rule raycluster-owner). None
    otherwise."""
    if req.resource != keys.RAYCLUSTER_PLURAL or req.sub_resource or req.operation != "CREATE":
        return None
    ref = rayjob_controller(req.obj)
    name = ref.get("name") if ref is not None else None
    if not isinstance(name, str) or not name or bound_leaf(facts, req.namespace) is None:
        return None
    return f"{req.namespace}/{name}"


def mutate_raycluster(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """CREATE of a bare RayCluster (no controller ownerReference: a tenant's interactive cluster) in a bound
    namespace: queued as a RayJob is (rule queued-raycluster): `spec.suspend: true` (KubeRay v1.1+ deletes a
    suspended cluster's pods, docs/kuberay.md), the enqueue stamp, the quota label, gang labels in its pod
    templates, the scheduler name. A cluster a controller owns (a RayJob's, a RayService's) is left as it is.
    UPDATE of a queued one: record a priority change. Idempotent."""
    leaf = bound_leaf(facts, req.namespace)
    if leaf is None:
        return allow()
    if req.operation == "UPDATE":
        return guards.record_priority_change(req, facts, cfg, RAYCLUSTER) if _queued_bare(req.old) else allow()
    if controller(req.obj) is not None:
        return allow()
    manager = managed_by_foreign_controller(req.obj)
    if manager is not None:  # rule managed-by: another controller's cluster, not queued; its pods charged one by one
        return allow(warnings=[f"{PREFIX}: RayCluster {req.display_name} has spec.managedBy {manager!r}: KubeRay "
                               "leaves it to that controller, so rayqueue does not queue it (no QueueUnit, no "
                               "claim); any pods it gets here are checked against the quota one by one"])
    try:
        job = guards.job_info(RAYCLUSTER, req.obj, facts)
    except ShapeError as exc:
        return deny(f"{PREFIX}: RayCluster {req.display_name}: {exc}", code=400)
    draft = Draft(req.obj)
    new = draft.root
    meta = draft.child(new, "metadata")
    stamps = draft.child(meta, "annotations")
    draft.child(new, "spec")["suspend"] = True
    guards.stamp_enqueue(stamps, facts, cfg, (keys.DEQUEUE_TIMESTAMP, keys.PRIORITY_CHANGE_RECORD, keys.ADMITTED_REPLICAS))
    guards.stamp_pod_templates(draft, meta, leaf, job, RAYCLUSTER.templates(new), cfg, gang=job.gang)
    warnings = [f"{PREFIX}: RayCluster {req.display_name} is queued in {leaf.full_name}: it starts (spec.suspend "
                f"false) when its quota allows; see `kubectl get queueunit {keys.cluster_queue_unit_name(req.name)} "
                f"-n {req.namespace}`"] if req.name else []
    warnings.extend(guards.queue_warnings(facts, leaf, job, req.display_name))
    return allow(patch=diff(dict(req.obj), new), warnings=warnings)


def validate_raycluster(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """RayClusters in a bound namespace: the quota label; a RayJob controller only when that RayJob exists with
    that uid (rule raycluster-owner); and for a queued bare cluster the RayJob's tenant guards (see
    `_guard_queued_cluster`)."""
    leaf = guards.labelled_leaf(req, facts)
    if isinstance(leaf, Verdict):
        return leaf
    name = req.display_name
    where = guards.queue_place(leaf)
    if req.operation == "CREATE" and controller(req.obj) is not None:
        ref = rayjob_controller(req.obj)
        if ref is None or cfg.privileged(req.user):
            return allow()  # another controller's cluster (a RayService's): not queued, its pods charged one by one
        return _owner_verdict(req, facts, ref) or allow()
    if req.operation == "CREATE":
        queued = managed_by_foreign_controller(req.obj) is None
    else:
        queued = _queued_bare(req.old)
    if queued:
        verdict = managed_by_verdict(req, keys.RAYCLUSTER_KIND, queued) or raycluster_kuberay_verdict(req, cfg)
        if verdict is not None:
            return verdict
    if req.operation == "UPDATE" and not cfg.privileged(req.user):
        verdict = _guard_cluster_owner(req, queued, where)
        if verdict is not None or not queued:  # a RayJob's (or unqueued) cluster: KubeRay and the autoscaler edit it
            return verdict or allow()
    elif not queued:
        return allow()
    try:
        new = guards.job_info(RAYCLUSTER, req.obj, facts)
        old = guards.job_info(RAYCLUSTER, req.old, facts) if req.operation == "UPDATE" else None
    except ShapeError as exc:
        return deny(f"{PREFIX}: RayCluster {name}: {exc}", code=400)
    if old is None:
        verdict = guards.scheduler_name_denial(req, keys.RAYCLUSTER_KIND, RAYCLUSTER.templates(req.obj), cfg)
        if verdict is not None:
            return verdict
    if cfg.privileged(req.user):
        return allow()
    baseline = 0
    if old is not None:
        verdict = _guard_queued_cluster(req, old, new, where)
        if verdict is not None:
            return verdict
        baseline = old.priority
    return guards.priority_raise(req, f"RayCluster {name}", baseline, new.priority)


def _owner_verdict(req: Request, facts: ClusterFacts, ref: Mapping[str, Any]) -> Verdict | None:
    """Rule raycluster-owner: a RayCluster created with a RayJob as its controller is that job's cluster, not
    queued on its own; it is believed only when the RayJob exists in the namespace with that uid (KubeRay creates a
    job's cluster after reading the job, constructRayClusterForRayJob). A forged reference would only make the
    cluster's pods someone's growth or nobody's, each charged pod by pod; refusing it keeps the queue honest."""
    target = f"{req.namespace}/{ref.get('name')}"
    head = f"{PREFIX}: RayCluster {req.display_name}: rule raycluster-owner:"
    lookup = facts.owner_jobs.get(target)
    if lookup is None or lookup.error is not None:
        why = lookup.error if lookup is not None and lookup.error else "it was not read"
        return deny(f"{head} could not check RayJob {target}, named as its controller ({why})")
    if lookup.obj is None:
        return deny(f"{head} its controller ownerReference names RayJob {target}, which does not exist: a RayJob's "
                    "cluster is created by KubeRay for that job; create a RayCluster without an ownerReference to "
                    "have it queued on its own")
    meta = lookup.obj.get("metadata") if isinstance(lookup.obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    if meta.get("uid") != ref.get("uid"):
        return deny(f"{head} its controller ownerReference names RayJob {target} with uid {ref.get('uid')!r}, but that "
                    f"RayJob's uid is {meta.get('uid')!r}: only the RayJob's own cluster may name it")
    return None


def _guard_cluster_owner(req: Request, queued: bool, where: str) -> Verdict | None:
    """Rule fixed-cluster-owner: a RayCluster's controller may not be added or replaced by a tenant (a queued cluster
    would leave its queue, a RayJob's would become another's); removing it (what the garbage collector does when
    the owner is deleted with orphans) leaves a cluster that is not queued, whose pods are charged one by one."""
    old, new = controller(req.old), controller(req.obj)
    old_uid, new_uid = (old or {}).get("uid"), (new or {}).get("uid")
    if new is None or old_uid == new_uid:
        return None
    state = f"queued {where}" if queued else "in a queued namespace"
    return deny(f"{PREFIX}: RayCluster {req.display_name}: rule fixed-cluster-owner: its controller ownerReference "
                f"may not change ({(old or {}).get('kind')} {old_uid!r} -> {new.get('kind')} {new_uid!r}); the "
                f"cluster is {state}")


def _guard_queued_cluster(req: Request, old: JobInfo, new: JobInfo, where: str) -> Verdict | None:
    """A queued bare RayCluster's tenant guards, as a RayJob's: controller-annotations (with
    rayqueue.io/admitted-replicas), quota-label, resume, admitted-elastic; and admitted-cluster-pods: once admitted, the per-pod
    requests of its head and worker groups are fixed (replicas, minReplicas and maxReplicas may change: pods beyond
    the size it was admitted with are growth, each checked against the quota)."""
    verdict = (guards.guard_queued(req, old, new, RAYCLUSTER, where, f"the cluster is queued {where}")
               or guards.admitted_elastic_denial(req, old, new, RAYCLUSTER, where))
    if verdict is not None:
        return verdict
    admitted = keys.DEQUEUE_TIMESTAMP in annotations_of(req.old)
    if admitted and not old.suspended and not new.suspended:
        before = {("head", ""): old.head_request, **{("worker", g.name): g.pod_request for g in old.worker_groups}}
        after = {("head", ""): new.head_request, **{("worker", g.name): g.pod_request for g in new.worker_groups}}
        for role in sorted(before.keys() & after.keys()):
            if before[role] != after[role]:
                what = "the head" if role[0] == "head" else f"worker group {role[1]!r}"
                return deny(f"{PREFIX}: RayCluster {req.display_name}: rule admitted-cluster-pods: the cluster was "
                            f"admitted {where}; the per-pod request of {what} may not change from {before[role]} to "
                            f"{after[role]} while it runs (replicas may: more pods than admitted are growth, "
                            "checked pod by pod; suspend it to requeue with the new pods)")
    return None
