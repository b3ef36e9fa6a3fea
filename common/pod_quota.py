"""The pod-level quota answers of the scheduler verbs, pure: may this pod be placed now (filter, bind), and
may kube-scheduler evict this victim for that preemptor (preempt)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from common.accounting import PodAccount
from common.ledger import Claim, Ledger
from common.quota_tree import QuotaNode
from common.rayjob import JobInfo, PodInfo
from common.resources import Resources

__all__ = ["QuotaRule", "QuotaVerdict", "eviction_refusal", "quota_verdict"]

# covered: an admitted job's reservation holds its quota; no-quota: its namespace is bound to no leaf (or no
# tree is known); fits / over-quota: the ledger's answer for the pod (and its pending gang).
QuotaRule = Literal["covered", "no-quota", "fits", "over-quota"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QuotaVerdict:
    """The quota answer for one pod: truthy when it may be placed; ``rule`` says which rule answered and
    ``reason`` the ledger's words (the rule, node and numbers of a refusal)."""

    admitted: bool
    rule: QuotaRule
    reason: str = ""
    growth_of: str | None = None  # the admitted job this pod is growth of, when it is

    def __bool__(self) -> bool:
        return self.admitted

    @property
    def refusal(self) -> str | None:
        """The reason of a refusal, None when admitted."""
        return None if self.admitted else self.reason

    @property
    def ledger_asked(self) -> bool:
        """The ledger decided (the pod is neither covered nor outside every quota)."""
        return self.rule in ("fits", "over-quota")


def quota_verdict(
    pod: PodInfo,
    account: PodAccount | None,
    *,
    leaf: QuotaNode | None,
    ledger: Ledger | None,
    request: Callable[[], Resources],
    waiting_guaranteed: Sequence[Claim] = (),
    releasing: AbstractSet[str] = frozenset(),
) -> QuotaVerdict:
    """Pods an admitted job's reservation covers are in; any other pod in a bound namespace (growth of a job
    included: more pods than admitted, a retried job's new pods while the old ones terminate) must fit its
    quota with ``request()`` (asked only when the ledger is; a gang member's covers its gang's other pending
    uncovered members). ``account`` is the cached pod's (None when the cache does not know it yet). Growth yields to ``waiting_guaranteed``
    (docs/growth.md: the guaranteed-first rule, as for jobs), so a pod KubeRay recreates after a growth
    reclaim cannot take back what the claimant waits for."""
    if account is not None and account.charge == "covered":
        return QuotaVerdict(admitted=True, rule="covered")
    if leaf is None or ledger is None:
        return QuotaVerdict(admitted=True, rule="no-quota")
    growth_of = account.growth_of if account is not None else None
    claim = Claim(uid=pod.uid, key=pod.key, kind="pod", quota=leaf.full_name, request=request(),
                  priority=pod.priority)
    decision = ledger.check(claim, waiting_guaranteed=waiting_guaranteed if growth_of is not None else (),
                            releasing=releasing)
    return QuotaVerdict(
        admitted=decision.admitted,
        rule="fits" if decision else "over-quota",
        reason=decision.reason,
        growth_of=growth_of,
    )


def eviction_refusal(
    victim: PodInfo,
    preemptor: PodInfo,
    *,
    covering_job: JobInfo | None,
    victim_leaf: QuotaNode | None,
    preemptor_leaf: QuotaNode | None,
    ledger: Ledger | None,
) -> str | None:
    """Why kube-scheduler may not evict ``victim`` for ``preemptor`` (None: it may): a pod an admitted job's
    reservation covers (``covering_job``) goes only with its whole job; a pod of a quota within its min only
    for a higher-priority pod of the same quota."""
    if covering_job is not None:
        return (f"pod {victim.key} belongs to admitted RayJob {covering_job.key}: RayJobs are reclaimed whole by "
                "the queue controller, never pod by pod")
    if victim_leaf is None or ledger is None:
        return None
    used = ledger.usage(victim_leaf.full_name)
    if used.le(victim_leaf.min):
        same = preemptor_leaf is not None and preemptor_leaf.full_name == victim_leaf.full_name
        if same and victim.priority < preemptor.priority:
            return None
        return f"pod {victim.key}'s quota {victim_leaf.full_name} is within its min ({used} <= {victim_leaf.min})"
    return None
