"""KubeRay's own validation, pure: what the KubeRay operator would refuse after admission, in its words.

KubeRay checks a RayJob on every reconcile (``rayjob_controller.go`` ``validateRayJob``: ``ValidateRayJobMetadata``,
then ``ValidateRayJobSpec``, which calls ``ValidateRayClusterSpec``) and, on the first error, sets the job to
``JobDeploymentStatus: ValidationFailed`` and stops; a bare RayCluster it refuses (``rayClusterReconcile``) just
never gets pods. A job or cluster rayqueue had admitted would then hold its quota for ever, so the webhook refuses
them at ``kubectl create`` and on update instead. This package models
``ray-operator/controllers/ray/utils/validation.go`` of KubeRay **v1.7.0** (with ``utils/constant.go``,
``utils/util.go``, ``apis/ray/v1``, and where a field passes validation but stops the operator later, the
controller function that does it); it was read, not copied. Each rule names its Go function.

Modules: ``base`` (Problem, FeatureGates, wire readers), ``names`` (apimachinery string checks, versions),
``cluster_spec`` (ValidateRayClusterSpec, shared by both kinds; the GCS FT backend; upgrade options),
``deletion`` (deletionStrategy), ``rayjob``, ``raycluster``, ``managed_by`` (``spec.managedBy``).

Differences from KubeRay, on purpose:

* KubeRay returns the first error; these functions return **every** problem they can judge, in KubeRay's order
  (the first one listed is the one KubeRay would report), each with a field path. The ``message`` is KubeRay's
  sentence, exactly (where KubeRay has none, because it fails later or silently, the sentence says what happens
  and names the function and KubeRay's own log or event words).
* Fields KubeRay's CRD defaults are read with those defaults (``minReplicas`` 0, ``maxReplicas`` 2147483647,
  ``backoffLimit`` 0, ``submissionMode`` K8sJobMode, ``ttlSecondsAfterFinished`` 0): the apiserver applies
  them before any admission webhook sees the object. Hence "worker group X must set both minReplicas and
  maxReplicas when autoscaling is disabled" (v1.6+) cannot happen with KubeRay's CRD and is not checked.
* ``runtimeEnvYAML`` needs a YAML parser, which ``common`` (standard library only) does not have: the caller
  passes one (``rayjob_problems(..., decode_yaml=...)``); without it the field is not judged.
* Not checked: ``ValidateRayJobStatus`` and ``ValidateRayClusterStatus`` (status, not spec); the details behind
  alpha gates that are off by default in v1.7 (``validateCollectorOptions`` and the collector-container rules of
  ``historyServerOptions``, ``validateNetworkPolicy``, ``validateTLSOptions``): with the gate off, setting the
  block at all is refused, which *is* checked. The RayService and RayCronJob rules are not for kinds rayqueue queues.

Feature gates are modelled as KubeRay does (``pkg/features/features.go``), with their **v1.7 defaults**
(``FeatureGates()``): ``RayJobDeletionPolicy`` is beta and on since v1.6 (alpha and off in v1.3 to v1.5);
``RayClusterNetworkPolicy``, ``RayClusterMTLS``, ``RayClusterHistoryServer``, ``GCSFaultToleranceEmbeddedStorage``
are alpha and off. An operator who runs KubeRay with other gates passes them in.

Which KubeRay versions refuse what (checked against the v1.4.0, v1.5.0, v1.6.0 and v1.7.0 tags; every
``Problem`` carries ``since``). v1.4 words some sentences without the ``The RayJob spec is invalid:`` prefix
and has ``spec.deletionPolicy`` instead of ``spec.deletionStrategy``; the rules are otherwise the same:

* v1.4+: name > 47 characters (RayCluster: 53) or not DNS-1035; ``suspend`` without ``shutdownAfterJobFinishes``;
  negative TTL; TTL without shutdown; ``suspend`` with ``clusterSelector``; neither ``rayClusterSpec`` nor
  ``clusterSelector``; ``backoffLimit > 0`` in InteractiveMode; ``activeDeadlineSeconds <= 0``;
  ``backoffLimit < 0``; head/worker without containers; the GCS fault-tolerance and redis rules; worker
  ``suspend`` (needs the RayJobDeletionPolicy gate, never with the autoscaler); autoscaler v2 restartPolicy;
  ``runtimeEnvYAML`` that is not a YAML map; and what stops a job later: ``rayClusterSpec.managedBy`` and
  ``rayClusterSpec.suspend`` (copied into its cluster), a submitter template without containers or with a
  ``restartPolicy`` a batch/v1 Job refuses.
* v1.5+: ``deletionStrategy`` (legacy ``onSuccess``/``onFailure`` and ``deletionRules``; ``deletionRules``
  and ``shutdownAfterJobFinishes`` are mutually exclusive); the ``clusterSelector`` rules (empty cluster
  name, SidecarMode); the SidecarMode rules (no submitter template, no submitterConfig, head restartPolicy);
  ``rayStartParams`` vs group ``resources``/``labels``; autoscaler v2 env without in-tree autoscaling.
* v1.6+: ``minReplicas``/``maxReplicas`` negative or ``minReplicas > maxReplicas``; ``backoffLimit > 0``
  with ``clusterSelector``; ``preRunningDeadlineSeconds <= 0``; ``idleTimeoutSeconds``; ``authOptions``;
  ``upgradeStrategy.type`` (a value other than Recreate/None; any value on a RayJob's cluster).
* v1.7: worker group ``priority``; ``KUBERAY_GEN_AUTOSCALER_START_CMD``; ``historyServerOptions``,
  ``networkPolicy``, ``tlsOptions`` behind their gates; the GCS fault-tolerance backend rules
  (``validateGcsFaultToleranceBackend``: ``storage`` only with ``rocksdb``; ``rocksdb`` needs its gate and
  refuses the redis fields and KubeRay's own env vars, mount and volume).
"""

from __future__ import annotations

from common.kuberay_rules.base import RAY_CLUSTER_SELECTOR_KEY, FeatureGates, Problem, is_autoscaling_enabled
from common.kuberay_rules.managed_by import (
    ALLOWED_MANAGERS,
    KUBERAY_MANAGER,
    foreign_manager,
    managed_by_foreign_controller,
)
from common.kuberay_rules.names import (
    MAX_RAYCLUSTER_NAME_LENGTH,
    MAX_RAYJOB_NAME_LENGTH,
    dns1035_label_errors,
    generated_name_sample,
)
from common.kuberay_rules.raycluster import raycluster_problems
from common.kuberay_rules.rayjob import YamlDecoder, rayjob_problems

__all__ = [
    "ALLOWED_MANAGERS",
    "KUBERAY_MANAGER",
    "MAX_RAYCLUSTER_NAME_LENGTH",
    "MAX_RAYJOB_NAME_LENGTH",
    "RAY_CLUSTER_SELECTOR_KEY",
    "FeatureGates",
    "Problem",
    "YamlDecoder",
    "dns1035_label_errors",
    "foreign_manager",
    "generated_name_sample",
    "is_autoscaling_enabled",
    "managed_by_foreign_controller",
    "raycluster_problems",
    "rayjob_problems",
]
