"""Start-time ranges: the P50 and the P90 bound of a waiting job's start, from replays of sampled futures.

The deterministic replay (``common.start_times.replay``) assumes declared runtimes hold and nothing arrives.
Here the same replay is run on ``SAMPLES`` sampled futures, each drawn from what the leaves' history says
(``common.estimate_learning``, never invented):

* every job's runtime: a declared one (or ``activeDeadlineSeconds``, capped at it) times an actual/declared
  ratio drawn from its leaf's last ratios (the whole tree's when the leaf has fewer than ``MIN_SAMPLES``); an
  undeclared one drawn from the leaf's runtime history. A running job draws among the values that have not
  ended yet (it is still running), the whole tree's too when fewer than ``MIN_SAMPLES`` of its leaf's have not
  (a leaf's last 20 runtimes say little about how long a job that outlived most of them goes on: drawing from
  them alone ended such jobs too early, and waits behind them with them); when none has, its runtime stays as
  the deterministic replay has it;
* the jobs that would pass a waiting one (higher priority, or guaranteed claimants that reclaim): a Poisson
  arrival process per leaf at its learned rate, each arrival a copy of one of its recorded ones (request,
  priority, declared runtime times a drawn ratio, or a drawn runtime), at most ``MAX_ARRIVALS`` per future.

Per job, the P50 and P90 of its start over the futures (a future in which it gets no time counts as later
than any time). With the same futures a job added now starts at its leaf's sampled forecasts, so the
forecasts' P50 and P90 (``quantile_forecast``) give a create warning the range its QueueUnit then shows.
Every draw is seeded by the job's uid and the future's number, so a refresh or one more job changes no
other job's draws. With ratios all 1 and no arrivals, every future is the deterministic replay: the range
is that start, exactly. With too little history (fewer than ``MIN_SAMPLES`` ratios or runtimes where they
are needed, or arrivals observed for less than ``MIN_ARRIVAL_SECONDS``) no future is sampled: the range
is the deterministic start as a lower bound only, and its note says what is missing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from common.estimate_learning import MIN_ARRIVAL_SECONDS, MIN_SAMPLES, Learned
from common.gotime import format_duration
from common.ledger import Ledger
from common.queueing import QueueItem, QueuePolicy
from common.resources import Resources
from common.start_times import (
    DRAIN_SECONDS,
    NS,
    Band,
    Estimate,
    Forecast,
    Opening,
    Replay,
    Running,
    Runtime,
    Waiting,
    replay,
)

__all__ = [
    "MAX_ARRIVALS",
    "P50",
    "P90",
    "SAMPLES",
    "Range",
    "RangedEstimate",
    "RangedForecast",
    "Ranges",
    "published_bound",
    "quantile",
    "quantile_forecast",
    "ranged_replay",
    "sample_ranges",
]

# Sampled futures per range. The P90 of n futures is the ceil(0.9 n)-th earliest; over futures drawn from the true
# distribution, the k-th of n covers k/(n+1) of outcomes on average: 8/9 = 88.9 % for the 8th of 8, 15/17 = 88.2 %
# for the 15th of 16, so halving them keeps the expected coverage (inside the 85-95 % goal) and halves the cost;
# what grows is the spread of a single job's bound (bench/estimate_calibration.py measures the result).
SAMPLES: Final = 8
MAX_ARRIVALS: Final = 64
P50: Final = 0.5
P90: Final = 0.9
MAX_RANGE_OPENINGS: Final = 16  # per band of a quantile forecast
HORIZON_FACTOR: Final = 2.0  # arrivals are sampled up to this many times the longest deterministic wait
# A sampled future replays releases within 3 % of the elapsed time together (the deterministic replay: 1 %):
# its starts are later by at most that, never earlier, and a future costs a third of the passes.
SAMPLE_RESOLUTION: Final = 0.03
MIN_HORIZON_SECONDS: Final = 300.0


@dataclass(frozen=True, slots=True)
class Range:
    """A waiting job's P50 start and P90 bound (None: no bound, the P50 is a lower bound only). Published in
    whole seconds, the P90 rounded up (``published_bound``)."""

    uid: str
    p50_ns: int | None
    p90_ns: int | None
    note: str  # what the range assumes, or why the time is a lower bound only

    @property
    def lower_bound_only(self) -> bool:
        return self.p50_ns is not None and self.p90_ns is None


@dataclass(frozen=True, slots=True)
class RangedEstimate(Estimate):
    """An Estimate whose ``start_ns`` is the P50, with the P90 bound and what the range assumes."""

    latest_ns: int | None = None  # None: the start is a lower bound only (or unknown)
    assumes: str = ""


@dataclass(frozen=True, slots=True)
class RangedForecast(Forecast):
    """A leaf's P50 Forecast, with its P90 one (None: the P50 one is a lower bound only)."""

    latest: Forecast | None = None
    assumes: str = ""


