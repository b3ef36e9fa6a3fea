"""What the cache keeps of the watched objects that are neither jobs nor pods -- our Queues, the QueueUnits, each
RayCluster's ``RayQueueQuota`` condition -- read once from the watch's dicts, and the RayJob packing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args

import orjson

from common import keys
from common.queueing import QueuePolicy

__all__ = [
    "ClusterObject",
    "ClusterObjectStore",
    "QueueObject",
    "QueueObjectStore",
    "QueueUnitObject",
    "controller_ref",
    "meta_of",
    "pack",
    "quota_condition",
    "read_queue",
    "read_queue_unit",
    "str_map",
    "unpack",
]

POLICIES: Final[tuple[str, ...]] = get_args(QueuePolicy)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueObject:
    """A Queue in kube-queue created by us (label create-by-kubequeue: "true"), as the watch last showed it."""

    name: str
    uid: str
    quota: str  # kube-queue/quota-fullname
    policy: QueuePolicy
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text), "" when unknown
    status: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueUnitObject:
    """A QueueUnit as the watch last showed it."""

    namespace: str
    name: str
    owner_uid: str | None  # the controlling RayJob's (or bare RayCluster's) uid
    spec: Mapping[str, Any]
    annotations: Mapping[str, str]
    status: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterObject:
    """A RayCluster as the watch last showed it: who controls it and its ``RayQueueQuota`` condition
    (``condition`` is (status, reason, message), or None when it has none)."""

    namespace: str
    name: str
    uid: str
    job_uid: str | None
    condition: tuple[str, str, str] | None
    deleting: bool = False  # metadata.deletionTimestamp is set
    workers_to_delete: frozenset[str] = frozenset()  # every group's scaleStrategy.workersToDelete (docs/elastic.md)
    replicas: tuple[tuple[str, int | None], ...] = ()  # each worker group's (name, spec replicas), in spec order


def named_workers(obj: Mapping[str, Any]) -> frozenset[str]:
    """The pod names a RayCluster's worker groups list in ``scaleStrategy.workersToDelete``. Lenient."""
    spec = obj.get("spec")
    groups = spec.get("workerGroupSpecs") if isinstance(spec, Mapping) else None
    names: set[str] = set()
    for group in groups if isinstance(groups, list) else ():
        strategy = group.get("scaleStrategy") if isinstance(group, Mapping) else None
        listed = strategy.get("workersToDelete") if isinstance(strategy, Mapping) else None
        names.update(n for n in (listed if isinstance(listed, list) else ()) if isinstance(n, str))
    return frozenset(names)


def group_replicas(obj: Mapping[str, Any]) -> tuple[tuple[str, int | None], ...]:
    """Each worker group's name and spec ``replicas`` (None when unset), in spec order. Lenient."""
    spec = obj.get("spec")
    groups = spec.get("workerGroupSpecs") if isinstance(spec, Mapping) else None
    out: list[tuple[str, int | None]] = []
    for group in groups if isinstance(groups, list) else ():
        if isinstance(group, Mapping):
            value = group.get("replicas")
            out.append((str(group.get("groupName") or ""), value if isinstance(value, int) else None))
    return tuple(out)


def pack(obj: Mapping[str, Any]) -> bytes:
    """A RayJob as compact JSON, kept only to convert it again when a PriorityClass changes: ~1 KB where the
    dict is ~4 KB (bench/memory.py). Copied out of orjson's output, which keeps a buffer of at least 4 KB."""
    return memoryview(orjson.dumps(obj)).tobytes()


def unpack(raw: bytes) -> dict[str, Any]:
    """The dict ``pack`` packed."""
    obj: dict[str, Any] = orjson.loads(raw)
    return obj


def meta_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's metadata, {} when it has none."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def controller_ref(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference (``controller: true``), or None."""
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def str_map(value: object) -> dict[str, str]:
    """The string entries of a map (labels, annotations); {} for anything else."""
    if not isinstance(value, Mapping):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def read_queue(name: str, obj: Mapping[str, Any]) -> tuple[QueueObject, str | None]:
    """One of our Queue objects, and the problem with its ``spec.queuePolicy`` (an unknown one counts as Round)."""
    meta = meta_of(obj)
    spec = obj.get("spec")
    raw_policy = (spec.get("queuePolicy") if isinstance(spec, Mapping) else None) or "Round"
    policy: QueuePolicy = "Round"
    if raw_policy == "Priority":
        policy = "Priority"
    elif raw_policy == "Block":
        policy = "Block"
    problem = None
    if raw_policy not in POLICIES:
        problem = f"spec.queuePolicy {raw_policy!r} is not one of {', '.join(POLICIES)}; using Round"
    status = obj.get("status")
    queue = QueueObject(
        name=name,
        uid=str(meta.get("uid") or ""),
        quota=str_map(meta.get("annotations")).get(keys.QUOTA_FULLNAME, ""),
        policy=policy,
        created=str(meta.get("creationTimestamp") or ""),
        status=status if isinstance(status, Mapping) else {},
    )
    return queue, problem


