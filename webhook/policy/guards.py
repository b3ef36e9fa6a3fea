"""The rules shared by every kind: quota label, enqueue stamp, gang labels, scheduler name, stamps, priority."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common import keys
from common.gotime import format_go, parse_go
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import JobInfo, priority_class_name
from common.wire import ShapeError
from webhook.jsonpatch import diff
from webhook.policy.inputs import PREFIX, ClusterFacts, PolicyConfig, bound_leaf
from webhook.policy.objects import Draft, FieldPath, annotations_of, labels_of, pod_templates, read_path
from webhook.review import Permission, Request, Verdict, allow, deny

__all__ = ["QueuedKind", "admitted_elastic_denial", "guard_queued", "job_info", "labelled_leaf", "preemption_notice_denial", "priority_raise", "queue_place",
           "queue_warnings", "quota_label_problem", "quota_label_value", "record_priority_change",
           "scheduler_name_denial", "stamp_enqueue", "stamp_pod_templates"]


@dataclass(frozen=True, slots=True)
class QueuedKind:
    """What the shared rules need to know of a kind rayqueue queues (a RayJob, a bare RayCluster)."""

    kind: str  # "RayJob"
    noun: str  # "job": in "once the job is queued"
    cluster_at: FieldPath  # where its RayCluster spec is
    submitter_at: FieldPath | None  # where its submitter pod template is, if it can have one
    convert: Callable[..., JobInfo]  # JobInfo.from_rayjob / from_raycluster
    owned_annotations: tuple[str, ...]  # what only the queue controller may write
    unit_name: Callable[[str], str] | None = None  # its QueueUnit's name, when a resume denial names it

    def templates(self, obj: Mapping[str, Any]) -> list[tuple[FieldPath, bool]]:
        return pod_templates(obj, self.cluster_at, self.submitter_at)


def job_info(queued: QueuedKind, obj: Mapping[str, Any], facts: ClusterFacts) -> JobInfo:
    """The object as a job, its priority class's value looked up (raises ShapeError)."""
    prio_class = priority_class_name(obj, queued.cluster_at)
    value = facts.priority_classes.get(prio_class) if prio_class else None
    return queued.convert(obj, priority_class_value=value)


def queue_place(leaf: QuotaNode) -> str:
    """Where a job of the leaf waits, for denials: `in queue root-a-b (quota root/a/b)`."""
    return f"in queue {leaf.queue_generate_name.rstrip('-')} (quota {leaf.full_name})"


# --- quota label ---------------------------------------------------------------------------------------
def quota_label_value(leaf: QuotaNode) -> str:
    """The value we stamp: the guide's form, the leaf's dashed path without the root (`algorithm-video`)."""
    return leaf.full_name.split("/", 1)[1].replace("/", "-") if "/" in leaf.full_name else leaf.name


def _label_names_leaf(tree: QuotaTree, value: str, leaf: QuotaNode) -> bool:
    """The label names the namespace's own leaf: one of the leaf's names, even a short name other nodes share
    (the guide has root/devops and root/infrastructure/devops), or anything that resolves to it alone."""
    if value in (leaf.name, leaf.full_name, leaf.dashed_name, quota_label_value(leaf)):
        return True
    node = tree.resolve(value)
    return node is not None and node.full_name == leaf.full_name


def quota_label_problem(req: Request, facts: ClusterFacts, obj: Mapping[str, Any]) -> str | None:
    """Rule quota-label: a quota label may name only the leaf bound to the object's namespace."""
    value = labels_of(obj).get(keys.QUOTA_NAME)
    if value is None:
        return None
    leaf = bound_leaf(facts, req.namespace)
    kind = req.kind or "object"
    if leaf is None:
        return (f"{PREFIX}: {kind} {req.display_name}: label {keys.QUOTA_NAME}={value!r} is not allowed: "
                f"namespace {req.namespace!r} is bound to no quota, so it may not charge one")
    assert facts.tree is not None
    if _label_names_leaf(facts.tree, value, leaf):
        return None
    return (f"{PREFIX}: {kind} {req.display_name}: label {keys.QUOTA_NAME}={value!r} names another quota; "
            f"namespace {req.namespace!r} is bound to {leaf.full_name} (use {quota_label_value(leaf)!r}, "
            f"{leaf.full_name!r} or {leaf.dashed_name!r}, or leave the label out)")


def labelled_leaf(req: Request, facts: ClusterFacts) -> QuotaNode | Verdict:
    """The leaf bound to the request's namespace, or the verdict when validation stops here: a quota label that
    names another leaf is denied (rule quota-label); in an unbound namespace everything else is allowed."""
    problem = quota_label_problem(req, facts, req.obj)
    if problem:
        return deny(problem)
    leaf = bound_leaf(facts, req.namespace)
    return allow() if leaf is None else leaf


