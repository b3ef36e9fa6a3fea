"""What the controller learns for the start-time ranges, per leaf, into its Queue's ``status.estimateHistory``
(common/estimate_learning.py has the form): actual over declared runtimes of finished jobs, and the jobs
that passed a waiting one. Pure over a Cache.

A learning pass looks at what happened since the history's ``checkedUntil``, and writes (setting it to now)
only when it learned something, so a steady queue is not re-patched and a restarted controller neither
loses nor counts anything twice:

* a finished job (``status.endTime``) that declared ``rayqueue.io/expected-runtime`` and ended after
  ``checkedUntil``: its runtime (dequeue to end) over the declared one;
* a job admitted after ``checkedUntil`` while a job submitted before it still waits (``passed``): an
  arrival, at its enqueue time, with its priority, request, declared runtime and whether it was within
  its leaf's min (guaranteed).

A leaf's history starts (``since``) at the first pass that sees its Queue.
"""

from __future__ import annotations

from typing import Any

from common.accounting import JobState
from common.estimate_learning import Arrival, Learned, learned_from_status, learned_status, passed
from common.gotime import GoTimeError, format_rfc3339, parse_go
from common.start_times import NS, runtime_of
from extender.cache import Cache

__all__ = ["learning_status"]


def _checked(status: Any) -> int | None:
    found = (status or {}).get("estimateHistory") if isinstance(status, dict) else None
    text = found.get("checkedUntil") if isinstance(found, dict) else None
    try:
        return parse_go(text) if isinstance(text, str) else None
    except GoTimeError:
        return None


def learning_status(cache: Cache, now_ns: int) -> dict[str, dict[str, Any]]:
    """Queue name -> its new ``estimateHistory``, for the leaf Queues where something was learned."""
    tree, ledger = cache.tree, cache.ledger
    if tree is None:
        return {}
    waiting_since = [j.enqueue_ns for j in cache.jobs()
                     if cache.state(j.uid) is JobState.WAITING and j.enqueue_ns is not None]
    out: dict[str, dict[str, Any]] = {}
    by_leaf: dict[str, list[Any]] = {}
    for job in cache.jobs():
        leaf = cache.leaf_for(job.namespace)
        if leaf is not None:
            by_leaf.setdefault(leaf.full_name, []).append(job)
    for leaf in tree.leaves():
        queue = cache.queue_for(leaf.full_name)
        if queue is None:
            continue
        before = learned_from_status(queue.status)
        learned: Learned = before.observing(now_ns)
        checked = _checked(queue.status)
        if checked is None:
            checked = learned.since_ns or now_ns
        for job in sorted(by_leaf.get(leaf.full_name, []), key=lambda j: (j.end_ns or 0, j.uid)):
            declared = runtime_of(job.annotations, None, [], leaf.full_name)
            if (job.finished and job.end_ns is not None and job.dequeue_ns is not None and job.end_ns > checked
                    and job.end_ns >= job.dequeue_ns and declared.source == "declared" and declared.seconds):
                learned = learned.with_ratio((job.end_ns - job.dequeue_ns) / NS, declared.seconds)
            admitted = cache.state(job.uid) is JobState.ADMITTED
            dequeued = cache.dequeue_ns(job.uid)  # as the controller knows it, its own marks included
            if (admitted and dequeued is not None and dequeued > checked and job.enqueue_ns is not None
                    and passed(job.enqueue_ns, waiting_since)):
                claim = ledger.claim(job.uid) if ledger is not None else None
                guaranteed = bool(ledger is not None and claim is not None and ledger.is_guaranteed(claim))
                learned = learned.with_arrival(Arrival(job.enqueue_ns, job.priority, job.request,
                                                       declared.seconds if declared.source == "declared" else None,
                                                       guaranteed))
        if learned == before:
            continue
        status = learned_status(learned)
        status["checkedUntil"] = format_rfc3339(now_ns)
        out[queue.name] = status
    return out
