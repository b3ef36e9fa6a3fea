"""RayJob, RayCluster and Pod shapes: the wire dicts converted once, at the edge, into frozen JobInfo / PodInfo.

A job is read as its pod sets (Kueue's PodSets in spirit): the head, each worker group and the submitter, one
cluster-spec reader for a RayJob's ``rayClusterSpec`` and a bare RayCluster's ``spec`` alike.

* **Pod request**: ``common.pod_requests`` (Kubernetes ``resource.PodRequests``).
* **Worker group** (KubeRay ``GetWorkerGroupDesiredReplicas``): desired replicas = ``replicas`` clamped
  into ``[minReplicas, maxReplicas]``; the CRD defaults are ``replicas`` 0, ``minReplicas`` 0,
  ``maxReplicas`` 2147483647 (math.MaxInt32), ``numOfHosts`` 1; a missing ``replicas`` means
  ``minReplicas``; ``minReplicas > maxReplicas`` takes ``maxReplicas`` (KubeRay's rule; recorded as a
  problem, newer KubeRay refuses it); ``suspend: true`` counts 0. A group has replicas * numOfHosts pods.
* **Submitter**: ``submissionMode`` defaults to K8sJobMode, whose submitter Job runs
  ``spec.submitterPodTemplate`` or KubeRay's default submitter (requests cpu 500m / memory 200Mi);
  HTTPMode and InteractiveMode have none; SidecarMode puts the default submitter container into the
  head pod. A job with ``spec.clusterSelector`` runs on an existing cluster: only the submitter is its own.
* **What KubeRay adds**: ``common.kuberay_additions`` (the operator's settings).
* **Job request** = head + Σ groups + submitter; the gang is head + workers (min_available), never the
  submitter.

Wrong shapes (a container that is not a map, a bad quantity, a string where an integer belongs) raise
ShapeError (``common.wire``) listing every problem with its field path. Values a tenant may set as free-form
annotations or labels (priority override, timestamps, preemptible, min-available) never raise: a bad one is
ignored and described in ``problems``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from common import keys
from common.gotime import GoTimeError, parse_go
from common.jsonkind import kind_of as _kind
from common.kuberay_additions import (
    DEFAULT_ADDITIONS,
    NO_GATED_ADDITIONS,
    GatedAdditions,
    KubeRayAdditions,
    autoscaler_sidecar,
    default_submitter_request,
    gated_additions,
    wait_gcs_ready_request,
)
from common.liveness import NO_CLEANUP, Cleanup
from common.pod_requests import add_into, read_pod_request
from common.resources import Resources
from common.wire import FrozenMap, ShapeError, WireReader, field_path

__all__ = [
    "JobInfo",
    "OwnerRef",
    "PodInfo",
    "PodSets",
    "SubmissionMode",
    "WorkerGroup",
    "admitted_replicas_value",
    "desired_replicas",
    "priority_class_name",
]

SubmissionMode = Literal["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]
SUBMISSION_MODES: Final[tuple[str, ...]] = get_args(SubmissionMode)
DEFAULT_SUBMISSION_MODE: Final = "K8sJobMode"
# Deployment states from which KubeRay never (again) creates pods for the job. ValidationFailed (v1.5+) is
# written by RayJobReconciler.Reconcile when validateRayJob fails; no case of its state machine leaves it,
# even once the spec is fixed (Kueue treats it as finished too: kubernetes-sigs/kueue#13415).
VALIDATION_FAILED: Final = "ValidationFailed"
FINISHED_DEPLOYMENT_STATUSES: Final = frozenset({"Complete", "Failed", VALIDATION_FAILED})
TERMINAL_POD_PHASES: Final = frozenset({"Succeeded", "Failed"})
MAX_INT32: Final = 2**31 - 1
MIN_INT32: Final = -(2**31)

_INTEGER = re.compile(r"[+-]?[0-9]{1,12}")
_NOTHING: Final = Resources()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerGroup:
    """One worker group: ``replicas`` is the desired count after clamping (0 when suspended)."""

    name: str
    replicas: int
    num_of_hosts: int
    pod_request: Resources
    suspended: bool = False
    max_replicas: int = MAX_INT32  # spec maxReplicas (CRD default math.MaxInt32)
    min_replicas: int = 0  # spec minReplicas: an elastic job's floor (docs/elastic.md)

    @property
    def floor_pods(self) -> int:
        """An elastic job's floor: minReplicas (never above the desired replicas) * numOfHosts, 0 when suspended."""
        return 0 if self.suspended else min(self.min_replicas, self.replicas) * self.num_of_hosts

    @property
    def max_pods(self) -> int:
        """How many pods the group may ever run when the autoscaler drives it: maxReplicas * numOfHosts
        (0 when suspended); KubeRay's GetWorkerGroupDesiredReplicas clamps replicas to it."""
        return 0 if self.suspended else self.max_replicas * self.num_of_hosts

    @property
    def pods(self) -> int:
        """How many pods the group runs: replicas * numOfHosts."""
        return self.replicas * self.num_of_hosts

    @property
    def request(self) -> Resources:
        return self.pod_request.scaled(self.pods)


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerRef:
    """The controller ownerReference of an object."""

    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInfo:
    """A RayJob as rayqueue sees it: identity, request arithmetic, gang, quota, priority and state."""

    uid: str
    namespace: str
    name: str
    generate_name: str
    resource_version: str
    labels: FrozenMap
    annotations: FrozenMap
    request: Resources
    head_request: Resources
    worker_groups: tuple[WorkerGroup, ...]
    submitter_request: Resources
    gang: bool
    min_available: int
    quota_label: str | None
    priority: int
    priority_class_name: str | None
    suspended: bool
    shutdown_after_job_finishes: bool
    enqueue_ns: int | None
    dequeue_ns: int | None
    submission_mode: str
    cluster_selector: FrozenMap
    job_deployment_status: str
    job_status: str
    status_reason: str  # status.reason (KubeRay's JobFailedReason, e.g. ValidationFailed)
    status_message: str  # status.message, KubeRay's words
    ray_cluster_name: str | None
    finished: bool
    preemptible: bool
    deleting: bool
    problems: tuple[str, ...]
    # For the start-time estimate: spec.activeDeadlineSeconds (KubeRay v1.7 rayjob_controller.go
    # checkActiveDeadlineAndUpdateStatusIfNeeded fails the job once it has run this long) and status.endTime.
    active_deadline_seconds: int | None = None
    end_ns: int | None = None
    autoscaling: bool = False  # rayClusterSpec.enableInTreeAutoscaling: the Ray autoscaler edits replicas
    # What is queued: a RayJob, or a bare RayCluster (one no controller owns: a tenant's interactive cluster),
    # queued as a job of its own (``from_raycluster``). ``cluster_state`` is a bare RayCluster's status.state.
    kind: str = keys.RAYJOB_KIND
    cluster_state: str = ""
    cleanup: Cleanup = NO_CLEANUP  # what KubeRay does with its RayCluster once it ends (common.liveness.cluster_fate)
    elastic: bool = False  # the autoscaler runs in it, or it is labelled rayqueue.io/elastic: "true" (docs/elastic.md)

    def reserved_pods(self, group: WorkerGroup) -> int:  # the group's pods its reservation holds
        return group.floor_pods if self.elastic else group.pods

    @classmethod
    def from_rayjob(
        cls,
        obj: Mapping[str, object],
        *,
        priority_class_value: int | None = None,
        additions: KubeRayAdditions = DEFAULT_ADDITIONS,
    ) -> JobInfo:
        """Convert a RayJob dict. ``priority_class_value`` is the resolved value of its priority class;
        ``additions`` what the operator adds to the pods (its settings)."""
        return _job_from_rayjob(obj, priority_class_value, additions)

    @classmethod
    def from_raycluster(
        cls,
        obj: Mapping[str, object],
        *,
        priority_class_value: int | None = None,
        additions: KubeRayAdditions = DEFAULT_ADDITIONS,
    ) -> JobInfo:
        """Convert a bare RayCluster dict (no controller ownerReference) into the job it is queued as: head +
        workers at their desired replicas + what KubeRay adds, no submitter; it never finishes."""
        return _job_from_raycluster(obj, priority_class_value, additions)

    @property
    def bare_cluster(self) -> bool:
        """A bare RayCluster queued as a job of its own (not a RayJob)."""
        return self.kind == keys.RAYCLUSTER_KIND

    @property
    def key(self) -> str:
        """``namespace/name``, for messages and deterministic ordering."""
        return f"{self.namespace}/{self.name}"

    @property
    def worker_pods(self) -> int:
        return sum(g.pods for g in self.worker_groups)


