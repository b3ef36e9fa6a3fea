"""The memory benchmark: resident size of the extender's Cache holding 5,000 nodes, 50,000 pods, 10,000 RayJobs.

Run it with `python -m bench.memory`. Each measurement runs in a fresh subprocess (`python -m bench.memory
--child KIND`): after its imports it reads its RSS (VmRSS in /proc/self/status), then feeds dicts made
one at a time through Cache.on_rayjob / on_pod / on_node (and the tree), collects garbage and reads RSS
again. The figure is the difference: what the cache keeps, with the allocator's overhead and whatever
freed memory the allocator kept. The baseline is the same subprocess with an empty Cache. Results: a table and bench/results/memory.json.

The ``process`` rows are what a running extender holds, as a whole-process resident size (issue 13's
goal: at most 250 MB with 5,000 nodes, 50,000 pods and 10,000 queued jobs): the Cache, plus what the
Reflectors keep (every object goes through ``kubeio.reflector.Reflector.apply`` with the extender's
``keep=tombstone``, managedFields slimmed off by ``slim``), plus one QueueUnit per job (cached and stored),
plus the extender's own modules imported. Measured at 1,000 and 10,000 jobs (the same nodes and pods) to
give the growth per job; ``process-whole`` is the 10,000-job arm with stores that keep every object whole
(the layout before), the same run's baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, cast

from bench.extender import ROOT, bound_pod, node_dict, seed_tree
from bench.loadgen import finish_report
from bench.queues import rayjob_dict, tree_dict
from bench.webhook import machine
from common.clock import FakeClock
from extender.cache import Cache
from extender.queue_objects import queue_unit_object
from kubeio.reflector import Keep, Reflector, slim, tombstone, whole

__all__ = ["main", "measure"]

RESULTS: Final = ROOT / "bench" / "results" / "memory.json"
NODES: Final = 5_000
PODS: Final = 50_000
RAYJOBS: Final = 10_000
KINDS: Final = ("empty", "nodes", "pods", "rayjobs", "all", "process-1k", "process", "process-whole")
GOAL_MB: Final = 250


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(kind: str) -> dict[str, Any]:
    """In this process: RSS after feeding `kind` into a fresh Cache minus RSS after the imports. Each dict is
    made just before it is fed and dropped after, as a watch delivers them; the cache keeps what it keeps."""
    process = kind.startswith("process")
    if process:  # what the running extender has imported besides the Cache
        import extender.app  # noqa: F401
    gc.collect()
    before = _rss_bytes()
    cache = Cache(FakeClock())
    everything = kind in ("all", "process", "process-whole")
    counts = {"nodes": NODES if kind in ("nodes", "all") or process else 0,
              "pods": PODS if kind in ("pods", "all") or process else 0,
              "rayjobs": RAYJOBS if kind == "rayjobs" or everything else 1_000 if kind == "process-1k" else 0}
    # What the extender's Reflectors keep (extender.app.Service.build_reflectors: tombstones); the
    # process-whole arm keeps every object whole, as before issue 13's memory work (the same run's baseline).
    keep: Keep = whole if kind == "process-whole" else tombstone
    handlers = {"rayjobs": cache.on_rayjob, "pods": cache.on_pod, "nodes": cache.on_node,
                "queueunits": cache.on_queue_unit}
    reflectors = {name: Reflector(cast(Any, None), name, fn, name=name, keep=keep) for name, fn in handlers.items()}

    def feed(store: str, handler: Any, obj: dict[str, Any]) -> None:
        if process:  # as a watch event: slimmed, into the Reflector's store, then the Cache's handler
            reflectors[store].apply("ADDED", slim(obj))
        else:
            handler("ADDED", obj)

    started = time.perf_counter()
    # RayJobs, pods and nodes before the tree: no capacity recomputation per node, no queue churn while feeding
    for i in range(counts["rayjobs"]):
        feed("rayjobs", cache.on_rayjob, rayjob_dict(i, managed_fields=True))
    for i in range(counts["pods"]):
        feed("pods", cache.on_pod, bound_pod(i, NODES))
    for i in range(counts["nodes"]):
        feed("nodes", cache.on_node, node_dict(i))
    cache.on_tree("ADDED", tree_dict() if counts["rayjobs"] else seed_tree())
    if process:  # one QueueUnit per job, as the controller creates them
        for job in cache.jobs():
            leaf = cache.leaf_for(job.namespace)
            if leaf is None:
                continue
            unit = queue_unit_object(job, leaf, f"root-{leaf.dashed_name}-q")
            unit["metadata"].update(uid=f"qu-{job.uid}", resourceVersion="5")
            feed("queueunits", cache.on_queue_unit, unit)
    feed_s = time.perf_counter() - started
    gc.collect()
    after = _rss_bytes()
    held = {"nodes": len(cache.nodes), "pods": len(cache.pods()), "rayjobs": len(cache.jobs()),
            "queued": len(cache.queues)}
    return {"kind": kind, "rss_before": before, "rss_after": after, "objects": sum(counts.values()),
            "stored": {k: len(r.store) for k, r in reflectors.items()} if process else {},
            "feed_s": round(feed_s, 2), "held": held}


def _child(kind: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.memory", "--child", kind], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench.memory --child {kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="accepted for symmetry; the run is the same (about 30 s)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    started = time.monotonic()
    rows = []
    base = _child("empty")
    for kind in KINDS[1:]:
        print(f"feeding {kind} in a fresh process ...", flush=True)
        r = _child(kind)
        grew = r["rss_after"] - r["rss_before"] - (base["rss_after"] - base["rss_before"])
        r["mb"] = round(grew / 2**20, 1)
        r["bytes_per_object"] = round(grew / r["objects"]) if r["objects"] else None
        rows.append(r)
    report: dict[str, Any] = {
        "benchmark": "memory", "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "counts": {"nodes": NODES, "pods": PODS, "rayjobs": RAYJOBS}, "baseline": base, "rows": rows,
    }
    m = report["machine"]
    print(f"\nmemory benchmark, {report['date']}: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}")
    print(f"resident size the Cache keeps (RSS after - before feeding, minus an empty Cache's "
          f"{(base['rss_after'] - base['rss_before']) / 2**20:.1f} MB; process after imports "
          f"{base['rss_before'] / 2**20:.0f} MB):")
    print(f"  {'fed':<8} {'objects':>8} {'MB':>8} {'bytes/object':>13} {'feed s':>7}  held")
    for r in rows:
        print(f"  {r['kind']:<8} {r['objects']:>8} {r['mb']:>8.1f} {r['bytes_per_object'] or 0:>13} "
              f"{r['feed_s']:>7.1f}  {r['held']}")
    arms = {r["kind"]: r for r in rows if r["kind"].startswith("process")}
    if {"process-1k", "process", "process-whole"} <= arms.keys():
        small, big, before = arms["process-1k"], arms["process"], arms["process-whole"]
        per_job = (big["rss_after"] - small["rss_after"]) / (RAYJOBS - 1_000)
        report["process"] = {"rss_mb_1k_jobs": round(small["rss_after"] / 2**20, 1),
                             "rss_mb_10k_jobs": round(big["rss_after"] / 2**20, 1),
                             "rss_mb_10k_jobs_whole_stores": round(before["rss_after"] / 2**20, 1),
                             "ratio_to_whole_stores": round(big["rss_after"] / before["rss_after"], 2),
                             "growth_kb_per_job": round(per_job / 1024, 1), "goal_mb": GOAL_MB,
                             "met": big["rss_after"] <= GOAL_MB * 2**20}
        p = report["process"]
        print(f"whole process (Cache + Reflector stores + QueueUnits + modules), {NODES} nodes, {PODS} pods: "
              f"{p['rss_mb_1k_jobs']} MB with 1,000 jobs, {p['rss_mb_10k_jobs']} MB with 10,000 "
              f"({p['growth_kb_per_job']} KB per job); goal <= {GOAL_MB} MB: {'met' if p['met'] else 'NOT met'}; "
              f"stores keeping whole objects (same run): {p['rss_mb_10k_jobs_whole_stores']} MB, "
              f"ratio {p['ratio_to_whole_stores']}")
    finish_report(report, args.out, started)
    print(f"written: {report['written_to']}  ({report['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