# --- mutation: what a queued object gets at CREATE -------------------------------------------------------
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


def stamp_enqueue(annotations_map: dict[str, Any], facts: ClusterFacts, cfg: PolicyConfig,
                  dropped: Iterable[str]) -> None:
    """The enqueue stamp (a fresh client one is kept), and the ``dropped`` controller stamps removed."""
    if not _fresh(annotations_map.get(keys.ENQUEUE_TIMESTAMP), facts.now_ns, cfg.enqueue_tolerance_ns):
        annotations_map[keys.ENQUEUE_TIMESTAMP] = format_go(facts.now_ns)
    for key in dropped:
        annotations_map.pop(key, None)


def stamp_pod_templates(draft: Draft, meta: dict[str, Any], leaf: QuotaNode, job: JobInfo,
                        templates: Sequence[tuple[FieldPath, bool]], cfg: PolicyConfig, *, gang: bool) -> None:
    """The quota label (when absent); with ``gang``, min-available and the quota label into the gang's pod
    templates; the rayqueue scheduler's name into every template that names the default scheduler or none."""
    label = draft.child(meta, "labels").setdefault(keys.QUOTA_NAME, quota_label_value(leaf))
    if gang:
        for path, in_gang in templates:
            if in_gang:
                tlabels = draft.metadata_map(draft.at(path), "labels")
                tlabels[keys.POD_GROUP_MIN_AVAILABLE] = str(job.min_available)
                tlabels[keys.QUOTA_NAME] = label
    if cfg.scheduler_name:
        for path, _ in templates:
            if (read_path(draft.root, path).get("spec") or {}).get("schedulerName") in (None, "", keys.DEFAULT_SCHEDULER):
                draft.child(draft.at(path), "spec")["schedulerName"] = cfg.scheduler_name


def queue_warnings(facts: ClusterFacts, leaf: QuotaNode, job: JobInfo, name: str) -> list[str]:
    """The create warning from the queues' published status (position, free quota, estimate), if it can be told."""
    place = facts.queues.warning(leaf, job, facts, name) if facts.queues is not None else None
    return [f"{PREFIX}: {place}"] if place else []


def record_priority_change(req: Request, facts: ClusterFacts, cfg: PolicyConfig, queued: QueuedKind) -> Verdict:
    """UPDATE that changes the priority: record who did it, old -> new (the controller's relay of a QueueUnit's
    change keeps the record naming its author)."""
    try:
        old, new = job_info(queued, req.old, facts), job_info(queued, req.obj, facts)
    except ShapeError:
        return allow()  # validation reports the shape
    if old.priority == new.priority:
        return allow()
    relayed = annotations_of(req.obj).get(keys.PRIORITY_CHANGE_RECORD)
    if cfg.privileged(req.user) and relayed and relayed != annotations_of(req.old).get(keys.PRIORITY_CHANGE_RECORD):
        return allow()  # the controller relays a QueueUnit's priority change, with the record naming its author
    draft = Draft(req.obj)
    record = f"{req.user} changed priority {old.priority} -> {new.priority} at {format_go(facts.now_ns)}"
    draft.metadata_map(draft.root, "annotations")[keys.PRIORITY_CHANGE_RECORD] = record
    return allow(patch=diff(dict(req.obj), draft.root), audit=[f"{req.kind or 'RayJob'} {req.display_name}: {record}"])


# --- validation: a tenant's requests ---------------------------------------------------------------------
def scheduler_name_denial(req: Request, kind: str, templates: Iterable[tuple[FieldPath, bool]],
                          cfg: PolicyConfig) -> Verdict | None:
    """Rule scheduler-name: with a rayqueue scheduler configured, no pod template may name another one."""
    if not cfg.scheduler_name:
        return None
    for path, _ in templates:
        name = (read_path(req.obj, path).get("spec") or {}).get("schedulerName")
        if name not in (None, "", keys.DEFAULT_SCHEDULER, cfg.scheduler_name):
            return deny(f"{PREFIX}: {kind} {req.display_name}: rule scheduler-name: pods of namespace "
                        f"{req.namespace!r} are placed by {cfg.scheduler_name!r}, not {name!r}")
    return None


def preemption_notice_denial(req: Request, kind: str) -> Verdict | None:
    """Rule preemption-notice (docs/preemption.md, docs/security.md): only the queue controller writes a
    preemption notice on an object."""
    before = annotations_of(req.old).get(keys.PREEMPTION_NOTICE) if req.operation == "UPDATE" else None
    after = annotations_of(req.obj).get(keys.PREEMPTION_NOTICE)
    if before == after:
        return None
    change = "set" if before is None else ("remove" if after is None else "change")
    return deny(f"{PREFIX}: {kind} {req.display_name}: rule preemption-notice: only the queue controller may {change} "
                f"annotation {keys.PREEMPTION_NOTICE} ({before!r} -> {after!r}); {req.user} may not")


