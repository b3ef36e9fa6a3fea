"""Start-time estimates for the QueueUnits and runtime history for the Queues, from one Cache snapshot.

Pure except for nothing: ``snapshot(cache, now)`` copies what ``common.start_times.estimate`` needs (a
Ledger copy and frozen values, cheap, in the event loop), the estimate itself may then run in a worker
thread on that snapshot, and ``unit_patches`` / ``history_patches`` turn the result into the
controller's ordinary status actions against the cache as it is then.

QueueUnit ``status.estimatedStartTime`` (RFC 3339, absent when unknown) and ``status.estimate`` (what the
estimate assumes) are set on waiting QueueUnits and removed once a job is admitted. A new estimate is
written only when its message changes or its time moves by more than ``max(30 s, 10 % of the wait)``,
so a steady queue is not re-patched on every refresh.

A leaf's Queue ``status.forecast`` (``common.start_times.Forecast``: when a job submitted now, of any size,
would start at the tail of its queue) comes from the same replay; it is written when its note or its
openings' free quota change, or an opening's time moves by the same tolerance.

Runtime history (the leaf's last ``HISTORY_SIZE`` admission-to-end times) lives in the Queue's
``status.runtimeHistory`` as ``{uid, seconds, end}`` rows, so a restarted controller keeps it: a finished
RayJob (``status.endTime``, KubeRay v1.7 ``updateRayJobStatus`` sets it on a terminal deployment status)
with a dequeue stamp is added once, when it ended after the newest row.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from common import keys
from common.accounting import JobState
from common.estimate_learning import Learned, learned_from_status
from common.estimate_range import RangedEstimate, RangedForecast, published_bound, ranged_replay
from common.eta import eta_text
from common.gotime import GoTimeError, parse_go
from common.ledger import Ledger
from common.preemption import Notice, NoticeError
from common.preview import forecast_from_status, forecast_status
from common.queueing import QueuePolicy
from common.start_times import (
    DRAIN_SECONDS,
    HISTORY_SIZE,
    NS,
    Estimate,
    Forecast,
    Opening,
    Replay,
    Running,
    Runtime,
    Waiting,
    runtime_of,
)
from extender.actions import UpdateQueueStatus, UpdateQueueUnitStatus
from extender.cache import Cache
from extender.estimate_history import learning_status
from extender.queue_objects import queue_unit_name, rfc3339

__all__ = [
    "EstimateInputs", "compute", "forecast_patches", "history", "history_patches", "snapshot", "snapshot_steps",
    "unit_patches",
]

MIN_MOVE_SECONDS: Final = 30.0
SNAPSHOT_SLICE: Final = 250  # waiting jobs copied between two turns of the event loop
MOVE_FRACTION: Final = 0.10


@dataclass(frozen=True, slots=True)
class EstimateInputs:
    """What one replay needs, copied out of the Cache at one instant: the replay then runs without it."""

    ledger: Ledger
    running: tuple[Running, ...]
    waiting: tuple[Waiting, ...]
    policies: Mapping[str, QueuePolicy]
    now_ns: int
    # what the leaves' Queue statuses say about the future (common/estimate_learning.py), and their runtimes
    learned: Mapping[str, Learned] = field(default_factory=dict)
    runtimes: Mapping[str, tuple[float, ...]] = field(default_factory=dict)


def history(status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The Queue's ``status.runtimeHistory`` rows that are well formed, oldest first."""
    rows = (status or {}).get("runtimeHistory")
    out = []
    for row in rows if isinstance(rows, list) else []:
        if (isinstance(row, Mapping) and isinstance(row.get("uid"), str)
                and isinstance(row.get("seconds"), int) and not isinstance(row.get("seconds"), bool)
                and isinstance(row.get("end"), str)):
            out.append(dict(row))
    return out


def _seconds(cache: Cache, leaf: str) -> list[float]:
    queue = cache.queue_for(leaf)
    return [float(r["seconds"]) for r in history(queue.status if queue else None)]


def snapshot(cache: Cache, now_ns: int) -> EstimateInputs | None:
    """What the estimate needs, copied from the cache (None without a valid tree)."""
    steps = snapshot_steps(cache, now_ns)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            found: EstimateInputs | None = done.value
            return found