NOTHING_ELSE: Final = "; if nothing else changes"


@dataclass(frozen=True, slots=True)
class Ranges:
    base: Replay  # the deterministic replay: its messages, and the lower bounds
    ranges: dict[str, Range]
    p50: dict[str, Forecast]  # the P50 forecast of each leaf
    latest: dict[str, Forecast]  # the P90 forecast of each leaf; empty when it is a lower bound only
    note: str  # what every range assumes (or why there is none)

    @property
    def estimates(self) -> dict[str, RangedEstimate]:
        """Every waiting job's Estimate at its P50, with its P90 and a message that says what both assume."""
        out = {}
        for uid, e in self.base.estimates.items():
            r = self.ranges.get(uid)
            if r is None or e.start_ns is None:
                out[uid] = RangedEstimate(e.uid, e.key, e.quota, e.start_ns, e.message, e.reason, e.waits_for)
                continue
            message = e.message.removesuffix(NOTHING_ELSE) if r.p90_ns is not None else e.message
            out[uid] = RangedEstimate(e.uid, e.key, e.quota, r.p50_ns, f"{message}; {r.note}", e.reason,
                                      e.waits_for, r.p90_ns, r.note)
        return out

    @property
    def forecasts(self) -> dict[str, RangedForecast]:
        """Every leaf's P50 forecast with its P90 one."""
        return {leaf: RangedForecast(f.leaf, f.openings, f.note, f.bands, self.latest.get(leaf), self.note)
                for leaf, f in self.p50.items()}


