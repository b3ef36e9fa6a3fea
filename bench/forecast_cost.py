"""What a forecast of every waiting job costs, and what it does to /filter (issue 22, item 4).

Run it with `python -m bench.forecast_cost` (`--quick`: shorter phases, fewer repeats). Two parts, each in one run:

* cost: one replay (``common.start_times.replay``, estimates and the leaves' forecasts, what the controller
  runs) over 1,000 and 10,000 waiting jobs on bench/estimate.py's cost world (bench/queues.py's 100-leaf tree,
  500 running jobs of declared runtimes, waiting jobs of 2 or 4 CPU with the leaf's runtime history), the
  replay before this change (tests/unit/start_times_reference.py) against today's, same inputs, best of N,
  their results compared; then the whole round trip the extender makes (snapshot packed on the event loop,
  replayed in the worker process, unpacked); then the forecast the controller publishes, P50 and P90 of every
  waiting job (``common.estimate_range.ranged_replay``: the deterministic replay and its sampled futures) with a
  learned history in every leaf (``learned_world``: actual/declared ratios around 1, passing arrivals), in the
  process and through the worker.
* /filter: the real Service (its cache: 1,000 nodes, their bound pods, the waiting RayJobs with declared
  runtimes, and the ~300 the controller admitted when it settled, against bench/verbs_load.py's in-memory API),
  its aiohttp app on 127.0.0.1, and a spawned client sending /filter one after the other (a plain pod and gang
  members, as in bench/verbs_load.py). Phases of the same run: no forecast; forecasts back to back (snapshot
  on the loop each time, as the controller takes it) in a worker thread with the old replay (as shipped
  before), in a thread with today's, in the worker process with today's (the cache's Queues have no learned
  history: a lower bound only, one replay), and in the worker process with the P50 and P90 (the snapshot given
  ``learned_world``'s history: the sampled futures too, as shipped once the leaves have learned). Back to back
  is the worst case: the controller forecasts at most every 5 s.

The machine is shared: the load average is recorded at the start and end of each part; figures taken above
1.5 are labelled "under load, not a figure" (ratios from the same run stay meaningful). Nothing asserts. Results: stdout and
bench/results/forecast_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import math
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.extender import (
    GANG,
    PODS_PER_NODE,
    ROOT,
    BenchService,
    bound_pod,
    gang_job,
    gang_pods,
    lone_pod,
    node_dict,
    request_body,
    settings,
)
from bench.loadgen import finish_report
from bench.queues import rayjob_dict, tree_dict
from bench.verbs_load import MemoryApi, Recording, _client, _summary
from bench.webhook import machine
from common import keys
from common.clock import SystemClock
from common.estimate_learning import Arrival, Learned
from common.estimate_range import SAMPLES as RANGE_SAMPLES
from common.estimate_range import ranged_replay
from common.gotime import from_datetime
from common.ledger import Claim, Ledger
from common.queueing import QueueItem
from common.quota_tree import QuotaTree
from common.resources import Resources
from common.start_times import HISTORY_SIZE, NS, Running, Waiting, replay, runtime_of
from extender import estimates
from extender.app import settle_memory
from extender.controller import Controller
from extender.forecaster import Forecaster, pack, run_packed, unpack_replay
from kubeio.events import EventRecorder
from kubeio.scopes import TREES
from tests.unit import start_times_reference as reference

RESULTS: Final = ROOT / "bench" / "results" / "forecast_cost.json"
T0: Final = 1_736_472_984 * NS
SIZES: Final = (1_000, 10_000)
LOADED: Final = 1.5  # load average above which a figure is "under load"
GOAL_MS: Final = {1_000: 200.0, 10_000: 1000.0}  # a forecast of every waiting job, P50 and P90
SAMPLES: Final = (8, 16)  # sampled futures per forecast (the ranges), besides the deterministic replay
NODES: Final = 1000


def loadavg() -> float:
    return round(os.getloadavg()[0], 2)


# --- part 1: the cost of one replay ---------------------------------------------------------------------
def cost_world(n_waiting: int) -> tuple[Ledger, list[Running], list[Waiting]]:
    """bench/estimate.py's cost world (same seed, same shapes)."""
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
    return ledger, running, waiting


