"""Shrink instead of evict, measured (issue 21 item 5): a mixed trace of elastic and rigid borrowing jobs with
guaranteed arrivals, in simulated time, through the controller's own admission and reclaim code (``QuotaTree``,
``Ledger``, ``Queues``, ``AdmissionPass``: growth pods first, whole jobs after), once shrink-first and once with
today's whole-job reclaim, in the same run and on the same trace.

The world: capacity 100 cpu; ``root`` > ``g`` (min 60: guaranteed) and ``b`` (min 0: it borrows). ``b`` gets a job
every ``BORROW_S`` on average, each a head of 2 cpu and 4 to 16 workers of 2 cpu running ``WORK_S`` x workers
worker-seconds of work; half of them are elastic with a floor of a quarter of their workers. ``g`` gets a job of
10 to 60 cpu (rigid, 5 to 20 minutes) every ``ARRIVAL_S`` on average (seeded). Every deleted pod takes
``TERMINATE_S`` to go, its claim held meanwhile (releasing), as on a cluster.

* **shrink-first**: an elastic job reserves its floor; its workers above it are growth pod claims (newest
  first), so reclaim takes them before any whole job (``AdmissionPass`` -> ``growth_victims``); it starts at
  floor + what fits after every waiting job and is expanded toward its workers in a pass that admits nobody
  (``common.elastic``'s rule, here on the bench's integers).
* **whole-job**: every job is rigid, as before issue 21: reclaim suspends whole jobs.

Measured: the worker-time lost to preemption (a suspended job restarts from scratch: all the worker-time it ran;
a removed worker loses the work since the job's last checkpoint, at most ``CHECKPOINT_S``), jobs restarted from
scratch, and the guaranteed claimants' wait (arrival to admission). Goal: lost worker-time at most 0.5 of
whole-job reclaim's, the claimants' median wait no longer. Results: a table on stdout and bench/results/elastic.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from common import keys
from common.admission import AdmissionPass
from common.clock import FakeClock
from common.ledger import Claim, Ledger
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree
from common.resources import Resources

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "elastic.json"
NS: Final = 10**9
CPU: Final = 1000
BORROW_S: Final = 1200.0  # a borrowing job arrives every 20 minutes on average (--borrow-s)
WORK_S: Final = 1800.0  # seconds of work per worker at full size
ARRIVAL_S: Final = 900.0
TERMINATE_S: Final = 20.0
CHECKPOINT_S: Final = 300.0
G, B = "root/g", "root/b"


def tree() -> QuotaTree:
    leaves = [{"name": "g", "min": {"cpu": "60"}, "max": {"cpu": "100"}, "namespaces": ["g"]},
              {"name": "b", "min": {"cpu": "0"}, "max": {"cpu": "100"}, "namespaces": ["b"]}]
    root = {"name": "root", "min": {"cpu": "60"}, "max": {"cpu": "100"}, "children": leaves}
    return QuotaTree.parse({"kind": keys.QUOTA_TREE_KIND, "spec": {"root": root}})


@dataclass(slots=True)
class _Job:
    uid: str
    leaf: str
    workers: int  # asked for
    floor: int  # == workers when rigid
    work: float  # worker-seconds left (a guaranteed job: seconds at its size)
    arrived: float
    size: int = 0  # workers running now
    started: float = 0.0
    ran: float = 0.0  # worker-seconds run since its start (lost whole if suspended)
    pods: list[tuple[str, float]] = field(default_factory=list)  # growth workers: (uid, created)

    @property
    def request(self) -> Resources:
        return Resources({"cpu": (2 + 2 * self.floor) * CPU})


@dataclass(slots=True)
class Outcome:
    policy: str
    lost_worker_s: float = 0.0
    restarted: int = 0
    shrunk_workers: int = 0
    waits_s: list[float] = field(default_factory=list)
    finished: int = 0

    def report(self) -> dict[str, Any]:
        return {"policy": self.policy, "lost_worker_hours": round(self.lost_worker_s / 3600, 2),
                "jobs_restarted": self.restarted, "workers_removed": self.shrunk_workers,
                "claimant_median_wait_s": round(statistics.median(self.waits_s), 1) if self.waits_s else None,
                "claimants": len(self.waits_s), "jobs_finished": self.finished}


class _World:
    """The admission pass's ``PassSource``: claims whose pods are going are releasing."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.going: set[str] = set()

    def releasing(self, uid: str) -> bool:
        return uid in self.going

    def terminating_pods(self, uid: str) -> int:
        return 1 if uid in self.going else 0

    def preemptible(self, uid: str) -> bool:
        return True


