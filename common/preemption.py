"""Cooperative preemption, pure: the grace of a quota node, the notice a reclaim victim is given, and what
to do with a noticed victim now (docs/preemption.md).

* **Grace.** ``rayqueue.io/preemption-grace`` in a quota node's ``attributes`` is a Go duration
  (``20s``, ``2m``, ``1h30m``), at most ``MAX_GRACE``; a node without it inherits its parent's; the root's
  default is 0, which is today's behaviour: a victim is suspended at once. The victim's own leaf decides
  (its owner chose how gently its jobs are treated), not the claimant's.
* **Notice.** A victim with grace > 0 gets the annotation ``rayqueue.io/preemption-notice`` on its RayJob and
  on every pod of it: a JSON object ``{"deadline", "job", "claimant", "claimantUID", "grace", "reason"}`` with
  the deadline in RFC 3339 (UTC, whole seconds, rounded *up*, so the job never gets less than its grace).
  The deadline lives only there: a restarted controller reads it back and neither suspends early nor
  forgets. A **shrink notice** (docs/elastic.md) also names ``workers`` (per group, the pods above an elastic job's
  floor that reclaim takes): the same notice on the job and on those pods only, and what comes at its deadline
  (or acknowledgement) is the shrink, not the suspension; the job keeps running (``Notice.shrinks``).
* **Now.** ``victim_step`` says what a noticed, still admitted victim needs, in this order: ``suspend`` when the
  job acknowledged (it set ``rayqueue.io/checkpointed`` on its RayJob: it may have stopped working and
  waits for the end it asked for) or the notice cannot be read (only the controller writes it; one that
  does not parse gives no deadline to keep, and waiting forever would hold the claimant's capacity);
  ``withdraw`` when its claimant no longer waits (deleted, admitted with capacity freed elsewhere, out of
  the queue: the notice is removed and the job runs on); ``suspend`` once the deadline has passed; else
  ``wait`` (the controller looks again at the deadline). A victim that finishes during
  its grace is released like any finished job and never requeued; that needs no step.
* **Min-runtime.** ``rayqueue.io/min-runtime`` in a quota node's ``attributes`` (a Go duration, inherited like
  the grace, default 0) protects a job of that node from reclaim until it has run that long since its admission
  (KAI-Scheduler's ``reclaimMinRuntime``). A job is re-admitted before it can be suspended again, so no job is
  suspended twice within its min-runtime, and a claimant admitted by a reclaim cannot be taken back by the
  victim's node within it: reclaim never ping-pongs. ``protection`` says why a job is spared (``Protected``).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from common import keys
from common.fair_share import short_duration
from common.gotime import format_duration, from_datetime, parse_duration, to_datetime

if TYPE_CHECKING:  # common.quota_tree validates the grace with grace_problem: no import cycle at run time
    from common.quota_tree import QuotaTree

__all__ = [
    "MAX_GRACE_SECONDS",
    "Notice",
    "NoticeError",
    "Protected",
    "Step",
    "grace_ns",
    "grace_problem",
    "issue",
    "min_runtime_ns",
    "min_runtime_problem",
    "protection",
    "read_notice",
    "victim_step",
    "whole_job",
]

NS: Final = 10**9
MAX_GRACE_SECONDS: Final = 24 * 3600  # a longer grace would hold a guaranteed claimant's capacity hostage
Step = Literal["wait", "suspend", "withdraw"]  # "suspend": the reclaim itself (for a shrink notice, the shrink)
Workers = tuple[tuple[str, tuple[str, ...]], ...]


class NoticeError(ValueError):
    """A preemption-notice annotation that is not one the controller writes."""


def _duration_problem(key: str, value: str, noun: str, why_bounded: str) -> str | None:
    """Why a duration attribute ``key`` is refused: not a Go duration, negative, or above the grace's bound."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        return f"invalid {key} {value!r}: expected a Go duration like 30s, 2m or 1h30m"
    if seconds < 0:
        return f"invalid {key} {value!r}: {noun} cannot be negative"
    if seconds > MAX_GRACE_SECONDS:
        return f"invalid {key} {value!r}: at most {format_duration(MAX_GRACE_SECONDS)} ({why_bounded})"
    return None


