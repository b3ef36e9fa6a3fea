"""The queue controller's API writes per burst of RayJobs, by kind and by the QueueUnit status fields they change.

Run it with `python -m bench.queue_writes` (`--quick`: a tenth of the jobs). One process: the real
extender.controller.Controller loop over a real extender.cache.Cache, against bench.verbs_load's in-memory
API (``MemoryApi``: merge patches, 409 on a stale resourceVersion, ``API_LATENCY`` per write, the watch
event of every RayJob patch delivered back), counting every write by what it writes. Two shapes:

* ``fits``: 1,000 RayJobs arrive (``RATE`` per second, as bench.admission's client creates them) in one
  leaf that fits them all: the shape of bench.admission, whose floor is one patch per job;
* ``queued``: 10,000 RayJobs wait over 100 leaves (about 290 fit), then 1,000 more arrive one per loop
  turn: the shape of bench.verbs_load.

Each shape runs twice in the same run: ``every-change`` (the QueueUnit status policy before issue 13's
write work: a waiting job's status was rewritten whenever its position, the size of its queue or its
refusal's numbers changed, ``_every_change`` below) and ``shipped`` (extender.unit_status as it is). The
figure is writes per arriving job and the ratio shipped / every-change, and the reclaim churn: suspensions per
job over the arm (issue 20 item 5). Bounded: every arm stops at its
deadline. Results: stdout and bench/results/queue_writes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import copy
import datetime as dt
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from prometheus_client import CollectorRegistry

from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.queues import leaf_namespaces, rayjob_dict, tree_dict
from bench.verbs_load import MemoryApi
from bench.webhook import machine
from common import keys
from common.accounting import JobState
from common.clock import SystemClock
from extender import unit_status as shipped_module
from extender.cache import Cache
from extender.controller import Controller
from kubeio.events import EventRecorder
from kubeio.scopes import TREES

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "queue_writes.json"
RATE: Final = 100.0  # RayJobs per second arriving in the fits shape
FIELDS: Final = ("phase", "position", "message", "attempts", "estimatedStartTime", "estimate")


class CountingApi(MemoryApi):
    """MemoryApi that counts writes by kind, and QueueUnit status patches by the fields whose value they change."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: collections.Counter[str] = collections.Counter()
        self.fields: collections.Counter[str] = collections.Counter()
        self.suspensions: collections.Counter[str] = collections.Counter()  # RayJob path -> suspend=true patches

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.kinds["event" if path.endswith("/events") else f"create {path.rsplit('/', 1)[-1]}"] += 1
        return await super().create(path, body)

    async def patch(self, path: str, body: dict[str, Any], content_type: str = "") -> dict[str, Any]:
        kind = path.split("/")[-3] if path.endswith("/status") else path.split("/")[-2]
        self.kinds[f"patch {kind}{' status' if path.endswith('/status') else ''}"] += 1
        if "/rayjobs/" in path and not path.endswith("/status") and _suspends(body):
            self.suspensions[path] += 1
        if "/queueunits/" in path and path.endswith("/status"):
            old = (self.objects.get(path.removesuffix("/status")) or {}).get("status") or {}
            for name, value in (body.get("status") or {}).items():
                if name in FIELDS and old.get(name) != value:
                    self.fields[name] += 1
        return await super().patch(path, body, content_type)


def _suspends(body: Any) -> bool:
    """A RayJob patch that suspends it: a merge patch with spec.suspend true, or a JSON patch setting it."""
    if isinstance(body, dict):
        return (body.get("spec") or {}).get("suspend") is True
    return any(op.get("path") == "/spec/suspend" and op.get("value") is True for op in body if isinstance(op, dict))


