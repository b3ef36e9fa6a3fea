"""The end-to-end benchmark: pods bound per second by kube-scheduler alone and by kube-scheduler + rayqueue.

Run it with `python -m bench.e2e` (`--quick`: one round of fewer pods). On a real local control plane
(devcluster.cluster.LocalCluster: etcd, kube-apiserver, kube-controller-manager, all on 127.0.0.1) with
rayqueue's webhook, the extender (cache, verbs and queue controller in one process), `rayqueue-scheduler`
(kube-scheduler 1.20 with the shipped extender configuration), the default kube-scheduler, the KubeRay
stand-in, the guide's ElasticQuotaTree and 50 fake nodes (8 CPU, 32 GiB, 110 pods each; no kubelet):

* **plain pods** (no RayJob; 100m CPU, 64 MiB each), created one by one through the API, in rounds
  alternating the arms: `default` (schedulerName default-scheduler, in a namespace no quota binds),
  `rayqueue` (schedulerName rayqueue-scheduler, the same namespace: every filter/prioritize/bind goes to
  the extender, its quota check finds no leaf), `rayqueue+quota` (the same pods in `video`, a namespace
  bound to a leaf: the webhook stamps them, the extender checks each against the ledger). Two modes:
  `backlog` (the arm's scheduler stopped, the pods created, the scheduler started again; pods/s over
  the first to the last bind) and `live` (pods created while it runs; pods/s over the first create sent
  to the last bind, creation included and the same in every arm);
* **the RayJob flow** (once, if time allows): 8 RayJobs (1 head + 9 workers, 100m / 128 MiB per pod) in
  `algorithm-text` through the webhook, the queue controller (dequeue), the KubeRay stand-in (creates the
  pods) and rayqueue-scheduler, against the same 80 pods created directly for default-scheduler. That
  figure is job-to-placement throughput, not scheduler throughput: it includes admission, the
  controller's dequeue and the stand-in's pod creation.

"Bound" is spec.nodeName set, stamped when a watch on the namespace delivers it. Every wait is bounded;
every process is stopped when the cluster context exits. Results: a table and bench/results/e2e.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import yaml
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from bench.extender import ROOT
from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from devcluster.cluster import TENANT, LocalCluster, ensure_binaries
from devcluster.services import (
    SCHEDULER_NAME,
    Extender,
    start_extender,
    start_rayqueue_scheduler,
    start_webhook,
    stop_webhook,
)
from devcluster.waiting import wait_for

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "e2e.json"
EXAMPLES: Final = ROOT / "manifests" / "examples"
TREE_NAMESPACES: Final = ("video", "algorithm-text", "intern", "infra-devops", "devops")
PLAIN_NS: Final = "bench-plain"  # bound to no leaf
QUOTA_NS: Final = "video"  # bound to root/algorithm/video (max 14 CPU, 14 GiB)
JOB_NS: Final = "algorithm-text"  # bound to root/algorithm/text (max 40 CPU, 20 GiB)
DIRECT_NS: Final = "bench-direct"
NODES: Final = 50
TARGET_RATIO: Final = 0.5  # rayqueue's pods/s at least half the plain scheduler's (issue 7)
POLL: Final = 0.05  # how often wait() looks at what the watch saw
BIND_TIMEOUT: Final = 120.0


def _docs(file: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]


def plain_pod(name: str, scheduler: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"schedulerName": scheduler, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "registry.example.com/bench:1",
                                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                                   "limits": {"cpu": "100m", "memory": "64Mi"}}}]}}


def bench_job(i: int) -> dict[str, Any]:
    """The seed video RayJob reshaped: 1 head + 9 workers of 100m / 128 MiB, running 10 minutes."""
    job = copy.deepcopy(next(d for d in _docs("video-rayjob.yaml") if d["kind"] == "RayJob"))
    job["metadata"] = {"name": f"bench-job-{i}", "namespace": JOB_NS,
                       "annotations": {keys.TEST_RUN_SECONDS: "600"}}
    spec = job["spec"]["rayClusterSpec"]
    for template in (spec["headGroupSpec"]["template"], spec["workerGroupSpecs"][0]["template"]):
        amounts = {"cpu": "100m", "memory": "128Mi"}
        template["spec"]["containers"][0]["resources"] = {"requests": amounts, "limits": amounts}
    group = spec["workerGroupSpecs"][0]
    group["replicas"] = group["minReplicas"] = group["maxReplicas"] = 9
    job["spec"].pop("submitterPodTemplate", None)
    job["spec"]["submissionMode"] = "HTTPMode"  # no submitter pod: 10 pods per job
    return job


class Watcher:
    """When each pod of a namespace (matching a label selector) was first seen bound: a watch read by a thread
    from before the first pod is created, each event stamped on receipt (milliseconds, not a poll interval).
    The apiserver ends the watch `timeout` + 30 s after it starts."""

    def __init__(self, core: Any, namespace: str, selector: str, timeout: float = BIND_TIMEOUT) -> None:
        self.core, self.namespace, self.selector = core, namespace, selector
        self.bound_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        listed = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        version = orjson.loads(listed.data)["metadata"]["resourceVersion"]
        self._resp = core.list_namespaced_pod(namespace, label_selector=selector, watch=True,
                                              resource_version=version, timeout_seconds=int(timeout) + 30,
                                              allow_watch_bookmarks=False, _preload_content=False)
        self._thread = threading.Thread(target=self._read, name=f"watch-{namespace}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream ends when close() shuts the response
            for line in iter_resp_lines(self._resp):  # type: ignore[no-untyped-call]
                now = time.perf_counter()
                pod = orjson.loads(line).get("object") or {}
                name = (pod.get("metadata") or {}).get("name")
                if name and (pod.get("spec") or {}).get("nodeName"):
                    with self._lock:
                        self.bound_at.setdefault(name, now)
                if self._stop.is_set():
                    return

    def times(self) -> list[float]:
        with self._lock:
            return sorted(self.bound_at.values())

    def wait(self, count: int, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if len(self.times()) >= count:
                return True
            time.sleep(POLL)
        return False

    def close(self) -> None:
        self._stop.set()
        shutdown = getattr(self._resp, "shutdown", None)  # urllib3 >= 2.3 unblocks a pending read
        if shutdown is not None:
            with contextlib.suppress(Exception):
                shutdown()
        self._thread.join(2.0)  # before the connection goes back to the pool: no other request may share it
        with contextlib.suppress(Exception):
            self._resp.release_conn()


def delete_pods(core: Any, namespace: str) -> None:
    core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, 60.0, f"the pods of {namespace} to be gone")


def plain_round(core: Any, arm: str, count: int, rnd: int, mode: str,
                restart: Callable[[str], Callable[[], None]]) -> dict[str, Any]:
    """One arm's round. `live`: create the pods one by one while the scheduler runs; pods/s over first create
    to last bound. `backlog`: stop the arm's scheduler, create the pods, start it again; pods/s over the
    first to the last bind (scheduler start-up excluded)."""
    namespace = QUOTA_NS if arm == "rayqueue+quota" else PLAIN_NS
    scheduler = keys.DEFAULT_SCHEDULER if arm == "default" else SCHEDULER_NAME
    watcher = Watcher(core, namespace, "app=bench")
    start_again = restart(scheduler) if mode == "backlog" else None
    start = time.perf_counter()
    for i in range(count):
        core.create_namespaced_pod(namespace, plain_pod(f"bench-{arm.replace('+', '-')}-{mode}-{rnd}-{i:03d}",
                                                        scheduler))
    created = time.perf_counter()
    if start_again is not None:
        start_again()
    done = watcher.wait(count, BIND_TIMEOUT)
    watcher.close()
    times = watcher.times()
    last = times[-1] if times else time.perf_counter()
    if mode == "backlog":
        span = last - times[0] if len(times) > 1 else 0.0
        rate = round((len(times) - 1) / span, 1) if span > 0 else None
    else:
        span = last - start
        rate = round(len(times) / span, 1) if span > 0 else None
    row = {"arm": arm, "mode": mode, "round": rnd, "pods": count, "bound": len(times), "complete": done,
           "create_s": round(created - start, 3), "span_s": round(span, 3), "pods_per_s": rate}
    delete_pods(core, namespace)
    print(f"  {mode:<8} {arm:<15} round {rnd}: {row['bound']}/{count} bound over {row['span_s']:.2f} s "
          f"(creating took {row['create_s']:.2f} s): {rate} pods/s", flush=True)
    return row


def rayjob_flow(cluster: LocalCluster, core: Any, jobs: int) -> dict[str, Any]:
    pods = jobs * 10
    watcher = Watcher(core, JOB_NS, keys.RAY_CLUSTER)
    text = yaml.safe_dump_all([bench_job(i) for i in range(jobs)])
    start = time.perf_counter()
    cluster.kubectl("create", "-f", "-", "-o", "name", as_user=TENANT, input=text)
    created = time.perf_counter()
    done = watcher.wait(pods, BIND_TIMEOUT)
    watcher.close()
    last = max(watcher.bound_at.values()) if watcher.bound_at else time.perf_counter()
    first = min(watcher.bound_at.values()) if watcher.bound_at else last
    via = {"pods": pods, "bound": len(watcher.bound_at), "complete": done, "create_s": round(created - start, 3),
           "elapsed_s": round(last - start, 3), "first_bound_s": round(first - start, 3),
           "pods_per_s": round(len(watcher.bound_at) / (last - start), 1) if last > start else None}
    print(f"  RayJob flow: {via['bound']}/{pods} pods of {jobs} RayJobs bound in {via['elapsed_s']:.2f} s "
          f"(first after {via['first_bound_s']:.2f} s): {via['pods_per_s']} pods/s", flush=True)
    cluster.kubectl("delete", "rayjob", "--all", "-n", JOB_NS, "--wait=false", check=False)
    direct = Watcher(core, DIRECT_NS, "app=bench")
    start = time.perf_counter()
    for i in range(pods):
        core.create_namespaced_pod(DIRECT_NS, plain_pod(f"direct-{i:03d}", keys.DEFAULT_SCHEDULER))
    created = time.perf_counter()
    done_direct = direct.wait(pods, BIND_TIMEOUT)
    direct.close()
    last = max(direct.bound_at.values()) if direct.bound_at else time.perf_counter()
    plain = {"pods": pods, "bound": len(direct.bound_at), "complete": done_direct,
             "create_s": round(created - start, 3), "elapsed_s": round(last - start, 3),
             "pods_per_s": round(len(direct.bound_at) / (last - start), 1) if last > start else None}
    print(f"  the same {pods} pods created directly for default-scheduler: bound in {plain['elapsed_s']:.2f} s: "
          f"{plain['pods_per_s']} pods/s", flush=True)
    delete_pods(core, DIRECT_NS)
    ratio = round(via["pods_per_s"] / plain["pods_per_s"], 2) if via["pods_per_s"] and plain["pods_per_s"] else None
    return {"jobs": jobs, "rayqueue": via, "direct_default": plain, "ratio": ratio}


@contextlib.contextmanager
def _product(cluster: LocalCluster) -> Iterator[Extender]:
    """Webhook, tree, extender, rayqueue-scheduler, default scheduler and the stand-in, as tests/cluster does."""
    cluster.apply([d for d in _docs("elasticquotatree.yaml") if d["kind"] == "Namespace"])
    for ns in TREE_NAMESPACES:
        cluster.grant(TENANT, ns)
    hook = start_webhook(cluster, name="rayqueue-webhook-bench", extra_args=(f"--scheduler-name={SCHEDULER_NAME}",))
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            next(d for d in _docs("elasticquotatree.yaml") if d["kind"] == keys.QUOTA_TREE_KIND)))
        extender = start_extender(cluster)
        start_rayqueue_scheduler(cluster, extender)
        cluster.start_scheduler()
        standin = cluster.start_standin()
        wait_for(lambda: "caches synced" in standin.tail(200), 60.0, "the KubeRay stand-in's informers to sync")
        yield extender
    finally:
        stop_webhook(cluster, hook)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode: the median pods/s of each arm over its rounds, and each rayqueue arm over default."""
    out: dict[str, Any] = {}
    for mode in ("backlog", "live"):
        arms: dict[str, Any] = {}
        for arm in ("default", "rayqueue", "rayqueue+quota"):
            rates = [r["pods_per_s"] for r in rows if r["mode"] == mode and r["arm"] == arm and r["pods_per_s"]]
            arms[arm] = round(statistics.median(rates), 1) if rates else None
        base = arms["default"]
        for arm in ("rayqueue", "rayqueue+quota"):
            arms[f"{arm} ratio"] = round(arms[arm] / base, 2) if base and arms[arm] else None
        out[mode] = arms
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--pods", type=int, default=40, help="plain pods per live round (default %(default)s)")
    p.add_argument("--backlog-pods", type=int, default=100, help="plain pods per backlog round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the three arms (default %(default)s)")
    p.add_argument("--jobs", type=int, default=8, help="RayJobs in the RayJob flow; 0 skips it (default 8)")
    p.add_argument("--budget", type=float, default=300.0,
                   help="skip the RayJob flow when this many seconds have passed (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 10 pods, 2 RayJobs")
    args = p.parse_args(argv)
    if args.quick:
        args.pods, args.backlog_pods, args.rounds, args.jobs = 10, 20, 1, 2
    if args.pods < 1 or args.backlog_pods < 2 or args.rounds < 1 or args.jobs < 0:
        p.error("--pods and --rounds must be at least 1, --jobs at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    report: dict[str, Any] = {"benchmark": "e2e", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": machine(), "settings": {"nodes": NODES, "pods": args.pods,
                                                                 "backlog_pods": args.backlog_pods,
                                                                 "rounds": args.rounds, "jobs": args.jobs},
                              "target_ratio": TARGET_RATIO, "rounds": [], "rayjob_flow": None}
    print("starting the local cluster ...", flush=True)
    with LocalCluster(ensure_binaries()) as cluster:
        report["cluster_start_s"] = round(cluster.startup_seconds or 0.0, 1)
        core = k8s.CoreV1Api(cluster.api_client)
        for ns in (PLAIN_NS, DIRECT_NS):
            cluster.create_namespace(ns)
        with _product(cluster) as extender:
            t = time.monotonic()
            for i in range(NODES):
                cluster.create_node(f"bench-node-{i:02d}", cpu="8", memory="32Gi")
            report["nodes_s"] = round(time.monotonic() - t, 1)
            print(f"  {NODES} nodes in {report['nodes_s']} s; the product is up "
                  f"({time.monotonic() - started:.0f} s so far)", flush=True)
            def restart(scheduler: str) -> Callable[[], None]:
                """Stop a scheduler now; the returned function starts it again (waiting for /healthz)."""
                cluster.stop_scheduler(scheduler)

                def start() -> None:
                    if scheduler == SCHEDULER_NAME:
                        start_rayqueue_scheduler(cluster, extender)
                    else:
                        cluster.start_scheduler()
                return start

            for mode, count in (("backlog", args.backlog_pods), ("live", args.pods)):
                for rnd in range(1, args.rounds + 1):
                    for arm in ("default", "rayqueue", "rayqueue+quota"):
                        report["rounds"].append(plain_round(core, arm, count, rnd, mode, restart))
            if args.jobs and time.monotonic() - started < args.budget:
                report["rayjob_flow"] = rayjob_flow(cluster, core, args.jobs)
            elif args.jobs:
                report["rayjob_flow"] = {"skipped": f"over the {args.budget:.0f} s budget"}
    report["summary"] = summarize(report["rounds"])
    finish_report(report, args.out, started)
    print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    m, s = report["machine"], report["summary"]
    print(f"\ne2e benchmark, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}); {NODES} fake nodes; "
          f"cluster up in {report.get('cluster_start_s')} s")
    print(f"  {'mode':<8} {'arm':<15} {'round':>5} {'bound':>6} {'create s':>9} {'span s':>8} {'pods/s':>8}")
    for r in report["rounds"]:
        print(f"  {r['mode']:<8} {r['arm']:<15} {r['round']:>5} {r['bound']:>6} {r['create_s']:>9.2f} "
              f"{r['span_s']:>8.2f} {r['pods_per_s'] or 0:>8.1f}")
    for mode, a in s.items():
        print(f"  {mode} medians: default {a['default']} pods/s, rayqueue {a['rayqueue']} ({a['rayqueue ratio']}x), "
              f"rayqueue+quota {a['rayqueue+quota']} ({a['rayqueue+quota ratio']}x); target >= {TARGET_RATIO}x")
    flow = report["rayjob_flow"]
    if flow and "ratio" in flow:
        print(f"  RayJob flow: {flow['rayqueue']['pods_per_s']} pods/s through rayqueue vs "
              f"{flow['direct_default']['pods_per_s']} created directly for default-scheduler ({flow['ratio']}x)")
    elif flow:
        print(f"  RayJob flow: {flow}")
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