def _trace(seed: int, hours: float, borrow_s: float) -> tuple[list[tuple[float, int, bool]], list[tuple[float, int, float]]]:
    """Borrowers (arrival, workers, elastic) and guaranteed jobs (arrival, cpu, runtime): the same for both."""
    rng = random.Random(seed)
    borrowers, t = [], 0.0
    while t < hours * 3600:
        t += rng.expovariate(1 / borrow_s)
        borrowers.append((t, rng.randint(4, 16), rng.random() < 0.5))
    arrivals, t = [], 0.0
    while t < hours * 3600:
        t += rng.expovariate(1 / ARRIVAL_S)
        arrivals.append((t, rng.choice((10, 20, 30, 40, 50, 60)), rng.uniform(300, 1200)))
    return borrowers, arrivals


def simulate(shrink: bool, hours: float = 24.0, seed: int = 21, borrow_s: float = BORROW_S) -> Outcome:
    out = Outcome("shrink-first" if shrink else "whole-job reclaim")
    qt, queues = tree(), Queues(FakeClock())
    ledger, world = Ledger(qt, Resources({"cpu": 100 * CPU})), _World(queues)
    borrowers, arrivals = _trace(seed, hours, borrow_s)
    jobs: dict[str, _Job] = {}
    running: dict[str, _Job] = {}
    gone: list[tuple[float, str]] = []  # (when, claim uid) of releasing claims
    seq = taken = 0
    end_s = hours * 3600

    def enqueue(job: _Job, enqueue_ns: int | None = None) -> None:
        jobs[job.uid] = job
        queues.upsert(QueueItem(uid=job.uid, namespace=job.leaf[5:], name=job.uid, quota=job.leaf, priority=0,
                                enqueue_ns=enqueue_ns or int(job.arrived * NS), request=job.request))

    def grow(job: _Job, n: int, t: float) -> None:
        nonlocal seq
        for _ in range(n):
            seq += 1
            uid = f"{job.uid}/w{seq}"
            job.pods.append((uid, t))
            ledger.add(Claim(uid=uid, key=uid, kind="pod", quota=job.leaf, request=Resources({"cpu": 2 * CPU}),
                             admitted_order=int(t * NS) + seq, growth_of=job.uid))
        job.size += n

    def fitting(room: int, view: Ledger) -> int:
        free, _ = view.headroom(B)
        return max(0, min(room, free.get("cpu", 10**9) // (2 * CPU)))

    def after_waiting() -> Ledger:
        view = ledger.copy()
        for leaf in (G, B):
            for item in (*queues.active(leaf), *queues.backoff(leaf)):
                if item.uid not in view:
                    view.add(Claim(uid=item.uid, key=item.key, kind="job", quota=item.quota, request=item.request))
        return view

    def one_pass(t: float) -> bool:
        decide = AdmissionPass(world, ledger, int(t * NS))
        queues.schedule(decide, ledger.generation)
        for claim, _ in decide.admitted:
            job = jobs[claim.uid]
            ledger.add(Claim(uid=claim.uid, key=claim.key, kind="job", quota=claim.quota, request=claim.request,
                             admitted_order=int(t * NS) + len(running)))
            job.size, job.started, job.ran, running[job.uid] = job.floor, t, 0.0, job
            if job.leaf == G:
                out.waits_s.append(t - job.arrived)
        for claim, _ in decide.admitted:  # started at what fits after the pass's admissions and every waiting job
            job = jobs[claim.uid]
            if job.workers > job.floor:
                grow(job, fitting(job.workers - job.floor, after_waiting()), t)
        for victim, _ in decide.growth_victims:
            owner = running[victim.growth_of]
            created = next(c for u, c in owner.pods if u == victim.uid)
            owner.pods = [(u, c) for u, c in owner.pods if u != victim.uid]
            owner.size -= 1
            out.lost_worker_s += min(t - created, CHECKPOINT_S)
            out.shrunk_workers += 1
            world.going.add(victim.uid)
            gone.append((t + TERMINATE_S, victim.uid))
        for victim, _ in decide.victims:
            job = running.pop(victim.uid)
            out.lost_worker_s += job.ran
            out.restarted += 1
            for uid, _ in job.pods:
                ledger.remove(uid)  # its growth goes with it (no pod deletion of its own)
            job.pods, job.work = [], job.workers * WORK_S if job.leaf == B else job.work + job.ran
            world.going.add(victim.uid)
            gone.append((t + TERMINATE_S, victim.uid))  # requeued at its original place once its pods are gone
        if shrink and not decide.admitted:  # expansions: a pass that admits nobody, after every waiting job
            for job in sorted(running.values(), key=lambda j: j.arrived):
                if job.leaf == B and job.size < job.workers and not world.going:
                    grow(job, fitting(job.workers - job.size, after_waiting()), t)
        return bool(decide.admitted or decide.victims or decide.growth_victims)

    t, arrivals_left = 0.0, list(arrivals)
    while t < end_s:
        while taken < len(borrowers) and borrowers[taken][0] <= t:
            at, workers, elastic = borrowers[taken]
            taken += 1
            enqueue(_Job(f"b{taken:04d}", B, workers, max(1, workers // 4) if elastic and shrink else workers,
                         workers * WORK_S, at))
        for _ in range(5):
            if not one_pass(t):
                break
        ends = [(t + (j.work / j.size if j.leaf == B else j.work), j.uid) for j in running.values() if j.size]
        candidates = [end_s, *(e for e, _ in ends), *(w for w, _ in gone)]
        if arrivals_left:
            candidates.append(arrivals_left[0][0])
        if taken < len(borrowers):
            candidates.append(borrowers[taken][0])
        t_next = max(t, min(candidates))
        for job in running.values():
            step = (t_next - t) * (job.size if job.leaf == B else 1)
            job.work -= step
            job.ran += step
        t = t_next
        for end, uid in ends:
            if end <= t + 1e-6 and uid in running:
                job = running.pop(uid)
                for pod, _ in job.pods:
                    ledger.remove(pod)
                ledger.remove(uid)
                out.finished += 1
        heapq.heapify(gone)
        while gone and gone[0][0] <= t:
            _, uid = heapq.heappop(gone)
            world.going.discard(uid)
            if uid in ledger:
                ledger.remove(uid)
            if uid in jobs and uid not in running:
                enqueue(jobs[uid], int(jobs[uid].arrived * NS))
        while arrivals_left and arrivals_left[0][0] <= t:
            at, cpu, runtime = arrivals_left.pop(0)
            seq += 1
            enqueue(_Job(f"g{seq:05d}", G, cpu // 2 - 1, cpu // 2 - 1, runtime, at))
        queues.retry_now()
    return out


def compare(hours: float = 24.0, seed: int = 21, borrow_s: float = BORROW_S) -> dict[str, Any]:
    shrink, whole = simulate(True, hours, seed, borrow_s), simulate(False, hours, seed, borrow_s)
    a, b = shrink.report(), whole.report()
    ratio = a["lost_worker_hours"] / b["lost_worker_hours"] if b["lost_worker_hours"] else 0.0
    return {"hours": hours, "seed": seed, "borrow_s": borrow_s, "runs": [a, b], "lost_ratio": round(ratio, 3),
            "goals": {"lost_at_most_half": ratio <= 0.5,
                      "median_wait_no_longer": (a["claimant_median_wait_s"] or 0) <= (b["claimant_median_wait_s"] or 0)}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--borrow-s", type=float, default=BORROW_S, help="mean seconds between borrowing jobs")
    parser.add_argument("--quick", action="store_true", help="6 simulated hours")
    args = parser.parse_args(argv)
    report = compare(6.0 if args.quick else args.hours, args.seed, args.borrow_s)
    for run in report["runs"]:
        print(f"{run['policy']:>18}: lost {run['lost_worker_hours']:>7} worker-h, restarted {run['jobs_restarted']:>4}, "
              f"workers removed {run['workers_removed']:>5}, claimants' median wait {run['claimant_median_wait_s']} s "
              f"({run['claimants']} claimants), {run['jobs_finished']} jobs finished")
    print(f"lost worker-time ratio {report['lost_ratio']}; goals {report['goals']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