@dataclass(frozen=True, slots=True, kw_only=True)
class PodInfo:
    """A Pod as rayqueue sees it: identity, request, quota and gang labels, placement and state."""

    uid: str
    namespace: str
    name: str
    generate_name: str
    labels: FrozenMap
    request: Resources
    quota_label: str | None
    gang_name: str | None
    min_available: int | None
    ray_cluster: str | None
    node_type: str | None
    ray_group: str | None
    node_name: str | None
    scheduler_name: str
    phase: str
    terminal: bool
    deleting: bool
    owner: OwnerRef | None
    priority: int
    problems: tuple[str, ...]
    created: str = ""  # metadata.creationTimestamp (RFC 3339 sorts as text); "" when unknown
    preemption_notice: str | None = None  # annotation rayqueue.io/preemption-notice (docs/preemption.md)
    unschedulable: str = ""  # kube-scheduler's PodScheduled condition message while it is False (common.liveness)

    @classmethod
    def from_pod(cls, obj: Mapping[str, object]) -> PodInfo:
        return _pod_from_dict(obj)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def priority_class_name(
    obj: Mapping[str, object], cluster_at: Sequence[str | int] = ("spec", "rayClusterSpec")
) -> str | None:
    """The job's priority class: the priorityClassName of the head pod template of the RayCluster spec at
    ``cluster_at`` (a RayJob's ``spec.rayClusterSpec``, a bare RayCluster's ``spec``: the kind's seam says
    which), as JobInfo reads it, or None. Lenient: callers use it to look up the class's value before
    converting the job."""
    node: object = obj
    for key in (*cluster_at, "headGroupSpec", "template", "spec", "priorityClassName"):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, str) and node else None


