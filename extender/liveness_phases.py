"""The reconcile's liveness phases (extender/reconcile.py ``PHASES`` 3 and 4; pure rules in ``common.liveness``): no
claim outlives the pods that justify it.

3. **Admission timeouts** (docs/liveness.md): an admitted job not started by its dequeue stamp plus its leaf's
   ``rayqueue.io/admission-timeout`` is suspended with its ``TimedOut`` record (or parked), a started one loses its
   count, a parked waiting one leaves its queue, and a waiting one with a count is held in backoff.
4. **Clusters KubeRay leaves behind** (docs/kuberay.md "Once KubeRay stops"): a stopped queued RayJob whose
   RayCluster KubeRay leaves running for ever (``cluster_fate``) is stamped with its stop time where KubeRay recorded
   none (``StampStopped``), then each RayCluster it controls is deleted ``ttlSecondsAfterFinished`` after that
   (``DeleteLeftover``); a cluster KubeRay deletes itself is never touched.

Both derive every deadline from the job itself, so a restarted controller decides the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from common import keys
from common.accounting import JobState
from common.explain import Explain, render
from common.gotime import format_go
from common.jobkind import kind_of
from common.liveness import (
    Progress,
    TimedOut,
    admission_retries,
    admission_timeout_ns,
    leftover,
    overdue,
    parked,
    parked_words,
    started,
    stopped_ns,
    timeouts_so_far,
)
from common.rayjob import JobInfo
from extender.actions import ClearTimeouts, DeleteLeftover, Event, JobRef, ObjectRef, StampStopped, Suspend
from extender.cache import Cache
from extender.queue_objects import queue_unit_name
from extender.watched_objects import ClusterObject

if TYPE_CHECKING:  # the Pass is reconcile's; it imports these phases
    from collections.abc import Generator

    from extender.reconcile import Pass

__all__ = ["LEFTOVER_RETRY_NS", "leftovers_phase", "timeouts_phase"]

SLICE: Final = 10  # as extender.reconcile.SLICE: jobs between two yields
LEFTOVER_RETRY_NS: Final = 5 * 10**9  # a due cluster whose DELETE did not take (a conflict, a refusal): again then


# --- 3. admission timeouts ----------------------------------------------------------------------------------------


def timeouts_phase(p: Pass) -> Generator[None, None, None]:
    """Admitted jobs not started within their admission timeout are suspended (or parked), started ones lose
    their count, parked waiting ones leave their queue, and a waiting job with a count is held in backoff."""
    for n, job in enumerate(p.jobs):
        if n % SLICE == SLICE - 1:
            yield
        state = p.states.get(job.uid)
        leaf = p.cache.leaf_for(job.namespace)
        if leaf is None:
            continue
        if state is JobState.ADMITTED and keys.PREEMPTION_NOTICE not in job.annotations:
            _admitted_liveness(p, job, leaf.full_name)
        elif state is JobState.WAITING and keys.ADMISSION_TIMEOUTS in job.annotations:
            _waiting_liveness(p, job, leaf.full_name)


def _progress(cache: Cache, job: JobInfo) -> Progress:
    """How far the job's pods got: the pods its reservation counts, and each live pod's placement and reason."""
    reserved = (1 if job.head_request else 0) + (1 if job.submitter_request else 0)
    reserved += sum(group.pods for group in job.worker_groups)
    refused = {pod.uid: why for found in cache.growth_refusals().values() for pod, why in found}
    rows = []
    for pod in cache.remaining_pods(job.uid):
        if pod.deleting:
            continue
        role = pod.node_type or ("submitter" if pod.owner is not None and pod.owner.kind == keys.BATCH_JOB_KIND
                                 else "pod")
        reason = pod.unschedulable or (f"quota: {refused[pod.uid]}" if pod.uid in refused else "")
        rows.append((pod.key, role, pod.node_name, pod.phase, reason))
    return Progress.of(reserved, rows)


def _admitted_liveness(p: Pass, job: JobInfo, quota: str) -> None:
    cache = p.cache
    progress = _progress(cache, job)
    count = timeouts_so_far(job.annotations)
    ref = JobRef.of(job)
    if started(kind_of(job.kind).started(job), progress):
        if keys.ADMISSION_TIMEOUTS in job.annotations:
            p.requeues.append(ClearTimeouts(ref, f"started after {count} admission timeout(s) in a row"))
        return
    timeout, dequeue_ns = admission_timeout_ns(p.tree, quota), cache.dequeue_ns(job.uid)
    if not overdue(p.now_ns, dequeue_ns, timeout):
        if timeout > 0 and dequeue_ns is not None:
            p.deadlines[job.uid] = dequeue_ns + timeout
        return
    record = TimedOut(job.key, timeout, progress, attempt=count + 1, retries=admission_retries(p.tree, quota))
    explain = Explain(why="timed-out", node=quota, timed_out=record)
    reason = render(explain)
    p.timed_out[job.uid] = (explain, record.parked)
    p.requeues.append(Suspend(ref, reason, ref, timed_out=explain))
    p.requeues.append(Event(ref, "Warning", keys.EVENT_ADMISSION_TIMEOUT, reason))
    if not record.parked:
        requeued = f"back in {quota}'s queue at its original place after a backoff (attempt {record.attempt})"
        p.requeues.append(Event(ref, "Normal", keys.EVENT_REQUEUED, requeued))


def _waiting_liveness(p: Pass, job: JobInfo, quota: str) -> None:
    """A waiting job with a count: parked (out of its queue, its QueueUnit keeping the words of its last timeout),
    or, with no hold in its queue (a restart), held again."""
    queues, count, retries = p.cache.queues, timeouts_so_far(job.annotations), admission_retries(p.tree, quota)
    unit = p.cache.queue_unit(job.namespace, queue_unit_name(job))
    kept = unit.status.get("message") if unit is not None and unit.owner_uid == job.uid else None
    said = kept if isinstance(kept, str) and kept.startswith("not started within") else ""
    if parked(count, retries):
        queues.remove(job.uid)
        words = parked_words(job.key, count, retries)
        text = said if said.endswith(words) else f"admission timed out: {words}"
        p.timed_out[job.uid] = (Explain(why="said", text=text), True)
    elif count and queues.attempts(job.uid) < count and not queues.in_backoff(job.uid):
        text = said or f"{count} admission timeout(s) in a row; waiting out a backoff in {quota}"
        queues.hold(job.uid, count, Explain(why="said", text=text))


# --- 4. clusters KubeRay leaves behind ----------------------------------------------------------------------------


def leftovers_phase(p: Pass) -> Generator[None, None, None]:
    """Each stopped queued RayJob whose RayCluster KubeRay leaves running (``common.liveness.leftover``): stamped
    with the time KubeRay stopped it when KubeRay recorded none, then each present RayCluster it controls deleted
    once its ttlSecondsAfterFinished has passed; the pass wakes at the next such time. The job's claim already
    follows its live pods (``common.accounting.reservation``), so the capacity frees as they go."""
    clusters: dict[str, list[ClusterObject]] = {}
    for cluster in p.cache.ray_clusters():
        if cluster.job_uid is not None and not cluster.deleting:
            clusters.setdefault(cluster.job_uid, []).append(cluster)
    for n, job in enumerate(p.jobs):
        if n % (SLICE * 8) == SLICE * 8 - 1:  # most jobs are skipped at the first test
            yield
        if p.states.get(job.uid) is not JobState.FINISHED:
            continue
        found = leftover(job, p.now_ns)
        if found is None or (job.uid not in clusters and stopped_ns(job) is None):
            continue  # nothing left to delete, and no time to tell of (it would change on every pass)
        p.leftovers[job.uid] = found  # its QueueUnit says what happens, and keeps saying it once done
        if job.uid not in clusters:
            continue
        ref = JobRef.of(job)
        if stopped_ns(job) is None:
            p.requeues.append(StampStopped(ref, format_go(p.now_ns), found.fate.value))
        elif not found.due(p.now_ns):
            p.wake_at(found.delete_ns)
        else:
            for cluster in clusters[job.uid]:
                target = ObjectRef(cluster.namespace, cluster.name, cluster.uid)
                p.requeues.append(DeleteLeftover(target, ref, found.message()))
            p.wake_at(p.now_ns + LEFTOVER_RETRY_NS)  # a refused or conflicting DELETE is tried again
