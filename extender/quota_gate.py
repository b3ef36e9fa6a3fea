"""The scheduler verbs' quota answers on the cache: the pure verdicts of ``common.pod_quota`` on the cached
accounts, and the growth refusals they leave for the controller (recorded here, beside the verbs)."""

from __future__ import annotations

from collections.abc import Callable

from common.pod_quota import QuotaVerdict, eviction_refusal, quota_verdict
from common.rayjob import PodInfo
from extender.cache import Cache

__all__ = ["QuotaGate"]


class QuotaGate:
    """``check`` (filter, bind) and ``protected`` (preempt) for ``SchedulerView``; ``poke`` wakes the controller
    when a growth pod's refusal changed (it writes the refusal onto the RayCluster)."""

    def __init__(self, cache: Cache, poke: Callable[[], None] | None = None) -> None:
        self.cache, self.poke = cache, poke

    def check(self, pod: PodInfo) -> QuotaVerdict:
        """The pod-level quota verdict; a growth pod's answer (or the answer for a pod kube-scheduler sent
        before the watch showed it: it may be growth) is recorded for the controller."""
        cache = self.cache
        account = cache.account(pod.uid)
        verdict = quota_verdict(
            pod,
            account,
            leaf=cache.leaf_for(pod.namespace),
            ledger=cache.ledger,
            request=lambda: cache.uncovered_request(pod.uid) if account is not None else pod.request,
            waiting_guaranteed=cache.waiting_guaranteed,
            releasing=cache.releasing_claims,
        )
        if verdict.ledger_asked and (account is None or verdict.growth_of is not None):
            changed = cache.record_growth_answer(pod.uid, verdict.refusal)
            if changed and account is not None and self.poke is not None:
                self.poke()
        return verdict

    def protected(self, victim: PodInfo, preemptor: PodInfo) -> str | None:
        """Why kube-scheduler may not evict ``victim`` for ``preemptor`` (None: it may)."""
        cache = self.cache
        return eviction_refusal(
            victim,
            preemptor,
            covering_job=cache.covering_job(victim.uid),
            victim_leaf=cache.leaf_for(victim.namespace),
            preemptor_leaf=cache.leaf_for(preemptor.namespace),
            ledger=cache.ledger,
        )
