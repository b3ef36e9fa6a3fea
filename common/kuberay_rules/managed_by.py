"""Whether KubeRay leaves an object to another controller (``spec.managedBy``), as v1.7.0 decides it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from common.kuberay_rules.base import as_map

KUBERAY_MANAGER: Final = "ray.io/kuberay-operator"  # utils/constant.go KubeRayController
MULTIKUEUE_MANAGER: Final = "kueue.x-k8s.io/multikueue"
# The CRDs' CEL rule on RayJob and RayCluster spec.managedBy (apis/ray/v1): "self in [...]", and immutable. An
# apiserver older than 1.25 does not run CEL rules, so there any string gets through, and KubeRay reads it below.
ALLOWED_MANAGERS: Final = (KUBERAY_MANAGER, MULTIKUEUE_MANAGER)


def foreign_manager(spec: Mapping[str, Any] | None) -> str | None:
    """utils.ManagedByExternalController: the ``managedBy`` of this RayJob, RayCluster or RayJob
    ``rayClusterSpec`` when it is set and is not KubeRay's own value (an empty string is foreign too, as in Go),
    else None. KubeRay skips such an object entirely, before any validation (``rayjob_controller.go``
    ``Reconcile``, ``raycluster_controller.go`` ``rayClusterReconcile``): another controller (MultiKueue) runs it.
    A value that is not a string cannot pass the CRD schema and reads as unset."""
    value = as_map(spec).get("managedBy")
    return value if isinstance(value, str) and value != KUBERAY_MANAGER else None


def managed_by_foreign_controller(obj: Mapping[str, Any]) -> str | None:
    """`foreign_manager` of a whole RayJob or RayCluster object (its ``spec``)."""
    return foreign_manager(as_map(obj.get("spec")))
