"""The queue controller's decision: one Cache snapshot in, an ordered Plan of typed actions out, no I/O.

``reconcile(cache, now_ns)`` is deterministic and free of I/O and ``await``. The only cache state it
changes is the queues' own bookkeeping (an admitted item leaves its queue, a refused one goes to
backoff or blocks its leaf, and waiting jobs missing from their queue are put back first); the ledger
changes only through watch events and the loop's ``mark_dequeued`` / ``mark_requeued``.

The admission pass (``Queues.schedule``) works on a **scratch copy** of the ledger, made at the first
admission or reservation of the pass, so later candidates see the usage of earlier ones; the real
ledger learns of an admission when the loop calls ``mark_dequeued`` after its patch succeeded. A
failed patch therefore needs no undo: the job is still WAITING in the cache and the next reconcile puts
it back in its queue.

Reclaim (DESIGN §3): a refused job that is guaranteed (``Ledger.is_guaranteed``) is checked against a
second scratch ledger from which every *releasing* claim (jobs finished, deleted, suspended or to be
requeued, whose claims drain until their pods are gone) is taken out. If it fits there, it is already
waiting for those releases: no new reclaim (so a claimant never gets a second reclaim while its
victims drain, and a restarted controller, which remembers nothing, decides the same). Otherwise
``plan_reclaim`` on that ledger picks the victims, each gets a Suspend and a Preempted event, and the
claimant's request is reserved in both scratch ledgers for the rest of the pass, so later candidates
cannot take the capacity it waits for.

Cooperative preemption (docs/preemption.md, pure rules in ``common.preemption``). A victim whose leaf has a
``rayqueue.io/preemption-grace`` gets a ``Notify`` (the notice annotation with its deadline) and a
``PreemptionNotice`` event instead of a Suspend; from then on it is *releasing* (``Cache.releasing``), so
its claimant waits for it as above. Every pass then handles each admitted job with a notice before the
admission pass: it mirrors the notice onto the job's pods (``AnnotatePod``), withdraws it when its claimant
no longer waits (``WithdrawNotice``), or suspends it (``Suspend(clear_notice=True)``) once it acknowledged
(``rayqueue.io/checkpointed``) or its deadline passed; the claimants of live notices are reserved from the
start of the admission pass (``AdmissionPass(reserved=...)``), and ``Plan.wake_ns`` is the next deadline,
when the loop reconciles again without waiting for an event. The deadline lives only in the annotation: a
restarted controller decides the same.

The loop executes the actions in order (see each action's docstring) and feeds what the API returns
(created Queues and QueueUnits, patched statuses) back through the cache handlers, or waits for the
watch: a second reconcile on the same state then plans nothing new.

Slices. A pass over 10,000 waiting jobs costs the better part of a second in Python, and the
scheduler verbs share the event loop. ``reconcile_steps`` is the same decision as a generator that
yields every ``SLICE`` jobs (or leaves); the loop awaits between slices so the verbs answer meanwhile,
and holds every watch event until the plan is made, so each slice reads the same snapshot. The one
thing the verbs themselves change, pod claims in the ledger (``assume_bound``), is kept out by
deciding on ``Ledger.copy()`` of the ledger taken when the pass starts. ``reconcile`` runs the
generator to the end at once: the plan is the same, only the yields differ.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard, TypeVar

from common import keys
from common.admission import AdmissionPass
from common.gotime import format_go
from common.ledger import Claim, Ledger
from common.preemption import Notice, NoticeError, grace_ns, issue, step
from common.queueing import Queues
from common.quota_tree import QuotaNode
from common.rayjob import (
    VALIDATION_FAILED,
    JobInfo,
    PodInfo,
    admitted_replicas_value,
    compact_size,
    current_request,
    maximum_request,
)
from common.resources import EMPTY, Resources
from extender.cache import Cache, JobState, QueueUnitObject
from extender.queue_objects import (
    QueueUnitPhase,
    queue_object,
    queue_status,
    queue_unit_name,
    queue_unit_object,
    queue_unit_status,
    rfc3339,
)

__all__ = [
    "SLICE",
    "Action",
    "AnnotatePod",
    "DeleteQueue",
    "DeleteQueueUnit",
    "Dequeue",
    "EnsureQueue",
    "EnsureQueueUnit",
    "Event",
    "JobRef",
    "Notify",
    "ObjectRef",
    "Plan",
    "PreemptPod",
    "Requeue",
    "SetClusterQuotaCondition",
    "SetPriority",
    "Suspend",
    "UpdateQueueStatus",
    "UpdateQueueUnitStatus",
    "UpdateTreeStatus",
    "WithdrawNotice",
    "reconcile",
    "reconcile_steps",
]

EventType = Literal["Normal", "Warning"]
SLICE: Final = 10  # jobs (or candidates, or leaves) between two yields of reconcile_steps: about a millisecond
# A waiting job's QueueUnit status is rewritten when its phase or message changes; its position and attempts,
# which change for every waiting job of a leaf on every admission, arrival or retry, only when they moved far
# enough to matter (``_status_due``): positions up to POSITION_EXACT exactly, beyond that once the written one
# is more than POSITION_SLACK off; attempts once they doubled (or were reset). The exact positions of every
# waiting job are in its Queue's status.queueItemDetails, written once per pass per leaf.
POSITION_EXACT: Final = 10
POSITION_SLACK: Final = 0.1


@dataclass(frozen=True, slots=True)
class JobRef:
    """The RayJob (or bare RayCluster, ``kind``) an action is about; ``resource_version`` as the cache last
    saw it."""

    namespace: str
    name: str
    uid: str
    resource_version: str = ""
    kind: str = keys.RAYJOB_KIND

    @classmethod
    def of(cls, job: JobInfo) -> JobRef:
        return cls(job.namespace, job.name, job.uid, job.resource_version, job.kind)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class EnsureQueue:
    """Create the leaf's Queue (generateName); feed the created object back through ``on_queue``."""

    leaf: str
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteQueue:
    """Delete one of our Queues: its leaf is gone from the tree, or another Queue is kept for the leaf."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateQueueStatus:
    """Merge-patch the Queue's status subresource with ``status``."""

    name: str
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnsureQueueUnit:
    """Create the QueueUnit, or on AlreadyExists merge-patch its metadata (labels, annotations,
    ownerReferences) and spec to match ``object``."""

    object: dict[str, Any]

    @property
    def namespace(self) -> str:
        return str(self.object["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])


@dataclass(frozen=True, slots=True)
class UpdateQueueUnitStatus:
    """Merge-patch the QueueUnit's status subresource with ``status`` (a None value removes a field)."""

    namespace: str
    name: str
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeleteQueueUnit:
    """Delete a QueueUnit whose RayJob is no longer queued (its namespace is not bound to a leaf).
    QueueUnits of deleted RayJobs are left to the ownerReference garbage collector."""

    namespace: str
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Dequeue:
    """Admit a waiting job: ONE merge patch (``patch()``) guarded by resourceVersion; on success call
    ``cache.mark_dequeued(job.uid, dequeue_ns)``; on a conflict do nothing (the next reconcile retries)."""

    job: JobRef
    dequeue_ns: int
    dequeue_stamp: str
    admitted_replicas: str | None = None  # a bare RayCluster's: the size it is admitted with (keys.ADMITTED_REPLICAS)

    def patch(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"annotations": {keys.DEQUEUE_TIMESTAMP: self.dequeue_stamp}}
        if self.admitted_replicas is not None:
            metadata["annotations"][keys.ADMITTED_REPLICAS] = self.admitted_replicas
        if self.job.resource_version:
            metadata["resourceVersion"] = self.job.resource_version
        return {"metadata": metadata, "spec": {"suspend": False}}


def _clearing(annotations: dict[str, Any], clear_notice: bool) -> dict[str, Any]:
    if clear_notice:
        annotations.update({keys.PREEMPTION_NOTICE: None, keys.CHECKPOINTED: None})
    return annotations


@dataclass(frozen=True, slots=True)
class Suspend:
    """Reclaim: suspend the victim and remove its dequeue stamp in one merge patch (``patch()``; the
    enqueue stamp stays, so it requeues at its original place); then ``cache.mark_requeued(job.uid)``.
    ``clear_notice``: the victim had a preemption notice, which the same patch removes (with its
    acknowledgement), so the job runs again later without one."""

    job: JobRef
    reason: str
    claimant: JobRef
    clear_notice: bool = False

    def patch(self) -> dict[str, Any]:
        annotations = _clearing({keys.DEQUEUE_TIMESTAMP: None}, self.clear_notice)
        if self.job.kind == keys.RAYCLUSTER_KIND:
            annotations[keys.ADMITTED_REPLICAS] = None
        return {"metadata": {"annotations": annotations}, "spec": {"suspend": True}}


@dataclass(frozen=True, slots=True)
class Requeue:
    """An admitted job someone suspended: remove its dequeue stamp (``patch()``, and a preemption notice if
    it had one: ``clear_notice``), then ``cache.mark_requeued(job.uid)``. It waits again with its original
    enqueue time."""

    job: JobRef
    reason: str
    clear_notice: bool = False

    def patch(self) -> dict[str, Any]:
        annotations = _clearing({keys.DEQUEUE_TIMESTAMP: None}, self.clear_notice)
        if self.job.kind == keys.RAYCLUSTER_KIND:
            annotations[keys.ADMITTED_REPLICAS] = None
        return {"metadata": {"annotations": annotations}}


@dataclass(frozen=True, slots=True)
class Notify:
    """Cooperative preemption (docs/preemption.md): give a reclaim victim its notice, the annotation
    ``rayqueue.io/preemption-notice`` = ``notice``, in ONE merge patch guarded by resourceVersion (a
    conflict does nothing: the next pass decides again, and a deadline already given is never
    overwritten); feed the returned RayJob back through ``cache.on_rayjob``. Its pods get the notice from
    the next pass (``AnnotatePod``), which mirrors the RayJob's annotation."""

    job: JobRef
    notice: str
    claimant: JobRef

    def patch(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"annotations": {keys.PREEMPTION_NOTICE: self.notice}}
        if self.job.resource_version:
            metadata["resourceVersion"] = self.job.resource_version
        return {"metadata": metadata}


@dataclass(frozen=True, slots=True)
class WithdrawNotice:
    """The notice's claimant no longer waits: remove the notice (merge patch guarded by resourceVersion,
    so an acknowledgement written meanwhile wins: the next pass suspends); feed the RayJob back through
    ``cache.on_rayjob``. The job runs on."""

    job: JobRef
    reason: str

    def patch(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"annotations": {keys.PREEMPTION_NOTICE: None}}
        if self.job.resource_version:
            metadata["resourceVersion"] = self.job.resource_version
        return {"metadata": metadata}


@dataclass(frozen=True, slots=True)
class AnnotatePod:
    """Mirror a noticed job's ``rayqueue.io/preemption-notice`` onto one of its pods (``notice`` None removes
    it), so the Ray processes read it through a downward-API volume; feed the pod back through
    ``cache.on_pod``. A pod already gone is no error."""

    namespace: str
    name: str
    uid: str
    notice: str | None

    def patch(self) -> dict[str, Any]:
        return {"metadata": {"annotations": {keys.PREEMPTION_NOTICE: self.notice}}}


@dataclass(frozen=True, slots=True)
class SetPriority:
    """Someone patched the QueueUnit's spec.priority (kube-queue's way to reprioritise): carry it to the
    RayJob's priority annotation with a record of the change, in one merge patch guarded by
    resourceVersion; the watch then reorders the queue and the QueueUnit is synced to it."""

    job: JobRef
    priority: int
    record: str

    def patch(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"annotations": {keys.PRIORITY_OVERRIDE: str(self.priority),
                                                    keys.PRIORITY_CHANGE_RECORD: self.record}}
        if self.job.resource_version:
            metadata["resourceVersion"] = self.job.resource_version
        return {"metadata": metadata}


@dataclass(frozen=True, slots=True)
class Event:
    """A Kubernetes Event on the RayJob."""

    job: JobRef
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A pod or RayCluster an action is about, by uid (a pod is deleted with a uid precondition: a recreated
    namesake is never hit)."""

    namespace: str
    name: str
    uid: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"




@dataclass(frozen=True, slots=True)
class PreemptPod:
    """Reclaim growth (docs/growth.md): delete a pod beyond its job's reservation at once (no cooperative
    grace: the pod's own terminationGracePeriodSeconds only), uid precondition; once deleted, a Warning
    ``Preempted`` event with ``reason`` on the pod and on its RayCluster. Growth victims of one job are
    deleted in plan order (newest first)."""

    pod: ObjectRef
    job: JobRef
    cluster: ObjectRef | None
    reason: str


@dataclass(frozen=True, slots=True)
class SetClusterQuotaCondition:
    """Write the RayCluster's ``RayQueueQuota`` condition (``status``, ``reason``, ``message``) by
    read-modify-write of ``status.conditions`` (PUT on /status with the resourceVersion read, retried on a
    conflict), so KubeRay's own conditions are kept; then the ``event`` (type, reason, message) if any.
    The controller writes a message-only change at most every few seconds per cluster."""

    cluster: ObjectRef
    job: JobRef
    status: str
    reason: str
    message: str
    event: tuple[EventType, str, str] | None = None


@dataclass(frozen=True, slots=True)
class UpdateTreeStatus:
    """Merge-patch the ElasticQuotaTree's status: per node ``used`` and ``request`` (Σ waiting)."""

    status: dict[str, Any]


Action = (
    EnsureQueue
    | DeleteQueue
    | UpdateQueueStatus
    | EnsureQueueUnit
    | UpdateQueueUnitStatus
    | DeleteQueueUnit
    | Dequeue
    | Suspend
    | Requeue
    | Notify
    | WithdrawNotice
    | AnnotatePod
    | SetPriority
    | Event
    | UpdateTreeStatus
    | PreemptPod
    | SetClusterQuotaCondition
)
A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions of one reconcile, in the order the loop must execute them; ``wake_ns``: the earliest
    preemption-notice deadline still ahead (the loop reconciles again then, with or without events)."""

    actions: tuple[Action, ...] = ()
    wake_ns: int | None = None
    # The pass's guaranteed heads waiting in their leaves (common.admission): growth pods yield to them at
    # filter (Cache.waiting_guaranteed, set by the controller from this).
    guaranteed: tuple[Claim, ...] = ()

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def of(self, kind: type[A]) -> tuple[A, ...]:
        """The actions of one type, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, kind))


