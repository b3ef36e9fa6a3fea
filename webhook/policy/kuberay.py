"""RayJob rules about KubeRay: what it would refuse after admission, what a queue cannot hold, the selected cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common import keys
from common.kuberay_rules import RAY_CLUSTER_SELECTOR_KEY, Problem, rayjob_problems
from common.wire import ShapeError
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.objects import annotations_of, owner_references
from webhook.review import Request, Verdict, deny

__all__ = ["as_mutated", "kuberay_verdict", "selector_target", "shape_denial"]

_KUBERAY_SUSPEND_NEEDS_SHUTDOWN = ("The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false "
                                   "is not allowed to be suspended")
_KUBERAY_RULES_EXCLUDE_SHUTDOWN = ("The RayJob spec is invalid: spec.shutdownAfterJobFinishes and "
                                   "spec.deletionStrategy.deletionRules are mutually exclusive")
_KUBERAY_SELECTOR_NO_SUSPEND = "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation"


def _selector(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    selector = spec.get("clusterSelector") if isinstance(spec, Mapping) else None
    return dict(selector) if isinstance(selector, Mapping) else {}


def as_mutated(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The RayJob as KubeRay will get it from mutate_rayjob: `suspend` and `shutdownAfterJobFinishes` forced to
    true, unless it has a `clusterSelector` (not queued, left as it is). Idempotent."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or _selector(obj):
        return obj
    return {**obj, "spec": {**spec, "suspend": True, "shutdownAfterJobFinishes": True}}


def selector_target(req: Request, facts: ClusterFacts) -> str | None:
    """`namespace/name` of the RayCluster a clusterSelector RayJob's CREATE in a bound namespace selects: the
    adapter reads it (one GET) into `ClusterFacts.selected_clusters` before validation. None otherwise."""
    if req.resource != keys.RAYJOB_PLURAL or req.sub_resource or req.operation != "CREATE":
        return None
    name = _selector(req.obj).get(RAY_CLUSTER_SELECTOR_KEY)
    if not isinstance(name, str) or not name or bound_leaf(facts, req.namespace) is None:
        return None
    return f"{req.namespace}/{name}"


def _kuberay_denial(req: Request, problems: Sequence[Problem], *, update: bool) -> str:
    what = ("this change would make KubeRay refuse the job" if update else
            "KubeRay would refuse this job after admission")
    listed = "; ".join(f"{p.path}: {p.message} [KubeRay {p.function}, {p.since}+]" for p in problems)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return (f"{PREFIX}: RayJob {req.display_name}: rule kuberay-validation: {what} (JobDeploymentStatus "
            f"ValidationFailed, and a refused job would hold its quota), {count}: {listed}")


def _queue_problem(req: Request, obj: Mapping[str, Any], cfg: PolicyConfig) -> str | None:
    """CREATE: what rayqueue's own mutation would turn into a KubeRay refusal, said with why and what instead."""
    name = req.display_name
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    if _selector(obj):
        if spec.get("suspend") is True:
            return (f"{PREFIX}: RayJob {name}: rule cluster-selector: a RayJob with spec.clusterSelector runs on an "
                    "existing RayCluster and is not queued (only its submitter pod is its own, charged by the "
                    f"pod-level quota check); KubeRay refuses to suspend it (\"{_KUBERAY_SELECTOR_NO_SUSPEND}\"): "
                    "remove spec.suspend")
        return None
    strategy = spec.get("deletionStrategy")
    if not isinstance(strategy, Mapping):
        return None
    rules = strategy.get("deletionRules")
    if isinstance(rules, list) and rules:
        return (f"{PREFIX}: RayJob {name}: rule queued-deletion-rules: a RayJob with "
                "spec.deletionStrategy.deletionRules cannot be queued: rayqueue queues a job by suspending it, "
                f"KubeRay suspends only a job with shutdownAfterJobFinishes true (\"{_KUBERAY_SUSPEND_NEEDS_SHUTDOWN}\"), "
                f"and since v1.5 refuses deletionRules with it (\"{_KUBERAY_RULES_EXCLUDE_SHUTDOWN}\"). Use "
                "shutdownAfterJobFinishes: true with ttlSecondsAfterFinished instead (or deletionStrategy.onSuccess "
                "and onFailure with policy DeleteCluster or DeleteSelf)")
    if not cfg.kuberay_gates.ray_job_deletion_policy:
        return None  # KubeRay refuses any deletionStrategy then; kuberay-validation says so in its words
    for when in ("onSuccess", "onFailure"):
        policy = strategy.get(when)
        value = policy.get("policy") if isinstance(policy, Mapping) else None
        if value in ("DeleteWorkers", "DeleteNone"):
            kept = "its Ray head" if value == "DeleteWorkers" else "its whole Ray cluster"
            return (f"{PREFIX}: RayJob {name}: rule queued-cleanup: spec.deletionStrategy.{when}.policy {value} "
                    f"keeps {kept} after the job ends (KubeRay's legacy deletion policy takes precedence over "
                    "shutdownAfterJobFinishes), so the quota the job was admitted with would never be freed; use "
                    "DeleteCluster or DeleteSelf, or leave deletionStrategy out (shutdownAfterJobFinishes: true "
                    "deletes the cluster)")
    return None


