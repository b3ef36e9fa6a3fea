"""Scheduling at 5,000 nodes, end to end (issue 25 item 3): rayqueue-scheduler against the protocol's floor.

Run it with `python -m bench.scheduling_5k` (`--quick`: NODES_QUICK nodes, fewer pods; `--wait-quiet S`: first
wait up to S s for a 1-minute load average below QUIET_LOAD). On a real local control plane
(devcluster.cluster.LocalCluster) with rayqueue's webhook, the extender, kube-scheduler 1.20 and NODES fake Ready
nodes (8 CPU, 32 GiB, 110 pods; created through the API with status, as devcluster does, at most NODE_WORKERS
calls in flight):

* **plain pods** (100m CPU, 64 MiB), the same PODS pods per arm and mode, created by CREATE_WORKERS threads; a
  watch stamps each bind on receipt. Two modes per arm: `live` (the scheduler runs while the pods are created;
  pods/s from the first create sent to the last bind, creation through the apiserver and the webhook
  included) and `backlog` (the scheduler stopped, the pods created, the scheduler started again; pods/s from
  the first to the last bind: the scheduler's own rate). Arms, in order:
  `default` (default-scheduler with kube-scheduler 1.20's default percentageOfNodesToScore, 0 = adaptive:
  max(5, 50 - nodes/125) % of the nodes, at least 100: 500 nodes at 5,000), `default-100` (default-scheduler
  with percentageOfNodesToScore 100), `noop-extender` (the baseline: kube-scheduler as rayqueue-scheduler with
  the shipped manifests/scheduler/config-v1beta1.yaml, only its urlPrefix pointed at bench.noop_extender, which
  passes every node, scores every node 0 and POSTs the Binding as rayqueue does; the same pods in the same
  quota-bound namespace, so the webhook does the same work) and `rayqueue` (the same configuration pointed at
  the extender: the webhook stamps the pods, the extender's filter checks each against the ledger). The pods of
  each round are deleted before the next; the load average is recorded at the start and end of each.
* **gangs**, in each extender arm: pods carrying `pod-group.scheduling.sigs.k8s.io/name` and `.../min-available`
  created directly (no RayJob) in a bound namespace. rayqueue's extender treats them as a gang
  (extender.verbs.gang_status), plans them on its full node cache and holds their binds at the barrier until
  every member arrives; the no-op extender ignores the labels, so the same pods schedule one by one, with no
  barrier. Measured: from the first create sent to the last member seen bound (the figure compared), and from
  the last create returning to it. One 31-pod and one 256-pod gang.

Ratios, all from this run on this machine: rayqueue's pods/s over noop-extender's (goal >= TARGET_RATIO) and
the 256-pod gang's time over the no-op arm's time for the same 256 pods (goal <= GANG_TARGET_RATIO); against
both default arms for context. Every wait is bounded, every process (the no-op extender too, which also stops
itself) stops with the cluster. Results: a table and bench/results/scheduling_5k.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import urllib.request
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
from devcluster.cluster import ADMIN, LocalCluster, ensure_binaries, free_ports
from devcluster.services import (
    SCHEDULER_NAME,
    Extender,
    run_as_service_account,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
)
from devcluster.waiting import wait_for

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "scheduling_5k.json"
NODES: Final = 5000  # the size knob: --nodes overrides it, --quick uses NODES_QUICK
NODES_QUICK: Final = 500
PODS: Final = 1000  # plain pods per arm (100 CPU of the nodes' 40,000 at 5,000 nodes)
PODS_QUICK: Final = 200
GANGS: Final = (31, 256)
NODE_WORKERS: Final = 8  # node creations in flight (each: create, status patch, untaint: ~5 API calls)
CREATE_WORKERS: Final = 4  # pod creations in flight
TARGET_RATIO: Final = 0.8  # rayqueue's pods/s over the no-op extender's (issue 25 item 3)
GANG_TARGET_RATIO: Final = 1.2  # the 256-pod gang's time over the no-op arm's for the same pods
QUIET_LOAD: Final = 1.5  # a 1-minute load average at or above this at the start: "under load, not a figure"
QUIET_POLL: Final = 30.0
BIND_TIMEOUT: Final = 300.0  # per wait; the watch ends 30 s after it
NOOP_MAX_SECONDS: Final = 7200  # the no-op extender stops itself after this long, whatever happens to us
PLAIN_NS: Final = "bench-plain"  # bound to no leaf
QUOTA_NS: Final = "bench-quota"  # bound to root/bench
GANG_NS: Final = "bench-gang"  # bound to root/bench
BIG: Final = {"cpu": "100000", "memory": "100000Gi"}
NOOP: Final = "noop-extender"
EXTENDER_ARMS: Final = (NOOP, "rayqueue")  # kube-scheduler as rayqueue-scheduler, shipped configuration
ARMS: Final = ("default", "default-100", *EXTENDER_ARMS)


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


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wait_quiet(limit_s: float) -> dict[str, Any]:
    """Wait (polling every QUIET_POLL s, at most `limit_s`) for a 1-minute load average below QUIET_LOAD."""
    started = time.monotonic()
    first = load()
    while os.getloadavg()[0] >= QUIET_LOAD and time.monotonic() - started < limit_s:
        print(f"  load average {load()}: waiting for < {QUIET_LOAD} ({time.monotonic() - started:.0f} of "
              f"{limit_s:.0f} s)", flush=True)
        time.sleep(QUIET_POLL)
    return {"loadavg_first_seen": first, "waited_s": round(time.monotonic() - started), "loadavg_then": load()}


def create_nodes(cluster: LocalCluster, count: int) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(NODE_WORKERS) as pool:
        list(pool.map(lambda i: cluster.create_node(f"n{i:05d}", cpu="8", memory="32Gi"), range(count)))
    return time.monotonic() - started


def start_noop_extender(cluster: LocalCluster) -> Extender:
    """bench.noop_extender on 127.0.0.1 as ServiceAccount rayqueue-extender (the extender's own RBAC and
    identity, so its Binding POSTs take the same path through the apiserver); waits for /readyz."""
    kubeconfig = run_as_service_account(cluster, "rayqueue-extender", ROOT / "manifests" / "extender" / "rbac.yaml")
    (port,) = free_ports(1)
    proc = cluster.start_process(NOOP, [sys.executable, "-m", "bench.noop_extender", f"--kubeconfig={kubeconfig}",
                                        f"--listen=127.0.0.1:{port}", f"--max-seconds={NOOP_MAX_SECONDS}"])

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"the no-op extender exited:\n{proc.tail(40)}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)

    wait_for(ready, 30.0, "the no-op extender to answer /readyz", interval=0.2, ignore=(OSError,))
    return Extender(proc, port)


def create_pods(core: Any, namespace: str, pods: list[dict[str, Any]]) -> tuple[float, float]:
    """Create `pods` with CREATE_WORKERS in flight; (first create sent, last create returned), perf_counter."""
    start = time.perf_counter()
    with ThreadPoolExecutor(CREATE_WORKERS) as pool:
        list(pool.map(lambda p: core.create_namespaced_pod(namespace, p, _preload_content=False), pods))
    return start, time.perf_counter()


def plain_arm(core: Any, watch: Any, arm: str, count: int, mode: str, restart: Callable[[], object] | None = None) -> dict[str, Any]:
    """`live`: the arm's scheduler runs while the pods are created; pods/s over the first create sent to the last
    bind. `backlog`: the scheduler is stopped, the pods created, then `restart` starts it (waiting for /healthz);
    pods/s over the first to the last bind: the scheduler's own rate, creation and start-up excluded."""
    load_start = load()
    namespace = QUOTA_NS if arm in EXTENDER_ARMS else PLAIN_NS
    scheduler = SCHEDULER_NAME if arm in EXTENDER_ARMS else keys.DEFAULT_SCHEDULER
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
    row: dict[str, Any] = {"arm": arm, "mode": mode, "pods": count, "bound": len(times), "complete": done,
           "create_s": round(created - start, 2), "first_create_to_last_bind_s": round(span, 2),
           "first_to_last_bind_s": round(bind_span, 2), "pods_per_s": rate,
           "ms_per_pod": round(1000 / rate, 1) if rate else None, "loadavg_start": load_start}
    delete_pods(core, namespace)
    row["loadavg_end"] = load()
    print(f"  {mode:<8} {arm:<14} {row['bound']}/{count} bound; creating took {row['create_s']} s, first create "
          f"to last bind {row['first_create_to_last_bind_s']} s, first to last bind {row['first_to_last_bind_s']} s: "
          f"{rate} pods/s; load {load_start[0]} -> {row['loadavg_end'][0]}", flush=True)
    return row


