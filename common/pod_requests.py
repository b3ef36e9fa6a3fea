"""Pod requests as kube-scheduler computes them (component-helpers ``resource.PodRequests``), read from a pod spec.

One pure function, ``effective_request``, answers for every pod rayqueue charges: a live pod (filter, bind, the
cache's accounting, node usage) and a pod template (a RayJob's or RayCluster's head, worker groups, submitter).
It follows, in order (component-helpers ``resource/helpers.go``, kubernetes ``pkg/apis/core/v1/defaults.go``):

1. **Container defaulting** (``SetDefaults_Pod``): a resource a container limits but does not request is
   requested at its limit; an explicit request, even ``0``, is kept.
2. **AggregateContainerRequests**: Σ containers, then the init containers -- a regular init container runs
   alone (plus the sidecars started before it), a sidecar init container (``restartPolicy: Always``) runs for
   the pod's whole life and adds to the sum -- the larger of the two, per resource.
3. **Pod-level defaulting** (``defaultPodRequests``; PodLevelResources, beta and on by default since 1.34):
   only when ``spec.resources.limits`` is non-empty, a pod-level request missing for a resource takes the
   aggregated container request when the containers request it (cpu and memory only: ``IsOvercommitAllowed``
   excludes hugepages), else the pod-level limit (any supported resource).
4. **applyPodLevelResources** (``PodRequests`` when ``IsPodLevelRequestsSet``): for each *supported* resource
   (``IsSupportedPodLevelResource``: ``cpu``, ``memory``, ``hugepages-*``) in ``spec.resources.requests``,
   the pod-level value replaces the aggregate; any other pod-level resource is ignored (the containers' value
   is kept).
5. ``spec.overhead`` is added.

A CRD's pod template is never defaulted by the apiserver, so step 3 is modelled here; a live pod from a 1.34+
apiserver arrives defaulted already, and applying the rule again changes nothing (what it fills in is what
step 4 would take from the aggregate, or the pod-level limit it was defaulted from). ``defaultHugePagePodLimits``
is not modelled: the hugepage limits it adds are the aggregated container limits, which equal the aggregated
requests (container hugepage requests must equal their limits), so the request it leads to is the one step 2
gives. Not modelled either: in-place resize (``UseStatusResources``) and DRA node-allocatable claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from common.jsonkind import kind_of as _kind
from common.resources import Resources
from common.wire import ShapeError, WireReader, field_path

__all__ = [
    "PodResources",
    "add_into",
    "aggregate_container_requests",
    "container_request",
    "default_pod_level_requests",
    "effective_request",
    "is_supported_pod_level_resource",
    "max_into",
    "pod_request",
    "read_pod_request",
]

_POD_LEVEL: frozenset[str] = frozenset({"cpu", "memory"})  # helpers.go supportedPodLevelResources
_HUGEPAGES_PREFIX = "hugepages-"  # v1.ResourceHugePagesPrefix


def is_supported_pod_level_resource(name: str) -> bool:
    """component-helpers ``IsSupportedPodLevelResource``: cpu, memory and every hugepages size."""
    return name in _POD_LEVEL or name.startswith(_HUGEPAGES_PREFIX)


def _overcommit_allowed(name: str) -> bool:
    """``corev1helper.IsOvercommitAllowed`` for the supported pod-level resources: all but hugepages."""
    return not name.startswith(_HUGEPAGES_PREFIX)


def container_request(r: WireReader, container: object, path: str) -> dict[str, int]:
    """One container's request: its requests over its limits (a limit alone is the request), zeros kept."""
    if not isinstance(container, Mapping):
        r.fail(path, f"expected a map (a container), got {_kind(container)}")
        return {}
    resources = r.as_map(container.get("resources"), field_path(path, "resources"))
    requests = r.quantities(resources.get("requests"), path, "resources.requests")
    limits = r.quantities(resources.get("limits"), path, "resources.limits")
    return {**limits, **requests}


def add_into(total: dict[str, int], more: Mapping[str, int]) -> None:
    """``total += more``, per resource, in place (a resource ``more`` names is then named in ``total``)."""
    for name, amount in more.items():
        total[name] = total.get(name, 0) + amount


def max_into(peak: dict[str, int], other: Mapping[str, int]) -> None:
    """``peak = max(peak, other)``, per resource, in place (helpers.go ``maxResourceList``: a resource only
    ``other`` names is named in ``peak`` afterwards, even at 0)."""
    for name, amount in other.items():
        if name not in peak or amount > peak[name]:
            peak[name] = amount


@dataclass(frozen=True, slots=True, kw_only=True)
class PodResources:
    """What ``PodRequests`` reads of a PodSpec, as amounts: each container's (defaulted) request, each init
    container's with whether it is a sidecar (``restartPolicy: Always``), ``spec.resources`` and
    ``spec.overhead``. Maps name a resource only when the wire does (an explicit 0 is named)."""

    containers: Sequence[Mapping[str, int]] = ()
    init_containers: Sequence[tuple[Mapping[str, int], bool]] = ()
    pod_requests: Mapping[str, int] = field(default_factory=dict)  # spec.resources.requests
    pod_limits: Mapping[str, int] = field(default_factory=dict)  # spec.resources.limits
    overhead: Mapping[str, int] = field(default_factory=dict)


