"""KubeRay's ``--feature-gates`` as rayqueue's services read them: the syntax, the gate names, and the one refused."""

from __future__ import annotations

from dataclasses import fields
from typing import Final

from common.kuberay_rules.base import FeatureGates

__all__ = ["GATE_FIELDS", "KUBERNETES_WAS_PROBLEM", "parse_feature_gates"]

# KubeRay's gate names (pkg/features/features.go) -> FeatureGates fields.
GATE_FIELDS: Final = {
    "RayJobDeletionPolicy": "ray_job_deletion_policy", "RayClusterNetworkPolicy": "ray_cluster_network_policy",
    "RayClusterMTLS": "ray_cluster_mtls", "RayClusterHistoryServer": "ray_cluster_history_server",
    "GCSFaultToleranceEmbeddedStorage": "gcs_fault_tolerance_embedded_storage", "KubernetesWAS": "kubernetes_was",
}
# KubeRay v1.7 batchscheduler/kubernetes-was AddMetadataToChildResource: with the gate on, every pod of a RayCluster
# labelled ray.io/gang-scheduling-enabled (rayqueue's gang opt-in too) gets schedulerName default-scheduler and
# spec.schedulingGroup naming a scheduling.k8s.io/v1alpha2 PodGroup the operator creates: a second gang mechanism
# that rayqueue's pod mutation would point at another scheduler. Refused at start, like the batch-scheduler modes
# (config_utils.go ValidateBatchSchedulerConfig makes the gate exclusive with --batch-scheduler too).
KUBERNETES_WAS_PROBLEM: Final = (
    "--kuberay-feature-gates KubernetesWAS=true: KubeRay's Kubernetes WAS batch scheduler then gang-schedules every "
    "RayCluster labelled ray.io/gang-scheduling-enabled through its own PodGroup (spec.schedulingGroup, "
    "schedulerName default-scheduler), which rayqueue's gang placement and scheduler cannot share; run the operator "
    "without that gate (it is alpha and off by default in KubeRay v1.7)")
assert set(GATE_FIELDS.values()) == {f.name for f in fields(FeatureGates)}


def parse_feature_gates(text: str, problems: list[str]) -> FeatureGates:
    """KubeRay's --feature-gates syntax (`A=true,B=false`), as ``--kuberay-feature-gates``; gates rayqueue does not
    read are ignored, a malformed item is a problem."""
    values: dict[str, bool] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        gate, sep, value = item.partition("=")
        if not sep or value.strip().lower() not in ("true", "false"):
            problems.append(f"--kuberay-feature-gates {item!r}: expected GATE=true or GATE=false")
        elif gate.strip() in GATE_FIELDS:
            values[GATE_FIELDS[gate.strip()]] = value.strip().lower() == "true"
    return FeatureGates(**values)