def desired_replicas(replicas: int | None, min_replicas: int, max_replicas: int, suspended: bool) -> int:
    """KubeRay's GetWorkerGroupDesiredReplicas before * numOfHosts."""
    if suspended:
        return 0
    if min_replicas > max_replicas:
        return max_replicas
    if replicas is None or replicas < min_replicas:
        return min_replicas
    return min(replicas, max_replicas)


def _worker_group(r: WireReader, value: object, path: str, additions: KubeRayAdditions = DEFAULT_ADDITIONS,
                  gated: GatedAdditions = NO_GATED_ADDITIONS) -> WorkerGroup:
    group = r.as_map(value, path)
    name = r.as_str(group.get("groupName"), field_path(path, "groupName")) or ""
    raw_replicas = group.get("replicas")
    replicas = None if raw_replicas is None else r.as_int(raw_replicas, field_path(path, "replicas"), 0)
    low = r.as_int(group.get("minReplicas"), field_path(path, "minReplicas"), 0)
    high = r.as_int(group.get("maxReplicas"), field_path(path, "maxReplicas"), MAX_INT32)
    hosts = r.as_int(group.get("numOfHosts"), field_path(path, "numOfHosts"), 1)
    suspended = r.as_bool(group.get("suspend"), field_path(path, "suspend"))
    if low > high:
        r.problems.append(
            f"{path}: minReplicas {low} > maxReplicas {high}; counted as maxReplicas {high} as KubeRay does"
        )
    template = r.as_map(group.get("template"), field_path(path, "template"))
    request = read_pod_request(
        r,
        template.get("spec"),
        field_path(path, "template.spec"),
        extra=tuple(x for x in (additions.worker_sidecars, *gated.containers) if x),
        extra_init=(wait_gcs_ready_request(),) if additions.worker_init_container else (),
        first_init=gated.first_init,
    )
    return WorkerGroup(
        name=name,
        replicas=desired_replicas(replicas, low, high, suspended),
        num_of_hosts=hosts,
        pod_request=request,
        suspended=suspended,
        max_replicas=high,
        min_replicas=low,
    )


def _timestamp(r: WireReader, annotations: Mapping[str, str], key: str) -> int | None:
    text = annotations.get(key)
    if text is None:
        return None
    try:
        return parse_go(text)
    except GoTimeError as exc:
        r.problems.append(f"metadata.annotations[{key}]: {exc}; ignored")
        return None


