"""KubeRay's rules for a RayJob's deletionStrategy (v1.5+, utils/validation.go), each error as KubeRay words it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from common.kuberay_rules.base import (
    FeatureGates,
    Out,
    as_int,
    as_list,
    as_map,
    as_str,
    is_autoscaling_enabled,
)

_SPEC: Final = "The RayJob spec is invalid: "


def deletion_configuration_problems(out: Out, spec: Mapping[str, Any], shutdown: bool, ttl: int,
                            selector: Mapping[str, str], cluster: Mapping[str, Any] | None,
                            gates: FeatureGates) -> None:
    """validateDeletionConfiguration (v1.5+; v1.4 had the TTL rule and a single spec.deletionPolicy)."""
    fn = "validateDeletionConfiguration"
    if not shutdown and ttl > 0:
        out.add(fn, "spec.ttlSecondsAfterFinished",
                f"{_SPEC}a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished")
    if not isinstance(spec.get("deletionStrategy"), Mapping):
        return
    strategy = as_map(spec.get("deletionStrategy"))
    if not gates.ray_job_deletion_policy:
        out.add(fn, "spec.deletionStrategy", "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy",
                "v1.5")
        return
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = as_list(strategy.get("deletionRules"))
    if rules and shutdown:
        out.add(fn, "spec.deletionStrategy.deletionRules",
                f"{_SPEC}spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive",
                "v1.5")
    if rules and legacy:
        out.add(fn, "spec.deletionStrategy",
                f"{_SPEC}Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously", "v1.5")
    if legacy:
        _legacy_deletion(out, strategy, shutdown, selector, cluster)
    elif rules:
        _deletion_rules(out, rules, selector, cluster)
    else:
        out.add(fn, "spec.deletionStrategy",
                f"{_SPEC}DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field "
                "(cannot be empty)", "v1.5")


def _legacy_deletion(out: Out, strategy: Mapping[str, Any], shutdown: bool, selector: Mapping[str, str],
                     cluster: Mapping[str, Any] | None) -> None:
    """validateLegacyDeletionPolicies: KubeRay stops at the first error, so does this."""
    fn = "validateLegacyDeletionPolicies"
    path = "spec.deletionStrategy"
    on_success, on_failure = strategy.get("onSuccess"), strategy.get("onFailure")
    if on_success is None or on_failure is None:
        out.add(fn, path, "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using "
                "the legacy deletion policy fields of DeletionStrategy", "v1.5")
        return
    success, failure = as_str(as_map(on_success).get("policy")), as_str(as_map(on_failure).get("policy"))
    if not success:
        out.add(fn, f"{path}.onSuccess.policy", "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot "
                "be unset when DeletionStrategy is enabled", "v1.5")
        return
    if not failure:
        out.add(fn, f"{path}.onFailure.policy", "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot "
                "be unset when DeletionStrategy is enabled", "v1.5")
        return
    if selector:
        if success in ("DeleteCluster", "DeleteWorkers"):
            out.add(fn, f"{path}.onSuccess.policy",
                    f"the ClusterSelector mode doesn't support DeletionStrategy={success} on success", "v1.5")
            return
        if failure in ("DeleteCluster", "DeleteWorkers"):
            out.add(fn, f"{path}.onFailure.policy",
                    f"the ClusterSelector mode doesn't support DeletionStrategy={failure} on failure", "v1.5")
            return
    if "DeleteWorkers" in (success, failure) and is_autoscaling_enabled(cluster):
        out.add(fn, path, "DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling "
                "enabled", "v1.5")
        return
    if shutdown and "DeleteNone" in (success, failure):
        out.add(fn, path, f"{_SPEC}shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'",
                "v1.5")


def _deletion_rules(out: Out, rules: Sequence[Any], selector: Mapping[str, str],
                    cluster: Mapping[str, Any] | None) -> None:
    """validateDeletionRules (+ validateDeletionCondition, validateTTLConsistency): every error, as KubeRay."""
    fn = "validateDeletionRules"
    by_job_status: dict[str, dict[str, int]] = {}
    by_deployment: dict[str, dict[str, int]] = {}
    for i, raw in enumerate(rules):
        rule = as_map(raw)
        path = f"spec.deletionStrategy.deletionRules[{i}]"
        policy = as_str(rule.get("policy"))
        condition = as_map(rule.get("condition"))
        job_status = condition.get("jobStatus")
        deployment = condition.get("jobDeploymentStatus")
        ttl = as_int(condition.get("ttlSeconds")) or 0
        if job_status is not None and deployment is not None:
            out.add(fn, f"{path}.condition",
                    f"deletionRules[{i}]: cannot set both JobStatus and JobDeploymentStatus at the same time", "v1.5")
            continue
        if job_status is None and deployment is None:
            out.add(fn, f"{path}.condition",
                    f"deletionRules[{i}]: exactly one of JobStatus and JobDeploymentStatus must be set", "v1.5")
            continue
        if ttl < 0:
            out.add(fn, f"{path}.condition.ttlSeconds", f"deletionRules[{i}]: TTLSeconds must be non-negative", "v1.5")
            continue
        if selector and policy in ("DeleteCluster", "DeleteWorkers"):
            out.add(fn, f"{path}.policy",
                    f"deletionRules[{i}]: DeletionPolicyType '{policy}' not supported when ClusterSelector is set",
                    "v1.5")
            continue
        if is_autoscaling_enabled(cluster) and policy == "DeleteWorkers":
            out.add(fn, f"{path}.policy",
                    f"deletionRules[{i}]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled",
                    "v1.5")
            continue
        kind, value, groups = (("JobStatus", str(job_status), by_job_status) if job_status is not None
                               else ("JobDeploymentStatus", str(deployment), by_deployment))
        group = groups.setdefault(value, {})
        if policy in group:
            out.add(fn, path, f"deletionRules[{i}]: duplicate rule for DeletionPolicyType '{policy}' and {kind} "
                    f"'{value}'", "v1.5")
            continue
        group[policy] = ttl
    for kind, groups in (("JobStatus", by_job_status), ("JobDeploymentStatus", by_deployment)):
        for value in sorted(groups):  # Go iterates a map in random order; sorted here, for stable messages
            previous: tuple[str, int] | None = None
            for policy in ("DeleteWorkers", "DeleteCluster", "DeleteSelf"):
                if policy not in groups[value]:
                    continue
                ttl = groups[value][policy]
                if previous is not None and ttl < previous[1]:
                    out.add("validateTTLConsistency", "spec.deletionStrategy.deletionRules",
                            f"for {kind} '{value}': {policy} TTL ({ttl}) must be >= {previous[0]} TTL ({previous[1]})",
                            "v1.5")
                previous = (policy, ttl)
