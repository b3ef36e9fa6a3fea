"""The queueing benchmark: ordering, admission passes, per-event updates and reconcile, at 1k / 10k / 100k jobs.

Run it with `python -m bench.queues` (`--quick` for a smoke run). A 3-level ElasticQuotaTree built here
(root -> 10 departments -> 10 teams each: 100 leaves, one namespace each) and RayJobs spread over its
leaves. Two levels are timed:

* pure (`common/`): common.queueing.Queues and common.ledger.Ledger with QueueItems and Claims built
  directly, at 1,000, 10,000 and 100,000 jobs: insert all, one full admission pass (Queues.schedule with
  ledger.check / ledger.add), a priority change, an admission (remove + add), a release (remove +
  Queues.retry_now, as the cache does); the growth of each cost per 10x more jobs is reported;
* the controller (`extender/`): an extender.cache.Cache fed RayJob dicts through on_rayjob, at 1,000 and
  10,000 jobs: the same events as watch events, and `reconcile(cache, now)` cold (every Queue and
  QueueUnit to create) and after its plan was applied (the steady state).

The baseline of every growth ratio is the same measurement at 10x fewer jobs in the same run. Bounded
in iterations; nothing asserts on time. Results: a table on stdout and bench/results/queues.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import gc
import itertools
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from common.clock import FakeClock
from common.gotime import format_go
from common.ledger import Claim, Decision, Ledger
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaTree
from common.resources import Resources
from extender.actions import (
    Dequeue,
    EnsureQueue,
    EnsureQueueUnit,
    Plan,
    Requeue,
    Suspend,
    UpdateQueueStatus,
    UpdateQueueUnitStatus,
    UpdateTreeStatus,
)
from extender.cache import Cache
from extender.reconcile import reconcile
from tests.unit.builders import apply_merge_patch, make_rayjob

__all__ = ["DEPARTMENTS", "TEAMS", "leaf_namespaces", "main", "rayjob_dict", "tree_dict"]

RESULTS: Final = ROOT / "bench" / "results" / "queues.json"
DEPARTMENTS: Final = 10
TEAMS: Final = 10  # per department: 100 leaves
PURE_SIZES: Final = (1_000, 10_000, 100_000)
CACHE_SIZES: Final = (1_000, 10_000)
T0: Final = 1_736_472_984_000_000_000  # 2025-01-10 01:36:24 UTC
EVENTS: Final = 500  # per-event costs are averaged over this many distinct jobs
T = TypeVar("T")


# --- the tree and the jobs ----------------------------------------------------------------------------
def leaf_namespaces() -> list[str]:
    return [f"d{d}-t{t}" for d in range(DEPARTMENTS) for t in range(TEAMS)]


def tree_dict() -> dict[str, Any]:
    """root (cpu 1,000) -> 10 departments (min 80, max 120) -> 10 teams each (min 6, max 12), one namespace per
    team. Children's mins add up within their parent's min. About 300 jobs of ~4 CPU fit: the rest queue."""
    def node(name: str, cpu_min: int, cpu_max: int, **extra: Any) -> dict[str, Any]:
        return {"name": name, "min": {"cpu": str(cpu_min), "memory": f"{cpu_min * 4}Gi"},
                "max": {"cpu": str(cpu_max), "memory": f"{cpu_max * 4}Gi"}, **extra}

    departments = [
        node(f"d{d}", 80, 120, children=[node(f"t{t}", 6, 12, namespaces=[f"d{d}-t{t}"]) for t in range(TEAMS)])
        for d in range(DEPARTMENTS)
    ]
    return {"apiVersion": "scheduling.sigs.k8s.io/v1beta1", "kind": keys.QUOTA_TREE_KIND,
            "metadata": {"name": keys.QUOTA_TREE_NAME, "namespace": keys.QUOTA_TREE_NAMESPACE, "uid": "tree-uid",
                         "resourceVersion": "1"},
            "spec": {"root": node("root", 1_000, 1_000, children=departments)}}


def _shape(i: int) -> tuple[int, int, int]:
    """(priority, workers, enqueue offset in ms) of job i, from a fixed seed: 1 CPU head + 0-3 workers of 2 CPU."""
    rng = random.Random(i)
    return rng.choice((0, 0, 0, 10, 100)), rng.randrange(4), i * 7 + rng.randrange(5)


def rayjob_dict(i: int, *, managed_fields: bool = False) -> dict[str, Any]:
    """The i-th waiting RayJob as the watch shows it after the webhook queued it (suspended, enqueue stamp)."""
    namespaces = leaf_namespaces()
    ns = namespaces[i % len(namespaces)]
    priority, workers, offset = _shape(i)
    name = f"job-{i:06d}"
    b = (make_rayjob(name, ns).uid(f"7e57{i:08x}-0000-4000-8000-000000000000").submission_mode("HTTPMode")
         .head(cpu="1", memory="4Gi").label(keys.QUOTA_NAME, f"{ns}").enqueued(format_go(T0 + offset * 10**6))
         .set("metadata.resourceVersion", str(1000 + i)).set("metadata.creationTimestamp", "2025-01-10T01:36:24Z"))
    if workers:
        b = b.workers(workers, cpu="2", memory="8Gi")
    if priority:
        b = b.priority(priority)
    obj = b.obj()
    if managed_fields:  # what a list/watch carries unless the client strips it
        obj["metadata"]["managedFields"] = [
            {"manager": "kubectl-create", "operation": "Update", "apiVersion": "ray.io/v1", "time": "2025-01-10T01:36:24Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, f"f:{keys.QUOTA_NAME}": {}}},
                                                   "f:spec": {".": {}, "f:entrypoint": {}, "f:rayClusterSpec": {
                                                       ".": {}, "f:headGroupSpec": {}, "f:workerGroupSpecs": {}},
                                                       "f:shutdownAfterJobFinishes": {}, "f:submissionMode": {}}}},
            {"manager": "rayqueue-webhook", "operation": "Update", "apiVersion": "ray.io/v1",
             "time": "2025-01-10T01:36:24Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, f"f:{keys.ENQUEUE_TIMESTAMP}": {}}},
                          "f:spec": {"f:suspend": {}}}},
        ]
    return obj


def queue_item(i: int) -> QueueItem:
    ns = leaf_namespaces()[i % (DEPARTMENTS * TEAMS)]
    priority, workers, offset = _shape(i)
    d, t = ns.split("-")
    cpu = 1000 + 2000 * workers
    return QueueItem(uid=f"uid-{i:06d}", namespace=ns, name=f"job-{i:06d}", quota=f"root/{d}/{t}", priority=priority,
                     enqueue_ns=T0 + offset * 10**6, request=Resources({"cpu": cpu, "memory": cpu * 4 * 2**20}))


def _claim(item: QueueItem) -> Claim:
    return Claim(uid=item.uid, key=item.key, kind="job", quota=item.quota, request=item.request,
                 priority=item.priority, admitted_order=T0)


# --- timing -------------------------------------------------------------------------------------------
def _clock(fn: Callable[[], object]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _each(op: Callable[[T], object], args: Sequence[T]) -> float:
    """Mean microseconds of calling `op` once on each of `args`."""
    gc.collect()
    t = time.perf_counter()
    for arg in args:
        op(arg)
    return (time.perf_counter() - t) / max(1, len(args)) * 1e6


# --- pure: Queues + Ledger ----------------------------------------------------------------------------
def pure(n: int, tree: QuotaTree, rounds: int) -> dict[str, Any]:
    items = [queue_item(i) for i in range(n)]
    random.Random(n).shuffle(items)  # arrival order is not queue order
    order: list[float] = []
    passes: list[float] = []
    admitted = refused = 0
    queues = Queues(FakeClock())
    ledger = Ledger(tree)
    for _ in range(rounds):
        queues = Queues(FakeClock())
        order.append(_clock(lambda q=queues: [q.upsert(it) for it in items]))  # type: ignore[misc]
        ledger = Ledger(tree)

        def try_admit(item: QueueItem, ledger: Ledger = ledger) -> Decision:
            claim = _claim(item)
            decision = ledger.check(claim)
            if decision:
                ledger.add(claim)
            return decision

        result = None

        def run(q: Queues = queues, f: Callable[[QueueItem], Decision] = try_admit, lg: Ledger = ledger) -> None:
            nonlocal result
            result = q.schedule(f, lg.generation)

        passes.append(_clock(run))
        assert result is not None
        admitted, refused = len(result.admitted), len(result.backed_off)
    # per event, on the state after the last pass (refused items in backoff, admitted ones in the ledger)
    waiting = [it for it in items if it.uid in queues][:EVENTS]
    bumped = [QueueItem(uid=it.uid, namespace=it.namespace, name=it.name, quota=it.quota, priority=it.priority + 1000,
                        enqueue_ns=it.enqueue_ns, request=it.request) for it in waiting]
    def admit(it: QueueItem) -> None:  # what an admission does to both
        queues.remove(it.uid)
        ledger.add(_claim(it))

    def release(uid: str) -> None:  # what Cache._drop_claim does: every backoff ends at once
        ledger.remove(uid)
        queues.retry_now()

    priority_us = _each(queues.upsert, bumped)
    admit_us = _each(admit, bumped[: EVENTS // 2])
    held = [c.uid for c in ledger.claims()][:EVENTS]
    first_release_us = _each(release, held[:1])
    release_us = _each(release, held[1:])
    return {"jobs": n, "leaves": DEPARTMENTS * TEAMS, "rounds": rounds,
            "insert_all_ms": round(min(order) * 1000, 2), "pass_ms": round(min(passes) * 1000, 2),
            "admitted_in_pass": admitted, "refused_in_pass": refused,
            "priority_change_us": round(priority_us, 2), "admit_us": round(admit_us, 2),
            "release_first_us": round(first_release_us, 1), "release_us": round(release_us, 2)}


# --- the controller: Cache + reconcile ---------------------------------------------------------------
class Applier:
    """The I/O loop's effect on the cache, without I/O: what the API would answer, fed back through the handlers."""

    def __init__(self, cache: Cache, tree: dict[str, Any]) -> None:
        self.cache, self.tree = cache, tree
        self.queues: dict[str, dict[str, Any]] = {}
        self.units: dict[tuple[str, str], dict[str, Any]] = {}

    def apply(self, plan: Plan) -> None:
        cache = self.cache
        for action in plan:
            if isinstance(action, Dequeue):
                cache.mark_dequeued(action.job.uid, action.dequeue_ns)
            elif isinstance(action, Suspend | Requeue):
                cache.mark_requeued(action.job.uid)
            elif isinstance(action, EnsureQueue):
                obj = copy.deepcopy(action.object)
                name = obj["metadata"]["generateName"] + "q"
                obj["metadata"].update(name=name, uid=f"uid-{name}", creationTimestamp="2025-01-10T01:00:00Z")
                self.queues[name] = obj
                cache.on_queue("ADDED", obj)
            elif isinstance(action, UpdateQueueStatus):
                queue = self.queues[action.name] = copy.deepcopy(self.queues[action.name])
                queue["status"] = action.status
                cache.on_queue("MODIFIED", queue)
            elif isinstance(action, EnsureQueueUnit):
                unit = copy.deepcopy(action.object)
                unit["status"] = self.units.get((action.namespace, action.name), {}).get("status", {})
                self.units[(action.namespace, action.name)] = unit
                cache.on_queue_unit("MODIFIED", unit)
            elif isinstance(action, UpdateQueueUnitStatus):
                unit = self.units[(action.namespace, action.name)] = copy.deepcopy(
                    self.units[(action.namespace, action.name)])
                apply_merge_patch(unit.setdefault("status", {}), action.status)
                cache.on_queue_unit("MODIFIED", unit)
            elif isinstance(action, UpdateTreeStatus):
                self.tree = {**self.tree, "status": action.status}
                cache.on_tree("MODIFIED", self.tree)