def shape_denial(req: Request, cfg: PolicyConfig, exc: ShapeError) -> Verdict:
    """A RayJob rayqueue cannot read (400). When KubeRay would refuse it too (a negative minReplicas is both), the
    tenant hears KubeRay's words first, as for any other job KubeRay refuses."""
    obj = as_mutated(req.obj) if req.operation == "CREATE" else req.obj
    problems = rayjob_problems(obj, cfg.kuberay_gates)
    if problems:
        return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE") + f" (and: {exc})")
    return deny(f"{PREFIX}: RayJob {req.display_name}: {exc}", code=400)


def kuberay_verdict(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict | None:
    """Rule kuberay-validation (and the queue rules above). CREATE: the job as it will be after our mutation
    must pass KubeRay's validation. UPDATE: a change may not add a problem KubeRay would refuse (problems the
    old object already had are tolerated, so the controller's, KubeRay's and the garbage collector's own
    updates of a job that predates the webhook still go through). Applies to every user: an admin's job that
    KubeRay refuses holds its quota just the same."""
    gates = cfg.kuberay_gates
    if req.operation == "CREATE":
        obj = as_mutated(req.obj)
        problem = _queue_problem(req, obj, cfg)
        if problem:
            return deny(problem)
        problems = rayjob_problems(obj, gates)
    else:
        known = {(p.path, p.message) for p in rayjob_problems(req.old, gates)}
        problems = [p for p in rayjob_problems(req.obj, gates) if (p.path, p.message) not in known]
    if problems:
        return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE"))
    target = selector_target(req, facts)
    return _selected_cluster_verdict(req, facts, target) if target is not None else None


def _selected_cluster_verdict(req: Request, facts: ClusterFacts, target: str) -> Verdict | None:
    """Rule cluster-selector-target: a clusterSelector job may run only on a RayCluster that exists, is not
    waiting in a queue and is not another RayJob's. KubeRay itself would wait for a missing or suspended cluster
    (rayjob_controller.go: "RayCluster ... set in the clusterSelector is not found. It must be created manually";
    no submitter until the cluster is Ready); rayqueue refuses instead, because such a job would later share a
    cluster whose capacity the queue admitted for someone else, and it is not itself in any queue."""
    lookup = facts.selected_clusters.get(target)
    head = f"{PREFIX}: RayJob {req.display_name}: rule cluster-selector-target:"
    if lookup is None or lookup.error is not None:
        why = lookup.error if lookup is not None and lookup.error else "it was not read"
        return deny(f"{head} could not check the selected RayCluster {target} ({why}); a clusterSelector job is "
                    "admitted only onto a RayCluster that exists and is not queued")
    if lookup.obj is None:
        return deny(f"{head} the selected RayCluster {target} does not exist: a clusterSelector job runs on an "
                    "existing RayCluster; create the RayCluster first (or give the job a rayClusterSpec to have it "
                    "queued with its own cluster)")
    cluster = lookup.obj
    for ref in owner_references(cluster):
        if isinstance(ref, Mapping) and ref.get("kind") == keys.RAYJOB_KIND:
            return deny(f"{head} the selected RayCluster {target} belongs to RayJob {ref.get('name')!r}: it was "
                        "admitted with that job's quota and goes when that job ends or is requeued; run on a "
                        "RayCluster of your own")
    stamps = annotations_of(cluster)
    spec = cluster.get("spec") if isinstance(cluster.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    waiting = keys.ENQUEUE_TIMESTAMP in stamps and keys.DEQUEUE_TIMESTAMP not in stamps
    if spec.get("suspend") is True or waiting:
        state = "waiting in a queue" if waiting else "suspended"
        return deny(f"{head} the selected RayCluster {target} is {state}: a job on it would run on capacity the "
                    "queue has not admitted; create the job once the RayCluster runs")
    return None
