"""The queue's throughput: N RayJobs created at once on a real kube-apiserver, all admitted, against the floor.

Run it with `python -m bench.admission` (`--jobs N`, default 1,000; issue 13's goal is stated at 10,000;
`--quick`: 200). On a real local control plane (devcluster.cluster.LocalCluster) with rayqueue's webhooks
registered and the extender running (its queue controller admits), one ElasticQuotaTree leaf `bench`
(namespace bench-queue) large enough for every job, and no node (capacity unlimited: only quota counts):

* **floor**: the same client creates the same N RayJobs (suspended) in bench-floor, a namespace no leaf
  binds (the webhooks are still called and pass), ``--parallel`` requests at a time, then merge-patches
  each to ``suspend: false`` with a dequeue stamp: the API work an admission cannot avoid, done by a
  plain loop;
* **rayqueue**: the same client creates the same N RayJobs in bench-queue, ``--parallel`` at a time; the
  webhook queues them and the controller dequeues them (its Queue, QueueUnits, statuses and events
  included).

A job counts as admitted when a watch on its namespace (opened before the first create, the same in both
arms) shows it with ``suspend: false`` and the dequeue stamp. Throughput is N over the time from the first
create sent to the last admission seen; the ratio is rayqueue's over the floor's. Goal (issue 13): at
least 0.8. Bounded by ``--timeout``; the cluster stops when the run ends. Results: bench/results/admission.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from common.gotime import format_go
from devcluster.cluster import LocalCluster, ensure_binaries
from devcluster.services import start_extender, start_webhook, stop_webhook
from kubeio.client import ApiError, KubeClient, load_configuration
from kubeio.scopes import RAYJOBS

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "admission.json"
EXAMPLES: Final = ROOT / "manifests" / "examples"
QUEUE_NS: Final = "bench-queue"
FLOOR_NS: Final = "bench-floor"
GOAL_RATIO: Final = 0.8


def tree() -> dict[str, Any]:
    big = {"cpu": "1000000", "memory": "100000Ti"}
    return {"apiVersion": f"{keys.QUOTA_GROUP}/{keys.QUOTA_VERSION}", "kind": keys.QUOTA_TREE_KIND,
            "metadata": {"name": keys.QUOTA_TREE_NAME, "namespace": keys.QUOTA_TREE_NAMESPACE},
            "spec": {"root": {"name": "root", "min": big, "max": big,
                              "children": [{"name": "bench", "min": big, "max": big, "namespaces": [QUEUE_NS]}]}}}


def rayjob(i: int, namespace: str) -> dict[str, Any]:
    """The seed video RayJob reshaped: 1 head + 2 workers of 100m / 128 MiB, HTTPMode, suspended."""
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "video-rayjob.yaml").read_text()) if d]
    job = copy.deepcopy(next(d for d in docs if d["kind"] == keys.RAYJOB_KIND))
    job["metadata"] = {"name": f"bench-job-{i:05d}", "namespace": namespace}
    spec = job["spec"]["rayClusterSpec"]
    for template in (spec["headGroupSpec"]["template"], spec["workerGroupSpecs"][0]["template"]):
        amounts = {"cpu": "100m", "memory": "128Mi"}
        template["spec"]["containers"][0]["resources"] = {"requests": amounts, "limits": amounts}
    group = spec["workerGroupSpecs"][0]
    group["replicas"] = group["minReplicas"] = group["maxReplicas"] = 2
    job["spec"].pop("submitterPodTemplate", None)
    job["spec"]["submissionMode"] = "HTTPMode"
    job["spec"]["suspend"] = True
    return job


async def _bounded(parallel: int, calls: Sequence[Any]) -> int:
    """Await the coroutines ``parallel`` at a time; how many failed."""
    pending = list(reversed(calls))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        while pending:
            try:
                await pending.pop()
            except (ApiError, OSError, TimeoutError):
                failed += 1

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return failed


async def _arm(client: KubeClient, arm: str, jobs: int, parallel: int, budget_s: float) -> dict[str, Any]:
    namespace = FLOOR_NS if arm == "floor" else QUEUE_NS
    path = RAYJOBS.path(namespace)
    listed = await client.get(path)
    version = str(listed["metadata"]["resourceVersion"])
    admitted: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        rv = version
        while not done.is_set():
            with contextlib.suppress(ApiError, OSError, TimeoutError):
                async for event in client.watch(path, rv, timeout_seconds=int(budget_s)):
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    rv = str(meta.get("resourceVersion", rv))
                    stamped = keys.DEQUEUE_TIMESTAMP in (meta.get("annotations") or {})
                    if stamped and (obj.get("spec") or {}).get("suspend") is False:
                        admitted.setdefault(str(meta.get("name")), time.perf_counter())
                        if len(admitted) >= jobs:
                            done.set()
                            return

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(0.5)  # the watch is open before the first create
    started = time.perf_counter()
    create_failed = await _bounded(parallel, [client.create(path, rayjob(i, namespace)) for i in range(jobs)])
    created = time.perf_counter()
    patch_failed = 0
    if arm == "floor":
        stamp = format_go(time.time_ns())
        body = {"metadata": {"annotations": {keys.DEQUEUE_TIMESTAMP: stamp}}, "spec": {"suspend": False}}
        patch_failed = await _bounded(parallel, [client.patch(RAYJOBS.path(namespace, f"bench-job-{i:05d}"), body)
                                                 for i in range(jobs)])
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=max(1.0, budget_s - (time.perf_counter() - started)))
    done.set()
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    last = max(admitted.values()) if admitted else time.perf_counter()
    elapsed = last - started
    row = {"arm": arm, "jobs": jobs, "admitted": len(admitted), "complete": len(admitted) >= jobs,
           "create_failed": create_failed, "patch_failed": patch_failed, "create_s": round(created - started, 2),
           "elapsed_s": round(elapsed, 2), "jobs_per_s": round(len(admitted) / elapsed, 1) if elapsed > 0 else None}
    print(f"  {arm:<8} {len(admitted)}/{jobs} admitted in {elapsed:.1f} s (creates took {created - started:.1f} s): "
          f"{row['jobs_per_s']} jobs/s", flush=True)
    return row


async def _run(cluster: LocalCluster, jobs: int, parallel: int, budget_s: float) -> list[dict[str, Any]]:
    async with KubeClient(load_configuration(str(cluster.admin_kubeconfig))) as client:
        return [await _arm(client, arm, jobs, parallel, budget_s) for arm in ("floor", "rayqueue")]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.admission", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000, help="RayJobs per arm (default %(default)s; the goal: 10000)")
    p.add_argument("--parallel", type=int, default=16, help="client requests in flight (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0, help="per arm, seconds (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="200 jobs")
    args = p.parse_args(list(argv))
    if args.quick:
        args.jobs = 200
    if args.jobs < 1 or args.parallel < 1:
        p.error("--jobs and --parallel must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    report: dict[str, Any] = {"benchmark": "admission", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": {**machine(), "loadavg_at_start": os.getloadavg()},
                              "settings": {"jobs": args.jobs, "parallel": args.parallel}, "goal_ratio": GOAL_RATIO}
    print("starting the local cluster ...", flush=True)
    with LocalCluster(ensure_binaries()) as cluster:
        for ns in (QUEUE_NS, FLOOR_NS):
            cluster.create_namespace(ns)
        hook = start_webhook(cluster, name="rayqueue-webhook-bench")
        try:
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(tree()))
            start_extender(cluster)
            rows = asyncio.run(_run(cluster, args.jobs, args.parallel, args.timeout))
        finally:
            stop_webhook(cluster, hook)
    floor, product = rows
    ratio = (round(product["jobs_per_s"] / floor["jobs_per_s"], 2)
             if product["jobs_per_s"] and floor["jobs_per_s"] and product["complete"] else None)
    report.update(rows=rows, ratio=ratio, met=bool(ratio is not None and ratio >= GOAL_RATIO))
    finish_report(report, args.out, started)
    print(f"\nadmission throughput, {report['date']}, {args.jobs} RayJobs, {args.parallel} in flight: floor "
          f"{floor['jobs_per_s']} jobs/s, rayqueue {product['jobs_per_s']} jobs/s: ratio {ratio} "
          f"(goal >= {GOAL_RATIO}: {'met' if report['met'] else 'NOT met'}); load {report['machine']['loadavg_at_end']}")
    print(f"written: {report['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
