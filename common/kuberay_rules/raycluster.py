"""What KubeRay v1.7 refuses about a bare RayCluster (raycluster_controller.go rayClusterReconcile), in its words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.kuberay_rules.base import FeatureGates, Out, Problem, as_map, str_map
from common.kuberay_rules.cluster_spec import cluster_spec_problems, upgrade_strategy_problems
from common.kuberay_rules.managed_by import foreign_manager
from common.kuberay_rules.names import MAX_RAYCLUSTER_NAME_LENGTH, name_problems


def raycluster_problems(obj: Mapping[str, Any], gates: FeatureGates | None = None) -> list[Problem]:
    """Everything KubeRay v1.7 would refuse about this RayCluster, in ``rayClusterReconcile``'s order; empty when
    KubeRay accepts it. KubeRay then records a warning event and does nothing more with the cluster, on every
    reconcile: no pods, no status, for ever (a queued cluster would hold its claim with zero pods).

    The order: a cluster managed by another controller is skipped before anything (no problems: see
    ``managed_by_foreign_controller``); ``setDefaults`` (empty ``rayStartParams``: nothing to judge);
    ``ValidateRayClusterMetadata`` (event "The RayCluster metadata is invalid <ns>/<name>: <error>");
    ``ValidateRayClusterSpec`` ("The RayCluster spec is invalid <ns>/<name>: <error>"); ``ValidateRayClusterUpgradeOptions``
    ("The RayCluster UpgradeStrategy is invalid <ns>/<name>: <error>"). Each ``message`` is the ``<error>``,
    exactly. Not judged: the cert-manager check for ``tlsOptions`` (the operator's environment) and
    ``ValidateRayClusterStatus`` (status, which a create or a spec update does not set)."""
    spec, meta = as_map(obj.get("spec")), as_map(obj.get("metadata"))
    if foreign_manager(spec) is not None:
        return []
    out = Out()
    name_problems(out, meta, "RayCluster", MAX_RAYCLUSTER_NAME_LENGTH, "")
    cluster_spec_problems(out, spec, str_map(meta.get("annotations")), gates or FeatureGates(), base="spec",
                          prefix="")
    upgrade_strategy_problems(out, spec, str_map(meta.get("labels")), base="spec")
    return out.problems
