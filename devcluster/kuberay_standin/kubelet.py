"""The kubelet's pod status duties on the fake nodes: Running, finished after the run time, removed once stopped."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging

from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.api import Api
from devcluster.kuberay_standin.caches import Caches
from devcluster.kuberay_standin.model import run_seconds
from devcluster.kuberay_standin.names import (
    RAY_CLUSTER_LABEL,
    RAY_NODE_TYPE_LABEL,
    SUBMITTER_CONTAINER,
    TEST_EXIT_CODE,
    TEST_RUN_SECONDS,
    TEST_TERMINATE_SECONDS,
    Obj,
)
from devcluster.kuberay_standin.wire import (
    annotations_of,
    int_or,
    key_of,
    labels_of,
    meta_of,
    parse_rfc3339,
    rfc3339,
    seconds_or,
)

log = logging.getLogger("kuberay-standin")


class Kubelet:
    """For every pod with a `nodeName` in a served namespace (the SidecarMode submitter container included)."""

    def __init__(self, api: Api, caches: Caches, default_run_seconds: float) -> None:
        self.api, self.caches, self.default_run_seconds = api, caches, default_run_seconds

    def reconcile(self, pod: Obj, now: dt.datetime) -> None:
        """A pod with a node: Running, then finished when its run time is over; deleted, removed once stopped."""
        meta, spec, status = meta_of(pod), pod.get("spec") or {}, pod.get("status") or {}
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
            started = parse_rfc3339(status.get("startTime"))
            annotations = annotations_of(pod)
            run = annotations.get(TEST_RUN_SECONDS)
            if started is None:
                return
            if run is not None and now >= started + dt.timedelta(seconds=seconds_or(run, self.default_run_seconds)):
                self._set_pod_finished(pod, now, int_or(annotations.get(TEST_EXIT_CODE), 0))
            elif self._sidecar_due(pod, started, now):
                self._finish_sidecar_submitter(pod, now)

    def _finish_terminating(self, pod: Obj, now: dt.datetime) -> None:
        """The kubelet stops a deleted pod's containers, then removes it: after `terminate-seconds`, at most the
        grace period the apiserver recorded (deletionTimestamp - deletionGracePeriodSeconds = the delete)."""
        meta = meta_of(pod)
        grace = seconds_or(meta.get("deletionGracePeriodSeconds"), 0.0)
        deadline = parse_rfc3339(meta.get("deletionTimestamp"))
        wanted = min(seconds_or(annotations_of(pod).get(TEST_TERMINATE_SECONDS), 0.0), grace)
        if deadline is not None and now < deadline - dt.timedelta(seconds=grace) + dt.timedelta(seconds=wanted):
            return
        log.info("pod %s: terminated on node %s after %ss", key_of(pod), (pod.get("spec") or {}).get("nodeName"), wanted)
        self.api.ignore_404(self.api.core.delete_namespaced_pod, meta["name"], meta["namespace"], grace_period_seconds=0)
        self.caches.pods.forget(meta["namespace"], meta["name"])

    def _sidecar_due(self, pod: Obj, started: dt.datetime, now: dt.datetime) -> bool:
        """SidecarMode: the head's ray-job-submitter container runs for its RayJob's run time."""
        names = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if SUBMITTER_CONTAINER not in names or labels_of(pod).get(RAY_NODE_TYPE_LABEL) != "head":
            return False
        done = any(s.get("name") == SUBMITTER_CONTAINER and (s.get("state") or {}).get("terminated")
                   for s in (pod.get("status") or {}).get("containerStatuses") or [])
        rayjob = self.caches.rayjob_of_cluster_name(str(meta_of(pod)["namespace"]), labels_of(pod).get(RAY_CLUSTER_LABEL, ""))
        if done or rayjob is None:
            return False
        return now >= started + dt.timedelta(seconds=run_seconds(rayjob, self.default_run_seconds))

    def _finish_sidecar_submitter(self, pod: Obj, now: dt.datetime) -> None:
        rayjob = self.caches.rayjob_of_cluster_name(str(meta_of(pod)["namespace"]), labels_of(pod).get(RAY_CLUSTER_LABEL, ""))
        code = int_or(annotations_of(rayjob).get(TEST_EXIT_CODE), 0) if rayjob else 0
        statuses = copy.deepcopy((pod.get("status") or {}).get("containerStatuses") or [])
        for entry in statuses:
            if entry.get("name") == SUBMITTER_CONTAINER:
                entry.update({"ready": False, "started": False, "state": {"terminated": {
                    "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                    "startedAt": (pod.get("status") or {}).get("startTime"), "finishedAt": rfc3339(now)}}})
        log.info("pod %s: the submitter sidecar exited %s", key_of(pod), code)
        self._patch_pod_status(meta_of(pod), {"status": {"containerStatuses": statuses}})


    def _set_pod_running(self, pod: Obj, now: dt.datetime) -> None:
        meta, spec = meta_of(pod), pod.get("spec") or {}
        stamp = rfc3339(now)
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
        log.info("pod %s: running on %s", key_of(pod), spec.get("nodeName"))
        self._patch_pod_status(meta, body)

    def _set_pod_finished(self, pod: Obj, now: dt.datetime, exit_code: int) -> None:
        meta, spec, status = meta_of(pod), pod.get("spec") or {}, pod.get("status") or {}
        stamp = rfc3339(now)
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
        log.info("pod %s: %s (exit code %s)", key_of(pod), phase.lower(), exit_code)
        self._patch_pod_status(meta, {"status": {"phase": phase, "conditions": conditions,
                                                 "containerStatuses": statuses}})

    def _patch_pod_status(self, meta: Obj, body: Obj) -> None:
        try:
            resp = self.api.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body,
                                                         _preload_content=False)
        except ApiException as exc:
            if exc.status in (404, 409):
                return
            raise
        self.caches.pods.apply(json.loads(resp.data))
