"""KubeRay's own RayJob validation, pure: what the KubeRay operator would refuse after admission, in its words.

KubeRay checks a RayJob on every reconcile (``rayjob_controller.go`` ``validateRayJob``: ``ValidateRayJobMetadata``,
then ``ValidateRayJobSpec``, which calls ``ValidateRayClusterSpec``) and, on the first error, sets the job to
``JobDeploymentStatus: ValidationFailed`` and stops. A job rayqueue had admitted then holds its quota forever, so
the webhook refuses these jobs at ``kubectl create`` instead (``webhook/policy.py``). This module models
``ray-operator/controllers/ray/utils/validation.go`` of KubeRay **v1.7.0** (with ``utils/constant.go``,
``utils/util.go`` and ``apis/ray/v1``); it was read, not copied.

Differences from KubeRay, on purpose:

* KubeRay returns the first error; ``rayjob_problems`` returns **every** problem it can judge, in KubeRay's
  order (the first one listed is the one KubeRay would report), each with a field path. The ``message`` is
  KubeRay's sentence, exactly, so what ``kubectl`` shows is what ``kubectl describe rayjob`` would have shown.
* Fields KubeRay's CRD defaults are read with those defaults (``minReplicas`` 0, ``maxReplicas`` 2147483647,
  ``backoffLimit`` 0, ``submissionMode`` K8sJobMode, ``ttlSecondsAfterFinished`` 0): the apiserver applies
  them before any admission webhook sees the object. Hence "worker group X must set both minReplicas and
  maxReplicas when autoscaling is disabled" (v1.6+) cannot happen with KubeRay's CRD and is not checked.
* Not checked (they need more than the spec, or a parser ``common`` does not have):
  ``runtimeEnvYAML`` (KubeRay only checks that it is YAML; a bad one is refused by KubeRay with the YAML
  library's message), ``ValidateRayJobStatus`` (status, not spec), the GCS fault-tolerance *backend* rules
  (``validateGcsFaultToleranceBackend``: embedded RocksDB storage), the history-server collector options,
  ``validateNetworkPolicy`` and ``validateTLSOptions`` (all behind alpha gates, off by default in v1.7; with
  the gate off, setting the block at all is refused, which *is* checked).

Feature gates are modelled as KubeRay does (``pkg/features/features.go``), with their **v1.7 defaults**
(``FeatureGates()``): ``RayJobDeletionPolicy`` is beta and on since v1.6 (alpha and off in v1.3 to v1.5);
``RayClusterNetworkPolicy``, ``RayClusterMTLS``, ``RayClusterHistoryServer`` are alpha and off. An operator
who runs KubeRay with other gates passes them in.

Which KubeRay versions refuse what (checked against the v1.4.0, v1.5.0, v1.6.0 and v1.7.0 tags; every
``Problem`` carries ``since``). v1.4 words some sentences without the ``The RayJob spec is invalid:`` prefix
and has ``spec.deletionPolicy`` instead of ``spec.deletionStrategy``; the rules are otherwise the same:

* v1.4+: name > 47 characters or not DNS-1035; ``suspend`` without ``shutdownAfterJobFinishes``; negative
  TTL; TTL without shutdown; ``suspend`` with ``clusterSelector``; neither ``rayClusterSpec`` nor
  ``clusterSelector``; ``backoffLimit > 0`` in InteractiveMode; ``activeDeadlineSeconds <= 0``;
  ``backoffLimit < 0``; head/worker without containers; the GCS fault-tolerance and redis rules; worker
  ``suspend`` (needs the RayJobDeletionPolicy gate, never with the autoscaler); autoscaler v2 restartPolicy.
* v1.5+: ``deletionStrategy`` (legacy ``onSuccess``/``onFailure`` and ``deletionRules``; ``deletionRules``
  and ``shutdownAfterJobFinishes`` are mutually exclusive); the ``clusterSelector`` rules (empty cluster
  name, SidecarMode); the SidecarMode rules (no submitter template, no submitterConfig, head restartPolicy);
  ``rayStartParams`` vs group ``resources``/``labels``; autoscaler v2 env without in-tree autoscaling.
* v1.6+: ``minReplicas``/``maxReplicas`` negative or ``minReplicas > maxReplicas``; ``backoffLimit > 0``
  with ``clusterSelector``; ``preRunningDeadlineSeconds <= 0``; ``idleTimeoutSeconds``; ``authOptions``.
* v1.7: worker group ``priority``; ``KUBERAY_GEN_AUTOSCALER_START_CMD``; ``historyServerOptions``,
  ``networkPolicy``, ``tlsOptions`` behind their gates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "MAX_RAYJOB_NAME_LENGTH",
    "RAY_CLUSTER_SELECTOR_KEY",
    "FeatureGates",
    "Problem",
    "dns1035_label_errors",
    "generated_name_sample",
    "is_autoscaling_enabled",
    "rayjob_problems",
]

MAX_RAYCLUSTER_NAME_LENGTH: Final = 53  # utils/constant.go MaxRayClusterNameLength
MAX_RAYJOB_NAME_LENGTH: Final = MAX_RAYCLUSTER_NAME_LENGTH - 6  # MaxRayJobNameLength = 47
RAY_CLUSTER_SELECTOR_KEY: Final = "ray.io/cluster"  # RayJobClusterSelectorKey
MAX_INT32: Final = 2**31 - 1
GENERATE_NAME_MAX_PREFIX: Final = 58  # apiserver names.SimpleNameGenerator: base[:58] + 5 random characters

_SPEC: Final = "The RayJob spec is invalid: "
_META: Final = "The RayJob metadata is invalid: "
_RAY_ENABLE_AUTOSCALER_V2: Final = "RAY_enable_autoscaler_v2"
_RAY_REDIS_ADDRESS: Final = "RAY_REDIS_ADDRESS"
_REDIS_PASSWORD: Final = "REDIS_PASSWORD"
_REDIS_USERNAME: Final = "REDIS_USERNAME"
_FT_ANNOTATION: Final = "ray.io/ft-enabled"
_EXTERNAL_STORAGE_NS_ANNOTATION: Final = "ray.io/external-storage-namespace"
_KUBERAY_GEN_AUTOSCALER_START_CMD: Final = "KUBERAY_GEN_AUTOSCALER_START_CMD"

# k8s.io/apimachinery v0.36.0 (the version KubeRay v1.7.0 builds with): util/validation and validate/content.
_DNS1035_FMT: Final = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_MSG: Final = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                       "alphabetic character, and end with an alphanumeric character")
_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG: Final = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                                 "'-' or '.', and must start and end with an alphanumeric character")
_LABEL_KEY_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_MSG: Final = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                         "alphanumeric character")
_LABEL_VALUE_FMT: Final = "(" + _LABEL_KEY_FMT + ")?"
_LABEL_VALUE_MSG: Final = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                           "'.', and must start and end with an alphanumeric character")


@dataclass(frozen=True, slots=True)
class FeatureGates:
    """KubeRay's feature gates that change validation, at their v1.7.0 defaults (``--feature-gates``)."""

    ray_job_deletion_policy: bool = True  # RayJobDeletionPolicy: beta since v1.6 (default off before)
    ray_cluster_network_policy: bool = False  # RayClusterNetworkPolicy: alpha, v1.7
    ray_cluster_mtls: bool = False  # RayClusterMTLS: alpha, v1.7
    ray_cluster_history_server: bool = False  # RayClusterHistoryServer: alpha, v1.7


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
class _Out:
    problems: list[Problem] = field(default_factory=list)

    def add(self, function: str, path: str, message: str, since: str = "v1.4") -> None:
        self.problems.append(Problem(function, path, message, since))