def _inherited_ns(tree: QuotaTree, quota: str, key: str) -> int:
    """A duration attribute of a quota node: its own, else the nearest ancestor's, else 0 (an unknown node has
    none). The tree was validated, so every value parses."""
    value = tree.inherited_attribute(quota, key)
    if value is None:
        return 0
    try:
        return max(0, round(parse_duration(value) * NS))
    except ValueError:  # pragma: no cover - refused when the tree is validated
        return 0


def grace_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/preemption-grace`` value is refused (None: it is a valid grace)."""
    return _duration_problem(keys.PREEMPTION_GRACE, value, "a grace period",
                             "the claimant waits that long for its guaranteed capacity")


def grace_ns(tree: QuotaTree, quota: str) -> int:
    """The grace of a quota node: its own attribute, else the nearest ancestor's, else 0."""
    return _inherited_ns(tree, quota, keys.PREEMPTION_GRACE)


def min_runtime_problem(value: str) -> str | None:
    """Why a ``rayqueue.io/min-runtime`` value is refused (None: valid)."""
    return _duration_problem(keys.MIN_RUNTIME, value, "a min-runtime",
                             "a guaranteed claimant waits that long for its capacity")


def min_runtime_ns(tree: QuotaTree, quota: str) -> int:
    """The min-runtime of a quota node: its own attribute, else the nearest ancestor's, else 0."""
    return _inherited_ns(tree, quota, keys.MIN_RUNTIME)


@dataclass(frozen=True, slots=True)
class Protected:
    """A job reclaim spares: it has run ``ran_ns`` of its node's min-runtime ``min_runtime_ns``."""

    job: str  # "namespace/name"
    quota: str
    ran_ns: int
    min_runtime_ns: int

    @property
    def until_ns(self) -> int:
        """How much longer it is protected."""
        return self.min_runtime_ns - self.ran_ns

    def words(self) -> str:
        return (f"{self.job} ({self.quota}) protected: ran {short_duration(self.ran_ns / NS)} of its "
                f"min-runtime {short_duration(self.min_runtime_ns / NS)}")


def protection(tree: QuotaTree, now_ns: int, job: str, quota: str, admitted_ns: int) -> Protected | None:
    """The protection of a job of ``quota`` admitted at ``admitted_ns`` (wall ns; 0: unknown, never protected)
    at ``now_ns``; None when it may be reclaimed."""
    limit = min_runtime_ns(tree, quota)
    if limit <= 0 or admitted_ns <= 0:
        return None
    ran = max(0, now_ns - admitted_ns)
    return Protected(job, quota, ran, limit) if ran < limit else None


