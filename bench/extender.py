"""The extender benchmark: the filter verb and gang planning in-process, and /filter once over HTTP on 127.0.0.1.

Run it with `python -m bench.extender` (`--quick` for a smoke run). The cache is the real one
(extender.cache.Cache, fed node, pod and RayJob dicts through on_node/on_pod/on_rayjob) inside a real
extender.app.Service without an API client, so the SchedulerView is the one Service.view() builds.
Each filter case is timed against a baseline measured in the same run on the same request body:
orjson.loads of the body and orjson.dumps of an answer echoing its NodeNames. Bounded in iterations
and seconds per case; nothing asserts on time. Results: a table on stdout and bench/results/extender.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import yaml
from aiohttp import web

from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from common.clock import Clock, FakeClock
from common.gotime import format_go
from common.resources import Resources
from extender.app import Service
from extender.gang import GangPlan, Member, free_view, gang_key, plan_gang
from extender.protocol import parse_filter_args, render_filter_result
from extender.settings import Settings
from extender.verbs import filter_nodes

__all__ = ["World", "bound_pod", "build_world", "main", "node_dict", "seed_tree"]

ROOT: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = ROOT / "manifests" / "examples"
RESULTS: Final = ROOT / "bench" / "results" / "extender.json"
TARGET_RATIO: Final = 2.0  # the filter at most 2x the baseline (issue 7)
TARGET_PLAN_MS: Final = 50.0  # planning a gang of 1,000 members over 5,000 nodes under 50 ms
NODE_COUNTS: Final = (500, 5000)
GANG_MEMBERS: Final = (31, 256, 1000)
PODS_PER_NODE: Final = 4  # bound pods on every node, in namespaces no quota binds
GANG: Final = 31  # the guide's gang: 1 head + 30 workers, min-available 31
SCHEDULER_NAME: Final = "rayqueue-scheduler"
T0: Final = 1_736_472_984_000_000_000  # 2025-01-10 01:36:24 UTC, the enqueue stamps' base


# --- the objects ---------------------------------------------------------------------------------------
def seed_tree() -> dict[str, Any]:
    docs = yaml.safe_load_all((EXAMPLES / "elasticquotatree.yaml").read_text())
    tree: dict[str, Any] = next(d for d in docs if d and d["kind"] == keys.QUOTA_TREE_KIND)
    return tree


def node_dict(i: int) -> dict[str, Any]:
    """A Ready worker Node as the apiserver lists it (labels, capacity, allocatable, conditions, addresses)."""
    name = f"node-{i:05d}"
    cap = {"cpu": "32", "memory": "131886460Ki", "pods": "110", "ephemeral-storage": "203070420Ki",
           "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    alloc = {**cap, "cpu": "31850m", "memory": "128635260Ki", "ephemeral-storage": "187149698763"}
    beat = "2025-01-10T01:30:00Z"
    conditions = [
        {"type": t, "status": "False", "reason": f"KubeletHasSufficient{t.removesuffix('Pressure')}",
         "message": "ok", "lastHeartbeatTime": beat, "lastTransitionTime": beat}
        for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
          "lastHeartbeatTime": beat, "lastTransitionTime": beat}]
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": f"5c0f{i:08x}-0000-4000-8000-000000000000", "resourceVersion": str(10_000 + i),
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                       "node.kubernetes.io/instance-type": "m6i.8xlarge",
                       "topology.kubernetes.io/zone": f"zone-{i % 3}", "topology.kubernetes.io/region": "region-1"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                            "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
        },
        "spec": {"podCIDR": f"10.{i // 256 % 256}.{i % 256}.0/24", "providerID": f"aws:///zone/i-{i:017x}"},
        "status": {
            "capacity": cap, "allocatable": alloc, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": f"10.0.{i // 256 % 256}.{i % 256}"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.20.2", "containerRuntimeVersion": "containerd://1.4.3",
                         "osImage": "Ubuntu 20.04.6 LTS", "kernelVersion": "5.15.0", "operatingSystem": "linux",
                         "architecture": "amd64"},
        },
    }


def _container(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "name": name, "image": "registry.example.com/team/app:1.4.2",
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}},
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "default-token",
                          "readOnly": True}],
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod_dict(name: str, namespace: str, uid: str, *, cpu: str, memory: str, labels: dict[str, str],
             node: str | None = None, scheduler: str = "default-scheduler",
             owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Pod as the apiserver lists it: one container with requests = limits, the token volume, tolerations."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1",
                            "creationTimestamp": "2025-01-10T01:36:24Z", "labels": labels}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    spec: dict[str, Any] = {
        "containers": [_container("main", cpu, memory)],
        "volumes": [{"name": "default-token", "secret": {"secretName": "default-token", "defaultMode": 420}}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "schedulerName": scheduler, "priority": 0,
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 300},
        ],
    }
    status: dict[str, Any] = {"phase": "Pending", "qosClass": "Guaranteed"}
    if node is not None:
        spec["nodeName"] = node
        status = {"phase": "Running", "qosClass": "Guaranteed", "hostIP": "10.0.0.1", "podIP": "10.1.0.1",
                  "startTime": "2025-01-10T01:36:30Z"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def bound_pod(i: int, nodes: int) -> dict[str, Any]:
    """The i-th running pod of the background load: 2 CPU / 4 GiB, on node i % nodes, outside any quota."""
    app = f"svc-{i % 97}"
    return pod_dict(f"{app}-{i:06d}", f"team-{i % 20}", f"b0d{i:09x}-0000-4000-8000-000000000000", cpu="2",
                    memory="4Gi", node=f"node-{i % nodes:05d}",
                    labels={"app": app, "pod-template-hash": "7d9f8c6b5"})


def gang_job(members: int, *, name: str = "rayjob-gang", namespace: str = "algorithm-text") -> dict[str, Any]:
    """An admitted gang RayJob (1 head + members-1 workers of 1 CPU / 512 MiB), stamped and dequeued."""
    worker = {"groupName": "small-group", "replicas": members - 1, "minReplicas": members - 1,
              "maxReplicas": members - 1, "rayStartParams": {},
              "template": {"spec": {"containers": [_container("ray-worker", "1", "512Mi")]}}}
    return {
        "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYJOB_KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}", "resourceVersion": "7",
                     "labels": {keys.GANG_SCHEDULER_LABEL: keys.GANG_SCHEDULER_VALUE,
                                keys.QUOTA_NAME: "algorithm-text"},
                     "annotations": {keys.ENQUEUE_TIMESTAMP: format_go(T0),
                                     keys.DEQUEUE_TIMESTAMP: format_go(T0 + 10**9)}},
        "spec": {"entrypoint": "python /home/ray/samples/sample_code.py", "shutdownAfterJobFinishes": True,
                 "submissionMode": "HTTPMode", "suspend": False,
                 "rayClusterSpec": {"rayVersion": "2.9.0",
                                    "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {
                                        "containers": [_container("ray-head", "1", "512Mi")]}}},
                                    "workerGroupSpecs": [worker]}},
        "status": {"jobDeploymentStatus": "Initializing", "rayClusterName": f"{name}-raycluster-x7k2p"},
    }


def gang_pods(members: int, *, job: str = "rayjob-gang", namespace: str = "algorithm-text") -> list[dict[str, Any]]:
    """The job's pending Ray pods as KubeRay creates them after the webhook stamped the pod-group labels."""
    cluster = f"{job}-raycluster-x7k2p"
    owner = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": cluster,
             "uid": "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4", "controller": True, "blockOwnerDeletion": True}
    out = []
    for i in range(members):
        head = i == 0
        labels = {keys.RAY_CLUSTER: cluster, keys.RAY_NODE_TYPE: "head" if head else "worker",
                  keys.RAY_GROUP_LABEL: "headgroup" if head else "small-group", keys.RAY_IS_RAY_NODE: "yes",
                  keys.POD_GROUP_NAME: cluster, keys.POD_GROUP_MIN_AVAILABLE: str(members),
                  keys.QUOTA_NAME: "algorithm-text", "app.kubernetes.io/created-by": "kuberay-operator"}
        name = f"{cluster}-head-0" if head else f"{cluster}-small-group-worker-{i:04d}"
        out.append(pod_dict(name, namespace, f"9a11{i:08x}-0000-4000-8000-000000000000", cpu="1", memory="512Mi",
                            labels=labels, scheduler=SCHEDULER_NAME, owner=owner))
    return out


