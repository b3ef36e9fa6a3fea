"""Fair share, proven by simulation: backlogged teams of weights 1:2:3 in simulated time, through the controller's
own admission code (``QuotaTree``, ``Ledger``, ``Queues``, ``AdmissionPass``, ``common.fair_share``), once with
fair share and once with today's order, in the same run.

The world: ``root`` (max cpu 100) > ``teams`` (min 30) > ``a``, ``b``, ``c`` (min 10 each, weights 1, 2, 3), so 70
cpu are borrowed capacity the teams compete for. Every team keeps at least ``BACKLOG`` jobs waiting, of 1 to 8 cpu
and runtimes of 2 % to 60 % of a half-life (seeded, the same for both policies). At chosen times team ``a``
(weight 1) gets a job of 30 cpu at a higher priority than its others, so it is its next job, larger than its fair
share (min 10 + 70/6). Events: a job ends (its claim leaves the ledger and, as in the cache, every backoff ends),
and a tick every minute (the controller's periodic wake). At each event one pass, as the reconcile runs it:
reclaim victims are suspended and requeued with their enqueue time, and the pass repeats while it changes
anything. The decayed usage is advanced at every event with the usage that held since the last one (exactly
what the controller's status records: every change of usage writes it).

Goals (issue 20): (a) after a warm-up of 5 half-lives, each team's share of the borrowed cpu-time in every window
of 10 half-lives (sliding by one) is within 10 % (relative) of its weight share; (b) team a's big job starts
within 3 half-lives of becoming its next job; (c) no job is preempted twice by the same pair of nodes within its
min-runtime, also with reclaim for fairness on (``rayqueue.io/fair-share-preemption``, a run of its own) (``rayqueue.io/min-runtime`` ``MIN_RUNTIME`` on the root; a third run, today's order without it and with
every release ending every backoff, is the "before" figure, its repeats counted in the same window);
(d) the mins are never breached: after every event no team has a waiting head that would be guaranteed (fit
within its min) and is not admitted, and no node is above its max. Nothing asserts here; the unit test
``tests/unit/test_fairshare_simulation.py`` runs a short trace and asserts what holds.
Results: a table on stdout and bench/results/fairshare.json.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.fair_share import DecayedUsage, FairOrder, borrowed
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree
from common.resources import Resources

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "fairshare.json"
NS: Final = 10**9
HALF_LIFE_S: Final = 3600.0
TEAMS: Final = {"a": 1, "b": 2, "c": 3}
BACKLOG: Final = 6
BIG_CPU: Final = 30
TICK_S: Final = 60.0
WARMUP: Final = 5  # half-lives
WINDOW: Final = 10  # half-lives
TOLERANCE: Final = 0.10
START_WITHIN: Final = 3  # half-lives
MIN_RUNTIME_S: Final = 0.1 * HALF_LIFE_S  # rayqueue.io/min-runtime of the root, and goal (c)'s window


def tree(half_life: str | None, min_runtime: str | None = None, preempt: bool = False) -> QuotaTree:
    """The simulated tree; ``half_life`` None: today's order; ``min_runtime`` None: no protection."""
    teams = [{"name": t, "min": {"cpu": "10"}, "max": {"cpu": "100"}, "namespaces": [t],
              "attributes": {keys.FAIR_SHARE_WEIGHT: str(w)}} for t, w in TEAMS.items()]
    root: dict[str, Any] = {"name": "root", "max": {"cpu": "100"}, "min": {"cpu": "30"},
                            "children": [{"name": "teams", "min": {"cpu": "30"}, "max": {"cpu": "100"}, "children": teams}]}
    attrs = {keys.FAIR_SHARE_HALF_LIFE: half_life, keys.MIN_RUNTIME: min_runtime,
             keys.FAIR_SHARE_PREEMPTION: "true" if preempt else None}
    if any(v is not None for v in attrs.values()):
        root["attributes"] = {k: v for k, v in attrs.items() if v is not None}
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


@dataclass(slots=True)
class _Source:
    """The simulated world as the admission pass's ``PassSource``: nothing is releasing (victims leave at once)."""

    queues: Queues

    def releasing(self, uid: str) -> bool:
        return False

    def terminating_pods(self, uid: str) -> int:
        return 0

    def preemptible(self, uid: str) -> bool:
        return True


