"""The stand-in's caches, filled by the informers and by its own writes, and the lookups KubeRay makes in them."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from devcluster.kuberay_standin.names import RAY_CLUSTER_LABEL, RAY_NODE_TYPE_LABEL, Obj
from devcluster.kuberay_standin.wire import controller_uid, key_of, labels_of, meta_of, resource_version


class Store:
    """One resource's cache, filled by an informer and by our own writes; the newer resourceVersion wins."""

    def __init__(self) -> None:
        self._items: dict[str, Obj] = {}
        self._lock = threading.Lock()

    def replace(self, items: Iterable[Obj]) -> None:
        with self._lock:
            self._items = {key_of(o): o for o in items}

    def apply(self, obj: Obj) -> None:
        with self._lock:
            old = self._items.get(key_of(obj))
            if old is None or resource_version(obj) >= resource_version(old):
                self._items[key_of(obj)] = obj

    def remove(self, obj: Obj) -> None:
        with self._lock:
            old = self._items.get(key_of(obj))
            if old is not None and resource_version(obj) >= resource_version(old):
                del self._items[key_of(obj)]

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._items.pop(f"{namespace}/{name}", None)

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get(f"{namespace}/{name}")

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())


@dataclass
class Caches:
    """One Store per resource the stand-in reads."""

    rayjobs: Store = field(default_factory=Store)
    rayclusters: Store = field(default_factory=Store)
    pods: Store = field(default_factory=Store)
    jobs: Store = field(default_factory=Store)
    namespaces: Store = field(default_factory=Store)
    serviceaccounts: Store = field(default_factory=Store)

    def cluster_pods(self, cluster: Obj) -> list[Obj]:
        """common.RayClusterAllPodsAssociationOptions: every pod labelled with the cluster, deleting or not."""
        meta = meta_of(cluster)
        return sorted((p for p in self.pods.items() if meta_of(p).get("namespace") == meta["namespace"]
                       and labels_of(p).get(RAY_CLUSTER_LABEL) == meta["name"]), key=lambda p: str(meta_of(p)["name"]))

    def head_pod(self, cluster: Obj) -> Obj | None:
        return next((p for p in self.cluster_pods(cluster) if labels_of(p).get(RAY_NODE_TYPE_LABEL) == "head"), None)

    def submitter_of(self, rayjob: Obj) -> Obj | None:
        """common.RayJobK8sJobNamespacedName: the Job named after the RayJob."""
        meta = meta_of(rayjob)
        return self.jobs.get(meta["namespace"], meta["name"])

    def rayjob_of_cluster_name(self, namespace: str, cluster_name: str) -> Obj | None:
        """The RayJob that controls the RayCluster `namespace/cluster_name`, if any."""
        cluster = self.rayclusters.get(namespace, cluster_name)
        owner = controller_uid(cluster) if cluster else None
        return next((r for r in self.rayjobs.items() if meta_of(r).get("uid") == owner), None)