# --- the admission pass (common.admission) ---------------------------------------------------------


class _CacheSource:
    """The Cache as the admission pass's ``PassSource``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @property
    def queues(self) -> Queues:
        return self.cache.queues

    def releasing(self, uid: str) -> bool:
        return self.cache.releasing(uid)

    def terminating_pods(self, uid: str) -> int:
        return len(self.cache.remaining_pods(uid))

    def preemptible(self, uid: str) -> bool:
        job = self.cache.job(uid)
        return job.preemptible if job else True


# --- reconcile -------------------------------------------------------------------------------------


def reconcile(cache: Cache, now_ns: int) -> Plan:
    """Everything the controller should do now, in order: Queues, requeues, reclaims, dequeues, QueueUnits,
    Queue statuses and the tree's status. Nothing at all while there is no valid tree."""
    steps = reconcile_steps(cache, now_ns)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            plan: Plan = done.value
            return plan


def _sliced(items: Sequence[A]) -> Iterator[Sequence[A]]:
    for start in range(0, len(items), SLICE):
        yield items[start : start + SLICE]


def reconcile_steps(cache: Cache, now_ns: int) -> Generator[None, None, Plan]:
    """``reconcile`` in slices: yields between slices, returns the Plan. The caller must keep the cache
    unchanged by watch events until it returns (the controller holds them)."""
    tree, live = cache.tree, cache.ledger
    if tree is None or live is None:
        return Plan()
    ledger = live.copy()  # the verbs' assume_bound may change the live ledger between slices
    actions: list[Action] = []
    leaves = {leaf.full_name: leaf for leaf in tree.leaves()}

    # Queues: one per leaf; ours of vanished leaves and duplicates go.
    for queue in cache.queue_objects():
        kept = cache.queue_for(queue.quota)
        if queue.quota not in leaves:
            reason = f"quota {queue.quota or '(none)'} is not a leaf of the {keys.QUOTA_TREE_KIND}"
            actions.append(DeleteQueue(queue.name, reason))
        elif kept is not None and kept.name != queue.name:
            actions.append(DeleteQueue(queue.name, f"duplicate Queue for {queue.quota}: {kept.name} is kept"))
    for name, leaf in leaves.items():
        if cache.queue_for(name) is None:
            actions.append(EnsureQueue(name, queue_object(leaf, cache.queues.policy(name))))

    # Admitted jobs someone suspended: requeue them (before the pass, which cannot admit them anyway).
    jobs = cache.jobs()
    yield
    cache.ensure_waiting_queued(())  # ends the backoffs if quota was released
    states: dict[str, JobState | None] = {}
    notices: dict[str, list[tuple[str, Notice]]] = {}  # claimant uid -> (victim key, its notice)
    wake: int | None = None
    for chunk in _sliced(jobs):
        cache.ensure_waiting_queued([job.uid for job in chunk], end_backoffs=False)
        for job in chunk:
            states[job.uid] = state = cache.state(job.uid)
            if state is JobState.REQUEUE:
                leaf_name = _leaf_name(cache, job)
                reason = f"suspended while admitted to {leaf_name}; requeued with its original enqueue time"
                actions.append(Requeue(JobRef.of(job), reason, keys.PREEMPTION_NOTICE in job.annotations))
                actions.append(Event(JobRef.of(job), "Normal", keys.EVENT_REQUEUED, reason))
            elif state is JobState.ADMITTED and keys.PREEMPTION_NOTICE in job.annotations:
                due = _noticed(cache, job, now_ns, actions, notices)
                if due is not None:
                    wake = due if wake is None else min(wake, due)
        yield

    # The admission pass (its actions go after the QueueUnits', so a job's Enqueued event comes first).
    pass_start = len(actions)
    claimants = [item for uid in sorted(notices) if (item := cache.queue_item(uid)) is not None]
    decide = AdmissionPass(_CacheSource(cache), ledger, now_ns, reserved=claimants)
    yield
    yield from cache.queues.schedule_steps(decide, ledger.generation, SLICE)
    actions.extend(_growth_preemptions(cache, decide.growth_victims))
    for victim, claimant in decide.victims:
        victim_job, claimant_job = cache.job(victim.uid), cache.job(claimant.uid)  # cached jobs' claims
        if victim_job is None or claimant_job is None:  # pragma: no cover - claims come from cached jobs
            continue
        grace = grace_ns(tree, victim.quota)
        if grace > 0:
            why = (f"reclaim for {claimant.key}, guaranteed in {claimant.quota}; {victim.quota} borrows above "
                   f"its min (priority {victim.priority})")
            notice = issue(now_ns, grace, victim.key, claimant.key, claimant.uid, why)
            actions.append(Notify(JobRef.of(victim_job), notice.text(), JobRef.of(claimant_job)))
            message = (f"preemption notice: suspended at {notice.deadline} (grace {notice.grace}, from "
                       f"{victim.quota}) to {why}; set annotation {keys.CHECKPOINTED} on this RayJob once "
                       "checkpointed to be suspended at once; it requeues with its original enqueue time")
            actions.append(Event(JobRef.of(victim_job), "Warning", keys.EVENT_PREEMPTION_NOTICE, message))
            notices.setdefault(claimant.uid, []).append((victim.key, notice))
            wake = notice.deadline_ns if wake is None else min(wake, notice.deadline_ns)
            continue
        reason = (
            f"preempted to reclaim quota for {claimant.key}, guaranteed in {claimant.quota} "
            f"({victim.quota} borrows above its min; priority {victim.priority}); "
            "requeued with its original enqueue time"
        )
        actions.append(Suspend(JobRef.of(victim_job), reason, JobRef.of(claimant_job)))
        actions.append(Event(JobRef.of(victim_job), "Warning", keys.EVENT_PREEMPTED, reason))
        requeued = f"back in {victim.quota}'s queue at its original place; it resumes when capacity frees"
        actions.append(Event(JobRef.of(victim_job), "Normal", keys.EVENT_REQUEUED, requeued))
    stamp = format_go(now_ns)
    dequeued: dict[str, int] = {}
    for claim, attempts in decide.admitted:
        admitted_job = cache.job(claim.uid)
        if admitted_job is None:  # pragma: no cover - items come from cached jobs
            continue
        dequeued[claim.uid] = attempts
        size = admitted_replicas_value(admitted_job) if admitted_job.bare_cluster else None
        actions.append(Dequeue(JobRef.of(admitted_job), now_ns, stamp, size))
        message = f"dequeued from {claim.quota}: request {claim.request} fits"
        actions.append(Event(JobRef.of(admitted_job), "Normal", keys.EVENT_DEQUEUED, message))

    # QueueUnits, then their statuses.
    ensures: list[Action] = []
    statuses: list[Action] = []
    for n, job in enumerate(jobs):
        if n % SLICE == SLICE - 1:
            yield
        state = states[job.uid]
        if state in (None, JobState.UNMANAGED, JobState.DELETING):
            continue
        job_leaf = cache.leaf_for(job.namespace)
        job_queue = cache.queue_for(job_leaf.full_name) if job_leaf else None
        if job_leaf is None or job_queue is None:
            continue  # its Queue is being created: the QueueUnit follows in a later reconcile
        leaf, queue = job_leaf, job_queue
        name = queue_unit_name(job)
        desired = queue_unit_object(job, leaf, queue.name)
        cached = cache.queue_unit(job.namespace, name)
        ref = JobRef.of(job)
        adopted = _adopted_priority(job, cached) if cached is not None and cached.owner_uid == job.uid else None
        if adopted is not None and cached is not None and state in (JobState.WAITING, JobState.ADMITTED):
            stamped, suffix = cached.annotations.get(keys.PRIORITY_CHANGED_BY, ""), f" (spec.priority {adopted})"
            who = stamped.removesuffix(suffix) if stamped.endswith(suffix) else "someone the controller cannot name"
            change = (f"{who} changed priority {job.priority} -> {adopted} at {stamp} "
                      f"(QueueUnit {job.namespace}/{name} spec.priority)")
            ensures.append(SetPriority(ref, adopted, change))
        elif cached is None or cached.owner_uid != job.uid:
            ensures.append(EnsureQueueUnit(desired))
            if state in (JobState.WAITING, JobState.ADMITTED, JobState.REQUEUE):
                message = (
                    f"queued in {leaf.full_name} (Queue {keys.QUEUE_NAMESPACE}/{queue.name}), priority "
                    f"{job.priority}, request {job.request}"
                )
                ensures.append(Event(ref, "Normal", keys.EVENT_ENQUEUED, message))
        elif _unit_differs(desired, cached.spec, cached.annotations):
            ensures.append(EnsureQueueUnit(desired))
        record = job.annotations.get(keys.PRIORITY_CHANGE_RECORD)
        reported = (
            cached.annotations.get(keys.PRIORITY_CHANGE_RECORD)
            if cached and cached.owner_uid == job.uid
            else None
        )
        if record and record != reported:
            ensures.append(Event(ref, "Normal", keys.EVENT_PRIORITY_CHANGED, record))
        cached_status = cached.status if cached is not None and cached.owner_uid == job.uid else None
        status = _unit_status(cache, job, state, leaf, dequeued, stamp, cached_status)
        if job.uid in notices and status["phase"] in ("Enqueued", "Backoff"):
            status["message"] = _awaiting_notice(notices[job.uid], status["message"])
        if cached_status is None or _status_due(status, cached_status):
            statuses.append(
                UpdateQueueUnitStatus(job.namespace, name, {**status, "lastUpdateTime": rfc3339(now_ns)})
            )
    actions[pass_start:pass_start] = ensures
    for n, unit in enumerate(cache.queue_units()):
        if n % (SLICE * 8) == SLICE * 8 - 1:  # most units are skipped at the first test
            yield
        owner = unit.owner_uid
        if owner is None or not cache.present(owner) or states.get(owner) is not JobState.UNMANAGED:
            continue
        owner_job = cache.job(owner)
        if (
            owner_job is not None
            and queue_unit_name(owner_job) == unit.name
            and owner_job.namespace == unit.namespace
        ):
            reason = (
                f"{owner_job.kind} {owner_job.key} is no longer queued: namespace {owner_job.namespace} is not bound "
                "to a leaf"
            )
            actions.append(DeleteQueueUnit(unit.namespace, unit.name, reason))
    actions.extend(statuses)

    # Queue statuses.
    for n, name in enumerate(leaves):
        if n % SLICE == SLICE - 1:
            yield
        kept = cache.queue_for(name)
        if kept is None:
            continue
        status = queue_status(cache.queues, name)
        cached_details = kept.status.get("queueItemDetails")
        cached_details = cached_details if isinstance(cached_details, Mapping) else {}
        current = {
            "active": cached_details.get("active") or [],
            "backoff": cached_details.get("backoff") or [],
        }
        if current != dict(status["queueItemDetails"]):
            actions.append(UpdateQueueStatus(kept.name, dict(status)))

    # The tree's status.
    tree_status = yield from _tree_status(cache, ledger, [c for c, _ in decide.admitted])
    if tree_status != dict(cache.tree_status or {}):
        actions.append(UpdateTreeStatus(tree_status))
    actions.extend(_cluster_conditions(cache))
    return Plan(tuple(actions), wake, guaranteed=tuple(decide.heads))