def lone_pod() -> dict[str, Any]:
    """A pod of no job and no gang in the video namespace (quota checked as a pod claim)."""
    return pod_dict("lone-0", "video", "10e00000-0000-4000-8000-000000000000", cpu="1", memory="2Gi",
                    labels={"app": "lone"}, scheduler=SCHEDULER_NAME)


# --- the world: a Service whose cache is fed directly ------------------------------------------------
class BenchService(Service):
    """The real Service, with its cache fed by hand instead of by reflectors: synced from the start."""

    @property
    def synced(self) -> bool:
        return True


def settings() -> Settings:
    return Settings(kubeconfig=None, host="127.0.0.1", port=0, tls_cert=None, tls_key=None, namespace="rayqueue",
                    leader_elect=False, lease_name="rayqueue-extender", identity="bench", gang_timeout=25.0,
                    reservation_ttl=600.0, backoff_base=5.0, backoff_max=300.0, resync_seconds=30.0,
                    log_level="WARNING")


@dataclass
class World:
    service: Service
    nodes: int
    pods: int
    feed_s: dict[str, float]
    lone: dict[str, Any]
    gang: list[dict[str, Any]]


def build_world(nodes: int, clock: Clock) -> World:
    """Tree, then nodes, bound pods, the admitted gang job and its pending pods, and the lone pod."""
    service = BenchService(settings(), None, clock)
    cache = service.cache
    feed: dict[str, float] = {}
    t = time.perf_counter()
    cache.on_tree("ADDED", seed_tree())
    for i in range(nodes):
        cache.on_node("ADDED", node_dict(i))
    feed["nodes"] = time.perf_counter() - t
    t = time.perf_counter()
    count = nodes * PODS_PER_NODE
    for i in range(count):
        cache.on_pod("ADDED", bound_pod(i, nodes))
    feed["pods"] = time.perf_counter() - t
    cache.on_rayjob("ADDED", gang_job(GANG))
    gang = gang_pods(GANG)
    for pod in gang:
        cache.on_pod("ADDED", pod)
    lone = lone_pod()
    cache.on_pod("ADDED", lone)
    return World(service, nodes, count + GANG + 1, feed, lone, gang)