def learned_world(tree: QuotaTree, seed: int = 0) -> dict[str, Learned]:
    """A learned history for every leaf, as a controller that watched for two hours would keep it: 20
    actual/declared ratios (lognormal around 1, sigma 0.25) and 3 passing arrivals (priority 10, 2 CPU, declared
    1-30 min) over the last two hours, so every range is sampled (none is a lower bound only)."""
    rng = random.Random(seed)
    out = {}
    for leaf in tree.leaves():
        ratios = tuple(round(rng.lognormvariate(0, 0.25), 3) for _ in range(20))
        arrivals = sorted((Arrival(T0 - rng.randrange(60, 7200) * NS, 10, Resources({"cpu": 2000}),
                                   float(rng.randrange(60, 1800))) for _ in range(3)), key=lambda a: a.at_ns)
        out[leaf.full_name] = Learned(ratios, tuple(arrivals), T0 - 7200 * NS)
    return out


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _same(new: Any, old: Any) -> bool:
    def fields(e: Any) -> tuple[Any, ...]:
        return e.uid, e.key, e.quota, e.start_ns, e.message, e.reason, e.waits_for

    return ({u: fields(e) for u, e in new.estimates.items()} == {u: fields(e) for u, e in old.estimates.items()}
            and {leaf: repr(f) for leaf, f in new.forecasts.items()} == {leaf: repr(f) for leaf, f in old.forecasts.items()})


