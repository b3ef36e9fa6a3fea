"""Calibration of the start-time range (common/estimate_range.py): is the actual start at or before the P90
bound as often as it says, and is the P50 better than a naive guess?

A trace (bench/estimate.py's: Poisson arrivals at 95 % load, 2-16 CPU, lognormal runtimes) is played once
through the pure core; at every job's submission, from what the cluster knows then (declared runtimes, the
leaves' runtime history, actual/declared ratios and passing arrivals learned as the controller learns them,
common/estimate_learning.py), ``sample_ranges`` gives its P50 and P90. Estimating changes nothing, so the
same play gives the actual start. Per scenario (runtimes declared exactly, within ±20 %, by half the jobs,
by none; each with nothing that passes: one priority and no mins, and with 20 % higher-priority jobs and
mins of 16 CPU per leaf, so guaranteed claimants reclaim) and per job size: the fraction of actual starts
at or before the P90 (goal 85-95 %), the median of P90 wait / actual wait (goal <= 3), the P50's median
error |P50 - actual| / actual wait against the baseline's in the same run (the job's position in its leaf
over the leaf's admissions in the last hour; goal at most half), and how many jobs got a lower bound only.
Exactness: a batch (every job submitted at once, declared exactly: nothing arrives later) in which the P50
and P90 must equal the actual start. Simulated time: the figures are not timings.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any, Final

from bench.estimate import LEAVES, NS, T0, Cluster, Job
from common import keys
from common.estimate_learning import Arrival, Learned, passed
from common.estimate_range import published_bound, sample_ranges
from common.quota_tree import QuotaTree

RUNTIMES: Final = ("exact", "noisy", "half", "none")
PASSERS_ONLY = False
SIZES: Final = {2: "small (2-4 cpu)", 4: "small (2-4 cpu)", 8: "medium (8 cpu)", 16: "large (16 cpu)"}


def tree(mins: int) -> QuotaTree:
    """root 64 cpu -> a, b (max 64) -> two leaves each (min ``mins``, max 48)."""
    def node(name: str, lo: int, hi: int, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "min": {"cpu": str(lo)}, "max": {"cpu": str(hi)}}
        if children:
            out["children"] = children
        else:
            out["namespaces"] = [name]
        return out

    root = node("root", 64, 64, [node("a", 2 * mins, 64, [node("a1", mins, 48), node("a2", mins, 48)]),
                                 node("b", 2 * mins, 64, [node("b1", mins, 48), node("b2", mins, 48)])])
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


def trace(n: int, seed: int, runtimes: str, passers: bool, load: float = 0.95, batch: bool = False) -> list[Job]:
    rng = random.Random(f"{seed}:{runtimes}:{passers}")
    mean_cpu, mean_rt = 7.5, 600 * math.exp(0.6**2 / 2)
    rate = load * 64 / (mean_cpu * mean_rt)
    t = T0 - n * 1000 if batch else T0  # a batch: submitted a microsecond apart, all before T0
    jobs = []
    for i in range(n):
        t += 1000 if batch else round(rng.expovariate(rate) * NS)
        runtime = 600 * math.exp(rng.gauss(0, 0.6))
        declared: float | None
        if runtimes == "exact":
            declared = runtime
        elif runtimes == "noisy":
            declared = runtime * rng.uniform(0.8, 1.2)
        elif runtimes == "half":
            declared = runtime * rng.uniform(0.8, 1.2) if rng.random() < 0.5 else None
        else:
            declared = None
        priority = 10 if passers and rng.random() < 0.2 else 0
        jobs.append(Job(f"j{i:05d}", rng.choice(LEAVES), rng.choice((2, 4, 8, 16)), priority, t, runtime, declared))
    return jobs


def _baseline(cluster: Cluster, job: Job, t: int, admissions: dict[str, list[int]]) -> int | None:
    """Now + the job's position in its leaf / the leaf's admissions per second over the last hour."""
    order = [i.uid for i in (*cluster.queues.active(job.leaf), *cluster.queues.backoff(job.leaf))]
    position = order.index(job.uid) + 1 if job.uid in order else len(order) + 1
    recent = [a for a in admissions[job.leaf] if a > t - 3600 * NS]
    if not recent:
        return None
    return t + round(position / (len(recent) / 3600) * NS)


class _Learning(Cluster):
    """The cluster, calling ``after`` at the end of every round of passes (as the controller sees each start)."""

    def __init__(self, tree: QuotaTree, jobs: Sequence[Job], after: Callable[[], None]) -> None:
        super().__init__(tree, jobs)
        self.after = after

    def admit_passes(self, t: int) -> None:
        super().admit_passes(t)
        self.after()


def play(jobs: Sequence[Job], mins: int, every: int = 1) -> list[dict[str, Any]]:
    """One play; per job asked (every ``every``-th one that waits at its submission): its size, actual wait,
    P50, P90, baseline."""
    cluster = _Learning(tree(mins), jobs, lambda: learn())
    learned = {leaf: Learned(since_ns=T0) for leaf in LEAVES}
    admissions: dict[str, list[int]] = {leaf: [] for leaf in LEAVES}
    seen_finished = 0
    asked: list[tuple[Job, int, int | None, int | None, int | None]] = []
    arrivals: dict[int, list[Job]] = {}
    for j in jobs:
        arrivals.setdefault(j.arrival_ns, []).append(j)

    def learn() -> None:
        nonlocal seen_finished
        for job, seconds in cluster.finished[seen_finished:]:
            if job.declared_s:
                learned[job.leaf] = learned[job.leaf].with_ratio(seconds, job.declared_s)
        seen_finished = len(cluster.finished)
        fresh = [uid for uid in cluster.started if uid not in counted]
        if not fresh:
            return
        waiting = [w.enqueue_ns for leaf in LEAVES for w in (*cluster.queues.active(leaf), *cluster.queues.backoff(leaf))]
        for uid in fresh:
            counted.add(uid)
            job = cluster.jobs[uid]
            admissions[job.leaf].append(cluster.started[uid])
            if PASSERS_ONLY and passed(job.arrival_ns, waiting):
                learned[job.leaf] = learned[job.leaf].with_arrival(
                    Arrival(job.arrival_ns, job.priority, job.item.request, job.declared_s))

    counted: set[str] = set()
    for t in sorted(arrivals):
        cluster.release_until(t - 1)
        for j in arrivals[t]:
            if not PASSERS_ONLY:
                learned[j.leaf] = learned[j.leaf].with_arrival(Arrival(t, j.priority, j.item.request, j.declared_s))
            cluster.queues.upsert(j.item)
        cluster.admit_passes(t)
        fresh = [j for j in arrivals[t] if j.uid not in cluster.started and int(j.uid[1:]) % every == 0]
        if not fresh:
            continue
        running, waiting = cluster.view(t)
        out = sample_ranges(cluster.ledger, running, waiting, t, learned=learned, runtimes=cluster.history,
                            forecast=False)
        for j in fresh:
            r = out.ranges[j.uid]
            asked.append((j, t, r.p50_ns, r.p90_ns, _baseline(cluster, j, t, admissions)))
    cluster.release_until(2**62)
    rows = []
    for j, t, p50, p90, base in asked:
        actual = cluster.started[j.uid]
        rows.append({"size": SIZES[j.cpu], "wait": actual - t, "actual": actual, "p50": p50, "p90": p90,
                     "baseline": base, "at": t})
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ranged = [r for r in rows if r["p90"] is not None and r["wait"] > 0]
    within = [r["actual"] <= published_bound(r["p90"]) for r in ranged]  # as the QueueUnit shows it
    ratio = [(r["p90"] - r["at"]) / r["wait"] for r in ranged]
    err = [abs(r["p50"] - r["actual"]) / r["wait"] for r in ranged]
    base = [abs(r["baseline"] - r["actual"]) / r["wait"] for r in ranged if r["baseline"] is not None]
    return {"jobs": len(rows), "with_range": len(ranged),
            "lower_bound_only": sum(1 for r in rows if r["p90"] is None and r["p50"] is not None),
            "unknown": sum(1 for r in rows if r["p50"] is None),
            "within_p90": sum(within) / len(within) if within else None,
            "median_p90_over_wait": statistics.median(ratio) if ratio else None,
            "p50_median_error": statistics.median(err) if err else None,
            "baseline_median_error": statistics.median(base) if base else None}


def scenario(runtimes: str, passers: bool, n: int, seeds: Sequence[int], every: int = 1) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        rows += play(trace(n, seed, runtimes, passers), 16 if passers else 0, every)
    out = {"runtimes": runtimes, "passers": passers, "seeds": list(seeds), "per_job": n, **summarize(rows)}
    out["by_size"] = {size: summarize([r for r in rows if r["size"] == size]) for size in sorted(set(SIZES.values()))}
    return out


def exactness(n: int, seed: int) -> dict[str, Any]:
    """A batch, declared exactly, history that says declarations hold and nothing passes: P50 = P90 = actual."""
    jobs = trace(n, seed, "exact", False, batch=True)
    cluster = Cluster(tree(0), jobs)
    learned = {leaf: Learned(ratios=(1.0,) * 5, since_ns=T0 - 3600 * NS) for leaf in LEAVES}
    for j in jobs:
        cluster.queues.upsert(j.item)
    cluster.admit_passes(T0)
    running, waiting = cluster.view(T0)
    out = sample_ranges(cluster.ledger, running, waiting, T0, learned=learned, runtimes=cluster.history,
                        forecast=False, resolution=0.0)
    cluster.release_until(2**62)
    waited = [uid for uid in out.ranges if cluster.started[uid] > T0]
    same = [uid for uid in waited
            if out.ranges[uid].p50_ns == out.ranges[uid].p90_ns == out.base.estimates[uid].start_ns]
    # replayed at its finest resolution (releases within 1 s together); the trace declares runtimes to the
    # millisecond: the replayed start is exact within that
    exact = [uid for uid in same if abs((out.ranges[uid].p50_ns or 0) - cluster.started[uid]) <= NS]
    return {"jobs": n, "waited": len(waited), "p50_and_p90_equal_the_replay": len(same),
            "p50_equals_actual_within_1s": len(exact)}