def _priority_override(r: WireReader, annotations: Mapping[str, str]) -> int | None:
    text = annotations.get(keys.PRIORITY_OVERRIDE)
    if text is None:
        return None
    value = int(text) if _INTEGER.fullmatch(text.strip()) else None
    if value is None or not MIN_INT32 <= value <= MAX_INT32:
        r.problems.append(
            f"metadata.annotations[{keys.PRIORITY_OVERRIDE}]: invalid priority {text!r}: "
            f"expected an integer in [{MIN_INT32}, {MAX_INT32}]; ignored"
        )
        return None
    return value


def _preemptible(r: WireReader, labels: Mapping[str, str]) -> bool:
    text = labels.get(keys.QUOTA_PREEMPTIBLE)
    if text is None or text.lower() == "true":
        return True
    if text.lower() == "false":
        return False
    r.problems.append(
        f"metadata.labels[{keys.QUOTA_PREEMPTIBLE}]: expected 'true' or 'false', got {text!r}; "
        "treated as preemptible"
    )
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSets:
    """A job's pods as the neutral request model (Kueue's PodSets in spirit): the head's per-pod request, each
    worker group, the submitter's (nothing where the job has none of its own), read once from the spec."""

    head: Resources = _NOTHING
    worker_groups: tuple[WorkerGroup, ...] = ()
    submitter: Resources = _NOTHING
    priority_class_name: str | None = None  # the head template's priorityClassName
    autoscaling: bool = False  # enableInTreeAutoscaling: the Ray autoscaler edits replicas

    @property
    def request(self) -> Resources:
        """Head + Σ groups (pod request x pods) + submitter: the job's request (summed in plain dicts)."""
        amounts = dict(self.head.items())
        add_into(amounts, self.submitter)
        for group in self.worker_groups:
            if group.pods:
                add_into(amounts, {name: amount * group.pods for name, amount in group.pod_request.items()})
        return Resources({name: amount for name, amount in amounts.items() if amount})

    def floor(self) -> PodSets:
        """The pod sets with each worker group at its floor: what an elastic job reserves."""
        groups = tuple(dataclasses.replace(g, replicas=min(g.min_replicas, g.replicas)) for g in self.worker_groups)
        return dataclasses.replace(self, worker_groups=groups)

    @property
    def gang_size(self) -> int:
        """The gang's min-available: the head and every worker pod (never the submitter)."""
        return 1 + sum(g.pods for g in self.worker_groups)


def _read_cluster_spec(
    r: WireReader,
    cluster: Mapping[str, object],
    path: str,
    additions: KubeRayAdditions,
    *,
    head_extra: tuple[Resources, ...] = (),
) -> PodSets:
    """The one reader of a cluster spec (a RayJob's ``spec.rayClusterSpec``, a bare RayCluster's ``spec``, at
    ``path``): the head with ``head_extra`` (SidecarMode's submitter), the autoscaler sidecar and the operator's
    head sidecars, each worker group with what KubeRay adds to workers."""
    head = r.as_map(cluster.get("headGroupSpec"), field_path(path, "headGroupSpec"))
    head_template = r.as_map(head.get("template"), f"{path}.headGroupSpec.template")
    head_path = f"{path}.headGroupSpec.template.spec"
    head_spec = r.as_map(head_template.get("spec"), head_path)
    injected = list(head_extra)
    autoscaler = autoscaler_sidecar(r, cluster, path)
    if autoscaler is not None:
        injected.append(autoscaler)
    if additions.head_sidecars:
        injected.append(additions.head_sidecars)
    gated = gated_additions(r, cluster, additions, path)
    injected.extend(gated.containers)
    head_request = read_pod_request(r, head_spec, head_path, extra=injected, first_init=gated.first_init)
    priority_class = r.as_str(head_spec.get("priorityClassName"), field_path(head_path, "priorityClassName"))
    workers_path = field_path(path, "workerGroupSpecs")
    groups = tuple(
        _worker_group(r, group, f"{workers_path}[{i}]", additions, gated)
        for i, group in enumerate(r.as_list(cluster.get("workerGroupSpecs"), workers_path))
    )
    return PodSets(
        head=head_request,
        worker_groups=groups,
        priority_class_name=priority_class or None,
        autoscaling=autoscaler is not None,
    )


