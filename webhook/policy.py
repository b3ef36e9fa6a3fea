"""The admission policy (DESIGN §4), pure: each rule a function of one request and one snapshot.

Mutations write into a copy-on-write draft of the object (only the maps and lists on a written path are
copied; the request's object is never changed) and return the JSON patch from old to new. Every denial
names the rule, the object and the numbers or the bound leaf. Nothing here does I/O: a rule that needs a
SubjectAccessReview returns a Verdict that `requires` it, and the adapter performs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import keys
from common.gotime import format_go, parse_go
from common.kuberay_config import batch_scheduler_for_pod_scheduler
from common.kuberay_rules import RAY_CLUSTER_SELECTOR_KEY, FeatureGates, Problem, rayjob_problems
from common.quantity import format_quantity
from common.quota_tree import QuotaNode, QuotaTree, TreeError, validate_tree
from common.rayjob import JobInfo, ShapeError, maximum_request, priority_class_name
from common.resources import Resources
from webhook.board import Board
from webhook.jsonpatch import diff
from webhook.review import Permission, Request, User, Verdict, allow, deny, invalid

__all__ = ["ClusterLookup", "PolicyConfig", "Snapshot", "admit", "as_mutated", "owner_target", "selector_target"]

PREFIX = "rayqueue"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Who may do what. Usernames are exact; groups grant the same as the controller (cluster admins)."""

    controller_users: frozenset[str] = frozenset({"system:serviceaccount:rayqueue:rayqueue-extender"})
    binder_users: frozenset[str] = frozenset(
        {"system:kube-scheduler", "system:serviceaccount:rayqueue:rayqueue-extender",
         "system:serviceaccount:rayqueue:rayqueue-scheduler"}
    )
    admin_groups: frozenset[str] = frozenset({"system:masters"})
    scheduler_name: str | None = None  # the rayqueue scheduler's name, stamped into bound pods when set
    enqueue_tolerance_ns: int = 10 * 10**9  # a client enqueue stamp closer than this to now is kept
    kuberay_gates: FeatureGates = field(default_factory=FeatureGates)  # the KubeRay operator's feature gates (v1.7 defaults)

    def privileged(self, user: User) -> bool:
        return user.username in self.controller_users or bool(self.admin_groups.intersection(user.groups))

    def may_bind(self, user: User) -> bool:
        return user.username in self.binder_users or self.privileged(user)

    @property
    def expected_scheduler(self) -> str:
        return self.scheduler_name or keys.DEFAULT_SCHEDULER


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the webhook knows at decision time: the tree (None until none exists), priority classes, now."""

    tree: QuotaTree | None
    now_ns: int
    priority_classes: Mapping[str, int] = field(default_factory=dict)
    # For tree-update warnings: admitted RayJobs ("ns/name") by namespace. Filled by the adapter, only then.
    admitted_by_namespace: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # For a clusterSelector RayJob's CREATE: the selected RayCluster ("ns/name"), read by the adapter, only then.
    selected_clusters: Mapping[str, ClusterLookup] = field(default_factory=dict)
    # For a RayCluster's CREATE whose controller is a RayJob: that RayJob ("ns/name"), read by the adapter, only then.
    owner_jobs: Mapping[str, ClusterLookup] = field(default_factory=dict)
    # For the create warning (position, free quota, estimate; common/preview.py): what the controller publishes,
    # by watch. None until the Queues and QueueUnits are synced: then no warning.
    board: Board | None = None


@dataclass(frozen=True, slots=True)
class ClusterLookup:
    """What the adapter found when it read a RayCluster (or a RayJob, for rule raycluster-owner): the object, or
    that there is none, or why it could not."""

    obj: Mapping[str, Any] | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------------
def admit(req: Request, snap: Snapshot, cfg: PolicyConfig, *, mutating: bool) -> Verdict:
    """Route one request to its rule. Kinds and operations we do not govern are allowed untouched."""
    route: Callable[[Request, Snapshot, PolicyConfig], Verdict] | None
    if req.resource == "rayjobs" and not req.sub_resource:
        route = _RAYJOB_MUTATE if mutating else _RAYJOB_VALIDATE
    elif (req.resource == "pods" and req.sub_resource == "binding") or (req.resource == "bindings" and not req.sub_resource):
        route = None if mutating else validate_binding  # both endpoints bind: pods/{name}/binding and bindings
    elif req.resource == "pods" and not req.sub_resource:
        route = mutate_pod if mutating else validate_pod
    elif req.resource == keys.QUOTA_TREE_PLURAL and not req.sub_resource:
        route = None if mutating else validate_quota_tree
    elif req.resource == keys.QUEUE_UNIT_PLURAL and not req.sub_resource:
        route = mutate_queue_unit if mutating else None
    elif req.resource == keys.RAYCLUSTER_PLURAL and not req.sub_resource:
        route = mutate_raycluster if mutating else validate_raycluster
    else:
        route = None
    if route is None or req.operation not in ("CREATE", "UPDATE"):
        return allow()
    return route(req, snap, cfg)


def _leaf(snap: Snapshot, namespace: str) -> QuotaNode | None:
    return snap.tree.leaf_for_namespace(namespace) if snap.tree is not None else None


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return dict(labels) if isinstance(labels, dict) else {}


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return dict(ann) if isinstance(ann, dict) else {}


def quota_label_value(leaf: QuotaNode) -> str:
    """The value we stamp: the seed's form, the leaf's dashed path without the root (`algorithm-video`)."""
    return leaf.full_name.split("/", 1)[1].replace("/", "-") if "/" in leaf.full_name else leaf.name


def _label_names_leaf(tree: QuotaTree, value: str, leaf: QuotaNode) -> bool:
    """The label names the namespace's own leaf: one of the leaf's names, even a short name other nodes share
    (the seed has root/devops and root/infrastructure/devops), or anything that resolves to it alone."""
    if value in (leaf.name, leaf.full_name, leaf.dashed_name, quota_label_value(leaf)):
        return True
    node = tree.resolve(value)
    return node is not None and node.full_name == leaf.full_name


def _quota_label_problem(req: Request, snap: Snapshot, obj: Mapping[str, Any]) -> str | None:
    """Rule quota-label: a quota label may name only the leaf bound to the object's namespace."""
    value = _labels(obj).get(keys.QUOTA_NAME)
    if value is None:
        return None
    leaf = _leaf(snap, req.namespace)
    kind = req.kind or "object"
    if leaf is None:
        return (f"{PREFIX}: {kind} {req.display_name}: label {keys.QUOTA_NAME}={value!r} is not allowed: "
                f"namespace {req.namespace!r} is bound to no quota, so it may not charge one")
    assert snap.tree is not None
    if _label_names_leaf(snap.tree, value, leaf):
        return None
    return (f"{PREFIX}: {kind} {req.display_name}: label {keys.QUOTA_NAME}={value!r} names another quota; "
            f"namespace {req.namespace!r} is bound to {leaf.full_name} (use {quota_label_value(leaf)!r}, "
            f"{leaf.full_name!r} or {leaf.dashed_name!r}, or leave the label out)")


