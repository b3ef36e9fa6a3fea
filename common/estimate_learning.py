"""What a leaf's history says about the future, kept in its Queue's status: actual over declared runtimes, and
the arrivals of jobs that would pass a waiting one. Pure; the status form is bounded and restart-safe.

``status.estimateHistory`` of a leaf Queue::

    ratiosPermille: [1000, 870, 1240]   # actual / declared runtime of its last RATIO_SIZE finished jobs that
                                        # declared one, in thousandths (1000: exactly as declared)
    since: "2026-12-07T10:00:00Z"       # arrivals observed since (the controller's first look at the leaf)
    arrivals:                           # its last ARRIVAL_SIZE jobs that passed a waiting one
    - {at: "2026-12-07T10:04:00Z", priority: 10, request: {cpu: "4"}, seconds: 600}
    - {at: "...", priority: 0, request: {...}, guaranteed: true}

A job *passed* when it started while a job submitted before it was still waiting (``passed``): one of higher
priority, a guaranteed claimant that reclaims (its victim requeues at its old place and waits), or one that
fits where an earlier one does not (a smaller job, another leaf). Those are the arrivals that move a waiting
job's start; the rest join the tail and change nobody's, so they are not kept. A row is added when the job
starts, with its arrival time; ``seconds`` is its declared runtime (absent: none, the sampler then draws one
from the leaf's runtime history), ``guaranteed`` whether it was within its leaf's min when it started.

The undeclared runtimes themselves are the leaf's ``status.runtimeHistory`` (extender/estimates.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from common.gotime import GoTimeError, format_rfc3339, parse_go
from common.resources import Resources

__all__ = ["ARRIVAL_SIZE", "MIN_ARRIVAL_SECONDS", "MIN_SAMPLES", "RATIO_SIZE", "Arrival", "Learned",
           "learned_from_status", "learned_status", "passed"]

RATIO_SIZE: Final = 50
ARRIVAL_SIZE: Final = 40
MIN_SAMPLES: Final = 5  # fewer runtimes than this: too little history for a range
MIN_ARRIVAL_SECONDS: Final = 1800.0  # arrivals observed for less than this: their rate is not known yet
NS: Final = 10**9


@dataclass(frozen=True, slots=True)
class Arrival:
    """A job that arrived and could pass a waiting one: when, its priority, request, declared runtime."""

    at_ns: int
    priority: int
    request: Resources
    seconds: float | None = None
    guaranteed: bool = False


@dataclass(frozen=True, slots=True)
class Learned:
    """One leaf's history, newest last, each list bounded."""

    ratios: tuple[float, ...] = ()
    arrivals: tuple[Arrival, ...] = ()
    since_ns: int | None = None  # arrivals observed since (None: not yet)

    def with_ratio(self, actual_s: float, declared_s: float) -> Learned:
        """One more finished job that declared its runtime (the oldest dropped beyond RATIO_SIZE)."""
        if declared_s <= 0 or actual_s < 0:
            return self
        ratio = round(actual_s / declared_s, 3)
        return replace(self, ratios=(*self.ratios, ratio)[-RATIO_SIZE:])

    def with_arrival(self, arrival: Arrival) -> Learned:
        """One more job that passed (kept in arrival order, the oldest dropped beyond ARRIVAL_SIZE)."""
        rows = sorted((*self.arrivals, arrival), key=lambda a: a.at_ns)
        return replace(self, arrivals=tuple(rows[-ARRIVAL_SIZE:]))

    def observing(self, now_ns: int) -> Learned:
        """Arrivals observed from now on, if not already."""
        return self if self.since_ns is not None else replace(self, since_ns=now_ns)

    def observed_s(self, now_ns: int) -> float:
        """How long the kept arrivals cover: since the oldest kept one once the list is full, else ``since``."""
        start = self.arrivals[0].at_ns if len(self.arrivals) >= ARRIVAL_SIZE else self.since_ns
        return 0.0 if start is None else max(0.0, (now_ns - start) / NS)

    def rate(self, now_ns: int) -> float | None:
        """Passing arrivals per second, or None while observed for less than MIN_ARRIVAL_SECONDS."""
        span = self.observed_s(now_ns)
        if span < MIN_ARRIVAL_SECONDS:
            return None
        return len(self.arrivals) / span


def passed(enqueue_ns: int, waiting_enqueues: Iterable[int]) -> bool:
    """Did a job submitted at ``enqueue_ns`` that starts now pass a waiting one (submitted before it)?"""
    return any(e < enqueue_ns for e in waiting_enqueues)


def learned_status(learned: Learned) -> dict[str, Any]:
    """The Queue's ``status.estimateHistory``."""
    out: dict[str, Any] = {"ratiosPermille": [round(r * 1000) for r in learned.ratios]}
    if learned.since_ns is not None:
        out["since"] = format_rfc3339(learned.since_ns)
    rows = []
    for a in learned.arrivals:
        row: dict[str, Any] = {"at": format_rfc3339(a.at_ns), "priority": a.priority, "request": a.request.to_api()}
        if a.seconds is not None:
            row["seconds"] = round(a.seconds)
        if a.guaranteed:
            row["guaranteed"] = True
        rows.append(row)
    out["arrivals"] = rows
    return out


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def learned_from_status(status: Mapping[str, Any] | None) -> Learned:
    """The leaf's Learned from its Queue status; malformed rows are skipped, a malformed whole is empty."""
    found = (status or {}).get("estimateHistory")
    if not isinstance(found, Mapping):
        return Learned()
    ratios = tuple(v / 1000 for v in (_int(r) for r in found.get("ratiosPermille") or []) if v is not None and v >= 0)
    since = None
    if isinstance(found.get("since"), str):
        try:
            since = parse_go(str(found["since"]))
        except GoTimeError:
            since = None
    arrivals = []
    rows = found.get("arrivals")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or not isinstance(row.get("at"), str) or _int(row.get("priority")) is None:
            continue
        try:
            at = parse_go(str(row["at"]))
            request = Resources.parse(row.get("request") if isinstance(row.get("request"), Mapping) else {})
        except (GoTimeError, ValueError):
            continue
        seconds = _int(row.get("seconds"))
        arrivals.append(Arrival(at, int(row["priority"]), request, float(seconds) if seconds is not None else None,
                                row.get("guaranteed") is True))
    return Learned(ratios[-RATIO_SIZE:], tuple(arrivals[-ARRIVAL_SIZE:]), since)