@contextlib.contextmanager
def _every_change() -> Iterator[None]:
    """The status policy before: a waiting job's message named its position and its queue's size, and any
    difference in any field was written."""
    saved = shipped_module.unit_status, shipped_module.status_due
    shipped_status = saved[0]

    def unit_status(cache: Cache, job: Any, state: Any, leaf: Any, dequeued: Any, stamp: str,
                    cached: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        status: dict[str, Any] = shipped_status(cache, job, state, leaf, dequeued, stamp, cached, *args, **kwargs)
        if status["phase"] in ("Enqueued", "Backoff") and state is JobState.WAITING:
            queues = cache.queues
            backoff = queues.in_backoff(job.uid)
            listed = queues.backoff(leaf.full_name) if backoff else queues.active(leaf.full_name)
            where = " (backoff)" if backoff else ""
            status["position"] = position = queues.position(job.uid)
            status["message"] = (queues.reason(job.uid)
                                 or f"position {position} of {len(listed)} in {leaf.dashed_name}{where}")
        return status

    def status_differs(desired: Any, cached: Any) -> bool:
        return any(cached.get(k) != v for k, v in desired.items())

    shipped_module.unit_status, shipped_module.status_due = unit_status, status_differs
    try:
        yield
    finally:
        shipped_module.unit_status, shipped_module.status_due = saved


def _fits_tree() -> dict[str, Any]:
    tree = tree_dict()
    tree["spec"]["root"] = {"name": "root", "min": {"cpu": "1000000", "memory": "100000Ti"},
                            "max": {"cpu": "1000000", "memory": "100000Ti"},
                            "children": [{"name": "bench", "min": {"cpu": "1000000", "memory": "100000Ti"},
                                          "max": {"cpu": "1000000", "memory": "100000Ti"},
                                          "namespaces": leaf_namespaces()}]}
    return tree


async def _quiet(controller: Controller, api: CountingApi, last_plan: list[int], deadline: float) -> bool:
    """Until the controller has nothing left to write: its last pass planned nothing, nothing has been written
    for half a second and nothing wakes it (or the deadline)."""
    last, since = api.writes, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if api.writes != last:
            last, since = api.writes, time.monotonic()
        elif last_plan[0] == 0 and time.monotonic() - since > 0.5 and not controller.wake.is_set():
            return True
    return False


async def _arm(shape: str, policy: str, waiting: int, arriving: int, max_seconds: float) -> dict[str, Any]:
    clock = SystemClock()
    cache = Cache(clock)
    api = CountingApi()
    controller = Controller(cache, api, EventRecorder(api, "rayqueue-extender", clock), clock,  # type: ignore[arg-type]
                            CollectorRegistry(), resync_seconds=30.0)
    api.controller = controller
    passes, last_plan = [0], [-1]  # passes planned; actions of the last one (-1: one is running)
    inner = controller.plan_sliced

    async def counted() -> Any:
        passes[0] += 1
        last_plan[0] = -1
        plan = await inner()
        last_plan[0] = len(plan)
        return plan

    controller.plan_sliced = counted  # type: ignore[method-assign]
    tree = _fits_tree() if shape == "fits" else tree_dict()
    cache.on_tree("ADDED", tree)
    api.objects[TREES.path(keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME)] = copy.deepcopy(tree)
    jobs = [rayjob_dict(i) for i in range(waiting + arriving)]
    for obj in jobs:
        meta = obj["metadata"]
        api.objects[f"/apis/ray.io/v1/namespaces/{meta['namespace']}/rayjobs/{meta['name']}"] = copy.deepcopy(obj)
    for obj in jobs[:waiting]:
        cache.on_rayjob("ADDED", copy.deepcopy(obj))
    stop = asyncio.Event()
    task = asyncio.ensure_future(controller.run(stop))
    out: dict[str, Any] = {"shape": shape, "policy": policy, "waiting": waiting, "arriving": arriving}
    try:
        deadline = time.monotonic() + max_seconds
        out["settled"] = await _quiet(controller, api, last_plan, deadline)
        api.kinds.clear()
        api.fields.clear()
        writes, passes_before = api.writes, passes[0]
        started = time.monotonic()
        for n, obj in enumerate(jobs[waiting:]):
            controller.deliver(cache.on_rayjob, "ADDED", copy.deepcopy(obj))
            if shape == "fits":
                await asyncio.sleep(max(0.0, started + (n + 1) / RATE - time.monotonic()))
            else:
                await asyncio.sleep(0)
        out["quiet"] = await _quiet(controller, api, last_plan, time.monotonic() + max_seconds)
        out["seconds"] = round(time.monotonic() - started, 1)
        out["writes"] = api.writes - writes
        out["passes"] = passes[0] - passes_before
        out["by_kind"] = dict(api.kinds.most_common())
        out["unit_status_fields"] = dict(api.fields.most_common())
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
    out["admitted"] = sum(1 for j in jobs if cache.dequeue_ns(j["metadata"]["uid"]) is not None)
    # reclaim churn over the whole arm (its settling and its arrivals; issue 20 item 5): suspensions of admitted
    # jobs, the jobs suspended, the most suspensions of one job
    per_job = api.suspensions
    out["suspensions"] = {"total": sum(per_job.values()), "jobs": len(per_job),
                          "most_per_job": max(per_job.values(), default=0)}
    out["writes_per_job"] = round(out["writes"] / arriving, 2)
    out["unit_status_writes_per_pass"] = round(out["by_kind"].get("patch queueunits status", 0) / max(1, out["passes"]), 1)
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.queue_writes", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a tenth of the jobs")
    p.add_argument("--shape", choices=["fits", "queued"], action="append", help="shapes to run (default both)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="per phase (default 60)")
    p.add_argument("--out", type=type(RESULTS), default=RESULTS)
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    scale = 10 if args.quick else 1
    sizes = {"fits": (0, 1_000 // scale), "queued": (10_000 // scale, 1_000 // scale)}
    report: dict[str, Any] = {"benchmark": "queue_writes", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": {**machine(), "loadavg": os.getloadavg()}, "rows": []}
    for shape in args.shape or ["fits", "queued"]:
        waiting, arriving = sizes[shape]
        for policy in ("every-change", "shipped"):
            print(f"{shape}: {waiting} waiting, {arriving} arriving, policy {policy} ...", flush=True)
            if policy == "every-change":
                with _every_change():
                    row = asyncio.run(_arm(shape, policy, waiting, arriving, args.max_seconds))
            else:
                row = asyncio.run(_arm(shape, policy, waiting, arriving, args.max_seconds))
            report["rows"].append(row)
    print(f"\nqueue controller writes per burst, {report['date']}: load {report['machine']['loadavg']}")
    base: dict[str, int] = {}
    for r in report["rows"]:
        if r["policy"] == "every-change":
            base[r["shape"]] = r["writes"]
        else:
            r["ratio_to_every_change"] = round(r["writes"] / base[r["shape"]], 3) if base.get(r["shape"]) else None
        print(f"  {r['shape']:<7} {r['policy']:<13} {r['writes']:>7} writes ({r['writes_per_job']} per arriving job; "
              f"admitted {r['admitted']}; {r['passes']} passes, {r['unit_status_writes_per_pass']} QueueUnit statuses "
              f"per pass; {r['seconds']} s{'' if r['quiet'] else ', NOT quiet'}{'' if r['settled'] else ', start NOT settled'})"
              + (f"; ratio {r['ratio_to_every_change']}" if "ratio_to_every_change" in r else ""))
        print(f"          by kind: {r['by_kind']}")
        churn = r["suspensions"]
        print(f"          suspensions: {churn['total']} of {churn['jobs']} jobs, at most {churn['most_per_job']} of one job")
        print(f"          QueueUnit status fields changed: {r['unit_status_fields']}")
    finish_report(report, args.out, started)
    print(f"written: {report['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
