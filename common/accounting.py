"""Who pays for what: the job lifecycle, the claim-hold rule, reservations, coverage and sizes, and for any pod
which job it belongs to, in which role, and how it is charged -- with the reason as data (``PodAccount``).

* **Lifecycle** (``JobState``): a *managed* job (its namespace bound to a leaf, the enqueue stamp set) is
  ``WAITING`` (suspended, no dequeue stamp: a QueueItem of its leaf), ``ADMITTED`` (dequeue stamp, not
  suspended), ``REQUEUE`` (dequeue stamp but suspended by someone: the controller must remove the stamp),
  ``RUNNING_UNQUEUED`` (not suspended, no dequeue stamp: it bypassed the queue; its pods are pod claims),
  ``FINISHED`` or ``DELETING``; any other job is ``UNMANAGED``.
* **Claim hold** (``holds_claim``): a job claim (ledger kind ``job``, uid = the job's) is held while the job is
  ADMITTED or REQUEUE and, once it finishes, is suspended or is deleted, until none of its non-terminal pods
  remain ("draining").
* **A claim follows reality once KubeRay stops** (``reservation``): a FINISHED job (Complete, Failed, or
  ValidationFailed, which KubeRay never leaves) is charged exactly what its covered live pods request, never its
  whole reservation: a finished job whose submitter Job still retries one 500m pod holds 500m. Its pods keep the
  cover they had (``covered_pods`` does not change), so nothing is charged twice or left uncharged in between;
  their ``PodAccount`` says why (``ChargeReason.LIVE_OF_STOPPED``). Whether rayqueue must also delete the cluster
  KubeRay leaves running is ``common.liveness.cluster_fate``.
* **Ownership**: a pod is a job's when its controller ownerReference names a RayCluster or a
  batch/v1 Job (the submitter) of its namespace that the job controls; a deleted parent is remembered until
  its last pod is gone. Names and labels (``ray.io/cluster``, ``job-name``) never count.
* **Coverage**: the job claim's request is its reservation (the spec's counts at each role's real pod request);
  it covers, per role, the job's live pods up to those counts (``covered_pods``). Its other pods are *growth*:
  pod claims once bound, checked like any pod. A bound (or assumed) non-terminal pod in a bound namespace that
  no job claim covers is a pod claim of its own; a pending pod is checked at filter and bind, not charged.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from common import keys
from common.gotime import GoTimeError, parse_go
from common.ledger import Claim
from common.preemption import whole_job
from common.rayjob import MAX_INT32, JobInfo, PodInfo, WorkerGroup
from common.resources import Resources

__all__ = [
    "UNSUSPENDABLE_DEPLOYMENT_STATUSES",
    "Books",
    "Charge",
    "ChargeReason",
    "JobState",
    "Ownership",
    "Parent",
    "PodAccount",
    "Role",
    "account_pod",
    "covered_pods",
    "current_request",
    "holds_claim",
    "job_claim",
    "lifecycle",
    "managed",
    "maximum_request",
    "owner_of",
    "pod_claim",
    "releasing",
    "reservation",
    "role_of",
    "uncovered_request",
]

# KubeRay moves a suspended RayJob to Suspending only from Initializing or Running
# (rayjob_controller.go updateStatusToSuspendingIfNeeded, v1.1-v1.7): a Waiting (InteractiveMode) job keeps
# its cluster whatever spec.suspend says.
UNSUSPENDABLE_DEPLOYMENT_STATUSES: Final = frozenset({"Waiting"})


# --- the job lifecycle and its claim -----------------------------------------------------------------


class JobState(enum.Enum):
    """Where a RayJob (or bare RayCluster) is in the queue's lifecycle (see the module docstring)."""

    UNMANAGED = "Unmanaged"
    WAITING = "Waiting"
    ADMITTED = "Admitted"
    REQUEUE = "Requeue"
    RUNNING_UNQUEUED = "RunningUnqueued"
    FINISHED = "Finished"
    DELETING = "Deleting"