def _noticed(cache: Cache, job: JobInfo, now_ns: int, actions: list[Action],
             notices: dict[str, list[tuple[str, Notice]]]) -> int | None:
    """An admitted job with a preemption notice: suspend it (acknowledged, deadline passed, unreadable
    notice), withdraw the notice (its claimant no longer waits), or wait, mirroring the notice onto its
    pods. Returns the deadline when it waits."""
    text = job.annotations.get(keys.PREEMPTION_NOTICE, "")
    ref = JobRef.of(job)
    try:
        notice: Notice | None = Notice.parse(text)
        problem = ""
    except NoticeError as exc:
        notice, problem = None, str(exc)
    acknowledged = keys.CHECKPOINTED in job.annotations
    waiting = notice is not None and cache.state(notice.claimant_uid) is JobState.WAITING
    what = step(notice, now_ns, acknowledged=acknowledged, claimant_waiting=waiting)
    if what == "wait" and notice is not None:
        actions.extend(_mirror(cache.remaining_pods(job.uid), text))
        notices.setdefault(notice.claimant_uid, []).append((job.key, notice))
        return notice.deadline_ns
    if what == "withdraw" and notice is not None:
        reason = (f"preemption notice withdrawn: its claimant {notice.claimant} no longer waits for the quota; "
                  "the job runs on")
        actions.append(WithdrawNotice(ref, reason))
        actions.append(Event(ref, "Normal", keys.EVENT_PREEMPTION_NOTICE_WITHDRAWN, reason))
        actions.extend(_mirror(cache.remaining_pods(job.uid), None))
        return None
    leaf_name = _leaf_name(cache, job)
    if notice is None:
        claimant = JobRef("", "(unknown)", "")
        why = f"its {keys.PREEMPTION_NOTICE} cannot be read ({problem}), so it has no deadline to keep"
    else:
        namespace, _, name = notice.claimant.partition("/")
        claimant = JobRef(namespace, name, notice.claimant_uid)
        when = (f"acknowledged its preemption notice ({keys.CHECKPOINTED})" if acknowledged
                else f"its preemption notice expired at {notice.deadline}")
        why = f"{when}; preempted to {notice.reason}"
    reason = f"{why}; requeued in {leaf_name} with its original enqueue time"
    actions.append(Suspend(ref, reason, claimant, clear_notice=True))
    actions.append(Event(ref, "Warning", keys.EVENT_PREEMPTED, reason))
    requeued = f"back in {leaf_name}'s queue at its original place; it resumes when capacity frees"
    actions.append(Event(ref, "Normal", keys.EVENT_REQUEUED, requeued))
    return None


