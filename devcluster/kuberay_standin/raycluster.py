"""KubeRay's RayCluster reconcile (raycluster_controller.go:rayClusterReconcile, reconcilePods@v1.7.0)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.api import Api
from devcluster.kuberay_standin.caches import Caches
from devcluster.kuberay_standin.cluster_status import calculate_status, suspend_status
from devcluster.kuberay_standin.model import (
    PassError,
    autoscaling_enabled,
    backoff_seconds,
    cluster_spec_with_defaults,
    desired_workers,
    managed_elsewhere,
    should_delete_pod,
)
from devcluster.kuberay_standin.multihost import is_multi_host, plan_multi_host_group
from devcluster.kuberay_standin.names import (
    CLUSTER_SUSPENDED,
    CLUSTER_SUSPENDING,
    DISABLE_HEAD_RESTART,
    HEAD_GROUP,
    MODEL_17,
    RAY_CLUSTER_LABEL,
    RAY_GROUP_LABEL,
    RAY_NODE_TYPE_LABEL,
    RAYCLUSTER_PLURAL,
    WORKER_REPLICA_INDEX_LABEL,
    Obj,
)
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.pods import autoscaler_service_account, head_pod_body, worker_pod_body
from devcluster.kuberay_standin.validation import (
    validate_cluster_metadata,
    validate_cluster_spec,
    validate_cluster_upgrade_options,
)
from devcluster.kuberay_standin.wire import (
    annotations_of,
    find_condition,
    int_or,
    key_of,
    labels_of,
    meta_of,
    owner_ref,
    rfc3339,
)

log = logging.getLogger("kuberay-standin")


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


class RayClusterReconciler:
    """Reconciles each RayCluster's pods and status; a failed pass backs off per cluster (controller-runtime)."""

    def __init__(self, api: Api, caches: Caches, model: str, config: OperatorConfig,
                 max_backoff_seconds: float, rng: random.Random | None = None) -> None:
        self.api, self.caches, self.model, self.config = api, caches, model, config
        self._rng = rng or random.Random()
        self.max_backoff_seconds = max_backoff_seconds
        self._backoff: dict[str, _Backoff] = {}
        self._expectations = _Expectations()

    def reconcile(self, cluster: Obj, now: dt.datetime) -> None:
        """rayClusterReconcile: validate, reconcile the pods (backed off after a failed pass), write the status."""
        meta = meta_of(cluster)
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
            self.api.event(cluster, "Warning", reason, f"The RayCluster {what} is invalid {key_of(cluster)}: {problem}")
            return
        upgrade = validate_cluster_upgrade_options(cluster) if self.model == MODEL_17 else None
        if upgrade is not None:  # rayClusterReconcile@v1.7.0: an event, no pods, no status
            self.api.event(cluster, "Warning", "InvalidRayClusterSpec",
                           f"The RayCluster UpgradeStrategy is invalid {key_of(cluster)}: {upgrade}")
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
            log.info("RayCluster %s: %s (%s); retrying in %.2fs", key_of(cluster), exc, exc.reason,
                     backoff.not_before - time.monotonic())
        else:
            backoff.failures, backoff.not_before = 0, 0.0
        self._write_status(cluster, error, now)

    def _reconcile_pods(self, cluster: Obj) -> None:
        """reconcilePods; raises PassError where KubeRay returns an error."""
        meta, spec = meta_of(cluster), cluster_spec_with_defaults(cluster.get("spec") or {})
        uid, pods = str(meta["uid"]), self.caches.cluster_pods(cluster)
        # Suspend (reconcilePods@v1.7.0, the RayClusterStatusConditions gate on, its default since v1.3): pods are
        # deleted only once calculateStatus has set RayClusterSuspending; spec.suspend alone (before that, or
        # once Suspended) stops the reconcile of pods. Resumed, nothing is created until Suspended is False.
        # The 1.3 model writes no conditions: it follows the gate-off branch (v1.1-v1.2, and v1.3+ with the gate
        # off): spec.suspend deletes every pod at once, on every pass.
        suspending = suspend_status(cluster) if self.model == MODEL_17 else (CLUSTER_SUSPENDING if spec.get("suspend") else "")
        if suspending == CLUSTER_SUSPENDING:
            active = [p for p in pods if not meta_of(p).get("deletionTimestamp")]
            for pod in active:  # deleteAllPods: one DeleteAllOf of the cluster's pods when any is active
                self._delete_pod(pod)
            if active:
                self.api.event(cluster, "Normal", "DeletedPod",
                               f"Deleted Pods for RayCluster {key_of(cluster)} due to suspension")
            return
        if suspending == CLUSTER_SUSPENDED or spec.get("suspend"):
            return
        heads = [p for p in pods if labels_of(p).get(RAY_NODE_TYPE_LABEL) == "head"]
        if self._expectations.satisfied(uid, HEAD_GROUP, {meta_of(p)["name"] for p in heads}):
            if len(heads) == 1:
                delete, why = should_delete_pod(heads[0], "head")
                if delete:
                    self._delete_pod(heads[0])
                    self._expectations.expect_deleted(uid, HEAD_GROUP, meta_of(heads[0])["name"])
                    self.api.event(cluster, "Normal", "DeletedHeadPod", f"Deleted head Pod {key_of(heads[0])}")
                    raise PassError("", why)
            elif not heads:
                provisioned = find_condition(list((cluster.get("status") or {}).get("conditions") or []),
                                         "RayClusterProvisioned")
                skip = (self.model == MODEL_17 and provisioned is not None and provisioned.get("status") == "True"
                        and annotations_of(cluster).get(DISABLE_HEAD_RESTART) == "true")
                if not skip:
                    self._create_pod(cluster, head_pod_body(cluster, spec, self.config, self.model),
                                     "FailedCreateHeadPod")
            else:
                names = [meta_of(p)["name"] for p in heads]
                raise PassError("", f"{len(heads)} head pods found {names}. Please delete extra head pods")
        for group in spec.get("workerGroupSpecs") or []:
            name = str(group.get("groupName", ""))
            mine = [p for p in pods if labels_of(p).get(RAY_NODE_TYPE_LABEL) == "worker"
                    and labels_of(p).get(RAY_GROUP_LABEL) == name]
            # rayClusterScaleExpectation looks a deleted pod up by namespace and name: a pod of another owner
            # that workersToDelete named holds the group back too, until it is gone.
            in_namespace = {meta_of(p)["name"] for p in self.caches.pods.items()
                            if meta_of(p).get("namespace") == meta["namespace"]}
            if not self._expectations.satisfied(uid, name, in_namespace):
                continue
            if group.get("suspend"):
                for pod in mine:
                    if not meta_of(pod).get("deletionTimestamp"):
                        self._delete_pod(pod)
                        self._expectations.expect_deleted(uid, name, meta_of(pod)["name"])
                continue
            if self.model == MODEL_17 and is_multi_host(group):
                self._reconcile_multi_host_group(cluster, spec, group, mine)
                continue
            unhealthy = [p for p in mine if should_delete_pod(p, "worker")[0]]
            for pod in unhealthy:
                self._delete_pod(pod)
                self._expectations.expect_deleted(uid, name, meta_of(pod)["name"])
                self.api.event(cluster, "Normal", "DeletedWorkerPod", f"Deleted worker Pod {key_of(pod)}")
            if unhealthy:
                raise PassError("", f"delete {len(unhealthy)} unhealthy worker Pods")
            # reconcilePods@v1.7.0: "Always remove the specified WorkersToDelete - regardless of the value of
            # Replicas" (the Ray autoscaler's way to scale down: it lowers replicas and names the idle
            # workers). Each name is deleted as a pod of the cluster's namespace, whoever owns it (KubeRay
            # builds a Pod of that name and namespace and deletes it: not checked against the group); a name
            # already gone is ignored, the list is left for the autoscaler to clear, and the named pods do not
            # count in this pass's diff.
            named = set((group.get("scaleStrategy") or {}).get("workersToDelete") or [])
            for pod_name in sorted(named):
                pod = self.caches.pods.get(meta["namespace"], pod_name)
                if pod is not None and not meta_of(pod).get("deletionTimestamp"):
                    self._delete_pod(pod)
                    self._expectations.expect_deleted(uid, name, pod_name)
                    self.api.event(cluster, "Normal", "DeletedWorkerPod", f"Deleted pod {key_of(pod)}")
            mine = [p for p in mine if meta_of(p)["name"] not in named]
            diff = desired_workers(group, self.model) - len(mine)
            if diff > 0:
                used = {int_or(labels_of(p).get(WORKER_REPLICA_INDEX_LABEL), -1) for p in mine}
                for _ in range(diff):
                    index = next(i for i in range(len(used) + diff + 1) if i not in used)
                    used.add(index)
                    body = worker_pod_body(cluster, spec, group, index, self.config, self.model)
                    self._create_pod(cluster, body, "FailedCreateWorkerPod")
            elif diff < 0 and not autoscaling_enabled(spec):
                for pod in mine[:-diff]:
                    log.info("RayCluster %s: scaling down group %s, deleting %s", key_of(cluster), name, meta_of(pod)["name"])
                    self._delete_pod(pod)
                    self._expectations.expect_deleted(uid, name, meta_of(pod)["name"])
                    self.api.event(cluster, "Normal", "DeletedWorkerPod", f"Deleted Pod {key_of(pod)}")

    def _reconcile_multi_host_group(self, cluster: Obj, spec: Obj, group: Obj, mine: list[Obj]) -> None:
        """reconcileMultiHostWorkerGroup@v1.7.0: the plan's deletes (deletePods), then its replicas, numOfHosts pods
        each; raises PassError where KubeRay returns an error."""
        uid, name = str(meta_of(cluster)["uid"]), str(group.get("groupName", ""))
        plan = plan_multi_host_group(group, mine, autoscaling_enabled(spec), self._rng)
        for pod, why in plan.delete:
            self._delete_pod(pod)
            self._expectations.expect_deleted(uid, name, meta_of(pod)["name"])
            self.api.event(cluster, "Normal", "DeletedWorkerPod",
                           f"Deleted worker Pod {key_of(pod)} for group {name}: {why}")
        if plan.error:
            raise PassError("", plan.error)
        for replica, index in plan.create:
            for host in range(int(group.get("numOfHosts", 1))):
                body = worker_pod_body(cluster, spec, group, index, self.config, self.model, replica, host)
                self._create_pod(cluster, body, "FailedCreateWorkerPod")

    def _create_pod(self, cluster: Obj, pod: Obj, reason: str) -> None:
        """createHeadPod / createWorkerPod: one create call; a refusal ends the pass."""
        try:
            resp = self.api.core.create_namespaced_pod(meta_of(cluster)["namespace"], pod, _preload_content=False)
        except ApiException as exc:
            detail = str(exc.body or exc.reason)[:400]
            kind = "head" if reason == "FailedCreateHeadPod" else "worker"
            if kind == "head":
                message = f"Failed to create head Pod {meta_of(cluster)['namespace']}/{pod['metadata']['generateName']}, {detail}"
            else:
                message = f"Failed to create worker Pod for the cluster {key_of(cluster)}, {detail}"
            self.api.event(cluster, "Warning", f"FailedToCreate{kind.capitalize()}Pod", message)
            raise PassError(reason, message) from exc
        created = json.loads(resp.data)
        log.info("RayCluster %s: created %s pod %s", key_of(cluster), labels_of(created).get(RAY_NODE_TYPE_LABEL),
                 meta_of(created)["name"])
        self.caches.pods.apply(created)

    def _delete_pod(self, pod: Obj) -> None:
        """r.Delete(pod): the default grace period; the pod stays (with a deletionTimestamp) until it stops."""
        meta = meta_of(pod)
        try:
            resp = self.api.core.delete_namespaced_pod(meta["name"], meta["namespace"], _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                self.caches.pods.forget(meta["namespace"], meta["name"])
                return
            raise PassError("FailedDeleteWorkerPod", f"Failed deleting pod {key_of(pod)}, {exc.status}") from exc
        body = json.loads(resp.data)
        if body.get("kind") == "Pod":
            self.caches.pods.apply(body)
        else:  # a Status: deleted at once (no node, or terminal)
            self.caches.pods.forget(meta["namespace"], meta["name"])

    def _ensure_autoscaler_service_account(self, cluster: Obj) -> None:
        """reconcileAutoscalerServiceAccount: the cluster-named ServiceAccount, owned by the RayCluster."""
        spec = cluster.get("spec") or {}
        head = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
        if not autoscaling_enabled(spec) or head.get("serviceAccountName"):
            return
        meta, name = meta_of(cluster), autoscaler_service_account(cluster)
        if self.caches.serviceaccounts.get(meta["namespace"], name) is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": meta["namespace"],
                             "labels": {RAY_CLUSTER_LABEL: meta["name"]}, "ownerReferences": [owner_ref(cluster)]}}
        try:
            resp = self.api.core.create_namespaced_service_account(meta["namespace"], body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise PassError("", f"Failed creating service account {meta['namespace']}/{name}, {exc.status}") from exc
            return
        self.caches.serviceaccounts.apply(json.loads(resp.data))

    def _write_status(self, cluster: Obj, error: PassError | None, now: dt.datetime) -> None:
        """calculateStatus + updateRayClusterStatus (written only when something but lastUpdateTime changed)."""
        old = cluster.get("status") or {}
        stamp = rfc3339(now)
        new = calculate_status(cluster, self.caches.cluster_pods(cluster), error, self.model, stamp)
        if new == old:
            return
        new["lastUpdateTime"] = stamp
        updated = self.api.replace_status(RAYCLUSTER_PLURAL, meta_of(cluster), new, guarded=True)
        if updated is not None:
            self.caches.rayclusters.apply(updated)
