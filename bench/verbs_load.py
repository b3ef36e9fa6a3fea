"""The verbs under the controller's load: /filter latency over HTTP while 1,000 RayJobs arrive on top of 10,000.

Run it with `python -m bench.verbs_load` (`--quick`: 2,000 waiting + 200 arriving, 1,000 nodes). One
process holds what the extender holds: the real extender.app.Service (its cache fed node, pod and RayJob
dicts), its aiohttp app on 127.0.0.1, and the real extender.controller.Controller running its loop against
an in-memory API (``MemoryApi``: stores what is created, merge-patches, refuses a stale resourceVersion
with 409, answers after ``API_LATENCY`` s, and sends the watch event of every RayJob patch back through
``Controller.deliver``, as the reflector would). Another process (spawned) sends /filter requests one
after the other, alternating a plain pod (5,000 nodes to fit) and a 31-member gang's members, and records
each latency.

Per arm, in the same run: the *idle* phase (10,000 jobs waiting, nothing changing) is the baseline; the
*burst* phase delivers 1,000 RayJob ADDED events, one per loop turn as the reflector does, and measures
until the controller has planned, written and gone quiet again. Arms: ``sliced`` (the shipped loop:
reconcile in slices on a held snapshot) and ``whole`` (the previous loop: one reconcile call between two
awaits), so the report shows what the change bought. Goal (issue 13): burst p99 < 20 ms, max < 50 ms.
Bounded: every phase stops at its deadline. Results: stdout and bench/results/verbs_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import gc
import http.client
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
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
from bench.loadgen import finish_report, percentile
from bench.queues import rayjob_dict, tree_dict
from bench.webhook import machine
from common import keys
from common.clock import SystemClock
from extender.actions import Plan
from extender.app import settle_memory
from extender.controller import Controller
from kubeio.client import ApiError
from kubeio.events import EventRecorder
from kubeio.scopes import TREES
from tests.unit.builders import apply_merge_patch

__all__ = ["MemoryApi", "main"]

RESULTS: Final = ROOT / "bench" / "results" / "verbs_load.json"
API_LATENCY: Final = 0.003  # seconds per API write, about what a local kube-apiserver takes
GOAL_P99_MS: Final = 20.0
GOAL_MAX_MS: Final = 50.0


# --- the API the controller writes to ------------------------------------------------------------------
class MemoryApi:
    """Just enough of kube-apiserver for the controller's writes (see the module docstring)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.controller: Controller | None = None
        self.writes = 0
        self._serial = 1_000_000

    def _rv(self) -> str:
        self._serial += 1
        return str(self._serial)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(API_LATENCY)
        self.writes += 1
        if path.endswith("/events"):
            return body
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = f"{meta.get('generateName', 'x-')}{self._serial:x}"
        key = f"{path}/{meta['name']}"
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{meta['name']} already exists", "POST", path)
        meta.update(uid=f"uid-{self._serial}", resourceVersion=self._rv(), creationTimestamp="2025-01-10T01:00:00Z")
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def patch(self, path: str, body: dict[str, Any], content_type: str = "") -> dict[str, Any]:
        await asyncio.sleep(API_LATENCY)
        self.writes += 1
        key = path.removesuffix("/status")
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f"{key} not found", "PATCH", path)
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want and want != obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified", "PATCH", path)
        patch = copy.deepcopy(body)
        patch.get("metadata", {}).pop("resourceVersion", None)
        apply_merge_patch(obj, patch)
        obj["metadata"]["resourceVersion"] = self._rv()
        if "/rayjobs/" in key and self.controller is not None:  # the watch shows the patched RayJob
            cache = self.controller.cache
            asyncio.get_running_loop().call_later(0.01, self.controller.deliver, cache.on_rayjob, "MODIFIED",
                                                  copy.deepcopy(obj))
        return copy.deepcopy(obj)

    async def delete(self, path: str) -> dict[str, Any]:
        await asyncio.sleep(API_LATENCY)
        self.writes += 1
        self.objects.pop(path, None)
        return {}


class WholeController(Controller):
    """The loop before issue 13: the whole reconcile between two awaits, events applied as they come."""

    async def plan_sliced(self) -> Plan:
        return self.plan()


class Recording:
    """Wraps a controller's plan step to record each pass: wall time and how many actions it planned."""

    def __init__(self, controller: Controller) -> None:
        self.passes: list[tuple[float, int]] = []
        inner = controller.plan_sliced

        async def recorded() -> Plan:
            t = time.perf_counter()
            plan = await inner()
            self.passes.append((time.perf_counter() - t, len(plan)))
            return plan

        controller.plan_sliced = recorded  # type: ignore[method-assign]

    def quiet(self) -> bool:
        return bool(self.passes) and self.passes[-1][1] == 0


