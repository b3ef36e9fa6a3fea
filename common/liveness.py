"""Liveness, pure: how long an admitted job may take to start, whether it has started, and the record of a timeout.

A claim must never outlive the pods that justify it (docs/liveness.md). This module holds the rules that do
not depend on any knowledge of KubeRay:

* **Timeout.** ``rayqueue.io/admission-timeout`` in a quota node's ``attributes`` is a Go duration, inherited from
  the nearest ancestor like the preemption grace; default ``DEFAULT_TIMEOUT_SECONDS`` (10m); ``0`` turns it off.
  The deadline is the job's dequeue stamp plus the timeout, so a restarted controller derives the same deadline
  from the RayJob itself and nothing is kept in memory.
* **Started.** KubeRay reports the job running (a RayJob's ``jobDeploymentStatus: Running``, a bare RayCluster's
  ``status.state: ready``: the caller says which), or every pod the reservation counts is bound and Running.
* **Retries.** ``rayqueue.io/admission-retries`` (an integer, inherited; default 3): after that many timeouts in
  a row the job is parked: no longer tried until a user clears the count. ``0`` means never parked (retried for
  ever, with the queue's exponential backoff). The count lives in the job's annotation
  ``rayqueue.io/admission-timeouts``, written only by the controller with the suspend patch and removed once the
  job starts.
* **Record.** ``TimedOut`` is the reason as data: the timeout, the pods placed and running against those
  reserved, each waiting pod with why it waits, the attempt and the retries. Every surface renders it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from common import keys
from common.gotime import format_duration, parse_duration

if TYPE_CHECKING:  # common.quota_tree validates the attributes with the checks below: no import cycle at run time
    from common.quota_tree import QuotaTree

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_SECONDS",
    "Progress",
    "TimedOut",
    "Waiting",
    "admission_retries",
    "admission_timeout_ns",
    "overdue",
    "parked",
    "parked_words",
    "retries_problem",
    "retry_command",
    "started",
    "timeout_problem",
    "timeouts_so_far",
]

NS: Final = 10**9
DEFAULT_TIMEOUT_SECONDS: Final = 600
DEFAULT_RETRIES: Final = 3
MAX_TIMEOUT_SECONDS: Final = 7 * 24 * 3600
MAX_RETRIES: Final = 1000
_MAX_LISTED: Final = 3  # waiting pods named in a message; the rest are counted


def timeout_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/admission-timeout`` value is refused (None: valid)."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        return f"invalid {keys.ADMISSION_TIMEOUT} {value!r}: expected a Go duration like 90s, 10m or 1h (0 turns it off)"
    if seconds < 0:
        return f"invalid {keys.ADMISSION_TIMEOUT} {value!r}: a timeout cannot be negative (0 turns it off)"
    if seconds > MAX_TIMEOUT_SECONDS:
        return f"invalid {keys.ADMISSION_TIMEOUT} {value!r}: at most {format_duration(MAX_TIMEOUT_SECONDS)}"
    return None


def retries_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/admission-retries`` value is refused (None: valid)."""
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        return f"invalid {keys.ADMISSION_RETRIES} {value!r}: expected a whole number of timeouts (0: never parked)"
    if int(text) > MAX_RETRIES:
        return f"invalid {keys.ADMISSION_RETRIES} {value!r}: at most {MAX_RETRIES}"
    return None


def admission_timeout_ns(tree: QuotaTree, quota: str) -> int:
    """The admission timeout of a quota node in ns (0: off): its own attribute, else the nearest ancestor's, else
    the default. The tree was validated, so every value parses."""
    value = tree.inherited_attribute(quota, keys.ADMISSION_TIMEOUT)
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS * NS
    try:
        return max(0, round(parse_duration(value) * NS))
    except ValueError:  # pragma: no cover - refused when the tree is validated
        return DEFAULT_TIMEOUT_SECONDS * NS


def admission_retries(tree: QuotaTree, quota: str) -> int:
    """How many timeouts in a row park a job of this quota node (0: never)."""
    value = tree.inherited_attribute(quota, keys.ADMISSION_RETRIES)
    if value is None or retries_problem(value) is not None:
        return DEFAULT_RETRIES
    return int(value.strip())


