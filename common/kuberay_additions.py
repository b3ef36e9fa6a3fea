"""What the KubeRay operator adds to the pods it builds (KubeRay v1.1-v1.7 alike), and its default submitter.

* every worker pod gets the ``wait-gcs-ready`` init container, requests = limits cpu 200m / memory 256Mi, unless
  the operator runs with ``ENABLE_INIT_CONTAINER_INJECTION=false`` (``common/pod.go`` ``DefaultWorkerPodTemplate``);
* the head gets the autoscaler sidecar when ``enableInTreeAutoscaling`` is true, cpu 500m / memory 512Mi or
  ``autoscalerOptions.resources`` (``BuildAutoscalerContainer``, ``mergeAutoscalerOverrides``);
* the operator's ``headSidecarContainers`` / ``workerSidecarContainers`` are appended to every head / worker pod
  (``raycluster_controller.go`` ``buildHeadPod`` / ``buildWorkerPod``);
* K8sJobMode without ``submitterPodTemplate`` runs KubeRay's default submitter (``GetDefaultSubmitterContainer``:
  requests cpu 500m / memory 200Mi); SidecarMode puts that container into the head pod.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from common import keys
from common.pod_requests import add_into, container_request
from common.quantity import parse_quantity
from common.resources import Resources
from common.wire import ShapeError, WireReader, field_path

__all__ = [
    "AUTOSCALER_RESOURCES",
    "DEFAULT_ADDITIONS",
    "WAIT_GCS_READY_RESOURCES",
    "KubeRayAdditions",
    "autoscaler_request",
    "autoscaler_sidecar",
    "default_submitter_request",
    "wait_gcs_ready_request",
]

_NOTHING: Final = Resources()
# KubeRay's wait-gcs-ready init container (common/pod.go DefaultWorkerPodTemplate, v1.1-v1.7): requests = limits.
WAIT_GCS_READY_RESOURCES: Final = {"cpu": "200m", "memory": "256Mi"}
# KubeRay's autoscaler sidecar (common/pod.go BuildAutoscalerContainer, v1.1-v1.7): requests = limits.
AUTOSCALER_RESOURCES: Final = {"cpu": "500m", "memory": "512Mi"}


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
        r = WireReader()
        sums: list[Resources] = []
        for field, containers in (("headSidecarContainers", head_sidecars), ("workerSidecarContainers", worker_sidecars)):
            total: dict[str, int] = {}
            for i, container in enumerate(containers):
                add_into(total, container_request(r, container, f"{field}[{i}]"))
            sums.append(Resources({k: v for k, v in total.items() if v}))
        if r.errors:
            raise ShapeError(r.errors)
        return cls(worker_init_container=worker_init_container, head_sidecars=sums[0], worker_sidecars=sums[1])


DEFAULT_ADDITIONS: Final = KubeRayAdditions()


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
    r = WireReader()
    out = container_request(r, container, "keys.DEFAULT_SUBMITTER")
    if r.errors:  # pragma: no cover - constants
        raise ShapeError(r.errors)
    return Resources(out)


@functools.cache
def _fixed_request(amounts: tuple[tuple[str, str], ...]) -> Resources:
    """A container whose requests = limits are KubeRay constants (wait-gcs-ready, the autoscaler)."""
    return Resources({name: parse_quantity(name, text) for name, text in amounts})


def wait_gcs_ready_request() -> Resources:
    """KubeRay's wait-gcs-ready init container on every worker pod: its request."""
    return _fixed_request(tuple(sorted(WAIT_GCS_READY_RESOURCES.items())))


def autoscaler_request() -> Resources:
    """KubeRay's default autoscaler sidecar on the head pod: its request."""
    return _fixed_request(tuple(sorted(AUTOSCALER_RESOURCES.items())))


def autoscaler_sidecar(r: WireReader, cluster: Mapping[str, object], path: str = "spec.rayClusterSpec") -> Resources | None:
    """The autoscaler sidecar's request when ``enableInTreeAutoscaling`` is on: KubeRay's 500m/512Mi, or
    ``autoscalerOptions.resources`` which replaces it whole (``mergeAutoscalerOverrides``)."""
    if not r.as_bool(cluster.get("enableInTreeAutoscaling"), field_path(path, "enableInTreeAutoscaling")):
        return None
    options = r.as_map(cluster.get("autoscalerOptions"), field_path(path, "autoscalerOptions"))
    if options.get("resources") is None:
        return autoscaler_request()
    where = field_path(path, "autoscalerOptions")
    return Resources({k: v for k, v in container_request(r, options, where).items() if v})
