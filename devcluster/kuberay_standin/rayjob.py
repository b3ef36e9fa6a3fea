"""KubeRay's RayJob state machine (rayjob_controller.go:Reconcile@v1.7.0): its cluster, submitter and deletion."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import random

from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.api import Api
from devcluster.kuberay_standin.caches import Caches
from devcluster.kuberay_standin.model import (
    generate_cluster_name,
    managed_elsewhere,
    run_seconds,
    submitter_container,
    with_crd_defaults,
    with_status,
)
from devcluster.kuberay_standin.names import (
    CLUSTER_SELECTOR_KEY,
    COMPLETE,
    COMPONENT_NAME,
    DELETION_IMPACT,
    DISABLE_HEAD_RESTART,
    FAILED,
    FAILED_JOB,
    HTTP_MODE,
    INITIALIZING,
    INTERACTIVE_MODE,
    JOB_NEW,
    JOB_SUBMISSION_MODE_LABEL,
    K8S_JOB_MODE,
    KUBERNETES_CREATED_BY_LABEL,
    MODEL_13,
    MODEL_17,
    NEW,
    RAY_GROUP,
    RAY_ORIGINATED_FROM_CR_NAME_LABEL,
    RAY_ORIGINATED_FROM_CRD_LABEL,
    RAY_VERSION,
    RAYCLUSTER_KIND,
    RAYCLUSTER_PLURAL,
    RAYJOB_FINALIZER,
    RAYJOB_KIND,
    RAYJOB_PLURAL,
    RETRYING,
    RUNNING,
    RUNNING_JOB,
    SIDECAR_MODE,
    SUBMITTER_CONTAINER,
    SUCCEEDED_JOB,
    SUSPENDED,
    SUSPENDING,
    TERMINAL_JOB,
    TEST_DASHBOARD_DOWN,
    TEST_EXIT_CODE,
    TEST_RUN_SECONDS,
    TEST_SUBMITTER_EXTRA_SECONDS,
    TEST_TERMINATE_SECONDS,
    VALIDATION_FAILED,
    WAITING,
    Obj,
)
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.pods import add_batch_scheduler_metadata
from devcluster.kuberay_standin.running_checks import (
    FAILURE_START,
    record_status_check_failure,
    status_check_timeout,
    submitter_finished_timeout,
    transition_grace_period,
)
from devcluster.kuberay_standin.validation import job_restart_policy_problem, validate_rayjob
from devcluster.kuberay_standin.wire import (
    annotations_of,
    container_finished_at,
    container_state,
    controller_uid,
    int_or,
    key_of,
    labels_of,
    meta_of,
    owner_ref,
    parse_rfc3339,
    random_suffix,
    rfc3339,
)

log = logging.getLogger("kuberay-standin")


def signed_seconds(text: object) -> float:
    """A number of seconds that may be negative (TEST_SUBMITTER_EXTRA_SECONDS), 0 when absent or no number."""
    try:
        return float(str(text))
    except ValueError:
        return 0.0


class RayJobReconciler:
    """Reconciles each RayJob against the caches; every write goes through `api` and is applied to the caches."""

    def __init__(self, api: Api, caches: Caches, model: str, config: OperatorConfig, default_run_seconds: float,
                 rng: random.Random) -> None:
        self.api, self.caches, self.model, self.config = api, caches, model, config
        self.default_run_seconds = default_run_seconds
        self._rng = rng
        self._ray_job_started: dict[str, dt.datetime] = {}  # HTTP/Interactive "Ray job" start, by uid/jobId

    def reconcile(self, stored: Obj, now: dt.datetime) -> None:
        """rayjob_controller.go:Reconcile: one pass of the state machine."""
        meta = meta_of(stored)
        # Reconcile@v1.7.0 skips an object of another controller (utils.ManagedByExternalController, e.g. Kueue's
        # MultiKueue) before anything else, the deletion branch included: its finalizer is that controller's.
        if managed_elsewhere(stored):
            return
        if meta.get("deletionTimestamp"):
            if RAYJOB_FINALIZER in (meta.get("finalizers") or []):
                log.info("RayJob %s: being deleted, removing the finalizer", key_of(stored))
                self._set_finalizers(stored, [f for f in meta.get("finalizers") or [] if f != RAYJOB_FINALIZER])
            return
        rayjob = with_crd_defaults(stored)
        spec, old = rayjob["spec"], dict(rayjob.get("status") or {})
        problem = validate_rayjob(rayjob, self.model)
        if problem is not None:
            reason, message = problem
            self.api.event(stored, "Warning", reason, f"{meta['namespace']}/{meta['name']}: {message}")
            if self.model == MODEL_13:  # Reconcile@v1.3.2: an event and a requeue, no status change
                log.info("RayJob %s: invalid: %s", key_of(stored), message)
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
        meta, spec = meta_of(rayjob), rayjob["spec"]
        if spec.get("submissionMode") != INTERACTIVE_MODE and not new.get("jobId"):
            new["jobId"] = spec.get("jobId") or f"{meta['name']}-{random_suffix(self._rng)}"
        if not new.get("rayClusterName"):
            selected = (spec.get("clusterSelector") or {}).get(CLUSTER_SELECTOR_KEY)
            new["rayClusterName"] = selected or generate_cluster_name(meta["name"], self.model, self._rng)
        new.setdefault("jobStatus", JOB_NEW)
        new["jobDeploymentStatus"] = INITIALIZING
        new["startTime"] = rfc3339(now)

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
            new["dashboardURL"] = f"{meta_of(cluster)['name']}-head-svc.{meta_of(cluster)['namespace']}.svc.cluster.local:8265"
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
        if self.model == MODEL_17 and (
                transition_grace_period(new, now, self.config.transition_grace_period_seconds)
                or status_check_timeout(new, now, self.config.status_check_timeout_seconds)):
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
            if self.model == MODEL_17 and submitter_finished_timeout(new, finished_at, now):
                return True
            if changed:
                return True
        if self.model == MODEL_17 and annotations_of(rayjob).get(TEST_DASHBOARD_DOWN) == "true":
            # GetJobInfo fails (not a BadRequest): recordJobStatusCheckFailure, a status write only the first time.
            return record_status_check_failure(new, now)
        new.pop(FAILURE_START, None)  # the check succeeded: JobStatusCheckFailureStartTime = nil
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
        code = int_or(annotations_of(rayjob).get(TEST_EXIT_CODE), 0)
        done = SUCCEEDED_JOB if code == 0 else FAILED_JOB
        if mode == K8S_JOB_MODE:
            submitter = self.caches.submitter_of(rayjob)
            pods = [p for p in self.caches.pods.items() if submitter is not None
                    and controller_uid(p) == meta_of(submitter).get("uid")]
            started = min((str((p.get("status") or {}).get("startTime")) for p in pods
                           if (p.get("status") or {}).get("startTime")), default=None)
            finished = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
            if started is None:
                return None
            if TEST_SUBMITTER_EXTRA_SECONDS in annotations_of(rayjob):  # the Ray job keeps its own time
                began = parse_rfc3339(started) or now
                end = began + dt.timedelta(seconds=run_seconds(rayjob, self.default_run_seconds))
                return (done, started, rfc3339(end)) if now >= end else (RUNNING_JOB, started, None)
            if finished:
                return done, started, container_finished_at(finished[-1])
            return RUNNING_JOB, started, None
        if mode == SIDECAR_MODE:
            head = self.caches.head_pod(cluster)
            state = container_state(head, SUBMITTER_CONTAINER) if head else {}
            if "terminated" in state:
                return done, state["terminated"].get("startedAt"), state["terminated"].get("finishedAt")
            if head is None or "running" not in state:
                return None
            return RUNNING_JOB, (head.get("status") or {}).get("startTime"), None
        # HTTPMode, InteractiveMode: submitted when Running began; our clock is the Ray job.
        began = self._ray_job_started.setdefault(f"{meta_of(rayjob)['uid']}/{new.get('jobId')}", now)
        if now >= began + dt.timedelta(seconds=run_seconds(rayjob, self.default_run_seconds)):
            return done, rfc3339(began), rfc3339(now)
        return RUNNING_JOB, rfc3339(began), None

    def _check_submitter(self, rayjob: Obj, new: Obj) -> tuple[bool, str | None] | None:
        """checkSubmitterAndUpdateStatusIfNeeded -> (status changed, finishedAt); None = error, requeue."""
        spec = rayjob["spec"]
        if spec.get("submissionMode") == SIDECAR_MODE:
            cluster = self.caches.rayclusters.get(meta_of(rayjob)["namespace"], str(new.get("rayClusterName")))
            head = self.caches.head_pod(cluster) if cluster else None
            if head is None:
                new.update({"jobDeploymentStatus": FAILED, "reason": "AppFailed", "message": "Ray head pod not found."})
                return True, None
            terminated = container_state(head, SUBMITTER_CONTAINER).get("terminated")
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
        job = self.caches.submitter_of(rayjob)
        if job is None:
            log.info("RayJob %s: Failed to get the submitter Kubernetes Job", key_of(rayjob))
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
        deadline, started = rayjob["spec"].get("activeDeadlineSeconds"), parse_rfc3339(new.get("startTime"))
        if deadline is None or started is None or now < started + dt.timedelta(seconds=int(deadline)):
            return False
        new.update({"jobDeploymentStatus": FAILED, "reason": "DeadlineExceeded", "message": (
            f"The RayJob has passed the activeDeadlineSeconds. StartTime: {new.get('startTime')}. "
            f"ActiveDeadlineSeconds: {deadline}")})
        return True

    def _pre_running_deadline(self, rayjob: Obj, new: Obj, now: dt.datetime) -> bool:
        """checkPreRunningDeadlineAndUpdateStatusIfNeeded@v1.7.0."""
        deadline, started = rayjob["spec"].get("preRunningDeadlineSeconds"), parse_rfc3339(new.get("startTime"))
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
            log.info("RayJob %s: waiting for the RayCluster and the submitter Job to be deleted", key_of(rayjob))
            return False
        for name in ("rayClusterName", "dashboardURL", "jobId", "message", "reason"):
            new[name] = ""
        new.pop(FAILURE_START, None)
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
            log.info("RayJob %s: failed %s time(s), backoffLimit %s: Retrying", key_of(rayjob), failed, limit)
            new["jobDeploymentStatus"] = RETRYING

    def _write_rayjob_status(self, stored: Obj, old: Obj, new: Obj, now: dt.datetime) -> None:
        """updateRayJobStatus: write only when jobStatus, jobDeploymentStatus or rayClusterStatus changed; a
        terminal deployment status stamps endTime."""
        def cluster_status(status: Obj) -> Obj:
            return {k: v for k, v in (status.get("rayClusterStatus") or {}).items() if k != "lastUpdateTime"}

        if (old.get("jobStatus", "") == new.get("jobStatus", "")
                and old.get("jobDeploymentStatus", "") == new.get("jobDeploymentStatus", "")
                and cluster_status(old) == cluster_status(new)
                and old.get(FAILURE_START) == new.get(FAILURE_START)):  # jobStatusCheckFailureStartTimeChanged
            return
        if new.get("jobDeploymentStatus") in (COMPLETE, FAILED):
            new["endTime"] = rfc3339(now)
        log.info("RayJob %s: %r -> %r (jobStatus %r)", key_of(stored), old.get("jobDeploymentStatus", ""),
                 new.get("jobDeploymentStatus", ""), new.get("jobStatus", ""))
        updated = self.api.replace_status(RAYJOB_PLURAL, meta_of(stored), new)
        if updated is not None:
            self.caches.rayjobs.apply(updated)


    def _set_finalizers(self, rayjob: Obj, finalizers: list[str]) -> None:
        meta = meta_of(rayjob)
        try:
            resp = self.api.custom.patch_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, meta["namespace"], RAYJOB_PLURAL, meta["name"],
                {"metadata": {"finalizers": finalizers or None}}, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        self.caches.rayjobs.apply(json.loads(resp.data))

    def _get_or_create_cluster(self, rayjob: Obj, new: Obj) -> Obj | None:
        """getOrCreateRayClusterInstance: the RayCluster named `status.rayClusterName`, created if missing."""
        meta, spec = meta_of(rayjob), rayjob["spec"]
        name = str(new.get("rayClusterName") or "")
        existing = self.caches.rayclusters.get(meta["namespace"], name)
        if existing is not None:
            return existing
        if spec.get("clusterSelector"):
            self.api.event(rayjob, "Warning", "RayClusterNotFound",
                           f"RayCluster {meta['namespace']}/{name} set in the clusterSelector is not found. "
                           "It must be created manually")
            return None
        labels = {**labels_of(rayjob), RAY_ORIGINATED_FROM_CR_NAME_LABEL: meta["name"],
                  RAY_ORIGINATED_FROM_CRD_LABEL: RAYJOB_KIND}
        if self.model == MODEL_17:
            labels[JOB_SUBMISSION_MODE_LABEL] = str(spec.get("submissionMode"))
        annotations = annotations_of(rayjob)
        cluster_spec = copy.deepcopy(spec.get("rayClusterSpec") or {})
        if spec.get("submissionMode") == SIDECAR_MODE:
            annotations[DISABLE_HEAD_RESTART] = "true"
            head = cluster_spec.setdefault("headGroupSpec", {}).setdefault("template", {}).setdefault("spec", {})
            head.setdefault("containers", []).append(submitter_container(with_status(rayjob, new), cluster_spec))
            head["restartPolicy"] = "Never"
        cluster = {
            "apiVersion": f"{RAY_GROUP}/{RAY_VERSION}", "kind": RAYCLUSTER_KIND,
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels, "annotations": annotations,
                         "ownerReferences": [owner_ref(rayjob)]},
            "spec": cluster_spec,
        }
        if spec.get("submissionMode") == K8S_JOB_MODE:  # only in K8sJobMode does the RayCluster get the metadata
            add_batch_scheduler_metadata(rayjob, cluster, self.config)
        log.info("RayJob %s: creating RayCluster %s", key_of(rayjob), name)
        try:
            resp = self.api.custom.create_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, meta["namespace"], RAYCLUSTER_PLURAL, cluster,
                _preload_content=False)
        except ApiException as exc:
            self.api.event(rayjob, "Warning", "FailedToCreateRayCluster",
                           f"Failed to create RayCluster {meta['namespace']}/{name}: {(exc.body or exc.reason)!s:.300}")
            return None  # 409: already there, our cache is behind; otherwise requeue, as KubeRay returns err
        created: Obj = json.loads(resp.data)
        self.caches.rayclusters.apply(created)
        self.api.event(rayjob, "Normal", "CreatedRayCluster", f"Created RayCluster {meta['namespace']}/{name}")
        return created

    def _create_submitter_if_needed(self, rayjob: Obj, new: Obj, cluster: Obj) -> bool:
        """createK8sJobIfNeed + getSubmitterTemplate + createNewK8sJob: the batch/v1 Job named after the RayJob."""
        if self.caches.submitter_of(rayjob) is not None:
            return True
        meta, spec = meta_of(rayjob), rayjob["spec"]
        template = copy.deepcopy(spec.get("submitterPodTemplate") or {})
        cluster_spec = cluster.get("spec") or {}
        if spec.get("submitterPodTemplate") is not None and not (template.get("spec") or {}).get("containers"):
            # getSubmitterTemplate indexes Containers[0]: a template without containers panics (index out of
            # range); controller-runtime v0.24 recovers the panic and requeues. No event, no status change.
            log.info("RayJob %s: panic: runtime error: index out of range [0] with length 0 (submitterPodTemplate "
                     "has no containers); requeued", key_of(rayjob))
            return False
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
        tmeta["labels"] = {**(tmeta.get("labels") or {}), RAY_ORIGINATED_FROM_CR_NAME_LABEL: meta["name"],
                           RAY_ORIGINATED_FROM_CRD_LABEL: RAYJOB_KIND,
                           KUBERNETES_CREATED_BY_LABEL: COMPONENT_NAME}
        # TEST ONLY: the submitter's pod carries the "Ray job"'s timing for the stand-in's kubelet.
        own = annotations_of(rayjob)
        extra = signed_seconds(own.get(TEST_SUBMITTER_EXTRA_SECONDS))
        submitter_seconds = max(0.0, run_seconds(rayjob, self.default_run_seconds) + extra)
        tmeta["annotations"] = {**(tmeta.get("annotations") or {}),
                                TEST_RUN_SECONDS: str(submitter_seconds),
                                **{k: own[k] for k in (TEST_EXIT_CODE, TEST_TERMINATE_SECONDS) if k in own}}
        add_batch_scheduler_metadata(rayjob, template, self.config)  # createK8sJobIfNeed: the RayJob is the parent
        backoff = (spec.get("submitterConfig") or {}).get("backoffLimit")
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": {RAY_ORIGINATED_FROM_CR_NAME_LABEL: meta["name"],
                                    RAY_ORIGINATED_FROM_CRD_LABEL: RAYJOB_KIND,
                                    KUBERNETES_CREATED_BY_LABEL: COMPONENT_NAME},
                         "ownerReferences": [owner_ref(rayjob)]},
            "spec": {"backoffLimit": 2 if backoff is None else int(backoff), "template": template},
        }
        refused = job_restart_policy_problem(job)
        if refused is not None:  # what a modern kube-apiserver answers (see job_restart_policy_problem)
            self.api.event(rayjob, "Warning", "FailedToCreateRayJobSubmitter",
                           f"Failed to create new Kubernetes Job {meta['namespace']}/{meta['name']}: {refused}")
            return False
        log.info("RayJob %s: creating the submitter Job", key_of(rayjob))
        try:
            resp = self.api.batch.create_namespaced_job(meta["namespace"], job, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:  # already there (cache behind): adopt it on the next pass
                return False
            self.api.event(rayjob, "Warning", "FailedToCreateRayJobSubmitter",
                           f"Failed to create new Kubernetes Job {meta['namespace']}/{meta['name']}: "
                           f"{(exc.body or exc.reason)!s:.300}")
            return False
        self.caches.jobs.apply(json.loads(resp.data))
        self.api.event(rayjob, "Normal", "CreatedRayJobSubmitter",
                       f"Created Kubernetes Job {meta['namespace']}/{meta['name']}")
        return True

    def _delete_cluster_resources(self, rayjob: Obj, new: Obj) -> bool:
        """deleteClusterResources: True once the RayCluster object is gone (its pods may still be there)."""
        if rayjob["spec"].get("clusterSelector"):
            return True
        meta = meta_of(rayjob)
        cluster = self.caches.rayclusters.get(meta["namespace"], str(new.get("rayClusterName") or ""))
        if cluster is None:
            return True
        if not meta_of(cluster).get("deletionTimestamp"):
            self.api.delete_cluster(cluster)
            self.api.event(rayjob, "Normal", "DeletedRayCluster",
                           f"Deleted cluster {meta['namespace']}/{meta_of(cluster)['name']}")
        return False  # found: gone only when a later pass no longer finds it

    def _delete_submitter_job(self, rayjob: Obj) -> bool:
        """deleteSubmitterJob: True once the Job object is gone (HTTP and Sidecar modes have none)."""
        if rayjob["spec"].get("submissionMode") in (HTTP_MODE, SIDECAR_MODE):
            return True
        job = self.caches.submitter_of(rayjob)
        if job is None:
            return True
        meta = meta_of(job)
        if not meta.get("deletionTimestamp"):
            self.api.ignore_404(self.api.batch.delete_namespaced_job, meta["name"], meta["namespace"],
                                propagation_policy="Background")
            self.api.event(rayjob, "Normal", "DeletedRayJobSubmitter",
                           f"Deleted submitter K8s Job {meta['namespace']}/{meta['name']}")
        return False

    def _after_finish(self, rayjob: Obj, now: dt.datetime) -> None:
        """`case Complete, Failed`: deletionStrategy (1.7) or shutdownAfterJobFinishes."""
        spec, status = rayjob["spec"], rayjob.get("status") or {}
        if spec.get("clusterSelector"):
            return
        ended = parse_rfc3339(status.get("endTime"))
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
        cluster = self.caches.rayclusters.get(meta_of(rayjob)["namespace"], str(status.get("rayClusterName") or ""))
        if cluster is not None and not meta_of(cluster).get("deletionTimestamp"):
            log.info("RayJob %s: finished, deleting RayCluster %s", key_of(rayjob), meta_of(cluster)["name"])
            self.api.delete_cluster(cluster)

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
        cluster = self.caches.rayclusters.get(meta_of(rayjob)["namespace"], str((rayjob.get("status") or {}).get("rayClusterName")))
        if policy == "DeleteNone":
            return True
        if policy == "DeleteSelf":
            return False
        if cluster is None or meta_of(cluster).get("deletionTimestamp"):
            return True
        if policy == "DeleteWorkers":
            return all(g.get("suspend") for g in (cluster.get("spec") or {}).get("workerGroupSpecs") or [])
        return False

    def _execute_deletion(self, rayjob: Obj, policy: str) -> None:
        """executeDeletionPolicy."""
        meta = meta_of(rayjob)
        cluster = self.caches.rayclusters.get(meta["namespace"], str((rayjob.get("status") or {}).get("rayClusterName")))
        log.info("RayJob %s: executing deletion policy %s", key_of(rayjob), policy)
        if policy == "DeleteSelf":
            self.api.ignore_404(self.api.custom.delete_namespaced_custom_object, RAY_GROUP, RAY_VERSION,
                                meta["namespace"], RAYJOB_PLURAL, meta["name"])
        elif cluster is None:
            return
        elif policy == "DeleteCluster":
            self.api.delete_cluster(cluster)
        elif policy == "DeleteWorkers":  # suspendWorkerGroups: every group suspended, the head stays
            groups = copy.deepcopy((cluster.get("spec") or {}).get("workerGroupSpecs") or [])
            for group in groups:
                group["suspend"] = True
            cmeta = meta_of(cluster)
            resp = self.api.custom.patch_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, cmeta["namespace"], RAYCLUSTER_PLURAL, cmeta["name"],
                {"spec": {"workerGroupSpecs": groups}}, _preload_content=False)
            self.caches.rayclusters.apply(json.loads(resp.data))
            self.api.event(rayjob, "Normal", "UpdatedRayCluster", "Set the `suspend` field to true for all worker "
                           f"groups in cluster {cmeta['namespace']}/{cmeta['name']}")
