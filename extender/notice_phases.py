"""The reconcile's preemption notices (docs/preemption.md; pure rules in ``common.preemption``): what a noticed,
still admitted job needs in phase 2 (``handle_notice``: wait, withdraw, or the reclaim itself), and the shrink
notice a reclaim gives an elastic victim in phase 6 (``give_shrink_notice``, docs/elastic.md).

A shrink notice is the whole-job notice with the workers it names (``Notice.workers``): the same annotation on the
job, mirrored onto those pods only; the same steps, whose reclaim at the deadline (or acknowledgement) is the
``Shrink`` (``extender.shrink.due_shrink``) instead of the suspension, and the job keeps running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from common import keys
from common.accounting import JobState
from common.preemption import Notice, NoticeError, issue, read_notice, victim_step
from common.rayjob import JobInfo, PodInfo
from extender.actions import Action, AnnotatePod, Event, JobRef, Notify, Shrink, Suspend, WithdrawNotice
from extender.shrink import due_shrink

if TYPE_CHECKING:  # extender.reconcile runs these phases: no import cycle at run time
    from extender.reconcile import Pass

__all__ = ["give_shrink_notice", "handle_notice"]


def handle_notice(p: Pass, job: JobInfo) -> None:
    """An admitted job with a preemption notice: carry out its reclaim (acknowledged, deadline passed, unreadable
    notice: suspended, or for a shrink notice shrunk), withdraw the notice (its claimant no longer waits), or wait,
    mirroring the notice onto the pods it covers and recording its deadline as the pass's wake-up."""
    cache, out = p.cache, p.requeues
    text = job.annotations.get(keys.PREEMPTION_NOTICE, "")
    ref = JobRef.of(job)
    try:
        notice: Notice | None = Notice.parse(text)
        problem = ""
    except NoticeError as exc:
        notice, problem = None, str(exc)
    acknowledged = keys.CHECKPOINTED in job.annotations
    waiting = notice is not None and cache.state(notice.claimant_uid) is JobState.WAITING
    what = victim_step(notice, p.now_ns, acknowledged=acknowledged, claimant_waiting=waiting)
    if what == "wait" and notice is not None:
        out.extend(_mirror(cache.remaining_pods(job.uid), text, notice))
        p.notices.setdefault(notice.claimant_uid, []).append((job.key, notice))
        p.wake_at(notice.deadline_ns)
        return
    if what == "withdraw" and notice is not None:
        reason = (f"preemption notice withdrawn: its claimant {notice.claimant} no longer waits for the quota; "
                  "the job runs on")
        out.append(WithdrawNotice(ref, reason))
        out.append(Event(ref, "Normal", keys.EVENT_PREEMPTION_NOTICE_WITHDRAWN, reason))
        out.extend(_mirror(cache.remaining_pods(job.uid), None, None))
        return
    if notice is not None and notice.shrinks:  # docs/elastic.md: the workers go, the job keeps running
        shrink = due_shrink(cache, job, notice, text, acknowledged)
        if shrink is None:
            out.append(WithdrawNotice(ref, "preemption notice done: none of the workers it names remains"))
        else:
            out.append(shrink)
        return
    leaf_name = _leaf_name(p, job)
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
    out.append(Suspend(ref, reason, claimant, clear_notice=True))
    out.append(Event(ref, "Warning", keys.EVENT_PREEMPTED, reason))
    requeued = f"back in {leaf_name}'s queue at its original place; it resumes when capacity frees"
    out.append(Event(ref, "Normal", keys.EVENT_REQUEUED, requeued))


def _mirror(pods: Sequence[PodInfo], text: str | None, notice: Notice | None) -> list[Action]:
    """The notice onto every pod it covers (all of a whole-job notice's, the named ones of a shrink notice), off
    every other."""
    out: list[Action] = []
    for pod in pods:
        want = text if notice is not None and notice.covers(pod.name) else None
        if pod.preemption_notice != want and not pod.deleting:
            out.append(AnnotatePod(pod.namespace, pod.name, pod.uid, want))
    return out


def _leaf_name(p: Pass, job: JobInfo) -> str:
    leaf = p.cache.leaf_for(job.namespace)
    return leaf.full_name if leaf else "(no leaf)"


def give_shrink_notice(p: Pass, shrink: Shrink, grace: int) -> None:
    """A reclaim's Shrink of a victim whose leaf grants ``grace``: a shrink notice naming its workers instead
    (``Notify``, a ``PreemptionNotice`` event), the claimant reserved from the next pass on and the deadline the
    pass's wake-up. A job already under a shrink notice gets one notice naming both sets of workers
    (``Notice.merged``); one under a whole-job notice needs none (its pods go with it)."""
    job = p.cache.job(shrink.job.uid)
    if job is None or shrink.claimant is None:  # pragma: no cover - split_growth plans for cached jobs
        return
    held = job.annotations.get(keys.PREEMPTION_NOTICE)
    before = read_notice(held) if held is not None else None
    if held is not None and (before is None or not before.shrinks):
        return
    claimant = shrink.claimant
    notice = issue(p.now_ns, grace, job.key, claimant.key, claimant.uid, shrink.why, shrink.groups)
    if before is not None:
        notice = before.merged(notice)
    p.admission.append(Notify(JobRef.of(job), notice.text(), claimant))
    names = ", ".join(f"{job.namespace}/{n}" for _, group in shrink.groups for n in group)
    count = shrink.pods
    message = (f"preemption notice: {count} worker{'s' if count != 1 else ''} above its floor ({names}) go at "
               f"{notice.deadline} (grace {notice.grace}, from {_leaf_name(p, job)}) to {shrink.why}; set "
               f"annotation {keys.CHECKPOINTED} on this {job.kind} once checkpointed to have them go at once; the "
               "job keeps running with the rest")
    p.admission.append(Event(JobRef.of(job), "Warning", keys.EVENT_PREEMPTION_NOTICE, message))
    kept = [(victim, n) for victim, n in p.notices.get(notice.claimant_uid, []) if victim != job.key]
    p.notices[notice.claimant_uid] = [*kept, (job.key, notice)]
    p.wake_at(notice.deadline_ns)