# --- timing ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Timing:
    iterations: int
    mean_us: float
    median_us: float
    p90_us: float
    min_us: float

    def to_json(self) -> dict[str, float | int]:
        return {"iterations": self.iterations, "mean_us": round(self.mean_us, 1), "median_us": round(self.median_us, 1),
                "p90_us": round(self.p90_us, 1), "min_us": round(self.min_us, 1)}


def timed(fn: Callable[[], object], *, iterations: int, max_seconds: float, warmup: int = 3,
          before: Callable[[], object] | None = None) -> Timing:
    """Call `fn` up to `iterations` times (stopping after `max_seconds`); `before` runs untimed before each call."""
    for _ in range(warmup):
        if before is not None:
            before()
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    gc.collect()
    while len(samples) < iterations and (not samples or time.perf_counter() < deadline):
        if before is not None:
            before()
        t = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t) / 1000)
    samples.sort()
    return Timing(len(samples), statistics.fmean(samples), statistics.median(samples),
                  samples[min(len(samples) - 1, int(len(samples) * 0.9))], samples[0])


def request_body(pod: dict[str, Any], nodes: int) -> bytes:
    """ExtenderArgs as kube-scheduler sends it with nodeCacheCapable: the pod, NodeNames, Nodes null."""
    return orjson.dumps({"Pod": pod, "Nodes": None, "NodeNames": [f"node-{i:05d}" for i in range(nodes)]})