def snapshot_steps(cache: Cache, now_ns: int, every: int | None = None) -> Generator[None, None, EstimateInputs | None]:
    """``snapshot`` as a generator that yields after every ``every`` waiting jobs copied, for a caller that lets
    the verbs run in between (10,000 waiting jobs take tens of milliseconds) while it holds the watch events:
    the ledger is copied first, at one instant. The runtimes are memoised across snapshots (``_runtime``)."""
    every = every or SNAPSHOT_SLICE
    tree, ledger = cache.tree, cache.ledger
    if tree is None or ledger is None:
        return None
    ledger_copy = ledger.copy()
    seconds = {leaf.full_name: tuple(_seconds(cache, leaf.full_name)) for leaf in tree.leaves()}
    running = []
    for claim in ledger_copy.claims():
        job = cache.job(claim.uid) if claim.kind == "job" else None
        if job is None:
            pod = cache.pod(claim.uid) if claim.kind == "pod" else None
            named = _notice_end(pod.preemption_notice) if pod is not None else None
            if named is not None:  # a worker a shrink notice names (docs/elastic.md): it goes at the deadline
                left = max(0, named[0] - now_ns) / NS + DRAIN_SECONDS
                running.append(Running(claim, now_ns, Runtime(left, "declared", f"shrink notice until {named[1]}"),
                                       releasing=True))
            continue  # any other pod outside the queue holds its claim for as long as the replay lasts
        notice = _job_notice_end(job.annotations) if cache.state(claim.uid) is JobState.ADMITTED else None
        if notice is not None:  # a reclaim victim under notice runs on until its deadline, then drains
            end, deadline = notice
            left = max(0, end - now_ns) / NS + DRAIN_SECONDS
            running.append(Running(claim, now_ns, Runtime(left, "declared", f"preemption notice until {deadline}"),
                                   job.enqueue_ns or 0, releasing=True))
            continue
        if cache.releasing(claim.uid):
            drain = Runtime(DRAIN_SECONDS, "declared", "releasing its quota")
            running.append(Running(claim, now_ns, drain, job.enqueue_ns or 0))
            continue
        runtime = _runtime(job.annotations.get(keys.EXPECTED_RUNTIME), job.active_deadline_seconds,
                           seconds.get(claim.quota, ()), claim.quota)
        running.append(Running(claim, job.dequeue_ns or now_ns, runtime, job.enqueue_ns or 0))
    waiting = []
    queues = cache.queues
    policies = {leaf.full_name: queues.policy(leaf.full_name) for leaf in tree.leaves()}
    copied = 0
    for leaf in tree.leaves():
        history = seconds[leaf.full_name]
        for item in (*queues.active(leaf.full_name), *queues.backoff(leaf.full_name)):
            job = cache.job(item.uid)
            if job is None:  # pragma: no cover - queue items come from cached jobs
                continue
            runtime = _runtime(job.annotations.get(keys.EXPECTED_RUNTIME), job.active_deadline_seconds, history,
                               leaf.full_name)
            waiting.append(Waiting(item, runtime, job.preemptible))
            copied += 1
            if copied % every == 0:
                yield
    learned = {}
    for leaf in tree.leaves():
        queue = cache.queue_for(leaf.full_name)
        learned[leaf.full_name] = learned_from_status(queue.status if queue else None)
    return EstimateInputs(ledger_copy, tuple(running), tuple(waiting), policies, now_ns, learned, seconds)


@functools.lru_cache(maxsize=1 << 16)
def _runtime(declared: str | None, active_deadline_seconds: int | None, history: tuple[float, ...], leaf: str) -> Runtime:
    """``runtime_of`` of a job whose expected-runtime annotation is ``declared`` (it reads no other annotation)."""
    return runtime_of({keys.EXPECTED_RUNTIME: declared} if declared is not None else {}, active_deadline_seconds,
                      history, leaf)


def _notice_end(text: str | None) -> tuple[int, str] | None:
    """(deadline ns, RFC 3339) of a preemption notice; an unreadable one is due now (the controller suspends it)."""
    if text is None:
        return None
    try:
        notice = Notice.parse(text)
    except NoticeError:
        return 0, "now"
    return notice.deadline_ns, notice.deadline


def _job_notice_end(annotations: Mapping[str, str]) -> tuple[int, str] | None:
    """``_notice_end`` of a job's whole-job notice; None under a shrink notice, with which the job runs on at its
    floor (only the named workers go, each counted as its own pod claim)."""
    text = annotations.get(keys.PREEMPTION_NOTICE)
    try:
        if text is not None and Notice.parse(text).shrinks:
            return None
    except NoticeError:
        pass
    return _notice_end(text)


def compute(snap: EstimateInputs) -> Replay:
    """The estimates and forecasts, each with its range (``common.estimate_range.ranged_replay``: RangedEstimates,
    P50 start and P90 bound, and RangedForecasts); may run in a worker thread: it touches nothing but the snapshot.
    The forecast worker (extender/forecaster.py) makes the same call on the same values."""
    return ranged_replay(snap.ledger, snap.running, snap.waiting, snap.now_ns, learned=snap.learned,
                         runtimes=snap.runtimes, policies=snap.policies)


def _moved(old: str | None, new: int | None, now_ns: int) -> bool:
    if (old is None) != (new is None):
        return True
    if old is None or new is None:
        return False
    try:
        old_ns = parse_go(old)
    except GoTimeError:
        return True
    tolerance = max(MIN_MOVE_SECONDS * NS, MOVE_FRACTION * max(0, new - now_ns))
    return abs(old_ns - new) > tolerance


_CLEARED: Final = {"estimatedStartTime": None, "estimatedStartTimeLatest": None, "eta": None, "estimate": None}


def _text(status: Mapping[str, Any], name: str) -> str | None:
    value = status.get(name)
    return value if isinstance(value, str) else None


