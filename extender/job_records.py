"""The cache's record of each queued job (a RayJob, or a bare RayCluster queued as a job of its own): the object
as the watch showed it, its conversion with the priority classes' values, the controller's provisional marks,
and which QueueItem it should have."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common import keys
from common.accounting import JobState
from common.kuberay_additions import KubeRayAdditions
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaNode
from common.rayjob import JobInfo, priority_class_name
from common.resources import Resources
from extender.watched_objects import meta_of, unpack

__all__ = ["JobConverter", "JobRecord", "queue_item_for", "sync_queue"]


@dataclass(slots=True)
class JobRecord:
    """One job as the cache keeps it; ``dequeue_ns`` and ``suspended`` include the provisional marks."""

    raw: bytes  # the RayJob (or bare RayCluster) as the watch showed it, packed
    info: JobInfo
    present: bool = True  # False once DELETED (kept while its claim drains)
    provisional_dequeue_ns: int | None = None  # mark_dequeued, until a watch event shows the stamp
    provisional_requeued: bool = False  # mark_requeued, until a watch event shows the stamp gone
    reservation: Resources = field(default_factory=Resources)  # see common.accounting.reservation
    covered: frozenset[str] = frozenset()  # its pods the reservation covers (common.accounting.covered_pods)

    @property
    def dequeue_ns(self) -> int | None:
        if self.provisional_dequeue_ns is not None:
            return self.provisional_dequeue_ns
        return None if self.provisional_requeued else self.info.dequeue_ns

    @property
    def suspended(self) -> bool:
        if self.provisional_dequeue_ns is not None:
            return False
        return self.provisional_requeued or self.info.suspended


class JobConverter:
    """RayJobs and bare RayClusters into JobInfo, with the PriorityClass values the watch showed and what the
    KubeRay operator adds to pods (in every job's request)."""

    def __init__(self, additions: KubeRayAdditions) -> None:
        self.additions = additions
        self._values: dict[str, int] = {}  # PriorityClass name -> value

    def rayjob(self, obj: Mapping[str, Any]) -> JobInfo:
        klass = priority_class_name(obj)
        value = self._values.get(klass) if klass else None
        return JobInfo.from_rayjob(obj, priority_class_value=value, additions=self.additions)

    def raycluster(self, obj: Mapping[str, Any]) -> JobInfo:
        klass = priority_class_name(obj, keys.RAYCLUSTER_KIND)
        value = self._values.get(klass) if klass else None
        return JobInfo.from_raycluster(obj, priority_class_value=value, additions=self.additions)

    def again(self, rec: JobRecord) -> JobInfo:
        """The record's object converted again (a PriorityClass it names changed). Raises ShapeError."""
        return (self.raycluster if rec.info.bare_cluster else self.rayjob)(unpack(rec.raw))

    def on_priority_class(self, event_type: str, obj: Mapping[str, Any]) -> str | None:
        """A PriorityClass event: its name when its value changed (the jobs naming it convert again)."""
        name = str(meta_of(obj).get("name") or "")
        if not name:
            return None
        value = obj.get("value")
        old = self._values.get(name)
        if event_type == "DELETED":
            if old is None:
                return None
            del self._values[name]
        elif isinstance(value, int) and not isinstance(value, bool):
            if old == value:
                return None
            self._values[name] = value
        else:
            return None
        return name


def queue_item_for(job: JobInfo, state: JobState | None, leaf: QuotaNode | None) -> QueueItem | None:
    """The QueueItem a job should have: one while it is WAITING in its leaf, None otherwise."""
    if state is not JobState.WAITING or leaf is None or job.enqueue_ns is None:
        return None
    return QueueItem(
        uid=job.uid,
        namespace=job.namespace,
        name=job.name,
        quota=leaf.full_name,
        priority=job.priority,
        enqueue_ns=job.enqueue_ns,
        request=job.request,
    )


def sync_queue(queues: Queues, uid: str, item: QueueItem | None) -> None:
    """Make the job's queue membership ``item``: upserted (a no-op when equal), or taken out when None."""
    if item is not None:
        queues.upsert(item)
    elif uid in queues:
        queues.remove(uid)
