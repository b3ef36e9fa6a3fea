"""The ElasticQuotaTree as the cache last accepted it: the valid tree, its status, why a newer one was refused,
and the ledger of usage on it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from common import keys
from common.ledger import Ledger
from common.quota_tree import QuotaTree, TreeError
from common.resources import Resources
from extender.watched_objects import meta_of

__all__ = ["TreeChange", "TreeState"]

log = logging.getLogger("extender.cache")

# none: nothing changed; noted: the status or the problem changed; tree: the tree changed (or went), so every
# claim is derived again.
TreeChange = Literal["none", "noted", "tree"]


class TreeState:
    """Only kube-system/elasticquotatree counts; an invalid one keeps the last valid (``problem`` says why)."""

    def __init__(self) -> None:
        self.tree: QuotaTree | None = None
        self.status: Mapping[str, Any] | None = None
        self.problem: str | None = None
        self.ledger: Ledger | None = None  # None until a valid tree arrives

    def on_tree(self, event_type: str, obj: Mapping[str, Any], capacity: Callable[[], Resources | None]) -> TreeChange:
        """An ElasticQuotaTree event; ``capacity`` is the cluster's, for a new ledger."""
        meta = meta_of(obj)
        if (meta.get("namespace"), meta.get("name")) != (keys.QUOTA_TREE_NAMESPACE, keys.QUOTA_TREE_NAME):
            return "none"
        if event_type == "DELETED":
            if self.tree is None and self.status is None:
                return "none"
            self.tree, self.status, self.ledger = None, None, None
            self.problem = (
                f"{keys.QUOTA_TREE_KIND} {keys.QUOTA_TREE_NAMESPACE}/{keys.QUOTA_TREE_NAME} was deleted: "
                "no namespace is bound, nothing is admitted until it is created again"
            )
            log.warning("%s", self.problem)
            return "tree"
        status = obj.get("status")
        new_status = status if isinstance(status, Mapping) else {}
        try:
            tree = QuotaTree.parse(obj)
        except TreeError as exc:
            problem = f"{exc}; keeping the last valid tree"
            if problem == self.problem:
                return "none"
            self.problem = problem
            log.error("%s", problem)
            return "noted"
        changed = tree != self.tree or self.problem is not None
        if not changed and new_status == self.status:
            return "none"
        self.problem = None
        self.status = new_status
        if not changed:
            return "noted"
        self.tree = tree
        if self.ledger is None:
            self.ledger = Ledger(tree, capacity())
        else:
            self.ledger.set_tree(tree)
        return "tree"
