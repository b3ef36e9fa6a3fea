"""KubeRay's validation of RayJobs and RayClusters (utils/validation.go), with KubeRay's error texts."""

from __future__ import annotations

import re

import yaml

from devcluster.kuberay_standin.model import autoscaling_enabled, autoscaling_v2
from devcluster.kuberay_standin.names import (
    CLUSTER_SELECTOR_KEY,
    INTERACTIVE_MODE,
    MAX_RAYCLUSTER_NAME,
    MAX_RAYJOB_NAME,
    MODEL_13,
    MODEL_17,
    RAY_ORIGINATED_FROM_CRD_LABEL,
    SIDECAR_MODE,
    TEST_REFUSE,
    WAITING,
    Obj,
)
from devcluster.kuberay_standin.wire import annotations_of, labels_of, meta_of

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")


def _dns1035_problem(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not _DNS1035.fullmatch(name):
        return _DNS1035_MESSAGE
    return None


def validate_cluster_spec(spec: Obj, model: str = MODEL_17) -> str | None:
    """utils/validation.go:ValidateRayClusterSpec (the rules the stand-in models), KubeRay's error text."""
    head = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    if not head.get("containers"):
        return "headGroupSpec should have at least one container"
    autoscaling = autoscaling_enabled(spec)
    for group in spec.get("workerGroupSpecs") or []:
        name = group.get("groupName", "")
        if not ((group.get("template") or {}).get("spec") or {}).get("containers"):
            return "workerGroupSpec should have at least one container"
        if model == MODEL_13:
            continue
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            return f"worker group {name} must set both minReplicas and maxReplicas when autoscaling is disabled"
        if low is not None and int(low) < 0:
            return f"worker group {name} has negative minReplicas {low}"
        if high is not None and int(high) < 0:
            return f"worker group {name} has negative maxReplicas {high}"
        if low is not None and high is not None and int(low) > int(high):
            return f"worker group {name} has minReplicas {low} greater than maxReplicas {high}"
    if autoscaling:
        for group in spec.get("workerGroupSpecs") or []:
            if group.get("suspend"):
                if model == MODEL_13:
                    return "suspending worker groups is not currently supported with Autoscaler enabled"
                return f"worker group {group.get('groupName', '')} cannot be suspended with Autoscaler enabled"
        if model == MODEL_17 and autoscaling_v2(spec):  # ValidateRayClusterSpec@v1.7.0, IsAutoscalingV2Enabled
            if head.get("restartPolicy") not in (None, "", "Never"):
                return "restartPolicy for head Pod should be Never or unset when using autoscaler V2"
            for group in spec.get("workerGroupSpecs") or []:
                if ((group.get("template") or {}).get("spec") or {}).get("restartPolicy") not in (None, "", "Never"):
                    return (f"restartPolicy for worker group {group.get('groupName', '')} should be Never or unset "
                            "when using autoscaler V2")
    return None


def validate_cluster_upgrade_options(cluster: Obj) -> str | None:
    """utils/validation.go:ValidateRayClusterUpgradeOptions@v1.7.0: a known upgradeStrategy.type, and none at all on
    a RayCluster a RayJob or RayService created (its `ray.io/originated-from-crd` label, utils.GetCRDType)."""
    kind = ((cluster.get("spec") or {}).get("upgradeStrategy") or {}).get("type")
    if kind is None:
        return None
    if kind not in ("Recreate", "None"):
        return (f"The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value {kind} is invalid, valid options "
                "are Recreate or None")
    creator = labels_of(cluster).get(RAY_ORIGINATED_FROM_CRD_LABEL)
    if creator in ("RayJob", "RayService"):
        return f"upgradeStrategy cannot be set when RayCluster is created by {creator}"
    return None


def _go_json_kind(value: object) -> str:
    """The JSON kind encoding/json names when it cannot unmarshal a value into a map."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


def runtime_env_problem(text: str) -> str | None:
    """dashboardclient.UnmarshalRuntimeEnvYAML@v1.7.0 (utils.UnmarshalRuntimeEnvYAML@v1.3.2), called by
    ValidateRayJobSpec: the text is decoded by sigs.k8s.io/yaml (YAML to JSON, then encoding/json) into
    RuntimeEnvType, a `map[string]any`, so a list or a scalar is refused as well as text that is not YAML; empty
    text or YAML null is an empty map. The YAML parser's own words are PyYAML's here, not go-yaml's."""
    if not text:
        return None
    head = f"failed to unmarshal RuntimeEnvYAML: {text}: "
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"{head}error converting YAML to JSON: yaml: {exc}"
    if value is None or isinstance(value, dict):
        return None
    return (f"{head}error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {_go_json_kind(value)} "
            "into Go value of type types.RuntimeEnvType")


def validate_cluster_metadata(name: str) -> str | None:
    """utils/validation.go:ValidateRayClusterMetadata@v1.7.0."""
    if len(name) > MAX_RAYCLUSTER_NAME:
        return f"RayCluster name should be no more than {MAX_RAYCLUSTER_NAME} characters"
    problem = _dns1035_problem(name)
    return f"RayCluster name should be a valid DNS1035 label: [{problem}]" if problem else None


def _validate_deletion(spec: Obj) -> str | None:
    """utils/validation.go:validateDeletionConfiguration and its helpers@v1.7.0."""
    shutdown, ttl = bool(spec.get("shutdownAfterJobFinishes")), int(spec.get("ttlSecondsAfterFinished") or 0)
    if not shutdown and ttl > 0:
        return ("The RayJob spec is invalid: a RayJob with shutdownAfterJobFinishes set to false cannot have "
                "TTLSecondsAfterFinished")
    strategy = spec.get("deletionStrategy")
    if strategy is None:
        return None
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = list(strategy.get("deletionRules") or [])
    if rules and shutdown:
        return ("The RayJob spec is invalid: spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules "
                "are mutually exclusive")
    if rules and legacy:
        return ("The RayJob spec is invalid: Cannot use both legacy onSuccess/onFailure fields and deletionRules "
                "simultaneously")
    selector = bool(spec.get("clusterSelector"))
    autoscaling = autoscaling_enabled(spec.get("rayClusterSpec"))
    if legacy:
        on_success, on_failure = strategy.get("onSuccess"), strategy.get("onFailure")
        if on_success is None or on_failure is None:
            return ("both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy "
                    "deletion policy fields of DeletionStrategy")
        policies = (on_success.get("policy"), on_failure.get("policy"))
        if policies[0] is None:
            return ("the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot be unset when DeletionStrategy "
                    "is enabled")
        if policies[1] is None:
            return ("the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset when DeletionStrategy "
                    "is enabled")
        for outcome, policy in zip(("success", "failure"), policies, strict=True):
            if selector and policy in ("DeleteCluster", "DeleteWorkers"):
                return f"the ClusterSelector mode doesn't support DeletionStrategy={policy} on {outcome}"
        if "DeleteWorkers" in policies and autoscaling:
            return "DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"
        if shutdown and "DeleteNone" in policies:
            return ("The RayJob spec is invalid: shutdownAfterJobFinshes is set to 'true' while deletion policy is "
                    "'DeleteNone'")
        return None
    if not rules:
        return ("The RayJob spec is invalid: DeletionStrategy requires either BOTH onSuccess and onFailure, OR the "
                "deletionRules field (cannot be empty)")
    errors: list[str] = []
    seen: dict[tuple[str, str], dict[str, int]] = {}
    for i, rule in enumerate(rules):
        condition = rule.get("condition") or {}
        has_job, has_deploy = "jobStatus" in condition, "jobDeploymentStatus" in condition
        if has_job and has_deploy:
            errors.append(f"deletionRules[{i}]: cannot set both JobStatus and JobDeploymentStatus at the same time")
            continue
        if not has_job and not has_deploy:
            errors.append(f"deletionRules[{i}]: exactly one of JobStatus and JobDeploymentStatus must be set")
            continue
        if int(condition.get("ttlSeconds") or 0) < 0:
            errors.append(f"deletionRules[{i}]: TTLSeconds must be non-negative")
            continue
        policy = str(rule.get("policy"))
        if selector and policy in ("DeleteCluster", "DeleteWorkers"):
            errors.append(f"deletionRules[{i}]: DeletionPolicyType '{policy}' not supported when ClusterSelector is set")
            continue
        if autoscaling and policy == "DeleteWorkers":
            errors.append(f"deletionRules[{i}]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled")
            continue
        kind = "JobStatus" if has_job else "JobDeploymentStatus"
        value = str(condition["jobStatus"] if has_job else condition["jobDeploymentStatus"])
        group = seen.setdefault((kind, value), {})
        if policy in group:
            errors.append(f"deletionRules[{i}]: duplicate rule for DeletionPolicyType '{policy}' and {kind} '{value}'")
            continue
        group[policy] = int(condition.get("ttlSeconds") or 0)
    for (kind, value), ttls in seen.items():  # validateTTLConsistency: Workers <= Cluster <= Self
        previous: tuple[str, int] | None = None
        for policy in ("DeleteWorkers", "DeleteCluster", "DeleteSelf"):
            if policy not in ttls:
                continue
            if previous is not None and ttls[policy] < previous[1]:
                errors.append(f"for {kind} '{value}': {policy} TTL ({ttls[policy]}) must be >= {previous[0]} TTL "
                              f"({previous[1]})")
            previous = (policy, ttls[policy])
    return "\n".join(errors) or None


def job_restart_policy_problem(job: Obj) -> str | None:
    """The kube-apiserver's batch/v1 Job validation of the pod template's restartPolicy, as a modern apiserver words
    it (pkg/apis/batch/validation:validateJobSpec of recent releases; unset is defaulted to Always first): only OnFailure
    and Never. The local 1.20.2 apiserver refuses the same values in older words (NotSupported for Always), so the
    stand-in refuses them itself, in the modern words, before it sends the Job."""
    name = meta_of(job).get("name", "")
    policy = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("restartPolicy") or ""
    path = "spec.template.spec.restartPolicy"
    if policy in ("", "Always"):
        return f'Job.batch "{name}" is invalid: {path}: Required value: valid values: "OnFailure", "Never"'
    if policy not in ("OnFailure", "Never"):
        return (f'Job.batch "{name}" is invalid: {path}: Unsupported value: "{policy}": supported values: '
                '"OnFailure", "Never"')
    return None


def validate_rayjob(rayjob: Obj, model: str = MODEL_17) -> tuple[str, str] | None:
    """rayjob_controller.go:validateRayJob -> (event reason, KubeRay's message), or None when valid.
    `rayjob` carries the CRD defaults (with_crd_defaults)."""
    meta, spec, status = meta_of(rayjob), rayjob.get("spec") or {}, rayjob.get("status") or {}
    if model == MODEL_17:
        name = str(meta.get("name", ""))
        if len(name) > MAX_RAYJOB_NAME:
            return ("InvalidRayJobMetadata",
                    f"The RayJob metadata is invalid: RayJob name should be no more than {MAX_RAYJOB_NAME} characters")
        problem = _dns1035_problem(name)
        if problem:
            return ("InvalidRayJobMetadata",
                    f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: [{problem}]")
    spec_problem = _validate_spec(spec, model)
    if spec_problem:
        return "InvalidRayJobSpec", spec_problem
    refusal = annotations_of(rayjob).get(TEST_REFUSE)
    if refusal:  # TEST ONLY: a rule of KubeRay's that rayqueue does not model, refused as ValidateRayJobSpec refuses
        return "InvalidRayJobSpec", f"The RayJob spec is invalid: {refusal}"
    if status.get("jobDeploymentStatus") == WAITING and spec.get("submissionMode") != INTERACTIVE_MODE:
        prefix = "The RayJob status is invalid" if model == MODEL_17 else "invalid RayJob State"
        return ("InvalidRayJobStatus",
                f"{prefix}: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode")
    return None


def _validate_spec(spec: Obj, model: str) -> str | None:
    new = model == MODEL_17
    prefix = "The RayJob spec is invalid: " if new else ""
    selector = spec.get("clusterSelector") or {}
    mode = spec.get("submissionMode")
    if spec.get("suspend") and not spec.get("shutdownAfterJobFinishes"):
        return f"{prefix}a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"
    if new:
        if int(spec.get("ttlSecondsAfterFinished") or 0) < 0:
            return f"{prefix}TTLSecondsAfterFinished must be a non-negative integer"
        problem = _validate_deletion(spec)
        if problem:
            return problem
    if spec.get("suspend") and selector:
        return f"{prefix}the ClusterSelector mode doesn't support the suspend operation"
    if spec.get("rayClusterSpec") is None and not selector:
        return f"{prefix}one of RayClusterSpec or ClusterSelector must be set"
    if new:
        if selector:
            if not selector.get(CLUSTER_SELECTOR_KEY):
                return "cluster name in ClusterSelector should not be empty"
            if mode == SIDECAR_MODE:
                return "ClusterSelector is not supported in SidecarMode"
            if int(spec.get("backoffLimit") or 0) > 0:
                return f"{prefix}BackoffLimit is incompatible with ClusterSelector mode"
        if mode == INTERACTIVE_MODE and int(spec.get("backoffLimit") or 0) > 0:
            return f"{prefix}BackoffLimit is incompatible with InteractiveMode"
        if mode == SIDECAR_MODE:
            if spec.get("submitterPodTemplate") is not None:
                return "Currently, SidecarMode doesn't support SubmitterPodTemplate"
            if spec.get("submitterConfig") is not None:
                return "Currently, SidecarMode doesn't support SubmitterConfig"
            head = ((spec.get("rayClusterSpec") or {}).get("headGroupSpec") or {}).get("template") or {}
            if (head.get("spec") or {}).get("restartPolicy") not in (None, "", "Never"):
                return "restartPolicy for head Pod should be Never or unset when using SidecarMode"
        if spec.get("rayClusterSpec") is not None:
            problem = validate_cluster_spec(spec["rayClusterSpec"], model)
            if problem:
                return f"{prefix}{problem}"
    problem = runtime_env_problem(str(spec.get("runtimeEnvYAML") or ""))
    if problem:
        return problem
    if spec.get("activeDeadlineSeconds") is not None and int(spec["activeDeadlineSeconds"]) <= 0:
        return f"{prefix}activeDeadlineSeconds must be a positive integer"
    if new and spec.get("preRunningDeadlineSeconds") is not None and int(spec["preRunningDeadlineSeconds"]) <= 0:
        return f"{prefix}preRunningDeadlineSeconds must be a positive integer"
    if int(spec.get("backoffLimit") or 0) < 0:
        return f"{prefix}backoffLimit must be a positive integer"
    if not new and spec.get("deletionPolicy") is not None:
        return "RayJobDeletionPolicy feature gate must be enabled to use the DeletionPolicy feature"
    return None