def _kinds(plan: Plan) -> dict[str, int]:
    out: dict[str, int] = {}
    for action in plan:
        out[type(action).__name__] = out.get(type(action).__name__, 0) + 1
    return dict(sorted(out.items()))


def controller(n: int) -> dict[str, Any]:
    clock = FakeClock()
    cache = Cache(clock)
    tree = tree_dict()
    cache.on_tree("ADDED", tree)
    jobs = [rayjob_dict(i) for i in range(n)]
    def feed() -> None:
        for job in jobs:
            cache.on_rayjob("ADDED", job)

    def event(obj: dict[str, Any]) -> None:
        cache.on_rayjob("MODIFIED", obj)

    feed_s = _clock(feed)
    applier = Applier(cache, tree)
    now = T0 + 60 * 10**9
    plans: list[tuple[str, float, Plan]] = []
    for label in ("cold", "second", "steady"):
        out: list[Plan] = []
        spent = _clock(lambda out=out, at=now: out.append(reconcile(cache, at)))  # type: ignore[misc]
        plans.append((label, spent, out[0]))
        applier.apply(out[0])
        clock.advance(1)
        now += 10**9
    admitted = [j for j in jobs if cache.dequeue_ns(j["metadata"]["uid"]) is not None]
    waiting = [j for j in jobs if cache.dequeue_ns(j["metadata"]["uid"]) is None]

    def changed(obj: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        new = copy.deepcopy(obj)
        change(new)
        new["metadata"]["resourceVersion"] = str(int(new["metadata"]["resourceVersion"]) + 100_000)
        return new

    def bump(o: dict[str, Any]) -> None:
        o["metadata"].setdefault("annotations", {})[keys.PRIORITY_OVERRIDE] = "500"

    def confirm(o: dict[str, Any]) -> None:  # the watch shows the controller's dequeue patch
        o["metadata"]["annotations"][keys.DEQUEUE_TIMESTAMP] = format_go(now)
        o["spec"]["suspend"] = False

    def finish(o: dict[str, Any]) -> None:
        o["status"] = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}

    priority_events = [changed(j, bump) for j in waiting[:EVENTS]]
    confirm_events = [changed(j, confirm) for j in admitted[:EVENTS]]
    finish_events = [changed(e, finish) for e in confirm_events]
    priority_us = _each(event, priority_events)
    confirm_us = _each(event, confirm_events)
    finish_us = _each(event, finish_events)
    after: list[Plan] = []
    after_s = _clock(lambda: after.append(reconcile(cache, now)))
    return {
        "jobs": n, "feed_s": round(feed_s, 2), "feed_us_per_job": round(feed_s / n * 1e6, 1),
        "reconcile": [{"pass": label, "ms": round(spent * 1000, 1), "actions": len(plan), "kinds": _kinds(plan)}
                      for label, spent, plan in plans]
        + [{"pass": "after the events", "ms": round(after_s * 1000, 1),
            "actions": len(after[0]), "kinds": _kinds(after[0])}],
        "admitted": len(admitted), "waiting": len(waiting),
        "events": {"priority_change_us": round(priority_us, 1), "dequeue_confirmed_us": round(confirm_us, 1),
                   "job_finished_us": round(finish_us, 1), "priority_changes": len(priority_events),
                   "dequeues_confirmed": len(confirm_events), "jobs_finished": len(finish_events)},
    }


