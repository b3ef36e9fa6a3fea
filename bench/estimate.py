"""The start-time estimate: its accuracy on synthetic traces, and its cost at 10,000 waiting jobs.

Run it with `python -m bench.estimate` (`--quick` for a smoke run). Two parts:

* accuracy: a trace of RayJobs (Poisson arrivals, requests of 2-16 CPU, lognormal runtimes, 20 % of
  them high priority) over 4 leaves of a 2-level tree whose leaves borrow from each other, is played
  through the pure core (``Queues.schedule`` with ``common.admission.AdmissionPass`` on a ``Ledger``,
  releases at the jobs' true ends, reclaim victims requeued and restarted): that is the simulated
  actual start of every job. The same trace is played again and, at each job's submission and halfway
  through its actual wait, ``common.start_times.estimate`` is asked for its start, from what the cluster
  would know then (declared runtimes, or the leaf's runtime history for undeclared ones). The error is
  ``|estimated - actual start| / actual wait``; median and p90 are reported per scenario (runtimes
  declared exactly, declared within ±20 %, declared by half the jobs, undeclared), with how many
  estimates were "unknown". The goal: median error <= 20 % when runtimes are declared.
* cost: ``estimate()`` over 10,000 (and 1,000) waiting jobs on bench/queues.py's 100-leaf tree with
  running jobs of declared runtimes, against the baseline of ONE admission pass over the same waiting
  jobs (what every reconcile already does), measured in the same run.

Bounded in jobs and iterations; nothing asserts. Results: a table on stdout and bench/results/estimate.json.

By default only the calibration of the range (bench/estimate_calibration.py: is the actual start at or
before the P90 bound 85-95 % of the time, per scenario and job size; P90 over the wait; the P50's error
against a baseline; exactness of a batch); ``--accuracy`` and ``--cost`` add the two parts above.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.queues import tree_dict
from bench.webhook import machine
from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree
from common.resources import Resources
from common.start_times import (
    DRAIN_SECONDS,
    HISTORY_SIZE,
    NS,
    Running,
    Runtime,
    Waiting,
    estimate,
    format_duration,
    remember,
    replay,
    runtime_of,
)

RESULTS: Final = ROOT / "bench" / "results" / "estimate.json"
T0: Final = 1_736_472_984 * NS
LEAVES: Final = ("root/a/a1", "root/a/a2", "root/b/b1", "root/b/b2")


def small_tree() -> QuotaTree:
    """root (64 cpu) -> a, b (min 32, max 64) -> two leaves each (min 16, max 48): leaves borrow up to 3x."""
    def node(name: str, lo: int, hi: int, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "min": {"cpu": str(lo)}, "max": {"cpu": str(hi)}}
        if children:
            out["children"] = children
        else:
            out["namespaces"] = [name]
        return out

    root = node("root", 64, 64, [node("a", 32, 64, [node("a1", 16, 48), node("a2", 16, 48)]),
                                 node("b", 32, 64, [node("b1", 16, 48), node("b2", 16, 48)])])
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


@dataclass(frozen=True, slots=True)
class Job:
    uid: str
    leaf: str
    cpu: int
    priority: int
    arrival_ns: int
    runtime_s: float  # the truth
    declared_s: float | None  # what the user declared (None: nothing)

    @property
    def item(self) -> QueueItem:
        return QueueItem(uid=self.uid, namespace=self.leaf.rsplit("/", 1)[1], name=self.uid, quota=self.leaf,
                         priority=self.priority, enqueue_ns=self.arrival_ns, request=Resources({"cpu": self.cpu * 1000}))


def trace(n: int, seed: int, scenario: str, load: float = 0.95) -> list[Job]:
    rng = random.Random(seed)
    mean_cpu, mean_rt = 7.5, 600 * math.exp(0.6**2 / 2)
    rate = load * 64 / (mean_cpu * mean_rt)  # arrivals per second for the given utilisation
    t = T0
    jobs = []
    for i in range(n):
        t += round(rng.expovariate(rate) * NS)
        runtime = 600 * math.exp(rng.gauss(0, 0.6))
        if scenario in ("exact", "exact-fifo"):
            declared: float | None = runtime
        elif scenario == "noisy":
            declared = runtime * rng.uniform(0.8, 1.2)
        elif scenario == "half":
            declared = runtime * rng.uniform(0.8, 1.2) if rng.random() < 0.5 else None
        else:
            declared = None
        jobs.append(Job(f"j{i:05d}", rng.choice(LEAVES), rng.choice((2, 4, 8, 16)),
                        10 if rng.random() < 0.2 and scenario != "exact-fifo" else 0, t, runtime, declared))
    return jobs


class _Source:
    def __init__(self, queues: Queues, draining: set[str] | None = None) -> None:
        self.queues = queues
        self.draining = draining if draining is not None else set()

    def releasing(self, uid: str) -> bool:
        return uid in self.draining

    def terminating_pods(self, uid: str) -> int:
        return 1 if uid in self.draining else 0

    def preemptible(self, uid: str) -> bool:
        return True


class Cluster:
    """The truth: the pure core with releases at the jobs' true ends."""

    def __init__(self, tree: QuotaTree, jobs: Sequence[Job]) -> None:
        self.ledger = Ledger(tree)
        self.queues = Queues(FakeClock())
        self.jobs = {j.uid: j for j in jobs}
        self.started: dict[str, int] = {}  # first start
        self.running: dict[str, int] = {}  # uid -> start of its current run
        self.ends: list[tuple[int, str]] = []
        self.end_of: dict[str, int] = {}
        self.history: dict[str, list[float]] = {leaf: [] for leaf in LEAVES}
        self.draining: set[str] = set()  # reclaim victims: their claim drains for DRAIN_SECONDS
        self.finished: list[tuple[Job, float]] = []  # (job, its runtime), in the order they ended

    def admit_passes(self, t: int) -> None:
        for _ in range(len(self.jobs) + 1):
            self.queues.retry_now()
            decide = AdmissionPass(_Source(self.queues, self.draining), self.ledger, t)
            self.queues.schedule(decide, self.ledger.generation)
            admitted_now = {c.uid for c, _ in decide.admitted}
            bounced = {v.uid for v, _ in decide.victims if v.uid in admitted_now}  # see common/start_times.py
            for uid in sorted(bounced):
                self.queues.upsert(self.jobs[uid].item)
            for victim, _ in decide.victims:
                if victim.uid in bounced:
                    continue
                self.running.pop(victim.uid, None)
                self.draining.add(victim.uid)
                self.end_of[victim.uid] = t + round(DRAIN_SECONDS * NS)
                heapq.heappush(self.ends, (self.end_of[victim.uid], victim.uid))
                self.queues.upsert(self.jobs[victim.uid].item)
            for claim, _ in decide.admitted:
                if claim.uid in bounced:
                    continue
                self.ledger.add(claim)
                job = self.jobs[claim.uid]
                self.started.setdefault(claim.uid, t)
                self.running[claim.uid] = t
                end = t + round(job.runtime_s * NS)
                self.end_of[claim.uid] = end
                heapq.heappush(self.ends, (end, claim.uid))
            if len(decide.admitted) + len(decide.victims) == 2 * len(bounced):
                return

    def release_until(self, t: int) -> list[int]:
        """Process every release up to t (inclusive), passing after each; returns the times passed at."""
        times = []
        while self.ends and self.ends[0][0] <= t:
            end = self.ends[0][0]
            while self.ends and self.ends[0][0] == end:  # everything ending at that instant
                _, uid = heapq.heappop(self.ends)
                if self.end_of.get(uid) != end:
                    continue
                del self.end_of[uid]
                self.ledger.remove(uid)
                if uid in self.draining:
                    self.draining.discard(uid)
                    continue
                start = self.running.pop(uid)
                job = self.jobs[uid]
                self.history[job.leaf] = remember(self.history[job.leaf], (end - start) / NS)
                self.finished.append((job, (end - start) / NS))
            self.admit_passes(end)
            times.append(end)
        return times

    def view(self, t: int) -> tuple[list[Running], list[Waiting]]:
        """What the estimator knows at t: declared runtimes, else the leaf's history."""
        def runtime(job: Job) -> Any:
            notes = {keys.EXPECTED_RUNTIME: f"{job.declared_s:.3f}s"} if job.declared_s else {}
            return runtime_of(notes, None, self.history[job.leaf], job.leaf)

        running = []
        for uid in sorted(self.draining):
            claim = self.ledger.claim(uid)
            assert claim is not None
            drain = Runtime(DRAIN_SECONDS, "declared", "reclaimed, draining")
            running.append(Running(claim, self.end_of[uid] - round(DRAIN_SECONDS * NS), drain))
        for uid, start in self.running.items():
            claim = self.ledger.claim(uid)
            assert claim is not None
            running.append(Running(claim, start, runtime(self.jobs[uid]), self.jobs[uid].arrival_ns))
        waiting = [Waiting(item, runtime(self.jobs[item.uid]))
                   for leaf in LEAVES for item in (*self.queues.active(leaf), *self.queues.backoff(leaf))]
        return running, waiting


