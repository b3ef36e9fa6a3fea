"""Every label, annotation, API group/version and name format rayqueue reads or writes, in one place."""

from __future__ import annotations

from typing import Final

# --- API groups and versions -------------------------------------------------------------------
QUOTA_GROUP: Final = "scheduling.sigs.k8s.io"
QUOTA_VERSION: Final = "v1beta1"
QUOTA_TREE_PLURAL: Final = "elasticquotatrees"
QUOTA_TREE_KIND: Final = "ElasticQuotaTree"
QUOTA_TREE_NAME: Final = "elasticquotatree"
QUOTA_TREE_NAMESPACE: Final = "kube-system"

QUEUE_GROUP: Final = "scheduling.x-k8s.io"
QUEUE_VERSION: Final = "v1alpha1"
QUEUE_PLURAL: Final = "queues"
QUEUE_KIND: Final = "Queue"
QUEUE_UNIT_PLURAL: Final = "queueunits"
QUEUE_UNIT_KIND: Final = "QueueUnit"
QUEUE_NAMESPACE: Final = "kube-queue"

RAY_GROUP: Final = "ray.io"
RAY_VERSION: Final = "v1"
RAYJOB_PLURAL: Final = "rayjobs"
RAYJOB_KIND: Final = "RayJob"
RAYCLUSTER_PLURAL: Final = "rayclusters"
RAYCLUSTER_KIND: Final = "RayCluster"

BATCH_GROUP: Final = "batch"
BATCH_VERSION: Final = "v1"
BATCH_JOB_PLURAL: Final = "jobs"
BATCH_JOB_KIND: Final = "Job"  # KubeRay's K8sJobMode submitter is a batch/v1 Job controlled by the RayJob

# --- queue annotations and labels (kube-queue compatible) -------------------------------------
ENQUEUE_TIMESTAMP: Final = "kube-queue/job-enqueue-timestamp"
DEQUEUE_TIMESTAMP: Final = "kube-queue/job-dequeue-timestamp"
QUOTA_FULLNAME: Final = "kube-queue/quota-fullname"
PARENT_QUOTA_FULLNAME: Final = "kube-queue/parent-quota-fullname"
MAX_JOBS: Final = "kube-queue/max-jobs"  # optional per-quota job cap, a key in a node's min/max
CREATED_BY_KUBEQUEUE: Final = "create-by-kubequeue"
PRIORITY_OVERRIDE: Final = "scheduling.x-k8s.io/priority"
QUEUE_UNIT_SUFFIX: Final = "-ray-qu"
CLUSTER_QUEUE_UNIT_SUFFIX: Final = "-rc-qu"  # the QueueUnit of a bare RayCluster (queued as a job of its own)

# --- quota labels ------------------------------------------------------------------------------
QUOTA_NAME: Final = "quota.scheduling.alibabacloud.com/name"
QUOTA_PREEMPTIBLE: Final = "quota.scheduling.alibabacloud.com/preemptible"

# --- gang labels -------------------------------------------------------------------------------
POD_GROUP_NAME: Final = "pod-group.scheduling.sigs.k8s.io/name"
POD_GROUP_MIN_AVAILABLE: Final = "pod-group.scheduling.sigs.k8s.io/min-available"
POD_GROUP_X: Final = "scheduling.x-k8s.io/pod-group"
GANG_SCHEDULER_LABEL: Final = "ray.io/scheduler-name"  # seed: value "kube-scheduler"
GANG_SCHEDULER_VALUE: Final = "kube-scheduler"
GANG_ENABLED_LABEL: Final = "ray.io/gang-scheduling-enabled"  # upstream KubeRay: value "true"