def _guard_stamps(req: Request, old: JobInfo, new: JobInfo, queued: QueuedKind, state: str) -> Verdict | None:
    """Rules controller-annotations and quota-label, for a queued object."""
    what = f"{queued.kind} {req.display_name}"
    old_ann, new_ann = annotations_of(req.old), annotations_of(req.obj)
    for key in queued.owned_annotations:
        if key == keys.PRIORITY_CHANGE_RECORD and old.priority != new.priority:
            continue  # stamped by this webhook's mutation for this very change (it overwrites any forgery)
        if old_ann.get(key) != new_ann.get(key):
            return deny(f"{PREFIX}: {what}: rule controller-annotations: only the queue controller may change "
                        f"annotation {key} ({old_ann.get(key)!r} -> {new_ann.get(key)!r}); {state}")
    old_label, new_label = labels_of(req.old).get(keys.QUOTA_NAME), labels_of(req.obj).get(keys.QUOTA_NAME)
    if old_label != new_label:
        return deny(f"{PREFIX}: {what}: rule quota-label: the quota label is fixed once the {queued.noun} is queued "
                    f"({old_label!r} -> {new_label!r}); {state}")
    return None


def guard_queued(req: Request, old: JobInfo, new: JobInfo, queued: QueuedKind, where: str,
                 state: str) -> Verdict | None:
    """A tenant's UPDATE of a queued object: rules controller-annotations, quota-label and resume (only the
    queue controller may set spec.suspend true -> false while it waits)."""
    verdict = _guard_stamps(req, old, new, queued, state)
    if verdict is not None:
        return verdict
    old_ann = annotations_of(req.old)
    waiting = keys.ENQUEUE_TIMESTAMP in old_ann and keys.DEQUEUE_TIMESTAMP not in old_ann
    if waiting and old.suspended and not new.suspended:
        unit = f"{queued.unit_name(req.name)} " if queued.unit_name is not None else ""
        return deny(f"{PREFIX}: {queued.kind} {req.display_name} is queued {where}: rule resume: only the queue "
                    "controller may set spec.suspend true -> false; it will start when its quota allows (see "
                    f"`kubectl get queueunit {unit}-n {req.namespace}` for its position and reason)")
    return None


def admitted_elastic_denial(req: Request, old: JobInfo, new: JobInfo, queued: QueuedKind, where: str) -> Verdict | None:
    """Rule admitted-elastic (docs/elastic.md, docs/security.md): while an admitted object runs, whether it is elastic
    (label ``rayqueue.io/elastic``, or ``enableInTreeAutoscaling``) is fixed wherever that changes its reservation or
    its gang: made elastic, its reservation would drop to the floors below what it was admitted with; made rigid, its
    workers above the floor (pending growth the quota refused included) would be covered without an admission
    check, and its gang would grow. A flip that changes neither (every floor at its replicas) is harmless."""
    old_ann = annotations_of(req.old)
    admitted = keys.DEQUEUE_TIMESTAMP in old_ann and not old.suspended and not new.suspended
    if not admitted or old.elastic == new.elastic:
        return None
    if old.request == new.request and old.min_available == new.min_available:
        return None
    changes = []
    label_before, label_after = labels_of(req.old).get(keys.ELASTIC), labels_of(req.obj).get(keys.ELASTIC)
    if label_before != label_after:
        changes.append(f"label {keys.ELASTIC} {label_before!r} -> {label_after!r}")
    field = ".".join(str(p) for p in (*queued.cluster_at, "enableInTreeAutoscaling"))
    scaling_before = read_path(req.old, queued.cluster_at).get("enableInTreeAutoscaling")
    scaling_after = read_path(req.obj, queued.cluster_at).get("enableInTreeAutoscaling")
    if scaling_before != scaling_after:
        changes.append(f"{field} {scaling_before!r} -> {scaling_after!r}")
    became = "elastic" if new.elastic else "rigid"
    return deny(f"{PREFIX}: {queued.kind} {req.display_name}: rule admitted-elastic: the {queued.noun} was admitted "
                f"{where} as {'elastic' if old.elastic else 'rigid'}; {', '.join(changes)} would make it {became} "
                f"while it runs: its reservation {old.request} -> {new.request}, its gang min-available "
                f"{old.min_available} -> {new.min_available} (suspend it to requeue as {became})")


def priority_raise(req: Request, what: str, baseline: int, priority: int) -> Verdict:
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