def gang_pod(gang: str, i: int, size: int) -> dict[str, Any]:
    pod = plain_pod(f"{gang}-{i:03d}", SCHEDULER_NAME)
    pod["metadata"]["labels"] = {"app": gang, keys.POD_GROUP_NAME: gang, keys.POD_GROUP_MIN_AVAILABLE: str(size)}
    return pod


def gang_run(core: Any, watch: Any, arm: str, size: int) -> dict[str, Any]:
    """One gang of `size` for the extender arm running now (a gang name of its own per arm, so no state of one
    arm's gang can meet the other's)."""
    load_start = load()
    gang = f"gang-{size}" if arm == "rayqueue" else f"noop-gang-{size}"
    watcher = Watcher(watch, GANG_NS, f"app={gang}", BIND_TIMEOUT)
    start, last_created = create_pods(core, GANG_NS, [gang_pod(gang, i, size) for i in range(size)])
    done = watcher.wait(size, BIND_TIMEOUT)
    watcher.close()
    times = watcher.times()
    row: dict[str, Any] = {"arm": arm, "gang": size, "bound": len(times), "complete": done, "create_s": round(last_created - start, 2),
           "first_create_to_last_bind_s": round(times[-1] - start, 2) if done else None,
           "last_bound_after_last_create_s": round(times[-1] - last_created, 2) if done else None,
           "first_bound_after_last_create_s": round(times[0] - last_created, 2) if times else None,
           "first_to_last_bind_s": round(times[-1] - times[0], 2) if times else None, "loadavg_start": load_start}
    delete_pods(core, GANG_NS)
    row["loadavg_end"] = load()
    print(f"  {arm:<14} gang of {size}: {len(times)}/{size} bound; created in {row['create_s']} s; first create to "
          f"last bind {row['first_create_to_last_bind_s']} s; last bound {row['last_bound_after_last_create_s']} s "
          f"after the last member's create (first bound {row['first_bound_after_last_create_s']} s after it); "
          f"load {load_start[0]} -> {row['loadavg_end'][0]}", flush=True)
    return row


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scheduling_5k", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--nodes", type=int, default=NODES, help="fake nodes (default %(default)s)")
    p.add_argument("--pods", type=int, default=PODS, help="plain pods per arm (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help=f"{NODES_QUICK} nodes, {PODS_QUICK} pods")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help=f"first wait up to S s for a 1-minute load average below {QUIET_LOAD} (default 0: no wait)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of %(default)s, in that order")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.pods = NODES_QUICK, PODS_QUICK
    if args.nodes < 1 or args.pods < 1:
        p.error("--nodes and --pods must be at least 1")
    args.arms = [a for a in ARMS if a in set(args.arms.split(","))]
    if not args.arms:
        p.error(f"--arms: none of {', '.join(ARMS)}")
    return args


def ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 2) if num and den else None