@dataclass(slots=True)
class Outcome:
    """What one policy did over the trace."""

    policy: str
    borrowed_s: dict[str, list[float]] = field(default_factory=dict)  # team -> borrowed cpu-seconds per half-life
    big_waits_h: list[float | None] = field(default_factory=list)  # half-lives from next job to start (None: never)
    preemptions: int = 0
    repeat_pairs: int = 0  # a job preempted twice by the same (victim node, claimant node) within MIN_RUNTIME_S
    suspensions: dict[str, int] = field(default_factory=dict)  # job uid -> times it was suspended
    min_breaches: list[str] = field(default_factory=list)
    max_breaches: list[str] = field(default_factory=list)
    admitted: int = 0
    passes: int = 0

    def windows(self) -> list[dict[str, Any]]:
        """Goal (a): per window of WINDOW half-lives after the warm-up, each team's share against its weight's."""
        rows = []
        total_w = sum(TEAMS.values())
        length = len(next(iter(self.borrowed_s.values())))
        for start in range(WARMUP, length - WINDOW + 1):
            sums = {t: sum(v[start : start + WINDOW]) for t, v in self.borrowed_s.items()}
            total = sum(sums.values())
            errors = {t: (sums[t] / total) / (TEAMS[t] / total_w) - 1 if total else -1.0 for t in TEAMS}
            rows.append({"from": start, "to": start + WINDOW, "share": {t: round(sums[t] / total, 4) if total else 0
                                                                          for t in TEAMS},
                         "relative_error": {t: round(e, 4) for t, e in errors.items()}})
        return rows

    def worst_error(self) -> float:
        return max((abs(e) for w in self.windows() for e in w["relative_error"].values()), default=1.0)

    def goals(self) -> dict[str, bool]:
        waits = self.big_waits_h
        return {
            "a_shares_within_10pct": self.worst_error() <= TOLERANCE,
            "b_big_job_within_3_half_lives": bool(waits) and all(w is not None and w <= START_WITHIN for w in waits),
            "c_no_repeat_preemption_by_a_pair": self.repeat_pairs == 0,
            "d_mins_never_breached": not self.min_breaches and not self.max_breaches,
        }


@dataclass(frozen=True, slots=True)
class _Job:
    team: str
    cpu: int
    runtime_s: float
    priority: int = 0


def _trace(seed: int, half_lives: int) -> tuple[dict[str, list[_Job]], list[tuple[float, _Job]]]:
    """Per team an endless-enough list of jobs, and team a's big jobs (time, job): the same for both policies."""
    rng = random.Random(seed)
    jobs = {t: [_Job(t, rng.choice((1, 2, 2, 4, 4, 8)), HALF_LIFE_S * rng.uniform(0.02, 0.6))
                for _ in range(half_lives * 200)] for t in TEAMS}
    big = [(HALF_LIFE_S * h, _Job("a", BIG_CPU, HALF_LIFE_S * 0.3, priority=1))
           for h in range(WARMUP + 2, half_lives - START_WITHIN, 5)]
    return jobs, big


