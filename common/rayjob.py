"""RayJob and Pod shapes: the wire dicts converted once, at the edge, into frozen JobInfo / PodInfo values.

The request arithmetic follows Kubernetes and KubeRay (DESIGN §3):

* **Pod request** (Kubernetes ``resource.PodRequests``): Σ containers, then the init containers -- a
  regular init container runs alone (plus the sidecars started before it), a sidecar init container
  (``restartPolicy: Always``) runs for the pod's whole life and adds to the sum -- the larger of the two,
  plus ``spec.overhead``. A resource a container limits but does not request is requested at its limit
  (the API server's defaulting); an explicit request, even ``0``, is kept.
* **Worker group** (KubeRay ``GetWorkerGroupDesiredReplicas``): desired replicas = ``replicas`` clamped
  into ``[minReplicas, maxReplicas]``; the CRD defaults are ``replicas`` 0, ``minReplicas`` 0,
  ``maxReplicas`` 2147483647 (math.MaxInt32), ``numOfHosts`` 1; a missing ``replicas`` means
  ``minReplicas``; ``minReplicas > maxReplicas`` takes ``maxReplicas`` (KubeRay's rule; recorded as a
  problem, newer KubeRay refuses it); ``suspend: true`` counts 0. A group has replicas * numOfHosts pods.
* **Submitter**: ``submissionMode`` defaults to K8sJobMode, whose submitter Job runs
  ``spec.submitterPodTemplate`` or KubeRay's default submitter (requests cpu 500m / memory 200Mi);
  HTTPMode and InteractiveMode have none; SidecarMode puts the default submitter container into the
  head pod. A job with ``spec.clusterSelector`` runs on an existing cluster: only the submitter is its own.
* **What KubeRay adds** (``KubeRayAdditions``, the operator's settings; KubeRay v1.1-v1.7 alike): every
  worker pod gets the ``wait-gcs-ready`` init container, requests = limits cpu 200m / memory 256Mi, unless
  the operator runs with ``ENABLE_INIT_CONTAINER_INJECTION=false`` (``common/pod.go``
  ``DefaultWorkerPodTemplate``); the head gets the autoscaler sidecar when
  ``rayClusterSpec.enableInTreeAutoscaling`` is true, cpu 500m / memory 512Mi or
  ``autoscalerOptions.resources`` (``BuildAutoscalerContainer``, ``mergeAutoscalerOverrides``); the operator's
  ``headSidecarContainers`` / ``workerSidecarContainers`` are appended to every head / worker pod
  (``raycluster_controller.go`` ``buildHeadPod`` / ``buildWorkerPod``).
* **Job request** = head + Σ groups + submitter; the gang is head + workers (min_available), never the
  submitter.

Wrong shapes (a container that is not a map, a bad quantity, a string where an integer belongs) raise
ShapeError listing every problem with its field path. Values a tenant may set as free-form annotations
or labels (priority override, timestamps, preemptible, min-available) never raise: a bad one is ignored
and described in ``problems``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final, Literal, get_args

from common import keys
from common.gotime import GoTimeError, parse_go
from common.jsonkind import kind_of as _kind
from common.quantity import QuantityError, format_quantity, parse_quantity
from common.resources import Resources

__all__ = [
    "FrozenMap",
    "JobInfo",
    "KubeRayAdditions",
    "OwnerRef",
    "PodInfo",
    "ShapeError",
    "SubmissionMode",
    "WorkerGroup",
    "admitted_replicas_value",
    "compact_size",
    "covered_pods",
    "current_request",
    "default_submitter_request",
    "desired_replicas",
    "maximum_request",
    "pod_request",
    "priority_class_name",
    "reservation",
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
# KubeRay's wait-gcs-ready init container (common/pod.go DefaultWorkerPodTemplate, v1.1-v1.7): requests = limits.
WAIT_GCS_READY_RESOURCES: Final = {"cpu": "200m", "memory": "256Mi"}
# KubeRay's autoscaler sidecar (common/pod.go BuildAutoscalerContainer, v1.1-v1.7): requests = limits.
AUTOSCALER_RESOURCES: Final = {"cpu": "500m", "memory": "512Mi"}

# Quantities repeat ("1", "4Gi", "500m") across containers, groups and requests, and parsing one goes through
# Fraction: remember the recent ones. Bounded, so a client sending many distinct quantities costs no memory;
# typed, so 1 and 1.0 stay apart; a QuantityError is raised again each time, never remembered.
_parse_quantity = functools.lru_cache(maxsize=1024, typed=True)(parse_quantity)


class ShapeError(ValueError):
    """A RayJob or Pod whose shape is wrong; ``errors`` lists every problem as ``path: what``."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("; ".join(self.errors))


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable str -> str mapping (labels, annotations), iterated in key order."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerGroup:
    """One worker group: ``replicas`` is the desired count after clamping (0 when suspended)."""

    name: str
    replicas: int
    num_of_hosts: int
    pod_request: Resources
    suspended: bool = False
    max_replicas: int = MAX_INT32  # spec maxReplicas (CRD default math.MaxInt32)

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
class KubeRayAdditions:
    """What the KubeRay operator adds to the pods it builds, from its settings (see the module docstring).

    The defaults are KubeRay's own: the init container on, no operator sidecars. ``head_sidecars`` and
    ``worker_sidecars`` are the summed requests of the operator Configuration's ``headSidecarContainers``
    / ``workerSidecarContainers`` (``from_operator`` reads the container dicts)."""

    worker_init_container: bool = True
    head_sidecars: Resources = _NOTHING
    worker_sidecars: Resources = _NOTHING

    @classmethod
    def from_operator(
        cls,
        *,
        head_sidecars: Sequence[object] = (),
        worker_sidecars: Sequence[object] = (),
        worker_init_container: bool = True,
    ) -> KubeRayAdditions:
        """From the operator's settings: its sidecar container dicts and ENABLE_INIT_CONTAINER_INJECTION.
        Raises ShapeError (field paths under ``headSidecarContainers`` / ``workerSidecarContainers``)."""
        r = _Reader()
        sums: list[Resources] = []
        for field, containers in (("headSidecarContainers", head_sidecars), ("workerSidecarContainers", worker_sidecars)):
            total: dict[str, int] = {}
            for i, container in enumerate(containers):
                _add_into(total, _container_request(r, container, f"{field}[{i}]"))
            sums.append(Resources({k: v for k, v in total.items() if v}))
        if r.errors:
            raise ShapeError(r.errors)
        return cls(worker_init_container=worker_init_container, head_sidecars=sums[0], worker_sidecars=sums[1])