@dataclasses.dataclass(frozen=True)
class _Object:
    """What every queued kind's wire object shares: its metadata, spec and status, read once."""

    meta: Mapping[str, object]
    spec: Mapping[str, object]
    status: Mapping[str, object]
    labels: FrozenMap
    annotations: FrozenMap
    uid: str
    namespace: str
    name: str
    generate_name: str
    resource_version: str
    dequeue_ns: int | None


def _read_object(r: WireReader, obj: Mapping[str, object], kind: str) -> _Object:
    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a {kind} map, got {_kind(root)}"])
    meta = r.as_map(obj.get("metadata"), "metadata")
    annotations = r.str_map(meta.get("annotations"), "metadata.annotations")
    return _Object(
        meta=meta,
        spec=r.as_map(obj.get("spec"), "spec"),
        status=r.as_map(obj.get("status"), "status"),
        labels=r.str_map(meta.get("labels"), "metadata.labels"),
        annotations=annotations,
        uid=r.as_str(meta.get("uid"), "metadata.uid") or "",
        namespace=r.as_str(meta.get("namespace"), "metadata.namespace") or "",
        name=r.as_str(meta.get("name"), "metadata.name") or "",
        generate_name=r.as_str(meta.get("generateName"), "metadata.generateName") or "",
        resource_version=r.as_str(meta.get("resourceVersion"), "metadata.resourceVersion") or "",
        dequeue_ns=_timestamp(r, annotations, keys.DEQUEUE_TIMESTAMP),
    )


def _job_info(
    r: WireReader, o: _Object, sets: PodSets, priority_class_value: int | None, **kind_fields: Any
) -> JobInfo:
    """The JobInfo of either kind: the shared fields from the object and its pod sets, the rest the kind's."""
    suspended = r.as_bool(o.spec.get("suspend"), "spec.suspend")
    if r.errors:
        raise ShapeError(r.errors)
    override = _priority_override(r, o.annotations)
    elastic = sets.autoscaling or o.labels.get(keys.ELASTIC) == "true"
    held = sets.floor() if elastic else sets  # what the reservation and the gang hold (docs/elastic.md)
    kind_fields["min_available"] = held.gang_size if kind_fields["min_available"] else 0
    return JobInfo(
        uid=o.uid,
        namespace=o.namespace,
        name=o.name,
        generate_name=o.generate_name,
        resource_version=o.resource_version,
        labels=o.labels,
        annotations=o.annotations,
        request=held.request,
        head_request=sets.head,
        worker_groups=sets.worker_groups,
        submitter_request=sets.submitter,
        gang=(
            o.labels.get(keys.GANG_SCHEDULER_LABEL) == keys.GANG_SCHEDULER_VALUE
            or o.labels.get(keys.GANG_ENABLED_LABEL) == "true"
        ),
        quota_label=o.labels.get(keys.QUOTA_NAME),
        priority=override if override is not None else (priority_class_value or 0),
        priority_class_name=sets.priority_class_name,
        suspended=suspended,
        enqueue_ns=_timestamp(r, o.annotations, keys.ENQUEUE_TIMESTAMP),
        dequeue_ns=o.dequeue_ns,
        preemptible=_preemptible(r, o.labels),
        deleting=bool(o.meta.get("deletionTimestamp")),
        problems=tuple(r.problems),
        autoscaling=sets.autoscaling,
        elastic=elastic,
        **kind_fields,
    )


