"""The growth-refusal log: the scheduler verbs' last quota refusal per growth pod, which the controller writes
onto the pod's RayCluster (its RayQueueQuota condition and a GrowthRefused event), never from the verbs' path."""

from __future__ import annotations

from collections.abc import Callable

from common.rayjob import PodInfo

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

    def pending(self, pending_growth: Callable[[str], PodInfo | None]) -> dict[str, list[tuple[PodInfo, str]]]:
        """Per RayCluster uid: its pending growth pods the quota refused, with the refusal, oldest pod first.
        ``pending_growth`` gives a pod that is still pending growth (None once it is bound, gone or covered:
        its refusal is over)."""
        out: dict[str, list[tuple[PodInfo, str]]] = {}
        for uid in sorted(self._refusals):
            pod = pending_growth(uid)
            if pod is not None and pod.owner is not None:
                out.setdefault(pod.owner.uid, []).append((pod, self._refusals[uid]))
        for refused in out.values():
            refused.sort(key=lambda pr: (pr[0].created or "~", pr[0].uid))
        return out
