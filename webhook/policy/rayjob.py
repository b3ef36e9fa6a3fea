"""RayJob admission: queued at CREATE (suspended, stamped, labelled), a tenant's updates guarded while it is queued."""

from __future__ import annotations

from common import jobkind, keys
from common.accounting import maximum_request
from common.kuberay_rules import managed_by_foreign_controller
from common.quantity import format_quantity
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import JobInfo
from common.wire import ShapeError
from webhook.jsonpatch import diff
from webhook.policy import guards
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.kuberay import kuberay_verdict, managed_by_verdict, shape_denial
from webhook.policy.objects import Draft, annotations_of, read_path
from webhook.review import Request, Verdict, allow, deny

__all__ = ["RAYJOB", "growth_warning", "mutate_rayjob", "validate_rayjob"]

RAYJOB = guards.QueuedKind(kind=keys.RAYJOB_KIND, noun="job", cluster_at=jobkind.RAYJOB.cluster_at,
                    submitter_at=jobkind.RAYJOB.submitter_at, convert=JobInfo.from_rayjob,
                    owned_annotations=(*keys.CONTROLLER_OWNED_ANNOTATIONS, keys.ELASTIC_TARGET))


def mutate_rayjob(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """CREATE: suspend, shutdownAfterJobFinishes, enqueue stamp, quota and gang labels, scheduler name; a job with a
    clusterSelector is not queued (quota label and scheduler name only, see rule cluster-selector). UPDATE: record
    a priority change (who, old -> new). Idempotent: a second pass changes nothing."""
    leaf = bound_leaf(facts, req.namespace)
    if leaf is None:
        return allow()  # unbound namespace: untouched (a quota label there is refused by validation)
    if req.operation == "UPDATE":
        return guards.record_priority_change(req, facts, cfg, RAYJOB)
    try:
        job = guards.job_info(RAYJOB, req.obj, facts)
    except ShapeError as exc:
        return shape_denial(req, cfg, exc)
    draft = Draft(req.obj)
    new = draft.root
    warnings: list[str] = []
    spec = draft.child(new, "spec")
    meta = draft.child(new, "metadata")
    manager = managed_by_foreign_controller(req.obj)
    queued = not job.cluster_selector and manager is None
    if manager is not None:
        warnings.append(f"{PREFIX}: RayJob {req.display_name} has spec.managedBy {manager!r}: KubeRay leaves it to "
                        "that controller, so rayqueue does not queue it (no QueueUnit, no claim); any pods it gets "
                        f"in {leaf.full_name} are checked against the quota one by one (rule managed-by)")
    if not queued:
        # Rules cluster-selector and managed-by: a job on an existing RayCluster (KubeRay refuses suspend with a
        # clusterSelector, ValidateRayJobSpec) or one another controller manages is not queued; its own pods are
        # charged by the pod-level quota check. Without the enqueue stamp the controller leaves it alone; a client
        # stamp would make it "queued".
        if any(k in annotations_of(new) for k in keys.CONTROLLER_OWNED_ANNOTATIONS):
            owned = draft.child(meta, "annotations")
            for key in keys.CONTROLLER_OWNED_ANNOTATIONS:
                owned.pop(key, None)
    else:
        spec["suspend"] = True
        if spec.get("shutdownAfterJobFinishes") is not True:
            spec["shutdownAfterJobFinishes"] = True
            warnings.append(
                f"{PREFIX}: set spec.shutdownAfterJobFinishes=true on RayJob {req.display_name}: a queued job "
                "must release its Ray cluster when it finishes, or its quota is never freed"
            )
        guards.stamp_enqueue(draft.child(meta, "annotations"), facts, cfg,
                      (keys.DEQUEUE_TIMESTAMP, keys.PRIORITY_CHANGE_RECORD, keys.ELASTIC_TARGET))
    guards.stamp_pod_templates(draft, meta, leaf, job, RAYJOB.templates(new), cfg, gang=job.gang and queued)
    if queued:
        if facts.tree is not None:
            grows = growth_warning(job, leaf, facts.tree, req.display_name)
            if grows:
                warnings.append(f"{PREFIX}: {grows}")
        warnings.extend(guards.queue_warnings(facts, leaf, job, req.display_name))
    return allow(patch=diff(dict(req.obj), new), warnings=warnings)


def growth_warning(job: JobInfo, leaf: QuotaNode, tree: QuotaTree, name: str) -> str | None:
    """Rule growth-bound (a warning, never a refusal; docs/growth.md): an autoscaled job
    (``enableInTreeAutoscaling``) whose maximum (``common.accounting.maximum_request``: worker groups at
    maxReplicas) is above the max of its leaf or an ancestor, or is unbounded (no maxReplicas). The job is
    still admitted at its replicas; workers beyond them are growth and wait for quota pod by pod. Refusing
    would turn away the common autoscaler setup whose maxReplicas is a ceiling the cluster rarely reaches."""
    if not job.autoscaling:
        return None
    most = maximum_request(job)
    admitted = f"it is admitted at its replicas ({job.request}); workers beyond them are growth, each waiting for quota"
    if most is None:
        return (f"RayJob {name} has enableInTreeAutoscaling and a worker group without maxReplicas: it may grow "
                f"without bound; {admitted}")
    for node in tree.path_to_root(leaf.full_name):
        over = [f"{r} {format_quantity(r, most.get(r))} > max {format_quantity(r, node.max[r])}"
                for r in sorted(node.max) if most.get(r) > node.max[r]]
        if over:
            return (f"RayJob {name} could grow to {most} (worker groups at maxReplicas), more than "
                    f"{node.full_name} may ever hold: {'; '.join(over)}; {admitted}, never past that max")
    return None


def validate_rayjob(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict:
    """In a bound namespace: the quota label, the scheduler name, what KubeRay would refuse; for a tenant, the
    preemption notice and, on UPDATE, the queued job's guards; a raised priority needs its permission."""
    leaf = guards.labelled_leaf(req, facts)
    if isinstance(leaf, Verdict):
        return leaf
    try:
        new = guards.job_info(RAYJOB, req.obj, facts)
        old = guards.job_info(RAYJOB, req.old, facts) if req.operation == "UPDATE" else None
    except ShapeError as exc:
        return shape_denial(req, cfg, exc)
    verdict = guards.scheduler_name_denial(req, keys.RAYJOB_KIND, RAYJOB.templates(req.obj), cfg)
    if verdict is None:
        verdict = managed_by_verdict(req, keys.RAYJOB_KIND, keys.ENQUEUE_TIMESTAMP in annotations_of(req.old))
    if verdict is None:
        verdict = kuberay_verdict(req, facts, cfg)
    if verdict is not None:
        return verdict
    if cfg.privileged(req.user):
        return allow()
    verdict = (guards.preemption_notice_denial(req, keys.RAYJOB_KIND) or _template_notice_denial(req)
               or _elastic_target_denial(req))
    if verdict is None and old is not None:
        verdict = _guard_queued_update(req, old, new, guards.queue_place(leaf))
    if verdict is not None:
        return verdict
    baseline = old.priority if old is not None else 0
    return guards.priority_raise(req, f"RayJob {req.display_name}", baseline, new.priority)


def _template_notice_denial(req: Request) -> Verdict | None:
    """Cooperative preemption (docs/preemption.md): rule preemption-notice in the pod templates, from which
    KubeRay would copy it onto pods (it builds each Ray pod from its group's template, annotations included:
    common/pod.go DefaultHeadPodTemplate, DefaultWorkerPodTemplate@v1.7.0); a tenant may set the acknowledgement
    only on a RayJob that has a notice (rule checkpoint-ack), and may remove it."""
    name = req.display_name
    for path, _ in RAYJOB.templates(req.obj):
        found = annotations_of(read_path(req.obj, path))
        if keys.PREEMPTION_NOTICE in found:
            where = ".".join(str(p) for p in path)
            return deny(f"{PREFIX}: RayJob {name}: rule preemption-notice: {where}.metadata.annotations may "
                        f"not carry {keys.PREEMPTION_NOTICE} ({found[keys.PREEMPTION_NOTICE]!r}): "
                        "KubeRay would copy it onto the job's pods, and only the queue controller gives notices")
    old_ann = annotations_of(req.old) if req.operation == "UPDATE" else {}
    ack_before, ack_after = old_ann.get(keys.CHECKPOINTED), annotations_of(req.obj).get(keys.CHECKPOINTED)
    if ack_after is not None and ack_after != ack_before and old_ann.get(keys.PREEMPTION_NOTICE) is None:
        return deny(f"{PREFIX}: RayJob {name}: rule checkpoint-ack: annotation {keys.CHECKPOINTED} "
                    f"({ack_after!r}) acknowledges a preemption notice, and the job has none "
                    f"({keys.PREEMPTION_NOTICE} is not set); set it only once the controller gave one")
    return None


def _elastic_target_denial(req: Request) -> Verdict | None:
    """Rule elastic-target at CREATE (the mutation drops it; this holds where it was skipped): only the queue
    controller writes ``rayqueue.io/elastic-target``, the replicas an elastic job asked for when its dequeue admits
    it smaller (docs/elastic.md); a tenant's would let the expansion raise the job past the replicas it asked for.
    On UPDATE the rule controller-annotations guards it with the other stamps."""
    value = annotations_of(req.obj).get(keys.ELASTIC_TARGET)
    if req.operation != "CREATE" or value is None:
        return None
    return deny(f"{PREFIX}: RayJob {req.display_name}: rule elastic-target: only the queue controller may set "
                f"annotation {keys.ELASTIC_TARGET} ({value!r}): it records the replicas an elastic job asked for "
                "when it is admitted smaller; ask for workers with each group's replicas")


def _guard_queued_update(req: Request, old: JobInfo, new: JobInfo, where: str) -> Verdict | None:
    """A tenant's UPDATE of a RayJob in a bound namespace: rules fixed-cluster-selector, shutdown-after-finish,
    the shared queued guards, and admitted-request."""
    name = req.display_name
    if old.cluster_selector != new.cluster_selector:
        return deny(f"{PREFIX}: RayJob {name}: rule fixed-cluster-selector: spec.clusterSelector is fixed once the "
                    f"job exists ({dict(old.cluster_selector)} -> {dict(new.cluster_selector)}): a job is queued "
                    "with its own cluster or runs on an existing one, and cannot switch (create a new RayJob)")
    old_ann = annotations_of(req.old)
    if keys.ENQUEUE_TIMESTAMP in old_ann and old.shutdown_after_job_finishes and not new.shutdown_after_job_finishes:
        return deny(f"{PREFIX}: RayJob {name}: rule shutdown-after-finish: spec.shutdownAfterJobFinishes may not "
                    f"be set to false on a job managed {where}: its Ray cluster must go when it finishes, or the "
                    "quota it was admitted with is never freed")
    verdict = (guards.guard_queued(req, old, new, RAYJOB, where, f"the job is managed {where}")
               or guards.admitted_elastic_denial(req, old, new, RAYJOB, where))
    if verdict is not None:
        return verdict
    admitted = keys.DEQUEUE_TIMESTAMP in old_ann and not old.suspended and not new.suspended
    if admitted and new.request != old.request:
        return deny(f"{PREFIX}: RayJob {name}: rule admitted-request: the job was admitted {where} for "
                    f"{old.request}; its request may not change to {new.request} while it runs (suspend it "
                    "to requeue with the new request)")
    return None
