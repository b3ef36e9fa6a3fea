"""The queue controller's cache: one in-memory state folded from watch events, no I/O, accounted by UID.

Every handler is a plain synchronous method ``on_<kind>(event_type, obj)`` (``ADDED`` / ``MODIFIED`` /
``DELETED``) that the I/O loop calls for each watch event, in order. A replayed ``ADDED``/``MODIFIED``
changes nothing (objects are compared after conversion, claims are keyed by UID); ``DELETED`` of an
unknown UID is a no-op.

The cache stores and indexes; every quota answer is ``common.accounting``'s: the job
lifecycle (``JobState``), when a job holds its claim (``holds_claim``), its reservation and the pods it covers,
and for each pod its job (by ownerReference UIDs), role and charge (``account_pod``). What it keeps:

* RayJobs, and *bare* RayClusters (no controller ownerReference: a tenant's interactive cluster) queued as jobs
  of their own (``JobInfo.from_raycluster``, kind RayCluster): its uid is the job's and the parent's, so the
  pods it controls are its job's, covered up to the size it was admitted with (``rayqueue.io/admitted-replicas``).
  A RayCluster any controller owns (a RayJob's) is never one. A job with a foreign ``spec.managedBy`` is never
  queued and holds no job claim, whatever stamps it carries: its pods are pod claims (``JobRecord.managed``).
* the parents (RayClusters, submitter Jobs) with the job controlling each, kept after deletion until their last
  pod is gone, and pods indexed by parent and by gang;
* the ledger: job claims, and pod claims (non-terminal bound pods in bound namespaces that no job claim covers);
* node usage and cluster capacity (extender.nodes.NodeState), pods of every namespace included;
* the queues (``Queues``: one QueueItem per WAITING job), our Queue and QueueUnit objects, and the growth
  refusals the verbs recorded (``extender.growth_refusals``).

``mark_dequeued`` / ``mark_requeued`` are the loop's provisional updates (a dequeue's before its patch, undone
if it fails, so the verbs charge it while it is in flight; a requeue's after its patch): the job is treated as
dequeued (requeued) until a watch event confirms it, so a stale event that arrives in between cannot undo it and
a second decision cannot admit it twice.

Which backoffs a release of quota ends is ``extender.release_sweep``'s.

A RayJob whose quota label names another leaf than its namespace's is charged to its namespace's leaf (the
webhook refuses such labels, so one can only predate it): the namespace binding is the rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any, Final, TypeVar

from common import keys
from common.accounting import (
    JobState,
    Parent,
    PodAccount,
    account_pod,
    covered_pods,
    holds_claim,
    job_claim,
    lifecycle,
    owner_of,
    pod_claim,
    releasing,
    reservation,
    uncovered_request,
)
from common.clock import Clock
from common.jobkind import RAYCLUSTER, RAYJOB, JobKind
from common.kuberay_additions import DEFAULT_ADDITIONS, KubeRayAdditions
from common.ledger import Claim, Ledger
from common.queueing import Backoff, QueueItem, Queues
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from common.wire import ShapeError
from extender.cache_books import CacheBooks
from extender.growth_refusals import GrowthRefusalLog
from extender.job_records import JobConverter, JobRecord, foreign_manager, queue_item_for, sync_queue
from extender.nodes import NodeInfo, NodeState
from extender.ownership_index import OwnershipIndex, parent_from
from extender.release_sweep import ReleaseSweep
from extender.tree_state import TreeState
from extender.watched_objects import (
    ClusterObject,
    ClusterObjectStore,
    QueueObject,
    QueueObjectStore,
    QueueUnitObject,
    controller_ref,
    meta_of,
    pack,
)

__all__ = ["Cache"]

T = TypeVar("T")
log = logging.getLogger(__name__)

DELETED: Final = "DELETED"


class Cache:
    """The controller's state: tree, ledger, queues, jobs, pods, nodes, Queue and QueueUnit objects.

    Not thread-safe: one owner (the asyncio loop) calls every method, and each runs to its end without
    awaiting. A reconcile pass may yield between its slices (the verbs read the cache and assume binds
    meanwhile); the controller holds watch events until the pass has made its plan (``Controller.deliver``).
    ``generation`` grows on every change; ``dirty`` says a reconcile is due (``clear_dirty``).
    The loop must list every kind before the first reconcile (a restart rebuilds from the API).
    """

    def __init__(self, clock: Clock, backoff: Backoff | None = None, additions: KubeRayAdditions = DEFAULT_ADDITIONS) -> None:
        self.clock = clock
        self._convert = JobConverter(additions)
        self.queues = Queues(clock, backoff)
        self.nodes = NodeState()
        self._quota = TreeState()  # the tree, its status and problem, the ledger on it
        self._jobs: dict[str, JobRecord] = {}
        self._owners = OwnershipIndex()  # parents and the jobs controlling them, their pods, gangs
        self._pods: dict[str, PodInfo] = {}
        self._pod_owner: dict[str, str] = {}  # pod uid -> job uid, as last computed
        self._assumed: dict[str, str] = {}  # pod uid -> node: bound by the extender, not yet seen bound
        self._clusters = ClusterObjectStore()  # RayCluster uid -> what the controller writes to it
        self._growth_log = GrowthRefusalLog()  # the verbs' refusals of growth pods, for the controller
        self._books = CacheBooks(self._owners, self._jobs, self._assumed, lambda: self._quota.ledger, self.leaf_for)
        # The last pass's guaranteed heads waiting in their leaves: a growth pod yields to them at filter
        # (the guaranteed-first rule, as for jobs). Set by the controller after each plan.
        self.waiting_guaranteed: tuple[Claim, ...] = ()
        self.releasing_claims: frozenset[str] = frozenset()  # the last pass's releasing claims (docs/elastic.md)
        self._released = ReleaseSweep()  # what a release of quota unblocks, swept once per reconcile
        self._queue_objects = QueueObjectStore()  # our Queues and every QueueUnit
        self.problems: dict[str, str] = {}  # "Kind namespace/name" -> why it was ignored
        self._generation = 0
        self._dirty = False

    # --- state for reconcile and the extender ----------------------------------------------------

    @property
    def tree(self) -> QuotaTree | None:
        return self._quota.tree

    @property
    def tree_status(self) -> Mapping[str, Any] | None:
        """The ElasticQuotaTree's ``status`` as the watch last showed it."""
        return self._quota.status

    @property
    def tree_problem(self) -> str | None:
        """Why the last ElasticQuotaTree event was not taken (invalid, or deleted), None once a valid one is."""
        return self._quota.problem

    @property
    def ledger(self) -> Ledger | None:
        """Usage per quota node; None until a valid tree arrives."""
        return self._quota.ledger

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def dirty(self) -> bool:
        return self._dirty

    def clear_dirty(self) -> None:
        """The loop calls this when it starts a reconcile."""
        self._dirty = False

    def leaf_for(self, namespace: str) -> QuotaNode | None:
        tree = self._quota.tree
        return tree.leaf_for_namespace(namespace) if tree else None

    def job(self, uid: str) -> JobInfo | None:
        rec = self._jobs.get(uid)
        return rec.info if rec else None

    def jobs(self) -> tuple[JobInfo, ...]:
        """Every known RayJob and bare RayCluster (deleted ones still draining included), by namespace, name, uid."""
        infos = [r.info for r in self._jobs.values()]
        return tuple(sorted(infos, key=lambda j: (j.namespace, j.name, j.uid)))

    def foreign_manager(self, uid: str) -> str | None:
        """The job's ``spec.managedBy`` when another controller manages it (then it is not queued), else None."""
        return rec.foreign_manager if (rec := self._jobs.get(uid)) else None

    def present(self, uid: str) -> bool:
        rec = self._jobs.get(uid)
        return rec is not None and rec.present

    def dequeue_ns(self, uid: str) -> int | None:
        """The job's dequeue time as the controller knows it (provisional marks included)."""
        rec = self._jobs.get(uid)
        return rec.dequeue_ns if rec else None

    def state(self, uid: str) -> JobState | None:
        rec = self._jobs.get(uid)
        return self._state(rec) if rec else None

    def releasing(self, uid: str) -> bool:
        """The job holds a claim that is on its way out: it finished, was deleted or suspended (its claim
        drains until its pods are gone), it is to be requeued, or it was given a preemption notice.
        Reclaim never picks it again. For a pod claim: the pod is being deleted (a growth pod evicted by
        reclaim drains like a suspended job)."""
        claimed = self.ledger is not None and uid in self.ledger
        pod = self._pods.get(uid)
        if pod is not None:
            return claimed and pod.deleting
        rec = self._jobs.get(uid)
        return rec is not None and claimed and releasing(rec.info, self._lifecycle(rec))

    def remaining_pods(self, uid: str) -> tuple[PodInfo, ...]:
        """The job's non-terminal pods, sorted by uid."""
        rec = self._jobs.get(uid)
        return tuple(p for p in self._pods_of(uid, rec) if not p.terminal) if rec else ()

    def pod(self, uid: str) -> PodInfo | None:
        return self._pods.get(uid)

    def pods(self) -> tuple[PodInfo, ...]:
        return tuple(self._pods[uid] for uid in sorted(self._pods))

    def gang_members(self, namespace: str, gang: str) -> list[PodInfo]:
        """The cached pods carrying gang label `gang` in `namespace` (indexed: no scan of every pod)."""
        return [self._pods[uid] for uid in self._owners.gang(namespace, gang)]

    def account(self, pod_uid: str) -> PodAccount | None:
        """The cached pod's account (``common.accounting.account_pod``): its job, role and charge, with the
        reason; None for a pod the cache does not know."""
        pod = self._pods.get(pod_uid)
        return account_pod(pod, self._books) if pod is not None else None

    def growth_job(self, pod_uid: str) -> JobInfo | None:
        """The admitted job this pod is growth of (its pod beyond the job's reservation), or None."""
        account = self.account(pod_uid)
        return self._jobs[account.growth_of].info if account is not None and account.growth_of else None

    def record_growth_answer(self, pod_uid: str, refusal: str | None) -> bool:
        """The verbs' quota answer for a growth pod (``extender.quota_gate``): its refusal, or None once it
        fits. True when that changed what the controller must write (the RayCluster's condition)."""
        return self._growth_log.record(pod_uid, refusal)

    def growth_refusals(self) -> dict[str, list[tuple[PodInfo, str]]]:
        """Per RayCluster uid: its pending growth pods the quota refused, with the refusal, oldest pod first.
        A refusal counts only while its pod is still pending growth (bound, gone or covered: it is over)."""
        def pending_growth(uid: str) -> PodInfo | None:
            pod, account = self._pods.get(uid), self.account(uid)
            if pod is None or account is None or account.growth_of is None:
                return None
            return None if pod.node_name or uid in self._assumed or pod.terminal or pod.deleting else pod

        return self._growth_log.pending(pending_growth)

    def ray_clusters(self) -> tuple[ClusterObject, ...]:
        """Every present RayCluster controlled by a RayJob, sorted by namespace, name."""
        return self._clusters.all()

    def ray_cluster(self, uid: str) -> ClusterObject | None:
        return self._clusters.get(uid)

    def covering_job(self, pod_uid: str) -> JobInfo | None:
        """The job whose claim covers this pod (the pod's quota is held by the job's reservation), or None:
        also None for a job's pod beyond its reservation (growth)."""
        account = self.account(pod_uid)
        if account is None or account.charge != "covered" or account.job_uid is None:
            return None
        return self._jobs[account.job_uid].info

    def queue_objects(self) -> tuple[QueueObject, ...]:
        """Our Queue objects, sorted by name."""
        return self._queue_objects.queues()

    def queue_for(self, leaf: str) -> QueueObject | None:
        """The Queue kept for a leaf: the oldest of ours naming it (then by name)."""
        return self._queue_objects.kept(leaf)

    def queue_unit(self, namespace: str, name: str) -> QueueUnitObject | None:
        return self._queue_objects.unit(namespace, name)

    def queue_units(self) -> tuple[QueueUnitObject, ...]:
        return self._queue_objects.units()

    def queue_item(self, uid: str) -> QueueItem | None:
        """The QueueItem a WAITING job should have (None otherwise)."""
        rec = self._jobs.get(uid)
        return queue_item_for(rec.info, self._state(rec), self.leaf_for(rec.info.namespace)) if rec else None

    def ensure_waiting_queued(self, uids: Iterable[str] | None = None, *, end_backoffs: bool = True) -> None:
        """Put every WAITING job back in its queue (one admitted by a pass whose patch was never confirmed
        by ``mark_dequeued`` comes back here) and take out any item that is not WAITING; end the backoffs
        releases since the last call may unblock. ``uids`` sweeps only those jobs and ``end_backoffs=False``
        leaves the backoffs alone (the controller sweeps in slices between which the verbs run)."""
        if end_backoffs:
            self._released.sweep(self.queues)
        for uid in sorted(self._jobs) if uids is None else uids:
            sync_queue(self.queues, uid, self.queue_item(uid))

    # --- provisional marks ------------------------------------------------------------------------

    def mark_dequeued(self, job_uid: str, dequeue_ns: int | None) -> None:
        """The loop is patching the job (suspend false + dequeue stamp): treat it as admitted from now on, so the
        verbs charge its claim while the patch is in flight; ``None``: the patch failed, it has no stamp."""
        rec = self._jobs.get(job_uid)
        if rec is None or (dequeue_ns is not None and rec.dequeue_ns == dequeue_ns and not rec.suspended):
            return
        rec.provisional_dequeue_ns, rec.provisional_requeued = dequeue_ns, dequeue_ns is None
        self._refresh_job(job_uid)
        self._changed()

    def mark_requeued(self, job_uid: str) -> None:
        """The loop removed the job's dequeue stamp (and suspended it): treat it as waiting from now on."""
        rec = self._jobs.get(job_uid)
        if rec is None or rec.provisional_requeued:
            return
        rec.provisional_requeued = True
        rec.provisional_dequeue_ns = None
        self._refresh_job(job_uid)
        self._changed()

    # --- handlers ---------------------------------------------------------------------------------

    def assume_bound(self, pod_uid: str, node: str) -> None:
        """The extender is binding this pod to `node`: count it there now (its node usage and, if no job covers
        it, its pod claim), before the watch confirms, so concurrent binds cannot both pass the quota."""
        pod = self._pods.get(pod_uid)
        if pod is None or pod.node_name:
            return
        self._assumed[pod_uid] = node
        self.nodes.add_pod(replace(pod, node_name=node))
        # Every pod, a job's too: a growth pod is charged from its bind on, or two growth pods bound before
        # the watch shows either would both pass the quota (a covered pod gets no claim here).
        self._refresh_pod(pod_uid)
        self._changed()

    def forget_assumed(self, pod_uid: str) -> None:
        """The binding failed: undo assume_bound."""
        if self._assumed.pop(pod_uid, None) is None:
            return
        pod = self._pods.get(pod_uid)
        if pod is not None and not pod.node_name:
            self.nodes.add_pod(pod)  # unbound again: NodeState drops it
            self._refresh_pod(pod_uid)
        self._changed()

    def on_tree(self, event_type: str, obj: dict[str, Any]) -> None:
        """The ElasticQuotaTree (``extender.tree_state``): a new or deleted tree derives every claim again."""
        change = self._quota.on_tree(event_type, obj, self._capacity)
        if change == "tree":
            self._refresh_all()
        if change != "none":
            self._changed()

    def on_rayjob(self, event_type: str, obj: dict[str, Any]) -> None:
        self._on_job(event_type, obj, RAYJOB)

    def _on_job(self, event_type: str, obj: dict[str, Any], kind: JobKind) -> None:
        """A queued object (a RayJob, or a bare RayCluster queued as a job of its own) was added, changed or went."""
        meta = meta_of(obj)
        uid = str(meta.get("uid") or "")
        if not uid:
            return
        rec = self._jobs.get(uid)
        if event_type == DELETED:
            if rec is None or not rec.present:
                return
            rec.present = False
            rec.provisional_dequeue_ns, rec.provisional_requeued = None, False
            self._refresh_job(uid)
            self._changed()
            return
        info = self._converted(f"{kind.kind} {meta.get('namespace')}/{meta.get('name')}",
                               partial(self._convert.convert, kind), obj)
        if info is None:
            return
        manager = foreign_manager(obj)
        if rec is not None and rec.present and rec.info == info and rec.foreign_manager == manager:
            return
        if rec is None:
            rec = self._jobs[uid] = JobRecord(raw=pack(obj), info=info, foreign_manager=manager)
        else:
            rec.raw, rec.info, rec.foreign_manager, rec.present = pack(obj), info, manager, True
        if rec.provisional_dequeue_ns is not None and info.dequeue_ns is not None:
            rec.provisional_dequeue_ns = None  # the watch caught up with our patch
        if rec.provisional_requeued and info.dequeue_ns is None:
            rec.provisional_requeued = False
        self._reassign(self._owners.job_pods(uid), also=uid)  # its pods, if they arrived before it
        self._changed()

    def on_raycluster(self, event_type: str, obj: dict[str, Any]) -> None:
        """RayClusters: which RayJob controls each (its pods belong to that job). A *bare* RayCluster, one with
        no controller ownerReference at all (a tenant's interactive cluster), is a queued job of its own: its
        uid is both the job's and the parent's, so its pods (controlled by it) are its job's pods. A cluster
        that any controller owns (a RayJob, a RayService, ...) is never bare; one that stops being bare leaves
        the queue as if deleted (its claim drains with its pods). The controller's RayQueueQuota
        condition on each is kept too."""
        meta = meta_of(obj)
        uid = str(meta.get("uid") or "")
        if not uid:
            return
        bare = controller_ref(meta) is None
        rec = self._jobs.get(uid)
        if bare or (rec is not None and rec.info.kind == RAYCLUSTER.kind):
            self._on_job(event_type if bare else DELETED, obj, RAYCLUSTER)
        self._on_parent(keys.RAYCLUSTER_KIND, event_type, obj, own_job=bare)
        parent = self._owners.parent(uid)
        live = event_type != DELETED and parent is not None and parent.present
        if self._clusters.record(uid, obj, parent.job_uid if live and parent is not None else None, live=live):
            self._changed()

    def on_batch_job(self, event_type: str, obj: dict[str, Any]) -> None:
        """batch/v1 Jobs: a K8sJobMode submitter is a Job controlled by its RayJob."""
        self._on_parent(keys.BATCH_JOB_KIND, event_type, obj)

    def on_pod(self, event_type: str, obj: dict[str, Any]) -> None:
        meta = meta_of(obj)
        uid = str(meta.get("uid") or "")
        if not uid:
            return
        old = self._pods.get(uid)
        if event_type == DELETED:
            if old is None:
                return
            del self._pods[uid]
            self._growth_log.forget(uid)
            self._unindex_pod(old, gone=True)
            self._assumed.pop(uid, None)
            self.nodes.remove_pod(uid)
            self._drop_claim(uid)
            owner = self._pod_owner.pop(uid, None)
            if owner is not None:
                self._refresh_job(owner)
            self._changed()
            return
        info = self._converted(f"Pod {meta.get('namespace')}/{meta.get('name')}", PodInfo.from_pod, obj)
        if info is None:
            return
        if old == info:
            return
        if old is not None:
            self._unindex_pod(old)
        self._pods[uid] = info
        self._owners.add_pod(info)
        if info.node_name or info.terminal:
            self._assumed.pop(uid, None)  # the watch caught up with the binding
        assumed = self._assumed.get(uid)
        self.nodes.add_pod(replace(info, node_name=assumed) if assumed else info)
        previous = self._pod_owner.get(uid)
        owner = self._owner(info)
        if owner is not None:
            self._pod_owner[uid] = owner
        else:
            self._pod_owner.pop(uid, None)
        if previous is not None and previous != owner:
            self._refresh_job(previous)
        if owner is not None:
            self._refresh_job(owner)
        else:
            self._refresh_pod(uid)
        self._changed()

    def on_node(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str(meta_of(obj).get("name") or "")
        if not name:
            return
        if event_type == DELETED:
            if name not in self.nodes:
                return
            self.nodes.remove_node(name)
        else:
            try:
                info = NodeInfo.from_node(obj)
            except ShapeError as exc:
                self.problems[f"Node {name}"] = str(exc)
                log.error("Node %s ignored: %s", name, exc)
                return
            self.problems.pop(f"Node {name}", None)
            if self.nodes.node(name) == info:
                return
            self.nodes.set_node(info)
        if self.ledger is not None:
            before, after = self.ledger.capacity, self._capacity()
            self.ledger.set_capacity(after)
            if after != before:
                self._released.capacity_changed()
        self._changed()

    def on_priority_class(self, event_type: str, obj: dict[str, Any]) -> None:
        name = self._convert.on_priority_class(event_type, obj)
        if name is None:
            return
        for uid in sorted(self._jobs):
            rec = self._jobs[uid]
            if rec.info.priority_class_name == name:
                try:
                    rec.info = self._convert.again(rec)
                except ShapeError:  # pragma: no cover - it converted before
                    continue
                self._refresh_job(uid)
        self._changed()

    def on_queue(self, event_type: str, obj: dict[str, Any]) -> None:
        """Queue objects: only ours (namespace kube-queue, label create-by-kubequeue: "true") count."""
        if self._queue_objects.on_queue(event_type, obj, self.problems):
            self._apply_policies()
            self._changed()

    def on_queue_unit(self, event_type: str, obj: dict[str, Any]) -> None:
        if self._queue_objects.on_queue_unit(event_type, obj):
            self._changed()

    # --- derivation -------------------------------------------------------------------------------

    def _converted(self, ref: str, convert: Callable[[dict[str, Any]], T], obj: dict[str, Any]) -> T | None:
        """Convert an object once at the edge; a malformed one is ignored, its problem recorded (and logged
        once per distinct problem) until a valid version of it arrives."""
        try:
            value = convert(obj)
        except ShapeError as exc:
            if self.problems.get(ref) != str(exc):
                self.problems[ref] = str(exc)
                log.error("%s ignored: %s", ref, exc)
            return None
        self.problems.pop(ref, None)
        return value

    def _changed(self) -> None:
        self._generation += 1
        self._dirty = True

    def _capacity(self) -> Resources | None:
        """Σ allocatable of schedulable nodes; None (no limit) while no node is known at all."""
        return self.nodes.capacity() if len(self.nodes) else None

    def _apply_policies(self) -> None:
        if self._quota.tree is None:
            return
        for leaf in self._quota.tree.leaves():
            kept = self.queue_for(leaf.full_name)
            policy = kept.policy if kept else "Round"
            if self.queues.policy(leaf.full_name) != policy:
                self.queues.set_policy(leaf.full_name, policy)

    def _managed(self, rec: JobRecord) -> bool:
        return rec.managed(bound=self.leaf_for(rec.info.namespace) is not None)

    def _lifecycle(self, rec: JobRecord) -> JobState:
        return lifecycle(rec.info, present=rec.present, dequeued=rec.dequeue_ns is not None, suspended=rec.suspended)

    def _state(self, rec: JobRecord) -> JobState:
        return self._lifecycle(rec) if self._managed(rec) else JobState.UNMANAGED

    def _refresh_all(self) -> None:
        self._apply_policies()
        for uid in sorted(self._jobs):
            self._refresh_job(uid)
        for uid in sorted(self._pods):
            owner = self._owner(self._pods[uid])
            if owner is None:
                self._pod_owner.pop(uid, None)
                self._refresh_pod(uid)
            else:
                self._pod_owner[uid] = owner

    def _refresh_job(self, uid: str) -> None:
        """Derive the job's claim and queue membership, then its pods' claims (covered or not)."""
        rec = self._jobs.get(uid)
        if rec is None:
            return
        pods = self._pods_of(uid, rec)
        ledger = self.ledger
        if ledger is not None:
            existing = ledger.claim(uid)
            leaf = self.leaf_for(rec.info.namespace)
            quota = leaf.full_name if leaf else (existing.quota if existing else None)
            hold = quota is not None and rec.foreign_manager is None and holds_claim(  # managedBy: none
                self._lifecycle(rec),
                managed=self._managed(rec),
                claimed=existing is not None,
                dequeued=rec.dequeue_ns is not None,
                pods_remain=any(not p.terminal for p in pods),
            )
            rec.reservation = reservation(rec.info, pods, self._assumed.keys())
            rec.covered = covered_pods(rec.info, pods, self._assumed.keys())
            if hold and quota is not None:
                order = rec.dequeue_ns or (existing.admitted_order if existing else 0)
                self._set_claim(job_claim(rec.info, quota=quota, request=rec.reservation, admitted_order=order))
            else:
                self._drop_claim(uid)
        sync_queue(self.queues, uid, self.queue_item(uid))
        for pod in pods:
            self._refresh_pod(pod.uid)
        if not rec.present and (ledger is None or uid not in ledger):
            del self._jobs[uid]
            self._reassign(p.uid for p in pods)

    def _refresh_pod(self, uid: str) -> None:
        """The pod's own claim, when its account says it has one (``PodAccount.claimed``: a bound or assumed,
        non-terminal pod in a bound namespace that no job claim covers, growth included).

        A pending pod is not charged: it is checked when the extender filters and binds it. Charging pending
        pods would let a tenant push every ancestor quota over its max with pods that can never run."""
        pod = self._pods.get(uid)
        if self.ledger is None or pod is None:
            return
        account = account_pod(pod, self._books)
        leaf = self.leaf_for(pod.namespace)
        if leaf is None or not account.claimed:
            self._drop_claim(uid)
            return
        self._set_claim(pod_claim(pod, quota=leaf.full_name, growth_of=account.growth_of))

    def uncovered_request(self, pod_uid: str) -> Resources:
        """What placing this pod, which no reservation covers, adds to its quota (``common.accounting``)."""
        pod = self._pods.get(pod_uid)
        if pod is None:
            return Resources()
        gang = self.gang_members(pod.namespace, pod.gang_name) if pod.gang_name else ()
        return uncovered_request(pod, gang, self._books)

    def _set_claim(self, claim: Claim) -> None:
        assert self.ledger is not None
        old = self.ledger.claim(claim.uid)
        if old == claim:
            return
        self.ledger.add(claim)
        if old is not None and (old.quota != claim.quota or not old.request.le(claim.request)):
            self._released.freed(old.quota)

    def _drop_claim(self, uid: str) -> None:
        held = self.ledger.claim(uid) if self.ledger is not None else None
        if self.ledger is not None and held is not None:
            self.ledger.remove(uid)
            self._released.freed(held.quota)

    # --- job <-> pod ownership (ownerReference UIDs, never names or labels) ---------------------------

    def _set_parent(self, uid: str, parent: Parent | None) -> None:
        """Record (or forget, with None) a RayCluster / submitter Job and the RayJob controlling it; then
        recompute the owner of its pods. A deleted parent is kept while any of its pods remains."""
        old = self._owners.parent(uid)
        if old == parent:
            return
        self._owners.set_parent(uid, parent)
        jobs = {j for j in (old.job_uid if old else None, parent.job_uid if parent else None) if j is not None}
        pods = self._owners.children(uid)
        for job_uid in sorted(jobs):
            if job_uid in self._jobs:
                pods |= self._owners.job_pods(job_uid)
        self._reassign(pods, also=None)
        for job_uid in sorted(jobs):
            self._refresh_job(job_uid)

    def _on_parent(self, kind: str, event_type: str, obj: dict[str, Any], *, own_job: bool = False) -> None:
        uid = str(meta_of(obj).get("uid") or "")
        if not uid:
            return
        old = self._owners.parent(uid)
        if event_type == DELETED:
            if old is None or not old.present:
                return
            self._set_parent(uid, replace(old, present=False))
            self._changed()
            return
        parent = parent_from(kind, obj, own_job=own_job)
        if old == parent:
            return
        self._set_parent(uid, parent)
        self._changed()

    def _reassign(self, pod_uids: Iterable[str], also: str | None = None) -> None:
        """Recompute the owner of these pods (a job or a parent appeared, changed or went), then refresh every
        job that gained or lost one (and ``also``), and the claims of the pods left without an owner."""
        jobs: set[str] = {also} if also is not None else set()
        orphans: list[str] = []
        for uid in sorted(pod_uids):
            pod = self._pods.get(uid)
            if pod is None:
                continue
            before = self._pod_owner.get(uid)
            owner = self._owner(pod)
            if owner is None:
                self._pod_owner.pop(uid, None)
                orphans.append(uid)
            else:
                self._pod_owner[uid] = owner
                jobs.add(owner)
            if before is not None:
                jobs.add(before)
        for uid in sorted(jobs):
            self._refresh_job(uid)
        for uid in orphans:
            self._refresh_pod(uid)

    def _unindex_pod(self, pod: PodInfo, *, gone: bool = False) -> None:
        """Take the pod out of the indexes; when it is ``gone`` (deleted) and was the last pod of a deleted
        parent, forget that parent too."""
        orphaned = self._owners.remove_pod(pod)
        if gone and orphaned is not None:
            self._set_parent(orphaned, None)

    def _pods_of(self, uid: str, rec: JobRecord) -> tuple[PodInfo, ...]:
        return tuple(
            self._pods[p] for p in sorted(self._owners.job_pods(rec.info.uid)) if self._pod_owner.get(p) == uid
        )

    def _owner(self, pod: PodInfo) -> str | None:
        """The job a pod belongs to (``common.accounting.owner_of``: by ownerReference UIDs only)."""
        return owner_of(pod, self._books)[0]