def unit_patches(cache: Cache, estimates: Mapping[str, Estimate], now_ns: int) -> list[UpdateQueueUnitStatus]:
    """Status patches for the QueueUnits whose estimate is new, changed, or no longer applies: the P50
    (``estimatedStartTime``), the P90 bound (``estimatedStartTimeLatest``, absent when the P50 is a lower
    bound only), the ETA column's text (``eta``: ``~4m, by 11m`` as of the write) and what both assume."""
    patches = []
    for job in cache.jobs():
        unit = cache.queue_unit(job.namespace, queue_unit_name(job))
        if unit is None or unit.owner_uid != job.uid:
            continue
        status = unit.status or {}
        found = estimates.get(job.uid)
        if found is None or cache.state(job.uid) is not JobState.WAITING:
            if any(_text(status, name) is not None for name in _CLEARED):
                patches.append(UpdateQueueUnitStatus(unit.namespace, unit.name, dict(_CLEARED)))
            continue
        latest = found.latest_ns if isinstance(found, RangedEstimate) else None
        if (found.message != _text(status, "estimate") or _moved(_text(status, "estimatedStartTime"), found.start_ns, now_ns)
                or _moved(_text(status, "estimatedStartTimeLatest"), latest, now_ns)):
            patches.append(UpdateQueueUnitStatus(unit.namespace, unit.name, {
                "estimatedStartTime": rfc3339(found.start_ns) if found.start_ns is not None else None,
                "estimatedStartTimeLatest": rfc3339(published_bound(latest)) if latest is not None else None,
                "eta": eta_text(found.start_ns, latest, now_ns) if found.start_ns is not None else None,
                "estimate": found.message}))
    return patches


def _openings_moved(old: Sequence[Opening], new: Sequence[Opening], now_ns: int) -> bool:
    if len(old) != len(new):
        return True
    for was, now in zip(old, new, strict=True):
        if was.free != now.free or was.slots != now.slots or was.guaranteed != now.guaranteed:
            return True
        if _moved(rfc3339(was.at_ns), now.at_ns, now_ns):
            return True
    return False


def _forecast_moved(old: Forecast | None, new: Forecast, now_ns: int) -> bool:
    if old is None or old.note != new.note or _openings_moved(old.openings, new.openings, now_ns):
        return True
    if [b.above for b in old.bands] != [b.above for b in new.bands]:
        return True
    if any(_openings_moved(a.openings, b.openings, now_ns) for a, b in zip(old.bands, new.bands, strict=True)):
        return True
    old_latest = old.latest if isinstance(old, RangedForecast) else None
    new_latest = new.latest if isinstance(new, RangedForecast) else None
    if (old_latest is None) != (new_latest is None):
        return True
    if isinstance(old, RangedForecast) and isinstance(new, RangedForecast) and old.assumes != new.assumes:
        return True
    return old_latest is not None and new_latest is not None and _forecast_moved(old_latest, new_latest, now_ns)


def forecast_patches(cache: Cache, forecasts: Mapping[str, Forecast], now_ns: int) -> list[UpdateQueueStatus]:
    """Queue status patches for the leaves whose forecast is new or changed."""
    patches = []
    for leaf, found in sorted(forecasts.items()):
        queue = cache.queue_for(leaf)
        if queue is None:
            continue
        if _forecast_moved(forecast_from_status(leaf, queue.status), found, now_ns):
            patches.append(UpdateQueueStatus(queue.name, {"forecast": forecast_status(found)}))
    return patches


def history_patches(cache: Cache, now_ns: int) -> list[UpdateQueueStatus]:
    """Queue status patches adding the runtimes of jobs that finished since the newest recorded one, and
    what the ranges learn as of ``now_ns``, the controller's clock (extender/estimate_history.py)."""
    tree = cache.tree
    if tree is None:
        return []
    learned = learning_status(cache, now_ns)
    finished: dict[str, list[tuple[int, str, float]]] = {}
    for job in cache.jobs():
        if not job.finished or job.end_ns is None or job.dequeue_ns is None or job.end_ns < job.dequeue_ns:
            continue
        leaf = cache.leaf_for(job.namespace)
        if leaf is not None:
            finished.setdefault(leaf.full_name, []).append((job.end_ns, job.uid, (job.end_ns - job.dequeue_ns) / NS))
    patches = []
    for leaf_name, jobs in sorted(finished.items()):
        queue = cache.queue_for(leaf_name)
        if queue is None:
            continue
        rows = history(queue.status)
        known = {r["uid"] for r in rows}
        newest = max((_end(r) for r in rows), default=-1)
        fresh = sorted(j for j in jobs if j[1] not in known and j[0] >= newest)
        if not fresh:
            continue
        rows += [{"uid": uid, "seconds": round(seconds), "end": rfc3339(end)} for end, uid, seconds in fresh]
        status: dict[str, Any] = {"runtimeHistory": rows[-HISTORY_SIZE:]}
        if queue.name in learned:
            status["estimateHistory"] = learned.pop(queue.name)
        patches.append(UpdateQueueStatus(queue.name, status))
    patches += [UpdateQueueStatus(name, {"estimateHistory": found}) for name, found in sorted(learned.items())]
    return patches


def _end(row: Mapping[str, Any]) -> int:
    try:
        return parse_go(str(row["end"]))
    except GoTimeError:
        return -1

