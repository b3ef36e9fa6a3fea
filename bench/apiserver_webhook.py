"""The webhook as the apiserver sees it: Pod and RayJob CREATE throughput through kube-apiserver, with rayqueue's
webhooks registered and with none, same run, same client; and the webhook's CPU per admission.

Run it with `python -m bench.apiserver_webhook` (`--quick`: 100 objects, 1 round). On a real local control
plane (devcluster.cluster.LocalCluster) with the guide tree's namespaces and tree, the webhook process
(`python -m webhook`, TLS on 127.0.0.1) runs throughout; the arms differ only in whether its
MutatingWebhookConfiguration and ValidatingWebhookConfiguration are registered. Each arm is entered by
(un)registering and then waiting until a probe Pod shows (or no longer shows) the webhook's quota label,
so the apiserver's webhook informer has caught up. In each arm the same aiohttp client
(`kubeio.client.KubeClient`, ``--parallel`` in flight) creates N Pods (100m / 64 MiB, never scheduled:
no scheduler runs) in `video`, a namespace bound to a leaf, then N RayJobs (the guide's video job) there;
then N Pods in `unmanaged`, a namespace without the `rayqueue.io/quota-namespace` label, whose pods the webhook
configurations never send (issue 25 item 4: docs/security.md, S2); objects are deleted after each case. Rounds
alternate none, rayqueue. Throughput is N over the time from
the first create sent to the last answer. CPU per admission is the webhook process's user + system CPU
(`/proc/<pid>/stat`) over the case, over N x 2 (each CREATE calls /mutate and /validate).
Goals (issue 13): ratio >= 0.9 for Pods and RayJobs; <= 100 us per admission; (issue 25) ratio >= 0.95 for
the unmanaged Pods. A figure counts only from a quiet machine (load average below 1.5 at the start, reported). Results: bench/results/apiserver_webhook.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from bench.admission import _bounded
from bench.extender import ROOT
from bench.loadgen import finish_report, process_cpu_seconds
from bench.webhook import machine
from common import keys
from devcluster.cluster import LocalCluster, ensure_binaries
from devcluster.services import Webhook, start_webhook, stop_webhook
from kubeio.client import KubeClient, load_configuration
from kubeio.scopes import RAYJOBS

__all__ = ["main"]

RESULTS: Final = ROOT / "bench" / "results" / "apiserver_webhook.json"
EXAMPLES: Final = ROOT / "manifests" / "examples"
NAMESPACE: Final = "video"
GOAL_RATIO: Final = 0.9
UNMANAGED: Final = "unmanaged"  # no quota-namespace label: its pods never reach the webhook
GOAL_RATIOS: Final = {"pod": GOAL_RATIO, "rayjob": GOAL_RATIO, "unmanaged-pod": 0.95}
GOAL_CPU_US: Final = 100.0
PODS_PATH: Final = f"/api/v1/namespaces/{NAMESPACE}/pods"


def _docs(file: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / file).read_text()) if d]


def pod(name: str) -> dict[str, Any]:
    amounts = {"cpu": "100m", "memory": "64Mi"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "registry.example.com/bench:1",
                                     "resources": {"requests": amounts, "limits": amounts}}]}}


def rayjob(name: str) -> dict[str, Any]:
    job = copy.deepcopy(next(d for d in _docs("video-rayjob.yaml") if d["kind"] == keys.RAYJOB_KIND))
    job["metadata"] = {"name": name, "namespace": NAMESPACE}
    return job


def _labelled(obj: dict[str, Any]) -> bool:
    return keys.QUOTA_NAME in ((obj.get("metadata") or {}).get("labels") or {})


async def _probe(client: KubeClient, serial: int) -> bool:
    """Create a probe Pod and say whether the webhook stamped it (then delete it)."""
    created = await client.create(PODS_PATH, pod(f"probe-{serial}"))
    await client.delete(f"{PODS_PATH}/probe-{serial}", {"gracePeriodSeconds": 0})
    return _labelled(created)


async def _peers(port: int, seen: set[str], stop: asyncio.Event) -> None:
    """Every client address connected to the webhook's port, sampled with `ss` every 20 ms: how many
    connections the apiserver opened (a TLS handshake each) for the case's admissions."""
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec("ss", "-Htn", "state", "established", f"( sport = :{port} )",
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        seen.update(line.split()[-1] for line in out.decode().splitlines() if line.strip())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def _case(client: KubeClient, kind: str, arm: str, rnd: int, n: int, parallel: int,
                hook: Webhook) -> dict[str, Any]:
    if kind == "pod":
        path, make = PODS_PATH, pod
    elif kind == "unmanaged-pod":
        path, make = f"/api/v1/namespaces/{UNMANAGED}/pods", pod
    else:
        path, make = RAYJOBS.path(NAMESPACE), rayjob
    names = [f"{kind}-{arm}-{rnd}-{i:05d}" for i in range(n)]
    peers: set[str] = set()
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(_peers(hook.port, peers, stop))
    cpu_before = process_cpu_seconds(hook.process.pid)
    started = time.perf_counter()
    failed = await _bounded(parallel, [client.create(path, make(name)) for name in names])
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    cpu_after = process_cpu_seconds(hook.process.pid)
    cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else None
    await _bounded(parallel, [client.delete(f"{path}/{name}", {"gracePeriodSeconds": 0}) for name in names])
    row = {"case": kind, "arm": arm, "round": rnd, "objects": n, "failed": failed, "elapsed_s": round(elapsed, 2),
           "per_s": round((n - failed) / elapsed, 1), "webhook_connections_seen": len(peers),
           "webhook_cpu_us_per_admission": round(cpu / (2 * n) * 1e6, 1) if cpu is not None and arm == "rayqueue"
           else None}
    print(f"  round {rnd} {arm:<8} {kind:<6} {n - failed}/{n} in {elapsed:.2f} s: {row['per_s']}/s"
          + (f", webhook {row['webhook_cpu_us_per_admission']} us CPU per admission"
             if row["webhook_cpu_us_per_admission"] is not None else "")
          + (f", {len(peers)} connections to it seen" if arm == "rayqueue" else ""), flush=True)
    return row


async def _run(cluster: LocalCluster, hook: Webhook, n: int, rounds: int, parallel: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    serial = 0
    async with KubeClient(load_configuration(str(cluster.admin_kubeconfig))) as client:
        for rnd in range(1, rounds + 1):
            for arm in ("none", "rayqueue"):
                if arm == "rayqueue":
                    cluster.apply(list(hook.configurations))
                else:
                    for doc in hook.configurations:
                        cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found",
                                        check=False)
                want = arm == "rayqueue"
                for _ in range(60):  # the apiserver's webhook informer catches up within a second or two
                    serial += 1
                    if await _probe(client, serial) == want:
                        break
                    await asyncio.sleep(0.5)
                else:
                    raise RuntimeError(f"the apiserver did not switch to arm {arm}")
                for kind in GOAL_RATIOS:
                    rows.append(await _case(client, kind, arm, rnd, n, parallel, hook))
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in GOAL_RATIOS:
        rates = {arm: [r["per_s"] for r in rows if r["case"] == kind and r["arm"] == arm] for arm in ("none", "rayqueue")}
        none, ours = statistics.median(rates["none"]), statistics.median(rates["rayqueue"])
        cpu = [r["webhook_cpu_us_per_admission"] for r in rows
               if r["case"] == kind and r["webhook_cpu_us_per_admission"] is not None]
        ratio = round(ours / none, 2) if none else None
        cpu_us = round(statistics.median(cpu), 1) if cpu else None
        out[kind] = {"none_per_s": none, "rayqueue_per_s": ours, "ratio": ratio, "webhook_cpu_us_per_admission": cpu_us,
                     "goal_ratio": GOAL_RATIOS[kind], "ratio_met": bool(ratio is not None and ratio >= GOAL_RATIOS[kind]),
                     "cpu_met": bool(cpu_us is not None and cpu_us <= GOAL_CPU_US)}
    return out


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.apiserver_webhook", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--objects", type=int, default=500, help="Pods and RayJobs per case (default %(default)s)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of none, rayqueue (default %(default)s)")
    p.add_argument("--parallel", type=int, default=16, help="client requests in flight (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="100 objects, 1 round")
    args = p.parse_args(list(argv))
    if args.quick:
        args.objects, args.rounds = 100, 1
    if args.objects < 1 or args.rounds < 1 or args.parallel < 1:
        p.error("--objects, --rounds and --parallel must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    report: dict[str, Any] = {"benchmark": "apiserver_webhook",
                              "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "machine": {**machine(), "loadavg_at_start": os.getloadavg()},
                              "settings": {"objects": args.objects, "rounds": args.rounds, "parallel": args.parallel}}
    print("starting the local cluster ...", flush=True)
    with LocalCluster(ensure_binaries()) as cluster:
        cluster.apply([d for d in _docs("elasticquotatree.yaml") if d["kind"] == "Namespace"])
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
            next(d for d in _docs("elasticquotatree.yaml") if d["kind"] == keys.QUOTA_TREE_KIND)))
        cluster.create_namespace(UNMANAGED, quota=False)
        hook = start_webhook(cluster, name="rayqueue-webhook-bench", register=False)
        try:
            rows = asyncio.run(_run(cluster, hook, args.objects, args.rounds, args.parallel))
        finally:
            stop_webhook(cluster, hook)
    report["rows"] = rows
    report["summary"] = summarize(rows)
    finish_report(report, args.out, started)
    print(f"\nthrough kube-apiserver, {report['date']}, {args.objects} objects x {args.rounds} rounds, "
          f"{args.parallel} in flight; load {report['machine']['loadavg_at_end']}:")
    for kind, s in report["summary"].items():
        print(f"  {kind:<13} none {s['none_per_s']}/s, rayqueue {s['rayqueue_per_s']}/s: ratio {s['ratio']} "
              f"(goal >= {s['goal_ratio']}: {'met' if s['ratio_met'] else 'NOT met'}); webhook "
              f"{s['webhook_cpu_us_per_admission']} us CPU per admission (goal <= {GOAL_CPU_US:.0f}: "
              f"{'met' if s['cpu_met'] else 'NOT met'})")
    print(f"written: {report['written_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