def _mirror(pods: Sequence[PodInfo], notice: str | None) -> list[Action]:
    return [AnnotatePod(p.namespace, p.name, p.uid, notice) for p in pods
            if p.preemption_notice != notice and not p.deleting]


def _awaiting_notice(given: Sequence[tuple[str, Notice]], message: str) -> str:
    """The claimant's QueueUnit message: whose notices it waits for, until when."""
    ordered = sorted(given, key=lambda g: (g[1].deadline_ns, g[0]))
    listed = ", ".join(f"{victim} until {notice.deadline}" for victim, notice in ordered)
    return (f"waiting for a preemption notice to expire ({listed}, or the victim's {keys.CHECKPOINTED}"
            f" acknowledgement): {message}")


def _growth_preemptions(cache: Cache, victims: Sequence[tuple[Claim, Claim]]) -> list[Action]:
    """A PreemptPod per growth victim, in the pass's order (lowest priority, newest first)."""
    out: list[Action] = []
    for victim, claimant in victims:
        pod, job, claimant_job = cache.pod(victim.uid), cache.job(victim.growth_of), cache.job(claimant.uid)
        if pod is None or job is None or claimant_job is None:  # pragma: no cover - claims of cached objects
            continue
        owner = cache.ray_cluster(pod.owner.uid) if pod.owner is not None else None
        cluster = ObjectRef(owner.namespace, owner.name, owner.uid) if owner is not None else None
        reason = (
            f"preempted to reclaim quota for {claimant.key}, guaranteed in {claimant.quota} (request "
            f"{claimant.request}): growth pod {pod.key} of RayJob {job.key}, beyond its admitted size, request "
            f"{victim.request}; {victim.quota} borrows above its min; growth is reclaimed before whole jobs, "
            "newest first. KubeRay recreates it while the RayCluster's replicas ask for it; it then waits for "
            "the quota"
        )
        out.append(PreemptPod(ObjectRef(pod.namespace, pod.name, pod.uid), JobRef.of(job), cluster, reason))
    return out


