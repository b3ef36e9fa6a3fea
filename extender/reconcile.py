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

Reclaim (README, "How it works", step 4): a refused job that is guaranteed (``Ledger.is_guaranteed``) is checked against a
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
its claimant waits for it as above; an elastic victim's Shrink becomes a shrink notice naming its workers
(``extender.notice_phases``, docs/elastic.md), whose named pods release meanwhile. Every pass then handles each
admitted job with a notice before the admission pass (``handle_notice``): it mirrors the notice onto the job's pods (``AnnotatePod``), withdraws it when its claimant
no longer waits (``WithdrawNotice``), or suspends it (``Suspend(clear_notice=True)``) once it acknowledged
(``rayqueue.io/checkpointed``) or its deadline passed; the claimants of live notices are reserved from the
start of the admission pass (``AdmissionPass(reserved=...)``), and ``Plan.wake_ns`` is the next deadline,
when the loop reconciles again without waiting for an event. The deadline lives only in the annotation: a
restarted controller decides the same.

Admission timeouts (docs/liveness.md, pure rules in ``common.liveness``). An admitted job that has not started
by its dequeue stamp plus its leaf's ``rayqueue.io/admission-timeout`` gets a ``Suspend`` carrying its
``TimedOut`` record (the patch writes its count of timeouts in a row) and an ``AdmissionTimeout`` event; the loop
then holds it in backoff (``Queues.hold``). An admitted job not started yet makes its deadline the pass's wake-up;
one that started has its count removed (``ClearTimeouts``). A waiting job whose count reached its retries is
parked: taken out of its queue on every pass, so the admission pass never sees it. The deadline and the count
live on the job: a restarted controller decides the same (a waiting job with a count but no hold, the state a
restart leaves, is held again, with the words its QueueUnit kept).

