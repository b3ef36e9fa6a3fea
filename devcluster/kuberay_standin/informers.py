"""List-then-watch informers into the stand-in's caches, re-listing on 410 Gone, and which ones it runs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.caches import Caches, Store
from devcluster.kuberay_standin.names import RAY_GROUP, RAY_VERSION, RAYCLUSTER_PLURAL, RAYJOB_PLURAL
from devcluster.kuberay_standin.wire import meta_of

log = logging.getLogger("kuberay-standin")


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
            resource_version = str(meta_of(obj).get("resourceVersion") or resource_version)
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


def informers_for(
    core: Any, batch: Any, custom: Any, caches: Caches, namespace: str | None, changed: threading.Event,
    stop: threading.Event, watch_seconds: int,
) -> list[Informer]:
    """One informer per cache: cluster-wide (namespaces too, for their stand-in label), or in `namespace` only."""
    ray = (RAY_GROUP, RAY_VERSION)
    if namespace is None:
        lists: list[tuple[str, Callable[..., Any], tuple[Any, ...], Store]] = [
            ("rayjobs", custom.list_cluster_custom_object, (*ray, RAYJOB_PLURAL), caches.rayjobs),
            ("rayclusters", custom.list_cluster_custom_object, (*ray, RAYCLUSTER_PLURAL), caches.rayclusters),
            ("pods", core.list_pod_for_all_namespaces, (), caches.pods),
            ("jobs", batch.list_job_for_all_namespaces, (), caches.jobs),
            ("serviceaccounts", core.list_service_account_for_all_namespaces, (), caches.serviceaccounts),
            ("namespaces", core.list_namespace, (), caches.namespaces),
        ]
    else:
        lists = [
            ("rayjobs", custom.list_namespaced_custom_object, (*ray, namespace, RAYJOB_PLURAL), caches.rayjobs),
            ("rayclusters", custom.list_namespaced_custom_object, (*ray, namespace, RAYCLUSTER_PLURAL),
             caches.rayclusters),
            ("pods", core.list_namespaced_pod, (namespace,), caches.pods),
            ("jobs", batch.list_namespaced_job, (namespace,), caches.jobs),
            ("serviceaccounts", core.list_namespaced_service_account, (namespace,), caches.serviceaccounts),
        ]
    return [Informer(what, fn, args, store, changed, stop, watch_seconds) for what, fn, args, store in lists]