def _cluster_conditions(cache: Cache) -> list[Action]:
    """The RayQueueQuota condition of every job's RayCluster: True (QuotaExceeded, the first refused pod's
    quota message) while growth pods of it are refused, then False (Fits) once none is; a cluster that
    never had one gets none. A GrowthRefused Warning event goes with each True write."""
    out: list[Action] = []
    refusals = cache.growth_refusals()
    for cluster in cache.ray_clusters():
        job = cache.job(cluster.job_uid) if cluster.job_uid is not None else None
        if job is None:
            continue
        refused = refusals.get(cluster.uid)
        if refused:
            pod, why = refused[0]
            count = len(refused)
            message = (
                f"{count} growth pod{'s' if count != 1 else ''} of RayJob {job.key} beyond its admitted size "
                f"wait{'' if count != 1 else 's'} for quota: pod {pod.key}: quota: {why}"
            )
            want = ("True", keys.REASON_QUOTA_EXCEEDED, message)
        elif cluster.condition is not None and cluster.condition[0] == "True":
            want = ("False", keys.REASON_FITS, "no growth pod of this RayCluster is refused by the quota")
        else:
            continue
        if cluster.condition == want:
            continue
        event: tuple[EventType, str, str] | None = (
            ("Warning", keys.EVENT_GROWTH_REFUSED, want[2]) if want[0] == "True" else None
        )
        out.append(
            SetClusterQuotaCondition(
                ObjectRef(cluster.namespace, cluster.name, cluster.uid), JobRef.of(job), *want, event=event
            )
        )
    return out