Once KubeRay stops (docs/kuberay.md "Once KubeRay stops", pure rules in ``common.liveness``). A stopped queued RayJob
is charged only what its live pods request (``common.accounting.reservation``); where KubeRay leaves its RayCluster
running for ever (``cluster_fate``: ValidationFailed, the legacy policy's gaps, no shutdown), the job gets a
``StampStopped`` first if KubeRay recorded no ``status.endTime``, then, ``ttlSecondsAfterFinished`` after it stopped,
a ``DeleteLeftover`` per RayCluster it controls (preconditioned DELETE, with an event); until then that time is the
pass's wake-up. A cluster KubeRay deletes itself is never touched. Derived from the job: a restart decides the same.

The loop executes the actions in order (see each action's docstring, ``extender.actions``) and feeds what the API returns
(created Queues and QueueUnits, patched statuses) back through the cache handlers, or waits for the
watch: a second reconcile on the same state then plans nothing new.

The pass, as numbered phases over one snapshot (``Pass``; Kueue's ``schedule()``), each a function of its
own, in ``PHASES`` order: 1 Queues, 2 requeues and preemption notices, 3 admission timeouts, 4 clusters KubeRay
leaves behind, 5 the admission pass, 6 reclaim (growth pods, then whole jobs), 7 dequeues, 8 QueueUnits and their
statuses (``extender.unit_status``), 9 QueueUnits no longer queued, 10 Queue statuses, 11 the tree's status, 12
RayCluster quota conditions. Each
phase appends to its own part of the plan; the Plan lists the parts in execution order (QueueUnits before
the admission pass's actions, so a job's Enqueued event comes first).

Slices. A pass over 10,000 waiting jobs costs the better part of a second in Python, and the
scheduler verbs share the event loop. ``reconcile_steps`` is the same decision as a generator that
yields every ``SLICE`` jobs (or leaves); the loop awaits between slices so the verbs answer meanwhile,
and holds every watch event until the plan is made, so each slice reads the same snapshot. The one
thing the verbs themselves change, pod claims in the ledger (``assume_bound``), is kept out by
deciding on ``Ledger.copy()`` of the ledger taken when the pass starts. ``reconcile`` runs the
generator to the end at once: the plan is the same, only the yields differ.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from common import keys
from common.accounting import JobState
from common.admission import AdmissionPass, copy_ledger
from common.elastic import expandable
from common.explain import Explain, Why, render
from common.fair_share import FairOrder, FairReclaim, current_share, fair_preemption, order_for
from common.gotime import format_go
from common.jobkind import kind_of
from common.ledger import Claim, Ledger
from common.liveness import Leftover
from common.preemption import Notice, grace_ns, issue
from common.preview import usage_from_status
from common.queueing import Queues
from common.quota_tree import QuotaNode, QuotaTree
from common.rayjob import JobInfo
from common.resources import EMPTY, Resources
from extender import unit_status
from extender.actions import (
    Action,
    DeleteQueue,
    DeleteQueueUnit,
    Dequeue,
    EnsureQueue,
    EnsureQueueUnit,
    Event,
    EventType,
    JobRef,
    Notify,
    ObjectRef,
    Plan,
    PreemptPod,
    Requeue,
    SetClusterQuotaCondition,
    SetPriority,
    Shrink,
    Suspend,
    UpdateQueueStatus,
    UpdateQueueUnitStatus,
    UpdateTreeStatus,
)
from extender.cache import Cache
from extender.expand import dequeue_resize, expansions_phase, waiting_view
from extender.liveness_phases import leftovers_phase, timeouts_phase
from extender.notice_phases import give_shrink_notice, handle_notice
from extender.queue_objects import queue_object, queue_status, queue_unit_name, queue_unit_object, rfc3339
from extender.shrink import named_for_deletion, split_growth, under_notice
from extender.watched_objects import QueueUnitObject

__all__ = ["PHASES", "SLICE", "Pass", "leftovers_phase", "reconcile", "reconcile_steps", "timeouts_phase"]

SLICE: Final = 10  # jobs (or candidates, or leaves) between two yields of reconcile_steps: about a millisecond
A = TypeVar("A")
Steps = Generator[None, None, None]


@dataclass(slots=True)
class Pass:
    """One reconcile's snapshot and what its phases hand on to each other, with the plan's parts (in the order
    the loop executes them, ``plan``)."""

    cache: Cache
    now_ns: int
    tree: QuotaTree
    ledger: Ledger  # a copy: the verbs' assume_bound may change the live ledger between slices
    leaves: dict[str, QuotaNode]
    jobs: tuple[JobInfo, ...] = ()
    states: dict[str, JobState | None] = field(default_factory=dict)
    notices: dict[str, list[tuple[str, Notice]]] = field(default_factory=dict)  # claimant uid -> (victim, notice)
    wake: int | None = None
    decide: AdmissionPass | None = None
    fair: FairOrder | None = None  # fair share (common.fair_share): None while the root sets no half-life
    dequeued: dict[str, int] = field(default_factory=dict)  # uid -> refusals before its admission
    timed_out: dict[str, tuple[Explain, bool]] = field(default_factory=dict)  # uid -> (its liveness record, parked)
    leftovers: dict[str, Leftover] = field(default_factory=dict)  # uid -> a stopped job whose cluster KubeRay leaves
    deadlines: dict[str, int] = field(default_factory=dict)  # uid -> admission deadline of a job not started yet
    queues: list[Action] = field(default_factory=list)
    requeues: list[Action] = field(default_factory=list)
    units: list[Action] = field(default_factory=list)
    admission: list[Action] = field(default_factory=list)
    orphans: list[Action] = field(default_factory=list)
    statuses: list[Action] = field(default_factory=list)
    queue_statuses: list[Action] = field(default_factory=list)
    tree_status: list[Action] = field(default_factory=list)
    conditions: list[Action] = field(default_factory=list)

    @classmethod
    def of(cls, cache: Cache, now_ns: int) -> Pass | None:
        """The snapshot a pass decides on; None while there is no valid tree."""
        tree, live = cache.tree, cache.ledger
        if tree is None or live is None:
            return None
        return cls(cache, now_ns, tree, live.copy(), {leaf.full_name: leaf for leaf in tree.leaves()})

    @property
    def stamp(self) -> str:
        return format_go(self.now_ns)

    def wake_at(self, deadline_ns: int) -> None:
        self.wake = deadline_ns if self.wake is None else min(self.wake, deadline_ns)

    def plan(self) -> Plan:
        parts = (self.queues, self.requeues, self.units, self.admission, self.orphans, self.statuses,
                 self.queue_statuses, self.tree_status, self.conditions)
        heads = tuple(self.decide.heads) if self.decide is not None else ()
        actions = tuple(a for part in parts for a in part)
        suspended = {a.job.uid for a in actions if isinstance(a, Suspend | Notify)}
        wake = self.wake
        for uid, deadline in self.deadlines.items():  # a job this plan suspends or warns has no deadline to keep
            if uid not in suspended:
                wake = deadline if wake is None else min(wake, deadline)
        releasing = frozenset(self.decide.releasing) if self.decide is not None else frozenset()
        return Plan(actions, wake, guaranteed=heads, releasing=releasing)


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


def reconcile_steps(cache: Cache, now_ns: int) -> Generator[None, None, Plan]:
    """``reconcile`` in slices: the phases in order, yielding between slices; returns the Plan. The caller must
    keep the cache unchanged by watch events until it returns (the controller holds them)."""
    p = Pass.of(cache, now_ns)
    if p is None:
        return Plan()
    for _, phase in PHASES:
        yield from phase(p)
    return p.plan()


def _sliced(items: Sequence[A]) -> Iterator[Sequence[A]]:
    for start in range(0, len(items), SLICE):
        yield items[start : start + SLICE]


# --- 1. Queues ---------------------------------------------------------------------------------------


def queues_phase(p: Pass) -> Steps:
    """One Queue per leaf; ours of vanished leaves and duplicates go."""
    cache = p.cache
    for queue in cache.queue_objects():
        kept = cache.queue_for(queue.quota)
        if queue.quota not in p.leaves:
            reason = f"quota {queue.quota or '(none)'} is not a leaf of the {keys.QUOTA_TREE_KIND}"
            p.queues.append(DeleteQueue(queue.name, reason))
        elif kept is not None and kept.name != queue.name:
            p.queues.append(DeleteQueue(queue.name, f"duplicate Queue for {queue.quota}: {kept.name} is kept"))
    for name, leaf in p.leaves.items():
        if cache.queue_for(name) is None:
            p.queues.append(EnsureQueue(name, queue_object(leaf, cache.queues.policy(name))))
    p.jobs = cache.jobs()
    yield


# --- 2. requeues and preemption notices ---------------------------------------------------------------


def requeues_phase(p: Pass) -> Steps:
    """Admitted jobs someone suspended are requeued (before the pass, which cannot admit them anyway); admitted
    jobs with a preemption notice are suspended, withdrawn or waited for (``handle_notice``). Waiting jobs
    missing from their queue are put back first."""
    cache = p.cache
    cache.ensure_waiting_queued(())  # ends the backoffs if quota was released
    for chunk in _sliced(p.jobs):
        cache.ensure_waiting_queued([job.uid for job in chunk], end_backoffs=False)
        for job in chunk:
            p.states[job.uid] = state = cache.state(job.uid)
            if state is JobState.REQUEUE:
                reason = f"suspended while admitted to {_leaf_name(cache, job)}; requeued with its original enqueue time"
                p.requeues.append(Requeue(JobRef.of(job), reason, keys.PREEMPTION_NOTICE in job.annotations))
                p.requeues.append(Event(JobRef.of(job), "Normal", keys.EVENT_REQUEUED, reason))
            elif state is JobState.ADMITTED and keys.PREEMPTION_NOTICE in job.annotations:
                handle_notice(p, job)
        yield


# --- 3. admission timeouts and 4. clusters KubeRay leaves behind: extender.liveness_phases ----------------------


# --- 5. the admission pass (common.admission) ------------------------------------------------------


class _CacheSource:
    """The Cache as the admission pass's ``PassSource``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    @property
    def queues(self) -> Queues:
        return self.cache.queues

    def releasing(self, uid: str) -> bool:  # a worker named for deletion or under notice goes too (docs/elastic.md)
        return self.cache.releasing(uid) or named_for_deletion(self.cache, uid) or under_notice(self.cache, uid)

    def terminating_pods(self, uid: str) -> int:
        return len(self.cache.remaining_pods(uid))

    def preemptible(self, uid: str) -> bool:
        job = self.cache.job(uid)
        return job.preemptible if job else True


def admission_phase(p: Pass) -> Steps:
    """``Queues.schedule`` over every leaf with one ``AdmissionPass``; the claimants of live notices are
    reserved from its start."""
    cache = p.cache
    claimants = [item for uid in sorted(p.notices) if (item := cache.queue_item(uid)) is not None]
    p.fair = order_for(p.tree, cache.tree_status, usage_from_status(cache.tree_status), p.now_ns, p.ledger.capacity)
    p.decide = AdmissionPass(_CacheSource(cache), p.ledger, p.now_ns, reserved=claimants, fair=p.fair)
    yield
    order = p.fair.leaves() if p.fair is not None else None
    yield from cache.queues.schedule_steps(p.decide, p.ledger.generation, SLICE, leaf_order=order)


# --- 6. reclaim -------------------------------------------------------------------------------------


def reclaim_phase(p: Pass) -> Steps:
    """The pass's victims: growth pods are deleted; a whole job gets a notice where its leaf grants grace, else
    it is suspended at once."""
    if p.decide is None:  # pragma: no cover - the admission phase runs first
        return
    cache = p.cache
    for action in split_growth(cache, p.decide.growth_victims, _growth_preemptions):  # docs/elastic.md
        leaf = cache.leaf_for(action.job.namespace) if isinstance(action, Shrink) else None
        grace = grace_ns(p.tree, leaf.full_name) if leaf is not None else 0
        if isinstance(action, Shrink) and grace > 0:
            give_shrink_notice(p, action, grace)  # the same cooperative notice as a whole job's
        else:
            p.admission.append(action)
    for victim, claimant in p.decide.victims:
        victim_job, claimant_job = cache.job(victim.uid), cache.job(claimant.uid)  # cached jobs' claims
        if victim_job is None or claimant_job is None:  # pragma: no cover - claims come from cached jobs
            continue
        grace = grace_ns(p.tree, victim.quota)
        if grace > 0:
            _give_notice(p, victim, claimant, victim_job, claimant_job, grace)
            continue
        reason = render(_reclaimed("preempted", victim, claimant, _fair_reclaim(p, victim, claimant)))
        p.admission.append(Suspend(JobRef.of(victim_job), reason, JobRef.of(claimant_job)))
        p.admission.append(Event(JobRef.of(victim_job), "Warning", keys.EVENT_PREEMPTED, reason))
        requeued = f"back in {victim.quota}'s queue at its original place; it resumes when capacity frees"
        p.admission.append(Event(JobRef.of(victim_job), "Normal", keys.EVENT_REQUEUED, requeued))
    yield from ()


def _give_notice(p: Pass, victim: Claim, claimant: Claim, victim_job: JobInfo, claimant_job: JobInfo,
                 grace: int) -> None:
    why = render(_reclaimed("reclaim-notice", victim, claimant, _fair_reclaim(p, victim, claimant)))
    notice = issue(p.now_ns, grace, victim.key, claimant.key, claimant.uid, why)
    p.admission.append(Notify(JobRef.of(victim_job), notice.text(), JobRef.of(claimant_job)))
    message = (f"preemption notice: suspended at {notice.deadline} (grace {notice.grace}, from "
               f"{victim.quota}) to {why}; set annotation {keys.CHECKPOINTED} on this RayJob once "
               "checkpointed to be suspended at once; it requeues with its original enqueue time")
    p.admission.append(Event(JobRef.of(victim_job), "Warning", keys.EVENT_PREEMPTION_NOTICE, message))
    p.notices.setdefault(claimant.uid, []).append((victim.key, notice))
    p.wake_at(notice.deadline_ns)


_FAIR_WHY: Final[Mapping[Why, Why]] = {"preempted": "fair-preempted", "reclaim-notice": "fair-reclaim-notice"}


def _reclaimed(why: Why, victim: Claim, claimant: Claim, fair: FairReclaim | None = None) -> Explain:
    """The record of a victim's reclaim: whom for, from where, at what priority; for fairness, with the shares."""
    return Explain(why=_FAIR_WHY[why] if fair is not None else why, node=victim.quota, job=claimant.key,
                   job_quota=claimant.quota, priority=victim.priority, fair_reclaim=fair)


def _fair_reclaim(p: Pass, victim: Claim, claimant: Claim) -> FairReclaim | None:
    """The shares of a reclaim for fairness (docs/fairshare.md), None for a reclaim of a min: the claimant borrows
    (it is not within its leaf's min in the pass's reclaim view, as ``AdmissionPass._refused`` asks). Before: that
    view without the claimant and with every victim it took; after: the view as the pass left it."""
    decide, fair = p.decide, p.fair
    if decide is None or fair is None or not fair_preemption(p.tree):
        return None
    after = decide.reclaim_view
    if after.is_guaranteed(claimant):
        return None
    taken = [v for v, c in decide.victims if c.uid == claimant.uid]
    before = copy_ledger(after, without={claimant.uid}, plus=taken)
    mine, theirs = fair.competitors(claimant.quota, victim.quota)

    def shares(ledger: Ledger) -> tuple[float, float]:
        return (current_share(p.tree, mine, ledger.usage(mine), ledger.capacity),
                current_share(p.tree, theirs, ledger.usage(theirs), ledger.capacity))

    return FairReclaim(claimant=mine, victim=theirs, before=shares(before), after=shares(after))


def _growth_preemptions(cache: Cache, victims: Sequence[tuple[Claim, Claim]]) -> list[Action]:
    """A PreemptPod per growth victim, in the pass's order (lowest priority, newest first)."""
    out: list[Action] = []
    for victim, claimant in victims:
        pod, job, claimant_job = cache.pod(victim.uid), cache.job(victim.growth_of), cache.job(claimant.uid)
        if pod is None or job is None or claimant_job is None:  # pragma: no cover - claims of cached objects
            continue
        owner = cache.ray_cluster(pod.owner.uid) if pod.owner is not None else None
        cluster = ObjectRef(owner.namespace, owner.name, owner.uid) if owner is not None else None
        reason = render(Explain(why="growth-preempted", node=victim.quota, job=claimant.key, job_quota=claimant.quota,
                                request=claimant.request, names=(pod.key, job.key), victim_request=victim.request))
        out.append(PreemptPod(ObjectRef(pod.namespace, pod.name, pod.uid), JobRef.of(job), cluster, reason))
    return out


# --- 7. dequeues ------------------------------------------------------------------------------------


def dequeues_phase(p: Pass) -> Steps:
    """A Dequeue and a Dequeued event per job the pass admitted, in queue order; then, in a pass that admits
    nobody, the elastic jobs' expansions (docs/elastic.md)."""
    if p.decide is None:  # pragma: no cover - the admission phase runs first
        return
    view = None  # docs/elastic.md: an elastic job starts at what fits after every waiting job
    for claim, attempts in p.decide.admitted:
        job = p.cache.job(claim.uid)
        if job is None:  # pragma: no cover - items come from cached jobs
            continue
        p.dequeued[claim.uid] = attempts
        view = view if view is not None or not expandable(job) else waiting_view(p)
        resize, words = dequeue_resize(job, claim, view, p.stamp) if view is not None else ((), "")
        p.admission.append(Dequeue(JobRef.of(job), p.now_ns, p.stamp, kind_of(job.kind).admitted_size(job), resize,
                                   claim))
        message = render(Explain(why="dequeued", node=claim.quota, request=claim.request)) + words
        p.admission.append(Event(JobRef.of(job), "Normal", keys.EVENT_DEQUEUED, message))
    yield from expansions_phase(p)


# --- 8. QueueUnits and their statuses ---------------------------------------------------------------


def queue_units_phase(p: Pass) -> Steps:
    """Every queued job's QueueUnit: created, synced to the job, its priority adopted from it, and its status."""
    for n, job in enumerate(p.jobs):
        if n % SLICE == SLICE - 1:
            yield
        state = p.states[job.uid]
        if state in (None, JobState.UNMANAGED, JobState.DELETING):
            continue
        leaf = p.cache.leaf_for(job.namespace)
        queue = p.cache.queue_for(leaf.full_name) if leaf else None
        if leaf is None or queue is None:
            continue  # its Queue is being created: the QueueUnit follows in a later reconcile
        _sync_unit(p, job, state, leaf, queue.name)


def _sync_unit(p: Pass, job: JobInfo, state: JobState, leaf: QuotaNode, queue_name: str) -> None:
    name = queue_unit_name(job)
    desired = queue_unit_object(job, leaf, queue_name)
    cached = p.cache.queue_unit(job.namespace, name)
    ours = cached if cached is not None and cached.owner_uid == job.uid else None
    ref = JobRef.of(job)
    adopted = _adopted_priority(job, ours) if ours is not None else None
    if adopted is not None and ours is not None and state in (JobState.WAITING, JobState.ADMITTED):
        stamped, suffix = ours.annotations.get(keys.PRIORITY_CHANGED_BY, ""), f" (spec.priority {adopted})"
        who = stamped.removesuffix(suffix) if stamped.endswith(suffix) else "someone the controller cannot name"
        change = (f"{who} changed priority {job.priority} -> {adopted} at {p.stamp} "
                  f"(QueueUnit {job.namespace}/{name} spec.priority)")
        p.units.append(SetPriority(ref, adopted, change))
    elif ours is None:
        p.units.append(EnsureQueueUnit(desired))
        if state in (JobState.WAITING, JobState.ADMITTED, JobState.REQUEUE):
            message = (
                f"queued in {leaf.full_name} (Queue {keys.QUEUE_NAMESPACE}/{queue_name}), priority "
                f"{job.priority}, request {job.request}"
            )
            p.units.append(Event(ref, "Normal", keys.EVENT_ENQUEUED, message))
    elif _unit_differs(desired, ours.spec, ours.annotations):
        p.units.append(EnsureQueueUnit(desired))
    record = job.annotations.get(keys.PRIORITY_CHANGE_RECORD)
    reported = ours.annotations.get(keys.PRIORITY_CHANGE_RECORD) if ours is not None else None
    if record and record != reported:
        p.units.append(Event(ref, "Normal", keys.EVENT_PRIORITY_CHANGED, record))
    cached_status = ours.status if ours is not None else None
    status = unit_status.unit_status(p.cache, job, state, leaf, p.dequeued, p.stamp, cached_status,
                                     p.notices.get(job.uid, ()), p.timed_out.get(job.uid), p.leftovers.get(job.uid))
    if cached_status is None or unit_status.status_due(status, cached_status):
        p.statuses.append(UpdateQueueUnitStatus(job.namespace, name, {**status, "lastUpdateTime": rfc3339(p.now_ns)}))


def _unit_differs(desired: Mapping[str, Any], spec: Mapping[str, Any], annotations: Mapping[str, str]) -> bool:
    if dict(spec) != desired["spec"]:
        return True
    want: Mapping[str, str] = desired["metadata"]["annotations"]
    return any(want.get(key) != annotations.get(key)
               for key in (keys.QUOTA_FULLNAME, keys.PRIORITY_CHANGE_RECORD, keys.SYNCED_PRIORITY))


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


# --- 9. QueueUnits no longer queued -------------------------------------------------------------------


def orphan_units_phase(p: Pass) -> Steps:
    """Delete the QueueUnit of a job no longer queued: its namespace is bound to no leaf, or another controller
    manages it (``spec.managedBy``)."""
    cache = p.cache
    for n, unit in enumerate(cache.queue_units()):
        if n % (SLICE * 8) == SLICE * 8 - 1:  # most units are skipped at the first test
            yield
        owner = unit.owner_uid
        if owner is None or not cache.present(owner) or p.states.get(owner) is not JobState.UNMANAGED:
            continue
        job = cache.job(owner)
        if job is not None and queue_unit_name(job) == unit.name and job.namespace == unit.namespace:
            manager = cache.foreign_manager(owner)
            reason = (f"{job.kind} {job.key}: {render(Explain(why='managed-by', text=manager))}" if manager is not None
                      else f"{job.kind} {job.key} is no longer queued: namespace {job.namespace} is not bound to a leaf")
            p.orphans.append(DeleteQueueUnit(unit.namespace, unit.name, reason))


# --- 10. Queue statuses ----------------------------------------------------------------------------------


def queue_statuses_phase(p: Pass) -> Steps:
    """Each leaf's Queue status (queueItemDetails), when it changed."""
    for n, name in enumerate(p.leaves):
        if n % SLICE == SLICE - 1:
            yield
        kept = p.cache.queue_for(name)
        if kept is None:
            continue
        status = queue_status(p.cache.queues, name)
        cached_details = kept.status.get("queueItemDetails")
        cached_details = cached_details if isinstance(cached_details, Mapping) else {}
        current = {"active": cached_details.get("active") or [], "backoff": cached_details.get("backoff") or []}
        if current != dict(status["queueItemDetails"]):
            p.queue_statuses.append(UpdateQueueStatus(kept.name, dict(status)))


# --- 11. the tree's status ---------------------------------------------------------------------------------


def tree_status_phase(p: Pass) -> Steps:
    """Per node: used (the ledger plus this pass's admissions) and request (Σ waiting below it); yields every
    few leaves (a leaf's waiting items are summed one by one)."""
    admitted = [c for c, _ in p.decide.admitted] if p.decide is not None else []
    tree, ledger, queues = p.tree, p.ledger, p.cache.queues
    extra: dict[str, Resources] = {}
    waiting: dict[str, Resources] = {}
    for claim in admitted:
        for node in tree.path_to_root(claim.quota):
            extra[node.full_name] = extra.get(node.full_name, EMPTY) + claim.request
    for leaf in tree.leaves():
        yield
        total = EMPTY
        for item in (*queues.active(leaf.full_name), *queues.backoff(leaf.full_name)):
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
    _zero_what_went(nodes, p.cache.tree_status)
    status: dict[str, Any] = {"nodes": nodes}
    old = dict(p.cache.tree_status or {})
    if p.fair is not None:  # the decayed usage, at least once a minute (the pass wakes for it)
        status["fairShare"], wake = p.fair.status(old, nodes)
        p.wake_at(wake)
    if status != old:
        p.tree_status.append(UpdateTreeStatus(status))


def _zero_what_went(nodes: dict[str, dict[str, dict[str, str]]], written: Mapping[str, Any] | None) -> None:
    """A resource the status last showed that is no longer used (or requested) is written as "0": the status is
    merge-patched, and a key left out of a merge patch keeps its old value (a node once at "4" would say so for
    ever after its last claim went)."""
    old_nodes = (written or {}).get("nodes")
    for name, fields in nodes.items():
        old = old_nodes.get(name) if isinstance(old_nodes, Mapping) else None
        for field_name, amounts in fields.items():
            before = old.get(field_name) if isinstance(old, Mapping) else None
            for resource in before if isinstance(before, Mapping) else ():
                amounts.setdefault(resource, "0")


# --- 12. RayCluster quota conditions ------------------------------------------------------------------


def conditions_phase(p: Pass) -> Steps:
    """The RayQueueQuota condition of every job's RayCluster: True (QuotaExceeded, the first refused pod's
    quota message) while growth pods of it are refused, then False (Fits) once none is; a cluster that
    never had one gets none. A GrowthRefused Warning event goes with each True write."""
    cache = p.cache
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
        p.conditions.append(
            SetClusterQuotaCondition(
                ObjectRef(cluster.namespace, cluster.name, cluster.uid), JobRef.of(job), *want, event=event
            )
        )
    yield from ()


def _leaf_name(cache: Cache, job: JobInfo) -> str:
    leaf = cache.leaf_for(job.namespace)
    return leaf.full_name if leaf else "(no leaf)"


PHASES: Final[tuple[tuple[str, Callable[[Pass], Steps]], ...]] = (
    ("1 queues", queues_phase),
    ("2 requeues and notices", requeues_phase),
    ("3 admission timeouts", timeouts_phase),
    ("4 leftover clusters", leftovers_phase),
    ("5 admission", admission_phase),
    ("6 reclaim", reclaim_phase),
    ("7 dequeues", dequeues_phase),
    ("8 queue units", queue_units_phase),
    ("9 orphan queue units", orphan_units_phase),
    ("10 queue statuses", queue_statuses_phase),
    ("11 tree status", tree_status_phase),
    ("12 cluster conditions", conditions_phase),
)
