"""The stand-in's API clients and the writes every reconciler shares: events once each, status replaced, deletes."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.names import COMPONENT_NAME, RAY_GROUP, RAY_VERSION, RAYCLUSTER_PLURAL, Obj
from devcluster.kuberay_standin.wire import key_of, meta_of, rfc3339

log = logging.getLogger("kuberay-standin")


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class Api:
    """The clients, typed Any (the stand-in speaks plain dicts: bodies in, `_preload_content=False` JSON out)."""

    def __init__(self, api_client: Any, clock: Clock) -> None:
        self.core: Any = client.CoreV1Api(api_client)
        self.batch: Any = client.BatchV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)
        self.clock = clock
        self._events: set[tuple[str, str, str]] = set()

    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on `obj`, once per (object, reason, message)."""
        meta = meta_of(obj)
        mark = (str(meta.get("uid")), reason, message)
        if mark in self._events:
            return
        self._events.add(mark)
        stamp = rfc3339(self.clock.now())
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": kind, "reason": reason, "message": message[:1000], "source": {"component": COMPONENT_NAME},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": COMPONENT_NAME, "reportingInstance": "kuberay-standin",
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False)
        except ApiException as exc:
            log.warning("cannot record event %s on %s: %s", reason, key_of(obj), exc.status)

    def replace_status(self, plural: str, meta: Obj, status: Obj, *, guarded: bool = False) -> Obj | None:
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
                RAY_GROUP, RAY_VERSION, meta["namespace"], plural, meta["name"],
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

    def delete_cluster(self, cluster: Obj) -> None:
        """r.Delete(RayCluster): default (background) propagation; the garbage collector deletes its pods."""
        meta = meta_of(cluster)
        log.info("deleting RayCluster %s", key_of(cluster))
        self.ignore_404(self.custom.delete_namespaced_custom_object, RAY_GROUP, RAY_VERSION,
                        meta["namespace"], RAYCLUSTER_PLURAL, meta["name"])

    @staticmethod
    def ignore_404(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise
