"""Admitted at the largest size that fits, expanded as capacity frees (docs/elastic.md): the reconcile side of
``common.elastic`` -- the resized dequeue of an elastic job and the expansion phase, both after every waiting job.

Both decide on the pass's ledger after its admissions with every job still queued counted as admitted
(``common.elastic.after_waiting``): an elastic job's extra workers never take what a waiting job needs, and they
are growth anyway, each checked at filter and bind (guaranteed-first included).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from common import keys
from common.accounting import JobState
from common.elastic import (
    admission_sizes,
    after_waiting,
    expansion_sizes,
    resized_dequeue_patch,
    size_words,
    target_of,
)
from common.ledger import Claim, Ledger
from common.rayjob import JobInfo
from common.resources import Resources
from extender.actions import Event, Expand, JobRef, ObjectRef
from extender.cache import Cache
from extender.shrink import named_for_deletion

if TYPE_CHECKING:
    from extender.reconcile import Pass

__all__ = ["dequeue_resize", "expansions_phase", "waiting_view", "workers_words"]


def waiting_view(p: Pass) -> Ledger:
    """A copy of the pass's ledger after its admissions, with every job still queued counted as admitted; the
    resizes or expansions of the pass are charged to it one after the other."""
    decide = p.decide
    assert decide is not None
    queues = p.cache.queues
    waiting = [decide.claim(item) for leaf in queues.leaves() for item in (*queues.active(leaf), *queues.backoff(leaf))]
    return after_waiting(decide.view, waiting)


def _charge(view: Ledger, job: JobInfo, uid: str, extra: dict[str, int], before: dict[str, int]) -> None:
    """Count the workers a resize or expansion adds in ``view``, so the next one of the pass sees them."""
    request = Resources()
    for g in job.worker_groups:
        request = request + g.pod_request.scaled(max(0, extra.get(g.name, 0) - before.get(g.name, 0)))
    if request and (home := view.claim(job.uid)) is not None:
        view.add(Claim(uid=uid, key=job.key, kind="pod", quota=home.quota, request=request, growth_of=job.uid))


def dequeue_resize(job: JobInfo, claim: Claim, view: Ledger, stamp: str) -> tuple[tuple[dict[str, object], ...], str]:
    """For an elastic job the pass admits: the JSON patch that starts it at what fits in ``view``
    (``waiting_view``; what it adds is charged there), empty when it starts at its replicas; and the words for
    its Dequeued event."""
    sizes = admission_sizes(job, view, claim.quota)
    if sizes is None:
        return (), ""
    floors = {g.name: min(g.min_replicas, g.replicas) for g in job.worker_groups}
    _charge(view, job, f"{job.uid}/admitted-extra", sizes, floors)
    words = size_words(job, sizes, target_of(job))
    return tuple(resized_dequeue_patch(job, stamp, sizes)), (
        f"; admitted at the largest size that fits now ({words}): its floor is reserved, the workers above it are "
        f"growth; it is expanded toward its replicas (annotation {keys.ELASTIC_TARGET}) as capacity frees and no "
        "job waits for it")


def _settled(p: Pass, job: JobInfo, cluster_uid: str, running: dict[str, int]) -> bool:
    """Its RayCluster is as asked: every live worker bound, as many as its replicas, none named for deletion (an
    expansion or a shrink still under way waits)."""
    pods = [pod for pod in p.cache.remaining_pods(job.uid) if pod.owner is not None and pod.owner.uid == cluster_uid]
    workers = [pod for pod in pods if pod.node_type == "worker"]
    if any(not pod.node_name or pod.deleting or named_for_deletion(p.cache, pod.uid) for pod in pods):
        return False
    return len(workers) == sum(running.values())


def expansions_phase(p: Pass) -> Generator[None, None, None]:
    """Raise the RayCluster of each admitted elastic job below its target by what fits after every waiting job,
    in queue order (priority, then enqueue time): an ``Expand`` and an ``Expanded`` event each."""
    if p.decide is None or p.decide.admitted:  # expansions go in a pass that admits nobody: waiting jobs first
        return
    view: Ledger | None = None
    candidates = [j for j in p.jobs if j.elastic and not j.autoscaling and not j.bare_cluster
                  and p.states.get(j.uid) is JobState.ADMITTED and keys.PREEMPTION_NOTICE not in j.annotations]
    candidates.sort(key=lambda j: (-j.priority, j.enqueue_ns or 0, j.key))
    clusters = {c.job_uid: c for c in p.cache.ray_clusters() if c.job_uid and not c.deleting}
    for job in candidates:
        cluster = clusters.get(job.uid)
        claim = p.ledger.claim(job.uid)
        if cluster is None or claim is None:
            continue
        floors = {g.name: g.floor_pods for g in job.worker_groups}
        running = {name: (n if n is not None else floors.get(name, 0)) for name, n in cluster.replicas}
        if not _settled(p, job, cluster.uid, running):
            continue
        view = view if view is not None else waiting_view(p)
        sizes = expansion_sizes(job, running, view, claim.quota)
        if sizes is None:
            continue
        _charge(view, job, f"{job.uid}/expanded", sizes, running)
        index = {name: i for i, (name, _) in enumerate(cluster.replicas)}
        spec = dict(cluster.replicas)
        groups = tuple((index[name], spec[name], n) for name, n in sorted(sizes.items(), key=lambda kv: index[kv[0]]))
        words = size_words(job, {**running, **sizes}, target_of(job))
        reason = (f"expanded toward its target as capacity freed and no job waits for it: {words}; the new workers "
                  "are growth, each checked against the quota at filter and bind")
        ref = JobRef.of(job)
        p.admission.append(Expand(ObjectRef(cluster.namespace, cluster.name, cluster.uid), ref, groups, reason))
        p.admission.append(Event(ref, "Normal", keys.EVENT_EXPANDED, reason))
    yield from ()


def workers_words(cache: Cache, job: JobInfo) -> str:
    """The QueueUnit's ``status.workers`` of an admitted elastic job: its RayCluster's replicas per group against
    its target and floor (the RayJob's counts until its RayCluster exists)."""
    cluster = next((c for c in cache.ray_clusters() if c.job_uid == job.uid), None)
    floors = {g.name: g.floor_pods for g in job.worker_groups}
    running = ({name: (n if n is not None else floors.get(name, 0)) for name, n in cluster.replicas}
               if cluster is not None else {g.name: g.replicas for g in job.worker_groups})
    return size_words(job, running, target_of(job))