def summarize(report: dict[str, Any]) -> None:
    """The ratios: per mode, rayqueue and the no-op extender against each other and both default arms; the
    256-pod gang against the no-op arm's same 256 pods."""
    report["ratio"] = {}
    for mode in ("live", "backlog"):
        rates = {r["arm"]: r["pods_per_s"] for r in report["arms"] if r["mode"] == mode}
        report["ratio"][mode] = {f"{a}/{b}": ratio(rates.get(a), rates.get(b)) for a, b in (
            ("rayqueue", NOOP), ("rayqueue", "default"), ("rayqueue", "default-100"),
            (NOOP, "default"), (NOOP, "default-100"))}
    gangs = {(g["arm"], g["gang"]): g for g in report["gangs"]}
    report["gang_ratio"] = {}
    for size in GANGS:
        ray, noop = gangs.get(("rayqueue", size)), gangs.get((NOOP, size))
        if ray and noop:
            report["gang_ratio"][str(size)] = {
                "first_create_to_last_bind": ratio(ray["first_create_to_last_bind_s"], noop["first_create_to_last_bind_s"]),
                "last_create_to_last_bind": ratio(ray["last_bound_after_last_create_s"],
                                                  noop["last_bound_after_last_create_s"])}
    start = report["machine"]["loadavg_at_start"][0]
    report["quiet_at_start"] = start < QUIET_LOAD
    report["label"] = "" if report["quiet_at_start"] else f"under load ({start:.2f} >= {QUIET_LOAD} at the start), not a figure"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    quiet = wait_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    shipped = yaml.safe_load((ROOT / "manifests" / "scheduler" / "config-v1beta1.yaml").read_text())
    shipped_pct = int(shipped.get("percentageOfNodesToScore", 0))
    searched = percentage_of_nodes_to_score(args.nodes, shipped_pct)
    report: dict[str, Any] = {
        "benchmark": "scheduling_5k", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "quiet_wait": quiet,
        "settings": {"nodes": args.nodes, "pods": args.pods, "gangs": list(GANGS), "arms": args.arms},
        "percentage_of_nodes_to_score": {
            "default": {"configured": 0, "nodes_searched": percentage_of_nodes_to_score(args.nodes, 0)},
            "default-100": {"configured": 100, "nodes_searched": args.nodes},
            NOOP: {"configured": shipped_pct, "nodes_searched": searched},
            "rayqueue": {"configured": shipped_pct, "nodes_searched": searched}},
        "targets": {"rayqueue/noop-extender": TARGET_RATIO, "gang_256/noop-extender": GANG_TARGET_RATIO,
                    "quiet_load": QUIET_LOAD},
        "arms": [], "gangs": []}
    print(f"starting the local cluster (load average {load()}) ...", flush=True)
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
            extender = start_extender(cluster)  # after the nodes: its cache syncs them in one list; up in every arm
            run_arms(cluster, core, watch, extender, args, report)
            report["extender_log_tail"] = extender.process.tail(5).splitlines()[-5:]
        finally:
            stop_webhook(cluster, hook)
            watch_client.close()
    summarize(report)
    finish_report(report, args.out, started)
    print_report(report)
    return 0


