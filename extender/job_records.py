"""The cache's record of each queued job (a RayJob, or a bare RayCluster queued as a job of its own): the object
as the watch showed it, its conversion with the priority classes' values, the controller's provisional marks,
whether another controller manages it (``spec.managedBy``), and which QueueItem it should have."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from common.accounting import JobState, managed
from common.jobkind import JobKind, kind_of
from common.kuberay_additions import KubeRayAdditions
from common.kuberay_rules import managed_by_foreign_controller
from common.queueing import QueueItem, Queues
from common.quota_tree import QuotaNode
from common.rayjob import JobInfo
from common.resources import Resources
from extender.watched_objects import meta_of, unpack

__all__ = ["JobConverter", "JobRecord", "foreign_manager", "queue_item_for", "sync_queue"]


@dataclass(slots=True)
class JobRecord:
    """One job as the cache keeps it; ``dequeue_ns`` and ``suspended`` include the provisional marks."""

    raw: bytes  # the RayJob (or bare RayCluster) as the watch showed it, packed
    info: JobInfo
    # Its spec.managedBy when that names another controller than KubeRay (``managed_by_foreign_controller``):
    # KubeRay leaves it to that controller, so rayqueue does not queue it, whatever stamps it carries.
    foreign_manager: str | None = None
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

    def managed(self, *, bound: bool) -> bool:
        """rayqueue queues this job (``common.accounting.managed``: its namespace ``bound`` to a leaf, the enqueue
        stamp set) and no other controller manages it (rule managed-by: an enqueue stamp a foreign-managed job
        carries, from a create while the webhook was down or a client's own, queues nothing)."""
        return self.foreign_manager is None and managed(self.info, bound=bound)


def foreign_manager(obj: Mapping[str, Any]) -> str | None:
    """The wire object's ``spec.managedBy`` when it names another controller than KubeRay (None: KubeRay's), as
    KubeRay v1.7.0 decides it (``ManagedByExternalController``): what ``JobRecord.foreign_manager`` records."""
    return managed_by_foreign_controller(obj)


class JobConverter:
    """RayJobs and bare RayClusters into JobInfo, with the PriorityClass values the watch showed and what the
    KubeRay operator adds to pods (in every job's request)."""

    def __init__(self, additions: KubeRayAdditions) -> None:
        self.additions = additions
        self._values: dict[str, int] = {}  # PriorityClass name -> value

    def convert(self, kind: JobKind, obj: Mapping[str, Any]) -> JobInfo:
        """The wire object of a queued ``kind`` as its JobInfo (``JobKind.convert``). Raises ShapeError."""
        klass = kind.priority_class(obj)
        value = self._values.get(klass) if klass else None
        return kind.convert(obj, priority_class_value=value, additions=self.additions)

    def again(self, rec: JobRecord) -> JobInfo:
        """The record's object converted again (a PriorityClass it names changed). Raises ShapeError."""
        return self.convert(kind_of(rec.info.kind), unpack(rec.raw))

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
