"""The stand-in wired together: informers into caches, one loop running the kubelet, RayJob and RayCluster passes."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from kubernetes.client.exceptions import ApiException

from devcluster.kuberay_standin.api import Api, Clock, SystemClock
from devcluster.kuberay_standin.caches import Caches, Store
from devcluster.kuberay_standin.informers import informers_for
from devcluster.kuberay_standin.kubelet import Kubelet
from devcluster.kuberay_standin.names import (
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_RUN_SECONDS,
    MODEL_17,
    MODELS,
    TEST_KUBERAY_STANDIN,
    Obj,
)
from devcluster.kuberay_standin.operator_config import OperatorConfig
from devcluster.kuberay_standin.pods import head_pod_body, worker_pod_body
from devcluster.kuberay_standin.raycluster import RayClusterReconciler
from devcluster.kuberay_standin.rayjob import RayJobReconciler
from devcluster.kuberay_standin.wire import key_of, labels_of, meta_of

log = logging.getLogger("kuberay-standin")


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
        self.model = model
        self.config = operator_config or OperatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.resync_seconds = resync_seconds
        self.namespace = namespace
        self.serve_label = serve_label or model
        self._stop = threading.Event()
        self._changed = threading.Event()
        self.api = Api(api_client, self.clock)
        self.caches = Caches()
        self.kubelet = Kubelet(self.api, self.caches, default_run_seconds)
        self.rayjob_reconciler = RayJobReconciler(self.api, self.caches, model, self.config, default_run_seconds,
                                                  random.Random(seed))
        self.raycluster_reconciler = RayClusterReconciler(self.api, self.caches, model, self.config,
                                                          max_backoff_seconds)
        self._informers = informers_for(self.api.core, self.api.batch, self.api.custom, self.caches, namespace,
                                        self._changed, self._stop, watch_seconds)
        self._loop: threading.Thread | None = None
        self.errors = 0

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
        ns = self.caches.namespaces.get("", namespace)
        if ns is None:  # not seen yet: its label is unknown, so not ours yet
            return False
        return labels_of(ns).get(TEST_KUBERAY_STANDIN, MODEL_17) == self.serve_label

    def _mine(self, store: Store) -> list[Obj]:
        return [o for o in store.items() if self.serves(str(meta_of(o).get("namespace", "")))]

    def reconcile_once(self) -> None:
        """One pass over the caches: kubelet duties, then RayJobs, then RayClusters."""
        now = self.clock.now()
        for pod in self._mine(self.caches.pods):
            self._guarded(self.kubelet.reconcile, pod, now)
        for rayjob in self._mine(self.caches.rayjobs):
            self._guarded(self.rayjob_reconciler.reconcile, rayjob, now)
        for cluster in self._mine(self.caches.rayclusters):
            self._guarded(self.raycluster_reconciler.reconcile, cluster, now)

    def _guarded(self, reconcile: Callable[[Obj, dt.datetime], None], obj: Obj, now: dt.datetime) -> None:
        """One object's reconcile; an API error fails that object only (controller-runtime requeues it)."""
        try:
            reconcile(obj, now)
        except ApiException as exc:
            self.errors += 1
            log.warning("%s %s: API error %s %s; retrying on a later pass", obj.get("kind", "Pod"), key_of(obj),
                        exc.status, str(exc.body or exc.reason)[:300])

    # ------------------------------------------------------------------ the pod builders, with these settings
    def _head_pod_body(self, cluster: Obj, spec: Obj) -> Obj:
        """pods.head_pod_body with this stand-in's operator settings."""
        return head_pod_body(cluster, spec, self.config, self.model)

    def _worker_pod_body(self, cluster: Obj, spec: Obj, group: Obj, index: int, replica_name: str = "",
                         host_index: int = 0) -> Obj:
        """pods.worker_pod_body with this stand-in's operator settings and model."""
        return worker_pod_body(cluster, spec, group, index, self.config, self.model, replica_name, host_index)