# --- RayJob ---------------------------------------------------------------------------------------
_FieldPath = tuple[str | int, ...]
_HEAD_TEMPLATE: _FieldPath = ("spec", "rayClusterSpec", "headGroupSpec", "template")
_SUBMITTER_TEMPLATE: _FieldPath = ("spec", "submitterPodTemplate")


class _Draft:
    """A copy-on-write copy of an admitted object. `root` is a shallow copy; a map or list below it is
    copied (shallowly, once) the first time a write goes through it, everything else stays shared with
    the request, which is never changed. Diffing `root` against the original therefore sees exactly the
    writes, as with a deep copy, at the cost of the written paths only."""

    __slots__ = ("_owned", "root")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.root: dict[str, Any] = dict(obj)
        self._owned: set[int] = {id(self.root)}

    def child(self, parent: Any, key: str | int) -> Any:
        """`parent.setdefault(key, {})` (`parent[key]` for a list), the value made this draft's own when it
        is a map or a list. `parent` must be the draft's own (the root, or a value child() returned)."""
        if isinstance(parent, list):
            assert isinstance(key, int), key
            value = parent[key]
        else:
            fresh: dict[str, Any] = {}
            value = parent.setdefault(key, fresh)  # a non-map parent fails here exactly as setdefault did
            if value is fresh:
                self._owned.add(id(fresh))
                return fresh
        if isinstance(value, tuple):  # not JSON (in-process callers only): written through as a list
            value = list(value)
            parent[key] = value
            self._owned.add(id(value))
        elif isinstance(value, dict | list) and id(value) not in self._owned:
            value = value.copy()
            parent[key] = value
            self._owned.add(id(value))
        return value

    def at(self, path: _FieldPath) -> Any:
        """The value at `path`, every map and list on the way (and the value itself) made the draft's own."""
        node: Any = self.root
        for key in path:
            node = self.child(node, key)
        return node


def _template_paths(job: Mapping[str, Any]) -> list[tuple[_FieldPath, bool]]:
    """Where every pod template of a RayJob is, read-only: head, each worker group, the submitter
    template if any; each with whether it belongs to the gang (head and workers; not the submitter)."""
    spec = job.get("spec", {})  # what the setdefault of the copy it once took gave: None stays None
    cluster = spec.get("rayClusterSpec")
    out: list[tuple[_FieldPath, bool]] = []
    if isinstance(cluster, dict):
        head = cluster.get("headGroupSpec")
        if isinstance(head, dict) and isinstance(head.get("template"), dict):
            out.append((_HEAD_TEMPLATE, True))
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            if isinstance(group, dict) and isinstance(group.get("template"), dict):
                out.append((("spec", "rayClusterSpec", "workerGroupSpecs", i, "template"), True))
    if isinstance(spec.get("submitterPodTemplate"), dict):
        out.append((_SUBMITTER_TEMPLATE, False))
    return out


def _read(obj: Mapping[str, Any], path: _FieldPath) -> Any:
    node: Any = obj
    for key in path:
        node = node[key]
    return node


def _job(req: Request, obj: Mapping[str, Any], snap: Snapshot) -> JobInfo:
    if req.resource == keys.RAYCLUSTER_PLURAL:  # a bare RayCluster, queued as a job of its own
        prio_class = priority_class_name(obj, keys.RAYCLUSTER_KIND)
        value = snap.priority_classes.get(prio_class) if prio_class else None
        return JobInfo.from_raycluster(obj, priority_class_value=value)
    prio_class = priority_class_name(obj)
    value = snap.priority_classes.get(prio_class) if prio_class else None
    return JobInfo.from_rayjob(obj, priority_class_value=value)



