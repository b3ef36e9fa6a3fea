"""Every API resource the services read or write, named once (``Scope``: group, version, plural)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from common import keys
from common.jobkind import KINDS
from kubeio.client import Scope

__all__ = [
    "BATCH_JOBS",
    "JOB_SCOPES",
    "LEASES",
    "NAMESPACES",
    "NODES",
    "PODS",
    "PRIORITY_CLASSES",
    "QUEUES",
    "QUEUE_UNITS",
    "RAYCLUSTERS",
    "RAYJOBS",
    "SECRETS",
    "TREES",
]

PODS: Final = Scope("", "v1", "pods")
NODES: Final = Scope("", "v1", "nodes", namespaced=False)
NAMESPACES: Final = Scope("", "v1", "namespaces", namespaced=False)
SECRETS: Final = Scope("", "v1", "secrets")
LEASES: Final = Scope("coordination.k8s.io", "v1", "leases")
PRIORITY_CLASSES: Final = Scope("scheduling.k8s.io", "v1", "priorityclasses", namespaced=False)
BATCH_JOBS: Final = Scope(keys.BATCH_GROUP, keys.BATCH_VERSION, keys.BATCH_JOB_PLURAL)
TREES: Final = Scope(keys.QUOTA_GROUP, keys.QUOTA_VERSION, keys.QUOTA_TREE_PLURAL)
QUEUES: Final = Scope(keys.QUEUE_GROUP, keys.QUEUE_VERSION, keys.QUEUE_PLURAL)
QUEUE_UNITS: Final = Scope(keys.QUEUE_GROUP, keys.QUEUE_VERSION, keys.QUEUE_UNIT_PLURAL)
# The queued kinds, by kind (``common.jobkind``): a job is dequeued and suspended the same way whatever its kind.
JOB_SCOPES: Final[Mapping[str, Scope]] = {
    k.kind: Scope(keys.RAY_GROUP, keys.RAY_VERSION, k.plural) for k in KINDS.values()
}
RAYJOBS: Final = JOB_SCOPES[keys.RAYJOB_KIND]
RAYCLUSTERS: Final = JOB_SCOPES[keys.RAYCLUSTER_KIND]