def run_arms(cluster: LocalCluster, core: Any, watch: Any, extender: Extender, args: argparse.Namespace,
             report: dict[str, Any]) -> None:
    """Each arm in turn: live, backlog, and (extender arms) the gangs; its scheduler stopped after it."""
    noop: list[Extender] = []

    def start_noop() -> object:
        if not noop:
            noop.append(start_noop_extender(cluster))
        return start_rayqueue_scheduler(cluster, noop[0])  # the shipped configuration, urlPrefix the no-op's

    starters: dict[str, tuple[str, Callable[[], object]]] = {
        "default": (keys.DEFAULT_SCHEDULER, cluster.start_scheduler),
        "default-100": (keys.DEFAULT_SCHEDULER, lambda: cluster.start_scheduler({"percentageOfNodesToScore": 100})),
        NOOP: (SCHEDULER_NAME, start_noop),
        "rayqueue": (SCHEDULER_NAME, lambda: start_rayqueue_scheduler(cluster, extender)),
    }
    for arm in args.arms:
        name, start = starters[arm]
        start()
        report["arms"].append(plain_arm(core, watch, arm, args.pods, "live"))
        cluster.stop_scheduler(name)
        report["arms"].append(plain_arm(core, watch, arm, args.pods, "backlog", start))
        if arm in EXTENDER_ARMS:
            for size in GANGS:
                report["gangs"].append(gang_run(core, watch, arm, size))
        cluster.stop_scheduler(name)
        if arm == NOOP:
            cluster.stop_process(noop[0].process.name)
            report["noop_extender_log_tail"] = noop[0].process.tail(3).splitlines()[-3:]  # its count of requests


def print_report(report: dict[str, Any]) -> None:
    m, s = report["machine"], report["settings"]
    print(f"\nscheduling_5k, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), load average "
          f"{m['loadavg_at_start'][0]:.2f} -> {m['loadavg_at_end'][0]:.2f}; {s['nodes']} fake nodes "
          f"(created in {report.get('nodes_s')} s)" + (f"  ** {report['label']} **" if report["label"] else ""))
    pct = report["percentage_of_nodes_to_score"]
    for r in report["arms"]:
        p = pct[r["arm"]]
        print(f"  {r['mode']:<8} {r['arm']:<14} percentageOfNodesToScore {p['configured']:>3} (searches "
              f"{p['nodes_searched']} nodes): {r['bound']}/{r['pods']} bound, {r['pods_per_s']} pods/s "
              f"({r['ms_per_pod']} ms a pod); load {r['loadavg_start'][0]} -> {r['loadavg_end'][0]}")
    for mode, ratios in report["ratio"].items():
        print(f"  {mode}: " + ", ".join(f"{k} {v}" for k, v in ratios.items())
              + f" (target rayqueue/{NOOP} >= {TARGET_RATIO})")
    for g in report["gangs"]:
        print(f"  {g['arm']:<14} gang of {g['gang']}: first create to last bind {g['first_create_to_last_bind_s']} s, "
              f"last create to last bind {g['last_bound_after_last_create_s']} s")
    for size, r in report["gang_ratio"].items():
        print(f"  gang of {size}, rayqueue/{NOOP}: first create to last bind {r['first_create_to_last_bind']} "
              f"(target <= {GANG_TARGET_RATIO} for 256), last create to last bind {r['last_create_to_last_bind']}")
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