# --- reading the wire (the CRD's schema is the apiserver's business: a wrong type reads as absent) --------
def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _map(value).items() if isinstance(v, str | int | float)}


def _env(container: Mapping[str, Any]) -> dict[str, str | None]:
    """name -> literal value (None for valueFrom or no value), first entry wins as EnvVarByName's loop does."""
    out: dict[str, str | None] = {}
    for entry in _list(container.get("env")):
        entry = _map(entry)
        name = _str(entry.get("name"))
        if name and name not in out:
            value = entry.get("value")
            out[name] = value if isinstance(value, str) else None
    return out


def _containers(template: Mapping[str, Any]) -> Sequence[Any]:
    return _list(_map(template.get("spec")).get("containers"))


def _restart_policy(template: Mapping[str, Any]) -> str:
    return _str(_map(template.get("spec")).get("restartPolicy"))


def is_autoscaling_enabled(cluster: Mapping[str, Any] | None) -> bool:
    """utils.IsAutoscalingEnabled: ``enableInTreeAutoscaling: true``."""
    return cluster is not None and cluster.get("enableInTreeAutoscaling") is True


def _autoscaler_v2(cluster: Mapping[str, Any]) -> bool:
    """utils.IsAutoscalingV2Enabled: ``autoscalerOptions.version: v2``."""
    return _map(cluster.get("autoscalerOptions")).get("version") == "v2"


# --- apimachinery string checks ------------------------------------------------------------------------
def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, byte for byte (note its double space before `or`)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{example}', "
    return msg + f"regex used for validation is '{fmt}')"


def dns1035_label_errors(value: str) -> list[str]:
    """validation.IsDNS1035Label."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_FMT, value):
        errs.append(_regex_error(_DNS1035_MSG, _DNS1035_FMT, "my-name", "abc-123"))
    return errs


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 bytes")
    if not re.fullmatch(_DNS1123_SUBDOMAIN_FMT, value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def _label_key_errors(value: str) -> list[str]:
    """content.IsLabelKey (validation.IsQualifiedName)."""
    errs: list[str] = []
    parts = value.split("/")
    key_error = _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in _dns1123_subdomain_errors(prefix))
    else:
        return [f"a valid label key {key_error} with an optional DNS subdomain prefix and '/' "
                "(e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_KEY_FMT, name):
        errs.append("name part " + key_error)
    return errs


def _label_value_errors(value: str) -> list[str]:
    """content.IsLabelValue."""
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_VALUE_FMT, value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _go_list(items: Sequence[str]) -> str:
    """Go's %v of a []string."""
    return "[" + " ".join(items) + "]"


def _parse_version(text: str) -> tuple[int, ...] | str:
    """version.ParseGeneric: the components, or Go's error text."""
    m = re.match(r"^\s*v?([0-9]+(?:\.[0-9]+)*)(.*)$", text, re.DOTALL)
    if m is None:
        return f"could not parse {_go_quote(text)} as version"
    components = m.group(1).split(".")
    if len(components) < 2:
        return f"illegal version string {_go_quote(text)}"
    if components[0].startswith("0") and components[0] != "0":
        return f"illegal zero-prefixed version component {_go_quote(components[0])} in {_go_quote(text)}"
    return tuple(int(c) for c in components)


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _version_less(have: tuple[int, ...], need: tuple[int, ...]) -> bool:
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


# --- the rules -----------------------------------------------------------------------------------------
def generated_name_sample(meta: Mapping[str, Any]) -> str:
    """The name KubeRay will see: ``metadata.name``, or for a generateName object the shape the apiserver
    gives it (the prefix cut to 58 characters plus 5 lowercase alphanumerics; ``x`` stands for them)."""
    name = _str(meta.get("name"))
    if name:
        return name
    prefix = _str(meta.get("generateName"))
    return prefix[:GENERATE_NAME_MAX_PREFIX] + "xxxxx" if prefix else ""


