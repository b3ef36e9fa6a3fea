"""The growth-refusal log: the scheduler verbs' last quota refusal per growth pod, which the controller writes
onto the pod's RayCluster (its RayQueueQuota condition and a GrowthRefused event), never from the verbs' path."""

from __future__ import annotations

__all__ = ["GrowthRefusalLog"]


class GrowthRefusalLog:
    """Pod uid -> the quota's refusal of that growth pod, as the verbs last answered."""

    def __init__(self) -> None:
        self._refusals: dict[str, str] = {}

    def record(self, pod_uid: str, refusal: str | None) -> bool:
        """The verbs' quota answer for a growth pod: its refusal, or None once it fits. True when that
        changed what the controller must write (the RayCluster's condition)."""
        if refusal is None:
            return self._refusals.pop(pod_uid, None) is not None
        if self._refusals.get(pod_uid) == refusal:
            return False
        self._refusals[pod_uid] = refusal
        return True

    def forget(self, pod_uid: str) -> None:
        """The pod is gone."""
        self._refusals.pop(pod_uid, None)

    def items(self) -> list[tuple[str, str]]:
        """Every (pod uid, refusal), sorted by pod uid."""
        return sorted(self._refusals.items())
