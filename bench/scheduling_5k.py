"""Scheduling at 5,000 nodes, end to end (issue 13, goal 1): plain kube-scheduler against rayqueue-scheduler.

Run it with `python -m bench.scheduling_5k` (`--quick`: NODES_QUICK nodes, fewer pods). On a real local
control plane (devcluster.cluster.LocalCluster) with rayqueue's webhook, the extender, `rayqueue-scheduler`
(kube-scheduler 1.20 with the shipped manifests/scheduler/config-v1beta1.yaml) and the default kube-scheduler,
NODES fake Ready nodes (8 CPU, 32 GiB, 110 pods; created through the API with status, as devcluster does,
at most NODE_WORKERS calls in flight):

* **plain pods** (100m CPU, 64 MiB), the same PODS pods per arm and mode, created by CREATE_WORKERS threads; a
  watch stamps each bind on receipt. Two modes per arm: `live` (the scheduler runs while the pods are created;
  pods/s from the first create sent to the last bind, creation through the apiserver and the webhook
  included) and `backlog` (the scheduler stopped, the pods created, the scheduler started again; pods/s from
  the first to the last bind: the scheduler's own rate). Arms, in order:
  `default` (default-scheduler with kube-scheduler 1.20's default percentageOfNodesToScore, 0 = adaptive:
  max(5, 50 - nodes/125) % of the nodes, at least 100: 500 nodes at 5,000), `default-100` (default-scheduler
  with percentageOfNodesToScore 100, the setting the shipped rayqueue-scheduler configuration uses) and
  `rayqueue` (rayqueue-scheduler + extender, in a namespace bound to a quota leaf: the webhook stamps the
  pods, the extender's filter checks each against the ledger; percentageOfNodesToScore 100 as shipped).
  The pods of each round are deleted before the next.
* **gangs**: pods carrying `pod-group.scheduling.sigs.k8s.io/name` and `.../min-available` created directly
  (no RayJob) in the bound namespace for rayqueue-scheduler: the extender treats them as a gang
  (extender.verbs.gang_status: members by that label, quorum by the largest min-available), plans them on
  its full node cache and holds their binds at the barrier until every member arrives. Measured: the time
  from the last member's create returning to the last member seen bound. One 31-pod and one 256-pod gang.

The ratio is rayqueue's pods/s over `default`'s (and over `default-100`'s), both in this run on this
machine; the target is >= TARGET_RATIO, and a 256-pod gang bound within GANG_TARGET_S. Every wait is
bounded, every process stops with the cluster. Results: a table and bench/results/scheduling_5k.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import yaml
from kubernetes import client as k8s

from bench.e2e import Watcher, delete_pods, plain_pod
from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from devcluster.cluster import ADMIN, LocalCluster, ensure_binaries
from devcluster.services import (
    SCHEDULER_NAME,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
)

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "scheduling_5k.json"
NODES: Final = 5000  # the size knob: --nodes overrides it, --quick uses NODES_QUICK
NODES_QUICK: Final = 500
PODS: Final = 1000  # plain pods per arm (100 CPU of the nodes' 40,000 at 5,000 nodes)
PODS_QUICK: Final = 200
GANGS: Final = (31, 256)
NODE_WORKERS: Final = 8  # node creations in flight (each: create, status patch, untaint: ~5 API calls)
CREATE_WORKERS: Final = 4  # pod creations in flight
TARGET_RATIO: Final = 0.5
GANG_TARGET_S: Final = 2.0
BIND_TIMEOUT: Final = 300.0  # per wait; the watch ends 30 s after it
PLAIN_NS: Final = "bench-plain"  # bound to no leaf
QUOTA_NS: Final = "bench-quota"  # bound to root/bench
GANG_NS: Final = "bench-gang"  # bound to root/bench
BIG: Final = {"cpu": "100000", "memory": "100000Gi"}


def bench_tree() -> dict[str, Any]:
    """One leaf far larger than the run needs, so the quota check passes and is still made for every pod."""
    return {"apiVersion": "scheduling.sigs.k8s.io/v1beta1", "kind": keys.QUOTA_TREE_KIND,
            "metadata": {"name": "elasticquotatree", "namespace": "kube-system"},
            "spec": {"root": {"name": "root", "min": BIG, "max": BIG, "children": [
                {"name": "bench", "min": BIG, "max": BIG, "namespaces": [QUOTA_NS, GANG_NS]}]}}}


def percentage_of_nodes_to_score(nodes: int, configured: int) -> int:
    """How many nodes kube-scheduler 1.20 looks for feasible ones among (numFeasibleNodesToFind in
    pkg/scheduler/core/generic_scheduler.go, v1.20.2): all below 100 nodes or at 100 %; otherwise
    configured %, or when 0 the adaptive max(5, 50 - nodes/125) %; never fewer than 100."""
    if nodes < 100 or configured >= 100:
        return nodes
    pct = configured or max(5, 50 - nodes // 125)
    return max(nodes * pct // 100, 100)


def create_nodes(cluster: LocalCluster, count: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(NODE_WORKERS) as pool:
        list(pool.map(lambda i: cluster.create_node(f"n{i:05d}", cpu="8", memory="32Gi"), range(count)))
    return time.monotonic() - started


def create_pods(core: Any, namespace: str, pods: list[dict[str, Any]]) -> tuple[float, float]:
    """Create `pods` with CREATE_WORKERS in flight; (first create sent, last create returned), perf_counter."""
    start = time.perf_counter()
    with ThreadPoolExecutor(CREATE_WORKERS) as pool:
        list(pool.map(lambda p: core.create_namespaced_pod(namespace, p, _preload_content=False), pods))
    return start, time.perf_counter()


def plain_arm(core: Any, watch: Any, arm: str, count: int, mode: str, restart: Callable[[], None] | None = None) -> dict[str, Any]:
    """`live`: the arm's scheduler runs while the pods are created; pods/s over the first create sent to the last
    bind. `backlog`: the scheduler is stopped, the pods created, then `restart` starts it (waiting for /healthz);
    pods/s over the first to the last bind: the scheduler's own rate, creation and start-up excluded."""
    namespace = QUOTA_NS if arm == "rayqueue" else PLAIN_NS
    scheduler = SCHEDULER_NAME if arm == "rayqueue" else keys.DEFAULT_SCHEDULER
    watcher = Watcher(watch, namespace, "app=bench", BIND_TIMEOUT)
    pods = [plain_pod(f"{arm}-{mode}-{i:04d}", scheduler) for i in range(count)]
    start, created = create_pods(core, namespace, pods)
    if restart is not None:
        restart()
    done = watcher.wait(count, BIND_TIMEOUT)
    watcher.close()
    times = watcher.times()
    last = times[-1] if times else time.perf_counter()
    bind_span = last - times[0] if len(times) > 1 else 0.0
    bind_rate = round((len(times) - 1) / bind_span, 1) if bind_span > 0 else None
    span = last - start
    rate = (round(len(times) / span, 1) if span > 0 else None) if mode == "live" else bind_rate
    row = {"arm": arm, "mode": mode, "pods": count, "bound": len(times), "complete": done,
           "create_s": round(created - start, 2), "first_create_to_last_bind_s": round(span, 2),
           "first_to_last_bind_s": round(bind_span, 2), "pods_per_s": rate}
    print(f"  {mode:<8} {arm:<12} {row['bound']}/{count} bound; creating took {row['create_s']} s, first create "
          f"to last bind {row['first_create_to_last_bind_s']} s, first to last bind {row['first_to_last_bind_s']} s: "
          f"{rate} pods/s", flush=True)
    delete_pods(core, namespace)
    return row


