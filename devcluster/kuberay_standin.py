"""A TEST STAND-IN for the KubeRay operator (plus a kubelet's pod status duties) for the local test cluster; never for production.

KubeRay cannot be installed here, and no kubelet runs on the fake nodes. This controller is a model of
KubeRay 1.7 (`model="1.7"`, the default) or of KubeRay 1.1-1.3 (`model="1.3"`), read from KubeRay's own
source (ray-project/kuberay, `ray-operator/controllers/ray/`, tags v1.3.2 and v1.7.0); every modelled
behaviour names the KubeRay function it follows. Sources are cited as `file:function@version`.

RayJob (rayjob_controller.go:Reconcile@v1.7.0, one pass = one reconcile, status written only when
jobStatus, jobDeploymentStatus or rayClusterStatus change, as updateRayJobStatus does):
* A RayJob or RayCluster whose `spec.managedBy` names another controller is left alone
  (utils.ManagedByExternalController).
* CRD defaults are applied on read (rayjob_types.go / raycluster_types.go `+kubebuilder:default`:
  submissionMode K8sJobMode, backoffLimit 0, ttlSecondsAfterFinished 0, minReplicas 0, maxReplicas
  2147483647, replicas 0, numOfHosts 1): the test CRD has no schema, the real one defaults them.
* Validation first (validateRayJob: utils/validation.go:ValidateRayJobMetadata, ValidateRayJobSpec,
  ValidateRayJobStatus@v1.7.0): a name over 47 characters or not DNS-1035; `suspend` without
  `shutdownAfterJobFinishes`; `suspend` or SidecarMode or backoffLimit>0 with `clusterSelector`;
  `shutdownAfterJobFinishes` with `deletionStrategy.deletionRules` (and the other
  validateDeletionConfiguration rules); ttl without shutdown; InteractiveMode with backoffLimit>0;
  SidecarMode with a submitter template or config; the RayClusterSpec (ValidateRayClusterSpec: no
  containers, negative or min>max replicas, a suspended group with autoscaling); deadlines and
  backoffLimit ranges; runtimeEnvYAML must be YAML. 1.7: the job goes to `ValidationFailed` with
  `status.reason: ValidationFailed`, `status.message` KubeRay's error text, and a Warning event
  (InvalidRayJobMetadata / InvalidRayJobSpec / InvalidRayJobStatus). It is sticky: the state machine
  has no case for ValidationFailed (the `default:` branch requeues), so fixing the spec leaves it
  there. 1.3 (Reconcile@v1.3.2): ValidateRayJobSpec's smaller rule set; a refusal is an event and a
  requeue, the status is untouched, and a fixed spec proceeds.
* New (initRayJobStatusIfNeed): add the finalizer `ray.io/rayjob-finalizer`, set `jobId` (spec.jobId or
  `<job>-<5>`, not in InteractiveMode), `rayClusterName` (utils.GenerateRayClusterName: `<job>-<5>` in
  1.7, `<job>-raycluster-<5>` in 1.3; the clusterSelector's name if set), `startTime`; -> Initializing.
  A job created suspended goes New -> Initializing -> Suspending -> Suspended (it never gets a cluster).
* Initializing: `suspend` -> Suspending (updateStatusToSuspendingIfNeeded); activeDeadlineSeconds /
  preRunningDeadlineSeconds (1.7) -> Failed (DeadlineExceeded / PreRunningDeadlineExceeded); create the
  RayCluster `status.rayClusterName` if missing (getOrCreateRayClusterInstance,
  constructRayClusterForRayJob: the RayJob's labels plus `ray.io/originated-from-cr-name`,
  `ray.io/originated-from-crd`, 1.7 also `ray.io/job-submission-mode`; its annotations; a controller
  ownerReference to the RayJob; SidecarMode adds the submitter container to the head template,
  restartPolicy Never and `ray.io/disable-provisioned-head-restart`); wait (copying the cluster's
  status, 1.7) until its `state` is `ready`; set dashboardURL; InteractiveMode -> Waiting; K8sJobMode
  creates the submitter Job (createK8sJobIfNeed) only now; -> Running.
* Waiting (InteractiveMode): stays until `spec.jobId` is set, then copies it and -> Running. It cannot
  be suspended there (updateStatusToSuspendingIfNeeded allows only Initializing and Running).
* Running: `suspend` -> Suspending; deadlines; the submitter (checkSubmitterAndUpdateStatusIfNeeded):
  a Job `Failed` condition -> Failed (SubmissionFailed, or AppFailed if the Ray job failed), its
  Complete/Failed condition time is `finishedAt`; SidecarMode: no head pod -> Failed "Ray head pod not
  found.", a submitter container exiting non-zero -> Failed. The Ray job's status (the dashboard's
  GetJobInfo, modelled below) then sets jobStatus and, once terminal and the submitter finished
  (utils.HasSubmitter), Complete or Failed (AppFailed); 1.7 also `rayJobInfo` start/end times.
* Suspending / Retrying: delete the RayCluster (default, i.e. background, propagation) and the
  submitter Job (background); requeue until both objects are gone (deleteClusterResources,
  deleteSubmitterJob) -- NOT their pods: the garbage collector deletes those afterwards and they
  terminate with their grace period, so pods outlive the Suspended status. Then clear
  rayClusterName, jobId, dashboardURL, message, reason, rayJobInfo, rayClusterStatus, jobStatus;
  Suspending -> Suspended, Retrying -> New (whence a new cluster with a new name).
* Suspended: `suspend: false` -> New.
* After every pass, checkBackoffLimitAndUpdateStatusIfNeeded: count `failed`/`succeeded`; a Failed job
  with `backoffLimit` and failed < backoffLimit+1 (not DeadlineExceeded) -> Retrying.
* Complete / Failed: with clusterSelector nothing; 1.7 `deletionStrategy` (feature gate
  RayJobDeletionPolicy, default on in 1.7): `deletionRules` (handleDeletionRules: the most impactful
  overdue rule by `condition.ttlSeconds` after endTime; DeleteWorkers = suspendWorkerGroups, which sets
  `suspend: true` on every worker group so the RayCluster controller deletes the workers and keeps the
  head; DeleteCluster; DeleteSelf; DeleteNone) or legacy onSuccess/onFailure
  (handleLegacyDeletionPolicy, ttlSecondsAfterFinished); else `shutdownAfterJobFinishes` deletes the
  RayCluster ttlSecondsAfterFinished after endTime (handleShutdownAfterJobFinishes), keeping the
  submitter Job. 1.3 ignores deletionPolicy (its gate was alpha, off by default).
* A deleted RayJob: the finalizer is removed (Reconcile's DeletionTimestamp branch); the garbage
  collector then deletes its RayCluster and Job, as ownerReferences say.

The Ray job itself (what the dashboard would report; TEST-ONLY annotations on the RayJob): it runs
for `rayqueue.test/run-seconds` (default 3 s) and ends with `rayqueue.test/exit-code` (default 0:
SUCCEEDED, else FAILED). K8sJobMode: it runs in the submitter's pod (the kube-controller-manager's job
controller makes and retries that pod per `submitterConfig.backoffLimit`, default 2); HTTPMode and
InteractiveMode: from Running; SidecarMode: in the head's `ray-job-submitter` container.

RayCluster (raycluster_controller.go:rayClusterReconcile, reconcilePods, calculateStatus@v1.7.0):
* Validation (ValidateRayClusterMetadata: name <= 53 characters and DNS-1035; ValidateRayClusterSpec):
  a Warning event, no pods.
* Pods (common/pod.go:DefaultHeadPodTemplate, DefaultWorkerPodTemplate, labelPod, BuildPod;
  utils/util.go:PodName, CheckLabel): generateName `<cluster>-head-` and `<cluster>-<group>-worker-`
  (prefix cut at 50 characters); labels `ray.io/is-ray-node`, `ray.io/cluster`, `ray.io/node-type`,
  `ray.io/group`, `ray.io/identifier`, `app.kubernetes.io/name: kuberay`, `app.kubernetes.io/created-by:
  kuberay-operator` over the template's (node-type, group and cluster are not overridable), 1.7 also
  `ray.io/worker-group-replica-index` (RayMultiHostIndexing, default on); a controller ownerReference to
  the RayCluster; containers added: `wait-gcs-ready` init container on every worker (image of the Ray
  container, requests = limits = 200m / 256Mi) unless ENABLE_INIT_CONTAINER_INJECTION is "false"
  (getEnableInitContainerInjection); with `enableInTreeAutoscaling` the `autoscaler` container on the
  head (BuildAutoscalerContainer: 500m / 512Mi requests = limits, or `autoscalerOptions.resources`,
  mergeAutoscalerOverrides) and the head's serviceAccountName (the template's or the cluster's name,
  the ServiceAccount created by the stand-in as reconcileAutoscalerServiceAccount does); the
  operator's `headSidecarContainers` / `workerSidecarContainers` (buildHeadPod, buildWorkerPod); with
  a batch scheduler, `schedulerName` overwritten on every Ray pod (createHeadPod, createWorkerPod) and
  on the submitter's template (createK8sJobIfNeed) by batchscheduler/*:AddMetadataToChildResource --
  volcano, yunikorn, kai-scheduler, and scheduler-plugins as `scheduler-plugins-scheduler`, which also
  labels the child `scheduling.x-k8s.io/pod-group: <parent>` when the parent (the RayCluster for Ray
  pods, the RayJob for the submitter and, in K8sJobMode, for the RayCluster) has
  `ray.io/gang-scheduling-enabled`; the legacy `enableBatchScheduler` means volcano.
* reconcilePods: the head first, then each worker group in order; pods are created one per API call,
  and the first refused create (webhook, ResourceQuota, ...) ends the pass with an error; a terminal
  (Failed/Succeeded) head or worker is deleted (shouldDeletePod) and the pass ends, so it is recreated
  on a later pass (1.7: a RayJob's provisioned SidecarMode cluster does not recreate its head,
  shouldSkipHeadPodRestart); a worker group with `suspend` has all its pods deleted; the desired count
  is GetWorkerGroupDesiredReplicas (clamp(replicas, min, max) x numOfHosts; 1.3: min > max -> max);
  extra workers are deleted (autoscaling off; with autoscaling on only the pods the autoscaler names in
  `scaleStrategy.workersToDelete` are, whatever `replicas` says); pods already being deleted still count, and a group
  whose pods this controller deleted is not reconciled again until they are gone
  (rayClusterScaleExpectation). A failed pass is retried with controller-runtime's per-object
  exponential backoff (5 ms x 2^n), capped by `max_backoff_seconds`; a clean pass resets it.
* Suspend (`spec.suspend`, a bare RayCluster's; a RayJob's suspend deletes its cluster instead): 1.7 follows
  the RayClusterStatusConditions gate (on by default since v1.3): reconcilePods does nothing while
  `spec.suspend` is true and no Suspending condition is True; calculateStatus then sets RayClusterSuspending
  True; the next pass deletes every pod of the cluster (deleteAllPods, only when some pod is not yet
  terminating) with a `DeletedPod` event "Deleted Pods for RayCluster <ns>/<name> due to suspension"; once no
  pod is left, terminating ones included, Suspending False, RayClusterSuspended True, RayClusterProvisioned
  False ("RayCluster has been suspended") and `state: suspended`. Resumed (`suspend: false`): Suspended False
  on one pass, the pods created on the next; the state stays `suspended` until the cluster is ready again.
  The 1.3 model writes no conditions and takes the gate-off branch (v1.1-v1.2): every pod deleted at once on
  every pass while `spec.suspend` is true.
* Status (calculateStatus): desired/min/max/ready/available worker replicas, `state: ready` once no
  error and head + desired workers all Running and Ready (and it stays ready), the HeadPodReady,
  RayClusterProvisioned and (on a failed pass) ReplicaFailure conditions with KubeRay's reasons.

Kubelet duties, for every pod of the namespaces this stand-in serves: a pod with a `nodeName` is
marked Running (its init containers completed); a pod annotated `rayqueue.test/run-seconds` (the
submitter's pod gets its RayJob's) is marked Succeeded (or Failed with the exit code) when its run
time is over; the SidecarMode submitter container terminates likewise. A pod on a node with a
deletionTimestamp is finished (deleted with grace 0) once `rayqueue.test/terminate-seconds` (default 0,
capped by the grace period the apiserver recorded) have passed since the delete: the stand-in copies
that annotation from the RayCluster (i.e. from the RayJob) onto the Ray pods it creates, and from the
RayJob onto the submitter's pod template. The apiserver itself removes a pod without a node at once.

Deliberately simpler than KubeRay: no Services, Ingresses, Roles/RoleBindings or PodGroups, and of the
batch schedulers' metadata only schedulerName and scheduler-plugins' pod-group label (no volcano /
yunikorn / kai queue labels or annotations, no DoBatchSchedulingOnSubmission); the Ray container's
command, env, ports, probes and /dev/shm volume are not rewritten; no dashboard (the Ray job is the
timer above, and the head Service URL is assumed); no GCS fault tolerance, auth, TLS, network policy,
history server, upgrade strategies, RayService or RayCronJob; multi-host groups are reconciled as
single-host ones (numOfHosts x replicas pods); worker deletion picks pods by name, not at random; the
retry backoff is capped at `max_backoff_seconds` (controller-runtime: 1000 s); of the operator's
settings only the sidecars, the batch scheduler and ENABLE_INIT_CONTAINER_INJECTION are read
(defaultPodLabels/Annotations/ContainerEnvs, DELETE_RAYJOB_CR_AFTER_JOB_FINISHES,
ENABLE_RANDOM_POD_DELETE and the other flags keep KubeRay's defaults); only the validation rules
named above are modelled; expectations are kept for deletes only (creates are applied to the cache at
once); events are core/v1 Events, each (object, reason, message) once. The 1.3 model differs from
the 1.7 one only where this docstring says so.

Which namespaces: all (or only `namespace`), and of those only the ones whose label
`rayqueue.test/kuberay-standin` (absent = "1.7") equals this stand-in's `serve_label` (default: its
model), so stand-ins of either model or of different operator settings serve one cluster side by side. Informers list and watch into local caches (re-listing on 410);
one loop reconciles from the caches on every change and every half second; writes are applied to the
caches at once (newer resourceVersion wins). Run it as `python -m devcluster.kuberay_standin
--kubeconfig K [--model 1.3] [--config operator-config.yaml]`, or `KubeRayStandIn(api).start()`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from common import keys
from common.clock import Clock, SystemClock

Obj = dict[str, Any]
log = logging.getLogger("kuberay-standin")

MODEL_17, MODEL_13 = "1.7", "1.3"
MODELS = (MODEL_17, MODEL_13)
DEFAULT_RUN_SECONDS = 3.0
DEFAULT_MAX_BACKOFF_SECONDS = 8.0
INT32_MAX = 2**31 - 1
# k8s.io/apimachinery/pkg/util/rand.String's alphabet (no vowels, no look-alikes), as KubeRay uses it.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")

# RayJob.status values (apis/ray/v1/rayjob_types.go@v1.7.0).
NEW, INITIALIZING, RUNNING, COMPLETE, FAILED = "", "Initializing", "Running", "Complete", "Failed"
VALIDATION_FAILED, SUSPENDING, SUSPENDED, RETRYING, WAITING = (
    "ValidationFailed", "Suspending", "Suspended", "Retrying", "Waiting")
JOB_NEW, PENDING_JOB, RUNNING_JOB, SUCCEEDED_JOB, FAILED_JOB, STOPPED_JOB = (
    "", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")
TERMINAL_JOB = (STOPPED_JOB, SUCCEEDED_JOB, FAILED_JOB)
K8S_JOB_MODE, HTTP_MODE, INTERACTIVE_MODE, SIDECAR_MODE = "K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"

# KubeRay's names (utils/constant.go@v1.7.0, common/pod.go).
RAYJOB_FINALIZER = "ray.io/rayjob-finalizer"
JOB_SUBMISSION_MODE_LABEL = "ray.io/job-submission-mode"
WORKER_REPLICA_INDEX_LABEL = "ray.io/worker-group-replica-index"
DISABLE_HEAD_RESTART = "ray.io/disable-provisioned-head-restart"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
KUBERAY_CONTROLLER = "ray.io/kuberay-operator"
SUBMITTER_CONTAINER = "ray-job-submitter"
AUTOSCALER_CONTAINER = "autoscaler"
INIT_CONTAINER = "wait-gcs-ready"
HEAD_GROUP = "headgroup"
SUBMITTER_GROUP = "submittergroup"
MAX_RAYJOB_NAME = 47  # MaxRayClusterNameLength - 6
MAX_RAYCLUSTER_NAME = 53
POD_NAME_PREFIX_MAX = 50  # utils.PodName: 63 - ("-worker-" + 5)
SCHEDULER_PLUGINS_POD_GROUP = "scheduling.x-k8s.io/pod-group"
INIT_CONTAINER_RESOURCES: Obj = {"cpu": "200m", "memory": "256Mi"}
AUTOSCALER_RESOURCES: Obj = {"cpu": "500m", "memory": "512Mi"}
# batchscheduler/*: --batch-scheduler value -> the schedulerName it writes (scheduler-plugins names its instance).
BATCH_SCHEDULER_NAMES = {"volcano": "volcano", "yunikorn": "yunikorn", "kai-scheduler": "kai-scheduler",
                         "scheduler-plugins": "scheduler-plugins-scheduler"}
DELETION_IMPACT = {"DeleteSelf": 4, "DeleteCluster": 3, "DeleteWorkers": 2, "DeleteNone": 1}


# ---------------------------------------------------------------------------------------------- helpers
def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.setdefault("metadata", {})
    return meta


def _key(obj: Obj) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _rv(obj: Obj) -> int:
    try:
        return int(_meta(obj).get("resourceVersion", "0"))
    except ValueError:
        return 0


def _ts(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(_RFC3339)


def _parse_ts(text: object) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(str(text), _RFC3339).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(length))


def _owner_ref(obj: Obj) -> Obj:
    meta = _meta(obj)
    return {
        "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }


def _controller_uid(obj: Obj) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _labels(obj: Obj) -> dict[str, str]:
    return dict(_meta(obj).get("labels") or {})


def _annotations(obj: Obj) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def _seconds(text: object, default: float) -> float:
    try:
        return max(0.0, float(str(text)))
    except (TypeError, ValueError):
        return default


def _int(value: object, default: int) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def _condition(conditions: list[Obj], kind: str) -> Obj | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _set_condition(conditions: list[Obj], new: Obj, now: str) -> None:
    """meta.SetStatusCondition: the transition time changes only when the status does."""
    old = _condition(conditions, new["type"])
    if old is None:
        conditions.append({**new, "lastTransitionTime": now})
        return
    if old.get("status") != new["status"]:
        old["lastTransitionTime"] = now
    old.update({k: v for k, v in new.items() if k != "lastTransitionTime"})


CLUSTER_SUSPENDING: Final = "RayClusterSuspending"
CLUSTER_SUSPENDED: Final = "RayClusterSuspended"


def suspend_status(cluster: Obj) -> str:
    """utils.FindRayClusterSuspendStatus@v1.7.0: the type of the Suspending or Suspended condition that is True,
    else ""."""
    for cond in (cluster.get("status") or {}).get("conditions") or []:
        if cond.get("type") in (CLUSTER_SUSPENDING, CLUSTER_SUSPENDED) and cond.get("status") == "True":
            return str(cond["type"])
    return ""


def _set_suspend_conditions(conditions: list[Obj], suspending: str, suspend: bool, has_pods: bool, now: str) -> None:
    """calculateStatus@v1.7.0, the suspend switch: Suspending True once spec.suspend is seen; Suspending False,
    Suspended True (and RayClusterProvisioned False, "RayCluster has been suspended") once no pod is left, the
    terminating ones included; Suspended False once spec.suspend is false again."""
    if suspending == CLUSTER_SUSPENDING:
        if not has_pods:
            _set_condition(conditions, {"type": "RayClusterProvisioned", "status": "False",
                                        "reason": "RayClusterPodsProvisioning",
                                        "message": "RayCluster has been suspended"}, now)
            _set_condition(conditions, {"type": CLUSTER_SUSPENDING, "reason": CLUSTER_SUSPENDING, "status": "False"}, now)
            _set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "True"}, now)
    elif suspending == CLUSTER_SUSPENDED:
        if not suspend:
            _set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "False"}, now)
    else:
        _set_condition(conditions, {"type": CLUSTER_SUSPENDED, "reason": CLUSTER_SUSPENDED, "status": "False"}, now)
        _set_condition(conditions, {"type": CLUSTER_SUSPENDING, "reason": CLUSTER_SUSPENDING, "status": "True" if suspend else "False"},
                       now)


def _running_and_ready(pod: Obj) -> bool:
    """utils.IsRunningAndReady."""
    status = pod.get("status") or {}
    ready = _condition(list(status.get("conditions") or []), "Ready")
    return status.get("phase") == "Running" and ready is not None and ready.get("status") == "True"


# ---------------------------------------------------------------------------------------------- operator settings
@dataclass(frozen=True)
class OperatorConfig:
    """The KubeRay operator's settings that change what it creates (apis/config/v1alpha1 Configuration)."""

    head_sidecars: tuple[Obj, ...] = ()
    worker_sidecars: tuple[Obj, ...] = ()
    batch_scheduler: str = ""  # the --batch-scheduler name, "" for none
    init_container_injection: bool = True  # ENABLE_INIT_CONTAINER_INJECTION

    @property
    def scheduler_name(self) -> str | None:
        """The schedulerName AddMetadataToChildResource writes, None without a batch scheduler."""
        return BATCH_SCHEDULER_NAMES.get(self.batch_scheduler) if self.batch_scheduler else None

    @classmethod
    def parse(cls, document: Mapping[str, Any] | None, environ: Mapping[str, str]) -> OperatorConfig:
        """A `config.ray.io/v1alpha1` Configuration (main.go:decodeConfig) and the operator's environment;
        raises ValueError listing every problem (config_utils.go:ValidateBatchSchedulerConfig)."""
        doc = dict(document or {})
        problems: list[str] = []
        if doc and (doc.get("apiVersion"), doc.get("kind")) != ("config.ray.io/v1alpha1", "Configuration"):
            problems.append(f"apiVersion/kind must be config.ray.io/v1alpha1 Configuration, got "
                            f"{doc.get('apiVersion')!r}/{doc.get('kind')!r}")
        sidecars: dict[str, tuple[Obj, ...]] = {}
        for field_name in ("headSidecarContainers", "workerSidecarContainers"):
            containers = doc.get(field_name) or []
            if not isinstance(containers, list) or not all(isinstance(c, dict) and c.get("name") for c in containers):
                problems.append(f"{field_name} must be a list of containers, each with a name")
                containers = []
            sidecars[field_name] = tuple(copy.deepcopy(c) for c in containers)
        scheduler = str(doc.get("batchScheduler") or "")
        legacy = bool(doc.get("enableBatchScheduler"))
        if legacy and scheduler:
            problems.append("both feature flags enable-batch-scheduler (deprecated) and batch-scheduler are set. "
                            "Please use batch-scheduler only")
        elif scheduler and scheduler not in BATCH_SCHEDULER_NAMES:
            problems.append(f"scheduler is not supported, name={scheduler}")
        if problems:
            raise ValueError("; ".join(problems))
        # common/pod.go:getEnableInitContainerInjection: only the string "false" (any case) turns it off.
        inject = environ.get("ENABLE_INIT_CONTAINER_INJECTION", "").lower() != "false"
        return cls(sidecars["headSidecarContainers"], sidecars["workerSidecarContainers"],
                   "volcano" if legacy else scheduler, inject)

    @classmethod
    def load(cls, path: Path | None, environ: Mapping[str, str]) -> OperatorConfig:
        return cls.parse(yaml.safe_load(path.read_text()) if path else None, environ)