def simulate(fair: bool, half_lives: int = 25, seed: int = 20, *, protect: bool = True,
             preempt: bool = False) -> Outcome:
    """One policy over ``half_lives`` half-lives of simulated time. ``protect`` False: the "before" of issue 20
    item 5 (no min-runtime, and every release ends every backoff). ``preempt``: reclaim for fairness on (item 4)."""
    qt = tree("1h" if fair else None, f"{int(MIN_RUNTIME_S)}s" if protect else None, preempt)
    name = ("fair share + reclaim" if preempt else "fair share") if fair else "today's order"
    out = Outcome(name if protect else f"{name}, unprotected", {t: [0.0] * half_lives for t in TEAMS})
    clock = FakeClock()
    queues = Queues(clock)
    ledger = Ledger(qt, Resources({"cpu": 100_000}))
    source = _Source(queues)
    decayed = DecayedUsage(0, HALF_LIFE_S)
    jobs, bigs = _trace(seed, half_lives)
    taken = dict.fromkeys(TEAMS, 0)
    items: dict[str, QueueItem] = {}
    running: dict[str, tuple[float, _Job]] = {}  # uid -> (end, job)
    info: dict[str, _Job] = {}
    ends: list[tuple[float, str]] = []
    preempted: dict[tuple[str, str, str], list[float]] = {}
    big_since: dict[str, float] = {}  # big job uid -> when it became its team's next job
    seq = 0
    end_s = half_lives * HALF_LIFE_S

    def enqueue(job: _Job, t: float, uid: str | None = None, enqueue_ns: int | None = None) -> None:
        nonlocal seq
        if uid is None:
            seq += 1
            uid = f"{job.team}-{seq:06d}"
        item = QueueItem(uid=uid, namespace=job.team, name=uid, quota=f"root/teams/{job.team}", priority=job.priority,
                         enqueue_ns=enqueue_ns if enqueue_ns is not None else int(t * NS) + seq,
                         request=Resources({"cpu": job.cpu * 1000}))
        items[uid], info[uid] = item, job
        queues.upsert(item)

    def refill(t: float) -> None:
        for team in TEAMS:
            waiting = len(queues.active(f"root/teams/{team}")) + len(queues.backoff(f"root/teams/{team}"))
            while waiting < BACKLOG:
                enqueue(jobs[team][taken[team]], t)
                taken[team] += 1
                waiting += 1

    def integrate(t0: float, t1: float) -> None:
        """Borrowed cpu-seconds per team over [t0, t1], split by half-life."""
        for team in TEAMS:
            over = max(0, ledger.usage(f"root/teams/{team}").get("cpu") - 10_000) / 1000
            if not over:
                continue
            a = t0
            while a < t1:
                h = int(a // HALF_LIFE_S)
                b = min(t1, (h + 1) * HALF_LIFE_S)
                if h < half_lives:
                    out.borrowed_s[team][h] += over * (b - a)
                a = b

    def one_pass(t: float) -> bool:
        order = FairOrder(qt, decayed, ledger.capacity) if fair else None
        decide = AdmissionPass(source, ledger, int(t * NS), fair=order)
        result = queues.schedule(decide, ledger.generation, leaf_order=order.leaves() if order else None)
        out.passes += 1
        for claim, _ in decide.admitted:
            job = info[claim.uid]
            ledger.add(Claim(uid=claim.uid, key=claim.key, kind="job", quota=claim.quota, request=claim.request,
                             priority=claim.priority, admitted_order=max(1, int(t * NS))))
            running[claim.uid] = (t + job.runtime_s, job)
            heapq.heappush(ends, (t + job.runtime_s, claim.uid))
            out.admitted += 1
            since = big_since.pop(claim.uid, None)
            if since is not None:
                out.big_waits_h.append((t - since) / HALF_LIFE_S)
        for victim, claimant in decide.victims:
            out.preemptions += 1
            pair = (victim.uid, victim.quota, claimant.quota)
            times = preempted.setdefault(pair, [])
            if times and t - times[-1] < MIN_RUNTIME_S:
                out.repeat_pairs += 1
            times.append(t)
            out.suspensions[victim.uid] = out.suspensions.get(victim.uid, 0) + 1
            ledger.remove(victim.uid)
            running.pop(victim.uid, None)
            old = items[victim.uid]
            enqueue(info[victim.uid], t, uid=victim.uid, enqueue_ns=old.enqueue_ns)  # its original enqueue time
        if decide.victims:
            release({v.quota for v, _ in decide.victims})
        return bool(result.admitted or decide.victims)

    def release(quotas: set[str]) -> None:
        """What the cache does on a release: end the backoffs it can change (before: all of them)."""
        if protect:
            queues.retry_freed(quotas)
        else:
            queues.retry_now()

    def check(t: float) -> None:
        for team in TEAMS:
            leaf = f"root/teams/{team}"
            head = queues.head(leaf)
            if head is not None and ledger.is_guaranteed(Claim(head.uid, head.key, "job", leaf, head.request)):
                out.min_breaches.append(f"{t / HALF_LIFE_S:.2f}h: {leaf} head {head.key} is within min and waits")
        for node in qt.nodes():
            over = ledger.usage(node.full_name).exceeding(Resources(), node.max)
            if over:
                out.max_breaches.append(f"{t / HALF_LIFE_S:.2f}h: {node.full_name} above max")

    def next_big(t: float) -> None:
        for uid, job in info.items():
            if job.priority and uid not in running and uid not in big_since and uid in queues and \
                    queues.head(items[uid].quota) == items[uid]:
                big_since[uid] = t

    t = 0.0
    big_at = list(bigs)
    next_tick = 0.0
    while t < end_s:
        candidates = [next_tick, end_s]
        if ends:
            candidates.append(ends[0][0])
        if big_at:
            candidates.append(big_at[0][0])
        t_next = min(candidates)
        integrate(t, t_next)
        decayed = decayed.advance(int(t_next * NS), borrowed(qt, ledger.usage))
        clock.advance(t_next - t)
        t = t_next
        if t >= end_s:
            break
        freed = set()
        while ends and ends[0][0] <= t:
            _, uid = heapq.heappop(ends)
            if uid in running and running[uid][0] <= t:
                running.pop(uid)
                ledger.remove(uid)
                freed.add(items[uid].quota)
        if freed:
            release(freed)
        while big_at and big_at[0][0] <= t:
            enqueue(big_at.pop(0)[1], t)
        if next_tick <= t:
            next_tick = t + TICK_S
        refill(t)
        next_big(t)
        for _ in range(5):
            if not one_pass(t):
                break
            next_big(t)
        check(t)
    out.big_waits_h.extend(None for _ in big_since)
    return out


def _report(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    return {
        "teams": {t: {"weight": w, "min_cpu": 10} for t, w in TEAMS.items()},
        "borrowed_pool_cpu": 70, "half_life_s": HALF_LIFE_S, "warmup_half_lives": WARMUP,
        "window_half_lives": WINDOW, "tolerance": TOLERANCE, "min_runtime_s": MIN_RUNTIME_S,
        "policies": [{
            "policy": o.policy, "goals": o.goals(), "worst_relative_error": round(o.worst_error(), 4),
            "windows": o.windows(), "big_job_waits_half_lives": [None if w is None else round(w, 3)
                                                                 for w in o.big_waits_h],
            "preemptions": o.preemptions, "repeat_pairs": o.repeat_pairs,
            "jobs_suspended": len(o.suspensions), "max_suspensions_per_job": max(o.suspensions.values(), default=0),
            "suspensions_per_suspended_job": round(sum(o.suspensions.values()) / len(o.suspensions), 2)
            if o.suspensions else 0.0, "min_breaches": o.min_breaches[:10],
            "max_breaches": o.max_breaches[:10], "admitted": o.admitted, "passes": o.passes,
            "borrowed_cpu_hours_after_warmup": {t: round(sum(v[WARMUP:]) / 3600, 1) for t, v in o.borrowed_s.items()},
        } for o in outcomes],
    }


def print_table(report: dict[str, Any]) -> None:
    total_w = sum(TEAMS.values())
    print(f"{'policy':<15} {'team':<5} {'weight share':>12} {'borrowed share':>15} {'worst window err':>17}")
    for p in report["policies"]:
        hours = p["borrowed_cpu_hours_after_warmup"]
        total = sum(hours.values()) or 1
        for t in TEAMS:
            worst = max(abs(w["relative_error"][t]) for w in p["windows"])
            print(f"{p['policy']:<15} {t:<5} {TEAMS[t] / total_w:>12.3f} {hours[t] / total:>15.3f} {worst:>16.1%}")
    print()
    print(f"{'policy':<15} {'(a) ±10%':>9} {'(b) big ≤3h':>12} {'(c) no repeat':>14} {'(d) mins':>9}  big waits "
          "(half-lives), preemptions")
    for p in report["policies"]:
        g = p["goals"]
        yes = {True: "yes", False: "NO"}
        waits = ", ".join("never" if w is None else f"{w:.2f}" for w in p["big_job_waits_half_lives"])
        print(f"{p['policy']:<15} {yes[g['a_shares_within_10pct']]:>9} {yes[g['b_big_job_within_3_half_lives']]:>12} "
              f"{yes[g['c_no_repeat_preemption_by_a_pair']]:>14} {yes[g['d_mins_never_breached']]:>9}  {waits}; "
              f"{p['preemptions']} (jobs suspended {p['jobs_suspended']}, at most {p['max_suspensions_per_job']} "
              f"times each, {p['suspensions_per_suspended_job']} on average)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fairshare", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--half-lives", type=int, default=25, help="length of the trace (at least 20)")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="a 20-half-life trace")
    p.add_argument("--out", type=Path, default=RESULTS, help="the JSON report (default bench/results/fairshare.json)")
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    from bench.loadgen import finish_report
    from bench.webhook import machine

    started = time.monotonic()
    half_lives = 20 if args.quick else max(20, args.half_lives)
    outcomes = [simulate(True, half_lives, args.seed), simulate(True, half_lives, args.seed, preempt=True),
                simulate(False, half_lives, args.seed),
                simulate(False, half_lives, args.seed, protect=False)]
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), "seed": args.seed,
                              "half_lives": half_lives, **_report(outcomes)}
    print_table(report)
    finish_report(report, args.out, started)
    print(f"\n{report['duration_s']} s; written to {report['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