def gang_pod(gang: str, i: int, size: int) -> dict[str, Any]:
    pod = plain_pod(f"{gang}-{i:03d}", SCHEDULER_NAME)
    pod["metadata"]["labels"] = {"app": gang, keys.POD_GROUP_NAME: gang, keys.POD_GROUP_MIN_AVAILABLE: str(size)}
    return pod


def gang_run(core: Any, watch: Any, size: int) -> dict[str, Any]:
    gang = f"gang-{size}"
    watcher = Watcher(watch, GANG_NS, f"app={gang}", BIND_TIMEOUT)
    start, last_created = create_pods(core, GANG_NS, [gang_pod(gang, i, size) for i in range(size)])
    done = watcher.wait(size, BIND_TIMEOUT)
    watcher.close()
    times = watcher.times()
    row = {"gang": size, "bound": len(times), "complete": done, "create_s": round(last_created - start, 2),
           "last_bound_after_last_create_s": round(times[-1] - last_created, 2) if done else None,
           "first_bound_after_last_create_s": round(times[0] - last_created, 2) if times else None,
           "first_to_last_bind_s": round(times[-1] - times[0], 2) if times else None}
    print(f"  gang of {size}: {len(times)}/{size} bound; created in {row['create_s']} s; last bound "
          f"{row['last_bound_after_last_create_s']} s after the last member's create (first bound "
          f"{row['first_bound_after_last_create_s']} s after it)", flush=True)
    delete_pods(core, GANG_NS)
    return row


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scheduling_5k", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--nodes", type=int, default=NODES, help="fake nodes (default %(default)s)")
    p.add_argument("--pods", type=int, default=PODS, help="plain pods per arm (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help=f"{NODES_QUICK} nodes, {PODS_QUICK} pods")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.pods = NODES_QUICK, PODS_QUICK
    if args.nodes < 1 or args.pods < 1:
        p.error("--nodes and --pods must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    shipped = yaml.safe_load((ROOT / "manifests" / "scheduler" / "config-v1beta1.yaml").read_text())
    shipped_pct = int(shipped.get("percentageOfNodesToScore", 0))
    report: dict[str, Any] = {
        "benchmark": "scheduling_5k", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "settings": {"nodes": args.nodes, "pods": args.pods, "gangs": list(GANGS)},
        "percentage_of_nodes_to_score": {
            "default": {"configured": 0, "nodes_searched": percentage_of_nodes_to_score(args.nodes, 0)},
            "default-100": {"configured": 100, "nodes_searched": args.nodes},
            "rayqueue": {"configured": shipped_pct,
                         "nodes_searched": percentage_of_nodes_to_score(args.nodes, shipped_pct)}},
        "targets": {"ratio": TARGET_RATIO, "gang_256_s": GANG_TARGET_S}, "arms": [], "gangs": []}
    print("starting the local cluster ...", flush=True)
    with LocalCluster(ensure_binaries()) as cluster:
        core = k8s.CoreV1Api(cluster.api_client)
        watch_client = cluster.client_for(ADMIN)  # watches keep their own connection pool, apart from creates
        watch = k8s.CoreV1Api(watch_client)
        for ns in (PLAIN_NS, QUOTA_NS, GANG_NS):
            cluster.create_namespace(ns)
        hook = start_webhook(cluster, name="rayqueue-webhook-bench", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
        try:
            cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(bench_tree()))
            report["nodes_s"] = round(create_nodes(cluster, args.nodes), 1)
            print(f"  {args.nodes} nodes in {report['nodes_s']} s", flush=True)
            extender = start_extender(cluster)  # after the nodes: its cache syncs them in one list
            starters: dict[str, tuple[str, Callable[[], object]]] = {
                "default": (keys.DEFAULT_SCHEDULER, cluster.start_scheduler),
                "default-100": (keys.DEFAULT_SCHEDULER,
                                lambda: cluster.start_scheduler({"percentageOfNodesToScore": 100})),
                "rayqueue": (SCHEDULER_NAME, lambda: start_rayqueue_scheduler(cluster, extender)),
            }
            for arm, (name, start) in starters.items():
                start()
                report["arms"].append(plain_arm(core, watch, arm, args.pods, "live"))
                cluster.stop_scheduler(name)
                report["arms"].append(plain_arm(core, watch, arm, args.pods, "backlog", start))
                if arm != "rayqueue":  # rayqueue-scheduler stays up for the gangs
                    cluster.stop_scheduler(name)
            for size in GANGS:
                report["gangs"].append(gang_run(core, watch, size))
            report["extender_log_tail"] = extender.process.tail(5).splitlines()[-5:]
        finally:
            stop_webhook(cluster, hook)
            watch_client.close()
    report["ratio"] = {}
    for mode in ("live", "backlog"):
        rates = {r["arm"]: r["pods_per_s"] for r in report["arms"] if r["mode"] == mode}
        ray = rates.get("rayqueue")
        report["ratio"][mode] = {f"rayqueue/{base}": round(ray / rates[base], 2) if ray and rates.get(base) else None
                                 for base in ("default", "default-100")}
    finish_report(report, args.out, started)
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    m, s = report["machine"], report["settings"]
    print(f"\nscheduling_5k, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), load average "
          f"{m['loadavg_at_start'][0]:.2f} -> {m['loadavg_at_end'][0]:.2f}; {s['nodes']} fake nodes "
          f"(created in {report.get('nodes_s')} s)")
    pct = report["percentage_of_nodes_to_score"]
    for r in report["arms"]:
        p = pct[r["arm"]]
        print(f"  {r['mode']:<8} {r['arm']:<12} percentageOfNodesToScore {p['configured']:>3} (searches "
              f"{p['nodes_searched']} nodes): {r['bound']}/{r['pods']} bound, {r['pods_per_s']} pods/s")
    for mode, ratios in report["ratio"].items():
        print(f"  {mode}: " + ", ".join(f"{k} {v}" for k, v in ratios.items()) + f" (target >= {TARGET_RATIO})")
    for g in report["gangs"]:
        print(f"  gang of {g['gang']}: last member bound {g['last_bound_after_last_create_s']} s after its "
              f"last member's create (target <= {GANG_TARGET_S} s for 256)")
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