def cost(n: int, repeat: int, forecaster: Forecaster) -> dict[str, Any]:
    ledger, running, waiting = cost_world(n)
    load = loadavg()
    old_s, old = _best(lambda: reference.replay(ledger, running, waiting, T0), max(1, repeat // 2))  # type: ignore[arg-type]
    new_s, new = _best(lambda: replay(ledger, running, waiting, T0), repeat)
    snap = estimates.EstimateInputs(ledger.copy(), tuple(running), tuple(waiting), {}, T0)
    pack_s, packed = _best(lambda: pack(snap), repeat)
    unpack_s, _ = _best(lambda: unpack_replay(run_packed(packed)), 1)  # type: ignore[arg-type]

    async def round_trip() -> float:
        best = math.inf
        for _ in range(repeat):
            t = time.perf_counter()
            await forecaster.compute(snap)
            best = min(best, time.perf_counter() - t)
        return best

    trip_s = asyncio.run(round_trip())
    learned = learned_world(ledger.tree)
    history = {leaf.full_name: tuple(float(s) for s in range(60, 3600, 100)) for leaf in ledger.tree.leaves()}
    ranged = estimates.EstimateInputs(ledger.copy(), tuple(running), tuple(waiting), {}, T0, learned, history)
    range_load = loadavg()
    range_s, found = _best(lambda: ranged_replay(ledger, running, waiting, T0, learned=learned, runtimes=history),
                           max(1, repeat // 2))

    async def range_trip() -> float:
        t = time.perf_counter()
        await forecaster.compute(ranged)
        return time.perf_counter() - t

    range_trip_s = asyncio.run(range_trip())
    sampled = sum(1 for e in found.estimates.values() if getattr(e, "latest_ns", None) is not None)  # type: ignore[attr-defined]
    with_a_time = sum(1 for e in new.estimates.values() if e.start_ns is not None)  # type: ignore[attr-defined]
    row: dict[str, Any] = {
        "waiting": n, "running": len(running), "loadavg": load, "under_load": load > LOADED,
        "old_ms": round(old_s * 1000, 1), "new_ms": round(new_s * 1000, 1), "ratio_new_old": round(new_s / old_s, 3),
        "identical": _same(new, old), "with_a_time": with_a_time,
        "pack_on_loop_ms": round(pack_s * 1000, 1), "worker_round_trip_ms": round(trip_s * 1000, 1),
        "in_process_replay_with_packing_ms": round(unpack_s * 1000, 1),
    }
    row["projected_ms"] = {f"1+{s}": round(new_s * 1000 * (1 + s), 0) for s in SAMPLES}
    row["range"] = {"samples": RANGE_SAMPLES, "loadavg": range_load, "under_load": range_load > LOADED,
                    "p50_p90_ms": round(range_s * 1000, 1), "through_worker_ms": round(range_trip_s * 1000, 1),
                    "jobs_with_a_p90": sampled, "within_goal": range_s * 1000 <= GOAL_MS.get(n, math.inf)}
    row["goal_ms"] = GOAL_MS.get(n)
    row["replays_within_goal"] = int(GOAL_MS[n] / (new_s * 1000)) if n in GOAL_MS else None
    return row


# --- part 2: /filter with and without forecasts --------------------------------------------------------
PHASES: Final = ("none", "thread-old", "thread-new", "process-new", "process-range")


async def _filter_arm(waiting: int, conn: Connection, seconds: float, forecaster: Forecaster) -> dict[str, Any]:
    clock = SystemClock()
    service = BenchService(settings(), None, clock)
    api = MemoryApi()
    controller = Controller(service.cache, api, EventRecorder(api, "rayqueue-extender", clock),  # type: ignore[arg-type]
                            clock, CollectorRegistry(), resync_seconds=30.0, estimate_seconds=1e9)
    api.controller = controller
    recording = Recording(controller)
    cache = service.cache
    tree = tree_dict()
    cache.on_tree("ADDED", tree)
    api.objects[TREES.path(keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME)] = copy.deepcopy(tree)
    for i in range(NODES):
        cache.on_node("ADDED", node_dict(i))
    for i in range(NODES * PODS_PER_NODE):
        cache.on_pod("ADDED", bound_pod(i, NODES))
    cache.on_rayjob("ADDED", gang_job(GANG))
    gang = gang_pods(GANG)
    for pod in gang:
        cache.on_pod("ADDED", pod)
    lone = lone_pod()
    cache.on_pod("ADDED", lone)
    rng = random.Random(waiting)
    for i in range(waiting):
        obj = rayjob_dict(i)
        obj["metadata"].setdefault("annotations", {})[keys.EXPECTED_RUNTIME] = f"{rng.randrange(60, 3600)}s"
        api.objects[f"/apis/ray.io/v1/namespaces/{obj['metadata']['namespace']}/rayjobs/{obj['metadata']['name']}"] = (
            copy.deepcopy(obj))
        cache.on_rayjob("ADDED", obj)
    settle_memory()
    bodies = [request_body(lone, NODES), *(request_body(p, NODES) for p in gang[1:4])]
    runner = web.AppRunner(service.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop_task = asyncio.ensure_future(controller.run(stop))
    out: dict[str, Any] = {"waiting": waiting, "nodes": NODES}
    try:
        t = time.perf_counter()
        for _ in range(600):  # up to 2 minutes: Queues, QueueUnits, the ~300 admitted
            if recording.quiet():
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        out["settle_s"] = round(time.perf_counter() - t, 1)
        stop.set()
        await asyncio.gather(loop_task, return_exceptions=True)
        out["running"] = sum(1 for c in cache.ledger.claims() if c.kind == "job") if cache.ledger else 0
        out["phases"] = {}
        for name in PHASES:
            out["phases"][name] = await _phase(name, cache, port, bodies, conn, seconds, forecaster)
    finally:
        stop.set()
        await asyncio.gather(loop_task, return_exceptions=True)
        await runner.cleanup()
    none = out["phases"]["none"]["p99_ms"]
    out["p99_ratio_to_none"] = {k: round(v["p99_ms"] / none, 2) if none else None for k, v in out["phases"].items()}
    return out


async def _phase(name: str, cache: Any, port: int, bodies: Sequence[bytes], conn: Connection, seconds: float,
                 forecaster: Forecaster) -> dict[str, Any]:
    load = loadavg()
    conn.send((port, list(bodies), seconds))
    snap_ms: list[float] = []
    forecast_ms: list[float] = []
    end = time.perf_counter() + seconds
    while name != "none" and time.perf_counter() < end:
        t = time.perf_counter()
        now_ns = from_datetime(dt.datetime.now(dt.UTC))
        if name == "thread-old":  # as shipped before: the snapshot in one go on the loop
            snap = estimates.snapshot(cache, now_ns)
            snap_ms.append((time.perf_counter() - t) * 1000)
        else:  # as the controller takes it now: in slices, the verbs answered in between
            steps, slowest = estimates.snapshot_steps(cache, now_ns), 0.0
            while True:
                s = time.perf_counter()
                try:
                    next(steps)
                except StopIteration as done:
                    snap = done.value
                    break
                finally:
                    slowest = max(slowest, time.perf_counter() - s)
                await asyncio.sleep(0)
            snap_ms.append(slowest * 1000)
        assert snap is not None
        if name == "thread-old":
            await asyncio.to_thread(reference.replay, snap.ledger, snap.running, snap.waiting, snap.now_ns,  # type: ignore[arg-type]
                                    policies=snap.policies)
        elif name == "thread-new":
            await asyncio.to_thread(estimates.compute, snap)
        elif name == "process-new":
            await forecaster.compute(snap)
        else:  # the P50 and P90 with every leaf's learned history (the sampled futures)
            await forecaster.compute(replace(snap, learned=learned_world(snap.ledger.tree),
                                             runtimes={leaf: tuple(float(s) for s in range(60, 3600, 100))
                                                       for leaf in snap.policies}))
        forecast_ms.append((time.perf_counter() - t) * 1000)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    if not conn.poll():
        conn.send("stop")
    for _ in range(1200):
        if conn.poll():
            break
        await asyncio.sleep(0.05)
    latencies, errors = conn.recv()
    row = {**_summary(latencies, errors), "loadavg": load, "under_load": load > LOADED, "forecasts": len(forecast_ms)}
    if forecast_ms:
        row["forecast_ms_median"] = round(sorted(forecast_ms)[len(forecast_ms) // 2], 1)
        row["snapshot_on_loop_ms_max"] = round(max(snap_ms), 1)
    return row


# --- report --------------------------------------------------------------------------------------------
def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nforecast cost, {report['date']}: {m['nproc']} CPUs, load {m['loadavg_at_start'][0]:.2f} -> "
          f"{m['loadavg_at_end'][0]:.2f}")
    for r in report["cost"]:
        label = " (under load, not a figure)" if r["under_load"] else ""
        print(f"  {r['waiting']:>6} waiting, load {r['loadavg']}{label}: one replay {r['new_ms']} ms, before "
              f"{r['old_ms']} ms: ratio {r['ratio_new_old']} (identical: {r['identical']}); through the worker "
              f"{r['worker_round_trip_ms']} ms (packing on the loop {r['pack_on_loop_ms']} ms); 1+8 replays "
              f"{r['projected_ms']['1+8']:.0f} ms, 1+16 {r['projected_ms']['1+16']:.0f} ms (goal {r['goal_ms']:.0f} ms: "
              f"{r['replays_within_goal']} replays fit)")
        g = r["range"]
        label = " (under load, not a figure)" if g["under_load"] else ""
        print(f"         P50 and P90 ({g['samples']} sampled futures), load {g['loadavg']}{label}: {g['p50_p90_ms']} ms, "
              f"through the worker {g['through_worker_ms']} ms, {g['jobs_with_a_p90']} jobs with a P90 "
              f"(goal {r['goal_ms']:.0f} ms: {'met' if g['within_goal'] else 'not met'})")
    for arm in report["filter"]:
        print(f"  /filter, {arm['waiting']} waiting ({arm['running']} running, {arm['nodes']} nodes):")
        for name, p in arm["phases"].items():
            label = " (under load, not a figure)" if p["under_load"] else ""
            extra = (f"; {p['forecasts']} forecasts, median {p['forecast_ms_median']} ms, the loop held by the snapshot "
                     f"up to {p['snapshot_on_loop_ms_max']} ms at once" if p["forecasts"] else "")
            print(f"    {name:<12} p50 {p['p50_ms']:7.2f}  p99 {p['p99_ms']:7.2f}  max {p['max_ms']:8.2f} ms "
                  f"({p['requests']} requests, load {p['loadavg']}{label}){extra}")
        print(f"    p99 / no forecast: {arm['p99_ratio_to_none']}")
    print(f"written: {report['written_to']}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.forecast_cost", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 s phases, fewer repeats")
    p.add_argument("--no-filter", action="store_true", help="only the cost part")
    p.add_argument("--out", type=type(RESULTS), default=RESULTS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    repeat, seconds = (2, 4.0) if args.quick else (5, 8.0)
    report: dict[str, Any] = {"benchmark": "forecast_cost", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": machine(), "settings": {"repeat": repeat, "phase_s": seconds}}
    forecaster = Forecaster()
    asyncio.run(forecaster.warm())
    try:
        report["cost"] = []
        for n in SIZES:
            print(f"cost at {n} waiting jobs (load {loadavg()}) ...", flush=True)
            report["cost"].append(cost(n, repeat, forecaster))
        report["filter"] = []
        if not args.no_filter:
            ctx = multiprocessing.get_context("spawn")
            conn, child = ctx.Pipe()
            client = ctx.Process(target=_client, args=(child,), name="bench-forecast-client", daemon=True)
            client.start()
            try:
                for n in SIZES:
                    print(f"/filter with {n} waiting jobs (load {loadavg()}) ...", flush=True)
                    report["filter"].append(asyncio.run(_filter_arm(n, conn, seconds, forecaster)))
            finally:
                conn.send(None)
                client.join(10)
                if client.is_alive():
                    client.terminate()
    finally:
        forecaster.close()
    finish_report(report, args.out, started)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