def _metadata(out: _Out, meta: Mapping[str, Any]) -> None:
    """ValidateRayJobMetadata (v1.4+; the `The RayJob metadata is invalid:` prefix since v1.5)."""
    name = generated_name_sample(meta)
    path = "metadata.name" if _str(meta.get("name")) else "metadata.generateName"
    if len(name) > MAX_RAYJOB_NAME_LENGTH:
        out.add("ValidateRayJobMetadata", path,
                f"{_META}RayJob name should be no more than {MAX_RAYJOB_NAME_LENGTH} characters")
    errs = dns1035_label_errors(name)
    if errs:
        out.add("ValidateRayJobMetadata", path,
                f"{_META}RayJob name should be a valid DNS1035 label: {_go_list(errs)}")


def rayjob_problems(obj: Mapping[str, Any], gates: FeatureGates | None = None) -> list[Problem]:
    """Everything KubeRay v1.7 would refuse about this RayJob (ValidateRayJobMetadata + ValidateRayJobSpec),
    in KubeRay's order; empty when KubeRay accepts it."""
    gates = gates or FeatureGates()
    out = _Out()
    meta = _map(obj.get("metadata"))
    spec = _map(obj.get("spec"))
    _metadata(out, meta)
    _spec(out, spec, _str_map(meta.get("annotations")), gates)
    return out.problems


