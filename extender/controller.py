"""The queue controller's loop: reconcile the cache into a Plan (pure), then carry out its actions against the
API, feeding what the API returns back into the cache so the next reconcile sees it at once.

The verbs share this event loop, so neither half may hold it for long:

* the pass runs in slices (``reconcile_steps``), awaiting between them; every watch event that arrives
  meanwhile is *held* (``deliver``) and applied, in arrival order, once the plan is made, so the whole
  pass reads one snapshot. The verbs answer between slices from that snapshot: what they cannot see
  yet is at most one pass old.
* the plan's API writes go out ``parallel`` at a time. Actions are chained by the object they write
  (a RayJob's patch and its events, a QueueUnit's create and its status, a Queue, the tree): a chain
  keeps plan order, so a refused Dequeue is still never followed by its Dequeued event, and chains
  start in plan order, so dequeues leave in queue order, up to ``parallel`` in flight.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from common import keys
from common.clock import Clock
from common.explain import render
from common.gotime import from_datetime
from common.jobkind import RAYCLUSTER, RAYJOB
from common.start_times import Replay
from extender import estimates
from extender.actions import (
    Action,
    AnnotatePod,
    ClearTimeouts,
    DeleteLeftover,
    DeleteQueue,
    DeleteQueueUnit,
    Dequeue,
    EnsureQueue,
    EnsureQueueUnit,
    Event,
    Expand,
    JobRef,
    Notify,
    Plan,
    PreemptPod,
    Requeue,
    SetClusterQuotaCondition,
    SetPriority,
    Shrink,
    StampStopped,
    Suspend,
    UpdateQueueStatus,
    UpdateQueueUnitStatus,
    UpdateTreeStatus,
    WithdrawNotice,
)
from extender.cache import Cache
from extender.protected_retry import ProtectedRetry
from extender.reconcile import reconcile, reconcile_steps
from extender.shrink_io import clear_shrink_notice, expand_cluster, shrink_cluster
from kubeio.client import MERGE_PATCH, ApiError, KubeClient
from kubeio.events import EventRecorder
from kubeio.scopes import JOB_SCOPES, PODS, QUEUE_UNITS, QUEUES, RAYCLUSTERS, TREES

__all__ = ["PARALLEL_WRITES", "Controller", "chain_key"]

class Overtaken(Exception):
    """A Dequeue whose claim no longer fits the live ledger (``Controller._still_fits``): not sent."""


log = logging.getLogger("rayqueue.extender.controller")

PARALLEL_WRITES = 16  # API writes in flight at once (the client keeps 32 connections)
DRAIN_SLICE = 10  # held watch events applied between two yields to the verbs
CONDITION_INTERVAL = 10.0  # seconds between two message-only rewrites of one RayCluster's RayQueueQuota
CONDITION_RETRIES = 3  # read-modify-write attempts of a RayCluster's status on a conflict

Handler = Callable[[str, dict[str, Any]], None]
_JOB_WRITES = (Dequeue, Suspend, Requeue, SetPriority, Notify, WithdrawNotice, ClearTimeouts, StampStopped)  # a failure skips the job's events


def _job_path(job: JobRef) -> str:
    """The queued object's path, by its kind (``common.jobkind``): dequeued and suspended the same way."""
    return JOB_SCOPES[job.kind].path(job.namespace, job.name)


