"""What every admission rule decides from: who may do what (PolicyConfig) and what is known (ClusterFacts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import keys
from common.kuberay_rules import FeatureGates
from common.quota_tree import QuotaNode, QuotaTree
from webhook.queue_status import QueueStatus
from webhook.review import User

__all__ = ["PREFIX", "ClusterFacts", "ClusterLookup", "NamespaceListing", "PolicyConfig", "bound_leaf"]

PREFIX = "rayqueue"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Who may do what. Usernames are exact; groups grant the same as the controller (cluster admins)."""

    controller_users: frozenset[str] = frozenset({"system:serviceaccount:rayqueue:rayqueue-extender"})
    binder_users: frozenset[str] = frozenset(
        {"system:kube-scheduler", "system:serviceaccount:rayqueue:rayqueue-extender",
         "system:serviceaccount:rayqueue:rayqueue-scheduler"}
    )
    admin_groups: frozenset[str] = frozenset({"system:masters"})
    scheduler_name: str | None = None  # the rayqueue scheduler's name, stamped into bound pods when set
    enqueue_tolerance_ns: int = 10 * 10**9  # a client enqueue stamp closer than this to now is kept
    kuberay_gates: FeatureGates = field(default_factory=FeatureGates)  # the KubeRay operator's feature gates (v1.7 defaults)

    def privileged(self, user: User) -> bool:
        return user.username in self.controller_users or bool(self.admin_groups.intersection(user.groups))

    def may_bind(self, user: User) -> bool:
        return user.username in self.binder_users or self.privileged(user)

    @property
    def expected_scheduler(self) -> str:
        return self.scheduler_name or keys.DEFAULT_SCHEDULER


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """What the webhook knows of the cluster at decision time: the tree (None until none exists), priority
    classes, now, and what the adapter read for this one request."""

    tree: QuotaTree | None
    now_ns: int
    priority_classes: Mapping[str, int] = field(default_factory=dict)
    # For tree-update warnings: admitted RayJobs ("ns/name") by namespace. Filled by the adapter, only then.
    admitted_by_namespace: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # For a clusterSelector RayJob's CREATE: the selected RayCluster ("ns/name"), read by the adapter, only then.
    selected_clusters: Mapping[str, ClusterLookup] = field(default_factory=dict)
    # For a RayCluster's CREATE whose controller is a RayJob: that RayJob ("ns/name"), read by the adapter, only then.
    owner_jobs: Mapping[str, ClusterLookup] = field(default_factory=dict)
    # For the create warning (position, free quota, estimate; common/preview.py): what the controller publishes,
    # by watch. None until the Queues and QueueUnits are synced: then no warning.
    queues: QueueStatus | None = None
    # For an ElasticQuotaTree write (rule N1): every Namespace's labels by name, listed live by the adapter, only then.
    namespaces: NamespaceListing | None = None
    # For a Namespace write that may matter (rules N2, N3): the ElasticQuotaTree, read live by the adapter, only then.
    live_tree: ClusterLookup | None = None


@dataclass(frozen=True, slots=True)
class ClusterLookup:
    """What the adapter found when it read a RayCluster (or a RayJob, for rule raycluster-owner): the object, or
    that there is none, or why it could not."""

    obj: Mapping[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class NamespaceListing:
    """What the adapter found when it listed the Namespaces: each one's labels by name, or why it could not."""

    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    error: str | None = None


def bound_leaf(facts: ClusterFacts, namespace: str) -> QuotaNode | None:
    """The leaf the namespace is bound to, or None (no tree, or an unbound namespace)."""
    return facts.tree.leaf_for_namespace(namespace) if facts.tree is not None else None
