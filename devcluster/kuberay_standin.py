"""A TEST STAND-IN for the KubeRay operator (plus a kubelet's pod status duties) for the local test cluster; never for production.

KubeRay cannot be installed here, and no kubelet runs on the fake nodes. This small controller does
what the tests need of both, shaped like KubeRay v1 so rayqueue sees what it would see in production:

* RayJob: when it is not suspended and has no cluster, create its RayCluster
  `<job>-raycluster-<5 chars>` (labels and annotations copied from the RayJob plus
  `ray.io/originated-from-*`, ownerReference to the RayJob); once the cluster's pods run, create the
  submitter as in K8sJobMode (a batch/v1 Job named after the RayJob, owned by it; the controller-
  manager's job controller makes its pod); `jobDeploymentStatus` New/Suspended -> Initializing ->
  Running -> Complete (or Failed), `jobStatus` PENDING -> RUNNING -> SUCCEEDED, `startTime`/`endTime`.
  The "Ray job" runs for the RayJob's `rayqueue.test/run-seconds` annotation (default 3 s) after the
  submitter pod starts. `suspend: true` deletes the cluster, its pods and the submitter and reports
  `Suspended`. `shutdownAfterJobFinishes` deletes the cluster `ttlSecondsAfterFinished` after the end.
* RayCluster: head pod `<cluster>-head-*` and worker pods `<cluster>-<group>-worker-*` with KubeRay's
  labels (`ray.io/cluster`, `ray.io/node-type`, `ray.io/group`, `ray.io/is-ray-node`,
  `ray.io/identifier`, `app.kubernetes.io/created-by`, `app.kubernetes.io/name`) on top of the
  template's, workers = clamp(replicas, min, max) x numOfHosts (0 for a suspended group), missing
  pods recreated, extra ones deleted; `status.state: ready` once all pods run.
* Kubelet duties, for every pod: a pod with a `nodeName` is marked Running (phase, conditions,
  container statuses); the submitter's pod (or any pod annotated `rayqueue.test/run-seconds`) is
  marked Succeeded when its run time is over; a pod on a node with a deletionTimestamp is removed at
  once (grace 0), as a kubelet would finish it.

Informers list and watch RayJobs, RayClusters, Pods and Jobs into local caches (re-listing when a
watch expires with 410); one loop reconciles from the caches on every change and every half second.
Writes are applied to the caches at once (newer resourceVersion wins) so a stale cache never creates
twice. Run it as `python -m devcluster.kuberay_standin --kubeconfig K`, or `KubeRayStandIn(api).start()`.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from common import keys
from common.clock import Clock, SystemClock

Obj = dict[str, Any]
log = logging.getLogger("kuberay-standin")

DEFAULT_RUN_SECONDS = 3.0
INT32_MAX = 2**31 - 1
# k8s.io/apimachinery/pkg/util/rand.String's alphabet (no vowels, no look-alikes), as KubeRay uses it.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RFC3339 = "%Y-%m-%dT%H:%M:%SZ"

# RayJob.status.jobDeploymentStatus and jobStatus values, as KubeRay writes them.
NEW, INITIALIZING, RUNNING, COMPLETE, FAILED, SUSPENDED = "", "Initializing", "Running", "Complete", "Failed", "Suspended"
PENDING_JOB, RUNNING_JOB, SUCCEEDED_JOB, FAILED_JOB = "PENDING", "RUNNING", "SUCCEEDED", "FAILED"


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


def _parse_ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, _RFC3339).replace(tzinfo=dt.UTC)
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


def desired_workers(group: Obj) -> int:
    """KubeRay's GetWorkerGroupDesiredReplicas: clamp(replicas, min, max) x numOfHosts; 0 when suspended."""
    if group.get("suspend"):
        return 0
    low = int(group.get("minReplicas") or 0)
    high = INT32_MAX if group.get("maxReplicas") is None else int(group["maxReplicas"])
    replicas = group.get("replicas")
    if low > high:
        count = high
    elif replicas is None or int(replicas) < low:
        count = low
    else:
        count = min(int(replicas), high)
    return count * int(group.get("numOfHosts") or 1)