def chain_key(action: Action) -> str:
    """The object an action writes: actions with one key run in plan order, different keys in parallel."""
    if isinstance(action, PreemptPod):
        return f"growth/{action.job.uid}"  # one job's growth victims go in plan order: newest first
    if isinstance(action, SetClusterQuotaCondition | Shrink | Expand):
        return f"raycluster/{action.cluster.uid}"
    if isinstance(action, Dequeue | Suspend | Requeue | SetPriority | Event | Notify | WithdrawNotice | ClearTimeouts
                  | StampStopped | DeleteLeftover):
        return f"rayjob/{action.job.uid}"
    if isinstance(action, AnnotatePod):
        return f"pod/{action.uid}"
    if isinstance(action, EnsureQueueUnit | UpdateQueueUnitStatus | DeleteQueueUnit):
        return f"queueunit/{action.namespace}/{action.name}"
    if isinstance(action, EnsureQueue):
        return f"queue-for/{action.leaf}"
    if isinstance(action, DeleteQueue | UpdateQueueStatus):
        return f"queue/{action.name}"
    return "elasticquotatree"


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.admissions = Counter("rayqueue_admissions", "RayJobs dequeued", ["quota"], registry=registry)
        self.reclaims = Counter("rayqueue_reclaims", "RayJobs suspended to reclaim borrowed capacity", ["quota"],
                                registry=registry)
        self.queue_length = Gauge("rayqueue_queue_length", "Waiting RayJobs per leaf quota", ["quota", "list"],
                                  registry=registry)
        self.quota = Gauge("rayqueue_quota", "Quota per node: used, min, max (canonical units)",
                           ["quota", "resource", "kind"], registry=registry)
        self.admission_timeouts = Counter("rayqueue_admission_timeouts",
                                          "Admitted jobs suspended for not starting within their admission timeout",
                                          ["quota"], registry=registry)
        self.reconciles = Counter("rayqueue_reconciles", "Reconcile passes", registry=registry)
        self.action_errors = Counter("rayqueue_action_errors", "Actions the API refused", ["action"], registry=registry)


