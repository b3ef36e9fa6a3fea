"""What the webhook watches (tree, PriorityClasses, Queues, QueueUnits), folded into each request's ClusterFacts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from common import keys
from common.quota_tree import QuotaTree, TreeError
from webhook.policy import ClusterFacts
from webhook.queue_status import QueueStatus

__all__ = ["ClusterView"]

log = logging.getLogger(__name__)


class ClusterView:
    """The last valid tree and the priority class values. Event handlers are plain functions."""

    def __init__(self, now_ns: Callable[[], int]) -> None:
        self._now_ns = now_ns
        self.tree: QuotaTree | None = None
        self.tree_problem: str | None = None
        self.priority_classes: dict[str, int] = {}
        self.tree_synced = False
        self.classes_synced = False
        self.queues = QueueStatus()  # for the create warning; not needed for readiness

    @property
    def ready(self) -> bool:
        return self.tree_synced and self.classes_synced

    def on_tree(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if (meta.get("namespace"), meta.get("name")) != (keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME):
            return
        self.queues.on_tree(kind, obj)
        if kind == "DELETED":
            self.tree, self.tree_problem = None, None
            log.warning("ElasticQuotaTree deleted: every namespace is now unbound")
            return
        try:
            self.tree = QuotaTree.parse(obj)
            self.tree_problem = None
        except TreeError as exc:  # created before the webhook validated it: keep the last good one
            self.tree_problem = str(exc)
            log.error("ElasticQuotaTree is invalid, keeping the last valid one: %s", exc)

    def on_priority_class(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        if kind == "DELETED":
            self.priority_classes.pop(name, None)
        elif isinstance(obj.get("value"), int):
            self.priority_classes[name] = int(obj["value"])

    def snapshot(self, admitted_by_namespace: dict[str, list[str]] | None = None) -> ClusterFacts:
        """What the webhook knows now, for one request."""
        return ClusterFacts(tree=self.tree, now_ns=self._now_ns(), priority_classes=dict(self.priority_classes),
                            admitted_by_namespace=admitted_by_namespace or {},
                            queues=self.queues if self.queues.ready else None)
