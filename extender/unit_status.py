"""The QueueUnit status a job should show (phase, position, message, attempts, sizes) and when to write it.

A waiting job's message renders its admission record (``common.explain``): its last refusal, the Block head
it waits behind, or the preemption notices it waits out. The other phases say where the job is in its life.

Write throttling: a waiting job's QueueUnit status is rewritten when its phase or message changes; its
position and attempts, which change for every waiting job of a leaf on every admission, arrival or retry,
only when they moved far enough to matter (``status_due``): positions up to POSITION_EXACT exactly, beyond
that once the written one is more than POSITION_SLACK off; attempts once they doubled (or were reset). The
exact positions of every waiting job are in its Queue's status.queueItemDetails, written once per pass per
leaf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeGuard

from common import keys
from common.accounting import JobState, current_request, maximum_request
from common.columns import compact_size
from common.explain import Explain, render
from common.gotime import format_go
from common.jobkind import kind_of
from common.liveness import Leftover
from common.preemption import Notice
from common.quota_tree import QuotaNode
from common.rayjob import VALIDATION_FAILED, JobInfo
from common.resources import Resources
from extender.cache import Cache
from extender.expand import workers_words
from extender.queue_objects import QueueUnitPhase, queue_unit_status

__all__ = ["POSITION_EXACT", "POSITION_SLACK", "sizes", "status_due", "unit_status", "waiting_explain"]

POSITION_EXACT: Final = 10
POSITION_SLACK: Final = 0.1


def status_due(desired: Mapping[str, Any], cached: Mapping[str, Any]) -> bool:
    """Whether the QueueUnit status must be written (see the module docstring): any change of phase or message
    (or of a field appearing or going); a position or an attempts count only once it moved far enough. When
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


def waiting_explain(cache: Cache, job: JobInfo, leaf: QuotaNode,
                    notices: Sequence[tuple[str, Notice]] = ()) -> Explain:
    """Why a waiting job waits: the queues' record of it (no count in it: a queue's size changes with every
    arrival and would rewrite every waiter's message), wrapped in the preemption notices it waits out."""
    queues = cache.queues
    found = queues.explain(job.uid) or Explain(why="waiting", node=leaf.full_name, backoff=queues.in_backoff(job.uid))
    if not notices:
        return found
    ordered = sorted(notices, key=lambda given: (given[1].deadline_ns, given[0]))
    return Explain(why="notice", notices=tuple((victim, n.deadline) for victim, n in ordered), cause=found)


def unit_status(
    cache: Cache,
    job: JobInfo,
    state: JobState,
    leaf: QuotaNode,
    dequeued: Mapping[str, int],
    stamp: str,
    cached: Mapping[str, Any] | None,
    notices: Sequence[tuple[str, Notice]] = (),
    timed_out: tuple[Explain, bool] | None = None,
    leftover: Leftover | None = None,
) -> dict[str, Any]:
    """The QueueUnit status a job should show (without lastUpdateTime); ``notices``: the preemption notices a
    waiting claimant waits out (victim key, notice); ``timed_out``: the admission timeout record of a job this
    pass suspended or keeps parked, and whether it is parked (common.liveness); ``leftover``: a stopped job's
    RayCluster that KubeRay leaves running and rayqueue deletes (common.liveness.Leftover)."""
    previous = cached.get("attempts") if cached else None
    attempts = previous if _count(previous) else 0
    phase: QueueUnitPhase
    position: int | None = None
    if job.uid in dequeued:
        phase, attempts = "Dequeued", dequeued[job.uid]
        message = f"dequeued at {stamp}"
    elif timed_out is not None and state in (JobState.ADMITTED, JobState.WAITING):
        explain, is_parked = timed_out
        phase = "Parked" if is_parked else "Backoff"
        message = render(explain)
    elif state is JobState.WAITING:
        queues = cache.queues
        phase = "Backoff" if queues.in_backoff(job.uid) else "Enqueued"
        position = queues.position(job.uid)
        attempts = queues.attempts(job.uid)
        message = render(waiting_explain(cache, job, leaf, notices))
    elif state is JobState.ADMITTED:
        phase = "Running" if kind_of(job.kind).started(job) else "Dequeued"
        message = f"dequeued at {format_go(cache.dequeue_ns(job.uid) or 0)}"
    elif state is JobState.REQUEUE:
        phase = "Enqueued"
        message = f"suspended while admitted to {leaf.full_name}: requeueing"
    elif state is JobState.FINISHED and job.job_deployment_status == VALIDATION_FAILED:
        phase = "Failed"
        message = (
            f"KubeRay refused the job (jobDeploymentStatus {VALIDATION_FAILED}): {job.status_message or 'no message'}; "
            "it will never run and is charged only what its live pods request: fix the spec and create it again"
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
    if leftover is not None and state is JobState.FINISHED:
        message = f"{message}. Its RayCluster: {leftover.message()}"
    return {**queue_unit_status(phase, position, message, attempts), **sizes(cache, job, state)}


def sizes(cache: Cache, job: JobInfo, state: JobState) -> dict[str, str]:
    """The QueueUnit's size columns (docs/growth.md): ``admitted``, the reservation its claim holds ("-"
    while it holds none); ``current``, what its live pods request now (growth and pending pods included);
    ``maximum``, the most it could ever take (``maximum_request``)."""
    pods = cache.remaining_pods(job.uid) if state is not JobState.WAITING else ()
    claim = cache.ledger.claim(job.uid) if cache.ledger is not None else None
    admitted = claim.request if claim is not None and claim.kind == "job" else Resources()
    out = {
        "admitted": compact_size(admitted),
        "current": compact_size(current_request(pods)),
        "maximum": compact_size(maximum_request(job, pods)),
    }
    if job.elastic and state is not JobState.WAITING:  # docs/elastic.md: its RayCluster's size against its target
        out["workers"] = workers_words(cache, job)
    return out