# ---------------------------------------------------------------------------------------------- the model, pure
def with_crd_defaults(rayjob: Obj) -> Obj:
    """A copy of the RayJob with the defaults KubeRay's CRD schema would have stored."""
    job = copy.deepcopy(rayjob)
    spec = job.setdefault("spec", {})
    spec.setdefault("submissionMode", K8S_JOB_MODE)
    spec.setdefault("backoffLimit", 0)
    spec.setdefault("ttlSecondsAfterFinished", 0)
    if spec.get("rayClusterSpec") is not None:
        spec["rayClusterSpec"] = cluster_spec_with_defaults(spec["rayClusterSpec"])
    return job


def cluster_spec_with_defaults(cluster_spec: Obj) -> Obj:
    spec = copy.deepcopy(cluster_spec)
    for group in spec.get("workerGroupSpecs") or []:
        group.setdefault("replicas", 0)
        group.setdefault("minReplicas", 0)
        group.setdefault("maxReplicas", INT32_MAX)
        group.setdefault("numOfHosts", 1)
    return spec


def desired_workers(group: Obj, model: str = MODEL_17) -> int:
    """utils.GetWorkerGroupDesiredReplicas: clamp(replicas, min, max) x numOfHosts, 0 when suspended.
    1.7 clamps to min first; 1.3 uses max when min > max."""
    if group.get("suspend"):
        return 0
    low = int(group.get("minReplicas") or 0)
    high = INT32_MAX if group.get("maxReplicas") is None else int(group["maxReplicas"])
    replicas = group.get("replicas")
    if model == MODEL_13 and low > high:
        count = high
    elif replicas is None or int(replicas) < low:
        count = low
    elif int(replicas) > high:
        count = high
    else:
        count = int(replicas)
    return count * max(1, int(group.get("numOfHosts") or 1))


