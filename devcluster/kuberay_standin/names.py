"""KubeRay's names and values as the stand-in reads them from KubeRay's source, and the test-only annotations."""

from __future__ import annotations

from typing import Any, Final

Obj = dict[str, Any]

MODEL_17, MODEL_13 = "1.7", "1.3"
MODELS = (MODEL_17, MODEL_13)
DEFAULT_RUN_SECONDS = 3.0
DEFAULT_MAX_BACKOFF_SECONDS = 8.0
INT32_MAX = 2**31 - 1

# RayJob.status values (apis/ray/v1/rayjob_types.go@v1.7.0).
NEW, INITIALIZING, RUNNING, COMPLETE, FAILED = "", "Initializing", "Running", "Complete", "Failed"
VALIDATION_FAILED, SUSPENDING, SUSPENDED, RETRYING, WAITING = (
    "ValidationFailed", "Suspending", "Suspended", "Retrying", "Waiting")
JOB_NEW, PENDING_JOB, RUNNING_JOB, SUCCEEDED_JOB, FAILED_JOB, STOPPED_JOB = (
    "", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")
TERMINAL_JOB = (STOPPED_JOB, SUCCEEDED_JOB, FAILED_JOB)
K8S_JOB_MODE, HTTP_MODE, INTERACTIVE_MODE, SIDECAR_MODE = "K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"

# RayCluster condition types (apis/ray/v1/raycluster_types.go@v1.7.0).
CLUSTER_SUSPENDING: Final = "RayClusterSuspending"
CLUSTER_SUSPENDED: Final = "RayClusterSuspended"

# The API (apis/ray/v1/groupversion_info.go, the CRDs' names).
RAY_GROUP: Final = "ray.io"
RAY_VERSION: Final = "v1"
RAYJOB_PLURAL: Final = "rayjobs"
RAYJOB_KIND: Final = "RayJob"
RAYCLUSTER_PLURAL: Final = "rayclusters"
RAYCLUSTER_KIND: Final = "RayCluster"

# KubeRay's names (utils/constant.go@v1.7.0, common/pod.go).
RAY_CLUSTER_LABEL: Final = "ray.io/cluster"  # RayClusterLabelKey
RAY_NODE_TYPE_LABEL: Final = "ray.io/node-type"  # RayNodeTypeLabelKey
RAY_GROUP_LABEL: Final = "ray.io/group"  # RayNodeGroupLabelKey
RAY_IS_RAY_NODE_LABEL: Final = "ray.io/is-ray-node"  # RayNodeLabelKey
RAY_IDENTIFIER_LABEL: Final = "ray.io/identifier"  # RayIDLabelKey
RAY_ORIGINATED_FROM_CR_NAME_LABEL: Final = "ray.io/originated-from-cr-name"  # RayOriginatedFromCRNameLabelKey
RAY_ORIGINATED_FROM_CRD_LABEL: Final = "ray.io/originated-from-crd"  # RayOriginatedFromCRDLabelKey
KUBERNETES_APP_NAME_LABEL: Final = "app.kubernetes.io/name"  # KubernetesApplicationNameLabelKey
KUBERNETES_CREATED_BY_LABEL: Final = "app.kubernetes.io/created-by"  # KubernetesCreatedByLabelKey
APPLICATION_NAME: Final = "kuberay"  # ApplicationName
COMPONENT_NAME: Final = "kuberay-operator"  # ComponentName: created-by, event source
GANG_SCHEDULING_LABEL: Final = "ray.io/gang-scheduling-enabled"  # RayGangSchedulingEnabled
RAYJOB_FINALIZER = "ray.io/rayjob-finalizer"
JOB_SUBMISSION_MODE_LABEL = "ray.io/job-submission-mode"
WORKER_REPLICA_INDEX_LABEL = "ray.io/worker-group-replica-index"  # RayWorkerReplicaIndexKey
WORKER_REPLICA_NAME_LABEL = "ray.io/worker-group-replica-name"  # RayWorkerReplicaNameKey (multi-host groups)
HOST_INDEX_LABEL = "ray.io/replica-host-index"  # RayHostIndexKey (multi-host groups)
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
# common/job.go:GetDefaultSubmitterContainer: the submitter's requests and limits.
SUBMITTER_REQUESTS: Obj = {"cpu": "500m", "memory": "200Mi"}
SUBMITTER_LIMITS: Obj = {"cpu": "1", "memory": "1Gi"}
# batchscheduler/*: --batch-scheduler value -> the schedulerName it writes (scheduler-plugins names its instance).
BATCH_SCHEDULER_NAMES = {"volcano": "volcano", "yunikorn": "yunikorn", "kai-scheduler": "kai-scheduler",
                         "scheduler-plugins": "scheduler-plugins-scheduler"}
# rayjob_controller.go:DefaultSubmitterFinishedTimeout; utils/constant.go: the Running-state timeouts' defaults
# and the environment variables that change them (getJobStatusCheckTimeoutSeconds,
# checkTransitionGracePeriodAndUpdateStatusIfNeeded).
SUBMITTER_FINISHED_TIMEOUT_SECONDS = 30
STATUS_CHECK_TIMEOUT_ENV = "RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS"
DEFAULT_STATUS_CHECK_TIMEOUT_SECONDS = 300
TRANSITION_GRACE_PERIOD_ENV = "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS"
DEFAULT_TRANSITION_GRACE_PERIOD_SECONDS = 300
AUTOSCALER_V2 = "v2"  # rayv1.AutoscalerVersionV2
DELETION_IMPACT = {"DeleteSelf": 4, "DeleteCluster": 3, "DeleteWorkers": 2, "DeleteNone": 1}

# TEST ONLY: the stand-in's own knobs, set by the tests on RayJobs, RayClusters, pods and namespaces.
TEST_RUN_SECONDS: Final = "rayqueue.test/run-seconds"  # how long the "Ray job" runs
TEST_TERMINATE_SECONDS: Final = "rayqueue.test/terminate-seconds"  # how long a deleted pod takes to stop
TEST_EXIT_CODE: Final = "rayqueue.test/exit-code"  # the exit code of the "Ray job" (default 0)
TEST_KUBERAY_STANDIN: Final = "rayqueue.test/kuberay-standin"  # namespace label: which stand-in serves it
# RayJob annotation: validateRayJob refuses the job with this text, a rule rayqueue does not model.
TEST_REFUSE: Final = "rayqueue.test/kuberay-refuses"
# RayJob annotation "true": the dashboard's GetJobInfo fails (recordJobStatusCheckFailure).
TEST_DASHBOARD_DOWN: Final = "rayqueue.test/dashboard-unreachable"
# RayJob annotation: the submitter (K8sJobMode) outlives its Ray job by this many seconds; negative, the Ray job
# outlives the submitter (what checkSubmitterFinishedTimeoutAndUpdateStatusIfNeeded watches).
TEST_SUBMITTER_EXTRA_SECONDS: Final = "rayqueue.test/submitter-extra-seconds"
