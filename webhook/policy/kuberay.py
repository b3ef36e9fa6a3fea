"""RayJob rules about KubeRay: what it would refuse after admission, what a queue cannot hold, the selected cluster."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import yaml

from common import keys
from common.kuberay_rules import (
    RAY_CLUSTER_SELECTOR_KEY,
    Problem,
    managed_by_foreign_controller,
    raycluster_problems,
    rayjob_problems,
)
from common.wire import ShapeError
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.objects import annotations_of, owner_references
from webhook.review import Request, Verdict, deny

__all__ = [
    "as_mutated",
    "decode_yaml",
    "kuberay_verdict",
    "managed_by_verdict",
    "raycluster_kuberay_verdict",
    "selector_target",
    "shape_denial",
]

_KUBERAY_SUSPEND_NEEDS_SHUTDOWN = ("The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false "
                                   "is not allowed to be suspended")
_KUBERAY_RULES_EXCLUDE_SHUTDOWN = ("The RayJob spec is invalid: spec.shutdownAfterJobFinishes and "
                                   "spec.deletionStrategy.deletionRules are mutually exclusive")
_KUBERAY_SELECTOR_NO_SUSPEND = "The RayJob spec is invalid: the ClusterSelector mode doesn't support the suspend operation"


def decode_yaml(text: str) -> object:
    """The first YAML document of ``text`` (None when empty), as sigs.k8s.io/yaml reads ``runtimeEnvYAML`` for
    KubeRay's ``UnmarshalRuntimeEnvYAML``; a text that is not YAML raises ValueError with the parser's words."""
    try:
        return next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from exc


def _problems(obj: Mapping[str, Any], cfg: PolicyConfig) -> list[Problem]:
    return rayjob_problems(obj, cfg.kuberay_gates, decode_yaml=decode_yaml)


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


# What KubeRay's refusal does to each queued kind: (its noun, its fate).
_REFUSAL_FATE: Final[Mapping[str, tuple[str, str]]] = {
    keys.RAYJOB_KIND: ("job", "JobDeploymentStatus ValidationFailed, and a refused job would hold its quota"),
    keys.RAYCLUSTER_KIND: ("cluster", "it would never get a pod, and a refused cluster would hold its quota"),
}


def _kuberay_denial(req: Request, problems: Sequence[Problem], *, update: bool, kind: str = keys.RAYJOB_KIND) -> str:
    noun, fate = _REFUSAL_FATE[kind]
    what = (f"this change would make KubeRay refuse the {noun}" if update else
            f"KubeRay would refuse this {noun} after admission")
    listed = "; ".join(f"{p.path}: {p.message} [KubeRay {p.function}, {p.since}+]" for p in problems)
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return f"{PREFIX}: {kind} {req.display_name}: rule kuberay-validation: {what} ({fate}), {count}: {listed}"


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
                f"and since v1.5 refuses deletionRules with it (\"{_KUBERAY_RULES_EXCLUDE_SHUTDOWN}\"). Leave "
                "deletionStrategy out and use shutdownAfterJobFinishes: true with ttlSecondsAfterFinished: KubeRay "
                "then deletes the cluster after every end, Complete or Failed")
    if not cfg.kuberay_gates.ray_job_deletion_policy:
        return None  # KubeRay refuses any deletionStrategy then; kuberay-validation says so in its words
    for when in ("onSuccess", "onFailure"):
        policy = strategy.get(when)
        value = policy.get("policy") if isinstance(policy, Mapping) else None
        if value in ("DeleteWorkers", "DeleteNone"):
            kept = "its Ray head" if value == "DeleteWorkers" else "its whole Ray cluster"
            return (f"{PREFIX}: RayJob {name}: rule queued-cleanup: spec.deletionStrategy.{when}.policy {value} "
                    f"keeps {kept} after the job ends (KubeRay's legacy deletion policy takes precedence over "
                    "shutdownAfterJobFinishes), so the quota the job was admitted with would never be freed; leave "
                    "deletionStrategy out: shutdownAfterJobFinishes: true deletes the cluster after every end, "
                    "Complete or Failed (the legacy DeleteCluster and DeleteSelf act only on SUCCEEDED or FAILED, "
                    "not after a deadline, a submission failure or STOPPED)")
    return None


def shape_denial(req: Request, cfg: PolicyConfig, exc: ShapeError) -> Verdict:
    """A RayJob rayqueue cannot read (400). When KubeRay would refuse it too (a negative minReplicas is both), the
    tenant hears KubeRay's words first, as for any other job KubeRay refuses."""
    obj = as_mutated(req.obj) if req.operation == "CREATE" else req.obj
    problems = _problems(obj, cfg)
    if problems:
        return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE") + f" (and: {exc})")
    return deny(f"{PREFIX}: RayJob {req.display_name}: {exc}", code=400)


