"""ValidateRayClusterSpec and its helpers (v1.7.0 utils/validation.go), shared by RayJobs and bare RayClusters.

KubeRay calls ``ValidateRayClusterSpec`` for a bare RayCluster (``raycluster_controller.go`` ``rayClusterReconcile``)
and for a RayJob's ``rayClusterSpec`` (``ValidateRayJobSpec``, which wraps each error in ``The RayJob spec is
invalid: ``). One function serves both: ``base`` is where the cluster spec sits (``spec`` or
``spec.rayClusterSpec``) and ``prefix`` the wrapping (empty for a RayCluster, whose event is "The RayCluster spec
is invalid <ns>/<name>: <error>").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from common.kuberay_rules.base import (
    MAX_INT32,
    RAY_ENABLE_AUTOSCALER_V2,
    FeatureGates,
    Out,
    as_int,
    as_list,
    as_map,
    as_str,
    containers_of,
    env_of,
    is_autoscaler_v2,
    is_autoscaling_enabled,
    restart_policy_of,
    str_map,
)
from common.kuberay_rules.names import label_key_errors, label_value_errors, parse_version, version_less

_RAY_REDIS_ADDRESS: Final = "RAY_REDIS_ADDRESS"
_REDIS_PASSWORD: Final = "REDIS_PASSWORD"
_REDIS_USERNAME: Final = "REDIS_USERNAME"
FT_ANNOTATION: Final = "ray.io/ft-enabled"
_EXTERNAL_STORAGE_NS_ANNOTATION: Final = "ray.io/external-storage-namespace"
_KUBERAY_GEN_AUTOSCALER_START_CMD: Final = "KUBERAY_GEN_AUTOSCALER_START_CMD"
_RAY_GCS_STORAGE: Final = "RAY_gcs_storage"  # utils/constant.go
_RAY_GCS_STORAGE_PATH: Final = "RAY_gcs_storage_path"
_GCS_STORAGE_VOLUME: Final = "gcs-storage"  # GCSStorageVolumeName
_GCS_STORAGE_MOUNT_PATH: Final = "/data/gcs"  # GCSStorageMountPath
ORIGINATED_FROM_CRD_LABEL: Final = "ray.io/originated-from-crd"  # RayOriginatedFromCRDLabelKey
_UPGRADE_TYPES: Final = ("Recreate", "None")  # rayv1.RayClusterRecreate, rayv1.RayClusterUpgradeNone


def _group_resources(out: Out, prefix: str, group: str, params: Mapping[str, str], resources: Mapping[str, str],
                     path: str) -> None:
    """validateRayGroupResources (v1.5+)."""
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and resources:
        out.add("validateRayGroupResources", f"{path}.resources",
                f"{prefix}resource fields should not be set in both rayStartParams and Resources for {group} group; "
                "please use only one", "v1.5")


def _group_labels(out: Out, prefix: str, group: str, params: Mapping[str, str], labels: Mapping[str, str],
                  path: str) -> None:
    """validateRayGroupLabels (v1.5+): KubeRay joins the label errors into one sentence, and so does this."""
    if "labels" in params:
        out.add("validateRayGroupLabels", f"{path}.rayStartParams[labels]",
                f"{prefix}rayStartParams['labels'] is not supported for {group} group; please use the top-level "
                "Labels field instead", "v1.5")
        return
    errs: list[str] = []
    for key in sorted(labels):  # Go: map order (random); sorted here
        errs.extend(f"invalid label key for {group} group: '{key}', error: {e}" for e in label_key_errors(key))
        errs.extend(f"invalid label value for key '{key}' in {group} group: '{labels[key]}', error: {e}"
                    for e in label_value_errors(labels[key]))
    if errs:
        out.add("validateRayGroupLabels", f"{path}.labels", prefix + "; ".join(errs), "v1.5")


def _autoscaler_v2_env(cluster: Mapping[str, Any], head_env: Mapping[str, str | None]) -> bool:
    return is_autoscaler_v2(cluster) or head_env.get(RAY_ENABLE_AUTOSCALER_V2) in ("1", "true")


def cluster_spec_problems(out: Out, cluster: Mapping[str, Any], annotations: Mapping[str, str], gates: FeatureGates,
                          *, base: str, prefix: str) -> None:
    """ValidateRayClusterSpec: every problem, in KubeRay's order."""
    fn = "ValidateRayClusterSpec"
    head = as_map(cluster.get("headGroupSpec"))
    head_template = as_map(head.get("template"))
    head_containers = containers_of(head_template)
    if not head_containers:
        out.add(fn, f"{base}.headGroupSpec.template.spec.containers",
                f"{prefix}headGroupSpec should have at least one container")
    head_container = as_map(head_containers[0]) if head_containers else {}
    head_env = env_of(head_container)
    head_params = str_map(head.get("rayStartParams"))
    _group_resources(out, prefix, "Head", head_params, str_map(head.get("resources")), f"{base}.headGroupSpec")
    _group_labels(out, prefix, "Head", head_params, str_map(head.get("labels")), f"{base}.headGroupSpec")
    autoscaling = is_autoscaling_enabled(cluster)
    groups = [as_map(g) for g in as_list(cluster.get("workerGroupSpecs"))]
    for i, group in enumerate(groups):
        name = as_str(group.get("groupName"))
        path = f"{base}.workerGroupSpecs[{i}]"
        if not containers_of(as_map(group.get("template"))):
            out.add(fn, f"{path}.template.spec.containers", f"{prefix}workerGroupSpec should have at least one container")
        low = as_int(group.get("minReplicas"))
        high = as_int(group.get("maxReplicas"))
        low = 0 if low is None else low  # the CRD's defaults (see the package docstring)
        high = MAX_INT32 if high is None else high
        if low < 0:
            out.add(fn, f"{path}.minReplicas", f"{prefix}worker group {name} has negative minReplicas {low}", "v1.6")
        if high < 0:
            out.add(fn, f"{path}.maxReplicas", f"{prefix}worker group {name} has negative maxReplicas {high}", "v1.6")
        if low > high:
            out.add(fn, f"{path}.minReplicas",
                    f"{prefix}worker group {name} has minReplicas {low} greater than maxReplicas {high}", "v1.6")
        params = str_map(group.get("rayStartParams"))
        _group_resources(out, prefix, name, params, str_map(group.get("resources")), path)
        _group_labels(out, prefix, name, params, str_map(group.get("labels")), path)
        idle = as_int(group.get("idleTimeoutSeconds"))
        if idle is not None:
            if idle < 0:
                out.add(fn, f"{path}.idleTimeoutSeconds",
                        f"{prefix}worker group {name}: idleTimeoutSeconds must be non-negative, got {idle}", "v1.6")
            elif not _autoscaler_v2_env(cluster, head_env):
                out.add(fn, f"{path}.idleTimeoutSeconds",
                        f"{prefix}worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. "
                        "Please set .spec.autoscalerOptions.version to 'v2' (or set RAY_enable_autoscaler_v2 "
                        "environment variable to 'true' in the head pod if using KubeRay < 1.4.0)", "v1.6")
        _worker_priority(out, prefix, cluster, group, name, head_env, path)
    gcs_ft = cluster.get("gcsFaultToleranceOptions") is not None
    if annotations.get(FT_ANNOTATION) and gcs_ft:
        out.add(fn, f"metadata.annotations[{FT_ANNOTATION}]",
                f"{prefix}{FT_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only "
                "GcsFaultToleranceOptions to configure GCS fault tolerance")
    head_env_path = f"{base}.headGroupSpec.template.spec.containers[0].env"
    ft_enabled = annotations.get(FT_ANNOTATION, "").lower() == "true" or gcs_ft
    if head_containers and not ft_enabled and _RAY_REDIS_ADDRESS in head_env:
        out.add(fn, head_env_path,
                f"{prefix}{_RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but "
                "GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance")
    if gcs_ft:
        if head_params.get("redis-password"):
            out.add(fn, f"{base}.headGroupSpec.rayStartParams[redis-password]",
                    f"{prefix}cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - "
                    "use GcsFaultToleranceOptions.RedisPassword instead")
        if _REDIS_PASSWORD in head_env:
            out.add(fn, head_env_path, f"{prefix}cannot set `REDIS_PASSWORD` env var in head Pod when "
                    "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead")
        if _RAY_REDIS_ADDRESS in head_env:
            out.add(fn, head_env_path, f"{prefix}cannot set `RAY_REDIS_ADDRESS` env var in head Pod when "
                    "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead")
        if annotations.get(_EXTERNAL_STORAGE_NS_ANNOTATION):
            out.add(fn, f"metadata.annotations[{_EXTERNAL_STORAGE_NS_ANNOTATION}]",
                    f"{prefix}cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions "
                    "is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead")
        _gcs_backend(out, prefix, as_map(cluster.get("gcsFaultToleranceOptions")), head_container, head_template,
                     gates, base)
    if head_params.get("redis-username") or _REDIS_USERNAME in head_env:
        out.add(fn, f"{base}.headGroupSpec", f"{prefix}cannot set redis username in rayStartParams or environment "
                "variables - use GcsFaultToleranceOptions.RedisUsername instead")
    suspended = [(i, as_str(g.get("groupName"))) for i, g in enumerate(groups) if g.get("suspend") is True]
    if not gates.ray_job_deletion_policy:
        for i, name in suspended:
            out.add(fn, f"{base}.workerGroupSpecs[{i}].suspend", f"{prefix}worker group {name} can be suspended only "
                    "when the RayJobDeletionPolicy feature gate is enabled")
    v2_env = head_env.get(RAY_ENABLE_AUTOSCALER_V2)
    if not autoscaling and v2_env in ("1", "true"):
        out.add(fn, head_env_path, f"{prefix}environment variable {RAY_ENABLE_AUTOSCALER_V2} cannot be set to "
                f"'{v2_env}' when enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use "
                "autoscaler v2", "v1.5")
    options = as_map(cluster.get("autoscalerOptions"))
    if autoscaling:
        for i, name in suspended:
            out.add(fn, f"{base}.workerGroupSpecs[{i}].suspend",
                    f"{prefix}worker group {name} cannot be suspended with Autoscaler enabled")
        if options.get("version") is not None and RAY_ENABLE_AUTOSCALER_V2 in head_env:
            out.add(fn, f"{base}.autoscalerOptions.version", f"{prefix}both .spec.autoscalerOptions.version and head "
                    f"Pod env var {RAY_ENABLE_AUTOSCALER_V2} are set, please only use the former")
        if is_autoscaler_v2(cluster):
            if restart_policy_of(head_template) not in ("", "Never"):
                out.add(fn, f"{base}.headGroupSpec.template.spec.restartPolicy",
                        f"{prefix}restartPolicy for head Pod should be Never or unset when using autoscaler V2")
            for i, group in enumerate(groups):
                if restart_policy_of(as_map(group.get("template"))) not in ("", "Never"):
                    out.add(fn, f"{base}.workerGroupSpecs[{i}].template.spec.restartPolicy",
                            f"{prefix}restartPolicy for worker group {as_str(group.get('groupName'))} should be Never "
                            "or unset when using autoscaler V2")
    idle = as_int(options.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        out.add(fn, f"{base}.autoscalerOptions.idleTimeoutSeconds",
                f"{prefix}autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}", "v1.6")
    if _KUBERAY_GEN_AUTOSCALER_START_CMD in env_of(options):
        out.add(fn, f"{base}.autoscalerOptions.env", f"{prefix}autoscalerOptions.env must not contain "
                f"{_KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by KubeRay and injected automatically into the "
                "autoscaler container", "v1.7")
    if cluster.get("historyServerOptions") is not None and not gates.ray_cluster_history_server:
        out.add(fn, f"{base}.historyServerOptions", f"{prefix}RayClusterHistoryServer feature gate is not enabled",
                "v1.7")
    _auth(out, prefix, cluster, base)
    if cluster.get("networkPolicy") is not None and not gates.ray_cluster_network_policy:
        out.add(fn, f"{base}.networkPolicy",
                f"{prefix}spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled", "v1.7")
    if cluster.get("tlsOptions") is not None and not gates.ray_cluster_mtls:
        out.add(fn, f"{base}.tlsOptions",
                f"{prefix}spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled", "v1.7")


def _gcs_backend(out: Out, prefix: str, options: Mapping[str, Any], head_container: Mapping[str, Any],
                 head_template: Mapping[str, Any], gates: FeatureGates, base: str) -> None:
    """validateGcsFaultToleranceBackend (v1.7; only reached with gcsFaultToleranceOptions set): the embedded
    RocksDB backend (``backend: rocksdb``, behind the alpha GCSFaultToleranceEmbeddedStorage gate) refuses the
    redis fields and what KubeRay manages for it; the redis backend (the default) refuses ``storage``."""
    fn, path = "validateGcsFaultToleranceBackend", f"{base}.gcsFaultToleranceOptions"
    storage = options.get("storage")
    if as_str(options.get("backend")) != "rocksdb":  # GetGcsFaultToleranceBackend: "" is redis
        if storage is not None:
            out.add(fn, f"{path}.storage", f"{prefix}cannot set GcsFaultToleranceOptions.Storage when backend is "
                    "'redis' - it only applies to the 'rocksdb' backend", "v1.7")
        return
    if not gates.gcs_fault_tolerance_embedded_storage:
        out.add(fn, f"{path}.backend", f"{prefix}the embedded RocksDB GCS fault tolerance backend "
                "(GcsFaultToleranceOptions.Backend: 'rocksdb') requires the GCSFaultToleranceEmbeddedStorage feature "
                "gate to be enabled", "v1.7")
    for key, field_name, present in (
        ("redisAddress", "RedisAddress", bool(as_str(options.get("redisAddress")))),
        ("redisUsername", "RedisUsername", options.get("redisUsername") is not None),
        ("redisPassword", "RedisPassword", options.get("redisPassword") is not None),
        ("externalStorageNamespace", "ExternalStorageNamespace", bool(as_str(options.get("externalStorageNamespace")))),
    ):
        if present:
            out.add(fn, f"{path}.{key}",
                    f"{prefix}cannot set GcsFaultToleranceOptions.{field_name} when backend is 'rocksdb'", "v1.7")
    claim = as_map(storage)
    if as_str(claim.get("claimName")) and (claim.get("size") is not None or claim.get("storageClassName") is not None
                                           or as_list(claim.get("accessModes"))):
        out.add(fn, f"{path}.storage.claimName", f"{prefix}GcsFaultToleranceOptions.Storage.ClaimName is mutually "
                "exclusive with size, storageClassName, and accessModes", "v1.7")
    head_env = env_of(head_container)
    if _RAY_GCS_STORAGE in head_env or _RAY_GCS_STORAGE_PATH in head_env:
        out.add(fn, f"{base}.headGroupSpec.template.spec.containers[0].env", f"{prefix}cannot set "
                f"`{_RAY_GCS_STORAGE}` or `{_RAY_GCS_STORAGE_PATH}` env var in head Pod when the embedded GCS FT "
                "backend is used - these are managed by KubeRay", "v1.7")
    if any(as_str(as_map(m).get("mountPath")) == _GCS_STORAGE_MOUNT_PATH
           or as_str(as_map(m).get("name")) == _GCS_STORAGE_VOLUME for m in as_list(head_container.get("volumeMounts"))):
        out.add(fn, f"{base}.headGroupSpec.template.spec.containers[0].volumeMounts",
                f'{prefix}cannot set a volume mount named "{_GCS_STORAGE_VOLUME}" or mounted at '
                f"{_GCS_STORAGE_MOUNT_PATH} in the head container when the embedded GCS FT backend is used - it is "
                "managed by KubeRay", "v1.7")
    volumes = as_list(as_map(head_template.get("spec")).get("volumes"))
    if any(as_str(as_map(v).get("name")) == _GCS_STORAGE_VOLUME for v in volumes):
        out.add(fn, f"{base}.headGroupSpec.template.spec.volumes",
                f'{prefix}cannot set a volume named "{_GCS_STORAGE_VOLUME}" in the head Pod when the embedded GCS FT '
                "backend is used - it is managed by KubeRay", "v1.7")


def _worker_priority(out: Out, prefix: str, cluster: Mapping[str, Any], group: Mapping[str, Any], name: str,
                     head_env: Mapping[str, str | None], path: str) -> None:
    """validateWorkerGroupPriority (v1.7): a non-zero priority needs Ray >= 2.56.0 and autoscaler v2."""
    priority = as_int(group.get("priority"))
    if not priority:
        return
    fn, where = "validateWorkerGroupPriority", f"{path}.priority"
    text = as_str(cluster.get("rayVersion"))
    if not text:
        out.add(fn, where, f"{prefix}worker group {name}: priority is set, but RayVersion was not specified. Ray "
                "version 2.56.0 or later is required", "v1.7")
        return
    version = parse_version(text)
    if isinstance(version, str):
        out.add(fn, where, f"{prefix}worker group {name}: priority is set, but RayVersion format is invalid: {text}, "
                f"{version}", "v1.7")
        return
    if version_less(version, (2, 56, 0)):
        out.add(fn, where, f"{prefix}worker group {name}: priority is set, but minimum Ray version is 2.56.0, got "
                f"{text}", "v1.7")
        return
    if not _autoscaler_v2_env(cluster, head_env):
        out.add(fn, where, f"{prefix}worker group {name}: priority is set to {priority}, but autoscaler v2 is not "
                "enabled. Priority is only supported with autoscaler v2 enabled", "v1.7")


def _auth(out: Out, prefix: str, cluster: Mapping[str, Any], base: str) -> None:
    """The authOptions part of ValidateRayClusterSpec (v1.6+)."""
    fn, path = "ValidateRayClusterSpec", f"{base}.authOptions"
    auth = as_map(cluster.get("authOptions"))
    k8s_auth = auth.get("enableK8sTokenAuth") is True
    if auth.get("mode") != "token":
        if k8s_auth:
            out.add(fn, path, f"{prefix}authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to "
                    "'token'", "v1.6")
        return
    text = as_str(cluster.get("rayVersion"))
    if not text:
        out.add(fn, f"{base}.rayVersion", f"{prefix}authOptions.mode is 'token' but RayVersion was not specified. Ray "
                "version 2.52.0 or later is required", "v1.6")
        return
    version = parse_version(text)
    if isinstance(version, str):
        out.add(fn, f"{base}.rayVersion",
                f"{prefix}authOptions.mode is 'token' but RayVersion format is invalid: {text}, {version}", "v1.6")
        return
    if version_less(version, (2, 52, 0)):
        out.add(fn, f"{base}.rayVersion",
                f"{prefix}authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {text}", "v1.6")
        return
    if k8s_auth:
        if version_less(version, (2, 55, 0)):
            out.add(fn, f"{base}.rayVersion", f"{prefix}authOptions.enableK8sTokenAuth is enabled but minimum Ray "
                    f"version is 2.55.0, got {text}", "v1.6")
        elif as_str(auth.get("secretName")):
            out.add(fn, f"{path}.secretName",
                    f"{prefix}authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set", "v1.6")


def upgrade_strategy_problems(out: Out, cluster: Mapping[str, Any], labels: Mapping[str, str], *, base: str) -> None:
    """ValidateRayClusterUpgradeOptions (v1.6+), run by the RayCluster controller after ValidateRayClusterSpec.
    Only a set ``upgradeStrategy.type`` counts. ``labels`` are the RayCluster's: KubeRay reads the creator from
    ``ray.io/originated-from-crd`` (``GetCRDType``; anything but RayJob or RayService reads as RayCluster), which
    ``constructRayClusterForRayJob`` sets to RayJob on every RayJob's cluster."""
    fn, path = "ValidateRayClusterUpgradeOptions", f"{base}.upgradeStrategy.type"
    kind = as_map(cluster.get("upgradeStrategy")).get("type")
    if kind is None:
        return
    if kind not in _UPGRADE_TYPES:
        out.add(fn, path, f"The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value {kind} is invalid, valid "
                f"options are {_UPGRADE_TYPES[0]} or {_UPGRADE_TYPES[1]}", "v1.6")
    creator = labels.get(ORIGINATED_FROM_CRD_LABEL)
    if creator in ("RayJob", "RayService"):
        out.add(fn, path, f"upgradeStrategy cannot be set when RayCluster is created by {creator}", "v1.6")