def _job_from_rayjob(
    obj: Mapping[str, object], priority_class_value: int | None, additions: KubeRayAdditions
) -> JobInfo:
    r = WireReader()
    o = _read_object(r, obj, keys.RAYJOB_KIND)
    spec, status = o.spec, o.status
    mode = r.as_str(spec.get("submissionMode"), "spec.submissionMode") or DEFAULT_SUBMISSION_MODE
    if mode not in SUBMISSION_MODES:
        r.fail("spec.submissionMode", f"unknown mode {mode!r}: expected one of {', '.join(SUBMISSION_MODES)}")
    selector = r.str_map(spec.get("clusterSelector"), "spec.clusterSelector")

    default_submitter = default_submitter_request()
    sets = PodSets()
    if not selector:  # an existing cluster runs the job: only the submitter is its own
        cluster = r.as_map(spec.get("rayClusterSpec"), "spec.rayClusterSpec")
        sidecar = (default_submitter,) if mode == "SidecarMode" else ()
        sets = _read_cluster_spec(r, cluster, "spec.rayClusterSpec", additions, head_extra=sidecar)
    if mode == "K8sJobMode":
        template = spec.get("submitterPodTemplate")
        if template is None:
            submitter = default_submitter
        else:
            tmpl = r.as_map(template, "spec.submitterPodTemplate")
            submitter = read_pod_request(r, tmpl.get("spec"), "spec.submitterPodTemplate.spec")
        sets = dataclasses.replace(sets, submitter=submitter)

    shutdown = r.as_bool(spec.get("shutdownAfterJobFinishes"), "spec.shutdownAfterJobFinishes")
    deployment = r.as_str(status.get("jobDeploymentStatus"), "status.jobDeploymentStatus") or ""
    return _job_info(
        r, o, sets, priority_class_value,
        min_available=0 if selector else sets.gang_size,
        shutdown_after_job_finishes=shutdown,
        submission_mode=mode,
        cluster_selector=selector,
        job_deployment_status=deployment,
        job_status=r.as_str(status.get("jobStatus"), "status.jobStatus") or "",
        status_reason=r.as_str(status.get("reason"), "status.reason") or "",
        status_message=r.as_str(status.get("message"), "status.message") or "",
        ray_cluster_name=r.as_str(status.get("rayClusterName"), "status.rayClusterName") or None,
        finished=deployment in FINISHED_DEPLOYMENT_STATUSES,
        active_deadline_seconds=_positive_int(spec.get("activeDeadlineSeconds")),
        end_ns=_status_time(status.get("endTime")),
        cleanup=Cleanup.of(spec),
    )


def _job_from_raycluster(
    obj: Mapping[str, object], priority_class_value: int | None, additions: KubeRayAdditions
) -> JobInfo:
    """A bare RayCluster as a job: the cluster spec is read as a RayJob's ``rayClusterSpec`` is (same pod
    arithmetic and KubeRay additions), at the cluster's own paths; no submitter (KubeRay runs none for a
    RayCluster); ``suspended`` is its ``spec.suspend`` (KubeRay v1.1+ deletes its pods; docs/kuberay.md)."""
    r = WireReader()
    o = _read_object(r, obj, keys.RAYCLUSTER_KIND)
    sets = _read_cluster_spec(r, o.spec, "spec", additions)
    admitted = _admitted_replicas(r, o.annotations) if o.dequeue_ns is not None else None
    if admitted is not None:  # admitted: the size it was admitted with; a group added since counts 0
        groups = tuple(
            dataclasses.replace(g, replicas=0 if g.suspended else admitted.get(g.name, 0)) for g in sets.worker_groups
        )
        sets = dataclasses.replace(sets, worker_groups=groups)
    return _job_info(
        r, o, sets, priority_class_value,
        min_available=sets.gang_size,
        shutdown_after_job_finishes=False,
        submission_mode="",
        cluster_selector=FrozenMap(),
        job_deployment_status="",
        job_status="",
        status_reason=r.as_str(o.status.get("reason"), "status.reason") or "",
        status_message="",
        ray_cluster_name=o.name or None,
        finished=False,  # a bare cluster never finishes: it holds its claim until deleted or suspended
        kind=keys.RAYCLUSTER_KIND,
        cluster_state=r.as_str(o.status.get("state"), "status.state") or "",
    )


def admitted_replicas_value(job: JobInfo) -> str:
    """The ``rayqueue.io/admitted-replicas`` annotation the dequeue writes on a bare RayCluster: each worker
    group's desired replicas now (the size it is admitted with), as compact JSON with sorted keys."""
    return json.dumps({g.name: g.replicas for g in job.worker_groups}, sort_keys=True, separators=(",", ":"))