def managed(job: JobInfo, *, bound: bool) -> bool:
    """A job rayqueue queues: its namespace is bound to a leaf (``bound``) and it carries the enqueue stamp."""
    return bound and job.enqueue_ns is not None


def lifecycle(job: JobInfo, *, present: bool, dequeued: bool, suspended: bool) -> JobState:
    """The job's lifecycle whether managed or not; ``present`` is False once it is deleted, ``dequeued`` and
    ``suspended`` are as the controller knows them (its provisional marks included)."""
    if not present or job.deleting:
        return JobState.DELETING
    if job.finished:
        return JobState.FINISHED
    if not dequeued:
        return JobState.WAITING if suspended else JobState.RUNNING_UNQUEUED
    return JobState.REQUEUE if suspended else JobState.ADMITTED


def holds_claim(state: JobState, *, managed: bool, claimed: bool, dequeued: bool, pods_remain: bool) -> bool:
    """Whether the job holds its claim (given a quota to hold it in): while ADMITTED or REQUEUE when managed
    (or already claimed: a job whose namespace lost its leaf keeps what it holds), and after that while any of
    its non-terminal pods remains, if it held the claim or is a managed job that was dequeued (draining).
    ``state`` is its ``lifecycle``; ``claimed`` says it holds the claim now."""
    return (state in (JobState.ADMITTED, JobState.REQUEUE) and (managed or claimed)) or (
        pods_remain and (claimed or (managed and dequeued))
    )


def releasing(job: JobInfo, state: JobState) -> bool:
    """Whether a job that holds a claim holds it on its way out: it finished, was deleted or suspended (its claim
    drains until its pods are gone), it is to be requeued, or it was given a preemption notice (docs/preemption.md:
    a victim already chosen, whose claim goes at its deadline). Reclaim never picks it again. A shrink notice
    (docs/elastic.md) is not one: the job keeps running, only the pods it names release. ``state`` is its
    ``lifecycle``."""
    if state is not JobState.ADMITTED:
        return True
    notice = job.annotations.get(keys.PREEMPTION_NOTICE)
    return notice is not None and whole_job(notice)


def job_claim(job: JobInfo, *, quota: str, request: Resources, admitted_order: int) -> Claim:
    """The ledger claim of a job that holds one: its reservation in its leaf."""
    return Claim(
        uid=job.uid,
        key=job.key,
        kind="job",
        quota=quota,
        request=request,
        priority=job.priority,
        preemptible=job.preemptible,
        admitted_order=admitted_order,
        suspendable=job.job_deployment_status not in UNSUSPENDABLE_DEPLOYMENT_STATUSES,
    )


def pod_claim(pod: PodInfo, *, quota: str, growth_of: str | None) -> Claim:
    """The ledger claim of a pod charged on its own (``PodAccount.claimed``), ordered by its creation so that
    growth is evicted newest first."""
    return Claim(
        uid=pod.uid,
        key=pod.key,
        kind="pod",
        quota=quota,
        request=pod.request,
        priority=pod.priority,
        admitted_order=_created_ns(pod),
        growth_of=growth_of or "",
    )


def _created_ns(pod: PodInfo) -> int:
    """The pod's creation time in ns (0 when unknown)."""
    if not pod.created:
        return 0
    try:
        return parse_go(pod.created)
    except GoTimeError:
        return 0


# --- roles, reservation, coverage and sizes ------------------------------------------------------------

Role = tuple[str, str]  # ("head", ""), ("worker", group name), ("submitter", "")


def role_of(pod: PodInfo) -> Role | None:
    """A job's pod's role: the head and each worker group (pods controlled by a RayCluster, by
    ``ray.io/node-type`` and ``ray.io/group``), the submitter (the pod controlled by a batch/v1 Job)."""
    if pod.owner is None:
        return None
    if pod.owner.kind == keys.BATCH_JOB_KIND:
        return ("submitter", "")
    if pod.owner.kind == keys.RAYCLUSTER_KIND and pod.node_type == "head":
        return ("head", "")
    if pod.owner.kind == keys.RAYCLUSTER_KIND and pod.node_type == "worker":
        return ("worker", pod.ray_group or "")
    return None