# --- KubeRay labels ----------------------------------------------------------------------------
RAY_CLUSTER: Final = "ray.io/cluster"
RAY_NODE_TYPE: Final = "ray.io/node-type"
# The node type KubeRay gives the pod of its Redis-cleanup Job (raycluster_controller.go buildRedisCleanupJob: built
# from the head template, so it inherits the gang labels stamped there, but runs alone while the cluster is deleted).
RAY_NODE_TYPE_REDIS_CLEANUP: Final = "redis-cleanup"
RAY_GROUP_LABEL: Final = "ray.io/group"
RAY_IS_RAY_NODE: Final = "ray.io/is-ray-node"
RAY_IDENTIFIER: Final = "ray.io/identifier"
RAY_ORIGINATED_FROM_CR_NAME: Final = "ray.io/originated-from-cr-name"
RAY_ORIGINATED_FROM_CRD: Final = "ray.io/originated-from-crd"
KUBERNETES_CREATED_BY: Final = "app.kubernetes.io/created-by"
KUBERAY_OPERATOR: Final = "kuberay-operator"
KUBERNETES_APP_NAME: Final = "app.kubernetes.io/name"
KUBERAY_APP_NAME: Final = "kuberay"  # KubeRay's value of app.kubernetes.io/name on Ray pods
JOB_NAME_LABEL: Final = "job-name"  # set by the batch/v1 Job controller on the submitter's pod

# --- TEST-ONLY: read by devcluster's KubeRay stand-in, never by the product ----------------------
TEST_RUN_SECONDS: Final = "rayqueue.test/run-seconds"  # how long the stand-in's "Ray job" runs
TEST_TERMINATE_SECONDS: Final = "rayqueue.test/terminate-seconds"  # how long a deleted pod takes to stop
TEST_EXIT_CODE: Final = "rayqueue.test/exit-code"  # the exit code of the stand-in's "Ray job" (default 0)
TEST_KUBERAY_STANDIN: Final = "rayqueue.test/kuberay-standin"  # namespace label: which stand-in serves it

# --- Kubernetes well-known ---------------------------------------------------------------------
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# The Namespace label the pod webhooks' namespaceSelector matches (docs/security.md, rules N1-N4): a namespace the
# tree binds must carry it before it is bound (N1), keeps it while bound (N2), gets it when re-created (N3).
QUOTA_NAMESPACE_LABEL: Final = "rayqueue.io/quota-namespace"
QUOTA_NAMESPACE_VALUE: Final = "true"
DEFAULT_SCHEDULER: Final = "default-scheduler"

# --- events ------------------------------------------------------------------------------------
EVENT_ENQUEUED: Final = "Enqueued"
EVENT_DEQUEUED: Final = "Dequeued"
EVENT_PREEMPTED: Final = "Preempted"
EVENT_REQUEUED: Final = "Requeued"
EVENT_PRIORITY_CHANGED: Final = "PriorityChanged"
EVENT_GANG_FAILED: Final = "GangFailedScheduling"
EVENT_GROWTH_REFUSED: Final = "GrowthRefused"  # on a RayCluster: a pod beyond its job's reservation does not fit

# --- growth (docs/growth.md) ---------------------------------------------------------------------
# The RayCluster status condition the controller writes while a growth pod of the cluster is refused by the
# quota (status "True", reason QuotaExceeded, the pod's quota message) and once none is (status "False",
# reason Fits). Read-modify-write of status.conditions: KubeRay's own conditions are kept.
RAYQUEUE_QUOTA_CONDITION: Final = "RayQueueQuota"
REASON_QUOTA_EXCEEDED: Final = "QuotaExceeded"
REASON_FITS: Final = "Fits"

# --- defaults ----------------------------------------------------------------------------------
# KubeRay's GetDefaultSubmitterContainer: requests cpu 500m / memory 200Mi, limits 1 / 1Gi.
DEFAULT_SUBMITTER_REQUESTS: Final = {"cpu": "500m", "memory": "200Mi"}
DEFAULT_SUBMITTER_LIMITS: Final = {"cpu": "1", "memory": "1Gi"}


