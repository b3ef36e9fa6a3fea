"""The cache's indexes as ``common.accounting.Books``: what the accounting of a pod reads from the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet

from common.accounting import Parent
from common.ledger import Ledger
from common.quota_tree import QuotaNode
from common.rayjob import PodInfo
from extender.job_records import JobRecord
from extender.ownership_index import OwnershipIndex

__all__ = ["CacheBooks"]


class CacheBooks:
    """Reads the live indexes (never a copy): parents, job records, assumed binds, the ledger and the tree."""

    __slots__ = ("_assumed", "_jobs", "_leaf_for", "_ledger", "_owners")

    def __init__(
        self,
        owners: OwnershipIndex,
        jobs: Mapping[str, JobRecord],
        assumed: Mapping[str, str],
        ledger: Callable[[], Ledger | None],
        leaf_for: Callable[[str], QuotaNode | None],
    ) -> None:
        self._owners, self._jobs, self._assumed, self._ledger, self._leaf_for = owners, jobs, assumed, ledger, leaf_for

    def parent(self, uid: str) -> Parent | None:
        return self._owners.parent(uid)

    def job_namespace(self, job_uid: str) -> str | None:
        rec = self._jobs.get(job_uid)
        return rec.info.namespace if rec is not None else None

    def claim_held(self, job_uid: str) -> bool:
        ledger = self._ledger()
        return ledger is not None and job_uid in ledger and job_uid in self._jobs

    def covered(self, job_uid: str) -> AbstractSet[str]:
        rec = self._jobs.get(job_uid)
        return rec.covered if rec is not None else frozenset()

    def stopped(self, job_uid: str) -> bool:
        rec = self._jobs.get(job_uid)
        return rec is not None and rec.info.finished

    def bound(self, namespace: str) -> bool:
        return self._leaf_for(namespace) is not None

    def placed(self, pod: PodInfo) -> bool:
        return bool(pod.node_name) or pod.uid in self._assumed
