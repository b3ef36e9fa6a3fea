"""The vocabulary of the KubeRay rules: the Problem record, KubeRay's feature gates, and lenient wire readers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

MAX_INT32: Final = 2**31 - 1
RAY_CLUSTER_SELECTOR_KEY: Final = "ray.io/cluster"  # utils/constant.go RayJobClusterSelectorKey
RAY_ENABLE_AUTOSCALER_V2: Final = "RAY_enable_autoscaler_v2"


@dataclass(frozen=True, slots=True)
class FeatureGates:
    """KubeRay's feature gates that change validation, at their v1.7.0 defaults (``--feature-gates``)."""

    ray_job_deletion_policy: bool = True  # RayJobDeletionPolicy: beta since v1.6 (default off before)
    ray_cluster_network_policy: bool = False  # RayClusterNetworkPolicy: alpha, v1.7
    ray_cluster_mtls: bool = False  # RayClusterMTLS: alpha, v1.7
    ray_cluster_history_server: bool = False  # RayClusterHistoryServer: alpha, v1.7
    gcs_fault_tolerance_embedded_storage: bool = False  # GCSFaultToleranceEmbeddedStorage: alpha, v1.7
    # KubernetesWAS: alpha, v1.7. Not a validation gate: a batch-scheduler mode rayqueue cannot run beside
    # (KUBERNETES_WAS_PROBLEM); read so that the webhook and the extender both refuse it at start.
    kubernetes_was: bool = False


@dataclass(frozen=True, slots=True)
class Problem:
    """One refusal KubeRay would make: its function, the field, its exact sentence, the first version."""

    function: str
    path: str
    message: str
    since: str = "v1.4"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(slots=True)
class Out:
    """The problems found so far, in KubeRay's order."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, function: str, path: str, message: str, since: str = "v1.4") -> None:
        self.problems.append(Problem(function, path, message, since))


# --- reading the wire (the CRD's schema is the apiserver's business: a wrong type reads as absent) --------
def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in as_map(value).items() if isinstance(v, str | int | float)}


def env_of(container: Mapping[str, Any]) -> dict[str, str | None]:
    """name -> literal value (None for valueFrom or no value), first entry wins as EnvVarByName's loop does."""
    out: dict[str, str | None] = {}
    for entry in as_list(container.get("env")):
        entry = as_map(entry)
        name = as_str(entry.get("name"))
        if name and name not in out:
            value = entry.get("value")
            out[name] = value if isinstance(value, str) else None
    return out


def containers_of(template: Mapping[str, Any]) -> Sequence[Any]:
    return as_list(as_map(template.get("spec")).get("containers"))


def restart_policy_of(template: Mapping[str, Any]) -> str:
    return as_str(as_map(template.get("spec")).get("restartPolicy"))


def is_autoscaling_enabled(cluster: Mapping[str, Any] | None) -> bool:
    """utils.IsAutoscalingEnabled: ``enableInTreeAutoscaling: true``."""
    return cluster is not None and cluster.get("enableInTreeAutoscaling") is True


def is_autoscaler_v2(cluster: Mapping[str, Any]) -> bool:
    """utils.IsAutoscalingV2Enabled: ``autoscalerOptions.version: v2``."""
    return as_map(cluster.get("autoscalerOptions")).get("version") == "v2"
