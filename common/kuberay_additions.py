"""What the KubeRay operator adds to the pods it builds (KubeRay v1.1-v1.7 alike), and its default submitter.

* every worker pod gets the ``wait-gcs-ready`` init container, requests = limits cpu 200m / memory 256Mi, unless
  the operator runs with ``ENABLE_INIT_CONTAINER_INJECTION=false`` (``common/pod.go`` ``DefaultWorkerPodTemplate``);
* the head gets the autoscaler sidecar when ``enableInTreeAutoscaling`` is true, cpu 500m / memory 512Mi or
  ``autoscalerOptions.resources`` (``BuildAutoscalerContainer``, ``mergeAutoscalerOverrides``);
* the operator's ``headSidecarContainers`` / ``workerSidecarContainers`` are appended to every head / worker pod
  (``raycluster_controller.go`` ``buildHeadPod`` / ``buildWorkerPod``);
* K8sJobMode without ``submitterPodTemplate`` runs KubeRay's default submitter (``GetDefaultSubmitterContainer``:
  requests cpu 500m / memory 200Mi); SidecarMode puts that container into the head pod.

Two alpha feature gates of KubeRay v1.7 (``pkg/features/features.go``, off by default) add containers too, so
they count when the operator runs with them (``KubeRayAdditions.with_gates``):

* ``RayClusterHistoryServer``: when the cluster spec has ``historyServerOptions.collectorOptions`` (any value but
  null), the ``ray-history-collector`` container (``utils.CollectorContainerName``) is appended to the head and
  every worker pod (``common/pod.go`` ``DefaultHeadPodTemplate`` / ``DefaultWorkerPodTemplate``), requests cpu
  50m / memory 64Mi (limits 200m / 256Mi), or ``collectorOptions.resources``, which replaces them whole
  (``BuildCollectorContainer``);
* ``RayClusterMTLS``: when ``tlsOptions.enabled`` is true (``utils.IsTLSEnabled``), the ``wait-for-tls-ip-san`` init
  container, requests = limits cpu 50m / memory 64Mi, is *prepended* to the head's and every worker's init
  containers, unless the template already has an init container of that name (``common/pod.go`` ``configureTLS``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from common import keys
from common.kuberay_rules.base import FeatureGates
from common.pod_requests import add_into, container_request
from common.quantity import parse_quantity
from common.resources import Resources
from common.wire import ShapeError, WireReader, field_path

__all__ = [
    "AUTOSCALER_RESOURCES",
    "COLLECTOR_REQUESTS",
    "DEFAULT_ADDITIONS",
    "NO_GATED_ADDITIONS",
    "TLS_WAIT_CONTAINER",
    "TLS_WAIT_RESOURCES",
    "WAIT_GCS_READY_RESOURCES",
    "GatedAdditions",
    "KubeRayAdditions",
    "autoscaler_request",
    "autoscaler_sidecar",
    "collector_request",
    "collector_sidecar",
    "default_submitter_request",
    "gated_additions",
    "tls_wait_init_container",
    "tls_wait_request",
    "wait_gcs_ready_request",
]

_NOTHING: Final = Resources()
# KubeRay's wait-gcs-ready init container (common/pod.go DefaultWorkerPodTemplate, v1.1-v1.7): requests = limits.
WAIT_GCS_READY_RESOURCES: Final = {"cpu": "200m", "memory": "256Mi"}
# KubeRay's autoscaler sidecar (common/pod.go BuildAutoscalerContainer, v1.1-v1.7): requests = limits.
AUTOSCALER_RESOURCES: Final = {"cpu": "500m", "memory": "512Mi"}
# KubeRay v1.7's history-server collector sidecar (common/pod.go BuildCollectorContainer): its default requests.
COLLECTOR_REQUESTS: Final = {"cpu": "50m", "memory": "64Mi"}
# KubeRay v1.7's mTLS init container (common/pod.go configureTLS): its name, and its requests = limits.
TLS_WAIT_CONTAINER: Final = "wait-for-tls-ip-san"
TLS_WAIT_RESOURCES: Final = {"cpu": "50m", "memory": "64Mi"}


@dataclass(frozen=True, slots=True, kw_only=True)
class KubeRayAdditions:
    """What the KubeRay operator adds to the pods it builds, from its settings (see the module docstring).

    The defaults are KubeRay's own: the init container on, no operator sidecars. ``head_sidecars`` and
    ``worker_sidecars`` are the summed requests of the operator Configuration's ``headSidecarContainers``
    / ``workerSidecarContainers`` (``from_operator`` reads the container dicts). ``history_server`` and ``mtls``
    are the operator's ``RayClusterHistoryServer`` and ``RayClusterMTLS`` gates (``with_gates``)."""

    worker_init_container: bool = True
    head_sidecars: Resources = _NOTHING
    worker_sidecars: Resources = _NOTHING
    history_server: bool = False
    mtls: bool = False

    def with_gates(self, gates: FeatureGates) -> KubeRayAdditions:
        """These additions under the operator's ``--feature-gates``: the two alpha gates that add containers."""
        return dataclasses.replace(self, history_server=gates.ray_cluster_history_server, mtls=gates.ray_cluster_mtls)

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