def queue_unit_name(rayjob_name: str) -> str:
    """`<rayjob>-ray-qu`, as the guide shows (`rayjob-video-h4x2q-ray-qu`)."""
    return f"{rayjob_name}{QUEUE_UNIT_SUFFIX}"


def cluster_queue_unit_name(raycluster_name: str) -> str:
    """`<raycluster>-rc-qu`: a bare RayCluster's QueueUnit (beside `<rayjob>-ray-qu`, so the two never collide)."""
    return f"{raycluster_name}{CLUSTER_QUEUE_UNIT_SUFFIX}"


def queue_generate_name(full_name: str) -> str:
    """`root/algorithm/video` -> `root-algorithm-video-` (the Queue's generateName)."""
    return full_name.replace("/", "-") + "-"

# --- rayqueue's own -----------------------------------------------------------------------------
# The webhook records who last changed a RayJob's priority (user, old -> new, time); the controller turns it
# into a PriorityChanged event. Written only by the webhook's mutation: a tenant cannot forge it.
PRIORITY_CHANGE_RECORD: Final = "rayqueue.io/last-priority-change"
CONTROLLER_OWNED_ANNOTATIONS: Final = (ENQUEUE_TIMESTAMP, DEQUEUE_TIMESTAMP, PRIORITY_CHANGE_RECORD)
# On an admitted bare RayCluster, written by the controller's dequeue patch with the dequeue stamp: the desired
# replicas of each worker group it was admitted with (JSON, {"group": replicas}). Its reservation keeps those
# counts while the autoscaler or the tenant edits replicas (more workers are growth); removed at requeue.
ADMITTED_REPLICAS: Final = "rayqueue.io/admitted-replicas"
# Stamped by the extender on a gang's pending members when the gang gets a placement: kube-scheduler moves an
# unschedulable pod back to its active queue when the pod's metadata changes, so members that were refused
# before the gang was complete are retried at once instead of after the scheduler's periodic flush.
GANG_PLACED: Final = "rayqueue.io/gang-placed"
# Stamped on pending pods when the extender's watches are live again, so kube-scheduler retries at once the pods it
# answered "not synced" meanwhile (an annotation change moves a pod out of the unschedulable queue).
RESYNCED: Final = "rayqueue.io/extender-resynced"
# On a QueueUnit: the priority the controller last wrote to its spec. A spec.priority that differs from it was
# set by someone else (kube-queue's way to reprioritise): the controller adopts it onto the RayJob.
SYNCED_PRIORITY: Final = "rayqueue.io/synced-priority"
# On a QueueUnit, stamped by the webhook on an UPDATE that changes spec.priority: who did it.
PRIORITY_CHANGED_BY: Final = "rayqueue.io/priority-changed-by"
# Set by the user on a RayJob: how long it runs once admitted (a Go duration, "45m", "1h30m"); the start-time
# estimate of the jobs behind it uses it before spec.activeDeadlineSeconds and the leaf's runtime history.
EXPECTED_RUNTIME: Final = "rayqueue.io/expected-runtime"
# Cooperative preemption (docs/preemption.md). In a quota node's `attributes`: how long a reclaim victim of that
# node (or of a node below it, which inherits it) may run on after its notice (a Go duration; default 0: at once).
PREEMPTION_GRACE: Final = "rayqueue.io/preemption-grace"
# In a quota node's `attributes`, inherited like the grace: how long a job of that node runs, once admitted, before
# reclaim may pick it (a Go duration; default 0: at once). No job is suspended twice within it (KAI's reclaimMinRuntime).
MIN_RUNTIME: Final = "rayqueue.io/min-runtime"
# Liveness (common/liveness.py). In a quota node's `attributes`, inherited like the grace: how long an admitted job
# may take to start before it is suspended and requeued (a Go duration; default 10m; 0 turns it off), and after how
# many such timeouts in a row it is parked (an integer; default 3).
ADMISSION_TIMEOUT: Final = "rayqueue.io/admission-timeout"
ADMISSION_RETRIES: Final = "rayqueue.io/admission-retries"
# On a queued job, written only by the controller: its admission timeouts in a row (removed once it starts). At
# the node's retries it is parked; removing the annotation (`kubectl rayqueue retry`) retries it.
ADMISSION_TIMEOUTS: Final = "rayqueue.io/admission-timeouts"
EVENT_ADMISSION_TIMEOUT: Final = "AdmissionTimeout"
# On a finished queued RayJob whose RayCluster KubeRay leaves running (common/liveness.py "once KubeRay stops"),
# written only by the controller when KubeRay records no status.endTime (ValidationFailed): when it saw KubeRay
# stop (Go layout). The cluster is deleted ttlSecondsAfterFinished after it, with this event.
KUBERAY_STOPPED_AT: Final = "rayqueue.io/kuberay-stopped-at"
EVENT_LEFTOVER_DELETED: Final = "LeftoverClusterDeleted"
# On a reclaim victim's RayJob and on every pod of it, written only by the controller: when it will be
# suspended, for whom and why (JSON; common/preemption.py). Pods read it through a downward-API volume.
PREEMPTION_NOTICE: Final = "rayqueue.io/preemption-notice"
# Set by the job on its own RayJob (any value) once it has checkpointed: the controller suspends it at once.
CHECKPOINTED: Final = "rayqueue.io/checkpointed"
EVENT_PREEMPTION_NOTICE: Final = "PreemptionNotice"
# A queued bare RayCluster's controller-owned annotations (webhook rule R4): the RayJob's, the size it was admitted
# with, and the preemption notice (rule C1's, on a RayCluster).
CLUSTER_CONTROLLER_OWNED_ANNOTATIONS: Final = (*CONTROLLER_OWNED_ANNOTATIONS, ADMITTED_REPLICAS, PREEMPTION_NOTICE)
EVENT_PREEMPTION_NOTICE_WITHDRAWN: Final = "PreemptionNoticeWithdrawn"
# Fair share over time (common/fair_share.py, docs/fairshare.md). In the ROOT's `attributes`: the half-life of the
# decayed usage (a Go duration; unset: today's order, priority then enqueue time). In any node's `attributes`: its
# weight among its siblings (a positive number; default 1; not inherited: a weight is relative to its siblings).
FAIR_SHARE_HALF_LIFE: Final = "rayqueue.io/fair-share-half-life"
FAIR_SHARE_WEIGHT: Final = "rayqueue.io/fair-share-weight"
# In the root's `attributes`: "true" lets a waiting job of a node below its fair share reclaim borrowed capacity from a
# node above its share (docs/fairshare.md, "Reclaim for fairness"); unset or "false": fair share never preempts.
FAIR_SHARE_PREEMPTION: Final = "rayqueue.io/fair-share-preemption"
# Elastic jobs (docs/elastic.md). A label on a RayJob or bare RayCluster: "true" makes it elastic without the Ray
# autoscaler (enableInTreeAutoscaling makes it elastic anyway): its reservation holds each worker group's floor
# (minReplicas x numOfHosts); workers above it are growth, and reclaim shrinks it to its floor before suspending it.
ELASTIC: Final = "rayqueue.io/elastic"
# On an elastic RayJob admitted below its replicas (no autoscaler): the per-group replicas it asked for (JSON,
# {"group": replicas}), written by the dequeue patch when it lowers replicas; the expansion raises the RayCluster's
# replicas toward it, never past it.
ELASTIC_TARGET: Final = "rayqueue.io/elastic-target"
EVENT_SHRUNK: Final = "Shrunk"  # on the job and its QueueUnit: workers above the floor taken by reclaim
EVENT_EXPANDED: Final = "Expanded"  # on the job: an elastic job's RayCluster raised toward its target