def _counts(job: JobInfo) -> dict[Role, int]:
    """How many pods of each role the job was admitted with."""
    counts: dict[Role, int] = {}
    if job.head_request:
        counts[("head", "")] = 1
    if job.submitter_request:
        counts[("submitter", "")] = 1
    for group in job.worker_groups:
        counts[("worker", group.name)] = counts.get(("worker", group.name), 0) + job.reserved_pods(group)
    return counts


def _seen_requests(pods: Iterable[PodInfo]) -> dict[Role, Resources]:
    """Per role, the largest request among the job's pods of that role."""
    seen: dict[Role, Resources] = {}
    for pod in pods:
        role = role_of(pod)
        if role is not None:
            seen[role] = seen[role].max(pod.request) if role in seen else pod.request
    return seen


def _sized(job: JobInfo, seen: dict[Role, Resources], group_pods: Callable[[WorkerGroup], int]) -> Resources:
    """Head + submitter + each worker group at ``group_pods(group)`` pods, each role at its largest real pod's
    request where one exists, else at the prediction."""
    total = seen.get(("head", ""), job.head_request) if job.head_request else Resources()
    if job.submitter_request:
        total = total + seen.get(("submitter", ""), job.submitter_request)
    for group in job.worker_groups:
        pods = group_pods(group)
        if pods:
            total = total + seen.get(("worker", group.name), group.pod_request).scaled(pods)
    return total.clamp_low()


def reservation(job: JobInfo, pods: Iterable[PodInfo], placed: AbstractSet[str] = frozenset()) -> Resources:
    """The quota an admitted job holds: its request, with each role's per-pod request replaced by what the
    job's pods really request where some exist (the largest pod of the role), at the spec's counts.

    The prediction (templates plus ``KubeRayAdditions``) can be short: a mutating webhook of the cluster,
    a LimitRange or an operator setting we were not told of adds to the pods. Once the pods exist their
    requests are the truth.

    Once KubeRay stopped the job (``JobInfo.finished``: Complete, Failed, ValidationFailed) nothing will create
    the pods the reservation was kept for: the claim is the sum of the requests of the live pods it covers
    (``covered_pods`` with the same ``placed``), so it shrinks as they go and is what is really running."""
    pods = tuple(pods)
    if job.finished:
        covered = covered_pods(job, pods, placed)
        return sum((p.request for p in pods if p.uid in covered), Resources())
    seen = _seen_requests(pods)
    if not seen:
        return job.request
    return _sized(job, seen, job.reserved_pods)


def covered_pods(job: JobInfo, pods: Iterable[PodInfo], placed: AbstractSet[str] = frozenset()) -> frozenset[str]:
    """The job's pods its reservation covers: per role, the live (non-terminal) pods up to the count it was
    admitted with, bound ones first (``node_name``, or a uid in ``placed``: being bound), then the oldest.
    The others are *growth* (a retried job's new pods while its old ones still terminate, more workers than
    admitted, a pod of no role): each must fit the quota like any other pod. A terminating pod keeps its
    place until it is gone, as it keeps its node.

    Bound first: creationTimestamp has whole seconds, so a worker added in the same second as the admitted
    one ties with it, and the uid would then decide; a pending pod taking the cover from a bound one would
    bind unchecked (the bound one then charged as growth: the job past its max)."""
    counts = _counts(job)
    by_role: dict[Role, list[PodInfo]] = {}
    for pod in pods:
        role = role_of(pod)
        if role is not None and not pod.terminal:
            by_role.setdefault(role, []).append(pod)
    covered: set[str] = set()
    for role, members in by_role.items():
        members.sort(key=lambda p: (not (p.node_name or p.uid in placed), p.created or "~", p.uid))
        covered.update(p.uid for p in members[: counts.get(role, 0)])
    return frozenset(covered)


