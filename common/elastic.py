"""Elastic jobs' sizes (docs/elastic.md): how many workers above its floor an elastic job may start with or grow
by now, after every waiting job was served, and the patches that say so.

An elastic job reserves its floor (``JobInfo.reserved_pods``); workers above it are growth, each checked at filter
and bind like any growth pod. Without the Ray autoscaler nobody else asks for them, so rayqueue does: at dequeue the
RayJob's ``replicas`` are lowered to what fits (``admission_sizes``, the asked-for replicas kept in
``rayqueue.io/elastic-target``), later the RayCluster's are raised toward the target (``expansion_sizes``). What
"fits" is the leaf's headroom by the max rules and the cluster's capacity (``Ledger.headroom``) on a ledger in
which every job still waiting is counted as admitted: waiting jobs come first, an elastic job takes only what is
left after them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from common import keys
from common.ledger import Claim, Ledger
from common.rayjob import MAX_INT32, JobInfo, WorkerGroup
from common.resources import Resources

__all__ = [
    "admission_sizes",
    "after_waiting",
    "expandable",
    "expansion_sizes",
    "resized_dequeue_patch",
    "size_words",
    "sized_here",
    "target_of",
    "target_value",
]


def sized_here(job: JobInfo) -> bool:
    """An elastic RayJob rayqueue sizes itself: no Ray autoscaler in it (that one asks for growth itself) and a
    RayJob (a bare cluster's tenant edits its own replicas)."""
    return job.elastic and not job.autoscaling and not job.bare_cluster


def expandable(job: JobInfo) -> bool:
    """``sized_here`` with some single-host group asking for more than its floor (``target_of``)."""
    target = target_of(job) if sized_here(job) else {}
    return any(g.num_of_hosts == 1 and target.get(g.name, 0) > min(g.min_replicas, g.replicas)
               for g in job.worker_groups)


def after_waiting(ledger: Ledger, waiting: Iterable[Claim]) -> Ledger:
    """A copy of ``ledger`` with every waiting job counted as admitted: what is left after them."""
    view = ledger.copy()
    for claim in waiting:
        if claim.uid not in view:
            view.add(claim)
    return view


def _fitting(free: Resources, per_pod: Resources, room: int) -> int:
    """How many pods of ``per_pod`` fit into ``free`` (a resource ``free`` does not name is unbounded), at most
    ``room``."""
    count = room
    for name, amount in per_pod.items():
        if amount > 0 and name in free:
            count = min(count, free.get(name) // amount)
    return max(0, count)


def _grow(view: Ledger, leaf: str, groups: Sequence[tuple[WorkerGroup, int, int]]) -> dict[str, int]:
    """Per group (group, now, most), ``now`` raised by what fits in ``leaf`` of ``view``, group by group in spec
    order, never past ``most``."""
    free, _ = view.headroom(leaf)
    sizes: dict[str, int] = {}
    for group, now, most in groups:
        extra = _fitting(free, group.pod_request, max(0, most - now))
        free = (free - group.pod_request.scaled(extra)).clamp_low()
        sizes[group.name] = now + extra
    return sizes


def admission_sizes(job: JobInfo, view: Ledger, leaf: str) -> dict[str, int] | None:
    """The replicas per group an expandable job starts with: its floor plus what fits in ``view`` (the pass's
    ledger after its admissions, this job's floor included, and after every waiting job: ``after_waiting``), at
    most what it asks for (``target_of``: a requeued job admitted smaller before asks for its target again), never
    past maxReplicas. None when that is its replicas already (nothing to change)."""
    if not expandable(job):
        return None
    target = target_of(job)
    groups = [(g, min(g.min_replicas, g.replicas), min(target.get(g.name, g.replicas), g.max_replicas))
              for g in job.worker_groups if g.num_of_hosts == 1]
    sizes = _grow(view, leaf, groups)
    return sizes if any(sizes[g.name] != g.replicas for g, _, _ in groups) else None


def target_value(job: JobInfo) -> str:
    """The ``rayqueue.io/elastic-target`` annotation: each group's asked-for replicas (``target_of``: kept across a
    requeue), compact sorted JSON."""
    return json.dumps(target_of(job), sort_keys=True, separators=(",", ":"))


def target_of(job: JobInfo) -> dict[str, int]:
    """What an expandable job asks for per group: its ``rayqueue.io/elastic-target`` where admitted smaller (a
    bad value counts as its replicas now), else its replicas (a job shrunk by reclaim grows back to them)."""
    asked = {g.name: g.replicas for g in job.worker_groups}
    try:
        value: Any = json.loads(job.annotations.get(keys.ELASTIC_TARGET, "{}"))
    except ValueError:
        return asked
    if not isinstance(value, dict):
        return asked
    for name, replicas in value.items():
        if name in asked and isinstance(replicas, int) and not isinstance(replicas, bool) and 0 <= replicas <= MAX_INT32:
            asked[name] = replicas
    return asked


def expansion_sizes(job: JobInfo, running: Mapping[str, int], view: Ledger, leaf: str) -> dict[str, int] | None:
    """The replicas per group to raise an expandable job's RayCluster to: from ``running`` (its RayCluster's
    replicas now) by what fits in ``view`` (after every waiting job), toward ``target_of`` and never past its
    maxReplicas. None when nothing grows."""
    if not sized_here(job):
        return None
    target = target_of(job)
    groups = [(g, running[g.name], min(target.get(g.name, g.replicas), g.max_replicas))
              for g in job.worker_groups if g.num_of_hosts == 1 and g.name in running and not g.suspended]
    groups = [(g, now, most) for g, now, most in groups if now < most]
    if not groups:
        return None
    sizes = _grow(view, leaf, groups)
    grown = {name: n for name, n in sizes.items() if n > running[name]}
    return grown or None


def resized_dequeue_patch(job: JobInfo, stamp: str, sizes: Mapping[str, int]) -> list[dict[str, Any]]:
    """The dequeue of an expandable job admitted smaller: ONE JSON patch, led by a test of the resourceVersion
    the decision saw, resuming it with the dequeue stamp, its groups' replicas lowered to ``sizes`` while it is
    still suspended (KubeRay creates its RayCluster from them), and the asked-for replicas kept in
    ``rayqueue.io/elastic-target``."""
    def annotation(key: str) -> str:
        return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")

    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": job.resource_version}]
    for index, group in enumerate(job.worker_groups):
        if group.name in sizes and sizes[group.name] != group.replicas:
            ops.append({"op": "replace",  # above its floor: replicas is set
                        "path": f"/spec/rayClusterSpec/workerGroupSpecs/{index}/replicas",
                        "value": sizes[group.name]})
    ops += [{"op": "add", "path": annotation(keys.DEQUEUE_TIMESTAMP), "value": stamp},
            {"op": "add", "path": annotation(keys.ELASTIC_TARGET), "value": target_value(job)},
            {"op": "replace", "path": "/spec/suspend", "value": False}]
    return ops


def size_words(job: JobInfo, sizes: Mapping[str, int], target: Mapping[str, int]) -> str:
    """``group w: 3 of 6 workers (floor 2)``, per group, for the events and the QueueUnit."""
    return "; ".join(f"group {g.name}: {sizes.get(g.name, g.replicas)} of {target.get(g.name, g.replicas)} workers "
                     f"(floor {min(g.min_replicas, g.replicas)})" for g in job.worker_groups)