def generate_cluster_name(rayjob_name: str, model: str, rng: random.Random) -> str:
    """utils.GenerateRayClusterName: `<job>-<5>` since v1.4, `<job>-raycluster-<5>` up to v1.3."""
    infix = "-raycluster-" if model == MODEL_13 else "-"
    return f"{rayjob_name}{infix}{_suffix(rng)}"


def pod_name_prefix(prefix: str, node_type: str) -> str:
    """utils.PodName with isGenerateName: the prefix cut at 50 characters, `-<type>-`."""
    return f"{prefix[:POD_NAME_PREFIX_MAX]}-{node_type}-".lower()


def check_label(value: str) -> str:
    """utils.CheckLabel: over 63 characters, keep the last 63; a leading punctuation becomes `r`."""
    if len(value) > 63:
        value = value[len(value) - 63:]
    if value and not value[0].isalnum():
        value = "r" + value[1:]
    return value


def ray_pod_labels(cluster: str, node_type: str, group: str, template_labels: Mapping[str, str]) -> dict[str, str]:
    """common/pod.go:labelPod: KubeRay's labels; the template may override all but node-type, group, cluster."""
    labels = {
        keys.RAY_IS_RAY_NODE: "yes",
        keys.RAY_CLUSTER: cluster,
        keys.RAY_NODE_TYPE: node_type,
        keys.RAY_GROUP_LABEL: group,
        keys.RAY_IDENTIFIER: check_label(f"{cluster}-{node_type}"),
        keys.KUBERNETES_APP_NAME: keys.KUBERAY_APP_NAME,
        keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR,
    }
    for key, value in template_labels.items():
        if key not in (keys.RAY_NODE_TYPE, keys.RAY_GROUP_LABEL, keys.RAY_CLUSTER):
            labels[key] = value
    return labels


def autoscaling_enabled(cluster_spec: Obj | None) -> bool:
    """utils.IsAutoscalingEnabled."""
    return bool(cluster_spec and cluster_spec.get("enableInTreeAutoscaling"))


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
    return None


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


def validate_rayjob(rayjob: Obj, model: str = MODEL_17) -> tuple[str, str] | None:
    """rayjob_controller.go:validateRayJob -> (event reason, KubeRay's message), or None when valid.
    `rayjob` carries the CRD defaults (with_crd_defaults)."""
    meta, spec, status = _meta(rayjob), rayjob.get("spec") or {}, rayjob.get("status") or {}
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
    try:
        yaml.safe_load(spec.get("runtimeEnvYAML") or "")
    except yaml.YAMLError as exc:
        return f"failed to unmarshal RuntimeEnvYAML: {spec.get('runtimeEnvYAML')}: {exc}"
    if spec.get("activeDeadlineSeconds") is not None and int(spec["activeDeadlineSeconds"]) <= 0:
        return f"{prefix}activeDeadlineSeconds must be a positive integer"
    if new and spec.get("preRunningDeadlineSeconds") is not None and int(spec["preRunningDeadlineSeconds"]) <= 0:
        return f"{prefix}preRunningDeadlineSeconds must be a positive integer"
    if int(spec.get("backoffLimit") or 0) < 0:
        return f"{prefix}backoffLimit must be a positive integer"
    if not new and spec.get("deletionPolicy") is not None:
        return "RayJobDeletionPolicy feature gate must be enabled to use the DeletionPolicy feature"
    return None


def should_delete_pod(pod: Obj, node_type: str) -> tuple[bool, str]:
    """raycluster_controller.go:shouldDeletePod@v1.7.0, head and worker alike."""
    meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Failed", "Succeeded"):
        return True, (f"The {node_type} Pod {meta.get('name')} status is {phase} which is a terminal state. KubeRay "
                      "will delete the Pod and create new Pods in the next reconciliation if necessary.")
    ray_container = ((spec.get("containers") or [{}])[0]).get("name")
    terminated = next((s.get("state", {}).get("terminated") for s in status.get("containerStatuses") or []
                       if s.get("name") == ray_container), None)
    if phase == "Running" and terminated and spec.get("restartPolicy") == "Never":
        return True, (f"The Pod status of the {node_type} Pod {meta.get('name')} is Running, and the Ray container "
                      "terminated; it cannot restart due to its restart policy Never, so KubeRay will delete it.")
    return False, ""


def submitter_container(rayjob: Obj, cluster_spec: Obj) -> Obj:
    """common/job.go:GetDefaultSubmitterContainer + configureSubmitterContainer (command abridged)."""
    head = ((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    status = rayjob.get("status") or {}
    entrypoint = str((rayjob.get("spec") or {}).get("entrypoint") or "").strip()
    return {
        "name": SUBMITTER_CONTAINER,
        "image": ((head.get("containers") or [{}])[0]).get("image", ""),
        "command": ["/bin/bash", "-ce", "--"],
        "args": [f"ray job submit --address http://{status.get('dashboardURL', '')} --submission-id "
                 f"{status.get('jobId', '')} -- {entrypoint}"],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "RAY_DASHBOARD_ADDRESS", "value": str(status.get("dashboardURL", ""))},
                {"name": "RAY_JOB_SUBMISSION_ID", "value": str(status.get("jobId", ""))}],
        "resources": {"requests": dict(keys.DEFAULT_SUBMITTER_REQUESTS), "limits": dict(keys.DEFAULT_SUBMITTER_LIMITS)},
    }


def managed_elsewhere(obj: Obj) -> bool:
    """utils.ManagedByExternalController: `spec.managedBy` set to anything but KubeRay's own controller."""
    manager = (obj.get("spec") or {}).get("managedBy")
    return bool(manager) and manager != KUBERAY_CONTROLLER


def backoff_seconds(failures: int, cap: float) -> float:
    """controller-runtime's default ItemExponentialFailureRateLimiter (5 ms x 2^n), capped."""
    return float(min(0.005 * 2 ** min(failures, 40), cap))


# ---------------------------------------------------------------------------------------------- caches
class Store:
    """One resource's cache, filled by an informer and by our own writes; the newer resourceVersion wins."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._lock = threading.Lock()

    def replace(self, items: Iterable[Obj]) -> None:
        with self._lock:
            self._items = {_key(o): o for o in items}

    def apply(self, obj: Obj) -> None:
        with self._lock:
            old = self._items.get(_key(obj))
            if old is None or _rv(obj) >= _rv(old):
                self._items[_key(obj)] = obj

    def remove(self, obj: Obj) -> None:
        with self._lock:
            old = self._items.get(_key(obj))
            if old is not None and _rv(obj) >= _rv(old):
                del self._items[_key(obj)]

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._items.pop(f"{namespace}/{name}", None)

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get(f"{namespace}/{name}")

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())


class Informer(threading.Thread):
    """List, then watch from the list's resourceVersion; on 410 Gone list again. Signals `changed`."""

    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        args: tuple[Any, ...],
        store: Store,
        changed: threading.Event,
        stop: threading.Event,
        watch_seconds: int = 60,
    ) -> None:
        super().__init__(name=f"informer-{what}", daemon=True)
        self.what, self._list_fn, self._args, self.store = what, list_fn, args, store
        self._changed, self._stop_event, self._watch_seconds = changed, stop, watch_seconds
        self.synced = threading.Event()
        watch_cls: Any = watch.Watch  # untyped; return_type "object" keeps events as plain dicts
        self._watch: Any = watch_cls(return_type="object")

    def interrupt(self) -> None:
        """Unblock a running watch at once (used by stop)."""
        self._watch.stop()

    def run(self) -> None:
        resource_version: str | None = None
        while not self._stop_event.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch_once(resource_version)
            except ApiException as exc:
                if exc.status == 410:
                    log.info("%s: watch expired (410 Gone), re-listing", self.what)
                else:
                    log.warning("%s: API error %s %s; retrying", self.what, exc.status, exc.reason)
                    self._stop_event.wait(1.0)
                resource_version = None
            except Exception as exc:  # connection resets, timeouts: back off and re-list
                if self._stop_event.is_set():
                    break
                log.warning("%s: %s: %s; re-listing", self.what, type(exc).__name__, exc)
                self._stop_event.wait(1.0)
                resource_version = None

    def _list(self) -> str:
        resp = self._list_fn(*self._args, _preload_content=False, _request_timeout=(5, 30))
        body = json.loads(resp.data)
        self.store.replace(body.get("items") or [])
        self.synced.set()
        self._changed.set()
        return str(body["metadata"]["resourceVersion"])

    def _watch_once(self, resource_version: str) -> str:
        if self._stop_event.is_set():
            return resource_version
        for event in self._watch.stream(
            self._list_fn, *self._args, resource_version=resource_version, timeout_seconds=self._watch_seconds,
            allow_watch_bookmarks=True, _request_timeout=(5, self._watch_seconds + 15),
        ):
            kind, obj = event["type"], event["raw_object"]
            resource_version = str(_meta(obj).get("resourceVersion") or resource_version)
            if kind == "DELETED":
                self.store.remove(obj)
            elif kind in ("ADDED", "MODIFIED"):
                self.store.apply(obj)
            else:
                continue
            self._changed.set()
            if self._stop_event.is_set():
                break
        return resource_version