# --- report --------------------------------------------------------------------------------------------
def growth(rows: Sequence[dict[str, Any]], field: str) -> list[float | None]:
    """Each size's figure over the previous (10x fewer jobs) size's: 10 is linear, 1 is constant."""
    out: list[float | None] = [None]
    for prev, cur in itertools.pairwise(rows):
        out.append(round(cur[field] / prev[field], 1) if prev[field] else None)
    return out


PURE_FIELDS: Final = ("insert_all_ms", "pass_ms", "priority_change_us", "admit_us", "release_first_us", "release_us")


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nqueues benchmark, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}")
    print("pure Queues + Ledger, 100 leaves (growth: this size's figure / the previous size's; x10 is linear):")
    print(f"  {'jobs':>7} {'insert all ms':>14} {'pass ms':>9} {'admitted':>9} {'prio us':>8} {'admit us':>9} "
          f"{'release1 us':>12} {'release us':>11}")
    for r in report["pure"]:
        print(f"  {r['jobs']:>7} {r['insert_all_ms']:>14.1f} {r['pass_ms']:>9.1f} {r['admitted_in_pass']:>9} "
              f"{r['priority_change_us']:>8.1f} {r['admit_us']:>9.1f} {r['release_first_us']:>12.0f} "
              f"{r['release_us']:>11.1f}")
    for field, ratios in report["growth"].items():
        print(f"  growth {field:<20} " + "  ".join("-" if g is None else f"x{g}" for g in ratios))
    print("controller: Cache (watch events) + reconcile:")
    for r in report["controller"]:
        e = r["events"]
        print(f"  {r['jobs']:>7} jobs: fed in {r['feed_s']:.1f} s ({r['feed_us_per_job']:.0f} us/job); "
              f"events: priority {e['priority_change_us']:.0f} us, dequeue confirmed {e['dequeue_confirmed_us']:.0f} us, "
              f"finished {e['job_finished_us']:.0f} us; {r['admitted']} admitted")
        for p in r["reconcile"]:
            print(f"      reconcile {p['pass']:<24} {p['ms']:>9.1f} ms  {p['actions']:>6} actions  {p['kinds']}")
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.queues", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="insert-all and pass repetitions (best kept; default 3)")
    p.add_argument("--out", type=type(RESULTS), default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1,000 jobs only, one round")
    args = p.parse_args(list(argv))
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    tree = QuotaTree.parse(tree_dict())
    pure_sizes = PURE_SIZES[:1] if args.quick else PURE_SIZES
    cache_sizes = CACHE_SIZES[:1] if args.quick else CACHE_SIZES
    rounds = 1 if args.quick else args.rounds
    report: dict[str, Any] = {"benchmark": "queues", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": machine(), "settings": {"rounds": rounds, "events": EVENTS,
                                                                 "leaves": DEPARTMENTS * TEAMS}}
    report["pure"] = []
    for n in pure_sizes:
        print(f"pure Queues + Ledger, {n} jobs ...", flush=True)
        report["pure"].append(pure(n, tree, rounds if n < 100_000 else 1))
    report["growth"] = {f: growth(report["pure"], f) for f in PURE_FIELDS}
    report["controller"] = []
    for n in cache_sizes:
        print(f"Cache + reconcile, {n} jobs ...", flush=True)
        report["controller"].append(controller(n))
    finish_report(report, args.out, started)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
