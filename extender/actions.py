"""The queue controller's typed actions: what one reconcile decided, for the loop to carry out (``Plan``).

Each action says in its docstring how the loop executes it; the patch bodies of the queued job come from
its kind's seam (``common.jobkind``), so no action asks which kind it is about.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from common import keys
from common.explain import Explain
from common.jobkind import annotations_patch, kind_of, release_patch, resume_patch
from common.ledger import Claim
from common.rayjob import JobInfo

__all__ = [
    "Action",
    "AnnotatePod",
    "ClearTimeouts",
    "DeleteLeftover",
    "DeleteQueue",
    "DeleteQueueUnit",
    "Dequeue",
    "EnsureQueue",
    "EnsureQueueUnit",
    "Event",
    "EventType",
    "Expand",
    "JobRef",
    "Notify",
    "ObjectRef",
    "Plan",
    "PreemptPod",
    "Requeue",
    "SetClusterQuotaCondition",
    "SetPriority",
    "Shrink",
    "StampStopped",
    "Suspend",
    "UpdateQueueStatus",
    "UpdateQueueUnitStatus",
    "UpdateTreeStatus",
    "WithdrawNotice",
]

EventType = Literal["Normal", "Warning"]
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


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
    """Admit a waiting job: ONE merge patch (``patch()``) guarded by resourceVersion. The loop first checks
    ``claim`` against the live ledger (skipped when it no longer fits), calls ``cache.mark_dequeued(job.uid,
    dequeue_ns)`` before the patch, so the verbs charge it meanwhile, and undoes the mark if the patch fails (on a
    conflict nothing else: the next reconcile retries)."""

    job: JobRef
    dequeue_ns: int
    dequeue_stamp: str
    admitted_replicas: str | None = None  # the size admitted, where the kind records one (JobKind.admitted_size)
    # An elastic job admitted below its replicas (common.elastic.resized_dequeue_patch): this JSON patch instead.
    json_patch: tuple[dict[str, Any], ...] = ()
    # The claim the pass admitted, checked again on the live ledger just before the patch: the verbs may have
    # bound growth since the pass copied the ledger (None: no check, for tests that build a Dequeue by hand).
    claim: Claim | None = None

    def patch(self) -> dict[str, Any]:
        return resume_patch(self.dequeue_stamp, self.admitted_replicas, self.job.resource_version)

    def body(self) -> tuple[Any, str]:
        """The request body and its content type."""
        return (list(self.json_patch), JSON_PATCH) if self.json_patch else (self.patch(), MERGE_PATCH)


@dataclass(frozen=True, slots=True)
class Suspend:
    """Reclaim: suspend the victim and remove its dequeue stamp in one merge patch (``patch()``; the
    enqueue stamp stays, so it requeues at its original place); then ``cache.mark_requeued(job.uid)``.
    ``clear_notice``: the victim had a preemption notice, which the same patch removes (with its
    acknowledgement), so the job runs again later without one.

    An admission timeout (``timed_out``, its record; docs/liveness.md; the ``claimant`` is the job itself): the
    same patch writes the job's count of timeouts in a row (``rayqueue.io/admission-timeouts``); after
    ``mark_requeued`` the loop holds its queue item in backoff (``Queues.hold``, attempt = that count) unless
    the record parks it."""

    job: JobRef
    reason: str
    claimant: JobRef
    clear_notice: bool = False
    timed_out: Explain | None = None

    @property
    def timeouts(self) -> int:
        """The count of timeouts in a row the patch writes (0: not a timeout)."""
        record = self.timed_out.timed_out if self.timed_out is not None else None
        return record.attempt if record is not None else 0

    def patch(self) -> dict[str, Any]:
        body = release_patch(kind_of(self.job.kind), suspend=True, clear_notice=self.clear_notice)
        if self.timeouts:
            body["metadata"]["annotations"][keys.ADMISSION_TIMEOUTS] = str(self.timeouts)
        return body


@dataclass(frozen=True, slots=True)
class Requeue:
    """An admitted job someone suspended: remove its dequeue stamp (``patch()``, and a preemption notice if
    it had one: ``clear_notice``), then ``cache.mark_requeued(job.uid)``. It waits again with its original
    enqueue time."""

    job: JobRef
    reason: str
    clear_notice: bool = False

    def patch(self) -> dict[str, Any]:
        return release_patch(kind_of(self.job.kind), suspend=False, clear_notice=self.clear_notice)


@dataclass(frozen=True, slots=True)
class ClearTimeouts:
    """An admitted job with a count of admission timeouts has started: remove ``rayqueue.io/admission-timeouts``
    (merge patch guarded by resourceVersion; a conflict: the next pass again); feed the job back through its
    kind's watch handler."""

    job: JobRef
    reason: str

    def patch(self) -> dict[str, Any]:
        return annotations_patch({keys.ADMISSION_TIMEOUTS: None}, self.job.resource_version)


@dataclass(frozen=True, slots=True)
class StampStopped:
    """A stopped queued RayJob whose RayCluster KubeRay leaves running, with no ``status.endTime`` (ValidationFailed):
    write ``rayqueue.io/kuberay-stopped-at`` = ``stamp`` (merge patch guarded by resourceVersion; a conflict: the next
    pass again), so its ttlSecondsAfterFinished counts from a time a restart keeps; feed the job back through its
    kind's watch handler. ``reason``: the case (``common.liveness.ClusterFate``)."""

    job: JobRef
    stamp: str
    reason: str

    def patch(self) -> dict[str, Any]:
        return annotations_patch({keys.KUBERAY_STOPPED_AT: self.stamp}, self.job.resource_version)