def timeouts_so_far(annotations: Mapping[str, str]) -> int:
    """The job's count of admission timeouts in a row (its ``rayqueue.io/admission-timeouts``); 0 when absent or
    not a count the controller writes."""
    text = annotations.get(keys.ADMISSION_TIMEOUTS, "").strip()
    return int(text) if text.isascii() and text.isdigit() else 0


def parked(timeouts: int, retries: int) -> bool:
    """A job that timed out ``retries`` times in a row is no longer tried (``retries`` 0: never parked)."""
    return retries > 0 and timeouts >= retries


def overdue(now_ns: int, dequeue_ns: int | None, timeout_ns: int) -> bool:
    """An admitted job's deadline has passed (a job with no dequeue stamp, or a timeout of 0, never is)."""
    return timeout_ns > 0 and dequeue_ns is not None and now_ns >= dequeue_ns + timeout_ns


def retry_command(job: str) -> str:
    """The one command that retries a parked job (``namespace/name``): it removes its count of timeouts."""
    namespace, _, name = job.partition("/")
    return f"kubectl rayqueue retry {name} -n {namespace}"


def parked_words(job: str, timeouts: int, retries: int) -> str:
    """What a parked job's QueueUnit says after the reason: that it is parked, and how to retry it."""
    return (f"Parked after {timeouts} admission timeouts in a row ({keys.ADMISSION_RETRIES} {retries}): fix the "
            f"cause, then retry with `{retry_command(job)}`")


@dataclass(frozen=True, slots=True)
class Waiting:
    """A pod the reservation counts that is not yet Running: its ``namespace/name``, its role and why it waits."""

    pod: str
    role: str
    reason: str


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an admitted job got: pods the reservation counts, bound ones, Running ones, and the rest with why."""

    reserved: int
    placed: int
    running: int
    waiting: tuple[Waiting, ...] = ()

    @classmethod
    def of(cls, reserved: int, pods: Iterable[tuple[str, str, str | None, str, str]]) -> Progress:
        """From ``(key, role, node_name, phase, reason)`` per live pod of the job; ``reason`` is why it is not
        Running (kube-scheduler's PodScheduled message, the extender's refusal), "" when unknown."""
        placed = running = 0
        waiting: list[Waiting] = []
        for key, role, node, phase, reason in pods:
            placed += node is not None
            if phase == "Running":
                running += 1
                continue
            why = reason or ("not placed" if node is None else f"placed on {node}, {phase or 'Pending'}")
            waiting.append(Waiting(key, role, why))
        return cls(reserved, placed, running, tuple(sorted(waiting, key=lambda w: w.pod)))


def started(kuberay_running: bool, progress: Progress) -> bool:
    """KubeRay reports the job running, or every pod its reservation counts is bound and Running."""
    return kuberay_running or (progress.reserved > 0 and progress.running >= progress.reserved)


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The reason an admitted job was suspended and requeued (or parked): the record every surface renders."""

    job: str  # namespace/name
    timeout_ns: int
    progress: Progress
    attempt: int  # this timeout's number in the run of timeouts, from 1
    retries: int  # the parking threshold (0: never)

    @property
    def parked(self) -> bool:
        return parked(self.attempt, self.retries)

    def message(self) -> str:
        """``not started within 20s of admission: 3 of 4 pods not placed; worker ns/x-w-1: 0/12 nodes ...``."""
        p = self.progress
        within = format_duration(self.timeout_ns / NS)
        if p.placed < p.reserved:
            state = f"{p.reserved - p.placed} of {p.reserved} pods not placed"
        else:
            state = f"{p.reserved - p.running} of {p.reserved} pods not Running"
        listed = "; ".join(f"{w.role} {w.pod}: {w.reason}" for w in p.waiting[:_MAX_LISTED])
        more = f"; and {len(p.waiting) - _MAX_LISTED} more" if len(p.waiting) > _MAX_LISTED else ""
        head = f"not started within {within} of admission: {state}" + (f"; {listed}{more}" if listed else "")
        head = head.rstrip(".")  # a reason quoted last keeps no full stop of its own before ours
        if self.parked:
            return f"{head}. {parked_words(self.job, self.attempt, self.retries)}"
        of = f" of {self.retries}" if self.retries else ""
        return f"{head}. Timeout {self.attempt}{of}: suspended and requeued with its enqueue time, after a backoff"