class Controller:
    """Runs while this replica leads. One reconcile at a time; decisions never await."""

    def __init__(self, cache: Cache, client: KubeClient, events: EventRecorder, clock: Clock,
                 registry: CollectorRegistry, *, resync_seconds: float = 30.0,
                 parallel: int = PARALLEL_WRITES, estimate_seconds: float = 5.0) -> None:
        if parallel < 1:
            raise ValueError(f"parallel writes must be at least 1, got {parallel}")
        self.cache, self.client, self.events, self.clock = cache, client, events, clock
        # The cache's watch handler of each queued kind, fed what a job patch returns.
        self._job_handlers: Mapping[str, Handler] = {RAYJOB.kind: cache.on_rayjob, RAYCLUSTER.kind: cache.on_raycluster}
        self.metrics = _Metrics(registry)
        self.resync_seconds = resync_seconds
        self.parallel = parallel
        self.estimate_seconds = estimate_seconds  # at most one start-time estimate this often
        self._estimated_at: float | None = None
        self._estimate_due: float | None = None
        # Where the replay runs: a worker process (extender.forecaster, set by app.run), else a worker thread.
        self.offload: Callable[[estimates.EstimateInputs], Awaitable[Replay]] | None = None
        self.wake = asyncio.Event()
        self._holding = False
        self._wake_ns: int | None = None  # the next preemption-notice or admission-timeout deadline (Plan.wake_ns)
        self._held: collections.deque[tuple[Handler, str, dict[str, Any]]] = collections.deque()
        self._condition_written: dict[str, float] = {}  # RayCluster uid -> monotonic time of its last write
        self._protected = ProtectedRetry()  # claimants waiting for min-runtimes to run out: woken when one does

    def poke(self) -> None:
        """Called by the event handlers: something changed, reconcile soon."""
        self.wake.set()

    @property
    def holding(self) -> bool:
        """True while a pass reads the cache in slices (watch events wait in arrival order)."""
        return self._holding

    def deliver(self, handler: Handler, kind: str, obj: dict[str, Any]) -> None:
        """A watch event for the cache: applied now, or held until the running pass has made its plan."""
        if self._holding:
            self._held.append((handler, kind, obj))
        else:
            handler(kind, obj)
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()
            plan = await self.plan_sliced()
            if plan.actions:
                await self.execute(plan)
            if self.wake.is_set():
                continue
            await self.refresh_estimates()
            if self.wake.is_set():
                continue
            timeout = self.wait_seconds()
            waiter = asyncio.ensure_future(self.wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (waiter, stopper):
                    task.cancel()
                await asyncio.gather(waiter, stopper, return_exceptions=True)

    def wait_seconds(self) -> float:
        """How long the loop may sleep without an event: the resync, or less for an estimate the throttle held
        back, a backoff that ends, the deadline of a preemption notice (its victim is suspended on time), or the
        moment a job under its min-runtime may be reclaimed for a claimant that waits for it (``ProtectedRetry``)."""
        timeout = self.resync_seconds
        if self._estimate_due is not None:
            timeout = min(timeout, max(0.05, self._estimate_due - self.clock.monotonic()))
        retry = self.cache.queues.next_retry()
        if retry is not None:
            timeout = min(timeout, max(0.05, retry - self.clock.monotonic()))
        for wake_ns in (self._wake_ns, self._protected.next_ns()):
            if wake_ns is not None:
                timeout = min(timeout, max(0.05, (wake_ns - from_datetime(self.clock.now())) / 1e9))
        return timeout

    def plan(self) -> Plan:
        """One decision on one snapshot (no await between reading the cache and choosing)."""
        self.cache.clear_dirty()
        now = from_datetime(self.clock.now())
        self._protected.release(self.cache.queues, now)
        plan = reconcile(self.cache, now)
        self._protected.note(self.cache.queues, plan.guaranteed, now)
        self.cache.waiting_guaranteed, self.cache.releasing_claims = plan.guaranteed, plan.releasing
        self.metrics.reconciles.inc()
        self._gauges()
        self._wake_ns = plan.wake_ns
        return plan

    async def plan_sliced(self) -> Plan:
        """The same decision in slices: the verbs run between them, watch events are held meanwhile and
        applied (in slices too) before this returns, so the executor's feedback lands after them."""
        self._holding = True
        try:
            self.cache.clear_dirty()
            now = from_datetime(self.clock.now())
            self._protected.release(self.cache.queues, now)
            steps = reconcile_steps(self.cache, now)
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    plan: Plan = done.value
                    break
                await asyncio.sleep(0)
            self._protected.note(self.cache.queues, plan.guaranteed, now)
            self.cache.waiting_guaranteed, self.cache.releasing_claims = plan.guaranteed, plan.releasing
            self.metrics.reconciles.inc()
            self._gauges()
            self._wake_ns = plan.wake_ns
            while self._held:
                for _ in range(min(DRAIN_SLICE, len(self._held))):
                    handler, kind, obj = self._held.popleft()
                    handler(kind, obj)
                await asyncio.sleep(0)
        finally:
            self._holding = False
            while self._held:  # cancelled: nothing is lost
                handler, kind, obj = self._held.popleft()
                handler(kind, obj)
        return plan

    async def execute(self, plan: Plan) -> None:
        """Carry out the plan, ``parallel`` chains at a time (see the module docstring)."""
        failed: set[str] = set()  # jobs whose patch the API refused: their events must not claim it happened
        chains: dict[str, list[Action]] = {}
        for action in plan.actions:
            chains.setdefault(chain_key(action), []).append(action)
        pending = collections.deque(chains.values())

        async def worker() -> None:
            while pending:
                for action in pending.popleft():
                    await self._attempt(action, failed)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(self.parallel, len(pending)))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self.cache.ensure_waiting_queued(sorted(failed))  # a failed Dequeue puts its job back in line

    async def _attempt(self, action: Action, failed: set[str]) -> None:
        if isinstance(action, Event) and action.job.uid in failed:
            return
        try:
            await self._do(action)
        except ApiError as exc:
            if isinstance(action, _JOB_WRITES):
                failed.add(action.job.uid)
            self.metrics.action_errors.labels(type(action).__name__).inc()
            if exc.conflict or (exc.status == 422 and isinstance(action, Dequeue) and action.json_patch):
                # a resized dequeue's resourceVersion test failing is its conflict (docs/elastic.md)
                log.info("%s: conflict, retrying next pass: %s", type(action).__name__, exc.message)
            else:
                log.warning("%s failed: %s", type(action).__name__, exc)
        except (OSError, TimeoutError) as exc:
            if isinstance(action, _JOB_WRITES):
                failed.add(action.job.uid)
            self.metrics.action_errors.labels(type(action).__name__).inc()
            log.warning("%s failed: %s: %s", type(action).__name__, type(exc).__name__, exc)
        except Overtaken as exc:
            if isinstance(action, _JOB_WRITES):  # only a Dequeue raises it
                failed.add(action.job.uid)
            log.info("%s", exc)

    async def refresh_estimates(self, *, force: bool = False) -> None:
        """Runtime history, then the start-time estimate of every waiting QueueUnit (common/start_times.py),
        at most every ``estimate_seconds``: the snapshot is taken here, the replay runs in the forecast worker
        process (``offload``; a worker thread without one) so the extender's verbs keep being answered, and
        the patches are made against the cache as it is then."""
        now = self.clock.monotonic()
        if not force and self._estimated_at is not None and now - self._estimated_at < self.estimate_seconds:
            self._estimate_due = self._estimated_at + self.estimate_seconds
            return
        self._estimated_at, self._estimate_due = now, None
        await self.execute(Plan(tuple(estimates.history_patches(self.cache, from_datetime(self.clock.now())))))
        snap = await self._snapshot_sliced()
        if snap is None:
            return
        found = await (self.offload(snap) if self.offload is not None else asyncio.to_thread(estimates.compute, snap))
        now_ns = from_datetime(self.clock.now())
        await self.execute(Plan((*estimates.unit_patches(self.cache, found.estimates, now_ns),
                                 *estimates.forecast_patches(self.cache, found.forecasts, now_ns))))

    async def _snapshot_sliced(self) -> estimates.EstimateInputs | None:
        """The estimate's snapshot in slices (``estimates.snapshot_steps``): the verbs run between them, watch events
        are held meanwhile (one instant for the cache) and applied once it is taken."""
        self._holding = True
        try:
            steps = estimates.snapshot_steps(self.cache, from_datetime(self.clock.now()))
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    snap: estimates.EstimateInputs | None = done.value
                    return snap
                await asyncio.sleep(0)
        finally:
            self._holding = False
            while self._held:
                handler, kind, obj = self._held.popleft()
                handler(kind, obj)

    def _still_fits(self, action: Dequeue) -> None:
        """Raise ``Overtaken`` when the admitted claim no longer fits the live ledger by the max rules: the pass
        decided on a copy, and the verbs may have bound growth pods since (each checked on the live ledger, which
        did not hold this claim yet); admitting both would run the quota past its max."""
        ledger = self.cache.ledger
        if action.claim is None or ledger is None:
            return
        decision = ledger.check(action.claim)
        if not decision:
            raise Overtaken(f"dequeue of {action.job.kind} {action.job.namespace}/{action.job.name} skipped: "
                            f"{render(decision.why())}: usage changed after the pass decided (a growth pod bound "
                            "meanwhile); the next pass decides again")

    async def _do(self, action: Action) -> None:
        c = self.client
        if isinstance(action, EnsureQueue):
            created = await c.create(QUEUES.path(keys.QUEUE_NAMESPACE), action.object)
            self.cache.on_queue("ADDED", created)
        elif isinstance(action, DeleteQueue):
            await self._ignore_missing(c.delete(QUEUES.path(keys.QUEUE_NAMESPACE, action.name)))
            log.info("deleted Queue %s: %s", action.name, action.reason)
        elif isinstance(action, UpdateQueueStatus):
            updated = await c.patch(QUEUES.path(keys.QUEUE_NAMESPACE, action.name, "status"), {"status": action.status})
            self.cache.on_queue("MODIFIED", updated)
        elif isinstance(action, EnsureQueueUnit):
            await self._ensure_queue_unit(action)
        elif isinstance(action, UpdateQueueUnitStatus):
            updated = await c.patch(QUEUE_UNITS.path(action.namespace, action.name, "status"), {"status": action.status})
            self.cache.on_queue_unit("MODIFIED", updated)
        elif isinstance(action, DeleteQueueUnit):
            await self._ignore_missing(c.delete(QUEUE_UNITS.path(action.namespace, action.name)))
        elif isinstance(action, Dequeue):
            self._still_fits(action)
            self.cache.mark_dequeued(action.job.uid, action.dequeue_ns)  # charged from now: the verbs see it
            try:
                await c.patch(_job_path(action.job), *action.body())
            except BaseException:
                self.cache.mark_dequeued(action.job.uid, None)
                raise
            leaf = self.cache.leaf_for(action.job.namespace)
            self.metrics.admissions.labels(leaf.full_name if leaf else "").inc()
            log.info("dequeued %s %s/%s", action.job.kind, action.job.namespace, action.job.name)
        elif isinstance(action, Suspend | Requeue):
            await c.patch(_job_path(action.job), action.patch())
            self.cache.mark_requeued(action.job.uid)
            if isinstance(action, Suspend):
                leaf = self.cache.leaf_for(action.job.namespace)
                record = action.timed_out.timed_out if action.timed_out is not None else None
                if action.timed_out is not None and record is not None:
                    self.metrics.admission_timeouts.labels(leaf.full_name if leaf else "").inc()
                    if not record.parked:
                        self.cache.queues.hold(action.job.uid, record.attempt, action.timed_out)
                else:
                    self.metrics.reclaims.labels(leaf.full_name if leaf else "").inc()
            log.info("%s %s %s/%s: %s", type(action).__name__.lower(), action.job.kind, action.job.namespace, action.job.name,
                     action.reason)
        elif isinstance(action, StampStopped):
            updated = await c.patch(_job_path(action.job), action.patch())
            self._job_handlers[action.job.kind]("MODIFIED", updated)
            log.info("%s %s: %s %s: %s", action.job.kind, action.job.key, keys.KUBERAY_STOPPED_AT, action.stamp,
                     action.reason)
        elif isinstance(action, DeleteLeftover):
            await self._delete_leftover(action)
        elif isinstance(action, ClearTimeouts):
            updated = await c.patch(_job_path(action.job), action.patch())
            self._job_handlers[action.job.kind]("MODIFIED", updated)
            log.info("%s %s/%s: %s removed: %s", action.job.kind, action.job.namespace, action.job.name,
                     keys.ADMISSION_TIMEOUTS, action.reason)
        elif isinstance(action, Notify | WithdrawNotice):
            updated = await c.patch(_job_path(action.job), action.patch())
            self._job_handlers[action.job.kind]("MODIFIED", updated)
            if isinstance(action, Notify):
                log.info("preemption notice to RayJob %s/%s for %s: %s", action.job.namespace, action.job.name,
                         action.claimant.key, action.notice)
            else:
                log.info("withdrew the preemption notice of RayJob %s/%s: %s", action.job.namespace,
                         action.job.name, action.reason)
        elif isinstance(action, AnnotatePod):
            try:
                updated = await c.patch(f"/api/v1/namespaces/{action.namespace}/pods/{action.name}", action.patch())
            except ApiError as exc:
                if not exc.not_found:
                    raise
            else:
                self.cache.on_pod("MODIFIED", updated)
        elif isinstance(action, SetPriority):
            await c.patch(_job_path(action.job), action.patch())
            log.info("priority of RayJob %s/%s set to %d from its QueueUnit: %s", action.job.namespace,
                     action.job.name, action.priority, action.record)
        elif isinstance(action, Event):
            ref = {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": action.job.kind,
                   "name": action.job.name, "namespace": action.job.namespace, "uid": action.job.uid}
            await self.events.emit(ref, action.type, action.reason, action.message)
        elif isinstance(action, UpdateTreeStatus):
            path = TREES.path(keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME, "status")
            updated = await c.patch(path, {"status": action.status})
            self.cache.on_tree("MODIFIED", updated)
        elif isinstance(action, PreemptPod):
            await self._preempt_pod(action)
        elif isinstance(action, SetClusterQuotaCondition):
            await self._set_cluster_condition(action)
        elif isinstance(action, Shrink):  # docs/elastic.md
            names = {p.name for p in self.cache.remaining_pods(action.job.uid)}
            shrunk = await shrink_cluster(self.client, self.events, action, names.__contains__)
            if shrunk is not None:
                self.cache.on_raycluster("MODIFIED", shrunk)
            cleared = await clear_shrink_notice(self.client, action)  # the shrink notice done (docs/preemption.md)
            if cleared is not None:
                self._job_handlers[action.job.kind]("MODIFIED", cleared)
        elif isinstance(action, Expand):
            expanded = await expand_cluster(self.client, action)
            if expanded is not None:
                self.cache.on_raycluster("MODIFIED", expanded)

    async def _preempt_pod(self, action: PreemptPod) -> None:
        """Delete a growth pod (uid precondition; already gone is fine), then the Preempted events."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": action.pod.uid}}
        try:
            await self.client.delete(PODS.path(action.pod.namespace, action.pod.name), body)
        except ApiError as exc:
            if exc.not_found or exc.conflict:  # gone, or a namesake: nothing of ours to delete
                return
            raise
        leaf = self.cache.leaf_for(action.pod.namespace)
        self.metrics.reclaims.labels(leaf.full_name if leaf else "").inc()
        log.info("preempted growth pod %s: %s", action.pod.key, action.reason)
        pod_ref = {"apiVersion": "v1", "kind": "Pod", "name": action.pod.name, "namespace": action.pod.namespace,
                   "uid": action.pod.uid}
        await self.events.emit(pod_ref, "Warning", keys.EVENT_PREEMPTED, action.reason)
        if action.cluster is not None:
            await self.events.emit(self._cluster_ref(action.cluster.namespace, action.cluster.name, action.cluster.uid),
                                   "Warning", keys.EVENT_PREEMPTED, action.reason)

    async def _delete_leftover(self, action: DeleteLeftover) -> None:
        """Delete a RayCluster KubeRay leaves running (see ``DeleteLeftover``): only for the RayJob version decided
        on, only the cluster that job controls, preconditioned by uid and resourceVersion; then the events."""
        job = await self.client.get(_job_path(action.job))
        job_meta = job.get("metadata") or {}
        if job_meta.get("uid") != action.job.uid or job_meta.get("resourceVersion") != action.job.resource_version:
            return  # the job changed since the decision: the next pass decides on what it is now
        ref = action.cluster
        try:
            current = await self.client.get(RAYCLUSTERS.path(ref.namespace, ref.name))
            meta = current.get("metadata") or {}
            owner: dict[str, Any] = next(
                (r for r in meta.get("ownerReferences") or [] if r.get("controller") is True), {})
            if meta.get("uid") != ref.uid or owner.get("uid") != action.job.uid or meta.get("deletionTimestamp"):
                return
            await self.client.delete(RAYCLUSTERS.path(ref.namespace, ref.name),
                                     action.delete_options(str(meta.get("resourceVersion") or "")))
        except ApiError as exc:
            if exc.not_found or exc.conflict:  # gone, or changed meanwhile: the next pass decides again
                return
            raise
        log.info("deleted RayCluster %s of RayJob %s: %s", ref.key, action.job.key, action.reason)
        job_ref = {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": action.job.kind,
                   "name": action.job.name, "namespace": action.job.namespace, "uid": action.job.uid}
        message = f"deleted RayCluster {ref.key}: {action.reason}"
        await self.events.emit(job_ref, "Normal", keys.EVENT_LEFTOVER_DELETED, message)
        await self.events.emit(self._cluster_ref(ref.namespace, ref.name, ref.uid), "Normal",
                               keys.EVENT_LEFTOVER_DELETED, message)

    @staticmethod
    def _cluster_ref(namespace: str, name: str, uid: str) -> dict[str, str]:
        return {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND,
                "name": name, "namespace": namespace, "uid": uid}

    async def _set_cluster_condition(self, action: SetClusterQuotaCondition) -> None:
        """Read-modify-write of the RayCluster's status.conditions: GET, replace only our condition, PUT on
        /status carrying the resourceVersion read (a concurrent KubeRay write makes it a 409: read again).
        A merge patch would replace KubeRay's whole list. A message-only change waits CONDITION_INTERVAL."""
        ref = action.cluster
        cached = self.cache.ray_cluster(ref.uid)
        now = self.clock.monotonic()
        last = self._condition_written.get(ref.uid)
        same_status = cached is not None and cached.condition is not None and cached.condition[0] == action.status
        if same_status and last is not None and now - last < CONDITION_INTERVAL:
            asyncio.get_running_loop().call_later(CONDITION_INTERVAL - (now - last), self.poke)
            log.debug("RayCluster %s: %s message change deferred", ref.key, keys.RAYQUEUE_QUOTA_CONDITION)
            return
        path = RAYCLUSTERS.path(ref.namespace, ref.name)
        for attempt in range(CONDITION_RETRIES):
            current = await self.client.get(path)
            meta = current.get("metadata") or {}
            if meta.get("uid") != ref.uid:
                return  # deleted and recreated under the same name: not the cluster the plan was about
            status = dict(current.get("status") or {})
            conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
            old = next((c for c in conditions if c.get("type") == keys.RAYQUEUE_QUOTA_CONDITION), None)
            stamp = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
            transition = old.get("lastTransitionTime") if old and old.get("status") == action.status else stamp
            new = {"type": keys.RAYQUEUE_QUOTA_CONDITION, "status": action.status, "reason": action.reason,
                   "message": action.message, "lastTransitionTime": transition or stamp,
                   "observedGeneration": meta.get("generation", 0)}
            status["conditions"] = [c if c is not old else new for c in conditions] + ([] if old else [new])
            current["status"] = status
            try:
                updated = await self.client.replace(RAYCLUSTERS.path(ref.namespace, ref.name, "status"), current)
            except ApiError as exc:
                if exc.conflict and attempt + 1 < CONDITION_RETRIES:
                    continue
                raise
            self._condition_written[ref.uid] = self.clock.monotonic()
            for gone in [uid for uid in self._condition_written if self.cache.ray_cluster(uid) is None]:
                del self._condition_written[gone]  # clusters deleted since: forget them
            self.cache.on_raycluster("MODIFIED", updated)
            log.info("RayCluster %s: %s %s (%s): %s", ref.key, keys.RAYQUEUE_QUOTA_CONDITION, action.status,
                     action.reason, action.message)
            break
        if action.event is not None:
            type_, reason, message = action.event
            await self.events.emit(self._cluster_ref(ref.namespace, ref.name, ref.uid), type_, reason, message)

    async def _ensure_queue_unit(self, action: EnsureQueueUnit) -> None:
        try:
            created = await self.client.create(QUEUE_UNITS.path(action.namespace), action.object)
        except ApiError as exc:
            if exc.status != 409:
                raise
            body = {k: action.object[k] for k in ("spec",) if k in action.object}
            body["metadata"] = {k: action.object["metadata"][k] for k in ("labels", "annotations", "ownerReferences")
                                if k in action.object["metadata"]}
            created = await self.client.patch(QUEUE_UNITS.path(action.namespace, action.name), body, MERGE_PATCH)
        self.cache.on_queue_unit("ADDED", created)

    @staticmethod
    async def _ignore_missing(call: Any) -> None:
        try:
            await call
        except ApiError as exc:
            if not exc.not_found:
                raise

    def _gauges(self) -> None:
        tree, ledger = self.cache.tree, self.cache.ledger
        if tree is None or ledger is None:
            return
        for leaf in tree.leaves():
            self.metrics.queue_length.labels(leaf.full_name, "active").set(len(self.cache.queues.active(leaf.full_name)))
            self.metrics.queue_length.labels(leaf.full_name, "backoff").set(len(self.cache.queues.backoff(leaf.full_name)))
        for node in tree.nodes():
            used = ledger.usage(node.full_name)
            for name in sorted(set(node.max) | set(node.min) | set(used)):
                self.metrics.quota.labels(node.full_name, name, "used").set(used.get(name))
                self.metrics.quota.labels(node.full_name, name, "min").set(node.min.get(name))
                if name in node.max:
                    self.metrics.quota.labels(node.full_name, name, "max").set(node.max[name])