def play(jobs: Sequence[Job], checkpoints: dict[int, list[tuple[str, str]]] | None = None,
         ) -> tuple[dict[str, int], list[tuple[str, str, int | None, int]]]:
    """Play the trace; at each checkpoint time (after that instant's arrivals, releases and passes), ask
    the estimator about the named jobs. Returns the actual first starts and (uid, phase, estimate, at)."""
    cluster = Cluster(small_tree(), jobs)
    asked: list[tuple[str, str, int | None, int]] = []
    times = sorted({j.arrival_ns for j in jobs} | set(checkpoints or {}))
    arrivals: dict[int, list[Job]] = {}
    for j in jobs:
        arrivals.setdefault(j.arrival_ns, []).append(j)
    for t in times:  # a pass at every arrival and every release, never at a checkpoint alone
        cluster.release_until(t - 1)
        if t in arrivals:
            warned = [uid for uid, phase in (checkpoints or {}).get(t, ()) if phase == "warning"]
            if warned:  # the create warning: the leaf's forecast, replayed before the job is queued
                running, waiting = cluster.view(t)
                forecasts = replay(cluster.ledger, running, waiting, t).forecasts
                for j in arrivals[t]:
                    if j.uid in warned:
                        asked.append((j.uid, "warning", forecasts[j.leaf].start(j.item.request, t, priority=j.priority), t))
            for j in arrivals[t]:
                cluster.queues.upsert(j.item)
            cluster.admit_passes(t)
        cluster.release_until(t)
        for uid, phase in (checkpoints or {}).get(t, ()):
            if uid in cluster.started or phase == "warning":
                continue
            running, waiting = cluster.view(t)
            out = estimate(cluster.ledger, running, waiting, t)
            asked.append((uid, phase, out[uid].start_ns, t))
    cluster.release_until(2**62)
    return cluster.started, asked


def quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def accuracy(scenario: str, n: int, seed: int) -> dict[str, Any]:
    jobs = trace(n, seed, scenario)
    starts, _ = play(jobs)
    checkpoints: dict[int, list[tuple[str, str]]] = {}
    waits = {}
    for j in jobs:
        wait = starts[j.uid] - j.arrival_ns
        if wait <= 0:
            continue
        waits[j.uid] = wait
        checkpoints.setdefault(j.arrival_ns, []).extend([(j.uid, "warning"), (j.uid, "submission")])
        checkpoints.setdefault(j.arrival_ns + wait // 2, []).append((j.uid, "halfway"))
    again, asked = play(jobs, checkpoints)
    assert again == starts, "the checkpoints changed the trace"
    out: dict[str, Any] = {"scenario": scenario, "jobs": n, "seed": seed, "waited": len(waits),
                           "median_wait": format_duration(statistics.median(waits.values()) / NS) if waits else "-"}
    for phase in ("warning", "submission", "halfway"):
        errors = [abs(est - starts[uid]) / waits[uid] for uid, ph, est, _ in asked if ph == phase and est is not None]
        unknown = sum(1 for _, ph, est, _ in asked if ph == phase and est is None)
        out[phase] = {"estimates": len(errors), "unknown": unknown, "median_error": quantile(errors, 0.5),
                      "p90_error": quantile(errors, 0.9)}
    return out


# --- cost -----------------------------------------------------------------------------------------


def cost(n_waiting: int, repeat: int) -> dict[str, Any]:
    tree = QuotaTree.parse(tree_dict())
    leaves = [leaf.full_name for leaf in tree.leaves()]
    rng = random.Random(n_waiting)
    ledger = Ledger(tree)
    running = []
    for i, leaf in enumerate(leaves * 5):  # 500 running jobs of 2 CPU: every leaf at 10 of max 12
        claim = Claim(uid=f"r{i}", key=f"{leaf}/r{i}", kind="job", quota=leaf, request=Resources({"cpu": 2000}),
                      admitted_order=T0)
        ledger.add(claim)
        rt = runtime_of({keys.EXPECTED_RUNTIME: f"{rng.randrange(60, 3600)}s"}, None, [], leaf)
        running.append(Running(claim, T0 - rng.randrange(0, 60) * NS, rt))
    history = [float(rng.randrange(60, 3600)) for _ in range(HISTORY_SIZE)]
    waiting = []
    for i in range(n_waiting):
        leaf = leaves[i % len(leaves)]
        item = QueueItem(uid=f"w{i:06d}", namespace=leaf.rsplit("/", 1)[1], name=f"w{i:06d}", quota=leaf,
                         priority=rng.choice((0, 0, 10)), enqueue_ns=T0 - (n_waiting - i) * NS,
                         request=Resources({"cpu": rng.choice((2000, 4000))}))
        waiting.append(Waiting(item, runtime_of({}, None, history, leaf)))

    def one_pass() -> None:
        queues = Queues(FakeClock())
        for w in waiting:
            queues.upsert(w.item)
        queues.schedule(AdmissionPass(_Source(queues), ledger, T0), ledger.generation)

    def timed(fn: Any) -> float:
        best = math.inf
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return best

    base = timed(one_pass)
    result: dict[str, Any] = {}
    full = timed(lambda: result.update(out=estimate(ledger, running, waiting, T0)))
    estimates = result["out"]
    known = sum(1 for e in estimates.values() if e.start_ns is not None)
    forecasting = timed(lambda: replay(ledger, running, waiting, T0))  # what the controller runs
    return {"waiting": n_waiting, "running": len(running), "one_pass_s": base, "estimate_s": full,
            "ratio": full / base, "with_a_time": known, "replay_with_forecasts_s": forecasting,
            "forecast_ratio": forecasting / full}


def _print_calibration(row: dict[str, Any]) -> None:
    def f(v: float | None, pct: bool = True) -> str:
        return "-" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}")

    label = f"{row['runtimes']:<6} {'with' if row['passers'] else 'none':<5}"
    print(f"{label} {'all':<16} {row['with_range']:>5} {row['lower_bound_only']:>4} {f(row['within_p90']):>7} "
          f"{f(row['median_p90_over_wait'], False):>7} {f(row['p50_median_error']):>8} {f(row['baseline_median_error']):>8}")
    for size, s in row["by_size"].items():
        print(f"{'':<12} {size:<16} {s['with_range']:>5} {s['lower_bound_only']:>4} {f(s['within_p90']):>7} "
              f"{f(s['median_p90_over_wait'], False):>7} {f(s['p50_median_error']):>8} {f(s['baseline_median_error']):>8}")