def maximum_request(job: JobInfo, pods: Iterable[PodInfo] = ()) -> Resources | None:
    """The most the job could ever take: head + submitter + each worker group at ``maxReplicas`` x
    numOfHosts pods when ``enableInTreeAutoscaling`` is on (the Ray autoscaler moves ``replicas`` within
    [minReplicas, maxReplicas], and KubeRay v1.7.0 utils/util.go GetWorkerGroupDesiredReplicas clamps a
    larger ``replicas`` to maxReplicas), else at its desired replicas (the reservation's counts). Per-pod
    requests as ``reservation``: the prediction with KubeRay's additions, or the largest real pod of the
    role. None when it is unbounded (an autoscaled group with maxReplicas left at the CRD default
    math.MaxInt32). Informative: growth is checked pod by pod whatever this says (the RayCluster itself
    can be edited, maxReplicas included)."""
    if not job.autoscaling:  # an elastic job without the autoscaler at its ceiling, its replicas
        return reservation(job, pods) if not job.elastic else _sized(job, _seen_requests(pods), lambda g: g.pods)
    if any(g.max_replicas == MAX_INT32 and not g.suspended for g in job.worker_groups):
        return None
    return _sized(job, _seen_requests(pods), lambda group: group.max_pods)


def current_request(pods: Iterable[PodInfo]) -> Resources:
    """What the job's live (non-terminal) pods request now, bound or pending, covered or growth."""
    total = Resources()
    for pod in pods:
        if not pod.terminal:
            total = total + pod.request
    return total


# --- one pod: its job, its role, its charge ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Parent:
    """A RayCluster or a submitter Job (``kind``): its namespace and the job its controller ownerReference
    names (a bare RayCluster is its own job); ``present`` is False once it is deleted (kept while its pods
    remain: a suspended or retrying job's terminating pods are still its own)."""

    kind: str
    namespace: str
    job_uid: str | None
    present: bool = True


class Ownership(enum.Enum):
    """Why a pod is, or is not, a job's (by ownerReference UIDs only)."""

    OWNED = "its controller ownerReference names a RayCluster or submitter Job that its job controls"
    NO_CONTROLLER = "it has no controller ownerReference (labels and names never make a pod part of a job)"
    UNKNOWN_PARENT = "its controller is no RayCluster or submitter Job rayqueue knows of"
    OTHER_NAMESPACE = "its controller, or that controller's job, is of another namespace"
    NO_JOB = "its RayCluster or submitter Job is controlled by no job rayqueue knows of"


Charge = Literal["covered", "growth", "own-claim", "not-charged"]


class ChargeReason(enum.Enum):
    """Why a pod is charged as it is (``PodAccount.charge``)."""

    COVERED = "its job's reservation covers it"
    LIVE_OF_STOPPED = ("its job finished or KubeRay will never run it again: the job's claim is what its live "
                       "pods request, this one's included")
    GROWTH_BOUND = "its job's reservation is full: growth, charged as a pod claim of its own since its bind"
    GROWTH_PENDING = "its job's reservation is full: growth, checked against its quota at filter and bind"
    OWN_CLAIM = "no job's reservation covers it: charged as a pod claim of its own"
    PENDING = "it is not bound yet: checked against its quota at filter and bind"
    TERMINAL = "it finished (Succeeded or Failed): it holds nothing"
    UNBOUND_NAMESPACE = "its namespace is bound to no quota leaf"


@dataclass(frozen=True, slots=True, kw_only=True)
class PodAccount:
    """The answer for one pod: the job it belongs to (``job_uid``, None for a pod of no job, with the
    ``ownership`` reason), its ``role`` in that job, how it is charged and why. ``growth_of`` is the job whose
    claim holds quota but not for this pod (its pod beyond the reservation), whatever its charge; ``claimed``
    says it holds a pod claim of its own in the ledger."""

    pod_uid: str
    job_uid: str | None
    ownership: Ownership
    role: Role | None
    charge: Charge
    reason: ChargeReason
    growth_of: str | None = None

    @property
    def claimed(self) -> bool:
        return self.charge == "own-claim" or self.reason is ChargeReason.GROWTH_BOUND


