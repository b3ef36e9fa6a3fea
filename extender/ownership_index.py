"""The cache's ownership graph, by UID only: each parent (RayCluster, submitter Job) with the job controlling it,
the pods each parent controls, each job's parents, and the pods of each gang."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.accounting import Parent
from common.jobkind import KINDS
from common.rayjob import PodInfo
from extender.watched_objects import meta_of

__all__ = ["OwnershipIndex", "parent_from"]


def parent_from(kind: str, obj: Mapping[str, Any], *, own_job: bool = False) -> Parent:
    """A RayCluster or submitter Job (``kind``) as a parent: the job its controller ownerReference names (a kind
    that controls parents: a RayJob), or itself when it is its ``own_job`` (a bare RayCluster)."""
    meta = meta_of(obj)
    job_uid = str(meta.get("uid") or "") if own_job else None
    refs = meta.get("ownerReferences")
    for ref in refs if isinstance(refs, list) and not own_job else []:
        if isinstance(ref, Mapping) and ref.get("controller") is True and _controls_parents(ref.get("kind")):
            job_uid = str(ref.get("uid") or "") or None
    return Parent(kind=kind, namespace=str(meta.get("namespace") or ""), job_uid=job_uid)


def _controls_parents(kind: object) -> bool:
    """A controller ownerReference of this kind names the job of a parent (``JobKind.controls_parents``)."""
    found = KINDS.get(kind) if isinstance(kind, str) else None
    return found is not None and found.controls_parents


class OwnershipIndex:
    """Parents by uid (a deleted one kept while its pods remain: a suspended or retrying job's terminating pods
    are still its own), the pods each controls (by their controller ownerReference uid), and gangs."""

    def __init__(self) -> None:
        self._parents: dict[str, Parent] = {}
        self._parents_by_job: dict[str, set[str]] = {}  # job uid -> parent uids
        self._children: dict[str, set[str]] = {}  # controller ownerReference uid -> pod uids
        self._by_gang: dict[tuple[str, str], set[str]] = {}  # (namespace, gang) -> pod uids

    def parent(self, uid: str) -> Parent | None:
        return self._parents.get(uid)

    def set_parent(self, uid: str, parent: Parent | None) -> None:
        """Record (or forget, with None) a parent; a deleted one with no pod left is forgotten at once."""
        old = self._parents.get(uid)
        if old is not None and old.job_uid is not None:
            _discard(self._parents_by_job, old.job_uid, uid)
        if parent is None or (not parent.present and not self._children.get(uid)):
            self._parents.pop(uid, None)
        else:
            self._parents[uid] = parent
            if parent.job_uid is not None:
                self._parents_by_job.setdefault(parent.job_uid, set()).add(uid)

    def children(self, parent_uid: str) -> set[str]:
        """The pods this parent controls (a copy)."""
        return set(self._children.get(parent_uid, ()))

    def job_pods(self, job_uid: str) -> set[str]:
        """The pods of every parent (RayCluster, submitter Job) this job controls or controlled."""
        out: set[str] = set()
        for parent_uid in self._parents_by_job.get(job_uid, ()):
            out |= self._children.get(parent_uid, set())
        return out

    def gang(self, namespace: str, gang: str) -> list[str]:
        """The pods carrying gang label ``gang`` in ``namespace``, sorted by uid."""
        return sorted(self._by_gang.get((namespace, gang), ()))

    def add_pod(self, pod: PodInfo) -> None:
        if pod.gang_name:
            self._by_gang.setdefault((pod.namespace, pod.gang_name), set()).add(pod.uid)
        if pod.owner is not None and pod.owner.uid:
            self._children.setdefault(pod.owner.uid, set()).add(pod.uid)

    def remove_pod(self, pod: PodInfo) -> str | None:
        """Take the pod out of the indexes; the uid of the deleted parent it was the last pod of, if any (the
        caller forgets that parent once the pod is gone)."""
        if pod.gang_name:
            _discard(self._by_gang, (pod.namespace, pod.gang_name), pod.uid)
        if pod.owner is None or not pod.owner.uid:
            return None
        parent_uid = pod.owner.uid
        _discard(self._children, parent_uid, pod.uid)
        parent = self._parents.get(parent_uid)
        return parent_uid if parent is not None and not parent.present and parent_uid not in self._children else None


def _discard(index: dict[Any, set[str]], key: object, uid: str) -> None:
    uids = index.get(key)
    if uids is not None:
        uids.discard(uid)
        if not uids:
            del index[key]