@dataclass(frozen=True, slots=True)
class DeleteLeftover:
    """Delete a RayCluster KubeRay leaves running after its RayJob stopped (docs/kuberay.md "Once KubeRay stops"),
    once its ttlSecondsAfterFinished passed: GET the RayJob, and go on only if it is still the version decided on
    (``job.resource_version``: nothing changed, KubeRay included); GET the RayCluster: same uid, controlled by that
    job, not being deleted; then DELETE it with its uid and resourceVersion as preconditions (background
    propagation, as KubeRay's own deleteClusterResources): a 409 or 404 does nothing (the next pass decides again).
    Once deleted, a Normal ``LeftoverClusterDeleted`` event with ``reason`` (``common.liveness.Leftover.message``)
    on the RayJob and on the RayCluster."""

    cluster: ObjectRef
    job: JobRef
    reason: str

    def delete_options(self, resource_version: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
                "preconditions": {"uid": self.cluster.uid, "resourceVersion": resource_version}}


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
        return annotations_patch({keys.PREEMPTION_NOTICE: self.notice}, self.job.resource_version)


@dataclass(frozen=True, slots=True)
class WithdrawNotice:
    """The notice's claimant no longer waits: remove the notice (merge patch guarded by resourceVersion,
    so an acknowledgement written meanwhile wins: the next pass suspends); feed the RayJob back through
    ``cache.on_rayjob``. The job runs on."""

    job: JobRef
    reason: str

    def patch(self) -> dict[str, Any]:
        return annotations_patch({keys.PREEMPTION_NOTICE: None}, self.job.resource_version)


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
        annotations = {keys.PRIORITY_OVERRIDE: str(self.priority), keys.PRIORITY_CHANGE_RECORD: self.record}
        return annotations_patch(annotations, self.job.resource_version)


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
class Shrink:
    """Reclaim workers above an elastic job's floor without evicting it (docs/elastic.md): one JSON patch of its
    RayCluster, tested against the resourceVersion read, per group in ``groups`` (name, pod names, newest first)
    lowering ``replicas`` by the named pods not named yet and naming them in ``scaleStrategy.workersToDelete``,
    as the Ray autoscaler does (KubeRay reconcilePods deletes them and does not recreate them); a replayed
    Shrink lowers nothing twice. Then a Warning ``Shrunk`` event with ``reason`` on the job, its QueueUnit
    (``unit``: namespace, name) and its RayCluster.

    Where the victim's leaf grants a grace (docs/preemption.md), the reclaim plans the Shrink with its
    ``claimant`` and ``why`` (the reclaim's words) and gives the job a shrink notice instead (``Notify``); the
    Shrink planned at the notice's deadline (or acknowledgement) carries the notice's text (``notice``): once the
    RayCluster is patched (or was already), the notice and its acknowledgement are removed from the job if it
    still holds that notice (read, then a merge patch guarded by resourceVersion)."""

    cluster: ObjectRef
    job: JobRef
    unit: tuple[str, str]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    reason: str
    claimant: JobRef | None = None
    why: str = ""
    notice: str | None = None

    @property
    def pods(self) -> int:
        return sum(len(names) for _, names in self.groups)


@dataclass(frozen=True, slots=True)
class Expand:
    """Grow an elastic job toward its target (docs/elastic.md): one JSON patch of its RayCluster raising each
    group's ``replicas`` (``groups``: index in workerGroupSpecs, replicas now, replicas then), each tested
    against the value decided on (a concurrent change makes it a 422: the next pass decides again); then a
    Normal ``Expanded`` event with ``reason`` on the job."""

    cluster: ObjectRef
    job: JobRef
    groups: tuple[tuple[int, int | None, int], ...]
    reason: str

    def patch(self) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for index, now, then in self.groups:
            path = f"/spec/workerGroupSpecs/{index}/replicas"
            ops += ([{"op": "add", "path": path, "value": then}] if now is None else
                    [{"op": "test", "path": path, "value": now}, {"op": "replace", "path": path, "value": then}])
        return ops


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
    | ClearTimeouts
    | StampStopped
    | DeleteLeftover
    | Notify
    | WithdrawNotice
    | AnnotatePod
    | SetPriority
    | Event
    | UpdateTreeStatus
    | PreemptPod
    | Shrink
    | Expand
    | SetClusterQuotaCondition
)
A = TypeVar("A")


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions of one reconcile, in the order the loop must execute them; ``wake_ns``: the earliest
    deadline still ahead, of a preemption notice or an admission timeout (the loop reconciles again then, with
    or without events)."""

    actions: tuple[Action, ...] = ()
    wake_ns: int | None = None
    # The pass's guaranteed heads waiting in their leaves (common.admission): growth pods yield to them at
    # filter (Cache.waiting_guaranteed, set by the controller from this).
    guaranteed: tuple[Claim, ...] = ()
    # The pass's releasing claims (suspended jobs, growth being deleted, workers named for deletion): a waiting
    # guaranteed head is protected as if they were gone, so growth cannot take what its reclaim frees.
    releasing: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[Action]:
        return iter(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def of(self, kind: type[A]) -> tuple[A, ...]:
        """The actions of one type, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, kind))
