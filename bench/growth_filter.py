"""The growth filter benchmark (issue 11): a growth pod's /filter decision next to the plain non-gang pod's, at
5,000 nodes, as ratios measured in the same run.

Run it with `python -m bench.growth_filter` (`--quick` for a smoke run at 500 nodes). The world is
bench.extender's (the real Cache inside a real Service, 5,000 nodes, 20,000 bound pods outside any quota)
plus an admitted video RayJob of 1 head + 1 worker whose RayCluster has grown: one growth worker bound, and
pending ones. A growth pod is checked against the ledger like any pod, plus the guaranteed-first guard
against the waiting guaranteed heads, and its answer is recorded for the RayCluster's condition
(docs/growth.md). Cases, each on its own request body, timed with bench.extender.timed (bounded in
iterations and seconds; nothing asserts on time):

* plain pod, fits / refused: a pending 1-CPU pod of no job in video (the baseline of the ratios);
* growth pod, fits / refused: a pending 1-CPU worker of the grown cluster (refused: once a bound filler
  pod has filled video to its max);
* growth pod, fits, 5 guaranteed heads waiting: the guard evaluated against each.

Results: a table on stdout and bench/results/growth_filter.json (with each case's ratio to the plain pod's
case of the same outcome, and to bench.extender's JSON round-trip baseline).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.extender import (
    SCHEDULER_NAME,
    T0,
    Timing,
    World,
    _answer_summary,
    _container,
    baseline,
    build_world,
    pod_dict,
    pure_filter,
    request_body,
    timed,
)
from bench.loadgen import finish_report
from bench.webhook import machine
from common import keys
from common.clock import FakeClock
from common.gotime import format_go
from common.ledger import Claim
from common.resources import Resources

__all__ = ["main"]

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "growth_filter.json"
NODES: Final = 5000
ROUNDS: Final = 3  # each case measured in 3 rounds, interleaved with the others of its group
JOB: Final = "rayjob-elastic"
JOB_UID: Final = "uid-video-rayjob-elastic"
CLUSTER: Final = f"{JOB}-x7k2p"
CLUSTER_UID: Final = "c1a57e00-0000-4000-8000-000000000000"


def elastic_job() -> dict[str, Any]:
    """An admitted, non-gang video RayJob: 1 head + 1 worker of 1 CPU / 2 GiB, HTTPMode (no submitter)."""
    worker = {"groupName": "small-group", "replicas": 1, "minReplicas": 1, "maxReplicas": 8, "rayStartParams": {},
              "template": {"spec": {"containers": [_container("ray-worker", "1", "2Gi")]}}}
    return {
        "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYJOB_KIND,
        "metadata": {"name": JOB, "namespace": "video", "uid": JOB_UID, "resourceVersion": "7",
                     "annotations": {keys.ENQUEUE_TIMESTAMP: format_go(T0),
                                     keys.DEQUEUE_TIMESTAMP: format_go(T0 + 10**9)}},
        "spec": {"entrypoint": "python /home/ray/samples/sample_code.py", "shutdownAfterJobFinishes": True,
                 "submissionMode": "HTTPMode", "suspend": False,
                 "rayClusterSpec": {"rayVersion": "2.9.0", "enableInTreeAutoscaling": True,
                                    "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {
                                        "containers": [_container("ray-head", "1", "2Gi")]}}},
                                    "workerGroupSpecs": [worker]}},
        "status": {"jobDeploymentStatus": "Running", "rayClusterName": CLUSTER},
    }


def elastic_cluster() -> dict[str, Any]:
    return {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND,
            "metadata": {"name": CLUSTER, "namespace": "video", "uid": CLUSTER_UID,
                         "ownerReferences": [{"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}",
                                              "kind": keys.RAYJOB_KIND, "name": JOB, "uid": JOB_UID,
                                              "controller": True}]}}


def ray_pod(i: int, *, head: bool = False, cpu: str = "1", node: str | None = None) -> dict[str, Any]:
    """The i-th Ray pod KubeRay made for the elastic cluster (created i seconds after the first)."""
    owner = {"apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND, "name": CLUSTER,
             "uid": CLUSTER_UID, "controller": True, "blockOwnerDeletion": True}
    labels = {keys.RAY_CLUSTER: CLUSTER, keys.RAY_NODE_TYPE: "head" if head else "worker",
              keys.RAY_GROUP_LABEL: "headgroup" if head else "small-group", keys.RAY_IS_RAY_NODE: "yes",
              "app.kubernetes.io/created-by": "kuberay-operator"}
    name = f"{CLUSTER}-head-0" if head else f"{CLUSTER}-small-group-worker-{i:04d}"
    pod = pod_dict(name, "video", f"e1a{i:09x}-0000-4000-8000-000000000000", cpu=cpu, memory="2Gi", labels=labels,
                   node=node, scheduler=SCHEDULER_NAME, owner=owner)
    pod["metadata"]["creationTimestamp"] = f"2025-01-10T01:40:{i:02d}Z"
    return pod


def lone(name: str, uid: int, cpu: str) -> dict[str, Any]:
    return pod_dict(name, "video", f"10e{uid:09x}-0000-4000-8000-000000000000", cpu=cpu, memory="2Gi",
                    labels={"app": "lone"}, scheduler=SCHEDULER_NAME)


def grow(world: World) -> dict[str, dict[str, Any]]:
    """Add the elastic job, its RayCluster, its head and worker (covered) and one bound growth worker; return
    the pending pods the cases filter."""
    cache = world.service.cache
    cache.on_rayjob("ADDED", elastic_job())
    cache.on_raycluster("ADDED", elastic_cluster())
    for pod in (ray_pod(0, head=True, node="node-00000"), ray_pod(1, node="node-00001"), ray_pod(2, node="node-00002")):
        cache.on_pod("ADDED", pod)
    pending = {"growth": ray_pod(3), "plain": lone("lone-pending", 1, "1")}
    for pod in pending.values():
        cache.on_pod("ADDED", pod)
    return pending


def heads(count: int) -> tuple[Claim, ...]:
    """Guaranteed jobs waiting in other leaves (within their mins), as the last pass left them."""
    leaves = ["root/algorithm/text", "root/infrastructure/devops", "root/devops"]
    return tuple(Claim(uid=f"head-{i}", key=f"ns/head-{i}", kind="job", quota=leaves[i % len(leaves)],
                       request=Resources({"cpu": 1000, "memory": 2**30})) for i in range(count))


def cases(world: World, pending: dict[str, dict[str, Any]], iterations: int, max_seconds: float) -> list[dict[str, Any]]:
    service = world.service
    rows: list[dict[str, Any]] = []
    medians: dict[str, float] = {}

    def measure(pod: dict[str, Any], guaranteed: int) -> tuple[bytes, Timing, Timing]:
        body = request_body(pod, world.nodes)
        service.cache.waiting_guaranteed = heads(guaranteed)
        answer = pure_filter(service, body)
        base = timed(lambda: baseline(body), iterations=max(iterations, 50), max_seconds=max_seconds)
        spent = timed(lambda: pure_filter(service, body), iterations=iterations, max_seconds=max_seconds)
        service.cache.waiting_guaranteed = ()
        return answer, base, spent

    def row(case: str, pod: dict[str, Any], plain: str | None, guaranteed: int = 0) -> None:
        # ROUNDS rounds, each case of a group measured in turn (a shared machine's load drifts): the median
        # round of each case
        if case not in measured:
            runs: dict[str, list[tuple[bytes, Timing, Timing]]] = {c: [] for c, *_ in groups[case]}
            for _ in range(ROUNDS):
                for c, p, g in groups[case]:
                    runs[c].append(measure(p, g))
            for c, results in runs.items():
                results.sort(key=lambda r: r[2].median_us)
                measured[c] = results[len(results) // 2]
        answer, base, spent = measured[case]
        medians[case] = spent.median_us
        out: dict[str, Any] = {"case": case, "nodes": world.nodes, "cached_pods": len(service.cache.pods()),
                               "filter": spent.to_json(), "baseline": base.to_json(),
                               "ratio_to_json_baseline": round(spent.median_us / base.median_us, 2),
                               "answer": _answer_summary(answer)}
        line = f"  {world.nodes:>5} nodes  {case:<34} {spent.median_us / 1000:8.2f} ms"
        if plain is not None:
            out["ratio_to_plain"] = round(spent.median_us / medians[plain], 2)
            line += f"   {out['ratio_to_plain']:5.2f}x the {plain} pod"
        rows.append(out)
        print(line, flush=True)

    measured: dict[str, tuple[bytes, Timing, Timing]] = {}
    fits = [("plain, fits", pending["plain"], 0), ("growth, fits", pending["growth"], 0),
            ("growth, fits, 5 guaranteed waiting", pending["growth"], 5)]
    groups = {c: fits for c, *_ in fits}
    row("plain, fits", pending["plain"], None)
    row("growth, fits", pending["growth"], "plain, fits")
    row("growth, fits, 5 guaranteed waiting", pending["growth"], "plain, fits", guaranteed=5)
    # video nearly full: the elastic job's 2 CPU (its real pods' requests), its bound growth worker's 1 and a
    # filler's 10.5; the same two pods of 1 CPU are refused now
    filler = lone("filler", 3, "10500m")
    filler["spec"]["nodeName"] = "node-00003"
    service.cache.on_pod("ADDED", filler)
    refused = [("plain, refused", pending["plain"], 0), ("growth, refused", pending["growth"], 0)]
    groups.update({c: refused for c, *_ in refused})
    row("plain, refused", pending["plain"], None)
    row("growth, refused", pending["growth"], "plain, refused")
    return rows


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.growth_filter", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--iterations", type=int, default=200, help="timed calls per case at most (default %(default)s)")
    p.add_argument("--max-seconds", type=float, default=6.0, help="cap per timed case (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="a smoke run: 500 nodes, few iterations")
    args = p.parse_args(list(argv))
    if args.iterations < 1 or args.max_seconds <= 0:
        p.error("--iterations must be at least 1, --max-seconds positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    nodes = 500 if args.quick else NODES
    iterations, max_s = (10, 1.0) if args.quick else (args.iterations, args.max_seconds)
    report: dict[str, Any] = {
        "benchmark": "growth_filter", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "settings": {"nodes": nodes, "iterations": iterations, "max_seconds": max_s},
    }
    print(f"building a cache of {nodes} nodes ...", flush=True)
    world = build_world(nodes, FakeClock())
    pending = grow(world)
    report["filter"] = cases(world, pending, iterations, max_s)
    finish_report(report, args.out, started)
    print(f"results in {report['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
