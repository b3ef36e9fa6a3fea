"""Shrink instead of evict (docs/elastic.md): which growth victims are workers above an elastic job's floor (one
``Shrink`` per RayCluster), which pods a RayCluster already names for deletion, and the JSON patch that shrinks.

The admission pass (``common.admission``) picks growth victims lowest priority first, newest first; the workers
above an elastic job's floor are growth (``JobInfo.reserved_pods``), so they are among them. Here those are taken
out of the pod-by-pod ``PreemptPod`` path: KubeRay would recreate a deleted worker while ``replicas`` ask for it,
so they go as the Ray autoscaler removes workers, ``replicas`` lowered and the pods named in
``scaleStrategy.workersToDelete`` in one patch (ray python/ray/autoscaler/_private/kuberay/node_provider.py
``KubeRayNodeProvider.submit_scale_request``: ``worker_replica_patch`` + ``worker_delete_patch``; KubeRay v1.7.0
raycluster_controller.go ``reconcilePods`` deletes every named pod "regardless of the value of Replicas" and
leaves them out of its diff).

Where the victim's leaf grants ``rayqueue.io/preemption-grace`` the shrink waits out the same cooperative notice as
a whole-job victim (docs/preemption.md, ``common.preemption``): a shrink notice naming the workers, on the job and on
those pods (``extender.notice_phases``); the named pods release meanwhile (``under_notice``), and ``due_shrink`` is
the Shrink at its deadline or acknowledgement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common import keys
from common.explain import Explain, render
from common.jobkind import kind_of
from common.ledger import Claim
from common.preemption import Notice, read_notice
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources
from extender.actions import Action, JobRef, ObjectRef, Shrink
from extender.cache import Cache

__all__ = ["due_shrink", "named_for_deletion", "shrink_patch", "split_growth", "under_notice"]


def named_for_deletion(cache: Cache, uid: str) -> bool:
    """The pod is named in its RayCluster's ``workersToDelete``: KubeRay deletes it on its next pass, so it is
    releasing already (a Shrink replayed after a restart, or the autoscaler's own scale-down, picks it never again)."""
    pod = cache.pod(uid)
    if pod is None or pod.owner is None or pod.owner.kind != keys.RAYCLUSTER_KIND:
        return False
    cluster = cache.ray_cluster(pod.owner.uid)
    return cluster is not None and pod.name in cluster.workers_to_delete


def under_notice(cache: Cache, uid: str) -> bool:
    """The growth pod goes at its job's preemption notice's deadline: the notice is the whole job's (or cannot be
    read: suspended at once), or a shrink notice naming it. It is releasing already, as the job's claim is."""
    pod, job = cache.pod(uid), cache.growth_job(uid)
    text = job.annotations.get(keys.PREEMPTION_NOTICE) if job is not None else None
    if pod is None or text is None:
        return False
    notice = read_notice(text)
    return notice is None or notice.covers(pod.name)


def _shrinkable(job: JobInfo | None, pod: PodInfo | None) -> bool:
    """A single-host worker of an elastic job (a multi-host replica goes whole or not at all: pod by pod as before)."""
    if job is None or pod is None or not job.elastic or pod.node_type != "worker" or pod.owner is None:
        return False
    group = next((g for g in job.worker_groups if g.name == pod.ray_group), None)
    return group is not None and group.num_of_hosts == 1


def split_growth(
    cache: Cache, victims: Sequence[tuple[Claim, Claim]],
    preempt: Callable[[Cache, Sequence[tuple[Claim, Claim]]], list[Action]],
) -> list[Action]:
    """The pass's growth victims as actions: the workers above an elastic job's floor as one ``Shrink`` per
    RayCluster (groups and pods in plan order: newest first), then a ``Shrunk``-worded reason; every other
    growth victim through ``preempt`` (``PreemptPod``, as before)."""
    shrunk: dict[str, list[tuple[Claim, Claim, PodInfo]]] = {}
    others: list[tuple[Claim, Claim]] = []
    for victim, claimant in victims:
        pod, job = cache.pod(victim.uid), cache.job(victim.growth_of)
        cluster = cache.ray_cluster(pod.owner.uid) if pod is not None and pod.owner is not None else None
        if pod is not None and cluster is not None and _shrinkable(job, pod):
            shrunk.setdefault(cluster.uid, []).append((victim, claimant, pod))
        else:
            others.append((victim, claimant))
    out = preempt(cache, others)
    for cluster_uid, taken in shrunk.items():
        cluster = cache.ray_cluster(cluster_uid)
        job = cache.job(taken[0][0].growth_of)
        if cluster is None or job is None:  # pragma: no cover - checked above
            continue
        groups: dict[str, list[str]] = {}
        for _, _, pod in taken:
            groups.setdefault(pod.ray_group or "", []).append(pod.name)
        victim, claimant, _ = taken[0]
        claimant_job = cache.job(claimant.uid)
        why = render(Explain(why="reclaim-notice", node=victim.quota, job=claimant.key, job_quota=claimant.quota,
                             priority=victim.priority))
        out.append(Shrink(
            cluster=ObjectRef(cluster.namespace, cluster.name, cluster.uid),
            job=JobRef.of(job),
            unit=(job.namespace, kind_of(job.kind).queue_unit_name(job.name)),
            groups=tuple((name, tuple(names)) for name, names in groups.items()),
            reason=_reason(job, taken),
            claimant=JobRef.of(claimant_job) if claimant_job is not None else None,
            why=why,
        ))
    return out


def due_shrink(cache: Cache, job: JobInfo, notice: Notice, text: str, acknowledged: bool) -> Shrink | None:
    """The Shrink a shrink notice announced, due now (its deadline passed, or the job acknowledged): its workers
    that remain, on their RayCluster, carrying the notice's ``text`` to remove once done. None when none of them
    remains (the notice is then only withdrawn)."""
    pods = [p for p in cache.remaining_pods(job.uid) if p.name in notice.names and p.owner is not None]
    cluster = next((c for p in pods if p.owner is not None and (c := cache.ray_cluster(p.owner.uid)) is not None),
                   None)
    if cluster is None:
        return None
    names = [name for _, group in notice.workers for name in group if any(p.name == name for p in pods)]
    when = (f"acknowledged its preemption notice ({keys.CHECKPOINTED})" if acknowledged
            else f"its preemption notice expired at {notice.deadline}")
    reason = (f"shrunk by {len(names)} worker{'s' if len(names) != 1 else ''} above its floor "
              f"({', '.join(f'{job.namespace}/{n}' for n in names)}): {when}; to {notice.reason}; workers above an "
              f"elastic job's floor are reclaimed before any whole job, newest first. {job.key} keeps running; the "
              "workers go through scaleStrategy.workersToDelete with replicas lowered, so KubeRay does not recreate "
              "them")
    return Shrink(cluster=ObjectRef(cluster.namespace, cluster.name, cluster.uid), job=JobRef.of(job),
                  unit=(job.namespace, kind_of(job.kind).queue_unit_name(job.name)), groups=notice.workers,
                  reason=reason, notice=text)


def _reason(job: JobInfo, taken: Sequence[tuple[Claim, Claim, PodInfo]]) -> str:
    """How many workers went, which, to whom and why (the claimant's reclaim, in the growth words)."""
    victim, claimant, _ = taken[0]
    total = sum((v.request for v, _, _ in taken), Resources())
    names = ", ".join(p.key for _, _, p in taken)
    return (f"shrunk by {len(taken)} worker{'s' if len(taken) != 1 else ''} above its floor ({names}; request "
            f"{total}) to reclaim quota for {claimant.key}, guaranteed in {claimant.quota} (request "
            f"{claimant.request}): {victim.quota} borrows above its min (priority {victim.priority}); workers above an "
            f"elastic job's floor are reclaimed before any whole job, newest first. {job.key} keeps running; the "
            "workers go through scaleStrategy.workersToDelete with replicas lowered, so KubeRay does not recreate "
            "them")


def shrink_patch(cluster: Mapping[str, Any], action: Shrink, present: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The JSON patch that carries ``action`` out on the RayCluster as it is now: per group, ``replicas``
    lowered by the named pods it did not name yet (never below ``minReplicas``), ``workersToDelete`` the names
    still ``present`` it named before plus the new ones; led by a test of the resourceVersion read. Empty when
    there is nothing left to do (every pod named already: a replay after a restart)."""
    meta = cluster.get("metadata") or {}
    groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
    ops: list[dict[str, Any]] = []
    for name, pods in action.groups:
        index = next((i for i, g in enumerate(groups) if g.get("groupName") == name), None)
        if index is None:
            continue
        group = groups[index]
        before = [n for n in (group.get("scaleStrategy") or {}).get("workersToDelete") or [] if isinstance(n, str)]
        new = [n for n in pods if n not in before and present(n)]
        if not new:
            continue
        low = int(group.get("minReplicas") or 0)
        replicas = int(group["replicas"]) if group.get("replicas") is not None else low
        path = f"/spec/workerGroupSpecs/{index}"
        ops.append({"op": "replace" if "replicas" in group else "add", "path": f"{path}/replicas",
                    "value": max(replicas - len(new), low)})
        ops.append({"op": "replace" if "scaleStrategy" in group else "add", "path": f"{path}/scaleStrategy",
                    "value": {"workersToDelete": [n for n in before if present(n)] + new}})
    if not ops:
        return []
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": str(meta.get("resourceVersion") or "")},
            *ops]
