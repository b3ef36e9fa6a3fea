"""What KubeRay v1.7 refuses about a RayJob: validateRayJob's rules, then what stops its cluster and submitter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from common.kuberay_rules.base import (
    RAY_CLUSTER_SELECTOR_KEY,
    FeatureGates,
    Out,
    Problem,
    as_int,
    as_list,
    as_map,
    as_str,
    containers_of,
    restart_policy_of,
    str_map,
)
from common.kuberay_rules.cluster_spec import (
    ORIGINATED_FROM_CRD_LABEL,
    cluster_spec_problems,
    upgrade_strategy_problems,
)
from common.kuberay_rules.deletion import deletion_configuration_problems
from common.kuberay_rules.managed_by import foreign_manager
from common.kuberay_rules.names import MAX_RAYJOB_NAME_LENGTH, name_problems

YamlDecoder = Callable[[str], object]
"""Decodes the *first* YAML document of a text into plain Python values (None for an empty one), as go-yaml's
``Unmarshal`` reads only the first; raises ``ValueError`` carrying the parser's message (one line: it is shown in a
webhook denial) when the text is not YAML.
``common`` imports only the standard library, so the caller (an adapter) brings the YAML parser."""

_SPEC: Final = "The RayJob spec is invalid: "
_META: Final = "The RayJob metadata is invalid: "
_RUNTIME_ENV_TYPE: Final = "types.RuntimeEnvType"  # utils/types.RuntimeEnvType: map[string]any


def rayjob_problems(obj: Mapping[str, Any], gates: FeatureGates | None = None, *,
                    decode_yaml: YamlDecoder | None = None) -> list[Problem]:
    """Everything KubeRay v1.7 would refuse about this RayJob, in KubeRay's order; empty when KubeRay accepts it.

    First ``validateRayJob`` (ValidateRayJobMetadata, ValidateRayJobSpec, which ends ``ValidationFailed``), then
    what stops the job later although it passed: fields of ``rayClusterSpec`` that the job's RayCluster refuses
    or obeys (``constructRayClusterForRayJob`` copies the spec whole) and a submitter template the batch/v1 Job
    cannot be made from. ``runtimeEnvYAML`` is judged only when ``decode_yaml`` is given. A RayJob managed by
    another controller (``managed_by_foreign_controller``) is skipped by KubeRay before any rule: no problems."""
    spec, meta = as_map(obj.get("spec")), as_map(obj.get("metadata"))
    if foreign_manager(spec) is not None:
        return []
    out = Out()
    name_problems(out, meta, "RayJob", MAX_RAYJOB_NAME_LENGTH, _META)  # the `_META` prefix since v1.5
    _spec(out, spec, str_map(meta.get("annotations")), gates or FeatureGates(), decode_yaml)
    cluster = spec.get("rayClusterSpec")
    if isinstance(cluster, Mapping) and not str_map(spec.get("clusterSelector")):
        _copied_into_cluster(out, cluster, str_map(meta.get("labels")))
    _submitter(out, spec)
    return out.problems


def _spec(out: Out, spec: Mapping[str, Any], annotations: Mapping[str, str], gates: FeatureGates,
          decode_yaml: YamlDecoder | None) -> None:
    """ValidateRayJobSpec."""
    fn = "ValidateRayJobSpec"
    suspend = spec.get("suspend") is True
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    ttl = as_int(spec.get("ttlSecondsAfterFinished")) or 0
    mode = as_str(spec.get("submissionMode")) or "K8sJobMode"
    backoff = as_int(spec.get("backoffLimit"))
    selector = str_map(spec.get("clusterSelector"))
    cluster = spec.get("rayClusterSpec") if isinstance(spec.get("rayClusterSpec"), Mapping) else None
    if suspend and not shutdown:
        out.add(fn, "spec.suspend",
                f"{_SPEC}a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended")
    if ttl < 0:
        out.add(fn, "spec.ttlSecondsAfterFinished", f"{_SPEC}TTLSecondsAfterFinished must be a non-negative integer")
    deletion_configuration_problems(out, spec, shutdown, ttl, selector, cluster, gates)
    if suspend and selector:
        out.add(fn, "spec.suspend", f"{_SPEC}the ClusterSelector mode doesn't support the suspend operation")
    if cluster is None and not selector:
        out.add(fn, "spec.rayClusterSpec", f"{_SPEC}one of RayClusterSpec or ClusterSelector must be set")
    if selector:
        if not selector.get(RAY_CLUSTER_SELECTOR_KEY):
            out.add(fn, f"spec.clusterSelector[{RAY_CLUSTER_SELECTOR_KEY}]",
                    "cluster name in ClusterSelector should not be empty", "v1.5")
        if mode == "SidecarMode":
            out.add(fn, "spec.submissionMode", "ClusterSelector is not supported in SidecarMode", "v1.5")
        if backoff is not None and backoff > 0:
            out.add(fn, "spec.backoffLimit", f"{_SPEC}BackoffLimit is incompatible with ClusterSelector mode", "v1.6")
    if mode == "InteractiveMode" and backoff is not None and backoff > 0:
        out.add(fn, "spec.backoffLimit", f"{_SPEC}BackoffLimit is incompatible with InteractiveMode")
    if mode == "SidecarMode" and not selector:
        if spec.get("submitterPodTemplate") is not None:
            out.add(fn, "spec.submitterPodTemplate", "Currently, SidecarMode doesn't support SubmitterPodTemplate",
                    "v1.5")
        if spec.get("submitterConfig") is not None:
            out.add(fn, "spec.submitterConfig", "Currently, SidecarMode doesn't support SubmitterConfig", "v1.5")
        head_template = as_map(as_map(as_map(cluster).get("headGroupSpec")).get("template"))
        if restart_policy_of(head_template) not in ("", "Never"):
            out.add(fn, "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                    "restartPolicy for head Pod should be Never or unset when using SidecarMode", "v1.5")
    if cluster is not None:
        if as_map(cluster.get("authOptions")).get("enableK8sTokenAuth") is True:
            out.add(fn, "spec.rayClusterSpec.authOptions.enableK8sTokenAuth",
                    f"{_SPEC}K8s token auth mode is currently not supported for RayJob", "v1.6")
        cluster_spec_problems(out, cluster, annotations, gates, base="spec.rayClusterSpec", prefix=_SPEC)
    if decode_yaml is not None:
        _runtime_env(out, spec.get("runtimeEnvYAML"), decode_yaml)
    active = as_int(spec.get("activeDeadlineSeconds"))
    if active is not None and active <= 0:
        out.add(fn, "spec.activeDeadlineSeconds", f"{_SPEC}activeDeadlineSeconds must be a positive integer")
    pre_running = as_int(spec.get("preRunningDeadlineSeconds"))
    if pre_running is not None and pre_running <= 0:
        out.add(fn, "spec.preRunningDeadlineSeconds", f"{_SPEC}preRunningDeadlineSeconds must be a positive integer",
                "v1.6")
    if backoff is not None and backoff < 0:
        out.add(fn, "spec.backoffLimit", f"{_SPEC}backoffLimit must be a positive integer")


def _go_json_kind(value: object) -> str:
    """The JSON kind encoding/json names in an UnmarshalTypeError (go-yaml keeps timestamps as strings)."""
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int | float) else "string"


def _runtime_env(out: Out, text: object, decode_yaml: YamlDecoder) -> None:
    """dashboardclient.UnmarshalRuntimeEnvYAML (v1.4+), called by ValidateRayJobSpec: the text must decode into
    ``map[string]any`` through sigs.k8s.io/yaml v1.6.0 (YAML to JSON, then encoding/json), so a list or a scalar
    is refused as well as text that is not YAML. Empty text, or YAML ``null``, decodes to an empty map.
    The message is KubeRay's wrapping (``failed to unmarshal RuntimeEnvYAML: <text>: ...``) around sigs.k8s.io/yaml's
    and encoding/json's words; for text that is not YAML, the YAML parser's own words follow ``yaml: `` (the
    caller's parser, worded unlike go-yaml)."""
    if not isinstance(text, str) or not text:
        return
    fn, path, head = "ValidateRayJobSpec", "spec.runtimeEnvYAML", f"failed to unmarshal RuntimeEnvYAML: {text}: "
    try:
        value = decode_yaml(text)
    except ValueError as exc:
        out.add(fn, path, f"{head}error converting YAML to JSON: yaml: {exc}")
        return
    if value is not None and not isinstance(value, Mapping):
        out.add(fn, path, f"{head}error unmarshaling JSON: while decoding JSON: json: cannot unmarshal "
                f"{_go_json_kind(value)} into Go value of type {_RUNTIME_ENV_TYPE}")


def _copied_into_cluster(out: Out, cluster: Mapping[str, Any], job_labels: Mapping[str, str]) -> None:
    """constructRayClusterForRayJob copies ``rayClusterSpec`` whole into the job's RayCluster (with the job's
    labels and ``ray.io/originated-from-crd: RayJob``). ValidateRayJobSpec accepts these fields, but the
    RayCluster controller (``rayClusterReconcile``) then skips, refuses or empties the cluster, and the job waits
    for a cluster that never becomes ready."""
    base = "spec.rayClusterSpec"
    manager = foreign_manager(cluster)
    if manager is not None:
        out.add("ManagedByExternalController", f"{base}.managedBy",
                f"the job's RayCluster is created with managedBy {manager!r} (constructRayClusterForRayJob copies "
                "rayClusterSpec into it), and KubeRay skips a RayCluster managed by another controller (\"Skipping "
                "RayCluster managed by a custom controller\"): it never gets pods, and the job never starts")
    if cluster.get("suspend") is True:
        out.add("reconcilePods", f"{base}.suspend",
                "the job's RayCluster is created suspended (constructRayClusterForRayJob copies rayClusterSpec into "
                "it), and KubeRay deletes a suspended RayCluster's pods and creates none (\"Deleted Pods for RayCluster "
                "... due to suspension\"): the job never starts; suspend the RayJob itself (spec.suspend) instead")
    upgrade_strategy_problems(out, cluster, {**job_labels, ORIGINATED_FROM_CRD_LABEL: "RayJob"}, base=base)


def _submitter(out: Out, spec: Mapping[str, Any]) -> None:
    """The K8sJobMode submitter: once the cluster is ready, ``createK8sJobIfNeed`` builds the batch/v1 Job from
    ``submitterPodTemplate`` as it is (``common.GetSubmitterTemplate`` deep-copies it; only KubeRay's default
    template sets ``restartPolicy: Never``) and sets the submitter up in its first container."""
    template = spec.get("submitterPodTemplate")
    mode = as_str(spec.get("submissionMode")) or "K8sJobMode"
    if mode != "K8sJobMode" or not isinstance(template, Mapping):
        return
    path = "spec.submitterPodTemplate.spec"
    if not as_list(containers_of(template)):
        out.add("getSubmitterTemplate", f"{path}.containers",
                "the submitter template has no container, and KubeRay configures the submitter in its first one "
                "(configureSubmitterContainer on Containers[0]): every reconcile fails with \"runtime error: index out "
                "of range [0] with length 0\" while the job's cluster runs")
    policy = restart_policy_of(template)
    if policy in ("", "Always"):  # the API server defaults an unset restartPolicy to Always
        refusal = 'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"'
    elif policy not in ("OnFailure", "Never"):
        refusal = f'spec.template.spec.restartPolicy: Unsupported value: "{policy}": supported values: "OnFailure", "Never"'
    else:
        return
    out.add("createNewK8sJob", f"{path}.restartPolicy",
            "KubeRay creates the submitter batch/v1 Job from this template as it is, and the API server refuses it "
            f"on every reconcile (\"Failed to create new Kubernetes Job\": {refusal}) while the job's cluster runs; "
            "set restartPolicy: Never (KubeRay's default submitter's) or OnFailure")
