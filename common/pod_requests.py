"""Pod requests as Kubernetes computes them (``resource.PodRequests``), read from a pod spec on the wire.

Σ containers, then the init containers -- a regular init container runs alone (plus the sidecars started
before it), a sidecar init container (``restartPolicy: Always``) runs for the pod's whole life and adds to the
sum -- the larger of the two, plus ``spec.overhead``. A resource a container limits but does not request is
requested at its limit (the API server's defaulting); an explicit request, even ``0``, is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.jsonkind import kind_of as _kind
from common.resources import Resources
from common.wire import ShapeError, WireReader, field_path

__all__ = ["add_into", "container_request", "max_into", "pod_request", "read_pod_request"]


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
    """``total += more``, per resource, in place."""
    for name, amount in more.items():
        total[name] = total.get(name, 0) + amount


def max_into(peak: dict[str, int], other: Mapping[str, int]) -> None:
    """``peak = max(peak, other)``, per resource, in place."""
    for name, amount in other.items():
        if amount > peak.get(name, 0):
            peak[name] = amount


def read_pod_request(
    r: WireReader,
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
    for i, container in enumerate(r.as_list(spec.get("containers"), field_path(path, "containers"))):
        add_into(total, container_request(r, container, f"{field_path(path, 'containers')}[{i}]"))
    for more in extra:
        add_into(total, more)
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    template_inits = r.as_list(spec.get("initContainers"), field_path(path, "initContainers"))
    inits: list[tuple[str, object, Mapping[str, int] | None]] = [
        (f"{field_path(path, 'initContainers')}[{i}]", c, None) for i, c in enumerate(template_inits)
    ]
    inits += [("(injected by KubeRay)", {}, more) for more in extra_init]
    for where, container, injected in inits:
        request = dict(injected) if injected is not None else container_request(r, container, where)
        always = isinstance(container, Mapping) and container.get("restartPolicy") == "Always"
        if always:  # a sidecar: runs beside everything that starts after it, and beside the containers
            add_into(total, request)
            add_into(sidecars, request)
            max_into(init_peak, sidecars)
        else:
            alone = dict(sidecars)
            add_into(alone, request)
            max_into(init_peak, alone)
    overhead = r.quantities(spec.get("overhead"), path, "overhead")
    max_into(total, init_peak)
    add_into(total, overhead)
    return Resources({name: amount for name, amount in total.items() if amount})


def pod_request(spec: Mapping[str, object], path: str = "spec") -> Resources:
    """The request of a pod spec (see the module docstring). Raises ShapeError with field paths."""
    r = WireReader()
    out = read_pod_request(r, spec, path)
    if r.errors:
        raise ShapeError(r.errors)
    return out