def kuberay_verdict(req: Request, facts: ClusterFacts, cfg: PolicyConfig) -> Verdict | None:
    """Rule kuberay-validation (and the queue rules above). CREATE: the job as it will be after our mutation
    must pass KubeRay's validation. UPDATE: a change may not add a problem KubeRay would refuse (problems the
    old object already had are tolerated, so the controller's, KubeRay's and the garbage collector's own
    updates of a job that predates the webhook still go through). Applies to every user: an admin's job that
    KubeRay refuses holds its quota just the same."""
    if req.operation == "CREATE":
        obj = as_mutated(req.obj)
        problem = _queue_problem(req, obj, cfg)
        if problem:
            return deny(problem)
        problems = _problems(obj, cfg)
    else:
        problems = _new_problems(_problems(req.old, cfg), _problems(req.obj, cfg))
    if problems:
        return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE"))
    target = selector_target(req, facts)
    return _selected_cluster_verdict(req, facts, target) if target is not None else None


def _new_problems(before: Sequence[Problem], after: Sequence[Problem]) -> list[Problem]:
    """UPDATE: only the problems the old object did not already have."""
    known = {(p.path, p.message) for p in before}
    return [p for p in after if (p.path, p.message) not in known]


def raycluster_kuberay_verdict(req: Request, cfg: PolicyConfig) -> Verdict | None:
    """Rule kuberay-validation for a bare RayCluster rayqueue queues (``raycluster_problems``: metadata, spec,
    upgrade options, GCS fault tolerance). CREATE: the cluster as rayqueue's mutation leaves it (suspended; the
    suspend changes no verdict). UPDATE: a change may not add a problem, as for a RayJob."""
    gates = cfg.kuberay_gates
    if req.operation == "CREATE":
        problems = raycluster_problems(req.obj, gates)
    else:
        problems = _new_problems(raycluster_problems(req.old, gates), raycluster_problems(req.obj, gates))
    if not problems:
        return None
    return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE", kind=keys.RAYCLUSTER_KIND))


def managed_by_verdict(req: Request, kind: str, queued: bool) -> Verdict | None:
    """Rule managed-by: an object with a foreign ``spec.managedBy`` belongs to another controller (KubeRay skips
    it, ``ManagedByExternalController``) and is not queued; so ``managedBy`` may not be added to or changed on an
    object rayqueue queues, by anyone (KubeRay's CRD makes it immutable through a CEL rule, which apiservers
    before 1.25 do not run)."""
    if req.operation != "UPDATE" or not queued:
        return None
    before, after = managed_by_foreign_controller(req.old), managed_by_foreign_controller(req.obj)
    if before == after:
        return None
    def raw(obj: Mapping[str, Any]) -> object:
        spec = obj.get("spec")
        return spec.get("managedBy") if isinstance(spec, Mapping) else None

    return deny(f"{PREFIX}: {kind} {req.display_name}: rule managed-by: spec.managedBy may not change "
                f"({raw(req.old)!r} -> {raw(req.obj)!r}) on a {kind} rayqueue queues: it would leave the queue holding a claim "
                "that KubeRay no longer serves; create a new object managed by the other controller instead")


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
