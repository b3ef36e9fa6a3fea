"""One admission pass over the queues, as a pure ``try_admit`` for ``Queues.schedule``: scratch ledgers,
guaranteed-first, and reclaim. Shared by the controller's reconcile and the start-time estimator.

The pass reads the jobs through a small ``PassSource`` (the queues, which claims are releasing, how many
pods a requeued job still has, and whether a job is preemptible), so the controller feeds it its Cache
and the estimator a simulated world; the decisions are the same code. See ``extender/reconcile.py`` for
how one pass drives the controller's actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import replace
from typing import Protocol

from common.explain import Explain, Why
from common.fair_share import FairOrder, current_share, fair_preemption
from common.ledger import Claim, Decision, Ledger
from common.preemption import Protected, min_runtime_ns, protection
from common.queueing import QueueItem, Queues

__all__ = ["AdmissionPass", "PassSource", "copy_ledger"]


class PassSource(Protocol):
    """What a pass needs to know about the jobs besides the ledger."""

    @property
    def queues(self) -> Queues: ...

    def releasing(self, uid: str) -> bool:
        """The job's claim is on its way out (finished, deleted, suspended, to be requeued); for a growth
        pod claim (``Claim.growth_of``), the pod is being deleted."""
        ...

    def terminating_pods(self, uid: str) -> int:
        """How many non-terminal pods the job still has (a requeued job waits for them)."""
        ...

    def preemptible(self, uid: str) -> bool: ...


def copy_ledger(ledger: Ledger, without: AbstractSet[str] = frozenset(), plus: Sequence[Claim] = ()) -> Ledger:
    scratch = ledger.copy()
    for uid in sorted(without):
        scratch.remove(uid)
    for claim in plus:
        scratch.add(claim)
    return scratch


def _awaiting(decision: Decision, why: Why, claims: Sequence[Claim]) -> Decision:
    """The refusal of a guaranteed claimant that waits for the reclaim of ``claims``."""
    names = tuple(f"{c.key} ({c.quota})" for c in claims)
    return Decision.of(Explain(why=why, names=names, excess=decision.excess, cause=decision.why()))


def _under(quota: str, node: str | None) -> bool:
    return node is None or quota == node or quota.startswith(node + "/")


def _unpickable(claim: Claim) -> Claim:
    """A claim admitted in this very pass, as the reclaim view holds it: it counts, but it is no victim. A
    later guaranteed claimant of the same pass picking it would plan its Dequeue and its Suspend at once
    (the job would bounce); it is reclaimable from the next pass on, like any admitted job."""
    return replace(claim, suspendable=False)


class AdmissionPass:
    """``try_admit`` for one Queues.schedule pass, with its scratch ledgers and what it decided."""

    def __init__(self, source: PassSource, ledger: Ledger, now_ns: int, reserved: Sequence[QueueItem] = (),
                 fair: FairOrder | None = None) -> None:
        self.source = source
        self.fair = fair  # fair share (common.fair_share): the Fair Tree order; None: today's order
        self._feasible: dict[str, bool] = {}  # fair share: head uid -> it fits once the leaves after it give back
        self.real = ledger
        self.now_ns = now_ns
        self._releasing_claims = [
            c for c in ledger.claims() if (c.kind == "job" or c.growth_of) and source.releasing(c.uid)
        ]
        self.releasing = {c.uid for c in self._releasing_claims}
        self.victims: list[tuple[Claim, Claim]] = []  # (victim, claimant)
        # Growth pod claims to evict (pod deletion, no grace), before any whole job: (victim, claimant).
        self.growth_victims: list[tuple[Claim, Claim]] = []
        self.admitted: list[tuple[Claim, int]] = []  # (claim, refusals before it)
        self._added: list[Claim] = []  # admitted and reserved claims, in order
        self.reclaiming: list[Claim] = []  # claimants refused in this pass that hold capacity for their reclaim
        self.protected: dict[str, Protected] = {}  # uid -> a job reclaim spares (its min-runtime, docs/preemption.md)
        self._view: Ledger | None = None
        self._reclaim: Ledger | None = None
        self.heads = source.queues.guaranteed_heads(ledger, self.claim)
        for item in reserved:
            self._reserve(item)

    def _reserve(self, item: QueueItem) -> None:
        """Hold a waiting claimant's request from the start of the pass, as if it had been tried first: the
        claimant of a victim already chosen (a preemption notice, docs/preemption.md) may sit in backoff
        for the whole grace, and a job tried before it could otherwise take the capacity it waits for.
        Only while it is guaranteed and fits once the releasing claims are gone (what it waits for)."""
        if item.uid in self.real:
            return
        claim = self.claim(item)
        reclaim = self._reclaim_view()
        if reclaim.is_guaranteed(claim) and reclaim.check(claim):
            self._add(claim)

    def claim(self, item: QueueItem) -> Claim:
        return Claim(
            uid=item.uid,
            key=item.key,
            kind="job",
            quota=item.quota,
            request=item.request,
            priority=item.priority,
            preemptible=self.source.preemptible(item.uid),
            admitted_order=self.now_ns,
        )

    @property
    def view(self) -> Ledger:
        return self._view if self._view is not None else self.real

    def _scratch(self) -> Ledger:
        if self._view is None:
            self._view = copy_ledger(self.real)
        return self._view

    @property
    def reclaim_view(self) -> Ledger:
        """The ledger reclaim plans on: without releasing claims and this pass's victims, with what it admitted
        and reserved (those no victims)."""
        return self._reclaim_view()

    def _reclaim_view(self) -> Ledger:
        if self._reclaim is None:
            gone = self.releasing | {v.uid for v, _ in (*self.victims, *self.growth_victims)}
            self._reclaim = copy_ledger(self.real, without=gone, plus=[_unpickable(c) for c in self._added])
            self._protect(self._reclaim)
        return self._reclaim

    def _protect(self, view: Ledger) -> None:
        """Jobs that have not run their node's min-runtime are no victims (KAI's reclaimMinRuntime): in the
        reclaim view they are not suspendable, and ``protected`` keeps why (with no min-runtime anywhere, none is)."""
        if not any(min_runtime_ns(view.tree, n.full_name) > 0 for n in view.tree.nodes()):
            return
        for c in view.claims():
            if c.kind != "job" or not c.suspendable or not c.preemptible:
                continue
            found = protection(view.tree, self.now_ns, c.key, c.quota, c.admitted_order)
            if found is not None:
                self.protected[c.uid] = found
                view.add(replace(c, suspendable=False))

    def _spared(self, claim: Claim, reclaim: Ledger) -> tuple[Protected, ...]:
        """The protected jobs a reclaim for ``claim`` would take were they not protected (none: not the reason)."""
        if not self.protected:
            return ()
        lifted = reclaim.copy()
        for uid in self.protected:
            held = lifted.claim(uid)
            if held is not None:
                lifted.add(replace(held, suspendable=True))
        plan = lifted.plan_reclaim(claim)
        if plan is None:
            return ()
        return tuple(self.protected[v.uid] for v in plan.victims if v.uid in self.protected)

    def _hold(self, claim: Claim) -> None:
        self._add(claim)
        self.reclaiming.append(claim)

    def _add(self, claim: Claim) -> None:
        self._scratch().add(claim)
        if self._reclaim is not None:
            self._reclaim.add(_unpickable(claim))
        self._added.append(claim)

    def __call__(self, item: QueueItem) -> Decision:
        claim = self.claim(item)
        if item.uid in self.real:  # requeued: the claim of its previous run drains with its pods
            pods = self.source.terminating_pods(item.uid)
            return Decision.of(Explain(why="draining", node=item.quota, job=item.key, count=pods))
        if self.fair is not None and not self.view.is_guaranteed(claim):
            yielded = self._fair_first(claim)
            if yielded is not None:
                return yielded
        others = [h for h in self.heads if h.quota != item.quota]
        # the heads judged as if the releasing claims and this pass's victims were gone: a claimant waiting for
        # its reclaim keeps what it waits for (a borrower taking it would make it reclaim again and again)
        going = self.releasing | {v.uid for v, _ in (*self.victims, *self.growth_victims)} if others else set()
        decision = self.view.check(claim, waiting_guaranteed=others, releasing=going)
        if decision:
            self.admitted.append((claim, self.source.queues.attempts(item.uid)))
            self._add(claim)
            return decision
        return self._refused(claim, decision)

    def _fair_first(self, claim: Claim) -> Decision | None:
        """Fair share (docs/fairshare.md): a borrowing claim yields to the head of a leaf that goes before its
        own by the Fair Tree order, or to the head of its own leaf (next by priority), when that head would
        borrow too, does not fit with this claim admitted, and would fit once every leaf after it gave back
        what it holds (so a head that can never fit blocks no one): borrowed capacity drains to the head that
        is owed it instead of being taken piece by piece by smaller jobs. Mins are untouched: a guaranteed
        claim never gets here, nor yields to one."""
        fair = self.fair
        assert fair is not None
        for leaf in fair.leaves():
            own = leaf == claim.quota
            if not own and not fair.goes_first(leaf, claim.quota):
                break
            owed = self._owed(claim, leaf, fair)
            if owed is not None or own:
                return owed
        return None

    def _owed(self, claim: Claim, leaf: str, fair: FairOrder) -> Decision | None:
        """The refusal of ``claim`` for the head of ``leaf`` (see ``_fair_first``), or None."""
        item = self.source.queues.head(leaf)
        if item is None or item.uid in self.real or item.uid == claim.uid:
            return None
        head = self.claim(item)
        if self.view.is_guaranteed(head):
            return None  # the guaranteed-first rule answers for it
        refusal = self.view.check(head)
        if refusal:
            refusal = copy_ledger(self.view, plus=[claim]).check(head)
            if refusal:
                return None  # it fits beside this claim
        if refusal.rule not in ("max", "capacity") or not self._feasible_after(head, fair):
            return None
        unfair = None if leaf == claim.quota else fair.unfair(claim.quota, leaf)
        return Decision.of(Explain(why="fair-share", node=claim.quota, job=item.key, job_quota=leaf, fair=unfair,
                                   excess=refusal.excess, cause=refusal.why()))

    def _feasible_after(self, head: Claim, fair: FairOrder) -> bool:
        found = self._feasible.get(head.uid)
        if found is None:
            later = {c.uid for c in self.view.claims() if fair.goes_first(head.quota, c.quota)}
            found = self._feasible[head.uid] = bool(copy_ledger(self.view, without=later).check(head))
        return found

    def _fair_reclaim(self, claim: Claim, decision: Decision, reclaim: Ledger) -> Decision:
        """Reclaim for fairness (``rayqueue.io/fair-share-preemption: "true"``, docs/fairshare.md): a borrowing
        claim whose side goes first by the Fair Tree order, refused by a max or the cluster's capacity, takes
        borrowed jobs of sides that go after it, last in the order first, then lowest priority, newest, while
        after the reclaim its side's share of what it borrows now stays at most the victim side's (Kueue's
        LessThanOrEqualToFinalShare: the victim's side cannot then reclaim back) and the victim's side keeps its
        min; never a protected job (min-runtime) or one of a leaf that goes before it. Else the refusal as is."""
        fair = self.fair
        if fair is None or decision.rule not in ("max", "capacity") or not fair_preemption(reclaim.tree):
            return decision
        tree, capacity = reclaim.tree, reclaim.capacity
        place = {leaf: i for i, leaf in enumerate(fair.leaves())}
        candidates = sorted(
            (c for c in reclaim.claims() if c.kind == "job" and c.preemptible and c.suspendable
             and c.quota != claim.quota and fair.goes_first(claim.quota, c.quota)),
            key=lambda c: (-place.get(c.quota, len(place)), c.priority, -c.admitted_order, c.uid))
        after = copy_ledger(reclaim, plus=[claim])
        chosen: list[Claim] = []
        for victim in candidates:
            mine, theirs = fair.competitors(claim.quota, victim.quota)
            node = tree.node(theirs)
            after.remove(victim.uid)
            left = after.usage(theirs)
            keeps_min = all(left.get(r) >= v for r, v in node.min.items() if victim.request.get(r) > 0)
            fair_after = (current_share(tree, mine, after.usage(mine), capacity)
                          <= current_share(tree, theirs, left, capacity))
            if not keeps_min or not fair_after:
                after.add(victim)
                continue
            chosen.append(victim)
            after.remove(claim.uid)
            fits = bool(after.check(claim))
            after.add(claim)
            if fits:
                break
        else:
            return decision
        for victim in chosen:
            reclaim.remove(victim.uid)
            self.victims.append((victim, claim))
        self._hold(claim)
        return _awaiting(decision, "reclaim", chosen)

    def _refused(self, claim: Claim, decision: Decision) -> Decision:
        reclaim = self._reclaim_view()
        if not reclaim.is_guaranteed(claim):
            return self._fair_reclaim(claim, decision, reclaim)
        if reclaim.check(claim):  # fits once the releasing claims are gone: wait for them
            releasing = sorted(
                [*self._releasing_claims, *(v for v, _ in (*self.victims, *self.growth_victims))],
                key=lambda c: (c.key, c.uid),
            )
            blocking = [c for c in releasing if _under(c.quota, decision.blocking)] or releasing
            self._hold(claim)
            return _awaiting(decision, "reclaim", blocking)
        # Growth first (docs/growth.md): pods beyond their job's reservation, newest first; whole jobs only
        # when evicting all the growth that may go is not enough.
        growth = reclaim.plan_growth_reclaim(claim)
        taken = growth.victims if growth is not None else ()
        for victim in taken:
            reclaim.remove(victim.uid)
        if growth is not None and growth.fits and taken:
            self.growth_victims.extend((victim, claim) for victim in taken)
            self._hold(claim)
            return _awaiting(decision, "growth-reclaim", taken)
        plan = reclaim.plan_reclaim(claim)
        if plan is None or not plan.victims:
            for victim in taken:  # not enough even with whole jobs: nothing is evicted
                reclaim.add(victim)
            spared = self._spared(claim, reclaim)
            if spared:
                return Decision.of(Explain(why="protected", protected=spared, excess=decision.excess,
                                           cause=decision.why()))
            return decision
        suspended = {v.uid for v in plan.victims}
        # A suspended job's growth goes with it (out of the view, but no pod deletion of its own); the rest
        # of the growth is evicted first.
        growth_victims = [v for v in taken if v.growth_of not in suspended]
        for victim in growth_victims:
            self.growth_victims.append((victim, claim))
        for victim in plan.victims:
            reclaim.remove(victim.uid)
            self.victims.append((victim, claim))
        self._hold(claim)
        return _awaiting(decision, "reclaim", [*growth_victims, *plan.victims])