def calibration(n: int, seeds: Sequence[int], workers: int) -> list[dict[str, Any]]:
    """Every scenario of bench/estimate_calibration.py, ``workers`` processes at a time."""
    from concurrent.futures import ProcessPoolExecutor

    from bench.estimate_calibration import RUNTIMES

    # a range costs 17 replays (common/estimate_range.py); with passing arrivals and mins a replay costs ~10x
    # more, so those scenarios ask every 12th job (about 30 a trace), the others every 4th
    jobs = [(rt, passers, n, tuple(seeds), 12 if passers else 4) for passers in (False, True) for rt in RUNTIMES]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_scenario, jobs))


def _scenario(args: tuple[str, bool, int, tuple[int, ...], int]) -> dict[str, Any]:
    from bench.estimate_calibration import scenario

    rt, passers, n, seeds, every = args
    out = scenario(rt, passers, n, seeds, every)
    out["asked_every"] = every
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.estimate", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run (fewer jobs, one seed)")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--workers", type=int, default=2, help="processes for the calibration scenarios (default 2)")
    p.add_argument("--accuracy", action="store_true", help="also the point estimate's accuracy (the earlier goal)")
    p.add_argument("--cost", action="store_true", help="also the cost part (one replay at 1,000 and 10,000 waiting)")
    p.add_argument("--scenario", action="append", choices=("exact-fifo", "exact", "noisy", "half", "none"),
                   help="only these accuracy scenarios (repeatable; with --accuracy)")
    p.add_argument("--out", type=Path, default=RESULTS, help="the JSON report (default bench/results/estimate.json)")
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    started = time.monotonic()
    n = args.jobs or (120 if args.quick else 400)
    seeds = (1,) if args.quick else (1, 2, 3)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "calibration": [],
                              "accuracy": [], "cost": []}
    from bench.estimate_calibration import exactness

    print(f"calibration of the range: {n} jobs per trace, seeds {list(seeds)}, 4 leaves, load 0.95, simulated time")
    print(f"{'runtimes':<6} {'pass':<5} {'size':<16} {'asked':>5} {'lb':>4} {'<= P90':>7} {'P90/w':>7} "
          f"{'P50 err':>8} {'baseline':>8}")
    for row in calibration(n, seeds, args.workers):
        report["calibration"].append(row)
        _print_calibration(row)
    exact = [exactness(n, seed) for seed in seeds]
    report["exactness"] = exact
    for row in exact:
        print(f"exactness (a batch of {row['jobs']}, declared exactly, nothing arriving): {row['waited']} waited, "
              f"P50 = P90 = the replay for {row['p50_and_p90_equal_the_replay']}, = the actual start (within 1 s) "
              f"for {row['p50_equals_actual_within_1s']}")
    if args.accuracy:
        print(f"\naccuracy: {n} jobs per trace, 4 leaves, load 0.95; error = |estimate - actual start| / actual wait")
        print(f"{'scenario':<8} {'seed':>4} {'waited':>6} {'median wait':>11} | {'create warning: med  p90 unk':>29} | "
              f"{'at submission: med  p90 unk':>28} | {'halfway: med  p90 unk':>22}")
    for scenario in (args.scenario or ("exact-fifo", "exact", "noisy", "half", "none")) if args.accuracy else ():
        for seed in seeds:
            row = accuracy(scenario, n, seed)
            report["accuracy"].append(row)

            def cells(d: dict[str, Any]) -> str:
                def f(v: float | None) -> str:
                    return "-" if v is None else f"{v:.0%}"
                return f"{f(d['median_error']):>5} {f(d['p90_error']):>5} {d['unknown']:>3}"

            print(f"{scenario:<8} {seed:>4} {row['waited']:>6} {row['median_wait']:>11} | {cells(row['warning']):>29} | "
                  f"{cells(row['submission']):>28} | {cells(row['halfway']):>22}")
    if args.cost:
        print("\ncost: estimate() against one admission pass over the same waiting jobs (best of runs)")
    for size, repeat in ((1_000, 3), (10_000, 1 if args.quick else 2)) if args.cost else ():
        row = cost(size, repeat)
        report["cost"].append(row)
        print(f"{row['waiting']:>6} waiting, {row['running']} running: one pass {row['one_pass_s'] * 1000:.0f} ms, "
              f"estimate {row['estimate_s'] * 1000:.0f} ms ({row['ratio']:.1f}x), {row['with_a_time']} with a time; "
              f"with the leaves' forecasts {row['replay_with_forecasts_s'] * 1000:.0f} ms ({row['forecast_ratio']:.2f}x "
              "the estimate)")
    finish_report(report, args.out, started)
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