def _rfc3339(ns: int) -> str:
    return to_datetime(ns).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_rfc3339(text: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise NoticeError(f"deadline {text!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        raise NoticeError(f"deadline {text!r} has no zone")
    return from_datetime(moment)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a reclaim victim is told: when it is suspended, for whom, why."""

    deadline_ns: int  # whole seconds
    job: str  # the victim RayJob, "namespace/name": what the job's acknowledgement patches
    claimant: str  # "namespace/name"
    claimant_uid: str
    grace: str  # the grace it was given, for people ("20s")
    reason: str
    workers: Workers = ()  # a shrink notice: (group, pod names) of the workers that go; () for the whole job

    @property
    def shrinks(self) -> bool:
        """A shrink notice: its workers go at the deadline, the job keeps running."""
        return bool(self.workers)

    @property
    def names(self) -> frozenset[str]:
        """The pods a shrink notice names."""
        return frozenset(name for _, names in self.workers for name in names)

    def covers(self, pod_name: str) -> bool:
        """The pod goes at this notice's deadline: every pod of the job for a whole-job notice, the named ones for
        a shrink notice."""
        return not self.workers or pod_name in self.names

    def text(self) -> str:
        """The annotation value: compact JSON, keys sorted (one stable text for one notice)."""
        fields: dict[str, object] = {"claimant": self.claimant, "claimantUID": self.claimant_uid,
                                     "deadline": self.deadline, "grace": self.grace, "job": self.job,
                                     "reason": self.reason}
        if self.workers:
            fields["workers"] = {group: list(names) for group, names in self.workers}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    def merged(self, later: Notice) -> Notice:
        """A second shrink of the same job during this notice's grace: one notice naming both sets of workers,
        with this one's claimant (whose capacity every pass reserves) and the later deadline (no worker gets
        less than its grace; the first claimant waits at most one grace more, as with a second claimant's
        victim, docs/preemption.md)."""
        groups: dict[str, list[str]] = {group: list(names) for group, names in self.workers}
        for group, names in later.workers:
            kept = groups.setdefault(group, [])
            kept.extend(n for n in names if n not in kept)
        latest = max(self, later, key=lambda n: n.deadline_ns)
        return Notice(latest.deadline_ns, self.job, self.claimant, self.claimant_uid, latest.grace, self.reason,
                      _sorted({group: tuple(names) for group, names in groups.items()}))

    @property
    def deadline(self) -> str:
        return _rfc3339(self.deadline_ns)

    @classmethod
    def parse(cls, text: str) -> Notice:
        try:
            obj = json.loads(text)
        except ValueError:
            raise NoticeError(f"{keys.PREEMPTION_NOTICE} is not JSON: {text[:200]!r}") from None
        if not isinstance(obj, Mapping):
            raise NoticeError(f"{keys.PREEMPTION_NOTICE} is not a JSON object: {text[:200]!r}")
        fields = {k: obj.get(k) for k in ("deadline", "job", "claimant", "claimantUID", "grace", "reason")}
        missing = sorted(k for k, v in fields.items() if not isinstance(v, str))
        if missing:
            raise NoticeError(f"{keys.PREEMPTION_NOTICE} lacks string fields {', '.join(missing)}: {text[:200]!r}")
        return cls(_parse_rfc3339(str(fields["deadline"])), str(fields["job"]), str(fields["claimant"]),
                   str(fields["claimantUID"]), str(fields["grace"]), str(fields["reason"]),
                   _workers(obj.get("workers"), text))


def _workers(value: object, text: str) -> Workers:
    """A shrink notice's ``workers``: an object of group -> non-empty list of pod names (absent: a whole-job one)."""
    if value is None:
        return ()
    if (not isinstance(value, Mapping) or not value
            or not all(isinstance(g, str) and isinstance(ns, list) and ns and all(isinstance(n, str) for n in ns)
                       for g, ns in value.items())):
        raise NoticeError(f"{keys.PREEMPTION_NOTICE} workers is not an object of group -> pod names: {text[:200]!r}")
    return _sorted({str(group): tuple(str(n) for n in names) for group, names in value.items()})


def _sorted(groups: Mapping[str, tuple[str, ...]]) -> Workers:
    """Workers by group name, as the annotation's sorted keys hold them (one value for one notice)."""
    return tuple((group, groups[group]) for group in sorted(groups))


@functools.lru_cache(maxsize=1024)
def read_notice(text: str) -> Notice | None:
    """The notice an annotation holds, None when it cannot be read (read on every pass for every claim it may
    cover: cached by its text)."""
    try:
        return Notice.parse(text)
    except NoticeError:
        return None


def whole_job(text: str) -> bool:
    """The notice ends the whole job (a whole-job notice, or one that cannot be read: that job is suspended at
    once); False for a shrink notice, whose job keeps running."""
    notice = read_notice(text)
    return notice is None or not notice.shrinks


def issue(now_ns: int, grace: int, job: str, claimant: str, claimant_uid: str, reason: str,
          workers: Workers = ()) -> Notice:
    """The notice given to RayJob ``job`` at ``now_ns`` with ``grace`` ns: the deadline rounded up to a whole
    second; ``workers`` (group, pod names) for a shrink notice."""
    deadline = -(-(now_ns + grace) // NS) * NS  # integer ceiling: a float loses nanoseconds at 1.7e18
    return Notice(deadline, job, claimant, claimant_uid, format_duration(grace / NS), reason, _sorted(dict(workers)))


def victim_step(notice: Notice | None, now_ns: int, *, acknowledged: bool, claimant_waiting: bool) -> Step:
    """What a noticed victim that is still admitted needs now (see the module docstring). ``notice`` None:
    the annotation could not be read."""
    if notice is None or acknowledged:
        return "suspend"
    if not claimant_waiting:
        return "withdraw"
    if now_ns >= notice.deadline_ns:
        return "suspend"
    return "wait"
