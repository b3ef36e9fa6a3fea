"""Pure builders of the queue controller's API objects: Queue, QueueUnit and their statuses (the guide's shapes)."""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from common import keys
from common.gotime import format_rfc3339
from common.jobkind import kind_of
from common.queueing import QueueItemDetails, QueuePolicy, Queues
from common.quota_tree import QuotaNode
from common.rayjob import JobInfo

__all__ = [
    "QueueUnitPhase",
    "queue_object",
    "queue_status",
    "queue_unit_name",
    "queue_unit_object",
    "queue_unit_status",
    "rfc3339",
]

QueueUnitPhase = Literal["Enqueued", "Dequeued", "Running", "Succeed", "Failed", "Backoff", "Parked"]
QUEUE_UNIT_PHASES: Final[tuple[str, ...]] = get_args(QueueUnitPhase)
API_VERSION: Final = f"{keys.QUEUE_GROUP}/{keys.QUEUE_VERSION}"
RAY_API_VERSION: Final = f"{keys.RAY_GROUP}/{keys.RAY_VERSION}"


def queue_object(leaf: QuotaNode, policy: QueuePolicy = "Round") -> dict[str, Any]:
    """The Queue of a leaf, as the guide shows it (`root-algorithm-video-k42kq`; the API fills the suffix)."""
    return {
        "apiVersion": API_VERSION,
        "kind": keys.QUEUE_KIND,
        "metadata": {
            "generateName": leaf.queue_generate_name,
            "namespace": keys.QUEUE_NAMESPACE,
            "annotations": {
                keys.QUOTA_FULLNAME: leaf.full_name,
                keys.PARENT_QUOTA_FULLNAME: leaf.parent_short_name,
            },
            "labels": {keys.CREATED_BY_KUBEQUEUE: "true"},
        },
        "spec": {"queuePolicy": policy},
    }


def queue_status(queues: Queues, leaf: QuotaNode | str) -> dict[str, QueueItemDetails]:
    """The Queue's status: ``{"queueItemDetails": {"active": [...], "backoff": [...]}}`` in queue order."""
    name = leaf if isinstance(leaf, str) else leaf.full_name
    return {"queueItemDetails": queues.positions(name)}


def queue_unit_name(job: JobInfo) -> str:
    """`<rayjob>-ray-qu`, or `<raycluster>-rc-qu` for a bare RayCluster: its kind's name (``common.jobkind``)."""
    return kind_of(job.kind).queue_unit_name(job.name)


def queue_unit_object(job: JobInfo, leaf: QuotaNode, queue_name: str) -> dict[str, Any]:
    """The QueueUnit of a managed RayJob: `<rayjob>-ray-qu` in its namespace, owned by the RayJob (a bare
    RayCluster's: `<raycluster>-rc-qu`, its consumerRef and owner the RayCluster; the same spec and status).

    Beyond the guide's shape it carries the label create-by-kubequeue (so a watch can select ours), the
    leaf in kube-queue/quota-fullname, and the last priority change the controller reported as an event
    (the webhook's record), so that a restarted controller does not report it again, and the priority it
    wrote to the spec (rayqueue.io/synced-priority): a spec.priority that differs was set by someone else.
    """
    annotations = {keys.QUOTA_FULLNAME: leaf.full_name, keys.SYNCED_PRIORITY: str(job.priority)}
    record = job.annotations.get(keys.PRIORITY_CHANGE_RECORD)
    if record:
        annotations[keys.PRIORITY_CHANGE_RECORD] = record
    spec: dict[str, Any] = {
        "consumerRef": {
            "apiVersion": RAY_API_VERSION,
            "kind": job.kind,
            "name": job.name,
            "namespace": job.namespace,
        },
        "queue": queue_name,
        "priority": job.priority,
    }
    if job.priority_class_name:
        spec["priorityClassName"] = job.priority_class_name
    spec["resource"] = job.request.to_api()
    return {
        "apiVersion": API_VERSION,
        "kind": keys.QUEUE_UNIT_KIND,
        "metadata": {
            "name": queue_unit_name(job),
            "namespace": job.namespace,
            "labels": {keys.CREATED_BY_KUBEQUEUE: "true"},
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": RAY_API_VERSION,
                    "kind": job.kind,
                    "name": job.name,
                    "uid": job.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }


def rfc3339(ns: int) -> str:
    """`2025-01-10T01:36:24Z` (the CRDs' date-time format; seconds are enough for a status)."""
    return format_rfc3339(ns)


def queue_unit_status(
    phase: QueueUnitPhase,
    position: int | None,
    message: str,
    attempts: int,
    last_update_ns: int | None = None,
) -> dict[str, Any]:
    """A QueueUnit status, as a merge-patch body: a ``None`` value (no position once dequeued) removes
    the field. ``lastUpdateTime`` is left out when ``last_update_ns`` is None (for comparisons)."""
    if phase not in QUEUE_UNIT_PHASES:
        raise ValueError(f"QueueUnit phase must be one of {', '.join(QUEUE_UNIT_PHASES)}, got {phase!r}")
    status: dict[str, Any] = {"phase": phase, "position": position, "message": message, "attempts": attempts}
    if last_update_ns is not None:
        status["lastUpdateTime"] = rfc3339(last_update_ns)
    return status