def _spec(out: _Out, spec: Mapping[str, Any], annotations: Mapping[str, str], gates: FeatureGates) -> None:
    """ValidateRayJobSpec."""
    fn = "ValidateRayJobSpec"
    suspend = spec.get("suspend") is True
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    ttl = _int(spec.get("ttlSecondsAfterFinished")) or 0
    mode = _str(spec.get("submissionMode")) or "K8sJobMode"
    backoff = _int(spec.get("backoffLimit"))
    selector = _str_map(spec.get("clusterSelector"))
    cluster = spec.get("rayClusterSpec") if isinstance(spec.get("rayClusterSpec"), Mapping) else None
    if suspend and not shutdown:
        out.add(fn, "spec.suspend",
                f"{_SPEC}a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended")
    if ttl < 0:
        out.add(fn, "spec.ttlSecondsAfterFinished", f"{_SPEC}TTLSecondsAfterFinished must be a non-negative integer")
    _deletion_configuration(out, spec, shutdown, ttl, selector, cluster, gates)
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
        head_template = _map(_map(_map(cluster).get("headGroupSpec")).get("template"))
        if _restart_policy(head_template) not in ("", "Never"):
            out.add(fn, "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                    "restartPolicy for head Pod should be Never or unset when using SidecarMode", "v1.5")
    if cluster is not None:
        if _map(cluster.get("authOptions")).get("enableK8sTokenAuth") is True:
            out.add(fn, "spec.rayClusterSpec.authOptions.enableK8sTokenAuth",
                    f"{_SPEC}K8s token auth mode is currently not supported for RayJob", "v1.6")
        _cluster_spec(out, cluster, annotations, gates)
    active = _int(spec.get("activeDeadlineSeconds"))
    if active is not None and active <= 0:
        out.add(fn, "spec.activeDeadlineSeconds", f"{_SPEC}activeDeadlineSeconds must be a positive integer")
    pre_running = _int(spec.get("preRunningDeadlineSeconds"))
    if pre_running is not None and pre_running <= 0:
        out.add(fn, "spec.preRunningDeadlineSeconds", f"{_SPEC}preRunningDeadlineSeconds must be a positive integer",
                "v1.6")
    if backoff is not None and backoff < 0:
        out.add(fn, "spec.backoffLimit", f"{_SPEC}backoffLimit must be a positive integer")


def _deletion_configuration(out: _Out, spec: Mapping[str, Any], shutdown: bool, ttl: int,
                            selector: Mapping[str, str], cluster: Mapping[str, Any] | None,
                            gates: FeatureGates) -> None:
    """validateDeletionConfiguration (v1.5+; v1.4 had the TTL rule and a single spec.deletionPolicy)."""
    fn = "validateDeletionConfiguration"
    if not shutdown and ttl > 0:
        out.add(fn, "spec.ttlSecondsAfterFinished",
                f"{_SPEC}a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished")
    if not isinstance(spec.get("deletionStrategy"), Mapping):
        return
    strategy = _map(spec.get("deletionStrategy"))
    if not gates.ray_job_deletion_policy:
        out.add(fn, "spec.deletionStrategy", "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy",
                "v1.5")
        return
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = _list(strategy.get("deletionRules"))
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


def _legacy_deletion(out: _Out, strategy: Mapping[str, Any], shutdown: bool, selector: Mapping[str, str],
                     cluster: Mapping[str, Any] | None) -> None:
    """validateLegacyDeletionPolicies: KubeRay stops at the first error, so does this."""
    fn = "validateLegacyDeletionPolicies"
    path = "spec.deletionStrategy"
    on_success, on_failure = strategy.get("onSuccess"), strategy.get("onFailure")
    if on_success is None or on_failure is None:
        out.add(fn, path, "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using "
                "the legacy deletion policy fields of DeletionStrategy", "v1.5")
        return
    success, failure = _str(_map(on_success).get("policy")), _str(_map(on_failure).get("policy"))
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


def _deletion_rules(out: _Out, rules: Sequence[Any], selector: Mapping[str, str],
                    cluster: Mapping[str, Any] | None) -> None:
    """validateDeletionRules (+ validateDeletionCondition, validateTTLConsistency): every error, as KubeRay."""
    fn = "validateDeletionRules"
    by_job_status: dict[str, dict[str, int]] = {}
    by_deployment: dict[str, dict[str, int]] = {}
    for i, raw in enumerate(rules):
        rule = _map(raw)
        path = f"spec.deletionStrategy.deletionRules[{i}]"
        policy = _str(rule.get("policy"))
        condition = _map(rule.get("condition"))
        job_status = condition.get("jobStatus")
        deployment = condition.get("jobDeploymentStatus")
        ttl = _int(condition.get("ttlSeconds")) or 0
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


def _group_resources(out: _Out, group: str, params: Mapping[str, str], resources: Mapping[str, str],
                     path: str) -> None:
    """validateRayGroupResources (v1.5+)."""
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and resources:
        out.add("validateRayGroupResources", f"{path}.resources",
                f"{_SPEC}resource fields should not be set in both rayStartParams and Resources for {group} group; "
                "please use only one", "v1.5")


def _group_labels(out: _Out, group: str, params: Mapping[str, str], labels: Mapping[str, str], path: str) -> None:
    """validateRayGroupLabels (v1.5+): KubeRay joins the label errors into one sentence, and so does this."""
    if "labels" in params:
        out.add("validateRayGroupLabels", f"{path}.rayStartParams[labels]",
                f"{_SPEC}rayStartParams['labels'] is not supported for {group} group; please use the top-level "
                "Labels field instead", "v1.5")
        return
    errs: list[str] = []
    for key in sorted(labels):  # Go: map order (random); sorted here
        errs.extend(f"invalid label key for {group} group: '{key}', error: {e}" for e in _label_key_errors(key))
        errs.extend(f"invalid label value for key '{key}' in {group} group: '{labels[key]}', error: {e}"
                    for e in _label_value_errors(labels[key]))
    if errs:
        out.add("validateRayGroupLabels", f"{path}.labels", _SPEC + "; ".join(errs), "v1.5")


def _autoscaler_v2_env(cluster: Mapping[str, Any], head_env: Mapping[str, str | None]) -> bool:
    return _autoscaler_v2(cluster) or head_env.get(_RAY_ENABLE_AUTOSCALER_V2) in ("1", "true")


def _cluster_spec(out: _Out, cluster: Mapping[str, Any], annotations: Mapping[str, str], gates: FeatureGates) -> None:
    """ValidateRayClusterSpec, as the RayJob reports it (`The RayJob spec is invalid: ` + KubeRay's sentence)."""
    fn = "ValidateRayClusterSpec"
    base = "spec.rayClusterSpec"
    head = _map(cluster.get("headGroupSpec"))
    head_template = _map(head.get("template"))
    head_containers = _containers(head_template)
    if not head_containers:
        out.add(fn, f"{base}.headGroupSpec.template.spec.containers",
                f"{_SPEC}headGroupSpec should have at least one container")
    head_env = _env(_map(head_containers[0])) if head_containers else {}
    head_params = _str_map(head.get("rayStartParams"))
    _group_resources(out, "Head", head_params, _str_map(head.get("resources")), f"{base}.headGroupSpec")
    _group_labels(out, "Head", head_params, _str_map(head.get("labels")), f"{base}.headGroupSpec")
    autoscaling = is_autoscaling_enabled(cluster)
    groups = [_map(g) for g in _list(cluster.get("workerGroupSpecs"))]
    for i, group in enumerate(groups):
        name = _str(group.get("groupName"))
        path = f"{base}.workerGroupSpecs[{i}]"
        if not _containers(_map(group.get("template"))):
            out.add(fn, f"{path}.template.spec.containers", f"{_SPEC}workerGroupSpec should have at least one container")
        low = _int(group.get("minReplicas"))
        high = _int(group.get("maxReplicas"))
        low = 0 if low is None else low  # the CRD's defaults (see the module docstring)
        high = MAX_INT32 if high is None else high
        if low < 0:
            out.add(fn, f"{path}.minReplicas", f"{_SPEC}worker group {name} has negative minReplicas {low}", "v1.6")
        if high < 0:
            out.add(fn, f"{path}.maxReplicas", f"{_SPEC}worker group {name} has negative maxReplicas {high}", "v1.6")
        if low > high:
            out.add(fn, f"{path}.minReplicas",
                    f"{_SPEC}worker group {name} has minReplicas {low} greater than maxReplicas {high}", "v1.6")
        params = _str_map(group.get("rayStartParams"))
        _group_resources(out, name, params, _str_map(group.get("resources")), path)
        _group_labels(out, name, params, _str_map(group.get("labels")), path)
        idle = _int(group.get("idleTimeoutSeconds"))
        if idle is not None:
            if idle < 0:
                out.add(fn, f"{path}.idleTimeoutSeconds",
                        f"{_SPEC}worker group {name}: idleTimeoutSeconds must be non-negative, got {idle}", "v1.6")
            elif not _autoscaler_v2_env(cluster, head_env):
                out.add(fn, f"{path}.idleTimeoutSeconds",
                        f"{_SPEC}worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. "
                        "Please set .spec.autoscalerOptions.version to 'v2' (or set RAY_enable_autoscaler_v2 "
                        "environment variable to 'true' in the head pod if using KubeRay < 1.4.0)", "v1.6")
        _worker_priority(out, cluster, group, name, head_env, path)
    gcs_ft = cluster.get("gcsFaultToleranceOptions") is not None
    if annotations.get(_FT_ANNOTATION) and gcs_ft:
        out.add(fn, f"metadata.annotations[{_FT_ANNOTATION}]",
                f"{_SPEC}{_FT_ANNOTATION} annotation and GcsFaultToleranceOptions are both set. Please use only "
                "GcsFaultToleranceOptions to configure GCS fault tolerance")
    head_env_path = f"{base}.headGroupSpec.template.spec.containers[0].env"
    ft_enabled = annotations.get(_FT_ANNOTATION, "").lower() == "true" or gcs_ft
    if head_containers and not ft_enabled and _RAY_REDIS_ADDRESS in head_env:
        out.add(fn, head_env_path,
                f"{_SPEC}{_RAY_REDIS_ADDRESS} is set which implicitly enables GCS fault tolerance, but "
                "GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance")
    if gcs_ft:
        if head_params.get("redis-password"):
            out.add(fn, f"{base}.headGroupSpec.rayStartParams[redis-password]",
                    f"{_SPEC}cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - "
                    "use GcsFaultToleranceOptions.RedisPassword instead")
        if _REDIS_PASSWORD in head_env:
            out.add(fn, head_env_path, f"{_SPEC}cannot set `REDIS_PASSWORD` env var in head Pod when "
                    "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead")
        if _RAY_REDIS_ADDRESS in head_env:
            out.add(fn, head_env_path, f"{_SPEC}cannot set `RAY_REDIS_ADDRESS` env var in head Pod when "
                    "GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead")
        if annotations.get(_EXTERNAL_STORAGE_NS_ANNOTATION):
            out.add(fn, f"metadata.annotations[{_EXTERNAL_STORAGE_NS_ANNOTATION}]",
                    f"{_SPEC}cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions "
                    "is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead")
    if head_params.get("redis-username") or _REDIS_USERNAME in head_env:
        out.add(fn, f"{base}.headGroupSpec", f"{_SPEC}cannot set redis username in rayStartParams or environment "
                "variables - use GcsFaultToleranceOptions.RedisUsername instead")
    suspended = [(i, _str(g.get("groupName"))) for i, g in enumerate(groups) if g.get("suspend") is True]
    if not gates.ray_job_deletion_policy:
        for i, name in suspended:
            out.add(fn, f"{base}.workerGroupSpecs[{i}].suspend", f"{_SPEC}worker group {name} can be suspended only "
                    "when the RayJobDeletionPolicy feature gate is enabled")
    v2_env = head_env.get(_RAY_ENABLE_AUTOSCALER_V2)
    if not autoscaling and v2_env in ("1", "true"):
        out.add(fn, head_env_path, f"{_SPEC}environment variable {_RAY_ENABLE_AUTOSCALER_V2} cannot be set to "
                f"'{v2_env}' when enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use "
                "autoscaler v2", "v1.5")
    options = _map(cluster.get("autoscalerOptions"))
    if autoscaling:
        for i, name in suspended:
            out.add(fn, f"{base}.workerGroupSpecs[{i}].suspend",
                    f"{_SPEC}worker group {name} cannot be suspended with Autoscaler enabled")
        if options.get("version") is not None and _RAY_ENABLE_AUTOSCALER_V2 in head_env:
            out.add(fn, f"{base}.autoscalerOptions.version", f"{_SPEC}both .spec.autoscalerOptions.version and head "
                    f"Pod env var {_RAY_ENABLE_AUTOSCALER_V2} are set, please only use the former")
        if _autoscaler_v2(cluster):
            if _restart_policy(head_template) not in ("", "Never"):
                out.add(fn, f"{base}.headGroupSpec.template.spec.restartPolicy",
                        f"{_SPEC}restartPolicy for head Pod should be Never or unset when using autoscaler V2")
            for i, group in enumerate(groups):
                if _restart_policy(_map(group.get("template"))) not in ("", "Never"):
                    out.add(fn, f"{base}.workerGroupSpecs[{i}].template.spec.restartPolicy",
                            f"{_SPEC}restartPolicy for worker group {_str(group.get('groupName'))} should be Never or "
                            "unset when using autoscaler V2")
    idle = _int(options.get("idleTimeoutSeconds"))
    if idle is not None and idle < 0:
        out.add(fn, f"{base}.autoscalerOptions.idleTimeoutSeconds",
                f"{_SPEC}autoscalerOptions.idleTimeoutSeconds must be non-negative, got {idle}", "v1.6")
    if _KUBERAY_GEN_AUTOSCALER_START_CMD in _env(options):
        out.add(fn, f"{base}.autoscalerOptions.env", f"{_SPEC}autoscalerOptions.env must not contain "
                f"{_KUBERAY_GEN_AUTOSCALER_START_CMD}: it is managed by KubeRay and injected automatically into the "
                "autoscaler container", "v1.7")
    if cluster.get("historyServerOptions") is not None and not gates.ray_cluster_history_server:
        out.add(fn, f"{base}.historyServerOptions", f"{_SPEC}RayClusterHistoryServer feature gate is not enabled", "v1.7")
    _auth(out, cluster, base)
    if cluster.get("networkPolicy") is not None and not gates.ray_cluster_network_policy:
        out.add(fn, f"{base}.networkPolicy",
                f"{_SPEC}spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled", "v1.7")
    if cluster.get("tlsOptions") is not None and not gates.ray_cluster_mtls:
        out.add(fn, f"{base}.tlsOptions",
                f"{_SPEC}spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled", "v1.7")


def _worker_priority(out: _Out, cluster: Mapping[str, Any], group: Mapping[str, Any], name: str,
                     head_env: Mapping[str, str | None], path: str) -> None:
    """validateWorkerGroupPriority (v1.7): a non-zero priority needs Ray >= 2.56.0 and autoscaler v2."""
    priority = _int(group.get("priority"))
    if not priority:
        return
    fn, where = "validateWorkerGroupPriority", f"{path}.priority"
    text = _str(cluster.get("rayVersion"))
    if not text:
        out.add(fn, where, f"{_SPEC}worker group {name}: priority is set, but RayVersion was not specified. Ray "
                "version 2.56.0 or later is required", "v1.7")
        return
    version = _parse_version(text)
    if isinstance(version, str):
        out.add(fn, where, f"{_SPEC}worker group {name}: priority is set, but RayVersion format is invalid: {text}, "
                f"{version}", "v1.7")
        return
    if _version_less(version, (2, 56, 0)):
        out.add(fn, where, f"{_SPEC}worker group {name}: priority is set, but minimum Ray version is 2.56.0, got "
                f"{text}", "v1.7")
        return
    if not _autoscaler_v2_env(cluster, head_env):
        out.add(fn, where, f"{_SPEC}worker group {name}: priority is set to {priority}, but autoscaler v2 is not "
                "enabled. Priority is only supported with autoscaler v2 enabled", "v1.7")


def _auth(out: _Out, cluster: Mapping[str, Any], base: str) -> None:
    """The authOptions part of ValidateRayClusterSpec (v1.6+)."""
    fn, path = "ValidateRayClusterSpec", f"{base}.authOptions"
    auth = _map(cluster.get("authOptions"))
    k8s_auth = auth.get("enableK8sTokenAuth") is True
    if auth.get("mode") != "token":
        if k8s_auth:
            out.add(fn, path, f"{_SPEC}authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to "
                    "'token'", "v1.6")
        return
    text = _str(cluster.get("rayVersion"))
    if not text:
        out.add(fn, f"{base}.rayVersion", f"{_SPEC}authOptions.mode is 'token' but RayVersion was not specified. Ray "
                "version 2.52.0 or later is required", "v1.6")
        return
    version = _parse_version(text)
    if isinstance(version, str):
        out.add(fn, f"{base}.rayVersion",
                f"{_SPEC}authOptions.mode is 'token' but RayVersion format is invalid: {text}, {version}", "v1.6")
        return
    if _version_less(version, (2, 52, 0)):
        out.add(fn, f"{base}.rayVersion",
                f"{_SPEC}authOptions.mode is 'token' but minimum Ray version is 2.52.0, got {text}", "v1.6")
        return
    if k8s_auth:
        if _version_less(version, (2, 55, 0)):
            out.add(fn, f"{base}.rayVersion", f"{_SPEC}authOptions.enableK8sTokenAuth is enabled but minimum Ray "
                    f"version is 2.55.0, got {text}", "v1.6")
        elif _str(auth.get("secretName")):
            out.add(fn, f"{path}.secretName",
                    f"{_SPEC}authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set", "v1.6")