class Books(Protocol):
    """What the accounting of a pod reads from the store (the cache implements it over its indexes)."""

    def parent(self, uid: str) -> Parent | None:
        """A RayCluster or submitter Job by uid (deleted ones kept while their pods remain)."""

    def job_namespace(self, job_uid: str) -> str | None:
        """The namespace of a known job, None for none."""

    def claim_held(self, job_uid: str) -> bool:
        """The job holds its claim in the ledger."""

    def covered(self, job_uid: str) -> AbstractSet[str]:
        """The job's pods its reservation covers (``covered_pods``, as last derived)."""

    def stopped(self, job_uid: str) -> bool:
        """KubeRay stopped the known job (``JobInfo.finished``): its claim is its covered live pods' requests."""

    def bound(self, namespace: str) -> bool:
        """The namespace is bound to a leaf of the quota tree."""

    def placed(self, pod: PodInfo) -> bool:
        """The pod is bound, or being bound by the extender."""


def owner_of(pod: PodInfo, books: Books) -> tuple[str | None, Ownership]:
    """The job a pod belongs to: its controller ownerReference names a RayCluster (KubeRay's Ray pods) or a
    batch/v1 Job (the K8sJobMode submitter's pod) of the same namespace, and that parent's controller
    ownerReference names the job, also of that namespace. A pod that merely carries someone's cluster label
    is its own namespace's pod."""
    ref = pod.owner
    if ref is None:
        return None, Ownership.NO_CONTROLLER
    parent = books.parent(ref.uid)
    if parent is None or parent.kind != ref.kind:
        return None, Ownership.UNKNOWN_PARENT
    if parent.namespace != pod.namespace:
        return None, Ownership.OTHER_NAMESPACE
    if parent.job_uid is None:
        return None, Ownership.NO_JOB
    namespace = books.job_namespace(parent.job_uid)
    if namespace is None:
        return None, Ownership.NO_JOB
    if namespace != pod.namespace:
        return None, Ownership.OTHER_NAMESPACE
    return parent.job_uid, Ownership.OWNED


def account_pod(pod: PodInfo, books: Books) -> PodAccount:
    """Which job this pod belongs to, in which role, and whether it is covered, growth, its own claim or not
    charged, with the reason (see the module docstring)."""
    job_uid, ownership = owner_of(pod, books)
    claimed_job = job_uid is not None and books.claim_held(job_uid)
    covered = claimed_job and job_uid is not None and pod.uid in books.covered(job_uid)
    growth_of = job_uid if claimed_job and not covered else None
    charge: Charge
    if covered and job_uid is not None and books.stopped(job_uid):
        charge, reason = "covered", ChargeReason.LIVE_OF_STOPPED
    elif covered:
        charge, reason = "covered", ChargeReason.COVERED
    elif not books.bound(pod.namespace):
        charge, reason = "not-charged", ChargeReason.UNBOUND_NAMESPACE
    elif pod.terminal:
        charge, reason = "not-charged", ChargeReason.TERMINAL
    elif growth_of is not None:
        placed = books.placed(pod)
        charge, reason = "growth", ChargeReason.GROWTH_BOUND if placed else ChargeReason.GROWTH_PENDING
    elif not books.placed(pod):
        charge, reason = "not-charged", ChargeReason.PENDING
    else:
        charge, reason = "own-claim", ChargeReason.OWN_CLAIM
    return PodAccount(
        pod_uid=pod.uid,
        job_uid=job_uid,
        ownership=ownership,
        role=role_of(pod) if job_uid is not None else None,
        charge=charge,
        reason=reason,
        growth_of=growth_of,
    )


def uncovered_request(pod: PodInfo, gang: Iterable[PodInfo], books: Books) -> Resources:
    """What placing this pod, which no reservation covers, adds to its quota: its request; for a gang member
    (``gang``: the pods of its gang), the requests of every pending uncovered member of its gang, which bind
    together."""
    if not pod.gang_name:
        return pod.request
    total = Resources()
    for other in gang:
        if other.uid == pod.uid or not (
            books.placed(other) or other.terminal or other.deleting or account_pod(other, books).charge == "covered"
        ):
            total = total + other.request
    return total
