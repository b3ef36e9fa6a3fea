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

And one rule that does depend on KubeRay, read from v1.7.0 ``rayjob_controller.go`` (docs/kuberay.md, "Once
KubeRay stops"): **who deletes a finished job's RayCluster.** ``Cleanup`` is what the RayJob's spec tells KubeRay;
``cluster_fate`` says whether KubeRay deletes the cluster itself (then rayqueue never does) or leaves it running for
ever, and which case; ``Leftover`` is the record of a cluster rayqueue deletes, ``ttlSecondsAfterFinished`` after
the job stopped (``status.endTime``, or the controller's ``rayqueue.io/kuberay-stopped-at`` where KubeRay records
none): derived from the object, so a restarted controller deletes it at the same time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from common import keys
from common.gotime import GoTimeError, format_duration, format_go, parse_duration, parse_go

if TYPE_CHECKING:  # common.quota_tree validates the attributes with the checks below; common.rayjob reads Cleanup
    from common.quota_tree import QuotaTree
    from common.rayjob import JobInfo

__all__ = [
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_SECONDS",
    "NO_CLEANUP",
    "Cleanup",
    "ClusterFate",
    "DeletionRule",
    "Leftover",
    "Progress",
    "TimedOut",
    "Waiting",
    "admission_retries",
    "admission_timeout_ns",
    "cluster_fate",
    "leftover",
    "overdue",
    "parked",
    "parked_words",
    "retries_problem",
    "retry_command",
    "started",
    "stopped_ns",
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


# --- once KubeRay stops: who deletes a finished job's RayCluster (KubeRay v1.7.0 rayjob_controller.go) --------------

_DELETES_CLUSTER: Final = frozenset({"DeleteCluster", "DeleteSelf"})  # DeleteSelf: the RayJob, so the GC takes the rest


@dataclass(frozen=True, slots=True)
class DeletionRule:
    """One of ``spec.deletionStrategy.deletionRules``: its condition (exactly one of ``jobStatus`` and
    ``jobDeploymentStatus``), its ``policy`` and ``condition.ttlSeconds``."""

    job_status: str | None
    deployment_status: str | None
    policy: str
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Cleanup:
    """What a RayJob's spec tells KubeRay to do with its RayCluster once the job ends (``Reconcile``, case
    Complete, Failed): ``shutdownAfterJobFinishes`` with ``ttlSecondsAfterFinished``, or a ``deletionStrategy``:
    the legacy ``onSuccess``/``onFailure`` policies or ``deletionRules``; a ``clusterSelector`` job's cluster is
    not its own. Read once from the spec (``of``), tolerant: what KubeRay's CRD would refuse reads as absent."""

    shutdown: bool = False
    ttl_seconds: int = 0
    strategy: bool = False
    on_success: str = ""
    on_failure: str = ""
    rules: tuple[DeletionRule, ...] = ()
    uses_rules: bool = False  # deletionRules is set (even empty): KubeRay then never reads onSuccess/onFailure
    cluster_selector: bool = False

    @classmethod
    def of(cls, spec: Mapping[str, object]) -> Cleanup:
        strategy = spec.get("deletionStrategy")
        strategy = strategy if isinstance(strategy, Mapping) else None
        rules = strategy.get("deletionRules") if strategy is not None else None
        selector = spec.get("clusterSelector")
        return cls(
            shutdown=spec.get("shutdownAfterJobFinishes") is True,
            ttl_seconds=_count_of(spec.get("ttlSecondsAfterFinished")),
            strategy=strategy is not None,
            on_success=_policy_of(strategy, "onSuccess"),
            on_failure=_policy_of(strategy, "onFailure"),
            rules=tuple(_rule_of(r) for r in rules if isinstance(r, Mapping)) if isinstance(rules, list) else (),
            uses_rules=rules is not None,
            cluster_selector=isinstance(selector, Mapping) and bool(selector),
        )


NO_CLEANUP: Final = Cleanup()  # a job converted from no RayJob spec (a bare RayCluster): KubeRay deletes nothing


def _count_of(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _policy_of(strategy: Mapping[str, object] | None, outcome: str) -> str:
    found = strategy.get(outcome) if strategy is not None else None
    policy = found.get("policy") if isinstance(found, Mapping) else None
    return policy if isinstance(policy, str) else ""


def _rule_of(rule: Mapping[str, object]) -> DeletionRule:
    condition = rule.get("condition")
    condition = condition if isinstance(condition, Mapping) else {}
    job_status, deployment = condition.get("jobStatus"), condition.get("jobDeploymentStatus")
    policy = rule.get("policy")
    return DeletionRule(job_status if isinstance(job_status, str) else None,
                        deployment if isinstance(deployment, str) else None,
                        policy if isinstance(policy, str) else "", _count_of(condition.get("ttlSeconds")))


class ClusterFate(enum.Enum):
    """What KubeRay v1.7.0 does with a stopped RayJob's RayCluster, per case (docs/kuberay.md, "Once KubeRay
    stops"), each naming the Go function it follows. ``kuberay_deletes``: rayqueue must never delete it."""

    SHUTDOWN = ("KubeRay deletes it: shutdownAfterJobFinishes, ttlSecondsAfterFinished after status.endTime "
                "(handleShutdownAfterJobFinishes)")
    LEGACY_DELETES = ("KubeRay deletes it: the legacy deletionStrategy policy for this jobStatus is DeleteCluster "
                      "or DeleteSelf (handleLegacyDeletionPolicy)")
    RULE_DELETES = "KubeRay deletes it: a deletionRule matching this job deletes the cluster (handleDeletionRules)"
    CLUSTER_SELECTOR = ("not the job's own: a clusterSelector job runs on an existing RayCluster, which nobody "
                        "deletes for it (Reconcile, case Complete, Failed)")
    VALIDATION_FAILED = ("KubeRay leaves it running: the job is ValidationFailed, which no case of the state "
                         "machine leaves and none deletes the cluster (Reconcile, validateRayJob)")
    LEGACY_JOB_STATUS = ("KubeRay leaves it running: the legacy deletionStrategy acts only on jobStatus SUCCEEDED "
                         "or FAILED, and shutdownAfterJobFinishes is not consulted (handleLegacyDeletionPolicy)")
    LEGACY_KEEPS = ("KubeRay leaves it running: the legacy deletionStrategy policy for this jobStatus is "
                    "DeleteWorkers or DeleteNone (handleLegacyDeletionPolicy, executeDeletionPolicy)")
    RULES_KEEP = ("KubeRay leaves it running: no deletionRule matching this job deletes the cluster "
                  "(handleDeletionRules)")
    NO_SHUTDOWN = ("KubeRay leaves it running: shutdownAfterJobFinishes is false and no deletionStrategy is set "
                   "(Reconcile, case Complete, Failed)")

    @property
    def kuberay_deletes(self) -> bool:
        return self in (ClusterFate.SHUTDOWN, ClusterFate.LEGACY_DELETES, ClusterFate.RULE_DELETES,
                        ClusterFate.CLUSTER_SELECTOR)


_LEGACY_OUTCOME: Final = {"SUCCEEDED": "on_success", "FAILED": "on_failure"}


def cluster_fate(job: JobInfo) -> ClusterFate | None:
    """What KubeRay does with the RayJob's cluster now that it stopped; None while KubeRay still runs the job (any
    state but Complete, Failed and ValidationFailed) or for a bare RayCluster (it never finishes).

    ``Reconcile``: ``validateRayJob`` runs before the state switch on every pass, so a ValidationFailed job never
    reaches the Complete/Failed case; that case skips a ``clusterSelector`` job, then, with the
    ``RayJobDeletionPolicy`` gate (on since v1.6; a strategy without it is ValidationFailed from v1.5) and a
    ``deletionStrategy``, hands the job to ``handleDeletionRules`` or ``handleLegacyDeletionPolicy`` and returns;
    only without one does ``shutdownAfterJobFinishes`` run ``handleShutdownAfterJobFinishes``."""
    if job.bare_cluster or job.job_deployment_status not in ("Complete", "Failed", "ValidationFailed"):
        return None
    cleanup = job.cleanup
    if cleanup.cluster_selector:
        return ClusterFate.CLUSTER_SELECTOR
    if job.job_deployment_status == "ValidationFailed":
        return ClusterFate.VALIDATION_FAILED
    if cleanup.strategy and cleanup.uses_rules:
        matched = _matching_rules(job)
        return ClusterFate.RULE_DELETES if any(r.policy in _DELETES_CLUSTER for r in matched) else ClusterFate.RULES_KEEP
    if cleanup.strategy:
        outcome = _LEGACY_OUTCOME.get(job.job_status)
        if outcome is None:
            return ClusterFate.LEGACY_JOB_STATUS
        policy = cleanup.on_success if outcome == "on_success" else cleanup.on_failure
        return ClusterFate.LEGACY_DELETES if policy in _DELETES_CLUSTER else ClusterFate.LEGACY_KEEPS
    return ClusterFate.SHUTDOWN if cleanup.shutdown else ClusterFate.NO_SHUTDOWN


def _matching_rules(job: JobInfo) -> tuple[DeletionRule, ...]:
    """isDeletionRuleMatched: a rule's jobStatus, else its jobDeploymentStatus, equals the job's."""
    return tuple(r for r in job.cleanup.rules
                 if (r.job_status == job.job_status if r.job_status is not None
                     else r.deployment_status == job.job_deployment_status))


def stopped_ns(job: JobInfo) -> int | None:
    """When KubeRay stopped the job: ``status.endTime`` (``updateRayJobStatus`` sets it on Complete and Failed),
    else the controller's ``rayqueue.io/kuberay-stopped-at`` (a ValidationFailed job has none); None: not stamped."""
    if job.end_ns is not None:
        return job.end_ns
    text = job.annotations.get(keys.KUBERAY_STOPPED_AT)
    if not text:
        return None
    try:
        return parse_go(text)
    except GoTimeError:
        return None


@dataclass(frozen=True, slots=True)
class Leftover:
    """A stopped queued RayJob whose RayCluster KubeRay leaves running for ever: the case, since when, and after
    what delay rayqueue deletes it (its ``ttlSecondsAfterFinished``; for deletionRules, after the last matching
    rule KubeRay still runs). The record every surface renders (the event, the QueueUnit, the log)."""

    job: str  # namespace/name
    fate: ClusterFate
    stopped_ns: int
    ttl_seconds: int

    @property
    def delete_ns(self) -> int:
        return self.stopped_ns + self.ttl_seconds * NS

    def due(self, now_ns: int) -> bool:
        return now_ns >= self.delete_ns

    def message(self) -> str:
        """``KubeRay leaves it running: ...; rayqueue deletes its RayCluster at ... (ttlSecondsAfterFinished 1s
        after it stopped at ...), as a queued job runs with shutdownAfterJobFinishes``."""
        return (f"{self.fate.value}; rayqueue deletes its RayCluster at {format_go(self.delete_ns)} "
                f"(ttlSecondsAfterFinished {self.ttl_seconds}s after it stopped at {format_go(self.stopped_ns)}), "
                "as a queued job runs with shutdownAfterJobFinishes")


def leftover(job: JobInfo, now_ns: int) -> Leftover | None:
    """The record of a stopped RayJob whose cluster rayqueue is to delete, None when KubeRay deletes it itself or
    still runs the job. A job with no stop time yet (ValidationFailed, not stamped) counts from ``now_ns``: the
    controller stamps it in the same pass, so a restart keeps the time."""
    fate = cluster_fate(job)
    if fate is None or fate.kuberay_deletes:
        return None
    ttl = job.cleanup.ttl_seconds
    if fate is ClusterFate.RULES_KEEP:
        ttl = max((ttl, *(r.ttl_seconds for r in _matching_rules(job))))
    since = stopped_ns(job)
    return Leftover(job.key, fate, since if since is not None else now_ns, ttl)