def ray_pod_labels(cluster: str, node_type: str, group: str, template_labels: dict[str, str]) -> dict[str, str]:
    """KubeRay's labels on a Ray pod over the template's; the identity labels always win."""
    identity = {
        keys.RAY_CLUSTER: cluster,
        keys.RAY_NODE_TYPE: node_type,
        keys.RAY_GROUP_LABEL: group,
        keys.RAY_IDENTIFIER: f"{cluster}-{node_type}"[:63].rstrip("-_."),
        keys.RAY_IS_RAY_NODE: "yes",
    }
    defaults = {keys.KUBERNETES_APP_NAME: keys.KUBERAY_APP_NAME, keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR}
    return {**defaults, **template_labels, **identity}


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


class KubeRayStandIn:
    """The stand-in controller. `start()` runs it in threads; `stop()` ends them, bounded."""

    def __init__(
        self,
        api_client: Any,
        *,
        clock: Clock | None = None,
        default_run_seconds: float = DEFAULT_RUN_SECONDS,
        resync_seconds: float = 0.5,
        watch_seconds: int = 60,
        seed: int | None = None,
        namespace: str | None = None,
    ) -> None:
        """Watch every namespace, or only `namespace`; `seed` makes the generated names reproducible."""
        self.api = api_client
        # Typed Any: the stand-in speaks plain dicts to the API (bodies in, `_preload_content=False` JSON out).
        self.core: Any = client.CoreV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.clock: Clock = clock or SystemClock()
        self.default_run_seconds = default_run_seconds
        self.resync_seconds = resync_seconds
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._changed = threading.Event()
        self.rayjobs, self.rayclusters, self.pods, self.jobs = Store(), Store(), Store(), Store()
        if namespace is None:
            lists: list[tuple[str, Callable[..., Any], tuple[Any, ...], Store]] = [
                ("rayjobs", self.custom.list_cluster_custom_object,
                 (keys.RAY_GROUP, keys.RAY_VERSION, keys.RAYJOB_PLURAL), self.rayjobs),
                ("rayclusters", self.custom.list_cluster_custom_object,
                 (keys.RAY_GROUP, keys.RAY_VERSION, keys.RAYCLUSTER_PLURAL), self.rayclusters),
                ("pods", self.core.list_pod_for_all_namespaces, (), self.pods),
                ("jobs", self.batch.list_job_for_all_namespaces, (), self.jobs),
            ]
        else:
            lists = [
                ("rayjobs", self.custom.list_namespaced_custom_object,
                 (keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYJOB_PLURAL), self.rayjobs),
                ("rayclusters", self.custom.list_namespaced_custom_object,
                 (keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYCLUSTER_PLURAL), self.rayclusters),
                ("pods", self.core.list_namespaced_pod, (namespace,), self.pods),
                ("jobs", self.batch.list_namespaced_job, (namespace,), self.jobs),
            ]
        self._informers = [
            Informer(what, fn, args, store, self._changed, self._stop, watch_seconds) for what, fn, args, store in lists
        ]
        self._loop: threading.Thread | None = None
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
    def reconcile_once(self) -> None:
        """One pass over the caches: kubelet duties, then RayJobs, then RayClusters."""
        now = self.clock.now()
        for pod in self.pods.items():
            self._kubelet(pod, now)
        for rayjob in self.rayjobs.items():
            if not _meta(rayjob).get("deletionTimestamp"):
                self._reconcile_rayjob(rayjob, now)
        job_uids = {_meta(j)["uid"] for j in self.rayjobs.items()}
        for cluster in self.rayclusters.items():
            if _meta(cluster).get("deletionTimestamp"):
                continue
            owner = _controller_uid(cluster)
            owner_kind = next((r.get("kind") for r in _meta(cluster).get("ownerReferences") or []), None)
            if owner is not None and owner_kind == keys.RAYJOB_KIND and owner not in job_uids:
                log.info("RayCluster %s: its RayJob is gone, deleting it", _key(cluster))
                self._delete_cluster(cluster)
                continue
            self._reconcile_cluster(cluster)

    # ------------------------------------------------------------------ kubelet duties
    def _kubelet(self, pod: Obj, now: dt.datetime) -> None:
        meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        node = spec.get("nodeName")
        if not node:
            return
        if meta.get("deletionTimestamp"):
            log.info("pod %s: deleting on node %s, finishing it (grace 0)", _key(pod), node)
            self._ignore_404(self.core.delete_namespaced_pod, meta["name"], meta["namespace"], grace_period_seconds=0)
            self.pods.forget(meta["namespace"], meta["name"])
            return
        phase = status.get("phase")
        if phase == "Pending":
            self._set_pod_running(pod, now)
        elif phase == "Running":
            run_seconds = self._pod_run_seconds(pod)
            started = _parse_ts(status.get("startTime"))
            if run_seconds is not None and started is not None and now >= started + dt.timedelta(seconds=run_seconds):
                self._set_pod_succeeded(pod, now)

    def _pod_run_seconds(self, pod: Obj) -> float | None:
        """The submitter's pod runs for its RayJob's run time; any pod may carry the annotation itself."""
        meta = _meta(pod)
        own = (meta.get("annotations") or {}).get(keys.TEST_RUN_SECONDS)
        if own is not None:
            return _seconds(own, self.default_run_seconds)
        job_name = (meta.get("labels") or {}).get(keys.JOB_NAME_LABEL)
        if not job_name:
            return None
        kjob = next((j for j in self.jobs.items() if _key(j) == f"{meta['namespace']}/{job_name}"), None)
        owner = _controller_uid(kjob) if kjob else None
        rayjob = next((r for r in self.rayjobs.items() if _meta(r)["uid"] == owner), None)
        if rayjob is None:
            return None
        return self._run_seconds(rayjob)

    def _run_seconds(self, rayjob: Obj) -> float:
        text = (_meta(rayjob).get("annotations") or {}).get(keys.TEST_RUN_SECONDS)
        return _seconds(text, self.default_run_seconds)

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
        body = {"status": {"phase": "Running", "startTime": stamp, "hostIP": "127.0.0.1",
                           "conditions": conditions, "containerStatuses": statuses}}
        log.info("pod %s: running on %s", _key(pod), spec.get("nodeName"))
        self._patch_pod_status(meta, body)

    def _set_pod_succeeded(self, pod: Obj, now: dt.datetime) -> None:
        meta, spec, status = _meta(pod), pod.get("spec") or {}, pod.get("status") or {}
        stamp = _ts(now)
        conditions = [
            {"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp}
            for t in ("Ready", "ContainersReady")
        ]
        statuses = [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
             "started": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                        "startedAt": status.get("startTime") or stamp,
                                                        "finishedAt": stamp}}}
            for c in spec.get("containers") or []
        ]
        log.info("pod %s: succeeded", _key(pod))
        self._patch_pod_status(meta, {"status": {"phase": "Succeeded", "conditions": conditions,
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
    def _reconcile_rayjob(self, rayjob: Obj, now: dt.datetime) -> None:
        spec, status = rayjob.get("spec") or {}, rayjob.get("status") or {}
        deployment = status.get("jobDeploymentStatus", NEW)
        suspend = bool(spec.get("suspend"))
        if deployment in (NEW, "New"):
            if suspend:
                self._patch_rayjob_status(rayjob, {"jobDeploymentStatus": SUSPENDED, "jobStatus": ""})
            else:
                self._initialize(rayjob, now)
        elif deployment == SUSPENDED:
            if not suspend:
                self._initialize(rayjob, now)
        elif deployment in (INITIALIZING, RUNNING):
            if suspend:
                self._suspend(rayjob)
            elif deployment == INITIALIZING:
                self._while_initializing(rayjob, now)
            else:
                self._while_running(rayjob, now)
        elif deployment in (COMPLETE, FAILED):
            self._after_finish(rayjob, now)

    def _clusters_of(self, rayjob: Obj) -> list[Obj]:
        uid = _meta(rayjob)["uid"]
        return [c for c in self.rayclusters.items()
                if _controller_uid(c) == uid and not _meta(c).get("deletionTimestamp")]

    def _submitter_of(self, rayjob: Obj) -> Obj | None:
        uid = _meta(rayjob)["uid"]
        return next((j for j in self.jobs.items() if _controller_uid(j) == uid), None)

    def _initialize(self, rayjob: Obj, now: dt.datetime) -> None:
        meta, spec = _meta(rayjob), rayjob.get("spec") or {}
        if spec.get("clusterSelector"):
            self._patch_rayjob_status(rayjob, {"jobDeploymentStatus": FAILED, "jobStatus": FAILED_JOB,
                                               "message": "the KubeRay stand-in does not support clusterSelector"})
            return
        existing = self._clusters_of(rayjob)
        if existing:
            cluster_name = _meta(existing[0])["name"]
        else:
            cluster_name = f"{meta['name']}-raycluster-{_suffix(self._rng)}"
            labels = {**(meta.get("labels") or {}), keys.RAY_ORIGINATED_FROM_CR_NAME: meta["name"],
                      keys.RAY_ORIGINATED_FROM_CRD: keys.RAYJOB_KIND}
            cluster = {
                "apiVersion": f"{keys.RAY_GROUP}/{keys.RAY_VERSION}",
                "kind": keys.RAYCLUSTER_KIND,
                "metadata": {"name": cluster_name, "namespace": meta["namespace"], "labels": labels,
                             "annotations": dict(meta.get("annotations") or {}),
                             "ownerReferences": [_owner_ref(rayjob)]},
                "spec": copy.deepcopy(spec.get("rayClusterSpec") or {}),
            }
            log.info("RayJob %s: creating RayCluster %s", _key(rayjob), cluster_name)
            resp = self.custom.create_namespaced_custom_object(
                keys.RAY_GROUP, keys.RAY_VERSION, meta["namespace"], keys.RAYCLUSTER_PLURAL, cluster,
                _preload_content=False)
            self.rayclusters.apply(json.loads(resp.data))
        self._patch_rayjob_status(rayjob, {
            "jobDeploymentStatus": INITIALIZING, "jobStatus": PENDING_JOB, "rayClusterName": cluster_name,
            "jobId": spec.get("jobId") or f"{meta['name']}-{_suffix(self._rng)}", "startTime": _ts(now),
            "endTime": None, "message": "",
        })

    def _while_initializing(self, rayjob: Obj, now: dt.datetime) -> None:
        clusters = self._clusters_of(rayjob)
        if not clusters:  # deleted under us: make a new one, as KubeRay would on its next pass
            self._initialize(rayjob, now)
            return
        cluster = clusters[0]
        if (cluster.get("status") or {}).get("state") != "ready":
            return
        spec = rayjob.get("spec") or {}
        if spec.get("submissionMode", "K8sJobMode") == "K8sJobMode" and self._submitter_of(rayjob) is None:
            self._create_submitter(rayjob, cluster)
        self._patch_rayjob_status(rayjob, {"jobDeploymentStatus": RUNNING,
                                           "rayClusterStatus": cluster.get("status") or {}})

    def _while_running(self, rayjob: Obj, now: dt.datetime) -> None:
        spec, status = rayjob.get("spec") or {}, rayjob.get("status") or {}
        if spec.get("submissionMode", "K8sJobMode") != "K8sJobMode":  # HTTPMode: the run time from Running
            started = _parse_ts(status.get("startTime"))
            if status.get("jobStatus") != RUNNING_JOB:
                self._patch_rayjob_status(rayjob, {"jobStatus": RUNNING_JOB})
            elif started and now >= started + dt.timedelta(seconds=self._run_seconds(rayjob)):
                self._finish(rayjob, now, succeeded=True)
            return
        submitter = self._submitter_of(rayjob)
        if submitter is None:
            cluster = next(iter(self._clusters_of(rayjob)), None)
            if cluster is not None:
                self._create_submitter(rayjob, cluster)
            return
        pods = [p for p in self.pods.items()
                if _controller_uid(p) == _meta(submitter)["uid"] and not _meta(p).get("deletionTimestamp")]
        phases = {(p.get("status") or {}).get("phase") for p in pods}
        job_status = submitter.get("status") or {}
        if "Succeeded" in phases or int(job_status.get("succeeded") or 0) > 0:
            self._finish(rayjob, now, succeeded=True)
        elif any(c.get("type") == "Failed" and c.get("status") == "True" for c in job_status.get("conditions") or []):
            self._finish(rayjob, now, succeeded=False)
        elif "Running" in phases and status.get("jobStatus") != RUNNING_JOB:
            self._patch_rayjob_status(rayjob, {"jobStatus": RUNNING_JOB})

    def _finish(self, rayjob: Obj, now: dt.datetime, *, succeeded: bool) -> None:
        log.info("RayJob %s: %s", _key(rayjob), "succeeded" if succeeded else "failed")
        self._patch_rayjob_status(rayjob, {
            "jobDeploymentStatus": COMPLETE if succeeded else FAILED,
            "jobStatus": SUCCEEDED_JOB if succeeded else FAILED_JOB,
            "endTime": _ts(now),
            "message": "" if succeeded else "the submitter Job failed",
        })

    def _after_finish(self, rayjob: Obj, now: dt.datetime) -> None:
        spec, status = rayjob.get("spec") or {}, rayjob.get("status") or {}
        if not spec.get("shutdownAfterJobFinishes"):
            return
        ended = _parse_ts(status.get("endTime"))
        ttl = int(spec.get("ttlSecondsAfterFinished") or 0)
        if ended is None or now < ended + dt.timedelta(seconds=ttl):
            return
        for cluster in self._clusters_of(rayjob):
            log.info("RayJob %s: finished %ss ago, deleting RayCluster %s", _key(rayjob), ttl, _meta(cluster)["name"])
            self._delete_cluster(cluster)

    def _suspend(self, rayjob: Obj) -> None:
        log.info("RayJob %s: suspended, deleting its cluster and submitter", _key(rayjob))
        for cluster in self._clusters_of(rayjob):
            self._delete_cluster(cluster)
        submitter = self._submitter_of(rayjob)
        if submitter is not None:
            meta = _meta(submitter)
            self._ignore_404(self.batch.delete_namespaced_job, meta["name"], meta["namespace"],
                             propagation_policy="Background")
            self.jobs.forget(meta["namespace"], meta["name"])
            self._ignore_404(self.core.delete_collection_namespaced_pod, meta["namespace"],
                             label_selector=f"controller-uid={meta['uid']}")
        self._patch_rayjob_status(rayjob, {
            "jobDeploymentStatus": SUSPENDED, "jobStatus": "", "rayClusterName": "", "jobId": "",
            "message": "", "rayClusterStatus": None,
        })

    def _create_submitter(self, rayjob: Obj, cluster: Obj) -> None:
        meta, spec = _meta(rayjob), rayjob.get("spec") or {}
        cluster_name = _meta(cluster)["name"]
        template = copy.deepcopy(spec.get("submitterPodTemplate") or {})
        if not template:
            head = (((spec.get("rayClusterSpec") or {}).get("headGroupSpec") or {}).get("template") or {})
            head_containers = (head.get("spec") or {}).get("containers") or [{}]
            address = f"http://{cluster_name}-head-svc.{meta['namespace']}.svc.cluster.local:8265"
            template = {"spec": {"restartPolicy": "Never", "containers": [{
                "name": "ray-job-submitter",
                "image": head_containers[0].get("image", "rayproject/ray:latest"),
                "command": ["ray", "job", "submit", "--address", address, "--no-wait", "--",
                            *str(spec.get("entrypoint") or "true").split()],
                "resources": {"requests": dict(keys.DEFAULT_SUBMITTER_REQUESTS),
                              "limits": dict(keys.DEFAULT_SUBMITTER_LIMITS)},
            }]}}
        template.setdefault("spec", {}).setdefault("restartPolicy", "Never")
        backoff = int(((spec.get("submitterConfig") or {}).get("backoffLimit")) or 2)
        job = {
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                         "labels": {keys.RAY_ORIGINATED_FROM_CR_NAME: meta["name"],
                                    keys.RAY_ORIGINATED_FROM_CRD: keys.RAYJOB_KIND,
                                    keys.KUBERNETES_CREATED_BY: keys.KUBERAY_OPERATOR},
                         "ownerReferences": [_owner_ref(rayjob)]},
            "spec": {"backoffLimit": backoff, "template": template},
        }
        log.info("RayJob %s: creating the submitter Job", _key(rayjob))
        try:
            resp = self.batch.create_namespaced_job(meta["namespace"], job, _preload_content=False)
        except ApiException as exc:
            if exc.status == 409:  # already there (cache behind): adopt it on the next pass
                return
            raise
        self.jobs.apply(json.loads(resp.data))

    def _patch_rayjob_status(self, rayjob: Obj, status: Obj) -> None:
        meta = _meta(rayjob)
        try:
            resp = self.custom.patch_namespaced_custom_object_status(
                keys.RAY_GROUP, keys.RAY_VERSION, meta["namespace"], keys.RAYJOB_PLURAL, meta["name"],
                {"status": status}, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        self.rayjobs.apply(json.loads(resp.data))

    # ------------------------------------------------------------------ RayCluster
    def _reconcile_cluster(self, cluster: Obj) -> None:
        meta, spec = _meta(cluster), cluster.get("spec") or {}
        name, namespace = meta["name"], meta["namespace"]
        pods = [p for p in self.pods.items()
                if _meta(p).get("namespace") == namespace
                and (_meta(p).get("labels") or {}).get(keys.RAY_CLUSTER) == name
                and not _meta(p).get("deletionTimestamp")
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        wanted: list[tuple[str, str, Obj, int]] = [
            ("head", "headgroup", (spec.get("headGroupSpec") or {}).get("template") or {}, 1)]
        for group in spec.get("workerGroupSpecs") or []:
            wanted.append(("worker", str(group.get("groupName", "workers")), group.get("template") or {},
                           desired_workers(group)))
        running_workers = desired = 0
        head_running = False
        for node_type, group_name, template, count in wanted:
            mine = sorted((p for p in pods if (_meta(p).get("labels") or {}).get(keys.RAY_GROUP_LABEL) == group_name
                           and (_meta(p).get("labels") or {}).get(keys.RAY_NODE_TYPE) == node_type),
                          key=lambda p: str(_meta(p).get("creationTimestamp", "")))
            for _ in range(count - len(mine)):
                self._create_ray_pod(cluster, node_type, group_name, template)
            for extra in mine[count:][::-1]:
                log.info("RayCluster %s: scaling down, deleting %s", _key(cluster), _meta(extra)["name"])
                self._ignore_404(self.core.delete_namespaced_pod, _meta(extra)["name"], namespace)
            running = sum(1 for p in mine[:count] if (p.get("status") or {}).get("phase") == "Running")
            if node_type == "head":
                head_running = running == 1
            else:
                desired += count
                running_workers += running
        ready = head_running and running_workers == desired
        status = {"state": "ready" if ready else "", "desiredWorkerReplicas": desired,
                  "availableWorkerReplicas": running_workers, "readyWorkerReplicas": running_workers}
        current = cluster.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):
            try:
                resp = self.custom.patch_namespaced_custom_object_status(
                    keys.RAY_GROUP, keys.RAY_VERSION, namespace, keys.RAYCLUSTER_PLURAL, name,
                    {"status": {**status, "lastUpdateTime": _ts(self.clock.now())}}, _preload_content=False)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            self.rayclusters.apply(json.loads(resp.data))

    def _create_ray_pod(self, cluster: Obj, node_type: str, group: str, template: Obj) -> None:
        meta = _meta(cluster)
        name = meta["name"]
        tmeta = template.get("metadata") or {}
        prefix = f"{name}-head-" if node_type == "head" else f"{name}-{group}-worker-"
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": prefix, "namespace": meta["namespace"],
                "labels": ray_pod_labels(name, node_type, group, dict(tmeta.get("labels") or {})),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [_owner_ref(cluster)],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        try:
            resp = self.core.create_namespaced_pod(meta["namespace"], pod, _preload_content=False)
        except ApiException as exc:
            log.warning("RayCluster %s: cannot create a %s pod: %s %s", _key(cluster), group, exc.status,
                        (exc.body or "")[:300])
            return
        created = json.loads(resp.data)
        log.info("RayCluster %s: created %s pod %s", _key(cluster), node_type, _meta(created)["name"])
        self.pods.apply(created)

    def _delete_cluster(self, cluster: Obj) -> None:
        meta = _meta(cluster)
        self._ignore_404(self.custom.delete_namespaced_custom_object, keys.RAY_GROUP, keys.RAY_VERSION,
                         meta["namespace"], keys.RAYCLUSTER_PLURAL, meta["name"], propagation_policy="Background")
        self.rayclusters.forget(meta["namespace"], meta["name"])
        self._ignore_404(self.core.delete_collection_namespaced_pod, meta["namespace"],
                         label_selector=f"{keys.RAY_CLUSTER}={meta['name']}")

    @staticmethod
    def _ignore_404(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _seconds(text: object, default: float) -> float:
    try:
        return max(0.0, float(str(text)))
    except (TypeError, ValueError):
        return default


def main(argv: list[str] | None = None) -> int:
    """`python -m devcluster.kuberay_standin --kubeconfig K`: run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", required=True, help="kubeconfig of the identity to act as")
    parser.add_argument("--default-run-seconds", type=float, default=DEFAULT_RUN_SECONDS,
                        help=f"run time of a RayJob without the {keys.TEST_RUN_SECONDS} annotation")
    parser.add_argument("--namespace", default=None, help="watch only this namespace (default: all)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    new_client: Any = config.new_client_from_config
    api = new_client(config_file=args.kubeconfig)
    standin = KubeRayStandIn(api, default_run_seconds=args.default_run_seconds, namespace=args.namespace)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    standin.start()
    log.info("KubeRay stand-in started (TEST ONLY)")
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