DEFAULT_ADDITIONS: Final = KubeRayAdditions()


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


# --- reading the wire --------------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key



def priority_class_name(obj: Mapping[str, object], kind: str = keys.RAYJOB_KIND) -> str | None:
    """The RayJob's priority class: its head pod template's priorityClassName (as JobInfo reads it), or None;
    with ``kind`` RayCluster, a bare RayCluster's (its own head template). Lenient: callers use it to look up
    the class's value before converting the job."""
    node: object = obj
    path: tuple[str, ...] = ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "priorityClassName")
    if kind == keys.RAYCLUSTER_KIND:
        path = path[:1] + path[2:]
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, str) and node else None

class _Reader:
    """Typed access to a JSON-like tree that records every shape error instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def as_map(self, value: object, path: str) -> Mapping[str, object]:
        if type(value) is dict:  # the common case, without the ABC check below
            return value
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return value
        self.fail(path, f"expected a map, got {_kind(value)}")
        return {}

    def as_list(self, value: object, path: str) -> Sequence[object]:
        if value is None:
            return ()
        if isinstance(value, list | tuple):
            return value
        self.fail(path, f"expected a list, got {_kind(value)}")
        return ()

    def as_str(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        self.fail(path, f"expected a string, got {_kind(value)}")
        return None

    def as_int(self, value: object, path: str, default: int, *, minimum: int = 0) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {_kind(value)} {value!r}")
            return default
        if value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")
            return default
        return value

    def as_bool(self, value: object, path: str) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        self.fail(path, f"expected a boolean, got {_kind(value)} {value!r}")
        return False

    def str_map(self, value: object, path: str) -> FrozenMap:
        out: dict[str, str] = {}
        for key, item in self.as_map(value, path).items():
            if isinstance(item, str):
                out[key] = item
            else:
                self.fail(f"{path}[{key}]", f"expected a string, got {_kind(item)}")
        return FrozenMap(out)

    def quantities(self, value: object, parent: str, key: str) -> dict[str, int]:
        """The `{resource: quantity}` map at `parent`.`key`, zeros kept (an explicit 0 request is not
        defaulted to the limit). The field paths are spelled only for an error."""
        if value is None:
            return {}
        out: dict[str, int] = {}
        for name, raw in self.as_map(value, _at(parent, key)).items():
            if isinstance(raw, bool) or not isinstance(raw, str | int | float):
                self.fail(_at(_at(parent, key), name), f"invalid quantity {raw!r}: expected a string or a number")
                continue
            try:
                amount = _parse_quantity(name, raw)
            except QuantityError as exc:
                self.fail(_at(_at(parent, key), name), str(exc))
                continue
            if amount < 0:
                self.fail(_at(_at(parent, key), name), f"invalid quantity {raw!r}: must not be negative")
                continue
            out[name] = amount
        return out


def _container_request(r: _Reader, container: object, path: str) -> dict[str, int]:
    if not isinstance(container, Mapping):
        r.fail(path, f"expected a map (a container), got {_kind(container)}")
        return {}
    resources = r.as_map(container.get("resources"), _at(path, "resources"))
    requests = r.quantities(resources.get("requests"), path, "resources.requests")
    limits = r.quantities(resources.get("limits"), path, "resources.limits")
    return {**limits, **requests}


def _add_into(total: dict[str, int], more: Mapping[str, int]) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, 0) + amount


def _max_into(peak: dict[str, int], other: Mapping[str, int]) -> None:
    for name, amount in other.items():
        if amount > peak.get(name, 0):
            peak[name] = amount


def _pod_request(
    r: _Reader,
    spec_value: object,
    path: str,
    extra: Sequence[Mapping[str, int]] = (),
    extra_init: Sequence[Mapping[str, int]] = (),
) -> Resources:
    """Kubernetes' PodRequests, sidecar init containers included; ``extra`` are containers and
    ``extra_init`` regular init containers that KubeRay appends to the pod (after the template's own).

    Summed in plain dicts and converted to Resources once (amounts are never negative here, so a missing
    resource and a zero one count the same; the result keeps no zeros)."""
    spec = r.as_map(spec_value, path)
    total: dict[str, int] = {}
    for i, container in enumerate(r.as_list(spec.get("containers"), _at(path, "containers"))):
        _add_into(total, _container_request(r, container, f"{_at(path, 'containers')}[{i}]"))
    for more in extra:
        _add_into(total, more)
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    template_inits = r.as_list(spec.get("initContainers"), _at(path, "initContainers"))
    inits: list[tuple[str, object, Mapping[str, int] | None]] = [
        (f"{_at(path, 'initContainers')}[{i}]", c, None) for i, c in enumerate(template_inits)
    ]
    inits += [("(injected by KubeRay)", {}, more) for more in extra_init]
    for where, container, injected in inits:
        request = dict(injected) if injected is not None else _container_request(r, container, where)
        always = isinstance(container, Mapping) and container.get("restartPolicy") == "Always"
        if always:  # a sidecar: runs beside everything that starts after it, and beside the containers
            _add_into(total, request)
            _add_into(sidecars, request)
            _max_into(init_peak, sidecars)
        else:
            alone = dict(sidecars)
            _add_into(alone, request)
            _max_into(init_peak, alone)
    overhead = r.quantities(spec.get("overhead"), path, "overhead")
    _max_into(total, init_peak)
    _add_into(total, overhead)
    return Resources({name: amount for name, amount in total.items() if amount})


def pod_request(spec: Mapping[str, object], path: str = "spec") -> Resources:
    """The request of a pod spec (see the module docstring). Raises ShapeError with field paths."""
    r = _Reader()
    out = _pod_request(r, spec, path)
    if r.errors:
        raise ShapeError(r.errors)
    return out


@functools.cache
def default_submitter_request() -> Resources:
    """KubeRay's default submitter container (GetDefaultSubmitterContainer): its requests. Computed once
    (the constants never change; Resources is immutable, so every caller may share the value)."""
    container = {
        "resources": {
            "requests": dict(keys.DEFAULT_SUBMITTER_REQUESTS),
            "limits": dict(keys.DEFAULT_SUBMITTER_LIMITS),
        }
    }
    r = _Reader()
    out = _container_request(r, container, "keys.DEFAULT_SUBMITTER")
    if r.errors:  # pragma: no cover - constants
        raise ShapeError(r.errors)
    return Resources(out)


def desired_replicas(replicas: int | None, min_replicas: int, max_replicas: int, suspended: bool) -> int:
    """KubeRay's GetWorkerGroupDesiredReplicas before * numOfHosts."""
    if suspended:
        return 0
    if min_replicas > max_replicas:
        return max_replicas
    if replicas is None or replicas < min_replicas:
        return min_replicas
    return min(replicas, max_replicas)


@functools.cache
def _fixed_request(amounts: tuple[tuple[str, str], ...]) -> Resources:
    """A container whose requests = limits are KubeRay constants (wait-gcs-ready, the autoscaler)."""
    return Resources({name: parse_quantity(name, text) for name, text in amounts})


def wait_gcs_ready_request() -> Resources:
    return _fixed_request(tuple(sorted(WAIT_GCS_READY_RESOURCES.items())))


def autoscaler_request() -> Resources:
    return _fixed_request(tuple(sorted(AUTOSCALER_RESOURCES.items())))


def _worker_group(r: _Reader, value: object, path: str, additions: KubeRayAdditions = DEFAULT_ADDITIONS) -> WorkerGroup:
    group = r.as_map(value, path)
    name = r.as_str(group.get("groupName"), _at(path, "groupName")) or ""
    raw_replicas = group.get("replicas")
    replicas = None if raw_replicas is None else r.as_int(raw_replicas, _at(path, "replicas"), 0)
    low = r.as_int(group.get("minReplicas"), _at(path, "minReplicas"), 0)
    high = r.as_int(group.get("maxReplicas"), _at(path, "maxReplicas"), MAX_INT32)
    hosts = r.as_int(group.get("numOfHosts"), _at(path, "numOfHosts"), 1)
    suspended = r.as_bool(group.get("suspend"), _at(path, "suspend"))
    if low > high:
        r.problems.append(
            f"{path}: minReplicas {low} > maxReplicas {high}; counted as maxReplicas {high} as KubeRay does"
        )
    template = r.as_map(group.get("template"), _at(path, "template"))
    request = _pod_request(
        r,
        template.get("spec"),
        _at(path, "template.spec"),
        extra=(additions.worker_sidecars,) if additions.worker_sidecars else (),
        extra_init=(wait_gcs_ready_request(),) if additions.worker_init_container else (),
    )
    return WorkerGroup(
        name=name,
        replicas=desired_replicas(replicas, low, high, suspended),
        num_of_hosts=hosts,
        pod_request=request,
        suspended=suspended,
        max_replicas=high,
    )


def _timestamp(r: _Reader, annotations: Mapping[str, str], key: str) -> int | None:
    text = annotations.get(key)
    if text is None:
        return None
    try:
        return parse_go(text)
    except GoTimeError as exc:
        r.problems.append(f"metadata.annotations[{key}]: {exc}; ignored")
        return None


def _priority_override(r: _Reader, annotations: Mapping[str, str]) -> int | None:
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


def _preemptible(r: _Reader, labels: Mapping[str, str]) -> bool:
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


def _autoscaler(r: _Reader, cluster: Mapping[str, object], path: str = "spec.rayClusterSpec") -> Resources | None:
    """The autoscaler sidecar's request when ``enableInTreeAutoscaling`` is on: KubeRay's 500m/512Mi, or
    ``autoscalerOptions.resources`` which replaces it whole (``mergeAutoscalerOverrides``)."""
    if not r.as_bool(cluster.get("enableInTreeAutoscaling"), _at(path, "enableInTreeAutoscaling")):
        return None
    options = r.as_map(cluster.get("autoscalerOptions"), _at(path, "autoscalerOptions"))
    if options.get("resources") is None:
        return autoscaler_request()
    where = _at(path, "autoscalerOptions")
    return Resources({k: v for k, v in _container_request(r, options, where).items() if v})


def _job_from_rayjob(
    obj: Mapping[str, object], priority_class_value: int | None, additions: KubeRayAdditions
) -> JobInfo:
    r = _Reader()
    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a RayJob map, got {_kind(root)}"])
    meta = r.as_map(obj.get("metadata"), "metadata")
    spec = r.as_map(obj.get("spec"), "spec")
    status = r.as_map(obj.get("status"), "status")
    labels = r.str_map(meta.get("labels"), "metadata.labels")
    annotations = r.str_map(meta.get("annotations"), "metadata.annotations")

    mode = r.as_str(spec.get("submissionMode"), "spec.submissionMode") or DEFAULT_SUBMISSION_MODE
    if mode not in SUBMISSION_MODES:
        r.fail("spec.submissionMode", f"unknown mode {mode!r}: expected one of {', '.join(SUBMISSION_MODES)}")
    selector = r.str_map(spec.get("clusterSelector"), "spec.clusterSelector")

    default_submitter = default_submitter_request()
    head_request = Resources()
    groups: list[WorkerGroup] = []
    priority_class_name: str | None = None
    autoscaling = False
    if not selector:
        cluster = r.as_map(spec.get("rayClusterSpec"), "spec.rayClusterSpec")
        head = r.as_map(cluster.get("headGroupSpec"), "spec.rayClusterSpec.headGroupSpec")
        head_template = r.as_map(head.get("template"), "spec.rayClusterSpec.headGroupSpec.template")
        head_path = "spec.rayClusterSpec.headGroupSpec.template.spec"
        head_spec = r.as_map(head_template.get("spec"), head_path)
        injected = [default_submitter] if mode == "SidecarMode" else []
        autoscaler = _autoscaler(r, cluster)
        autoscaling = autoscaler is not None
        if autoscaler is not None:
            injected.append(autoscaler)
        if additions.head_sidecars:
            injected.append(additions.head_sidecars)
        head_request = _pod_request(r, head_spec, head_path, extra=injected)
        priority_class_name = r.as_str(
            head_spec.get("priorityClassName"), _at(head_path, "priorityClassName")
        )
        workers_path = "spec.rayClusterSpec.workerGroupSpecs"
        for i, group in enumerate(r.as_list(cluster.get("workerGroupSpecs"), workers_path)):
            groups.append(_worker_group(r, group, f"{workers_path}[{i}]", additions))

    submitter = Resources()
    if mode == "K8sJobMode":
        template = spec.get("submitterPodTemplate")
        if template is None:
            submitter = default_submitter
        else:
            tmpl = r.as_map(template, "spec.submitterPodTemplate")
            submitter = _pod_request(r, tmpl.get("spec"), "spec.submitterPodTemplate.spec")

    suspended = r.as_bool(spec.get("suspend"), "spec.suspend")
    shutdown = r.as_bool(spec.get("shutdownAfterJobFinishes"), "spec.shutdownAfterJobFinishes")
    uid = r.as_str(meta.get("uid"), "metadata.uid") or ""
    namespace = r.as_str(meta.get("namespace"), "metadata.namespace") or ""
    name = r.as_str(meta.get("name"), "metadata.name") or ""
    generate_name = r.as_str(meta.get("generateName"), "metadata.generateName") or ""
    resource_version = r.as_str(meta.get("resourceVersion"), "metadata.resourceVersion") or ""
    deployment = r.as_str(status.get("jobDeploymentStatus"), "status.jobDeploymentStatus") or ""
    job_status = r.as_str(status.get("jobStatus"), "status.jobStatus") or ""
    ray_cluster_name = r.as_str(status.get("rayClusterName"), "status.rayClusterName") or None
    status_reason = r.as_str(status.get("reason"), "status.reason") or ""
    status_message = r.as_str(status.get("message"), "status.message") or ""
    if r.errors:
        raise ShapeError(r.errors)

    override = _priority_override(r, annotations)
    priority = override if override is not None else (priority_class_value or 0)
    workers = sum(g.pods for g in groups)
    amounts = dict(head_request.items())
    _add_into(amounts, submitter)
    for group in groups:
        if group.pods:
            _add_into(amounts, {name: amount * group.pods for name, amount in group.pod_request.items()})
    total = Resources({name: amount for name, amount in amounts.items() if amount})
    return JobInfo(
        uid=uid,
        namespace=namespace,
        name=name,
        generate_name=generate_name,
        resource_version=resource_version,
        labels=labels,
        annotations=annotations,
        request=total,
        head_request=head_request,
        worker_groups=tuple(groups),
        submitter_request=submitter,
        gang=(
            labels.get(keys.GANG_SCHEDULER_LABEL) == keys.GANG_SCHEDULER_VALUE
            or labels.get(keys.GANG_ENABLED_LABEL) == "true"
        ),
        min_available=0 if selector else 1 + workers,
        quota_label=labels.get(keys.QUOTA_NAME),
        priority=priority,
        priority_class_name=priority_class_name or None,
        suspended=suspended,
        shutdown_after_job_finishes=shutdown,
        enqueue_ns=_timestamp(r, annotations, keys.ENQUEUE_TIMESTAMP),
        dequeue_ns=_timestamp(r, annotations, keys.DEQUEUE_TIMESTAMP),
        submission_mode=mode,
        cluster_selector=selector,
        job_deployment_status=deployment,
        job_status=job_status,
        status_reason=status_reason,
        status_message=status_message,
        ray_cluster_name=ray_cluster_name,
        finished=deployment in FINISHED_DEPLOYMENT_STATUSES,
        preemptible=_preemptible(r, labels),
        deleting=bool(meta.get("deletionTimestamp")),
        problems=tuple(r.problems),
        active_deadline_seconds=_positive_int(spec.get("activeDeadlineSeconds")),
        end_ns=_status_time(status.get("endTime")),
        autoscaling=autoscaling,
    )


def _job_from_raycluster(
    obj: Mapping[str, object], priority_class_value: int | None, additions: KubeRayAdditions
) -> JobInfo:
    """A bare RayCluster as a job: the cluster spec is read as a RayJob's ``rayClusterSpec`` is (same pod
    arithmetic and KubeRay additions), at the cluster's own paths; no submitter (KubeRay runs none for a
    RayCluster); ``suspended`` is its ``spec.suspend`` (KubeRay v1.1+ deletes its pods; docs/kuberay.md)."""
    r = _Reader()
    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a RayCluster map, got {_kind(root)}"])
    meta = r.as_map(obj.get("metadata"), "metadata")
    spec = r.as_map(obj.get("spec"), "spec")
    status = r.as_map(obj.get("status"), "status")
    labels = r.str_map(meta.get("labels"), "metadata.labels")
    annotations = r.str_map(meta.get("annotations"), "metadata.annotations")
    head = r.as_map(spec.get("headGroupSpec"), "spec.headGroupSpec")
    head_template = r.as_map(head.get("template"), "spec.headGroupSpec.template")
    head_path = "spec.headGroupSpec.template.spec"
    head_spec = r.as_map(head_template.get("spec"), head_path)
    injected: list[Resources] = []
    autoscaler = _autoscaler(r, spec, "spec")
    if autoscaler is not None:
        injected.append(autoscaler)
    if additions.head_sidecars:
        injected.append(additions.head_sidecars)
    head_request = _pod_request(r, head_spec, head_path, extra=injected)
    priority_class_name = r.as_str(head_spec.get("priorityClassName"), _at(head_path, "priorityClassName"))
    groups = [
        _worker_group(r, group, f"spec.workerGroupSpecs[{i}]", additions)
        for i, group in enumerate(r.as_list(spec.get("workerGroupSpecs"), "spec.workerGroupSpecs"))
    ]
    dequeue_ns = _timestamp(r, annotations, keys.DEQUEUE_TIMESTAMP)
    admitted = _admitted_replicas(r, annotations) if dequeue_ns is not None else None
    if admitted is not None:  # admitted: the size it was admitted with; a group added since counts 0
        groups = [dataclasses.replace(g, replicas=0 if g.suspended else admitted.get(g.name, 0)) for g in groups]
    suspended = r.as_bool(spec.get("suspend"), "spec.suspend")
    name = r.as_str(meta.get("name"), "metadata.name") or ""
    state = r.as_str(status.get("state"), "status.state") or ""
    uid = r.as_str(meta.get("uid"), "metadata.uid") or ""
    namespace = r.as_str(meta.get("namespace"), "metadata.namespace") or ""
    generate_name = r.as_str(meta.get("generateName"), "metadata.generateName") or ""
    resource_version = r.as_str(meta.get("resourceVersion"), "metadata.resourceVersion") or ""
    if r.errors:
        raise ShapeError(r.errors)
    override = _priority_override(r, annotations)
    total = head_request
    for group in groups:
        if group.pods:
            total = total + group.request
    return JobInfo(
        uid=uid,
        namespace=namespace,
        generate_name=generate_name,
        resource_version=resource_version,
        name=name,
        labels=labels,
        annotations=annotations,
        request=total,
        head_request=head_request,
        worker_groups=tuple(groups),
        submitter_request=Resources(),
        gang=(
            labels.get(keys.GANG_SCHEDULER_LABEL) == keys.GANG_SCHEDULER_VALUE
            or labels.get(keys.GANG_ENABLED_LABEL) == "true"
        ),
        min_available=1 + sum(g.pods for g in groups),
        quota_label=labels.get(keys.QUOTA_NAME),
        priority=override if override is not None else (priority_class_value or 0),
        priority_class_name=priority_class_name or None,
        suspended=suspended,
        shutdown_after_job_finishes=False,
        enqueue_ns=_timestamp(r, annotations, keys.ENQUEUE_TIMESTAMP),
        dequeue_ns=dequeue_ns,
        submission_mode="",
        cluster_selector=FrozenMap(),
        job_deployment_status="",
        job_status="",
        status_reason=r.as_str(status.get("reason"), "status.reason") or "",
        status_message="",
        ray_cluster_name=name or None,
        finished=False,  # a bare cluster never finishes: it holds its claim until deleted or suspended
        preemptible=_preemptible(r, labels),
        deleting=bool(meta.get("deletionTimestamp")),
        problems=tuple(r.problems),
        kind=keys.RAYCLUSTER_KIND,
        cluster_state=state,
        autoscaling=autoscaler is not None,
    )


def admitted_replicas_value(job: JobInfo) -> str:
    """The ``rayqueue.io/admitted-replicas`` annotation the dequeue writes on a bare RayCluster: each worker
    group's desired replicas now (the size it is admitted with), as compact JSON with sorted keys."""
    return json.dumps({g.name: g.replicas for g in job.worker_groups}, sort_keys=True, separators=(",", ":"))


def _admitted_replicas(r: _Reader, annotations: Mapping[str, str]) -> dict[str, int] | None:
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


def _owner(r: _Reader, meta: Mapping[str, object]) -> OwnerRef | None:
    for i, ref in enumerate(r.as_list(meta.get("ownerReferences"), "metadata.ownerReferences")):
        where = f"metadata.ownerReferences[{i}]"
        owner = r.as_map(ref, where)
        if owner.get("controller") is True:
            return OwnerRef(
                kind=r.as_str(owner.get("kind"), _at(where, "kind")) or "",
                name=r.as_str(owner.get("name"), _at(where, "name")) or "",
                uid=r.as_str(owner.get("uid"), _at(where, "uid")) or "",
            )
    return None


def _min_available(r: _Reader, labels: Mapping[str, str]) -> int | None:
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
    r = _Reader()
    root: object = obj
    if not isinstance(root, Mapping):
        raise ShapeError([f"(root): expected a Pod map, got {_kind(root)}"])
    meta = r.as_map(obj.get("metadata"), "metadata")
    spec = r.as_map(obj.get("spec"), "spec")
    status = r.as_map(obj.get("status"), "status")
    labels = r.str_map(meta.get("labels"), "metadata.labels")
    request = _pod_request(r, spec, "spec")
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


Role = tuple[str, str]  # ("head", ""), ("worker", group name), ("submitter", "")


def _role(pod: PodInfo) -> Role | None:
    """A job's pod's role: the head and each worker group (pods controlled by a RayCluster, by
    ``ray.io/node-type`` and ``ray.io/group``), the submitter (the pod controlled by a batch/v1 Job)."""
    if pod.owner is None:
        return None
    if pod.owner.kind == keys.BATCH_JOB_KIND:
        return ("submitter", "")
    if pod.owner.kind == keys.RAYCLUSTER_KIND and pod.node_type == "head":
        return ("head", "")
    if pod.owner.kind == keys.RAYCLUSTER_KIND and pod.node_type == "worker":
        return ("worker", pod.ray_group or "")
    return None


def _counts(job: JobInfo) -> dict[Role, int]:
    """How many pods of each role the job was admitted with."""
    counts: dict[Role, int] = {}
    if job.head_request:
        counts[("head", "")] = 1
    if job.submitter_request:
        counts[("submitter", "")] = 1
    for group in job.worker_groups:
        counts[("worker", group.name)] = counts.get(("worker", group.name), 0) + group.pods
    return counts


def reservation(job: JobInfo, pods: Iterable[PodInfo]) -> Resources:
    """The quota an admitted job holds: its request, with each role's per-pod request replaced by what the
    job's pods really request where some exist (the largest pod of the role), at the spec's counts.

    The prediction (templates plus ``KubeRayAdditions``) can be short: a mutating webhook of the cluster,
    a LimitRange or an operator setting we were not told of adds to the pods. Once the pods exist their
    requests are the truth."""
    seen: dict[Role, Resources] = {}
    for pod in pods:
        role = _role(pod)
        if role is not None:
            seen[role] = seen[role].max(pod.request) if role in seen else pod.request
    if not seen:
        return job.request
    total = seen.get(("head", ""), job.head_request) if job.head_request else Resources()
    if job.submitter_request:
        total = total + seen.get(("submitter", ""), job.submitter_request)
    for group in job.worker_groups:
        if group.pods:
            total = total + seen.get(("worker", group.name), group.pod_request).scaled(group.pods)
    return total.clamp_low()


def covered_pods(job: JobInfo, pods: Iterable[PodInfo], placed: AbstractSet[str] = frozenset()) -> frozenset[str]:
    """The job's pods its reservation covers: per role, the live (non-terminal) pods up to the count it was
    admitted with, bound ones first (``node_name``, or a uid in ``placed``: being bound), then the oldest.
    The others are *growth* (a retried job's new pods while its old ones still terminate, more workers than
    admitted, a pod of no role): each must fit the quota like any other pod. A terminating pod keeps its
    place until it is gone, as it keeps its node.

    Bound first: creationTimestamp has whole seconds, so a worker added in the same second as the admitted
    one ties with it, and the uid would then decide; a pending pod taking the cover from a bound one would
    bind unchecked (the bound one then charged as growth: the job past its max)."""
    counts = _counts(job)
    by_role: dict[Role, list[PodInfo]] = {}
    for pod in pods:
        role = _role(pod)
        if role is not None and not pod.terminal:
            by_role.setdefault(role, []).append(pod)
    covered: set[str] = set()
    for role, members in by_role.items():
        members.sort(key=lambda p: (not (p.node_name or p.uid in placed), p.created or "~", p.uid))
        covered.update(p.uid for p in members[: counts.get(role, 0)])
    return frozenset(covered)


def _seen_requests(pods: Iterable[PodInfo]) -> dict[Role, Resources]:
    seen: dict[Role, Resources] = {}
    for pod in pods:
        role = _role(pod)
        if role is not None:
            seen[role] = seen[role].max(pod.request) if role in seen else pod.request
    return seen


def maximum_request(job: JobInfo, pods: Iterable[PodInfo] = ()) -> Resources | None:
    """The most the job could ever take: head + submitter + each worker group at ``maxReplicas`` x
    numOfHosts pods when ``enableInTreeAutoscaling`` is on (the Ray autoscaler moves ``replicas`` within
    [minReplicas, maxReplicas], and KubeRay v1.7.0 utils/util.go GetWorkerGroupDesiredReplicas clamps a
    larger ``replicas`` to maxReplicas), else at its desired replicas (the reservation's counts). Per-pod
    requests as ``reservation``: the prediction with KubeRay's additions, or the largest real pod of the
    role. None when it is unbounded (an autoscaled group with maxReplicas left at the CRD default
    math.MaxInt32). Informative: growth is checked pod by pod whatever this says (the RayCluster itself
    can be edited, maxReplicas included)."""
    if not job.autoscaling:
        return reservation(job, pods)
    if any(g.max_replicas == MAX_INT32 and not g.suspended for g in job.worker_groups):
        return None
    seen = _seen_requests(pods)
    total = seen.get(("head", ""), job.head_request) if job.head_request else Resources()
    if job.submitter_request:
        total = total + seen.get(("submitter", ""), job.submitter_request)
    for group in job.worker_groups:
        if group.max_pods:
            total = total + seen.get(("worker", group.name), group.pod_request).scaled(group.max_pods)
    return total.clamp_low()


def current_request(pods: Iterable[PodInfo]) -> Resources:
    """What the job's live (non-terminal) pods request now, bound or pending, covered or growth."""
    total = Resources()
    for pod in pods:
        if not pod.terminal:
            total = total + pod.request
    return total


def compact_size(request: Resources | None) -> str:
    """A request as a short column value: ``cpu/memory`` (``8500m/17Gi``), other resources after them
    (``8500m/17Gi/nvidia.com/gpu=2``); ``-`` for nothing, ``unbounded`` for None."""
    if request is None:
        return "unbounded"
    if not request:
        return "-"
    parts = [_short(name, request.get(name)) for name in ("cpu", "memory")]
    parts += [f"{name}={_short(name, request.get(name))}" for name in sorted(request) if name not in ("cpu", "memory")]
    return "/".join(parts)


def _short(resource: str, value: int) -> str:
    """format_quantity, or for memory with no short exact form, one decimal of the largest binary
    unit it reaches ("11.4Gi"): a column, not a value to compute with."""
    exact = format_quantity(resource, value)
    if resource != "memory" or exact[-1:].isalpha() or value < 1024:
        return exact
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= unit:
            return f"{value / unit:.1f}{suffix}"
    return exact  # pragma: no cover - value >= 1024 reaches Ki