def read_queue_unit(namespace: str, name: str, obj: Mapping[str, Any]) -> QueueUnitObject:
    """A QueueUnit: its controlling RayJob (or bare RayCluster), spec, annotations and status."""
    meta = meta_of(obj)
    owner_uid = None
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if (
            isinstance(ref, Mapping)
            and ref.get("controller") is True
            and ref.get("kind") in (keys.RAYJOB_KIND, keys.RAYCLUSTER_KIND)
        ):
            owner_uid = str(ref.get("uid") or "") or None
    spec, status = obj.get("spec"), obj.get("status")
    return QueueUnitObject(
        namespace=namespace,
        name=name,
        owner_uid=owner_uid,
        spec=spec if isinstance(spec, Mapping) else {},
        annotations=str_map(meta.get("annotations")),
        status=status if isinstance(status, Mapping) else {},
    )


def quota_condition(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """A RayCluster's ``RayQueueQuota`` condition as (status, reason, message), None when it has none."""
    status = obj.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for c in conditions if isinstance(conditions, list) else []:
        if isinstance(c, Mapping) and c.get("type") == keys.RAYQUEUE_QUOTA_CONDITION:
            return (str(c.get("status") or ""), str(c.get("reason") or ""), str(c.get("message") or ""))
    return None


class QueueObjectStore:
    """Our Queue objects (namespace kube-queue, label create-by-kubequeue: "true") by name, and every QueueUnit
    by (namespace, name), as the watch last showed them. Each ``on_*`` says whether anything changed."""

    def __init__(self) -> None:
        self._queues: dict[str, QueueObject] = {}
        self._units: dict[tuple[str, str], QueueUnitObject] = {}
        self._kept: dict[str, QueueObject] | None = None  # leaf -> kept Queue, rebuilt on change

    def queues(self) -> tuple[QueueObject, ...]:
        """Our Queue objects, sorted by name."""
        return tuple(self._queues[n] for n in sorted(self._queues))

    def kept(self, leaf: str) -> QueueObject | None:
        """The Queue kept for a leaf: the oldest of ours naming it (then by name). Memoized until a Queue
        object changes: reconcile asks once per job."""
        if self._kept is None:
            kept: dict[str, QueueObject] = {}
            for q in sorted(self._queues.values(), key=lambda q: (q.created or "~", q.name)):
                kept.setdefault(q.quota, q)
            self._kept = kept
        return self._kept.get(leaf)

    def unit(self, namespace: str, name: str) -> QueueUnitObject | None:
        return self._units.get((namespace, name))

    def units(self) -> tuple[QueueUnitObject, ...]:
        """Every QueueUnit, sorted by namespace, name."""
        return tuple(self._units[k] for k in sorted(self._units))

    def on_queue(self, event_type: str, obj: Mapping[str, Any], problems: dict[str, str]) -> bool:
        """A Queue event; a bad ``spec.queuePolicy`` is recorded in ``problems`` (and cleared once fixed)."""
        meta = meta_of(obj)
        name = str(meta.get("name") or "")
        if not name or meta.get("namespace") != keys.QUEUE_NAMESPACE:
            return False
        if event_type == "DELETED" or str_map(meta.get("labels")).get(keys.CREATED_BY_KUBEQUEUE) != "true":
            if self._queues.pop(name, None) is None:
                return False
            self._kept = None
            return True
        queue, problem = read_queue(name, obj)
        ref = f"Queue {keys.QUEUE_NAMESPACE}/{name}"
        if problem is None:
            problems.pop(ref, None)
        else:
            problems[ref] = problem
        if self._queues.get(name) == queue:
            return False
        self._queues[name] = queue
        self._kept = None
        return True

    def on_queue_unit(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """A QueueUnit event."""
        meta = meta_of(obj)
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if not all(key):
            return False
        if event_type == "DELETED":
            return self._units.pop(key, None) is not None
        unit = read_queue_unit(key[0], key[1], obj)
        if self._units.get(key) == unit:
            return False
        self._units[key] = unit
        return True


class ClusterObjectStore:
    """Each present RayCluster with the job controlling it and its ``RayQueueQuota`` condition (what the
    controller writes to it), by uid."""

    def __init__(self) -> None:
        self._clusters: dict[str, ClusterObject] = {}

    def get(self, uid: str) -> ClusterObject | None:
        return self._clusters.get(uid)

    def all(self) -> tuple[ClusterObject, ...]:
        """Sorted by namespace, name, uid."""
        return tuple(sorted(self._clusters.values(), key=lambda c: (c.namespace, c.name, c.uid)))

    def record(self, uid: str, obj: Mapping[str, Any], job_uid: str | None, *, live: bool) -> bool:
        """The RayCluster as the watch shows it now (``live`` False: deleted, or no parent any more); True
        when that changed what is kept."""
        if not live:
            return self._clusters.pop(uid, None) is not None
        meta = meta_of(obj)
        cluster = ClusterObject(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=uid,
            job_uid=job_uid,
            condition=quota_condition(obj),
            deleting=bool(meta.get("deletionTimestamp")),
            workers_to_delete=named_workers(obj),
            replicas=group_replicas(obj),
        )
        if self._clusters.get(uid) == cluster:
            return False
        self._clusters[uid] = cluster
        return True