def _admitted_replicas(r: WireReader, annotations: Mapping[str, str]) -> dict[str, int] | None:
    text = annotations.get(keys.ADMITTED_REPLICAS)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_INT32
        for k, v in value.items()
    ):
        return value
    r.problems.append(f"metadata.annotations[{keys.ADMITTED_REPLICAS}]: expected a JSON map of group -> "
                      f"replicas, got {text!r}; the current replicas count")
    return None


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _status_time(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_go(value)
    except GoTimeError:
        return None


def _owner(r: WireReader, meta: Mapping[str, object]) -> OwnerRef | None:
    for i, ref in enumerate(r.as_list(meta.get("ownerReferences"), "metadata.ownerReferences")):
        where = f"metadata.ownerReferences[{i}]"
        owner = r.as_map(ref, where)
        if owner.get("controller") is True:
            return OwnerRef(
                kind=r.as_str(owner.get("kind"), field_path(where, "kind")) or "",
                name=r.as_str(owner.get("name"), field_path(where, "name")) or "",
                uid=r.as_str(owner.get("uid"), field_path(where, "uid")) or "",
            )
    return None


def _min_available(r: WireReader, labels: Mapping[str, str]) -> int | None:
    text = labels.get(keys.POD_GROUP_MIN_AVAILABLE)
    if text is None:
        return None
    if _INTEGER.fullmatch(text.strip()) and 0 <= int(text) <= MAX_INT32:
        return int(text)
    r.problems.append(
        f"metadata.labels[{keys.POD_GROUP_MIN_AVAILABLE}]: invalid min-available {text!r}: "
        "expected a non-negative integer; ignored"
    )
    return None


def _pod_from_dict(obj: Mapping[str, object]) -> PodInfo:
    r = WireReader()
    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a Pod map, got {_kind(root)}"])
    meta = r.as_map(obj.get("metadata"), "metadata")
    spec = r.as_map(obj.get("spec"), "spec")
    status = r.as_map(obj.get("status"), "status")
    labels = r.str_map(meta.get("labels"), "metadata.labels")
    request = read_pod_request(r, spec, "spec")
    uid = r.as_str(meta.get("uid"), "metadata.uid") or ""
    namespace = r.as_str(meta.get("namespace"), "metadata.namespace") or ""
    name = r.as_str(meta.get("name"), "metadata.name") or ""
    generate_name = r.as_str(meta.get("generateName"), "metadata.generateName") or ""
    node_name = r.as_str(spec.get("nodeName"), "spec.nodeName") or None
    scheduler = r.as_str(spec.get("schedulerName"), "spec.schedulerName") or keys.DEFAULT_SCHEDULER
    phase = r.as_str(status.get("phase"), "status.phase") or "Pending"
    priority = r.as_int(spec.get("priority"), "spec.priority", 0, minimum=MIN_INT32)
    owner = _owner(r, meta)
    if r.errors:
        raise ShapeError(r.errors)
    return PodInfo(
        uid=uid,
        namespace=namespace,
        name=name,
        generate_name=generate_name,
        labels=labels,
        request=request,
        quota_label=labels.get(keys.QUOTA_NAME),
        gang_name=labels.get(keys.POD_GROUP_NAME) or labels.get(keys.POD_GROUP_X),
        min_available=_min_available(r, labels),
        ray_cluster=labels.get(keys.RAY_CLUSTER),
        node_type=labels.get(keys.RAY_NODE_TYPE),
        ray_group=labels.get(keys.RAY_GROUP_LABEL),
        node_name=node_name,
        scheduler_name=scheduler,
        phase=phase,
        terminal=phase in TERMINAL_POD_PHASES,
        deleting=bool(meta.get("deletionTimestamp")),
        owner=owner,
        priority=priority,
        problems=tuple(r.problems),
        created=r.as_str(meta.get("creationTimestamp"), "metadata.creationTimestamp") or "",
        preemption_notice=_pod_notice(meta),
        unschedulable=_pod_unschedulable(status),
    )


def _pod_unschedulable(status: Mapping[str, object]) -> str:
    """The message of a False PodScheduled condition ("0/12 nodes are available: ..."), else "". Lenient."""
    conditions = status.get("conditions")
    for c in conditions if isinstance(conditions, list) else ():
        if isinstance(c, Mapping) and c.get("type") == "PodScheduled" and c.get("status") == "False":
            message = c.get("message")
            return message if isinstance(message, str) else str(c.get("reason") or "")
    return ""


def _pod_notice(meta: Mapping[str, object]) -> str | None:
    annotations = meta.get("annotations")
    value = annotations.get(keys.PREEMPTION_NOTICE) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None
