"""The job-kind seam: what rayqueue must know of each kind it queues (RayJob, bare RayCluster), in one place.

In the spirit of Kueue's ``jobframework.GenericJob``: the rest of the code never asks "is this a RayJob or a
RayCluster?", it asks the job's ``JobKind`` (``kind_of(job.kind)``) for its naming (plural, QueueUnit name),
its converter (``JobInfo.from_rayjob`` / ``JobInfo.from_raycluster``) and the priority class it names, whether it
is the controller of parents (a RayJob's RayClusters and submitter Jobs), its started test, and the merge-patch
bodies that resume (dequeue), suspend (reclaim) and requeue it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from common import keys
from common.kuberay_additions import DEFAULT_ADDITIONS, KubeRayAdditions
from common.rayjob import JobInfo, admitted_replicas_value, priority_class_name

__all__ = ["KINDS", "RAYCLUSTER", "RAYJOB", "JobKind", "annotations_patch", "kind_of", "release_patch", "resume_patch"]


class JobKind(Protocol):
    """One queued kind: naming, conversion, the started test and the suspend/resume patches."""

    @property
    def kind(self) -> str: ...

    @property
    def plural(self) -> str: ...

    @property
    def cluster_at(self) -> tuple[str, ...]:
        """Where its RayCluster spec is in the wire object."""
        ...

    @property
    def submitter_at(self) -> tuple[str, ...] | None:
        """Where its submitter pod template is, if it can have one."""
        ...

    @property
    def controls_parents(self) -> bool:
        """Its RayClusters and submitter Jobs name it as their controller (a bare RayCluster is its own parent)."""
        ...

    def queue_unit_name(self, name: str) -> str:
        """The QueueUnit of the job named ``name``, in its namespace."""
        ...

    def priority_class(self, obj: Mapping[str, object]) -> str | None:
        """The priority class the wire object names (its head template's), to look its value up before ``convert``."""
        ...

    def convert(self, obj: Mapping[str, object], *, priority_class_value: int | None = None,
                additions: KubeRayAdditions = DEFAULT_ADDITIONS) -> JobInfo:
        """The wire object as the frozen value the rest of the code reads."""
        ...

    def started(self, job: JobInfo) -> bool:
        """KubeRay reports the admitted job running."""
        ...

    def admitted_size(self, job: JobInfo) -> str | None:
        """What the dequeue patch records of the size admitted (None: nothing)."""
        ...

    def admission_annotations(self) -> tuple[str, ...]:
        """Annotations the dequeue writes besides its stamp (a suspend or requeue removes them)."""
        ...


@dataclass(frozen=True, slots=True)
class _RayJob:
    """A RayJob: QueueUnit ``<job>-ray-qu``; running once its jobDeploymentStatus is Running."""

    kind: str = keys.RAYJOB_KIND
    plural: str = keys.RAYJOB_PLURAL
    cluster_at: tuple[str, ...] = ("spec", "rayClusterSpec")
    submitter_at: tuple[str, ...] | None = ("spec", "submitterPodTemplate")
    controls_parents: bool = True

    def queue_unit_name(self, name: str) -> str:
        return keys.queue_unit_name(name)

    def priority_class(self, obj: Mapping[str, object]) -> str | None:
        return priority_class_name(obj, self.cluster_at)

    def convert(self, obj: Mapping[str, object], *, priority_class_value: int | None = None,
                additions: KubeRayAdditions = DEFAULT_ADDITIONS) -> JobInfo:
        return JobInfo.from_rayjob(obj, priority_class_value=priority_class_value, additions=additions)

    def started(self, job: JobInfo) -> bool:
        return job.job_deployment_status == "Running"

    def admitted_size(self, job: JobInfo) -> str | None:
        return None

    def admission_annotations(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class _BareRayCluster:
    """A bare RayCluster (no controller owns it): QueueUnit ``<name>-rc-qu``; running once KubeRay calls it
    ready (calculateStatus: head + desired workers running); admitted with its replicas recorded."""

    kind: str = keys.RAYCLUSTER_KIND
    plural: str = keys.RAYCLUSTER_PLURAL
    cluster_at: tuple[str, ...] = ("spec",)
    submitter_at: tuple[str, ...] | None = None
    controls_parents: bool = False

    def queue_unit_name(self, name: str) -> str:
        return keys.cluster_queue_unit_name(name)

    def priority_class(self, obj: Mapping[str, object]) -> str | None:
        return priority_class_name(obj, self.cluster_at)

    def convert(self, obj: Mapping[str, object], *, priority_class_value: int | None = None,
                additions: KubeRayAdditions = DEFAULT_ADDITIONS) -> JobInfo:
        return JobInfo.from_raycluster(obj, priority_class_value=priority_class_value, additions=additions)

    def started(self, job: JobInfo) -> bool:
        return job.cluster_state == "ready"

    def admitted_size(self, job: JobInfo) -> str | None:
        return admitted_replicas_value(job)

    def admission_annotations(self) -> tuple[str, ...]:
        return (keys.ADMITTED_REPLICAS,)


RAYJOB: Final[JobKind] = _RayJob()
RAYCLUSTER: Final[JobKind] = _BareRayCluster()
KINDS: Final[Mapping[str, JobKind]] = {k.kind: k for k in (RAYJOB, RAYCLUSTER)}


def kind_of(kind: str) -> JobKind:
    """The seam of a queued kind (``JobInfo.kind``, ``JobRef.kind``); a kind not queued is a programming error."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"not a queued kind: {kind!r} (queued: {', '.join(sorted(KINDS))})") from None


def annotations_patch(annotations: Mapping[str, str | None], resource_version: str) -> dict[str, Any]:
    """A merge patch of a job's annotations (None removes one), guarded by resourceVersion when known."""
    metadata: dict[str, Any] = {"annotations": dict(annotations)}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"metadata": metadata}


def resume_patch(stamp: str, admitted_size: str | None, resource_version: str) -> dict[str, Any]:
    """The dequeue: ONE merge patch, ``suspend: false`` with the dequeue stamp (and the admitted size where the
    kind records one), guarded by resourceVersion when known."""
    annotations = {keys.DEQUEUE_TIMESTAMP: stamp}
    if admitted_size is not None:
        annotations[keys.ADMITTED_REPLICAS] = admitted_size
    return {**annotations_patch(annotations, resource_version), "spec": {"suspend": False}}


def release_patch(kind: JobKind, *, suspend: bool, clear_notice: bool) -> dict[str, Any]:
    """A suspend (reclaim, ``suspend``) or a requeue: the dequeue stamp and what the admission recorded go
    (the enqueue stamp stays, so it requeues at its original place); ``clear_notice`` removes a preemption
    notice with its acknowledgement."""
    annotations: dict[str, Any] = {keys.DEQUEUE_TIMESTAMP: None}
    if clear_notice:
        annotations.update({keys.PREEMPTION_NOTICE: None, keys.CHECKPOINTED: None})
    annotations.update(dict.fromkeys(kind.admission_annotations()))
    body: dict[str, Any] = {"metadata": {"annotations": annotations}}
    if suspend:
        body["spec"] = {"suspend": True}
    return body