def aggregate_container_requests(
    containers: Sequence[Mapping[str, int]], init_containers: Sequence[tuple[Mapping[str, int], bool]]
) -> dict[str, int]:
    """component-helpers ``AggregateContainerRequests`` (``aggregateContainerResourcesByFn``, the sidecar KEP's
    formula): Σ containers and sidecars, and the peak of each init container beside the sidecars started before
    it, the larger of the two per resource. Every resource any container names is named in the result."""
    total: dict[str, int] = {}
    for request in containers:
        add_into(total, request)
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for request, sidecar in init_containers:
        if sidecar:  # runs beside everything that starts after it, and beside the containers
            add_into(total, request)
            add_into(sidecars, request)
            max_into(init_peak, sidecars)
        else:
            alone = dict(request)
            add_into(alone, sidecars)
            max_into(init_peak, alone)
    max_into(total, init_peak)
    return total


def default_pod_level_requests(
    aggregate: Mapping[str, int], requests: Mapping[str, int], limits: Mapping[str, int]
) -> dict[str, int]:
    """kubernetes ``pkg/apis/core/v1/defaults.go`` ``defaultPodRequests``: the pod-level requests after the
    apiserver's defaulting. Nothing changes unless pod-level limits are set; then a missing request for a
    supported, overcommittable resource the containers request is their aggregate, and any supported resource
    still missing takes its pod-level limit."""
    out = dict(requests)
    if not limits:
        return out
    for name, amount in aggregate.items():
        if name not in out and is_supported_pod_level_resource(name) and _overcommit_allowed(name):
            out[name] = amount
    for name, amount in limits.items():
        if name not in out and is_supported_pod_level_resource(name):
            out[name] = amount
    return out


def effective_request(pod: PodResources) -> Resources:
    """component-helpers ``PodRequests`` (with the pod-level defaulting first; see the module docstring): the
    aggregate of the containers, each supported pod-level request in its place, plus the overhead. Summed in
    plain dicts and converted to Resources once (the result keeps no zeros)."""
    reqs = aggregate_container_requests(pod.containers, pod.init_containers)
    pod_level = default_pod_level_requests(reqs, pod.pod_requests, pod.pod_limits)
    for name, amount in pod_level.items():  # applyPodLevelResources (a no-op unless IsPodLevelRequestsSet)
        if is_supported_pod_level_resource(name):
            reqs[name] = amount
    add_into(reqs, pod.overhead)
    return Resources({name: amount for name, amount in reqs.items() if amount})


def read_pod_request(
    r: WireReader,
    spec_value: object,
    path: str,
    extra: Sequence[Mapping[str, int]] = (),
    extra_init: Sequence[Mapping[str, int]] = (),
    first_init: Sequence[tuple[str, Mapping[str, int]]] = (),
) -> Resources:
    """The request of the pod spec at ``path`` (``effective_request``); ``extra`` are containers and
    ``extra_init`` regular init containers that KubeRay appends to the pod (after the template's own), and
    ``first_init`` named regular init containers it prepends unless the template has one of that name (the
    apiserver then defaults and kube-scheduler aggregates them with the rest). Shape errors go into ``r``."""
    spec = r.as_map(spec_value, path)
    containers_path = field_path(path, "containers")
    containers: list[Mapping[str, int]] = [
        container_request(r, c, f"{containers_path}[{i}]")
        for i, c in enumerate(r.as_list(spec.get("containers"), containers_path))
    ]
    containers += extra
    inits_path = field_path(path, "initContainers")
    template_inits = r.as_list(spec.get("initContainers"), inits_path)
    names = {c.get("name") for c in template_inits if isinstance(c, Mapping)} if first_init else set()
    inits: list[tuple[Mapping[str, int], bool]] = [(more, False) for name, more in first_init if name not in names]
    inits += [
        (container_request(r, c, f"{inits_path}[{i}]"), isinstance(c, Mapping) and c.get("restartPolicy") == "Always")
        for i, c in enumerate(template_inits)
    ]
    inits += [(more, False) for more in extra_init]
    pod_level = r.as_map(spec.get("resources"), field_path(path, "resources"))
    return effective_request(PodResources(
        containers=containers,
        init_containers=inits,
        pod_requests=r.quantities(pod_level.get("requests"), path, "resources.requests"),
        pod_limits=r.quantities(pod_level.get("limits"), path, "resources.limits"),
        overhead=r.quantities(spec.get("overhead"), path, "overhead"),
    ))


def pod_request(spec: Mapping[str, object], path: str = "spec") -> Resources:
    """The request of a pod spec (see the module docstring). Raises ShapeError with field paths."""
    r = WireReader()
    out = read_pod_request(r, spec, path)
    if r.errors:
        raise ShapeError(r.errors)
    return out