class PassError(Exception):
    """A RayCluster pass ended early (reconcilePods returned an error); `reason` is KubeRay's ReplicaFailure reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Backoff:
    failures: int = 0
    not_before: float = 0.0


@dataclass
class _Expectations:
    """rayClusterScaleExpectation, for deletes: pods this controller deleted, per (cluster uid, group)."""

    deleted: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def expect_deleted(self, uid: str, group: str, pod: str) -> None:
        self.deleted.setdefault((uid, group), set()).add(pod)

    def satisfied(self, uid: str, group: str, present: set[str]) -> bool:
        waiting = self.deleted.get((uid, group), set()) & present
        self.deleted[(uid, group)] = waiting
        return not waiting


# ---------------------------------------------------------------------------------------------- the controller
class KubeRayStandIn:
    """The stand-in controller. `start()` runs it in threads; `stop()` ends them, bounded."""

    def __init__(
        self,
        api_client: Any,
        *,
        model: str = MODEL_17,
        operator_config: OperatorConfig | None = None,
        clock: Clock | None = None,
        default_run_seconds: float = DEFAULT_RUN_SECONDS,
        resync_seconds: float = 0.5,
        watch_seconds: int = 60,
        max_backoff_seconds: float = DEFAULT_MAX_BACKOFF_SECONDS,
        seed: int | None = None,
        namespace: str | None = None,
        serve_label: str | None = None,
    ) -> None:
        """Serve every namespace labelled `rayqueue.test/kuberay-standin=<serve_label>` (default: the model; no
        label counts as "1.7"), or only `namespace`; `seed` makes generated names reproducible."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {model!r}")
        self.api = api_client
        self.model = model
        self.config = operator_config or OperatorConfig()
        # Typed Any: the stand-in speaks plain dicts to the API (bodies in, `_preload_content=False` JSON out).
        self.core: Any = client.CoreV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.clock: Clock = clock or SystemClock()
        self.default_run_seconds = default_run_seconds
        self.resync_seconds = resync_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.namespace = namespace
        self.serve_label = serve_label or model
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._changed = threading.Event()
        self.rayjobs, self.rayclusters, self.pods, self.jobs = Store(), Store(), Store(), Store()
        self.namespaces, self.serviceaccounts = Store(), Store()
        ray = (keys.RAY_GROUP, keys.RAY_VERSION)
        if namespace is None:
            lists: list[tuple[str, Callable[..., Any], tuple[Any, ...], Store]] = [
                ("rayjobs", self.custom.list_cluster_custom_object, (*ray, keys.RAYJOB_PLURAL), self.rayjobs),
                ("rayclusters", self.custom.list_cluster_custom_object, (*ray, keys.RAYCLUSTER_PLURAL),
                 self.rayclusters),
                ("pods", self.core.list_pod_for_all_namespaces, (), self.pods),
                ("jobs", self.batch.list_job_for_all_namespaces, (), self.jobs),
                ("serviceaccounts", self.core.list_service_account_for_all_namespaces, (), self.serviceaccounts),
                ("namespaces", self.core.list_namespace, (), self.namespaces),
            ]
        else:
            lists = [
                ("rayjobs", self.custom.list_namespaced_custom_object, (*ray, namespace, keys.RAYJOB_PLURAL),
                 self.rayjobs),
                ("rayclusters", self.custom.list_namespaced_custom_object,
                 (*ray, namespace, keys.RAYCLUSTER_PLURAL), self.rayclusters),
                ("pods", self.core.list_namespaced_pod, (namespace,), self.pods),
                ("jobs", self.batch.list_namespaced_job, (namespace,), self.jobs),
                ("serviceaccounts", self.core.list_namespaced_service_account, (namespace,), self.serviceaccounts),
            ]
        self._informers = [
            Informer(what, fn, args, store, self._changed, self._stop, watch_seconds) for what, fn, args, store in lists
        ]
        self._loop: threading.Thread | None = None
        self._backoff: dict[str, _Backoff] = {}
        self._expectations = _Expectations()
        self._events: set[tuple[str, str, str]] = set()
        self._ray_job_started: dict[str, dt.datetime] = {}  # HTTP/Interactive "Ray job" start, by uid/jobId
        self.errors = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KubeRayStandIn:
        """Start the informers and the reconcile loop in daemon threads."""
        for informer in self._informers:
            informer.start()
        self._loop = threading.Thread(target=self._run_loop, name="standin-reconcile", daemon=True)
        self._loop.start()
        return self

    def wait_synced(self, timeout: float = 30.0) -> bool:
        """True once every informer has listed once."""
        return all(i.synced.wait(timeout) for i in self._informers)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread; raise RuntimeError if one is still alive after `timeout` seconds."""
        self._stop.set()
        self._changed.set()
        threads: list[threading.Thread] = [*self._informers, *([self._loop] if self._loop else [])]
        deadline = time.monotonic() + timeout
        # A watch being opened right now cannot be cut yet (Watch.stream resets its stop flag when it
        # starts): interrupt again until every thread is gone or the bound is reached.
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for informer in self._informers:
                if informer.is_alive():
                    informer.interrupt()
            for thread in threads:
                thread.join(0.05)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"KubeRay stand-in threads still running after {timeout}s: {alive}")

    def __enter__(self) -> KubeRayStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run_loop(self) -> None:
        while not self._stop.is_set():
            self._changed.wait(self.resync_seconds)
            self._changed.clear()
            if self._stop.is_set() or not all(i.synced.is_set() for i in self._informers):
                continue
            try:
                self.reconcile_once()
            except Exception:
                self.errors += 1
                log.exception("reconcile failed; retrying")
                self._stop.wait(1.0)

    # ------------------------------------------------------------------ one pass
    def serves(self, namespace: str) -> bool:
        """Whether this stand-in acts in `namespace`: its stand-in label (absent = "1.7") is our serve_label."""
        if self.namespace is not None:
            return namespace == self.namespace
        ns = self.namespaces.get("", namespace)
        if ns is None:  # not seen yet: its label is unknown, so not ours yet
            return False
        return _labels(ns).get(keys.TEST_KUBERAY_STANDIN, MODEL_17) == self.serve_label

    def _mine(self, store: Store) -> list[Obj]:
        return [o for o in store.items() if self.serves(str(_meta(o).get("namespace", "")))]

    def reconcile_once(self) -> None:
        """One pass over the caches: kubelet duties, then RayJobs, then RayClusters."""
        now = self.clock.now()
        for pod in self._mine(self.pods):
            self._guarded(self._kubelet, pod, now)
        for rayjob in self._mine(self.rayjobs):
            self._guarded(self._reconcile_rayjob, rayjob, now)
        for cluster in self._mine(self.rayclusters):
            self._guarded(self._reconcile_cluster, cluster, now)

    def _guarded(self, reconcile: Callable[[Obj, dt.datetime], None], obj: Obj, now: dt.datetime) -> None:
        """One object's reconcile; an API error fails that object only (controller-runtime requeues it)."""
        try:
            reconcile(obj, now)
        except ApiException as exc:
            self.errors += 1
            log.warning("%s %s: API error %s %s; retrying on a later pass", obj.get("kind", "Pod"), _key(obj),
                        exc.status, str(exc.body or exc.reason)[:300])

    def _event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on `obj`, once per (object, reason, message)."""
        meta = _meta(obj)
        mark = (str(meta.get("uid")), reason, message)
        if mark in self._events:
            return
        self._events.add(mark)
        stamp = _ts(self.clock.now())
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": kind, "reason": reason, "message": message[:1000], "source": {"component": keys.KUBERAY_OPERATOR},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": keys.KUBERAY_OPERATOR, "reportingInstance": "kuberay-standin",
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        except ApiException as exc:
            log.warning("cannot record event %s on %s: %s", reason, _key(obj), exc.status)

    # ------------------------------------------------------------------ kubelet duties
    def _kubelet(self, pod: Obj, now: dt.datetime) -> None:
        meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName")
        if not node:
            return
        if meta.get("deletionTimestamp"):
            self._finish_terminating(pod, now)
            return
        phase = status.get("phase")
        if phase == "Pending":
            self._set_pod_running(pod, now)
        elif phase == "Running":
            started = _parse_ts(status.get("startTime"))
            annotations = _annotations(pod)
            run = annotations.get(keys.TEST_RUN_SECONDS)
            if started is None:
                return
            if run is not None and now >= started + dt.timedelta(seconds=_seconds(run, self.default_run_seconds)):
                self._set_pod_finished(pod, now, _int(annotations.get(keys.TEST_EXIT_CODE), 0))
            elif self._sidecar_due(pod, started, now):
                self._finish_sidecar_submitter(pod, now)

    def _finish_terminating(self, pod: Obj, now: dt.datetime) -> None:
        """The kubelet stops a deleted pod's containers, then removes it: after `terminate-seconds`, at most the
        grace period the apiserver recorded (deletionTimestamp - deletionGracePeriodSeconds = the delete)."""
        meta = _meta(pod)
        grace = _seconds(meta.get("deletionGracePeriodSeconds"), 0.0)
        deadline = _parse_ts(meta.get("deletionTimestamp"))
        wanted = min(_seconds(_annotations(pod).get(keys.TEST_TERMINATE_SECONDS), 0.0), grace)
        if deadline is not None and now < deadline - dt.timedelta(seconds=grace) + dt.timedelta(seconds=wanted):
            return
        log.info("pod %s: terminated on node %s after %ss", _key(pod), (pod.get("spec") or {}).get("nodeName"), wanted)
        self._ignore_404(self.core.delete_namespaced_pod, meta["name"], meta["namespace"], grace_period_seconds=0)
        self.pods.forget(meta["namespace"], meta["name"])

    def _sidecar_due(self, pod: Obj, started: dt.datetime, now: dt.datetime) -> bool:
        """SidecarMode: the head's ray-job-submitter container runs for its RayJob's run time."""
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if SUBMITTER_CONTAINER not in names or _labels(pod).get(keys.RAY_NODE_TYPE) != "head":
            return False
        done = any(s.get("name") == SUBMITTER_CONTAINER and (s.get("state") or {}).get("terminated")
                   for s in (pod.get("status") or {}).get("containerStatuses") or [])
        rayjob = self._rayjob_of_cluster_name(str(_meta(pod)["namespace"]), _labels(pod).get(keys.RAY_CLUSTER, ""))
        if done or rayjob is None:
            return False
        return now >= started + dt.timedelta(seconds=self._run_seconds(rayjob))

    def _finish_sidecar_submitter(self, pod: Obj, now: dt.datetime) -> None:
        rayjob = self._rayjob_of_cluster_name(str(_meta(pod)["namespace"]), _labels(pod).get(keys.RAY_CLUSTER, ""))
        code = _int(_annotations(rayjob).get(keys.TEST_EXIT_CODE), 0) if rayjob else 0
        statuses = copy.deepcopy((pod.get("status") or {}).get("containerStatuses") or [])
        for entry in statuses:
            if entry.get("name") == SUBMITTER_CONTAINER:
                entry.update({"ready": False, "started": False, "state": {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "startedAt": (pod.get("status") or {}).get("startTime"), "finishedAt": _ts(now)}}})
        log.info("pod %s: the submitter sidecar exited %s", _key(pod), code)
        self._patch_pod_status(_meta(pod), {"status": {"containerStatuses": statuses}})

    def _rayjob_of_cluster_name(self, namespace: str, cluster_name: str) -> Obj | None:
        cluster = self.rayclusters.get(namespace, cluster_name)
        owner = _controller_uid(cluster) if cluster else None
        return next((r for r in self.rayjobs.items() if _meta(r).get("uid") == owner), None)

    def _run_seconds(self, rayjob: Obj) -> float:
        return _seconds(_annotations(rayjob).get(keys.TEST_RUN_SECONDS), self.default_run_seconds)

    def _set_pod_running(self, pod: Obj, now: dt.datetime) -> None:
        meta, spec = _meta(pod), pod.get("spec") or {}
        stamp = _ts(now)
        conditions = [
            {"type": t, "status": "True", "lastTransitionTime": stamp}
            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
        ]
        statuses = [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0,
             "started": True, "state": {"running": {"startedAt": stamp}}}
            for c in spec.get("containers") or []
        ]
        init_statuses = [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0,
             "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp}}}
            for c in spec.get("initContainers") or []
        ]
        body = {"status": {"phase": "Running", "startTime": stamp, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                           "conditions": conditions, "containerStatuses": statuses,
                           **({"initContainerStatuses": init_statuses} if init_statuses else {})}}
        log.info("pod %s: running on %s", _key(pod), spec.get("nodeName"))
        self._patch_pod_status(meta, body)

    def _set_pod_finished(self, pod: Obj, now: dt.datetime, exit_code: int) -> None:
        meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        stamp = _ts(now)
        phase = "Succeeded" if exit_code == 0 else "Failed"
        conditions = [
            {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp}
            for t in ("Ready", "ContainersReady")
        ]
        statuses = [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
             "started": False, "state": {"terminated": {"exitCode": exit_code,
                                                        "reason": "Completed" if exit_code == 0 else "Error",
                                                        "startedAt": status.get("startTime") or stamp,
                                                        "finishedAt": stamp}}}
            for c in spec.get("containers") or []
        ]
        log.info("pod %s: %s (exit code %s)", _key(pod), phase.lower(), exit_code)
        self._patch_pod_status(meta, {"status": {"phase": phase, "conditions": conditions,
                                                 "containerStatuses": statuses}})

    def _patch_pod_status(self, meta: Obj, body: Obj) -> None:
        try:
            resp = self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body,
                                                         _preload_content=False)
        except ApiException as exc:
            if exc.status in (404, 409):
                return
            raise
        self.pods.apply(json.loads(resp.data))

    # ------------------------------------------------------------------ RayJob
    def _reconcile_rayjob(self, stored: Obj, now: dt.datetime) -> None:
        """rayjob_controller.go:Reconcile: one pass of the state machine."""
        meta = _meta(stored)
        if meta.get("deletionTimestamp"):
            if RAYJOB_FINALIZER in (meta.get("finalizers") or []):
                log.info("RayJob %s: being deleted, removing the finalizer", _key(stored))
                self._set_finalizers(stored, [f for f in meta.get("finalizers") or [] if f != RAYJOB_FINALIZER])
            return
        if managed_elsewhere(stored):  # utils.ManagedByExternalController: e.g. Kueue's MultiKueue
            return
        rayjob = with_crd_defaults(stored)
        spec, old = rayjob["spec"], dict(rayjob.get("status") or {})
        problem = validate_rayjob(rayjob, self.model)
        if problem is not None:
            reason, message = problem
            self._event(stored, "Warning", reason, f"{meta['namespace']}/{meta['name']}: {message}")
            if self.model == MODEL_13:  # Reconcile@v1.3.2: an event and a requeue, no status change
                log.info("RayJob %s: invalid: %s", _key(stored), message)
                return
            new = {**old, "jobDeploymentStatus": VALIDATION_FAILED, "reason": "ValidationFailed", "message": message}
            self._write_rayjob_status(stored, old, new, now)
            return
        new = copy.deepcopy(old)
        state = old.get("jobDeploymentStatus", NEW)
        if state in (NEW, "New"):
            if RAYJOB_FINALIZER not in (meta.get("finalizers") or []):
                self._set_finalizers(stored, [*(meta.get("finalizers") or []), RAYJOB_FINALIZER])
            self._init_status(rayjob, new, now)
        elif state == INITIALIZING:
            if not self._initializing(rayjob, new, now):
                return
        elif state == WAITING:
            if self._pre_running_deadline(rayjob, new, now):
                pass
            elif not spec.get("jobId"):
                return
            else:
                new.update({"jobId": spec["jobId"], "jobDeploymentStatus": RUNNING})
        elif state == RUNNING:
            if not self._running(rayjob, new, now):
                return
        elif state in (SUSPENDING, RETRYING):
            if not self._release(rayjob, new):
                return
        elif state == SUSPENDED:
            if spec.get("suspend"):
                return
            new.update({"jobStatus": JOB_NEW, "jobDeploymentStatus": NEW})
        elif state in (COMPLETE, FAILED):
            self._after_finish(rayjob, now)
            return
        else:  # ValidationFailed and anything unknown: `default:` logs and requeues, nothing changes
            return
        self._check_backoff_limit(rayjob, new)
        self._write_rayjob_status(stored, old, new, now)

    def _init_status(self, rayjob: Obj, new: Obj, now: dt.datetime) -> None:
        """initRayJobStatusIfNeed."""
        meta, spec = _meta(rayjob), rayjob["spec"]
        if spec.get("submissionMode") != INTERACTIVE_MODE and not new.get("jobId"):
            new["jobId"] = spec.get("jobId") or f"{meta['name']}-{_suffix(self._rng)}"
        if not new.get("rayClusterName"):
            selected = (spec.get("clusterSelector") or {}).get(CLUSTER_SELECTOR_KEY)
            new["rayClusterName"] = selected or generate_cluster_name(meta["name"], self.model, self._rng)
        new.setdefault("jobStatus", JOB_NEW)
        new["jobDeploymentStatus"] = INITIALIZING
        new["startTime"] = _ts(now)

    def _initializing(self, rayjob: Obj, new: Obj, now: dt.datetime) -> bool:
        """`case Initializing`; False when the pass returns without a status update."""
        spec = rayjob["spec"]
        if self._to_suspending(rayjob, new) or self._active_deadline(rayjob, new, now):
            return True
        if self.model == MODEL_17 and self._pre_running_deadline(rayjob, new, now):
            return True
        cluster = self._get_or_create_cluster(rayjob, new)
        if cluster is None:
            return False
        if not new.get("dashboardURL"):
            if (cluster.get("status") or {}).get("state") != "ready":
                if self.model == MODEL_13:
                    return False
                new["rayClusterStatus"] = copy.deepcopy(cluster.get("status") or {})
                return True
            new["dashboardURL"] = f"{_meta(cluster)['name']}-head-svc.{_meta(cluster)['namespace']}.svc.cluster.local:8265"
        if spec.get("submissionMode") == INTERACTIVE_MODE:
            new["jobDeploymentStatus"] = WAITING
            return True
        if spec.get("submissionMode") == K8S_JOB_MODE and not self._create_submitter_if_needed(rayjob, new, cluster):
            return False
        new["jobDeploymentStatus"] = RUNNING
        return True

    def _running(self, rayjob: Obj, new: Obj, now: dt.datetime) -> bool:
        """`case Running`; False when the pass returns without a status update."""
        mode = rayjob["spec"].get("submissionMode")
        if self._to_suspending(rayjob, new) or self._active_deadline(rayjob, new, now):
            return True
        cluster = self._get_or_create_cluster(rayjob, new)
        if cluster is None:
            return False
        finished_at: str | None = None
        if mode in (K8S_JOB_MODE, SIDECAR_MODE):
            checked = self._check_submitter(rayjob, new)
            if checked is None:
                return False
            changed, finished_at = checked
            if changed:
                return True
        info = self._ray_job_info(rayjob, new, cluster, now)
        if info is None:  # GetJobInfo: not found
            if finished_at is not None:
                new.update({"jobDeploymentStatus": FAILED, "reason": "AppFailed",
                            "message": "Submitter completed but Ray job not found in RayCluster."})
                return True
            return False
        job_status, started, ended = info
        terminal = job_status in TERMINAL_JOB and (finished_at is not None or mode not in (K8S_JOB_MODE, SIDECAR_MODE))
        deployment, reason = RUNNING, ""
        if terminal:
            deployment = FAILED if job_status == FAILED_JOB else COMPLETE
            reason = "AppFailed" if job_status == FAILED_JOB else ""
        new.update({"rayClusterStatus": copy.deepcopy(cluster.get("status") or {}), "jobStatus": job_status,
                    "jobDeploymentStatus": deployment, "reason": reason, "message": ""})
        if self.model == MODEL_17:
            info_times = {k: v for k, v in (("startTime", started), ("endTime", ended)) if v}
            new["rayJobInfo"] = info_times
        return True

    def _ray_job_info(self, rayjob: Obj, new: Obj, cluster: Obj,
                      now: dt.datetime) -> tuple[str, str | None, str | None] | None:
        """What the dashboard's GetJobInfo would say: (jobStatus, start, end), None when the job is unknown."""
        mode = rayjob["spec"].get("submissionMode")
        code = _int(_annotations(rayjob).get(keys.TEST_EXIT_CODE), 0)
        done = SUCCEEDED_JOB if code == 0 else FAILED_JOB
        if mode == K8S_JOB_MODE:
            submitter = self._submitter_of(rayjob)
            pods = [p for p in self.pods.items() if submitter is not None
                    and _controller_uid(p) == _meta(submitter).get("uid")]
            started = min((str((p.get("status") or {}).get("startTime")) for p in pods
                           if (p.get("status") or {}).get("startTime")), default=None)
            finished = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
            if started is None:
                return None
            if finished:
                return done, started, _finished_at(finished[-1])
            return RUNNING_JOB, started, None
        if mode == SIDECAR_MODE:
            head = self._head_pod(cluster)
            state = _container_state(head, SUBMITTER_CONTAINER) if head else {}
            if "terminated" in state:
                return done, state["terminated"].get("startedAt"), state["terminated"].get("finishedAt")
            return (RUNNING_JOB, (head.get("status") or {}).get("startTime"), None) if "running" in state else None
        # HTTPMode, InteractiveMode: submitted when Running began; our clock is the Ray job.
        began = self._ray_job_started.setdefault(f"{_meta(rayjob)['uid']}/{new.get('jobId')}", now)
        if now >= began + dt.timedelta(seconds=self._run_seconds(rayjob)):
            return done, _ts(began), _ts(now)
        return RUNNING_JOB, _ts(began), None

    def _check_submitter(self, rayjob: Obj, new: Obj) -> tuple[bool, str | None] | None:
        """checkSubmitterAndUpdateStatusIfNeeded -> (status changed, finishedAt); None = error, requeue."""
        spec = rayjob["spec"]
        if spec.get("submissionMode") == SIDECAR_MODE:
            cluster = self.rayclusters.get(_meta(rayjob)["namespace"], str(new.get("rayClusterName")))
            head = self._head_pod(cluster) if cluster else None
            if head is None:
                new.update({"jobDeploymentStatus": FAILED, "reason": "AppFailed", "message": "Ray head pod not found."})
                return True, None
            terminated = _container_state(head, SUBMITTER_CONTAINER).get("terminated")
            if terminated and int(terminated.get("exitCode") or 0) != 0:
                new["jobDeploymentStatus"] = FAILED
                if new.get("jobStatus") == FAILED_JOB:
                    new["reason"] = "AppFailed"
                else:
                    new.update({"reason": "SubmissionFailed", "message": (
                        f"Ray head pod container {SUBMITTER_CONTAINER} terminated with exit code "
                        f"{terminated.get('exitCode')}: {terminated.get('reason', '')}")})
                return True, terminated.get("finishedAt")
            return False, terminated.get("finishedAt") if terminated else None
        job = self._submitter_of(rayjob)
        if job is None:
            log.info("RayJob %s: Failed to get the submitter Kubernetes Job", _key(rayjob))
            return None
        conditions = (job.get("status") or {}).get("conditions") or []
        failed = next((c for c in conditions if c.get("type") == "Failed" and c.get("status") == "True"), None)
        finished = next((c for c in conditions if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"),
                        None)
        finished_at = finished.get("lastTransitionTime") if finished else None
        if failed is not None:
            new["jobDeploymentStatus"] = FAILED
            if new.get("jobStatus") == FAILED_JOB:
                new["reason"] = "AppFailed"
            else:
                new.update({"reason": "SubmissionFailed", "message": (
                    f"Job submission has failed. Reason: {failed.get('reason', '')}. "
                    f"Message: {failed.get('message', '')}")})
            return True, finished_at
        return False, finished_at

    def _to_suspending(self, rayjob: Obj, new: Obj) -> bool:
        """updateStatusToSuspendingIfNeeded: only from Initializing or Running."""
        if rayjob["spec"].get("suspend") and new.get("jobDeploymentStatus") in (INITIALIZING, RUNNING):
            new["jobDeploymentStatus"] = SUSPENDING
            return True
        return False

    def _active_deadline(self, rayjob: Obj, new: Obj, now: dt.datetime) -> bool:
        """checkActiveDeadlineAndUpdateStatusIfNeeded."""
        deadline, started = rayjob["spec"].get("activeDeadlineSeconds"), _parse_ts(new.get("startTime"))
        if deadline is None or started is None or now < started + dt.timedelta(seconds=int(deadline)):
            return False
        new.update({"jobDeploymentStatus": FAILED, "reason": "DeadlineExceeded", "message": (
            f"The RayJob has passed the activeDeadlineSeconds. StartTime: {new.get('startTime')}. "
            f"ActiveDeadlineSeconds: {deadline}")})
        return True

    def _pre_running_deadline(self, rayjob: Obj, new: Obj, now: dt.datetime) -> bool:
        """checkPreRunningDeadlineAndUpdateStatusIfNeeded@v1.7.0."""
        deadline, started = rayjob["spec"].get("preRunningDeadlineSeconds"), _parse_ts(new.get("startTime"))
        if self.model != MODEL_17 or deadline is None or started is None:
            return False
        if now < started + dt.timedelta(seconds=int(deadline)):
            return False
        new.update({"jobDeploymentStatus": FAILED, "reason": "PreRunningDeadlineExceeded", "message": (
            f"The RayJob has passed the preRunningDeadlineSeconds. StartTime: {new.get('startTime')}. "
            f"PreRunningDeadlineSeconds: {deadline}")})
        return True

    def _release(self, rayjob: Obj, new: Obj) -> bool:
        """`case Suspending, Retrying`: delete the RayCluster and the submitter Job; wait for both objects only."""
        cluster_gone = self._delete_cluster_resources(rayjob, new)
        job_gone = self._delete_submitter_job(rayjob)
        if not (cluster_gone and job_gone):
            log.info("RayJob %s: waiting for the RayCluster and the submitter Job to be deleted", _key(rayjob))
            return False
        for name in ("rayClusterName", "dashboardURL", "jobId", "message", "reason"):
            new[name] = ""
        new["rayClusterStatus"] = {}
        new["jobStatus"] = JOB_NEW
        if self.model == MODEL_17:
            new["rayJobInfo"] = {}
        new["jobDeploymentStatus"] = SUSPENDED if new.get("jobDeploymentStatus") == SUSPENDING else NEW
        return True

    def _check_backoff_limit(self, rayjob: Obj, new: Obj) -> None:
        """checkBackoffLimitAndUpdateStatusIfNeeded."""
        failed, succeeded = int(new.get("failed") or 0), int(new.get("succeeded") or 0)
        if new.get("jobDeploymentStatus") == FAILED:
            failed += 1
        if new.get("jobStatus") == SUCCEEDED_JOB and new.get("jobDeploymentStatus") == COMPLETE:
            succeeded += 1
        new["failed"], new["succeeded"] = failed, succeeded
        limit = rayjob["spec"].get("backoffLimit")
        if new.get("jobDeploymentStatus") == FAILED and limit is not None and failed < int(limit) + 1:
            if new.get("reason") in ("DeadlineExceeded", "JobStatusCheckTimeoutExceeded"):
                return
            log.info("RayJob %s: failed %s time(s), backoffLimit %s: Retrying", _key(rayjob), failed, limit)
            new["jobDeploymentStatus"] = RETRYING

    def _write_rayjob_status(self, stored: Obj, old: Obj, new: Obj, now: dt.datetime) -> None:
        """updateRayJobStatus: write only when jobStatus, jobDeploymentStatus or rayClusterStatus changed; a
        terminal deployment status stamps endTime."""
        def cluster_status(status: Obj) -> Obj:
            return {k: v for k, v in (status.get("rayClusterStatus") or {}).items() if k != "lastUpdateTime"}

        if (old.get("jobStatus", "") == new.get("jobStatus", "")
                and old.get("jobDeploymentStatus", "") == new.get("jobDeploymentStatus", "")
                and cluster_status(old) == cluster_status(new)):
            return
        if new.get("jobDeploymentStatus") in (COMPLETE, FAILED):
            new["endTime"] = _ts(now)
        log.info("RayJob %s: %r -> %r (jobStatus %r)", _key(stored), old.get("jobDeploymentStatus", ""),
                 new.get("jobDeploymentStatus", ""), new.get("jobStatus", ""))
        updated = self._replace_status(keys.RAYJOB_PLURAL, _meta(stored), new)
        if updated is not None:
            self.rayjobs.apply(updated)

    def _replace_status(self, plural: str, meta: Obj, status: Obj, *, guarded: bool = False) -> Obj | None:
        """Status().Update: the whole status replaced (a JSON patch `add /status`); None if the object is gone.

        ``guarded`` (the RayCluster): the patch also carries the resourceVersion this stand-in read, so a
        stale read is refused with a 409 and retried on a later pass, as Status().Update is (an Update sends
        the object's resourceVersion). KubeRay v1.7.0 calculateStatus starts from ``instance.DeepCopy()`` and
        sets only its own condition types (meta.SetStatusCondition / RemoveStatusCondition), and
        updateRayClusterStatus writes it with r.Status().Update when InconsistentRayClusterStatus
        (utils/consistency.go) sees a change: a condition another writer added (rayqueue's RayQueueQuota) is
        kept, never clobbered by a stale copy. Nobody but KubeRay writes a RayJob's status, so that write
        stays unguarded here."""
        ops: list[Obj] = [{"op": "add", "path": "/status", "value": status}]
        if guarded and meta.get("resourceVersion"):
            ops.append({"op": "replace", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]})
        try:
            resp = self.custom.patch_namespaced_custom_object_status(
                keys.RAY_GROUP, keys.RAY_VERSION, meta["namespace"], plural, meta["name"],
                ops, _preload_content=False, _content_type="application/json-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409 and guarded:
                log.info("%s %s/%s: status conflict (stale read); retrying on a later pass", plural,
                         meta["namespace"], meta["name"])
                return None
            raise
        updated: Obj = json.loads(resp.data)
        return updated

    def _set_finalizers(self, rayjob: Obj, finalizers: list[str]) -> None:
        meta = _meta(rayjob)
        try:
            resp = self.custom.patch_namespaced_custom_object(
                keys.RAY_GROUP, keys.RAY_VERSION, meta["namespace"], keys.RAYJOB_PLURAL, meta["name"],
                {"metadata": {"finalizers": finalizers or None}}, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        self.rayjobs.apply(json.loads(resp.data))

    def _get_or_create_cluster(self, rayjob: Obj, new: Obj) -> Obj | None:
        """getOrCreateRayClusterInstance: the RayCluster named `status.rayClusterName`, created if missing."""
        meta, spec = _meta(rayjob), rayjob["spec"]
        name = str(new.get("rayClusterName") or "")
        existing = self.rayclusters.get(meta["namespace"], name)
        if existing is not None:
            return existing
        if spec.get("clusterSelector"):
            self._event(rayjob, "Warning", "RayClusterNotFound",
                        f"RayCluster {meta['namespace']}/{name} set in the clusterSelector is not found. "
                        "It must be created manually")
            return None
        labels = {**_labels(rayjob), keys.RAY_ORIGINATED_FROM_CR_NAME: meta["name"],
                  keys.RAY_ORIGINATED_FROM_CRD: keys.RAYJOB_KIND}
        if self.model == MODEL_17:
            labels[JOB_SUBMISSION_MODE_LABEL] = str(spec.get("submissionMode"))
        annotations = _annotations(rayjob)
        cluster_spec = copy.deepcopy(spec.get("rayClusterSpec") or {})
        if spec.get("submissionMode") == SIDECAR_MODE:
            annotations[DISABLE_HEAD_RESTART] = "true"
            head = cluster_spec.setdefault("headGroupSpec", {}).setdefault("template", {}).setdefault("spec", {})
            head.setdefault("containers", []).append(submitter_container(with_status(rayjob, new), cluster_spec))
            head["restartPolicy"] = "Never"
        cluster = {
            "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}", "kind": keys.RAYCLUSTER_KIND,
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "annotations": annotations,
                         "ownerReferences": [_owner_ref(rayjob)]},
            "spec": cluster_spec,
        }
        if spec.get("submissionMode") == K8S_JOB_MODE:  # only in K8sJobMode does the RayCluster get the metadata
            self._add_batch_scheduler_metadata(rayjob, cluster)
        log.info("RayJob %s: creating RayCluster %s", _key(rayjob), name)
        try:
            resp = self.custom.create_namespaced_custom_object(
                keys.RAY_GROUP, keys.RAY_VERSION, meta["namespace"], keys.RAYCLUSTER_PLURAL, cluster,
                _preload_content=False)
        except ApiException as exc:
            self._event(rayjob, "Warning", "FailedToCreateRayCluster",
                        f"Failed to create RayCluster {meta['namespace']}/{name}: {(exc.body or exc.reason)!s:.300}")
            return None  # 409: already there, our cache is behind; otherwise requeue, as KubeRay returns err
        created: Obj = json.loads(resp.data)
        self.rayclusters.apply(created)
        self._event(rayjob, "Normal", "CreatedRayCluster", f"Created RayCluster {meta['namespace']}/{name}")
        return created

    def _create_submitter_if_needed(self, rayjob: Obj, new: Obj, cluster: Obj) -> bool:
        """createK8sJobIfNeed + getSubmitterTemplate + createNewK8sJob: the batch/v1 Job named after the RayJob."""
        if self._submitter_of(rayjob) is not None:
            return True
        meta, spec = _meta(rayjob), rayjob["spec"]
        template = copy.deepcopy(spec.get("submitterPodTemplate") or {})
        cluster_spec = cluster.get("spec") or {}
        if not template:
            template = {"spec": {"containers": [{}], "restartPolicy": "Never"}}
            template["spec"]["containers"][0] = submitter_container(with_status(rayjob, new), cluster_spec)
        else:
            container = template.setdefault("spec", {}).setdefault("containers", [{}])[0]
            defaults = submitter_container(with_status(rayjob, new), cluster_spec)
            if not container.get("command"):
                container["command"], container["args"] = defaults["command"], defaults["args"]
            container["env"] = [*(container.get("env") or []), *defaults["env"]]
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), keys.RAY_ORIGINATED_FROM_CR_NAME: meta["name"],
                           keys.RAY_ORIGINATED_FROM_CRD: keys.RAYJOB_KIND,
                           keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR}
        # TEST ONLY: the submitter's pod carries the "Ray job"'s timing for the stand-in's kubelet.
        own = _annotations(rayjob)
        tmeta["annotations"] = {**(tmeta.get("annotations") or {}),
                                keys.TEST_RUN_SECONDS: str(self._run_seconds(rayjob)),
                                **{k: own[k] for k in (keys.TEST_EXIT_CODE, keys.TEST_TERMINATE_SECONDS) if k in own}}
        self._add_batch_scheduler_metadata(rayjob, template)  # createK8sJobIfNeed: the RayJob is the parent
        backoff = (spec.get("submitterConfig") or {}).get("backoffLimit")
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": {keys.RAY_ORIGINATED_FROM_CR_NAME: meta["name"],
                                    keys.RAY_ORIGINATED_FROM_CRD: keys.RAYJOB_KIND,
                                    keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR},
                         "ownerReferences": [_owner_ref(rayjob)]},
            "spec": {"backoffLimit": 2 if backoff is None else int(backoff), "template": template},
        }
        log.info("RayJob %s: creating the submitter Job", _key(rayjob))
        try:
            resp = self.batch.create_namespaced_job(meta["namespace"], job, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:  # already there (cache behind): adopt it on the next pass
                return False
            self._event(rayjob, "Warning", "FailedToCreateRayJobSubmitter",
                        f"Failed to create new Kubernetes Job {meta['namespace']}/{meta['name']}: "
                        f"{(exc.body or exc.reason)!s:.300}")
            return False
        self.jobs.apply(json.loads(resp.data))
        self._event(rayjob, "Normal", "CreatedRayJobSubmitter",
                    f"Created Kubernetes Job {meta['namespace']}/{meta['name']}")
        return True

    def _delete_cluster_resources(self, rayjob: Obj, new: Obj) -> bool:
        """deleteClusterResources: True once the RayCluster object is gone (its pods may still be there)."""
        if rayjob["spec"].get("clusterSelector"):
            return True
        meta = _meta(rayjob)
        cluster = self.rayclusters.get(meta["namespace"], str(new.get("rayClusterName") or ""))
        if cluster is None:
            return True
        if not _meta(cluster).get("deletionTimestamp"):
            self._delete_cluster(cluster)
            self._event(rayjob, "Normal", "DeletedRayCluster",
                        f"Deleted cluster {meta['namespace']}/{_meta(cluster)['name']}")
        return False  # found: gone only when a later pass no longer finds it

    def _delete_submitter_job(self, rayjob: Obj) -> bool:
        """deleteSubmitterJob: True once the Job object is gone (HTTP and Sidecar modes have none)."""
        if rayjob["spec"].get("submissionMode") in (HTTP_MODE, SIDECAR_MODE):
            return True
        job = self._submitter_of(rayjob)
        if job is None:
            return True
        meta = _meta(job)
        if not meta.get("deletionTimestamp"):
            self._ignore_404(self.batch.delete_namespaced_job, meta["name"], meta["namespace"],
                             propagation_policy="Background")
            self._event(rayjob, "Normal", "DeletedRayJobSubmitter",
                        f"Deleted submitter K8s Job {meta['namespace']}/{meta['name']}")
        return False

    def _after_finish(self, rayjob: Obj, now: dt.datetime) -> None:
        """`case Complete, Failed`: deletionStrategy (1.7) or shutdownAfterJobFinishes."""
        spec, status = rayjob["spec"], rayjob.get("status") or {}
        if spec.get("clusterSelector"):
            return
        ended = _parse_ts(status.get("endTime"))
        if ended is None:
            return
        strategy = spec.get("deletionStrategy") if self.model == MODEL_17 else None
        if strategy is not None:
            if strategy.get("deletionRules") is not None:
                self._deletion_rules(rayjob, list(strategy["deletionRules"]), ended, now)
                return
            outcome = {SUCCEEDED_JOB: "onSuccess", FAILED_JOB: "onFailure"}.get(str(status.get("jobStatus")))
            policy = str(((strategy.get(outcome) or {}) if outcome else {}).get("policy") or "DeleteNone")
            if policy != "DeleteNone" and now >= ended + dt.timedelta(seconds=int(spec.get("ttlSecondsAfterFinished") or 0)):
                self._execute_deletion(rayjob, policy)
            return
        if not spec.get("shutdownAfterJobFinishes"):
            return
        if now < ended + dt.timedelta(seconds=int(spec.get("ttlSecondsAfterFinished") or 0)):
            return
        cluster = self.rayclusters.get(_meta(rayjob)["namespace"], str(status.get("rayClusterName") or ""))
        if cluster is not None and not _meta(cluster).get("deletionTimestamp"):
            log.info("RayJob %s: finished, deleting RayCluster %s", _key(rayjob), _meta(cluster)["name"])
            self._delete_cluster(cluster)

    def _deletion_rules(self, rayjob: Obj, rules: list[Obj], ended: dt.datetime, now: dt.datetime) -> None:
        """handleDeletionRules: of the matching, overdue, not yet done rules, run the most impactful one."""
        status = rayjob.get("status") or {}
        overdue = []
        for rule in rules:
            condition = rule.get("condition") or {}
            if "jobStatus" in condition:
                matched = condition["jobStatus"] == status.get("jobStatus")
            else:
                matched = condition.get("jobDeploymentStatus") == status.get("jobDeploymentStatus")
            if not matched or now < ended + dt.timedelta(seconds=int(condition.get("ttlSeconds") or 0)):
                continue
            if not self._deletion_done(rayjob, str(rule.get("policy"))):
                overdue.append(rule)
        if overdue:
            chosen = max(overdue, key=lambda r: DELETION_IMPACT.get(str(r.get("policy")), 0))
            self._execute_deletion(rayjob, str(chosen.get("policy")))

    def _deletion_done(self, rayjob: Obj, policy: str) -> bool:
        """isDeletionActionCompleted."""
        cluster = self.rayclusters.get(_meta(rayjob)["namespace"], str((rayjob.get("status") or {}).get("rayClusterName")))
        if policy == "DeleteNone":
            return True
        if policy == "DeleteSelf":
            return False
        if cluster is None or _meta(cluster).get("deletionTimestamp"):
            return True
        if policy == "DeleteWorkers":
            return all(g.get("suspend") for g in (cluster.get("spec") or {}).get("workerGroupSpecs") or [])
        return False

    def _execute_deletion(self, rayjob: Obj, policy: str) -> None:
        """executeDeletionPolicy."""
        meta = _meta(rayjob)
        cluster = self.rayclusters.get(meta["namespace"], str((rayjob.get("status") or {}).get("rayClusterName")))
        log.info("RayJob %s: executing deletion policy %s", _key(rayjob), policy)
        if policy == "DeleteSelf":
            self._ignore_404(self.custom.delete_namespaced_custom_object, keys.RAY_GROUP, keys.RAY_VERSION,
                             meta["namespace"], keys.RAYJOB_PLURAL, meta["name"])
        elif cluster is None:
            return
        elif policy == "DeleteCluster":
            self._delete_cluster(cluster)
        elif policy == "DeleteWorkers":  # suspendWorkerGroups: every group suspended, the head stays
            groups = copy.deepcopy((cluster.get("spec") or {}).get("workerGroupSpecs") or [])
            for group in groups:
                group["suspend"] = True
            cmeta = _meta(cluster)
            resp = self.custom.patch_namespaced_custom_object(
                keys.RAY_GROUP, keys.RAY_VERSION, cmeta["namespace"], keys.RAYCLUSTER_PLURAL, cmeta["name"],
                {"spec": {"workerGroupSpecs": groups}}, _preload_content=False)
            self.rayclusters.apply(json.loads(resp.data))
            self._event(rayjob, "Normal", "UpdatedRayCluster", "Set the `suspend` field to true for all worker "
                        f"groups in cluster {cmeta['namespace']}/{cmeta['name']}")

    def _submitter_of(self, rayjob: Obj) -> Obj | None:
        """common.RayJobK8sJobNamespacedName: the Job named after the RayJob."""
        meta = _meta(rayjob)
        return self.jobs.get(meta["namespace"], meta["name"])

    # ------------------------------------------------------------------ RayCluster
    def _reconcile_cluster(self, cluster: Obj, now: dt.datetime) -> None:
        """rayClusterReconcile: validate, reconcile the pods (backed off after a failed pass), write the status."""
        meta = _meta(cluster)
        if meta.get("deletionTimestamp") or managed_elsewhere(cluster):
            return
        uid = str(meta.get("uid"))
        problem = validate_cluster_metadata(meta["name"]) if self.model == MODEL_17 else None
        reason = "InvalidRayClusterMetadata"
        if problem is None:
            problem = validate_cluster_spec(cluster_spec_with_defaults(cluster.get("spec") or {}), self.model)
            reason = "InvalidRayClusterSpec"
        if problem is not None:
            what = "metadata" if reason == "InvalidRayClusterMetadata" else "spec"
            self._event(cluster, "Warning", reason, f"The RayCluster {what} is invalid {_key(cluster)}: {problem}")
            return
        backoff = self._backoff.setdefault(uid, _Backoff())
        if time.monotonic() < backoff.not_before:
            return
        error: PassError | None = None
        try:
            self._ensure_autoscaler_service_account(cluster)
            self._reconcile_pods(cluster)
        except PassError as exc:
            error = exc
            backoff.failures += 1
            backoff.not_before = time.monotonic() + backoff_seconds(backoff.failures, self.max_backoff_seconds)
            log.info("RayCluster %s: %s (%s); retrying in %.2fs", _key(cluster), exc, exc.reason,
                     backoff.not_before - time.monotonic())
        else:
            backoff.failures, backoff.not_before = 0, 0.0
        self._write_cluster_status(cluster, error, now)

    def _cluster_pods(self, cluster: Obj) -> list[Obj]:
        """common.RayClusterAllPodsAssociationOptions: every pod labelled with the cluster, deleting or not."""
        meta = _meta(cluster)
        return sorted((p for p in self.pods.items() if _meta(p).get("namespace") == meta["namespace"]
                       and _labels(p).get(keys.RAY_CLUSTER) == meta["name"]), key=lambda p: str(_meta(p)["name"]))

    def _head_pod(self, cluster: Obj) -> Obj | None:
        return next((p for p in self._cluster_pods(cluster) if _labels(p).get(keys.RAY_NODE_TYPE) == "head"), None)

    def _reconcile_pods(self, cluster: Obj) -> None:
        """reconcilePods; raises PassError where KubeRay returns an error."""
        meta, spec = _meta(cluster), cluster_spec_with_defaults(cluster.get("spec") or {})
        uid, pods = str(meta["uid"]), self._cluster_pods(cluster)
        # Suspend (reconcilePods@v1.7.0, the RayClusterStatusConditions gate on, its default since v1.3): pods are
        # deleted only once calculateStatus has set RayClusterSuspending; spec.suspend alone (before that, or
        # once Suspended) stops the reconcile of pods. Resumed, nothing is created until Suspended is False.
        # The 1.3 model writes no conditions: it follows the gate-off branch (v1.1-v1.2, and v1.3+ with the gate
        # off): spec.suspend deletes every pod at once, on every pass.
        suspending = suspend_status(cluster) if self.model == MODEL_17 else (CLUSTER_SUSPENDING if spec.get("suspend") else "")
        if suspending == CLUSTER_SUSPENDING:
            active = [p for p in pods if not _meta(p).get("deletionTimestamp")]
            for pod in active:  # deleteAllPods: one DeleteAllOf of the cluster's pods when any is active
                self._delete_pod(pod)
            if active:
                self._event(cluster, "Normal", "DeletedPod",
                            f"Deleted Pods for RayCluster {_key(cluster)} due to suspension")
            return
        if suspending == CLUSTER_SUSPENDED or spec.get("suspend"):
            return
        heads = [p for p in pods if _labels(p).get(keys.RAY_NODE_TYPE) == "head"]
        if self._expectations.satisfied(uid, HEAD_GROUP, {_meta(p)["name"] for p in heads}):
            if len(heads) == 1:
                delete, why = should_delete_pod(heads[0], "head")
                if delete:
                    self._delete_pod(heads[0])
                    self._expectations.expect_deleted(uid, HEAD_GROUP, _meta(heads[0])["name"])
                    self._event(cluster, "Normal", "DeletedHeadPod", f"Deleted head Pod {_key(heads[0])}")
                    raise PassError("", why)
            elif not heads:
                provisioned = _condition(list((cluster.get("status") or {}).get("conditions") or []),
                                         "RayClusterProvisioned")
                skip = (self.model == MODEL_17 and provisioned is not None and provisioned.get("status") == "True"
                        and _annotations(cluster).get(DISABLE_HEAD_RESTART) == "true")
                if not skip:
                    self._create_pod(cluster, self._head_pod_body(cluster, spec), "FailedCreateHeadPod")
            else:
                names = [_meta(p)["name"] for p in heads]
                raise PassError("", f"{len(heads)} head pods found {names}. Please delete extra head pods")
        for group in spec.get("workerGroupSpecs") or []:
            name = str(group.get("groupName", ""))
            mine = [p for p in pods if _labels(p).get(keys.RAY_NODE_TYPE) == "worker"
                    and _labels(p).get(keys.RAY_GROUP_LABEL) == name]
            if not self._expectations.satisfied(uid, name, {_meta(p)["name"] for p in mine}):
                continue
            if group.get("suspend"):
                for pod in mine:
                    if not _meta(pod).get("deletionTimestamp"):
                        self._delete_pod(pod)
                        self._expectations.expect_deleted(uid, name, _meta(pod)["name"])
                continue
            unhealthy = [p for p in mine if should_delete_pod(p, "worker")[0]]
            for pod in unhealthy:
                self._delete_pod(pod)
                self._expectations.expect_deleted(uid, name, _meta(pod)["name"])
                self._event(cluster, "Normal", "DeletedWorkerPod", f"Deleted worker Pod {_key(pod)}")
            if unhealthy:
                raise PassError("", f"delete {len(unhealthy)} unhealthy worker Pods")
            # reconcilePods@v1.7.0: "Always remove the specified WorkersToDelete - regardless of the value of
            # Replicas" (the Ray autoscaler's way to scale down: it lowers replicas and names the idle
            # workers); a name already gone is ignored, the list is left for the autoscaler to clear, and the
            # named pods do not count in this pass's diff.
            named = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
            for pod in [p for p in mine if _meta(p)["name"] in named]:
                if not _meta(pod).get("deletionTimestamp"):
                    self._delete_pod(pod)
                    self._expectations.expect_deleted(uid, name, _meta(pod)["name"])
                    self._event(cluster, "Normal", "DeletedWorkerPod", f"Deleted pod {_key(pod)}")
            mine = [p for p in mine if _meta(p)["name"] not in named]
            diff = desired_workers(group, self.model) - len(mine)
            if diff > 0:
                used = {_int(_labels(p).get(WORKER_REPLICA_INDEX_LABEL), -1) for p in mine}
                for _ in range(diff):
                    index = next(i for i in range(len(used) + diff + 1) if i not in used)
                    used.add(index)
                    body = self._worker_pod_body(cluster, spec, group, index)
                    self._create_pod(cluster, body, "FailedCreateWorkerPod")
            elif diff < 0 and not autoscaling_enabled(spec):
                for pod in mine[:-diff]:
                    log.info("RayCluster %s: scaling down group %s, deleting %s", _key(cluster), name, _meta(pod)["name"])
                    self._delete_pod(pod)
                    self._expectations.expect_deleted(uid, name, _meta(pod)["name"])
                    self._event(cluster, "Normal", "DeletedWorkerPod", f"Deleted Pod {_key(pod)}")

    def _head_pod_body(self, cluster: Obj, spec: Obj) -> Obj:
        """buildHeadPod: DefaultHeadPodTemplate + headSidecarContainers + batch scheduler metadata."""
        meta = _meta(cluster)
        template = copy.deepcopy((spec.get("headGroupSpec") or {}).get("template") or {})
        pod_spec = template.setdefault("spec", {})
        if autoscaling_enabled(spec):
            options = spec.get("autoscalerOptions") or {}
            pod_spec["serviceAccountName"] = self._autoscaler_service_account(cluster)
            ray = (pod_spec.get("containers") or [{}])[0]
            autoscaler: Obj = {
                "name": AUTOSCALER_CONTAINER, "image": options.get("image") or ray.get("image", ""),
                "imagePullPolicy": options.get("imagePullPolicy") or "IfNotPresent",
                "command": ["/bin/bash", "-c", "--"],
                "args": ["ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) "
                         "--cluster-namespace $(RAY_CLUSTER_NAMESPACE)"],
                "env": [{"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {
                            "fieldPath": f"metadata.labels['{keys.RAY_CLUSTER}']"}}},
                        {"name": "RAY_CLUSTER_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        *(options.get("env") or [])],
                "resources": copy.deepcopy(options.get("resources") or {
                    "requests": dict(AUTOSCALER_RESOURCES), "limits": dict(AUTOSCALER_RESOURCES)}),
            }
            pod_spec.setdefault("containers", []).append(autoscaler)
        pod_spec.setdefault("containers", []).extend(copy.deepcopy(list(self.config.head_sidecars)))
        pod = self._pod_body(cluster, template, pod_name_prefix(meta["name"], "head"),
                             ray_pod_labels(meta["name"], "head", HEAD_GROUP, _labels(template)))
        self._add_batch_scheduler_metadata(cluster, pod)
        return pod

    def _worker_pod_body(self, cluster: Obj, spec: Obj, group: Obj, index: int) -> Obj:
        """buildWorkerPod: DefaultWorkerPodTemplate (wait-gcs-ready) + workerSidecarContainers + batch scheduler."""
        meta = _meta(cluster)
        name = str(group.get("groupName", ""))
        template = copy.deepcopy(group.get("template") or {})
        pod_spec = template.setdefault("spec", {})
        ray = (pod_spec.get("containers") or [{}])[0]
        if self.config.init_container_injection:
            pod_spec.setdefault("initContainers", []).append({
                "name": INIT_CONTAINER, "image": ray.get("image", ""),
                **({"imagePullPolicy": ray["imagePullPolicy"]} if ray.get("imagePullPolicy") else {}),
                "command": ["/bin/bash", "-c", "--"],
                "args": [f"until ray health-check --address {meta['name']}-head-svc.{meta['namespace']}.svc.cluster"
                         ".local:6379 > /dev/null 2>&1; do sleep 5; done"],
                "env": copy.deepcopy(ray.get("env") or []),
                "volumeMounts": copy.deepcopy(ray.get("volumeMounts") or []),
                "resources": {"requests": dict(INIT_CONTAINER_RESOURCES), "limits": dict(INIT_CONTAINER_RESOURCES)},
            })
        pod_spec.setdefault("containers", []).extend(copy.deepcopy(list(self.config.worker_sidecars)))
        labels = ray_pod_labels(meta["name"], "worker", name, _labels(template))
        if self.model == MODEL_17:
            labels[WORKER_REPLICA_INDEX_LABEL] = str(index)
        pod = self._pod_body(cluster, template, pod_name_prefix(f"{meta['name']}-{name}", "worker"), labels)
        self._add_batch_scheduler_metadata(cluster, pod)
        return pod

    def _pod_body(self, cluster: Obj, template: Obj, generate_name: str, labels: dict[str, str]) -> Obj:
        meta = _meta(cluster)
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        own = _annotations(cluster)
        if keys.TEST_TERMINATE_SECONDS in own:  # TEST ONLY: how long the stand-in's kubelet takes to stop it
            annotations.setdefault(keys.TEST_TERMINATE_SECONDS, own[keys.TEST_TERMINATE_SECONDS])
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": generate_name, "namespace": meta["namespace"], "labels": labels,
                         "annotations": annotations, "ownerReferences": [_owner_ref(cluster)]},
            "spec": copy.deepcopy(template.get("spec") or {}),
        }

    def _add_batch_scheduler_metadata(self, parent: Obj, child: Obj) -> None:
        """AddMetadataToChildResource(parent, child) of the configured batch scheduler: schedulerName on a pod or
        pod template (utils.AddSchedulerNameToObject; nothing on a RayCluster), and scheduler-plugins' pod-group
        label naming the parent when the parent carries `ray.io/gang-scheduling-enabled`."""
        scheduler = self.config.scheduler_name
        if scheduler is None:
            return
        if self.config.batch_scheduler == "scheduler-plugins" and keys.GANG_ENABLED_LABEL in _labels(parent):
            meta = child.setdefault("metadata", {})
            meta["labels"] = {**(meta.get("labels") or {}), SCHEDULER_PLUGINS_POD_GROUP: _meta(parent)["name"]}
        if child.get("kind") != keys.RAYCLUSTER_KIND:
            child.setdefault("spec", {})["schedulerName"] = scheduler

    def _create_pod(self, cluster: Obj, pod: Obj, reason: str) -> None:
        """createHeadPod / createWorkerPod: one create call; a refusal ends the pass."""
        try:
            resp = self.core.create_namespaced_pod(_meta(cluster)["namespace"], pod, _preload_content=False)
        except ApiException as exc:
            detail = str(exc.body or exc.reason)[:400]
            kind = "head" if reason == "FailedCreateHeadPod" else "worker"
            if kind == "head":
                message = f"Failed to create head Pod {_meta(cluster)['namespace']}/{pod['metadata']['generateName']}, {detail}"
            else:
                message = f"Failed to create worker Pod for the cluster {_key(cluster)}, {detail}"
            self._event(cluster, "Warning", f"FailedToCreate{kind.capitalize()}Pod", message)
            raise PassError(reason, message) from exc
        created = json.loads(resp.data)
        log.info("RayCluster %s: created %s pod %s", _key(cluster), _labels(created).get(keys.RAY_NODE_TYPE),
                 _meta(created)["name"])
        self.pods.apply(created)

    def _delete_pod(self, pod: Obj) -> None:
        """r.Delete(pod): the default grace period; the pod stays (with a deletionTimestamp) until it stops."""
        meta = _meta(pod)
        try:
            resp = self.core.delete_namespaced_pod(meta["name"], meta["namespace"], _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                self.pods.forget(meta["namespace"], meta["name"])
                return
            raise PassError("FailedDeleteWorkerPod", f"Failed deleting pod {_key(pod)}, {exc.status}") from exc
        body = json.loads(resp.data)
        if body.get("kind") == "Pod":
            self.pods.apply(body)
        else:  # a Status: deleted at once (no node, or terminal)
            self.pods.forget(meta["namespace"], meta["name"])

    def _autoscaler_service_account(self, cluster: Obj) -> str:
        """utils.GetHeadGroupServiceAccountName, clipped as utils.CheckName does."""
        head = (((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        name = str(head.get("serviceAccountName") or _meta(cluster)["name"])
        return name[len(name) - 50:] if len(name) > 50 else name

    def _ensure_autoscaler_service_account(self, cluster: Obj) -> None:
        """reconcileAutoscalerServiceAccount: the cluster-named ServiceAccount, owned by the RayCluster."""
        spec = cluster.get("spec") or {}
        head = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        if not autoscaling_enabled(spec) or head.get("serviceAccountName"):
            return
        meta, name = _meta(cluster), self._autoscaler_service_account(cluster)
        if self.serviceaccounts.get(meta["namespace"], name) is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": meta["namespace"],
                             "labels": {keys.RAY_CLUSTER: meta["name"]}, "ownerReferences": [_owner_ref(cluster)]}}
        try:
            resp = self.core.create_namespaced_service_account(meta["namespace"], body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise PassError("", f"Failed creating service account {meta['namespace']}/{name}, {exc.status}") from exc
            return
        self.serviceaccounts.apply(json.loads(resp.data))

    def _write_cluster_status(self, cluster: Obj, error: PassError | None, now: dt.datetime) -> None:
        """calculateStatus + updateRayClusterStatus (written only when something but lastUpdateTime changed)."""
        meta, spec = _meta(cluster), cluster_spec_with_defaults(cluster.get("spec") or {})
        old = cluster.get("status") or {}
        pods = self._cluster_pods(cluster)
        workers = [p for p in pods if _labels(p).get(keys.RAY_NODE_TYPE) == "worker"]
        groups = spec.get("workerGroupSpecs") or []
        desired = sum(desired_workers(g, self.model) for g in groups)
        stamp = _ts(now)
        new: Obj = copy.deepcopy(old)
        new.update({
            "desiredWorkerReplicas": desired,
            "minWorkerReplicas": sum(int(g.get("minReplicas") or 0) * int(g.get("numOfHosts") or 1)
                                     for g in groups if not g.get("suspend")),
            "maxWorkerReplicas": sum(int(g.get("maxReplicas") or 0) * int(g.get("numOfHosts") or 1)
                                     for g in groups if not g.get("suspend")),
            "readyWorkerReplicas": sum(1 for p in workers if _running_and_ready(p)),
            "availableWorkerReplicas": sum(1 for p in workers if (p.get("status") or {}).get("phase") == "Running"),
            "observedGeneration": meta.get("generation", 0),
        })
        all_running = bool(pods) and all(_running_and_ready(p) for p in pods)
        if error is None and len(pods) == desired + 1 and all_running:
            new["state"], new["reason"] = "ready", ""
        if spec.get("suspend") and not pods:
            new["state"] = "suspended"
        if self.model == MODEL_17:
            conditions = copy.deepcopy(list(old.get("conditions") or []))
            suspending = suspend_status(cluster)
            if error is not None and error.reason:
                _set_condition(conditions, {"type": "ReplicaFailure", "status": "True", "reason": error.reason,
                                            "message": str(error)}, stamp)
            elif error is None:
                conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
            head = self._head_pod(cluster)
            if head is None:
                _set_condition(conditions, {"type": "HeadPodReady", "status": "False", "reason": "HeadPodNotFound",
                                            "message": "Head Pod not found"}, stamp)
            else:
                ready = _running_and_ready(head)
                _set_condition(conditions, {"type": "HeadPodReady", "status": "True" if ready else "False",
                                            "reason": "HeadPodRunningAndReady" if ready else "HeadPodNotReady",
                                            "message": ""}, stamp)
            provisioned = _condition(conditions, "RayClusterProvisioned")
            if (provisioned is None or provisioned.get("status") != "True") and suspending != CLUSTER_SUSPENDED:
                _set_condition(conditions, {
                    "type": "RayClusterProvisioned", "status": "True" if all_running else "False",
                    "reason": "AllPodRunningAndReadyFirstTime" if all_running else "RayClusterPodsProvisioning",
                    "message": ("All Ray Pods are ready for the first time" if all_running
                                else "RayCluster Pods are being provisioned for first time")}, stamp)
            _set_suspend_conditions(conditions, suspending, bool(spec.get("suspend")), bool(pods), stamp)
            new["conditions"] = conditions
        if new.get("state") != old.get("state"):
            new.setdefault("stateTransitionTimes", {})[str(new.get("state"))] = stamp
        if new == old:
            return
        new["lastUpdateTime"] = stamp
        updated = self._replace_status(keys.RAYCLUSTER_PLURAL, meta, new, guarded=True)
        if updated is not None:
            self.rayclusters.apply(updated)

    def _delete_cluster(self, cluster: Obj) -> None:
        """r.Delete(RayCluster): default (background) propagation; the garbage collector deletes its pods."""
        meta = _meta(cluster)
        log.info("deleting RayCluster %s", _key(cluster))
        self._ignore_404(self.custom.delete_namespaced_custom_object, keys.RAY_GROUP, keys.RAY_VERSION,
                         meta["namespace"], keys.RAYCLUSTER_PLURAL, meta["name"])

    @staticmethod
    def _ignore_404(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise


def with_status(rayjob: Obj, status: Obj) -> Obj:
    """The RayJob as it will be once `status` is written (what KubeRay's in-memory object holds)."""
    return {**rayjob, "status": status}


def _container_state(pod: Obj, name: str) -> Obj:
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        if entry.get("name") == name:
            return dict(entry.get("state") or {})
    return {}


def _finished_at(pod: Obj) -> str | None:
    for entry in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (entry.get("state") or {}).get("terminated")
        if terminated:
            return str(terminated.get("finishedAt"))
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m devcluster.kuberay_standin --kubeconfig K`: run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the identity to act as")
    parser.add_argument("--model", choices=MODELS, default=MODEL_17, help="which KubeRay to model (default 1.7)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a KubeRay operator Configuration file (config.ray.io/v1alpha1), YAML")
    parser.add_argument("--default-run-seconds", type=float, default=DEFAULT_RUN_SECONDS,
                        help=f"run time of a RayJob without the {keys.TEST_RUN_SECONDS} annotation")
    parser.add_argument("--max-backoff-seconds", type=float, default=DEFAULT_MAX_BACKOFF_SECONDS,
                        help="cap of the retry backoff after a failed RayCluster pass")
    parser.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    parser.add_argument("--serve-label", default=None,
                        help=f"serve the namespaces labelled {keys.TEST_KUBERAY_STANDIN}=<this> (default: the model)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    try:
        operator_config = OperatorConfig.load(args.config, os.environ)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        parser.error(f"--config {args.config}: {exc}")
    new_client: Any = config.new_client_from_config
    api = new_client(config_file=args.kubeconfig)
    standin = KubeRayStandIn(api, model=args.model, operator_config=operator_config,
                             default_run_seconds=args.default_run_seconds,
                             max_backoff_seconds=args.max_backoff_seconds, namespace=args.namespace,
                             serve_label=args.serve_label)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin.start()
    log.info("KubeRay stand-in started (TEST ONLY): model %s, serving %s=%s, batch scheduler %r, init container "
             "injection %s, %d head / %d worker sidecars", args.model, keys.TEST_KUBERAY_STANDIN, standin.serve_label,
             operator_config.batch_scheduler, operator_config.init_container_injection,
             len(operator_config.head_sidecars), len(operator_config.worker_sidecars))
    if standin.wait_synced(60.0):
        log.info("caches synced")
    while not done.wait(1.0):
        pass
    log.info("stopping")
    try:
        standin.stop(timeout=10.0)
    finally:
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