def _leaf_name(cache: Cache, job: JobInfo) -> str:
    leaf = cache.leaf_for(job.namespace)
    return leaf.full_name if leaf else "(no leaf)"


def _unit_differs(
    desired: Mapping[str, Any], spec: Mapping[str, Any], annotations: Mapping[str, str]
) -> bool:
    if dict(spec) != desired["spec"]:
        return True
    want: Mapping[str, str] = desired["metadata"]["annotations"]
    for key in (keys.QUOTA_FULLNAME, keys.PRIORITY_CHANGE_RECORD, keys.SYNCED_PRIORITY):
        if want.get(key) != annotations.get(key):
            return True
    return False


def _adopted_priority(job: JobInfo, unit: QueueUnitObject) -> int | None:
    """The QueueUnit's spec.priority when someone other than the controller set it (it differs from the
    priority the controller last wrote there, and from the RayJob's): the controller adopts it."""
    value = unit.spec.get("priority")
    synced = unit.annotations.get(keys.SYNCED_PRIORITY)
    if not isinstance(value, int) or isinstance(value, bool) or synced is None:
        return None
    if str(value) == synced or value == job.priority:
        return None
    return value


def _status_due(desired: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """Whether the QueueUnit status must be written (see POSITION_EXACT): any change of phase or message (or
    of a field appearing or going); a position or an attempts count only once it moved far enough. When
    written, every field is written exact."""
    for key, want in desired.items():
        have = cached.get(key)
        if have == want:
            continue
        if _count(want) and _count(have):
            if key == "position" and not _position_moved(want, have):
                continue
            if key == "attempts" and not _attempts_moved(want, have):
                continue
        return True
    return False


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _position_moved(new: int, old: int) -> bool:
    return min(new, old) <= POSITION_EXACT or abs(new - old) > old * POSITION_SLACK


def _attempts_moved(new: int, old: int) -> bool:
    return new < old or new >= 2 * old


def _unit_status(
    cache: Cache,
    job: JobInfo,
    state: JobState,
    leaf: QuotaNode,
    dequeued: Mapping[str, int],
    stamp: str,
    cached: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The QueueUnit status a job should show (without lastUpdateTime)."""
    previous = cached.get("attempts") if cached else None
    attempts = previous if isinstance(previous, int) and not isinstance(previous, bool) else 0
    phase: QueueUnitPhase
    position: int | None = None
    if job.uid in dequeued:
        phase, attempts = "Dequeued", dequeued[job.uid]
        message = f"dequeued at {stamp}"
    elif state is JobState.WAITING:
        queues = cache.queues
        backoff = queues.in_backoff(job.uid)
        phase = "Backoff" if backoff else "Enqueued"
        position = queues.position(job.uid)
        attempts = queues.attempts(job.uid)
        # No count in the message: a queue's size changes with every arrival and would rewrite every waiter's.
        where = " in backoff" if backoff else ""
        message = queues.reason(job.uid) or f"waiting in {leaf.full_name}{where}"
    elif state is JobState.ADMITTED:
        # A bare RayCluster runs once KubeRay calls it ready (calculateStatus: head + desired workers running).
        running = job.cluster_state == "ready" if job.bare_cluster else job.job_deployment_status == "Running"
        phase = "Running" if running else "Dequeued"
        message = f"dequeued at {format_go(cache.dequeue_ns(job.uid) or 0)}"
    elif state is JobState.REQUEUE:
        phase = "Enqueued"
        message = f"suspended while admitted to {leaf.full_name}: requeueing"
    elif state is JobState.FINISHED and job.job_deployment_status == VALIDATION_FAILED:
        phase = "Failed"
        message = (
            f"KubeRay refused the job (jobDeploymentStatus {VALIDATION_FAILED}): {job.status_message or 'no message'}; "
            "it will never run and holds no quota once its pods are gone: fix the spec and create it again"
        )
    elif state is JobState.FINISHED:
        succeeded = job.job_deployment_status == "Complete" and job.job_status in ("", "SUCCEEDED")
        phase = "Succeed" if succeeded else "Failed"
        detail = f"jobDeploymentStatus {job.job_deployment_status}"
        if job.job_status:
            detail += f", jobStatus {job.job_status}"
        if job.status_message and not succeeded:
            detail += f": {job.status_message}"
        message = f"finished: {detail}"
    else:  # RUNNING_UNQUEUED
        phase = "Running"
        message = (
            f"running outside the queue: spec.suspend is false but it has no {keys.DEQUEUE_TIMESTAMP}; "
            f"its pods count against {leaf.full_name} one by one"
        )
    return {**queue_unit_status(phase, position, message, attempts), **_sizes(cache, job, state)}


def _sizes(cache: Cache, job: JobInfo, state: JobState) -> dict[str, str]:
    """The QueueUnit's size columns (docs/growth.md): ``admitted``, the reservation its claim holds ("-"
    while it holds none); ``current``, what its live pods request now (growth and pending pods included);
    ``maximum``, the most it could ever take (``maximum_request``)."""
    pods = cache.remaining_pods(job.uid) if state is not JobState.WAITING else ()
    claim = cache.ledger.claim(job.uid) if cache.ledger is not None else None
    admitted = claim.request if claim is not None and claim.kind == "job" else Resources()
    return {
        "admitted": compact_size(admitted),
        "current": compact_size(current_request(pods)),
        "maximum": compact_size(maximum_request(job, pods)),
    }


def _tree_status(cache: Cache, ledger: Ledger, admitted: Sequence[Claim]) -> Generator[None, None, dict[str, Any]]:
    """Per node: used (the ledger plus this pass's admissions) and request (Σ waiting below it); yields
    every few leaves (a leaf's waiting items are summed one by one)."""
    tree = ledger.tree
    extra: dict[str, Resources] = {}
    waiting: dict[str, Resources] = {}
    for claim in admitted:
        for node in tree.path_to_root(claim.quota):
            extra[node.full_name] = extra.get(node.full_name, EMPTY) + claim.request
    for leaf in tree.leaves():
        yield
        total = EMPTY
        for item in (*cache.queues.active(leaf.full_name), *cache.queues.backoff(leaf.full_name)):
            total += item.request
        if total:
            for node in tree.path_to_root(leaf.full_name):
                waiting[node.full_name] = waiting.get(node.full_name, EMPTY) + total
    nodes = {
        node.full_name: {
            "used": (ledger.usage(node.full_name) + extra.get(node.full_name, EMPTY)).to_api(),
            "request": waiting.get(node.full_name, EMPTY).to_api(),
        }
        for node in tree.nodes()
    }
    return {"nodes": nodes}