def mutate_rayjob(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """CREATE: suspend, shutdownAfterJobFinishes, enqueue stamp, quota and gang labels, scheduler name; a job with a
    clusterSelector is not queued (quota label and scheduler name only, see rule cluster-selector). UPDATE: record
    a priority change (who, old -> new). Idempotent: a second pass changes nothing."""
    leaf = _leaf(snap, req.namespace)
    if leaf is None:
        return allow()  # unbound namespace: untouched (a quota label there is refused by validation)
    if req.operation == "UPDATE":
        return _record_priority_change(req, snap, cfg)
    try:
        job = _job(req, req.obj, snap)
    except ShapeError as exc:
        return _shape_denial(req, cfg, exc)
    draft = _Draft(req.obj)
    new = draft.root
    warnings: list[str] = []
    spec = draft.child(new, "spec")
    meta = draft.child(new, "metadata")
    if job.cluster_selector:
        # Rule cluster-selector: a job on an existing RayCluster is not queued (KubeRay refuses suspend with a
        # clusterSelector, ValidateRayJobSpec); only its submitter pod is its own, charged by the pod-level quota
        # check. Without the enqueue stamp the controller leaves it alone; a client stamp would make it "queued".
        if any(k in _annotations(new) for k in keys.CONTROLLER_OWNED_ANNOTATIONS):
            annotations = draft.child(meta, "annotations")
            for key in keys.CONTROLLER_OWNED_ANNOTATIONS:
                annotations.pop(key, None)
    else:
        annotations = draft.child(meta, "annotations")
        spec["suspend"] = True
        if spec.get("shutdownAfterJobFinishes") is not True:
            spec["shutdownAfterJobFinishes"] = True
            warnings.append(
                f"{PREFIX}: set spec.shutdownAfterJobFinishes=true on RayJob {req.display_name}: a queued job "
                "must release its Ray cluster when it finishes, or its quota is never freed"
            )
        stamp = annotations.get(keys.ENQUEUE_TIMESTAMP)
        if not _fresh(stamp, snap.now_ns, cfg.enqueue_tolerance_ns):
            annotations[keys.ENQUEUE_TIMESTAMP] = format_go(snap.now_ns)
        annotations.pop(keys.DEQUEUE_TIMESTAMP, None)
        annotations.pop(keys.PRIORITY_CHANGE_RECORD, None)
    labels = draft.child(meta, "labels")
    label = labels.setdefault(keys.QUOTA_NAME, quota_label_value(leaf))
    templates = _template_paths(new)
    if job.gang and not job.cluster_selector:
        for path, in_gang in templates:
            if in_gang:
                tlabels = draft.child(draft.child(draft.at(path), "metadata"), "labels")
                tlabels[keys.POD_GROUP_MIN_AVAILABLE] = str(job.min_available)
                tlabels[keys.QUOTA_NAME] = label
    if cfg.scheduler_name:
        for path, _ in templates:
            template = _read(new, path)
            if template.get("spec", {}).get("schedulerName") in (None, "", keys.DEFAULT_SCHEDULER):
                draft.child(draft.at(path), "spec")["schedulerName"] = cfg.scheduler_name
    if snap.tree is not None and not job.cluster_selector:
        grows = growth_warning(job, leaf, snap.tree, req.display_name)
        if grows:
            warnings.append(f"{PREFIX}: {grows}")
    if snap.board is not None and not job.cluster_selector:
        place = snap.board.warning(leaf, job, snap, req.display_name)
        if place:
            warnings.append(f"{PREFIX}: {place}")
    return allow(patch=diff(dict(req.obj), new), warnings=warnings)


def growth_warning(job: JobInfo, leaf: QuotaNode, tree: QuotaTree, name: str) -> str | None:
    """Rule growth-bound (a warning, never a refusal; docs/growth.md): an autoscaled job
    (``enableInTreeAutoscaling``) whose maximum (``common.rayjob.maximum_request``: worker groups at
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


def _fresh(stamp: object, now_ns: int, tolerance_ns: int) -> bool:
    """A client-set enqueue stamp is kept only when it is within the tolerance of now (a reinvocation of
    this webhook, or a clock a few seconds off): an old stamp would jump the queue."""
    if not isinstance(stamp, str):
        return False
    try:
        ns = parse_go(stamp)
    except ValueError:
        return False
    return abs(now_ns - ns) <= tolerance_ns


def _record_priority_change(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    try:
        old, new = _job(req, req.old, snap), _job(req, req.obj, snap)
    except ShapeError:
        return allow()  # validation reports the shape
    if old.priority == new.priority:
        return allow()
    relayed = _annotations(req.obj).get(keys.PRIORITY_CHANGE_RECORD)
    if cfg.privileged(req.user) and relayed and relayed != _annotations(req.old).get(keys.PRIORITY_CHANGE_RECORD):
        return allow()  # the controller relays a QueueUnit's priority change, with the record naming its author
    draft = _Draft(req.obj)
    record = f"{req.user} changed priority {old.priority} -> {new.priority} at {format_go(snap.now_ns)}"
    draft.child(draft.child(draft.root, "metadata"), "annotations")[keys.PRIORITY_CHANGE_RECORD] = record
    return allow(patch=diff(dict(req.obj), draft.root), audit=[f"{req.kind or 'RayJob'} {req.display_name}: {record}"])


def mutate_queue_unit(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """UPDATE that sets spec.priority to something the controller did not write (kube-queue's dynamic
    priority): stamp who did it, for the PriorityChanged event the controller makes when it adopts it."""
    if req.operation != "UPDATE":
        return allow()
    spec = req.obj.get("spec") or {}
    old_spec = req.old.get("spec") or {}
    priority = spec.get("priority") if isinstance(spec, Mapping) else None
    if (not isinstance(priority, int) or isinstance(priority, bool)
            or priority == (old_spec.get("priority") if isinstance(old_spec, Mapping) else None)
            or _annotations(req.obj).get(keys.SYNCED_PRIORITY) == str(priority)):
        return allow()
    draft = _Draft(req.obj)
    stamp = f"{req.user.username} (spec.priority {priority})"  # the controller checks it is this change's
    draft.child(draft.child(draft.root, "metadata"), "annotations")[keys.PRIORITY_CHANGED_BY] = stamp
    return allow(patch=diff(dict(req.obj), draft.root),
                 audit=[f"QueueUnit {req.display_name}: {req.user} set spec.priority {priority}"])


def validate_rayjob(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    problem = _quota_label_problem(req, snap, req.obj)
    if problem:
        return deny(problem)
    leaf = _leaf(snap, req.namespace)
    if leaf is None:
        return allow()
    try:
        new = _job(req, req.obj, snap)
        old = _job(req, req.old, snap) if req.operation == "UPDATE" else None
    except ShapeError as exc:
        return _shape_denial(req, cfg, exc)
    where = f"in queue {leaf.queue_generate_name.rstrip('-')} (quota {leaf.full_name})"
    if cfg.scheduler_name:
        for path, _ in _template_paths(req.obj):
            name = (_read(req.obj, path).get("spec") or {}).get("schedulerName")
            if name not in (None, "", keys.DEFAULT_SCHEDULER, cfg.scheduler_name):
                return deny(f"{PREFIX}: RayJob {req.display_name}: rule scheduler-name: pods of namespace "
                            f"{req.namespace!r} are placed by {cfg.scheduler_name!r}, not {name!r}")
    verdict = _kuberay_verdict(req, snap, cfg)
    if verdict is not None:
        return verdict
    if cfg.privileged(req.user):
        return allow()
    verdict = _guard_preemption(req, "RayJob")
    if verdict is not None:
        return verdict
    if old is not None:
        verdict = _guard_queued_update(req, old, new, where)
        if verdict is not None:
            return verdict
    baseline = old.priority if old is not None else 0
    return _priority_raise(req, f"RayJob {req.display_name}", baseline, new.priority)


# --- RayJob: what KubeRay would refuse (common/kuberay_rules.py), and what a queue cannot hold ----------
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


def selector_target(req: Request, snap: Snapshot) -> str | None:
    """`namespace/name` of the RayCluster a clusterSelector RayJob's CREATE in a bound namespace selects: the
    adapter reads it (one GET) into `Snapshot.selected_clusters` before validation. None otherwise."""
    if req.resource != keys.RAYJOB_PLURAL or req.sub_resource or req.operation != "CREATE":
        return None
    name = _selector(req.obj).get(RAY_CLUSTER_SELECTOR_KEY)
    if not isinstance(name, str) or not name or _leaf(snap, req.namespace) is None:
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


def _shape_denial(req: Request, cfg: PolicyConfig, exc: ShapeError) -> Verdict:
    """A RayJob rayqueue cannot read (400). When KubeRay would refuse it too (a negative minReplicas is both), the
    tenant hears KubeRay's words first, as for any other job KubeRay refuses."""
    obj = as_mutated(req.obj) if req.operation == "CREATE" else req.obj
    problems = rayjob_problems(obj, cfg.kuberay_gates)
    if problems:
        return deny(_kuberay_denial(req, problems, update=req.operation == "UPDATE") + f" (and: {exc})")
    return deny(f"{PREFIX}: RayJob {req.display_name}: {exc}", code=400)


def _kuberay_verdict(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict | None:
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
    target = selector_target(req, snap)
    return _selected_cluster_verdict(req, snap, target) if target is not None else None


def _selected_cluster_verdict(req: Request, snap: Snapshot, target: str) -> Verdict | None:
    """Rule cluster-selector-target: a clusterSelector job may run only on a RayCluster that exists, is not
    waiting in a queue and is not another RayJob's. KubeRay itself would wait for a missing or suspended cluster
    (rayjob_controller.go: "RayCluster ... set in the clusterSelector is not found. It must be created manually";
    no submitter until the cluster is Ready); rayqueue refuses instead, because such a job would later share a
    cluster whose capacity the queue admitted for someone else, and it is not itself in any queue."""
    name = req.display_name
    lookup = snap.selected_clusters.get(target)
    head = f"{PREFIX}: RayJob {name}: rule cluster-selector-target:"
    if lookup is None or lookup.error is not None:
        why = lookup.error if lookup is not None and lookup.error else "it was not read"
        return deny(f"{head} could not check the selected RayCluster {target} ({why}); a clusterSelector job is "
                    "admitted only onto a RayCluster that exists and is not queued")
    if lookup.obj is None:
        return deny(f"{head} the selected RayCluster {target} does not exist: a clusterSelector job runs on an "
                    "existing RayCluster; create the RayCluster first (or give the job a rayClusterSpec to have it "
                    "queued with its own cluster)")
    cluster = lookup.obj
    meta = cluster.get("metadata") if isinstance(cluster.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == keys.RAYJOB_KIND:
            return deny(f"{head} the selected RayCluster {target} belongs to RayJob {ref.get('name')!r}: it was "
                        "admitted with that job's quota and goes when that job ends or is requeued; run on a "
                        "RayCluster of your own")
    annotations = _annotations(cluster)
    spec = cluster.get("spec") if isinstance(cluster.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    waiting = keys.ENQUEUE_TIMESTAMP in annotations and keys.DEQUEUE_TIMESTAMP not in annotations
    if spec.get("suspend") is True or waiting:
        state = "waiting in a queue" if waiting else "suspended"
        return deny(f"{head} the selected RayCluster {target} is {state}: a job on it would run on capacity the "
                    "queue has not admitted; create the job once the RayCluster runs")
    return None


def _guard_preemption(req: Request, kind: str) -> Verdict | None:
    """Cooperative preemption (docs/preemption.md, docs/security.md): only the queue controller writes a
    preemption notice (rule preemption-notice: on the object, and for a RayJob in its pod templates, from
    which KubeRay would copy it onto pods); a tenant may set the acknowledgement only on a RayJob that has a
    notice (rule checkpoint-ack), and may remove it. KubeRay builds each Ray pod from its group's template,
    annotations included (common/pod.go DefaultHeadPodTemplate, DefaultWorkerPodTemplate@v1.7.0 start from
    `headSpec.Template` / `workerSpec.Template`), hence the template check."""
    name = req.display_name
    old_ann = _annotations(req.old) if req.operation == "UPDATE" else {}
    new_ann = _annotations(req.obj)
    before, after = old_ann.get(keys.PREEMPTION_NOTICE), new_ann.get(keys.PREEMPTION_NOTICE)
    if before != after:
        change = "set" if before is None else ("remove" if after is None else "change")
        return deny(f"{PREFIX}: {kind} {name}: rule preemption-notice: only the queue controller may {change} "
                    f"annotation {keys.PREEMPTION_NOTICE} ({before!r} -> {after!r}); {req.user} may not")
    if kind == "RayJob":
        for path, _ in _template_paths(req.obj):
            annotations = _annotations(_read(req.obj, path))
            if keys.PREEMPTION_NOTICE in annotations:
                where = ".".join(str(p) for p in path)
                return deny(f"{PREFIX}: RayJob {name}: rule preemption-notice: {where}.metadata.annotations may "
                            f"not carry {keys.PREEMPTION_NOTICE} ({annotations[keys.PREEMPTION_NOTICE]!r}): "
                            "KubeRay would copy it onto the job's pods, and only the queue controller gives notices")
        ack_before, ack_after = old_ann.get(keys.CHECKPOINTED), new_ann.get(keys.CHECKPOINTED)
        if ack_after is not None and ack_after != ack_before and before is None:
            return deny(f"{PREFIX}: RayJob {name}: rule checkpoint-ack: annotation {keys.CHECKPOINTED} "
                        f"({ack_after!r}) acknowledges a preemption notice, and the job has none "
                        f"({keys.PREEMPTION_NOTICE} is not set); set it only once the controller gave one")
    return None


def _guard_queued_update(req: Request, old: JobInfo, new: JobInfo, where: str) -> Verdict | None:
    name = req.display_name
    if old.cluster_selector != new.cluster_selector:
        return deny(f"{PREFIX}: RayJob {name}: rule fixed-cluster-selector: spec.clusterSelector is fixed once the "
                    f"job exists ({dict(old.cluster_selector)} -> {dict(new.cluster_selector)}): a job is queued "
                    "with its own cluster or runs on an existing one, and cannot switch (create a new RayJob)")
    if (keys.ENQUEUE_TIMESTAMP in _annotations(req.old) and old.shutdown_after_job_finishes
            and not new.shutdown_after_job_finishes):
        return deny(f"{PREFIX}: RayJob {name}: rule shutdown-after-finish: spec.shutdownAfterJobFinishes may not "
                    f"be set to false on a job managed {where}: its Ray cluster must go when it finishes, or the "
                    "quota it was admitted with is never freed")
    old_ann = _annotations(req.old)
    verdict = _guard_stamps(req, old, new, f"RayJob {name}", keys.CONTROLLER_OWNED_ANNOTATIONS, "job",
                            f"the job is managed {where}")
    if verdict is not None:
        return verdict
    queued = keys.ENQUEUE_TIMESTAMP in old_ann and keys.DEQUEUE_TIMESTAMP not in old_ann
    if queued and old.suspended and not new.suspended:
        return deny(f"{PREFIX}: RayJob {name} is queued {where}: rule resume: only the queue controller may "
                    "set spec.suspend true -> false; it will start when its quota allows (see "
                    f"`kubectl get queueunit -n {req.namespace}` for its position and reason)")
    admitted = keys.DEQUEUE_TIMESTAMP in old_ann and not old.suspended and not new.suspended
    if admitted and new.request != old.request:
        return deny(f"{PREFIX}: RayJob {name}: rule admitted-request: the job was admitted {where} for "
                    f"{old.request}; its request may not change to {new.request} while it runs (suspend it "
                    "to requeue with the new request)")
    return None


# --- RayCluster: a bare one (no controller) is queued like a RayJob -----------------------------------------
_CLUSTER_HEAD_TEMPLATE: _FieldPath = ("spec", "headGroupSpec", "template")


def _controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference, or None."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def _rayjob_controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    ref = _controller(obj)
    if ref is not None and ref.get("kind") == keys.RAYJOB_KIND and str(ref.get("apiVersion", "")).startswith(
            keys.RAY_GROUP + "/"):
        return ref
    return None


def _cluster_template_paths(cluster: Mapping[str, Any]) -> list[_FieldPath]:
    """Where the pod templates of a RayCluster are: the head and each worker group (all in its gang)."""
    spec = cluster.get("spec")
    out: list[_FieldPath] = []
    if not isinstance(spec, Mapping):
        return out
    head = spec.get("headGroupSpec")
    if isinstance(head, Mapping) and isinstance(head.get("template"), Mapping):
        out.append(_CLUSTER_HEAD_TEMPLATE)
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        if isinstance(group, Mapping) and isinstance(group.get("template"), Mapping):
            out.append(("spec", "workerGroupSpecs", i, "template"))
    return out


def owner_target(req: Request, snap: Snapshot) -> str | None:
    """`namespace/name` of the RayJob a RayCluster's CREATE in a bound namespace names as its controller: the
    adapter reads it (one GET) into `Snapshot.owner_jobs` before validation (rule raycluster-owner). None
    otherwise."""
    if req.resource != keys.RAYCLUSTER_PLURAL or req.sub_resource or req.operation != "CREATE":
        return None
    ref = _rayjob_controller(req.obj)
    name = ref.get("name") if ref is not None else None
    if not isinstance(name, str) or not name or _leaf(snap, req.namespace) is None:
        return None
    return f"{req.namespace}/{name}"


def mutate_raycluster(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """CREATE of a bare RayCluster (no controller ownerReference: a tenant's interactive cluster) in a bound
    namespace: queued as a RayJob is (rule queued-raycluster): `spec.suspend: true` (KubeRay v1.1+ deletes a
    suspended cluster's pods, docs/kuberay.md), the enqueue stamp, the quota label, gang labels in its pod
    templates, the scheduler name. A cluster a controller owns (a RayJob's, a RayService's) is left as it is.
    UPDATE of a queued one: record a priority change. Idempotent."""
    leaf = _leaf(snap, req.namespace)
    if leaf is None:
        return allow()
    if req.operation == "UPDATE":
        if _controller(req.old) is None and keys.ENQUEUE_TIMESTAMP in _annotations(req.old):
            return _record_priority_change(req, snap, cfg)
        return allow()
    if _controller(req.obj) is not None:
        return allow()
    try:
        job = _job(req, req.obj, snap)
    except ShapeError as exc:
        return deny(f"{PREFIX}: RayCluster {req.display_name}: {exc}", code=400)
    draft = _Draft(req.obj)
    new = draft.root
    meta = draft.child(new, "metadata")
    annotations = draft.child(meta, "annotations")
    spec = draft.child(new, "spec")
    spec["suspend"] = True
    stamp = annotations.get(keys.ENQUEUE_TIMESTAMP)
    if not _fresh(stamp, snap.now_ns, cfg.enqueue_tolerance_ns):
        annotations[keys.ENQUEUE_TIMESTAMP] = format_go(snap.now_ns)
    for key in (keys.DEQUEUE_TIMESTAMP, keys.PRIORITY_CHANGE_RECORD, keys.ADMITTED_REPLICAS):
        annotations.pop(key, None)
    labels = draft.child(meta, "labels")
    label = labels.setdefault(keys.QUOTA_NAME, quota_label_value(leaf))
    templates = _cluster_template_paths(new)
    if job.gang:
        for path in templates:
            tlabels = draft.child(draft.child(draft.at(path), "metadata"), "labels")
            tlabels[keys.POD_GROUP_MIN_AVAILABLE] = str(job.min_available)
            tlabels[keys.QUOTA_NAME] = label
    if cfg.scheduler_name:
        for path in templates:
            template = _read(new, path)
            if (template.get("spec") or {}).get("schedulerName") in (None, "", keys.DEFAULT_SCHEDULER):
                draft.child(draft.at(path), "spec")["schedulerName"] = cfg.scheduler_name
    warnings = [f"{PREFIX}: RayCluster {req.display_name} is queued in {leaf.full_name}: it starts (spec.suspend "
                f"false) when its quota allows; see `kubectl get queueunit {keys.cluster_queue_unit_name(req.name)} "
                f"-n {req.namespace}`"] if req.name else []
    if snap.board is not None:
        place = snap.board.warning(leaf, job, snap, req.display_name)
        if place:
            warnings.append(f"{PREFIX}: {place}")
    return allow(patch=diff(dict(req.obj), new), warnings=warnings)


def validate_raycluster(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """RayClusters in a bound namespace: the quota label; a RayJob controller only when that RayJob exists with
    that uid (rule raycluster-owner); and for a queued bare cluster the RayJob's tenant guards (see
    `_guard_queued_cluster`)."""
    problem = _quota_label_problem(req, snap, req.obj)
    if problem:
        return deny(problem)
    leaf = _leaf(snap, req.namespace)
    if leaf is None:
        return allow()
    name = req.display_name
    where = f"in queue {leaf.queue_generate_name.rstrip('-')} (quota {leaf.full_name})"
    if req.operation == "CREATE" and _controller(req.obj) is not None:
        ref = _rayjob_controller(req.obj)
        if ref is None or cfg.privileged(req.user):
            return allow()  # another controller's cluster (a RayService's): not queued, its pods charged one by one
        return _owner_verdict(req, snap, ref) or allow()
    queued = req.operation == "CREATE" or (
        _controller(req.old) is None and keys.ENQUEUE_TIMESTAMP in _annotations(req.old))
    if req.operation == "UPDATE" and not cfg.privileged(req.user):
        verdict = _guard_cluster_owner(req, queued, where)
        if verdict is not None or not queued:  # a RayJob's (or unqueued) cluster: KubeRay and the autoscaler edit it
            return verdict or allow()
    elif not queued:
        return allow()
    try:
        new = _job(req, req.obj, snap)
        old = _job(req, req.old, snap) if req.operation == "UPDATE" else None
    except ShapeError as exc:
        return deny(f"{PREFIX}: RayCluster {name}: {exc}", code=400)
    if cfg.scheduler_name and old is None:
        for path in _cluster_template_paths(req.obj):
            scheduler = (_read(req.obj, path).get("spec") or {}).get("schedulerName")
            if scheduler not in (None, "", keys.DEFAULT_SCHEDULER, cfg.scheduler_name):
                return deny(f"{PREFIX}: RayCluster {name}: rule scheduler-name: pods of namespace "
                            f"{req.namespace!r} are placed by {cfg.scheduler_name!r}, not {scheduler!r}")
    if cfg.privileged(req.user):
        return allow()
    baseline = 0
    if old is not None:
        verdict = _guard_queued_cluster(req, old, new, where)
        if verdict is not None:
            return verdict
        baseline = old.priority
    return _priority_raise(req, f"RayCluster {name}", baseline, new.priority)


def _priority_raise(req: Request, what: str, baseline: int, priority: int) -> Verdict:
    """Rule priority-raise: a priority above ``baseline`` needs the right to patch QueueUnits (dynamic priority)."""
    if priority <= baseline:
        return allow()
    return allow(requires=Permission(
        verb="patch", group=keys.QUEUE_GROUP, resource=keys.QUEUE_UNIT_PLURAL, namespace=req.namespace,
        denied_message=(
            f"{PREFIX}: {what}: rule priority-raise: raising priority {baseline} -> {priority} needs permission "
            f"to patch queueunits.{keys.QUEUE_GROUP} in namespace {req.namespace!r}, which {req.user} does not have"
        ),
    ))


def _owner_verdict(req: Request, snap: Snapshot, ref: Mapping[str, Any]) -> Verdict | None:
    """Rule raycluster-owner: a RayCluster created with a RayJob as its controller is that job's cluster, not
    queued on its own; it is believed only when the RayJob exists in the namespace with that uid (KubeRay creates a
    job's cluster after reading the job, constructRayClusterForRayJob). A forged reference would only make the
    cluster's pods someone's growth or nobody's, each charged pod by pod; refusing it keeps the queue honest."""
    name = req.display_name
    target = f"{req.namespace}/{ref.get('name')}"
    head = f"{PREFIX}: RayCluster {name}: rule raycluster-owner:"
    lookup = snap.owner_jobs.get(target)
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
    old, new = _controller(req.old), _controller(req.obj)
    old_uid, new_uid = (old or {}).get("uid"), (new or {}).get("uid")
    if new is None or old_uid == new_uid:
        return None
    state = f"queued {where}" if queued else "in a queued namespace"
    return deny(f"{PREFIX}: RayCluster {req.display_name}: rule fixed-cluster-owner: its controller ownerReference "
                f"may not change ({(old or {}).get('kind')} {old_uid!r} -> {new.get('kind')} {new_uid!r}); the "
                f"cluster is {state}")


def _guard_stamps(req: Request, old: JobInfo, new: JobInfo, what: str, owned: Iterable[str], noun: str,
                  state: str) -> Verdict | None:
    """Rules controller-annotations and quota-label, for a queued RayJob or bare RayCluster (``what``)."""
    old_ann, new_ann = _annotations(req.old), _annotations(req.obj)
    for key in owned:
        if key == keys.PRIORITY_CHANGE_RECORD and old.priority != new.priority:
            continue  # stamped by this webhook's mutation for this very change (it overwrites any forgery)
        if old_ann.get(key) != new_ann.get(key):
            return deny(f"{PREFIX}: {what}: rule controller-annotations: only the queue controller may change "
                        f"annotation {key} ({old_ann.get(key)!r} -> {new_ann.get(key)!r}); {state}")
    old_label, new_label = _labels(req.old).get(keys.QUOTA_NAME), _labels(req.obj).get(keys.QUOTA_NAME)
    if old_label != new_label:
        return deny(f"{PREFIX}: {what}: rule quota-label: the quota label is fixed once the {noun} is queued "
                    f"({old_label!r} -> {new_label!r}); {state}")
    return None


def _guard_queued_cluster(req: Request, old: JobInfo, new: JobInfo, where: str) -> Verdict | None:
    """A queued bare RayCluster's tenant guards, as a RayJob's: controller-annotations (with
    rayqueue.io/admitted-replicas), quota-label, resume; and admitted-cluster-pods: once admitted, the per-pod
    requests of its head and worker groups are fixed (replicas, minReplicas and maxReplicas may change: pods beyond
    the size it was admitted with are growth, each checked against the quota)."""
    name = req.display_name
    old_ann = _annotations(req.old)
    verdict = _guard_stamps(req, old, new, f"RayCluster {name}", keys.CLUSTER_CONTROLLER_OWNED_ANNOTATIONS,
                            "cluster", f"the cluster is queued {where}")
    if verdict is not None:
        return verdict
    waiting = keys.DEQUEUE_TIMESTAMP not in old_ann
    if waiting and old.suspended and not new.suspended:
        return deny(f"{PREFIX}: RayCluster {name} is queued {where}: rule resume: only the queue controller may "
                    "set spec.suspend true -> false; it will start when its quota allows (see `kubectl get "
                    f"queueunit {keys.cluster_queue_unit_name(req.name)} -n {req.namespace}` for its position and "
                    "reason)")
    if not waiting and not old.suspended and not new.suspended:
        before = {("head", ""): old.head_request, **{("worker", g.name): g.pod_request for g in old.worker_groups}}
        after = {("head", ""): new.head_request, **{("worker", g.name): g.pod_request for g in new.worker_groups}}
        for role in sorted(before.keys() & after.keys()):
            if before[role] != after[role]:
                what = "the head" if role[0] == "head" else f"worker group {role[1]!r}"
                return deny(f"{PREFIX}: RayCluster {name}: rule admitted-cluster-pods: the cluster was admitted "
                            f"{where}; the per-pod request of {what} may not change from {before[role]} to "
                            f"{after[role]} while it runs (replicas may: more pods than admitted are growth, "
                            "checked pod by pod; suspend it to requeue with the new pods)")
    return None


# --- Pods -------------------------------------------------------------------------------------------
def mutate_pod(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """CREATE in a bound namespace: quota label, pod-group labels for gang Ray pods, scheduler name."""
    leaf = _leaf(snap, req.namespace)
    if leaf is None or req.operation != "CREATE":
        return allow()
    draft = _Draft(req.obj)
    new = draft.root
    labels = draft.child(draft.child(new, "metadata"), "labels")
    labels.setdefault(keys.QUOTA_NAME, quota_label_value(leaf))
    cluster = labels.get(keys.RAY_CLUSTER)
    if cluster and keys.POD_GROUP_MIN_AVAILABLE in labels:  # stamped into the gang's templates at enqueue
        labels[keys.POD_GROUP_NAME] = cluster
        labels[keys.POD_GROUP_X] = cluster
    spec = draft.child(new, "spec")
    if cfg.scheduler_name and spec.get("schedulerName") in (None, "", keys.DEFAULT_SCHEDULER):
        spec["schedulerName"] = cfg.scheduler_name
    return allow(patch=diff(dict(req.obj), new))


def validate_pod(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    problem = _quota_label_problem(req, snap, req.obj)
    if problem:
        return deny(problem)
    if _leaf(snap, req.namespace) is None or cfg.privileged(req.user):
        return allow()
    verdict = _guard_preemption(req, "Pod")
    if verdict is not None:
        return verdict
    spec = req.obj.get("spec") or {}
    if req.operation == "CREATE":
        if spec.get("nodeName") and not cfg.may_bind(req.user):
            return deny(f"{PREFIX}: Pod {req.display_name}: rule no-node-name: spec.nodeName "
                        f"{spec['nodeName']!r} is set by {req.user}; in namespace {req.namespace!r} pods are "
                        f"placed by the scheduler {cfg.expected_scheduler!r}, which enforces the quota")
        scheduler = spec.get("schedulerName") or keys.DEFAULT_SCHEDULER
        batch = batch_scheduler_for_pod_scheduler(scheduler) if scheduler != cfg.expected_scheduler else None
        if batch is not None and _from_kuberay(req.obj):
            flags = (f"--batch-scheduler={batch} (or batchScheduler: {batch} in its Configuration file"
                     + (", or the deprecated --enable-batch-scheduler / enableBatchScheduler: true" if batch == "volcano"
                        else "") + ")")
            return deny(f"{PREFIX}: Pod {req.display_name}: rule kuberay-batch-scheduler: schedulerName "
                        f"{scheduler!r} was written by the KubeRay operator, whose batch-scheduler mode is on: it "
                        "overwrites schedulerName on every Ray and submitter pod, so in namespace "
                        f"{req.namespace!r} (placed by {cfg.expected_scheduler!r}) no pod of any RayJob can start. "
                        f"Remove {flags} from the KubeRay operator and restart it; rayqueue queues and "
                        "gang-schedules RayJobs itself")
        if scheduler != cfg.expected_scheduler:
            return deny(f"{PREFIX}: Pod {req.display_name}: rule scheduler-name: schedulerName {scheduler!r} "
                        f"is not allowed in namespace {req.namespace!r}; its pods are placed by "
                        f"{cfg.expected_scheduler!r}")
    else:
        old_labels, new_labels = _labels(req.old), _labels(req.obj)
        for key in (keys.QUOTA_NAME, keys.POD_GROUP_NAME, keys.POD_GROUP_X, keys.POD_GROUP_MIN_AVAILABLE):
            if old_labels.get(key) != new_labels.get(key):
                return deny(f"{PREFIX}: Pod {req.display_name}: rule fixed-pod-labels: label {key} may not "
                            f"change ({old_labels.get(key)!r} -> {new_labels.get(key)!r}) once the pod exists")
    return allow()


def _from_kuberay(pod: Mapping[str, Any]) -> bool:
    """A pod the KubeRay operator made: its `app.kubernetes.io/created-by: kuberay-operator` label and a
    controller owner that is a RayCluster (head, workers) or a batch Job of a RayJob (the submitter, whose
    template KubeRay labels `ray.io/originated-from-crd: RayJob`; rayjob_controller.go getSubmitterTemplate)."""
    labels = _labels(pod)
    if labels.get(keys.KUBERNETES_CREATED_BY) != keys.KUBERAY_OPERATOR:
        return False
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, Mapping):
            continue
        api = str(ref.get("apiVersion", ""))
        if ref.get("kind") == keys.RAYCLUSTER_KIND and api.startswith(keys.RAY_GROUP + "/"):
            return True
        if (ref.get("kind") == "Job" and api.startswith("batch/")
                and labels.get(keys.RAY_ORIGINATED_FROM_CRD) == keys.RAYJOB_KIND):
            return True
    return False


def validate_binding(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    """pods/binding in a bound namespace only by the scheduler and the extender."""
    if req.operation != "CREATE" or _leaf(snap, req.namespace) is None or cfg.may_bind(req.user):
        return allow()
    target = ((req.obj.get("target") or {}).get("name")) or "?"
    return deny(f"{PREFIX}: Pod {req.namespace}/{req.name}: rule binding-identity: {req.user} may not bind pods "
                f"in namespace {req.namespace!r} (to node {target!r}); only the scheduler "
                f"{cfg.expected_scheduler!r} binds here, after the quota and gang checks")


# --- ElasticQuotaTree --------------------------------------------------------------------------------
def validate_quota_tree(req: Request, snap: Snapshot, cfg: PolicyConfig) -> Verdict:
    meta = req.obj.get("metadata") or {}
    where = f"{req.namespace or meta.get('namespace', '')}/{req.name or meta.get('name', '')}"
    if (req.namespace, req.name or meta.get("name")) != (keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME):
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: rule single-tree: only one tree is supported, "
                    f"{keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME}")
    errors = validate_tree(dict(req.obj))
    if errors:
        listed = "; ".join(str(e) for e in errors)
        return invalid(f"{PREFIX}: ElasticQuotaTree {where} is invalid ({len(errors)} "
                       f"error{'s' if len(errors) != 1 else ''}): {listed}", keys.QUOTA_TREE_KIND,
                       str(req.name or meta.get("name", "")), [(e.path, e.message) for e in errors])
    if req.operation != "UPDATE":
        return allow()
    try:
        tree = QuotaTree.parse(dict(req.obj))
    except TreeError as exc:  # validate_tree found nothing, so this would be a bug; answer it plainly
        return deny(f"{PREFIX}: ElasticQuotaTree {where}: {exc}", code=422)
    return allow(warnings=reclaim_warnings(req.old, tree, snap.admitted_by_namespace))


def reclaim_warnings(old_obj: Mapping[str, Any], tree: QuotaTree,
                     admitted_by_namespace: Mapping[str, Sequence[str]]) -> list[str]:
    """For each node whose recorded usage (the controller's status) exceeds its new max: a warning naming
    the node, the numbers and the admitted jobs below it, which become reclaimable."""
    status_nodes = ((old_obj.get("status") or {}).get("nodes")) or {}
    out: list[str] = []
    for node in tree.nodes():
        entry = status_nodes.get(node.full_name) if isinstance(status_nodes, dict) else None
        if not isinstance(entry, dict):
            continue
        try:
            used = Resources.parse(entry.get("used") or {})
        except ValueError:
            continue
        over = [f"{r} used {format_quantity(r, used.get(r))} > new max {format_quantity(r, node.max[r])}"
                for r in sorted(node.max) if used.get(r) > node.max[r]]
        if not over:
            continue
        below = [n for n in tree.nodes() if n.full_name == node.full_name or n.full_name.startswith(node.full_name + "/")]
        jobs = sorted(j for n in below for ns in n.namespaces for j in admitted_by_namespace.get(ns, ()))
        listed = ", ".join(jobs) if jobs else "none recorded"
        out.append(f"{PREFIX}: {node.full_name}: {'; '.join(over)}: running jobs there become reclaimable: "
                   f"{listed}")
    return out


_RAYJOB_MUTATE = mutate_rayjob
_RAYJOB_VALIDATE = validate_rayjob