def published_bound(ns: int) -> int:
    """A P90 bound as it is published: whole seconds, rounded up (a bound is never told earlier)."""
    return -(-ns // NS) * NS


def quantile(values: Sequence[int | None], q: float) -> int | None:
    """The ``q`` quantile (the ceil(q n)-th smallest) of ``values``; None counts as later than any time."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))] if ordered else None


def _pool(learned: Mapping[str, Learned]) -> tuple[float, ...]:
    return tuple(r for leaf in sorted(learned) for r in learned[leaf].ratios)


def _missing(running: Sequence[Running], waiting: Sequence[Waiting], learned: Mapping[str, Learned],
             runtimes: Mapping[str, Sequence[float]], now_ns: int) -> list[str]:
    """What history a range needs and does not have, for the note."""
    pool = _pool(learned)
    out = []
    jobs = [(r.claim.quota, r.runtime) for r in running] + [(w.item.quota, w.runtime) for w in waiting]
    if any(rt.source in ("declared", "deadline") for _, rt in jobs) and len(pool) < MIN_SAMPLES:
        out.append(f"{len(pool)} of the {MIN_SAMPLES} actual/declared runtimes of finished jobs it needs")
    short = sorted({leaf for leaf, rt in jobs if rt.source == "history" and len(runtimes.get(leaf, ())) < MIN_SAMPLES})
    if short:
        out.append(f"fewer than {MIN_SAMPLES} runtimes in {', '.join(short[:3])}" + (" and more" if len(short) > 3 else ""))
    unseen = sorted(leaf for leaf, found in learned.items() if found.rate(now_ns) is None)
    if unseen or not learned:
        out.append(f"arrivals observed for less than {format_duration(MIN_ARRIVAL_SECONDS)}"
                   + (f" in {', '.join(unseen[:3])}" + (" and more" if len(unseen) > 3 else "") if unseen else ""))
    return out


class _Draws:
    """The futures' draws, each seeded by (seed, future, uid): stable across refreshes and new jobs."""

    def __init__(self, learned: Mapping[str, Learned], runtimes: Mapping[str, Sequence[float]], seed: int) -> None:
        self.learned, self.runtimes, self.seed = learned, runtimes, seed
        self.pool = _pool(learned)

    def ratios(self, leaf: str) -> tuple[float, ...]:
        own = self.learned[leaf].ratios if leaf in self.learned else ()
        return own if len(own) >= MIN_SAMPLES else self.pool

    def runtime(self, k: int, uid: str, leaf: str, runtime: Runtime, elapsed_s: float) -> Runtime:
        """The runtime of one job in future ``k`` (it already ran ``elapsed_s``: only values beyond that)."""
        if runtime.seconds is None:
            return runtime
        if runtime.source in ("declared", "deadline"):
            cap = 1.0 if runtime.source == "deadline" else math.inf
            values = [runtime.seconds * min(cap, r) for r in self.ratios(leaf)]
        elif runtime.source == "history":
            values = list(self.runtimes.get(leaf, ()))
        else:  # pragma: no cover - "unknown" has no seconds
            return runtime
        values = [v for v in values if v > elapsed_s]
        if elapsed_s > 0 and len(values) < MIN_SAMPLES:  # a running job in its leaf's tail: the tree's tail too
            wider = self._wider(runtime, leaf, elapsed_s)
            values = wider if len(wider) > len(values) else values
        if not values:
            return runtime  # past everything history has seen: as the deterministic replay has it
        rng = random.Random(f"{self.seed}:{k}:{uid}")
        return replace(runtime, seconds=rng.choice(values))

    def _wider(self, runtime: Runtime, leaf: str, elapsed_s: float) -> list[float]:
        """The values beyond ``elapsed_s`` over the whole tree's history (ratios, or runtimes without a
        declaration): a leaf's last few cannot say how long a job that outlived most of them goes on."""
        assert runtime.seconds is not None
        if runtime.source in ("declared", "deadline"):
            cap = 1.0 if runtime.source == "deadline" else math.inf
            pooled = [runtime.seconds * min(cap, r) for r in self.pool]
        else:
            pooled = [v for other in sorted(self.runtimes) for v in self.runtimes[other]]
        return [v for v in pooled if v > elapsed_s]

    def arrivals(self, k: int, now_ns: int, horizon_s: float) -> list[Waiting]:
        """Future ``k``'s arrivals up to ``horizon_s`` from now (the first MAX_ARRIVALS of all leaves), per
        leaf at its learned rate, copies of its recorded ones."""
        out: list[tuple[float, str, Waiting]] = []
        for leaf in sorted(self.learned):
            found = self.learned[leaf]
            rate = found.rate(now_ns)
            if not rate or not found.arrivals:
                continue
            rng = random.Random(f"{self.seed}:{k}:arrivals:{leaf}")
            t = 0.0
            for n in range(MAX_ARRIVALS):
                t += rng.expovariate(rate)
                if t > horizon_s:
                    break
                row = rng.choice(found.arrivals)
                if row.seconds is not None:
                    ratios = self.ratios(leaf)
                    seconds: float | None = row.seconds * (rng.choice(ratios) if ratios else 1.0)
                else:
                    history = self.runtimes.get(leaf, ())
                    seconds = rng.choice(history) if history else None
                if seconds is None:
                    continue
                uid = f"sampled:{k}:{leaf}:{n}"
                item = QueueItem(uid=uid, namespace=leaf.rsplit("/", 1)[-1], name=uid, quota=leaf,
                                 priority=row.priority, enqueue_ns=now_ns + round(t * NS), request=row.request)
                out.append((t, uid, Waiting(item, Runtime(seconds, "declared", "sampled arrival"))))
        return [w for _, _, w in sorted(out, key=lambda x: (x[0], x[1]))[:MAX_ARRIVALS]]


def sample_ranges(
    ledger: Ledger,
    running: Sequence[Running],
    waiting: Sequence[Waiting],
    now_ns: int,
    *,
    learned: Mapping[str, Learned],
    runtimes: Mapping[str, Sequence[float]],
    policies: Mapping[str, QueuePolicy] | None = None,
    samples: int = SAMPLES,
    seed: int = 0,
    forecast: bool = True,
    base: Replay | None = None,
    resolution: float = 0.01,
) -> Ranges:
    """The deterministic replay (``base`` when given), and a Range for every waiting job (see the module
    docstring); ``resolution`` is the replay's (releases that close together are replayed together)."""
    if base is None:
        base = replay(ledger, running, waiting, now_ns, policies=policies, forecast=forecast, resolution=resolution)
    missing = _missing(running, waiting, learned, runtimes, now_ns)
    if missing:
        note = "a lower bound only: too little history for a range (" + "; ".join(missing) + ")"
        ranges = {uid: Range(uid, e.start_ns, None, note) for uid, e in base.estimates.items()}
        return Ranges(base, ranges, dict(base.forecasts), {}, note)
    draws = _Draws(learned, runtimes, seed)
    waits = [(e.start_ns - now_ns) / NS for e in base.estimates.values() if e.start_ns is not None]
    horizon_s = HORIZON_FACTOR * max([MIN_HORIZON_SECONDS, *waits])
    starts: dict[str, list[int | None]] = {uid: [] for uid in base.estimates}
    futures: list[dict[str, Forecast]] = []
    for k in range(samples):
        sim_running = [replace(r, runtime=draws.runtime(k, r.claim.uid, r.claim.quota, r.runtime,
                                                      max(0.0, (now_ns - r.started_ns) / NS)))
                       if not r.releasing else r for r in running]
        sim_waiting = [replace(w, runtime=draws.runtime(k, w.item.uid, w.item.quota, w.runtime, 0.0)) for w in waiting]
        coming = draws.arrivals(k, now_ns, horizon_s)
        if not coming and sim_running == list(running) and sim_waiting == list(waiting):
            out = base  # this future is the deterministic one
        else:
            out = replay(ledger, sim_running, sim_waiting, now_ns, policies=policies, forecast=forecast,
                         resolution=max(resolution, SAMPLE_RESOLUTION), arrivals=coming, messages=False)
        for uid, e in out.estimates.items():
            starts[uid].append(e.start_ns)
        futures.append(out.forecasts)
    note = _assumes(learned, runtimes, samples, now_ns)
    ranges = {}
    for uid, values in starts.items():
        p50, p90 = quantile(values, P50), quantile(values, P90)
        p50 = None if p50 is None else max(now_ns, p50)
        p90 = None if p90 is None or p50 is None else max(p50, p90)
        ranges[uid] = Range(uid, p50, p90, note)
    forecasts, latest = {}, {}
    for leaf, det in base.forecasts.items():
        sampled = [f[leaf] for f in futures if leaf in f]
        forecasts[leaf] = quantile_forecast(det, sampled, P50, now_ns)
        latest[leaf] = quantile_forecast(det, sampled, P90, now_ns)
    return Ranges(base, ranges, forecasts, latest, note)


def ranged_replay(ledger: Ledger, running: Sequence[Running], waiting: Sequence[Waiting], now_ns: int, *,
                  learned: Mapping[str, Learned], runtimes: Mapping[str, Sequence[float]],
                  policies: Mapping[str, QueuePolicy] | None = None) -> Replay:
    """What the extender publishes (in its forecast worker or a thread, the same call): the deterministic replay and
    the sampled futures, as a Replay whose estimates are RangedEstimates (P50, P90) and forecasts RangedForecasts."""
    found = sample_ranges(ledger, running, waiting, now_ns, learned=learned, runtimes=runtimes, policies=policies)
    estimates: dict[str, Estimate] = dict(found.estimates)
    forecasts: dict[str, Forecast] = dict(found.forecasts)
    return Replay(estimates, forecasts)


def _assumes(learned: Mapping[str, Learned], runtimes: Mapping[str, Sequence[float]], samples: int,
             now_ns: int) -> str:
    pool = _pool(learned)
    spread = f"actual/declared {min(pool):.2f}-{max(pool):.2f}x" if pool else "no declared runtimes seen"
    per_hour = sum((found.rate(now_ns) or 0.0) for found in learned.values()) * 3600
    kept = sum(len(v) for v in runtimes.values())
    return (f"P50 and P90 over {samples} sampled futures: runtimes as the leaves' history ({spread} over "
            f"{len(pool)} jobs, {kept} runtimes without a declaration), {per_hour:.1f} jobs an hour that pass "
            "or reclaim arriving as before")


def _start(openings: Sequence[Opening], leaf: str, request: Resources, now_ns: int, preemptible: bool) -> int | None:
    return Forecast(leaf, tuple(openings), "").start(request, now_ns, preemptible=preemptible)


def _quantile_openings(leaf: str, sampled: Sequence[Sequence[Opening]], q: float, now_ns: int) -> tuple[Opening, ...]:
    """Openings whose first fit for a request is the ``q`` quantile of its first fits over the futures:
    exact for requests equal to a sampled opening (and for one resource), never earlier otherwise (a
    request is probed at the smallest opening that covers it)."""
    probes: list[tuple[Resources, bool]] = []
    for openings in sampled:
        for o in openings:
            probes.append((o.free, True))
            if o.guaranteed:
                probes.append((o.guaranteed, False))
    out: list[Opening] = []
    seen: set[tuple[tuple[tuple[str, int], ...], bool]] = set()
    for request, by_free in probes:
        key = (tuple(sorted(request.items())), by_free)
        if key in seen:
            continue
        seen.add(key)
        at = quantile([_start(o, leaf, request, now_ns, by_free) for o in sampled], q)
        if at is None:
            continue
        if by_free:
            out.append(Opening(at, request))
        else:  # usable by reclaim only: a free of zero for what it asks (Forecast.start adds the drain back)
            out.append(Opening(max(now_ns, at - round(DRAIN_SECONDS * NS)), Resources({r: 0 for r in request}),
                               None, request))
    out.sort(key=lambda o: o.at_ns)
    return tuple(out[:MAX_RANGE_OPENINGS])


def quantile_forecast(base: Forecast, sampled: Sequence[Forecast], q: float, now_ns: int) -> Forecast:
    """The leaf's forecast at quantile ``q`` over the sampled futures (``base``, the deterministic one, when
    every future agrees with it or none was sampled)."""
    if not sampled or all(f == base for f in sampled):
        return base
    tail = _quantile_openings(base.leaf, [f.openings for f in sampled], q, now_ns)
    bands = []
    for i, band in enumerate(base.bands):
        per = [f.bands[i].openings for f in sampled if i < len(f.bands) and f.bands[i].above == band.above]
        bands.append(Band(band.above, _quantile_openings(base.leaf, per, q, now_ns)))
    return Forecast(base.leaf, tail, base.note, tuple(bands))