class GcPauses:
    """Collector pauses of this process (gc.callbacks): the verbs wait for them like for any other work."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._started) * 1000))

    def since(self, mark: int) -> dict[str, Any]:
        rows = self.pauses[mark:]
        return {"collections": len(rows), "longest_ms": round(max((p for _, p in rows), default=0.0), 1),
                "gen2": sum(1 for g, _ in rows if g == 2)}

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


# --- the client process -------------------------------------------------------------------------------
def _client(conn: Connection) -> None:
    """Send each body in turn to /filter until told the phase is over; answer the latencies (ms)."""
    while True:
        job = conn.recv()
        if job is None:
            return
        if job == "stop":  # a stop sent as this phase ended by itself: already answered
            continue
        port, bodies, max_seconds = job
        http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + max_seconds
        i = 0
        while time.monotonic() < deadline and not conn.poll():
            t = time.perf_counter()
            http_conn.request("POST", "/filter", body=bodies[i % len(bodies)],
                              headers={"Content-Type": "application/json"})
            resp = http_conn.getresponse()
            resp.read()
            if resp.status == 200:
                latencies.append((time.perf_counter() - t) * 1000)
            else:
                errors += 1
            i += 1
        if conn.poll():
            conn.recv()  # the stop signal
        http_conn.close()
        conn.send((latencies, errors))


def _summary(latencies: list[float], errors: int) -> dict[str, Any]:
    s = sorted(latencies)
    return {"requests": len(s), "errors": errors, "p50_ms": round(percentile(s, 50), 2),
            "p90_ms": round(percentile(s, 90), 2), "p99_ms": round(percentile(s, 99), 2),
            "max_ms": round(s[-1], 2) if s else 0.0}


# --- one arm -------------------------------------------------------------------------------------------
async def _arm(name: str, nodes: int, waiting: int, arriving: int, conn: Connection, max_seconds: float) -> dict[str, Any]:
    clock = SystemClock()
    service = BenchService(settings(), None, clock)
    api = MemoryApi()
    klass = WholeController if name == "whole" else Controller
    controller = klass(service.cache, api, EventRecorder(api, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                       CollectorRegistry(), resync_seconds=30.0)
    api.controller = controller
    recording = Recording(controller)
    cache = service.cache
    t = time.perf_counter()
    tree = tree_dict()
    cache.on_tree("ADDED", tree)
    api.objects[TREES.path(keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME)] = copy.deepcopy(tree)
    for i in range(nodes):
        cache.on_node("ADDED", node_dict(i))
    for i in range(nodes * PODS_PER_NODE):
        cache.on_pod("ADDED", bound_pod(i, nodes))
    cache.on_rayjob("ADDED", gang_job(GANG))
    gang = gang_pods(GANG)
    for pod in gang:
        cache.on_pod("ADDED", pod)
    lone = lone_pod()
    cache.on_pod("ADDED", lone)
    jobs = [rayjob_dict(i) for i in range(waiting + arriving)]
    for obj in jobs:
        api.objects[f"/apis/ray.io/v1/namespaces/{obj['metadata']['namespace']}/rayjobs/{obj['metadata']['name']}"] = (
            copy.deepcopy(obj))
    for obj in jobs[:waiting]:
        cache.on_rayjob("ADDED", copy.deepcopy(obj))
    feed_s = time.perf_counter() - t
    settle_memory()  # what extender.app.run does once the cache is synced
    bodies = [request_body(lone, nodes), *(request_body(p, nodes) for p in gang[1:4])]

    runner = web.AppRunner(service.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop_task = asyncio.ensure_future(controller.run(stop))
    pauses = GcPauses()
    out: dict[str, Any] = {"arm": name, "nodes": nodes, "pods": nodes * PODS_PER_NODE + GANG + 1,
                           "waiting": waiting, "arriving": arriving, "feed_s": round(feed_s, 1)}
    try:
        t = time.perf_counter()
        for _ in range(int(max_seconds * 4 / 0.2)):  # cold start: Queues, QueueUnits, statuses
            if recording.quiet():
                break
            await asyncio.sleep(0.2)
        out["settle_s"] = round(time.perf_counter() - t, 1)
        out["settle_passes"] = len(recording.passes)

        async def phase(seconds: float, during: Any = None) -> dict[str, Any]:
            mark = len(pauses.pauses)
            conn.send((port, bodies, seconds))
            result: dict[str, Any] = {}
            if during is not None:
                result = await during()
            else:
                await asyncio.sleep(seconds)
            if not conn.poll():
                conn.send("stop")
            for _ in range(1200):  # the client answers within its current request
                if conn.poll():
                    break
                await asyncio.sleep(0.05)
            latencies, errors = conn.recv()
            return {**_summary(latencies, errors), **result, "gc": pauses.since(mark)}

        out["idle"] = await phase(min(10.0, max_seconds))

        async def burst() -> dict[str, Any]:
            await asyncio.sleep(1.0)
            before = len(recording.passes)
            writes = api.writes
            started = time.perf_counter()
            for obj in jobs[waiting:]:  # one watch event per loop turn, as the reflector delivers them
                controller.deliver(cache.on_rayjob, "ADDED", copy.deepcopy(obj))
                await asyncio.sleep(0)
            delivered = time.perf_counter() - started
            end = started + max_seconds
            while time.perf_counter() < end:
                await asyncio.sleep(0.1)
                if len(recording.passes) > before + 1 and recording.quiet() and not controller.wake.is_set():
                    break
            passes = recording.passes[before:]
            return {"delivered_s": round(delivered, 2), "quiet_after_s": round(time.perf_counter() - started, 1),
                    "quiet": recording.quiet(), "passes": len(passes),
                    "longest_pass_ms": round(max((p for p, _ in passes), default=0) * 1000, 1),
                    "api_writes": api.writes - writes}

        out["burst"] = await phase(max_seconds, burst)
    finally:
        stop.set()
        await asyncio.gather(loop_task, return_exceptions=True)
        await runner.cleanup()
        pauses.close()
        gc.unfreeze()
    admitted = sum(1 for j in jobs if cache.dequeue_ns(j["metadata"]["uid"]) is not None)
    out["admitted"] = admitted
    return out


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nverbs under the controller's load, {report['date']}: {m['nproc']} CPUs, load {m.get('loadavg')}")
    for r in report["arms"]:
        print(f"  arm {r['arm']:<6} {r['nodes']} nodes, {r['pods']} pods, {r['waiting']} waiting + {r['arriving']} "
              f"arriving (fed in {r['feed_s']} s, settled in {r['settle_s']} s)")
        for phase in ("idle", "burst"):
            p = r[phase]
            print(f"    {phase:<5} /filter p50 {p['p50_ms']:7.2f}  p99 {p['p99_ms']:7.2f}  max {p['max_ms']:8.2f} ms  "
                  f"({p['requests']} requests; {p['gc']['collections']} GC runs, longest {p['gc']['longest_ms']} ms)")
        b = r["burst"]
        print(f"    burst: {b['passes']} passes, longest {b['longest_pass_ms']} ms, quiet after {b['quiet_after_s']} s, "
              f"{b['api_writes']} API writes; p99 ratio burst/idle {r['p99_ratio']}")
    for line in report["verdicts"]:
        print(f"  {line}")
    print(f"written: {report['written_to']}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.verbs_load", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1,000 nodes, 2,000 waiting + 200 arriving")
    p.add_argument("--arm", choices=["sliced", "whole"], action="append", help="arms to run (default both)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="per phase (default 60)")
    p.add_argument("--out", type=type(RESULTS), default=RESULTS)
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    nodes, waiting, arriving = (1000, 2000, 200) if args.quick else (5000, 10_000, 1000)
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    client = ctx.Process(target=_client, args=(child,), name="bench-verbs-client", daemon=True)
    client.start()
    report: dict[str, Any] = {"benchmark": "verbs_load", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": {**machine(), "loadavg": os.getloadavg()},
                              "settings": {"api_latency_s": API_LATENCY, "max_seconds": args.max_seconds}}
    arms = []
    try:
        for arm in args.arm or ["sliced", "whole"]:
            print(f"arm {arm}: {nodes} nodes, {waiting} waiting, {arriving} arriving ...", flush=True)
            row = asyncio.run(_arm(arm, nodes, waiting, arriving, conn, args.max_seconds))
            row["p99_ratio"] = round(row["burst"]["p99_ms"] / row["idle"]["p99_ms"], 2) if row["idle"]["p99_ms"] else None
            arms.append(row)
    finally:
        conn.send(None)
        client.join(10)
        if client.is_alive():
            client.terminate()
    report["arms"] = arms
    verdicts = []
    for r in arms:
        b = r["burst"]
        met = b["p99_ms"] < GOAL_P99_MS and b["max_ms"] < GOAL_MAX_MS
        verdicts.append(f"{r['arm']}: burst p99 {b['p99_ms']} ms (goal < {GOAL_P99_MS}), max {b['max_ms']} ms "
                        f"(goal < {GOAL_MAX_MS}): {'met' if met else 'NOT met'}")
    report["verdicts"] = verdicts
    finish_report(report, args.out, started)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