def collector_request() -> Resources:
    """KubeRay's default history-server collector sidecar: its request."""
    return _fixed_request(tuple(sorted(COLLECTOR_REQUESTS.items())))


def tls_wait_request() -> Resources:
    """KubeRay's ``wait-for-tls-ip-san`` init container: its request."""
    return _fixed_request(tuple(sorted(TLS_WAIT_RESOURCES.items())))


def collector_sidecar(
    r: WireReader, cluster: Mapping[str, object], additions: KubeRayAdditions, path: str = "spec.rayClusterSpec"
) -> Resources | None:
    """The history-server collector's request on every Ray pod of this cluster spec, or None: only with the
    ``RayClusterHistoryServer`` gate and ``historyServerOptions.collectorOptions`` set (a Go nil pointer is absent
    or null; ``{}`` is set). ``collectorOptions.resources`` replaces the default whole (``BuildCollectorContainer``:
    ``resources = *collectorOptions.Resources``), the apiserver then defaulting its requests to its limits."""
    if not additions.history_server:
        return None
    where = field_path(path, "historyServerOptions")
    options = r.as_map(cluster.get("historyServerOptions"), where).get("collectorOptions")
    if options is None:
        return None
    where = field_path(where, "collectorOptions")
    if r.as_map(options, where).get("resources") is None:
        return collector_request()
    return Resources({k: v for k, v in container_request(r, options, where).items() if v})


def tls_wait_init_container(
    r: WireReader, cluster: Mapping[str, object], additions: KubeRayAdditions, path: str = "spec.rayClusterSpec"
) -> Resources | None:
    """The ``wait-for-tls-ip-san`` init container's request on every Ray pod of this cluster spec, or None: only
    with the ``RayClusterMTLS`` gate and ``tlsOptions.enabled: true`` (``utils.IsTLSEnabled``). The caller skips a
    template that already has an init container of that name, as ``configureTLS`` does."""
    if not additions.mtls:
        return None
    where = field_path(path, "tlsOptions")
    if not r.as_bool(r.as_map(cluster.get("tlsOptions"), where).get("enabled"), field_path(where, "enabled")):
        return None
    return tls_wait_request()


@dataclass(frozen=True, slots=True, kw_only=True)
class GatedAdditions:
    """What the alpha gates add to every Ray pod (head and workers) of one cluster spec: the collector sidecar
    (a container) and the mTLS init container (prepended, by name: ``configureTLS`` skips a template that has it)."""

    collector: Resources | None = None
    tls_wait: Resources | None = None

    @property
    def containers(self) -> tuple[Resources, ...]:
        return () if self.collector is None else (self.collector,)

    @property
    def first_init(self) -> tuple[tuple[str, Resources], ...]:
        return () if self.tls_wait is None else ((TLS_WAIT_CONTAINER, self.tls_wait),)


NO_GATED_ADDITIONS: Final = GatedAdditions()


def gated_additions(
    r: WireReader, cluster: Mapping[str, object], additions: KubeRayAdditions, path: str = "spec.rayClusterSpec"
) -> GatedAdditions:
    """What the alpha gates add to this cluster spec's Ray pods (``collector_sidecar``, ``tls_wait_init_container``)."""
    return GatedAdditions(collector=collector_sidecar(r, cluster, additions, path),
                          tls_wait=tls_wait_init_container(r, cluster, additions, path))