def baseline(body: bytes) -> bytes:
    args = orjson.loads(body)
    return orjson.dumps({"NodeNames": args["NodeNames"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {},
                         "Error": ""})


def pure_filter(service: Service, body: bytes) -> bytes:
    """What SchedulingEndpoints.filter does, minus the HTTP shell: decode, parse, view, filter, render, encode."""
    args = parse_filter_args(orjson.loads(body))
    result = filter_nodes(args, service.view())
    return orjson.dumps(render_filter_result(result, args))


def _answer_summary(answer: bytes) -> dict[str, Any]:
    out = orjson.loads(answer)
    return {"passed": len(out["NodeNames"]), "failed": len(out["FailedNodes"]), "error": out["Error"],
            "first_reason": next(iter(out["FailedNodes"].values()), "")}


def filter_cases(world: World, iterations: int, max_seconds: float) -> list[dict[str, Any]]:
    service = world.service
    gang = world.gang
    key = gang_key("algorithm-text", gang[0]["metadata"]["labels"][keys.POD_GROUP_NAME])
    rows: list[dict[str, Any]] = []

    def row(case: str, body: bytes, fn: Callable[[], bytes], before: Callable[[], object] | None = None,
            n: int = iterations) -> None:
        answer = fn()
        base = timed(lambda: baseline(body), iterations=max(n, 50), max_seconds=max_seconds)
        spent = timed(fn, iterations=n, max_seconds=max_seconds, before=before)
        rows.append({"case": case, "nodes": world.nodes, "cached_pods": world.pods, "body_bytes": len(body),
                     "filter": spent.to_json(), "baseline": base.to_json(),
                     "ratio": round(spent.median_us / base.median_us, 1), "answer": _answer_summary(answer)})
        print(f"  {world.nodes:>5} nodes  {case:<22} {spent.median_us / 1000:9.2f} ms   baseline "
              f"{base.median_us / 1000:7.3f} ms   ratio {spent.median_us / base.median_us:7.1f}x", flush=True)

    lone = request_body(world.lone, world.nodes)
    row("pod, no gang", lone, lambda: pure_filter(service, lone))
    member = request_body(gang[7], world.nodes)
    release = lambda: service.reservations.release(key)  # noqa: E731 - the first call of a gang plans anew
    row("gang member, first", member, lambda: pure_filter(service, member), before=release,
        n=max(5, iterations // 4))
    pure_filter(service, member)  # plan and hold
    bodies = [request_body(p, world.nodes) for p in gang[1:]]
    turn = iter(range(10**9))
    row("gang member, steady", member, lambda: pure_filter(service, bodies[next(turn) % len(bodies)]))
    return rows


def planning(world: World, iterations: int, max_seconds: float) -> list[dict[str, Any]]:
    """plan_gang and free_view for gangs of 31, 256 and 1,000 members over the world's nodes (4 bound pods each,
    and the guide-sized gang's reservation held)."""
    state = world.service.cache.nodes
    reservations = world.service.reservations
    rows: list[dict[str, Any]] = []
    for members in GANG_MEMBERS:
        head = Member("head", Resources({"cpu": 2000, "memory": 8 * 2**30}))
        workers = [Member(f"w{i:04d}", Resources({"cpu": 1000, "memory": 2 * 2**30})) for i in range(members - 1)]
        todo = [head, *workers]
        free = free_view(state, reservations)
        plan = plan_gang("bench/gang", todo, free)
        fv = timed(lambda: free_view(state, reservations), iterations=iterations, max_seconds=max_seconds)
        pg = timed(lambda: plan_gang("bench/gang", todo, free), iterations=iterations,  # noqa: B023
                   max_seconds=max_seconds)
        used = len(set(plan.assignments.values())) if isinstance(plan, GangPlan) else 0
        rows.append({"members": members, "nodes": world.nodes, "placed": bool(plan), "nodes_used": used,
                     "free_view": fv.to_json(), "plan_gang": pg.to_json(),
                     "total_ms": round((fv.median_us + pg.median_us) / 1000, 2)})
        print(f"  gang of {members:>5} over {world.nodes} nodes: free_view {fv.median_us / 1000:7.2f} ms  "
              f"plan_gang {pg.median_us / 1000:7.2f} ms  ({used} nodes used)", flush=True)
    return rows


# --- over HTTP --------------------------------------------------------------------------------------------
async def _http(world: World, requests: int, max_seconds: float) -> list[dict[str, Any]]:
    app = world.service.app()

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=baseline(await request.read()), content_type="application/json")

    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rows: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as session:
            async def post(path: str, body: bytes) -> bytes:
                async with session.post(f"http://127.0.0.1:{port}{path}", data=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"POST {path}: HTTP {resp.status}: {(await resp.text())[:300]}")
                    return await resp.read()

            async def run(path: str, bodies: Sequence[bytes]) -> tuple[Timing, bytes]:
                first = b""
                for i in range(3):
                    first = await post(path, bodies[i % len(bodies)])
                samples: list[float] = []
                deadline = time.perf_counter() + max_seconds
                while len(samples) < requests and (not samples or time.perf_counter() < deadline):
                    t = time.perf_counter_ns()
                    await post(path, bodies[len(samples) % len(bodies)])
                    samples.append((time.perf_counter_ns() - t) / 1000)
                samples.sort()
                return Timing(len(samples), statistics.fmean(samples), statistics.median(samples),
                              samples[min(len(samples) - 1, int(len(samples) * 0.9))], samples[0]), first

            cases = [("pod, no gang", [request_body(world.lone, world.nodes)]),
                     ("gang member, steady", [request_body(p, world.nodes) for p in world.gang[1:]])]
            for case, bodies in cases:
                for _ in range(2):  # alternate: extender, echo, extender, echo
                    spent, answer = await run("/filter", bodies)
                    base, _ = await run("/echo", bodies)
                    rows.append({"case": case, "nodes": world.nodes, "filter": spent.to_json(), "echo": base.to_json(),
                                 "ratio": round(spent.median_us / base.median_us, 1),
                                 "answer": _answer_summary(answer)})
                    print(f"  HTTP {world.nodes:>5} nodes  {case:<22} {spent.median_us / 1000:9.2f} ms   echo "
                          f"{base.median_us / 1000:7.3f} ms   ratio {spent.median_us / base.median_us:7.1f}x", flush=True)
    finally:
        await runner.cleanup()
    return rows


# --- report ------------------------------------------------------------------------------------------
def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"\nextender benchmark, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}")
    print("filter, in-process (decode, parse, view, filter_nodes, render, encode); medians in ms:")
    print(f"  {'nodes':>5} {'case':<22} {'filter':>9} {'baseline':>9} {'ratio':>7} {'p90':>9}  answer")
    for r in report["filter"]:
        a = r["answer"]
        print(f"  {r['nodes']:>5} {r['case']:<22} {r['filter']['median_us'] / 1000:9.2f} "
              f"{r['baseline']['median_us'] / 1000:9.3f} {r['ratio']:>6.1f}x {r['filter']['p90_us'] / 1000:9.2f}  "
              f"{a['passed']} pass, {a['failed']} fail")
    print("gang planning (median ms):")
    print(f"  {'members':>7} {'nodes':>6} {'free_view':>10} {'plan_gang':>10} {'total':>8}  nodes used")
    for r in report["planning"]:
        print(f"  {r['members']:>7} {r['nodes']:>6} {r['free_view']['median_us'] / 1000:10.2f} {r['plan_gang']['median_us'] / 1000:10.2f} "
              f"{r['total_ms']:8.2f}  {r['nodes_used']}")
    print("over HTTP on 127.0.0.1 (Service.app() /filter vs an echo handler on the same server; median ms):")
    for r in report["http"]:
        print(f"  {r['nodes']:>5} {r['case']:<22} {r['filter']['median_us'] / 1000:9.2f} "
              f"{r['echo']['median_us'] / 1000:9.3f} {r['ratio']:>6.1f}x")
    print("targets:")
    for line in report["verdicts"]:
        print(f"  {line}")
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")


def verdicts(report: dict[str, Any]) -> list[str]:
    lines = [f"filter {r['case']} at {r['nodes']} nodes: {r['ratio']:.1f}x the baseline (target <= {TARGET_RATIO:g}x): "
             f"{'met' if r['ratio'] <= TARGET_RATIO else 'NOT met'}" for r in report["filter"]]
    for r in report["planning"]:
        if r["members"] == 1000:
            lines.append(f"gang of 1,000 over {r['nodes']} nodes: free_view + plan_gang {r['total_ms']:.1f} ms "
                         f"(target < {TARGET_PLAN_MS:g} ms): {'met' if r['total_ms'] < TARGET_PLAN_MS else 'NOT met'}")
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.extender", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--iterations", type=int, default=200, help="timed calls per case at most (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=6.0, help="cap per timed case (default %(default)s)")
    p.add_argument("--requests", type=int, default=100, help="HTTP requests per run at most (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a smoke run: 500 nodes only, few iterations")
    args = p.parse_args(list(argv))
    if args.iterations < 1 or args.requests < 1 or args.max_seconds <= 0:
        p.error("--iterations and --requests must be at least 1, --max-seconds positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    counts = (500,) if args.quick else NODE_COUNTS
    iterations, max_s = (10, 1.0) if args.quick else (args.iterations, args.max_seconds)
    report: dict[str, Any] = {
        "benchmark": "extender", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "settings": {"iterations": iterations, "max_seconds": max_s, "requests": args.requests,
                     "pods_per_node": PODS_PER_NODE, "gang_members": GANG},
        "targets": {"filter_ratio_max": TARGET_RATIO, "plan_1000_ms_max": TARGET_PLAN_MS},
        "filter": [], "feed_s": {}, "http": [],
    }
    for n in counts:
        print(f"building a cache of {n} nodes and {n * PODS_PER_NODE} bound pods ...", flush=True)
        world = build_world(n, FakeClock())
        report["feed_s"][str(n)] = {k: round(v, 3) for k, v in world.feed_s.items()}
        print(f"  fed in {world.feed_s['nodes']:.1f} s (tree and nodes) + {world.feed_s['pods']:.1f} s (pods)",
              flush=True)
        report["filter"] += filter_cases(world, iterations, max_s)
        if n == counts[-1]:
            print(f"gang planning over {n} nodes ...", flush=True)
            report["planning"] = planning(world, 5 if args.quick else 50, max_s)
            print(f"/filter over HTTP, {n} nodes ...", flush=True)
            report["http"] = asyncio.run(_http(world, 10 if args.quick else args.requests, max_s))
        del world
    report["verdicts"] = verdicts(report)
    finish_report(report, args.out, started)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
