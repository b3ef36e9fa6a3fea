"""The quota ledger: usage per quota node, the admission decision and the choice of reclaim victims.

The ledger knows nothing of RayJobs or pods: it works on `Claim` values (a uid, a leaf, a request) and
keeps, for every node of the tree, the sum of the claims of its subtree. Accounting is keyed by uid, so
a replayed watch event never counts twice; add, remove and check cost O(depth of the tree).

Guaranteed, borrowing and the ancestors. A claim is *guaranteed* when its leaf stays within its `min`
after admission. The design says "its leaf and ancestors"; the ancestors' condition is read for the
claimant's own branch: an ancestor's usage also holds what sibling subtrees borrow, and that part is
reclaimable, so it must not disqualify the claimant (otherwise an intern leaf with `min: 0` that
borrows the algorithm node's capacity would make every video job "not guaranteed" and reclaim could
never take the capacity back, the guide's own example). Counting each off-branch subtree at most at its
min, the ancestors' condition follows from the leaf's, because the tree rules make the children's mins
add up within the parent's min. The same reading applies to the rule that a non-preemptible claim may
only use guaranteed capacity.

Claims whose quota is not a leaf of the current tree (the tree changed under them) are *orphans*: they
still use real capacity, so they stay charged to the root (its max and the cluster capacity) and to no
other node; `orphans()` lists them, and re-adding one with a current leaf re-homes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

from common import keys
from common.explain import Explain, Rule, render
from common.quota_tree import QuotaNode, QuotaTree
from common.resources import EMPTY, Excess, Resources

__all__ = ["Claim", "ClaimKind", "Decision", "GrowthPlan", "Ledger", "ReclaimPlan", "Rule"]

ClaimKind = Literal["job", "pod"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What one admitted (or candidate) job or pod holds in one leaf quota."""

    uid: str
    key: str  # "namespace/name", for messages
    kind: ClaimKind
    quota: str  # the leaf's full name
    request: Resources
    priority: int = 0
    preemptible: bool = True
    admitted_order: int = 0  # admission sequence number or timestamp: larger is newer
    # False while the operator cannot act on a suspension (KubeRay suspends a RayJob only from Initializing
    # or Running: an InteractiveMode job sits in Waiting): reclaim does not pick it then, as suspending it
    # would free nothing and the claimant would wait for pods that never go.
    suspendable: bool = True
    # For a pod claim: the uid of the job whose pod it is, beyond that job's reservation (*growth*: always
    # preemptible, reclaimed pod by pod before any whole job, ``Ledger.plan_growth_reclaim``); "" otherwise.
    growth_of: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("job", "pod"):
            raise ValueError(f"claim {self.key}: kind must be 'job' or 'pod', got {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this claim be admitted now?": truthy when admitted; else the rule, node and numbers.
    ``explain`` is the record it was made from (``Decision.of``); ``reason`` its words."""

    admitted: bool
    reason: str
    blocking: str | None = None  # the quota node that refused (None: cluster capacity, or admitted)
    excess: tuple[Excess, ...] = ()
    rule: Rule = ""
    explain: Explain | None = field(default=None, compare=False)

    @classmethod
    def of(cls, explain: Explain) -> Decision:
        """The decision a record states, its reason rendered from it."""
        return cls(explain.admitted, render(explain), explain.blocking, explain.excess, explain.rule, explain)

    def why(self) -> Explain:
        """The record: the one it was made from, or its words as given."""
        return self.explain if self.explain is not None else Explain(why="said", text=self.reason)

    def __bool__(self) -> bool:
        return self.admitted


@dataclass(frozen=True, slots=True)
class ReclaimPlan:
    """The preemptible jobs to evict so that a guaranteed claim fits: a minimal set, chosen deterministically."""

    claimant: Claim
    victims: tuple[Claim, ...]
    message: str


@dataclass(frozen=True, slots=True)
class GrowthPlan:
    """The growth pod claims to evict for a guaranteed claim, newest first; ``fits`` says whether the claim
    fits once they are gone (otherwise whole jobs must go too, after them)."""

    claimant: Claim
    victims: tuple[Claim, ...]
    fits: bool


def _min_limit(node: QuotaNode, request: Mapping[str, int]) -> dict[str, int]:
    """The node's min as a limit in which a requested resource min does not name counts 0."""
    return {r: node.min.get(r, 0) for r in sorted(set(node.min) | set(request))}


class _View:
    """The ledger's usage with some claims taken out and others put in, without touching the ledger."""

    __slots__ = ("_delta", "_jobs", "_ledger")

    def __init__(self, ledger: Ledger, removed: Iterable[Claim] = (), added: Iterable[Claim] = ()) -> None:
        self._ledger = ledger
        self._delta: dict[str, Resources] = {}
        self._jobs: dict[str, int] = {}
        for c in removed:
            self.apply(c, ledger._home_of(c), -1)
        for c in added:
            self.apply(c, ledger._home_for(c.quota), +1)

    def apply(self, claim: Claim, home: str, sign: int) -> None:
        request = claim.request if sign > 0 else claim.request.scaled(-1)
        for node in self._ledger.tree.path_to_root(home):
            name = node.full_name
            self._delta[name] = self._delta.get(name, EMPTY) + request
            if claim.kind == "job":
                self._jobs[name] = self._jobs.get(name, 0) + sign

    def usage(self, full_name: str) -> Resources:
        return self._ledger.usage(full_name) + self._delta.get(full_name, EMPTY)

    def jobs(self, full_name: str) -> int:
        return self._ledger.jobs(full_name) + self._jobs.get(full_name, 0)


class Ledger:
    """Usage per quota node (Σ claims of its subtree), admission checks and reclaim planning."""

    def __init__(self, tree: QuotaTree, capacity: Resources | None = None) -> None:
        self._tree = tree
        self._capacity = capacity
        self._claims: dict[str, Claim] = {}
        self._homes: dict[str, str] = {}  # uid -> the node it is charged at (its leaf, or the root)
        self._usage: dict[str, Resources] = {}
        self._jobs: dict[str, int] = {}
        self._generation = 0

    # --- state -------------------------------------------------------------------------------

    @property
    def tree(self) -> QuotaTree:
        return self._tree

    @property
    def capacity(self) -> Resources | None:
        return self._capacity

    @property
    def generation(self) -> int:
        """Changes whenever usage, capacity or the tree changes (the queue's Block policy waits on it)."""
        return self._generation

    def usage(self, full_name: str) -> Resources:
        """Σ requests of the claims in the node's subtree (orphans count at the root); empty for an unknown node."""
        return self._usage.get(full_name, EMPTY)

    def jobs(self, full_name: str) -> int:
        """How many claims of kind "job" the node's subtree holds."""
        return self._jobs.get(full_name, 0)

    def claims(self) -> tuple[Claim, ...]:
        """Every claim, sorted by uid."""
        return tuple(self._claims[uid] for uid in sorted(self._claims))

    def claim(self, uid: str) -> Claim | None:
        return self._claims.get(uid)

    def __contains__(self, uid: object) -> bool:
        return uid in self._claims

    def __len__(self) -> int:
        return len(self._claims)

    def orphans(self) -> tuple[Claim, ...]:
        """Claims whose quota is not a leaf of the current tree (charged to the root only), sorted by uid."""
        return tuple(c for c in self.claims() if not self._is_leaf(c.quota))

    def copy(self) -> Ledger:
        """An independent ledger holding the same claims: its dicts copied (claims and usage are immutable
        values), not re-charged claim by claim, so a snapshot of 50,000 claims costs a few milliseconds."""
        other = Ledger(self._tree, self._capacity)
        other._claims = dict(self._claims)
        other._homes = dict(self._homes)
        other._usage = dict(self._usage)
        other._jobs = dict(self._jobs)
        other._generation = self._generation
        return other

    # --- changes -----------------------------------------------------------------------------

    def add(self, claim: Claim) -> None:
        """Charge a claim; the same uid again replaces the old claim (never counts twice)."""
        old = self._claims.get(claim.uid)
        if old == claim:
            return
        if old is not None:
            self._charge(old, self._homes[old.uid], -1)
        home = self._home_for(claim.quota)
        self._claims[claim.uid] = claim
        self._homes[claim.uid] = home
        self._charge(claim, home, +1)
        self._generation += 1

    def remove(self, uid: str) -> None:
        """Release a claim; an unknown uid is a no-op."""
        old = self._claims.pop(uid, None)
        if old is None:
            return
        self._charge(old, self._homes.pop(uid), -1)
        self._generation += 1

    def set_capacity(self, capacity: Resources | None) -> None:
        """What the quota tree's workloads may use in all: allocatable of schedulable nodes (None: no limit)."""
        if capacity != self._capacity:  # a declared zero and an absent resource both mean none here
            self._generation += 1
        self._capacity = capacity

    def set_tree(self, tree: QuotaTree) -> None:
        """Switch to a new tree and re-home every claim (claims whose leaf is gone become orphans)."""
        if tree == self._tree:
            self._tree = tree
            return
        self._tree = tree
        self._usage.clear()
        self._jobs.clear()
        for uid, claim in self._claims.items():
            home = self._home_for(claim.quota)
            self._homes[uid] = home
            self._charge(claim, home, +1)
        self._generation += 1

    def _charge(self, claim: Claim, home: str, sign: int) -> None:
        request = claim.request if sign > 0 else claim.request.scaled(-1)
        for node in self._tree.path_to_root(home):
            name = node.full_name
            usage = self._usage.get(name, EMPTY) + request
            if usage:
                self._usage[name] = usage
            else:
                self._usage.pop(name, None)
            if claim.kind == "job":
                jobs = self._jobs.get(name, 0) + sign
                if jobs:
                    self._jobs[name] = jobs
                else:
                    self._jobs.pop(name, None)

    def _is_leaf(self, full_name: str) -> bool:
        node = self._tree.get(full_name)
        return node is not None and node.is_leaf

    def _home_for(self, quota: str) -> str:
        return quota if self._is_leaf(quota) else self._tree.root.full_name

    def _home_of(self, claim: Claim) -> str:
        return self._homes[claim.uid]

    # --- decisions ---------------------------------------------------------------------------

    def _base(self, claim: Claim) -> _View:
        """Usage as if `claim` were not in the ledger (checking an admitted uid again must not count it twice)."""
        return _View(self, removed=_without(self._claims.get(claim.uid)))

    def check(self, claim: Claim, *, waiting_guaranteed: Sequence[Claim] = (),
              releasing: AbstractSet[str] = frozenset()) -> Decision:
        """May `claim` be admitted now? Rules in order: quota exists, max and max-jobs on every node of the
        path (the leaf-most refusal is reported), cluster capacity, non-preemptible claims stay within the
        guarantee, and a borrowing claim yields to a guaranteed claim of another leaf that it would block,
        that guaranteed claim judged as if the ``releasing`` claims were gone (a claimant waiting for its
        reclaim is protected too: docs/elastic.md).
        """
        base = self._base(claim)
        decision = self._evaluate(claim, base)
        if not decision or not waiting_guaranteed or self._guaranteed_in(claim, base):
            return decision
        going = [self._claims[u] for u in sorted(releasing) if u in self._claims and u != claim.uid]
        removed = [*_without(self._claims.get(claim.uid)), *going]
        ahead: list[Claim] = []  # the waiting guaranteed claims before ``w`` that fit: judged together, not one by one
        for w in waiting_guaranteed:
            if w.uid == claim.uid or w.quota == claim.quota or w.uid in self._claims:
                continue  # the claim itself, its own leaf, or not actually waiting
            w_now = _View(self, removed=going, added=ahead)
            if not self._guaranteed_in(w, w_now) or not self._evaluate(w, w_now):
                continue
            blocked = self._evaluate(w, _View(self, removed=removed, added=[claim, *ahead]))
            if not blocked:
                return Decision.of(Explain(why="guaranteed-first", node=claim.quota, excess=blocked.excess,
                                           job=w.key, job_quota=w.quota, cause=blocked.why()))
            ahead.append(w)
        return decision

    def headroom(self, leaf: str, without: Iterable[Claim] = ()) -> tuple[Resources, int | None]:
        """What one more job could take in ``leaf`` by the max rules (as if the claims ``without`` were not
        charged): per resource, the least of (max - used) over the nodes of its path that name it and
        (capacity - used at the root); and the fewest job slots left under max-jobs (None: no node caps
        jobs). A resource nothing names is unbounded, so it is absent. The guaranteed-first guard and the
        preemptible rule are not in it (they depend on the job)."""
        view = _View(self, removed=[c for c in without if c.uid in self._claims])
        free: dict[str, int] = {}
        slots: int | None = None
        for node in self._tree.path_to_root(self._home_for(leaf)):
            used = view.usage(node.full_name)
            for r, limit in node.max.items():
                free[r] = min(free.get(r, limit - used.get(r)), limit - used.get(r))
            if node.max_jobs is not None:
                left = node.max_jobs - view.jobs(node.full_name)
                slots = left if slots is None else min(slots, left)
        if self._capacity is not None:
            total = view.usage(self._tree.root.full_name)
            for r, limit in self._capacity.items():
                free[r] = min(free.get(r, limit - total.get(r)), limit - total.get(r))
        return Resources({r: max(0, v) for r, v in free.items()}), None if slots is None else max(0, slots)

    def within_min(self, leaf: str, without: Iterable[Claim] = ()) -> Resources:
        """What one more claim could take in ``leaf`` and still be guaranteed (as if the claims ``without``
        were not charged): per resource its min names, min - used (a resource min does not name: nothing,
        as in ``is_guaranteed``)."""
        node = self._tree.get(leaf)
        if node is None or not node.is_leaf:
            return Resources()
        used = _View(self, removed=[c for c in without if c.uid in self._claims]).usage(leaf)
        return Resources({r: max(0, m - used.get(r)) for r, m in node.min.items()})

    def is_guaranteed(self, claim: Claim) -> bool:
        """Whether the claim keeps its leaf within min (a resource min does not name counts 0).

        See the module docstring for why this also covers the ancestors.
        """
        return self._guaranteed_in(claim, self._base(claim))

    def _guaranteed_in(self, claim: Claim, view: _View) -> bool:
        node = self._tree.get(claim.quota)
        if node is None or not node.is_leaf:
            return False
        return view.usage(node.full_name).fits(claim.request, _min_limit(node, claim.request))

    def _evaluate(self, claim: Claim, view: _View) -> Decision:
        """Every rule of `check` except the guaranteed-first guard, against usage `view`."""
        leaf = self._tree.get(claim.quota)
        if leaf is None:
            return Decision.of(Explain(why="no-such-quota", node=claim.quota))
        if not leaf.is_leaf:
            return Decision.of(Explain(why="not-a-leaf", node=claim.quota, names=tuple(leaf.children)))
        for node in self._tree.path_to_root(leaf.full_name):
            used = view.usage(node.full_name)
            excess = used.exceeding(claim.request, node.max)
            if excess:
                return Decision.of(Explain(why="max", node=node.full_name, excess=excess))
            if claim.kind == "job" and node.max_jobs is not None:
                jobs = view.jobs(node.full_name)
                if jobs + 1 > node.max_jobs:
                    jobs_excess = (Excess(keys.MAX_JOBS, jobs, 1, node.max_jobs),)
                    return Decision.of(Explain(why="max-jobs", node=node.full_name, excess=jobs_excess))
        if self._capacity is not None:
            total = view.usage(self._tree.root.full_name)
            limit = {r: self._capacity.get(r, 0) for r in sorted(set(self._capacity) | set(claim.request))}
            excess = total.exceeding(claim.request, limit)
            if excess:
                return Decision.of(Explain(why="capacity", excess=excess))
        if not claim.preemptible:
            excess = view.usage(leaf.full_name).exceeding(claim.request, _min_limit(leaf, claim.request))
            if excess:
                return Decision.of(Explain(why="preemptible", node=leaf.full_name, excess=excess))
        return Decision.of(Explain(why="fits", node=leaf.full_name))

    # --- reclaim -----------------------------------------------------------------------------

    def plan_reclaim(self, claim: Claim) -> ReclaimPlan | None:
        """A minimal set of borrowing, preemptible jobs to evict so that a guaranteed claim fits.

        Candidates: admitted claims of kind "job", preemptible and suspendable, in another leaf whose usage is above its
        min, ordered lowest priority first, then most recently admitted, then uid. A candidate is skipped
        when evicting it (with those already chosen) would push a node on its path that is not on the
        claimant's path below its min, for a resource it requests that the min names. Candidates are
        added in order until the claim fits (every rule of `check` but the guard), then each is dropped
        again, last first, if the claim still fits without it: no victim of the plan can be spared
        (minimal, though not always the fewest possible: that is a knapsack problem, and the order above
        is the policy). None when the claim is not guaranteed or no such set exists; a plan with no
        victims when it already fits. Cost O(claims x depth).
        """
        picked = self._pick(claim, lambda c: c.kind == "job" and c.preemptible and c.suspendable)
        if picked is None or not picked[1]:
            return None
        victims = picked[0]
        if not victims:
            return ReclaimPlan(claim, (), f"{claim.key} in {claim.quota} fits without reclaim")
        listed = ", ".join(f"{v.key} ({v.quota}, priority {v.priority})" for v in victims)
        message = f"reclaim for {claim.key}, guaranteed in {claim.quota}: preempt {listed}"
        return ReclaimPlan(claim, victims, message)

    def plan_growth_reclaim(self, claim: Claim) -> GrowthPlan | None:
        """The growth pod claims (``Claim.growth_of``) to evict, before any whole job, so that a guaranteed
        claim fits: growth is borrowed capacity by nature and always preemptible (docs/growth.md).

        Candidates: pod claims that are some job's growth, in another leaf whose usage is above its min,
        ordered lowest priority first, then newest first (``admitted_order``: the pod's creation), then uid;
        the same min protection as ``plan_reclaim`` (a candidate is skipped when evicting it would push a
        node off the claimant's path below its min). Candidates are taken in order until the claim fits,
        then each is dropped again, last first, if the claim still fits without it. When all of them are not
        enough, every candidate taken is returned with ``fits`` False: the caller then plans whole jobs on
        the ledger without them. None when the claim is not guaranteed; no victims and ``fits`` when it
        already fits. Deterministic: the same ledger gives the same plan (a restarted controller decides
        the same). Cost O(claims x depth)."""
        picked = self._pick(claim, lambda c: c.kind == "pod" and bool(c.growth_of))
        if picked is None:
            return None
        return GrowthPlan(claim, *picked)

    def _pick(self, claim: Claim, eligible: Callable[[Claim], bool]) -> tuple[tuple[Claim, ...], bool] | None:
        """The victims of ``plan_reclaim`` and ``plan_growth_reclaim``, among the ``eligible`` claims of other
        leaves above their min, in their order, with the min protection: None when the claim is not
        guaranteed; ``((), True)`` when it already fits; else the candidates taken and whether they make it
        fit (then minimised: each dropped again, last first, if the claim still fits without it)."""
        if not self._is_leaf(claim.quota):
            return None
        base = self._base(claim)
        if not self._guaranteed_in(claim, base):
            return None
        if self._evaluate(claim, base):
            return (), True
        own_path = {n.full_name for n in self._tree.path_to_root(claim.quota)}
        candidates = [c for c in self._candidates(claim.quota, eligible) if c.uid != claim.uid]
        old = self._claims.get(claim.uid)
        running = _View(self, removed=_without(old))
        chosen: list[Claim] = []
        fits = False
        for c in candidates:
            if not self._keeps_min(running, c, own_path):
                continue
            running.apply(c, self._homes[c.uid], -1)
            chosen.append(c)
            if self._evaluate(claim, running):
                fits = True
                break
        if fits:
            for c in reversed(list(chosen)):
                trial = [v for v in chosen if v.uid != c.uid]
                if self._evaluate(claim, _View(self, removed=[*_without(old), *trial])):
                    chosen = trial
        return tuple(chosen), fits

    def _candidates(self, quota: str, eligible: Callable[[Claim], bool]) -> list[Claim]:
        """Reclaim candidates for a claimant in ``quota``, in plan order: eligible claims of other leaves above
        their min, lowest priority first, then newest, then uid."""
        return sorted(
            (
                c
                for c in self._claims.values()
                if c.quota != quota and eligible(c) and self._is_leaf(c.quota) and self._above_min(c.quota)
            ),
            key=lambda c: (c.priority, -c.admitted_order, c.uid),
        )

    def reclaim_room(self, leaf: str, want: Mapping[str, int]) -> Resources:
        """The max-rule headroom (``headroom``) a guaranteed claimant in ``leaf`` could be given by reclaim,
        as far as ``want``: growth, then whole jobs, are evicted in the order ``plan_growth_reclaim`` and
        ``plan_reclaim`` take them, each unless the min protection keeps it, until the room covers ``want``.
        Those plans take a prefix of this very sequence (the protection depends only on what was taken
        before), and evicting only adds room, so a request up to ``want`` has a plan exactly when it fits the
        room returned. Cost O(claims x depth)."""
        if not self._is_leaf(leaf):
            return Resources()
        own_path = {n.full_name for n in self._tree.path_to_root(leaf)}
        growth = self._candidates(leaf, lambda c: c.kind == "pod" and bool(c.growth_of))
        jobs = self._candidates(leaf, lambda c: c.kind == "job" and c.preemptible and c.suspendable)
        running = _View(self)
        taken: list[Claim] = []
        room = self.headroom(leaf)[0]
        for c in (*growth, *jobs):
            if Resources().fits(want, room):
                break
            if not self._keeps_min(running, c, own_path):
                continue
            running.apply(c, self._homes[c.uid], -1)
            taken.append(c)
            room = self.headroom(leaf, without=taken)[0]
        return room

    def _above_min(self, full_name: str) -> bool:
        node = self._tree.node(full_name)
        return not self.usage(full_name).le(node.min)

    def _keeps_min(self, running: _View, victim: Claim, own_path: set[str]) -> bool:
        """Evicting `victim` on top of `running` leaves every node of its path off the claimant's path at min."""
        for node in self._tree.path_to_root(self._homes[victim.uid]):
            if node.full_name in own_path:
                continue
            used = running.usage(node.full_name)
            for r, amount in victim.request.items():
                if r in node.min and used.get(r) - amount < node.min[r]:
                    return False
        return True


def _without(old: Claim | None) -> list[Claim]:
    return [old] if old is not None else []
